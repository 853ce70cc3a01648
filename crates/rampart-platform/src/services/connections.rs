//! What the device edges (MQTT gateway, HTTPS device API) record about connections, and the
//! gateway's retained messages: thin, but the only way those edges reach the store. Each
//! write names only its own columns, so it never races an edit of the device.

use rampart_store::{RetainedChange, RetainedMessageRow};

use crate::error::PlatformResult;
use crate::platform::Platform;

impl Platform {
    /// A device connected over MQTT from `address`: `connected`, `last_seen`, `last_address`,
    /// and `registered` becomes `active`.
    pub async fn device_connected(&self, tenant: &str, device: &str, address: &str) -> PlatformResult<()> {
        Ok(self.store.mark_device_connected(tenant, device, self.now_ms(), address).await?)
    }

    /// A device's MQTT connection ended.
    pub async fn device_disconnected(&self, tenant: &str, device: &str) -> PlatformResult<()> {
        Ok(self.store.mark_device_disconnected(tenant, device, self.now_ms()).await?)
    }

    /// A device called the HTTPS device API from `address` (seen, not connected).
    pub async fn device_seen(&self, tenant: &str, device: &str, address: &str) -> PlatformResult<()> {
        Ok(self.store.mark_device_seen(tenant, device, self.now_ms(), address).await?)
    }

    /// Applies retained-message changes in order, in one transaction.
    pub async fn write_retained(&self, changes: &[RetainedChange]) -> PlatformResult<()> {
        Ok(self.store.write_retained_messages(changes).await?)
    }

    /// Forgets every retained message whose expiry has passed; answers how many went.
    pub async fn purge_expired_retained(&self) -> PlatformResult<u64> {
        Ok(self.store.delete_expired_retained_messages(self.now_ms()).await?)
    }

    /// Every retained message of every tenant (loaded by the gateway at start).
    pub async fn all_retained(&self) -> PlatformResult<Vec<RetainedMessageRow>> {
        Ok(self.store.list_all_retained_messages().await?)
    }
}
