//! [`Table`]: a table's name and column list, written once per table; every SELECT and INSERT
//! of its rows is built from it, in the order the row's decoder reads and its binder binds.

use crate::value::placeholders;

/// A table and its columns, in row order.
#[derive(Debug)]
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

impl Table {
    /// `a, b, c`.
    pub(crate) fn column_list(&self) -> String {
        self.columns.join(", ")
    }

    /// `SELECT <columns> FROM <table> <rest>`.
    pub(crate) fn select(&self, rest: &str) -> String {
        format!("SELECT {} FROM {} {rest}", self.column_list(), self.name)
    }

    /// `INSERT INTO <table> (<columns>) VALUES (?, …) <rest>`.
    pub(crate) fn insert(&self, rest: &str) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES ({}) {rest}",
            self.name,
            self.column_list(),
            placeholders(self.columns.len())
        )
    }
}
