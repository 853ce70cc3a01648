//! The SQLite driver, in WAL mode with foreign keys on. One connection behind a mutex, used
//! from `spawn_blocking`, serves every call and fsyncs at each commit (`synchronous = FULL`).
//! A second connection serves only [`SqlDriver::transaction_durable_later`] (device-data group
//! commits): it commits without fsync (`synchronous = NORMAL`), and the [`WalSyncer`] thread
//! then fsyncs the WAL once for every commit made since its last sync. The next batch is thus
//! written while the previous one is being flushed, and no caller is told "durable" before the
//! fsync that covers its commit has returned. A third connection, on the [`Checkpointer`]
//! thread, copies the WAL back into the database every 250 ms, so no commit runs a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, ffi, params_from_iter};

use crate::value::{Row, SqlDriver, Statement, Value};
use crate::{Durable, StoreError, StoreResult};

/// Schema versions, applied in order at open.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_initial.sql")),
    (2, include_str!("migrations/sqlite/0002_device_data.sql")),
    (3, include_str!("migrations/sqlite/0003_gateway.sql")),
    (4, include_str!("migrations/sqlite/0004_security.sql")),
    (5, include_str!("migrations/sqlite/0005_retained.sql")),
    (6, include_str!("migrations/sqlite/0006_packed_telemetry.sql")),
    (7, include_str!("migrations/sqlite/0007_incarnations.sql")),
    (8, include_str!("migrations/sqlite/0008_device_tombstones.sql")),
    (9, include_str!("migrations/sqlite/0009_operations.sql")),
    (10, include_str!("migrations/sqlite/0010_firmware.sql")),
];

pub(crate) struct SqliteDriver {
    connection: Arc<Mutex<Connection>>,
    /// Commits without fsync; see the module documentation.
    batch_connection: Arc<Mutex<Connection>>,
    syncer: WalSyncer,
    _checkpointer: Checkpointer,
}

impl SqliteDriver {
    /// Opens (creating it with mode 0600 if needed) and migrates the database at `path`.
    pub(crate) async fn open(path: &Path) -> StoreResult<Self> {
        let path = path.to_owned();
        let (connection, batch_connection, checkpoint_connection, wal_path) =
            tokio::task::spawn_blocking(move || -> StoreResult<(Connection, Connection, Connection, PathBuf)> {
                create_private_file(&path)?;
                let mut connection = open_connection(&path, "FULL")?;
                migrate(&mut connection)?;
                let batch_connection = open_connection(&path, "NORMAL")?;
                let checkpoint_connection = open_connection(&path, "FULL")?;
                let mut wal_path = path.into_os_string();
                wal_path.push("-wal");
                Ok((connection, batch_connection, checkpoint_connection, PathBuf::from(wal_path)))
            })
            .await
            .map_err(|error| StoreError::Backend(format!("sqlite open task: {error}")))??;
        Ok(SqliteDriver {
            connection: Arc::new(Mutex::new(connection)),
            batch_connection: Arc::new(Mutex::new(batch_connection)),
            syncer: WalSyncer::start(wal_path)?,
            _checkpointer: Checkpointer::start(checkpoint_connection)?,
        })
    }
}

/// Runs `work` on a blocking thread with the connection locked.
async fn with<T, F>(connection: &Arc<Mutex<Connection>>, work: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
{
    let connection = Arc::clone(connection);
    tokio::task::spawn_blocking(move || {
        let mut connection =
            connection.lock().map_err(|_| StoreError::Backend("sqlite connection mutex poisoned".into()))?;
        work(&mut connection)
    })
    .await
    .map_err(|error| StoreError::Backend(format!("sqlite task: {error}")))?
}

/// How long a connection waits for another one's lock before answering "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches the database to WAL. The switch needs an exclusive lock and SQLite answers BUSY
/// for it without calling the busy handler, so two first opens of one file at once retry here,
/// with backoff, up to the busy timeout.
fn enter_wal_mode(connection: &Connection) -> StoreResult<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match connection.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other.map_err(map_error),
        }
    }
}

/// Opens one connection in WAL mode with the given `synchronous` level (`FULL` or `NORMAL`).
fn open_connection(path: &Path, synchronous: &str) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags).map_err(map_error)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(map_error)?;
    enter_wal_mode(&connection)?;
    // A 32 MiB page cache (instead of 2 MiB): group commits of device data dirty many index
    // pages, and re-reading them halved ingest throughput. Checkpoints are the
    // [`Checkpointer`]'s; a committing connection runs one only past the safety limit.
    connection
        .execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = {SAFETY_CHECKPOINT_PAGES};"
        ))
        .map_err(map_error)?;
    Ok(connection)
}

/// How often the [`Checkpointer`] copies the WAL back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// A committing connection checkpoints by itself only past this many WAL pages (~400 MB).
/// Under sustained writes the background checkpoints copy everything but never find the WAL
/// idle, so SQLite cannot start it over; the commit that crosses this limit checkpoints the
/// little left and the WAL restarts from the beginning. The WAL file thus grows to ~400 MB
/// under sustained load (PostgreSQL's `max_wal_size` is 1 GB by default). 16,384 pages with
/// a checkpoint every 100 ms kept it at ~70 MB but raised the ack p99 at 16k msgs/s from
/// 4.7-5.8 to 7.0-17.6 ms and flat out from 15-18 to 21 ms.
const SAFETY_CHECKPOINT_PAGES: u32 = 100_000;

/// The thread that checkpoints the WAL on a connection of its own, so that no commit waits for
/// one. A checkpoint inside a commit (SQLite's default) held the group-commit writer for up to
/// ~10 ms a few times a second, and the messages arriving meanwhile made the p99 of
/// acknowledgements. `PASSIVE` checkpoints never wait for, or block, readers and writers; the
/// checkpoint fsyncs the WAL before copying and the database after (`synchronous = FULL`).
struct Checkpointer {
    /// Dropped with the driver; the thread then ends.
    _stop: std::sync::mpsc::Sender<()>,
}

impl Checkpointer {
    fn start(connection: Connection) -> StoreResult<Checkpointer> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    let started = std::time::Instant::now();
                    let pages = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                    });
                    match pages {
                        Ok((in_wal, copied)) => tracing::trace!(
                            in_wal,
                            copied,
                            checkpoint_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                            "WAL checkpointed"
                        ),
                        Err(error) => tracing::warn!(error = %map_error(error), "WAL checkpoint failed"),
                    }
                }
            })
            .map_err(|error| StoreError::Backend(format!("starting the checkpoint thread: {error}")))?;
        Ok(Checkpointer { _stop: stop })
    }
}

/// The thread that makes `synchronous = NORMAL` commits durable: each request is sent after
/// its commit returned, and answered after an fsync of the WAL file that began after that.
/// Requests that arrive during an fsync share the next one.
struct WalSyncer {
    requests: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<StoreResult<()>>>,
}

impl WalSyncer {
    fn start(wal_path: PathBuf) -> StoreResult<WalSyncer> {
        let (requests, incoming) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<StoreResult<()>>>();
        std::thread::Builder::new()
            .name("sqlite-wal-sync".into())
            .spawn(move || {
                // Ends when the driver (the only sender) is dropped.
                while let Ok(first) = incoming.recv() {
                    let waiters: Vec<_> = std::iter::once(first).chain(incoming.try_iter()).collect();
                    let started = std::time::Instant::now();
                    let synced = sync_file(&wal_path);
                    tracing::trace!(
                        commits = waiters.len(),
                        sync_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                        "WAL synced"
                    );
                    for waiter in waiters {
                        let _caller_gone_is_fine = waiter.send(synced.clone().map_err(StoreError::Backend));
                    }
                }
            })
            .map_err(|error| StoreError::Backend(format!("starting the WAL sync thread: {error}")))?;
        Ok(WalSyncer { requests })
    }

    /// Resolves once everything committed before this call is on disk.
    fn request(&self) -> Durable {
        let (done, synced) = tokio::sync::oneshot::channel();
        if let Err(refused) = self.requests.send(done) {
            let _caller_waits_below = refused.0.send(Err(StoreError::Backend("the WAL sync thread stopped".into())));
        }
        Durable::later(synced)
    }
}

/// fsyncs the file at `path`. It is opened afresh each time (fsync flushes the file, whichever
/// descriptor wrote it), so a WAL file SQLite re-created is never missed.
fn sync_file(path: &Path) -> Result<(), String> {
    std::fs::File::open(path).and_then(|file| file.sync_data()).map_err(|error| format!("fsync of the WAL: {error}"))
}

/// Creates the database file readable by its owner only, and tightens an existing one.
fn create_private_file(path: &Path) -> StoreResult<()> {
    let io_error = |error: std::io::Error| StoreError::Backend(format!("creating the database file: {error}"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path).map_err(io_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error)?;
    }
    #[cfg(not(unix))]
    options.open(path).map_err(io_error)?;
    Ok(())
}

fn migrate(connection: &mut Connection) -> StoreResult<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_error)?;
    transaction
        .execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY NOT NULL)")
        .map_err(map_error)?;
    for (version, ddl) in MIGRATIONS {
        let applied: i64 = transaction
            .query_row("SELECT COUNT(*) FROM schema_migrations WHERE version = ?", [version], |row| row.get(0))
            .map_err(map_error)?;
        if applied == 0 {
            tracing::info!(version, "applying SQLite schema migration");
            transaction.execute_batch(ddl).map_err(map_error)?;
            transaction.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version]).map_err(map_error)?;
        }
    }
    transaction.commit().map_err(map_error)
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(value) => ValueRef::Integer(*value),
            Value::Text(value) => ValueRef::Text(value.as_bytes()),
            Value::Blob(value) => ValueRef::Blob(value),
        }))
    }
}

fn read_value(value: ValueRef<'_>) -> StoreResult<Value> {
    match value {
        ValueRef::Null => Ok(Value::Null),
        ValueRef::Integer(value) => Ok(Value::Int(value)),
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
            .map(Value::Text)
            .map_err(|_| StoreError::Corrupt("text column is not UTF-8".into())),
        ValueRef::Blob(bytes) => Ok(Value::Blob(bytes.to_vec())),
        ValueRef::Real(_) => Err(StoreError::Corrupt("unexpected floating-point column".into())),
    }
}

fn run_query(connection: &Connection, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
    let mut statement = connection.prepare_cached(sql).map_err(map_error)?;
    let columns = statement.column_count();
    let mut rows = statement.query(params_from_iter(params)).map_err(map_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_error)? {
        let values = (0..columns)
            .map(|index| row.get_ref(index).map_err(map_error).and_then(read_value))
            .collect::<StoreResult<Vec<_>>>()?;
        out.push(Row::new(values));
    }
    Ok(out)
}

fn run_execute(connection: &Connection, sql: &str, params: &[Value]) -> StoreResult<u64> {
    let mut statement = connection.prepare_cached(sql).map_err(map_error)?;
    let changed = statement.execute(params_from_iter(params)).map_err(map_error)?;
    Ok(changed as u64)
}

#[async_trait]
impl SqlDriver for SqliteDriver {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    /// In process, statements cost no round trip, and an INSERT of several rows that can fail
    /// on a constraint makes SQLite keep a statement journal (a copy of every page it touches)
    /// to undo just that statement; one row per statement needs none.
    fn rows_per_insert(&self) -> usize {
        1
    }

    fn schema_query(&self) -> &'static str {
        "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.name"
    }

    async fn query(&self, sql: &str, params: Vec<Value>) -> StoreResult<Vec<Row>> {
        let sql = sql.to_owned();
        with(&self.connection, move |connection| run_query(connection, &sql, &params)).await
    }

    async fn execute(&self, sql: &str, params: Vec<Value>) -> StoreResult<u64> {
        let sql = sql.to_owned();
        with(&self.connection, move |connection| run_execute(connection, &sql, &params)).await
    }

    async fn transaction(&self, statements: Vec<Statement>) -> StoreResult<()> {
        with(&self.connection, move |connection| run_transaction(connection, &statements)).await
    }

    async fn transaction_durable_later(&self, statements: Vec<Statement>) -> StoreResult<Durable> {
        with(&self.batch_connection, move |connection| run_transaction(connection, &statements)).await?;
        Ok(self.syncer.request())
    }
}

fn run_transaction(connection: &mut Connection, statements: &[Statement]) -> StoreResult<()> {
    // Dropping the transaction without commit rolls it back.
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map_error)?;
    for statement in statements {
        let changed = run_execute(&transaction, &statement.sql, &statement.params)?;
        if statement.must_change_row && changed == 0 {
            return Err(StoreError::NotFound);
        }
    }
    transaction.commit().map_err(map_error)
}

/// Maps a SQLite error to a short [`StoreError`] without SQL text or parameter values.
fn map_error(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, message) if failure.code == ErrorCode::ConstraintViolation => {
            match failure.extended_code {
                ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE => {
                    StoreError::Conflict("duplicate key".into())
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    StoreError::Conflict("referenced row is missing or still referenced".into())
                }
                _ => StoreError::Backend(format!("sqlite constraint: {}", message.as_deref().unwrap_or("violated"))),
            }
        }
        rusqlite::Error::SqliteFailure(failure, message) => {
            StoreError::Backend(format!("sqlite {:?}: {}", failure.code, message.as_deref().unwrap_or("no message")))
        }
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            StoreError::Backend(format!("sqlite SQL error at {offset}: {msg}"))
        }
        _ => StoreError::Backend(format!("sqlite: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group commits never checkpoint (the safety limit is ~400 MB), so only the checkpointer
    /// can bring committed pages into the database file itself.
    #[tokio::test]
    async fn the_checkpointer_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("rampart.db");
        let driver = SqliteDriver::open(&path).await.expect("open");
        driver.execute("CREATE TABLE scratch (data BLOB NOT NULL)", Vec::new()).await.expect("create");
        let size_before = std::fs::metadata(&path).expect("db file").len();
        let row = vec![7u8; 2048];
        let statements =
            (0..1024).map(|_| Statement::new("INSERT INTO scratch (data) VALUES (?)", vec![(&row).into()])).collect();
        let durable = driver.transaction_durable_later(statements).await.expect("commit");
        durable.wait().await.expect("durable");
        let written = 1024 * 2048;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let size = std::fs::metadata(&path).expect("db file").len();
            if size >= size_before + written {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "database file still {size} bytes: no checkpoint ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
