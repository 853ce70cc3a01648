//! What can stop the gateway from starting.

use std::net::SocketAddr;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The certificate chain or key of the listener cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("binding the MQTT listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The retained messages could not be loaded.
    #[error("loading retained messages: {0}")]
    Retained(String),
}
