//! The gateway's store methods (`GatewayStore`) on SQLite, and on PostgreSQL when
//! `RAMPART_TEST_POSTGRES` names a server (in a fresh schema).

use std::sync::Arc;

use rampart_crypto::sha256;
use rampart_store::{Device, DeviceToken, Store, Tenant, TrustedCa};

async fn gateway_store_suite(store: &dyn Store) {
    for id in ["acme", "globex"] {
        let tenant = Tenant { id: id.into(), name: id.into(), parent: None, created_at: 1 };
        store.create_tenant(&tenant).await.expect("tenant");
    }
    // Topic policies: absent, stored, replaced; per tenant.
    assert_eq!(store.get_topic_policy("acme").await.expect("get"), None);
    store.put_topic_policy("acme", r#"{"rules":[]}"#).await.expect("put");
    store.put_topic_policy("acme", r#"{"free_namespace":{"devices":true}}"#).await.expect("replace");
    assert_eq!(
        store.get_topic_policy("acme").await.expect("get").as_deref(),
        Some(r#"{"free_namespace":{"devices":true}}"#)
    );
    assert_eq!(store.get_topic_policy("globex").await.expect("get"), None);

    // Tokens by hash, across tenants.
    for tenant in ["acme", "globex"] {
        let device = Device {
            tenant: tenant.into(),
            id: "d1".into(),
            name: "d1".into(),
            device_type: None,
            group: None,
            attributes_json: "{}".into(),
            required_interval_s: None,
            status: "registered".into(),
            connected: false,
            last_seen: None,
            last_address: None,
            firmware: None,
            created_at: 1,
        };
        store.create_device(&device).await.expect("device");
        let token = DeviceToken {
            tenant: tenant.into(),
            device: "d1".into(),
            id: format!("t-{tenant}"),
            token_hash: sha256(format!("token of {tenant}").as_bytes()).to_vec(),
            created_at: 1,
        };
        store.create_device_token(&token).await.expect("token");
    }
    let found = store.find_device_token_by_hash(&sha256(b"token of globex")).await.expect("find").expect("found");
    assert_eq!((found.tenant.as_str(), found.id.as_str()), ("globex", "t-globex"));
    assert!(store.find_device_token_by_hash(&sha256(b"nobody's")).await.expect("find").is_none());

    // Connection state touches only its columns.
    store.mark_device_connected("acme", "d1", 1000, "192.0.2.7").await.expect("connected");
    let device = store.get_device("acme", "d1").await.expect("device");
    assert_eq!((device.status.as_str(), device.connected, device.last_seen), ("active", true, Some(1000)));
    assert_eq!(device.last_address.as_deref(), Some("192.0.2.7"));
    store.mark_device_disconnected("acme", "d1", 2000).await.expect("disconnected");
    let device = store.get_device("acme", "d1").await.expect("device");
    assert_eq!((device.status.as_str(), device.connected, device.last_seen), ("active", false, Some(2000)));
    assert_eq!(store.get_device("globex", "d1").await.expect("other tenant").status, "registered");
    assert!(store.mark_device_connected("acme", "missing", 1, "x").await.is_err());

    // Trusted CAs by subject, across tenants.
    for (tenant, id, subject) in [("acme", "a", "CN=Shared"), ("globex", "b", "CN=Shared"), ("globex", "c", "CN=Other")]
    {
        let ca = TrustedCa {
            tenant: tenant.into(),
            id: id.into(),
            cert_pem: String::new(),
            subject: subject.into(),
            auto_register: false,
            created_at: 1,
        };
        store.create_trusted_ca(&ca).await.expect("trusted CA");
    }
    let shared: Vec<(String, String)> = store
        .list_trusted_cas_by_subject("CN=Shared")
        .await
        .expect("by subject")
        .into_iter()
        .map(|ca| (ca.tenant, ca.id))
        .collect();
    assert_eq!(shared, [("acme".to_owned(), "a".to_owned()), ("globex".to_owned(), "b".to_owned())]);

    // A deleted tenant takes its topic policy along.
    store.delete_tenant("acme").await.expect("delete tenant");
    assert_eq!(store.get_topic_policy("acme").await.expect("get"), None);
}

#[tokio::test]
async fn gateway_store_on_sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn Store> = rampart_store::open_sqlite(&dir.path().join("rampart.db")).await.expect("store");
    gateway_store_suite(store.as_ref()).await;
}

#[tokio::test]
async fn gateway_store_on_postgres() {
    let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES") else {
        println!("skipping PostgreSQL: RAMPART_TEST_POSTGRES not set");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let schema = format!("gw_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("postgres");
    tokio::spawn(connection);
    admin.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("schema");
    let store = rampart_store::open_postgres_in_schema(&url, &schema).await.expect("store");
    gateway_store_suite(store.as_ref()).await;
    drop(store);
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("drop schema");
}
