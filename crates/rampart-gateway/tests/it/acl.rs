//! Authorisation (SPEC §7): the per-device namespace, topic policies, the free namespace, and
//! `acl_violation` events for every denial.

use std::time::Duration;

use rampart_data::MeasurementQuery;
use rumqttc::v5::mqttbytes::v5::{Packet as V5Packet, PubAckReason, SubscribeReasonCode as V5SubCode};
use rumqttc::{LastWill, Packet, QoS, SubscribeFilter, SubscribeReasonCode};

use crate::harness::{Harness, PATIENCE};

#[tokio::test]
async fn publishing_to_another_devices_topic_is_denied_and_recorded() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "d1").await;
    harness.device("acme", "d2").await;
    let mut v5 = harness.connect_v5("d1", Some(("acme/d1", &token)), None).await.expect("connect");
    v5.client
        .publish("devices/d2/telemetry", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, br#"{"x":1}"#.to_vec())
        .await
        .expect("publish");
    let reason = v5.next_incoming(PATIENCE, |p| match p {
        V5Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    });
    assert_eq!(reason.await, Some(PubAckReason::NotAuthorized));
    drop(v5);

    let mut v3 = harness.connect_v3("d1", Some(("acme/d1", &token)), None).await.expect("connect");
    v3.client.publish("devices/d2/telemetry", QoS::AtLeastOnce, false, br#"{"x":2}"#.to_vec()).await.expect("publish");
    // 3.1.1 has no negative PUBACK: the message is dropped (acknowledged, not stored).
    assert!(v3.next_incoming(PATIENCE, |p| matches!(p, Packet::PubAck(_)).then_some(())).await.is_some());
    let query = MeasurementQuery { limit: 10, ..MeasurementQuery::default() };
    assert!(
        harness.ingestor.measurements("acme", "d2", &query).await.map(|page| page.items).unwrap_or_default().is_empty()
    );

    let events = harness.wait_for_events("acme", "acl_violation", 2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].device.as_deref(), Some("d1"));
    assert_eq!(events[0].severity, rampart_core::Severity::Minor);
    let details: serde_json::Value = serde_json::from_str(&events[0].details_json).expect("details");
    assert_eq!(details["topic"], "devices/d2/telemetry");
    assert_eq!(details["action"], "publish");
}

#[tokio::test]
async fn a_flood_of_denials_is_recorded_up_to_a_budget_and_the_rest_as_a_count() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "d1").await;
    let mut v5 = harness.connect_v5("d1", Some(("acme/d1", &token)), None).await.expect("connect");
    for _ in 0..200 {
        v5.client
            .publish("devices/d2/telemetry", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, br#"{"x":1}"#.to_vec())
            .await
            .expect("publish");
    }
    for _ in 0..200 {
        let reason = v5.next_incoming(PATIENCE, |p| match p {
            V5Packet::PubAck(ack) => Some(ack.reason),
            _ => None,
        });
        assert_eq!(reason.await, Some(PubAckReason::NotAuthorized));
    }
    // Ten in full; the other 190 as one event with their count, written when the connection ends.
    drop(v5);
    harness.wait_for_events("acme", "acl_violation", 11).await;
    // And no more arrive: 200 denials, 11 events.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = harness.security_events("acme", "acl_violation").await;
    let details: Vec<serde_json::Value> =
        events.iter().map(|event| serde_json::from_str(&event.details_json).expect("details")).collect();
    assert_eq!(details.len(), 11, "{details:?}");
    let suppressed: Vec<u64> = details.iter().filter_map(|detail| detail["suppressed"].as_u64()).collect();
    assert_eq!(suppressed, [190]);
    assert!(details.iter().all(|detail| detail["topic"] == "devices/d2/telemetry"));
}

#[tokio::test]
async fn devices_cannot_subscribe_beyond_their_own_topics() {
    let harness = Harness::start().await;
    // Twelve denials below: not a test of the quarantine rule.
    harness.acl_violation_threshold("acme", 100).await;
    let token = harness.device("acme", "d1").await;
    let mut v3 = harness.connect_v3("d1", Some(("acme/d1", &token)), None).await.expect("connect");
    v3.client
        .subscribe_many([
            SubscribeFilter::new("#".into(), QoS::AtMostOnce),
            SubscribeFilter::new("devices/d1/operations".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("devices/+/operations".into(), QoS::AtLeastOnce),
        ])
        .await
        .expect("subscribe");
    let codes = v3.next_incoming(PATIENCE, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    });
    assert_eq!(
        codes.await,
        Some(vec![
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ])
    );
    drop(v3);

    let mut v5 = harness.connect_v5("d1", Some(("acme/d1", &token)), None).await.expect("connect");
    v5.client.subscribe("devices/#", rumqttc::v5::mqttbytes::QoS::AtMostOnce).await.expect("subscribe");
    let codes = v5.next_incoming(PATIENCE, |p| match p {
        V5Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    });
    assert_eq!(codes.await, Some(vec![V5SubCode::NotAuthorized]));

    // More than 8 filters at once from a device: all refused.
    let many: Vec<SubscribeFilter> =
        (0..9).map(|_| SubscribeFilter::new("devices/d1/operations".into(), QoS::AtMostOnce)).collect();
    let mut v3 = harness.connect_v3("d1", Some(("acme/d1", &token)), None).await.expect("connect");
    v3.client.subscribe_many(many).await.expect("subscribe");
    let codes = v3.next_incoming(PATIENCE, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    });
    assert_eq!(codes.await, Some(vec![SubscribeReasonCode::Failure; 9]));
    assert!(harness.wait_for_events("acme", "acl_violation", 12).await.len() >= 12);
}

#[tokio::test]
async fn the_free_namespace_is_closed_until_the_tenant_opens_it() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "d1").await;
    let (key_id, key) = harness.api_key("acme", &["viewer"]).await;
    let app_user = format!("acme/{key_id}");

    let mut app = harness.connect_v3("app", Some((&app_user, &key)), None).await.expect("app");
    app.client.subscribe("plant/#", QoS::AtLeastOnce).await.expect("subscribe");
    let closed = app.next_incoming(PATIENCE, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    });
    assert_eq!(closed.await, Some(vec![SubscribeReasonCode::Failure]));
    drop(app);

    harness.topic_policy("acme", r#"{"free_namespace":{"applications":true,"devices":true}}"#).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A retained message and a will, as on any broker.
    let mut device = harness.connect_v3("d1", Some(("acme/d1", &token)), None).await.expect("device");
    device.client.publish("plant/line-1/state", QoS::AtLeastOnce, true, b"running".to_vec()).await.expect("retain");
    assert!(device.next_incoming(PATIENCE, |p| matches!(p, Packet::PubAck(_)).then_some(())).await.is_some());

    let mut app = harness.connect_v3("app", Some((&app_user, &key)), None).await.expect("app");
    app.client.subscribe("plant/#", QoS::AtLeastOnce).await.expect("subscribe");
    let retained = app.next_incoming(PATIENCE, |p| match p {
        Packet::Publish(publish) => Some((publish.topic.clone(), publish.payload.to_vec(), publish.retain)),
        _ => None,
    });
    assert_eq!(retained.await, Some(("plant/line-1/state".to_owned(), b"running".to_vec(), true)));

    drop(device);
    let mut will_options = rumqttc::MqttOptions::new("d1", "localhost", harness.addr.port());
    will_options.set_credentials("acme/d1", token.as_str());
    will_options.set_last_will(LastWill::new("plant/line-1/state", "offline", QoS::AtLeastOnce, false));
    let tls = rumqttc::TlsConfiguration::Rustls(harness.client_tls(None));
    will_options.set_transport(rumqttc::Transport::tls_with_config(tls));
    let device = harness.connect_v3_with(will_options).await.expect("device with will");
    // Dropping the client without DISCONNECT is an abnormal close: the will goes out.
    drop(device);
    let will = app.next_incoming(PATIENCE, |p| match p {
        Packet::Publish(publish) if publish.payload.as_ref() == b"offline" => Some(publish.topic.clone()),
        _ => None,
    });
    assert_eq!(will.await.as_deref(), Some("plant/line-1/state"));
}

#[tokio::test]
async fn a_policy_change_withdraws_topics_from_live_subscriptions() {
    let harness = Harness::start().await;
    let publisher = harness.device("acme", "d1").await;
    let listener = harness.device("acme", "d2").await;
    let open = r#"{"rules":[{"principal":"device","action":"all","topic":"shared/#","effect":"allow"}]}"#;
    harness.topic_policy("acme", open).await;
    let mut d2 = harness.connect_v3("d2", Some(("acme/d2", &listener)), None).await.expect("connect");
    d2.client.subscribe("shared/#", QoS::AtLeastOnce).await.expect("subscribe");
    let granted = d2.next_incoming(PATIENCE, |p| match p {
        Packet::SubAck(ack) => Some(ack.return_codes.clone()),
        _ => None,
    });
    assert_eq!(granted.await, Some(vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]));
    let mut d1 = harness.connect_v3("d1", Some(("acme/d1", &publisher)), None).await.expect("connect");
    let received = |topic: &'static str| {
        move |p: &Packet| match p {
            Packet::Publish(publish) if publish.topic == topic => Some(()),
            _ => None,
        }
    };
    d1.client.publish("shared/before", QoS::AtLeastOnce, false, b"x".to_vec()).await.expect("publish");
    assert!(d2.next_incoming(PATIENCE, received("shared/before")).await.is_some());

    // Devices may still publish there, but no longer subscribe: d2's subscription stops.
    let publish_only = r#"{"rules":[{"principal":"device","action":"publish","topic":"shared/#","effect":"allow"}]}"#;
    harness.topic_policy("acme", publish_only).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d1.client.publish("shared/after", QoS::AtLeastOnce, false, b"y".to_vec()).await.expect("publish");
    assert!(d1.next_incoming(PATIENCE, |p| matches!(p, Packet::PubAck(_)).then_some(())).await.is_some());
    assert!(d2.next_incoming(Duration::from_secs(1), received("shared/after")).await.is_none());
}

#[tokio::test]
async fn topic_policy_rules_open_custom_topics_and_deny_wins() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "d1").await;
    harness
        .topic_policy(
            "acme",
            r#"{"rules":[
                {"principal":"device","action":"all","topic":"custom/${device}/#","effect":"allow"},
                {"principal":"device","action":"publish","topic":"custom/${device}/secret","effect":"deny"}
            ]}"#,
        )
        .await;
    let mut v5 = harness.connect_v5("d1", Some(("acme/d1", &token)), None).await.expect("connect");
    for (topic, expected) in [
        ("custom/d1/data", PubAckReason::NoMatchingSubscribers),
        ("custom/d1/secret", PubAckReason::NotAuthorized),
        ("custom/d2/data", PubAckReason::NotAuthorized),
    ] {
        v5.client
            .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, b"x".to_vec())
            .await
            .expect("publish");
        let reason = v5.next_incoming(PATIENCE, |p| match p {
            V5Packet::PubAck(ack) => Some(ack.reason),
            _ => None,
        });
        assert_eq!(reason.await, Some(expected), "{topic}");
    }
}
