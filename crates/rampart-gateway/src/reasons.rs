//! The one place where the gateway's outcomes become MQTT reason codes: CONNACK refusals,
//! PUBACK/PUBREC answers to publishes, SUBACK answers, and the reasons the server closes a
//! connection with. Each outcome is named here once, for both protocol versions.

use rampart_data::IngestError;
use rampart_mqtt::{Protocol, reason};

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Unknown tenant, device or key; wrong secret; a certificate that does not verify.
    BadCredentials,
    /// A genuine credential that may not connect (revoked, quarantined, another key's session,
    /// takeover refused by policy).
    NotAuthorized,
    /// The client id breaks the rules (not the device id; empty for a 3.1.1 persistent session).
    BadClientId,
    /// The tenant's quota of persistent sessions is used up.
    QuotaExceeded,
    /// The platform could not decide (storage down).
    Unavailable,
}

/// The CONNACK code of a refusal.
pub(crate) fn connack(refusal: Refusal, protocol: Protocol) -> u8 {
    match (protocol, refusal) {
        (Protocol::V5, Refusal::BadCredentials) => reason::BAD_USERNAME_OR_PASSWORD,
        (Protocol::V5, Refusal::NotAuthorized) => reason::NOT_AUTHORIZED,
        (Protocol::V5, Refusal::BadClientId) => reason::CLIENT_IDENTIFIER_NOT_VALID,
        (Protocol::V5, Refusal::QuotaExceeded) => reason::QUOTA_EXCEEDED,
        (Protocol::V5, Refusal::Unavailable) => reason::SERVER_UNAVAILABLE,
        (Protocol::V311, Refusal::BadCredentials) => reason::V3_BAD_USERNAME_OR_PASSWORD,
        (Protocol::V311, Refusal::NotAuthorized) => reason::V3_NOT_AUTHORIZED,
        (Protocol::V311, Refusal::BadClientId) => reason::V3_IDENTIFIER_REJECTED,
        (Protocol::V311, Refusal::QuotaExceeded | Refusal::Unavailable) => reason::V3_SERVER_UNAVAILABLE,
    }
}

/// The CONNACK code for a CONNECT naming a protocol we do not speak (always 3.1.1's).
pub(crate) const UNACCEPTABLE_PROTOCOL: u8 = reason::V3_UNACCEPTABLE_PROTOCOL;

/// What became of an incoming QoS 1/2 publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishOutcome {
    /// Stored (platform topic) or routed; `delivered` says whether anyone was subscribed.
    Accepted { delivered: bool },
    /// Denied by the ACL.
    Denied,
    /// The payload is malformed for its platform topic; nothing was stored.
    Malformed,
    /// A bound refused it (retained-message quota, twin size).
    QuotaExceeded,
    /// The sender's device no longer exists.
    UnknownDevice,
    /// Refused in the state things are in (an operation moved backwards, or not its own).
    Refused,
    /// Something failed inside; the message is not acknowledged as stored.
    Failed,
}

/// The PUBACK/PUBREC code of an outcome; `None` when a 3.1.1 client must not be acknowledged
/// (storage failed: it re-sends after reconnecting, so the connection is closed instead).
/// 3.1.1 has no negative acknowledgement: a refused message is dropped and acknowledged so
/// the client does not re-send it forever.
pub(crate) fn puback(outcome: PublishOutcome, protocol: Protocol) -> Option<u8> {
    match (protocol, outcome) {
        (Protocol::V5, PublishOutcome::Accepted { delivered: false }) => Some(reason::NO_MATCHING_SUBSCRIBERS),
        (_, PublishOutcome::Accepted { .. }) => Some(reason::SUCCESS),
        (Protocol::V5, PublishOutcome::Denied | PublishOutcome::UnknownDevice) => Some(reason::NOT_AUTHORIZED),
        (Protocol::V5, PublishOutcome::Malformed) => Some(reason::PAYLOAD_FORMAT_INVALID),
        (Protocol::V5, PublishOutcome::QuotaExceeded) => Some(reason::QUOTA_EXCEEDED),
        (Protocol::V5, PublishOutcome::Refused) => Some(reason::IMPLEMENTATION_SPECIFIC_ERROR),
        (Protocol::V5, PublishOutcome::Failed) => Some(reason::UNSPECIFIED_ERROR),
        (Protocol::V311, PublishOutcome::Failed) => None,
        (Protocol::V311, _) => Some(reason::SUCCESS),
    }
}

/// The outcome of storing a device's message.
pub(crate) fn ingest_outcome(result: &Result<(), IngestError>) -> PublishOutcome {
    match result {
        Ok(()) => PublishOutcome::Accepted { delivered: true },
        Err(IngestError::Malformed(_)) => PublishOutcome::Malformed,
        Err(IngestError::TooLarge(_) | IngestError::Overloaded) => PublishOutcome::QuotaExceeded,
        Err(IngestError::UnknownDevice { .. }) => PublishOutcome::UnknownDevice,
        Err(IngestError::Refused(_)) => PublishOutcome::Refused,
        Err(IngestError::Stopped | IngestError::Storage(_)) => PublishOutcome::Failed,
    }
}

/// The SUBACK code of a refused filter (3.1.1 knows only 0x80, failure).
pub(crate) fn suback_refused(invalid_filter: bool, protocol: Protocol) -> u8 {
    match (protocol, invalid_filter) {
        (Protocol::V5, true) => reason::TOPIC_FILTER_INVALID,
        (Protocol::V5, false) => reason::NOT_AUTHORIZED,
        (Protocol::V311, _) => reason::V3_SUBACK_FAILURE,
    }
}

/// The UNSUBACK code for a filter.
pub(crate) fn unsuback(existed: bool) -> u8 {
    match existed {
        true => reason::SUCCESS,
        false => reason::NO_SUBSCRIPTION_EXISTED,
    }
}

/// Why the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Revoked, deleted, its credential or authority gone, its tenant deleted.
    Administrative,
    /// Another connection took the session over.
    TakenOver,
    /// The subscriber does not keep up with what is routed to it.
    QuotaExceeded,
    /// The server shuts down.
    ShuttingDown,
}

/// The DISCONNECT reason (5.0) of a closing.
pub(crate) fn disconnect(closing: Closing) -> u8 {
    match closing {
        Closing::Administrative => reason::ADMINISTRATIVE_ACTION,
        Closing::TakenOver => reason::SESSION_TAKEN_OVER,
        Closing::QuotaExceeded => reason::QUOTA_EXCEEDED,
        Closing::ShuttingDown => reason::SERVER_SHUTTING_DOWN,
    }
}

/// Whether a connection closed for `reason_code` publishes its will: not when it was cut off
/// by an administrator (a revoked device speaks no more).
pub(crate) fn will_on_close(reason_code: u8) -> bool {
    reason_code != reason::ADMINISTRATIVE_ACTION
}
