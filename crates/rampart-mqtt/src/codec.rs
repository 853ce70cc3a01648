//! The MQTT 3.1.1 / 5.0 wire codec: [`decode`] one packet from the front of a buffer, and
//! [`encode`] one packet into a buffer.
//!
//! The decoder is written for untrusted input: it refuses a packet whose declared size exceeds
//! the maximum from the fixed header alone (before the rest is buffered), validates every field
//! strictly (reserved bits, UTF-8 strings without U+0000, non-zero packet ids, QoS 3, minimal
//! variable byte integers, properties only where 5.0 allows them and without forbidden
//! duplicates, no wildcards in PUBLISH topics, at least one filter in (UN)SUBSCRIBE, no trailing
//! bytes), and never panics. Topic *filters* are only checked for being valid UTF-8: a filter
//! that breaks the wildcard rules is the gateway's to refuse per filter (SUBACK 0x8F / 0x80,
//! see [`crate::topic::valid_topic_filter`]).
//!
//! The encoder writes what the negotiated protocol can carry: for 3.1.1 it drops 5.0-only
//! fields (properties, reason codes), maps SUBACK failures to 0x80 and CONNACK reason codes to
//! 3.1.1 return codes. For 5.0 it writes only the properties the packet may carry.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::packet::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, Protocol, PubResponse, Publish, QoS, SubAck, Subscribe,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will, reason,
};

/// The largest value of a variable byte integer (and so of the remaining length).
pub const MAX_VARINT: u32 = 268_435_455;

/// Why bytes could not be decoded. Every variant means: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The declared packet size exceeds the maximum (5.0: DISCONNECT 0x95).
    #[error("packet of {size} bytes exceeds the maximum packet size")]
    PacketTooLarge { size: usize },
    /// CONNECT with a protocol level other than 4 or 5 (CONNACK 0x84 / 1, then close).
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocol { level: u8 },
    /// Bytes that are not a valid packet (5.0: 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A well-formed packet that breaks the protocol (5.0: 0x82).
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
}

impl DecodeError {
    /// The 5.0 reason code to send in DISCONNECT (or CONNACK) for this error.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
            DecodeError::ProtocolError(_) => reason::PROTOCOL_ERROR,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field does not fit its wire type or the protocol (string > 65535 bytes, packet over
    /// 268,435,455 bytes, a QoS > 0 PUBLISH without packet id, AUTH in 3.1.1…).
    #[error("cannot encode: {0}")]
    Invalid(&'static str),
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decode one packet from the front of `buf`.
///
/// `protocol` is `None` before CONNECT: then only a CONNECT is acceptable (anything else is a
/// protocol error, reported from the first byte) and its protocol level selects 3.1.1 (4) or
/// 5.0 (5). Returns `Ok(None)` without consuming anything when more bytes are needed, and
/// consumes exactly one packet when it returns one. `max_packet_size` bounds the whole packet
/// (fixed header included); a larger declared size is refused as soon as the fixed header is
/// complete. On an error the connection must be closed; the buffer state is then unspecified.
pub fn decode(
    buf: &mut BytesMut,
    protocol: Option<Protocol>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = first >> 4;
    if protocol.is_none() && packet_type != 1 {
        return Err(DecodeError::ProtocolError("the first packet must be CONNECT"));
    }
    let mut remaining: usize = 0;
    let mut header_len = 1;
    let mut shift = 0;
    loop {
        let Some(&byte) = buf.get(header_len) else {
            return Ok(None);
        };
        header_len += 1;
        remaining |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            if byte == 0 && header_len > 2 {
                return Err(DecodeError::Malformed("remaining length not minimally encoded"));
            }
            break;
        }
        shift += 7;
        if header_len == 5 {
            return Err(DecodeError::Malformed("remaining length longer than 4 bytes"));
        }
    }
    let size = header_len + remaining;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge { size });
    }
    if buf.len() < size {
        // No `reserve` here: a slow sender must not make us allocate its declared size up
        // front; the driver's reads grow the buffer as bytes actually arrive.
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    frame.advance(header_len);
    let flags = first & 0x0f;
    let mut reader = Reader { bytes: frame };
    let packet = match protocol {
        None => decode_connect(&mut reader, flags)?,
        Some(protocol) => decode_body(&mut reader, packet_type, flags, protocol)?,
    };
    if reader.bytes.has_remaining() {
        return Err(DecodeError::Malformed("trailing bytes after the packet"));
    }
    Ok(Some(packet))
}

fn decode_body(reader: &mut Reader, packet_type: u8, flags: u8, protocol: Protocol) -> Result<Packet, DecodeError> {
    let v5 = protocol == Protocol::V5;
    let expect_flags = |expected: u8| {
        if flags == expected { Ok(()) } else { Err(DecodeError::Malformed("reserved flag bits set")) }
    };
    match packet_type {
        1 => {
            let connect = decode_connect(reader, flags)?;
            Ok(connect)
        }
        2 => {
            expect_flags(0)?;
            let ack_flags = reader.u8()?;
            if ack_flags & 0xfe != 0 {
                return Err(DecodeError::Malformed("reserved CONNACK flag bits set"));
            }
            let code = reader.u8()?;
            let properties = if v5 { reader.properties(Ctx::ConnAck)? } else { Properties::default() };
            Ok(Packet::ConnAck(ConnAck { session_present: ack_flags & 1 == 1, code, properties }))
        }
        3 => decode_publish(reader, flags, v5).map(Packet::Publish),
        4 => {
            expect_flags(0)?;
            decode_response(reader, v5).map(Packet::PubAck)
        }
        5 => {
            expect_flags(0)?;
            decode_response(reader, v5).map(Packet::PubRec)
        }
        6 => {
            expect_flags(2)?;
            decode_response(reader, v5).map(Packet::PubRel)
        }
        7 => {
            expect_flags(0)?;
            decode_response(reader, v5).map(Packet::PubComp)
        }
        8 => {
            expect_flags(2)?;
            let packet_id = reader.packet_id()?;
            let properties = if v5 { reader.properties(Ctx::Subscribe)? } else { Properties::default() };
            let mut filters = Vec::new();
            while reader.bytes.has_remaining() {
                let filter = reader.string()?;
                let options = reader.u8()?;
                let qos = QoS::from_u8(options & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
                let options = if v5 {
                    if options & 0xc0 != 0 {
                        return Err(DecodeError::Malformed("reserved subscription option bits"));
                    }
                    let retain_handling = (options >> 4) & 0x03;
                    if retain_handling == 3 {
                        return Err(DecodeError::ProtocolError("retain handling 3"));
                    }
                    SubscriptionOptions {
                        qos,
                        no_local: options & 0x04 != 0,
                        retain_as_published: options & 0x08 != 0,
                        retain_handling,
                    }
                } else {
                    if options & 0xfc != 0 {
                        return Err(DecodeError::Malformed("reserved subscription option bits"));
                    }
                    SubscriptionOptions { qos, no_local: false, retain_as_published: false, retain_handling: 0 }
                };
                filters.push((filter, options));
            }
            if filters.is_empty() {
                return Err(DecodeError::ProtocolError("SUBSCRIBE without a topic filter"));
            }
            Ok(Packet::Subscribe(Subscribe { packet_id, filters, properties }))
        }
        9 => {
            expect_flags(0)?;
            let packet_id = reader.packet_id()?;
            let properties = if v5 { reader.properties(Ctx::SubAck)? } else { Properties::default() };
            let reasons = reader.rest().to_vec();
            if reasons.is_empty() {
                return Err(DecodeError::ProtocolError("SUBACK without a reason code"));
            }
            Ok(Packet::SubAck(SubAck { packet_id, reasons, properties }))
        }
        10 => {
            expect_flags(2)?;
            let packet_id = reader.packet_id()?;
            let properties = if v5 { reader.properties(Ctx::Unsubscribe)? } else { Properties::default() };
            let mut filters = Vec::new();
            while reader.bytes.has_remaining() {
                filters.push(reader.string()?);
            }
            if filters.is_empty() {
                return Err(DecodeError::ProtocolError("UNSUBSCRIBE without a topic filter"));
            }
            Ok(Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties }))
        }
        11 => {
            expect_flags(0)?;
            let packet_id = reader.packet_id()?;
            let (properties, reasons) = if v5 {
                let properties = reader.properties(Ctx::UnsubAck)?;
                let reasons = reader.rest().to_vec();
                if reasons.is_empty() {
                    return Err(DecodeError::ProtocolError("UNSUBACK without a reason code"));
                }
                (properties, reasons)
            } else {
                (Properties::default(), Vec::new())
            };
            Ok(Packet::UnsubAck(UnsubAck { packet_id, reasons, properties }))
        }
        12 => {
            expect_flags(0)?;
            Ok(Packet::PingReq)
        }
        13 => {
            expect_flags(0)?;
            Ok(Packet::PingResp)
        }
        14 => {
            expect_flags(0)?;
            let (reason, properties) = if v5 {
                reader.reason_and_properties(Ctx::Disconnect)?
            } else {
                (reason::SUCCESS, Properties::default())
            };
            Ok(Packet::Disconnect(Disconnect { reason, properties }))
        }
        15 if v5 => {
            expect_flags(0)?;
            let (reason, properties) = reader.reason_and_properties(Ctx::Auth)?;
            if !matches!(reason, 0x00 | 0x18 | 0x19) {
                return Err(DecodeError::ProtocolError("invalid AUTH reason code"));
            }
            Ok(Packet::Auth(Auth { reason, properties }))
        }
        _ => Err(DecodeError::Malformed("reserved packet type")),
    }
}

fn decode_connect(reader: &mut Reader, flags: u8) -> Result<Packet, DecodeError> {
    if flags != 0 {
        return Err(DecodeError::Malformed("reserved flag bits set"));
    }
    let name = reader.binary()?;
    let level = reader.u8()?;
    let protocol = match level {
        4 => Protocol::V311,
        5 => Protocol::V5,
        _ => return Err(DecodeError::UnsupportedProtocol { level }),
    };
    if name.as_ref() != b"MQTT" {
        return Err(DecodeError::ProtocolError("protocol name is not MQTT"));
    }
    let v5 = protocol == Protocol::V5;
    let connect_flags = reader.u8()?;
    if connect_flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("reserved CONNECT flag set"));
    }
    let clean_start = connect_flags & 0x02 != 0;
    let has_will = connect_flags & 0x04 != 0;
    let will_qos = (connect_flags >> 3) & 0x03;
    let will_retain = connect_flags & 0x20 != 0;
    let has_password = connect_flags & 0x40 != 0;
    let has_username = connect_flags & 0x80 != 0;
    if !has_will && (will_qos != 0 || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain without a will"));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::Malformed("will QoS 3"))?;
    if !v5 && has_password && !has_username {
        return Err(DecodeError::Malformed("password without user name"));
    }
    let keep_alive = reader.u16()?;
    let properties = if v5 { reader.properties(Ctx::Connect)? } else { Properties::default() };
    let client_id = reader.string()?;
    let will = if has_will {
        let will_properties = if v5 { reader.properties(Ctx::Will)? } else { Properties::default() };
        let topic = reader.string()?;
        if !crate::topic::valid_topic_name(&topic) {
            return Err(DecodeError::ProtocolError("invalid will topic"));
        }
        let payload = reader.binary()?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties: will_properties })
    } else {
        None
    };
    let username = if has_username { Some(reader.string()?) } else { None };
    let password = if has_password { Some(reader.binary()?) } else { None };
    Ok(Packet::Connect(Box::new(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })))
}

fn decode_publish(reader: &mut Reader, flags: u8, v5: bool) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH QoS 3"))?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
    }
    let topic = reader.string()?;
    if topic.contains(['+', '#']) {
        return Err(DecodeError::ProtocolError("wildcard in a PUBLISH topic name"));
    }
    if topic.is_empty() && !v5 {
        return Err(DecodeError::ProtocolError("empty PUBLISH topic name"));
    }
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => Some(reader.packet_id()?),
    };
    let properties = if v5 { reader.properties(Ctx::Publish)? } else { Properties::default() };
    if v5 && topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::ProtocolError("empty topic name without a topic alias"));
    }
    let payload = reader.rest();
    Ok(Publish { dup, qos, retain, topic, packet_id, payload, properties })
}

fn decode_response(reader: &mut Reader, v5: bool) -> Result<PubResponse, DecodeError> {
    let packet_id = reader.packet_id()?;
    let (reason, properties) =
        if v5 { reader.reason_and_properties(Ctx::PubResponse)? } else { (reason::SUCCESS, Properties::default()) };
    Ok(PubResponse { packet_id, reason, properties })
}

/// The packet (or will) a property list belongs to: decides which properties are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    PubResponse,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Ctx {
    /// Whether property `id` may appear here (MQTT 5.0 §2.2.2.2).
    fn allows(self, id: u8) -> bool {
        use Ctx::*;
        match id {
            0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(self, Publish | Will),
            0x0B => matches!(self, Publish | Subscribe),
            0x11 => matches!(self, Connect | ConnAck | Disconnect),
            0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => self == ConnAck,
            0x15 | 0x16 => matches!(self, Connect | ConnAck | Auth),
            0x17 | 0x19 => self == Connect,
            0x18 => self == Will,
            0x1C => matches!(self, ConnAck | Disconnect),
            0x1F => !matches!(self, Connect | Will | Publish | Subscribe | Unsubscribe),
            0x21 | 0x22 | 0x27 => matches!(self, Connect | ConnAck),
            0x23 => self == Publish,
            0x26 => true,
            _ => false,
        }
    }
}

struct Reader {
    bytes: Bytes,
}

impl Reader {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.bytes.remaining() < 1 {
            return Err(DecodeError::Malformed("packet too short"));
        }
        Ok(self.bytes.get_u8())
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.bytes.remaining() < 2 {
            return Err(DecodeError::Malformed("packet too short"));
        }
        Ok(self.bytes.get_u16())
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.bytes.remaining() < 4 {
            return Err(DecodeError::Malformed("packet too short"));
        }
        Ok(self.bytes.get_u32())
    }

    fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for index in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return Err(DecodeError::Malformed("integer not minimally encoded"));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("variable byte integer longer than 4 bytes"))
    }

    fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.bytes.remaining() < len {
            return Err(DecodeError::Malformed("length exceeds the packet"));
        }
        Ok(self.bytes.split_to(len))
    }

    fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::Malformed("invalid UTF-8"))?;
        if text.contains('\0') {
            return Err(DecodeError::Malformed("U+0000 in a string"));
        }
        Ok(text.to_owned())
    }

    fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ProtocolError("packet identifier 0")),
            id => Ok(id),
        }
    }

    fn rest(&mut self) -> Bytes {
        let len = self.bytes.remaining();
        self.bytes.split_to(len)
    }

    /// Reason code and properties of packets where both may be omitted (5.0 PUBACK & co,
    /// DISCONNECT, AUTH).
    fn reason_and_properties(&mut self, ctx: Ctx) -> Result<(u8, Properties), DecodeError> {
        if !self.bytes.has_remaining() {
            return Ok((reason::SUCCESS, Properties::default()));
        }
        let code = self.u8()?;
        if !self.bytes.has_remaining() {
            return Ok((code, Properties::default()));
        }
        Ok((code, self.properties(ctx)?))
    }

    fn properties(&mut self, ctx: Ctx) -> Result<Properties, DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("property length"))?;
        let mut inner = Reader { bytes: self.take(len)? };
        let mut props = Properties::default();
        while inner.bytes.has_remaining() {
            let id = inner.varint()?;
            let id = u8::try_from(id).map_err(|_| DecodeError::Malformed("unknown property"))?;
            if !ctx.allows(id) {
                return Err(DecodeError::ProtocolError("property not allowed in this packet"));
            }
            inner.property(id, ctx, &mut props)?;
        }
        Ok(props)
    }

    fn property(&mut self, id: u8, ctx: Ctx, props: &mut Properties) -> Result<(), DecodeError> {
        fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
            if slot.is_some() {
                return Err(DecodeError::ProtocolError("duplicate property"));
            }
            *slot = Some(value);
            Ok(())
        }
        fn flag(value: u8) -> Result<u8, DecodeError> {
            if value > 1 {
                return Err(DecodeError::ProtocolError("property value must be 0 or 1"));
            }
            Ok(value)
        }
        match id {
            0x01 => once(&mut props.payload_format_indicator, flag(self.u8()?)?),
            0x02 => once(&mut props.message_expiry_interval, self.u32()?),
            0x03 => once(&mut props.content_type, self.string()?),
            0x08 => {
                let topic = self.string()?;
                if !crate::topic::valid_topic_name(&topic) {
                    return Err(DecodeError::ProtocolError("invalid response topic"));
                }
                once(&mut props.response_topic, topic)
            }
            0x09 => once(&mut props.correlation_data, self.binary()?),
            0x0B => {
                let value = self.varint()?;
                if value == 0 {
                    return Err(DecodeError::ProtocolError("subscription identifier 0"));
                }
                if ctx == Ctx::Subscribe && !props.subscription_identifiers.is_empty() {
                    return Err(DecodeError::ProtocolError("duplicate property"));
                }
                props.subscription_identifiers.push(value);
                Ok(())
            }
            0x11 => once(&mut props.session_expiry_interval, self.u32()?),
            0x12 => once(&mut props.assigned_client_identifier, self.string()?),
            0x13 => once(&mut props.server_keep_alive, self.u16()?),
            0x15 => once(&mut props.authentication_method, self.string()?),
            0x16 => once(&mut props.authentication_data, self.binary()?),
            0x17 => once(&mut props.request_problem_information, flag(self.u8()?)?),
            0x18 => once(&mut props.will_delay_interval, self.u32()?),
            0x19 => once(&mut props.request_response_information, flag(self.u8()?)?),
            0x1A => once(&mut props.response_information, self.string()?),
            0x1C => once(&mut props.server_reference, self.string()?),
            0x1F => once(&mut props.reason_string, self.string()?),
            0x21 => {
                let value = self.u16()?;
                if value == 0 {
                    return Err(DecodeError::ProtocolError("receive maximum 0"));
                }
                once(&mut props.receive_maximum, value)
            }
            0x22 => once(&mut props.topic_alias_maximum, self.u16()?),
            0x23 => once(&mut props.topic_alias, self.u16()?),
            0x24 => once(&mut props.maximum_qos, flag(self.u8()?)?),
            0x25 => once(&mut props.retain_available, flag(self.u8()?)?),
            0x26 => {
                let key = self.string()?;
                let value = self.string()?;
                props.user_properties.push((key, value));
                Ok(())
            }
            0x27 => {
                let value = self.u32()?;
                if value == 0 {
                    return Err(DecodeError::ProtocolError("maximum packet size 0"));
                }
                once(&mut props.maximum_packet_size, value)
            }
            0x28 => once(&mut props.wildcard_subscription_available, flag(self.u8()?)?),
            0x29 => once(&mut props.subscription_identifier_available, flag(self.u8()?)?),
            0x2A => once(&mut props.shared_subscription_available, flag(self.u8()?)?),
            _ => Err(DecodeError::Malformed("unknown property")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Append the encoding of `packet` for `protocol` to `out`. On an error nothing is appended.
pub fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut) -> Result<(), EncodeError> {
    let mut counter = Counter(0);
    let first = write_body(packet, protocol, &mut counter)?;
    let body_len = counter.0;
    let remaining = u32::try_from(body_len).map_err(|_| EncodeError::Invalid("packet too large"))?;
    if remaining > MAX_VARINT {
        return Err(EncodeError::Invalid("packet too large"));
    }
    out.reserve(1 + varint_len(remaining) + body_len);
    out.put_u8(first);
    put_varint(out, remaining);
    write_body(packet, protocol, out)?;
    Ok(())
}

/// The number of bytes [`encode`] writes for `packet` (fixed header included); `usize::MAX`
/// when the packet cannot be encoded. Used for the client's Maximum Packet Size.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let mut counter = Counter(0);
    match write_body(packet, protocol, &mut counter) {
        Ok(_) => match u32::try_from(counter.0) {
            Ok(remaining) if remaining <= MAX_VARINT => 1 + varint_len(remaining) + counter.0,
            _ => usize::MAX,
        },
        Err(_) => usize::MAX,
    }
}

/// [`encoded_len`] of a PUBLISH, without building a [`Packet`] around it.
pub fn encoded_publish_len(publish: &Publish, protocol: Protocol) -> usize {
    let mut counter = Counter(0);
    match write_publish(publish, protocol == Protocol::V5, &mut counter) {
        Ok(_) => match u32::try_from(counter.0) {
            Ok(remaining) if remaining <= MAX_VARINT => 1 + varint_len(remaining) + counter.0,
            _ => usize::MAX,
        },
        Err(_) => usize::MAX,
    }
}

/// Where the encoder writes: the output buffer, or a byte counter for sizes.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn varint_bytes(mut value: u32) -> ([u8; 4], usize) {
    let mut bytes = [0u8; 4];
    let mut len = 0;
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        if let Some(slot) = bytes.get_mut(len) {
            *slot = byte;
        }
        len += 1;
        if value == 0 || len == 4 {
            return (bytes, len);
        }
    }
}

fn put_varint(sink: &mut impl Sink, value: u32) {
    let (bytes, len) = varint_bytes(value);
    sink.put(bytes.get(..len).unwrap_or(&bytes));
}

fn put_u16(sink: &mut impl Sink, value: u16) {
    sink.put(&value.to_be_bytes());
}

fn put_u32(sink: &mut impl Sink, value: u32) {
    sink.put(&value.to_be_bytes());
}

fn put_binary(sink: &mut impl Sink, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::Invalid("field too long"))?;
    put_u16(sink, len);
    sink.put(bytes);
    Ok(())
}

fn put_string(sink: &mut impl Sink, text: &str) -> Result<(), EncodeError> {
    put_binary(sink, text.as_bytes())
}

fn packet_id_of(publish: &Publish) -> Result<Option<u16>, EncodeError> {
    match (publish.qos, publish.packet_id) {
        (QoS::AtMostOnce, _) => Ok(None),
        (_, Some(id)) if id != 0 => Ok(Some(id)),
        _ => Err(EncodeError::Invalid("QoS > 0 PUBLISH without a packet identifier")),
    }
}

/// Write the variable header and payload; returns the fixed header's first byte.
fn write_body(packet: &Packet, protocol: Protocol, sink: &mut impl Sink) -> Result<u8, EncodeError> {
    let v5 = protocol == Protocol::V5;
    match packet {
        Packet::Connect(connect) => {
            write_connect(connect, sink)?;
            Ok(0x10)
        }
        Packet::ConnAck(connack) => {
            sink.put(&[u8::from(connack.session_present)]);
            if v5 {
                sink.put(&[connack.code]);
                write_properties(&connack.properties, Ctx::ConnAck, sink)?;
            } else {
                sink.put(&[v3_connack_code(connack.code)]);
            }
            Ok(0x20)
        }
        Packet::Publish(publish) => write_publish(publish, v5, sink),
        Packet::PubAck(response) => write_response(response, v5, sink).map(|()| 0x40),
        Packet::PubRec(response) => write_response(response, v5, sink).map(|()| 0x50),
        Packet::PubRel(response) => write_response(response, v5, sink).map(|()| 0x62),
        Packet::PubComp(response) => write_response(response, v5, sink).map(|()| 0x70),
        Packet::Subscribe(subscribe) => {
            put_u16(sink, subscribe.packet_id);
            if v5 {
                write_properties(&subscribe.properties, Ctx::Subscribe, sink)?;
            }
            for (filter, options) in &subscribe.filters {
                put_string(sink, filter)?;
                let mut byte = options.qos as u8;
                if v5 {
                    byte |= u8::from(options.no_local) << 2;
                    byte |= u8::from(options.retain_as_published) << 3;
                    byte |= (options.retain_handling.min(2)) << 4;
                }
                sink.put(&[byte]);
            }
            Ok(0x82)
        }
        Packet::SubAck(suback) => {
            put_u16(sink, suback.packet_id);
            if v5 {
                write_properties(&suback.properties, Ctx::SubAck, sink)?;
                sink.put(&suback.reasons);
            } else {
                for code in &suback.reasons {
                    let code = if *code <= 2 { *code } else { reason::V3_SUBACK_FAILURE };
                    sink.put(&[code]);
                }
            }
            Ok(0x90)
        }
        Packet::Unsubscribe(unsubscribe) => {
            put_u16(sink, unsubscribe.packet_id);
            if v5 {
                write_properties(&unsubscribe.properties, Ctx::Unsubscribe, sink)?;
            }
            for filter in &unsubscribe.filters {
                put_string(sink, filter)?;
            }
            Ok(0xa2)
        }
        Packet::UnsubAck(unsuback) => {
            put_u16(sink, unsuback.packet_id);
            if v5 {
                write_properties(&unsuback.properties, Ctx::UnsubAck, sink)?;
                sink.put(&unsuback.reasons);
            }
            Ok(0xb0)
        }
        Packet::PingReq => Ok(0xc0),
        Packet::PingResp => Ok(0xd0),
        Packet::Disconnect(disconnect) => {
            if v5 {
                // Always the long form (reason code and property length), though the spec
                // allows dropping both: some clients (rumqttc 0.25) cannot read the short forms.
                sink.put(&[disconnect.reason]);
                write_properties(&disconnect.properties, Ctx::Disconnect, sink)?;
            }
            Ok(0xe0)
        }
        Packet::Auth(auth) => {
            if !v5 {
                return Err(EncodeError::Invalid("AUTH does not exist in MQTT 3.1.1"));
            }
            write_reason_and_properties(auth.reason, &auth.properties, Ctx::Auth, sink)?;
            Ok(0xf0)
        }
    }
}

fn write_publish(publish: &Publish, v5: bool, sink: &mut impl Sink) -> Result<u8, EncodeError> {
    let packet_id = packet_id_of(publish)?;
    put_string(sink, &publish.topic)?;
    if let Some(id) = packet_id {
        put_u16(sink, id);
    }
    if v5 {
        write_properties(&publish.properties, Ctx::Publish, sink)?;
    }
    sink.put(&publish.payload);
    let dup = publish.dup && publish.qos != QoS::AtMostOnce;
    Ok(0x30 | (u8::from(dup) << 3) | ((publish.qos as u8) << 1) | u8::from(publish.retain))
}

fn write_connect(connect: &Connect, sink: &mut impl Sink) -> Result<(), EncodeError> {
    let v5 = connect.protocol == Protocol::V5;
    put_string(sink, "MQTT")?;
    sink.put(&[if v5 { 5 } else { 4 }]);
    let mut flags = u8::from(connect.clean_start) << 1;
    if let Some(will) = &connect.will {
        flags |= 0x04 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    if connect.password.is_some() {
        flags |= 0x40;
    }
    if connect.username.is_some() {
        flags |= 0x80;
    }
    if !v5 && connect.password.is_some() && connect.username.is_none() {
        return Err(EncodeError::Invalid("3.1.1 password without user name"));
    }
    sink.put(&[flags]);
    put_u16(sink, connect.keep_alive);
    if v5 {
        write_properties(&connect.properties, Ctx::Connect, sink)?;
    }
    put_string(sink, &connect.client_id)?;
    if let Some(will) = &connect.will {
        if v5 {
            write_properties(&will.properties, Ctx::Will, sink)?;
        }
        put_string(sink, &will.topic)?;
        put_binary(sink, &will.payload)?;
    }
    if let Some(username) = &connect.username {
        put_string(sink, username)?;
    }
    if let Some(password) = &connect.password {
        put_binary(sink, password)?;
    }
    Ok(())
}

fn write_response(response: &PubResponse, v5: bool, sink: &mut impl Sink) -> Result<(), EncodeError> {
    put_u16(sink, response.packet_id);
    if v5 {
        write_reason_and_properties(response.reason, &response.properties, Ctx::PubResponse, sink)?;
    }
    Ok(())
}

fn write_reason_and_properties(
    code: u8,
    properties: &Properties,
    ctx: Ctx,
    sink: &mut impl Sink,
) -> Result<(), EncodeError> {
    let mut counter = Counter(0);
    write_property_list(properties, ctx, &mut counter)?;
    if counter.0 == 0 {
        if code != reason::SUCCESS {
            sink.put(&[code]);
        }
        return Ok(());
    }
    sink.put(&[code]);
    write_properties(properties, ctx, sink)
}

/// A 5.0 property list: its length, then the properties `ctx` allows, in identifier order.
fn write_properties(properties: &Properties, ctx: Ctx, sink: &mut impl Sink) -> Result<(), EncodeError> {
    let mut counter = Counter(0);
    write_property_list(properties, ctx, &mut counter)?;
    let len = u32::try_from(counter.0)
        .ok()
        .filter(|len| *len <= MAX_VARINT)
        .ok_or(EncodeError::Invalid("properties too long"))?;
    put_varint(sink, len);
    write_property_list(properties, ctx, sink)
}

fn write_property_list(p: &Properties, ctx: Ctx, sink: &mut impl Sink) -> Result<(), EncodeError> {
    fn byte(sink: &mut impl Sink, ctx: Ctx, id: u8, value: Option<u8>) {
        if let Some(value) = value.filter(|_| ctx.allows(id)) {
            sink.put(&[id, value]);
        }
    }
    fn two(sink: &mut impl Sink, ctx: Ctx, id: u8, value: Option<u16>) {
        if let Some(value) = value.filter(|_| ctx.allows(id)) {
            sink.put(&[id]);
            put_u16(sink, value);
        }
    }
    fn four(sink: &mut impl Sink, ctx: Ctx, id: u8, value: Option<u32>) {
        if let Some(value) = value.filter(|_| ctx.allows(id)) {
            sink.put(&[id]);
            put_u32(sink, value);
        }
    }
    fn text(sink: &mut impl Sink, ctx: Ctx, id: u8, value: &Option<String>) -> Result<(), EncodeError> {
        match value {
            Some(value) if ctx.allows(id) => {
                sink.put(&[id]);
                put_string(sink, value)
            }
            _ => Ok(()),
        }
    }
    fn binary(sink: &mut impl Sink, ctx: Ctx, id: u8, value: &Option<Bytes>) -> Result<(), EncodeError> {
        match value {
            Some(value) if ctx.allows(id) => {
                sink.put(&[id]);
                put_binary(sink, value)
            }
            _ => Ok(()),
        }
    }
    byte(sink, ctx, 0x01, p.payload_format_indicator);
    four(sink, ctx, 0x02, p.message_expiry_interval);
    text(sink, ctx, 0x03, &p.content_type)?;
    text(sink, ctx, 0x08, &p.response_topic)?;
    binary(sink, ctx, 0x09, &p.correlation_data)?;
    if ctx.allows(0x0B) {
        let limit = if ctx == Ctx::Subscribe { 1 } else { usize::MAX };
        for id in p.subscription_identifiers.iter().take(limit) {
            if *id == 0 || *id > MAX_VARINT {
                return Err(EncodeError::Invalid("subscription identifier out of range"));
            }
            sink.put(&[0x0B]);
            put_varint(sink, *id);
        }
    }
    four(sink, ctx, 0x11, p.session_expiry_interval);
    text(sink, ctx, 0x12, &p.assigned_client_identifier)?;
    two(sink, ctx, 0x13, p.server_keep_alive);
    text(sink, ctx, 0x15, &p.authentication_method)?;
    binary(sink, ctx, 0x16, &p.authentication_data)?;
    byte(sink, ctx, 0x17, p.request_problem_information);
    four(sink, ctx, 0x18, p.will_delay_interval);
    byte(sink, ctx, 0x19, p.request_response_information);
    text(sink, ctx, 0x1A, &p.response_information)?;
    text(sink, ctx, 0x1C, &p.server_reference)?;
    text(sink, ctx, 0x1F, &p.reason_string)?;
    two(sink, ctx, 0x21, p.receive_maximum);
    two(sink, ctx, 0x22, p.topic_alias_maximum);
    two(sink, ctx, 0x23, p.topic_alias);
    byte(sink, ctx, 0x24, p.maximum_qos);
    byte(sink, ctx, 0x25, p.retain_available);
    for (key, value) in &p.user_properties {
        sink.put(&[0x26]);
        put_string(sink, key)?;
        put_string(sink, value)?;
    }
    four(sink, ctx, 0x27, p.maximum_packet_size);
    byte(sink, ctx, 0x28, p.wildcard_subscription_available);
    byte(sink, ctx, 0x29, p.subscription_identifier_available);
    byte(sink, ctx, 0x2A, p.shared_subscription_available);
    Ok(())
}

/// A 5.0 CONNACK reason code as a 3.1.1 return code (3.1.1 codes pass through).
fn v3_connack_code(code: u8) -> u8 {
    match code {
        0..=5 => code,
        reason::UNSUPPORTED_PROTOCOL_VERSION => reason::V3_UNACCEPTABLE_PROTOCOL,
        reason::CLIENT_IDENTIFIER_NOT_VALID => reason::V3_IDENTIFIER_REJECTED,
        reason::BAD_USERNAME_OR_PASSWORD | 0x8C => reason::V3_BAD_USERNAME_OR_PASSWORD,
        reason::NOT_AUTHORIZED | reason::BANNED => reason::V3_NOT_AUTHORIZED,
        _ => reason::V3_SERVER_UNAVAILABLE,
    }
}

#[cfg(test)]
mod tests;
