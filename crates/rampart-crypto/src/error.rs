//! The one error type of this crate. Messages name what failed and where, never secret material.

use std::path::PathBuf;

/// Everything that can go wrong in `rampart-crypto`.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key file is readable or writable by group or others.
    #[error("key file {path} has mode {mode:04o}; it must not be accessible by group or others (chmod 600)")]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    /// A key file exists but its content is not a key.
    #[error("key file {path} is malformed: {reason}")]
    InvalidKeyFile { path: PathBuf, reason: &'static str },
    /// Raw key bytes had the wrong length or were otherwise unusable.
    #[error("invalid {kind} key: {reason}")]
    InvalidKey { kind: &'static str, reason: &'static str },
    /// An envelope could not be opened: wrong key, wrong context (AAD), tampering or truncation.
    #[error("decryption failed: {reason}")]
    Decrypt { reason: &'static str },
    /// Argon2 refused to hash (parameters or internal failure).
    #[error("password hashing failed: {reason}")]
    PasswordHash { reason: String },
    /// A token could not be produced.
    #[error("token signing failed: {reason}")]
    TokenSigning { reason: String },
    /// A token failed verification. Deliberately carries no detail.
    #[error("invalid token")]
    InvalidToken,
    /// A CSR carries an RSA key shorter than 2048 bits.
    #[error("weak key: RSA {bits} bits, at least 2048 required")]
    WeakKey { bits: usize },
    /// A CSR could not be parsed, uses an unsupported algorithm or has a bad signature.
    #[error("invalid certificate signing request: {reason}")]
    InvalidCsr { reason: String },
    /// A certificate could not be parsed or is not acceptable for its role.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate { reason: String },
    /// A caller-supplied parameter (SAN, id, serial, validity) is unusable.
    #[error("invalid {name}: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    /// rcgen failed while building or signing a certificate or CRL.
    #[error("{operation} failed: {reason}")]
    Pki { operation: &'static str, reason: String },
}
