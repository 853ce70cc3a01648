//! The audit chain (SPEC §11): canonical JSON, record hashes linking each record to the one
//! before, and Ed25519-signed checkpoints over a chain head.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// The `prev_hash` of the first record of a chain begun before tenant incarnations existed.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The `prev_hash` of the first record of the chain of tenant incarnation `incarnation`: it
/// binds every record of the chain, through the links, to that one incarnation. An empty
/// incarnation (a chain begun before incarnations) starts at [`GENESIS_HASH`].
pub fn genesis_hash(tenant: &str, incarnation: &str) -> String {
    match incarnation.is_empty() {
        true => GENESIS_HASH.to_owned(),
        false => crate::secrets::sha256_hex(format!("rampart-audit-genesis-v1\n{tenant}\n{incarnation}\n").as_bytes()),
    }
}

/// Canonical JSON: object keys sorted by Unicode code point at every depth, no insignificant
/// whitespace, strings and numbers formatted as `serde_json` formats them.
///
/// Sorting is done here rather than relying on `serde_json`'s map type, which turns into an
/// insertion-ordered map if any crate in the build enables `preserve_order`.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out, None);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>, skip_key: Option<&str>) {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out, None);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // UTF-8 byte order is Unicode code point order, so `str` ordering is what we want.
            let mut entries: Vec<(&String, &Value)> =
                map.iter().filter(|(key, _)| Some(key.as_str()) != skip_key).collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(item, out, None);
            }
            out.push(b'}');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serializing a scalar `Value` into a `Vec` cannot fail: no IO, no non-string map keys.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `hex(SHA-256(prev_hash || canonical_json(record)))`, where `prev_hash` is taken as its ASCII
/// bytes. A top-level `"hash"` member of `record`, if present, is left out, so a stored record
/// can be passed as it is.
pub fn audit_hash(prev_hash: &str, record_without_hash: &Value) -> String {
    let mut message = prev_hash.as_bytes().to_vec();
    write_canonical(record_without_hash, &mut message, Some("hash"));
    crate::secrets::sha256_hex(&message)
}

/// The exact bytes a checkpoint signature covers.
pub fn checkpoint_message(tenant: &str, seq: i64, hash: &str) -> Vec<u8> {
    format!("rampart-audit-checkpoint-v1\n{tenant}\n{seq}\n{hash}\n").into_bytes()
}

/// The platform audit key (Ed25519). Wiped on drop; `Debug` shows only the public key.
pub struct AuditSigningKey(SigningKey);

impl std::fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditSigningKey(public: {})", self.public_key_base64())
    }
}

impl AuditSigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(SigningKey::from_bytes(&crate::random_array::<32>()))
    }

    /// A key from its 32-byte seed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes
                .try_into()
                .map_err(|_| CryptoError::InvalidKey { kind: "audit signing", reason: "expected a 32-byte seed" })?,
        );
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The 32-byte seed, for storing it encrypted.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_bytes().to_vec())
    }

    /// Standard base64 of the 32-byte public key (what `GET /api/v1/audit/public-key` serves).
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.0.verifying_key().as_bytes())
    }

    /// Signs [`checkpoint_message`]; returns the signature in standard base64.
    pub fn sign_checkpoint(&self, tenant: &str, seq: i64, hash: &str) -> String {
        STANDARD.encode(self.0.sign(&checkpoint_message(tenant, seq, hash)).to_bytes())
    }
}

/// Checks a checkpoint signature with `verify_strict`. False on any malformed input.
pub fn verify_checkpoint(public_key_base64: &str, tenant: &str, seq: i64, hash: &str, signature_base64: &str) -> bool {
    let Some(key) = STANDARD
        .decode(public_key_base64)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok())
    else {
        return false;
    };
    let Some(signature) = STANDARD
        .decode(signature_base64)
        .ok()
        .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
        .map(|bytes| Signature::from_bytes(&bytes))
    else {
        return false;
    };
    key.verify_strict(&checkpoint_message(tenant, seq, hash), &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_cases() {
        let cases = [
            (json!({"b": 1, "a": 2}), r#"{"a":2,"b":1}"#),
            (
                json!({"z": {"y": [3, {"d": null, "c": true}], "x": "é\"\n"}, "a": []}),
                r#"{"a":[],"z":{"x":"é\"\n","y":[3,{"c":true,"d":null}]}}"#,
            ),
            (json!({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5}), r#"{"Z":3,"a":5,"aa":4,"z":2,"é":1}"#),
            (json!([1.5, -0, 10000000000u64, "x"]), r#"[1.5,0,10000000000,"x"]"#),
            (json!("plain"), r#""plain""#),
            (json!({}), "{}"),
        ];
        for (value, expected) in cases {
            assert_eq!(String::from_utf8(canonical_json(&value)).unwrap(), expected);
        }
    }

    fn record() -> Value {
        json!({
            "seq": 1, "ts": "2025-01-01T00:00:00.000Z", "tenant": "acme",
            "actor": {"type": "user", "id": "alice"}, "action": "login", "target": "alice",
            "source_ip": "127.0.0.1", "outcome": "success", "details": {}, "prev_hash": GENESIS_HASH,
        })
    }

    #[test]
    fn audit_hash_is_stable() {
        let hash = audit_hash(GENESIS_HASH, &record());
        // Pinned: changing this value breaks every stored chain.
        let mut message = GENESIS_HASH.as_bytes().to_vec();
        message.extend_from_slice(&canonical_json(&record()));
        assert_eq!(hash, crate::secrets::sha256_hex(&message));
        // Cross-checked with Python: json.dumps(sort_keys=True, separators=(",", ":")).
        assert_eq!(hash, "685f4206e62e13836ce4e4f2f8bfa6907caa675b8dc906933164f4a9bd004539");
        let mut with_hash = record();
        with_hash["hash"] = json!(hash);
        assert_eq!(audit_hash(GENESIS_HASH, &with_hash), hash, "top-level hash is ignored");
        let mut altered = record();
        altered["outcome"] = json!("failure");
        assert_ne!(audit_hash(GENESIS_HASH, &altered), hash);
        assert_ne!(audit_hash(&"1".repeat(64), &record()), hash);
        assert_eq!(GENESIS_HASH.len(), 64);
        assert_eq!(genesis_hash("acme", ""), GENESIS_HASH);
        assert_ne!(genesis_hash("acme", "a1"), genesis_hash("acme", "a2"));
        assert_eq!(genesis_hash("acme", "a1").len(), 64);
    }

    #[test]
    fn checkpoint_sign_verify() {
        let key = AuditSigningKey::generate();
        let public = key.public_key_base64();
        let hash = audit_hash(GENESIS_HASH, &record());
        let signature = key.sign_checkpoint("acme", 1000, &hash);
        let other_public = AuditSigningKey::generate().public_key_base64();
        let cases: &[(&str, &str, &str, i64, &str, &str, bool)] = &[
            ("valid", &public, "acme", 1000, &hash, &signature, true),
            ("tampered seq", &public, "acme", 1001, &hash, &signature, false),
            ("other tenant", &public, "acme2", 1000, &hash, &signature, false),
            ("other hash", &public, "acme", 1000, GENESIS_HASH, &signature, false),
            ("other key", &other_public, "acme", 1000, &hash, &signature, false),
            ("garbage key", "!!", "acme", 1000, &hash, &signature, false),
            ("short key", "AAAA", "acme", 1000, &hash, &signature, false),
            ("garbage signature", &public, "acme", 1000, &hash, "AAAA", false),
            ("empty signature", &public, "acme", 1000, &hash, "", false),
        ];
        for (name, public, tenant, seq, hash, signature, ok) in cases {
            assert_eq!(verify_checkpoint(public, tenant, *seq, hash, signature), *ok, "{name}");
        }
        let restored = AuditSigningKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(restored.public_key_base64(), public);
        assert!(AuditSigningKey::from_bytes(&[0; 31]).is_err());
        assert!(!format!("{key:?}").contains(&STANDARD.encode(&key.to_bytes()[..])));
    }
}
