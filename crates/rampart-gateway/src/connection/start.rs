//! Starting a connection: the session takeover (or its refusal), the ownership and quota of
//! persistent sessions, registration in the session table, a second look at the credential
//! once registered (a revocation that raced the CONNECT reaches it either way), and the
//! CONNACK.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures::stream::FuturesUnordered;
use rampart_core::{SecurityEventType, Severity};
use rampart_mqtt::{Connect, Packet, Protocol, Session};
use rampart_platform::SecurityEventDraft;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

use super::admit::Admitted;
use super::{Connection, Ready, Stream, TAKEOVER_WAIT, refused_connack, write_packets};
use crate::Shared;
use crate::identity::Identity;
use crate::policy::TenantRules;
use crate::quotas::Quota;
use crate::reasons::{self, Closing, Refusal};
use crate::registry::{ClientRef, CloseSignal, Live, SessionEntry, SessionId, SessionKey};

/// Whether the CONNECT asks for a session that outlives the connection.
fn asks_persistent(connect: &Connect) -> bool {
    match connect.protocol {
        Protocol::V311 => !connect.clean_start,
        Protocol::V5 => connect.properties.session_expiry_interval.unwrap_or(0) > 0,
    }
}

impl Connection {
    /// Takes the session over, installs the connection and answers the CONNECT. `None` when
    /// the CONNECT was refused (the refusal is already written).
    pub(super) async fn start(
        shared: Arc<Shared>,
        mut stream: Stream,
        buffer: BytesMut,
        peer: SocketAddr,
        connect: Connect,
        admitted: Admitted,
    ) -> Option<Ready> {
        let Admitted { identity, client_id, assigned } = admitted;
        let identity = Arc::new(identity);
        let protocol = connect.protocol;
        let client = match &*identity {
            Identity::Device { device, .. } => ClientRef::Device(device.clone()),
            Identity::Application { .. } => ClientRef::Application(client_id.clone()),
        };
        let key: SessionKey = Arc::new(SessionId { tenant: identity.tenant().to_owned(), client });
        let rules = match Box::pin(shared.policies.get(&shared.platform, &key.tenant)).await {
            Ok(rules) => rules,
            Err(error) => {
                tracing::error!(%error, "loading the tenant policy failed");
                let _best_effort =
                    write_packets(&mut stream, &[refused_connack(Refusal::Unavailable, protocol)], protocol).await;
                return None;
            }
        };
        let refusal = match shared.registry.get(&key) {
            Some(entry) => Box::pin(take_over(&shared, &entry, &identity, &rules, peer)).await.err(),
            None if asks_persistent(&connect)
                && shared.registry.persistent_sessions_of(&key.tenant) >= shared.settings.max_sessions_per_tenant =>
            {
                shared.quota_exceeded(&identity, Quota::PersistentSessions, Some(peer));
                Some(Refusal::QuotaExceeded)
            }
            None => None,
        };
        if let Some(refusal) = refusal {
            let _best_effort = write_packets(&mut stream, &[refused_connack(refusal, protocol)], protocol).await;
            return None;
        }
        let (sender, receiver) = mpsc::channel(shared.settings.outbound_channel.max(1));
        let close = Arc::new(CloseSignal::default());
        let (finished_sender, finished) = watch::channel(());
        let connection_id = shared.registry.next_connection_id();
        let now = shared.now_ms();
        let api_key = identity.api_key().map(str::to_owned);
        let persistent = asks_persistent(&connect);
        let (entry, claimed) = shared.registry.with_slot(&key, |slot| {
            // Another newcomer won the race for this session, or it is another key's.
            if slot.live.is_some() || (slot.owner_key.is_some() && slot.owner_key != api_key) {
                return None;
            }
            slot.live = Some(Live {
                connection_id,
                sender,
                close: Arc::clone(&close),
                address: peer.ip(),
                identity: Arc::clone(&identity),
                finished,
                overflow: None,
            });
            slot.owner_key = api_key;
            slot.persistent = persistent;
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
        // Registered: a revocation published from now on reaches this connection. One that
        // happened between the authentication and now is found by asking again.
        if !Box::pin(shared.still_admitted(&identity)).await {
            shared.registry.with_slot(&key, |slot| {
                if slot.live.as_ref().is_some_and(|live| live.connection_id == connection_id) {
                    slot.live = None;
                }
            });
            shared.registry.remove_if_idle(&key);
            let _best_effort =
                write_packets(&mut stream, &[refused_connack(Refusal::NotAuthorized, protocol)], protocol).await;
            return None;
        }
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
            visible: None,
        };
        connection.encode(&Packet::ConnAck(connack));
        if let Identity::Device { tenant, device, .. } = &*connection.identity {
            let address = peer.ip().to_string();
            if let Err(error) = Box::pin(shared.platform.device_connected(tenant, device, &address)).await {
                tracing::warn!(%error, tenant, device, "recording the connect failed");
            }
        }
        tracing::debug!(tenant = %connection.key.tenant, client = ?connection.key.client, %peer, "connected");
        connection.carry_out(actions).await;
        Some(Ready { connection, stream, buffer, receiver, close, finished_sender })
    }
}

/// Makes room for a newcomer: refuses another API key's session, refuses a device under
/// `client_takeover: reject`, raises
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
        if slot.owner_key.is_some() && slot.owner_key.as_deref() != identity.api_key() {
            return Err(Refusal::NotAuthorized);
        }
        slot.live.as_ref().map(|live| (Arc::clone(&live.close), live.finished.clone(), live.address))
    };
    let Some((close, mut finished, address)) = live else { return Ok(()) };
    if let Identity::Device { tenant, device, .. } = identity {
        if address != peer.ip() {
            let mut draft = SecurityEventDraft::new(tenant, SecurityEventType::DuplicateConnection, Severity::Minor);
            draft.device = Some(device.clone());
            draft.source_ip = Some(peer.ip().to_string());
            draft.details = serde_json::json!({"connected_from": address.to_string(), "protocol": "mqtt"});
            shared.raise_in_background(draft);
        }
        if rules.reject_takeover {
            return Err(Refusal::NotAuthorized);
        }
    }
    close.close(reasons::disconnect(Closing::TakenOver));
    // `changed` fails once the old connection dropped its end: it is done with the session.
    let _done_or_timed_out = timeout(TAKEOVER_WAIT, async { while finished.changed().await.is_ok() {} }).await;
    Ok(())
}
