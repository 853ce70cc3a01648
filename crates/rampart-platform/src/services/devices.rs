//! The device registry (SPEC §6): register, list, read, edit, delete, revoke and reinstate. A
//! group-scoped principal sees only devices in its scope; every other device is not found.
//! Registration through the API and just-in-time registration at a first connect share one
//! path ([`Platform::register_device`]). Status moves only through conditional writes, and an
//! edit changes only the fields it names.

use rampart_core::{AuditAction, DeviceId, DeviceStatus, GroupId, Permission, TextKind, check_text};
use rampart_store::{Device, DeviceChanges, DeviceFilter, Page, StoreError};
use serde_json::{Value, json};

use crate::audit::{Actor, AuditEntry};
use crate::bus::{ControlEvent, CutOffReason};
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;

/// A device to register.
#[derive(Debug, Clone, Default)]
pub struct NewDevice {
    pub name: Option<String>,
    pub device_type: Option<String>,
    pub group: Option<GroupId>,
    /// A JSON object.
    pub attributes: Option<Value>,
    /// Longest silence, in seconds, before an `unavailable` alarm; must be positive.
    pub required_interval_s: Option<i64>,
}

/// An edit of a device; `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct DeviceEdit {
    pub name: Option<String>,
    pub device_type: Option<Option<String>>,
    pub group: Option<Option<GroupId>>,
    pub attributes: Option<Value>,
    pub required_interval_s: Option<Option<i64>>,
}

/// Filters of a device listing.
#[derive(Debug, Clone, Default)]
pub struct DeviceQuery {
    pub group: Option<GroupId>,
    pub status: Option<DeviceStatus>,
    pub device_type: Option<String>,
}

/// Who registers a device.
pub(crate) enum Registrar<'a> {
    Principal(&'a Principal),
    /// A trusted CA with `auto_register`, at the device's first connect.
    JustInTime {
        tenant: &'a str,
        trusted_ca: &'a str,
    },
}

fn attributes_text(attributes: &Value) -> ServiceResult<String> {
    match attributes.is_object() {
        true => Ok(attributes.to_string()),
        false => Err(ServiceError::invalid("attributes must be a JSON object")),
    }
}

fn check_interval(seconds: i64) -> ServiceResult<()> {
    match seconds > 0 {
        true => Ok(()),
        false => Err(ServiceError::invalid("required_interval_s must be a positive number of seconds")),
    }
}

impl Platform {
    /// Registers a device and creates its data key.
    pub async fn create_device(&self, principal: &Principal, id: &DeviceId, new: NewDevice) -> ServiceResult<Device> {
        self.authorize(principal, Permission::DevicesWrite).await?;
        let name = new.name.clone().unwrap_or_else(|| id.to_string());
        check_text("name", TextKind::Label, &name)?;
        if let Some(device_type) = &new.device_type {
            check_text("type", TextKind::Label, device_type)?;
        }
        if let Some(interval) = new.required_interval_s {
            check_interval(interval)?;
        }
        let attributes_json = match &new.attributes {
            Some(attributes) => attributes_text(attributes)?,
            None => "{}".to_owned(),
        };
        match &new.group {
            Some(group) => self.check_device_group(principal, group).await?,
            None if !principal.scope.is_whole_tenant() => {
                return Err(ServiceError::invalid("group is required: you may only register devices in your groups"));
            }
            None => {}
        }
        let device = Device {
            name,
            device_type: new.device_type,
            group: new.group.map(GroupId::into_string),
            attributes_json,
            required_interval_s: new.required_interval_s,
            ..fresh_device(&principal.tenant, id.as_str(), DeviceStatus::Registered, self.now_ms())
        };
        self.register_device(Registrar::Principal(principal), device).await
    }

    /// Stores a new device with its data key, in one transaction, and audits it; the one path
    /// of every registration. `Conflict` when the id is taken.
    pub(crate) async fn register_device(&self, registrar: Registrar<'_>, device: Device) -> ServiceResult<Device> {
        let key = self.keyring.new_device_key(&device.tenant, &device.id).await?;
        match self.store.create_device(&device, &key).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!("device {} already exists", device.id)));
            }
            Err(other) => return Err(other.into()),
        }
        let target = format!("device:{}", device.id);
        match registrar {
            Registrar::Principal(principal) => {
                let details = json!({"name": device.name, "type": device.device_type, "group": device.group});
                self.audit_by(principal, AuditAction::DeviceCreate, target, details).await;
            }
            Registrar::JustInTime { tenant, trusted_ca } => {
                let entry = AuditEntry::success(tenant, Actor::System, AuditAction::DeviceCreate, target)
                    .with_details(json!({"jit": true, "trusted_ca": trusted_ca}));
                self.audit.record(entry).await;
            }
        }
        Ok(device)
    }

    /// Checks that `group` exists in the principal's tenant and lies within its scope. An
    /// unknown group and a group outside the scope answer the same `Invalid`.
    async fn check_device_group(&self, principal: &Principal, group: &GroupId) -> ServiceResult<()> {
        let unknown = || ServiceError::invalid(format!("unknown group {:?}", group.as_str()));
        match self.store.get_group(&principal.tenant, group.as_str()).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => return Err(unknown()),
            Err(other) => return Err(other.into()),
        }
        match principal.scope.contains_group(group.as_str()) {
            true => Ok(()),
            false => Err(unknown()),
        }
    }

    /// A device the principal may see: in its tenant and scope; `NotFound` otherwise, exactly
    /// as for a missing one. Needs `permission`.
    pub async fn visible_device(
        &self,
        principal: &Principal,
        permission: Permission,
        id: &DeviceId,
    ) -> ServiceResult<Device> {
        self.authorize(principal, permission).await?;
        self.device_in_scope(principal, id.as_str()).await
    }

    pub(crate) async fn device_in_scope(&self, principal: &Principal, id: &str) -> ServiceResult<Device> {
        let device = self.store.get_device(&principal.tenant, id).await?;
        match principal.scope.sees(device.group.as_deref()) {
            true => Ok(device),
            false => Err(ServiceError::NotFound),
        }
    }

    /// Whether the device `id` of the principal's tenant exists and lies in its scope (streams
    /// and subscriptions filter deliveries with it).
    pub async fn sees_device(&self, principal: &Principal, id: &str) -> ServiceResult<bool> {
        match self.device_in_scope(principal, id).await {
            Ok(_) => Ok(true),
            Err(ServiceError::NotFound) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// The devices the principal may see, filtered and paged by id.
    pub async fn list_devices(
        &self,
        principal: &Principal,
        query: DeviceQuery,
        page: &Page,
    ) -> ServiceResult<Vec<Device>> {
        self.authorize(principal, Permission::DevicesRead).await?;
        let filter = DeviceFilter {
            group: query.group.map(GroupId::into_string),
            within_groups: principal.scope.group_filter(),
            status: query.status,
            device_type: query.device_type,
        };
        Ok(self.store.list_devices(&principal.tenant, &filter, page).await?)
    }

    /// Edits a device's name, type, group, attributes or reporting interval (never its status).
    pub async fn update_device(&self, principal: &Principal, id: &DeviceId, edit: DeviceEdit) -> ServiceResult<Device> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        let mut changes = DeviceChanges::default();
        if let Some(name) = edit.name {
            check_text("name", TextKind::Label, &name)?;
            changes.name = Some(name);
        }
        if let Some(device_type) = edit.device_type {
            if let Some(label) = &device_type {
                check_text("type", TextKind::Label, label)?;
            }
            changes.device_type = Some(device_type);
        }
        if let Some(group) = edit.group {
            match &group {
                Some(group) => self.check_device_group(principal, group).await?,
                None if !principal.scope.is_whole_tenant() => {
                    return Err(ServiceError::invalid("group is required: devices must stay in your groups"));
                }
                None => {}
            }
            changes.group = Some(group.map(GroupId::into_string));
        }
        if let Some(attributes) = &edit.attributes {
            changes.attributes_json = Some(attributes_text(attributes)?);
        }
        if let Some(interval) = edit.required_interval_s {
            if let Some(seconds) = interval {
                check_interval(seconds)?;
            }
            changes.required_interval_s = Some(interval);
        }
        let updated = self.store.update_device(&device.tenant, &device.id, &changes).await?;
        let details = json!({"changed": changes.changed(), "group": updated.group});
        self.audit_by(principal, AuditAction::DeviceUpdate, format!("device:{}", device.id), details).await;
        Ok(updated)
    }

    /// Deletes a device: its rows and data key go, its certificates are revoked (they stay in
    /// the CRL), and its live connections, persistent sessions and pending wills end.
    pub async fn delete_device(&self, principal: &Principal, id: &DeviceId) -> ServiceResult<()> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        self.store.delete_device(&device.tenant, &device.id, self.now_ms()).await?;
        self.cut_off(&device.tenant, &device.id, CutOffReason::Deleted);
        let details = json!({"group": device.group});
        self.audit_by(principal, AuditAction::DeviceDelete, format!("device:{}", device.id), details).await;
        Ok(())
    }

    /// Revokes a device: every token deleted, every certificate revoked, status `revoked`, and
    /// nothing issued before now authenticates it again. Its connections close at once.
    pub async fn revoke_device(&self, principal: &Principal, id: &DeviceId) -> ServiceResult<Device> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        let revoked = self.store.revoke_device(&device.tenant, &device.id, self.now_ms()).await?;
        self.cut_off(&device.tenant, &device.id, CutOffReason::Revoked);
        let details = json!({"previous_status": device.status.as_str()});
        self.audit_by(principal, AuditAction::DeviceRevoke, format!("device:{}", device.id), details).await;
        Ok(revoked)
    }

    /// Lifts a revocation. Issues no credential: the device needs new tokens or certificates.
    pub async fn reinstate_device(&self, principal: &Principal, id: &DeviceId) -> ServiceResult<Device> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        let reinstated = match self.store.reinstate_device(&device.tenant, &device.id).await {
            Ok(device) => device,
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!(
                    "only a revoked device can be reinstated; it is {}",
                    device.status
                )));
            }
            Err(other) => return Err(other.into()),
        };
        let details = json!({"status": reinstated.status.as_str()});
        self.audit_by(principal, AuditAction::DeviceReinstate, format!("device:{}", device.id), details).await;
        Ok(reinstated)
    }

    /// Quarantines a device on the platform's own decision (a tenant policy acting on what the
    /// device did): its connections are cut off and it may not connect until released. A
    /// device already quarantined or revoked stays as it is (answers `false`).
    pub async fn quarantine_device_by_policy(&self, tenant: &str, id: &str, why: &str) -> ServiceResult<bool> {
        let from = [DeviceStatus::Registered, DeviceStatus::Active];
        match self.store.set_device_status(tenant, id, &from, DeviceStatus::Quarantined).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return Ok(false),
            Err(other) => return Err(other.into()),
        }
        self.cut_off(tenant, id, CutOffReason::Quarantined);
        let entry = AuditEntry::success(tenant, Actor::System, AuditAction::DeviceQuarantine, format!("device:{id}"))
            .with_details(json!({"reason": why}));
        self.audit.record(entry).await;
        Ok(true)
    }

    /// Tells every live connection of the device to close (the gateway acts within 1 s).
    fn cut_off(&self, tenant: &str, device: &str, reason: CutOffReason) {
        self.publish(ControlEvent::DeviceCutOff { tenant: tenant.to_owned(), device: device.to_owned(), reason });
    }
}

/// A device as registered: named after its id, in no group, never seen, no credential fence
/// of its own (the store raises it to the deletion of an earlier device of that id).
pub(crate) fn fresh_device(tenant: &str, id: &str, status: DeviceStatus, created_at: i64) -> Device {
    Device {
        tenant: tenant.to_owned(),
        id: id.to_owned(),
        name: id.to_owned(),
        device_type: None,
        group: None,
        attributes_json: "{}".to_owned(),
        required_interval_s: None,
        status,
        connected: false,
        last_seen: None,
        last_address: None,
        firmware: None,
        credentials_valid_after: 0,
        created_at,
    }
}
