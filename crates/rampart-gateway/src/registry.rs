//! The sessions the gateway knows, keyed by tenant and client: the live connection (a channel
//! to its task and a way to close it), the state of a persistent session while its client is
//! away, its subscriptions, and a will waiting for its delay.
//!
//! Devices and applications are kept apart in the key, so an application choosing a device's
//! id as its client id can never take over the device's session; and an application's
//! session belongs to the API key that made it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rampart_mqtt::{OutgoingMessage, QoS, SessionState, reason};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};

use crate::identity::Identity;
use crate::router::{RoutedMessage, SubOptions};

/// Whose session it is. Applications are keyed by their client id (unique per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ClientRef {
    Device(String),
    Application(String),
}

/// A session's identity: the tenant first, always.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct SessionId {
    pub tenant: String,
    pub client: ClientRef,
}

pub(crate) type SessionKey = Arc<SessionId>;

/// Asks a connection task to close, with a 5.0 reason code.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    reason: AtomicU8,
    notify: Notify,
}

impl CloseSignal {
    /// Asks the connection to close with `reason` (the first request wins).
    pub(crate) fn close(&self, reason: u8) {
        let _first_wins = self.reason.compare_exchange(0, reason, Ordering::AcqRel, Ordering::Acquire);
        self.notify.notify_one();
    }

    /// The requested reason, once one was requested.
    pub(crate) fn requested(&self) -> Option<u8> {
        match self.reason.load(Ordering::Acquire) {
            0 => None,
            reason => Some(reason),
        }
    }

    pub(crate) async fn wait(&self) {
        if self.requested().is_some() {
            return;
        }
        self.notify.notified().await;
    }
}

/// The connection currently serving a session.
#[derive(Debug)]
pub(crate) struct Live {
    pub connection_id: u64,
    pub sender: mpsc::Sender<Box<OutgoingMessage>>,
    pub close: Arc<CloseSignal>,
    pub address: IpAddr,
    /// Who the connection authenticated as, and with what.
    pub identity: Arc<Identity>,
    /// Closed (sender dropped) when the connection's task has finished with the session.
    pub finished: watch::Receiver<()>,
    /// Set when the connection's channel overflowed: the connection is being closed (0x97), and
    /// the QoS 1/2 messages routed to it since wait here, in order, for the connection's end to
    /// move them into a persistent session (a clean one loses them, counted).
    pub overflow: Option<VecDeque<OutgoingMessage>>,
}

/// A persistent session whose client is away.
#[derive(Debug)]
pub(crate) struct Parked {
    pub state: SessionState,
    /// On the gateway's monotonic millisecond scale; `None` never expires.
    pub expires_at_ms: Option<u64>,
}

/// A will message waiting for its delay (5.0 Will Delay Interval).
#[derive(Debug, Clone)]
pub(crate) struct PendingWill {
    pub fire_at_ms: u64,
    pub message: RoutedMessage,
}

/// Everything known about one session.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub live: Option<Live>,
    /// Boxed: most sessions are never parked, and every entry should stay small.
    pub parked: Option<Box<Parked>>,
    /// Filter (as subscribed, `$share/…` included) → options; mirrors the router.
    pub subscriptions: HashMap<String, SubOptions>,
    pub pending_will: Option<Box<PendingWill>>,
    /// For an application's session: the API key that made it (no other key resumes it).
    pub owner_key: Option<String>,
    /// The session outlives its connection (counted against the tenant's quota).
    pub persistent: bool,
}

impl Slot {
    /// Nothing left worth keeping: no connection, no parked state, no pending will.
    pub(crate) fn is_idle(&self) -> bool {
        self.live.is_none() && self.parked.is_none() && self.pending_will.is_none()
    }
}

/// One session's entry; its slot is locked briefly, never across an await.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    pub key: SessionKey,
    slot: Mutex<Slot>,
}

impl SessionEntry {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a message offered to a session fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Handed to the live connection, or queued in the parked session.
    Accepted,
    /// Kept for a connection that overflowed and is being closed (see [`Live::overflow`]).
    Held,
    /// Lost: a QoS 0 message for a full connection, a full queue, or nobody is there.
    Dropped,
}

/// Every session of every tenant.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: RwLock<HashMap<SessionKey, Arc<SessionEntry>>>,
    next_connection_id: AtomicU64,
}

impl Registry {
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn get(&self, key: &SessionId) -> Option<Arc<SessionEntry>> {
        self.sessions.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Runs `change` on the session's slot (created if missing) while the entry is certainly
    /// in the map: [`Registry::remove_if_idle`] cannot drop it in between.
    pub(crate) fn with_slot<R>(&self, key: &SessionKey, change: impl FnOnce(&mut Slot) -> R) -> (Arc<SessionEntry>, R) {
        let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
        let entry = Arc::clone(
            sessions
                .entry(Arc::clone(key))
                .or_insert_with(|| Arc::new(SessionEntry { key: Arc::clone(key), slot: Mutex::default() })),
        );
        let result = change(&mut entry.lock());
        (entry, result)
    }

    /// Drops the entry if it is still idle (checked under the map's write lock, so a
    /// connection that just claimed it keeps it).
    pub(crate) fn remove_if_idle(&self, key: &SessionId) {
        let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
        if sessions.get(key).is_some_and(|entry| entry.lock().is_idle()) {
            sessions.remove(key);
        }
    }

    /// Every entry matching `filter` (a snapshot; entries may change meanwhile).
    pub(crate) fn entries(&self, mut filter: impl FnMut(&SessionId) -> bool) -> Vec<Arc<SessionEntry>> {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        sessions.iter().filter(|(key, _)| filter(key)).map(|(_, entry)| Arc::clone(entry)).collect()
    }

    /// Offers a message to a session: to its live connection, or into its parked queue.
    ///
    /// A live connection whose channel is full cannot keep up: rather than losing QoS 1/2
    /// messages silently, the connection is closed with 0x97 (quota exceeded), and this and
    /// later QoS 1/2 messages are held (up to `max_queued`) for its persistent session.
    pub(crate) fn offer(&self, key: &SessionId, message: OutgoingMessage, max_queued: usize) -> Offer {
        let Some(entry) = self.get(key) else { return Offer::Dropped };
        let mut slot = entry.lock();
        if let Some(live) = &mut slot.live {
            let message = match live.overflow.is_some() {
                // Held behind the messages before it, in order, even if the channel has room.
                true => message,
                false => match live.sender.try_send(Box::new(message)) {
                    Ok(()) => return Offer::Accepted,
                    Err(TrySendError::Closed(_)) => return Offer::Dropped,
                    // At most once: a QoS 0 message may be lost; the connection may catch up.
                    Err(TrySendError::Full(message)) if message.qos == QoS::AtMostOnce => return Offer::Dropped,
                    Err(TrySendError::Full(message)) => {
                        tracing::warn!(
                            tenant = %key.tenant,
                            client = ?key.client,
                            "a subscriber's outbound buffer is full: closing its connection (quota exceeded)"
                        );
                        live.close.close(reason::QUOTA_EXCEEDED);
                        live.overflow = Some(VecDeque::new());
                        *message
                    }
                },
            };
            return hold(live, message, max_queued);
        }
        match &mut slot.parked {
            Some(parked) => match parked.state.enqueue(message, max_queued) {
                true => Offer::Accepted,
                false => Offer::Dropped,
            },
            None => Offer::Dropped,
        }
    }

    /// Asks every live connection matching `filter` to close with `reason`.
    pub(crate) fn close_matching(&self, reason: u8, mut filter: impl FnMut(&SessionId, &Live) -> bool) -> usize {
        let mut closed = 0;
        for entry in self.entries(|_| true) {
            let slot = entry.lock();
            if let Some(live) = &slot.live
                && filter(&entry.key, live)
            {
                live.close.close(reason);
                closed += 1;
            }
        }
        closed
    }

    /// Number of sessions known (live or parked).
    pub(crate) fn len(&self) -> usize {
        self.sessions.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Number of sessions of `tenant` that outlive their connection (parked, or live with a
    /// persistent session), for the tenant's quota.
    pub(crate) fn persistent_sessions_of(&self, tenant: &str) -> usize {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        sessions.iter().filter(|(key, entry)| key.tenant == tenant && entry.lock().persistent).count()
    }

    /// Every live connection matching `filter`, with its identity (a snapshot).
    pub(crate) fn live_identities(
        &self,
        mut filter: impl FnMut(&SessionId, &Identity) -> bool,
    ) -> Vec<(Arc<SessionEntry>, Arc<Identity>, Arc<CloseSignal>)> {
        let mut found = Vec::new();
        for entry in self.entries(|_| true) {
            let slot = entry.lock();
            if let Some(live) = &slot.live
                && filter(&entry.key, &live.identity)
            {
                found.push((Arc::clone(&entry), Arc::clone(&live.identity), Arc::clone(&live.close)));
            }
        }
        found
    }
}

/// Keeps a QoS 1/2 message for a connection that overflowed (see [`Live::overflow`]).
fn hold(live: &mut Live, message: OutgoingMessage, max_queued: usize) -> Offer {
    match &mut live.overflow {
        Some(held) if message.qos != QoS::AtMostOnce && held.len() < max_queued => {
            held.push_back(message);
            Offer::Held
        }
        _ => Offer::Dropped,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rampart_mqtt::Properties;

    use super::*;

    fn message(qos: QoS, payload: &'static [u8]) -> OutgoingMessage {
        OutgoingMessage {
            topic: "plant/x".to_owned(),
            payload: Bytes::from_static(payload),
            qos,
            retain: false,
            properties: Properties::default(),
            expires_at_ms: None,
        }
    }

    #[test]
    fn a_full_channel_closes_the_connection_and_holds_qos1_messages_in_order() {
        let registry = Registry::default();
        let key: SessionKey =
            Arc::new(SessionId { tenant: "acme".to_owned(), client: ClientRef::Application("slow".to_owned()) });
        let (sender, mut receiver) = mpsc::channel(1);
        let (_finished_sender, finished) = watch::channel(());
        let close = Arc::new(CloseSignal::default());
        registry.with_slot(&key, |slot| {
            slot.live = Some(Live {
                connection_id: 1,
                sender,
                close: Arc::clone(&close),
                address: IpAddr::from([127, 0, 0, 1]),
                identity: Arc::new(Identity::Device {
                    tenant: "acme".to_owned(),
                    device: "slow".to_owned(),
                    method: rampart_platform::DeviceAuthMethod::Token { token_id: "t".to_owned() },
                }),
                finished,
                overflow: None,
            });
        });
        let max_queued = 2;
        assert_eq!(registry.offer(&key, message(QoS::AtLeastOnce, b"1"), max_queued), Offer::Accepted);
        // QoS 0 may be lost when the connection lags; that alone does not close it.
        assert_eq!(registry.offer(&key, message(QoS::AtMostOnce, b"0"), max_queued), Offer::Dropped);
        assert_eq!(close.requested(), None);
        // A QoS 1 message that does not fit: the connection is closed, the message held.
        assert_eq!(registry.offer(&key, message(QoS::AtLeastOnce, b"2"), max_queued), Offer::Held);
        assert_eq!(close.requested(), Some(reason::QUOTA_EXCEEDED));
        // Later ones are held behind it even when the channel has room again (order), up to
        // `max_queued`; beyond that they are dropped (and the caller counts them).
        assert!(receiver.try_recv().is_ok());
        assert_eq!(registry.offer(&key, message(QoS::AtLeastOnce, b"3"), max_queued), Offer::Held);
        assert_eq!(registry.offer(&key, message(QoS::ExactlyOnce, b"4"), max_queued), Offer::Dropped);
        let entry = registry.get(&key).expect("entry");
        let slot = entry.lock();
        let held: Vec<Bytes> = slot
            .live
            .as_ref()
            .and_then(|live| live.overflow.as_ref())
            .expect("held")
            .iter()
            .map(|m| m.payload.clone())
            .collect();
        assert_eq!(held, [Bytes::from_static(b"2"), Bytes::from_static(b"3")]);
    }
}
