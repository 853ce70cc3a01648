//! The store conformance suite: every `check_*` runs against SQLite always and against
//! PostgreSQL when `RAMPART_TEST_POSTGRES` names a server (each run in a fresh schema).

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use rampart_store::*;

#[tokio::test]
async fn sqlite_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let store = open("sqlite", dir.path()).await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "database file mode");
    }
    // Opening again finds the schema already migrated.
    let reopened = open_sqlite(&path).await.unwrap();
    reopened.ping().await.unwrap();
    drop(reopened);

    store_suite(store.as_ref(), &Raw::Sqlite(path)).await;
}

#[tokio::test]
async fn postgres_store_suite() {
    let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES") else {
        println!("skipping PostgreSQL store suite: RAMPART_TEST_POSTGRES not set");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let schema = format!("rt_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
    let admin = raw_postgres(&url, None).await;
    admin.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();

    let run = {
        let (url, schema) = (url.clone(), schema.clone());
        tokio::spawn(async move {
            // Two processes starting at once must not trip over each other's migrations.
            let (first, second) =
                tokio::join!(open_postgres_in_schema(&url, &schema), open_postgres_in_schema(&url, &schema));
            let store: Arc<dyn Store> = first.unwrap();
            second.unwrap().ping().await.unwrap();
            assert_eq!(store.backend_name(), "postgres");
            store_suite(store.as_ref(), &Raw::Postgres { url, schema }).await;
        })
    };
    let outcome = run.await;
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
async fn unknown_storage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let result = open("mysql://root:hunter2@db/rampart", dir.path()).await;
    match result {
        Err(StoreError::Backend(message)) => assert!(!message.contains("hunter2"), "{message}"),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("mysql accepted"),
    }
}

async fn store_suite(store: &dyn Store, raw: &Raw) {
    store.ping().await.unwrap();
    check_platform_secrets(store).await;
    check_tenants(store).await;
    check_tenant_keys(store).await;
    check_users(store).await;
    check_roles(store).await;
    check_groups(store).await;
    check_api_keys(store).await;
    check_devices(store).await;
    check_device_credentials(store).await;
    check_revoke_device(store).await;
    check_delete_device(store).await;
    check_delete_tenant(store).await;
    check_audit(store, raw).await;
    check_device_data(store).await;
    check_packed_telemetry_pages(store).await;
    check_alarms(store).await;
    check_silent_devices_and_twins(store).await;
    check_device_data_erasure(store).await;
    check_retained_messages(store).await;
}

// ---- raw access to the backend, to prove what the storage itself refuses ----

enum Raw {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl Raw {
    async fn execute(&self, sql: &str) -> Result<u64, String> {
        match self {
            Raw::Sqlite(path) => {
                let connection = rusqlite::Connection::open(path).unwrap();
                connection.execute(sql, []).map(|changed| changed as u64).map_err(|error| error.to_string())
            }
            Raw::Postgres { url, schema } => {
                let client = raw_postgres(url, Some(schema)).await;
                client.execute(sql, &[]).await.map_err(|error| format!("{error:?}"))
            }
        }
    }
}

async fn raw_postgres(url: &str, schema: Option<&str>) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    if let Some(schema) = schema {
        client.batch_execute(&format!("SET search_path TO {schema}")).await.unwrap();
    }
    client
}

// ---- assertions and fixtures ----

#[track_caller]
fn assert_not_found<T: Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[track_caller]
fn assert_conflict<T: Debug>(result: StoreResult<T>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn page(after: Option<&str>, limit: u32) -> Page {
    Page { after: after.map(str::to_owned), limit }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn tenant(id: &str, parent: Option<&str>) -> Tenant {
    Tenant { id: id.into(), name: format!("Tenant {id}"), parent: parent.map(Into::into), created_at: 1_000 }
}

async fn create_tenant(store: &dyn Store, id: &str) {
    store.create_tenant(&tenant(id, None)).await.unwrap();
}

fn user(tenant: &str, username: &str) -> User {
    User {
        tenant: tenant.into(),
        username: username.into(),
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

fn group(tenant: &str, id: &str, parent: Option<&str>) -> Group {
    Group {
        tenant: tenant.into(),
        id: id.into(),
        name: format!("Group {id}"),
        parent: parent.map(Into::into),
        created_at: 2_000,
    }
}

fn device(tenant: &str, id: &str, group: Option<&str>) -> Device {
    Device {
        tenant: tenant.into(),
        id: id.into(),
        name: format!("Device {id}"),
        device_type: None,
        group: group.map(Into::into),
        attributes_json: "{}".into(),
        required_interval_s: None,
        status: "registered".into(),
        connected: false,
        last_seen: None,
        last_address: None,
        firmware: None,
        created_at: 3_000,
    }
}

fn token(tenant: &str, device: &str, id: &str) -> DeviceToken {
    DeviceToken {
        tenant: tenant.into(),
        device: device.into(),
        id: id.into(),
        token_hash: vec![7; 32],
        created_at: 4_000,
    }
}

fn certificate(tenant: &str, device: &str, serial: &str) -> DeviceCertificate {
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

fn device_key(tenant: &str, device: &str) -> DeviceKey {
    DeviceKey { tenant: tenant.into(), device: device.into(), tenant_key_id: "k1".into(), wrapped: vec![1, 2, 3] }
}

fn audit(tenant: &str, seq: i64, action: &str, actor: &str) -> AuditRecord {
    AuditRecord {
        tenant: tenant.into(),
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

// ---- checks ----

async fn check_platform_secrets(store: &dyn Store) {
    assert_eq!(store.get_platform_secret("audit-signing-key").await.unwrap(), None);
    assert_eq!(store.put_platform_secret_if_absent("audit-signing-key", b"first").await.unwrap(), b"first");
    // First writer wins.
    assert_eq!(store.put_platform_secret_if_absent("audit-signing-key", b"second").await.unwrap(), b"first");
    assert_eq!(store.get_platform_secret("audit-signing-key").await.unwrap().as_deref(), Some(&b"first"[..]));
    store.put_platform_secret_if_absent("api-token-key", b"other").await.unwrap();

    store.replace_platform_secret("audit-signing-key", b"rewrapped").await.unwrap();
    assert_not_found(store.replace_platform_secret("missing", b"x").await);
    let all = store.list_platform_secrets().await.unwrap();
    assert_eq!(
        all,
        vec![("api-token-key".to_owned(), b"other".to_vec()), ("audit-signing-key".to_owned(), b"rewrapped".to_vec()),]
    );
}

async fn check_tenants(store: &dyn Store) {
    let root = tenant("tn-root", None);
    store.create_tenant(&root).await.unwrap();
    assert_conflict(store.create_tenant(&root).await);
    assert_eq!(store.get_tenant("tn-root").await.unwrap(), root);
    assert_not_found(store.get_tenant("tn-missing").await);
    // A parent must exist.
    assert!(store.create_tenant(&tenant("tn-orphan", Some("tn-nowhere"))).await.is_err());

    for id in ["tn-c", "tn-a", "tn-e", "tn-b", "tn-d"] {
        store.create_tenant(&tenant(id, Some("tn-root"))).await.unwrap();
    }
    let ids = |tenants: Vec<Tenant>| tenants.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let first = store.list_child_tenants("tn-root", &page(None, 2)).await.unwrap();
    assert_eq!(ids(first), ["tn-a", "tn-b"]);
    let second = store.list_child_tenants("tn-root", &page(Some("tn-b"), 2)).await.unwrap();
    assert_eq!(ids(second), ["tn-c", "tn-d"]);
    let last = store.list_child_tenants("tn-root", &page(Some("tn-d"), 2)).await.unwrap();
    assert_eq!(ids(last), ["tn-e"]);
    assert!(store.list_child_tenants("tn-a", &page(None, 10)).await.unwrap().is_empty());
    assert_eq!(store.list_child_tenants("tn-root", &Page::default()).await.unwrap().len(), 5, "limit 0 = no limit");

    let all = ids(store.list_all_tenants().await.unwrap());
    assert!(all.windows(2).all(|pair| pair[0] < pair[1]), "ordered by id: {all:?}");
    assert!(all.contains(&"tn-root".to_owned()) && all.contains(&"tn-e".to_owned()));

    assert_eq!(store.get_tenant_policy("tn-a").await.unwrap(), None);
    store.put_tenant_policy("tn-a", r#"{"require_mfa":true}"#).await.unwrap();
    store.put_tenant_policy("tn-a", r#"{"require_mfa":false}"#).await.unwrap();
    assert_eq!(store.get_tenant_policy("tn-a").await.unwrap().as_deref(), Some(r#"{"require_mfa":false}"#));
    assert_eq!(store.get_tenant_policy("tn-b").await.unwrap(), None);

    // A tenant with sub-tenants cannot go; its children can.
    assert_conflict(store.delete_tenant("tn-root").await);
    assert_not_found(store.delete_tenant("tn-missing").await);
}

async fn check_tenant_keys(store: &dyn Store) {
    let key = |key_id: &str, created_at| TenantKey {
        tenant: "tk-one".into(),
        key_id: key_id.into(),
        wrapped: key_id.as_bytes().to_vec(),
        created_at,
    };
    store.insert_tenant_key(&key("k1", 100)).await.unwrap();
    store.insert_tenant_key(&key("k2", 200)).await.unwrap();
    assert_conflict(store.insert_tenant_key(&key("k1", 300)).await);
    let keys = store.list_tenant_keys("tk-one").await.unwrap();
    assert_eq!(keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(), ["k2", "k1"], "newest first");
    assert!(store.list_tenant_keys("tk-two").await.unwrap().is_empty());

    store.rewrap_tenant_key("tk-one", "k1", b"rewrapped").await.unwrap();
    assert_eq!(store.list_tenant_keys("tk-one").await.unwrap()[1].wrapped, b"rewrapped");
    assert_not_found(store.rewrap_tenant_key("tk-two", "k1", b"x").await);
    assert_not_found(store.rewrap_tenant_key("tk-one", "k9", b"x").await);
}

async fn check_users(store: &dyn Store) {
    let mut alice = user("us-one", "alice");
    store.create_user(&alice).await.unwrap();
    assert_conflict(store.create_user(&alice).await);
    assert_eq!(store.get_user("us-one", "alice").await.unwrap(), alice);
    // Same username in another tenant is another user; the wrong tenant sees nothing.
    assert_not_found(store.get_user("us-two", "alice").await);
    let mut other_alice = user("us-two", "alice");
    other_alice.roles = strings(&["viewer"]);
    store.create_user(&other_alice).await.unwrap();
    assert_eq!(store.get_user("us-two", "alice").await.unwrap().roles, ["viewer"]);

    // Every mutable column round-trips, including optional blobs and lists.
    alice.password_hash = "$argon2id$new".into();
    alice.roles = strings(&["admin", "custom-role"]);
    alice.groups = strings(&["g1", "g2"]);
    alice.disabled = true;
    alice.token_version = 7;
    alice.mfa_enabled = true;
    alice.mfa_secret_sealed = Some(vec![1, 2, 3]);
    alice.mfa_pending_sealed = Some(vec![]);
    alice.mfa_last_step = 55_555_555;
    alice.email_sealed = Some(vec![9; 40]);
    alice.failed_logins = 3;
    alice.failed_window_start = 12_345;
    alice.locked_until = 99_999;
    alice.password_changed_at = 5_000;
    store.update_user(&alice).await.unwrap();
    assert_eq!(store.get_user("us-one", "alice").await.unwrap(), alice);
    assert_eq!(store.get_user("us-two", "alice").await.unwrap(), other_alice, "other tenant untouched");
    assert_not_found(store.update_user(&user("us-one", "nobody")).await);
    assert_not_found(store.update_user(&user("us-three", "alice")).await);

    for name in ["dave", "bob", "carol", "erin"] {
        store.create_user(&user("us-one", name)).await.unwrap();
    }
    let names = |users: Vec<User>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(names(store.list_users("us-one", &page(None, 3)).await.unwrap()), ["alice", "bob", "carol"]);
    assert_eq!(names(store.list_users("us-one", &page(Some("carol"), 3)).await.unwrap()), ["dave", "erin"]);
    assert!(store.list_users("us-one", &page(Some("erin"), 3)).await.unwrap().is_empty());
    assert_eq!(names(store.list_users("us-two", &page(None, 100)).await.unwrap()), ["alice"]);

    assert_not_found(store.delete_user("us-three", "alice").await);
    store.delete_user("us-one", "alice").await.unwrap();
    assert_not_found(store.get_user("us-one", "alice").await);
    assert_not_found(store.delete_user("us-one", "alice").await);
    store.get_user("us-two", "alice").await.unwrap();
}

async fn check_roles(store: &dyn Store) {
    let role = |tenant: &str, name: &str| Role {
        tenant: tenant.into(),
        name: name.into(),
        permissions: strings(&["devices:read", "telemetry:read"]),
        created_at: 1,
    };
    store.create_role(&role("ro-one", "reader")).await.unwrap();
    store.create_role(&role("ro-one", "auditor-lite")).await.unwrap();
    assert_conflict(store.create_role(&role("ro-one", "reader")).await);
    store.create_role(&role("ro-two", "reader")).await.unwrap();
    assert_eq!(store.get_role("ro-one", "reader").await.unwrap(), role("ro-one", "reader"));
    assert_not_found(store.get_role("ro-three", "reader").await);
    let names = store.list_roles("ro-one").await.unwrap().into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(names, ["auditor-lite", "reader"]);
    assert_not_found(store.delete_role("ro-three", "reader").await);
    store.delete_role("ro-one", "reader").await.unwrap();
    assert_not_found(store.get_role("ro-one", "reader").await);
    store.get_role("ro-two", "reader").await.unwrap();
}

async fn check_groups(store: &dyn Store) {
    store.create_group(&group("gr-one", "site", None)).await.unwrap();
    store.create_group(&group("gr-one", "floor-1", Some("site"))).await.unwrap();
    store.create_group(&group("gr-one", "floor-2", Some("site"))).await.unwrap();
    assert_conflict(store.create_group(&group("gr-one", "site", None)).await);
    // A parent must be a group of the same tenant.
    assert!(store.create_group(&group("gr-two", "floor-1", Some("site"))).await.is_err());
    store.create_group(&group("gr-two", "site", None)).await.unwrap();

    assert_eq!(store.get_group("gr-one", "floor-1").await.unwrap(), group("gr-one", "floor-1", Some("site")));
    assert_not_found(store.get_group("gr-two", "floor-1").await);
    let ids = store.list_groups("gr-one").await.unwrap().into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(ids, ["floor-1", "floor-2", "site"]);

    assert_conflict(store.delete_group("gr-one", "site").await);
    store.create_device(&device("gr-one", "sensor", Some("floor-1"))).await.unwrap();
    assert_conflict(store.delete_group("gr-one", "floor-1").await);
    store.delete_device("gr-one", "sensor", 5).await.unwrap();
    store.delete_group("gr-one", "floor-1").await.unwrap();
    store.delete_group("gr-one", "floor-2").await.unwrap();
    store.delete_group("gr-one", "site").await.unwrap();
    assert_not_found(store.delete_group("gr-one", "site").await);
    store.get_group("gr-two", "site").await.unwrap();
}

async fn check_api_keys(store: &dyn Store) {
    let key = |tenant: &str, id: &str| ApiKey {
        id: id.into(),
        tenant: tenant.into(),
        name: format!("app {id}"),
        roles: strings(&["viewer"]),
        key_hash: vec![3; 32],
        expires_at: None,
        created_by: "alice".into(),
        created_at: 1,
    };
    let mut expiring = key("ak-one", "key-b");
    expiring.expires_at = Some(1_900_000_000_000);
    store.create_api_key(&key("ak-one", "key-a")).await.unwrap();
    store.create_api_key(&expiring).await.unwrap();
    // Ids are globally unique, not per tenant.
    assert_conflict(store.create_api_key(&key("ak-two", "key-a")).await);
    store.create_api_key(&key("ak-two", "key-c")).await.unwrap();

    assert_eq!(store.get_api_key("key-b").await.unwrap(), expiring);
    assert_eq!(store.get_api_key("key-c").await.unwrap().tenant, "ak-two");
    assert_not_found(store.get_api_key("key-z").await);
    let ids = store.list_api_keys("ak-one").await.unwrap().into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(ids, ["key-a", "key-b"]);

    assert_not_found(store.delete_api_key("ak-two", "key-a").await);
    store.delete_api_key("ak-one", "key-a").await.unwrap();
    assert_not_found(store.get_api_key("key-a").await);
    assert_not_found(store.delete_api_key("ak-one", "key-a").await);
}

async fn check_devices(store: &dyn Store) {
    let tenant = "dv-one";
    for id in ["north", "south", "empty"] {
        store.create_group(&group(tenant, id, None)).await.unwrap();
    }
    let mut layout = Vec::new();
    for index in 0..10 {
        let group = ["north", "south"][index % 2];
        let mut item = device(tenant, &format!("dev-{index:02}"), Some(group));
        item.device_type = Some(if index < 4 { "meter" } else { "valve" }.into());
        item.status = if index % 3 == 0 { "active" } else { "registered" }.into();
        store.create_device(&item).await.unwrap();
        layout.push(item);
    }
    store.create_device(&device(tenant, "loner", None)).await.unwrap();
    assert_conflict(store.create_device(&device(tenant, "dev-00", None)).await);
    // A device's group must exist in its tenant.
    assert!(store.create_device(&device(tenant, "lost", Some("nowhere"))).await.is_err());
    store.create_device(&device("dv-two", "dev-00", None)).await.unwrap();

    assert_eq!(store.get_device(tenant, "dev-03").await.unwrap(), layout[3]);
    assert_not_found(store.get_device("dv-three", "dev-03").await);
    assert_eq!(store.get_device("dv-two", "dev-00").await.unwrap().group, None);

    let ids = |devices: Vec<Device>| devices.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let list = |filter: DeviceFilter, after: Option<&'static str>, limit| async move {
        ids(store.list_devices(tenant, &filter, &page(after, limit)).await.unwrap())
    };
    let everything = DeviceFilter::default();
    assert_eq!(list(everything.clone(), None, 4).await, ["dev-00", "dev-01", "dev-02", "dev-03"]);
    assert_eq!(list(everything.clone(), Some("dev-08"), 4).await, ["dev-09", "loner"]);
    assert_eq!(list(everything.clone(), None, 100).await.len(), 11);
    let north = DeviceFilter { group: Some("north".into()), ..DeviceFilter::default() };
    assert_eq!(list(north.clone(), None, 3).await, ["dev-00", "dev-02", "dev-04"]);
    assert_eq!(list(north, Some("dev-04"), 3).await, ["dev-06", "dev-08"]);
    let active = DeviceFilter { status: Some("active".into()), ..DeviceFilter::default() };
    assert_eq!(list(active, None, 100).await, ["dev-00", "dev-03", "dev-06", "dev-09"]);
    let meters = DeviceFilter { device_type: Some("meter".into()), ..DeviceFilter::default() };
    assert_eq!(list(meters, None, 100).await, ["dev-00", "dev-01", "dev-02", "dev-03"]);
    let combined = DeviceFilter {
        group: Some("south".into()),
        status: Some("registered".into()),
        device_type: Some("valve".into()),
        within_groups: Some(strings(&["south", "empty"])),
    };
    assert_eq!(list(combined, None, 100).await, ["dev-05", "dev-07"]);
    let within = DeviceFilter { within_groups: Some(strings(&["south", "empty"])), ..DeviceFilter::default() };
    assert_eq!(list(within, None, 100).await, ["dev-01", "dev-03", "dev-05", "dev-07", "dev-09"]);
    let within_nothing = DeviceFilter { within_groups: Some(Vec::new()), ..DeviceFilter::default() };
    assert!(list(within_nothing, None, 100).await.is_empty(), "empty within_groups matches nothing");
    let other_tenant = store.list_devices("dv-two", &DeviceFilter::default(), &page(None, 100)).await.unwrap();
    assert_eq!(ids(other_tenant), ["dev-00"]);

    let mut updated = layout[0].clone();
    updated.name = "Renamed".into();
    updated.device_type = None;
    updated.group = Some("empty".into());
    updated.attributes_json = r#"{"floor":3}"#.into();
    updated.required_interval_s = Some(60);
    updated.status = "quarantined".into();
    updated.connected = true;
    updated.last_seen = Some(123_456);
    updated.last_address = Some("198.51.100.7:51234".into());
    updated.firmware = Some("1.2.3".into());
    store.update_device(&updated).await.unwrap();
    assert_eq!(store.get_device(tenant, "dev-00").await.unwrap(), updated);
    assert_eq!(store.get_device("dv-two", "dev-00").await.unwrap(), device("dv-two", "dev-00", None));
    assert_not_found(store.update_device(&device(tenant, "ghost", None)).await);
    assert_not_found(store.update_device(&device("dv-three", "dev-00", None)).await);
}

async fn check_device_credentials(store: &dyn Store) {
    let tenant = "cr-one";
    store.create_device(&device(tenant, "pump", None)).await.unwrap();
    store.create_device(&device("cr-two", "pump", None)).await.unwrap();

    // Device keys: put is an upsert.
    assert_not_found(store.get_device_key(tenant, "pump").await);
    store.put_device_key(&device_key(tenant, "pump")).await.unwrap();
    let rotated = DeviceKey { tenant_key_id: "k2".into(), wrapped: vec![4, 5], ..device_key(tenant, "pump") };
    store.put_device_key(&rotated).await.unwrap();
    assert_eq!(store.get_device_key(tenant, "pump").await.unwrap(), rotated);
    assert_not_found(store.get_device_key("cr-two", "pump").await);

    // Tokens.
    store.create_device_token(&token(tenant, "pump", "t1")).await.unwrap();
    store.create_device_token(&token(tenant, "pump", "t2")).await.unwrap();
    assert_conflict(store.create_device_token(&token(tenant, "pump", "t1")).await);
    assert_not_found(store.create_device_token(&token(tenant, "ghost", "t1")).await);
    store.create_device_token(&token("cr-two", "pump", "t1")).await.unwrap();
    let tokens = store.list_device_tokens(tenant, "pump").await.unwrap();
    assert_eq!(tokens, vec![token(tenant, "pump", "t1"), token(tenant, "pump", "t2")]);
    assert_not_found(store.delete_device_token("cr-three", "pump", "t1").await);
    store.delete_device_token(tenant, "pump", "t1").await.unwrap();
    assert_not_found(store.delete_device_token(tenant, "pump", "t1").await);
    assert_eq!(store.list_device_tokens(tenant, "pump").await.unwrap().len(), 1);
    assert_eq!(store.list_device_tokens("cr-two", "pump").await.unwrap().len(), 1);

    // Tenant CA: put is an upsert (the CRL number moves on).
    assert_not_found(store.get_tenant_ca(tenant).await);
    let mut ca = TenantCa {
        tenant: tenant.into(),
        cert_pem: "CA PEM".into(),
        key_sealed: vec![8; 48],
        crl_number: 1,
        created_at: 10,
    };
    store.put_tenant_ca(&ca).await.unwrap();
    ca.crl_number = 2;
    store.put_tenant_ca(&ca).await.unwrap();
    assert_eq!(store.get_tenant_ca(tenant).await.unwrap(), ca);
    assert_not_found(store.get_tenant_ca("cr-two").await);

    // Certificates.
    let mut old = certificate(tenant, "pump", "0a");
    old.revoked_at = Some(50);
    store.create_device_certificate(&old).await.unwrap();
    store.create_device_certificate(&certificate(tenant, "pump", "0b")).await.unwrap();
    assert_conflict(store.create_device_certificate(&certificate(tenant, "pump", "0b")).await);
    store.create_device_certificate(&certificate("cr-two", "pump", "0b")).await.unwrap();
    assert_eq!(store.get_device_certificate(tenant, "0a").await.unwrap(), old);
    assert_not_found(store.get_device_certificate("cr-three", "0a").await);
    let serials = |certificates: Vec<DeviceCertificate>| certificates.into_iter().map(|c| c.serial).collect::<Vec<_>>();
    assert_eq!(serials(store.list_device_certificates(tenant, "pump").await.unwrap()), ["0a", "0b"]);
    assert_eq!(serials(store.list_revoked_certificates(tenant).await.unwrap()), ["0a"]);
    assert!(store.list_revoked_certificates("cr-two").await.unwrap().is_empty());

    // Trusted CAs.
    let trusted = |tenant: &str, id: &str, auto_register| TrustedCa {
        tenant: tenant.into(),
        id: id.into(),
        cert_pem: "EXT PEM".into(),
        subject: "CN=Vendor CA".into(),
        auto_register,
        created_at: 20,
    };
    store.create_trusted_ca(&trusted(tenant, "vendor-b", true)).await.unwrap();
    store.create_trusted_ca(&trusted(tenant, "vendor-a", false)).await.unwrap();
    assert_conflict(store.create_trusted_ca(&trusted(tenant, "vendor-a", true)).await);
    store.create_trusted_ca(&trusted("cr-two", "vendor-a", true)).await.unwrap();
    assert_eq!(
        store.list_trusted_cas(tenant).await.unwrap(),
        vec![trusted(tenant, "vendor-a", false), trusted(tenant, "vendor-b", true)]
    );
    assert_not_found(store.delete_trusted_ca("cr-three", "vendor-a").await);
    store.delete_trusted_ca(tenant, "vendor-a").await.unwrap();
    assert_not_found(store.delete_trusted_ca(tenant, "vendor-a").await);
    assert_eq!(store.list_trusted_cas("cr-two").await.unwrap().len(), 1);
}

/// Two devices with the same id in two tenants, each with a key, two tokens, a live and a
/// revoked certificate.
async fn equip(store: &dyn Store, tenants: [&str; 2], id: &str) {
    for tenant in tenants {
        let mut item = device(tenant, id, None);
        item.status = "active".into();
        store.create_device(&item).await.unwrap();
        store.put_device_key(&device_key(tenant, id)).await.unwrap();
        store.create_device_token(&token(tenant, id, "t1")).await.unwrap();
        store.create_device_token(&token(tenant, id, "t2")).await.unwrap();
        let mut revoked = certificate(tenant, id, &format!("{id}-old"));
        revoked.revoked_at = Some(7);
        store.create_device_certificate(&revoked).await.unwrap();
        store.create_device_certificate(&certificate(tenant, id, &format!("{id}-live"))).await.unwrap();
    }
}

async fn assert_untouched(store: &dyn Store, tenant: &str, id: &str) {
    assert_eq!(store.get_device(tenant, id).await.unwrap().status, "active");
    store.get_device_key(tenant, id).await.unwrap();
    assert_eq!(store.list_device_tokens(tenant, id).await.unwrap().len(), 2);
    let certificates = store.list_device_certificates(tenant, id).await.unwrap();
    assert_eq!(certificates.iter().filter(|c| c.revoked_at.is_some()).count(), 1);
}

async fn check_revoke_device(store: &dyn Store) {
    equip(store, ["rv-one", "rv-two"], "gate").await;
    let revoked = store.revoke_device("rv-one", "gate", 99).await.unwrap();
    assert_eq!(revoked.status, "revoked");
    assert_eq!(store.get_device("rv-one", "gate").await.unwrap(), revoked);
    assert!(store.list_device_tokens("rv-one", "gate").await.unwrap().is_empty());
    let certificates = store.list_device_certificates("rv-one", "gate").await.unwrap();
    let revoked_at = certificates.iter().map(|c| (c.serial.as_str(), c.revoked_at)).collect::<Vec<_>>();
    assert_eq!(revoked_at, [("gate-live", Some(99)), ("gate-old", Some(7))], "earlier revocations keep their time");
    store.get_device_key("rv-one", "gate").await.unwrap();
    assert_untouched(store, "rv-two", "gate").await;

    assert_not_found(store.revoke_device("rv-one", "ghost", 99).await);
    assert_not_found(store.revoke_device("rv-three", "gate", 99).await);
    assert_untouched(store, "rv-two", "gate").await;
}

async fn check_delete_device(store: &dyn Store) {
    equip(store, ["dd-one", "dd-two"], "lamp").await;
    store.delete_device("dd-one", "lamp", 77).await.unwrap();
    assert_not_found(store.get_device("dd-one", "lamp").await);
    assert_not_found(store.get_device_key("dd-one", "lamp").await);
    assert!(store.list_device_tokens("dd-one", "lamp").await.unwrap().is_empty());
    // Certificates stay, revoked, for the CRL.
    let crl = store.list_revoked_certificates("dd-one").await.unwrap();
    let revoked_at = crl.iter().map(|c| (c.serial.as_str(), c.revoked_at)).collect::<Vec<_>>();
    assert_eq!(revoked_at, [("lamp-live", Some(77)), ("lamp-old", Some(7))]);
    assert_untouched(store, "dd-two", "lamp").await;

    assert_not_found(store.delete_device("dd-one", "lamp", 78).await);
    assert_not_found(store.delete_device("dd-three", "lamp", 78).await);
    // A failed delete changes nothing, not even certificates of a device by that name.
    store.create_device_certificate(&certificate("dd-three", "lamp", "stray")).await.unwrap();
    assert_not_found(store.delete_device("dd-three", "lamp", 78).await);
    assert_eq!(store.get_device_certificate("dd-three", "stray").await.unwrap().revoked_at, None);
    assert_untouched(store, "dd-two", "lamp").await;
}

async fn check_delete_tenant(store: &dyn Store) {
    let populate = |tenant: &'static str| async move {
        store.create_tenant(&Tenant { parent: Some("dt-parent".into()), ..tenant_fixture(tenant) }).await.unwrap();
        store.put_tenant_policy(tenant, "{}").await.unwrap();
        store
            .insert_tenant_key(&TenantKey {
                tenant: tenant.into(),
                key_id: "k1".into(),
                wrapped: vec![1],
                created_at: 1,
            })
            .await
            .unwrap();
        store.create_user(&user(tenant, "admin")).await.unwrap();
        store
            .create_role(&Role { tenant: tenant.into(), name: "custom".into(), permissions: vec![], created_at: 1 })
            .await
            .unwrap();
        store.create_group(&group(tenant, "site", None)).await.unwrap();
        store.create_group(&group(tenant, "room", Some("site"))).await.unwrap();
        store
            .create_api_key(&ApiKey {
                id: format!("{tenant}-key"),
                tenant: tenant.into(),
                name: "app".into(),
                roles: vec![],
                key_hash: vec![1],
                expires_at: None,
                created_by: "admin".into(),
                created_at: 1,
            })
            .await
            .unwrap();
        store
            .put_tenant_ca(&TenantCa {
                tenant: tenant.into(),
                cert_pem: "CA".into(),
                key_sealed: vec![1],
                crl_number: 1,
                created_at: 1,
            })
            .await
            .unwrap();
        store
            .create_trusted_ca(&TrustedCa {
                tenant: tenant.into(),
                id: "ext".into(),
                cert_pem: "EXT".into(),
                subject: "CN=ext".into(),
                auto_register: false,
                created_at: 1,
            })
            .await
            .unwrap();
        equip(store, [tenant, "dt-unrelated"], &format!("{tenant}-dev")).await;
        let mut grouped = device(tenant, "grouped", Some("room"));
        grouped.status = "active".into();
        store.create_device(&grouped).await.unwrap();
        put_retained(store, &retained(tenant, "status", b"on")).await.unwrap();
        store.insert_audit(&audit(tenant, 1, "tenant.create", "admin")).await.unwrap();
        store
            .insert_audit_checkpoint(&AuditCheckpoint {
                tenant: tenant.into(),
                seq: 1,
                hash: "h".into(),
                ts: 1,
                signature: "sig".into(),
            })
            .await
            .unwrap();
    };
    create_tenant(store, "dt-parent").await;
    populate("dt-gone").await;
    populate("dt-kept").await;

    store.delete_tenant("dt-gone").await.unwrap();
    let gone = "dt-gone";
    assert_not_found(store.get_tenant(gone).await);
    assert_eq!(store.get_tenant_policy(gone).await.unwrap(), None);
    assert!(store.list_tenant_keys(gone).await.unwrap().is_empty());
    assert!(store.list_users(gone, &page(None, 100)).await.unwrap().is_empty());
    assert!(store.list_roles(gone).await.unwrap().is_empty());
    assert!(store.list_groups(gone).await.unwrap().is_empty());
    assert!(store.list_api_keys(gone).await.unwrap().is_empty());
    assert_not_found(store.get_api_key("dt-gone-key").await);
    assert!(store.list_devices(gone, &DeviceFilter::default(), &page(None, 100)).await.unwrap().is_empty());
    assert_not_found(store.get_device_key(gone, "dt-gone-dev").await);
    assert!(store.list_device_tokens(gone, "dt-gone-dev").await.unwrap().is_empty());
    assert!(store.list_device_certificates(gone, "dt-gone-dev").await.unwrap().is_empty());
    assert_not_found(store.get_tenant_ca(gone).await);
    assert!(store.list_trusted_cas(gone).await.unwrap().is_empty());
    assert!(store.list_retained_messages(gone).await.unwrap().is_empty());
    // Audit is append-only and outlives the tenant.
    assert_eq!(store.list_audit(gone, &AuditFilter::default(), &page(None, 100)).await.unwrap().len(), 1);
    assert_eq!(store.list_audit_checkpoints(gone).await.unwrap().len(), 1);
    assert!(store.list_audit_tenants().await.unwrap().contains(&gone.to_owned()));

    // Its sibling and the device of the same id elsewhere are untouched.
    assert_untouched(store, "dt-unrelated", "dt-gone-dev").await;
    store.get_tenant("dt-kept").await.unwrap();
    assert_eq!(store.list_devices("dt-kept", &DeviceFilter::default(), &page(None, 100)).await.unwrap().len(), 2);
    assert_eq!(store.list_groups("dt-kept").await.unwrap().len(), 2);
    store.get_api_key("dt-kept-key").await.unwrap();
    assert_eq!(store.list_retained_messages("dt-kept").await.unwrap().len(), 1);
    assert_untouched(store, "dt-kept", "dt-kept-dev").await;

    assert_conflict(store.delete_tenant("dt-parent").await);
    store.delete_tenant("dt-kept").await.unwrap();
    store.delete_tenant("dt-parent").await.unwrap();
    assert_not_found(store.delete_tenant("dt-parent").await);
}

fn tenant_fixture(id: &str) -> Tenant {
    tenant(id, None)
}

async fn check_audit(store: &dyn Store, raw: &Raw) {
    let tenant = "au-one";
    assert_eq!(store.audit_head(tenant).await.unwrap(), None);
    let actions = ["login", "device.create", "login", "device.revoke", "login", "user.create"];
    let mut records = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        let seq = index as i64 + 1;
        let record = audit(tenant, seq, action, if seq % 2 == 0 { "bob" } else { "alice" });
        store.insert_audit(&record).await.unwrap();
        records.push(record);
    }
    // Another writer already took seq 3.
    assert_conflict(store.insert_audit(&audit(tenant, 3, "login", "mallory")).await);
    store.insert_audit(&audit("au-two", 1, "login", "alice")).await.unwrap();
    assert_eq!(store.audit_head(tenant).await.unwrap().as_ref(), records.last());
    assert_eq!(store.audit_head("au-two").await.unwrap().map(|r| r.tenant), Some("au-two".to_owned()));

    let seqs = |records: Vec<AuditRecord>| records.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    let list = |filter: AuditFilter, after: Option<&'static str>, limit| async move {
        seqs(store.list_audit(tenant, &filter, &page(after, limit)).await.unwrap())
    };
    assert_eq!(store.list_audit(tenant, &AuditFilter::default(), &page(None, 100)).await.unwrap(), records);
    assert_eq!(list(AuditFilter::default(), None, 4).await, [1, 2, 3, 4]);
    assert_eq!(list(AuditFilter::default(), Some("4"), 4).await, [5, 6]);
    // Numeric, not text, ordering of the cursor.
    assert_eq!(list(AuditFilter::default(), Some("10"), 4).await, Vec::<i64>::new());
    let logins = AuditFilter { action: Some("login".into()), ..AuditFilter::default() };
    assert_eq!(list(logins.clone(), None, 100).await, [1, 3, 5]);
    assert_eq!(list(logins, Some("1"), 1).await, [3]);
    let bob = AuditFilter { actor: Some("bob".into()), ..AuditFilter::default() };
    assert_eq!(list(bob, None, 100).await, [2, 4, 6]);
    let window = AuditFilter {
        from: Some(audit(tenant, 2, "", "").ts),
        to: Some(audit(tenant, 4, "", "").ts),
        ..AuditFilter::default()
    };
    assert_eq!(list(window, None, 100).await, [2, 3, 4]);
    assert!(matches!(
        store.list_audit(tenant, &AuditFilter::default(), &page(Some("not-a-number"), 10)).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(seqs(store.list_audit("au-two", &AuditFilter::default(), &page(None, 100)).await.unwrap()), [1]);
    let tenants = store.list_audit_tenants().await.unwrap();
    assert!(tenants.contains(&"au-one".to_owned()) && tenants.contains(&"au-two".to_owned()));
    assert!(tenants.windows(2).all(|pair| pair[0] < pair[1]), "distinct and ordered: {tenants:?}");

    let checkpoint = |tenant: &str, seq| AuditCheckpoint {
        tenant: tenant.into(),
        seq,
        hash: format!("{seq:064}"),
        ts: 20_000 + seq,
        signature: "c2lnbmF0dXJl".into(),
    };
    store.insert_audit_checkpoint(&checkpoint(tenant, 4)).await.unwrap();
    store.insert_audit_checkpoint(&checkpoint(tenant, 2)).await.unwrap();
    assert_conflict(store.insert_audit_checkpoint(&checkpoint(tenant, 4)).await);
    store.insert_audit_checkpoint(&checkpoint("au-two", 4)).await.unwrap();
    assert_eq!(store.list_audit_checkpoints(tenant).await.unwrap(), vec![checkpoint(tenant, 2), checkpoint(tenant, 4)]);
    assert!(store.list_audit_checkpoints("au-three").await.unwrap().is_empty());

    // The storage itself refuses to change or remove audit rows, whoever asks.
    for sql in [
        "UPDATE audit_records SET action = 'nothing' WHERE tenant = 'au-one' AND seq = 2",
        "DELETE FROM audit_records WHERE tenant = 'au-one' AND seq = 2",
        "DELETE FROM audit_records",
        "UPDATE audit_checkpoints SET hash = 'forged' WHERE tenant = 'au-one'",
        "DELETE FROM audit_checkpoints WHERE tenant = 'au-one'",
    ] {
        let error = raw.execute(sql).await.expect_err(sql);
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    if let Raw::Postgres { .. } = raw {
        for sql in ["TRUNCATE audit_records", "TRUNCATE audit_checkpoints"] {
            let error = raw.execute(sql).await.expect_err(sql);
            assert!(error.contains("append-only"), "{sql}: {error}");
        }
    }
    assert_eq!(store.list_audit(tenant, &AuditFilter::default(), &page(None, 100)).await.unwrap(), records);
    assert_eq!(store.list_audit_checkpoints(tenant).await.unwrap().len(), 2);
}

// ---- device data ----

fn telemetry_row(tenant: &str, device: &str, ts: i64, seq: i64) -> DeviceDataRow {
    DeviceDataRow::Telemetry(TelemetryRow {
        tenant: tenant.into(),
        device: device.into(),
        ts,
        seq,
        sealed: format!("sealed-{ts}-{seq}").into_bytes(),
    })
}

fn event_row(tenant: &str, device: &str, ts: i64, id: &str, tag: &str) -> DeviceDataRow {
    DeviceDataRow::Event(DeviceEventRow {
        tenant: tenant.into(),
        device: device.into(),
        ts,
        id: id.into(),
        type_tag: tag.into(),
        sealed: vec![1, 2, 3],
    })
}

fn raise(tenant: &str, device: &str, alarm_type: &str, id: &str, severity: &str, ts: i64) -> AlarmRaise {
    AlarmRaise {
        tenant: tenant.into(),
        id: id.into(),
        device: device.into(),
        alarm_type: alarm_type.into(),
        severity: severity.into(),
        text_sealed: Some(format!("text-{id}").into_bytes()),
        ts,
    }
}

fn seen(tenant: &str, device: &str, at_ms: i64) -> DeviceSeen {
    DeviceSeen { tenant: tenant.into(), device: device.into(), at_ms }
}

fn range<K>(from: Option<i64>, to: Option<i64>, after: Option<(i64, K)>, descending: bool, limit: u32) -> TimeRange<K> {
    TimeRange { from, to, after, descending, limit }
}

async fn check_device_data(store: &dyn Store) {
    for tenant in ["dx-one", "dx-two"] {
        create_tenant(store, tenant).await;
        store.create_device(&device(tenant, "probe", None)).await.unwrap();
    }
    // 250 telemetry rows (more than one multi-row chunk) and events, with `seen`, in one batch.
    let mut rows: Vec<DeviceDataRow> = (0..250).map(|i| telemetry_row("dx-one", "probe", 1_000 + i, 5)).collect();
    rows.push(telemetry_row("dx-one", "probe", 1_000, 3));
    rows.push(telemetry_row("dx-two", "probe", 1_000, 1));
    rows.push(event_row("dx-one", "probe", 2_000, "e1", "tag-a"));
    rows.push(event_row("dx-one", "probe", 2_000, "e2", "tag-b"));
    rows.push(event_row("dx-one", "probe", 2_500, "e3", "tag-a"));
    rows.push(DeviceDataRow::Attestation(AttestationRow {
        tenant: "dx-one".into(),
        device: "probe".into(),
        ts: 3_000,
        id: "a1".into(),
        sealed: vec![9],
    }));
    let batch = DeviceDataBatch {
        rows,
        seen: vec![seen("dx-one", "probe", 50_000), seen("dx-one", "probe", 40_000), seen("dx-two", "probe", 7)],
    };
    store.insert_device_data_batch(&batch).await.unwrap();
    store.insert_device_data_batch(&DeviceDataBatch::default()).await.unwrap();

    let all = store.list_telemetry("dx-one", "probe", &range(None, None, None, false, 0)).await.unwrap();
    assert_eq!(all.len(), 251);
    assert_eq!((all[0].ts, all[0].seq, all[1].ts, all[1].seq), (1_000, 3, 1_000, 5));
    assert_eq!(all[0].sealed, b"sealed-1000-3");
    // Keyset pages, both directions, inside a time range.
    let page = store
        .list_telemetry("dx-one", "probe", &range(Some(1_000), Some(1_010), Some((1_000, 3)), false, 3))
        .await
        .unwrap();
    assert_eq!(page.iter().map(|row| (row.ts, row.seq)).collect::<Vec<_>>(), [(1_000, 5), (1_001, 5), (1_002, 5)]);
    let page = store.list_telemetry("dx-one", "probe", &range(Some(1_000), Some(1_010), None, true, 2)).await.unwrap();
    assert_eq!(page.iter().map(|row| row.ts).collect::<Vec<_>>(), [1_010, 1_009]);
    let page = store.list_telemetry("dx-one", "probe", &range(None, None, Some((1_000, 5)), true, 5)).await.unwrap();
    assert_eq!(page.iter().map(|row| (row.ts, row.seq)).collect::<Vec<_>>(), [(1_000, 3)]);
    // Other tenant, same device id: its own rows only.
    let other = store.list_telemetry("dx-two", "probe", &range(None, None, None, false, 0)).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].tenant, "dx-two");

    let events = store.list_device_events("dx-one", "probe", None, &range(None, None, None, false, 0)).await.unwrap();
    assert_eq!(events.iter().map(|row| row.id.as_str()).collect::<Vec<_>>(), ["e1", "e2", "e3"]);
    let tagged =
        store.list_device_events("dx-one", "probe", Some("tag-a"), &range(None, None, None, true, 0)).await.unwrap();
    assert_eq!(tagged.iter().map(|row| row.id.as_str()).collect::<Vec<_>>(), ["e3", "e1"]);
    let after = store
        .list_device_events(
            "dx-one",
            "probe",
            None,
            &range(None, Some(2_000), Some((2_000, "e1".to_owned())), false, 0),
        )
        .await
        .unwrap();
    assert_eq!(after.iter().map(|row| row.id.as_str()).collect::<Vec<_>>(), ["e2"]);
    assert!(
        store.list_device_events("dx-two", "probe", None, &range(None, None, None, false, 0)).await.unwrap().is_empty()
    );
    let attestations = store.list_attestations("dx-one", "probe", 10).await.unwrap();
    assert_eq!(attestations.len(), 1);
    assert_eq!(attestations[0].sealed, [9]);

    // `seen`: the latest time wins, registered becomes active, other columns stay.
    let probe = store.get_device("dx-one", "probe").await.unwrap();
    assert_eq!((probe.last_seen, probe.status.as_str(), probe.connected), (Some(50_000), "active", false));
    store.touch_devices_last_seen(&[seen("dx-one", "probe", 10)]).await.unwrap();
    assert_eq!(store.get_device("dx-one", "probe").await.unwrap().last_seen, Some(50_000));
    store.touch_devices_last_seen(&[seen("dx-one", "probe", 60_000), seen("dx-one", "ghost", 1)]).await.unwrap();
    assert_eq!(store.get_device("dx-one", "probe").await.unwrap().last_seen, Some(60_000));
    // A revoked device stays revoked.
    store.revoke_device("dx-two", "probe", 9).await.unwrap();
    store.touch_devices_last_seen(&[seen("dx-two", "probe", 8)]).await.unwrap();
    assert_eq!(store.get_device("dx-two", "probe").await.unwrap().status, "revoked");

    // A failing batch leaves nothing behind: a duplicate key rolls back the rows before it.
    let failing = DeviceDataBatch {
        rows: vec![telemetry_row("dx-one", "probe", 9_000, 1), telemetry_row("dx-one", "probe", 1_000, 3)],
        seen: vec![seen("dx-one", "probe", 99_000)],
    };
    assert_conflict(store.insert_device_data_batch(&failing).await);
    assert!(
        store.list_telemetry("dx-one", "probe", &range(Some(9_000), None, None, false, 0)).await.unwrap().is_empty()
    );
    assert_eq!(store.get_device("dx-one", "probe").await.unwrap().last_seen, Some(60_000));
    assert_conflict(store.write_device_data_batch(&failing).await.map(drop));

    // The group-commit path: readable once written, durable once `wait` answers; several
    // writes waiting at once are all answered (one sync may serve several).
    let one = |ts| DeviceDataBatch { rows: vec![telemetry_row("dx-one", "probe", ts, 1)], seen: Vec::new() };
    let durable = store.write_device_data_batch(&one(9_500)).await.unwrap();
    let written = store.list_telemetry("dx-one", "probe", &range(Some(9_500), Some(9_500), None, false, 0)).await;
    assert_eq!(written.unwrap().len(), 1);
    durable.wait().await.unwrap();
    let mut waiting = Vec::new();
    for ts in 9_600..9_620 {
        waiting.push(store.write_device_data_batch(&one(ts)).await.unwrap());
    }
    for durable in waiting {
        durable.wait().await.unwrap();
    }
    let written = store.list_telemetry("dx-one", "probe", &range(Some(9_600), None, None, false, 0)).await;
    assert_eq!(written.unwrap().len(), 20);
}

async fn check_alarms(store: &dyn Store) {
    create_tenant(store, "al-one").await;
    create_tenant(store, "al-two").await;
    store.create_group(&group("al-one", "north", None)).await.unwrap();
    store.create_device(&device("al-one", "pump", Some("north"))).await.unwrap();
    store.create_device(&device("al-one", "fan", None)).await.unwrap();
    store.create_device(&device("al-two", "pump", None)).await.unwrap();

    // Raise, repeat (count, severity, last time), and a second type, in one batch.
    let batch = DeviceDataBatch {
        rows: vec![
            DeviceDataRow::RaiseAlarm(raise("al-one", "pump", "overheat", "0001", "MINOR", 100)),
            DeviceDataRow::RaiseAlarm(raise("al-one", "pump", "overheat", "0002", "CRITICAL", 200)),
            DeviceDataRow::RaiseAlarm(raise("al-one", "fan", "overheat", "0003", "MAJOR", 150)),
            DeviceDataRow::RaiseAlarm(raise("al-two", "pump", "overheat", "0004", "MAJOR", 150)),
        ],
        seen: Vec::new(),
    };
    store.insert_device_data_batch(&batch).await.unwrap();
    let pump = store.get_alarm("al-one", "0001").await.unwrap();
    assert_eq!(
        (pump.status.as_str(), pump.count, pump.severity.as_str(), pump.first_ts, pump.last_ts),
        ("ACTIVE", 2, "CRITICAL", 100, 200)
    );
    assert_eq!(pump.text_sealed.as_deref(), Some(&b"text-0002"[..]));
    assert_not_found(store.get_alarm("al-one", "0002").await);
    assert_not_found(store.get_alarm("al-two", "0001").await);
    // A repeat without text keeps the old text; an older time does not move last_ts back.
    let mut quiet = raise("al-one", "pump", "overheat", "0005", "CRITICAL", 50);
    quiet.text_sealed = None;
    store.raise_alarm(&quiet).await.unwrap();
    let pump = store.get_alarm("al-one", "0001").await.unwrap();
    assert_eq!((pump.count, pump.last_ts, pump.text_sealed.as_deref()), (3, 200, Some(&b"text-0002"[..])));

    // Listing: newest id first, filters, group scope, pages.
    let ids = |alarms: Vec<AlarmRow>| alarms.into_iter().map(|alarm| alarm.id).collect::<Vec<_>>();
    let all = store.list_alarms("al-one", &AlarmFilter::default(), &page(None, 0)).await.unwrap();
    assert_eq!(ids(all), ["0003", "0001"]);
    let critical = AlarmFilter { severity: Some("CRITICAL".into()), ..AlarmFilter::default() };
    assert_eq!(ids(store.list_alarms("al-one", &critical, &page(None, 0)).await.unwrap()), ["0001"]);
    let fan = AlarmFilter { device: Some("fan".into()), ..AlarmFilter::default() };
    assert_eq!(ids(store.list_alarms("al-one", &fan, &page(None, 0)).await.unwrap()), ["0003"]);
    let north = AlarmFilter { within_groups: Some(strings(&["north"])), ..AlarmFilter::default() };
    assert_eq!(ids(store.list_alarms("al-one", &north, &page(None, 0)).await.unwrap()), ["0001"]);
    let nowhere = AlarmFilter { within_groups: Some(Vec::new()), ..AlarmFilter::default() };
    assert!(store.list_alarms("al-one", &nowhere, &page(None, 0)).await.unwrap().is_empty());
    assert_eq!(ids(store.list_alarms("al-one", &AlarmFilter::default(), &page(None, 1)).await.unwrap()), ["0003"]);
    assert_eq!(
        ids(store.list_alarms("al-one", &AlarmFilter::default(), &page(Some("0003"), 1)).await.unwrap()),
        ["0001"]
    );

    // Status changes guarded by the current status.
    let acked = store.set_alarm_status("al-one", "0001", &["ACTIVE"], "ACKNOWLEDGED", 300).await.unwrap();
    assert_eq!((acked.status.as_str(), acked.updated_at), ("ACKNOWLEDGED", 300));
    assert_conflict(store.set_alarm_status("al-one", "0001", &["ACTIVE"], "ACKNOWLEDGED", 301).await);
    assert_not_found(store.set_alarm_status("al-two", "0001", &["ACTIVE"], "CLEARED", 301).await);
    assert_not_found(store.set_alarm_status("al-one", "nope", &["ACTIVE"], "CLEARED", 301).await);
    // An acknowledged alarm is still the open one: a repeat counts on it.
    store.raise_alarm(&raise("al-one", "pump", "overheat", "0006", "MAJOR", 400)).await.unwrap();
    assert_eq!(store.get_alarm("al-one", "0001").await.unwrap().count, 4);

    // The device clears it; the next raise opens a new alarm.
    let clear = DeviceDataRow::ClearAlarm(AlarmClear {
        tenant: "al-one".into(),
        device: "pump".into(),
        alarm_type: "overheat".into(),
        ts: 500,
    });
    store.insert_device_data_batch(&DeviceDataBatch { rows: vec![clear.clone()], seen: Vec::new() }).await.unwrap();
    assert_eq!(store.get_alarm("al-one", "0001").await.unwrap().status, "CLEARED");
    store.insert_device_data_batch(&DeviceDataBatch { rows: vec![clear], seen: Vec::new() }).await.unwrap();
    store.raise_alarm(&raise("al-one", "pump", "overheat", "0007", "MINOR", 600)).await.unwrap();
    let fresh = store.get_alarm("al-one", "0007").await.unwrap();
    assert_eq!((fresh.status.as_str(), fresh.count), ("ACTIVE", 1));
    let latest = store.latest_alarm("al-one", "pump", "overheat").await.unwrap().unwrap();
    assert_eq!(latest.id, "0007");
    assert!(store.latest_alarm("al-one", "pump", "other").await.unwrap().is_none());
    let cleared = AlarmFilter { status: Some("CLEARED".into()), ..AlarmFilter::default() };
    assert_eq!(ids(store.list_alarms("al-one", &cleared, &page(None, 0)).await.unwrap()), ["0001"]);
    // Raise and clear in one batch, in order: ends CLEARED.
    let batch = DeviceDataBatch {
        rows: vec![
            DeviceDataRow::RaiseAlarm(raise("al-one", "fan", "door", "0008", "MAJOR", 700)),
            DeviceDataRow::ClearAlarm(AlarmClear {
                tenant: "al-one".into(),
                device: "fan".into(),
                alarm_type: "door".into(),
                ts: 701,
            }),
        ],
        seen: Vec::new(),
    };
    store.insert_device_data_batch(&batch).await.unwrap();
    assert_eq!(store.get_alarm("al-one", "0008").await.unwrap().status, "CLEARED");
    // The other tenant's alarm never moved.
    let theirs = store.get_alarm("al-two", "0004").await.unwrap();
    assert_eq!((theirs.status.as_str(), theirs.count), ("ACTIVE", 1));
}

async fn check_silent_devices_and_twins(store: &dyn Store) {
    create_tenant(store, "sd-one").await;
    let mut watched = device("sd-one", "watched", None);
    watched.required_interval_s = Some(10);
    store.create_device(&watched).await.unwrap();
    let mut never = device("sd-one", "never", None);
    never.required_interval_s = Some(10);
    store.create_device(&never).await.unwrap();
    store.create_device(&device("sd-one", "free", None)).await.unwrap();
    store.touch_devices_last_seen(&[seen("sd-one", "watched", 1_000), seen("sd-one", "free", 1_000)]).await.unwrap();

    let silent = |now| async move {
        store
            .list_silent_devices(now, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|device| device.tenant == "sd-one")
            .map(|device| (device.device, device.last_seen, device.required_interval_s))
            .collect::<Vec<_>>()
    };
    assert!(silent(11_000).await.is_empty(), "exactly the interval is not yet silent");
    assert_eq!(silent(11_001).await, [("watched".to_owned(), 1_000, 10)]);
    store.raise_alarm(&raise("sd-one", "watched", "unavailable", "0100", "MAJOR", 11_001)).await.unwrap();
    assert!(silent(20_000).await.is_empty(), "raised once");
    // New data clears it in the same transaction.
    let batch = DeviceDataBatch {
        rows: vec![telemetry_row("sd-one", "watched", 20_000, 1)],
        seen: vec![seen("sd-one", "watched", 20_000)],
    };
    store.insert_device_data_batch(&batch).await.unwrap();
    assert_eq!(store.get_alarm("sd-one", "0100").await.unwrap().status, "CLEARED");
    assert!(silent(30_000).await.is_empty());
    assert_eq!(silent(30_001).await, [("watched".to_owned(), 20_000, 10)]);

    // Reported twin: insert-if-absent, then compare-and-set on the version.
    assert!(store.get_twin_reported("sd-one", "watched").await.unwrap().is_none());
    let twin = |version: i64, sealed: &[u8]| TwinReportedRow {
        tenant: "sd-one".into(),
        device: "watched".into(),
        reported_sealed: sealed.to_vec(),
        reported_version: version,
        updated_at: version * 10,
    };
    store.put_twin_reported(&twin(1, b"one"), 0).await.unwrap();
    assert_conflict(store.put_twin_reported(&twin(1, b"again"), 0).await);
    store.put_twin_reported(&twin(2, b"two"), 1).await.unwrap();
    assert_conflict(store.put_twin_reported(&twin(2, b"stale"), 1).await);
    let stored = store.get_twin_reported("sd-one", "watched").await.unwrap().unwrap();
    assert_eq!((stored.reported_version, stored.reported_sealed.as_slice(), stored.updated_at), (2, &b"two"[..], 20));
}

/// Several points of a device committed in one batch share a row; whatever the packing, every
/// range, direction, cursor and limit lists exactly the points a plain sorted list would. The
/// points are spread so that rows span a second, overlap in time, repeat a `ts` and come in
/// batches of one (unpacked rows), and the reference is the same list filtered in memory.
async fn check_packed_telemetry_pages(store: &dyn Store) {
    create_tenant(store, "dp-one").await;
    store.create_device(&device("dp-one", "dense", None)).await.unwrap();
    // A small deterministic generator: the same points on every backend and every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % below
    };
    let mut all: Vec<(i64, i64)> = Vec::new();
    for batch in 0..150 {
        let size = if batch % 5 == 0 { 1 } else { 1 + next(if batch % 7 == 0 { 150 } else { 12 }) };
        let base = 10_000 + (batch as i64) * 300;
        let rows: Vec<DeviceDataRow> = (0..size)
            .map(|_| {
                let (ts, seq) = (base + next(2_500) as i64, next(4) as i64 + 1 + (all.len() as i64) * 10);
                all.push((ts, seq));
                telemetry_row("dp-one", "dense", ts, seq)
            })
            .collect();
        store.insert_device_data_batch(&DeviceDataBatch { rows, seen: Vec::new() }).await.unwrap();
    }
    // Rows that share one `ts`, their points' seqs interleaved: a page may end inside the tie.
    for batch in 0..40 {
        let rows: Vec<DeviceDataRow> = (0..3)
            .map(|i| {
                all.push((5_000, batch + 40 * i));
                telemetry_row("dp-one", "dense", 5_000, batch + 40 * i)
            })
            .collect();
        store.insert_device_data_batch(&DeviceDataBatch { rows, seen: Vec::new() }).await.unwrap();
    }
    let tied = store.list_telemetry("dp-one", "dense", &range(None, Some(5_000), None, false, 20)).await.unwrap();
    assert_eq!(tied.iter().map(|row| row.seq).collect::<Vec<_>>(), (0..20).collect::<Vec<i64>>());
    all.sort_unstable();
    let (first, last) = (all[0].0, all[all.len() - 1].0);
    for case in 0..600 {
        let from = (case % 3 != 0).then(|| first - 100 + next((last - first + 200) as u64) as i64);
        let to = (case % 4 != 0).then(|| from.unwrap_or(first) + next(6_000) as i64);
        let descending = case % 2 == 1;
        let limit = [0, 1, 2, 7, 20, 50, 90, 333][case % 8];
        let after = (case % 5 < 2).then(|| all[next(all.len() as u64) as usize]);
        let mut expected: Vec<(i64, i64)> = all
            .iter()
            .copied()
            .filter(|&(ts, _)| from.is_none_or(|from| ts >= from) && to.is_none_or(|to| ts <= to))
            .filter(|&point| after.is_none_or(|after| if descending { point < after } else { point > after }))
            .collect();
        if descending {
            expected.reverse();
        }
        if limit > 0 {
            expected.truncate(limit as usize);
        }
        let listed = store.list_telemetry("dp-one", "dense", &range(from, to, after, descending, limit)).await.unwrap();
        let got: Vec<(i64, i64)> = listed.iter().map(|row| (row.ts, row.seq)).collect();
        assert_eq!(
            got, expected,
            "case {case}: from {from:?} to {to:?} after {after:?} desc {descending} limit {limit}"
        );
        for row in &listed {
            assert_eq!(
                row.sealed,
                format!("sealed-{}-{}", row.ts, row.seq).into_bytes(),
                "each point keeps its envelope"
            );
        }
    }
    // Walking the pages with the cursor visits every point once, in both directions.
    for descending in [false, true] {
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page =
                store.list_telemetry("dp-one", "dense", &range(None, None, after, descending, 37)).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.ts, last.seq));
            seen.extend(page.iter().map(|row| (row.ts, row.seq)));
        }
        let mut expected = all.clone();
        if descending {
            expected.reverse();
        }
        assert_eq!(seen, expected);
    }
    store.delete_tenant("dp-one").await.unwrap();
}

async fn check_device_data_erasure(store: &dyn Store) {
    for tenant in ["de-one", "de-two"] {
        create_tenant(store, tenant).await;
        store.create_device(&device(tenant, "meter", None)).await.unwrap();
        let batch = DeviceDataBatch {
            rows: vec![
                telemetry_row(tenant, "meter", 1, 1),
                event_row(tenant, "meter", 1, "ev", "tag"),
                DeviceDataRow::RaiseAlarm(raise(tenant, "meter", "leak", "0200", "MAJOR", 1)),
                DeviceDataRow::Attestation(AttestationRow {
                    tenant: tenant.into(),
                    device: "meter".into(),
                    ts: 1,
                    id: "at".into(),
                    sealed: vec![1],
                }),
            ],
            seen: Vec::new(),
        };
        store.insert_device_data_batch(&batch).await.unwrap();
        let twin = TwinReportedRow {
            tenant: tenant.into(),
            device: "meter".into(),
            reported_sealed: vec![1],
            reported_version: 1,
            updated_at: 1,
        };
        store.put_twin_reported(&twin, 0).await.unwrap();
    }
    let everything = range(None, None, None, false, 0);
    store.delete_device("de-one", "meter", 5).await.unwrap();
    assert!(store.list_telemetry("de-one", "meter", &everything).await.unwrap().is_empty());
    let events = range(None, None, None::<(i64, String)>, false, 0);
    assert!(store.list_device_events("de-one", "meter", None, &events).await.unwrap().is_empty());
    assert!(store.list_attestations("de-one", "meter", 10).await.unwrap().is_empty());
    assert_not_found(store.get_alarm("de-one", "0200").await);
    assert!(store.get_twin_reported("de-one", "meter").await.unwrap().is_none());
    // The same device id in another tenant keeps its data until its tenant goes.
    assert_eq!(store.list_telemetry("de-two", "meter", &everything).await.unwrap().len(), 1);
    assert!(store.get_alarm("de-two", "0200").await.is_ok());
    store.delete_tenant("de-two").await.unwrap();
    assert!(store.list_telemetry("de-two", "meter", &everything).await.unwrap().is_empty());
    assert!(store.list_device_events("de-two", "meter", None, &events).await.unwrap().is_empty());
    assert_not_found(store.get_alarm("de-two", "0200").await);
    assert!(store.get_twin_reported("de-two", "meter").await.unwrap().is_none());
    assert!(store.list_attestations("de-two", "meter", 10).await.unwrap().is_empty());
}

/// Forgets the retained message of (tenant, topic) (a batch of one change).
async fn delete_retained(store: &dyn Store, tenant: &str, topic: &str) -> StoreResult<()> {
    let change = RetainedChange::Delete { tenant: tenant.to_owned(), topic: topic.to_owned() };
    store.write_retained_messages(&[change]).await
}

/// Keeps one retained message (a batch of one change).
async fn put_retained(store: &dyn Store, row: &RetainedMessageRow) -> StoreResult<()> {
    store.write_retained_messages(&[RetainedChange::Put(row.clone())]).await
}

fn retained(tenant: &str, topic: &str, payload: &[u8]) -> RetainedMessageRow {
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

async fn check_retained_messages(store: &dyn Store) {
    for tenant in ["rm-a", "rm-b"] {
        create_tenant(store, tenant).await;
    }
    let topics = |rows: Vec<RetainedMessageRow>| -> Vec<(String, String)> {
        rows.into_iter().map(|row| (row.tenant, row.topic)).collect()
    };

    // Every column round-trips, NULLs included.
    let full = RetainedMessageRow {
        qos: 2,
        properties_sealed: Some(vec![0, 255, 7]),
        expires_at: Some(1_900_000_000_000),
        updated_at: 1_800_000_000_000,
        ..retained("rm-a", "plant/line-1/state", b"\x00running\xff")
    };
    put_retained(store, &full).await.unwrap();
    put_retained(store, &retained("rm-a", "plant/line-2/state", b"idle")).await.unwrap();
    put_retained(store, &retained("rm-b", "plant/line-1/state", b"other tenant")).await.unwrap();
    let listed = store.list_retained_messages("rm-a").await.unwrap();
    assert_eq!(listed, vec![full.clone(), retained("rm-a", "plant/line-2/state", b"idle")]);

    // An upsert replaces the message of its topic, in its tenant only.
    let replaced = RetainedMessageRow { qos: 0, updated_at: 2, ..retained("rm-a", "plant/line-1/state", b"stopped") };
    put_retained(store, &replaced).await.unwrap();
    let listed = store.list_retained_messages("rm-a").await.unwrap();
    assert_eq!(listed[0], replaced, "every column is replaced, the cleared ones too");
    assert_eq!(listed.len(), 2);
    assert_eq!(store.list_retained_messages("rm-b").await.unwrap()[0].payload_sealed, b"other tenant");

    // Deleting clears one topic of one tenant; deleting what is not there is fine.
    delete_retained(store, "rm-a", "plant/line-1/state").await.unwrap();
    delete_retained(store, "rm-a", "plant/line-1/state").await.unwrap();
    delete_retained(store, "rm-a", "never/retained").await.unwrap();
    assert_eq!(
        topics(store.list_retained_messages("rm-a").await.unwrap()),
        [("rm-a".into(), "plant/line-2/state".into())]
    );
    assert_eq!(store.list_retained_messages("rm-b").await.unwrap().len(), 1);

    // A batch applies in order: the last change of a topic wins.
    let batch = [
        RetainedChange::Put(retained("rm-b", "x", b"1")),
        RetainedChange::Delete { tenant: "rm-b".into(), topic: "x".into() },
        RetainedChange::Put(retained("rm-b", "y", b"1")),
        RetainedChange::Put(retained("rm-b", "y", b"2")),
        RetainedChange::Delete { tenant: "rm-a".into(), topic: "plant/line-2/state".into() },
    ];
    store.write_retained_messages(&batch).await.unwrap();
    store.write_retained_messages(&[]).await.unwrap();
    assert!(store.list_retained_messages("rm-a").await.unwrap().is_empty());
    let listed = store.list_retained_messages("rm-b").await.unwrap();
    assert_eq!(topics(listed.clone()), [("rm-b".into(), "plant/line-1/state".into()), ("rm-b".into(), "y".into())]);
    assert_eq!(listed[1].payload_sealed, b"2");

    // A batch with a message of a tenant that does not exist fails as a whole.
    let doomed =
        [RetainedChange::Put(retained("rm-b", "z", b"1")), RetainedChange::Put(retained("rm-none", "z", b"1"))];
    assert_conflict(store.write_retained_messages(&doomed).await);
    assert_eq!(store.list_retained_messages("rm-b").await.unwrap().len(), 2, "nothing of a failed batch stays");
    assert!(store.list_retained_messages("rm-none").await.unwrap().is_empty());

    // All tenants at once, for the gateway's start: ordered by tenant, then topic.
    put_retained(store, &retained("rm-a", "b", b"1")).await.unwrap();
    put_retained(store, &retained("rm-a", "a", b"1")).await.unwrap();
    let all: Vec<(String, String)> = topics(store.list_all_retained_messages().await.unwrap())
        .into_iter()
        .filter(|(t, _)| t.starts_with("rm-"))
        .collect();
    let expected = [("rm-a", "a"), ("rm-a", "b"), ("rm-b", "plant/line-1/state"), ("rm-b", "y")];
    assert_eq!(all, expected.map(|(tenant, topic)| (tenant.to_owned(), topic.to_owned())));

    // Expired messages are purged by their wall-clock expiry; unexpiring ones stay.
    put_retained(store, &RetainedMessageRow { expires_at: Some(100), ..retained("rm-a", "a", b"1") }).await.unwrap();
    put_retained(store, &RetainedMessageRow { expires_at: Some(200), ..retained("rm-b", "y", b"2") }).await.unwrap();
    assert_eq!(store.delete_expired_retained_messages(99).await.unwrap(), 0);
    assert_eq!(store.delete_expired_retained_messages(100).await.unwrap(), 1);
    assert_eq!(topics(store.list_retained_messages("rm-a").await.unwrap()), [("rm-a".into(), "b".into())]);
    assert_eq!(store.list_retained_messages("rm-b").await.unwrap().len(), 2);

    for tenant in ["rm-a", "rm-b"] {
        store.delete_tenant(tenant).await.unwrap();
        assert!(store.list_retained_messages(tenant).await.unwrap().is_empty());
    }
}
