//! SPEC §6–§8 through the real binary: devices over MQTT/TLS and HTTPS, isolation, ACL
//! denials, revocation of live connections, and durability of acknowledged messages across
//! SIGKILL on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rampart_mqtt::{Protocol, QoS};
use rampart_testkit::mqtt::{ConnectOptions, MqttClient};
use rampart_testkit::{ServerOptions, TestServer, postgres_url};
use reqwest::Method;
use serde_json::{Value, json};

use crate::BIN;
use crate::flows::postgres_options;

/// Registers `device` in the tenant of `admin` and returns a fresh token for it.
pub(crate) async fn device_with_token(server: &TestServer, admin: &str, device: &str) -> String {
    let (status, body) = server.post("/api/v1/devices", admin, json!({"id": device})).await;
    assert_eq!(status, 201, "{body}");
    let (status, token) = server.post(&format!("/api/v1/devices/{device}/tokens"), admin, json!({})).await;
    assert_eq!(status, 201, "{token}");
    token["token"].as_str().expect("token").to_owned()
}

fn ca(server: &TestServer) -> std::path::PathBuf {
    server.data_dir.join("tls/ca.pem")
}

async fn connect(server: &TestServer, options: &ConnectOptions) -> (MqttClient, u8) {
    MqttClient::connect(&server.mqtt_addr, &ca(server), options).await.expect("TLS connect")
}

/// All measurement points of a device (every page).
async fn measurements(server: &TestServer, admin: &str, device: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/devices/{device}/measurements?limit=1000");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = server.get(&path, admin).await;
        assert_eq!(status, 200, "{page}");
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test]
async fn token_devices_on_both_protocols_and_their_boundaries() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    // Four denials per protocol below: not a test of the quarantine rule (detection.rs is).
    let policy = json!({"detection": {"acl_violation_threshold": 100}});
    let (status, _) = server.call(Method::PUT, "/api/v1/tenant/policy", Some(&acme), Some(policy)).await;
    assert_eq!(status, 200);
    let globex = server.tenant_admin("globex").await;
    let token = device_with_token(&server, &acme, "sensor-1").await;
    let other_token = device_with_token(&server, &globex, "sensor-1").await;
    device_with_token(&server, &acme, "sensor-2").await;

    for protocol in [Protocol::V311, Protocol::V5] {
        let (mut client, code) = connect(&server, &ConnectOptions::token(protocol, "acme", "sensor-1", &token)).await;
        assert_eq!(code, 0, "{protocol:?}");
        let reason = client.publish_qos1("devices/sensor-1/telemetry", br#"{"temp": 21.5}"#).await.expect("publish");
        assert_eq!(reason, Some(0), "{protocol:?}: acknowledged");
        // Another device's topic: 5.0 answers 0x87, 3.1.1 drops.
        let denied = client.publish_qos1("devices/sensor-2/telemetry", br#"{"temp": 1}"#).await.expect("publish");
        match protocol {
            Protocol::V5 => assert_eq!(denied, Some(0x87)),
            // 3.1.1 has no reason codes: the message is dropped (acknowledged or not, as brokers
            // differ); that nothing was stored is checked below.
            Protocol::V311 => assert!(matches!(denied, Some(0) | None), "{denied:?}"),
        }
        let suback = client.subscribe("#", QoS::AtLeastOnce).await.expect("subscribe");
        assert!(suback == 0x80 || suback == 0x87, "{protocol:?}: # refused, got {suback:#x}");
    }
    // The same device id in another tenant with the wrong tenant's token: bad credentials.
    let (_, code) = connect(&server, &ConnectOptions::token(Protocol::V5, "acme", "sensor-1", &other_token)).await;
    assert_eq!(code, 0x86);
    let (_, code) = connect(&server, &ConnectOptions::token(Protocol::V311, "acme", "sensor-1", "rdt_wrong")).await;
    assert_eq!(code, 4);
    // The client id must be the device id.
    let mut options = ConnectOptions::token(Protocol::V5, "acme", "sensor-1", &token);
    options.client_id = "sensor-2".to_owned();
    let (_, code) = connect(&server, &options).await;
    assert_eq!(code, 0x85);

    // Stored once per accepted publish, and only in acme.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(measurements(&server, &acme, "sensor-1").await.len(), 2);
    assert_eq!(measurements(&server, &globex, "sensor-1").await.len(), 0);
    assert!(measurements(&server, &acme, "sensor-2").await.is_empty());
    let (_, events) = server.get("/api/v1/security/events?type=acl_violation", &acme).await;
    assert!(events["items"].as_array().is_some_and(|items| items.len() >= 2), "{events}");
    let (_, failures) = server.get("/api/v1/security/events?type=auth_failure", &acme).await;
    assert!(failures["items"].as_array().is_some_and(|items| !items.is_empty()), "{failures}");
    let log = server.log();
    assert!(!log.contains(&token) && !log.contains(&other_token), "device tokens must never reach the logs");
}

#[tokio::test]
async fn revocation_closes_the_live_connection_within_a_second() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let token = device_with_token(&server, &acme, "tracker-9").await;
    let options = ConnectOptions::token(Protocol::V5, "acme", "tracker-9", &token);
    let (mut client, code) = connect(&server, &options).await;
    assert_eq!(code, 0);
    let (_, device) = server.get("/api/v1/devices/tracker-9", &acme).await;
    assert_eq!((device["status"].as_str(), device["connected"].as_bool()), (Some("active"), Some(true)), "{device}");

    let started = Instant::now();
    assert_eq!(server.post("/api/v1/devices/tracker-9/revoke", &acme, json!({})).await.0, 200);
    assert!(client.closed_within(Duration::from_secs(1)).await, "still connected 1 s after revocation");
    assert!(started.elapsed() < Duration::from_millis(1500));
    // Reconnecting with the old token is refused.
    let (_, code) = connect(&server, &options).await;
    assert!(code == 0x86 || code == 0x87, "refused after revocation, got {code:#x}");
}

#[tokio::test]
async fn https_device_api_with_token() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let token = device_with_token(&server, &acme, "meter-1").await;
    let (status, body) = server.post("/api/v1/device/telemetry", &token, json!({"values": {"kwh": 12.5}})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        server.post("/api/v1/device/events", &token, json!({"type": "door.open", "text": "front"})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post("/api/v1/device/telemetry", &token, json!({"kwh": "lots"})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, _) = server.post("/api/v1/device/telemetry", "rdt_not-a-token", json!({"kwh": 1})).await;
    assert_eq!(status, 401);
    let patch = json!({"firmware": "1.2.3"});
    let (status, _) = server.call(Method::PATCH, "/api/v1/device/twin/reported", Some(&token), Some(patch)).await;
    assert_eq!(status, 200);
    let (status, twin) = server.get("/api/v1/device/twin", &token).await;
    assert_eq!(status, 200, "{twin}");
    assert_eq!(twin["reported"]["firmware"], "1.2.3");

    let points = measurements(&server, &acme, "meter-1").await;
    assert_eq!(points.len(), 1, "the malformed message left nothing: {points:?}");
    assert_eq!(points[0]["series"], "kwh");
    let (_, device) = server.get("/api/v1/devices/meter-1", &acme).await;
    assert_eq!(device["status"], "active");
    // A user token is no device credential, and a device token is no user credential.
    assert_eq!(server.post("/api/v1/device/telemetry", &acme, json!({"kwh": 1})).await.0, 401);
    assert_eq!(server.get("/api/v1/devices", &token).await.0, 401);
    assert!(!server.log().contains(&token), "device tokens must never reach the logs");
}

type Publisher = tokio::task::JoinHandle<(String, BTreeSet<i64>)>;

/// Starts one connection per device publishing QoS 1 telemetry `{"seq": n}` until the server
/// dies; each task ends with the sequence numbers its device saw acknowledged.
fn publish_until_killed(server: &TestServer, devices: &[(String, String)]) -> Vec<Publisher> {
    let mut tasks = Vec::new();
    for (device, token) in devices.iter().cloned() {
        let addr = server.mqtt_addr.clone();
        let ca = ca(server);
        tasks.push(tokio::spawn(async move {
            let options = ConnectOptions::token(Protocol::V311, "acme", &device, &token);
            let (mut client, code) = MqttClient::connect(&addr, &ca, &options).await.expect("connect");
            assert_eq!(code, 0);
            let mut acked = BTreeSet::new();
            for seq in 0..i64::MAX {
                let payload = format!("{{\"seq\": {seq}}}");
                match client.publish_qos1(&format!("devices/{device}/telemetry"), payload.as_bytes()).await {
                    Ok(Some(0)) => {
                        acked.insert(seq);
                    }
                    _ => break,
                }
            }
            (device, acked)
        }));
    }
    tasks
}

async fn acknowledged_messages_survive_sigkill(options: ServerOptions) {
    let mut server = TestServer::start(BIN, options).await;
    let acme = server.tenant_admin("acme").await;
    let mut devices = Vec::new();
    for n in 0..6 {
        let device = format!("pump-{n}");
        let token = device_with_token(&server, &acme, &device).await;
        devices.push((device, token));
    }
    let publishers = publish_until_killed(&server, &devices);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill();
    let mut results = Vec::new();
    for publisher in publishers {
        results.push(publisher.await.expect("publisher"));
    }
    let total: usize = results.iter().map(|(_, acked)| acked.len()).sum();
    assert!(total > 50, "the load must be real: only {total} acknowledged");

    server.spawn().await;
    let acme = server.login("acme", "admin", rampart_testkit::ADMIN_PASSWORD).await;
    for (device, acked) in results {
        let stored: BTreeSet<i64> = measurements(&server, &acme, &device)
            .await
            .iter()
            .filter(|point| point["series"] == "seq")
            .filter_map(|point| point["value"].as_f64())
            .map(|value| value as i64)
            .collect();
        let lost: Vec<&i64> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "{device}: {} acknowledged messages lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        println!("{device}: {} acknowledged, {} stored", acked.len(), stored.len());
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_sigkill_on_sqlite() {
    acknowledged_messages_survive_sigkill(ServerOptions::default()).await;
}

#[tokio::test]
async fn acknowledged_messages_survive_sigkill_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("e2e_kill_{}", std::process::id());
    acknowledged_messages_survive_sigkill(postgres_options(&url, &schema)).await;
    crate::flows::drop_schema(&url, &schema);
}

/// Issues a certificate for `device` from a fresh P-256 key; returns (certificate PEM, key PEM).
async fn device_certificate(server: &TestServer, admin: &str, device: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, device);
    let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
    let path = format!("/api/v1/devices/{device}/certificates");
    let (status, issued) = server.post(&path, admin, json!({"csr": csr})).await;
    assert_eq!(status, 201, "{issued}");
    (issued["certificate"].as_str().expect("certificate").to_owned(), key.serialize_pem())
}

#[tokio::test]
async fn certificate_devices_over_mqtt_and_https() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    assert_eq!(server.post("/api/v1/devices", &acme, json!({"id": "cam-7"})).await.0, 201);
    let (cert, key) = device_certificate(&server, &acme, "cam-7").await;

    for protocol in [Protocol::V311, Protocol::V5] {
        let options = ConnectOptions::certificate(protocol, "cam-7", &cert, &key);
        let (mut client, code) = connect(&server, &options).await;
        assert_eq!(code, 0, "{protocol:?}: certificate accepted");
        let reason = client.publish_qos1("devices/cam-7/telemetry", br#"{"lux": 300}"#).await.expect("publish");
        assert_eq!(reason, Some(0));
    }
    // A username that disagrees with the certificate is refused.
    let mut options = ConnectOptions::certificate(Protocol::V5, "cam-7", &cert, &key);
    options.username = Some("acme/other".to_owned());
    assert_eq!(connect(&server, &options).await.1, 0x86);

    // The HTTPS device API takes the same certificate.
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity");
    let ca_pem = std::fs::read(ca(&server)).expect("ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).expect("ca"))
        .tls_built_in_root_certs(false)
        .identity(identity)
        .build()
        .expect("client");
    let response =
        client.post(server.url("/api/v1/device/telemetry")).json(&json!({"lux": 310})).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(measurements(&server, &acme, "cam-7").await.len(), 3);

    // Revocation: the certificate stops working on both.
    assert_eq!(server.post("/api/v1/devices/cam-7/revoke", &acme, json!({})).await.0, 200);
    let (_, code) = connect(&server, &ConnectOptions::certificate(Protocol::V5, "cam-7", &cert, &key)).await;
    assert_eq!(code, 0x87, "a revoked certificate is refused as not authorized");
    let response =
        client.post(server.url("/api/v1/device/telemetry")).json(&json!({"lux": 1})).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let (_, events) = server.get("/api/v1/security/events?type=revoked_credential_used", &acme).await;
    assert!(events["items"].as_array().is_some_and(|items| !items.is_empty()), "{events}");
}
