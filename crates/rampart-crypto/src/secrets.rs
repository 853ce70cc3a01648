//! Random bearer secrets and ids, and the hashes under which secrets are stored.

use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Fewest random bytes a bearer secret gets, whatever the caller asks for (128 bits).
const MIN_SECRET_BYTES: usize = 16;

/// `prefix` followed by base64url (no padding) of `n_bytes` random bytes (at least 16 are used
/// even if fewer are asked for).
pub fn random_secret(prefix: &str, n_bytes: usize) -> Zeroizing<String> {
    let n_bytes = n_bytes.max(MIN_SECRET_BYTES);
    let mut bytes = Zeroizing::new(vec![0u8; n_bytes]);
    rand::fill(&mut bytes[..]);
    // Reserve the final size up front so the buffer never reallocates and leaves copies behind.
    let mut secret = Zeroizing::new(String::with_capacity(prefix.len() + n_bytes.div_ceil(3) * 4));
    secret.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut secret);
    secret
}

/// `n_bytes` random bytes as lower-case hex.
pub fn random_id(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// SHA-256 of `data` as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// Constant-time equality; false when the lengths differ (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// HMAC-SHA-256 of `data` under `key`, as lower-case hex.
pub fn hmac_sha256_hex(key: &[u8], data: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hex::encode(hmac::sign(&key, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn random_secret_shape_and_uniqueness() {
        for (prefix, n_bytes, expected_len) in [("rpt_", 32, 4 + 43), ("", 16, 22), ("x", 1, 1 + 22)] {
            let secret = random_secret(prefix, n_bytes);
            assert_eq!(secret.len(), expected_len, "{prefix} {n_bytes}");
            assert!(secret.starts_with(prefix));
            let body = &secret[prefix.len()..];
            assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        let secrets: HashSet<String> = (0..1000).map(|_| random_secret("k_", 32).to_string()).collect();
        assert_eq!(secrets.len(), 1000);
    }

    #[test]
    fn random_id_shape() {
        let id = random_id(16);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(random_id(16), id);
    }

    #[test]
    fn hashes_match_known_values() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn constant_time_equality() {
        for (a, b, equal) in
            [(&b"abc"[..], &b"abc"[..], true), (b"abc", b"abd", false), (b"abc", b"ab", false), (b"", b"", true)]
        {
            assert_eq!(ct_eq(a, b), equal, "{a:?} {b:?}");
        }
    }
}
