//! Envelope encryption: AES-256-GCM with random 96-bit nonces, used to seal data and to wrap
//! keys under other keys (master key → tenant keys → device keys).
//!
//! Sealed layout: `version (1) || nonce (12) || ciphertext || tag (16)`.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use zeroize::Zeroizing;

use crate::error::CryptoError;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// A 256-bit symmetric key. Wiped on drop; `Debug` prints nothing secret.
#[derive(Clone)]
pub struct SecretKey256(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretKey256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey256(<redacted>)")
    }
}

impl SecretKey256 {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(crate::random_array())
    }

    /// A key from exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey { kind: "AES-256", reason: "expected exactly 32 bytes" })?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// The raw key, for storing it (wrapped) or writing the master key file.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn aead_key(&self) -> RandomizedNonceKey {
        // A 32-byte slice is always a valid AES-256 key, so this cannot fail.
        RandomizedNonceKey::new(&AES_256_GCM, &self.0[..]).expect("32-byte AES-256 key")
    }

    /// Encrypts `plaintext`, binding it to `aad` (e.g. `b"tenant:acme:ca-key"`), which must be
    /// given again to open it.
    ///
    /// # Panics
    /// Only if the plaintext exceeds AES-GCM's limit of about 64 GiB, or the system RNG fails.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        seal_with(&self.aead_key(), plaintext, aad)
    }

    /// Decrypts what [`seal`](Self::seal) produced with the same key and `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_with(&self.aead_key(), sealed, aad)
    }

    /// Seals another key's bytes under this key.
    pub fn wrap(&self, key: &SecretKey256, aad: &[u8]) -> Vec<u8> {
        self.seal(&key.0[..], aad)
    }

    /// Opens a key sealed by [`wrap`](Self::wrap).
    pub fn unwrap_key(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretKey256, CryptoError> {
        let bytes = self.open(wrapped, aad)?;
        SecretKey256::from_bytes(&bytes)
    }
}

/// A [`SecretKey256`] prepared for many [`seal`](Self::seal)/[`open`](Self::open) calls: the
/// AES key schedule is computed once instead of per call. Same envelope format as
/// [`SecretKey256::seal`]; each opens what the other sealed.
pub struct SealingKey(RandomizedNonceKey);

impl SealingKey {
    pub fn new(key: &SecretKey256) -> Self {
        SealingKey(key.aead_key())
    }

    /// As [`SecretKey256::seal`].
    ///
    /// # Panics
    /// Only if the plaintext exceeds AES-GCM's limit of about 64 GiB, or the system RNG fails.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        seal_with(&self.0, plaintext, aad)
    }

    /// As [`SecretKey256::open`].
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        open_with(&self.0, sealed, aad)
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

fn seal_with(key: &RandomizedNonceKey, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    // One buffer: header, then the plaintext encrypted in place, then the tag.
    let mut sealed = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    sealed.push(VERSION);
    sealed.extend_from_slice(&[0; NONCE_LEN]);
    sealed.extend_from_slice(plaintext);
    // Fails only for inputs beyond the GCM length limit or an RNG failure; neither is a
    // condition a caller could handle, and the signature is fixed by other crates.
    let (nonce, tag) = key
        .seal_in_place_separate_tag(Aad::from(aad), &mut sealed[HEADER_LEN..])
        .expect("AES-GCM seal within length limits");
    sealed[1..HEADER_LEN].copy_from_slice(nonce.as_ref());
    sealed.extend_from_slice(tag.as_ref());
    sealed
}

fn open_with(key: &RandomizedNonceKey, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt { reason: "sealed data too short" });
    }
    if sealed[0] != VERSION {
        return Err(CryptoError::Decrypt { reason: "unknown envelope version" });
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[1..HEADER_LEN])
        .map_err(|_| CryptoError::Decrypt { reason: "malformed nonce" })?;
    let mut in_out = Zeroizing::new(sealed[HEADER_LEN..].to_vec());
    let plaintext_len = key
        .open_in_place(nonce, Aad::from(aad), &mut in_out)
        .map_err(|_| CryptoError::Decrypt {
            reason: "authentication failed (wrong key, wrong context or tampered data)",
        })?
        .len();
    in_out.truncate(plaintext_len);
    Ok(in_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let key = SecretKey256::generate();
        for plaintext in [&b""[..], b"x", &[7u8; 1000]] {
            let sealed = key.seal(plaintext, b"tenant:acme:test");
            assert_eq!(sealed.len(), 1 + 12 + plaintext.len() + 16);
            assert_eq!(sealed[0], 1);
            let opened = key.open(&sealed, b"tenant:acme:test").unwrap();
            assert_eq!(&opened[..], plaintext);
        }
    }

    #[test]
    fn sealing_key_and_secret_key_open_each_other() {
        let key = SecretKey256::generate();
        let prepared = SealingKey::new(&key);
        let sealed = prepared.seal(b"reading", b"aad");
        assert_eq!(&key.open(&sealed, b"aad").unwrap()[..], b"reading");
        assert!(prepared.open(&sealed, b"other aad").is_err());
        let sealed = key.seal(b"reading", b"aad");
        assert_eq!(&prepared.open(&sealed, b"aad").unwrap()[..], b"reading");
        assert_ne!(prepared.seal(b"x", b"aad"), prepared.seal(b"x", b"aad"));
        let mut tampered = prepared.seal(b"reading", b"aad");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(prepared.open(&tampered, b"aad").is_err());
    }

    #[test]
    fn nonces_differ() {
        let key = SecretKey256::generate();
        assert_ne!(key.seal(b"same", b""), key.seal(b"same", b""));
    }

    #[test]
    fn open_refuses_bad_inputs() {
        let key = SecretKey256::generate();
        let sealed = key.seal(b"secret data", b"tenant:acme:a");
        let mut flipped_ct = sealed.clone();
        flipped_ct[HEADER_LEN] ^= 1;
        let mut flipped_tag = sealed.clone();
        *flipped_tag.last_mut().unwrap() ^= 0x80;
        let mut flipped_nonce = sealed.clone();
        flipped_nonce[1] ^= 1;
        let mut bad_version = sealed.clone();
        bad_version[0] = 2;
        let other = SecretKey256::generate();
        let cases: &[(&str, &SecretKey256, &[u8], &[u8])] = &[
            ("wrong aad", &key, &sealed, b"tenant:acme:b"),
            ("tampered ciphertext", &key, &flipped_ct, b"tenant:acme:a"),
            ("tampered tag", &key, &flipped_tag, b"tenant:acme:a"),
            ("tampered nonce", &key, &flipped_nonce, b"tenant:acme:a"),
            ("bad version", &key, &bad_version, b"tenant:acme:a"),
            ("truncated", &key, &sealed[..20], b"tenant:acme:a"),
            ("empty", &key, b"", b"tenant:acme:a"),
            ("wrong key", &other, &sealed, b"tenant:acme:a"),
        ];
        for (name, k, data, aad) in cases {
            assert!(matches!(k.open(data, aad), Err(CryptoError::Decrypt { .. })), "{name}");
        }
    }

    #[test]
    fn wrap_unwrap() {
        let master = SecretKey256::generate();
        let tenant = SecretKey256::generate();
        let wrapped = master.wrap(&tenant, b"tenant:acme:data-key");
        let unwrapped = master.unwrap_key(&wrapped, b"tenant:acme:data-key").unwrap();
        assert_eq!(unwrapped.expose_bytes(), tenant.expose_bytes());
        assert!(master.unwrap_key(&wrapped, b"tenant:evil:data-key").is_err());
    }

    #[test]
    fn from_bytes_length_and_debug() {
        assert!(SecretKey256::from_bytes(&[1; 31]).is_err());
        assert!(SecretKey256::from_bytes(&[1; 33]).is_err());
        let key = SecretKey256::from_bytes(&[0xab; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "SecretKey256(<redacted>)");
    }
}
