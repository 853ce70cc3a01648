//! TOTP second factor (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps, ±1 step accepted.
//! Replay protection (a used step is not accepted twice) is the caller's job: `verify`
//! returns the matched step so it can be remembered.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::CryptoError;

const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;
const SECRET_LEN: usize = 20;

/// A TOTP shared secret. Wiped on drop; `Debug` prints nothing secret.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl TotpSecret {
    /// A fresh 160-bit secret (the size RFC 4226 recommends).
    pub fn generate() -> Self {
        Self(Zeroizing::new(crate::random_array::<SECRET_LEN>().to_vec()))
    }

    /// A secret from stored bytes; at least 128 bits (RFC 4226 §4), at most 64 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if !(16..=64).contains(&bytes.len()) {
            return Err(CryptoError::InvalidKey { kind: "TOTP", reason: "expected 16 to 64 bytes" });
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The raw secret, for storing it encrypted.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }

    /// RFC 4648 base32 without padding, as authenticator apps expect.
    pub fn base32(&self) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = String::with_capacity(self.0.len().div_ceil(5) * 8);
        for chunk in self.0.chunks(5) {
            let mut block = [0u8; 5];
            block[..chunk.len()].copy_from_slice(chunk);
            let bits = block.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            let n_chars = (chunk.len() * 8).div_ceil(5);
            for i in 0..n_chars {
                let index = (bits >> (35 - 5 * i)) & 0x1f;
                out.push(char::from(ALPHABET[index as usize]));
            }
        }
        out
    }

    /// `otpauth://totp/{issuer}:{account}?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let issuer = percent_encode(issuer);
        format!(
            "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            percent_encode(account),
            self.base32(),
        )
    }

    /// The code for the step containing `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> String {
        self.code_for_step(unix_secs / STEP_SECS)
    }

    fn code_for_step(&self, step: u64) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let tag = hmac::sign(&key, &step.to_be_bytes());
        let mac = tag.as_ref();
        // Dynamic truncation (RFC 4226 §5.3); SHA-1 output is 20 bytes so offset + 4 <= 19.
        let offset = usize::from(mac[mac.len() - 1] & 0x0f);
        let binary = u32::from_be_bytes([mac[offset], mac[offset + 1], mac[offset + 2], mac[offset + 3]]) & 0x7fff_ffff;
        format!("{:06}", binary % 1_000_000)
    }

    /// If `code` (exactly 6 ASCII digits) is the code of the step of `unix_secs`, the one
    /// before or the one after, returns that step number (`unix_secs / 30` ± 1).
    pub fn verify(&self, code: &str, unix_secs: u64) -> Option<u64> {
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = unix_secs / STEP_SECS;
        let mut matched = None;
        // Check all three steps every time, so timing does not reveal which one matched.
        for step in [current.checked_sub(1), Some(current), current.checked_add(1)].into_iter().flatten() {
            let expected = self.code_for_step(step);
            if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) && matched.is_none() {
                matched = Some(step);
            }
        }
        matched
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `@`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890").unwrap()
    }

    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = rfc_secret();
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(secret.code_at(time), code, "t={time}");
            assert_eq!(secret.verify(code, time), Some(time / 30), "t={time}");
        }
    }

    #[test]
    fn window_is_plus_minus_one_step() {
        let secret = rfc_secret();
        let now = 1_234_567_890;
        let step = now / 30;
        for (offset_steps, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code_time = (now as i64 + offset_steps * 30) as u64;
            let code = secret.code_at(code_time);
            let expected = accepted.then_some(code_time / 30);
            assert_eq!(secret.verify(&code, now), expected, "offset {offset_steps}");
            if accepted {
                assert_eq!(expected, Some((step as i64 + offset_steps) as u64));
            }
        }
    }

    #[test]
    fn malformed_codes_refused() {
        let secret = rfc_secret();
        for code in ["", "28708", "2870820", "28708a", " 87082", "２87082", "+87082"] {
            assert_eq!(secret.verify(code, 59), None, "{code:?}");
        }
        assert_eq!(secret.verify("287082", 0), Some(1), "step before 0 does not underflow");
    }

    #[test]
    fn base32_and_uri() {
        let secret = rfc_secret();
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(TotpSecret::from_bytes(&[0xff; 16]).unwrap().base32(), format!("{}4", "7".repeat(25)));
        assert_eq!(
            secret.otpauth_uri("Rampart", "alice@acme"),
            "otpauth://totp/Rampart:alice@acme?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Rampart&algorithm=SHA1&digits=6&period=30"
        );
        assert!(secret.otpauth_uri("My Co", "a b:c").starts_with("otpauth://totp/My%20Co:a%20b%3Ac?"));
        let generated = TotpSecret::generate();
        assert_eq!(generated.expose_bytes().len(), 20);
        assert_eq!(generated.base32().len(), 32);
        assert!(TotpSecret::from_bytes(&[1; 15]).is_err());
        assert_eq!(format!("{generated:?}"), "TotpSecret(<redacted>)");
    }
}
