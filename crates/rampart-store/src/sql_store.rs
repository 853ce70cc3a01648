//! [`SqlStore`]: the one [`Store`] implementation, written once over [`SqlDriver`] for every
//! backend (each area module adds its part), the public constructors that pick the backend,
//! and the query helpers the areas share.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::postgres::PostgresDriver;
use crate::sqlite::SqliteDriver;
use crate::value::{Row, SqlDriver, Value};
use crate::{Store, StoreError, StoreResult};

/// Opens (creating and migrating it if needed) the SQLite database at `path`, normally
/// `DATA_DIR/rampart.db`. The file is created readable by its owner only.
pub async fn open_sqlite(path: &Path) -> StoreResult<Arc<dyn Store>> {
    let driver = SqliteDriver::open(path).await?;
    Ok(Arc::new(SqlStore { driver: Box::new(driver) }))
}

/// Connects to PostgreSQL (`postgres://user@host:port/db` or `postgresql://…`) and migrates the
/// schema; several processes may do this at once.
pub async fn open_postgres(url: &str) -> StoreResult<Arc<dyn Store>> {
    let driver = PostgresDriver::connect(url, None).await?;
    Ok(Arc::new(SqlStore { driver: Box::new(driver) }))
}

/// Like [`open_postgres`], with every table in `schema` (which must already exist; lower-case
/// letters, digits and `_`). Meant for tests, which isolate each run in a fresh schema.
pub async fn open_postgres_in_schema(url: &str, schema: &str) -> StoreResult<Arc<dyn Store>> {
    let driver = PostgresDriver::connect(url, Some(schema)).await?;
    Ok(Arc::new(SqlStore { driver: Box::new(driver) }))
}

/// Opens the store named by `--storage`: `sqlite` (or empty) for `data_dir/rampart.db`,
/// `postgres://…` or `postgresql://…` for PostgreSQL.
pub async fn open(spec: &str, data_dir: &Path) -> StoreResult<Arc<dyn Store>> {
    match spec {
        "" | "sqlite" => open_sqlite(&data_dir.join("rampart.db")).await,
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => open_postgres(url).await,
        // The spec may hold a password: never echo it.
        _ => Err(StoreError::Backend("unknown storage: expected `sqlite` or a postgres:// URL".into())),
    }
}

/// The one [`Store`] implementation; the driver supplies the backend.
pub(crate) struct SqlStore {
    pub(crate) driver: Box<dyn SqlDriver>,
}

/// A SELECT assembled from fixed fragments, with its parameters alongside.
pub(crate) struct Select {
    pub(crate) sql: String,
    pub(crate) params: Vec<Value>,
}

impl Select {
    pub(crate) fn new(sql: &str, params: Vec<Value>) -> Self {
        Select { sql: sql.to_owned(), params }
    }

    pub(crate) fn and(&mut self, condition: &str, value: impl Into<Value>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.params.push(value.into());
    }

    /// Adds `AND <column> IN (…)` for a group scope; `false` when the scope is empty (nothing
    /// can match, the caller answers an empty list).
    pub(crate) fn within(&mut self, column: &str, values: &[String]) -> bool {
        if values.is_empty() {
            return false;
        }
        self.sql.push_str(&format!(" AND {column} IN ({})", crate::value::placeholders(values.len())));
        self.params.extend(values.iter().map(Value::from));
        true
    }

    /// Keyset pagination on `key`: rows after `after`, ordered by `key`, at most `limit`
    /// (0 means no limit).
    pub(crate) fn page(mut self, key: &str, after: Option<Value>, limit: u32) -> Self {
        if let Some(after) = after {
            self.and(&format!("{key} > ?"), after);
        }
        self.sql.push_str(&format!(" ORDER BY {key}"));
        if limit > 0 {
            self.sql.push_str(" LIMIT ?");
            self.params.push(i64::from(limit).into());
        }
        self
    }
}

impl SqlStore {
    pub(crate) async fn all<T>(
        &self,
        sql: &str,
        params: Vec<Value>,
        decode: fn(Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.driver.query(sql, params).await?.into_iter().map(decode).collect()
    }

    pub(crate) async fn one<T>(
        &self,
        sql: &str,
        params: Vec<Value>,
        decode: fn(Row) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.all(sql, params, decode).await?.into_iter().next().ok_or(StoreError::NotFound)
    }

    pub(crate) async fn exists(&self, sql: &str, params: Vec<Value>) -> StoreResult<bool> {
        Ok(!self.driver.query(sql, params).await?.is_empty())
    }

    pub(crate) async fn insert(&self, sql: &str, params: Vec<Value>) -> StoreResult<()> {
        self.driver.execute(sql, params).await.map(drop)
    }

    /// The row, or `None` when there is none.
    pub(crate) async fn optional<T>(
        &self,
        sql: &str,
        params: Vec<Value>,
        decode: fn(Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        Ok(self.all(sql, params, decode).await?.into_iter().next())
    }

    /// Runs an UPDATE or DELETE that must hit exactly the row named by its key.
    pub(crate) async fn change_one(&self, sql: &str, params: Vec<Value>) -> StoreResult<()> {
        match self.driver.execute(sql, params).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend_name(&self) -> &'static str {
        self.driver.backend_name()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.driver.query("SELECT 1", vec![]).await.map(drop)
    }

    async fn describe_schema(&self) -> StoreResult<Vec<(String, Vec<String>)>> {
        let rows = self.all(self.driver.schema_query(), vec![], |mut row| Ok((row.text()?, row.text()?))).await?;
        let mut tables: std::collections::BTreeMap<String, Vec<String>> = std::collections::BTreeMap::new();
        for (table, column) in rows {
            tables.entry(table).or_default().push(column);
        }
        Ok(tables
            .into_iter()
            .map(|(table, mut columns)| {
                columns.sort();
                (table, columns)
            })
            .collect())
    }
}
