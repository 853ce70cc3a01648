//! SPEC §10 brute force through the real binary: failed logins or device authentications from
//! one address (127.0.0.2 plays the attacker) block it on every listener, before TLS, while
//! other addresses carry on; blocks are listed per tenant and lifted (audited); `--ids-exempt`
//! ranges are never blocked but still raise `brute_force`.

use std::net::IpAddr;
use std::time::Duration;

use rampart_testkit::{ServerOptions, TestServer};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::BIN;

const ATTACKER: &str = "127.0.0.2";

/// An HTTPS client that connects from `address`, a new connection per request.
fn client_from(server: &TestServer, address: &str) -> reqwest::Client {
    let pem = std::fs::read(server.data_dir.join("tls/ca.pem")).expect("ca");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("ca pem"))
        .tls_built_in_root_certs(false)
        .local_address(address.parse::<IpAddr>().ok())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn wrong_login(client: &reqwest::Client, server: &TestServer) -> Result<u16, reqwest::Error> {
    let body = json!({"tenant": "acme", "username": "admin", "password": "not-the-password-1"});
    let response = client.post(server.url("/api/v1/auth/login")).json(&body).send().await?;
    Ok(response.status().as_u16())
}

/// Whether the MQTT listener closes a TCP connection from `address` at once (before TLS).
async fn mqtt_refuses(server: &TestServer, address: &str) -> bool {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{address}:0").parse().expect("bind address")).expect("bind");
    let Ok(mut stream) = socket.connect(server.mqtt_addr.parse().expect("mqtt address")).await else { return true };
    let mut buffer = [0u8; 16];
    matches!(tokio::time::timeout(Duration::from_millis(800), stream.read(&mut buffer)).await, Ok(Ok(0) | Err(_)))
}

async fn events(server: &TestServer, admin: &str) -> Vec<Value> {
    let (_, page) = server.get("/api/v1/security/events?type=brute_force", admin).await;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn ten_failed_logins_block_the_address_on_every_listener_until_lifted() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let attacker = client_from(&server, ATTACKER);
    let neighbour = client_from(&server, "127.0.0.1");

    assert!(!mqtt_refuses(&server, ATTACKER).await, "not blocked before any failure");
    for attempt in 1..=10 {
        let status = wrong_login(&attacker, &server).await.unwrap_or_else(|error| panic!("attempt {attempt}: {error}"));
        assert_eq!(status, 401, "attempt {attempt}");
    }
    // The 11th connection from the address is dropped before TLS, on HTTPS and on MQTT.
    assert!(wrong_login(&attacker, &server).await.is_err(), "HTTPS refused after 10 failures in 60 s");
    assert!(mqtt_refuses(&server, ATTACKER).await, "MQTT refused at accept too");
    // Everyone else carries on.
    assert_eq!(wrong_login(&neighbour, &server).await.expect("127.0.0.1"), 401);
    assert!(!mqtt_refuses(&server, "127.0.0.1").await);

    let (status, blocks) = server.get("/api/v1/security/blocks", &acme).await;
    assert_eq!(status, 200, "{blocks}");
    assert_eq!(blocks["items"][0]["ip"], ATTACKER, "{blocks}");
    assert_eq!(blocks["items"][0]["failures"], 10, "{blocks}");
    let raised = events(&server, &acme).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(
        (raised[0]["source_ip"].as_str(), raised[0]["details"]["blocked"].as_bool()),
        (Some(ATTACKER), Some(true))
    );

    // Another tenant neither sees nor lifts acme's block.
    let (_, theirs) = server.get("/api/v1/security/blocks", &globex).await;
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    let path = format!("/api/v1/security/blocks/{ATTACKER}");
    assert_eq!(server.call(reqwest::Method::DELETE, &path, Some(&globex), None).await.0, 404);
    assert!(wrong_login(&attacker, &server).await.is_err(), "still blocked");

    assert_eq!(server.call(reqwest::Method::DELETE, &path, Some(&acme), None).await.0, 204);
    assert_eq!(wrong_login(&attacker, &server).await.expect("lifted"), 401);
    assert!(!mqtt_refuses(&server, ATTACKER).await);
    let (_, audit) = server.get("/api/v1/audit?action=ip_block.lift", &acme).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
}

#[tokio::test]
async fn failed_device_authentications_count_too() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let admin = server.admin_token().await;
    let attacker = client_from(&server, ATTACKER);
    for attempt in 1..=10 {
        let response = attacker
            .post(server.url("/api/v1/device/telemetry"))
            .bearer_auth(format!("rdt_forged{attempt:02}"))
            .json(&json!({"temp": 1}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 401);
    }
    assert!(mqtt_refuses(&server, ATTACKER).await, "blocked after 10 failed device authentications");
    let (_, blocks) = server.get("/api/v1/security/blocks", &admin).await;
    assert_eq!(blocks["items"][0]["ip"], ATTACKER, "the platform admin sees every block: {blocks}");
}

#[tokio::test]
async fn exempt_ranges_are_never_blocked_but_still_reported() {
    let options =
        ServerOptions { extra_args: vec!["--ids-exempt".into(), "127.0.0.2/32".into()], ..Default::default() };
    let server = TestServer::start(BIN, options).await;
    let acme = server.tenant_admin("acme").await;
    let attacker = client_from(&server, ATTACKER);
    for _ in 0..12 {
        assert_eq!(wrong_login(&attacker, &server).await.expect("not blocked"), 401);
    }
    assert!(!mqtt_refuses(&server, ATTACKER).await);
    let raised = events(&server, &acme).await;
    assert!(!raised.is_empty() && raised[0]["details"]["exempt"] == true, "{raised:?}");
    let (_, blocks) = server.get("/api/v1/security/blocks", &acme).await;
    assert_eq!(blocks["items"], json!([]));
}

#[tokio::test]
async fn three_acl_violations_quarantine_a_device_until_lifted() {
    use rampart_mqtt::Protocol;
    use rampart_testkit::mqtt::{ConnectOptions, MqttClient};

    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let token = crate::gateway::device_with_token(&server, &acme, "meter-7").await;
    crate::gateway::device_with_token(&server, &acme, "meter-8").await;
    let ca = server.data_dir.join("tls/ca.pem");
    let options = ConnectOptions::token(Protocol::V5, "acme", "meter-7", &token);
    let (mut client, code) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    assert_eq!(code, 0);
    for _ in 0..3 {
        let reason = client.publish_qos1("devices/meter-8/telemetry", br#"{"t":1}"#).await.expect("publish");
        assert_eq!(reason, Some(0x87));
    }
    assert!(client.closed_within(Duration::from_secs(3)).await, "quarantined devices are cut off");
    let (_, device) = server.get("/api/v1/devices/meter-7", &acme).await;
    assert_eq!(device["status"], "quarantined", "{device}");
    let (_, raised) = server.get("/api/v1/security/events?type=quarantine", &acme).await;
    assert_eq!(raised["items"][0]["device"], "meter-7", "{raised}");
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    assert_eq!(code, 0x87, "refused while quarantined");

    let path = "/api/v1/devices/meter-7/quarantine";
    assert_eq!(server.call(reqwest::Method::DELETE, path, Some(&globex), None).await.0, 404);
    let (status, lifted) = server.call(reqwest::Method::DELETE, path, Some(&acme), None).await;
    assert_eq!((status, lifted["status"].as_str()), (200, Some("active")), "{lifted}");
    assert_eq!(server.call(reqwest::Method::DELETE, path, Some(&acme), None).await.0, 409);
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    assert_eq!(code, 0, "connects again once lifted");
    let (_, audit) = server.get("/api/v1/audit?action=device.quarantine_lift", &acme).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");

    // A tenant may raise the threshold: then five denials do not quarantine.
    let policy = json!({"detection": {"acl_violation_threshold": 100}});
    assert_eq!(server.call(reqwest::Method::PUT, "/api/v1/tenant/policy", Some(&acme), Some(policy)).await.0, 200);
    let (mut client, _) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    for _ in 0..5 {
        assert_eq!(client.publish_qos1("devices/meter-8/telemetry", br#"{"t":1}"#).await.expect("publish"), Some(0x87));
    }
    assert!(!client.closed_within(Duration::from_secs(1)).await, "still connected under the tenant's threshold");
}
