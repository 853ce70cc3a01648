//! Protocol edges over a raw TLS socket, with our own codec on the client side: garbage,
//! oversized packets refused from the fixed header, keep-alive, the CONNECT deadline.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rampart_mqtt::{Connect, Packet, Properties, Protocol, decode, encode, reason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Harness, PATIENCE};

fn connect_packet(protocol: Protocol, client_id: &str, username: &str, password: &str, keep_alive: u16) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive,
        client_id: client_id.to_owned(),
        will: None,
        username: Some(username.to_owned()),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        properties: Properties::default(),
    }))
}

async fn send(stream: &mut (impl AsyncWriteExt + Unpin), packet: &Packet, protocol: Protocol) {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).expect("encode");
    stream.write_all(&out).await.expect("write");
    stream.flush().await.expect("flush");
}

/// Reads packets until the server closes; returns them and how long it took.
async fn read_until_closed(
    stream: &mut (impl AsyncReadExt + Unpin),
    protocol: Protocol,
    wait: Duration,
) -> Option<(Vec<Packet>, Duration)> {
    let started = Instant::now();
    let mut buffer = BytesMut::new();
    let mut packets = Vec::new();
    loop {
        while let Ok(Some(packet)) = decode(&mut buffer, Some(protocol), 1 << 20) {
            packets.push(packet);
        }
        match tokio::time::timeout(wait.saturating_sub(started.elapsed()), stream.read_buf(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some((packets, started.elapsed())),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn garbage_closes_the_connection_and_the_gateway_keeps_serving() {
    let harness = Harness::start().await;
    let mut raw = harness.raw(None).await;
    raw.write_all(&[0xff; 64]).await.expect("write");
    raw.flush().await.expect("flush");
    assert!(read_until_closed(&mut raw, Protocol::V311, PATIENCE).await.is_some(), "closed");
    // Not TLS at all.
    let mut plain = tokio::net::TcpStream::connect(harness.addr).await.expect("tcp");
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "plain text closed");
    let token = harness.device("acme", "ok").await;
    assert!(harness.connect_v3("ok", Some(("acme/ok", &token)), None).await.is_ok());
}

#[tokio::test]
async fn oversized_packets_are_refused_from_the_fixed_header() {
    let harness = Harness::start_with(|settings| settings.max_packet_size = 1024).await;
    let token = harness.device("acme", "big").await;
    let mut raw = harness.raw(None).await;
    send(&mut raw, &connect_packet(Protocol::V5, "big", "acme/big", &token, 30), Protocol::V5).await;
    // A PUBLISH header announcing 1 MiB, and not a byte of its body: the gateway must not wait
    // for the payload.
    raw.write_all(&[0x30, 0x80, 0x80, 0x40]).await.expect("write header");
    raw.flush().await.expect("flush");
    let (packets, _) = read_until_closed(&mut raw, Protocol::V5, PATIENCE).await.expect("closed without the payload");
    assert!(matches!(packets.first(), Some(Packet::ConnAck(ack)) if ack.code == reason::SUCCESS), "{packets:?}");
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason == reason::PACKET_TOO_LARGE),
        "{packets:?}"
    );
}

#[tokio::test]
async fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "sleepy").await;
    let mut raw = harness.raw(None).await;
    send(&mut raw, &connect_packet(Protocol::V311, "sleepy", "acme/sleepy", &token, 1), Protocol::V311).await;
    let (packets, elapsed) = read_until_closed(&mut raw, Protocol::V311, PATIENCE).await.expect("closed");
    assert!(matches!(packets.first(), Some(Packet::ConnAck(_))));
    assert!(elapsed >= Duration::from_millis(1400), "closed too early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(2500), "closed too late: {elapsed:?}");
}

#[tokio::test]
async fn connect_must_arrive_within_the_connect_timeout() {
    let harness = Harness::start_with(|settings| settings.connect_timeout = Duration::from_millis(500)).await;
    let mut raw = harness.raw(None).await;
    let (packets, elapsed) = read_until_closed(&mut raw, Protocol::V311, PATIENCE).await.expect("closed");
    assert!(packets.is_empty());
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn revocation_and_shutdown_send_their_disconnect_reasons() {
    let mut harness = Harness::start().await;
    let revoked_token = harness.device("acme", "revoked").await;
    let token = harness.device("acme", "bystander").await;
    let mut revoked = harness.raw(None).await;
    send(&mut revoked, &connect_packet(Protocol::V5, "revoked", "acme/revoked", &revoked_token, 30), Protocol::V5)
        .await;
    let mut bystander = harness.raw(None).await;
    send(&mut bystander, &connect_packet(Protocol::V5, "bystander", "acme/bystander", &token, 30), Protocol::V5).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    harness.revoke("acme", "revoked").await;
    let (packets, elapsed) = read_until_closed(&mut revoked, Protocol::V5, PATIENCE).await.expect("closed");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason == reason::ADMINISTRATIVE_ACTION),
        "{packets:?}"
    );

    let gateway = harness.gateway.take().expect("gateway");
    let shutdown = tokio::spawn(gateway.shutdown());
    let (packets, _) = read_until_closed(&mut bystander, Protocol::V5, PATIENCE).await.expect("closed");
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason == reason::SERVER_SHUTTING_DOWN),
        "{packets:?}"
    );
    tokio::time::timeout(PATIENCE, shutdown).await.expect("shutdown in time").expect("shutdown task");
}

/// Sends a CONNECT and reads the CONNACK (the connection stays open); what arrived behind the
/// CONNACK stays in `buffer`.
async fn connack_with(
    stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    connect: Connect,
    buffer: &mut BytesMut,
) -> rampart_mqtt::ConnAck {
    let protocol = connect.protocol;
    send(stream, &Packet::Connect(Box::new(connect)), protocol).await;
    loop {
        if let Ok(Some(packet)) = decode(buffer, Some(protocol), 1 << 20) {
            match packet {
                Packet::ConnAck(connack) => return connack,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
        let read = tokio::time::timeout(PATIENCE, stream.read_buf(buffer)).await.expect("CONNACK in time");
        assert!(read.expect("read") > 0, "closed before CONNACK");
    }
}

async fn connack_for(
    stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    connect: Connect,
) -> rampart_mqtt::ConnAck {
    connack_with(stream, connect, &mut BytesMut::new()).await
}

#[tokio::test]
async fn an_empty_client_id_with_a_persistent_session_is_refused_in_3_1_1_and_assigned_in_5_0() {
    let harness = Harness::start().await;
    let (key_id, key) = harness.api_key("acme", &["admin"]).await;
    let application = |protocol: Protocol, client_id: &str, session_expiry: Option<u32>| {
        let Packet::Connect(mut connect) = connect_packet(protocol, client_id, &format!("acme/{key_id}"), &key, 30)
        else {
            unreachable!("connect_packet makes a CONNECT")
        };
        connect.clean_start = false;
        connect.properties.session_expiry_interval = session_expiry;
        *connect
    };
    // [MQTT-3.1.3-8]: 3.1.1 answers 0x02 (identifier rejected).
    let mut raw = harness.raw(None).await;
    let connack = connack_for(&mut raw, application(Protocol::V311, "", None)).await;
    assert_eq!(connack.code, reason::V3_IDENTIFIER_REJECTED);

    // 5.0 has no such rule: the session gets an assigned id, and can be resumed under it.
    let mut raw = harness.raw(None).await;
    let connack = connack_for(&mut raw, application(Protocol::V5, "", Some(60))).await;
    assert_eq!(connack.code, reason::SUCCESS, "{connack:?}");
    assert!(!connack.session_present);
    let assigned = connack.properties.assigned_client_identifier.expect("Assigned Client Identifier");
    let disconnect = rampart_mqtt::Disconnect { reason: reason::SUCCESS, properties: Properties::default() };
    send(&mut raw, &Packet::Disconnect(disconnect), Protocol::V5).await;
    assert!(read_until_closed(&mut raw, Protocol::V5, PATIENCE).await.is_some(), "closed after DISCONNECT");
    let mut raw = harness.raw(None).await;
    let connack = connack_for(&mut raw, application(Protocol::V5, &assigned, Some(0))).await;
    assert_eq!(connack.code, reason::SUCCESS, "{connack:?}");
    assert!(connack.session_present, "the session of {assigned} is resumed");
}

/// Reads one packet (`None` when the server closed the connection).
/// Sends a SUBSCRIBE (packet id 1) to `filter` at QoS 1.
async fn subscribe_at_qos1(stream: &mut (impl AsyncWriteExt + Unpin), filter: &str, protocol: Protocol) {
    let options = rampart_mqtt::SubscriptionOptions {
        qos: rampart_mqtt::QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    };
    let subscribe = rampart_mqtt::Subscribe {
        packet_id: 1,
        filters: vec![(filter.to_owned(), options)],
        properties: Properties::default(),
    };
    send(stream, &Packet::Subscribe(subscribe), protocol).await;
}

async fn next_packet(stream: &mut (impl AsyncReadExt + Unpin), buffer: &mut BytesMut) -> Option<Packet> {
    loop {
        if let Ok(Some(packet)) = decode(buffer, Some(Protocol::V5), 1 << 20) {
            return Some(packet);
        }
        match tokio::time::timeout(PATIENCE, stream.read_buf(buffer)).await.expect("a packet in time") {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_does_not_keep_up_is_disconnected_and_every_message_is_delivered_or_counted() {
    const PUBLISHED: usize = 20;
    const MAX_QUEUED: usize = 8;
    let harness = Harness::start_with(|settings| settings.max_queued_messages = MAX_QUEUED).await;
    harness.topic_policy("acme", r#"{"free_namespace":{"applications":true}}"#).await;
    let (key_id, key) = harness.api_key("acme", &["admin"]).await;
    let username = format!("acme/{key_id}");
    // A QoS 1 subscriber with a persistent session and an inflight window of 1 that never
    // acknowledges: one message in flight, MAX_QUEUED behind it, then it cannot keep up.
    let slow = |clean_start: bool| {
        let Packet::Connect(mut connect) = connect_packet(Protocol::V5, "slow", &username, &key, 0) else {
            unreachable!("connect_packet makes a CONNECT")
        };
        connect.clean_start = clean_start;
        connect.properties.session_expiry_interval = Some(60);
        connect.properties.receive_maximum = Some(1);
        *connect
    };
    let mut raw = harness.raw(None).await;
    assert_eq!(connack_for(&mut raw, slow(true)).await.code, reason::SUCCESS);
    subscribe_at_qos1(&mut raw, "plant/#", Protocol::V5).await;
    let mut buffer = BytesMut::new();
    assert!(matches!(next_packet(&mut raw, &mut buffer).await, Some(Packet::SubAck(_))));

    let mut publisher = harness.connect_v3("fast", Some((&username, &key)), None).await.expect("publisher");
    for index in 0..PUBLISHED {
        publisher
            .client
            .publish("plant/x", rumqttc::QoS::AtLeastOnce, false, index.to_string())
            .await
            .expect("publish");
    }
    for _ in 0..PUBLISHED {
        let acked = publisher.next_incoming(PATIENCE, |p| matches!(p, rumqttc::Packet::PubAck(_)).then_some(()));
        assert!(acked.await.is_some(), "the publisher is acknowledged");
    }

    // The subscriber got the first message, then DISCONNECT 0x97 (quota exceeded).
    let mut packets = Vec::new();
    while let Some(packet) = next_packet(&mut raw, &mut buffer).await {
        packets.push(packet);
    }
    assert!(matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason == reason::QUOTA_EXCEEDED), "{packets:?}");

    // Its persistent session kept the message in flight and the queue: 1 + MAX_QUEUED.
    let mut raw = harness.raw(None).await;
    let mut buffer = BytesMut::new();
    let connack = connack_with(&mut raw, slow(false), &mut buffer).await;
    assert!(connack.session_present);
    let mut delivered = Vec::new();
    while delivered.len() < 1 + MAX_QUEUED {
        let Some(Packet::Publish(publish)) = next_packet(&mut raw, &mut buffer).await else {
            panic!("expected the kept messages, got {delivered:?} so far")
        };
        delivered.push(String::from_utf8_lossy(&publish.payload).into_owned());
        let packet_id = publish.packet_id.expect("QoS 1");
        let ack = rampart_mqtt::PubResponse { packet_id, reason: reason::SUCCESS, properties: Properties::default() };
        send(&mut raw, &Packet::PubAck(ack), Protocol::V5).await;
    }
    let expected: Vec<String> = (0..=MAX_QUEUED).map(|index| index.to_string()).collect();
    assert_eq!(delivered, expected, "the oldest messages, in order");
    // None was lost silently: every other one is counted as dropped.
    let gateway = harness.gateway.as_ref().expect("gateway");
    let counted = (PUBLISHED - delivered.len()) as u64;
    let deadline = std::time::Instant::now() + PATIENCE;
    while gateway.stats().dropped_messages < counted && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gateway.stats().dropped_messages, counted);
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected_and_its_persistent_session_keeps_the_messages() {
    const PUBLISHED: usize = 60;
    const PAYLOAD: usize = 200 * 1024;
    // A small channel between the router and the connection: it overflows as soon as the
    // connection's task is stuck writing to a client that does not read.
    let harness = Harness::start_with(|settings| settings.outbound_channel = 4).await;
    harness.topic_policy("acme", r#"{"free_namespace":{"applications":true}}"#).await;
    let (key_id, key) = harness.api_key("acme", &["admin"]).await;
    let username = format!("acme/{key_id}");
    let stalled = |clean_start: bool| {
        let Packet::Connect(mut connect) = connect_packet(Protocol::V311, "stalled", &username, &key, 0) else {
            unreachable!("connect_packet makes a CONNECT")
        };
        connect.clean_start = clean_start;
        *connect
    };
    let mut raw = harness.raw(None).await;
    assert_eq!(connack_for(&mut raw, stalled(false)).await.code, reason::SUCCESS);
    subscribe_at_qos1(&mut raw, "plant/#", Protocol::V311).await;
    let mut buffer = BytesMut::new();
    loop {
        if let Ok(Some(packet)) = decode(&mut buffer, Some(Protocol::V311), 1 << 20) {
            assert!(matches!(packet, Packet::SubAck(_)), "{packet:?}");
            break;
        }
        raw.read_buf(&mut buffer).await.expect("SUBACK");
    }

    // 12 MB of QoS 1 messages that the subscriber does not read.
    let mut options = harness.v3_options_for("fast", Some((&username, &key)));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let mut publisher = harness.connect_v3_with(options).await.expect("publisher");
    for index in 0..PUBLISHED {
        let mut payload = vec![b'.'; PAYLOAD];
        payload[..8].copy_from_slice(&(index as u64).to_be_bytes());
        publisher.client.publish("plant/x", rumqttc::QoS::AtLeastOnce, false, payload).await.expect("publish");
    }
    for _ in 0..PUBLISHED {
        let acked = publisher.next_incoming(PATIENCE * 4, |p| matches!(p, rumqttc::Packet::PubAck(_)).then_some(()));
        assert!(acked.await.is_some(), "the publisher is acknowledged");
    }
    // The gateway gives up on it: reading what is buffered ends at the end of the stream.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sink = vec![0u8; 1 << 16];
    let closed =
        tokio::time::timeout(PATIENCE, async { while matches!(raw.read(&mut sink).await, Ok(n) if n > 0) {} }).await;
    assert!(closed.is_ok(), "the connection of a subscriber that stopped reading is closed");

    // Its persistent session kept what it was sent and what was routed to it since: every
    // message is delivered after the reconnect, in order, or counted as dropped.
    let mut raw = harness.raw(None).await;
    let mut buffer = BytesMut::new();
    let connack = connack_with(&mut raw, stalled(false), &mut buffer).await;
    assert!(connack.session_present);
    let mut delivered = Vec::new();
    loop {
        let packet = match decode(&mut buffer, Some(Protocol::V311), 1 << 20) {
            Ok(Some(packet)) => packet,
            Ok(None) => match tokio::time::timeout(Duration::from_secs(1), raw.read_buf(&mut buffer)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => break,
            },
            Err(error) => panic!("undecodable: {error}"),
        };
        let Packet::Publish(publish) = packet else { continue };
        let index = u64::from_be_bytes(publish.payload[..8].try_into().expect("8 bytes"));
        delivered.push(index as usize);
        let packet_id = publish.packet_id.expect("QoS 1");
        let ack = rampart_mqtt::PubResponse { packet_id, reason: reason::SUCCESS, properties: Properties::default() };
        send(&mut raw, &Packet::PubAck(ack), Protocol::V311).await;
    }
    let dropped = harness.gateway.as_ref().expect("gateway").stats().dropped_messages as usize;
    assert_eq!(delivered, (0..delivered.len()).collect::<Vec<_>>(), "the oldest messages, in order");
    assert_eq!(delivered.len() + dropped, PUBLISHED, "delivered {} and dropped {dropped}", delivered.len());
}
