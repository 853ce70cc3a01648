//! Codec tests: known byte vectors (the specs and real clients), a table of refused inputs,
//! round trips of every packet type in both protocols, and property tests.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

const MAX: usize = 256 * 1024;

fn hex(text: &str) -> Vec<u8> {
    let clean: String = text.split_whitespace().collect();
    (0..clean.len()).step_by(2).map(|i| u8::from_str_radix(&clean[i..i + 2], 16).unwrap()).collect()
}

fn decode_all(bytes: &[u8], protocol: Option<Protocol>) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, protocol, MAX)?;
    if packet.is_some() {
        assert!(buf.is_empty(), "decode must consume exactly one packet");
    }
    Ok(packet)
}

fn roundtrip(packet: &Packet, protocol: Protocol) -> Packet {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(packet, protocol), "encoded_len agrees with encode");
    let first = match packet {
        Packet::Connect(_) => None,
        _ => Some(protocol),
    };
    decode_all(&out, first).unwrap().unwrap()
}

/// A CONNECT, PUBLISH and DISCONNECT captured from `mosquitto_pub -V mqttv311 -i dev-1
/// -u acme/dev-1 -P secret -k 30 -t devices/dev-1/telemetry -m '{"t":1}'`.
const MOSQUITTO_V311: &str = "102500044d51545404c2001e00056465762d31000a61636d652f6465762d310006736563726574\
                              30200017646576696365732f6465762d312f74656c656d657472797b2274223a317d e000";

/// The same with `-V mqttv5 -D connect session-expiry-interval 60 -D publish user-property a b`.
const MOSQUITTO_V5: &str = "102e00044d51545405c2001e08110000003c21001400056465762d31000a61636d652f6465762d31\
                            000673656372657430280017646576696365732f6465762d312f74656c656d6574727907260001\
                            610001627b2274223a317d e000";

#[test]
fn mosquitto_pub_v311() {
    let mut buf = BytesMut::from(hex(MOSQUITTO_V311).as_slice());
    let connect = decode(&mut buf, None, MAX).unwrap().unwrap();
    let expected = Connect {
        protocol: Protocol::V311,
        clean_start: true,
        keep_alive: 30,
        client_id: "dev-1".into(),
        will: None,
        username: Some("acme/dev-1".into()),
        password: Some(Bytes::from_static(b"secret")),
        properties: Properties::default(),
    };
    assert_eq!(connect, Packet::Connect(Box::new(expected)));
    let publish = decode(&mut buf, Some(Protocol::V311), MAX).unwrap().unwrap();
    assert_eq!(
        publish,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "devices/dev-1/telemetry".into(),
            packet_id: None,
            payload: Bytes::from_static(br#"{"t":1}"#),
            properties: Properties::default(),
        })
    );
    let disconnect = decode(&mut buf, Some(Protocol::V311), MAX).unwrap().unwrap();
    assert_eq!(disconnect, Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() }));
    assert!(buf.is_empty());
    // Our encoder produces the very same bytes.
    let mut out = BytesMut::new();
    for packet in [&connect, &publish, &disconnect] {
        encode(packet, Protocol::V311, &mut out).unwrap();
    }
    assert_eq!(out.as_ref(), hex(MOSQUITTO_V311).as_slice());
}

#[test]
fn mosquitto_pub_v5() {
    let bytes = hex(MOSQUITTO_V5);
    let mut buf = BytesMut::from(bytes.as_slice());
    let Some(Packet::Connect(connect)) = decode(&mut buf, None, MAX).unwrap() else {
        panic!("not a CONNECT");
    };
    assert_eq!(connect.protocol, Protocol::V5);
    assert_eq!(connect.properties.session_expiry_interval, Some(60));
    assert_eq!(connect.properties.receive_maximum, Some(20));
    assert_eq!(connect.client_id, "dev-1");
    let Some(Packet::Publish(publish)) = decode(&mut buf, Some(Protocol::V5), MAX).unwrap() else {
        panic!("not a PUBLISH");
    };
    assert_eq!(publish.properties.user_properties, vec![("a".into(), "b".into())]);
    assert_eq!(publish.payload.as_ref(), br#"{"t":1}"#);
    let disconnect = decode(&mut buf, Some(Protocol::V5), MAX).unwrap().unwrap();
    assert_eq!(disconnect, Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() }));
    let mut out = BytesMut::new();
    encode(&Packet::Connect(connect), Protocol::V5, &mut out).unwrap();
    encode(&Packet::Publish(publish), Protocol::V5, &mut out).unwrap();
    encode(&disconnect, Protocol::V5, &mut out).unwrap();
    // The same bytes, except that our DISCONNECT spells out reason and property length.
    assert!(bytes.ends_with(&hex("e000")));
    let expected = [&bytes[..bytes.len() - 2], &hex("e0020000")[..]].concat();
    assert_eq!(out.as_ref(), expected.as_slice());
}

/// One decode case: protocol (None = before CONNECT), bytes, expected outcome.
fn check(protocol: Option<Protocol>, bytes: &str, expected: Result<Option<Packet>, DecodeError>) {
    assert_eq!(decode_all(&hex(bytes), protocol), expected, "decoding {bytes}");
}

#[test]
fn refused_inputs() {
    use DecodeError::*;
    let v3 = Some(Protocol::V311);
    let v5 = Some(Protocol::V5);
    let cases: &[(Option<Protocol>, &str, DecodeError)] = &[
        (None, "3000", ProtocolError("the first packet must be CONNECT")),
        (None, "c000", ProtocolError("the first packet must be CONNECT")),
        // Protocol levels 3 (MQIsdp) and 6.
        (None, "100e00064d5149736470030200000000", UnsupportedProtocol { level: 3 }),
        (None, "100c00044d51545406020000 0000", UnsupportedProtocol { level: 6 }),
        (None, "100c00044d51545804020000 0000", ProtocolError("protocol name is not MQTT")),
        // Reserved CONNECT flag, reserved fixed-header flags.
        (None, "100c00044d51545404030000 0000", Malformed("reserved CONNECT flag set")),
        (None, "110c00044d51545404020000 0000", Malformed("reserved flag bits set")),
        // Will QoS without will; will QoS 3; 3.1.1 password without user name.
        (None, "100c00044d51545404120000 0000", Malformed("will QoS or retain without a will")),
        (None, "100c00044d515454041e0000 0000", Malformed("will QoS 3")),
        (None, "100c00044d51545404420000 0000", Malformed("password without user name")),
        // Client id with U+0000, invalid UTF-8.
        (None, "100d00044d51545404020000 000100", Malformed("U+0000 in a string")),
        (None, "100d00044d51545404020000 0001ff", Malformed("invalid UTF-8")),
        // Trailing bytes.
        (None, "100d00044d51545404020000 000000", Malformed("trailing bytes after the packet")),
        // PUBLISH: QoS 3, DUP on QoS 0, packet id 0, wildcard, empty topic in 3.1.1.
        (v3, "36050001610001", Malformed("PUBLISH QoS 3")),
        (v3, "3803000161", Malformed("DUP set on a QoS 0 PUBLISH")),
        (v3, "32050001610000", ProtocolError("packet identifier 0")),
        (v3, "3003000123", ProtocolError("wildcard in a PUBLISH topic name")),
        (v3, "3003000161 ", Ok_()),
        (v3, "30020000", ProtocolError("empty PUBLISH topic name")),
        (v5, "3003000000", ProtocolError("empty topic name without a topic alias")),
        // Properties: not allowed here, duplicated, unknown, overrunning.
        (v5, "30070001610302 0000", Malformed("packet too short")),
        (v5, "3006000161021700", ProtocolError("property not allowed in this packet")),
        (v5, "300a00016106010101010100", ProtocolError("duplicate property")),
        (v5, "30060001610201 02", ProtocolError("property value must be 0 or 1")),
        (v5, "3005000161017f", ProtocolError("property not allowed in this packet")),
        (v5, "300400016105", Malformed("length exceeds the packet")),
        // PUBREL with wrong flags; PUBACK with packet id 0.
        (v3, "60020001", Malformed("reserved flag bits set")),
        (v3, "40020000", ProtocolError("packet identifier 0")),
        // SUBSCRIBE: wrong flags, no filter, QoS 3, reserved option bits, retain handling 3.
        (v3, "80060001000161 00", Malformed("reserved flag bits set")),
        (v3, "82020001", ProtocolError("SUBSCRIBE without a topic filter")),
        (v3, "8206000100016103", Malformed("subscription QoS 3")),
        (v3, "8206000100016104", Malformed("reserved subscription option bits")),
        (v5, "820700010000016130", ProtocolError("retain handling 3")),
        (v5, "8207000100000161c0", Malformed("reserved subscription option bits")),
        // Two subscription identifiers, identifier 0.
        (v5, "820b000104 0b010b02 00016100", ProtocolError("duplicate property")),
        (v5, "8209000102 0b00 00016100", ProtocolError("subscription identifier 0")),
        // UNSUBSCRIBE without filter; PINGREQ with a body; reserved types.
        (v3, "a2020001", ProtocolError("UNSUBSCRIBE without a topic filter")),
        (v3, "c00100", Malformed("trailing bytes after the packet")),
        (v3, "0000", Malformed("reserved packet type")),
        (v3, "f000", Malformed("reserved packet type")),
        (v5, "f00101", ProtocolError("invalid AUTH reason code")),
        // Remaining length: five bytes, not minimal.
        (v3, "30ffffffff01", Malformed("remaining length longer than 4 bytes")),
        (v3, "308000", Malformed("remaining length not minimally encoded")),
    ];
    for (protocol, bytes, error) in cases {
        if *error == Ok_() {
            assert!(matches!(decode_all(&hex(bytes), *protocol), Ok(Some(_))), "{bytes}");
            continue;
        }
        check(*protocol, bytes, Err(error.clone()));
    }
}

/// A marker in the refusal table for a case that must decode.
#[allow(non_snake_case)]
fn Ok_() -> DecodeError {
    DecodeError::Malformed("(accepted)")
}

#[test]
fn spec_vectors() {
    let v5 = Some(Protocol::V5);
    check(Some(Protocol::V311), "c000", Ok(Some(Packet::PingReq)));
    check(Some(Protocol::V311), "d000", Ok(Some(Packet::PingResp)));
    // 5.0 PUBACK with only a packet id, with a reason, with a reason and empty properties.
    let puback =
        |reason| Ok(Some(Packet::PubAck(PubResponse { packet_id: 7, reason, properties: Properties::default() })));
    check(v5, "40020007", puback(0));
    check(v5, "4003000710", puback(0x10));
    check(v5, "400400071000", puback(0x10));
    // 5.0 DISCONNECT with no body = normal disconnection; with 0x04 = with will.
    check(v5, "e000", Ok(Some(Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() }))));
    check(v5, "e00104", Ok(Some(Packet::Disconnect(Disconnect { reason: 4, properties: Properties::default() }))));
    // Encodings of the small packets.
    let encoded = |packet: Packet, protocol| {
        let mut out = BytesMut::new();
        encode(&packet, protocol, &mut out).unwrap();
        out.to_vec()
    };
    let ok_puback = Packet::PubAck(PubResponse { packet_id: 7, reason: 0, properties: Properties::default() });
    assert_eq!(encoded(ok_puback.clone(), Protocol::V5), hex("40020007"));
    assert_eq!(encoded(ok_puback, Protocol::V311), hex("40020007"));
    let denied = Packet::PubAck(PubResponse { packet_id: 7, reason: 0x87, properties: Properties::default() });
    assert_eq!(encoded(denied.clone(), Protocol::V5), hex("4003000787"));
    assert_eq!(encoded(denied, Protocol::V311), hex("40020007"));
    let pubrel = Packet::PubRel(PubResponse { packet_id: 1, reason: 0, properties: Properties::default() });
    assert_eq!(encoded(pubrel, Protocol::V311), hex("62020001"));
    // 3.1.1 SUBACK maps 5.0 failures to 0x80; CONNACK maps 5.0 codes to return codes.
    let suback =
        Packet::SubAck(SubAck { packet_id: 1, reasons: vec![0, 1, 2, 0x87, 0x8f], properties: Properties::default() });
    assert_eq!(encoded(suback, Protocol::V311), hex("9007 0001 0001 02 80 80"));
    for (code, v3) in [(0x00, 0), (0x86, 4), (0x87, 5), (0x85, 2), (0x84, 1), (0x88, 3), (4, 4)] {
        let connack = Packet::ConnAck(ConnAck { session_present: false, code, properties: Properties::default() });
        assert_eq!(encoded(connack, Protocol::V311), vec![0x20, 2, 0, v3], "code {code:#x}");
    }
    // 5.0 CONNACK with session present and no properties.
    let connack = Packet::ConnAck(ConnAck { session_present: true, code: 0x86, properties: Properties::default() });
    assert_eq!(encoded(connack, Protocol::V5), hex("2003018600"));
    assert_eq!(
        encoded(Packet::Disconnect(Disconnect { reason: 0x8d, properties: Properties::default() }), Protocol::V5),
        hex("e0028d00")
    );
    assert_eq!(
        encoded(Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() }), Protocol::V5),
        hex("e0020000")
    );
    // AUTH cannot be sent to a 3.1.1 client.
    let auth = Packet::Auth(Auth { reason: 0, properties: Properties::default() });
    assert!(encode(&auth, Protocol::V311, &mut BytesMut::new()).is_err());
}

#[test]
fn remaining_length_boundaries() {
    for (len, header) in [
        (0usize, "30"),
        (127, "307f"),
        (128, "308001"),
        (16_383, "30ff7f"),
        (16_384, "30808001"),
        (2_097_151, "30ffff7f"),
        (2_097_152, "3080808001"),
    ] {
        // A QoS 0 PUBLISH to "a" whose payload fills the remaining length.
        let Some(payload_len) = len.checked_sub(3) else {
            continue;
        };
        let packet = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "a".into(),
            packet_id: None,
            payload: Bytes::from(vec![0u8; payload_len]),
            properties: Properties::default(),
        });
        let mut out = BytesMut::new();
        encode(&packet, Protocol::V311, &mut out).unwrap();
        assert_eq!(&out[..header.len() / 2], hex(header).as_slice(), "length {len}");
        let mut buf = out.clone();
        assert_eq!(decode(&mut buf, Some(Protocol::V311), usize::MAX).unwrap(), Some(packet));
    }
}

#[test]
fn oversized_packets_are_refused_from_the_fixed_header() {
    // A header declaring 268,435,455 bytes, and nothing else: refused at once.
    let mut buf = BytesMut::from(&hex("30ffffff7f")[..]);
    assert_eq!(decode(&mut buf, Some(Protocol::V311), MAX), Err(DecodeError::PacketTooLarge { size: 268_435_460 }));
    // Before CONNECT too.
    let mut buf = BytesMut::from(&hex("10ffff03")[..]);
    assert_eq!(decode(&mut buf, None, 1000), Err(DecodeError::PacketTooLarge { size: 65_539 }));
    // The limit counts the whole packet: 2 + 100 bytes fit in 102, not in 101.
    let mut bytes = hex("3064 0001 61");
    bytes.resize(102, b'x');
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(decode(&mut buf, Some(Protocol::V311), 102), Ok(Some(_))));
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, Some(Protocol::V311), 101), Err(DecodeError::PacketTooLarge { size: 102 }));
    assert_eq!(DecodeError::PacketTooLarge { size: 1 }.reason_code(), 0x95);
}

#[test]
fn incomplete_input_is_not_consumed() {
    let bytes = hex(MOSQUITTO_V311);
    for cut in 0..0x27 {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode(&mut buf, None, MAX), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips of every packet type, in both protocols.
// ---------------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é/_-]{0,12}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}(/[a-z0-9]{0,6}){0,3}"
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    proptest::option::of(0u8..=1)
}

fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

/// Arbitrary 5.0 properties holding only what `ctx` allows (and at most one subscription
/// identifier in SUBSCRIBE).
fn properties(ctx: Ctx) -> impl Strategy<Value = Properties> {
    let a = (
        flag(),
        any::<Option<u32>>(),
        proptest::option::of(text()),
        proptest::option::of(topic_name()),
        proptest::option::of(bytes()),
        proptest::collection::vec(1u32..=MAX_VARINT, 0..3),
        any::<Option<u32>>(),
        proptest::option::of(text()),
        any::<Option<u16>>(),
        proptest::option::of(text()),
    );
    let b = (
        proptest::option::of(bytes()),
        flag(),
        any::<Option<u32>>(),
        flag(),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(1u16..),
        any::<Option<u16>>(),
        any::<Option<u16>>(),
    );
    let c = (
        flag(),
        flag(),
        proptest::collection::vec((text(), text()), 0..3),
        proptest::option::of(1u32..),
        flag(),
        flag(),
        flag(),
    );
    (a, b, c).prop_map(move |(a, b, c)| {
        let allow = |id| ctx.allows(id);
        let keep = |id: u8, ids: Vec<u32>| match (allow(id), ctx) {
            (false, _) => Vec::new(),
            (true, Ctx::Subscribe) => ids.into_iter().take(1).collect(),
            (true, _) => ids,
        };
        Properties {
            payload_format_indicator: a.0.filter(|_| allow(0x01)),
            message_expiry_interval: a.1.filter(|_| allow(0x02)),
            content_type: a.2.filter(|_| allow(0x03)),
            response_topic: a.3.filter(|_| allow(0x08)),
            correlation_data: a.4.filter(|_| allow(0x09)),
            subscription_identifiers: keep(0x0B, a.5),
            session_expiry_interval: a.6.filter(|_| allow(0x11)),
            assigned_client_identifier: a.7.filter(|_| allow(0x12)),
            server_keep_alive: a.8.filter(|_| allow(0x13)),
            authentication_method: a.9.filter(|_| allow(0x15)),
            authentication_data: b.0.filter(|_| allow(0x16)),
            request_problem_information: b.1.filter(|_| allow(0x17)),
            will_delay_interval: b.2.filter(|_| allow(0x18)),
            request_response_information: b.3.filter(|_| allow(0x19)),
            response_information: b.4.filter(|_| allow(0x1A)),
            server_reference: b.5.filter(|_| allow(0x1C)),
            reason_string: b.6.filter(|_| allow(0x1F)),
            receive_maximum: b.7.filter(|_| allow(0x21)),
            topic_alias_maximum: b.8.filter(|_| allow(0x22)),
            topic_alias: b.9.filter(|_| allow(0x23)),
            maximum_qos: c.0.filter(|_| allow(0x24)),
            retain_available: c.1.filter(|_| allow(0x25)),
            user_properties: c.2,
            maximum_packet_size: c.3.filter(|_| allow(0x27)),
            wildcard_subscription_available: c.4.filter(|_| allow(0x28)),
            subscription_identifier_available: c.5.filter(|_| allow(0x29)),
            shared_subscription_available: c.6.filter(|_| allow(0x2A)),
        }
    })
}

/// Properties for `ctx` in 5.0, none in 3.1.1.
fn props(protocol: Protocol, ctx: Ctx) -> BoxedStrategy<Properties> {
    match protocol {
        Protocol::V5 => properties(ctx).boxed(),
        Protocol::V311 => Just(Properties::default()).boxed(),
    }
}

fn reason_code(protocol: Protocol) -> BoxedStrategy<u8> {
    match protocol {
        Protocol::V5 => any::<u8>().boxed(),
        Protocol::V311 => Just(0u8).boxed(),
    }
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let will = (topic_name(), bytes(), qos(), any::<bool>(), props(protocol, Ctx::Will))
        .prop_map(|(topic, payload, qos, retain, properties)| Will { topic, payload, qos, retain, properties });
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        proptest::option::of(will),
        proptest::option::of(text()),
        proptest::option::of(bytes()),
        props(protocol, Ctx::Connect),
    )
        .prop_map(move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
            // 3.1.1 allows a password only with a user name.
            let username = match (protocol, &username, &password) {
                (Protocol::V311, None, Some(_)) => Some("user".into()),
                _ => username,
            };
            Packet::Connect(Box::new(Connect {
                protocol,
                clean_start,
                keep_alive,
                client_id,
                will,
                username,
                password,
                properties,
            }))
        })
}

fn publish(protocol: Protocol) -> impl Strategy<Value = Publish> {
    (qos(), any::<bool>(), any::<bool>(), topic_name(), 1u16.., bytes(), props(protocol, Ctx::Publish)).prop_map(
        |(qos, dup, retain, topic, id, payload, properties)| Publish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic,
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
            payload,
            properties,
        },
    )
}

fn response(protocol: Protocol) -> impl Strategy<Value = PubResponse> {
    (1u16.., reason_code(protocol), props(protocol, Ctx::PubResponse))
        .prop_map(|(packet_id, reason, properties)| PubResponse { packet_id, reason, properties })
}

fn options(protocol: Protocol) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(move |(qos, nl, rap, rh)| {
        let v5 = protocol == Protocol::V5;
        SubscriptionOptions {
            qos,
            no_local: nl && v5,
            retain_as_published: rap && v5,
            retain_handling: if v5 { rh } else { 0 },
        }
    })
}

fn any_packet(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol == Protocol::V5;
    let connack_code = if v5 { any::<u8>().boxed() } else { (0u8..=5).boxed() };
    let suback_code =
        if v5 { any::<u8>().boxed() } else { prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)].boxed() };
    let unsuback_reasons =
        if v5 { proptest::collection::vec(any::<u8>(), 1..4).boxed() } else { Just(Vec::new()).boxed() };
    prop_oneof![
        connect(protocol),
        (any::<bool>(), connack_code, props(protocol, Ctx::ConnAck)).prop_map(|(session_present, code, properties)| {
            Packet::ConnAck(ConnAck { session_present, code, properties })
        }),
        publish(protocol).prop_map(Packet::Publish),
        response(protocol).prop_map(Packet::PubAck),
        response(protocol).prop_map(Packet::PubRec),
        response(protocol).prop_map(Packet::PubRel),
        response(protocol).prop_map(Packet::PubComp),
        (1u16.., proptest::collection::vec((text(), options(protocol)), 1..4), props(protocol, Ctx::Subscribe))
            .prop_map(|(packet_id, filters, properties)| Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties
            })),
        (1u16.., proptest::collection::vec(suback_code, 1..4), props(protocol, Ctx::SubAck))
            .prop_map(|(packet_id, reasons, properties)| Packet::SubAck(SubAck { packet_id, reasons, properties })),
        (1u16.., proptest::collection::vec(text(), 1..4), props(protocol, Ctx::Unsubscribe)).prop_map(
            |(packet_id, filters, properties)| Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties })
        ),
        (1u16.., unsuback_reasons, props(protocol, Ctx::UnsubAck))
            .prop_map(|(packet_id, reasons, properties)| Packet::UnsubAck(UnsubAck { packet_id, reasons, properties })),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        (reason_code(protocol), props(protocol, Ctx::Disconnect))
            .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties })),
    ]
}

fn auth() -> impl Strategy<Value = Packet> {
    (prop_oneof![Just(0u8), Just(0x18), Just(0x19)], properties(Ctx::Auth))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

fn protocol() -> impl Strategy<Value = Option<Protocol>> {
    prop_oneof![Just(None), Just(Some(Protocol::V311)), Just(Some(Protocol::V5))]
}

proptest! {
    #[test]
    fn v311_packets_round_trip(packet in any_packet(Protocol::V311)) {
        prop_assert_eq!(roundtrip(&packet, Protocol::V311), packet);
    }

    #[test]
    fn v5_packets_round_trip(packet in prop_oneof![any_packet(Protocol::V5), auth()]) {
        prop_assert_eq!(roundtrip(&packet, Protocol::V5), packet);
    }

    #[test]
    fn truncated_packets_need_more_bytes(packet in any_packet(Protocol::V5), cut in any::<prop::sample::Index>()) {
        let mut out = BytesMut::new();
        encode(&packet, Protocol::V5, &mut out).unwrap();
        let cut = cut.index(out.len());
        let first = match packet {
            Packet::Connect(_) => None,
            _ => Some(Protocol::V5),
        };
        let mut buf = BytesMut::from(&out[..cut]);
        prop_assert_eq!(decode(&mut buf, first, MAX), Ok(None));
        prop_assert_eq!(buf.len(), cut);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        protocol in protocol(),
        max in 0usize..128,
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Decode until an error or more bytes are needed; every packet must re-encode.
        while let Ok(Some(packet)) = decode(&mut buf, protocol, max) {
            let protocol = match (&packet, protocol) {
                (Packet::Connect(connect), _) => connect.protocol,
                (_, Some(protocol)) => protocol,
                (_, None) => unreachable!("only CONNECT is decoded before CONNECT"),
            };
            let mut out = BytesMut::new();
            prop_assert!(encode(&packet, protocol, &mut out).is_ok());
        }
    }

    #[test]
    fn arbitrary_packet_bodies_never_panic(
        first in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..100),
        protocol in protocol(),
    ) {
        // A correct fixed header in front of a random body reaches the body parsers.
        let mut bytes = vec![first];
        let (len, n) = varint_bytes(body.len() as u32);
        bytes.extend_from_slice(&len[..n]);
        bytes.extend_from_slice(&body);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode(&mut buf, protocol, MAX);
    }

    #[test]
    fn oversized_declared_lengths_are_refused_from_the_header(
        first in 0x30u8..0x40,
        remaining in 1000u32..=MAX_VARINT,
    ) {
        let mut bytes = vec![first];
        let (len, n) = varint_bytes(remaining);
        bytes.extend_from_slice(&len[..n]);
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(
            decode(&mut buf, Some(Protocol::V5), 999),
            Err(DecodeError::PacketTooLarge { size: 1 + n + remaining as usize })
        );
    }
}
