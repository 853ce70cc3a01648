//! Control events that must reach every live connection at once: revocations, quarantines,
//! credential deletions. The API publishes them; the gateway acts on them (kicks sessions).
//! In a single process this is a broadcast channel; a cluster relays it between nodes.

/// Something that changes what a live connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// Every connection of the device must close now (revoked, quarantined, deleted).
    DeviceCutOff { tenant: String, device: String, reason: CutOffReason },
    /// One credential was deleted; connections that authenticated with it must close.
    DeviceTokenDeleted { tenant: String, device: String, token_id: String },
    /// An application key was revoked.
    ApiKeyRevoked { tenant: String, key_id: String },
    /// The tenant's topic policy or security policy changed; connections re-read it.
    TenantPolicyChanged { tenant: String },
    /// The tenant is gone: every connection of it must close.
    TenantDeleted { tenant: String },
}

/// Why a device was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutOffReason {
    Revoked,
    Quarantined,
    Deleted,
}

/// The sending side, shared by everyone who publishes control events.
#[derive(Debug, Clone)]
pub struct ControlBus {
    sender: tokio::sync::broadcast::Sender<ControlEvent>,
}

impl Default for ControlBus {
    fn default() -> Self {
        let (sender, _) = tokio::sync::broadcast::channel(1024);
        ControlBus { sender }
    }
}

impl ControlBus {
    /// Publishes an event to every subscriber (none listening is fine).
    pub fn publish(&self, event: ControlEvent) {
        let _no_subscriber_is_fine = self.sender.send(event);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ControlEvent> {
        self.sender.subscribe()
    }
}
