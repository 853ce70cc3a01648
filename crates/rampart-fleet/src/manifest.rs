//! The signed firmware manifest (SPEC §9): image metadata, its checks, and the exact bytes an
//! Ed25519 signature covers: `rampart-fw-v1\n{name}\n{version}\n{hardware}\n{security_counter}\n{sha256 hex}\n`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

/// Largest accepted security counter.
pub const MAX_SECURITY_COUNTER: i64 = i32::MAX as i64;

/// The `metadata` part of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareMetadata {
    pub name: String,
    /// A SemVer version (`1.4.2`), so that advisories' ranges can be compared with it.
    pub version: String,
    pub hardware: String,
    pub security_counter: i64,
    /// For an image signed offline: its base64 Ed25519 signature over the manifest.
    #[serde(default)]
    pub signature: Option<String>,
    /// For an image signed offline: the registered key that signed it (any registered key
    /// when absent).
    #[serde(default)]
    pub key_id: Option<String>,
    /// The SHA-256 (hex) the uploader expects; the upload is refused if the image differs.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// Whether `text` is 1–64 of `A-Z a-z 0-9 . _ + -` (no line breaks can reach the manifest).
fn is_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'+'))
}

impl FirmwareMetadata {
    /// Parses and checks the `metadata` JSON; the error names the field.
    pub fn parse(text: &[u8]) -> Result<FirmwareMetadata, String> {
        let metadata: FirmwareMetadata =
            serde_json::from_slice(text).map_err(|error| format!("metadata is not valid: {error}"))?;
        if !is_label(&metadata.name) {
            return Err("metadata.name must be 1-64 of A-Z a-z 0-9 . _ + -".into());
        }
        if !is_label(&metadata.hardware) {
            return Err("metadata.hardware must be 1-64 of A-Z a-z 0-9 . _ + -".into());
        }
        if !is_label(&metadata.version) || semver::Version::parse(&metadata.version).is_err() {
            return Err("metadata.version must be a SemVer version such as 1.4.2".into());
        }
        if !(0..=MAX_SECURITY_COUNTER).contains(&metadata.security_counter) {
            return Err(format!("metadata.security_counter must be 0 to {MAX_SECURITY_COUNTER}"));
        }
        if metadata.sha256.as_ref().is_some_and(|hash| hash.len() != 64 || hex::decode(hash).is_err()) {
            return Err("metadata.sha256 must be 64 hex digits".into());
        }
        Ok(metadata)
    }
}

/// The exact bytes the signature covers.
pub fn manifest(name: &str, version: &str, hardware: &str, security_counter: i64, sha256_hex: &str) -> String {
    format!("rampart-fw-v1\n{name}\n{version}\n{hardware}\n{security_counter}\n{sha256_hex}\n")
}

/// Decodes a base64 Ed25519 public key.
pub fn public_key(base64: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = STANDARD.decode(base64.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Whether `signature_base64` is a valid (strict) Ed25519 signature of `manifest` by `key`.
pub fn verifies(key: &VerifyingKey, manifest: &str, signature_base64: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(signature_base64.trim()) else { return false };
    let Ok(signature) = Signature::from_slice(&bytes) else { return false };
    key.verify_strict(manifest.as_bytes(), &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    #[test]
    fn the_manifest_is_exactly_the_documented_bytes() {
        assert_eq!(manifest("fw", "1.2.3", "rev-b", 7, "ab"), "rampart-fw-v1\nfw\n1.2.3\nrev-b\n7\nab\n");
    }

    #[test]
    fn signatures_verify_only_for_their_manifest() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let text = manifest("fw", "1.2.3", "rev-b", 7, "ab");
        let signature = STANDARD.encode(key.sign(text.as_bytes()).to_bytes());
        let public = public_key(&STANDARD.encode(key.verifying_key().to_bytes())).expect("key");
        assert!(verifies(&public, &text, &signature));
        assert!(!verifies(&public, &manifest("fw", "1.2.3", "rev-b", 6, "ab"), &signature));
        assert!(!verifies(&public, &text, "not base64"));
        assert!(public_key("AAAA").is_none());
    }

    #[test]
    fn metadata_errors_name_the_field() {
        let ok = br#"{"name":"fw","version":"1.0.0","hardware":"hw","security_counter":1}"#;
        assert!(FirmwareMetadata::parse(ok).is_ok());
        for (bad, field) in [
            (r#"{"name":"f\nw","version":"1.0.0","hardware":"hw","security_counter":1}"#, "name"),
            (r#"{"name":"fw","version":"one","hardware":"hw","security_counter":1}"#, "version"),
            (r#"{"name":"fw","version":"1.0.0","hardware":"","security_counter":1}"#, "hardware"),
            (r#"{"name":"fw","version":"1.0.0","hardware":"hw","security_counter":-1}"#, "security_counter"),
            (r#"{"name":"fw","version":"1.0.0","hardware":"hw","security_counter":1,"sha256":"x"}"#, "sha256"),
            (r#"{"name":"fw","version":"1.0.0","hardware":"hw"}"#, "security_counter"),
        ] {
            let error = FirmwareMetadata::parse(bad.as_bytes()).expect_err(bad);
            assert!(error.contains(field), "{error}");
        }
    }
}
