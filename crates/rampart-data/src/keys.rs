//! A bounded cache of unwrapped device keys. Unwrapping costs a store read and an AES-GCM
//! open, so the ingest path must not do it per message. Entries of deleted devices and tenants
//! are dropped on the control bus event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rampart_platform::{BusMessage, ControlEvent, CutOffReason, Platform, PlatformError};

use crate::seal::DeviceKeys;

type CacheKey = (Arc<str>, Arc<str>);

pub(crate) struct KeyCache {
    platform: Arc<Platform>,
    capacity: usize,
    keys: Mutex<HashMap<CacheKey, Arc<DeviceKeys>>>,
}

/// Why a device key could not be had.
#[derive(Debug)]
pub(crate) enum KeyError {
    /// No such device (or it was deleted, key and all).
    Unknown,
    /// Storage or unwrapping failed.
    Other(String),
}

impl KeyCache {
    pub(crate) fn new(platform: Arc<Platform>, capacity: usize) -> Self {
        KeyCache { platform, capacity: capacity.max(1), keys: Mutex::new(HashMap::new()) }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<DeviceKeys>>> {
        // The map stays consistent even if a holder panicked.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn get(&self, tenant: &str, device: &str) -> Result<Arc<DeviceKeys>, KeyError> {
        let cache_key: CacheKey = (Arc::from(tenant), Arc::from(device));
        if let Some(keys) = self.map().get(&cache_key) {
            return Ok(Arc::clone(keys));
        }
        let key = match self.platform.keyring().device_key(tenant, device).await {
            Ok(key) => key,
            Err(PlatformError::Store(rampart_store::StoreError::NotFound)) => return Err(KeyError::Unknown),
            Err(PlatformError::KeyGone { .. }) => return Err(KeyError::Unknown),
            Err(error) => return Err(KeyError::Other(error.to_string())),
        };
        let keys = Arc::new(DeviceKeys::new(key));
        let mut map = self.map();
        if map.len() >= self.capacity {
            // Drop an arbitrary eighth: cheaper than LRU bookkeeping on every hit, and a miss
            // only costs one unwrap.
            let evict: Vec<CacheKey> = map.keys().take(self.capacity / 8 + 1).cloned().collect();
            for key in evict {
                map.remove(&key);
            }
        }
        map.insert(cache_key, Arc::clone(&keys));
        Ok(keys)
    }

    pub(crate) fn forget_device(&self, tenant: &str, device: &str) {
        self.map().retain(|(owner, id), _| !(&**owner == tenant && &**id == device));
    }

    pub(crate) fn forget_tenant(&self, tenant: &str) {
        self.map().retain(|(owner, _), _| &**owner != tenant);
    }

    /// Drops keys of deleted devices and tenants as the control bus announces them.
    pub(crate) fn spawn_invalidation(self: &Arc<Self>) {
        let cache = Arc::downgrade(self);
        let mut events = self.platform.subscribe();
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Some(BusMessage::Event(event)) => event,
                    Some(BusMessage::Resync) => {
                        // Missed events: start over rather than keep a deleted key.
                        if let Some(cache) = cache.upgrade() {
                            cache.map().clear();
                        }
                        continue;
                    }
                    None => return,
                };
                let Some(cache) = cache.upgrade() else { return };
                match event {
                    ControlEvent::DeviceCutOff { tenant, device, reason: CutOffReason::Deleted } => {
                        cache.forget_device(&tenant, &device);
                    }
                    ControlEvent::TenantDeleted { tenant } => cache.forget_tenant(&tenant),
                    _ => {}
                }
            }
        });
    }
}
