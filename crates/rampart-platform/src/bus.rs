//! The control bus: events that must reach every live connection and stream at once
//! (revocations, deleted credentials, changed authority, policy changes, what is queued for a
//! device). Services publish
//! them; the gateway and the API's streams act on them. [`LocalBus`] serves one process; a
//! cluster implementation relays the same events between nodes.
//!
//! A subscriber is never left with a silent gap: if it falls behind, it is told to
//! [`BusMessage::Resync`], and re-checks everything it holds against the store instead of
//! guessing what it missed.

use std::sync::Arc;

/// Something that changes what a live connection or stream may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// Every connection of the device must close now (revoked, quarantined, deleted).
    DeviceCutOff { tenant: String, device: String, reason: CutOffReason },
    /// One device token was deleted; connections that authenticated with it must close.
    DeviceTokenDeleted { tenant: String, device: String, token_id: String },
    /// A trusted CA was removed; devices that authenticated through it must close.
    TrustedCaRemoved { tenant: String, ca_id: String },
    /// An application key was deleted.
    ApiKeyRevoked { tenant: String, key_id: String },
    /// A user's authority changed (disabled, deleted, roles, groups, password): sessions and
    /// streams of the user, and of the API keys it owns, re-check it.
    PrincipalChanged { tenant: String, username: String },
    /// The tenant's topic policy or tenant policy changed; connections re-read it.
    TenantPolicyChanged { tenant: String },
    /// The tenant is gone: every connection and stream of it must close.
    TenantDeleted { tenant: String },
    /// Something was queued for a device (an operation, a desired state) that a connected
    /// device must get at once.
    DeviceFeedChanged { tenant: String, device: String, feed: DeviceFeed },
}

/// What the platform sends a device on its own topics (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceFeed {
    /// `devices/{id}/operations`: a new operation.
    Operation { id: String },
    /// `devices/{id}/twin/desired`: its desired state.
    DesiredTwin,
}

/// Why a device was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOffReason {
    Revoked,
    Quarantined,
    Deleted,
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    Event(ControlEvent),
    /// Events were missed: re-check every connection or stream against the store.
    Resync,
}

/// Publishes control events to every subscriber, on this node and (in a cluster) the others.
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, event: ControlEvent);
    fn subscribe(&self) -> BusReceiver;
}

/// One subscriber's end of the bus.
pub struct BusReceiver {
    events: tokio::sync::broadcast::Receiver<ControlEvent>,
}

impl BusReceiver {
    /// The next message; `None` once the bus is gone.
    pub async fn recv(&mut self) -> Option<BusMessage> {
        match self.events.recv().await {
            Ok(event) => Some(BusMessage::Event(event)),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "control events were missed; re-checking everything held");
                Some(BusMessage::Resync)
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The bus of a single process.
#[derive(Debug, Clone)]
pub struct LocalBus {
    sender: tokio::sync::broadcast::Sender<ControlEvent>,
}

/// Events a slow subscriber may fall behind before it must resync.
const LOCAL_BUS_CAPACITY: usize = 4096;

impl Default for LocalBus {
    fn default() -> Self {
        let (sender, _) = tokio::sync::broadcast::channel(LOCAL_BUS_CAPACITY);
        LocalBus { sender }
    }
}

impl LocalBus {
    pub fn shared() -> Arc<dyn Bus> {
        Arc::new(LocalBus::default())
    }
}

impl Bus for LocalBus {
    fn publish(&self, event: ControlEvent) {
        let _no_subscriber_is_fine = self.sender.send(event);
    }

    fn subscribe(&self) -> BusReceiver {
        BusReceiver { events: self.sender.subscribe() }
    }
}
