//! Rampart's cryptography: envelope encryption and keys, password hashing, TOTP, access
//! tokens, the tenant PKI and the audit hash chain.
//!
//! Pure functions over bytes and strings; the only IO is the master key file helpers in
//! [`master_key`]. Every type that holds secret material wipes it on drop and never prints it.

pub mod access_token;
pub mod audit;
pub mod envelope;
pub mod error;
pub mod master_key;
pub mod password;
pub mod pki;
pub mod secrets;
pub mod totp;

pub use access_token::{AccessClaims, TokenSigningKey};
pub use audit::{
    AuditSigningKey, GENESIS_HASH, audit_hash, canonical_json, checkpoint_message, genesis_hash, verify_checkpoint,
};
pub use envelope::{SealingKey, SecretKey256};
pub use error::CryptoError;
pub use master_key::{load_or_create_master_key, write_new_key_file};
pub use password::{hash_password, verify_password, verify_password_dummy};
pub use pki::{
    CaCertificateInfo, GeneratedCa, IssuedCertificate, build_crl, generate_ca, issue_server_certificate,
    parse_ca_certificate, sign_device_csr,
};
pub use secrets::{ct_eq, hmac_sha256_hex, random_id, random_secret, sha256, sha256_hex};
pub use totp::TotpSecret;

/// Fills a fresh buffer from the thread-local CSPRNG (ChaCha, seeded and reseeded by the OS).
pub(crate) fn random_array<const N: usize>() -> zeroize::Zeroizing<[u8; N]> {
    let mut bytes = zeroize::Zeroizing::new([0u8; N]);
    rand::fill(&mut bytes[..]);
    bytes
}
