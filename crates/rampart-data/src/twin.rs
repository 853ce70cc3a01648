//! The reported half of the device twin: each report is a JSON merge patch applied to the
//! stored state under a version counter. It is a read-modify-write, so it does not go through
//! the group-commit batch; merges of one device are serialised by that device's lock (devices
//! do not wait for each other), and concurrent writers on other nodes are caught by the
//! version check and retried. A state is capped in bytes and in keys: a patch that would
//! outgrow it changes nothing.

use std::sync::Arc;

use rampart_platform::format_rfc3339_ms;
use rampart_store::{DeviceSeen, StoreError, TwinReportedRow};
use serde_json::{Map, Value};

use crate::error::{IngestError, QueryError};
use crate::ingest::Shared;
use crate::keys::{KeyCache, KeyError};
use crate::live::{LiveEvent, LiveTopic};
use crate::payload::merge_patch;
use crate::queries::ReportedTwin;
use crate::seal::{self, DeviceKeys};

/// Merge attempts before giving up on a contended twin.
const ATTEMPTS: usize = 8;
/// Largest reported state, as compact JSON.
pub(crate) const MAX_TWIN_BYTES: usize = 64 * 1024;
/// Most keys in a reported state, counted at every depth.
pub(crate) const MAX_TWIN_KEYS: usize = 1024;
/// Lock stripes: merges of devices hashing to different stripes run in parallel.
const LOCK_STRIPES: usize = 256;

/// Per-device merge locks, striped so that memory stays fixed whatever the number of devices.
pub(crate) struct TwinLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for TwinLocks {
    fn default() -> Self {
        TwinLocks((0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl TwinLocks {
    pub(crate) async fn lock(&self, tenant: &str, device: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        // A fixed hasher: the same device must always map to the same stripe.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (tenant, device).hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % LOCK_STRIPES as u64).unwrap_or(0);
        self.0[stripe].lock().await
    }
}

/// Keys of a JSON value at every depth.
fn key_count(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(key_count).sum::<usize>(),
        Value::Array(items) => items.iter().map(key_count).sum(),
        _ => 0,
    }
}

/// Refuses a reported state over the caps.
pub(crate) fn check_caps(state: &Value, encoded_len: usize) -> Result<(), IngestError> {
    if encoded_len > MAX_TWIN_BYTES {
        return Err(IngestError::TooLarge(format!("the reported twin would exceed {MAX_TWIN_BYTES} bytes")));
    }
    if key_count(state) > MAX_TWIN_KEYS {
        return Err(IngestError::TooLarge(format!("the reported twin would exceed {MAX_TWIN_KEYS} keys")));
    }
    Ok(())
}

fn key_error(tenant: &str, device: &str, error: KeyError) -> IngestError {
    match error {
        KeyError::Unknown => IngestError::UnknownDevice { tenant: tenant.to_owned(), device: device.to_owned() },
        KeyError::Other(reason) => IngestError::Storage(reason),
    }
}

fn open_state(keys: &DeviceKeys, row: &TwinReportedRow) -> Result<Map<String, Value>, String> {
    let plain = keys
        .open_record(seal::TWIN_REPORTED, &row.tenant, &row.device, "", &row.reported_sealed)
        .map_err(|error| error.to_string())?;
    match serde_json::from_slice(&plain) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("stored reported twin is not a JSON object".to_owned()),
    }
}

/// Merges `patch` into the device's reported state and commits it.
pub(crate) async fn apply_reported(
    shared: &Shared,
    tenant: &str,
    device: &str,
    patch: Map<String, Value>,
    received_at_ms: i64,
) -> Result<(), IngestError> {
    let keys = shared.keys.get(tenant, device).await.map_err(|error| key_error(tenant, device, error))?;
    let store = &shared.store;
    let _merging = shared.twin_locks.lock(tenant, device).await;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Another node won the race: back off a little before reading again.
            tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
        }
        let current = store.get_twin_reported(tenant, device).await.map_err(storage)?;
        let (mut state, version) = match &current {
            Some(row) => (open_state(&keys, row).map_err(IngestError::Storage)?, row.reported_version),
            None => (Map::new(), 0),
        };
        merge_patch(&mut state, patch.clone());
        let state = Value::Object(state);
        let plain = state.to_string();
        check_caps(&state, plain.len())?;
        let row = TwinReportedRow {
            tenant: tenant.to_owned(),
            device: device.to_owned(),
            reported_sealed: keys.seal_record(seal::TWIN_REPORTED, tenant, device, "", plain.as_bytes()),
            reported_version: version + 1,
            updated_at: received_at_ms,
        };
        match store.put_twin_reported(&row, version).await {
            Ok(()) => {
                let seen = DeviceSeen { tenant: tenant.to_owned(), device: device.to_owned(), at_ms: received_at_ms };
                if let Err(error) = store.touch_devices_last_seen(&[seen]).await {
                    tracing::warn!(%error, "updating last_seen after a twin report failed");
                }
                let mut data = Map::new();
                data.insert("device".into(), Value::from(device));
                data.insert("ts".into(), Value::from(format_rfc3339_ms(received_at_ms)));
                data.insert("reported".into(), state);
                data.insert("version".into(), Value::from(version + 1));
                shared.publish(LiveEvent {
                    tenant: Arc::from(tenant),
                    device: Arc::from(device),
                    topic: LiveTopic::TwinReported,
                    ts: received_at_ms,
                    data: Arc::new(Value::Object(data)),
                });
                return Ok(());
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(error) => return Err(storage(error)),
        }
    }
    Err(IngestError::Storage("reported twin is contended; gave up".to_owned()))
}

fn storage(error: StoreError) -> IngestError {
    IngestError::Storage(error.to_string())
}

/// Reads the reported state (empty object, version 0 before the first report).
pub(crate) async fn read_reported(
    keys: &KeyCache,
    shared: &Shared,
    tenant: &str,
    device: &str,
) -> Result<ReportedTwin, QueryError> {
    let device_keys = keys.get(tenant, device).await.map_err(|error| match error {
        KeyError::Unknown => QueryError::NotFound,
        KeyError::Other(reason) => QueryError::Internal(reason),
    })?;
    match shared.store.get_twin_reported(tenant, device).await? {
        Some(row) => Ok(ReportedTwin {
            reported: Value::Object(open_state(&device_keys, &row).map_err(QueryError::Internal)?),
            version: row.reported_version,
        }),
        None => Ok(ReportedTwin { reported: Value::Object(Map::new()), version: 0 }),
    }
}
