//! Isolation under attack (SPEC §2, §3, §5, §6, §7), through the real binary: each test is an
//! attack that once worked, named after what must hold. Ids are incarnations; scope follows a
//! principal everywhere and its API keys; authority is live; trusted CAs need proof of
//! possession; persistent sessions belong to their API key; a 413 is readable; subscriptions
//! overlapping a deny rule are granted and filtered per message.

use std::time::Duration;

use rampart_mqtt::{Protocol, QoS};
use rampart_testkit::mqtt::{ConnectOptions, MqttClient};
use rampart_testkit::{ADMIN_PASSWORD, ServerOptions, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::BIN;

const OTHER_PASSWORD: &str = "amber-Meadow-4417-q";

async fn delete(server: &TestServer, path: &str, token: &str) -> u16 {
    server.call(Method::DELETE, path, Some(token), None).await.0
}

async fn patch(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.call(Method::PATCH, path, Some(token), Some(body)).await
}

async fn put(server: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    server.call(Method::PUT, path, Some(token), Some(body)).await
}

/// Creates an API key and answers `(id, key)`.
async fn api_key(server: &TestServer, token: &str, roles: &[&str]) -> (String, String) {
    let (status, created) = server.post("/api/v1/api-keys", token, json!({"name": "app", "roles": roles})).await;
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().expect("id").to_owned(), created["key"].as_str().expect("key").to_owned())
}

fn items(answer: &Value) -> Vec<Value> {
    answer["items"].as_array().cloned().unwrap_or_default()
}

/// The `field` of every item of a list answer that has it as a string.
fn field_of_items(answer: &Value, field: &str) -> Vec<String> {
    items(answer).iter().filter_map(|item| item[field].as_str().map(str::to_owned)).collect()
}

fn ca_pem(server: &TestServer) -> std::path::PathBuf {
    server.data_dir.join("tls/ca.pem")
}

/// Waits up to `wait` for `check` to hold, polling.
async fn eventually<F, Fut>(wait: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_deleted_tenants_records_events_and_tokens_never_reach_its_successor() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let platform = server.admin_token().await;
    let old = server.tenant_admin("victim").await;
    assert_eq!(server.post("/api/v1/devices", &old, json!({"id": "secret-pump"})).await.0, 201);
    // A failed device connect raises a security event in the tenant.
    let options = ConnectOptions::token(Protocol::V5, "victim", "secret-pump", "rdt_wrong");
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &options).await.expect("connect");
    assert_eq!(code, 0x86);
    assert!(
        eventually(Duration::from_secs(5), || async {
            !items(&server.get("/api/v1/security/events", &old).await.1).is_empty()
        })
        .await,
        "the failed connect is a security event of the old tenant"
    );
    assert_eq!(delete(&server, "/api/v1/tenants/victim", &platform).await, 204);

    // Another tenant's admin creates a sub-tenant with the freed id and the same admin name.
    let other = server.tenant_admin("other").await;
    let body = json!({"id": "victim", "name": "Successor", "admin": {"username": "admin", "password": OTHER_PASSWORD}});
    assert_eq!(server.post("/api/v1/tenants", &other, body).await.0, 201);
    let successor = server.login("victim", "admin", OTHER_PASSWORD).await;

    assert_eq!(server.get("/api/v1/devices", &old).await.0, 401, "the old incarnation's token is dead");
    let (status, audit) = server.get("/api/v1/audit?limit=1000", &successor).await;
    assert_eq!(status, 200, "{audit}");
    let actions = field_of_items(&audit, "action");
    assert!(!actions.iter().any(|action| action == "device.create"), "old records leaked: {actions:?}");
    assert_eq!(audit["items"][0]["seq"], 1, "the successor's chain starts afresh: {audit}");
    let (_, events) = server.get("/api/v1/security/events", &successor).await;
    assert!(items(&events).is_empty(), "old security events leaked: {events}");
    let (_, verify) = server.get("/api/v1/audit/verify", &successor).await;
    assert_eq!(verify["valid"], true, "{verify}");
    assert_eq!(server.get("/api/v1/devices/secret-pump", &successor).await.0, 404);
}

#[tokio::test]
async fn a_recreated_user_does_not_revive_old_tokens() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let bob = json!({"username": "bob", "password": ADMIN_PASSWORD, "roles": ["viewer"]});
    assert_eq!(server.post("/api/v1/users", &acme, bob.clone()).await.0, 201);
    let old = server.login("acme", "bob", ADMIN_PASSWORD).await;
    assert_eq!(delete(&server, "/api/v1/users/bob", &acme).await, 204);
    assert_eq!(server.post("/api/v1/users", &acme, bob).await.0, 201);
    assert_eq!(server.get("/api/v1/devices", &old).await.0, 401, "a deleted user's token stays dead");
    let fresh = server.login("acme", "bob", ADMIN_PASSWORD).await;
    assert_eq!(server.get("/api/v1/devices", &fresh).await.0, 200);
}

/// Tenant `acme` with groups `north` and `south`, a device in each, and a user `scoped`
/// (role `admin`) confined to `north`. Answers the tokens of acme's admin and of `scoped`.
async fn scoped_tenant(server: &TestServer) -> (String, String) {
    let acme = server.tenant_admin("acme").await;
    for group in ["north", "south"] {
        assert_eq!(server.post("/api/v1/groups", &acme, json!({"id": group})).await.0, 201);
    }
    for (device, group) in [("n-1", "north"), ("s-1", "south")] {
        let (status, body) = server.post("/api/v1/devices", &acme, json!({"id": device, "group": group})).await;
        assert_eq!(status, 201, "{body}");
    }
    let user = json!({"username": "scoped", "password": ADMIN_PASSWORD, "roles": ["admin"], "groups": ["north"]});
    assert_eq!(server.post("/api/v1/users", &acme, user).await.0, 201);
    let scoped = server.login("acme", "scoped", ADMIN_PASSWORD).await;
    (acme, scoped)
}

#[tokio::test]
async fn a_scoped_users_api_key_reaches_no_further_than_the_user() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let (_acme, scoped) = scoped_tenant(&server).await;
    let (_, key) = api_key(&server, &scoped, &["admin"]).await;
    let (status, devices) = server.get("/api/v1/devices", &key).await;
    assert_eq!(status, 200);
    let ids = field_of_items(&devices, "id");
    assert_eq!(ids, ["n-1"], "the key sees what its creator sees");
    assert_eq!(server.get("/api/v1/devices/s-1", &key).await.0, 404);
    assert_eq!(delete(&server, "/api/v1/devices/s-1", &key).await, 404, "nor deletes beyond it");
}

#[tokio::test]
async fn scoped_users_read_only_records_and_events_of_their_devices_and_change_no_tenant_settings() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let (acme, scoped) = scoped_tenant(&server).await;
    // Security events about both devices.
    for device in ["n-1", "s-1"] {
        let options = ConnectOptions::token(Protocol::V5, "acme", device, "rdt_wrong");
        let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &options).await.expect("connect");
        assert_eq!(code, 0x86);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            items(&server.get("/api/v1/security/events", &acme).await.1).len() >= 2
        })
        .await
    );
    let (_, events) = server.get("/api/v1/security/events", &scoped).await;
    let devices = field_of_items(&events, "device");
    assert!(!devices.is_empty() && devices.iter().all(|d| d == "n-1"), "events outside the scope: {events}");
    let (_, audit) = server.get("/api/v1/audit?limit=1000", &scoped).await;
    let targets = field_of_items(&audit, "target");
    assert!(targets.iter().any(|t| t == "device:n-1"), "{targets:?}");
    assert!(!targets.iter().any(|t| t == "device:s-1"), "records outside the scope: {targets:?}");

    let rules = json!({"free_namespace": {"applications": true, "devices": true}, "rules": []});
    assert_eq!(put(&server, "/api/v1/tenant/topic-policies", &scoped, rules).await.0, 403);
    assert_eq!(put(&server, "/api/v1/tenant/policy", &scoped, json!({"require_mfa": true})).await.0, 403);
    assert_eq!(server.post("/api/v1/tenant/keys/rotate", &scoped, json!({})).await.0, 403);
    let role = json!({"name": "everything", "permissions": ["devices:read"]});
    assert_eq!(server.post("/api/v1/roles", &scoped, role).await.0, 403);
    let (_, policy) = server.get("/api/v1/tenant/policy", &acme).await;
    assert_eq!(policy["require_mfa"], false);
}

/// Reads an SSE response until it ends; `true` when it ended within `wait`.
async fn stream_ends_within(response: reqwest::Response, wait: Duration) -> bool {
    let mut response = response;
    let read_to_end = async {
        loop {
            match response.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    };
    tokio::time::timeout(wait, read_to_end).await.is_ok()
}

#[tokio::test]
async fn a_live_stream_ends_when_its_user_is_disabled() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let user = json!({"username": "watcher", "password": ADMIN_PASSWORD, "roles": ["viewer"]});
    assert_eq!(server.post("/api/v1/users", &acme, user).await.0, 201);
    let watcher = server.login("acme", "watcher", ADMIN_PASSWORD).await;
    let response = server.client.get(server.url("/api/v1/stream")).bearer_auth(&watcher).send().await.expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(patch(&server, "/api/v1/users/watcher", &acme, json!({"disabled": true})).await.0, 200);
    assert!(stream_ends_within(response, Duration::from_secs(6)).await, "the stream outlived its user");
}

#[tokio::test]
async fn a_live_stream_ends_when_its_api_key_is_deleted() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let (id, key) = api_key(&server, &acme, &["viewer"]).await;
    let response = server.client.get(server.url("/api/v1/stream")).bearer_auth(&key).send().await.expect("stream");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(delete(&server, &format!("/api/v1/api-keys/{id}"), &acme).await, 204);
    assert!(stream_ends_within(response, Duration::from_secs(6)).await, "the stream outlived its key");
}

#[tokio::test]
async fn the_alarms_stream_needs_alarms_read() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let role = json!({"name": "telemetry-only", "permissions": ["telemetry:read"]});
    assert_eq!(server.post("/api/v1/roles", &acme, role).await.0, 201);
    let (_, key) = api_key(&server, &acme, &["telemetry-only"]).await;
    let alarms = server.client.get(server.url("/api/v1/stream?topics=alarms")).bearer_auth(&key).send().await;
    assert_eq!(alarms.expect("stream").status().as_u16(), 403);
    let telemetry = server.client.get(server.url("/api/v1/stream?topics=telemetry")).bearer_auth(&key).send().await;
    assert_eq!(telemetry.expect("stream").status().as_u16(), 200);
}

/// A self-signed CA certificate and its key pair.
fn external_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    (params.self_signed(&key).expect("ca"), key)
}

/// A certificate with CN = `common_name`, signed by the CA.
fn signed_by(ca: &rcgen::Certificate, ca_key: &rcgen::KeyPair, common_name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
    // Issued now (rcgen's default is 1975): a reinstated device takes only certificates issued
    // after its reinstatement.
    params.not_before = time::OffsetDateTime::now_utc();
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), ca_key).expect("issuer");
    (params.signed_by(&key, &issuer).expect("signed").pem(), key.serialize_pem())
}

async fn registration_code(server: &TestServer, token: &str) -> String {
    let (status, code) = server.get("/api/v1/ca/trusted/registration-code", token).await;
    assert_eq!(status, 200, "{code}");
    code["code"].as_str().expect("code").to_owned()
}

#[tokio::test]
async fn trusting_a_ca_needs_proof_of_possession_and_one_tenant_per_ca() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let (ca, ca_key) = external_ca("Acme Factory CA");

    // Without a verification certificate, nobody can trust a CA they do not hold.
    let (status, body) = server.post("/api/v1/ca/trusted", &globex, json!({"certificate": ca.pem()})).await;
    assert_eq!(status, 400, "{body}");
    // A verification certificate for someone else's code, or not signed by the CA, is refused.
    let code = registration_code(&server, &globex).await;
    let (wrong_ca, wrong_key) = external_ca("Acme Factory CA");
    let (forged, _) = signed_by(&wrong_ca, &wrong_key, &code);
    let body = json!({"certificate": ca.pem(), "verification_certificate": forged});
    assert_eq!(server.post("/api/v1/ca/trusted", &globex, body).await.0, 400);

    // The holder of the CA key proves possession and trusts it.
    let code = registration_code(&server, &acme).await;
    let (verification, _) = signed_by(&ca, &ca_key, &code);
    let body = json!({"certificate": ca.pem(), "verification_certificate": verification, "auto_register": true});
    let (status, trusted) = server.post("/api/v1/ca/trusted", &acme, body.clone()).await;
    assert_eq!(status, 201, "{trusted}");
    // The code is single use.
    assert_eq!(server.post("/api/v1/ca/trusted", &acme, body).await.0, 400);

    // Even with the key, a CA trusted by one tenant is refused to another.
    let code = registration_code(&server, &globex).await;
    let (verification, _) = signed_by(&ca, &ca_key, &code);
    let body = json!({"certificate": ca.pem(), "verification_certificate": verification, "auto_register": true});
    assert_eq!(server.post("/api/v1/ca/trusted", &globex, body).await.0, 409);

    // Acme's devices keep connecting through it.
    let (cert, key) = signed_by(&ca, &ca_key, "line-7");
    let options = ConnectOptions::certificate(Protocol::V5, "line-7", &format!("{cert}{}", ca.pem()), &key);
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &options).await.expect("connect");
    assert_eq!(code, 0, "just-in-time registration in acme");
    assert_eq!(server.get("/api/v1/devices/line-7", &acme).await.0, 200);
    assert_eq!(server.get("/api/v1/devices/line-7", &globex).await.0, 404);
}

#[tokio::test]
async fn removing_a_trusted_ca_disconnects_its_devices_and_reinstating_revives_no_certificate() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let (ca, ca_key) = external_ca("Line CA");
    let code = registration_code(&server, &acme).await;
    let (verification, _) = signed_by(&ca, &ca_key, &code);
    let body = json!({"certificate": ca.pem(), "verification_certificate": verification, "auto_register": true});
    let (status, trusted) = server.post("/api/v1/ca/trusted", &acme, body).await;
    assert_eq!(status, 201, "{trusted}");
    let (cert, key) = signed_by(&ca, &ca_key, "press-1");
    let options = ConnectOptions::certificate(Protocol::V5, "press-1", &format!("{cert}{}", ca.pem()), &key);

    // Revoked, then reinstated: the old certificate stays refused.
    let (mut client, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &options).await.expect("connect");
    assert_eq!(code, 0);
    assert_eq!(server.post("/api/v1/devices/press-1/revoke", &acme, json!({})).await.0, 200);
    assert!(client.closed_within(Duration::from_secs(2)).await);
    assert_eq!(server.post("/api/v1/devices/press-1/reinstate", &acme, json!({})).await.0, 200);
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &options).await.expect("connect");
    assert_eq!(code, 0x87, "reinstating revives no certificate");

    // A certificate issued after the reinstatement connects, until the CA is removed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (cert, key) = signed_by(&ca, &ca_key, "press-1");
    let options = ConnectOptions::certificate(Protocol::V5, "press-1", &format!("{cert}{}", ca.pem()), &key);
    let (mut client, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &options).await.expect("connect");
    assert_eq!(code, 0);
    let id = trusted["id"].as_str().expect("id");
    assert_eq!(delete(&server, &format!("/api/v1/ca/trusted/{id}"), &acme).await, 204);
    assert!(client.closed_within(Duration::from_secs(1)).await, "removing the CA disconnects its devices");
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &options).await.expect("connect");
    assert_ne!(code, 0);
}

/// Opens the free namespace of `acme` for applications, with one deny rule.
async fn open_free_namespace(server: &TestServer, acme: &str) {
    let rules = json!({
        "free_namespace": {"applications": true, "devices": false},
        "rules": [{"principal": "application", "action": "subscribe", "topic": "test/nosubscribe", "effect": "deny"}]
    });
    let (status, body) = put(server, "/api/v1/tenant/topic-policies", acme, rules).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_persistent_session_belongs_to_the_api_key_that_made_it() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    open_free_namespace(&server, &acme).await;
    let (owner_id, owner_key) = api_key(&server, &acme, &["admin"]).await;
    let (thief_id, thief_key) = api_key(&server, &acme, &["admin"]).await;
    let ca = ca_pem(&server);
    for protocol in [Protocol::V311, Protocol::V5] {
        let owner = ConnectOptions::application(protocol, "acme", &owner_id, &owner_key, "worker-1").persistent();
        let (mut client, code) = MqttClient::connect(&server.mqtt_addr, &ca, &owner).await.expect("connect");
        assert_eq!(code, 0);
        assert_eq!(client.subscribe("plant/#", QoS::AtLeastOnce).await.expect("subscribe"), 1);
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let publisher = ConnectOptions::application(protocol, "acme", &owner_id, &owner_key, "publisher");
        let (mut publisher, _) = MqttClient::connect(&server.mqtt_addr, &ca, &publisher).await.expect("connect");
        publisher.publish_qos1("plant/boiler", b"queued for worker-1").await.expect("publish");

        let thief = ConnectOptions::application(protocol, "acme", &thief_id, &thief_key, "worker-1").persistent();
        let (mut client, ack) = MqttClient::connect_ack(&server.mqtt_addr, &ca, &thief).await.expect("connect");
        let refused = ack.code != 0;
        let leaked = !refused && client.next_publish(Duration::from_secs(1)).await.is_some();
        assert!(refused && !leaked, "{protocol:?}: another key resumed the session (code {})", ack.code);

        // The owner still finds its message.
        let (mut client, ack) = MqttClient::connect_ack(&server.mqtt_addr, &ca, &owner).await.expect("connect");
        assert_eq!((ack.code, ack.session_present), (0, true));
        let message = client.next_publish(Duration::from_secs(3)).await.expect("queued message");
        assert_eq!(&message.payload[..], b"queued for worker-1");
        let clean = ConnectOptions::application(protocol, "acme", &owner_id, &owner_key, "worker-1");
        MqttClient::connect(&server.mqtt_addr, &ca, &clean).await.expect("clean up");
    }
}

#[tokio::test]
async fn subscriptions_overlapping_a_deny_rule_are_granted_and_filtered_per_message() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    open_free_namespace(&server, &acme).await;
    let (id, key) = api_key(&server, &acme, &["admin"]).await;
    let ca = ca_pem(&server);
    for protocol in [Protocol::V311, Protocol::V5] {
        let options = ConnectOptions::application(protocol, "acme", &id, &key, "listener");
        let (mut listener, _) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
        for filter in ["#", "+/+", "test/#"] {
            assert_eq!(listener.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe"), 1, "{filter}");
        }
        let denied = listener.subscribe("test/nosubscribe", QoS::AtLeastOnce).await.expect("subscribe");
        assert!(denied == 0x80 || denied == 0x87, "the denied filter itself is refused: {denied:#x}");
        let options = ConnectOptions::application(protocol, "acme", &id, &key, "talker");
        let (mut talker, _) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
        talker.publish_qos1("test/nosubscribe", b"withheld").await.expect("publish");
        talker.publish_qos1("test/open", b"delivered").await.expect("publish");
        let mut received = Vec::new();
        while let Some(message) = listener.next_publish(Duration::from_millis(1500)).await {
            received.push(message.topic);
        }
        assert!(received.iter().any(|topic| topic == "test/open"), "{protocol:?}: {received:?}");
        assert!(!received.iter().any(|topic| topic == "test/nosubscribe"), "{protocol:?}: {received:?}");
    }
}

#[tokio::test]
async fn an_oversized_body_gets_a_readable_413_over_http1_and_http2() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body_path = dir.path().join("big.json");
    let big = format!("{{\"id\":\"x\",\"name\":\"{}\"}}", "a".repeat(3 * 1024 * 1024));
    std::fs::write(&body_path, &big).expect("write body");
    let url = server.url("/api/v1/devices");
    for version in ["--http1.1", "--http2"] {
        for transfer in ["content-length", "chunked"] {
            let mut command = std::process::Command::new("curl");
            command
                .args(["-sS", version, "--cacert"])
                .arg(ca_pem(&server))
                .args(["-o", "/dev/null", "-w", "%{http_code}", "-H"])
                .arg(format!("Authorization: Bearer {acme}"))
                .args(["-H", "Content-Type: application/json", "-H", "Expect:"]);
            if transfer == "chunked" {
                command.args(["-H", "Transfer-Encoding: chunked"]);
            }
            let output = command.arg("--data-binary").arg(format!("@{}", body_path.display())).arg(&url).output();
            let output = output.expect("curl");
            let status = String::from_utf8_lossy(&output.stdout).to_string();
            assert_eq!(status, "413", "curl {version} {transfer}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    let script = "import requests,sys\n\
                  r = requests.post(sys.argv[1], data=open(sys.argv[2],'rb').read(), verify=sys.argv[3],\n\
                      headers={'Authorization': 'Bearer ' + sys.argv[4], 'Content-Type': 'application/json'})\n\
                  print(r.status_code, r.json()['error'])\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script, &url])
        .arg(&body_path)
        .arg(ca_pem(&server))
        .arg(&acme)
        .output()
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "413 payload_too_large",
        "python requests: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_concurrent_edit_never_writes_a_revoked_device_back() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    for round in 0..30 {
        let id = format!("racer-{round}");
        assert_eq!(server.post("/api/v1/devices", &acme, json!({"id": id})).await.0, 201);
        let path = format!("/api/v1/devices/{id}");
        let edits = (0..4).map(|n| patch(&server, &path, &acme, json!({"name": format!("name {n}")})));
        let revoke_path = format!("{path}/revoke");
        let revoke = server.post(&revoke_path, &acme, json!({}));
        let (_, revoked) = tokio::join!(futures::future::join_all(edits), revoke);
        assert_eq!(revoked.0, 200);
        let (_, device) = server.get(&path, &acme).await;
        assert_eq!(device["status"], "revoked", "round {round}: an edit wrote the device back: {device}");
    }
}

#[tokio::test]
async fn lockout_and_totp_single_use_hold_under_concurrent_requests() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let user = json!({"username": "target", "password": ADMIN_PASSWORD, "roles": ["viewer"]});
    assert_eq!(server.post("/api/v1/users", &acme, user).await.0, 201);
    let guesses = (0..40).map(|n| {
        let body = json!({"tenant": "acme", "username": "target", "password": format!("wrong-guess-{n:04}")});
        server.call(Method::POST, "/api/v1/auth/login", None, Some(body))
    });
    let answers = futures::future::join_all(guesses).await;
    assert!(answers.iter().all(|(status, _)| *status == 401));
    let (_, audit) = server.get("/api/v1/audit?action=auth.login&limit=1000", &acme).await;
    let checked = items(&audit)
        .iter()
        .filter(|r| r["target"] == "user:target" && r["details"]["reason"] == "bad_password")
        .count();
    assert!(checked <= 5, "{checked} passwords were checked; the lockout allows 5");
    let body = json!({"tenant": "acme", "username": "target", "password": ADMIN_PASSWORD});
    assert_eq!(server.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await.0, 401, "locked");
}

#[tokio::test]
async fn a_totp_code_logs_in_once_under_concurrent_requests() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let (_, enrol) = server.post("/api/v1/me/mfa", &acme, json!({})).await;
    let secret = enrol["secret"].as_str().expect("secret");
    let secret = rampart_crypto::TotpSecret::from_bytes(&crate::security_flows::base32_decode(secret)).expect("secret");
    let now = crate::security_flows::now_s();
    let code = secret.code_at(now);
    assert_eq!(server.post("/api/v1/me/mfa/confirm", &acme, json!({"code": code})).await.0, 200);
    let next = secret.code_at(now + 30);
    let logins = (0..10).map(|_| {
        let body = json!({"tenant": "acme", "username": "admin", "password": ADMIN_PASSWORD, "totp": next});
        server.call(Method::POST, "/api/v1/auth/login", None, Some(body))
    });
    let answers = futures::future::join_all(logins).await;
    let accepted = answers.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(accepted, 1, "one code, one login: {answers:?}");
}

/// A 5.0 PUBACK that accepted the message (0x10: accepted, no one subscribed).
fn accepted(code: Option<u8>) -> bool {
    matches!(code, Some(0x00 | 0x10))
}

#[tokio::test]
async fn per_tenant_quotas_on_retained_messages_and_persistent_sessions_are_configurable() {
    let options = ServerOptions {
        extra_args: ["--max-retained-per-tenant", "2", "--max-sessions-per-tenant", "1"].map(str::to_owned).to_vec(),
        ..ServerOptions::default()
    };
    let server = TestServer::start(BIN, options).await;
    let ca = ca_pem(&server);
    let mut keys = Vec::new();
    for tenant in ["acme", "globex"] {
        let admin = server.tenant_admin(tenant).await;
        open_free_namespace(&server, &admin).await;
        keys.push((tenant, admin.clone(), api_key(&server, &admin, &["admin"]).await));
    }
    let (_, acme, (id, key)) = keys[0].clone();

    // Two retained topics fit; a third is refused with 0x97, replacing or clearing a kept one is not.
    let options = ConnectOptions::application(Protocol::V5, "acme", &id, &key, "retainer");
    let (mut client, _) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    assert!(accepted(client.publish_retained_qos1("plant/a", b"1").await.expect("a")), "a");
    assert!(accepted(client.publish_retained_qos1("plant/b", b"1").await.expect("b")), "b");
    assert_eq!(client.publish_retained_qos1("plant/c", b"1").await.expect("c"), Some(0x97));
    assert!(accepted(client.publish_retained_qos1("plant/a", b"2").await.expect("a again")), "a again");
    assert!(accepted(client.publish_retained_qos1("plant/b", b"").await.expect("clear b")), "clear b");
    assert!(accepted(client.publish_retained_qos1("plant/c", b"1").await.expect("c now fits")), "c now fits");
    // The quota is the tenant's own: globex still retains.
    let (_, _, (globex_id, globex_key)) = keys[1].clone();
    let options = ConnectOptions::application(Protocol::V5, "globex", &globex_id, &globex_key, "retainer");
    let (mut other, _) = MqttClient::connect(&server.mqtt_addr, &ca, &options).await.expect("connect");
    assert!(accepted(other.publish_retained_qos1("plant/a", b"1").await.expect("globex")), "globex");

    // One persistent session per tenant: a second one is refused (5.0: 0x97; 3.1.1: 3).
    let first = ConnectOptions::application(Protocol::V5, "acme", &id, &key, "keeper-1").persistent();
    let (_first, code) = MqttClient::connect(&server.mqtt_addr, &ca, &first).await.expect("connect");
    assert_eq!(code, 0);
    let second = ConnectOptions::application(Protocol::V5, "acme", &id, &key, "keeper-2").persistent();
    assert_eq!(MqttClient::connect(&server.mqtt_addr, &ca, &second).await.expect("connect").1, 0x97);
    let second = ConnectOptions::application(Protocol::V311, "acme", &id, &key, "keeper-2").persistent();
    assert_eq!(MqttClient::connect(&server.mqtt_addr, &ca, &second).await.expect("connect").1, 3);
    // Clean sessions are not counted.
    let clean = ConnectOptions::application(Protocol::V5, "acme", &id, &key, "passer-by");
    assert_eq!(MqttClient::connect(&server.mqtt_addr, &ca, &clean).await.expect("connect").1, 0);

    // Each quota hit is on record for the tenant, once per quota (not once per refusal).
    let recorded = eventually(Duration::from_secs(3), || async {
        let (_, events) = server.get("/api/v1/security/events?type=quota_exceeded", &acme).await;
        let quotas: Vec<String> =
            items(&events).iter().filter_map(|event| event["details"]["quota"].as_str().map(str::to_owned)).collect();
        quotas.len() == 2
            && quotas.contains(&"retained_messages".into())
            && quotas.contains(&"persistent_sessions".into())
    })
    .await;
    assert!(recorded, "one quota_exceeded event per quota");
}

#[tokio::test]
async fn a_deleted_devices_certificates_never_authenticate_a_device_later_given_its_id() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let (ca, ca_key) = external_ca("Line CA");
    let code = registration_code(&server, &acme).await;
    let (verification, _) = signed_by(&ca, &ca_key, &code);
    let body = json!({"certificate": ca.pem(), "verification_certificate": verification, "auto_register": true});
    assert_eq!(server.post("/api/v1/ca/trusted", &acme, body).await.0, 201);
    let (cert, key) = signed_by(&ca, &ca_key, "press-9");
    let old = ConnectOptions::certificate(Protocol::V5, "press-9", &format!("{cert}{}", ca.pem()), &key);
    let (client, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &old).await.expect("connect");
    assert_eq!(code, 0, "registered just in time");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(delete(&server, "/api/v1/devices/press-9", &acme).await, 204);

    // Just-in-time registration does not bring the deleted device back on its old certificate.
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &old).await.expect("connect");
    assert_ne!(code, 0, "the deleted device's certificate registered it again");
    assert_eq!(server.get("/api/v1/devices/press-9", &acme).await.0, 404, "nothing was registered");
    // Nor does a device created under the same id take it.
    assert_eq!(server.post("/api/v1/devices", &acme, json!({"id": "press-9"})).await.0, 201);
    let (_, code) = MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &old).await.expect("connect");
    assert_ne!(code, 0, "the new press-9 took the old one's certificate");
    // A certificate issued to the new device connects.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (cert, key) = signed_by(&ca, &ca_key, "press-9");
    let new = ConnectOptions::certificate(Protocol::V5, "press-9", &format!("{cert}{}", ca.pem()), &key);
    assert_eq!(MqttClient::connect(&server.mqtt_addr, &ca_pem(&server), &new).await.expect("connect").1, 0);
}
