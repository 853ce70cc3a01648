//! One MQTT connection, from TCP accept to close: the TLS handshake and the CONNECT (both
//! within the connect timeout), authentication, session takeover, then the loop that feeds
//! the sans-IO [`Session`] with decoded packets, deliveries, store completions and the clock,
//! and carries out its actions. One task per connection; the socket is read with a small
//! buffer that shrinks back after large packets, so idle connections stay cheap.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rampart_core::PermissionSet;
use rampart_data::{DataKind, IngestError};
use rampart_mqtt::topic::{parse_shared, valid_topic_filter};
use rampart_mqtt::{
    Action, ConnAck, Connect, DecodeError, Disconnect, DropReason, OutgoingMessage, Packet, Properties, Protocol,
    Publish, QoS, Session, SubAck, Subscribe, UnsubAck, Unsubscribe, Will, decode, encode, reason,
};
use rampart_platform::{AuthenticatedDevice, DeviceAuthError, SecurityEventDraft, Severity, split_username};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::server::TlsStream;

use crate::Shared;
use rampart_core::acl::{
    MAX_DEVICE_FILTERS, PlatformTopic, PublishDecision, Requester, SubscribeDecision, authorize_publish,
    authorize_subscribe, may_deliver,
};
use crate::policy::TenantRules;
use crate::registry::{
    ClientRef, CloseSignal, Credential, Live, Parked, PendingWill, SessionEntry, SessionId, SessionKey,
};
use crate::router::{RoutedMessage, SubOptions};

/// Initial read buffer: enough for a CONNECT and small publishes.
const INITIAL_READ_CAPACITY: usize = 512;
/// A read buffer that grew past this is replaced by a small one once it is empty again.
const SHRINK_ABOVE: usize = 8 * 1024;
/// How long a newcomer waits for the session's previous connection to hand it over.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// How long a closing connection waits for its outstanding stores.
const STORE_DRAIN_WAIT: Duration = Duration::from_secs(10);
/// How long a server-sent DISCONNECT waits for the client to close first.
const DISCONNECT_LINGER: Duration = Duration::from_millis(250);
/// How long a write may still take once the connection is asked to close (or while it closes):
/// a client that stopped reading must not keep its connection, and its session, forever.
const STALLED_WRITE_GRACE: Duration = Duration::from_secs(1);

type Stream = TlsStream<TcpStream>;
type StoreFuture = Pin<Box<dyn Future<Output = StoreOutcome> + Send>>;

/// Who the connection authenticated as.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
    Device { tenant: String, device: String },
    Application { tenant: String, key_id: String, permissions: PermissionSet },
}

impl Identity {
    fn tenant(&self) -> &str {
        match self {
            Identity::Device { tenant, .. } | Identity::Application { tenant, .. } => tenant,
        }
    }

    fn requester(&self) -> Requester<'_> {
        match self {
            Identity::Device { device, .. } => Requester::Device(device),
            Identity::Application { permissions, .. } => Requester::Application(permissions),
        }
    }

    fn device(&self) -> Option<&str> {
        match self {
            Identity::Device { device, .. } => Some(device),
            Identity::Application { .. } => None,
        }
    }
}

/// Why a CONNECT is refused; mapped to the CONNACK code of the client's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    BadCredentials,
    NotAuthorized,
    BadClientId,
    Unavailable,
}

fn connack_code(refusal: Refusal, protocol: Protocol) -> u8 {
    match (protocol, refusal) {
        (Protocol::V5, Refusal::BadCredentials) => reason::BAD_USERNAME_OR_PASSWORD,
        (Protocol::V5, Refusal::NotAuthorized) => reason::NOT_AUTHORIZED,
        (Protocol::V5, Refusal::BadClientId) => reason::CLIENT_IDENTIFIER_NOT_VALID,
        (Protocol::V5, Refusal::Unavailable) => reason::SERVER_UNAVAILABLE,
        (Protocol::V311, Refusal::BadCredentials) => reason::V3_BAD_USERNAME_OR_PASSWORD,
        (Protocol::V311, Refusal::NotAuthorized) => reason::V3_NOT_AUTHORIZED,
        (Protocol::V311, Refusal::BadClientId) => reason::V3_IDENTIFIER_REJECTED,
        (Protocol::V311, Refusal::Unavailable) => reason::V3_SERVER_UNAVAILABLE,
    }
}

/// A successful authentication: who, with what, and the client id to use.
struct Admitted {
    identity: Identity,
    credential: Credential,
    client_id: String,
    /// Set when the server chose the client id (5.0 Assigned Client Identifier).
    assigned: bool,
}

/// The result of storing an incoming QoS 1/2 publish.
struct StoreOutcome {
    packet_id: u16,
    result: Result<(), IngestError>,
    message: RoutedMessage,
}

/// Serves one accepted TCP connection to the end.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, done: mpsc::Sender<()>) {
    let _nodelay_is_best_effort = tcp.set_nodelay(true);
    let deadline = Instant::now() + shared.settings.connect_timeout;
    let mut stream = match timeout_at(deadline, shared.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let chain: Option<Vec<CertificateDer<'static>>> =
        stream.get_ref().1.peer_certificates().map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect());
    let mut buffer = BytesMut::with_capacity(INITIAL_READ_CAPACITY);
    let max_packet_size = shared.settings.max_packet_size as usize;
    let connect = match timeout_at(deadline, Box::pin(read_connect(&mut stream, &mut buffer, max_packet_size))).await {
        Ok(Ok(connect)) => connect,
        Ok(Err(Some(refusal_packet))) => {
            let _best_effort = write_packets(&mut stream, &[refusal_packet], Protocol::V311).await;
            return;
        }
        Ok(Err(None)) => return,
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT within the connect timeout");
            return;
        }
    };
    let protocol = connect.protocol;
    // Transient futures are boxed so the task's own future (allocated for the connection's
    // whole life) stays small: idle connections must stay cheap.
    let admitted = match Box::pin(admit(&shared, &connect, chain.as_deref(), peer)).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let connack = refused_connack(refusal, protocol);
            let _best_effort = write_packets(&mut stream, &[connack], protocol).await;
            let _best_effort = stream.shutdown().await;
            return;
        }
    };
    let Some(ready) = Box::pin(Connection::start(shared, stream, buffer, peer, connect, admitted)).await else {
        return;
    };
    // The open connection lives on in a task of its own whose future holds only what the loop
    // needs; the handshake's and authentication's state is freed here.
    // Spawned as is: wrapping it in another async block would store it twice.
    let run =
        ready.connection.run(ready.stream, ready.buffer, ready.receiver, ready.close, ready.finished_sender, done);
    tokio::spawn(run);
}

/// An accepted connection, ready for its loop.
struct Ready {
    connection: Connection,
    stream: Stream,
    buffer: BytesMut,
    receiver: mpsc::Receiver<Box<OutgoingMessage>>,
    close: Arc<CloseSignal>,
    finished_sender: watch::Sender<()>,
}

fn refused_connack(refusal: Refusal, protocol: Protocol) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        code: connack_code(refusal, protocol),
        properties: Properties::default(),
    })
}

/// Reads until a whole CONNECT is decoded. `Err(Some(packet))`: answer with it and close;
/// `Err(None)`: just close.
async fn read_connect(
    stream: &mut Stream,
    buffer: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Connect, Option<Packet>> {
    loop {
        match decode(buffer, None, max_packet_size) {
            Ok(Some(Packet::Connect(connect))) => return Ok(*connect),
            Ok(Some(_)) => return Err(None),
            Ok(None) => {}
            Err(DecodeError::UnsupportedProtocol { .. }) => {
                return Err(Some(Packet::ConnAck(ConnAck {
                    session_present: false,
                    code: reason::V3_UNACCEPTABLE_PROTOCOL,
                    properties: Properties::default(),
                })));
            }
            Err(_) => return Err(None),
        }
        reserve_for_read(buffer);
        match stream.read_buf(buffer).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
    }
}

fn reserve_for_read(buffer: &mut BytesMut) {
    if buffer.capacity() - buffer.len() < 256 {
        buffer.reserve(INITIAL_READ_CAPACITY.max(buffer.len()));
    }
}

async fn write_packets(stream: &mut Stream, packets: &[Packet], protocol: Protocol) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    for packet in packets {
        if encode(packet, protocol, &mut out).is_err() {
            return Err(std::io::Error::other("packet could not be encoded"));
        }
    }
    write_and_flush(stream, &out).await
}

/// Writes `out` and flushes TLS.
async fn write_and_flush(stream: &mut Stream, out: &[u8]) -> std::io::Result<()> {
    stream.write_all(out).await?;
    stream.flush().await
}

/// Authenticates the CONNECT and checks its client id and will.
async fn admit(
    shared: &Shared,
    connect: &Connect,
    chain: Option<&[CertificateDer<'static>]>,
    peer: SocketAddr,
) -> Result<Admitted, Refusal> {
    let platform = &shared.platform;
    let source_ip = peer.ip().to_string();
    let password = connect.password.as_deref();
    let is_api_key = password.is_some_and(|p| p.starts_with(rampart_platform::API_KEY_PREFIX.as_bytes()));
    let (identity, credential) = match chain {
        Some(chain) if !chain.is_empty() && !is_api_key => {
            let device = match platform.authenticate_device_certificate(chain, platform.now_ms()).await {
                Ok(device) => device,
                Err(error) => {
                    platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                    return Err(auth_refusal(&error));
                }
            };
            let expected = format!("{}/{}", device.device.tenant, device.device.id);
            if connect.username.as_deref().is_some_and(|username| username != expected) {
                let error = DeviceAuthError::BadCredentials {
                    tenant: Some(device.device.tenant.clone()),
                    device: Some(device.device.id.clone()),
                    reason: "username does not match the certificate",
                };
                platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                return Err(Refusal::BadCredentials);
            }
            device_identity(device, Credential::DeviceCertificate)
        }
        _ => {
            let (Some(username), Some(password)) = (connect.username.as_deref(), password) else {
                return Err(Refusal::BadCredentials);
            };
            let Some((tenant, name)) = split_username(username) else { return Err(Refusal::BadCredentials) };
            if is_api_key {
                match platform.authenticate_application(tenant, name, password).await {
                    Ok(application) => (
                        Identity::Application {
                            tenant: application.tenant,
                            key_id: application.key_id.clone(),
                            permissions: application.permissions,
                        },
                        Credential::ApiKey { key_id: application.key_id },
                    ),
                    Err(error) => {
                        platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                        return Err(auth_refusal(&error));
                    }
                }
            } else {
                match platform.authenticate_device_token(tenant, name, password).await {
                    Ok(device) => {
                        let credential = match &device.method {
                            rampart_platform::DeviceAuthMethod::Token { token_id } => {
                                Credential::DeviceToken { token_id: token_id.clone() }
                            }
                            _ => Credential::DeviceCertificate,
                        };
                        device_identity(device, credential)
                    }
                    Err(error) => {
                        platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
                        return Err(auth_refusal(&error));
                    }
                }
            }
        }
    };
    let (client_id, assigned) = match (&identity, connect.client_id.as_str()) {
        (Identity::Device { device, .. }, "") => (device.clone(), true),
        (Identity::Device { device, .. }, client_id) if client_id == device => (device.clone(), false),
        (Identity::Device { tenant, device }, _) => {
            let error = DeviceAuthError::BadCredentials {
                tenant: Some(tenant.clone()),
                device: Some(device.clone()),
                reason: "client id is not the device id",
            };
            platform.record_device_auth_failure(&error, Some(&source_ip), "mqtt").await;
            return Err(Refusal::BadClientId);
        }
        // [MQTT-3.1.3-8]: 3.1.1 refuses an empty client id for a persistent session. 5.0 dropped
        // that rule: the assigned id (told in CONNACK) names the session for a later resume.
        (Identity::Application { .. }, "") if !connect.clean_start && connect.protocol == Protocol::V311 => {
            return Err(Refusal::BadClientId);
        }
        (Identity::Application { .. }, "") => (format!("auto-{}", rampart_crypto::random_id(8)), true),
        (Identity::Application { .. }, client_id) => (client_id.to_owned(), false),
    };
    if let Some(will) = &connect.will {
        let rules = shared.policies.get(platform.store.as_ref(), identity.tenant()).await.map_err(|error| {
            tracing::error!(%error, "loading the topic policy failed");
            Refusal::Unavailable
        })?;
        if let PublishDecision::Denied(why) = authorize_publish(&rules.topics, &identity.requester(), &will.topic) {
            shared.count_denial();
            shared.raise_acl_violation(&identity, &will.topic, "will", why, Some(peer), 0);
            return Err(Refusal::NotAuthorized);
        }
    }
    Ok(Admitted { identity, credential, client_id, assigned })
}

fn device_identity(device: AuthenticatedDevice, credential: Credential) -> (Identity, Credential) {
    (Identity::Device { tenant: device.device.tenant, device: device.device.id }, credential)
}

fn auth_refusal(error: &DeviceAuthError) -> Refusal {
    match error {
        DeviceAuthError::BadCredentials { .. } => Refusal::BadCredentials,
        DeviceAuthError::NotAuthorized { .. } => Refusal::NotAuthorized,
        DeviceAuthError::Platform(platform_error) => {
            tracing::error!(error = %platform_error, "authentication could not complete");
            Refusal::Unavailable
        }
    }
}

/// What woke the connection loop.
enum Wake {
    Closed(u8),
    Read(std::io::Result<usize>),
    Deliver(Box<OutgoingMessage>),
    Stored(Box<StoreOutcome>),
    Tick,
}

/// How the loop ended, for the will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The session said close; `will` as it decided.
    Session { will: bool },
    /// The socket failed or closed without DISCONNECT: the will is published.
    Abrupt,
}

struct Connection {
    shared: Arc<Shared>,
    identity: Identity,
    key: SessionKey,
    entry: Arc<SessionEntry>,
    connection_id: u64,
    peer: SocketAddr,
    session: Session,
    protocol: Protocol,
    out: BytesMut,
    pending: FuturesUnordered<StoreFuture>,
    /// Boxed: most connections have no will, and the connection's state should stay small.
    will: Option<Box<Will>>,
    closing: Option<Ending>,
    sent_disconnect: bool,
    /// Boxed and made at the first denial: most connections are never denied anything.
    denials: Option<Box<DenialBudget>>,
}

/// `acl_violation` events one connection records in full per window. Further denials in the
/// window are counted and recorded as one event carrying `suppressed` (when the next window
/// starts, or when the connection ends), so a flood of denied publishes cannot become a flood
/// of security-event writes; every denial is still accounted for.
const ACL_EVENTS_PER_WINDOW: u32 = 10;
const ACL_EVENT_WINDOW_MS: u64 = 10_000;

struct DenialBudget {
    window_start_ms: u64,
    recorded: u32,
    /// The window's denials beyond the budget, if any.
    suppressed: Option<Suppressed>,
}

/// How many denials were only counted, and the last of them.
struct Suppressed {
    topic: String,
    action: &'static str,
    why: &'static str,
    count: u32,
}

impl DenialBudget {
    fn starting(now_ms: u64) -> DenialBudget {
        DenialBudget { window_start_ms: now_ms, recorded: 0, suppressed: None }
    }
}

impl Connection {
    /// Takes the session over, installs the connection and answers the CONNECT. `None` when
    /// the CONNECT was refused (the refusal is already written).
    async fn start(
        shared: Arc<Shared>,
        mut stream: Stream,
        buffer: BytesMut,
        peer: SocketAddr,
        connect: Connect,
        admitted: Admitted,
    ) -> Option<Ready> {
        let Admitted { identity, credential, client_id, assigned } = admitted;
        let protocol = connect.protocol;
        let client = match &identity {
            Identity::Device { device, .. } => ClientRef::Device(device.clone()),
            Identity::Application { .. } => ClientRef::Application(client_id.clone()),
        };
        let key: SessionKey = Arc::new(SessionId { tenant: identity.tenant().to_owned(), client });
        let rules = match Box::pin(shared.policies.get(shared.platform.store.as_ref(), &key.tenant)).await {
            Ok(rules) => rules,
            Err(error) => {
                tracing::error!(%error, "loading the tenant policy failed");
                let _best_effort =
                    write_packets(&mut stream, &[refused_connack(Refusal::Unavailable, protocol)], protocol).await;
                return None;
            }
        };
        if let Some(entry) = shared.registry.get(&key)
            && let Err(refusal) = Box::pin(take_over(&shared, &entry, &identity, &rules, peer)).await
        {
            let _best_effort = write_packets(&mut stream, &[refused_connack(refusal, protocol)], protocol).await;
            return None;
        }
        let (sender, receiver) = mpsc::channel(shared.settings.outbound_channel.max(1));
        let close = Arc::new(CloseSignal::default());
        let (finished_sender, finished) = watch::channel(());
        let connection_id = shared.registry.next_connection_id();
        let now = shared.now_ms();
        let (entry, claimed) = shared.registry.with_slot(&key, |slot| {
            if slot.live.is_some() {
                // Another newcomer won the race for this session.
                return None;
            }
            slot.live = Some(Live {
                connection_id,
                sender,
                close: Arc::clone(&close),
                address: peer.ip(),
                credential,
                finished,
                overflow: None,
            });
            // A will still waiting for its delay is cancelled by the reconnect.
            slot.pending_will = None;
            let parked = slot.parked.take().filter(|parked| parked.expires_at_ms.is_none_or(|at| at > now));
            if connect.clean_start || parked.is_none() {
                for filter in std::mem::take(&mut slot.subscriptions).into_keys() {
                    shared.router.unsubscribe(&key, &filter);
                }
            }
            Some(parked.map(|parked| parked.state))
        });
        let Some(resumed) = claimed else {
            let _best_effort =
                write_packets(&mut stream, &[refused_connack(Refusal::NotAuthorized, protocol)], protocol).await;
            shared.registry.remove_if_idle(&key);
            return None;
        };
        let (session, mut connack, actions) = Session::accept(&connect, shared.session_config, resumed, now);
        if protocol == Protocol::V5 {
            if assigned {
                connack.properties.assigned_client_identifier = Some(client_id);
            }
            // A session expiry above our cap is announced as the cap (5.0 §3.2.2.3.2).
            let cap = shared.settings.max_session_expiry_s;
            if connect.properties.session_expiry_interval.is_some_and(|asked| asked > cap) {
                connack.properties.session_expiry_interval = Some(cap);
            }
        }
        let mut connection = Connection {
            shared: Arc::clone(&shared),
            identity,
            key,
            entry,
            connection_id,
            peer,
            session,
            protocol,
            out: BytesMut::new(),
            pending: FuturesUnordered::new(),
            will: connect.will.map(Box::new),
            closing: None,
            sent_disconnect: false,
            denials: None,
        };
        connection.encode(&Packet::ConnAck(connack));
        if let Identity::Device { tenant, device } = &connection.identity {
            let address = peer.ip().to_string();
            let at = shared.platform.now_ms();
            if let Err(error) =
                Box::pin(shared.platform.store.mark_device_connected(tenant, device, at, &address)).await
            {
                tracing::warn!(%error, tenant, device, "recording the connect failed");
            }
        }
        tracing::debug!(tenant = %connection.key.tenant, client = ?connection.key.client, %peer, "connected");
        connection.carry_out(actions).await;
        Some(Ready { connection, stream, buffer, receiver, close, finished_sender })
    }

    /// The connection loop; returns when the connection is closed and cleaned up.
    async fn run(
        mut self,
        mut stream: Stream,
        mut buffer: BytesMut,
        mut receiver: mpsc::Receiver<Box<OutgoingMessage>>,
        close: Arc<CloseSignal>,
        finished_sender: watch::Sender<()>,
        done: mpsc::Sender<()>,
    ) {
        let max_packet_size = self.shared.settings.max_packet_size as usize;
        // Packets the client sent right behind its CONNECT may already be buffered.
        Box::pin(self.decode_all(&mut buffer, max_packet_size)).await;
        while self.closing.is_none() {
            if !self.out.is_empty() {
                let flushed = Box::pin(write_unless_closed(&mut stream, &self.out, &close)).await;
                self.out.clear();
                if self.out.capacity() > SHRINK_ABOVE {
                    self.out = BytesMut::new();
                }
                if flushed.is_err() {
                    self.closing = Some(Ending::Abrupt);
                    break;
                }
            }
            if buffer.is_empty() && buffer.capacity() > SHRINK_ABOVE {
                buffer = BytesMut::with_capacity(INITIAL_READ_CAPACITY);
            }
            reserve_for_read(&mut buffer);
            let deadline = self.session.next_deadline().map(|at| self.shared.instant_at(at));
            let wake = tokio::select! {
                biased;
                () = close.wait() => Wake::Closed(close.requested().unwrap_or(reason::ADMINISTRATIVE_ACTION)),
                Some(outcome) = self.pending.next(), if !self.pending.is_empty() => Wake::Stored(Box::new(outcome)),
                result = stream.read_buf(&mut buffer) => Wake::Read(result),
                Some(message) = receiver.recv() => Wake::Deliver(message),
                () = sleep_until_opt(deadline) => Wake::Tick,
            };
            match wake {
                Wake::Closed(reason_code) => {
                    // A revoked or deleted device does not get its will published.
                    let will = reason_code != reason::ADMINISTRATIVE_ACTION;
                    let actions = self.session.close(reason_code, will);
                    self.carry_out(actions).await;
                }
                Wake::Read(Ok(0)) | Wake::Read(Err(_)) => self.closing = Some(Ending::Abrupt),
                Wake::Read(Ok(_)) => Box::pin(self.decode_all(&mut buffer, max_packet_size)).await,
                Wake::Deliver(message) => {
                    if self.may_receive(&message.topic).await {
                        let now = self.shared.now_ms();
                        let actions = self.session.publish(*message, now);
                        let overflowed = actions
                            .iter()
                            .any(|action| matches!(action, Action::Dropped { why: DropReason::QueueFull, .. }));
                        self.carry_out(actions).await;
                        if overflowed {
                            // The client's inflight window and our queue behind it are full: it
                            // does not keep up. Losing its messages quietly is worse than closing
                            // (a persistent session keeps the queue for the next connection).
                            tracing::warn!(
                                tenant = %self.key.tenant,
                                client = ?self.key.client,
                                "a subscriber's queue is full: closing its connection (quota exceeded)"
                            );
                            let actions = self.session.close(reason::QUOTA_EXCEEDED, true);
                            self.carry_out(actions).await;
                        }
                    }
                }
                Wake::Stored(outcome) => {
                    Box::pin(self.stored(*outcome)).await;
                    // Acknowledge every store already finished in one write.
                    while let Some(Some(outcome)) = self.pending.next().now_or_never() {
                        Box::pin(self.stored(outcome)).await;
                    }
                }
                Wake::Tick => {
                    let now = self.shared.now_ms();
                    let actions = self.session.tick(now);
                    self.carry_out(actions).await;
                }
            }
        }
        Box::pin(self.close_down(stream, receiver)).await;
        // Dropping these tells a waiting newcomer that the session is handed over, and a
        // shutdown that this connection is done.
        drop(finished_sender);
        drop(done);
    }

    /// Writes what is left, closes the socket and cleans up.
    async fn close_down(self, mut stream: Stream, receiver: mpsc::Receiver<Box<OutgoingMessage>>) {
        if !self.out.is_empty() {
            let written = timeout(STALLED_WRITE_GRACE, write_and_flush(&mut stream, &self.out)).await;
            if self.sent_disconnect && matches!(written, Ok(Ok(()))) {
                // Some clients stop reading at end of stream before handling what came with
                // it; give them a moment to read the reason and close first.
                let _peer_closed_or_timed_out = timeout(DISCONNECT_LINGER, async {
                    let mut scratch = [0u8; 256];
                    while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        }
        let _best_effort = timeout(STALLED_WRITE_GRACE, stream.shutdown()).await;
        drop(stream);
        Box::pin(self.finish(receiver)).await;
    }

    async fn decode_all(&mut self, buffer: &mut BytesMut, max_packet_size: usize) {
        while self.closing.is_none() {
            match decode(buffer, Some(self.protocol), max_packet_size) {
                Ok(Some(packet)) => {
                    let now = self.shared.now_ms();
                    let actions = self.session.handle(packet, now);
                    self.carry_out(actions).await;
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%error, peer = %self.peer, "undecodable packet");
                    let actions = self.session.close(error.reason_code(), true);
                    self.carry_out(actions).await;
                    // Whatever follows a bad packet is not trusted.
                    buffer.clear();
                    if self.closing.is_none() {
                        self.closing = Some(Ending::Abrupt);
                    }
                    return;
                }
            }
        }
    }

    fn encode(&mut self, packet: &Packet) {
        if let Err(error) = encode(packet, self.protocol, &mut self.out) {
            tracing::warn!(%error, "dropping a packet that cannot be encoded");
        }
    }

    /// Carries out the session's actions, in order, and those they lead to.
    /// Boxed: it is awaited from many places and holds the bigger futures of the handlers.
    fn carry_out(&mut self, actions: Vec<Action>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.carry_out_inner(actions))
    }

    async fn carry_out_inner(&mut self, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Send(packet) => self.encode(&packet),
                Action::Publish(publish) => queue.extend(self.incoming_publish(publish).await),
                Action::Subscribe(subscribe) => queue.extend(self.subscribe(subscribe).await),
                Action::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe),
                Action::Dropped { topic, why } => {
                    if why == DropReason::QueueFull {
                        self.shared.count_dropped(1);
                    }
                    tracing::debug!(%topic, ?why, "outgoing message dropped");
                }
                Action::Close { reason: reason_code, send, will } => {
                    if send {
                        self.encode(&Packet::Disconnect(Disconnect {
                            reason: reason_code,
                            properties: Properties::default(),
                        }));
                        self.sent_disconnect = true;
                    }
                    self.closing = Some(Ending::Session { will });
                }
            }
        }
    }

    fn routed_message(&self, publish: &Publish) -> RoutedMessage {
        let now = self.shared.now_ms();
        let properties = forwarded_properties(&publish.properties);
        RoutedMessage {
            topic: publish.topic.clone(),
            payload: publish.payload.clone(),
            qos: publish.qos,
            retain: publish.retain,
            properties,
            expires_at_ms: publish.properties.message_expiry_interval.map(|s| now + u64::from(s) * 1000),
        }
    }

    async fn incoming_publish(&mut self, publish: Publish) -> Vec<Action> {
        let rules = match self.rules().await {
            Some(rules) => rules,
            None => return self.refuse_publish(&publish, reason::UNSPECIFIED_ERROR),
        };
        let decision = authorize_publish(&rules.topics, &self.identity.requester(), &publish.topic);
        let message = self.routed_message(&publish);
        match decision {
            PublishDecision::Denied(why) => {
                self.denied(&publish.topic, "publish", why);
                let code = match self.protocol {
                    Protocol::V5 => reason::NOT_AUTHORIZED,
                    // 3.1.1 has no negative PUBACK: the message is dropped, and acknowledged
                    // so that the client does not re-send it forever.
                    Protocol::V311 => reason::SUCCESS,
                };
                self.refuse_publish(&publish, code)
            }
            PublishDecision::Routed => {
                let delivered = self.shared.route(&self.key, message);
                let code = match (delivered, self.protocol) {
                    (0, Protocol::V5) => reason::NO_MATCHING_SUBSCRIBERS,
                    _ => reason::SUCCESS,
                };
                match publish.packet_id {
                    Some(packet_id) if publish.qos != QoS::AtMostOnce => self.session.inbound_stored(packet_id, code),
                    _ => Vec::new(),
                }
            }
            PublishDecision::Platform(topic) => self.platform_publish(publish, topic, message),
        }
    }

    /// Records a denial as an `acl_violation` event, within this connection's budget.
    fn denied(&mut self, topic: &str, action: &'static str, why: &'static str) {
        self.shared.count_denial();
        let now = self.shared.now_ms();
        if self.denials.as_ref().is_some_and(|budget| now >= budget.window_start_ms.saturating_add(ACL_EVENT_WINDOW_MS))
        {
            self.report_suppressed();
            self.denials = None;
        }
        let budget = self.denials.get_or_insert_with(|| Box::new(DenialBudget::starting(now)));
        if budget.recorded < ACL_EVENTS_PER_WINDOW {
            budget.recorded += 1;
            self.shared.raise_acl_violation(&self.identity, topic, action, why, Some(self.peer), 0);
        } else {
            budget.suppressed = Some(Suppressed {
                topic: topic.to_owned(),
                action,
                why,
                count: budget.suppressed.as_ref().map_or(0, |last| last.count) + 1,
            });
        }
    }

    /// Records the denials of the current window that were only counted, as one event.
    fn report_suppressed(&mut self) {
        if let Some(last) = self.denials.as_mut().and_then(|budget| budget.suppressed.take()) {
            // Counted when they happened.
            self.shared.raise_acl_violation(
                &self.identity,
                &last.topic,
                last.action,
                last.why,
                Some(self.peer),
                last.count,
            );
        }
    }

    fn refuse_publish(&mut self, publish: &Publish, code: u8) -> Vec<Action> {
        match publish.packet_id {
            Some(packet_id) if publish.qos != QoS::AtMostOnce => self.session.inbound_stored(packet_id, code),
            _ => Vec::new(),
        }
    }

    fn platform_publish(&mut self, publish: Publish, topic: PlatformTopic, message: RoutedMessage) -> Vec<Action> {
        let Identity::Device { tenant, device } = &self.identity else { return Vec::new() };
        let kind = match topic {
            PlatformTopic::Telemetry => DataKind::Telemetry,
            PlatformTopic::Events => DataKind::Events,
            PlatformTopic::Alarms => DataKind::Alarms,
            PlatformTopic::TwinReported => DataKind::TwinReported,
            PlatformTopic::Attestation => DataKind::Attestation,
            PlatformTopic::OperationStatus(_) => {
                // FIXME(issue 3): operations are a later issue; their status updates are
                // routed to subscribers but not stored yet.
                self.shared.route(&self.key, message);
                return self.refuse_publish(&publish, reason::SUCCESS);
            }
        };
        let received_at = self.shared.platform.now_ms();
        let packet_id = match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {
                match self.shared.ingestor.submit_nowait(tenant, device, kind, &publish.payload, received_at) {
                    Ok(()) => {
                        self.shared.route(&self.key, message);
                    }
                    Err(IngestError::Malformed(why)) => {
                        tracing::debug!(tenant, device, %why, "malformed QoS 0 payload")
                    }
                    Err(error) => tracing::warn!(tenant, device, %error, "QoS 0 message not stored"),
                }
                return Vec::new();
            }
            (_, Some(packet_id)) => packet_id,
        };
        let ingestor = self.shared.ingestor.clone();
        let (tenant, device) = (tenant.clone(), device.clone());
        let payload: Bytes = publish.payload;
        self.pending.push(Box::pin(async move {
            let result = ingestor.submit(&tenant, &device, kind, &payload, received_at).await;
            StoreOutcome { packet_id, result, message }
        }));
        Vec::new()
    }

    /// A store finished: acknowledge (or refuse) and route what was stored.
    async fn stored(&mut self, outcome: StoreOutcome) {
        let StoreOutcome { packet_id, result, message } = outcome;
        let code = match result {
            Ok(()) => {
                self.shared.route(&self.key, message);
                reason::SUCCESS
            }
            Err(IngestError::Malformed(why)) => {
                tracing::debug!(%why, client = ?self.key.client, "malformed payload");
                match self.protocol {
                    Protocol::V5 => reason::PAYLOAD_FORMAT_INVALID,
                    // 3.1.1: dropped (nothing stored), acknowledged so it is not re-sent.
                    Protocol::V311 => reason::SUCCESS,
                }
            }
            Err(IngestError::UnknownDevice { .. }) => reason::NOT_AUTHORIZED,
            Err(error) => {
                tracing::error!(%error, "storing a message failed; not acknowledged");
                match self.protocol {
                    Protocol::V5 => reason::UNSPECIFIED_ERROR,
                    Protocol::V311 => {
                        // Without an acknowledgement the client re-sends after reconnecting.
                        let actions = self.session.close(reason::UNSPECIFIED_ERROR, true);
                        self.carry_out(actions).await;
                        return;
                    }
                }
            }
        };
        let actions = self.session.inbound_stored(packet_id, code);
        self.carry_out(actions).await;
    }

    /// Subscriptions are authorised when made; this checks each delivery against the topic
    /// policy in force now, so a policy change withdraws a topic from live subscriptions too.
    async fn may_receive(&mut self, topic: &str) -> bool {
        match self.rules().await {
            Some(rules) => may_deliver(&rules.topics, &self.identity.requester(), topic),
            None => false,
        }
    }

    async fn rules(&mut self) -> Option<Arc<TenantRules>> {
        match self.shared.policies.get(self.shared.platform.store.as_ref(), &self.key.tenant).await {
            Ok(rules) => Some(rules),
            Err(error) => {
                tracing::error!(%error, "loading the topic policy failed");
                None
            }
        }
    }

    async fn subscribe(&mut self, subscribe: Subscribe) -> Vec<Action> {
        let rules = self.rules().await.unwrap_or_default();
        let too_many = self.identity.device().is_some() && subscribe.filters.len() > MAX_DEVICE_FILTERS;
        let identifier = subscribe.properties.subscription_identifiers.first().copied();
        let now = self.shared.now_ms();
        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (filter, options) in &subscribe.filters {
            if !valid_topic_filter(filter) {
                reasons.push(reason::TOPIC_FILTER_INVALID);
                continue;
            }
            let decision = match too_many {
                true => SubscribeDecision::Denied("more than 8 filters in one SUBSCRIBE"),
                false => authorize_subscribe(&rules.topics, &self.identity.requester(), filter),
            };
            if let SubscribeDecision::Denied(why) = decision {
                self.denied(filter, "subscribe", why);
                reasons.push(reason::NOT_AUTHORIZED);
                continue;
            }
            let granted = SubOptions {
                qos: options.qos,
                no_local: options.no_local,
                retain_as_published: options.retain_as_published,
                identifier,
            };
            let new = self.shared.router.subscribe(&self.key, filter, granted);
            self.entry.lock().subscriptions.insert(filter.clone(), granted);
            reasons.push(options.qos as u8);
            let wants_retained = match options.retain_handling {
                0 => true,
                1 => new,
                _ => false,
            };
            if wants_retained && parse_shared(filter).is_none() {
                for message in self.shared.router.retained_for(&self.key.tenant, filter, now) {
                    retained.push((message, granted));
                }
            }
        }
        let mut actions = vec![Action::Send(Packet::SubAck(SubAck {
            packet_id: subscribe.packet_id,
            reasons,
            properties: Properties::default(),
        }))];
        for (message, granted) in retained {
            let mut properties = message.properties;
            properties.subscription_identifiers = granted.identifier.into_iter().collect();
            let outgoing = OutgoingMessage {
                topic: message.topic,
                payload: message.payload,
                qos: message.qos.min(granted.qos),
                retain: true,
                properties,
                expires_at_ms: message.expires_at_ms,
            };
            actions.extend(self.session.publish(outgoing, now));
        }
        actions
    }

    fn unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let existed = self.shared.router.unsubscribe(&self.key, filter);
            self.entry.lock().subscriptions.remove(filter);
            reasons.push(match existed {
                true => reason::SUCCESS,
                false => reason::NO_SUBSCRIPTION_EXISTED,
            });
        }
        self.encode(&Packet::UnsubAck(UnsubAck {
            packet_id: unsubscribe.packet_id,
            reasons,
            properties: Properties::default(),
        }));
    }

    /// After the socket is gone: finish outstanding stores, publish or schedule the will,
    /// park a persistent session or drop a clean one, record the disconnect.
    async fn finish(mut self, mut receiver: mpsc::Receiver<Box<OutgoingMessage>>) {
        self.report_suppressed();
        let drain_until = Instant::now() + STORE_DRAIN_WAIT;
        while !self.pending.is_empty() {
            match timeout_at(drain_until, self.pending.next()).await {
                Ok(Some(outcome)) => {
                    if outcome.result.is_ok() {
                        self.shared.route(&self.key, outcome.message);
                        self.session.inbound_stored(outcome.packet_id, reason::SUCCESS);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!("outstanding stores did not finish in time");
                    break;
                }
            }
        }
        let publish_will = match self.closing {
            Some(Ending::Session { will }) => will,
            Some(Ending::Abrupt) | None => true,
        };
        let now = self.shared.now_ms();
        let expiry_s = self.session.session_expiry_interval().min(self.shared.settings.max_session_expiry_s);
        let mut state = self.session.into_state();
        let mut will_now = None;
        let still_ours = {
            let mut slot = self.entry.lock();
            let ours = slot.live.as_ref().is_some_and(|live| live.connection_id == self.connection_id);
            if ours {
                let overflow = slot.live.take().and_then(|live| live.overflow);
                let overflowed = overflow.is_some();
                let persistent = expiry_s > 0;
                // What was routed to this connection and not handled yet: the channel, then what
                // was held after the channel overflowed. A persistent session keeps the QoS 1/2
                // ones (up to its queue limit); beyond that, or when the gateway closed a clean
                // session for overflowing, they are lost, and counted.
                let mut lost = 0u64;
                let max_queued = self.shared.session_config.max_queued;
                let leftovers = std::iter::from_fn(|| receiver.try_recv().ok().map(|message| *message));
                for message in leftovers.chain(overflow.into_iter().flatten()) {
                    let qos = message.qos;
                    let kept = persistent && state.enqueue(message, max_queued);
                    if !kept && qos != QoS::AtMostOnce && (persistent || overflowed) {
                        lost += 1;
                    }
                }
                if lost > 0 {
                    self.shared.count_dropped(lost);
                    tracing::warn!(tenant = %self.key.tenant, client = ?self.key.client, lost, "undelivered messages lost at disconnect");
                }
                if persistent {
                    slot.parked = Some(Box::new(Parked {
                        state,
                        expires_at_ms: (expiry_s != u32::MAX).then(|| now + u64::from(expiry_s) * 1000),
                    }));
                } else {
                    for filter in std::mem::take(&mut slot.subscriptions).into_keys() {
                        self.shared.router.unsubscribe(&self.key, &filter);
                    }
                }
                if publish_will && let Some(will) = self.will.take() {
                    let delay_s = will.properties.will_delay_interval.unwrap_or(0).min(expiry_s);
                    let message = will_message(&will, now);
                    if delay_s == 0 {
                        will_now = Some(message);
                    } else {
                        let fire_at_ms = now + u64::from(delay_s) * 1000;
                        slot.pending_will = Some(Box::new(PendingWill { fire_at_ms, message }));
                    }
                }
            }
            ours
        };
        if let Some(message) = will_now {
            self.shared.publish_will(&self.key, message);
        }
        self.shared.registry.remove_if_idle(&self.key);
        if still_ours && let Identity::Device { tenant, device } = &self.identity {
            let at = self.shared.platform.now_ms();
            if let Err(error) = self.shared.platform.store.mark_device_disconnected(tenant, device, at).await {
                tracing::debug!(%error, tenant, device, "recording the disconnect failed");
            }
        }
        tracing::debug!(tenant = %self.key.tenant, client = ?self.key.client, peer = %self.peer, "disconnected");
    }
}

/// The properties a subscriber receives from a publish (5.0).
fn forwarded_properties(properties: &Properties) -> Properties {
    Properties {
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type.clone(),
        response_topic: properties.response_topic.clone(),
        correlation_data: properties.correlation_data.clone(),
        user_properties: properties.user_properties.clone(),
        ..Properties::default()
    }
}

fn will_message(will: &Will, now: u64) -> RoutedMessage {
    RoutedMessage {
        topic: will.topic.clone(),
        payload: will.payload.clone(),
        qos: will.qos,
        retain: will.retain,
        properties: forwarded_properties(&will.properties),
        expires_at_ms: will.properties.message_expiry_interval.map(|s| now + u64::from(s) * 1000),
    }
}

/// Writes and flushes `out`. When the connection is asked to close meanwhile (a client that
/// stopped reading blocks the write), the write gets [`STALLED_WRITE_GRACE`] more, then fails.
async fn write_unless_closed(stream: &mut Stream, out: &[u8], close: &CloseSignal) -> std::io::Result<()> {
    let write = write_and_flush(stream, out);
    tokio::pin!(write);
    tokio::select! {
        biased;
        result = &mut write => return result,
        () = close.wait() => {}
    }
    match timeout(STALLED_WRITE_GRACE, write).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client stopped reading")),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Makes room for a newcomer: refuses it under `client_takeover: reject`, raises
/// `duplicate_connection` when the live connection comes from another address, and otherwise
/// closes the live connection (0x8E) and waits for it to hand the session over.
async fn take_over(
    shared: &Shared,
    entry: &SessionEntry,
    identity: &Identity,
    rules: &TenantRules,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    let live = {
        let slot = entry.lock();
        slot.live.as_ref().map(|live| (Arc::clone(&live.close), live.finished.clone(), live.address))
    };
    let Some((close, mut finished, address)) = live else { return Ok(()) };
    if let Identity::Device { tenant, device } = identity {
        if address != peer.ip() {
            let mut draft = SecurityEventDraft::new(tenant, "duplicate_connection", Severity::Minor);
            draft.device = Some(device.clone());
            draft.source_ip = Some(peer.ip().to_string());
            draft.details = serde_json::json!({"connected_from": address.to_string(), "protocol": "mqtt"});
            shared.raise_in_background(draft);
        }
        if rules.reject_takeover {
            return Err(Refusal::NotAuthorized);
        }
    }
    close.close(reason::SESSION_TAKEN_OVER);
    // `changed` fails once the old connection dropped its end: it is done with the session.
    let _done_or_timed_out = timeout(TAKEOVER_WAIT, async { while finished.changed().await.is_ok() {} }).await;
    Ok(())
}

impl Shared {
    /// Routes a message published in `publisher`'s tenant to every matching subscriber (and
    /// keeps it when retained). Answers how many sessions accepted it.
    pub(crate) fn route(&self, publisher: &SessionKey, message: RoutedMessage) -> usize {
        let tenant = &publisher.tenant;
        let platform_topic = rampart_core::acl::parse_device_topic(&message.topic).is_some();
        if message.retain && !platform_topic {
            self.router.retain(tenant, &message);
        }
        let deliveries = self.router.route(tenant, &message.topic, Some(publisher));
        let mut accepted = 0;
        for delivery in deliveries {
            let mut properties = message.properties.clone();
            properties.subscription_identifiers = delivery.identifiers;
            let outgoing = OutgoingMessage {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos: message.qos.min(delivery.qos),
                retain: message.retain && delivery.retain_as_published,
                properties,
                expires_at_ms: message.expires_at_ms,
            };
            match self.registry.offer(&delivery.session, outgoing, self.session_config.max_queued) {
                crate::registry::Offer::Accepted | crate::registry::Offer::Held => accepted += 1,
                crate::registry::Offer::Dropped => {
                    self.count_dropped(1);
                }
            }
        }
        accepted
    }

    /// Publishes a will (now due). A will on a device's platform topic is stored first, like
    /// any QoS 0 message of the device.
    pub(crate) fn publish_will(&self, publisher: &SessionKey, message: RoutedMessage) {
        if let ClientRef::Device(device) = &publisher.client
            && let Some((owner, kind)) = rampart_core::acl::parse_device_topic(&message.topic)
            && owner == device
        {
            let kind = match kind {
                PlatformTopic::Telemetry => Some(DataKind::Telemetry),
                PlatformTopic::Events => Some(DataKind::Events),
                PlatformTopic::Alarms => Some(DataKind::Alarms),
                PlatformTopic::TwinReported => Some(DataKind::TwinReported),
                PlatformTopic::Attestation => Some(DataKind::Attestation),
                PlatformTopic::OperationStatus(_) => None,
            };
            if let Some(kind) = kind {
                let now = self.platform.now_ms();
                if let Err(error) = self.ingestor.submit_nowait(&publisher.tenant, device, kind, &message.payload, now)
                {
                    tracing::debug!(%error, "will message not stored");
                    return;
                }
            }
        }
        self.route(publisher, message);
    }

    /// Counts messages lost to a subscriber that did not keep up.
    pub(crate) fn count_dropped(&self, messages: u64) {
        self.stats.dropped.fetch_add(messages, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts a denial (every one, recorded as an event or not).
    pub(crate) fn count_denial(&self) {
        self.stats.acl_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records an `acl_violation` security event without holding up the connection;
    /// `suppressed` > 0 says how many denials, the last of them this one, it stands for.
    pub(crate) fn raise_acl_violation(
        &self,
        identity: &Identity,
        topic: &str,
        action: &str,
        why: &str,
        peer: Option<SocketAddr>,
        suppressed: u32,
    ) {
        let mut draft = SecurityEventDraft::new(identity.tenant(), "acl_violation", Severity::Minor);
        draft.source_ip = peer.map(|peer| peer.ip().to_string());
        let mut details = serde_json::json!({"topic": topic, "action": action, "reason": why, "protocol": "mqtt"});
        if suppressed > 0 {
            details["suppressed"] = serde_json::Value::from(suppressed);
        }
        match identity {
            Identity::Device { device, .. } => {
                draft.device = Some(device.clone());
                details["device"] = serde_json::Value::String(device.clone());
            }
            Identity::Application { key_id, .. } => {
                details["api_key"] = serde_json::Value::String(key_id.clone());
            }
        }
        draft.details = details;
        self.raise_in_background(draft);
    }

    pub(crate) fn raise_in_background(&self, draft: SecurityEventDraft) {
        let platform = Arc::clone(&self.platform);
        tokio::spawn(async move { platform.raise_security_event(draft).await });
    }
}
