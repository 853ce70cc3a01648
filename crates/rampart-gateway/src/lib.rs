//! Rampart's MQTT gateway (SPEC §7): MQTT 3.1.1 and 5.0 over TLS for devices and
//! applications.
//!
//! - [`Gateway::start`] binds the listener and serves every connection in its own task
//!   (`connection`): TLS and CONNECT within the connect timeout, authentication (tokens,
//!   tenant-CA and trusted-CA certificates, API keys; `rampart_platform::device_auth`), then
//!   the sans-IO `rampart_mqtt::Session` drives the protocol.
//! - `rampart_core::acl` decides every publish and subscription (per-device namespace, tenant topic
//!   policies, free namespace); denials become `acl_violation` security events.
//! - Device data on platform topics goes to the [`rampart_data::Ingestor`]; QoS 1/2 are
//!   acknowledged only after the durable commit. Then `router` delivers to subscribers of the
//!   same tenant (retained messages, shared subscriptions), through `registry`, which also
//!   keeps persistent sessions while their clients are away.
//! - Control events (revocation, quarantine, deleted credentials or trusted CAs, changed
//!   authority, policy changes, deleted tenants) close the affected connections at once and
//!   forget the sessions and wills they invalidate; if events were missed, every connection's
//!   credential is checked again instead. Applications' authority is also checked again every
//!   few seconds (expired keys, removed permissions).
//! - `reasons` chooses every reason code; `guard` is the hook detection and response use at
//!   accept, CONNECT, publish and subscribe.
//! - `retained` writes retained messages to the store (through the platform) behind the
//!   publish path, sealed under the tenant key, and loads them back at start.
//!
//! Persistent sessions and pending wills live in memory: they do not survive a restart yet.

mod connection;
mod error;
mod guard;
mod identity;
mod policy;
mod quotas;
pub(crate) mod reasons;
mod registry;
mod retained;
mod router;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rampart_data::Ingestor;
use rampart_mqtt::SessionConfig;
use rampart_platform::{BusMessage, BusReceiver, ControlEvent, DeviceAuthMethod, Platform, ServiceError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

pub use error::GatewayError;
pub use guard::{BlockGuard, Guard, OpenGuard, Origin, Verdict};
pub use tls::{client_cert_verifier, mqtt_server_config};

use crate::identity::Identity;
use crate::policy::PolicyCache;
use crate::reasons::Closing;
use crate::registry::{ClientRef, Registry, SessionEntry, SessionId};
use crate::router::Router;

/// How often parked sessions are expired and delayed wills fired.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Tunables of the MQTT listener.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// Largest packet accepted, checked from the fixed header before the payload is read
    /// (SPEC §7: 256 KiB). Announced to 5.0 clients.
    pub max_packet_size: u32,
    /// Cap on the keep alive clients may ask for, in seconds (0 = no cap); 5.0 clients are
    /// told the capped value (Server Keep Alive).
    pub max_keep_alive_s: u16,
    /// TLS handshake and CONNECT must both complete within this (SPEC §10: 10 s).
    pub connect_timeout: Duration,
    /// Incoming QoS 1/2 publishes a client may have unacknowledged (our Receive Maximum).
    pub receive_maximum: u16,
    /// Outgoing messages kept per session behind the client's inflight window (and while a
    /// persistent session's client is away).
    pub max_queued_messages: usize,
    /// Longest a persistent session is kept after its client left, in seconds; also the
    /// lifetime of 3.1.1 `clean_session = false` sessions.
    pub max_session_expiry_s: u32,
    /// Messages buffered between the router and one connection. A subscriber that lets it
    /// fill with a QoS 1/2 message is disconnected (0x97, quota exceeded) rather than losing
    /// messages quietly: its persistent session keeps what was routed to it (up to
    /// `max_queued_messages`), and whatever is lost is counted in
    /// [`GatewayStats::dropped_messages`]. 1024 covers a subscriber of a few thousand
    /// messages/s pausing for tens of milliseconds (64 did not, under CI load); the buffer
    /// grows only as it fills, so idle connections do not pay for it.
    pub outbound_channel: usize,
    /// How long [`Gateway::shutdown`] waits for connections to close.
    pub shutdown_grace: Duration,
    /// Retained messages one tenant may keep; a new retained topic beyond it is refused
    /// (5.0: PUBACK 0x97).
    pub max_retained_per_tenant: usize,
    /// Persistent sessions one tenant may hold; a CONNECT asking for another is refused
    /// (5.0: CONNACK 0x97, 3.1.1: 3).
    pub max_sessions_per_tenant: usize,
    /// How often applications' authority (key, owner, permissions, scope) is checked again.
    pub authority_recheck: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8883)),
            max_packet_size: 256 * 1024,
            max_keep_alive_s: 3600,
            connect_timeout: Duration::from_secs(10),
            receive_maximum: 1024,
            max_queued_messages: 1000,
            max_session_expiry_s: 3600,
            outbound_channel: 1024,
            shutdown_grace: Duration::from_secs(10),
            max_retained_per_tenant: 100_000,
            max_sessions_per_tenant: 100_000,
            authority_recheck: Duration::from_secs(3),
        }
    }
}

/// A snapshot of the gateway's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayStats {
    /// Sessions known: connected, or persistent and waiting for their client.
    pub sessions: usize,
    /// QoS 1/2 messages lost because a subscriber did not keep up (its channel or queue was
    /// full, or its clean session ended when it was disconnected for that), and QoS 0 messages
    /// dropped for a full channel.
    pub dropped_messages: u64,
    /// Publishes and subscriptions refused by the ACL.
    pub acl_denials: u64,
}

/// Counters of the gateway's work, for metrics and tests.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub dropped: AtomicU64,
    pub acl_denied: AtomicU64,
}

/// State shared by the accept loop, every connection and the background tasks.
pub(crate) struct Shared {
    pub platform: Arc<Platform>,
    pub ingestor: Ingestor,
    pub settings: GatewaySettings,
    pub session_config: SessionConfig,
    pub acceptor: TlsAcceptor,
    pub router: Router,
    pub registry: Registry,
    pub policies: PolicyCache,
    pub guard: Arc<dyn Guard>,
    pub stats: Stats,
    pub quota_events: quotas::QuotaEvents,
    /// The origin of the sessions' monotonic millisecond clock.
    epoch: Instant,
}

impl Shared {
    /// Milliseconds since the gateway started (monotonic): the sessions' `now`.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant of a session deadline given on the `now_ms` scale.
    pub(crate) fn instant_at(&self, at_ms: u64) -> Instant {
        self.epoch + Duration::from_millis(at_ms)
    }
}

/// A running MQTT listener.
pub struct Gateway {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Every connection task holds a clone of the sender; `recv` answers `None` when all ended.
    connections_done: mpsc::Receiver<()>,
    background: Vec<JoinHandle<()>>,
    retained_writer: retained::RetainedWriter,
    accept_loop: JoinHandle<()>,
}

impl Gateway {
    /// Binds `settings.listen` and starts accepting MQTT over TLS (`tls` from
    /// [`mqtt_server_config`]), plus the tasks that act on control events and expire sessions.
    pub async fn start(
        platform: Arc<Platform>,
        ingestor: Ingestor,
        tls: Arc<rustls::ServerConfig>,
        settings: GatewaySettings,
    ) -> Result<Gateway, GatewayError> {
        Gateway::start_guarded(platform, ingestor, tls, settings, Arc::new(OpenGuard)).await
    }

    /// [`Gateway::start`] with a guard at its decision points.
    pub async fn start_guarded(
        platform: Arc<Platform>,
        ingestor: Ingestor,
        tls: Arc<rustls::ServerConfig>,
        settings: GatewaySettings,
        guard: Arc<dyn Guard>,
    ) -> Result<Gateway, GatewayError> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| GatewayError::Bind { addr: settings.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| GatewayError::Bind { addr: settings.listen, source })?;
        let session_config = SessionConfig {
            max_packet_size: settings.max_packet_size,
            receive_maximum: settings.receive_maximum.max(1),
            max_keep_alive: settings.max_keep_alive_s,
            max_queued: settings.max_queued_messages,
            ..SessionConfig::default()
        };
        let control = platform.subscribe();
        let shared = Arc::new(Shared {
            platform,
            ingestor,
            settings,
            session_config,
            acceptor: TlsAcceptor::from(tls),
            router: Router::default(),
            registry: Registry::default(),
            policies: PolicyCache::default(),
            guard,
            stats: Stats::default(),
            quota_events: quotas::QuotaEvents::default(),
            epoch: Instant::now(),
        });
        let restored = retained::load(&shared).await?;
        let retained_writer = retained::RetainedWriter::start(Arc::clone(&shared));
        let (stop, stop_receiver) = watch::channel(false);
        let (done_sender, connections_done) = mpsc::channel(1);
        let accept_loop = tokio::spawn(accept_loop(Arc::clone(&shared), listener, stop_receiver, done_sender));
        let background = vec![
            tokio::spawn(act_on_control_events(Arc::clone(&shared), control)),
            tokio::spawn(sweep(Arc::clone(&shared))),
            tokio::spawn(recheck_applications(Arc::clone(&shared))),
        ];
        tracing::info!(%local_addr, retained_messages = restored, "MQTT listener ready");
        Ok(Gateway { local_addr, shared, stop, connections_done, background, retained_writer, accept_loop })
    }

    /// Counters of the gateway's work so far.
    pub fn stats(&self) -> GatewayStats {
        GatewayStats {
            sessions: self.shared.registry.len(),
            dropped_messages: self.shared.stats.dropped.load(Ordering::Relaxed),
            acl_denials: self.shared.stats.acl_denied.load(Ordering::Relaxed),
        }
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every session (5.0: DISCONNECT 0x8B), waits for the
    /// connections to finish their in-flight stores (up to `shutdown_grace`), writes the
    /// pending retained-message changes (up to `shutdown_grace` again) and flushes the ingestor.
    pub async fn shutdown(mut self) {
        let _receivers_may_be_gone = self.stop.send(true);
        let _accept_loop_ended = self.accept_loop.await;
        self.shared.registry.close_matching(reasons::disconnect(Closing::ShuttingDown), |_, _| true);
        let grace = self.shared.settings.shutdown_grace;
        if tokio::time::timeout(grace, self.connections_done.recv()).await.is_err() {
            tracing::warn!("some MQTT connections did not close within the shutdown grace");
        }
        for task in &self.background {
            task.abort();
        }
        self.retained_writer.finish(grace).await;
        self.shared.ingestor.flush().await;
        tracing::info!("MQTT listener stopped");
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    done_sender: mpsc::Sender<()>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let shared = Arc::clone(&shared);
                    let done = done_sender.clone();
                    tokio::spawn(connection::serve(shared, tcp, peer, done));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting an MQTT connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Closes the connections a control event concerns (within the second SPEC §6 allows: the
/// close signal is acted on at once) and forgets what the event invalidates. Missed events
/// make every connection's credential be checked again.
async fn act_on_control_events(shared: Arc<Shared>, mut bus: BusReceiver) {
    while let Some(message) = bus.recv().await {
        match message {
            BusMessage::Event(event) => apply_control_event(&shared, &event),
            BusMessage::Resync => {
                shared.policies.clear();
                recheck(&shared, |_| true);
            }
        }
    }
}

fn apply_control_event(shared: &Arc<Shared>, event: &ControlEvent) {
    let admin = reasons::disconnect(Closing::Administrative);
    match event {
        ControlEvent::DeviceCutOff { tenant, device, .. } => {
            let key = SessionId { tenant: tenant.clone(), client: ClientRef::Device(device.clone()) };
            shared.registry.close_matching(admin, |id, _| *id == key);
            // A revoked or deleted device's persistent session and pending will go too.
            forget_sessions(shared, |id, _| *id == key);
        }
        ControlEvent::DeviceTokenDeleted { tenant, device, token_id } => {
            shared.registry.close_matching(admin, |id, live| {
                id.tenant == *tenant
                    && matches!(&*live.identity, Identity::Device { device: d, method: DeviceAuthMethod::Token { token_id: t }, .. }
                        if d == device && t == token_id)
            });
        }
        ControlEvent::TrustedCaRemoved { tenant, ca_id } => {
            shared.registry.close_matching(admin, |id, live| {
                id.tenant == *tenant
                    && matches!(&*live.identity, Identity::Device { method: DeviceAuthMethod::TrustedCa { ca_id: c, .. }, .. }
                        if c == ca_id)
            });
        }
        ControlEvent::ApiKeyRevoked { tenant, key_id } => {
            shared.registry.close_matching(admin, |id, live| {
                id.tenant == *tenant && live.identity.api_key() == Some(key_id.as_str())
            });
            // Its persistent sessions belong to nobody now.
            forget_sessions(shared, |id, slot| {
                id.tenant == *tenant && slot.owner_key.as_deref() == Some(key_id.as_str())
            });
        }
        ControlEvent::PrincipalChanged { tenant, username } => recheck(shared, |identity| {
            matches!(identity, Identity::Application { principal }
                if principal.tenant == *tenant && principal.acting_user() == username)
        }),
        ControlEvent::TenantPolicyChanged { tenant } => shared.policies.invalidate(tenant),
        ControlEvent::TenantDeleted { tenant } => {
            shared.registry.close_matching(admin, |id, _| id.tenant == *tenant);
            forget_sessions(shared, |id, _| id.tenant == *tenant);
            shared.router.drop_tenant(tenant);
            shared.policies.invalidate(tenant);
        }
        ControlEvent::DeviceFeedChanged { tenant, device, feed } => {
            let (shared, tenant, device, feed) = (Arc::clone(shared), tenant.clone(), device.clone(), feed.clone());
            tokio::spawn(async move { shared.publish_feed(&tenant, &device, &feed).await });
        }
    }
}

/// Forgets the parked state, subscriptions and pending will of every session matching
/// `filter` (its live connection, if any, is being closed separately).
fn forget_sessions(shared: &Shared, mut filter: impl FnMut(&SessionId, &registry::Slot) -> bool) {
    let matching: Vec<Arc<SessionEntry>> =
        shared.registry.entries(|_| true).into_iter().filter(|entry| filter(&entry.key, &entry.lock())).collect();
    for entry in matching {
        let subscriptions = {
            let mut slot = entry.lock();
            slot.parked = None;
            slot.pending_will = None;
            slot.owner_key = None;
            slot.persistent = false;
            std::mem::take(&mut slot.subscriptions)
        };
        for filter in subscriptions.into_keys() {
            shared.router.unsubscribe(&entry.key, &filter);
        }
        shared.registry.remove_if_idle(&entry.key);
    }
}

/// Checks again, in the background, whether the live connections whose identity matches
/// `filter` are still admitted, and closes those that are not.
fn recheck(shared: &Arc<Shared>, mut filter: impl FnMut(&Identity) -> bool) {
    let matching = shared.registry.live_identities(|_, identity| filter(identity));
    if matching.is_empty() {
        return;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        for (_entry, identity, close) in matching {
            if !shared.still_admitted(&identity).await {
                close.close(reasons::disconnect(Closing::Administrative));
            }
        }
    });
}

/// Checks applications' authority every `authority_recheck`: an expired key, a disabled or
/// deleted owner, a lost permission or a narrower scope end the connection.
async fn recheck_applications(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(shared.settings.authority_recheck);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        recheck(&shared, |identity| matches!(identity, Identity::Application { .. }));
    }
}

impl Shared {
    /// Whether a connection with this identity would still be admitted now, with the same
    /// authority. Storage trouble answers `true`: a connection is not cut off because the
    /// platform could not ask (the next check asks again).
    pub(crate) async fn still_admitted(&self, identity: &Identity) -> bool {
        match identity {
            Identity::Device { tenant, device, method } => {
                match self.platform.device_credential_valid(tenant, device, method).await {
                    Ok(valid) => valid,
                    Err(error) => {
                        tracing::warn!(%error, "could not check a device's credential again");
                        true
                    }
                }
            }
            Identity::Application { principal } => match self.platform.reauthenticate(principal).await {
                Ok(now) => now.permissions == principal.permissions && now.scope == principal.scope,
                Err(ServiceError::Internal(error)) => {
                    tracing::warn!(%error, "could not check an application's authority again");
                    true
                }
                Err(_) => false,
            },
        }
    }
}

/// Expires parked sessions and fires wills whose delay has passed.
async fn sweep(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = shared.now_ms();
        for entry in shared.registry.entries(|_| true) {
            let (will, expired_subscriptions) = {
                let mut slot = entry.lock();
                let will = match &slot.pending_will {
                    Some(pending) if pending.fire_at_ms <= now => {
                        slot.pending_will.take().map(|pending| pending.message)
                    }
                    _ => None,
                };
                let expired = slot.live.is_none()
                    && slot.parked.as_ref().is_some_and(|parked| parked.expires_at_ms.is_some_and(|at| at <= now));
                let subscriptions = match expired {
                    true => {
                        slot.parked = None;
                        std::mem::take(&mut slot.subscriptions)
                    }
                    false => Default::default(),
                };
                (will, subscriptions)
            };
            for filter in expired_subscriptions.into_keys() {
                shared.router.unsubscribe(&entry.key, &filter);
            }
            if let Some(will) = will {
                shared.publish_will(&entry.key, will);
            }
            // Checked first under the entry's own lock: the map's write lock is taken only for
            // entries that are actually idle.
            if entry.lock().is_idle() {
                shared.registry.remove_if_idle(&entry.key);
            }
        }
    }
}
