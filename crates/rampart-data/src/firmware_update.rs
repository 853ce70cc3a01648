//! The `firmware_update` operation (SPEC §9): what a campaign sends a device (the image's
//! manifest fields, its signature and where to download it), and what the platform records
//! when the device reports it SUCCESSFUL: the image becomes the device's installed firmware
//! and its security counter the floor for later campaigns (anti-rollback).

use serde::{Deserialize, Serialize};

/// The operation type campaigns create; other callers may not create it directly.
pub const FIRMWARE_UPDATE: &str = "firmware_update";

/// The payload of a `firmware_update` operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareUpdate {
    pub firmware_id: String,
    pub name: String,
    pub version: String,
    pub hardware: String,
    pub security_counter: i64,
    /// Lowercase hex SHA-256 of the image.
    pub sha256: String,
    pub size: i64,
    /// Base64 Ed25519 signature over the manifest.
    pub signature: String,
    /// The registered public key that signed it; absent for the tenant's own key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Where the device downloads it (HTTPS, device credentials, Range supported).
    pub url: String,
}

impl FirmwareUpdate {
    /// The payload as JSON.
    pub fn to_payload(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Reads a payload back (`None` if it is not one).
    pub fn from_payload(payload: &serde_json::Value) -> Option<FirmwareUpdate> {
        serde_json::from_value(payload.clone()).ok()
    }
}
