//! Stateless access tokens: PASETO v4.public (Ed25519) carrying [`AccessClaims`].
//!
//! The payload uses the registered PASETO claims (`sub`, `iat`, `exp` as RFC 3339, `jti`) plus
//! `tenant`, `tuid` and `uid` (the incarnations of the tenant and the user: a token never
//! works for whoever later gets the same ids) and `tv` (the user's token version). An implicit assertion binds every token to
//! this purpose, so a PASETO signed by the same key for something else does not verify here.

use pasetors::Public;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::error::CryptoError;

const IMPLICIT_ASSERTION: &[u8] = b"rampart-access-token-v1";
/// How far `iat` may lie in the future (clock skew between nodes).
const MAX_CLOCK_SKEW_SECS: i64 = 60;

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub tenant: String,
    /// The tenant's incarnation.
    pub tenant_uid: String,
    pub username: String,
    /// The user's incarnation.
    pub user_uid: String,
    pub token_version: i64,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub token_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    tenant: String,
    tuid: String,
    sub: String,
    uid: String,
    tv: i64,
    iat: String,
    exp: String,
    jti: String,
}

/// The Ed25519 key that signs and verifies access tokens. Wiped on drop (pasetors zeroizes
/// its key bytes); `Debug` prints nothing secret.
pub struct TokenSigningKey {
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
}

impl std::fmt::Debug for TokenSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigningKey(<redacted>)")
    }
}

fn invalid_key(reason: &'static str) -> CryptoError {
    CryptoError::InvalidKey { kind: "token signing", reason }
}

impl TokenSigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        loop {
            // An all-zero seed is refused by `from_bytes`; with 256 random bits it never occurs,
            // but looping keeps this infallible without a panic path.
            if let Ok(key) = Self::from_bytes(&crate::random_array::<32>()[..]) {
                return key;
            }
        }
    }

    /// A key from its 32-byte Ed25519 seed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(bytes.try_into().map_err(|_| invalid_key("expected a 32-byte seed"))?);
        // pasetors panics on an all-zero seed; refuse it first.
        if seed.iter().all(|&b| b == 0) {
            return Err(invalid_key("all-zero seed"));
        }
        let signing_key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public_bytes = signing_key.verifying_key().to_bytes();
        let mut keypair_bytes = Zeroizing::new([0u8; 64]);
        keypair_bytes[..32].copy_from_slice(&seed[..]);
        keypair_bytes[32..].copy_from_slice(&public_bytes);
        let secret =
            AsymmetricSecretKey::<V4>::from(&keypair_bytes[..]).map_err(|_| invalid_key("rejected by PASETO"))?;
        let public = AsymmetricPublicKey::<V4>::from(&public_bytes).map_err(|_| invalid_key("rejected by PASETO"))?;
        Ok(Self { secret, public })
    }

    /// The 32-byte seed, for storing it encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.secret.as_bytes()[..32].to_vec())
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key_bytes(&self) -> &[u8] {
        self.public.as_bytes()
    }

    /// Signs `claims` into a `v4.public.…` token.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, CryptoError> {
        let timestamp = |unix: i64| {
            OffsetDateTime::from_unix_timestamp(unix)
                .ok()
                .and_then(|time| time.format(&Rfc3339).ok())
                .ok_or_else(|| CryptoError::TokenSigning { reason: format!("timestamp {unix} out of range") })
        };
        let payload = Payload {
            tenant: claims.tenant.clone(),
            tuid: claims.tenant_uid.clone(),
            sub: claims.username.clone(),
            uid: claims.user_uid.clone(),
            tv: claims.token_version,
            iat: timestamp(claims.issued_at)?,
            exp: timestamp(claims.expires_at)?,
            jti: claims.token_id.clone(),
        };
        let message =
            serde_json::to_vec(&payload).map_err(|error| CryptoError::TokenSigning { reason: error.to_string() })?;
        PublicToken::sign(&self.secret, &message, None, Some(IMPLICIT_ASSERTION))
            .map_err(|error| CryptoError::TokenSigning { reason: error.to_string() })
    }

    /// Verifies the signature, the implicit assertion, that no footer is present, that the
    /// token has not expired (`exp > now_unix`) and was not issued more than 60 s in the
    /// future. Every failure is [`CryptoError::InvalidToken`].
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<AccessClaims, CryptoError> {
        let untrusted = UntrustedToken::<Public, V4>::try_from(token).map_err(|_| CryptoError::InvalidToken)?;
        let trusted = PublicToken::verify(&self.public, &untrusted, None, Some(IMPLICIT_ASSERTION))
            .map_err(|_| CryptoError::InvalidToken)?;
        // We never issue footers; a signed one means the token is not ours.
        if !trusted.footer().is_empty() {
            return Err(CryptoError::InvalidToken);
        }
        let payload: Payload = serde_json::from_str(trusted.payload()).map_err(|_| CryptoError::InvalidToken)?;
        let parse = |text: &str| {
            OffsetDateTime::parse(text, &Rfc3339)
                .map(OffsetDateTime::unix_timestamp)
                .map_err(|_| CryptoError::InvalidToken)
        };
        let claims = AccessClaims {
            tenant: payload.tenant,
            tenant_uid: payload.tuid,
            username: payload.sub,
            user_uid: payload.uid,
            token_version: payload.tv,
            issued_at: parse(&payload.iat)?,
            expires_at: parse(&payload.exp)?,
            token_id: payload.jti,
        };
        if claims.expires_at <= now_unix || claims.issued_at > now_unix.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(CryptoError::InvalidToken);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn claims() -> AccessClaims {
        AccessClaims {
            tenant: "acme".into(),
            tenant_uid: "t0".into(),
            username: "alice".into(),
            user_uid: "u0".into(),
            token_version: 3,
            issued_at: NOW,
            expires_at: NOW + 900,
            token_id: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn round_trip_and_key_bytes() {
        let key = TokenSigningKey::generate();
        let token = key.sign(&claims()).unwrap();
        assert!(token.starts_with("v4.public."), "{token}");
        assert_eq!(key.verify(&token, NOW + 1).unwrap(), claims());
        let same = TokenSigningKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(same.verify(&token, NOW).unwrap(), claims());
        assert_eq!(same.public_key_bytes(), key.public_key_bytes());
        assert!(TokenSigningKey::from_bytes(&[0; 32]).is_err());
        assert!(TokenSigningKey::from_bytes(&[1; 31]).is_err());
        assert_eq!(format!("{key:?}"), "TokenSigningKey(<redacted>)");
    }

    #[test]
    fn refusals() {
        let key = TokenSigningKey::generate();
        let other = TokenSigningKey::generate();
        let token = key.sign(&claims()).unwrap();
        let future = key.sign(&AccessClaims { issued_at: NOW + 61, expires_at: NOW + 1000, ..claims() }).unwrap();
        let near_future = key.sign(&AccessClaims { issued_at: NOW + 60, ..claims() }).unwrap();
        let mut tampered = token.clone().into_bytes();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let with_footer = format!("{token}.Zm9v");
        let cases: &[(&str, &TokenSigningKey, &str, i64, bool)] = &[
            ("valid", &key, &token, NOW, true),
            ("last second", &key, &token, NOW + 899, true),
            ("expired at exp", &key, &token, NOW + 900, false),
            ("expired", &key, &token, NOW + 10_000, false),
            ("iat too far ahead", &key, &future, NOW, false),
            ("iat within skew", &key, &near_future, NOW, true),
            ("tampered", &key, &tampered, NOW, false),
            ("other key", &other, &token, NOW, false),
            ("footer added", &key, &with_footer, NOW, false),
            ("garbage", &key, "garbage", NOW, false),
            ("empty", &key, "", NOW, false),
            ("wrong purpose", &key, "v4.local.AAAA", NOW, false),
        ];
        for (name, verifier, token, now, ok) in cases {
            let result = verifier.verify(token, *now);
            match ok {
                true => assert!(result.is_ok(), "{name}: {result:?}"),
                false => assert!(matches!(result, Err(CryptoError::InvalidToken)), "{name}"),
            }
        }
    }

    #[test]
    fn other_implicit_assertion_refused() {
        let key = TokenSigningKey::generate();
        let message = serde_json::to_vec(&serde_json::json!({"sub": "x"})).unwrap();
        let token = PublicToken::sign(&key.secret, &message, None, Some(b"other")).unwrap();
        assert!(key.verify(&token, NOW).is_err());
    }
}
