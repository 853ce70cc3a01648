//! Debian's mosquitto_pub and mosquitto_sub against the gateway, MQTT 3.1.1 and 5.0: a device
//! publishing with its token and with its client certificate, an application (API key)
//! receiving the telemetry through a wildcard subscription, another device's topic refused
//! (5.0 PUBACK 0x87), and a wrong token refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rampart_testkit::{ServerOptions, TestServer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::BIN;
use crate::support::{
    ca_pem, device_with_certificate, device_with_token, have, measurements, mqtt_addr, mqtt_port, run_async, text,
};

fn tools_present() -> bool {
    if have("mosquitto_pub") && have("mosquitto_sub") && have("stdbuf") {
        return true;
    }
    println!("skipping: mosquitto_pub/mosquitto_sub (apt-get install mosquitto-clients) or stdbuf not installed");
    false
}

/// `mosquitto_pub -d` connecting to the test server's gateway, trusting its CA.
fn mosquitto_pub(server: &TestServer, version: &str, client_id: &str) -> Command {
    let mut command = Command::new("mosquitto_pub");
    command.args(["-d", "-h", "127.0.0.1", "-p", &mqtt_port(&mqtt_addr(server))]);
    command.arg("--cafile").arg(ca_pem(server));
    command.args(["-V", version, "-i", client_id, "-q", "1"]);
    command
}

#[tokio::test]
async fn mosquitto_clients_with_tokens_on_3_1_1_and_5_0() {
    if !tools_present() {
        return;
    }
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let token = device_with_token(&server, &acme, "mq-1").await;
    let _other = device_with_token(&server, &acme, "mq-2").await;
    let (status, key) = server.post("/api/v1/api-keys", &acme, json!({"name": "dashboard", "roles": ["viewer"]})).await;
    assert_eq!(status, 201, "{key}");
    let application = format!("acme/{}", key["id"].as_str().expect("id"));

    // An application subscribes to every device's telemetry and waits for two messages.
    // Line-buffered (coreutils stdbuf): mosquitto_sub buffers a piped stdout by blocks.
    let mut subscriber = tokio::process::Command::new("stdbuf");
    subscriber
        .args(["-oL", "mosquitto_sub", "-d", "-h", "127.0.0.1", "-p", &mqtt_port(&mqtt_addr(&server))])
        .arg("--cafile")
        .arg(ca_pem(&server));
    subscriber.args(["-V", "mqttv5", "-i", "dashboard-1", "-u", &application, "-P", key["key"].as_str().expect("key")]);
    subscriber.args(["-t", "devices/+/telemetry", "-q", "1", "-C", "2", "-W", "30", "-v"]);
    subscriber.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut subscriber = subscriber.spawn().expect("spawn mosquitto_sub");
    let mut lines = BufReader::new(subscriber.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    // Publish only once the subscription is in place (`-d` prints the SUBACK).
    let subscribed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("received SUBACK");
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(subscribed, Ok(true), "mosquitto_sub did not subscribe: {seen:?}");
    let received = tokio::spawn(async move {
        let mut messages = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("devices/") {
                messages.push(line);
            }
        }
        messages
    });

    for (version, value) in [("mqttv311", 1), ("mqttv5", 2)] {
        let mut publish = mosquitto_pub(&server, version, "mq-1");
        publish.args(["-u", "acme/mq-1", "-P", &token, "-t", "devices/mq-1/telemetry"]);
        publish.args(["-m", &json!({"temp": value}).to_string()]);
        let output = run_async(publish, Duration::from_secs(20)).await;
        assert!(output.status.success(), "{version}: {}", text(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("received PUBACK"), "{version}: {}", text(&output));
    }
    let messages =
        tokio::time::timeout(Duration::from_secs(40), received).await.expect("mosquitto_sub ends").expect("join");
    let _status = subscriber.wait().await;
    assert_eq!(messages.iter().filter(|line| line.starts_with("devices/mq-1/telemetry ")).count(), 2, "{messages:?}");
    assert_eq!(measurements(&server, &acme, "mq-1", "temp", 2).await.len(), 2);

    // Another device's topic: PUBACK 0x87 on 5.0.
    let mut publish = mosquitto_pub(&server, "mqttv5", "mq-1");
    publish.args(["-u", "acme/mq-1", "-P", &token, "-t", "devices/mq-2/telemetry", "-m", r#"{"temp":9}"#]);
    let output = run_async(publish, Duration::from_secs(20)).await;
    let shown = text(&output);
    assert!(shown.contains("RC:135") || shown.to_lowercase().contains("not authori"), "{shown}");
    assert!(measurements(&server, &acme, "mq-2", "temp", 0).await.is_empty());

    // A wrong token is refused on both versions.
    for version in ["mqttv311", "mqttv5"] {
        let mut publish = mosquitto_pub(&server, version, "mq-1");
        publish.args(["-u", "acme/mq-1", "-P", "wrong-token", "-t", "devices/mq-1/telemetry", "-m", "{}"]);
        let output = run_async(publish, Duration::from_secs(20)).await;
        assert!(!output.status.success(), "{version}: {}", text(&output));
    }
}

#[tokio::test]
async fn mosquitto_pub_with_a_client_certificate_on_3_1_1_and_5_0() {
    if !tools_present() {
        return;
    }
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = device_with_certificate(&server, &acme, "mq-cert", dir.path()).await;
    for (version, value) in [("mqttv311", 10), ("mqttv5", 20)] {
        let mut publish = mosquitto_pub(&server, version, "mq-cert");
        publish.arg("--cert").arg(&cert).arg("--key").arg(Path::new(&key));
        publish.args(["-t", "devices/mq-cert/telemetry", "-m", &json!({"rpm": value}).to_string()]);
        let output = run_async(publish, Duration::from_secs(20)).await;
        assert!(output.status.success(), "{version}: {}", text(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("received PUBACK"), "{version}: {}", text(&output));
    }
    assert_eq!(measurements(&server, &acme, "mq-cert", "rpm", 2).await.len(), 2);
}
