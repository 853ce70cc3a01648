//! Devices and their data keys. A device's status moves only through conditional writes
//! (revoke, reinstate, from → to), and an edit changes only the columns it names, so no edit
//! can write a revoked device back.

use std::fmt;

use async_trait::async_trait;
use rampart_core::DeviceStatus;

use crate::owned_tables::device_deletion;
use crate::sql_store::{Select, SqlStore};
use crate::table::Table;
use crate::value::{Row, Statement, Value, placeholders};
use crate::{Page, StoreError, StoreResult};

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub device_type: Option<String>,
    pub group: Option<String>,
    /// JSON object text.
    pub attributes_json: String,
    pub required_interval_s: Option<i64>,
    pub status: DeviceStatus,
    pub connected: bool,
    pub last_seen: Option<i64>,
    pub last_address: Option<String>,
    pub firmware: Option<String>,
    /// Epoch ms of the last revocation: no credential issued (or valid from) before it
    /// authenticates the device again, even after it is reinstated.
    pub credentials_valid_after: i64,
    pub created_at: i64,
}

/// The columns an edit of a device changes; `None` leaves a column alone. Status is not among
/// them: it moves only through its own conditional writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceChanges {
    pub name: Option<String>,
    pub device_type: Option<Option<String>>,
    pub group: Option<Option<String>>,
    pub attributes_json: Option<String>,
    pub required_interval_s: Option<Option<i64>>,
}

impl DeviceChanges {
    /// The names of the fields this edit sets, for the audit record.
    pub fn changed(&self) -> Vec<&'static str> {
        [
            (self.name.is_some(), "name"),
            (self.device_type.is_some(), "type"),
            (self.group.is_some(), "group"),
            (self.attributes_json.is_some(), "attributes"),
            (self.required_interval_s.is_some(), "required_interval_s"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// Filters for listing devices; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Exact group id.
    pub group: Option<String>,
    /// The device's group must be one of these (group-scoped callers); `None` = no restriction.
    pub within_groups: Option<Vec<String>>,
    pub status: Option<DeviceStatus>,
    pub device_type: Option<String>,
}

/// A device's data key wrapped by the tenant key `tenant_key_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey {
    pub tenant: String,
    pub device: String,
    pub tenant_key_id: String,
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey").field("tenant", &self.tenant).field("device", &self.device).finish_non_exhaustive()
    }
}

const DEVICES: Table = Table {
    name: "devices",
    columns: &[
        "tenant",
        "id",
        "name",
        "device_type",
        "group_id",
        "attributes_json",
        "required_interval_s",
        "status",
        "connected",
        "last_seen",
        "last_address",
        "firmware",
        "credentials_valid_after",
        "created_at",
    ],
};
const DEVICE_KEYS: Table = Table { name: "device_keys", columns: &["tenant", "device", "tenant_key_id", "wrapped"] };

pub(crate) fn status_from_text(text: &str) -> StoreResult<DeviceStatus> {
    DeviceStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown device status {text:?}")))
}

fn device_from_row(mut row: Row) -> StoreResult<Device> {
    Ok(Device {
        tenant: row.text()?,
        id: row.text()?,
        name: row.text()?,
        device_type: row.opt_text()?,
        group: row.opt_text()?,
        attributes_json: row.text()?,
        required_interval_s: row.opt_int()?,
        status: status_from_text(&row.text()?)?,
        connected: row.bool()?,
        last_seen: row.opt_int()?,
        last_address: row.opt_text()?,
        firmware: row.opt_text()?,
        credentials_valid_after: row.int()?,
        created_at: row.int()?,
    })
}

fn device_values(device: &Device) -> Vec<Value> {
    vec![
        (&device.tenant).into(),
        (&device.id).into(),
        (&device.name).into(),
        device.device_type.as_ref().into(),
        device.group.as_ref().into(),
        (&device.attributes_json).into(),
        device.required_interval_s.into(),
        device.status.as_str().into(),
        device.connected.into(),
        device.last_seen.into(),
        device.last_address.as_ref().into(),
        device.firmware.as_ref().into(),
        device.credentials_valid_after.into(),
        device.created_at.into(),
    ]
}

fn device_key_from_row(mut row: Row) -> StoreResult<DeviceKey> {
    Ok(DeviceKey { tenant: row.text()?, device: row.text()?, tenant_key_id: row.text()?, wrapped: row.blob()? })
}

/// Device persistence.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Creates the device and its data key in one transaction (a device never exists without
    /// its key). `Conflict` when the id is taken.
    /// Creates the device with its data key. A device created under the id of a deleted one
    /// takes only credentials issued after that deletion: its `credentials_valid_after` is at
    /// least the deletion time.
    async fn create_device(&self, device: &Device, key: &DeviceKey) -> StoreResult<()>;
    async fn get_device(&self, tenant: &str, id: &str) -> StoreResult<Device>;
    async fn list_devices(&self, tenant: &str, filter: &DeviceFilter, page: &Page) -> StoreResult<Vec<Device>>;
    /// Changes the named columns and answers the device as stored afterwards.
    async fn update_device(&self, tenant: &str, id: &str, changes: &DeviceChanges) -> StoreResult<Device>;
    /// Moves the device's status to `to` if it is one of `from`; `NotFound` if no such device,
    /// `Conflict` if its status is not in `from`. Answers the device afterwards.
    async fn set_device_status(
        &self,
        tenant: &str,
        id: &str,
        from: &[DeviceStatus],
        to: DeviceStatus,
    ) -> StoreResult<Device>;
    /// Sets `status = revoked` and `credentials_valid_after = now_ms`, deletes every token and
    /// revokes every certificate, atomically. Answers the device afterwards.
    async fn revoke_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<Device>;
    /// Lifts a revocation: `revoked` → `registered` (never connected) or `active`. `Conflict`
    /// unless the device is revoked. No credential comes back.
    async fn reinstate_device(&self, tenant: &str, id: &str) -> StoreResult<Device>;
    /// When the last device with this id was deleted, if one was.
    async fn device_deleted_at(&self, tenant: &str, id: &str) -> StoreResult<Option<i64>>;
    /// Deletes the device and every row of it (see [`crate::owned_tables`]); its certificates
    /// are marked revoked (they stay for the CRL) and its id is remembered with `now_ms` for
    /// [`DeviceStore::create_device`], all in one transaction.
    async fn delete_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<()>;

    // ---- per-device data keys (wrapped by the tenant key) ----
    async fn get_device_key(&self, tenant: &str, device: &str) -> StoreResult<DeviceKey>;
}

fn device_key_values(key: &DeviceKey) -> Vec<Value> {
    vec![(&key.tenant).into(), (&key.device).into(), (&key.tenant_key_id).into(), (&key.wrapped).into()]
}

#[async_trait]
impl DeviceStore for SqlStore {
    async fn create_device(&self, device: &Device, key: &DeviceKey) -> StoreResult<()> {
        if key.tenant != device.tenant || key.device != device.id {
            return Err(StoreError::Backend("the data key is not the device's".into()));
        }
        self.driver
            .transaction(vec![
                Statement::new(DEVICES.insert(""), device_values(device)),
                Statement::new(DEVICE_KEYS.insert(""), device_key_values(key)),
                // The id of a deleted device: only credentials issued after that deletion.
                Statement::new(
                    "UPDATE devices SET credentials_valid_after = (SELECT deleted_at FROM device_tombstones \
                     WHERE tenant = ? AND device = ?) WHERE tenant = ? AND id = ? AND credentials_valid_after < \
                     (SELECT deleted_at FROM device_tombstones WHERE tenant = ? AND device = ?)",
                    vec![
                        (&device.tenant).into(),
                        (&device.id).into(),
                        (&device.tenant).into(),
                        (&device.id).into(),
                        (&device.tenant).into(),
                        (&device.id).into(),
                    ],
                ),
            ])
            .await
    }

    async fn get_device(&self, tenant: &str, id: &str) -> StoreResult<Device> {
        self.one(&DEVICES.select("WHERE tenant = ? AND id = ?"), vec![tenant.into(), id.into()], device_from_row).await
    }

    async fn list_devices(&self, tenant: &str, filter: &DeviceFilter, page: &Page) -> StoreResult<Vec<Device>> {
        let mut select = Select::new(&DEVICES.select("WHERE tenant = ?"), vec![tenant.into()]);
        if let Some(group) = &filter.group {
            select.and("group_id = ?", group);
        }
        if let Some(groups) = &filter.within_groups
            && !select.within("group_id", groups)
        {
            return Ok(Vec::new());
        }
        if let Some(status) = filter.status {
            select.and("status = ?", status.as_str());
        }
        if let Some(device_type) = &filter.device_type {
            select.and("device_type = ?", device_type);
        }
        let select = select.page("id", page.after.as_ref().map(Value::from), page.limit);
        self.all(&select.sql, select.params, device_from_row).await
    }

    async fn update_device(&self, tenant: &str, id: &str, changes: &DeviceChanges) -> StoreResult<Device> {
        let mut sets: Vec<&str> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(name) = &changes.name {
            sets.push("name = ?");
            params.push(name.into());
        }
        if let Some(device_type) = &changes.device_type {
            sets.push("device_type = ?");
            params.push(device_type.as_ref().into());
        }
        if let Some(group) = &changes.group {
            sets.push("group_id = ?");
            params.push(group.as_ref().into());
        }
        if let Some(attributes) = &changes.attributes_json {
            sets.push("attributes_json = ?");
            params.push(attributes.into());
        }
        if let Some(interval) = changes.required_interval_s {
            sets.push("required_interval_s = ?");
            params.push(interval.into());
        }
        if !sets.is_empty() {
            params.extend([tenant.into(), id.into()]);
            let sql = format!("UPDATE devices SET {} WHERE tenant = ? AND id = ?", sets.join(", "));
            self.change_one(&sql, params).await?;
        }
        self.get_device(tenant, id).await
    }

    async fn set_device_status(
        &self,
        tenant: &str,
        id: &str,
        from: &[DeviceStatus],
        to: DeviceStatus,
    ) -> StoreResult<Device> {
        if !from.is_empty() {
            let sql = format!(
                "UPDATE devices SET status = ? WHERE tenant = ? AND id = ? AND status IN ({})",
                placeholders(from.len())
            );
            let mut params: Vec<Value> = vec![to.as_str().into(), tenant.into(), id.into()];
            params.extend(from.iter().map(|status| Value::from(status.as_str())));
            if self.driver.execute(&sql, params).await? > 0 {
                return self.get_device(tenant, id).await;
            }
        }
        let current = self.get_device(tenant, id).await?;
        Err(StoreError::Conflict(format!("the device is {}", current.status)))
    }

    async fn revoke_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<Device> {
        let key = || vec![tenant.into(), id.into()];
        let statements = vec![
            Statement::new(
                "UPDATE devices SET status = ?, credentials_valid_after = ? WHERE tenant = ? AND id = ?",
                vec![DeviceStatus::Revoked.as_str().into(), now_ms.into(), tenant.into(), id.into()],
            )
            .must_change_row(),
            Statement::new("DELETE FROM device_tokens WHERE tenant = ? AND device = ?", key()),
            Statement::new(
                "UPDATE device_certificates SET revoked_at = ? WHERE tenant = ? AND device = ? AND revoked_at IS NULL",
                vec![now_ms.into(), tenant.into(), id.into()],
            ),
        ];
        self.driver.transaction(statements).await?;
        self.get_device(tenant, id).await
    }

    async fn reinstate_device(&self, tenant: &str, id: &str) -> StoreResult<Device> {
        let sql = "UPDATE devices SET status = CASE WHEN last_seen IS NULL THEN ? ELSE ? END \
                   WHERE tenant = ? AND id = ? AND status = ?";
        let params = vec![
            DeviceStatus::Registered.as_str().into(),
            DeviceStatus::Active.as_str().into(),
            tenant.into(),
            id.into(),
            DeviceStatus::Revoked.as_str().into(),
        ];
        if self.driver.execute(sql, params).await? > 0 {
            return self.get_device(tenant, id).await;
        }
        let current = self.get_device(tenant, id).await?;
        Err(StoreError::Conflict(format!("the device is {}", current.status)))
    }

    async fn device_deleted_at(&self, tenant: &str, id: &str) -> StoreResult<Option<i64>> {
        let sql = "SELECT deleted_at FROM device_tombstones WHERE tenant = ? AND device = ?";
        let rows = self.all(sql, vec![tenant.into(), id.into()], |mut row| row.int()).await?;
        Ok(rows.into_iter().next())
    }

    async fn delete_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<()> {
        self.driver.transaction(device_deletion(tenant, id, now_ms)).await
    }

    async fn get_device_key(&self, tenant: &str, device: &str) -> StoreResult<DeviceKey> {
        let sql = DEVICE_KEYS.select("WHERE tenant = ? AND device = ?");
        self.one(&sql, vec![tenant.into(), device.into()], device_key_from_row).await
    }
}
