//! Shared machinery of the suite: the backends every check runs on (SQLite in a temp dir;
//! PostgreSQL in a fresh schema when `RAMPART_TEST_POSTGRES` is set), raw SQL access to them
//! (to prove what the storage itself holds or refuses), assertions, and row builders.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rampart_core::{DeviceStatus, SecurityEventType, Severity};
use rampart_store::prelude::*;
use rampart_store::{
    AlarmClear, AlarmRaise, ApiKey, AttestationRow, AuditChain, AuditCheckpoint, AuditRecord, Device,
    DeviceCertificate, DeviceDataBatch, DeviceDataRow, DeviceEventRow, DeviceKey, DeviceSeen, DeviceToken, Group, Page,
    RetainedChange, RetainedMessageRow, Role, SecurityEvent, StoreError, StoreResult, TelemetryRow, Tenant, TenantCa,
    TenantKey, TimeRange, TrustedCa, TwinReportedRow, User,
};

/// The environment variable naming the PostgreSQL server of the suite.
pub(crate) const POSTGRES_ENV: &str = "RAMPART_TEST_POSTGRES";

/// The PostgreSQL URL of the suite, if one is set.
pub(crate) fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|url| !url.is_empty())
}

/// Where one run of a check keeps its data, with raw SQL access beside the store.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Sqlite { path: PathBuf },
    Postgres { url: String, schema: String },
}

/// A column value read with raw SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawValue {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl RawValue {
    pub(crate) fn int(&self) -> i64 {
        match self {
            RawValue::Int(value) => *value,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    pub(crate) fn blob(&self) -> Vec<u8> {
        match self {
            RawValue::Blob(value) => value.clone(),
            other => panic!("expected a blob, got {other:?}"),
        }
    }
}

impl Raw {
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Raw::Sqlite { .. } => "sqlite",
            Raw::Postgres { .. } => "postgres",
        }
    }

    /// Opens (and migrates) the store over this location.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        let store = match self {
            Raw::Sqlite { path } => rampart_store::open_sqlite(path).await,
            Raw::Postgres { url, schema } => rampart_store::open_postgres_in_schema(url, schema).await,
        };
        let store = store.unwrap_or_else(|error| panic!("opening the {} store: {error}", self.backend()));
        assert_eq!(store.backend_name(), self.backend());
        store
    }

    /// Runs one statement with raw SQL; `Err` carries the backend's message.
    pub(crate) async fn execute(&self, sql: &str) -> Result<u64, String> {
        match self {
            Raw::Sqlite { path } => {
                let (path, sql) = (path.clone(), sql.to_owned());
                tokio::task::spawn_blocking(move || {
                    let connection = sqlite_connection(&path);
                    connection.execute(&sql, []).map(|changed| changed as u64).map_err(|error| error.to_string())
                })
                .await
                .expect("sqlite task")
            }
            Raw::Postgres { url, schema } => {
                let client = raw_postgres(url, Some(schema)).await;
                client.execute(sql, &[]).await.map_err(|error| format!("{error:?}"))
            }
        }
    }

    /// Runs a batch of statements (DDL) with raw SQL.
    pub(crate) async fn execute_batch(&self, sql: &str) {
        match self {
            Raw::Sqlite { path } => {
                let (path, sql) = (path.clone(), sql.to_owned());
                tokio::task::spawn_blocking(move || {
                    sqlite_connection(&path).execute_batch(&sql).unwrap_or_else(|error| panic!("{sql}: {error}"))
                })
                .await
                .expect("sqlite task")
            }
            Raw::Postgres { url, schema } => {
                let client = raw_postgres(url, Some(schema)).await;
                client.batch_execute(sql).await.unwrap_or_else(|error| panic!("{sql}: {error:?}"))
            }
        }
    }

    /// The rows a raw query answers (integers, text, blobs and NULLs).
    pub(crate) async fn query(&self, sql: &str) -> Vec<Vec<RawValue>> {
        match self {
            Raw::Sqlite { path } => {
                let (path, sql) = (path.clone(), sql.to_owned());
                tokio::task::spawn_blocking(move || {
                    let connection = sqlite_connection(&path);
                    let mut statement = connection.prepare(&sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
                    let columns = statement.column_count();
                    let rows = statement.query_map([], |row| {
                        (0..columns)
                            .map(|index| {
                                Ok(match row.get_ref(index)? {
                                    rusqlite::types::ValueRef::Null => RawValue::Null,
                                    rusqlite::types::ValueRef::Integer(value) => RawValue::Int(value),
                                    rusqlite::types::ValueRef::Text(text) => {
                                        RawValue::Text(String::from_utf8_lossy(text).into_owned())
                                    }
                                    rusqlite::types::ValueRef::Blob(blob) => RawValue::Blob(blob.to_vec()),
                                    rusqlite::types::ValueRef::Real(value) => panic!("unexpected real {value}"),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<_>>>()
                    });
                    rows.and_then(Iterator::collect).unwrap_or_else(|error| panic!("{sql}: {error}"))
                })
                .await
                .expect("sqlite task")
            }
            Raw::Postgres { url, schema } => {
                use tokio_postgres::types::Type;
                let client = raw_postgres(url, Some(schema)).await;
                let rows = client.query(sql, &[]).await.unwrap_or_else(|error| panic!("{sql}: {error:?}"));
                rows.iter()
                    .map(|row| {
                        row.columns()
                            .iter()
                            .enumerate()
                            .map(|(index, column)| {
                                let value = match *column.type_() {
                                    Type::INT8 => row.get::<_, Option<i64>>(index).map(RawValue::Int),
                                    Type::INT4 => row.get::<_, Option<i32>>(index).map(|v| RawValue::Int(v.into())),
                                    Type::INT2 => row.get::<_, Option<i16>>(index).map(|v| RawValue::Int(v.into())),
                                    Type::BOOL => row.get::<_, Option<bool>>(index).map(|v| RawValue::Int(v.into())),
                                    Type::BYTEA => row.get::<_, Option<Vec<u8>>>(index).map(RawValue::Blob),
                                    _ => row.get::<_, Option<String>>(index).map(RawValue::Text),
                                };
                                value.unwrap_or(RawValue::Null)
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    /// `SELECT COUNT(*) FROM <from_where>`.
    pub(crate) async fn count(&self, from_where: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {from_where}");
        let rows = self.query(&sql).await;
        rows.first().and_then(|row| row.first()).unwrap_or_else(|| panic!("{sql}: no row")).int()
    }
}

fn sqlite_connection(path: &std::path::Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).expect("raw sqlite connection");
    connection.busy_timeout(std::time::Duration::from_secs(10)).expect("busy timeout");
    connection
}

/// A plain (no TLS) client of the PostgreSQL server, with `schema` as its search path.
pub(crate) async fn raw_postgres(url: &str, schema: Option<&str>) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("raw postgres");
    tokio::spawn(connection);
    if let Some(schema) = schema {
        client.batch_execute(&format!("SET search_path TO {schema}")).await.expect("search path");
    }
    client
}

/// A schema name no other run uses (lower-case letters, digits, `_`).
pub(crate) fn fresh_schema_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("rt_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs `body` on a fresh SQLite database, then on a fresh PostgreSQL schema when the suite
/// has a server (printing why not otherwise).
pub(crate) async fn on_every_backend<F, Fut>(name: &str, body: F)
where
    F: Fn(Raw) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    println!("{name}: on sqlite");
    body(Raw::Sqlite { path: dir.path().join("rampart.db") }).await;
    match postgres_url() {
        Some(url) => on_postgres(name, &url, body).await,
        None => println!("{name}: PostgreSQL half skipped: {POSTGRES_ENV} is not set"),
    }
}

/// Runs `body` on a fresh PostgreSQL schema and drops the schema afterwards, also when the
/// body panics (the panic is then passed on).
pub(crate) async fn on_postgres<F, Fut>(name: &str, url: &str, body: F)
where
    F: FnOnce(Raw) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = fresh_schema_name();
    println!("{name}: on postgres (schema {schema})");
    let admin = raw_postgres(url, None).await;
    admin.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create schema");
    let outcome = tokio::spawn(body(Raw::Postgres { url: url.to_owned(), schema: schema.clone() })).await;
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("drop schema");
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("{name} on postgres: {error}"),
        }
    }
}

/// Runs `count` copies of a task at once and collects their answers.
pub(crate) async fn concurrently<T, F, Fut>(count: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(count));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let (start, task) = (Arc::clone(&start), make(index));
        tasks.spawn(async move {
            start.wait().await;
            task.await
        });
    }
    let mut answers = Vec::with_capacity(count);
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("concurrent task"));
    }
    answers
}

// ---- assertions ----

#[track_caller]
pub(crate) fn assert_not_found<T: Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn assert_conflict<T: Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

// ---- small values ----

pub(crate) fn page(after: Option<&str>, limit: u32) -> Page {
    Page { after: after.map(str::to_owned), limit }
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

pub(crate) fn range<K>(
    from: Option<i64>,
    to: Option<i64>,
    after: Option<(i64, K)>,
    descending: bool,
    limit: u32,
) -> TimeRange<K> {
    TimeRange { from, to, after, descending, limit }
}

/// Every row, ascending.
pub(crate) fn everything<K>() -> TimeRange<K> {
    range(None, None, None, false, 0)
}

// ---- tenancy ----

pub(crate) fn tenant(id: &str) -> Tenant {
    Tenant { id: id.into(), uid: format!("{id}-uid-1"), name: format!("Tenant {id}"), parent: None, created_at: 1_000 }
}

pub(crate) fn child_tenant(id: &str, parent: &str) -> Tenant {
    Tenant { parent: Some(parent.into()), ..tenant(id) }
}

pub(crate) async fn create_tenant(store: &dyn Store, id: &str) -> Tenant {
    let row = tenant(id);
    store.create_tenant(&row).await.unwrap_or_else(|error| panic!("create tenant {id}: {error}"));
    row
}

pub(crate) fn tenant_key(tenant: &str, key_id: &str, created_at: i64) -> TenantKey {
    TenantKey { tenant: tenant.into(), key_id: key_id.into(), wrapped: key_id.as_bytes().to_vec(), created_at }
}

// ---- people ----

pub(crate) fn user(tenant: &str, username: &str) -> User {
    User {
        tenant: tenant.into(),
        username: username.into(),
        uid: format!("{username}-uid-1"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        roles: strings(&["operator"]),
        groups: Vec::new(),
        disabled: false,
        token_version: 1,
        mfa_enabled: false,
        mfa_secret_sealed: None,
        mfa_pending_sealed: None,
        mfa_last_step: 0,
        email_sealed: None,
        failed_logins: 0,
        failed_window_start: 0,
        locked_until: 0,
        password_changed_at: 1_000,
        created_at: 1_000,
    }
}

pub(crate) async fn create_user(store: &dyn Store, tenant: &str, username: &str) -> User {
    let row = user(tenant, username);
    store.create_user(&row).await.unwrap_or_else(|error| panic!("create user {username}: {error}"));
    row
}

pub(crate) fn role(tenant: &str, name: &str) -> Role {
    Role {
        tenant: tenant.into(),
        name: name.into(),
        permissions: strings(&["devices:read", "telemetry:read"]),
        created_at: 1,
    }
}

pub(crate) fn group(tenant: &str, id: &str, parent: Option<&str>) -> Group {
    Group {
        tenant: tenant.into(),
        id: id.into(),
        name: format!("Group {id}"),
        parent: parent.map(Into::into),
        created_at: 2_000,
    }
}

pub(crate) fn api_key(tenant: &str, id: &str, owner: &str, owner_uid: &str) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("app {id}"),
        roles: strings(&["viewer"]),
        groups: Vec::new(),
        key_hash: format!("hash of {id}").into_bytes(),
        expires_at: None,
        created_by: owner.into(),
        owner: owner.into(),
        owner_uid: owner_uid.into(),
        created_at: 1,
    }
}

// ---- devices and credentials ----

pub(crate) fn device(tenant: &str, id: &str, group: Option<&str>) -> Device {
    Device {
        tenant: tenant.into(),
        id: id.into(),
        name: format!("Device {id}"),
        device_type: None,
        group: group.map(Into::into),
        attributes_json: "{}".into(),
        required_interval_s: None,
        status: DeviceStatus::Registered,
        connected: false,
        last_seen: None,
        last_address: None,
        firmware: None,
        credentials_valid_after: 0,
        created_at: 3_000,
    }
}

pub(crate) fn device_key(tenant: &str, device: &str) -> DeviceKey {
    DeviceKey {
        tenant: tenant.into(),
        device: device.into(),
        tenant_key_id: "k1".into(),
        wrapped: format!("key of {tenant}/{device}").into_bytes(),
    }
}

/// Creates the device (with its data key) and answers it as stored.
pub(crate) async fn create_device(store: &dyn Store, row: &Device) -> Device {
    store
        .create_device(row, &device_key(&row.tenant, &row.id))
        .await
        .unwrap_or_else(|error| panic!("create device {}/{}: {error}", row.tenant, row.id));
    row.clone()
}

pub(crate) fn token(tenant: &str, device: &str, id: &str) -> DeviceToken {
    DeviceToken {
        tenant: tenant.into(),
        device: device.into(),
        id: id.into(),
        token_hash: token_hash(tenant, device, id),
        created_at: 4_000,
    }
}

pub(crate) fn token_hash(tenant: &str, device: &str, id: &str) -> Vec<u8> {
    format!("sha256 of {tenant}/{device}/{id}").into_bytes()
}

pub(crate) fn certificate(tenant: &str, device: &str, serial: &str) -> DeviceCertificate {
    DeviceCertificate {
        tenant: tenant.into(),
        device: device.into(),
        serial: serial.into(),
        not_after: 9_000_000,
        revoked_at: None,
        cert_pem: format!("-----BEGIN CERTIFICATE-----\n{serial}\n-----END CERTIFICATE-----\n"),
        created_at: 4_000,
    }
}

pub(crate) fn tenant_ca(tenant: &str) -> TenantCa {
    TenantCa {
        tenant: tenant.into(),
        cert_pem: format!("CA of {tenant}"),
        key_sealed: vec![8; 48],
        crl_number: 1,
        created_at: 10,
    }
}

pub(crate) fn trusted_ca(tenant: &str, id: &str, subject: &str) -> TrustedCa {
    TrustedCa {
        tenant: tenant.into(),
        id: id.into(),
        cert_pem: format!("EXT PEM {tenant}/{id}"),
        subject: subject.into(),
        auto_register: false,
        fingerprint: Some(format!("{:064x}", fingerprint_seed(tenant, id))),
        created_at: 20,
    }
}

fn fingerprint_seed(tenant: &str, id: &str) -> u128 {
    // FNV-1a: distinct, stable fingerprints per (tenant, id) without a hash crate.
    format!("{tenant}/{id}").bytes().fold(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d, |hash, byte| {
        (hash ^ u128::from(byte)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b)
    })
}

/// A device with a key, two tokens, a live and an earlier revoked certificate, `active`.
pub(crate) async fn equip(store: &dyn Store, tenant: &str, id: &str) {
    let mut row = device(tenant, id, None);
    row.status = DeviceStatus::Active;
    row.last_seen = Some(3_500);
    create_device(store, &row).await;
    store.create_device_token(&token(tenant, id, "t1")).await.expect("token t1");
    store.create_device_token(&token(tenant, id, "t2")).await.expect("token t2");
    let mut revoked = certificate(tenant, id, &format!("{id}-old"));
    revoked.revoked_at = Some(7);
    store.create_device_certificate(&revoked).await.expect("revoked certificate");
    store.create_device_certificate(&certificate(tenant, id, &format!("{id}-live"))).await.expect("live certificate");
}

/// What [`equip`] made is all still there.
pub(crate) async fn assert_equipped(store: &dyn Store, tenant: &str, id: &str) {
    let row = store.get_device(tenant, id).await.expect("equipped device");
    assert_eq!((row.status, row.credentials_valid_after), (DeviceStatus::Active, 0), "{tenant}/{id}");
    store.get_device_key(tenant, id).await.expect("equipped key");
    assert_eq!(store.list_device_tokens(tenant, id).await.expect("tokens").len(), 2, "{tenant}/{id} tokens");
    let certificates = store.list_device_certificates(tenant, id).await.expect("certificates");
    let revoked: Vec<Option<i64>> = certificates.iter().map(|c| c.revoked_at).collect();
    assert_eq!(revoked, [None, Some(7)], "{tenant}/{id}: live and old certificate");
}

// ---- audit and security ----

pub(crate) fn chain(tenant: &str, incarnation: &str) -> AuditChain {
    AuditChain { tenant: tenant.into(), incarnation: incarnation.into() }
}

pub(crate) fn audit(chain: &AuditChain, seq: i64, action: &str, actor: &str) -> AuditRecord {
    AuditRecord {
        tenant: chain.tenant.clone(),
        incarnation: chain.incarnation.clone(),
        seq,
        ts: 10_000 + seq * 1_000,
        actor_type: "user".into(),
        actor_id: actor.into(),
        action: action.into(),
        target: format!("target-{seq}"),
        source_ip: (seq % 2 == 0).then(|| "192.0.2.1".to_owned()),
        outcome: "success".into(),
        details_json: "{}".into(),
        prev_hash: format!("{:064}", seq - 1),
        hash: format!("{seq:064}"),
    }
}

pub(crate) fn checkpoint(chain: &AuditChain, seq: i64) -> AuditCheckpoint {
    AuditCheckpoint {
        tenant: chain.tenant.clone(),
        incarnation: chain.incarnation.clone(),
        seq,
        hash: format!("{seq:064}"),
        ts: 20_000 + seq,
        signature: "c2lnbmF0dXJl".into(),
    }
}

/// A security event whose id sorts by time like the platform's (`<ts as 16 hex><suffix>`).
pub(crate) fn security_event(tenant: &str, incarnation: &str, ts: i64, suffix: &str) -> SecurityEvent {
    SecurityEvent {
        tenant: tenant.into(),
        incarnation: incarnation.into(),
        id: format!("{ts:016x}{suffix}"),
        ts,
        event_type: SecurityEventType::AuthFailure,
        severity: Severity::Minor,
        source_ip: Some("198.51.100.9".into()),
        device: None,
        user: None,
        details_json: "{}".into(),
    }
}

// ---- device data ----

pub(crate) fn telemetry(tenant: &str, device: &str, ts: i64, seq: i64) -> DeviceDataRow {
    DeviceDataRow::Telemetry(TelemetryRow {
        tenant: tenant.into(),
        device: device.into(),
        ts,
        seq,
        sealed: format!("sealed-{ts}-{seq}").into_bytes(),
    })
}

pub(crate) fn event(tenant: &str, device: &str, ts: i64, id: &str, tag: &str) -> DeviceDataRow {
    DeviceDataRow::Event(DeviceEventRow {
        tenant: tenant.into(),
        device: device.into(),
        ts,
        id: id.into(),
        type_tag: tag.into(),
        sealed: format!("event {id}").into_bytes(),
    })
}

pub(crate) fn attestation(tenant: &str, device: &str, ts: i64, id: &str) -> DeviceDataRow {
    DeviceDataRow::Attestation(AttestationRow {
        tenant: tenant.into(),
        device: device.into(),
        ts,
        id: id.into(),
        sealed: format!("report {id}").into_bytes(),
    })
}

pub(crate) fn raise(tenant: &str, device: &str, alarm_type: &str, id: &str, severity: Severity, ts: i64) -> AlarmRaise {
    AlarmRaise {
        tenant: tenant.into(),
        id: id.into(),
        device: device.into(),
        alarm_type: alarm_type.into(),
        severity,
        text_sealed: Some(format!("text-{id}").into_bytes()),
        ts,
    }
}

pub(crate) fn clear(tenant: &str, device: &str, alarm_type: &str, ts: i64) -> DeviceDataRow {
    DeviceDataRow::ClearAlarm(AlarmClear {
        tenant: tenant.into(),
        device: device.into(),
        alarm_type: alarm_type.into(),
        ts,
    })
}

pub(crate) fn seen(tenant: &str, device: &str, at_ms: i64) -> DeviceSeen {
    DeviceSeen { tenant: tenant.into(), device: device.into(), at_ms }
}

pub(crate) fn batch(rows: Vec<DeviceDataRow>) -> DeviceDataBatch {
    DeviceDataBatch { rows, seen: Vec::new() }
}

pub(crate) fn twin(tenant: &str, device: &str, version: i64, sealed: &[u8]) -> TwinReportedRow {
    TwinReportedRow {
        tenant: tenant.into(),
        device: device.into(),
        reported_sealed: sealed.to_vec(),
        reported_version: version,
        updated_at: version * 10,
    }
}

// ---- retained messages ----

pub(crate) fn retained(tenant: &str, topic: &str, payload: &[u8]) -> RetainedMessageRow {
    RetainedMessageRow {
        tenant: tenant.into(),
        topic: topic.into(),
        qos: 1,
        payload_sealed: payload.to_vec(),
        properties_sealed: None,
        expires_at: None,
        updated_at: 1,
    }
}

/// Keeps one retained message (a batch of one change).
pub(crate) async fn put_retained(store: &dyn Store, row: &RetainedMessageRow) -> StoreResult<()> {
    store.write_retained_messages(&[RetainedChange::Put(row.clone())]).await
}

/// Forgets the retained message of (tenant, topic) (a batch of one change).
pub(crate) async fn delete_retained(store: &dyn Store, tenant: &str, topic: &str) -> StoreResult<()> {
    store.write_retained_messages(&[RetainedChange::Delete { tenant: tenant.into(), topic: topic.into() }]).await
}

// ---- a row in every owned table ----

/// Gives tenant `tenant` (created here, under `parent` if any) a row in every table of
/// [`rampart_store::owned_tables::OWNED_TABLES`] that the API reaches, with device `device`
/// holding one row in each table of device rows, plus an audit record and checkpoint.
pub(crate) async fn populate_every_owned_table(store: &dyn Store, tenant: &str, device: &str) {
    store.create_tenant(&self::tenant(tenant)).await.expect("tenant");
    store.put_tenant_policy(tenant, None, "{}").await.expect("tenant policy");
    store.put_topic_policy(tenant, r#"{"rules":[]}"#).await.expect("topic policy");
    store.insert_tenant_key(&tenant_key(tenant, "k1", 1)).await.expect("tenant key");
    let admin = create_user(store, tenant, "admin").await;
    store.create_role(&role(tenant, "custom")).await.expect("role");
    store.create_group(&group(tenant, "site", None)).await.expect("group");
    store.create_group(&group(tenant, "room", Some("site"))).await.expect("sub-group");
    store.create_api_key(&api_key(tenant, &format!("{tenant}-key"), "admin", &admin.uid)).await.expect("api key");
    store.create_tenant_ca(&tenant_ca(tenant)).await.expect("tenant CA");
    store.create_trusted_ca(&trusted_ca(tenant, "ext", "CN=ext")).await.expect("trusted CA");
    store.create_registration_code(tenant, &format!("{tenant}-code"), 9_000_000, 1).await.expect("registration code");
    let predecessor = format!("{device}-old");
    create_device(store, &self::device(tenant, &predecessor, None)).await;
    store.delete_device(tenant, &predecessor, 50).await.expect("a device deleted before (its tombstone)");
    create_device(store, &self::device(tenant, device, Some("room"))).await;
    store.create_device_token(&token(tenant, device, "t1")).await.expect("token");
    store
        .create_device_certificate(&certificate(tenant, device, &format!("{tenant}-{device}-cert")))
        .await
        .expect("cert");
    let rows = vec![
        telemetry(tenant, device, 100, 1),
        event(tenant, device, 100, "ev", "tag"),
        attestation(tenant, device, 100, "at"),
        DeviceDataRow::RaiseAlarm(raise(tenant, device, "leak", &format!("{tenant}-alarm"), Severity::Major, 100)),
    ];
    store.insert_device_data_batch(&batch(rows)).await.expect("device data");
    store.put_twin_reported(&twin(tenant, device, 1, b"reported"), 0).await.expect("twin");
    let op = crate::operations::operation(tenant, device, &format!("{tenant}-{device}-op"), Some(1));
    store.create_operation(&op).await.expect("operation");
    let desired = rampart_store::TwinDesiredRow {
        tenant: tenant.into(),
        device: device.into(),
        desired_sealed: b"desired".to_vec(),
        desired_version: 1,
        updated_at: 1,
    };
    store.put_twin_desired(&desired, 0).await.expect("desired twin");
    let runs = rampart_store::DeviceFirmwareRow {
        tenant: tenant.into(),
        device: device.into(),
        security_counter: Some(1),
        updated_at: 1,
        ..Default::default()
    };
    store.record_device_firmware(&runs, true).await.expect("device firmware");
    let signing = rampart_store::SigningKeyRow {
        tenant: tenant.into(),
        private_sealed: vec![1],
        public_key: vec![2],
        created_at: 1,
    };
    store.put_signing_key_once(&signing).await.expect("signing key");
    let key = rampart_store::FirmwareKeyRow {
        tenant: tenant.into(),
        id: "offline".into(),
        public_key: vec![3],
        created_at: 1,
    };
    store.insert_firmware_key(&key).await.expect("firmware key");
    let image = rampart_store::FirmwareRow {
        tenant: tenant.into(),
        id: format!("{tenant}-fw"),
        name: "fw".into(),
        version: "1.0.0".into(),
        hardware: "hw".into(),
        security_counter: 1,
        sha256: "00".into(),
        size: 1,
        signature: "s".into(),
        key_id: None,
        file_key_sealed: vec![4],
        created_at: 1,
    };
    store.insert_firmware(&image).await.expect("firmware");
    let campaign = rampart_store::CampaignRow {
        tenant: tenant.into(),
        id: format!("{tenant}-campaign"),
        firmware_id: image.id.clone(),
        target: "{}".into(),
        strategy: "{}".into(),
        devices: "[]".into(),
        dispatched: 0,
        accepted: 0,
        status: rampart_core::CampaignStatus::Running,
        reason: None,
        created_by: "user:admin".into(),
        created_at: 1,
        updated_at: 1,
    };
    store.insert_campaign(&campaign).await.expect("campaign");
    let advisory =
        rampart_store::AdvisoryRow { tenant: tenant.into(), id: "OSV-1".into(), record: "{}".into(), updated_at: 1 };
    store.put_advisory(&advisory).await.expect("advisory");
    put_retained(store, &retained(tenant, "status", b"on")).await.expect("retained");
    let mut alert = security_event(tenant, &self::tenant(tenant).uid, 100, "aa");
    alert.device = Some(device.into());
    store.insert_security_event(&alert).await.expect("security event");
    let own_chain = chain(tenant, &self::tenant(tenant).uid);
    store.insert_audit(&audit(&own_chain, 1, "tenant.create", "admin")).await.expect("audit");
    store.insert_audit_checkpoint(&checkpoint(&own_chain, 1)).await.expect("checkpoint");
}
