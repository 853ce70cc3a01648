//! Security events listing and tenant key rotation through the API.

use axum::http::StatusCode;
use rampart_core::{SecurityEventType, Severity};
use rampart_platform::SecurityEventDraft;
use serde_json::json;

use crate::harness::{ADMIN_PASSWORD, Harness};

#[tokio::test]
async fn security_events_are_listed_per_tenant_and_filtered() {
    let h = Harness::new().await;
    let acme = h.tenant_admin("acme").await;
    let globex = h.tenant_admin("globex").await;
    for (tenant, event_type, severity) in [
        ("acme", SecurityEventType::AclViolation, Severity::Minor),
        ("acme", SecurityEventType::AuthFailure, Severity::Minor),
        ("acme", SecurityEventType::AclViolation, Severity::Major),
        ("globex", SecurityEventType::AclViolation, Severity::Minor),
    ] {
        let mut draft = SecurityEventDraft::new(tenant, event_type, severity);
        draft.device = Some("sensor-1".to_owned());
        draft.details = json!({"topic": "devices/other/telemetry"});
        h.platform.raise_security_event(draft).await;
    }
    let (status, page) = h.get("/api/v1/security/events", &acme).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "only acme's events: {page}");
    assert_eq!(items[0]["severity"], "MAJOR", "newest first");
    assert_eq!(items[0]["details"]["topic"], "devices/other/telemetry");
    assert_eq!(items[0]["device"], "sensor-1");

    let (_, page) = h.get("/api/v1/security/events?type=acl_violation", &acme).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let (_, page) = h.get("/api/v1/security/events?severity=MINOR&limit=1", &acme).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
    let (_, next) = h.get(&format!("/api/v1/security/events?severity=MINOR&limit=1&cursor={cursor}"), &acme).await;
    assert_eq!(next["items"].as_array().map(Vec::len), Some(1));
    assert_ne!(next["items"][0]["id"], page["items"][0]["id"]);
    assert!(next["next_cursor"].is_null());
    assert_eq!(h.get("/api/v1/security/events", &globex).await.1["items"].as_array().map(Vec::len), Some(1));

    let (status, body) = h.get("/api/v1/security/events?severity=LOUD", &acme).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (status, body) = h.get("/api/v1/security/events?since=yesterday", &acme).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
}

#[tokio::test]
async fn tenant_key_rotation_keeps_old_secrets_readable() {
    let h = Harness::new().await;
    let acme = h.tenant_admin("acme").await;
    let body = json!({"username": "eve", "password": ADMIN_PASSWORD, "roles": ["viewer"], "email": "eve@acme.example"});
    assert_eq!(h.post("/api/v1/users", &acme, body).await.0, StatusCode::CREATED);
    let (status, rotated) = h.post("/api/v1/tenant/keys/rotate", &acme, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let key_id = rotated["key_id"].as_str().expect("key id").to_owned();
    let keys = h.store.list_tenant_keys("acme").await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].key_id, key_id, "the new key is active");
    // The e-mail sealed under the old key still opens; the CA key too.
    let (status, user) = h.get("/api/v1/users/eve", &acme).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["email"], "eve@acme.example");
    assert_eq!(h.get("/api/v1/ca/crl", &acme).await.0, StatusCode::OK);
    // A viewer cannot rotate.
    let viewer = h.login("acme", "eve", ADMIN_PASSWORD).await;
    assert_eq!(h.post("/api/v1/tenant/keys/rotate", &viewer, json!({})).await.0, StatusCode::FORBIDDEN);
    let (_, audit) = h.get("/api/v1/audit?action=keys.rotate_tenant", &acme).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
}
