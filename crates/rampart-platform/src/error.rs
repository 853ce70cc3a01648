//! The platform services' error type.

use rampart_crypto::CryptoError;
use rampart_store::StoreError;

/// What a platform service can fail with. Messages are for logs, not for API answers.
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
}

pub type PlatformResult<T> = Result<T, PlatformError>;
