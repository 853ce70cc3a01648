//! The README tour and the attacker's view of it through the real process over HTTPS, on
//! SQLite and (when `RAMPART_TEST_POSTGRES` is set) on PostgreSQL.

use rampart_testkit::{ADMIN_PASSWORD, ServerOptions, TestServer, postgres_url};
use reqwest::Method;
use serde_json::json;

use crate::BIN;

/// A PostgreSQL database of its own for one server: a fresh schema in the test database.
pub(crate) fn postgres_options(url: &str, schema: &str) -> ServerOptions {
    let mut client = std::process::Command::new("psql");
    let created = client
        .args([url, "-q", "-c", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(created, "creating schema {schema} with psql");
    let separator = if url.contains('?') { '&' } else { '?' };
    ServerOptions { storage: Some(format!("{url}{separator}options=-csearch_path%3D{schema}")), ..Default::default() }
}

/// Drops a schema made by [`postgres_options`].
pub(crate) fn drop_schema(url: &str, schema: &str) {
    std::process::Command::new("psql")
        .args([url, "-q", "-c", &format!("DROP SCHEMA {schema} CASCADE")])
        .env("PGOPTIONS", "--client-min-messages=warning")
        .status()
        .ok();
}

/// The README's five-minute tour, step by step, plus the checks an attacker would try.
async fn tour(server: &TestServer) {
    let admin = server.admin_token().await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;

    // A device with a token and a certificate.
    let (status, device) = server.post("/api/v1/devices", &acme, json!({"id": "sensor-1", "type": "thermo"})).await;
    assert_eq!(status, 201, "{device}");
    assert_eq!(device["status"], "registered");
    let (status, token) = server.post("/api/v1/devices/sensor-1/tokens", &acme, json!({})).await;
    assert_eq!(status, 201, "{token}");
    assert!(token["token"].as_str().is_some_and(|t| t.len() >= 40));
    let (status, ca) = server.get("/api/v1/ca", &acme).await;
    assert_eq!(status, 200, "{ca}");

    // The same device id in another tenant is another device; neither sees the other.
    assert_eq!(server.post("/api/v1/devices", &globex, json!({"id": "sensor-1"})).await.0, 201);
    assert_eq!(server.get("/api/v1/devices/sensor-1/tokens", &globex).await.1["items"], json!([]));
    let (status, body) =
        server.call(Method::DELETE, "/api/v1/devices/sensor-1/tokens/0123456789abcdef", Some(&globex), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    // The parent tenant manages acme's lifecycle but cannot read its devices.
    let (status, listing) = server.get("/api/v1/devices", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(listing["items"], json!([]));
    assert_eq!(server.get("/api/v1/devices/sensor-1", &admin).await.0, 404);

    // Tampered and foreign tokens are refused.
    let mut tampered = acme.clone();
    let last = tampered.pop().map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    tampered.push(last);
    assert_eq!(server.get("/api/v1/devices", &tampered).await.0, 401);
    assert_eq!(server.get("/api/v1/devices", "rak_0000_nothing").await.0, 401);

    // Revocation kills the token and the status says so.
    let (status, revoked) = server.post("/api/v1/devices/sensor-1/revoke", &acme, json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(server.get("/api/v1/devices/sensor-1/tokens", &acme).await.1["items"], json!([]));

    // Wrong password and unknown user look the same.
    let wrong = json!({"tenant": "acme", "username": "admin", "password": "not-the-password-1"});
    let unknown = json!({"tenant": "acme", "username": "nobody", "password": ADMIN_PASSWORD});
    let (s1, b1) = server.call(Method::POST, "/api/v1/auth/login", None, Some(wrong)).await;
    let (s2, b2) = server.call(Method::POST, "/api/v1/auth/login", None, Some(unknown)).await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2);

    // The audit chain of acme verifies and shows what happened.
    let (status, verify) = server.get("/api/v1/audit/verify", &acme).await;
    assert_eq!(status, 200, "{verify}");
    assert_eq!(verify["valid"], true, "{verify}");
    let (_, records) = server.get("/api/v1/audit?action=device.revoke", &acme).await;
    assert_eq!(records["items"].as_array().map(Vec::len), Some(1), "{records}");
}

#[tokio::test]
async fn tour_on_sqlite() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    tour(&server).await;
    assert!(!server.log().contains(ADMIN_PASSWORD), "secrets must not reach the logs");
}

#[tokio::test]
async fn tour_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("e2e_{}", std::process::id());
    let server = TestServer::start(BIN, postgres_options(&url, &schema)).await;
    tour(&server).await;
    drop(server);
    drop_schema(&url, &schema);
}
