//! Password hashing with Argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane), stored as PHC
//! strings, plus a dummy verification that makes unknown users cost the same as known ones.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::CryptoError;

const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;
/// Refuse to verify against stored hashes demanding more than this (a tampered row must not
/// be able to make one login allocate gigabytes).
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_ITERATIONS: u32 = 16;

fn argon2() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|error| CryptoError::PasswordHash { reason: error.to_string() })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a random 128-bit salt; returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt_bytes = crate::random_array::<16>();
    let salt = SaltString::encode_b64(&salt_bytes[..])
        .map_err(|error| CryptoError::PasswordHash { reason: error.to_string() })?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| CryptoError::PasswordHash { reason: error.to_string() })?;
    Ok(hash.to_string())
}

/// True when `password` matches the Argon2id PHC string `phc`. False for anything malformed,
/// for other algorithms, and for parameters beyond sane limits. Never panics.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_MEMORY_KIB || params.t_cost() > MAX_ITERATIONS {
        return false;
    }
    // The verifier takes the parameters and salt from the hash itself; the comparison of the
    // output inside `password-hash` is constant time.
    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// A hash of a random password, computed once; used to spend real Argon2 work on unknown users.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let password = crate::secrets::random_secret("", 16);
    hash_password(&password).ok()
});

/// Does the work of a real verification against a fixed dummy hash, so that a login for an
/// unknown user takes as long as one for a known user. Always false.
pub fn verify_password_dummy(password: &str) -> bool {
    match DUMMY_HASH.as_deref() {
        Some(phc) => {
            // The dummy password is random and unknown, so a match is impossible in practice;
            // the result is discarded regardless.
            let _ = verify_password(password, phc);
        }
        None => {
            // Hashing failed once (should not happen): still spend comparable work.
            let _ = hash_password(password);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapl", &phc));
        assert!(!verify_password("", &phc));
        assert_ne!(phc, hash_password("correct horse battery staple").unwrap());
    }

    #[test]
    fn malformed_hashes_are_false() {
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$g3gU+S4fG8nQzyL/hZTt6w";
        let huge = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$g3gU+S4fG8nQzyL/hZTt6w";
        for phc in ["", "plain", "$argon2id$", "$argon2id$v=19$m=x", argon2i, huge] {
            assert!(!verify_password("password", phc), "{phc}");
        }
    }

    #[test]
    fn dummy_is_always_false() {
        assert!(!verify_password_dummy("anything"));
        assert!(!verify_password_dummy(""));
    }
}
