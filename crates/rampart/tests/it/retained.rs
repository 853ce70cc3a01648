//! Retained messages across restarts of the real binary (SPEC §7, §12), on SQLite and, when
//! `RAMPART_TEST_POSTGRES` is set, PostgreSQL: kept across a graceful restart and across
//! SIGKILL once the background write had time to land, cleared by an empty retained publish
//! across restarts too, and never stored in clear.

use std::time::Duration;

use rampart_mqtt::{Packet, Properties, Protocol, PubResponse, Publish, QoS};
use rampart_testkit::mqtt::{ConnectOptions, MqttClient};
use rampart_testkit::{ServerOptions, TestServer, postgres_url};
use reqwest::Method;
use serde_json::json;

use crate::BIN;
use crate::flows::{drop_schema, postgres_options};

/// Distinctive enough to be searched for in the database files.
const SECRET: &[u8] = b"retained-plaintext-7f3a9c-do-not-store-me";

/// How long the test gives the background write of a retained message before SIGKILL: it is
/// not on the acknowledgement path (docs/decisions/0006-retained-messages.md), and usually
/// lands within milliseconds; a second leaves room for a loaded CI machine.
const WRITE_BEHIND: Duration = Duration::from_secs(1);

struct Tenant {
    token: String,
}

async fn setup(server: &TestServer) -> Tenant {
    let admin = server.tenant_admin("acme").await;
    let policy = json!({"free_namespace": {"applications": true, "devices": true}, "rules": []});
    let (status, body) = server.call(Method::PUT, "/api/v1/tenant/topic-policies", Some(&admin), Some(policy)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post("/api/v1/devices", &admin, json!({"id": "sign-1"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, token) = server.post("/api/v1/devices/sign-1/tokens", &admin, json!({})).await;
    assert_eq!(status, 201, "{token}");
    Tenant { token: token["token"].as_str().expect("token").to_owned() }
}

async fn connect(server: &TestServer, tenant: &Tenant) -> MqttClient {
    let options = ConnectOptions::token(Protocol::V5, "acme", "sign-1", &tenant.token);
    let (client, code) =
        MqttClient::connect(&server.mqtt_addr, &server.data_dir.join("tls/ca.pem"), &options).await.expect("connect");
    assert_eq!(code, 0, "CONNACK");
    client
}

/// Publishes a retained QoS 1 message and waits for its PUBACK.
async fn publish_retained(client: &mut MqttClient, packet_id: u16, topic: &str, payload: &[u8]) {
    let properties = Properties { content_type: Some("text/plain".into()), ..Properties::default() };
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: topic.to_owned(),
        packet_id: Some(packet_id),
        payload: payload.to_vec().into(),
        properties,
    };
    client.send(&Packet::Publish(publish)).await.expect("publish");
    loop {
        match client.next_packet().await.expect("PUBACK") {
            Some(Packet::PubAck(PubResponse { packet_id: acked, reason, .. })) if acked == packet_id => {
                // 0x10: no subscriber yet, which is fine for a retained message.
                assert!(reason == 0 || reason == 0x10, "PUBACK {reason:#x}");
                return;
            }
            Some(_) => continue,
            None => panic!("closed before PUBACK"),
        }
    }
}

/// The retained messages a new subscription to `lobby/#` receives, as (topic, payload).
async fn retained_now(server: &TestServer, tenant: &Tenant) -> Vec<(String, Vec<u8>)> {
    let mut client = connect(server, tenant).await;
    assert_eq!(client.subscribe("lobby/#", QoS::AtLeastOnce).await.expect("subscribe"), 1);
    let mut received = Vec::new();
    while let Ok(Ok(Some(packet))) = tokio::time::timeout(Duration::from_millis(700), client.next_packet()).await {
        if let Packet::Publish(publish) = packet {
            assert!(publish.retain, "delivered as retained");
            assert_eq!(publish.properties.content_type.as_deref(), Some("text/plain"), "properties kept");
            received.push((publish.topic, publish.payload.to_vec()));
        }
    }
    received.sort();
    received
}

pub(crate) fn found_in_files(data_dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("rampart.db")) {
            let bytes = std::fs::read(&path).expect("read");
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn retained_messages_survive_restarts(options: ServerOptions) {
    let sqlite = options.storage.is_none();
    let mut server = TestServer::start(BIN, options).await;
    let tenant = setup(&server).await;
    let mut client = connect(&server, &tenant).await;
    publish_retained(&mut client, 1, "lobby/welcome", SECRET).await;
    publish_retained(&mut client, 2, "lobby/old", b"stale").await;
    publish_retained(&mut client, 3, "lobby/old", b"").await;
    drop(client);

    // A graceful restart (SIGTERM): the gateway writes what is pending before it exits.
    assert!(server.terminate().success(), "clean exit");
    server.spawn().await;
    let welcome = ("lobby/welcome".to_owned(), SECRET.to_vec());
    assert_eq!(retained_now(&server, &tenant).await, [welcome], "kept; the cleared topic stays cleared");
    if sqlite {
        let files = found_in_files(&server.data_dir, SECRET);
        assert!(files.is_empty(), "retained payload in clear in {files:?}");
    }

    // SIGKILL, after the background write had time to land: a new message and a clearing.
    let mut client = connect(&server, &tenant).await;
    publish_retained(&mut client, 1, "lobby/after", b"written before the kill").await;
    publish_retained(&mut client, 2, "lobby/welcome", b"").await;
    tokio::time::sleep(WRITE_BEHIND).await;
    server.kill();
    drop(client);
    server.spawn().await;
    assert_eq!(retained_now(&server, &tenant).await, [("lobby/after".to_owned(), b"written before the kill".to_vec())]);
}

#[tokio::test]
async fn retained_messages_survive_restarts_on_sqlite() {
    retained_messages_survive_restarts(ServerOptions::default()).await;
}

#[tokio::test]
async fn retained_messages_survive_restarts_on_postgres() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("e2e_retained_{}", std::process::id());
    retained_messages_survive_restarts(postgres_options(&url, &schema)).await;
    drop_schema(&url, &schema);
}
