//! Encryption at rest of device data (SPEC §12): AES-256-GCM under the device key, with the
//! associated data binding each ciphertext to its tenant, device, table and row, so a sealed
//! value copied to another row or device does not open.
//!
//! Event types are not stored in clear: each row carries a keyed tag,
//! HMAC-SHA256(tag key, type) truncated to 128 bits, where the tag key is derived from the
//! device key. `?type=` filters compute the tag and use the index; the clear type lives in the
//! sealed body. Alarm type, severity and status stay clear for querying; alarm text is sealed.

use rampart_crypto::{CryptoError, SealingKey, SecretKey256, hmac_sha256_hex};
use zeroize::Zeroizing;

/// The unwrapped keys of one device.
pub(crate) struct DeviceKeys {
    /// The device key, prepared once for the many messages it seals.
    data: SealingKey,
    /// Derived from the data key; only for event-type tags.
    tag_key: Zeroizing<Vec<u8>>,
}

impl DeviceKeys {
    pub(crate) fn new(data: SecretKey256) -> Self {
        let derived = hmac_sha256_hex(data.expose_bytes(), b"rampart:event-type-tag-key");
        DeviceKeys { data: SealingKey::new(&data), tag_key: Zeroizing::new(derived.into_bytes()) }
    }

    pub(crate) fn seal_telemetry(&self, tenant: &str, device: &str, ts: i64, plain: &[u8]) -> Vec<u8> {
        self.data.seal(plain, format!("rampart:telemetry:{tenant}:{device}:{ts}").as_bytes())
    }

    pub(crate) fn open_telemetry(
        &self,
        tenant: &str,
        device: &str,
        ts: i64,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.data.open(sealed, format!("rampart:telemetry:{tenant}:{device}:{ts}").as_bytes())
    }

    pub(crate) fn seal_record(&self, table: &str, tenant: &str, device: &str, id: &str, plain: &[u8]) -> Vec<u8> {
        self.data.seal(plain, format!("rampart:{table}:{tenant}:{device}:{id}").as_bytes())
    }

    pub(crate) fn open_record(
        &self,
        table: &str,
        tenant: &str,
        device: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.data.open(sealed, format!("rampart:{table}:{tenant}:{device}:{id}").as_bytes())
    }

    /// The keyed tag of an event type.
    pub(crate) fn event_type_tag(&self, event_type: &str) -> String {
        let mut tag = hmac_sha256_hex(&self.tag_key, event_type.as_bytes());
        tag.truncate(32);
        tag
    }
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKeys(<redacted>)")
    }
}

/// Table labels bound into the associated data of sealed records.
pub(crate) const EVENTS: &str = "event";
pub(crate) const ATTESTATIONS: &str = "attestation";
pub(crate) const ALARM_TEXT: &str = "alarm-text";
pub(crate) const TWIN_REPORTED: &str = "twin-reported";
pub(crate) const TWIN_DESIRED: &str = "twin-desired";
pub(crate) const OPERATION_PAYLOAD: &str = "operation-payload";
pub(crate) const OPERATION_RESULT: &str = "operation-result";
