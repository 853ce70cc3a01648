//! `rampart simulate` through the real binaries: simulated devices (rumqttc over MQTT/TLS, by
//! token and by certificate) execute operations, apply desired state, take a firmware campaign
//! (download, SHA-256 and signature checked, attestation afterwards), and with `--fail-rate 1`
//! make a campaign pause itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::{ServerOptions, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::BIN;

/// Starts `rampart simulate` for `seconds`, against `server`, with `extra` arguments.
fn simulate(server: &TestServer, token: &str, seconds: u32, extra: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(["simulate", "--url", &server.url(""), "--mqtt", &server.mqtt_addr, "--ca"])
        .arg(server.data_dir.join("tls/ca.pem"))
        .args(["--duration", &seconds.to_string(), "--telemetry-interval", "1", "--execute-ms", "50"])
        .args(extra)
        .env("RAMPART_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rampart simulate")
}

/// Waits for the simulator to end and answers its summary line.
async fn summary(child: std::process::Child) -> Value {
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "simulate failed:\n{stdout}\n{stderr}");
    assert!(stderr.contains("connected"), "a progress line: {stderr}");
    stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}\n{stderr}"))
}

async fn upload(server: &TestServer, admin: &str, version: &str, counter: i64) -> String {
    let metadata = json!({"name": "sim-fw", "version": version, "hardware": "sim", "security_counter": counter});
    let image: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8 ^ counter as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("metadata", metadata.to_string())
        .part("image", reqwest::multipart::Part::bytes(image));
    let response = server
        .client
        .post(server.url("/api/v1/firmware"))
        .bearer_auth(admin)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

async fn wait_for(server: &TestServer, admin: &str, path: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, answer) = server.get(path, admin).await;
        if accept(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "timed out on {path}: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn simulated_devices_take_operations_desired_state_and_a_campaign() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    upload(&server, &acme, "1.0.0", 1).await;
    let child = simulate(&server, &acme, 14, &["--devices", "3"]);
    // The devices start on the repository's lowest image, so they attest trusted.
    wait_for(&server, &acme, "/api/v1/devices/sim-00003", |device| device["attestation"]["status"] == "trusted").await;

    let (status, operation) =
        server.post("/api/v1/devices/sim-00001/operations", &acme, json!({"type": "restart"})).await;
    assert_eq!(status, 201, "{operation}");
    let path = format!("/api/v1/operations/{}", operation["id"].as_str().expect("id"));
    wait_for(&server, &acme, &path, |op| op["status"] == "SUCCESSFUL").await;
    let (status, _) = server
        .call(Method::PATCH, "/api/v1/devices/sim-00002/twin/desired", Some(&acme), Some(json!({"mode": "eco"})))
        .await;
    assert_eq!(status, 200);
    wait_for(&server, &acme, "/api/v1/devices/sim-00002/twin", |twin| twin["reported"]["mode"] == "eco").await;

    let firmware = upload(&server, &acme, "1.1.0", 2).await;
    let body = json!({"firmware_id": firmware, "target": {"devices": ["sim-00001", "sim-00002", "sim-00003"]},
        "strategy": {"canary": 1, "waves": [100], "failure_threshold_pct": 0}});
    let (status, campaign) = server.post("/api/v1/campaigns", &acme, body).await;
    assert_eq!(status, 201, "{campaign}");
    let path = format!("/api/v1/campaigns/{}", campaign["id"].as_str().expect("id"));
    let done = wait_for(&server, &acme, &path, |campaign| campaign["status"] == "completed").await;
    assert_eq!(done["counts"]["SUCCESSFUL"], 3, "{done}");
    let device = wait_for(&server, &acme, "/api/v1/devices/sim-00003", |device| {
        device["attestation"]["firmware_version"] == "1.1.0" && device["attestation"]["status"] == "trusted"
    })
    .await;
    assert_eq!(device["attestation"]["security_counter"], 2, "{device}");

    let results = summary(child).await;
    assert_eq!((results["devices"].as_u64(), results["connected"].as_u64()), (Some(3), Some(3)), "{results}");
    assert_eq!(results["firmware_downloads"], 3, "{results}");
    assert_eq!((results["signature_failures"].as_u64(), results["hash_failures"].as_u64()), (Some(0), Some(0)));
    assert!(
        results["operations"].as_u64().is_some_and(|n| n >= 4) && results["telemetry"].as_u64().is_some_and(|n| n > 0),
        "{results}"
    );
    assert!(results["receipt_p99_ms"].as_f64().is_some(), "{results}");
    let (_, measurements) = server.get("/api/v1/devices/sim-00001/measurements", &acme).await;
    assert!(measurements["items"].as_array().is_some_and(|items| !items.is_empty()), "{measurements}");
}

#[tokio::test]
async fn certificate_devices_and_injected_failures_pause_a_campaign() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let child = simulate(&server, &acme, 10, &["--devices", "4", "--auth", "certificate", "--fail-rate", "1"]);
    wait_for(&server, &acme, "/api/v1/devices/sim-00004", |device| device["connected"] == true).await;
    let (_, certificates) = server.get("/api/v1/devices/sim-00004/certificates", &acme).await;
    assert!(certificates["items"].as_array().is_some_and(|items| !items.is_empty()), "{certificates}");

    let firmware = upload(&server, &acme, "2.0.0", 3).await;
    let body = json!({"firmware_id": firmware, "target": {"devices": ["sim-00001", "sim-00002", "sim-00003", "sim-00004"]},
        "strategy": {"canary": 1, "waves": [100], "failure_threshold_pct": 50}});
    let (status, campaign) = server.post("/api/v1/campaigns", &acme, body).await;
    assert_eq!(status, 201, "{campaign}");
    let path = format!("/api/v1/campaigns/{}", campaign["id"].as_str().expect("id"));
    let paused = wait_for(&server, &acme, &path, |campaign| campaign["status"] == "paused").await;
    assert_eq!((paused["dispatched"].as_u64(), paused["counts"]["FAILED"].as_i64()), (Some(1), Some(1)), "{paused}");
    let results = summary(child).await;
    assert_eq!(results["injected_failures"], 1, "{results}");
}

#[tokio::test]
async fn a_simulated_device_refuses_an_image_whose_signature_was_tampered_with() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let child = simulate(&server, &acme, 8, &["--devices", "1"]);
    wait_for(&server, &acme, "/api/v1/devices/sim-00001", |device| device["connected"] == true).await;
    let firmware = upload(&server, &acme, "3.0.0", 4).await;
    // Someone with write access to the database swaps the signature for another valid-looking one.
    let db = rusqlite::Connection::open(server.data_dir.join("rampart.db")).expect("open db");
    let forged = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]);
    let changed = db
        .execute("UPDATE firmware SET signature = ?1 WHERE id = ?2", rusqlite::params![forged, firmware])
        .expect("tamper");
    assert_eq!(changed, 1);
    drop(db);
    let body = json!({"firmware_id": firmware, "target": {"devices": ["sim-00001"]}, "strategy": {"canary": 0, "waves": [100]}});
    let (status, campaign) = server.post("/api/v1/campaigns", &acme, body).await;
    assert_eq!(status, 201, "{campaign}");
    let operations = wait_for(&server, &acme, "/api/v1/devices/sim-00001/operations?status=FAILED", |page| {
        page["items"].as_array().is_some_and(|items| !items.is_empty())
    })
    .await;
    assert_eq!(operations["items"][0]["reason"], "manifest signature does not verify", "{operations}");
    let (_, device) = server.get("/api/v1/devices/sim-00001", &acme).await;
    assert_ne!(device["attestation"]["firmware_version"], "3.0.0", "the image was not installed: {device}");
    let results = summary(child).await;
    assert_eq!(
        (results["signature_failures"].as_u64(), results["firmware_downloads"].as_u64()),
        (Some(1), Some(0)),
        "{results}"
    );
}
