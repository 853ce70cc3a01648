//! The PostgreSQL driver: a deadpool of tokio-postgres connections (TLS on rustls when the URL
//! asks, see `postgres_tls`), `?` placeholders rewritten to `$n`, and [`Value`]s bound by the
//! parameter types of the prepared statement.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use crate::postgres_tls::{TlsMode, client_config, split_url};
use crate::value::{Row, SqlDriver, Statement, Value};
use crate::{StoreError, StoreResult};

/// Schema versions, applied in order at open.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres/0001_initial.sql")),
    (2, include_str!("migrations/postgres/0002_device_data.sql")),
    (3, include_str!("migrations/postgres/0003_gateway.sql")),
    (4, include_str!("migrations/postgres/0004_security.sql")),
    (5, include_str!("migrations/postgres/0005_retained.sql")),
    (6, include_str!("migrations/postgres/0006_packed_telemetry.sql")),
    (7, include_str!("migrations/postgres/0007_incarnations.sql")),
    (8, include_str!("migrations/postgres/0008_device_tombstones.sql")),
    (9, include_str!("migrations/postgres/0009_operations.sql")),
    (10, include_str!("migrations/postgres/0010_firmware.sql")),
];

/// Advisory lock key serialising migrations between processes that open the same database.
const MIGRATION_LOCK_KEY: i64 = 0x0072_616d_7061_7274; // "rampart" in ASCII

const POOL_SIZE: usize = 16;

type Param = Box<dyn ToSql + Sync + Send>;

pub(crate) struct PostgresDriver {
    pool: Pool,
}

impl PostgresDriver {
    /// Connects to `url` (`postgres://` or `postgresql://`) and migrates. With `schema`, every
    /// connection uses it as its search path (tests use one fresh schema per run).
    pub(crate) async fn connect(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let tls = split_url(url)?;
        // The URL may hold a password: never echo it.
        let mut config: tokio_postgres::Config =
            tls.url.parse().map_err(|_| StoreError::Backend("invalid PostgreSQL URL".into()))?;
        if let Some(schema) = schema {
            if !is_plain_identifier(schema) {
                return Err(StoreError::Backend("invalid PostgreSQL schema name".into()));
            }
            let options = match config.get_options() {
                Some(existing) => format!("{existing} -csearch_path={schema}"),
                None => format!("-csearch_path={schema}"),
            };
            config.options(options);
        }
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match (tls.mode, tls.root_cert.as_deref()) {
            (TlsMode::Plain, _) | (_, None) => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            (mode, Some(root_cert)) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(mode, root_cert)?);
                Manager::from_config(config, connector, manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|error| StoreError::Backend(format!("postgres pool: {error}")))?;
        let driver = PostgresDriver { pool };
        driver.migrate().await?;
        Ok(driver)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(map_pool_error)
    }

    /// Applies missing migrations in one transaction, holding a transaction-scoped advisory
    /// lock so that two processes starting at once do not race (it is released on commit or
    /// rollback, even if this process dies).
    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.map_err(map_error)?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(map_error)?;
        transaction
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .await
            .map_err(map_error)?;
        for (version, ddl) in MIGRATIONS {
            let applied = transaction
                .query_opt("SELECT version FROM schema_migrations WHERE version = $1", &[version])
                .await
                .map_err(map_error)?;
            if applied.is_none() {
                tracing::info!(version, "applying PostgreSQL schema migration");
                transaction.batch_execute(ddl).await.map_err(map_error)?;
                transaction
                    .execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version])
                    .await
                    .map_err(map_error)?;
            }
        }
        transaction.commit().await.map_err(map_error)
    }
}

#[async_trait]
impl SqlDriver for PostgresDriver {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    /// Each statement is a round trip.
    fn rows_per_insert(&self) -> usize {
        100
    }

    fn schema_query(&self) -> &'static str {
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
         WHERE table_schema = current_schema() ORDER BY table_name, column_name"
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> StoreResult<Vec<Row>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&number_placeholders(sql)).await.map_err(map_error)?;
        let params = bind(&statement, params)?;
        let rows = client.query(&statement, &param_refs(&params)).await.map_err(map_error)?;
        rows.iter().map(read_row).collect()
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> StoreResult<u64> {
        let client = self.client().await?;
        let statement = client.prepare_cached(&number_placeholders(sql)).await.map_err(map_error)?;
        let params = bind(&statement, params)?;
        client.execute(&statement, &param_refs(&params)).await.map_err(map_error)
    }

    async fn transaction(&self, statements: Vec<Statement>) -> StoreResult<()> {
        let mut client = self.client().await?;
        // Dropping the transaction without commit rolls it back.
        let transaction = client.transaction().await.map_err(map_error)?;
        for statement in statements {
            let prepared = transaction.prepare_cached(&number_placeholders(&statement.sql)).await.map_err(map_error)?;
            let params = bind(&prepared, statement.params)?;
            let changed = transaction.execute(&prepared, &param_refs(&params)).await.map_err(map_error)?;
            if statement.must_change_row && changed == 0 {
                return Err(StoreError::NotFound);
            }
        }
        transaction.commit().await.map_err(map_error)
    }
}

/// Rewrites `?` placeholders to `$1, $2, …`, leaving quoted literals and identifiers alone.
pub(crate) fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut count = 0;
    let mut quote = None;
    for character in sql.chars() {
        match (quote, character) {
            (Some(open), _) => {
                // A doubled quote ('') closes and reopens, which this handles for free.
                if character == open {
                    quote = None;
                }
                out.push(character);
            }
            (None, '\'' | '"') => {
                quote = Some(character);
                out.push(character);
            }
            (None, '?') => {
                count += 1;
                out.push('$');
                out.push_str(&count.to_string());
            }
            (None, _) => out.push(character),
        }
    }
    out
}

fn is_plain_identifier(name: &str) -> bool {
    let mut characters = name.chars();
    matches!(characters.next(), Some('a'..='z' | '_'))
        && characters.all(|character| matches!(character, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
}

/// Binds each value with the Rust type matching the statement's parameter type, so that a
/// NULL is a typed NULL and an integer fits an INT4 or BOOLEAN column.
fn bind(statement: &tokio_postgres::Statement, values: Vec<Value>) -> StoreResult<Vec<Param>> {
    let types = statement.params();
    if types.len() != values.len() {
        return Err(StoreError::Backend(format!("statement has {} parameters, {} given", types.len(), values.len())));
    }
    values.into_iter().zip(types).enumerate().map(|(index, (value, ty))| to_param(index, value, ty)).collect()
}

fn to_param(index: usize, value: Value, ty: &Type) -> StoreResult<Param> {
    let mismatch = || StoreError::Backend(format!("parameter {} does not fit type {ty}", index + 1));
    let int = |value: Option<i64>| -> StoreResult<Param> {
        match *ty {
            Type::INT8 => Ok(Box::new(value)),
            Type::INT4 => Ok(Box::new(value.map(i32::try_from).transpose().map_err(|_| mismatch())?)),
            Type::INT2 => Ok(Box::new(value.map(i16::try_from).transpose().map_err(|_| mismatch())?)),
            Type::BOOL => Ok(Box::new(value.map(|value| value != 0))),
            _ => Err(mismatch()),
        }
    };
    match (value, ty) {
        (Value::Null, &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => Ok(Box::new(None::<String>)),
        (Value::Null, &Type::BYTEA) => Ok(Box::new(None::<Vec<u8>>)),
        (Value::Null, _) => int(None),
        (Value::Int(value), _) => int(Some(value)),
        (Value::Text(value), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => Ok(Box::new(value)),
        (Value::Blob(value), &Type::BYTEA) => Ok(Box::new(value)),
        _ => Err(mismatch()),
    }
}

fn param_refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|param| param.as_ref() as &(dyn ToSql + Sync)).collect()
}

fn read_row(row: &tokio_postgres::Row) -> StoreResult<Row> {
    let values = row
        .columns()
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let corrupt = |_| StoreError::Corrupt(format!("column {} could not be decoded", index + 1));
            match *column.type_() {
                Type::INT8 => row.try_get::<_, Option<i64>>(index).map(|value| value.map(Value::Int)),
                Type::INT4 => row.try_get::<_, Option<i32>>(index).map(|value| value.map(|v| Value::Int(v.into()))),
                Type::INT2 => row.try_get::<_, Option<i16>>(index).map(|value| value.map(|v| Value::Int(v.into()))),
                Type::BOOL => row.try_get::<_, Option<bool>>(index).map(|value| value.map(|v| Value::Int(v.into()))),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                    row.try_get::<_, Option<String>>(index).map(|value| value.map(Value::Text))
                }
                Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(index).map(|value| value.map(Value::Blob)),
                ref other => {
                    return Err(StoreError::Corrupt(format!("column {} has unsupported type {other}", index + 1)));
                }
            }
            .map(|value| value.unwrap_or(Value::Null))
            .map_err(corrupt)
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Row::new(values))
}

/// Maps a PostgreSQL error to a short [`StoreError`]. The server's DETAIL (which can quote
/// key values) is left out; code and message are enough for the log.
fn map_error(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => StoreError::Conflict("duplicate key".into()),
        Some(db) if *db.code() == SqlState::FOREIGN_KEY_VIOLATION => {
            StoreError::Conflict("referenced row is missing or still referenced".into())
        }
        Some(db) => StoreError::Backend(format!("postgres {}: {}", db.code().code(), db.message())),
        // The source says why (a certificate refused, a connection reset); it never carries
        // the URL, so the password stays out of the message.
        None => match std::error::Error::source(&error) {
            Some(reason) => StoreError::Backend(format!("postgres: {error}: {reason}")),
            None => StoreError::Backend(format!("postgres: {error}")),
        },
    }
}

fn map_pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => map_error(error),
        other => StoreError::Backend(format!("postgres pool: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::number_placeholders;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        let check = |sql: &str, expected: &str| assert_eq!(number_placeholders(sql), expected, "{sql}");
        check("SELECT 1", "SELECT 1");
        check("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = $1 AND c = $2");
        check("SELECT '?' , ? FROM t", "SELECT '?' , $1 FROM t");
        check("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1");
        check("SELECT \"odd?name\" FROM t WHERE x IN (?, ?, ?)", "SELECT \"odd?name\" FROM t WHERE x IN ($1, $2, $3)");
        check("VALUES (?,?,?,?,?,?,?,?,?,?,?)", "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)");
    }
}
