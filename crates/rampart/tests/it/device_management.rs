//! SPEC §9 through the real binary: operations over MQTT and HTTPS (delivery at once, again
//! after every reconnect while PENDING, forward-only status, timeout, cancel, encryption at
//! rest), the desired twin reaching a connected device, and another tenant reaching none of it.

use std::time::Duration;

use rampart_mqtt::{Protocol, QoS};
use rampart_testkit::mqtt::{ConnectOptions, MqttClient};
use rampart_testkit::{ServerOptions, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::BIN;
use crate::gateway::device_with_token;
use crate::retained::found_in_files;

const WAIT: Duration = Duration::from_secs(2);

/// Connects `device` with its token and subscribes to `filter`.
async fn subscribed(server: &TestServer, protocol: Protocol, device: &str, token: &str, filter: &str) -> MqttClient {
    let options = ConnectOptions::token(protocol, "acme", device, token);
    let (mut client, code) =
        MqttClient::connect(&server.mqtt_addr, &server.data_dir.join("tls/ca.pem"), &options).await.expect("connect");
    assert_eq!(code, 0);
    assert_eq!(client.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe"), 1);
    client
}

fn json_of(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).expect("JSON payload")
}

async fn operation(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, body) = server.get(&format!("/api/v1/operations/{id}"), token).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn operations_reach_the_device_until_it_takes_them_and_move_only_forward() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let token = device_with_token(&server, &acme, "pump-1").await;
    device_with_token(&server, &globex, "pump-1").await;
    let mut device = subscribed(&server, Protocol::V5, "pump-1", &token, "devices/pump-1/operations").await;

    // Created while connected: delivered at once with id, type, payload and created_at.
    let body = json!({"type": "restart", "payload": {"marker": "op-secret-payload-7731"}, "timeout_s": 600});
    let (status, created) = server.post("/api/v1/devices/pump-1/operations", &acme, body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "PENDING");
    let id = created["id"].as_str().expect("id").to_owned();
    let delivered = device.next_publish(WAIT).await.expect("operation delivered at once");
    assert_eq!(delivered.topic, "devices/pump-1/operations");
    let message = json_of(&delivered.payload);
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["type"], "restart");
    assert_eq!(message["payload"]["marker"], "op-secret-payload-7731");
    assert!(message["created_at"].is_string(), "{message}");

    // Again after every reconnect while PENDING.
    for _ in 0..2 {
        drop(device);
        device = subscribed(&server, Protocol::V311, "pump-1", &token, "devices/pump-1/operations").await;
        let again = device.next_publish(WAIT).await.expect("redelivered after reconnect");
        assert_eq!(json_of(&again.payload)["id"], id.as_str());
    }

    // The device takes it: EXECUTING, then no redelivery after a reconnect.
    drop(device);
    let mut device = subscribed(&server, Protocol::V5, "pump-1", &token, "devices/pump-1/operations").await;
    assert!(device.next_publish(WAIT).await.is_some(), "still pending at this reconnect");
    let status_topic = format!("devices/pump-1/operations/{id}/status");
    let reason = device.publish_qos1(&status_topic, br#"{"status":"EXECUTING"}"#).await.expect("publish");
    assert_eq!(reason, Some(0));
    assert_eq!(operation(&server, &acme, &id).await["status"], "EXECUTING");
    drop(device);
    let mut device = subscribed(&server, Protocol::V5, "pump-1", &token, "devices/pump-1/operations").await;
    assert!(device.next_publish(Duration::from_millis(700)).await.is_none(), "EXECUTING is not redelivered");

    // Forward only: SUCCESSFUL with a result, then no move back; malformed is 0x99.
    let done = br#"{"status":"SUCCESSFUL","result":{"uptime_s":3}}"#;
    assert_eq!(device.publish_qos1(&status_topic, done).await.expect("publish"), Some(0));
    let back = device.publish_qos1(&status_topic, br#"{"status":"EXECUTING"}"#).await.expect("publish");
    assert!(back.is_some_and(|code| code >= 0x80), "moving back is refused, got {back:?}");
    let malformed = device.publish_qos1(&status_topic, br#"{"status":"DONE"}"#).await.expect("publish");
    assert_eq!(malformed, Some(0x99));
    let finished = operation(&server, &acme, &id).await;
    assert_eq!((finished["status"].as_str(), finished["result"]["uptime_s"].as_u64()), (Some("SUCCESSFUL"), Some(3)));

    // Another device's operation topic is denied like any other topic.
    device_with_token(&server, &acme, "pump-2").await;
    let (_, other) = server.post("/api/v1/devices/pump-2/operations", &acme, json!({"type": "restart"})).await;
    let other_id = other["id"].as_str().expect("id");
    let denied = device
        .publish_qos1(&format!("devices/pump-2/operations/{other_id}/status"), br#"{"status":"FAILED"}"#)
        .await
        .expect("publish");
    assert_eq!(denied, Some(0x87));
    // And its own topic naming another device's operation changes nothing.
    let foreign = device
        .publish_qos1(&format!("devices/pump-1/operations/{other_id}/status"), br#"{"status":"FAILED"}"#)
        .await
        .expect("publish");
    assert!(foreign.is_some_and(|code| code >= 0x80), "{foreign:?}");
    assert_eq!(operation(&server, &acme, other_id).await["status"], "PENDING");

    // Audited as device control.
    let (_, audit) = server.get("/api/v1/audit?action=operation.create", &acme).await;
    assert!(audit["items"].as_array().is_some_and(|items| items.len() == 2), "{audit}");

    // Another tenant, with the same device id, sees and reaches none of it.
    assert_eq!(server.get(&format!("/api/v1/operations/{id}"), &globex).await.0, 404);
    assert_eq!(server.post(&format!("/api/v1/operations/{other_id}/cancel"), &globex, json!({})).await.0, 404);
    let (_, listed) = server.get("/api/v1/devices/pump-1/operations", &globex).await;
    assert_eq!(listed["items"], json!([]), "{listed}");
    assert_eq!(operation(&server, &acme, other_id).await["status"], "PENDING");

    // The payload is encrypted at rest.
    drop(device);
    let mut server = server;
    server.terminate();
    assert!(found_in_files(&server.data_dir, b"op-secret-payload-7731").is_empty(), "payload stored in clear");
}

#[tokio::test]
async fn timeout_cancel_and_the_https_device_side() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let token = device_with_token(&server, &acme, "meter-1").await;

    let (_, short) =
        server.post("/api/v1/devices/meter-1/operations", &acme, json!({"type": "ping", "timeout_s": 1})).await;
    let short_id = short["id"].as_str().expect("id").to_owned();
    let (_, cancelled) = server.post("/api/v1/devices/meter-1/operations", &acme, json!({"type": "reboot"})).await;
    let cancelled_id = cancelled["id"].as_str().expect("id").to_owned();
    let (_, taken) = server.post("/api/v1/devices/meter-1/operations", &acme, json!({"type": "read"})).await;
    let taken_id = taken["id"].as_str().expect("id").to_owned();
    let bad = server.post("/api/v1/devices/meter-1/operations", &acme, json!({"type": "x", "timeout_s": 0})).await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert_eq!(server.post("/api/v1/devices/nobody/operations", &acme, json!({"type": "x"})).await.0, 404);

    // The device's HTTPS view: its pending operations, and forward-only reports.
    let (status, pending) = server.get("/api/v1/device/operations?status=PENDING", &token).await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["items"].as_array().map(Vec::len), Some(3), "{pending}");
    let report = |id: &str, body: Value| {
        let path = format!("/api/v1/device/operations/{id}");
        let token = token.clone();
        let server = &server;
        async move { server.call(Method::PUT, &path, Some(&token), Some(body)).await }
    };
    let (status, executing) = report(&taken_id, json!({"status": "EXECUTING"})).await;
    assert_eq!((status, executing["status"].as_str()), (200, Some("EXECUTING")), "{executing}");
    assert_eq!(report(&taken_id, json!({"status": "PENDING"})).await.0, 400);
    assert_eq!(report(&taken_id, json!({"status": "FAILED", "reason": "disk full"})).await.0, 200);
    assert_eq!(report(&taken_id, json!({"status": "SUCCESSFUL"})).await.0, 409);
    assert_eq!(operation(&server, &acme, &taken_id).await["reason"], "disk full");

    // Cancel while PENDING; not once it has left PENDING.
    let (status, body) = server.post(&format!("/api/v1/operations/{cancelled_id}/cancel"), &acme, json!({})).await;
    assert_eq!((status, body["status"].as_str(), body["reason"].as_str()), (200, Some("FAILED"), Some("cancelled")));
    assert_eq!(server.post(&format!("/api/v1/operations/{cancelled_id}/cancel"), &acme, json!({})).await.0, 409);
    assert_eq!(server.post(&format!("/api/v1/operations/{taken_id}/cancel"), &acme, json!({})).await.0, 409);
    let (_, audit) = server.get("/api/v1/audit?action=operation.cancel", &acme).await;
    assert!(audit["items"].as_array().is_some_and(|items| items.len() == 1), "{audit}");

    // The timeout fails the first one, with reason "timeout".
    let mut timed_out = Value::Null;
    for _ in 0..40 {
        timed_out = operation(&server, &acme, &short_id).await;
        if timed_out["status"] == "FAILED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((timed_out["status"].as_str(), timed_out["reason"].as_str()), (Some("FAILED"), Some("timeout")));
    let (_, pending) = server.get("/api/v1/device/operations?status=PENDING", &token).await;
    assert_eq!(pending["items"], json!([]), "{pending}");
    let (_, failed) = server.get("/api/v1/devices/meter-1/operations?status=FAILED", &acme).await;
    assert_eq!(failed["items"].as_array().map(Vec::len), Some(3), "{failed}");
}

#[tokio::test]
async fn the_desired_twin_reaches_the_device_at_once_and_is_retained() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let token = device_with_token(&server, &acme, "valve-1").await;
    device_with_token(&server, &globex, "valve-1").await;
    let mut device = subscribed(&server, Protocol::V5, "valve-1", &token, "devices/valve-1/twin/desired").await;

    let patch = |body: Value, admin: String| {
        let server = &server;
        async move { server.call(Method::PATCH, "/api/v1/devices/valve-1/twin/desired", Some(&admin), Some(body)).await }
    };
    let (status, twin) = patch(json!({"interval_s": 30, "mode": "eco"}), acme.clone()).await;
    assert_eq!((status, twin["desired_version"].as_u64()), (200, Some(1)), "{twin}");
    let message = device.next_publish(WAIT).await.expect("desired state at once");
    assert_eq!(message.topic, "devices/valve-1/twin/desired");
    assert_eq!(json_of(&message.payload), json!({"version": 1, "desired": {"interval_s": 30, "mode": "eco"}}));

    // A merge patch: null removes a key.
    let (_, twin) = patch(json!({"mode": null, "led": true}), acme.clone()).await;
    assert_eq!(twin["desired"], json!({"interval_s": 30, "led": true}));
    let message = device.next_publish(WAIT).await.expect("second version");
    assert_eq!(json_of(&message.payload), json!({"version": 2, "desired": {"interval_s": 30, "led": true}}));

    // The device reports part of it: the delta is what is still to do.
    let reason = device.publish_qos1("devices/valve-1/twin/reported", br#"{"interval_s":30}"#).await.expect("publish");
    assert_eq!(reason, Some(0));
    let (_, twin) = server.get("/api/v1/devices/valve-1/twin", &acme).await;
    assert_eq!(twin["reported"], json!({"interval_s": 30}), "{twin}");
    assert_eq!(twin["delta"], json!({"led": true}), "{twin}");

    // Retained: a device subscribing later gets the current version with the retain flag.
    drop(device);
    let mut device = subscribed(&server, Protocol::V311, "valve-1", &token, "devices/valve-1/twin/desired").await;
    let retained = device.next_publish(WAIT).await.expect("retained desired state");
    assert!(retained.retain, "sent as retained");
    assert_eq!(json_of(&retained.payload)["version"], 2);
    let (status, own) = server.get("/api/v1/device/twin", &token).await;
    assert_eq!((status, own["desired_version"].as_u64()), (200, Some(2)), "{own}");

    // Another tenant: its own valve-1 twin is untouched and the patch lands only there.
    let (_, theirs) = server.get("/api/v1/devices/valve-1/twin", &globex).await;
    assert_eq!(theirs["desired"], json!({}), "{theirs}");
    let (status, _) = patch(json!({"hijack": true}), globex.clone()).await;
    assert_eq!(status, 200);
    let leaked = device.next_publish(Duration::from_millis(700)).await;
    assert!(leaked.is_none(), "another tenant's twin never reaches acme's device: {leaked:?}");
    // A device cannot publish its own desired state.
    let denied = device.publish_qos1("devices/valve-1/twin/desired", br#"{"a":1}"#).await.expect("publish");
    assert!(matches!(denied, Some(0) | None), "3.1.1 drops it");
    let (_, twin) = server.get("/api/v1/devices/valve-1/twin", &acme).await;
    assert_eq!(twin["desired_version"], 2);
}
