//! MQTT 3.1.1 and 5.0 for Rampart: the packets ([`packet`]), their wire codec ([`codec`]) and
//! the per-connection session state machine ([`session`]). No IO and no clock here: callers
//! hand in bytes and `now`, and get packets and actions back.

pub mod codec;
pub mod packet;
pub mod session;

pub use packet::*;
