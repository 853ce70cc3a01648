//! The few MQTT 3.1.1 packets a load generator needs, client side only: CONNECT, PUBLISH,
//! PUBACK, SUBSCRIBE, PINGREQ and DISCONNECT out; CONNACK, PUBLISH, PUBACK, SUBACK and PINGRESP
//! in. MQTT 3.1.1 is spoken by every broker, so `rampart bench` can measure any of them with
//! the same bytes on the wire. The decoder never panics: a peer that sends garbage gets a
//! [`WireError`], and a frame larger than the caller's limit is refused from its fixed header.

use std::fmt;

/// Packet types of the fixed header (high nibble).
const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 0x90;
const PINGREQ: u8 = 0xC0;
const PINGRESP: u8 = 0xD0;
const DISCONNECT: u8 = 0xE0;

/// The largest remaining length MQTT can express (four length bytes).
const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A packet received from the broker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    ConnAck {
        session_present: bool,
        return_code: u8,
    },
    Publish {
        qos: u8,
        packet_id: Option<u16>,
        topic: String,
        payload: Vec<u8>,
    },
    PubAck {
        packet_id: u16,
    },
    SubAck {
        packet_id: u16,
        return_codes: Vec<u8>,
    },
    PingResp,
    /// Anything a publisher or subscriber at QoS ≤ 1 does not act on (PUBREC, UNSUBACK, …).
    Other {
        packet_type: u8,
    },
}

/// Why bytes from the broker could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The remaining length used more than four bytes.
    BadLength,
    /// The frame announced more bytes than the caller accepts.
    TooLarge { announced: usize, limit: usize },
    /// The frame's content did not match its type.
    Malformed(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadLength => write!(formatter, "invalid remaining length"),
            WireError::TooLarge { announced, limit } => {
                write!(formatter, "packet of {announced} bytes exceeds the limit of {limit}")
            }
            WireError::Malformed(what) => write!(formatter, "malformed packet: {what}"),
        }
    }
}

impl std::error::Error for WireError {}

/// The fields of a CONNECT that vary between connections.
pub(crate) struct Connect<'a> {
    pub client_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub keep_alive_s: u16,
    pub clean_session: bool,
}

fn put_remaining_length(out: &mut Vec<u8>, mut length: usize) {
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    put_binary(out, text.as_bytes());
}

fn put_binary(out: &mut Vec<u8>, bytes: &[u8]) {
    // MQTT strings are at most 65,535 bytes; callers pass ids, topics and credentials.
    let length = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(length)]);
}

/// Appends a CONNECT (protocol level 4, MQTT 3.1.1) with username and password.
pub(crate) fn encode_connect(out: &mut Vec<u8>, connect: &Connect<'_>) {
    let mut body = Vec::with_capacity(32 + connect.client_id.len() + connect.username.len() + connect.password.len());
    put_string(&mut body, "MQTT");
    body.push(4);
    let mut flags = 0x80 | 0x40; // username, password
    if connect.clean_session {
        flags |= 0x02;
    }
    body.push(flags);
    body.extend_from_slice(&connect.keep_alive_s.to_be_bytes());
    put_string(&mut body, connect.client_id);
    put_string(&mut body, connect.username);
    put_string(&mut body, connect.password);
    out.push(CONNECT);
    put_remaining_length(out, body.len());
    out.extend_from_slice(&body);
}

/// Appends a PUBLISH; `packet_id` is required for QoS 1 and ignored for QoS 0.
pub(crate) fn encode_publish(out: &mut Vec<u8>, topic: &str, qos: u8, packet_id: u16, payload: &[u8]) {
    let id_length = if qos > 0 { 2 } else { 0 };
    out.push(PUBLISH | (qos.min(2) << 1));
    put_remaining_length(out, 2 + topic.len() + id_length + payload.len());
    put_string(out, topic);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a PUBACK for a QoS 1 message the broker delivered.
pub(crate) fn encode_puback(out: &mut Vec<u8>, packet_id: u16) {
    out.extend_from_slice(&[PUBACK, 2]);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// Appends a SUBSCRIBE to one filter.
pub(crate) fn encode_subscribe(out: &mut Vec<u8>, packet_id: u16, filter: &str, qos: u8) {
    out.push(SUBSCRIBE);
    put_remaining_length(out, 2 + 2 + filter.len() + 1);
    out.extend_from_slice(&packet_id.to_be_bytes());
    put_string(out, filter);
    out.push(qos.min(2));
}

pub(crate) fn encode_pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[PINGREQ, 0]);
}

pub(crate) fn encode_disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[DISCONNECT, 0]);
}

/// Decodes one packet from the front of `buffer`. `Ok(None)` means more bytes are needed;
/// `Ok(Some((packet, used)))` tells how many bytes to drop from the buffer.
pub(crate) fn decode(buffer: &[u8], max_packet: usize) -> Result<Option<(Incoming, usize)>, WireError> {
    let Some(&first) = buffer.first() else {
        return Ok(None);
    };
    let mut remaining: usize = 0;
    let mut multiplier: usize = 1;
    let mut header_length = 1;
    loop {
        let Some(&byte) = buffer.get(header_length) else {
            return Ok(None);
        };
        header_length += 1;
        remaining += usize::from(byte & 0x7F) * multiplier;
        if byte & 0x80 == 0 {
            break;
        }
        if header_length > 4 {
            return Err(WireError::BadLength);
        }
        multiplier *= 128;
    }
    if remaining > MAX_REMAINING_LENGTH.min(max_packet) {
        return Err(WireError::TooLarge { announced: remaining, limit: max_packet });
    }
    let total = header_length + remaining;
    let Some(body) = buffer.get(header_length..total) else {
        return Ok(None);
    };
    let packet = decode_body(first, body)?;
    Ok(Some((packet, total)))
}

fn read_u16(body: &[u8], at: usize) -> Result<u16, WireError> {
    match body.get(at..at + 2) {
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => Err(WireError::Malformed("truncated")),
    }
}

fn decode_body(first: u8, body: &[u8]) -> Result<Incoming, WireError> {
    match first & 0xF0 {
        CONNACK => match body {
            &[flags, return_code] => Ok(Incoming::ConnAck { session_present: flags & 1 == 1, return_code }),
            _ => Err(WireError::Malformed("CONNACK length")),
        },
        PUBLISH => {
            let qos = (first >> 1) & 0x03;
            if qos == 3 {
                return Err(WireError::Malformed("PUBLISH QoS 3"));
            }
            let topic_length = usize::from(read_u16(body, 0)?);
            let topic_bytes = body.get(2..2 + topic_length).ok_or(WireError::Malformed("PUBLISH topic"))?;
            let topic = String::from_utf8(topic_bytes.to_vec()).map_err(|_| WireError::Malformed("topic not UTF-8"))?;
            let mut at = 2 + topic_length;
            let packet_id = if qos > 0 {
                let id = read_u16(body, at)?;
                at += 2;
                Some(id)
            } else {
                None
            };
            let payload = body.get(at..).ok_or(WireError::Malformed("PUBLISH payload"))?.to_vec();
            Ok(Incoming::Publish { qos, packet_id, topic, payload })
        }
        PUBACK => match body {
            &[high, low] => Ok(Incoming::PubAck { packet_id: u16::from_be_bytes([high, low]) }),
            // MQTT 5.0 brokers may add a reason code; a 3.1.1 session never sees one.
            _ => Err(WireError::Malformed("PUBACK length")),
        },
        SUBACK => {
            let packet_id = read_u16(body, 0)?;
            let return_codes = body.get(2..).unwrap_or_default().to_vec();
            if return_codes.is_empty() {
                return Err(WireError::Malformed("SUBACK without return codes"));
            }
            Ok(Incoming::SubAck { packet_id, return_codes })
        }
        PINGRESP => Ok(Incoming::PingResp),
        other => Ok(Incoming::Other { packet_type: other >> 4 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_decode(bytes: &[u8], expected: Incoming) {
        let (packet, used) = decode(bytes, 1024).expect("decodes").expect("complete");
        assert_eq!(packet, expected);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn decodes_the_packets_a_client_receives() {
        check_decode(&[0x20, 2, 0, 0], Incoming::ConnAck { session_present: false, return_code: 0 });
        check_decode(&[0x20, 2, 1, 5], Incoming::ConnAck { session_present: true, return_code: 5 });
        check_decode(&[0x40, 2, 0x12, 0x34], Incoming::PubAck { packet_id: 0x1234 });
        check_decode(&[0x90, 3, 0, 7, 0x80], Incoming::SubAck { packet_id: 7, return_codes: vec![0x80] });
        check_decode(&[0xD0, 0], Incoming::PingResp);
        check_decode(
            &[0x32, 8, 0, 3, b'a', b'/', b'b', 0, 9, b'x'],
            Incoming::Publish { qos: 1, packet_id: Some(9), topic: "a/b".into(), payload: b"x".to_vec() },
        );
        check_decode(
            &[0x30, 5, 0, 1, b't', b'h', b'i'],
            Incoming::Publish { qos: 0, packet_id: None, topic: "t".into(), payload: b"hi".to_vec() },
        );
    }

    #[test]
    fn our_publish_round_trips_through_the_decoder() {
        let payload = vec![b'p'; 300]; // a two-byte remaining length
        let mut out = Vec::new();
        encode_publish(&mut out, "devices/d1/telemetry", 1, 42, &payload);
        check_decode(
            &out,
            Incoming::Publish { qos: 1, packet_id: Some(42), topic: "devices/d1/telemetry".into(), payload },
        );
    }

    #[test]
    fn connect_has_the_3_1_1_layout() {
        let mut out = Vec::new();
        encode_connect(
            &mut out,
            &Connect { client_id: "c", username: "u", password: "p", keep_alive_s: 60, clean_session: true },
        );
        assert_eq!(out, [0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60, 0, 1, b'c', 0, 1, b'u', 0, 1, b'p']);
    }

    #[test]
    fn subscribe_and_small_packets() {
        let mut out = Vec::new();
        encode_subscribe(&mut out, 1, "a/#", 1);
        assert_eq!(out, [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'#', 1]);
        out.clear();
        encode_puback(&mut out, 513);
        encode_pingreq(&mut out);
        encode_disconnect(&mut out);
        assert_eq!(out, [0x40, 2, 2, 1, 0xC0, 0, 0xE0, 0]);
    }

    #[test]
    fn partial_input_asks_for_more() {
        let mut out = Vec::new();
        encode_publish(&mut out, "t", 1, 1, b"payload");
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut], 1024), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert_eq!(decode(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], 1024), Err(WireError::BadLength));
        assert_eq!(decode(&[0x30, 0x81, 0x08], 1024), Err(WireError::TooLarge { announced: 1025, limit: 1024 }));
        assert!(decode(&[0x20, 1, 0], 1024).is_err());
        assert!(decode(&[0x36, 2, 0, 0], 1024).is_err());
        assert!(decode(&[0x32, 3, 0, 1, b't'], 1024).is_err());
        assert!(decode(&[0x90, 2, 0, 1], 1024).is_err());
        assert!(decode(&[0x30, 2, 0, 5], 1024).is_err());
        assert_eq!(decode(&[0xB0, 2, 0, 1], 1024), Ok(Some((Incoming::Other { packet_type: 0xB }, 4))));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic sweep over short inputs: every prefix of a pseudo-random stream.
        let mut state: u32 = 0x2545_F491;
        let stream: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        for start in 0..stream.len() - 16 {
            let _ = decode(&stream[start..start + 16], 64);
        }
    }
}
