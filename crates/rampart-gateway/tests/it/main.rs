//! In-process tests of the MQTT gateway: the real listener on 127.0.0.1:0 over a real SQLite
//! store and the real ingestor, driven by real MQTT clients over TLS. End-to-end tests over
//! the `rampart` binary live in the `rampart` crate.

mod acl;
mod auth;
mod harness;
mod protocol;
mod publish;
mod retained;
mod sessions;
