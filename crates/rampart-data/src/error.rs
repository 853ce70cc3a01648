//! What ingest and queries fail with. Messages never quote payload content or key material.

/// Why [`crate::Ingestor::submit`] did not store a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The payload is not valid for its topic; nothing of it was stored. MQTT 5.0 answers
    /// PUBACK 0x99 (payload format invalid), 3.1.1 drops it; HTTPS answers 400.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The device (or its data key) no longer exists, e.g. it was deleted meanwhile.
    #[error("unknown device {tenant}/{device}")]
    UnknownDevice { tenant: String, device: String },
    /// A bound of the platform refused it: the reported twin would outgrow its cap. Nothing
    /// changed. MQTT 5.0 answers 0x97 (quota exceeded), HTTPS 413.
    #[error("too large: {0}")]
    TooLarge(String),
    /// `submit_nowait` only: the ingest queue is full, the message was dropped (QoS 0).
    #[error("ingest queue is full")]
    Overloaded,
    /// The platform refused it in the state things are in (an operation status report for
    /// another device's operation, or one moving an operation backwards). Nothing changed.
    /// MQTT 5.0 answers 0x83 (implementation specific error), HTTPS 409.
    #[error("refused: {0}")]
    Refused(String),
    /// The ingestor has stopped (shutdown); nothing was stored.
    #[error("ingest stopped")]
    Stopped,
    /// Storage failed; the message is not durable and must not be acknowledged.
    #[error("storage: {0}")]
    Storage(String),
}

/// Why a data query failed. `NotFound` covers another tenant's objects as well.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("not found")]
    NotFound,
    /// The principal lacks the permission (the refusal is already audited).
    #[error("missing permission")]
    Forbidden,
    /// A parameter is invalid (bad cursor, bad transition, range too large); the text is for
    /// people and safe to show.
    #[error("{0}")]
    Invalid(String),
    /// A state change that the current state does not allow (e.g. ACKNOWLEDGED from CLEARED).
    #[error("{0}")]
    Conflict(String),
    /// Storage or decryption failed; the text is for the operator's log.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<rampart_store::StoreError> for QueryError {
    fn from(error: rampart_store::StoreError) -> Self {
        match error {
            rampart_store::StoreError::NotFound => QueryError::NotFound,
            other => QueryError::Internal(other.to_string()),
        }
    }
}

impl QueryError {
    /// A refusal of the platform's authorisation, as a query error.
    pub fn from_service(error: rampart_platform::ServiceError) -> Self {
        match error {
            rampart_platform::ServiceError::Forbidden => QueryError::Forbidden,
            rampart_platform::ServiceError::NotFound => QueryError::NotFound,
            rampart_platform::ServiceError::Invalid(message) => QueryError::Invalid(message),
            rampart_platform::ServiceError::Conflict(message) => QueryError::Conflict(message),
            other => QueryError::Internal(other.to_string()),
        }
    }
}
