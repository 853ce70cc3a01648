//! Device data through MQTT: acknowledged only once stored, routed to applications of the same
//! tenant only.

use std::time::Duration;

use rampart_data::MeasurementQuery;
use rumqttc::v5::mqttbytes::v5::{Packet as V5Packet, PubAckReason};
use rumqttc::{Packet, QoS};

use crate::harness::{Harness, PATIENCE};

async fn measurements(harness: &Harness, tenant: &str, device: &str) -> Vec<(String, f64)> {
    let query = MeasurementQuery { limit: 100, ..MeasurementQuery::default() };
    let page = harness.ingestor.measurements(tenant, device, &query).await.expect("measurements");
    page.items.into_iter().map(|m| (m.series, m.value)).collect()
}

#[tokio::test]
async fn v311_telemetry_qos1_is_stored_before_puback() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "pump-1").await;
    let mut device = harness.connect_v3("pump-1", Some(("acme/pump-1", &token)), None).await.expect("connect");
    device
        .client
        .publish("devices/pump-1/telemetry", QoS::AtLeastOnce, false, br#"{"temp":21.5}"#.to_vec())
        .await
        .expect("publish");
    let acked = device.next_incoming(PATIENCE, |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    assert!(acked.is_some(), "PUBACK");
    // Acknowledged means stored: the measurement is there the moment the PUBACK arrived.
    assert_eq!(measurements(&harness, "acme", "pump-1").await, [("temp".to_owned(), 21.5)]);
    let stored = harness.store.get_device("acme", "pump-1").await.expect("device");
    assert_eq!(stored.status, rampart_core::DeviceStatus::Active);
    assert!(stored.connected);
    assert_eq!(stored.last_address.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn v5_telemetry_qos1_and_malformed_payloads() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "pump-2").await;
    let mut device = harness.connect_v5("pump-2", Some(("acme/pump-2", &token)), None).await.expect("connect");
    let client = device.client.clone();
    let publish = |payload: &'static [u8]| {
        let client = client.clone();
        async move {
            client
                .publish("devices/pump-2/telemetry", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload.to_vec())
                .await
                .expect("publish")
        }
    };
    publish(br#"{"values":{"rpm":1200}}"#).await;
    let first = device.next_incoming(PATIENCE, |p| match p {
        V5Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    });
    assert_eq!(first.await, Some(PubAckReason::Success));
    assert_eq!(measurements(&harness, "acme", "pump-2").await, [("rpm".to_owned(), 1200.0)]);

    publish(b"not json").await;
    let second = device.next_incoming(PATIENCE, |p| match p {
        V5Packet::PubAck(ack) => Some(ack.reason),
        _ => None,
    });
    assert_eq!(second.await, Some(PubAckReason::PayloadFormatInvalid));
    assert_eq!(measurements(&harness, "acme", "pump-2").await.len(), 1, "nothing of it stored");
}

#[tokio::test]
async fn applications_receive_telemetry_of_their_tenant_only() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "meter").await;
    let (acme_key_id, acme_key) = harness.api_key("acme", &["viewer"]).await;
    let (globex_key_id, globex_key) = harness.api_key("globex", &["admin"]).await;
    let mut acme_app = harness
        .connect_v3("dashboard", Some((&format!("acme/{acme_key_id}"), &acme_key)), None)
        .await
        .expect("acme app");
    let mut globex_app = harness
        .connect_v3("dashboard", Some((&format!("globex/{globex_key_id}"), &globex_key)), None)
        .await
        .expect("globex app");
    for app in [&acme_app, &globex_app] {
        app.client.subscribe("devices/+/telemetry", QoS::AtLeastOnce).await.expect("subscribe");
    }
    for app in [&mut acme_app, &mut globex_app] {
        let granted = app.next_incoming(PATIENCE, |p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes.clone()),
            _ => None,
        });
        assert_eq!(granted.await, Some(vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]));
    }
    let device = harness.connect_v3("meter", Some(("acme/meter", &token)), None).await.expect("device");
    device
        .client
        .publish("devices/meter/telemetry", QoS::AtLeastOnce, false, br#"{"kwh":3}"#.to_vec())
        .await
        .expect("publish");
    let received = acme_app.next_incoming(PATIENCE, |p| match p {
        Packet::Publish(publish) => Some((publish.topic.clone(), publish.payload.to_vec())),
        _ => None,
    });
    assert_eq!(received.await, Some(("devices/meter/telemetry".to_owned(), br#"{"kwh":3}"#.to_vec())));
    let leaked =
        globex_app.next_incoming(Duration::from_millis(300), |p| matches!(p, Packet::Publish(_)).then_some(()));
    assert!(leaked.await.is_none(), "another tenant's application saw the message");
}
