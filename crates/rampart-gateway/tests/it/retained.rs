//! Retained messages across gateway restarts (SPEC §7, §12): written behind to the store,
//! sealed under the tenant key, loaded at start with their properties and remaining expiry.

use std::time::Duration;

use bytes::Bytes;
use rampart_store::{RetainedChange, RetainedMessageRow};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};

use crate::harness::{Harness, PATIENCE};

const FREE: &str = r#"{"free_namespace":{"applications":true,"devices":true}}"#;

fn full_properties() -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        response_topic: Some("plant/replies".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 254])),
        user_properties: vec![("line".into(), "1".into()), ("shift".into(), "night".into())],
        content_type: Some("text/plain".into()),
        ..PublishProperties::default()
    }
}

/// Every retained publish the subscriber receives within a short wait, by topic.
async fn retained_publishes(harness: &Harness, tenant: &str, filter: &str) -> Vec<rumqttc::v5::mqttbytes::v5::Publish> {
    let (key_id, key) = harness.api_key(tenant, &["viewer"]).await;
    let user = format!("{tenant}/{key_id}");
    let mut app = harness.connect_v5("watcher", Some((&user, &key)), None).await.expect("app");
    app.client.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe");
    let mut publishes = Vec::new();
    while let Some(publish) = app
        .next_incoming(Duration::from_millis(700), |p| match p {
            Packet::Publish(publish) => Some(publish.clone()),
            _ => None,
        })
        .await
    {
        publishes.push(publish);
    }
    publishes.sort_by(|a, b| a.topic.cmp(&b.topic));
    publishes
}

#[tokio::test]
async fn retained_messages_survive_a_restart_with_their_properties_and_expiry() {
    let mut harness = Harness::start().await;
    harness.topic_policy("acme", FREE).await;
    let token = harness.device("acme", "d1").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut device = harness.connect_v5("d1", Some(("acme/d1", &token)), None).await.expect("device");
    let publish = |topic: &'static str, payload: &'static [u8], properties: PublishProperties| {
        let client = device.client.clone();
        async move {
            client.publish_with_properties(topic, QoS::AtLeastOnce, true, payload, properties).await.expect("publish")
        }
    };
    publish("plant/line-1/state", b"running at 71%", full_properties()).await;
    publish("plant/line-2/state", b"idle", PublishProperties::default()).await;
    publish("plant/line-2/state", b"", PublishProperties::default()).await;
    publish(
        "plant/line-3/state",
        b"gone soon",
        PublishProperties { message_expiry_interval: Some(1), ..Default::default() },
    )
    .await;
    for _ in 0..4 {
        let acked = device.next_incoming(PATIENCE, |p| matches!(p, Packet::PubAck(_)).then_some(()));
        assert!(acked.await.is_some(), "PUBACK");
    }
    drop(device);

    // Written behind the acknowledgement, but the writer drains before shutdown ends.
    harness.restart_gateway().await;
    let rows = harness.store.list_retained_messages("acme").await.expect("rows");
    let topics: Vec<&str> = rows.iter().map(|row| row.topic.as_str()).collect();
    assert_eq!(topics, ["plant/line-1/state", "plant/line-3/state"], "the cleared topic has no row");
    let row = &rows[0];
    assert_eq!(row.qos, 1);
    let sealed = [row.payload_sealed.as_slice(), row.properties_sealed.as_deref().expect("properties")].concat();
    for clear in [&b"running at 71%"[..], b"text/plain", b"night", b"plant/replies"] {
        assert!(!sealed.windows(clear.len()).any(|window| window == clear), "{:?} stored in clear", clear);
    }
    let now = harness.platform.now_ms();
    let expires_at = row.expires_at.expect("expiry");
    assert!((now + 3_590_000..=now + 3_600_000).contains(&expires_at), "wall-clock expiry, got {}", expires_at - now);
    assert_eq!(rows[1].properties_sealed, None, "no forwarded property but the expiry");

    // A row that cannot be opened (here: not sealed at all) is skipped, not fatal.
    let corrupt = RetainedMessageRow {
        tenant: "acme".into(),
        topic: "plant/corrupt".into(),
        qos: 0,
        payload_sealed: b"not sealed".to_vec(),
        properties_sealed: None,
        expires_at: None,
        updated_at: now,
    };
    harness.store.write_retained_messages(&[RetainedChange::Put(corrupt)]).await.expect("corrupt row");
    // The 1 s message expires while the gateway is down.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    harness.restart_gateway().await;

    let received = retained_publishes(&harness, "acme", "plant/#").await;
    let topics: Vec<&[u8]> = received.iter().map(|publish| publish.topic.as_ref()).collect();
    assert_eq!(topics, [&b"plant/line-1/state"[..]], "cleared, expired and unreadable ones are not delivered");
    let line_1 = &received[0];
    assert_eq!((line_1.payload.as_ref(), line_1.retain, line_1.qos), (&b"running at 71%"[..], true, QoS::AtLeastOnce));
    let properties = line_1.properties.clone().expect("properties");
    let expected = full_properties();
    assert_eq!(properties.payload_format_indicator, expected.payload_format_indicator);
    assert_eq!(properties.content_type, expected.content_type);
    assert_eq!(properties.response_topic, expected.response_topic);
    assert_eq!(properties.correlation_data, expected.correlation_data);
    assert_eq!(properties.user_properties, expected.user_properties);
    let remaining = properties.message_expiry_interval.expect("remaining expiry");
    assert!((3590..=3600).contains(&remaining), "the expiry counts on across restarts, got {remaining}");
    assert!(
        harness
            .store
            .list_retained_messages("acme")
            .await
            .expect("rows")
            .iter()
            .all(|row| row.topic != "plant/line-3/state"),
        "the expired row was purged at start"
    );
    assert!(
        retained_publishes(&harness, "globex", "plant/#").await.is_empty(),
        "tenants never share retained messages"
    );
}

#[tokio::test]
async fn retained_messages_are_written_behind_without_a_shutdown() {
    let mut harness = Harness::start().await;
    harness.topic_policy("acme", FREE).await;
    let token = harness.device("acme", "d1").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let device = harness.connect_v3("d1", Some(("acme/d1", &token)), None).await.expect("device");
    device.client.publish("plant/state", rumqttc::QoS::AtMostOnce, true, b"on".to_vec()).await.expect("publish");

    let mut stored = Vec::new();
    for _ in 0..50 {
        stored = harness.store.list_retained_messages("acme").await.expect("rows");
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored.len(), 1, "written within a second, while the gateway runs");
    assert_eq!((stored[0].topic.as_str(), stored[0].qos, stored[0].expires_at), ("plant/state", 0, None));

    // A second gateway over the same store, the first one not shut down (its writer never
    // told to drain), loads it from the row.
    harness.gateway.take();
    harness.start_gateway().await;
    let received = retained_publishes(&harness, "acme", "plant/#").await;
    assert_eq!(received.len(), 1);
    assert_eq!((received[0].payload.as_ref(), received[0].qos), (&b"on"[..], QoS::AtMostOnce));

    // Deleting the tenant deletes its retained rows.
    let platform_admin = harness.fixture.platform_admin().await;
    let acme = rampart_core::TenantId::parse("acme").expect("id");
    harness.platform.delete_tenant(&platform_admin, &acme).await.expect("delete tenant");
    assert!(harness.store.list_retained_messages("acme").await.expect("rows").is_empty());
}
