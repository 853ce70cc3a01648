//! paho-mqtt (PyPI), MQTT 3.1.1 and 5.0, against the gateway: device tokens and client
//! certificates, telemetry at QoS 1 stored and queryable, another device's topic refused
//! (5.0 PUBACK 0x87, 3.1.1 dropped) and recorded as `acl_violation`, bad and revoked
//! credentials refused with the CONNACK codes of SPEC §7.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rampart_testkit::{ServerOptions, TestServer};
use serde_json::{Value, json};

use crate::BIN;
use crate::support::{
    ca_pem, device_with_certificate, device_with_token, measurements, mqtt_addr, mqtt_port, paho_python, run_async,
    security_events, text,
};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/paho_client.py");

/// How a paho client authenticates.
enum Auth<'a> {
    Token { username: &'a str, token: &'a str },
    Certificate { cert: &'a Path, key: &'a Path },
}

/// Runs paho_client.py once and returns its JSON lines.
async fn paho(
    python: &Path,
    server: &TestServer,
    protocol: &str,
    client_id: &str,
    auth: Auth<'_>,
    publish: Option<(&str, &str)>,
) -> Vec<Value> {
    let mut command = Command::new(python);
    command.arg(SCRIPT).args(["--port", &mqtt_port(&mqtt_addr(server))]).arg("--ca").arg(ca_pem(server));
    command.args(["--protocol", protocol, "--client-id", client_id, "--timeout", "10"]);
    match auth {
        Auth::Token { username, token } => {
            command.args(["--username", username, "--password", token]);
        }
        Auth::Certificate { cert, key } => {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
    }
    if let Some((topic, payload)) = publish {
        command.args(["--topic", topic, "--payload", payload, "--qos", "1"]);
    }
    let output = run_async(command, Duration::from_secs(30)).await;
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(!lines.is_empty(), "paho printed nothing:\n{}", text(&output));
    lines
}

fn event<'a>(lines: &'a [Value], name: &str) -> Option<&'a Value> {
    lines.iter().find(|line| line["event"] == name)
}

fn connack(lines: &[Value]) -> Option<i64> {
    event(lines, "connack").and_then(|line| line["rc"].as_i64())
}

fn puback(lines: &[Value]) -> Option<i64> {
    event(lines, "puback").and_then(|line| line["rc"].as_i64())
}

fn python() -> Option<PathBuf> {
    paho_python()
}

#[tokio::test]
async fn paho_with_tokens_on_3_1_1_and_5_0() {
    let Some(python) = python() else { return };
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let token = device_with_token(&server, &acme, "paho-1").await;
    let _other = device_with_token(&server, &acme, "paho-2").await;
    let auth = || Auth::Token { username: "acme/paho-1", token: &token };

    for (protocol, value) in [("311", 21.5), ("5", 22.5)] {
        let payload = json!({"temp": value}).to_string();
        let lines =
            paho(&python, &server, protocol, "paho-1", auth(), Some(("devices/paho-1/telemetry", &payload))).await;
        assert_eq!(connack(&lines), Some(0), "MQTT {protocol}: {lines:?}");
        assert_eq!(puback(&lines), Some(0), "MQTT {protocol}: {lines:?}");
    }
    let stored = measurements(&server, &acme, "paho-1", "temp", 2).await;
    let mut values: Vec<f64> = stored.iter().filter_map(|item| item["value"].as_f64()).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [21.5, 22.5], "{stored:?}");

    // Another device's topic: 5.0 answers PUBACK 0x87; 3.1.1 drops the message.
    let lines =
        paho(&python, &server, "5", "paho-1", auth(), Some(("devices/paho-2/telemetry", r#"{"temp":99}"#))).await;
    assert_eq!(puback(&lines), Some(0x87), "{lines:?}");
    let lines =
        paho(&python, &server, "311", "paho-1", auth(), Some(("devices/paho-2/telemetry", r#"{"temp":98}"#))).await;
    assert_eq!(connack(&lines), Some(0), "{lines:?}");
    assert!(measurements(&server, &acme, "paho-2", "temp", 0).await.is_empty(), "nothing reaches paho-2");
    let events = security_events(&server, &acme, "acl_violation").await;
    assert!(events.iter().any(|event| event["device"] == "paho-1"), "{events:?}");

    // A wrong token: 5.0 0x86; 3.1.1 return code 4, which paho reports as 0x86 too.
    for protocol in ["311", "5"] {
        let wrong = Auth::Token { username: "acme/paho-1", token: "not-the-token" };
        let lines = paho(&python, &server, protocol, "paho-1", wrong, None).await;
        assert_eq!(connack(&lines), Some(0x86), "MQTT {protocol}: {lines:?}");
    }
}

#[tokio::test]
async fn paho_with_client_certificates_on_3_1_1_and_5_0() {
    let Some(python) = python() else { return };
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = device_with_certificate(&server, &acme, "paho-cert", dir.path()).await;
    let auth = || Auth::Certificate { cert: &cert, key: &key };

    for (protocol, value) in [("311", 1.0), ("5", 2.0)] {
        let payload = json!({"values": {"level": value}}).to_string();
        let lines =
            paho(&python, &server, protocol, "paho-cert", auth(), Some(("devices/paho-cert/telemetry", &payload)))
                .await;
        assert_eq!(connack(&lines), Some(0), "MQTT {protocol}: {lines:?}");
        assert_eq!(puback(&lines), Some(0), "MQTT {protocol}: {lines:?}");
    }
    assert_eq!(measurements(&server, &acme, "paho-cert", "level", 2).await.len(), 2);

    // Revoked: refused with 0x87 / 5 (paho reports 3.1.1's 5 as 0x87). A handshake refused
    // by the CRL before any CONNACK is also a refusal.
    let (status, answer) = server.post("/api/v1/devices/paho-cert/revoke", &acme, json!({})).await;
    assert_eq!(status, 200, "{answer}");
    for protocol in ["311", "5"] {
        let lines = paho(&python, &server, protocol, "paho-cert", auth(), None).await;
        let refused = connack(&lines) == Some(0x87) || event(&lines, "error").is_some();
        assert!(refused, "MQTT {protocol}: {lines:?}");
    }
}
