//! Session tests: every flow as a script of inputs at a fake `now` and the actions expected,
//! run through one `check` helper.

use bytes::Bytes;

use super::*;
use crate::packet::{Disconnect, SubscriptionOptions, Will};

/// One input to the session, at a given time.
#[derive(Debug, Clone)]
enum Step {
    /// A packet from the client.
    In(Packet),
    /// The gateway finished storing an incoming QoS 1/2 publish.
    Stored(u16, u8),
    /// A message routed to the client.
    Out(OutgoingMessage),
    /// The driver's timer fired.
    Tick,
}

use Step::*;

fn connect(protocol: Protocol) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 0,
        client_id: "dev-1".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

fn v5() -> Connect {
    connect(Protocol::V5)
}

fn v3() -> Connect {
    connect(Protocol::V311)
}

fn config() -> SessionConfig {
    SessionConfig::default()
}

/// Run `steps` (time, input, expected actions) against a session; returns it for more checks.
fn check(session: &mut Session, steps: Vec<(u64, Step, Vec<Action>)>) {
    for (index, (now, step, expected)) in steps.into_iter().enumerate() {
        let description = format!("step {index} at {now}: {step:?}");
        let actions = match step {
            In(packet) => session.handle(packet, now),
            Stored(id, code) => session.inbound_stored(id, code),
            Out(message) => session.publish(message, now),
            Tick => session.tick(now),
        };
        assert_eq!(actions, expected, "{description}");
    }
}

fn start(connect: Connect, config: SessionConfig) -> Session {
    let (session, connack, actions) = Session::accept(&connect, config, None, 0);
    assert_eq!(connack.code, 0);
    assert!(actions.is_empty());
    session
}

fn incoming(topic: &str, qos: QoS, id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: id,
        payload: Bytes::from_static(b"{}"),
        properties: Properties::default(),
    }
}

fn publish_in(topic: &str, qos: QoS, id: Option<u16>) -> Step {
    In(Packet::Publish(incoming(topic, qos, id)))
}

fn message(topic: &str, qos: QoS) -> OutgoingMessage {
    OutgoingMessage {
        topic: topic.into(),
        payload: Bytes::from_static(b"{}"),
        qos,
        retain: false,
        properties: Properties::default(),
        expires_at_ms: None,
    }
}

fn sent(topic: &str, qos: QoS, id: Option<u16>) -> Action {
    Action::Send(Packet::Publish(incoming(topic, qos, id)))
}

fn response(id: u16, code: u8) -> PubResponse {
    PubResponse { packet_id: id, reason: code, properties: Properties::default() }
}

fn puback(id: u16, code: u8) -> Packet {
    Packet::PubAck(response(id, code))
}
fn pubrec(id: u16, code: u8) -> Packet {
    Packet::PubRec(response(id, code))
}
fn pubrel(id: u16, code: u8) -> Packet {
    Packet::PubRel(response(id, code))
}
fn pubcomp(id: u16, code: u8) -> Packet {
    Packet::PubComp(response(id, code))
}
fn send(packet: Packet) -> Action {
    Action::Send(packet)
}
fn delivered(topic: &str, qos: QoS, id: Option<u16>) -> Action {
    Action::Publish(incoming(topic, qos, id))
}
fn close(reason: u8, send: bool, will: bool) -> Action {
    Action::Close { reason, send, will }
}
fn disconnect(code: u8) -> Packet {
    Packet::Disconnect(Disconnect { reason: code, properties: Properties::default() })
}

const T: &str = "devices/dev-1/telemetry";
const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

#[test]
fn connack_announces_limits_in_v5_only() {
    let config = SessionConfig { max_keep_alive: 60, ..config() };
    let (_, connack, _) = Session::accept(&v5(), config, None, 0);
    let p = &connack.properties;
    assert_eq!(p.receive_maximum, Some(config.receive_maximum));
    assert_eq!(p.topic_alias_maximum, Some(config.topic_alias_maximum));
    assert_eq!(p.maximum_packet_size, Some(config.max_packet_size));
    assert_eq!(p.server_keep_alive, Some(60), "keep alive 0 is capped");
    assert_eq!(p.retain_available, Some(1));
    assert_eq!(p.shared_subscription_available, Some(1));
    assert!(!connack.session_present);
    let (session, connack, _) = Session::accept(&v3(), config, None, 0);
    assert_eq!(connack.properties, Properties::default());
    assert_eq!(session.keep_alive(), 0, "3.1.1 cannot be told a server keep alive");
    let mut asks_less = v5();
    asks_less.keep_alive = 30;
    let (session, connack, _) = Session::accept(&asks_less, config, None, 0);
    assert_eq!((session.keep_alive(), connack.properties.server_keep_alive), (30, None));
}

#[test]
fn qos0_in() {
    let mut session = start(v5(), config());
    check(&mut session, vec![(1, publish_in(T, Q0, None), vec![delivered(T, Q0, None)])]);
}

#[test]
fn qos1_in_is_acknowledged_after_storage() {
    let mut session = start(v5(), config());
    check(
        &mut session,
        vec![
            (1, publish_in(T, Q1, Some(7)), vec![delivered(T, Q1, Some(7))]),
            // A re-send while it is being stored is not delivered again.
            (2, publish_in(T, Q1, Some(7)), vec![]),
            (3, Stored(7, 0), vec![send(puback(7, 0))]),
            (4, Stored(7, 0), vec![] /* unknown now */),
            (5, publish_in(T, Q1, Some(8)), vec![delivered(T, Q1, Some(8))]),
            (6, Stored(8, reason::NOT_AUTHORIZED), vec![send(puback(8, 0x87))]),
        ],
    );
}

#[test]
fn qos2_in_is_delivered_once() {
    for protocol in [Protocol::V5, Protocol::V311] {
        let mut session = start(connect(protocol), config());
        let unknown = if protocol == Protocol::V5 { 0x92 } else { 0 };
        check(
            &mut session,
            vec![
                (1, publish_in(T, Q2, Some(1)), vec![delivered(T, Q2, Some(1))]),
                (2, publish_in(T, Q2, Some(1)), vec![]),
                (3, Stored(1, 0), vec![send(pubrec(1, 0))]),
                // Duplicate while awaiting PUBREL: PUBREC again, no second delivery.
                (4, publish_in(T, Q2, Some(1)), vec![send(pubrec(1, 0))]),
                (5, In(pubrel(1, 0)), vec![send(pubcomp(1, 0))]),
                (6, In(pubrel(1, 0)), vec![send(pubcomp(1, unknown))]),
                // The id is free again: a new message with it is delivered.
                (7, publish_in(T, Q2, Some(1)), vec![delivered(T, Q2, Some(1))]),
            ],
        );
    }
}

#[test]
fn qos2_in_refused_ends_the_exchange_in_v5() {
    let mut session = start(v5(), config());
    check(
        &mut session,
        vec![
            (1, publish_in(T, Q2, Some(3)), vec![delivered(T, Q2, Some(3))]),
            (2, Stored(3, reason::PAYLOAD_FORMAT_INVALID), vec![send(pubrec(3, 0x99))]),
            (3, publish_in(T, Q2, Some(3)), vec![delivered(T, Q2, Some(3))]),
        ],
    );
    // 3.1.1 has no error PUBREC: the client continues with PUBREL.
    let mut session = start(v3(), config());
    check(
        &mut session,
        vec![
            (1, publish_in(T, Q2, Some(3)), vec![delivered(T, Q2, Some(3))]),
            (2, Stored(3, reason::NOT_AUTHORIZED), vec![send(pubrec(3, 0x87))]),
            (3, In(pubrel(3, 0)), vec![send(pubcomp(3, 0))]),
        ],
    );
}

#[test]
fn receive_maximum_exceeded() {
    let config = SessionConfig { receive_maximum: 2, ..config() };
    let mut session = start(v5(), config);
    check(
        &mut session,
        vec![
            (1, publish_in(T, Q1, Some(1)), vec![delivered(T, Q1, Some(1))]),
            (2, publish_in(T, Q2, Some(2)), vec![delivered(T, Q2, Some(2))]),
            // QoS 0 does not count.
            (3, publish_in(T, Q0, None), vec![delivered(T, Q0, None)]),
            (4, Stored(1, 0), vec![send(puback(1, 0))]),
            (5, publish_in(T, Q1, Some(3)), vec![delivered(T, Q1, Some(3))]),
            // A stored QoS 2 awaiting PUBREL still counts: this is the third.
            (6, Stored(2, 0), vec![send(pubrec(2, 0))]),
            (7, publish_in(T, Q1, Some(4)), vec![close(0x93, true, true)]),
            // Closed: nothing more happens.
            (8, publish_in(T, Q1, Some(5)), vec![]),
        ],
    );
    let mut session = start(v3(), config);
    check(
        &mut session,
        vec![
            (1, publish_in(T, Q1, Some(1)), vec![delivered(T, Q1, Some(1))]),
            (2, publish_in(T, Q1, Some(2)), vec![delivered(T, Q1, Some(2))]),
            (3, publish_in(T, Q1, Some(3)), vec![close(0x93, false, true)]),
        ],
    );
}

#[test]
fn qos0_and_qos1_out() {
    let mut session = start(v5(), config());
    check(
        &mut session,
        vec![
            (1, Out(message(T, Q0)), vec![sent(T, Q0, None)]),
            (2, Out(message(T, Q1)), vec![sent(T, Q1, Some(1))]),
            (3, Out(message(T, Q1)), vec![sent(T, Q1, Some(2))]),
            (4, In(puback(1, 0)), vec![]),
            (5, In(puback(1, 0)), vec![]),
            (6, Out(message(T, Q1)), vec![sent(T, Q1, Some(3))]),
        ],
    );
    assert_eq!(session.inflight_outgoing(), 2);
}

#[test]
fn qos2_out() {
    let mut session = start(v5(), config());
    check(
        &mut session,
        vec![
            (1, Out(message(T, Q2)), vec![sent(T, Q2, Some(1))]),
            (2, In(pubrec(1, 0)), vec![send(pubrel(1, 0))]),
            // A repeated PUBREC is answered with PUBREL again.
            (3, In(pubrec(1, 0)), vec![send(pubrel(1, 0))]),
            (4, In(pubcomp(1, 0)), vec![]),
            // PUBREC for an unknown id.
            (5, In(pubrec(9, 0)), vec![send(pubrel(9, 0x92))]),
            // A refused QoS 2 message (PUBREC >= 0x80) ends its exchange.
            (6, Out(message(T, Q2)), vec![sent(T, Q2, Some(2))]),
            (7, In(pubrec(2, 0x80)), vec![]),
        ],
    );
    assert_eq!(session.inflight_outgoing(), 0);
}

#[test]
fn inflight_window_and_queue() {
    let mut connect = v5();
    connect.properties.receive_maximum = Some(2);
    let config = SessionConfig { max_queued: 2, ..config() };
    let mut session = start(connect, config);
    check(
        &mut session,
        vec![
            (1, Out(message("a", Q1)), vec![sent("a", Q1, Some(1))]),
            (2, Out(message("b", Q2)), vec![sent("b", Q2, Some(2))]),
            (3, Out(message("c", Q1)), vec![]),
            // QoS 0 is not held back by the window.
            (4, Out(message("z", Q0)), vec![sent("z", Q0, None)]),
            (5, Out(message("d", Q1)), vec![]),
            (6, Out(message("e", Q1)), vec![Action::Dropped { topic: "e".into(), why: DropReason::QueueFull }]),
            (7, In(puback(1, 0)), vec![sent("c", Q1, Some(3))]),
            // PUBREC does not free the slot; PUBCOMP does.
            (8, In(pubrec(2, 0)), vec![send(pubrel(2, 0))]),
            (9, In(pubcomp(2, 0)), vec![sent("d", Q1, Some(4))]),
        ],
    );
    assert_eq!((session.inflight_outgoing(), session.queued_outgoing()), (2, 0));
    // 3.1.1 uses the configured default window.
    let config = SessionConfig { default_client_receive_maximum: 1, ..config };
    let mut session = start(v3(), config);
    check(
        &mut session,
        vec![
            (1, Out(message("a", Q1)), vec![sent("a", Q1, Some(1))]),
            (2, Out(message("b", Q1)), vec![]),
            (3, In(puback(1, 0)), vec![sent("b", Q1, Some(2))]),
        ],
    );
}

#[test]
fn topic_aliases() {
    let config = SessionConfig { topic_alias_maximum: 4, ..config() };
    let aliased = |topic: &str, alias: u16| {
        let mut publish = incoming(topic, Q0, None);
        publish.properties.topic_alias = Some(alias);
        In(Packet::Publish(publish))
    };
    let mut session = start(v5(), config);
    check(
        &mut session,
        vec![
            (1, aliased(T, 1), vec![delivered(T, Q0, None)]),
            (2, aliased("", 1), vec![delivered(T, Q0, None)]),
            (3, aliased("other", 1), vec![delivered("other", Q0, None)]),
            (4, aliased("", 1), vec![delivered("other", Q0, None)]),
            (5, aliased("", 2), vec![close(0x82, true, true)]),
        ],
    );
    for alias in [0, 5] {
        let mut session = start(v5(), config);
        check(&mut session, vec![(1, aliased(T, alias), vec![close(0x94, true, true)])]);
    }
}

#[test]
fn outgoing_topic_aliases_within_the_clients_maximum() {
    let with_alias = |topic: &str, qos: QoS, id: Option<u16>, alias: u16| {
        let mut publish = incoming(topic, qos, id);
        publish.properties.topic_alias = Some(alias);
        Action::Send(Packet::Publish(publish))
    };
    let mut connect = v5();
    connect.properties.topic_alias_maximum = Some(2);
    let mut session = start(connect, config());
    check(
        &mut session,
        vec![
            // First use: topic and alias; then the alias alone, at every QoS.
            (1, Out(message("a", Q0)), vec![with_alias("a", Q0, None, 1)]),
            (2, Out(message("a", Q1)), vec![with_alias("", Q1, Some(1), 1)]),
            (3, Out(message("b", Q2)), vec![with_alias("b", Q2, Some(2), 2)]),
            // The client's maximum of 2 is used up: a third topic goes out by name.
            (4, Out(message("c", Q0)), vec![sent("c", Q0, None)]),
            (5, Out(message("b", Q0)), vec![with_alias("", Q0, None, 2)]),
        ],
    );
    // A resend after reconnecting names the topic: the new connection knows no aliases.
    let mut connect = v5();
    connect.clean_start = false;
    let (_, _, resent) = Session::accept(&connect, config(), Some(session.into_state()), 10);
    let mut first = incoming("a", Q1, Some(1));
    first.dup = true;
    let mut second = incoming("b", Q2, Some(2));
    second.dup = true;
    assert_eq!(resent, vec![send(Packet::Publish(first)), send(Packet::Publish(second))]);

    // No Topic Alias Maximum (or 0, or 3.1.1): never an alias.
    for connect in [v5(), v3()] {
        let mut session = start(connect, config());
        check(
            &mut session,
            vec![
                (1, Out(message("a", Q0)), vec![sent("a", Q0, None)]),
                (2, Out(message("a", Q0)), vec![sent("a", Q0, None)]),
            ],
        );
    }
}

#[test]
fn keep_alive_is_enforced_at_one_and_a_half_times() {
    let mut connect = v3();
    connect.keep_alive = 10;
    let (mut session, _, _) = Session::accept(&connect, config(), None, 1000);
    assert_eq!(session.next_deadline(), Some(16_000));
    check(
        &mut session,
        vec![
            (15_999, Tick, vec![]),
            (11_000, In(Packet::PingReq), vec![send(Packet::PingResp)]),
            (16_000, Tick, vec![]),
        ],
    );
    assert_eq!(session.next_deadline(), Some(26_000));
    check(&mut session, vec![(26_000, Tick, vec![close(0x8D, false, true)])]);
    assert_eq!(session.next_deadline(), None);

    // 5.0: the capped server keep alive is the one enforced.
    let mut connect = v5();
    connect.keep_alive = 600;
    let config = SessionConfig { max_keep_alive: 20, ..config() };
    let (mut session, _, _) = Session::accept(&connect, config, None, 0);
    assert_eq!(session.next_deadline(), Some(30_000));
    check(&mut session, vec![(30_000, Tick, vec![close(0x8D, true, true)])]);
    // No keep alive, no deadline.
    assert_eq!(start(v5(), SessionConfig::default()).next_deadline(), None);
}

#[test]
fn message_expiry() {
    let mut connect = v5();
    connect.properties.receive_maximum = Some(1);
    let mut session = start(connect, config());
    let expiring = |topic: &str, at| OutgoingMessage { expires_at_ms: Some(at), ..message(topic, Q1) };
    let with_expiry = |topic: &str, id, seconds| {
        let mut publish = incoming(topic, Q1, Some(id));
        publish.properties.message_expiry_interval = Some(seconds);
        Action::Send(Packet::Publish(publish))
    };
    check(
        &mut session,
        vec![
            // Sent at once: the remaining interval, rounded up.
            (1_000, Out(expiring("a", 60_500)), vec![with_expiry("a", 1, 60)]),
            (2_000, Out(expiring("b", 10_000)), vec![]),
            (3_000, Out(expiring("c", 50_000)), vec![]),
            // "b" expired while queued; "c" is sent with what is left of its interval.
            (
                20_000,
                In(puback(1, 0)),
                vec![Action::Dropped { topic: "b".into(), why: DropReason::Expired }, with_expiry("c", 2, 30)],
            ),
            (60_000, Out(expiring("d", 60_000)), vec![]),
        ],
    );
    check(
        &mut session,
        vec![(60_001, In(puback(2, 0)), vec![Action::Dropped { topic: "d".into(), why: DropReason::Expired }])],
    );
}

#[test]
fn client_maximum_packet_size() {
    let mut connect = v5();
    connect.properties.maximum_packet_size = Some(40);
    let mut session = start(connect, config());
    let big = OutgoingMessage { payload: Bytes::from(vec![b'x'; 64]), ..message(T, Q1) };
    check(
        &mut session,
        vec![
            (1, Out(big), vec![Action::Dropped { topic: T.into(), why: DropReason::TooLarge }]),
            (2, Out(message(T, Q1)), vec![sent(T, Q1, Some(1))]),
        ],
    );
    assert_eq!(session.inflight_outgoing(), 1);
}

#[test]
fn persistent_session_resends_with_dup() {
    let mut connect = v5();
    connect.clean_start = false;
    connect.properties.receive_maximum = Some(3);
    let (mut session, _, _) = Session::accept(&connect, config(), None, 0);
    check(
        &mut session,
        vec![
            (1, Out(message("a", Q1)), vec![sent("a", Q1, Some(1))]),
            (2, Out(message("b", Q2)), vec![sent("b", Q2, Some(2))]),
            (3, Out(message("c", Q2)), vec![sent("c", Q2, Some(3))]),
            (4, Out(message("d", Q1)), vec![]),
            (5, In(pubrec(2, 0)), vec![send(pubrel(2, 0))]),
            (6, publish_in(T, Q2, Some(9)), vec![delivered(T, Q2, Some(9))]),
            (7, Stored(9, 0), vec![send(pubrec(9, 0))]),
        ],
    );
    let mut state = session.into_state();
    // Routed while offline.
    assert!(state.enqueue(message("e", Q1), 10));
    assert!(!state.enqueue(message("f", Q0), 10), "QoS 0 is not kept offline");
    assert_eq!(state.pending_outgoing(), 5);

    let dup = |topic: &str, qos, id| {
        let mut publish = incoming(topic, qos, Some(id));
        publish.dup = true;
        Action::Send(Packet::Publish(publish))
    };
    let (mut session, connack, actions) = Session::accept(&connect, config(), Some(state.clone()), 100);
    assert!(connack.session_present);
    assert_eq!(
        actions,
        vec![dup("a", Q1, 1), send(pubrel(2, 0)), dup("c", Q2, 3)],
        "unacknowledged exchanges are re-sent in order, with DUP"
    );
    check(
        &mut session,
        vec![
            // The re-sent QoS 2 message awaiting PUBREL is not delivered twice.
            (101, publish_in(T, Q2, Some(9)), vec![send(pubrec(9, 0))]),
            (102, In(pubrel(9, 0)), vec![send(pubcomp(9, 0))]),
            (103, In(puback(1, 0)), vec![sent("d", Q1, Some(4))]),
            (104, In(pubcomp(2, 0)), vec![sent("e", Q1, Some(5))]),
        ],
    );

    // A clean start throws the old state away.
    connect.clean_start = true;
    let (session, connack, actions) = Session::accept(&connect, config(), Some(state), 100);
    assert!(!connack.session_present);
    assert!(actions.is_empty());
    assert_eq!(session.inflight_outgoing(), 0);
}

#[test]
fn storage_finishing_after_close_is_remembered() {
    let mut connect = v3();
    connect.clean_start = false;
    let mut session = start(connect.clone(), config());
    check(
        &mut session,
        vec![
            (1, publish_in(T, Q2, Some(4)), vec![delivered(T, Q2, Some(4))]),
            (2, In(disconnect(0)), vec![close(0, false, false)]),
            // Nothing is sent any more, but the state records the stored message.
            (3, Stored(4, 0), vec![]),
        ],
    );
    let (mut session, _, _) = Session::accept(&connect, config(), Some(session.into_state()), 10);
    check(&mut session, vec![(11, publish_in(T, Q2, Some(4)), vec![send(pubrec(4, 0))])]);
}

#[test]
fn disconnect_normal_and_with_will() {
    for (protocol, code, expected) in [
        (Protocol::V5, 0x00, close(0x00, false, false)),
        (Protocol::V5, 0x04, close(0x04, false, true)),
        (Protocol::V5, 0x80, close(0x80, false, false)),
        (Protocol::V311, 0x00, close(0x00, false, false)),
    ] {
        let mut session = start(connect(protocol), config());
        check(&mut session, vec![(1, In(disconnect(code)), vec![expected])]);
        assert!(session.is_closed());
    }
}

#[test]
fn disconnect_session_expiry() {
    let mut session = start(v5(), config());
    let mut packet = Disconnect { reason: 0, properties: Properties::default() };
    packet.properties.session_expiry_interval = Some(60);
    // CONNECT said 0: DISCONNECT may not set it non-zero.
    check(&mut session, vec![(1, In(Packet::Disconnect(packet.clone())), vec![close(0x82, true, true)])]);
    let mut connect = v5();
    connect.properties.session_expiry_interval = Some(10);
    let mut session = start(connect, config());
    check(&mut session, vec![(1, In(Packet::Disconnect(packet)), vec![close(0, false, false)])]);
    assert_eq!(session.session_expiry_interval(), 60);
}

#[test]
fn protocol_errors() {
    let connect_again = In(Packet::Connect(Box::new(v5())));
    let server_only = [
        connect_again,
        In(Packet::PingResp),
        In(Packet::ConnAck(ConnAck { session_present: false, code: 0, properties: Properties::default() })),
        In(Packet::Auth(crate::packet::Auth { reason: 0, properties: Properties::default() })),
    ];
    for step in server_only {
        let mut session = start(v5(), config());
        check(&mut session, vec![(1, step.clone(), vec![close(0x82, true, true)])]);
        let mut session = start(v3(), config());
        check(&mut session, vec![(1, step, vec![close(0x82, false, true)])]);
    }
    // A subscription identifier from a client, a retained message when retain is off.
    let mut with_sub_id = incoming(T, Q0, None);
    with_sub_id.properties.subscription_identifiers = vec![1];
    let mut session = start(v5(), config());
    check(&mut session, vec![(1, In(Packet::Publish(with_sub_id)), vec![close(0x82, true, true)])]);
    let mut retained = incoming(T, Q0, None);
    retained.retain = true;
    let no_retain = SessionConfig { retain_available: false, ..config() };
    let mut session = start(v5(), no_retain);
    check(&mut session, vec![(1, In(Packet::Publish(retained)), vec![close(0x9A, true, true)])]);
}

#[test]
fn subscribe_and_unsubscribe_go_to_the_gateway() {
    let options = SubscriptionOptions { qos: Q1, no_local: false, retain_as_published: false, retain_handling: 0 };
    let subscribe = Subscribe { packet_id: 1, filters: vec![(T.into(), options)], properties: Properties::default() };
    let unsubscribe = Unsubscribe { packet_id: 2, filters: vec![T.into()], properties: Properties::default() };
    let mut session = start(v5(), config());
    check(
        &mut session,
        vec![
            (1, In(Packet::Subscribe(subscribe.clone())), vec![Action::Subscribe(subscribe.clone())]),
            (2, In(Packet::Unsubscribe(unsubscribe.clone())), vec![Action::Unsubscribe(unsubscribe)]),
            (3, In(Packet::PingReq), vec![send(Packet::PingResp)]),
        ],
    );
    // No Local on a shared subscription is a protocol error.
    let mut shared = subscribe.clone();
    shared.filters = vec![("$share/g/a".into(), SubscriptionOptions { no_local: true, ..options })];
    let mut session = start(v5(), config());
    check(&mut session, vec![(1, In(Packet::Subscribe(shared)), vec![close(0x82, true, true)])]);
    // Subscription identifiers when they are switched off.
    let mut with_id = subscribe;
    with_id.properties.subscription_identifiers = vec![5];
    let config = SessionConfig { subscription_identifiers_available: false, ..config() };
    let mut session = start(v5(), config);
    check(&mut session, vec![(1, In(Packet::Subscribe(with_id)), vec![close(0xA1, true, true)])]);
}

#[test]
fn server_side_close() {
    let mut session = start(v5(), config());
    assert_eq!(session.close(reason::SESSION_TAKEN_OVER, false), vec![close(0x8E, true, false)]);
    assert_eq!(session.close(reason::SESSION_TAKEN_OVER, false), vec![]);
    assert_eq!(session.publish(message(T, Q1), 1), vec![]);
    let mut session = start(v3(), config());
    assert_eq!(session.close(reason::ADMINISTRATIVE_ACTION, true), vec![close(0x98, false, true)]);
}

#[test]
fn packet_ids_skip_those_in_use_and_wrap() {
    let mut connect = v5();
    connect.properties.receive_maximum = Some(10);
    let mut session = start(connect, SessionConfig { default_client_receive_maximum: 10, ..config() });
    check(&mut session, vec![(1, Out(message("a", Q1)), vec![sent("a", Q1, Some(1))])]);
    session.state.next_packet_id = u16::MAX;
    check(
        &mut session,
        vec![
            (2, Out(message("b", Q1)), vec![sent("b", Q1, Some(u16::MAX))]),
            // Wraps to 1, which is in use, so 2.
            (3, Out(message("c", Q1)), vec![sent("c", Q1, Some(2))]),
        ],
    );
}

#[test]
fn will_is_carried_in_the_connect_not_the_session() {
    // The session does not publish wills; it only says when the gateway must.
    let mut connect = v3();
    connect.will = Some(Will {
        topic: "w".into(),
        payload: Bytes::new(),
        qos: Q1,
        retain: false,
        properties: Properties::default(),
    });
    connect.keep_alive = 1;
    let mut session = start(connect, config());
    check(&mut session, vec![(1_500, Tick, vec![close(0x8D, false, true)])]);
}
