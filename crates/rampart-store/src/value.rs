//! The neutral SQL vocabulary both drivers speak: parameter and column [`Value`]s, result
//! [`Row`]s with a typed cursor, and the [`SqlDriver`] trait the store logic is written against.

use async_trait::async_trait;

use crate::{Durable, StoreError, StoreResult};

/// One SQL parameter or column value. Booleans travel as `Int` 0/1, times as epoch ms and
/// lists as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Int(i64::from(value))
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Value::Blob(value.to_vec())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(value: &Vec<u8>) -> Self {
        Value::Blob(value.clone())
    }
}

impl<T> From<Option<T>> for Value
where
    T: Into<Value>,
{
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// One statement of a [`SqlDriver::transaction`].
#[derive(Debug)]
pub(crate) struct Statement {
    /// Shared, so that the many statements of one multi-row insert share one text.
    pub sql: std::sync::Arc<str>,
    pub params: Vec<Value>,
    /// When set and the statement changes no row, the whole transaction is rolled back and
    /// fails with [`StoreError::NotFound`].
    pub must_change_row: bool,
}

impl Statement {
    pub(crate) fn new(sql: impl Into<std::sync::Arc<str>>, params: Vec<Value>) -> Self {
        Statement { sql: sql.into(), params, must_change_row: false }
    }

    pub(crate) fn must_change_row(mut self) -> Self {
        self.must_change_row = true;
        self
    }
}

/// A minimal async SQL connection: what the store needs and nothing more. SQL uses `?`
/// placeholders; a unique or foreign-key violation fails with [`StoreError::Conflict`].
#[async_trait]
pub(crate) trait SqlDriver: Send + Sync + 'static {
    fn backend_name(&self) -> &'static str;
    /// Rows per multi-row INSERT that suit this backend.
    fn rows_per_insert(&self) -> usize;
    /// A query answering `(table, column)` for every column of every table of the schema.
    fn schema_query(&self) -> &'static str;
    async fn query(&self, sql: &str, params: Vec<Value>) -> StoreResult<Vec<Row>>;
    /// Runs one statement and answers how many rows it changed.
    async fn execute(&self, sql: &str, params: Vec<Value>) -> StoreResult<u64>;
    /// Runs the statements in one transaction: all of them take effect or none does.
    async fn transaction(&self, statements: Vec<Statement>) -> StoreResult<()>;
    /// Like [`SqlDriver::transaction`], but may return once the transaction is committed and
    /// visible, before it is on disk; the [`Durable`] resolves once it is.
    async fn transaction_durable_later(&self, statements: Vec<Statement>) -> StoreResult<Durable> {
        self.transaction(statements).await.map(|()| Durable::now())
    }
}

/// One result row, read front to back with the typed getters (the order of the SELECT list).
#[derive(Debug)]
pub(crate) struct Row {
    values: std::vec::IntoIter<Value>,
    column: usize,
}

impl Row {
    pub(crate) fn new(values: Vec<Value>) -> Self {
        Row { values: values.into_iter(), column: 0 }
    }

    fn next(&mut self) -> StoreResult<Value> {
        self.column += 1;
        self.values.next().ok_or_else(|| StoreError::Corrupt(format!("missing column {}", self.column)))
    }

    fn mismatch(&self, expected: &str, found: &Value) -> StoreError {
        let found = match found {
            Value::Null => "null",
            Value::Int(_) => "integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        };
        StoreError::Corrupt(format!("column {}: expected {expected}, found {found}", self.column))
    }

    pub(crate) fn int(&mut self) -> StoreResult<i64> {
        match self.next()? {
            Value::Int(value) => Ok(value),
            other => Err(self.mismatch("integer", &other)),
        }
    }

    pub(crate) fn opt_int(&mut self) -> StoreResult<Option<i64>> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Int(value) => Ok(Some(value)),
            other => Err(self.mismatch("integer or null", &other)),
        }
    }

    pub(crate) fn bool(&mut self) -> StoreResult<bool> {
        match self.int()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(StoreError::Corrupt(format!("column {}: {other} is not a boolean", self.column))),
        }
    }

    pub(crate) fn text(&mut self) -> StoreResult<String> {
        match self.next()? {
            Value::Text(value) => Ok(value),
            other => Err(self.mismatch("text", &other)),
        }
    }

    pub(crate) fn opt_text(&mut self) -> StoreResult<Option<String>> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Text(value) => Ok(Some(value)),
            other => Err(self.mismatch("text or null", &other)),
        }
    }

    pub(crate) fn blob(&mut self) -> StoreResult<Vec<u8>> {
        match self.next()? {
            Value::Blob(value) => Ok(value),
            other => Err(self.mismatch("blob", &other)),
        }
    }

    pub(crate) fn opt_blob(&mut self) -> StoreResult<Option<Vec<u8>>> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Blob(value) => Ok(Some(value)),
            other => Err(self.mismatch("blob or null", &other)),
        }
    }

    /// A list of strings stored as JSON text.
    pub(crate) fn list(&mut self) -> StoreResult<Vec<String>> {
        let text = self.text()?;
        serde_json::from_str(&text)
            .map_err(|_| StoreError::Corrupt(format!("column {}: not a JSON list of strings", self.column)))
    }
}

/// A list of strings as the JSON text stored in a column.
pub(crate) fn list_value(list: &[String]) -> StoreResult<Value> {
    serde_json::to_string(list)
        .map(Value::Text)
        .map_err(|error| StoreError::Backend(format!("encoding a list: {error}")))
}

/// `?, ?, …` with `count` placeholders, for IN lists and INSERT value lists.
pub(crate) fn placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}
