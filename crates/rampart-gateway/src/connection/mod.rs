//! One MQTT connection, from TCP accept to close: the TLS handshake and the CONNECT (both
//! within the connect timeout), authentication, session takeover, then the loop that feeds
//! the sans-IO [`Session`] with decoded packets, deliveries, store completions and the clock,
//! and carries out its actions. One task per connection; the socket is read with a small
//! buffer that shrinks back after large packets, so idle connections stay cheap.

mod admit;
mod close;
mod denials;
mod feed;
mod publish;
mod start;
mod subscribe;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rampart_data::IngestError;
use rampart_mqtt::{
    Action, ConnAck, Connect, DecodeError, Disconnect, DropReason, OutgoingMessage, Packet, Properties, Protocol,
    Session, Will, decode, encode,
};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::server::TlsStream;

use crate::Shared;
use crate::identity::Identity;
use crate::reasons::{self, Closing, Refusal};
use crate::registry::{CloseSignal, SessionEntry, SessionKey};
use crate::router::RoutedMessage;

use self::admit::admit;
use self::denials::DenialBudget;
use self::subscribe::VisibleDevices;

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

/// The result of storing an incoming QoS 1/2 publish.
struct StoreOutcome {
    packet_id: u16,
    result: Result<(), IngestError>,
    message: RoutedMessage,
}

/// Serves one accepted TCP connection to the end.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, done: mpsc::Sender<()>) {
    if shared.guard.on_accept(peer) == crate::guard::Verdict::Deny {
        tracing::debug!(%peer, "connection refused by the guard");
        return;
    }
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
        code: reasons::connack(refusal, protocol),
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
                    code: reasons::UNACCEPTABLE_PROTOCOL,
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
    /// Shared with the registry, where control events find it.
    identity: Arc<Identity>,
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
    /// For a group-scoped application: which devices it may receive data of (made on first
    /// use, boxed; devices and unconfined applications never need it).
    visible: Option<Box<VisibleDevices>>,
}

impl Connection {
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
        // A resumed device session gets what stands on the feeds it subscribes to.
        Box::pin(self.resume_feeds()).await;
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
                () = close.wait() => Wake::Closed(close.requested().unwrap_or(reasons::disconnect(Closing::Administrative))),
                Some(outcome) = self.pending.next(), if !self.pending.is_empty() => Wake::Stored(Box::new(outcome)),
                result = stream.read_buf(&mut buffer) => Wake::Read(result),
                Some(message) = receiver.recv() => Wake::Deliver(message),
                () = sleep_until_opt(deadline) => Wake::Tick,
            };
            match wake {
                Wake::Closed(reason_code) => {
                    // A revoked or deleted device does not get its will published.
                    let will = reasons::will_on_close(reason_code);
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
                            let actions = self.session.close(reasons::disconnect(Closing::QuotaExceeded), true);
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
