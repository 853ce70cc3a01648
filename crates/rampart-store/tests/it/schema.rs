//! The schema as a whole: `describe_schema`, parity between SQLite and PostgreSQL, the
//! owned-table registry against the schema, opening and migrating (twice at once, and an
//! upgrade from schema 6 through migration 0007), the SQLite file's mode, and `open`.

use std::collections::BTreeSet;

use rampart_store::owned_tables::{NOT_TENANT_OWNED, OWNED_TABLES, OnDeviceDelete};
use rampart_store::{AuditFilter, StoreError};

use crate::support::*;

/// How many migrations `src/migrations/<backend>/` holds.
const MIGRATIONS: i64 = 10;

/// Tables of the schema that hold tenant rows but are not owned: they outlive their tenant.
const OUTLIVE_THEIR_TENANT: &[&str] = &["audit_records", "audit_checkpoints"];

conformance!(the_registry_covers_every_table_of_the_schema, |store| {
    let schema = store.describe_schema().await.expect("describe schema");
    let tables: BTreeSet<&str> = schema.iter().map(|(table, _)| table.as_str()).collect();
    let owned: BTreeSet<&str> = OWNED_TABLES.iter().map(|owned| owned.table).collect();
    let not_owned: BTreeSet<&str> = NOT_TENANT_OWNED.iter().copied().collect();
    assert_eq!(owned.len(), OWNED_TABLES.len(), "a table registered twice");
    assert!(owned.is_disjoint(&not_owned), "registered both ways: {:?}", owned.intersection(&not_owned));
    for table in &tables {
        assert!(owned.contains(table) || not_owned.contains(table), "{table} is in neither registry list");
    }
    for table in owned.iter().chain(&not_owned) {
        assert!(tables.contains(table), "registered table {table} does not exist");
    }
    for (table, columns) in &schema {
        let has = |column: &str| columns.iter().any(|c| c == column);
        if has("tenant") {
            let allowed = owned.contains(table.as_str()) || OUTLIVE_THEIR_TENANT.contains(&table.as_str());
            assert!(allowed, "{table} has a tenant column but is not in OWNED_TABLES");
        }
        if let Some(registered) = OWNED_TABLES.iter().find(|owned| owned.table == table) {
            assert!(has("tenant"), "{table} is owned but has no tenant column");
            match (registered.device_column, registered.on_device_delete) {
                // Keep means "holds no device rows": a device column would leave rows behind.
                (Some(column), OnDeviceDelete::Keep) => panic!("{table} names device column {column} but keeps it"),
                (Some(column), _) => assert!(has(column), "{table} has no device column {column}"),
                (None, OnDeviceDelete::Keep) => {}
                (None, other) => panic!("{table}: {other:?} without a device column"),
            }
            if registered.on_device_delete == OnDeviceDelete::Revoke {
                assert!(has("revoked_at"), "{table} is revoked on device deletion but has no revoked_at");
            }
        }
    }
    // Children before parents: devices after every table of device rows, groups after devices.
    let position = |name: &str| OWNED_TABLES.iter().position(|owned| owned.table == name).expect(name);
    for owned in OWNED_TABLES.iter().filter(|owned| owned.device_column.is_some() && owned.table != "devices") {
        assert!(position(owned.table) < position("devices"), "{} is deleted after devices", owned.table);
    }
    assert!(position("devices") < position("device_groups"));
});

conformance!(the_schema_lists_every_table_with_its_sorted_columns, |store| {
    let schema = store.describe_schema().await.expect("describe schema");
    let names: Vec<&str> = schema.iter().map(|(table, _)| table.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "tables sorted");
    for (table, columns) in &schema {
        let mut sorted = columns.clone();
        sorted.sort();
        assert_eq!(columns, &sorted, "{table}: columns sorted");
    }
    let columns = |table: &str| {
        schema.iter().find(|(name, _)| name == table).map(|(_, columns)| columns.clone()).unwrap_or_default()
    };
    // What migration 0007 added, on each backend.
    for (table, column) in [
        ("tenants", "uid"),
        ("users", "uid"),
        ("devices", "credentials_valid_after"),
        ("api_keys", "owner"),
        ("api_keys", "owner_uid"),
        ("api_keys", "groups_json"),
        ("trusted_cas", "fingerprint"),
        ("security_events", "incarnation"),
        ("audit_records", "incarnation"),
        ("audit_checkpoints", "incarnation"),
        ("device_telemetry", "points"),
    ] {
        assert!(columns(table).iter().any(|c| c == column), "{table}.{column} missing");
    }
    assert_eq!(columns("registration_codes"), ["code", "expires_at", "tenant"]);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_have_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = rampart_store::open_sqlite(&dir.path().join("rampart.db")).await.expect("sqlite");
    let expected = sqlite.describe_schema().await.expect("sqlite schema");
    assert!(expected.len() > 20, "the SQLite schema has every table: {expected:?}");
    let Some(url) = postgres_url() else {
        println!("schema parity skipped: {POSTGRES_ENV} is not set, there is no PostgreSQL schema to compare");
        return;
    };
    on_postgres("schema parity", &url, |raw| async move {
        let postgres = raw.open().await;
        let actual = postgres.describe_schema().await.expect("postgres schema");
        let tables = |schema: &[(String, Vec<String>)]| schema.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
        assert_eq!(tables(&actual), tables(&expected), "the same tables");
        for ((table, postgres_columns), (_, sqlite_columns)) in actual.iter().zip(&expected) {
            assert_eq!(postgres_columns, sqlite_columns, "{table}: the same columns");
        }
    })
    .await;
}

conformance!(reopening_migrates_nothing_and_shares_the_data, |store, raw| {
    store.ping().await.expect("ping");
    assert_eq!(raw.count("schema_migrations").await, MIGRATIONS, "each migration recorded once");
    create_tenant(&*store, "shared").await;
    let again = raw.open().await;
    again.ping().await.expect("ping");
    assert_eq!(raw.count("schema_migrations").await, MIGRATIONS, "reopening migrates nothing");
    again.get_tenant("shared").await.expect("visible through the other store");
});

/// Opens the store at `raw` twice at once, on a database nothing has migrated yet.
async fn two_opens_at_once(raw: Raw) {
    let (first, second) = tokio::join!(raw.open(), raw.open());
    first.ping().await.expect("first");
    second.ping().await.expect("second");
    assert_eq!(raw.count("schema_migrations").await, MIGRATIONS, "each migration recorded once");
    create_tenant(&*first, "shared").await;
    second.get_tenant("shared").await.expect("visible through the other");
}

/// The contract of `open_postgres`: several processes may migrate at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_opens_at_once_migrate_once() {
    let Some(url) = postgres_url() else {
        println!("skipped: {POSTGRES_ENV} is not set");
        return;
    };
    on_postgres("two opens at once", &url, two_opens_at_once).await;
}

/// Two first opens of one SQLite file at once both succeed: `PRAGMA journal_mode = WAL` takes
/// an exclusive lock and SQLite answers BUSY to the second connection without calling its busy
/// handler, so the store retries that switch itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_opens_at_once_migrate_once() {
    for _ in 0..100 {
        let dir = tempfile::tempdir().expect("temp dir");
        two_opens_at_once(Raw::Sqlite { path: dir.path().join("rampart.db") }).await;
    }
}

#[tokio::test]
async fn the_sqlite_database_file_is_private_and_found_by_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = rampart_store::open("sqlite", dir.path()).await.expect("open");
    assert_eq!(store.backend_name(), "sqlite");
    let path = dir.path().join("rampart.db");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("database file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "database file mode");
    }
    create_tenant(&*store, "acme").await;
    drop(store);
    let reopened = rampart_store::open("", dir.path()).await.expect("reopen with the default spec");
    reopened.get_tenant("acme").await.expect("same file");
}

#[tokio::test]
async fn unknown_storage_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    for spec in ["mysql://root:hunter2@db/rampart", "sqlite:hunter2", "Postgres://root:hunter2@db"] {
        match rampart_store::open(spec, dir.path()).await {
            Err(StoreError::Backend(message)) => assert!(!message.contains("hunter2"), "{message}"),
            Err(other) => panic!("{spec}: unexpected error {other:?}"),
            Ok(_) => panic!("{spec} accepted"),
        }
    }
}

/// The migrations before 0007, per backend.
fn migrations_before_0007(backend: &str) -> Vec<&'static str> {
    match backend {
        "sqlite" => vec![
            include_str!("../../src/migrations/sqlite/0001_initial.sql"),
            include_str!("../../src/migrations/sqlite/0002_device_data.sql"),
            include_str!("../../src/migrations/sqlite/0003_gateway.sql"),
            include_str!("../../src/migrations/sqlite/0004_security.sql"),
            include_str!("../../src/migrations/sqlite/0005_retained.sql"),
            include_str!("../../src/migrations/sqlite/0006_packed_telemetry.sql"),
        ],
        _ => vec![
            include_str!("../../src/migrations/postgres/0001_initial.sql"),
            include_str!("../../src/migrations/postgres/0002_device_data.sql"),
            include_str!("../../src/migrations/postgres/0003_gateway.sql"),
            include_str!("../../src/migrations/postgres/0004_security.sql"),
            include_str!("../../src/migrations/postgres/0005_retained.sql"),
            include_str!("../../src/migrations/postgres/0006_packed_telemetry.sql"),
        ],
    }
}

/// Builds a database at schema 6 with a tenant, its audit chain, users, API keys and a
/// security event, as a release before incarnations left it.
async fn schema_6_with_rows(raw: &Raw) {
    for ddl in migrations_before_0007(raw.backend()) {
        raw.execute_batch(ddl).await;
    }
    let (version, blob) = match raw.backend() {
        "sqlite" => ("INTEGER PRIMARY KEY NOT NULL", "X'00'"),
        _ => ("BIGINT PRIMARY KEY", "'\\x00'"),
    };
    raw.execute_batch(&format!(
        "CREATE TABLE schema_migrations (version {version});
         INSERT INTO schema_migrations (version) VALUES (1), (2), (3), (4), (5), (6);
         INSERT INTO tenants (id, name, parent, created_at) VALUES ('old', 'Old', NULL, 1);
         INSERT INTO audit_records (tenant, seq, ts, actor_type, actor_id, action, target, source_ip, outcome,
             details_json, prev_hash, hash)
         VALUES ('old', 1, 10, 'user', 'alice', 'tenant.create', 'tenant:old', NULL, 'success', '{{}}', 'p1', 'h1'),
                ('old', 2, 20, 'user', 'alice', 'login', 'user:alice', NULL, 'success', '{{}}', 'h1', 'h2');
         INSERT INTO audit_checkpoints (tenant, seq, hash, ts, signature) VALUES ('old', 2, 'h2', 30, 'sig');
         INSERT INTO api_keys (id, tenant, name, roles_json, key_hash, expires_at, created_by, created_at)
         VALUES ('k-person', 'old', 'app', '[]', {blob}, NULL, 'alice', 1),
                ('k-key', 'old', 'app', '[]', {blob}, NULL, 'api-key:k-person', 1);
         INSERT INTO security_events (tenant, id, ts, event_type, severity, source_ip, device, user_name,
             details_json)
         VALUES ('old', '0000000000000064aa', 100, 'auth_failure', 'MINOR', NULL, NULL, NULL, '{{}}');"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0007_keeps_audit_chains_append_only_and_fills_the_new_columns() {
    on_every_backend("migration 0007", |raw| async move {
        schema_6_with_rows(&raw).await;
        let store = raw.open().await;
        assert_eq!(raw.count("schema_migrations").await, MIGRATIONS);

        // The rows of before are the chain of the incarnation "" (tenants made before uids).
        let legacy = chain("old", "");
        assert_eq!(store.list_audit_chains().await.expect("chains"), [chain("old", "")]);
        let records = store.list_audit(&legacy, &AuditFilter::default(), &page(None, 0)).await.expect("list");
        assert_eq!(
            records.iter().map(|r| (r.incarnation.as_str(), r.seq, r.hash.as_str())).collect::<Vec<_>>(),
            [("", 1, "h1"), ("", 2, "h2")]
        );
        assert_eq!(
            store.list_audit_checkpoints(&legacy).await.expect("checkpoints"),
            [rampart_store::AuditCheckpoint {
                tenant: "old".into(),
                incarnation: String::new(),
                seq: 2,
                hash: "h2".into(),
                ts: 30,
                signature: "sig".into(),
            }]
        );
        assert_eq!(store.get_tenant("old").await.expect("tenant").uid, "");
        let events = store.list_security_events("old", "", &Default::default(), &page(None, 0)).await.expect("events");
        assert_eq!(events.len(), 1);
        let person = store.get_api_key("k-person").await.expect("key");
        assert_eq!((person.owner.as_str(), person.owner_uid.as_str(), person.groups.len()), ("alice", "", 0));
        assert_eq!(store.get_api_key("k-key").await.expect("key").owner, "", "a key made by a key acts for nobody");

        // The rebuilt (SQLite) or altered (PostgreSQL) audit tables still refuse changes.
        for sql in [
            "UPDATE audit_records SET action = 'nothing' WHERE tenant = 'old'",
            "UPDATE audit_records SET incarnation = 'forged' WHERE tenant = 'old'",
            "DELETE FROM audit_records WHERE tenant = 'old'",
            "UPDATE audit_checkpoints SET hash = 'forged' WHERE tenant = 'old'",
            "DELETE FROM audit_checkpoints",
        ] {
            let error = raw.execute(sql).await.expect_err(sql);
            assert!(error.contains("append-only"), "{sql}: {error}");
        }
        // The legacy chain goes on, and a new incarnation's chain starts at seq 1 beside it.
        store.insert_audit(&audit(&legacy, 3, "login", "alice")).await.expect("legacy chain goes on");
        assert_conflict(store.insert_audit(&audit(&legacy, 2, "login", "alice")).await);
        store.insert_audit(&audit(&chain("old", "new-uid"), 1, "login", "alice")).await.expect("new chain");

        // The upgraded schema is the schema a fresh database gets.
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = rampart_store::open_sqlite(&dir.path().join("fresh.db")).await.expect("fresh");
        assert_eq!(store.describe_schema().await.expect("upgraded"), fresh.describe_schema().await.expect("fresh"));
    })
    .await;
}
