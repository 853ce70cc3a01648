//! MQTT 3.1.1 and 5.0 for Rampart: the packets ([`packet`]), their wire codec ([`codec`])
//! and the per-connection session state machine ([`session`]); topic names and filters are
//! vocabulary of `rampart-core` ([`topic`], re-exported). No IO and no clock here: callers
//! hand in bytes and `now`, and get packets and actions back.

pub mod codec;
pub mod packet;
pub mod session;

pub use rampart_core::topic;

pub use codec::{DecodeError, EncodeError, decode, encode, encoded_len, encoded_publish_len};
pub use packet::*;
pub use session::{Action, DropReason, OutgoingMessage, Session, SessionConfig, SessionState};
