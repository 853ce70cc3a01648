//! The guard: the hook through which detection and response (SPEC §10: IP blocks, rate limits,
//! quarantine) see and stop traffic, asked at the four points where the gateway decides:
//! accepting a TCP connection, admitting a CONNECT, a PUBLISH and a SUBSCRIBE. The gateway
//! holds one; [`OpenGuard`] (the default) lets everything through that the ACL allows.

use std::net::SocketAddr;

/// What the guard says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse (the gateway answers as for an ACL denial: CONNACK 0x87/5, PUBACK 0x87,
    /// SUBACK 0x87/0x80, or closes a connection not yet speaking MQTT).
    Deny,
}

/// Who a guarded packet comes from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub tenant: &'a str,
    /// The device id, for a device; `None` for an application.
    pub device: Option<&'a str>,
    pub peer: SocketAddr,
}

/// Hooks at the gateway's decision points. Every method must be cheap: it runs on the
/// connection's task for every packet.
pub trait Guard: Send + Sync + 'static {
    /// A TCP connection arrived, before TLS.
    fn on_accept(&self, _peer: SocketAddr) -> Verdict {
        Verdict::Allow
    }
    /// A CONNECT authenticated as `origin`.
    fn on_connect(&self, _origin: &Origin<'_>) -> Verdict {
        Verdict::Allow
    }
    /// A PUBLISH of `payload_len` bytes to `topic` that the ACL allowed.
    fn on_publish(&self, _origin: &Origin<'_>, _topic: &str, _payload_len: usize) -> Verdict {
        Verdict::Allow
    }
    /// A SUBSCRIBE filter that the ACL allowed.
    fn on_subscribe(&self, _origin: &Origin<'_>, _filter: &str) -> Verdict {
        Verdict::Allow
    }
}

/// Lets through everything the ACL allows.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenGuard;

impl Guard for OpenGuard {}

/// Refuses connections from addresses the platform blocks (SPEC §10), before TLS.
pub struct BlockGuard(pub std::sync::Arc<rampart_platform::Platform>);

impl Guard for BlockGuard {
    fn on_accept(&self, peer: SocketAddr) -> Verdict {
        match self.0.is_blocked(peer.ip()) {
            true => Verdict::Deny,
            false => Verdict::Allow,
        }
    }
}
