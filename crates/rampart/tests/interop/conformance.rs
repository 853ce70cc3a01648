//! MQTT conformance scenarios (conformance.py: our own, modelled on what third-party broker
//! suites such as the Eclipse Paho interoperability tests check) on MQTT 3.1.1 and 5.0, run by
//! paho-mqtt and a minimal raw client against the real binary over TLS, as applications of a
//! tenant whose free namespace is open (SPEC §7), plus one scenario where a device of that
//! tenant meets them there. Every scenario must pass; failures are listed with their reasons.

use std::process::Command;
use std::time::Duration;

use rampart_testkit::{ServerOptions, TestServer};
use serde_json::{Value, json};

use crate::BIN;
use crate::support::{ca_pem, device_with_token, mqtt_addr, mqtt_port, paho_python, run_async, text};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/conformance.py");

/// A topic the tenant's policy refuses to applications' subscriptions: the "subscribe
/// failure" scenario needs one, as third-party suites do (`test/nosubscribe`).
const NO_SUBSCRIBE: &str = "test/nosubscribe";

/// Opens the free namespace of the tenant for applications and devices, with one deny rule.
async fn open_free_namespace(server: &TestServer, admin: &str) {
    let policy = json!({
        "free_namespace": {"applications": true, "devices": true},
        "rules": [{"principal": "application", "action": "subscribe", "topic": NO_SUBSCRIBE, "effect": "deny"}],
    });
    let (status, answer) =
        server.call(reqwest::Method::PUT, "/api/v1/tenant/topic-policies", Some(admin), Some(policy)).await;
    assert_eq!(status, 200, "topic policy: {answer}");
}

/// Creates an API key with the admin role; returns `KEY_ID:KEY`.
async fn application(server: &TestServer, admin: &str, name: &str) -> String {
    let (status, answer) = server.post("/api/v1/api-keys", admin, json!({"name": name, "roles": ["admin"]})).await;
    assert_eq!(status, 201, "API key {name}: {answer}");
    format!("{}:{}", answer["id"].as_str().expect("id"), answer["key"].as_str().expect("key"))
}

#[tokio::test]
async fn conformance_scenarios_on_3_1_1_and_5_0() {
    let Some(python) = paho_python() else { return };
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    open_free_namespace(&server, &acme).await;
    let apps = [application(&server, &acme, "conformance-a").await, application(&server, &acme, "conformance-b").await];
    let device = "conformance-dev";
    let device_token = device_with_token(&server, &acme, device).await;
    let only: Vec<String> = std::env::var("MQTT_CONFORMANCE_ONLY")
        .map(|names| names.split(',').map(str::to_owned).collect())
        .unwrap_or_default();

    let mut results: Vec<Value> = Vec::new();
    for protocol in ["311", "5"] {
        let mut command = Command::new(&python);
        command.arg(SCRIPT).args(["--port", &mqtt_port(&mqtt_addr(&server))]).arg("--ca").arg(ca_pem(&server));
        command.args(["--tenant", "acme", "--protocol", protocol]);
        for app in &apps {
            command.args(["--app", app]);
        }
        command.args(["--device", &format!("{device}:{device_token}")]);
        for name in &only {
            command.args(["--only", name]);
        }
        let output = run_async(command, Duration::from_secs(300)).await;
        let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        assert!(!lines.is_empty(), "MQTT {protocol}: the scenarios printed nothing:\n{}", text(&output));
        results.extend(lines);
    }

    for result in &results {
        let verdict = if result["ok"] == true { "pass" } else { "FAIL" };
        println!(
            "{verdict} MQTT {} {} ({} s) {}",
            result["protocol"], result["scenario"], result["seconds"], result["reason"]
        );
    }
    let failures: Vec<String> = results
        .iter()
        .filter(|result| result["ok"] != true)
        .map(|result| format!("MQTT {} {}: {}", result["protocol"], result["scenario"], result["reason"]))
        .collect();
    assert!(failures.is_empty(), "{} of {} scenarios failed:\n{}", failures.len(), results.len(), failures.join("\n"));
    // Each protocol ran its full list (a crash half-way would leave scenarios out).
    if only.is_empty() {
        for protocol in ["311", "5"] {
            let ran = results.iter().filter(|result| result["protocol"] == protocol).count();
            assert!(ran >= 15, "MQTT {protocol}: only {ran} scenarios ran");
        }
    }
}
