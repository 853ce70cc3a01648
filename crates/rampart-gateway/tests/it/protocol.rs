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
    harness.platform.control.publish(rampart_platform::ControlEvent::DeviceCutOff {
        tenant: "acme".into(),
        device: "revoked".into(),
        reason: rampart_platform::CutOffReason::Revoked,
    });
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

/// Sends a CONNECT and reads the CONNACK (the connection stays open).
async fn connack_for(
    stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin),
    connect: Connect,
) -> rampart_mqtt::ConnAck {
    let protocol = connect.protocol;
    send(stream, &Packet::Connect(Box::new(connect)), protocol).await;
    let mut buffer = BytesMut::new();
    loop {
        if let Ok(Some(packet)) = decode(&mut buffer, Some(protocol), 1 << 20) {
            match packet {
                Packet::ConnAck(connack) => return connack,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
        let read = tokio::time::timeout(PATIENCE, stream.read_buf(&mut buffer)).await.expect("CONNACK in time");
        assert!(read.expect("read") > 0, "closed before CONNACK");
    }
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
