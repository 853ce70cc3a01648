//! The platform's error types: [`PlatformError`] for what broke inside (logged, never shown),
//! and [`ServiceError`], what a service answers its caller; the edges map it to an HTTP
//! answer or an MQTT reason code in exactly one place each.

use rampart_crypto::CryptoError;
use rampart_store::StoreError;

/// What went wrong inside. Messages are for logs, not for answers.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A sealed value names a tenant key that no longer exists (destroyed with its tenant).
    #[error("tenant key {key_id} of tenant {tenant} is gone")]
    KeyGone { tenant: String, key_id: String },
    /// Sealed bytes that do not carry a key id header.
    #[error("sealed value is malformed")]
    MalformedSealed,
    /// The audit chain kept moving under us (another writer) more often than we retry.
    #[error("audit append for tenant {0} lost too many races")]
    AuditContention(String),
    /// A stored document (policy) no longer parses.
    #[error("stored document: {0}")]
    StoredDocument(String),
    /// A blocking task (password hashing) could not run.
    #[error("background task: {0}")]
    Task(String),
}

pub type PlatformResult<T> = Result<T, PlatformError>;

/// What a service answers when it does not do what was asked. The texts are safe to show.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong (syntax, an unknown role, a weak password).
    #[error("{0}")]
    Invalid(String),
    /// Authentication failed; deliberately vague.
    #[error("authentication failed")]
    Unauthorized,
    /// The tenant requires MFA and the caller has not enrolled, or a login lacks its code.
    #[error("{0}")]
    MfaRequired(&'static str),
    /// Authenticated, but not allowed (missing permission, or beyond the caller's scope).
    #[error("missing permission")]
    Forbidden,
    /// No such object, or one the caller may not see (the same answer on purpose).
    #[error("not found")]
    NotFound,
    /// The object exists already, or is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// A bound of the platform refused it (twin size, quotas).
    #[error("{0}")]
    TooLarge(String),
    /// Too much at once (password hashing slots); the caller may retry shortly.
    #[error("too many requests")]
    Busy,
    /// Something broke inside; the caller gets a generic answer.
    #[error(transparent)]
    Internal(#[from] PlatformError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(message.into())
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ServiceError::NotFound,
            StoreError::Conflict(_) => ServiceError::Conflict("already exists".to_owned()),
            other => ServiceError::Internal(PlatformError::Store(other)),
        }
    }
}

impl From<CryptoError> for ServiceError {
    fn from(error: CryptoError) -> Self {
        ServiceError::Internal(PlatformError::Crypto(error))
    }
}

impl From<rampart_core::InvalidId> for ServiceError {
    fn from(error: rampart_core::InvalidId) -> Self {
        ServiceError::Invalid(error.to_string())
    }
}

impl From<rampart_core::InvalidText> for ServiceError {
    fn from(error: rampart_core::InvalidText) -> Self {
        ServiceError::Invalid(error.0)
    }
}
