//! The desired half of the device twin (SPEC §9): people and applications patch it (JSON merge
//! patch, versioned, capped like the reported state); the device gets it retained on
//! `devices/{id}/twin/desired` as `{"version":n,"desired":{...}}`, at once when connected.
//! The twin as a whole is desired + reported + delta (what is desired and not yet reported).

use rampart_core::{AuditAction, DeviceId, Permission};
use rampart_platform::{DeviceFeed, Principal};
use rampart_store::{StoreError, TwinDesiredRow};
use serde_json::{Map, Value, json};

use crate::error::QueryError;
use crate::ingest::{Ingestor, Shared};
use crate::keys::KeyError;
use crate::payload::merge_patch;
use crate::seal::{self, DeviceKeys};
use crate::twin::check_caps;

/// Patch attempts before giving up on a contended desired state.
const ATTEMPTS: usize = 8;

/// A device twin.
#[derive(Debug, Clone, PartialEq)]
pub struct Twin {
    pub desired: Value,
    pub desired_version: i64,
    pub reported: Value,
    pub reported_version: i64,
    /// Desired values the device has not reported (yet): objects compared key by key.
    pub delta: Value,
}

impl Twin {
    pub fn to_json(&self) -> Value {
        json!({
            "desired": self.desired,
            "desired_version": self.desired_version,
            "reported": self.reported,
            "reported_version": self.reported_version,
            "delta": self.delta,
        })
    }
}

/// What in `desired` differs from `reported`: nested objects key by key, anything else whole.
pub fn delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut delta = Map::new();
    for (key, wanted) in desired {
        match (wanted, reported.get(key)) {
            (Value::Object(wanted), Some(Value::Object(has))) => {
                let inner = self::delta(wanted, has);
                if !inner.is_empty() {
                    delta.insert(key.clone(), Value::Object(inner));
                }
            }
            (wanted, Some(has)) if wanted == has => {}
            (wanted, _) => {
                delta.insert(key.clone(), wanted.clone());
            }
        }
    }
    delta
}

fn key_error(error: KeyError) -> QueryError {
    match error {
        KeyError::Unknown => QueryError::NotFound,
        KeyError::Other(reason) => QueryError::Internal(reason),
    }
}

fn open_desired(keys: &DeviceKeys, row: &TwinDesiredRow) -> Result<Map<String, Value>, QueryError> {
    let plain = keys
        .open_record(seal::TWIN_DESIRED, &row.tenant, &row.device, "", &row.desired_sealed)
        .map_err(|error| QueryError::Internal(error.to_string()))?;
    match serde_json::from_slice(&plain) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(QueryError::Internal("stored desired state is not a JSON object".into())),
    }
}

impl Shared {
    /// The desired state and its version (empty, 0 before the first patch).
    async fn read_desired(&self, tenant: &str, device: &str) -> Result<(Map<String, Value>, i64), QueryError> {
        let keys = self.keys.get(tenant, device).await.map_err(key_error)?;
        match self.store.get_twin_desired(tenant, device).await? {
            Some(row) => Ok((open_desired(&keys, &row)?, row.desired_version)),
            None => Ok((Map::new(), 0)),
        }
    }

    async fn read_twin(&self, tenant: &str, device: &str) -> Result<Twin, QueryError> {
        let (desired, desired_version) = self.read_desired(tenant, device).await?;
        let reported = crate::twin::read_reported(&self.keys, self, tenant, device).await?;
        let empty = Map::new();
        let delta = delta(&desired, reported.reported.as_object().unwrap_or(&empty));
        Ok(Twin {
            desired: Value::Object(desired),
            desired_version,
            reported: reported.reported,
            reported_version: reported.version,
            delta: Value::Object(delta),
        })
    }
}

impl Ingestor {
    /// The twin of a device the principal sees (`devices:read`).
    pub async fn twin(&self, principal: &Principal, device: &DeviceId) -> Result<Twin, QueryError> {
        let shared = &self.inner.shared;
        let device = shared
            .platform
            .visible_device(principal, Permission::DevicesRead, device)
            .await
            .map_err(QueryError::from_service)?;
        shared.read_twin(&principal.tenant, &device.id).await
    }

    /// The device's own twin (the caller authenticated the device).
    pub async fn device_twin(&self, tenant: &str, device: &str) -> Result<Twin, QueryError> {
        self.inner.shared.read_twin(tenant, device).await
    }

    /// Applies a JSON merge patch to the desired state of a device the principal sees
    /// (`devices:write`), audited; a connected device gets the new state at once.
    pub async fn patch_desired(
        &self,
        principal: &Principal,
        device: &DeviceId,
        patch: Value,
    ) -> Result<Twin, QueryError> {
        let shared = &self.inner.shared;
        let platform = &shared.platform;
        let device = platform
            .visible_device(principal, Permission::DevicesWrite, device)
            .await
            .map_err(QueryError::from_service)?;
        let Value::Object(patch) = patch else {
            return Err(QueryError::Invalid("the desired patch must be a JSON object".into()));
        };
        let tenant = &principal.tenant;
        let keys = shared.keys.get(tenant, &device.id).await.map_err(key_error)?;
        let _patching = shared.twin_locks.lock(tenant, &device.id).await;
        let mut written = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
            }
            let (mut state, version) = shared.read_desired(tenant, &device.id).await?;
            merge_patch(&mut state, patch.clone());
            let state = Value::Object(state);
            let plain = state.to_string();
            check_caps(&state, plain.len()).map_err(|error| QueryError::Invalid(error.to_string()))?;
            let row = TwinDesiredRow {
                tenant: tenant.clone(),
                device: device.id.clone(),
                desired_sealed: keys.seal_record(seal::TWIN_DESIRED, tenant, &device.id, "", plain.as_bytes()),
                desired_version: version + 1,
                updated_at: platform.now_ms(),
            };
            match shared.store.put_twin_desired(&row, version).await {
                Ok(()) => {
                    written = Some(version + 1);
                    break;
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        let Some(version) = written else {
            return Err(QueryError::Conflict("the desired state is contended; try again".into()));
        };
        platform.device_feed_changed(tenant, &device.id, DeviceFeed::DesiredTwin);
        let details = json!({"version": version, "keys": patch.keys().collect::<Vec<_>>()});
        platform.audit_by(principal, AuditAction::TwinDesiredUpdate, format!("device:{}", device.id), details).await;
        shared.read_twin(tenant, &device.id).await
    }

    /// What the device gets on `devices/{id}/twin/desired`: `{"version","desired"}`, or `None`
    /// before the first patch.
    pub async fn desired_message(&self, tenant: &str, device: &str) -> Result<Option<Value>, QueryError> {
        let (desired, version) = self.inner.shared.read_desired(tenant, device).await?;
        Ok((version > 0).then(|| json!({"version": version, "desired": desired})))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn the_delta_is_what_is_desired_and_not_reported() {
        let desired = object(json!({"fan": "on", "rate": 5, "net": {"ssid": "a", "band": 5}, "new": {"x": 1}}));
        let reported = object(json!({"fan": "on", "rate": 4, "net": {"ssid": "a", "band": 2}, "other": 1}));
        assert_eq!(Value::Object(delta(&desired, &reported)), json!({"rate": 5, "net": {"band": 5}, "new": {"x": 1}}));
        assert!(delta(&reported, &reported).is_empty());
        assert!(delta(&Map::new(), &reported).is_empty());
        let scalar_over_object = object(json!({"net": "off"}));
        assert_eq!(Value::Object(delta(&scalar_over_object, &reported)), json!({"net": "off"}));
    }
}
