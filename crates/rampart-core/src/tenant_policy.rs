//! The tenant policy (SPEC §4, §9, §10): MFA requirement, MQTT client takeover, the detection
//! thresholds and quarantine on untrusted firmware. One schema and one parser: the stored JSON
//! document is read only through [`TenantPolicy::from_stored`], with defaults for every key not
//! stored, and changed only by [`TenantPolicy::apply`] of a partial update.

use serde::{Deserialize, Serialize};

/// What happens when a device connects while a session with its id is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ClientTakeover {
    /// The newcomer replaces the live session (the MQTT default).
    #[default]
    Allow,
    /// The newcomer is refused while the device is connected.
    Reject,
}

/// Thresholds of the detection rules (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct DetectionPolicy {
    /// Failed logins or device connects from one IP that trigger a block.
    pub failed_auth_threshold: u32,
    pub failed_auth_window_s: u32,
    pub block_duration_s: u32,
    /// ACL violations by one device that quarantine it.
    pub acl_violation_threshold: u32,
    pub acl_violation_window_s: u32,
    /// A rate over this multiple of a device's moving baseline is an anomaly.
    pub rate_anomaly_factor: u32,
}

impl Default for DetectionPolicy {
    fn default() -> Self {
        DetectionPolicy {
            failed_auth_threshold: 10,
            failed_auth_window_s: 60,
            block_duration_s: 900,
            acl_violation_threshold: 3,
            acl_violation_window_s: 60,
            rate_anomaly_factor: 10,
        }
    }
}

/// The tenant policy document with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TenantPolicy {
    /// Users without MFA may only enrol.
    pub require_mfa: bool,
    pub client_takeover: ClientTakeover,
    pub detection: DetectionPolicy,
    /// A device whose attestation is judged untrusted is quarantined (SPEC §9).
    pub quarantine_untrusted_firmware: bool,
}

/// A partial update of the tenant policy: only the keys given change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantPolicyPatch {
    pub require_mfa: Option<bool>,
    /// `allow` or `reject`.
    pub client_takeover: Option<ClientTakeover>,
    pub detection: Option<DetectionPatch>,
    pub quarantine_untrusted_firmware: Option<bool>,
}

/// A partial update of the detection thresholds; every number must be positive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DetectionPatch {
    pub failed_auth_threshold: Option<u32>,
    pub failed_auth_window_s: Option<u32>,
    pub block_duration_s: Option<u32>,
    pub acl_violation_threshold: Option<u32>,
    pub acl_violation_window_s: Option<u32>,
    pub rate_anomaly_factor: Option<u32>,
}

/// A policy document that cannot be accepted; the text is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    /// The stored document no longer parses: a storage problem, not the caller's.
    #[error("stored policy does not parse: {0}")]
    Stored(String),
}

impl TenantPolicy {
    /// The policy as stored, defaults for absent keys; `None` (nothing stored) is the default.
    pub fn from_stored(text: Option<&str>) -> Result<TenantPolicy, PolicyError> {
        match text {
            None => Ok(TenantPolicy::default()),
            Some(text) => serde_json::from_str(text).map_err(|error| PolicyError::Stored(error.to_string())),
        }
    }

    /// The document to store.
    pub fn to_stored(&self) -> String {
        serde_json::to_value(self).map(|value| value.to_string()).unwrap_or_default()
    }

    /// Applies a partial update; nothing changes when it is refused.
    pub fn apply(&mut self, patch: TenantPolicyPatch) -> Result<(), PolicyError> {
        let mut next = self.clone();
        if let Some(require_mfa) = patch.require_mfa {
            next.require_mfa = require_mfa;
        }
        if let Some(client_takeover) = patch.client_takeover {
            next.client_takeover = client_takeover;
        }
        if let Some(quarantine) = patch.quarantine_untrusted_firmware {
            next.quarantine_untrusted_firmware = quarantine;
        }
        if let Some(detection) = patch.detection {
            let target = &mut next.detection;
            set_positive(&mut target.failed_auth_threshold, detection.failed_auth_threshold, "failed_auth_threshold")?;
            set_positive(&mut target.failed_auth_window_s, detection.failed_auth_window_s, "failed_auth_window_s")?;
            set_positive(&mut target.block_duration_s, detection.block_duration_s, "block_duration_s")?;
            set_positive(
                &mut target.acl_violation_threshold,
                detection.acl_violation_threshold,
                "acl_violation_threshold",
            )?;
            set_positive(
                &mut target.acl_violation_window_s,
                detection.acl_violation_window_s,
                "acl_violation_window_s",
            )?;
            set_positive(&mut target.rate_anomaly_factor, detection.rate_anomaly_factor, "rate_anomaly_factor")?;
        }
        *self = next;
        Ok(())
    }
}

fn set_positive(target: &mut u32, value: Option<u32>, name: &str) -> Result<(), PolicyError> {
    match value {
        None => Ok(()),
        Some(0) => Err(PolicyError::Invalid(format!("detection.{name} must be a positive number"))),
        Some(value) => {
            *target = value;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_match_the_documented_document() {
        let value = serde_json::to_value(TenantPolicy::default()).unwrap_or_default();
        assert_eq!(
            value,
            json!({"require_mfa": false, "client_takeover": "allow", "detection": {
                "failed_auth_threshold": 10, "failed_auth_window_s": 60, "block_duration_s": 900,
                "acl_violation_threshold": 3, "acl_violation_window_s": 60, "rate_anomaly_factor": 10},
                "quarantine_untrusted_firmware": false})
        );
    }

    #[test]
    fn stored_documents_fill_defaults_and_round_trip() {
        let stored = r#"{"require_mfa":true,"detection":{"block_duration_s":5}}"#;
        let policy = TenantPolicy::from_stored(Some(stored)).unwrap_or_default();
        assert!(policy.require_mfa);
        assert_eq!(policy.detection.block_duration_s, 5);
        assert_eq!(policy.detection.failed_auth_threshold, 10);
        assert_eq!(TenantPolicy::from_stored(Some(&policy.to_stored())), Ok(policy));
        assert!(matches!(TenantPolicy::from_stored(Some("[")), Err(PolicyError::Stored(_))));
        assert_eq!(TenantPolicy::from_stored(None), Ok(TenantPolicy::default()));
    }

    #[test]
    fn patches_change_only_what_they_name_and_refuse_whole() {
        let mut policy = TenantPolicy::default();
        let patch = TenantPolicyPatch { client_takeover: Some(ClientTakeover::Reject), ..Default::default() };
        assert_eq!(policy.apply(patch), Ok(()));
        assert_eq!(policy.client_takeover, ClientTakeover::Reject);
        assert!(!policy.require_mfa);
        let bad = TenantPolicyPatch {
            require_mfa: Some(true),
            detection: Some(DetectionPatch { block_duration_s: Some(0), ..Default::default() }),
            ..Default::default()
        };
        assert!(policy.apply(bad).is_err());
        assert!(!policy.require_mfa, "a refused patch changes nothing");
        assert!(serde_json::from_value::<TenantPolicyPatch>(json!({"requires_mfa": true})).is_err());
    }
}
