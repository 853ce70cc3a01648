//! The per-connection MQTT session state machine, sans IO: it never touches a socket and never
//! reads a clock. The gateway's connection driver feeds it decoded packets and the current time
//! (`now_ms`, milliseconds on any monotonic scale the driver chooses) and carries out the
//! [`Action`]s it returns, in order.
//!
//! # How a driver uses it
//!
//! 1. Read bytes and decode the CONNECT (`codec::decode(buf, None, ..)`), authenticate it
//!    (the gateway's job), then call [`Session::accept`] with the CONNECT, the
//!    [`SessionConfig`] and, for a persistent session (`clean_start == false`) that exists,
//!    the [`SessionState`] kept from the previous connection. Send the returned [`ConnAck`]
//!    first (set `code` yourself only if you refuse; `accept` returns a success CONNACK with
//!    the 5.0 properties filled in), then carry out the returned actions (resends).
//! 2. For every decoded packet call [`Session::handle`]. For every [`Action::Publish`] with QoS
//!    1 or 2 the gateway authorises and durably stores the message and then MUST call
//!    [`Session::inbound_stored`] with the packet id and a reason code (0 = success, 0x87 not
//!    authorised, 0x99 payload format invalid, …); only then is the PUBACK / PUBREC sent.
//!    Answer [`Action::Subscribe`] / [`Action::Unsubscribe`] by sending a
//!    [`Packet::SubAck`] / [`Packet::UnsubAck`] (with 5.0 reason codes; the encoder maps
//!    them to 3.1.1 codes).
//! 3. To deliver a routed message to this client call [`Session::publish`] with an
//!    [`OutgoingMessage`] (its QoS already `min(subscription, message)`); the session
//!    allocates packet ids, respects the client's Receive Maximum and Maximum Packet Size,
//!    queues what does not fit (bounded by `max_queued`), drops expired messages, rewrites
//!    the remaining Message Expiry Interval, and sends topics by alias when the 5.0 client
//!    allows Topic Aliases.
//! 4. Arm a timer at [`Session::next_deadline`] and call [`Session::tick`] when it fires; it
//!    returns a [`Action::Close`] when the keep-alive (1.5 × the effective keep alive) ran out.
//! 5. On [`Action::Close`] send a DISCONNECT with the reason when `send` is true (it is only
//!    ever true for 5.0), publish the will when `will` is true, and close the socket. When the
//!    socket closes for any other reason (network error, takeover) the gateway decides about
//!    the will itself.
//! 6. When the connection is gone, a persistent session is kept with [`Session::into_state`];
//!    the [`SessionState`] keeps unacknowledged outgoing QoS 1/2 messages (re-sent with DUP on
//!    the next connection), the queue, and the ids of incoming QoS 2 messages awaiting PUBREL.
//!    While the client is offline, route messages into it with [`SessionState::enqueue`].
//!    Wait for outstanding stores (call `inbound_stored`) before `into_state` so that a stored
//!    QoS 2 message is remembered and not delivered twice when the client re-sends it.
//!
//! Routing, subscriptions, retained messages, wills, ACLs and storage are the gateway's job;
//! the session only keeps MQTT's per-connection bookkeeping.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;

use crate::packet::{
    ConnAck, Connect, Packet, Properties, Protocol, PubResponse, Publish, QoS, Subscribe, Unsubscribe, reason,
};

/// Server-side limits and capabilities of a session. Build it once from the gateway config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// The largest packet we accept (announced as Maximum Packet Size in a 5.0 CONNACK). The
    /// decoder must be called with the same value.
    pub max_packet_size: u32,
    /// How many incoming QoS 1/2 publishes may be unacknowledged at once (our Receive Maximum,
    /// announced in 5.0; enforced for 3.1.1 too). One more → close with 0x93.
    pub receive_maximum: u16,
    /// The highest incoming topic alias we accept (5.0; 0 = no aliases).
    pub topic_alias_maximum: u16,
    /// Cap on the keep alive, in seconds (0 = no cap). 5.0 clients asking for more (or for 0)
    /// are told the capped value in CONNACK `server_keep_alive`.
    pub max_keep_alive: u16,
    /// How many outgoing messages may wait for room in the inflight window; more are dropped
    /// and reported as [`Action::Dropped`].
    pub max_queued: usize,
    /// Outgoing inflight window for 3.1.1 clients (and 5.0 clients that send no Receive
    /// Maximum get 65535 as the spec says; this value caps that too).
    pub default_client_receive_maximum: u16,
    /// Retained messages supported (announced in 5.0; a retained PUBLISH otherwise → 0x9A).
    pub retain_available: bool,
    /// Announced in 5.0 CONNACK; the gateway enforces it per filter in SUBACK.
    pub wildcard_subscription_available: bool,
    /// Subscription identifiers supported; a SUBSCRIBE carrying one otherwise → close 0xA1.
    pub subscription_identifiers_available: bool,
    /// Announced in 5.0 CONNACK; the gateway enforces it per filter in SUBACK.
    pub shared_subscription_available: bool,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            max_packet_size: 256 * 1024,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_keep_alive: 0,
            max_queued: 1000,
            default_client_receive_maximum: 64,
            retain_available: true,
            wildcard_subscription_available: true,
            subscription_identifiers_available: true,
            shared_subscription_available: true,
        }
    }
}

/// A message the gateway routes to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub topic: String,
    pub payload: Bytes,
    /// Already `min(granted QoS, message QoS)`.
    pub qos: QoS,
    /// The RETAIN flag as it must go on the wire (retain-as-published already applied).
    pub retain: bool,
    /// 5.0 properties to forward (payload format, content type, response topic, correlation
    /// data, user properties, subscription identifiers). `message_expiry_interval` and
    /// `topic_alias` are set by the session.
    pub properties: Properties,
    /// When the message expires, on the same scale as `now_ms` (from the publisher's Message
    /// Expiry Interval); `None` = never.
    pub expires_at_ms: Option<u64>,
}

/// Why an outgoing message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue behind the inflight window was full (`max_queued`).
    QueueFull,
    /// Its Message Expiry Interval passed before it could be sent.
    Expired,
    /// Larger than the client's Maximum Packet Size (5.0).
    TooLarge,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Encode and write this packet.
    Send(Packet),
    /// An incoming PUBLISH (topic alias resolved, the alias property removed) for the gateway
    /// to authorise, store and route. For QoS 1/2 the gateway MUST later call
    /// [`Session::inbound_stored`] with its packet id.
    Publish(Publish),
    /// An incoming SUBSCRIBE for the gateway to authorise per filter and answer with SUBACK.
    Subscribe(Subscribe),
    /// An incoming UNSUBSCRIBE for the gateway to carry out and answer with UNSUBACK (5.0: one
    /// reason per filter, 0x00 or 0x11; an empty list cannot be decoded by a 5.0 client).
    Unsubscribe(Unsubscribe),
    /// An outgoing message was dropped (count it; nothing is sent).
    Dropped { topic: String, why: DropReason },
    /// Close the connection. When `send` is true (only ever for 5.0) send
    /// `DISCONNECT(reason)` first; `will` says whether the will message must be published.
    /// `reason` is also meaningful for logs on 3.1.1 (where nothing is sent).
    Close { reason: u8, send: bool, will: bool },
}

/// One unacknowledged outgoing QoS 1/2 exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Inflight {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish(Box<OutgoingMessage>),
    /// PUBREL sent, waiting for PUBCOMP.
    Release,
}

/// The part of a session that outlives a connection (persistent sessions): keep it in memory
/// between connections and hand it back to [`Session::accept`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Outgoing exchanges by packet id, in the order they were started.
    inflight: BTreeMap<u16, (u64, Inflight)>,
    /// Messages waiting for room in the inflight window.
    queue: VecDeque<OutgoingMessage>,
    /// Incoming QoS 2 packet ids that were stored and PUBREC'd, waiting for PUBREL.
    incoming_awaiting_release: HashSet<u16>,
    next_packet_id: u16,
    /// Insertion counter that orders `inflight` for resends.
    sequence: u64,
}

impl SessionState {
    /// Queue a message for an offline persistent session. Returns `false` (and keeps nothing)
    /// when the queue already holds `max_queued` messages or the message is QoS 0 (MQTT keeps
    /// only QoS 1/2 messages for offline clients).
    pub fn enqueue(&mut self, message: OutgoingMessage, max_queued: usize) -> bool {
        if message.qos == QoS::AtMostOnce || self.queue.len() >= max_queued {
            return false;
        }
        self.queue.push_back(message);
        true
    }

    /// How many outgoing messages are waiting or unacknowledged.
    pub fn pending_outgoing(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }
}

/// What the session remembers about an incoming QoS 1/2 publish the gateway is storing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storing {
    QoS1,
    QoS2,
}

/// One live connection's protocol state. See the module documentation for the driver loop.
#[derive(Debug)]
pub struct Session {
    protocol: Protocol,
    config: SessionConfig,
    state: SessionState,
    /// Effective keep alive in seconds (0 = none).
    keep_alive: u16,
    last_received_ms: u64,
    /// The client's Receive Maximum (our outgoing window).
    client_receive_maximum: u16,
    /// The client's Maximum Packet Size (what we may send), if it set one.
    client_max_packet_size: Option<u32>,
    /// Incoming QoS 1/2 publishes handed to the gateway and not yet `inbound_stored`.
    storing: HashMap<u16, Storing>,
    /// Incoming topic aliases (5.0).
    topic_aliases: HashMap<u16, String>,
    /// Outgoing topic aliases (5.0): topic → alias, at most the client's Topic Alias Maximum.
    /// The first aliases go to the first topics sent and are never reassigned: a subscriber's
    /// few busy topics are the usual case, and a stable map needs no eviction bookkeeping.
    outgoing_aliases: HashMap<String, u16>,
    /// The client's Topic Alias Maximum (5.0; 0 = send no aliases).
    client_topic_alias_maximum: u16,
    session_expiry_interval: u32,
    closed: bool,
}

impl Session {
    /// Start a session for an accepted (already authenticated) CONNECT. `resumed` is the state
    /// of the client's previous persistent session, if any; it is ignored when the CONNECT
    /// asks for a clean start. Returns the success CONNACK (5.0 properties filled in;
    /// `session_present` set when a state was resumed) and the resends to carry out after it.
    /// When the gateway assigned the client identifier (empty client id → the device id), it
    /// sets `connack.properties.assigned_client_identifier` itself (5.0).
    pub fn accept(
        connect: &Connect,
        config: SessionConfig,
        resumed: Option<SessionState>,
        now_ms: u64,
    ) -> (Session, ConnAck, Vec<Action>) {
        let protocol = connect.protocol;
        let resumed = if connect.clean_start { None } else { resumed };
        let session_present = resumed.is_some();
        let mut state = resumed.unwrap_or_default();
        if state.next_packet_id == 0 {
            state.next_packet_id = 1;
        }

        let mut properties = Properties::default();
        let mut keep_alive = connect.keep_alive;
        if config.max_keep_alive > 0
            && protocol == Protocol::V5
            && (keep_alive == 0 || keep_alive > config.max_keep_alive)
        {
            keep_alive = config.max_keep_alive;
            properties.server_keep_alive = Some(keep_alive);
        }

        let client_receive_maximum = match protocol {
            Protocol::V311 => config.default_client_receive_maximum,
            Protocol::V5 => {
                connect.properties.receive_maximum.unwrap_or(u16::MAX).min(config.default_client_receive_maximum.max(1))
            }
        }
        .max(1);

        if protocol == Protocol::V5 {
            properties.receive_maximum = Some(config.receive_maximum.max(1));
            properties.topic_alias_maximum = Some(config.topic_alias_maximum);
            properties.maximum_packet_size = Some(config.max_packet_size);
            properties.retain_available = Some(u8::from(config.retain_available));
            properties.wildcard_subscription_available = Some(u8::from(config.wildcard_subscription_available));
            properties.subscription_identifier_available = Some(u8::from(config.subscription_identifiers_available));
            properties.shared_subscription_available = Some(u8::from(config.shared_subscription_available));
        }

        let mut session = Session {
            protocol,
            config,
            state,
            keep_alive,
            last_received_ms: now_ms,
            client_receive_maximum,
            client_max_packet_size: match protocol {
                Protocol::V311 => None,
                Protocol::V5 => connect.properties.maximum_packet_size,
            },
            storing: HashMap::new(),
            topic_aliases: HashMap::new(),
            outgoing_aliases: HashMap::new(),
            client_topic_alias_maximum: match protocol {
                Protocol::V311 => 0,
                Protocol::V5 => connect.properties.topic_alias_maximum.unwrap_or(0),
            },
            session_expiry_interval: match protocol {
                Protocol::V311 if connect.clean_start => 0,
                Protocol::V311 => u32::MAX,
                Protocol::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            },
            closed: false,
        };
        let connack = ConnAck { session_present, code: reason::SUCCESS, properties };
        let mut actions = session.resend(now_ms);
        session.drain_queue(now_ms, &mut actions);
        (session, connack, actions)
    }

    /// The negotiated protocol version.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The keep alive in force, in seconds (0 = none); 1.5 × this is enforced.
    pub fn keep_alive(&self) -> u16 {
        self.keep_alive
    }

    /// The session expiry interval in seconds: from CONNECT, possibly changed by a 5.0
    /// DISCONNECT. 3.1.1: 0 for a clean session, `u32::MAX` (never) for a persistent one.
    pub fn session_expiry_interval(&self) -> u32 {
        self.session_expiry_interval
    }

    /// The client's Maximum Packet Size (5.0), if it set one: the gateway must not send it a
    /// larger packet (SUBACK/UNSUBACK with long reason strings, for instance).
    pub fn client_max_packet_size(&self) -> Option<u32> {
        self.client_max_packet_size
    }

    /// Whether the session already returned an [`Action::Close`].
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Number of outgoing QoS 1/2 exchanges waiting for the client.
    pub fn inflight_outgoing(&self) -> usize {
        self.state.inflight.len()
    }

    /// Number of outgoing messages waiting for room in the inflight window.
    pub fn queued_outgoing(&self) -> usize {
        self.state.queue.len()
    }

    /// Handle one packet from the client.
    pub fn handle(&mut self, packet: Packet, now_ms: u64) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        self.last_received_ms = self.last_received_ms.max(now_ms);
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(response) => self.handle_puback(response, now_ms),
            Packet::PubRec(response) => self.handle_pubrec(response, now_ms),
            Packet::PubRel(response) => self.handle_pubrel(response),
            Packet::PubComp(response) => self.handle_pubcomp(response, now_ms),
            Packet::Subscribe(subscribe) => self.handle_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => vec![Action::Unsubscribe(unsubscribe)],
            Packet::PingReq => vec![Action::Send(Packet::PingResp)],
            Packet::Disconnect(disconnect) => {
                if self.protocol == Protocol::V5
                    && let Some(expiry) = disconnect.properties.session_expiry_interval
                {
                    if self.session_expiry_interval == 0 && expiry != 0 {
                        return self.close(reason::PROTOCOL_ERROR, true);
                    }
                    self.session_expiry_interval = expiry;
                }
                self.closed = true;
                let will = self.protocol == Protocol::V5 && disconnect.reason == reason::DISCONNECT_WITH_WILL;
                vec![Action::Close { reason: disconnect.reason, send: false, will }]
            }
            // A second CONNECT, anything only a server sends, and AUTH (we offer no enhanced
            // authentication) are protocol errors.
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Auth(_) => self.close(reason::PROTOCOL_ERROR, true),
        }
    }

    /// The gateway finished with an incoming QoS 1/2 publish: it is durably stored (`reason`
    /// 0 or 0x10) or refused (a 5.0 error reason such as 0x87 or 0x99). Sends the PUBACK
    /// (QoS 1) or PUBREC (QoS 2). Unknown ids are ignored. Still records state after the
    /// session closed (nothing is sent then), so a stored QoS 2 message is remembered.
    pub fn inbound_stored(&mut self, packet_id: u16, reason_code: u8) -> Vec<Action> {
        let Some(kind) = self.storing.remove(&packet_id) else {
            return Vec::new();
        };
        let response = PubResponse { packet_id, reason: reason_code, properties: Properties::default() };
        match kind {
            Storing::QoS1 => {
                if self.closed {
                    return Vec::new();
                }
                vec![Action::Send(Packet::PubAck(response))]
            }
            Storing::QoS2 => {
                // 5.0: a PUBREC with an error reason ends the exchange; 3.1.1 has no error
                // PUBREC, so the client always continues with PUBREL.
                if reason_code < 0x80 || self.protocol == Protocol::V311 {
                    self.state.incoming_awaiting_release.insert(packet_id);
                }
                if self.closed {
                    return Vec::new();
                }
                vec![Action::Send(Packet::PubRec(response))]
            }
        }
    }

    /// Deliver a message to the client: sent now, queued behind the inflight window, or
    /// dropped (reported as [`Action::Dropped`]).
    pub fn publish(&mut self, message: OutgoingMessage, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.closed {
            return actions;
        }
        if message.qos == QoS::AtMostOnce {
            self.send_now(message, now_ms, &mut actions);
            return actions;
        }
        if self.state.inflight.len() < usize::from(self.client_receive_maximum) && self.state.queue.is_empty() {
            self.start_exchange(message, now_ms, &mut actions);
        } else if self.state.queue.len() < self.config.max_queued {
            self.state.queue.push_back(message);
        } else {
            actions.push(Action::Dropped { topic: message.topic, why: DropReason::QueueFull });
        }
        actions
    }

    /// Check the keep-alive: returns a [`Action::Close`] with 0x8D (will published) when
    /// nothing came from the client for 1.5 × the keep alive.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        match self.next_deadline() {
            Some(deadline) if now_ms >= deadline => self.close(reason::KEEP_ALIVE_TIMEOUT, true),
            _ => Vec::new(),
        }
    }

    /// When [`Session::tick`] must be called next (`None`: no keep alive, or closed).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.closed || self.keep_alive == 0 {
            return None;
        }
        Some(self.last_received_ms.saturating_add(u64::from(self.keep_alive) * 1500))
    }

    /// Close the session from the server side (e.g. takeover 0x8E, revocation 0x98,
    /// shutdown 0x8B, a packet too large 0x95). `will` says whether the will is published.
    pub fn close(&mut self, reason_code: u8, will: bool) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        vec![Action::Close { reason: reason_code, send: self.protocol == Protocol::V5, will }]
    }

    /// Keep what outlives the connection (persistent sessions).
    pub fn into_state(self) -> SessionState {
        self.state
    }

    fn handle_publish(&mut self, mut publish: Publish) -> Vec<Action> {
        // [MQTT-3.3.4-6]: a client never sends subscription identifiers.
        if !publish.properties.subscription_identifiers.is_empty() {
            return self.close(reason::PROTOCOL_ERROR, true);
        }
        if self.protocol == Protocol::V5
            && let Some(alias) = publish.properties.topic_alias.take()
        {
            if alias == 0 || alias > self.config.topic_alias_maximum {
                return self.close(reason::TOPIC_ALIAS_INVALID, true);
            }
            if publish.topic.is_empty() {
                match self.topic_aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => return self.close(reason::PROTOCOL_ERROR, true),
                }
            } else {
                self.topic_aliases.insert(alias, publish.topic.clone());
            }
        }
        if publish.topic.is_empty() {
            return self.close(reason::PROTOCOL_ERROR, true);
        }
        if publish.retain && !self.config.retain_available {
            return self.close(reason::RETAIN_NOT_SUPPORTED, true);
        }
        let packet_id = match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => return vec![Action::Publish(publish)],
            (_, Some(id)) if id != 0 => id,
            _ => return self.close(reason::PROTOCOL_ERROR, true),
        };
        if self.storing.contains_key(&packet_id) {
            // A re-send of a publish we are still storing: its answer is on its way.
            return Vec::new();
        }
        if publish.qos == QoS::ExactlyOnce && self.state.incoming_awaiting_release.contains(&packet_id) {
            // Already stored and PUBREC'd: answer again, do not deliver twice.
            return vec![Action::Send(Packet::PubRec(PubResponse {
                packet_id,
                reason: reason::SUCCESS,
                properties: Properties::default(),
            }))];
        }
        let unacknowledged = self.storing.len() + self.state.incoming_awaiting_release.len();
        if unacknowledged >= usize::from(self.config.receive_maximum.max(1)) {
            return self.close(reason::RECEIVE_MAXIMUM_EXCEEDED, true);
        }
        let kind = match publish.qos {
            QoS::ExactlyOnce => Storing::QoS2,
            _ => Storing::QoS1,
        };
        self.storing.insert(packet_id, kind);
        vec![Action::Publish(publish)]
    }

    fn handle_subscribe(&mut self, subscribe: Subscribe) -> Vec<Action> {
        if !subscribe.properties.subscription_identifiers.is_empty() && !self.config.subscription_identifiers_available
        {
            return self.close(reason::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, true);
        }
        // 5.0 [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
        let shared_no_local = subscribe
            .filters
            .iter()
            .any(|(filter, options)| options.no_local && crate::topic::parse_shared(filter).is_some());
        if shared_no_local {
            return self.close(reason::PROTOCOL_ERROR, true);
        }
        vec![Action::Subscribe(subscribe)]
    }

    fn handle_puback(&mut self, response: PubResponse, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let is_qos1_publish = matches!(
            self.state.inflight.get(&response.packet_id),
            Some((_, Inflight::Publish(message))) if message.qos == QoS::AtLeastOnce
        );
        if is_qos1_publish {
            self.state.inflight.remove(&response.packet_id);
            self.drain_queue(now_ms, &mut actions);
        }
        actions
    }

    fn handle_pubrec(&mut self, response: PubResponse, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        let packet_id = response.packet_id;
        match self.state.inflight.get_mut(&packet_id) {
            Some((_, entry @ Inflight::Publish(_))) => {
                if let Inflight::Publish(message) = &*entry
                    && message.qos != QoS::ExactlyOnce
                {
                    return self.close(reason::PROTOCOL_ERROR, true);
                }
                if response.reason >= 0x80 && self.protocol == Protocol::V5 {
                    // The client refused it: the exchange ends here.
                    self.state.inflight.remove(&packet_id);
                    self.drain_queue(now_ms, &mut actions);
                    return actions;
                }
                *entry = Inflight::Release;
                actions.push(Action::Send(pubrel(packet_id, reason::SUCCESS)));
            }
            Some((_, Inflight::Release)) => {
                actions.push(Action::Send(pubrel(packet_id, reason::SUCCESS)));
            }
            None => {
                if response.reason < 0x80 {
                    actions.push(Action::Send(pubrel(packet_id, reason::PACKET_IDENTIFIER_NOT_FOUND)));
                }
            }
        }
        actions
    }

    fn handle_pubrel(&mut self, response: PubResponse) -> Vec<Action> {
        let found = self.state.incoming_awaiting_release.remove(&response.packet_id);
        let code = if found || self.protocol == Protocol::V311 {
            reason::SUCCESS
        } else {
            reason::PACKET_IDENTIFIER_NOT_FOUND
        };
        vec![Action::Send(Packet::PubComp(PubResponse {
            packet_id: response.packet_id,
            reason: code,
            properties: Properties::default(),
        }))]
    }

    fn handle_pubcomp(&mut self, response: PubResponse, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if matches!(self.state.inflight.get(&response.packet_id), Some((_, Inflight::Release))) {
            self.state.inflight.remove(&response.packet_id);
            self.drain_queue(now_ms, &mut actions);
        }
        actions
    }

    /// Re-send every unacknowledged outgoing exchange, oldest first (session resumption).
    fn resend(&mut self, now_ms: u64) -> Vec<Action> {
        let mut entries: Vec<(u64, u16)> =
            self.state.inflight.iter().map(|(id, (sequence, _))| (*sequence, *id)).collect();
        entries.sort_unstable();
        let mut actions = Vec::new();
        for (_, packet_id) in entries {
            let Some((_, entry)) = self.state.inflight.get(&packet_id) else {
                continue;
            };
            match entry {
                Inflight::Publish(message) => {
                    let packet = self.publish_packet(message, Some(packet_id), true, now_ms);
                    actions.push(Action::Send(Packet::Publish(packet)));
                }
                Inflight::Release => {
                    actions.push(Action::Send(pubrel(packet_id, reason::SUCCESS)));
                }
            }
        }
        actions
    }

    /// Move queued messages into the inflight window while it has room.
    fn drain_queue(&mut self, now_ms: u64, actions: &mut Vec<Action>) {
        while self.state.inflight.len() < usize::from(self.client_receive_maximum) {
            let Some(message) = self.state.queue.pop_front() else {
                break;
            };
            self.start_exchange(message, now_ms, actions);
        }
    }

    /// Allocate a packet id and send a QoS 1/2 message (or drop it when expired / too large).
    fn start_exchange(&mut self, message: OutgoingMessage, now_ms: u64, actions: &mut Vec<Action>) {
        // The packet id does not change the size: check with a placeholder before allocating.
        let mut publish = match self.prepare(&message, Some(1), now_ms) {
            Ok(publish) => publish,
            Err(why) => {
                actions.push(Action::Dropped { topic: message.topic, why });
                return;
            }
        };
        let Some(packet_id) = self.allocate_packet_id() else {
            // Every id is in use (cannot happen with a window <= 65535): keep it queued.
            self.state.queue.push_front(message);
            return;
        };
        publish.packet_id = Some(packet_id);
        self.apply_outgoing_alias(&mut publish);
        actions.push(Action::Send(Packet::Publish(publish)));
        self.state.sequence += 1;
        self.state.inflight.insert(packet_id, (self.state.sequence, Inflight::Publish(Box::new(message))));
    }

    /// Send a QoS 0 message now, or drop it.
    fn send_now(&mut self, message: OutgoingMessage, now_ms: u64, actions: &mut Vec<Action>) {
        match self.prepare(&message, None, now_ms) {
            Ok(mut publish) => {
                self.apply_outgoing_alias(&mut publish);
                actions.push(Action::Send(Packet::Publish(publish)));
            }
            Err(why) => actions.push(Action::Dropped { topic: message.topic, why }),
        }
    }

    /// The PUBLISH for `message`, unless it expired or is too large for the client.
    fn prepare(&self, message: &OutgoingMessage, packet_id: Option<u16>, now_ms: u64) -> Result<Publish, DropReason> {
        if message.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(DropReason::Expired);
        }
        let publish = self.publish_packet(message, packet_id, false, now_ms);
        if let Some(limit) = self.client_max_packet_size
            && crate::codec::encoded_publish_len(&publish, self.protocol) > limit as usize
        {
            return Err(DropReason::TooLarge);
        }
        Ok(publish)
    }

    fn publish_packet(&self, message: &OutgoingMessage, packet_id: Option<u16>, dup: bool, now_ms: u64) -> Publish {
        let mut properties = message.properties.clone();
        properties.topic_alias = None;
        properties.message_expiry_interval = message.expires_at_ms.map(|at| {
            let remaining_ms = at.saturating_sub(now_ms);
            u32::try_from(remaining_ms.div_ceil(1000)).unwrap_or(u32::MAX)
        });
        Publish {
            dup,
            qos: message.qos,
            retain: message.retain,
            topic: message.topic.clone(),
            packet_id,
            payload: message.payload.clone(),
            properties,
        }
    }

    /// Sends a topic the client already knows by its alias alone (empty topic name), and gives
    /// a new topic an alias while the client's Topic Alias Maximum leaves room (5.0). A first
    /// use carries both the topic and the alias, and only when the extra 3 bytes still fit the
    /// client's Maximum Packet Size. Resends after a reconnect go out without aliases: aliases
    /// belong to one connection.
    fn apply_outgoing_alias(&mut self, publish: &mut Publish) {
        if self.client_topic_alias_maximum == 0 {
            return;
        }
        if let Some(alias) = self.outgoing_aliases.get(&publish.topic) {
            publish.properties.topic_alias = Some(*alias);
            publish.topic.clear();
            return;
        }
        let Ok(next) = u16::try_from(self.outgoing_aliases.len() + 1) else { return };
        if next > self.client_topic_alias_maximum {
            return;
        }
        publish.properties.topic_alias = Some(next);
        if let Some(limit) = self.client_max_packet_size
            && crate::codec::encoded_publish_len(publish, self.protocol) > limit as usize
        {
            publish.properties.topic_alias = None;
            return;
        }
        self.outgoing_aliases.insert(publish.topic.clone(), next);
    }

    fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let candidate = self.state.next_packet_id.max(1);
            self.state.next_packet_id = candidate.checked_add(1).unwrap_or(1);
            if !self.state.inflight.contains_key(&candidate) {
                return Some(candidate);
            }
        }
        None
    }
}

fn pubrel(packet_id: u16, reason_code: u8) -> Packet {
    Packet::PubRel(PubResponse { packet_id, reason: reason_code, properties: Properties::default() })
}

#[cfg(test)]
mod tests;
