//! Sessions and delivery: persistent sessions across reconnects, QoS 2, shared subscriptions,
//! shutdown.

use std::collections::HashMap;
use std::time::Duration;

use rampart_data::MeasurementQuery;
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::v5::mqttbytes::v5::Packet as V5Packet;
use rumqttc::{Packet, QoS};

use crate::harness::{Harness, PATIENCE};

const OPEN: &str = r#"{"free_namespace":{"applications":true,"devices":true}}"#;

#[tokio::test]
async fn persistent_sessions_keep_subscriptions_and_queue_messages() {
    let harness = Harness::start().await;
    harness.topic_policy("acme", OPEN).await;
    let token = harness.device("acme", "d1").await;
    let (key_id, key) = harness.api_key("acme", &["viewer"]).await;
    let user = format!("acme/{key_id}");
    let mut options = harness.v3_options_for("collector", Some((&user, &key)));
    options.set_clean_session(false);
    let mut app = harness.connect_v3_with(options.clone()).await.expect("app");
    app.client.subscribe("plant/#", QoS::AtLeastOnce).await.expect("subscribe");
    assert!(app.next_incoming(PATIENCE, |p| matches!(p, Packet::SubAck(_)).then_some(())).await.is_some());
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut device = harness.connect_v3("d1", Some(("acme/d1", &token)), None).await.expect("device");
    device.client.publish("plant/a", QoS::AtLeastOnce, false, b"while away".to_vec()).await.expect("publish");
    assert!(device.next_incoming(PATIENCE, |p| matches!(p, Packet::PubAck(_)).then_some(())).await.is_some());

    let mut app = harness.connect_v3_with(options).await.expect("app again");
    let queued = app.next_incoming(PATIENCE, |p| match p {
        Packet::Publish(publish) => Some(publish.payload.to_vec()),
        _ => None,
    });
    assert_eq!(queued.await, Some(b"while away".to_vec()), "queued for the persistent session");
    device.client.publish("plant/b", QoS::AtLeastOnce, false, b"live".to_vec()).await.expect("publish");
    let live = app.next_incoming(PATIENCE, |p| match p {
        Packet::Publish(publish) => Some(publish.payload.to_vec()),
        _ => None,
    });
    assert_eq!(live.await, Some(b"live".to_vec()), "the subscription survived the reconnect");
}

#[tokio::test]
async fn qos2_telemetry_completes_and_is_stored_once() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "d2").await;
    let mut device = harness.connect_v5("d2", Some(("acme/d2", &token)), None).await.expect("device");
    device
        .client
        .publish("devices/d2/telemetry", V5QoS::ExactlyOnce, false, br#"{"t":1}"#.to_vec())
        .await
        .expect("publish");
    assert!(device.next_incoming(PATIENCE, |p| matches!(p, V5Packet::PubComp(_)).then_some(())).await.is_some());
    let query = MeasurementQuery { limit: 10, ..MeasurementQuery::default() };
    let page = harness.ingestor.measurements("acme", "d2", &query).await.expect("measurements");
    assert_eq!(page.items.len(), 1);
}

#[tokio::test]
async fn shared_subscriptions_split_the_messages() {
    let harness = Harness::start().await;
    harness.topic_policy("acme", OPEN).await;
    let token = harness.device("acme", "d3").await;
    let (key_id, key) = harness.api_key("acme", &["viewer"]).await;
    let user = format!("acme/{key_id}");
    let mut workers = Vec::new();
    for name in ["worker-1", "worker-2"] {
        let worker = harness.connect_v5(name, Some((&user, &key)), None).await.expect("worker");
        worker.client.subscribe("$share/workers/jobs/+", V5QoS::AtLeastOnce).await.expect("subscribe");
        workers.push(worker);
    }
    for worker in &mut workers {
        assert!(worker.next_incoming(PATIENCE, |p| matches!(p, V5Packet::SubAck(_)).then_some(())).await.is_some());
    }
    let device = harness.connect_v5("d3", Some(("acme/d3", &token)), None).await.expect("device");
    for n in 0..10 {
        device.client.publish(format!("jobs/{n}"), V5QoS::AtLeastOnce, false, b"job".to_vec()).await.expect("publish");
    }
    let mut counts = HashMap::new();
    for (index, worker) in workers.iter_mut().enumerate() {
        while let Some(()) =
            worker.next_incoming(Duration::from_millis(500), |p| matches!(p, V5Packet::Publish(_)).then_some(())).await
        {
            *counts.entry(index).or_insert(0) += 1;
        }
    }
    assert_eq!(counts.get(&0), Some(&5), "{counts:?}");
    assert_eq!(counts.get(&1), Some(&5), "{counts:?}");
}

#[tokio::test]
async fn shutdown_tells_v5_clients_the_server_is_shutting_down() {
    let mut harness = Harness::start().await;
    let token = harness.device("acme", "d4").await;
    let mut device = harness.connect_v5("d4", Some(("acme/d4", &token)), None).await.expect("device");
    let gateway = harness.gateway.take().expect("gateway");
    let shutdown = tokio::spawn(gateway.shutdown());
    // A third-party client reads the reason (0x8B): the DISCONNECT carries a property length.
    let closed = device.closed_with(PATIENCE).await.expect("closed by the server");
    assert!(closed.contains("ServerShuttingDown"), "{closed}");
    tokio::time::timeout(PATIENCE, shutdown).await.expect("shutdown in time").expect("shutdown task");
    let stored = harness.store.get_device("acme", "d4").await.expect("device");
    assert!(!stored.connected, "disconnect recorded");
}

#[tokio::test]
async fn v5_will_delay_waits_and_a_reconnect_cancels_it() {
    let harness = Harness::start().await;
    harness.topic_policy("acme", OPEN).await;
    let token = harness.device("acme", "d5").await;
    let (key_id, key) = harness.api_key("acme", &["viewer"]).await;
    let user = format!("acme/{key_id}");
    let mut watcher = harness.connect_v5("watcher", Some((&user, &key)), None).await.expect("watcher");
    watcher.client.subscribe("status/d5", V5QoS::AtLeastOnce).await.expect("subscribe");
    assert!(watcher.next_incoming(PATIENCE, |p| matches!(p, V5Packet::SubAck(_)).then_some(())).await.is_some());

    let with_will = || {
        let mut options = harness.v5_options("d5", Some(("acme/d5", &token)), None);
        let properties = rumqttc::v5::mqttbytes::v5::LastWillProperties {
            delay_interval: Some(1),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        };
        let will =
            rumqttc::v5::mqttbytes::v5::LastWill::new("status/d5", "gone", V5QoS::AtLeastOnce, false, Some(properties));
        options.set_last_will(will);
        options.set_session_expiry_interval(Some(30));
        options
    };
    // Dropped and back at once: the will is cancelled.
    drop(harness.connect_v5_with(with_will()).await.expect("device"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let device = harness.connect_v5_with(with_will()).await.expect("device again");
    let early = watcher.next_incoming(Duration::from_millis(1800), |p| matches!(p, V5Packet::Publish(_)).then_some(()));
    assert!(early.await.is_none(), "a reconnect within the delay cancels the will");

    // Dropped for good: the will comes after its delay.
    let dropped_at = std::time::Instant::now();
    drop(device);
    let will = watcher.next_incoming(PATIENCE, |p| match p {
        V5Packet::Publish(publish) => Some(publish.payload.to_vec()),
        _ => None,
    });
    assert_eq!(will.await, Some(b"gone".to_vec()));
    assert!(dropped_at.elapsed() >= Duration::from_millis(900), "{:?}", dropped_at.elapsed());
}

#[tokio::test]
async fn a_deleted_tenants_sessions_and_wills_never_reach_its_successor() {
    let harness = Harness::start().await;
    harness.topic_policy("acme", OPEN).await;
    let token = harness.device("acme", "d1").await;
    let (key_id, key) = harness.api_key("acme", &["viewer"]).await;
    let user = format!("acme/{key_id}");
    // A persistent session with a message queued for it.
    let mut options = harness.v3_options_for("collector", Some((&user, &key)));
    options.set_clean_session(false);
    let mut app = harness.connect_v3_with(options).await.expect("app");
    app.client.subscribe("plant/#", QoS::AtLeastOnce).await.expect("subscribe");
    assert!(app.next_incoming(PATIENCE, |p| matches!(p, Packet::SubAck(_)).then_some(())).await.is_some());
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut device = harness.connect_v3("d1", Some(("acme/d1", &token)), None).await.expect("device");
    device.client.publish("plant/a", QoS::AtLeastOnce, false, b"for the old acme".to_vec()).await.expect("publish");
    assert!(device.next_incoming(PATIENCE, |p| matches!(p, Packet::PubAck(_)).then_some(())).await.is_some());
    // A will waiting out its delay.
    let mut options = harness.v5_options("d1", Some(("acme/d1", &token)), None);
    let properties = rumqttc::v5::mqttbytes::v5::LastWillProperties {
        delay_interval: Some(2),
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        user_properties: Vec::new(),
    };
    let will = rumqttc::v5::mqttbytes::v5::LastWill::new(
        "plant/will",
        "the old acme's will",
        V5QoS::AtLeastOnce,
        false,
        Some(properties),
    );
    options.set_last_will(will);
    options.set_session_expiry_interval(Some(30));
    drop(device);
    drop(harness.connect_v5_with(options).await.expect("device with a will"));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The tenant goes, and someone creates one with the same id at once.
    let platform_admin = harness.fixture.platform_admin().await;
    let acme = rampart_core::TenantId::parse("acme").expect("id");
    harness.platform.delete_tenant(&platform_admin, &acme).await.expect("delete tenant");
    let successor = harness.fixture.tenant("acme").await;
    let open = rampart_core::acl::TopicPolicy::from_stored(Some(OPEN)).expect("policy");
    harness.platform.replace_topic_policy(&successor, open).await.expect("policy");
    let (key_id, key) = harness.fixture.api_key(&successor, &["viewer"]).await;
    let user = format!("acme/{key_id}");
    let mut watcher = harness.connect_v5("watcher", Some((&user, &key)), None).await.expect("watcher");
    watcher.client.subscribe("plant/#", V5QoS::AtLeastOnce).await.expect("subscribe");
    assert!(watcher.next_incoming(PATIENCE, |p| matches!(p, V5Packet::SubAck(_)).then_some(())).await.is_some());
    let mut options = harness.v3_options_for("collector", Some((&user, &key)));
    options.set_clean_session(false);
    let mut collector = harness.connect_v3_with(options).await.expect("the successor's collector");

    let queued = collector.next_incoming(Duration::from_millis(1500), |p| match p {
        Packet::Publish(publish) => Some(publish.payload.to_vec()),
        _ => None,
    });
    assert_eq!(queued.await, None, "the old tenant's queued message reached the successor");
    let will = watcher.next_incoming(Duration::from_secs(3), |p| match p {
        V5Packet::Publish(publish) => Some(publish.payload.to_vec()),
        _ => None,
    });
    assert_eq!(will.await, None, "the old tenant's will reached the successor");
}
