//! Remote operations (SPEC §9): created by people and applications (and campaigns), delivered
//! to the device on `devices/{id}/operations` until it takes them up, moved forward only by
//! their own device (MQTT `devices/{id}/operations/{op}/status` or HTTPS), failed with reason
//! `timeout` past their deadline, cancelled while PENDING. Payloads and results are sealed
//! under the device's data key; every creation and cancellation is audited (device control).

use std::sync::Arc;

use rampart_core::{AuditAction, DeviceId, OperationStatus, Permission};
use rampart_platform::{DeviceFeed, Principal, format_rfc3339_ms};
use rampart_store::{DeviceFirmwareRow, OperationFilter, OperationRow, OperationUpdate, Page, StoreError};
use serde_json::{Value, json};

use crate::error::{IngestError, QueryError};
use crate::firmware_update::{FIRMWARE_UPDATE, FirmwareUpdate};
use crate::ingest::{Ingestor, Shared};
use crate::keys::KeyError;
use crate::live::{LiveEvent, LiveTopic};
use crate::queries::ListPage;
use crate::seal::{self, DeviceKeys};

/// Largest operation payload or result, as compact JSON.
pub const MAX_OPERATION_JSON_BYTES: usize = 64 * 1024;
/// Longest deadline an operation may be given: 30 days.
pub const MAX_OPERATION_TIMEOUT_S: u32 = 30 * 24 * 3600;
/// Longest failure reason a device may give.
const MAX_REASON_CHARS: usize = 1024;
/// Operations failed per sweep; the rest wait for the next one.
const TIMEOUTS_PER_SWEEP: u32 = 500;

/// An operation to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOperation {
    /// What to do, e.g. `restart`, `firmware_update`: 1–64 of `A-Z a-z 0-9 . _ -`.
    pub op_type: String,
    pub payload: Option<Value>,
    /// Seconds until an unfinished operation fails with reason `timeout`; `None` = never.
    pub timeout_s: Option<u32>,
}

/// An operation, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: String,
    pub device: String,
    pub op_type: String,
    pub payload: Option<Value>,
    pub status: OperationStatus,
    pub reason: Option<String>,
    pub result: Option<Value>,
    pub campaign: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub timeout_at: Option<i64>,
}

impl Operation {
    /// The operation as the API answers it.
    pub fn to_json(&self) -> Value {
        let mut answer = json!({
            "id": self.id,
            "device": self.device,
            "type": self.op_type,
            "payload": self.payload,
            "status": self.status.as_str(),
            "created_by": self.created_by,
            "created_at": format_rfc3339_ms(self.created_at),
            "updated_at": format_rfc3339_ms(self.updated_at),
        });
        let optional = [
            ("reason", self.reason.clone().map(Value::from)),
            ("result", self.result.clone()),
            ("campaign", self.campaign.clone().map(Value::from)),
            ("timeout_at", self.timeout_at.map(|at| Value::from(format_rfc3339_ms(at)))),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                answer[field] = value;
            }
        }
        answer
    }

    /// What the device receives on `devices/{id}/operations` (SPEC §7).
    pub fn device_message(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.op_type,
            "payload": self.payload.clone().unwrap_or(Value::Null),
            "created_at": format_rfc3339_ms(self.created_at),
        })
    }
}

/// A device's report on one of its operations (`devices/{id}/operations/{op}/status`, or
/// `PUT /api/v1/device/operations/{id}`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub status: OperationStatus,
    pub result: Option<Value>,
    pub reason: Option<String>,
}

impl StatusReport {
    /// Parses `{"status":"EXECUTING|SUCCESSFUL|FAILED","result"?,"reason"?}` (untrusted bytes).
    pub fn parse(payload: &[u8]) -> Result<StatusReport, IngestError> {
        let malformed = |reason: &str| IngestError::Malformed(reason.to_owned());
        if payload.len() > MAX_OPERATION_JSON_BYTES + MAX_REASON_CHARS * 4 + 256 {
            return Err(malformed("status report too large"));
        }
        let Ok(Value::Object(mut report)) = serde_json::from_slice::<Value>(payload) else {
            return Err(malformed("a status report must be a JSON object"));
        };
        let status = match report.remove("status") {
            Some(Value::String(word)) => OperationStatus::parse(&word)
                .filter(|status| *status != OperationStatus::Pending)
                .ok_or_else(|| malformed("status must be EXECUTING, SUCCESSFUL or FAILED"))?,
            _ => return Err(malformed("status must be EXECUTING, SUCCESSFUL or FAILED")),
        };
        let reason = match report.remove("reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(reason)) if reason.chars().count() <= MAX_REASON_CHARS => Some(reason),
            Some(_) => return Err(malformed("reason must be a string of at most 1024 characters")),
        };
        let result = match report.remove("result") {
            None | Some(Value::Null) => None,
            Some(result) if result.to_string().len() <= MAX_OPERATION_JSON_BYTES => Some(result),
            Some(_) => return Err(malformed("result is larger than 64 KiB")),
        };
        if let Some(field) = report.keys().next() {
            return Err(IngestError::Malformed(format!("unknown field {field}")));
        }
        Ok(StatusReport { status, result, reason })
    }
}

/// Checks an operation type: 1–64 of `A-Z a-z 0-9 . _ -`.
fn check_type(op_type: &str) -> Result<(), QueryError> {
    let valid = (1..=64).contains(&op_type.len())
        && op_type.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    match valid {
        true => Ok(()),
        false => Err(QueryError::Invalid("type must be 1-64 characters of A-Z a-z 0-9 . _ -".into())),
    }
}

fn key_error(error: KeyError) -> QueryError {
    match error {
        KeyError::Unknown => QueryError::NotFound,
        KeyError::Other(reason) => QueryError::Internal(reason),
    }
}

fn seal_json(keys: &DeviceKeys, tenant: &str, device: &str, purpose: &str, id: &str, value: &Value) -> Vec<u8> {
    keys.seal_record(purpose, tenant, device, id, value.to_string().as_bytes())
}

fn open_json(
    keys: &DeviceKeys,
    row: &OperationRow,
    purpose: &str,
    sealed: &Option<Vec<u8>>,
) -> Result<Option<Value>, QueryError> {
    let Some(sealed) = sealed else { return Ok(None) };
    let plain = keys
        .open_record(purpose, &row.tenant, &row.device, &row.id, sealed)
        .map_err(|error| QueryError::Internal(format!("operation {}: {error}", row.id)))?;
    serde_json::from_slice(&plain).map(Some).map_err(|error| QueryError::Internal(error.to_string()))
}

/// Who created an operation, as its `created_by` says: `user:<name>` or `api-key:<id>`.
pub fn created_by(principal: &Principal) -> String {
    match principal.api_key_id() {
        Some(key) => format!("api-key:{key}"),
        None => format!("user:{}", principal.acting_user()),
    }
}

/// Where an operation comes from.
pub(crate) struct Origin<'a> {
    pub created_by: String,
    pub campaign: Option<&'a str>,
}

impl Shared {
    async fn open_operation(&self, row: OperationRow) -> Result<Operation, QueryError> {
        let keys = self.keys.get(&row.tenant, &row.device).await.map_err(key_error)?;
        Ok(Operation {
            payload: open_json(&keys, &row, seal::OPERATION_PAYLOAD, &row.payload_sealed)?,
            result: open_json(&keys, &row, seal::OPERATION_RESULT, &row.result_sealed)?,
            id: row.id,
            device: row.device,
            op_type: row.op_type,
            status: row.status,
            reason: row.reason,
            campaign: row.campaign,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            timeout_at: row.timeout_at,
        })
    }

    /// Publishes the operation on the tenant's live feed (`operations`).
    fn publish_operation(&self, tenant: &str, operation: &Operation) {
        let mut data = operation.to_json();
        data["ts"] = Value::from(format_rfc3339_ms(operation.updated_at));
        self.publish(LiveEvent {
            tenant: Arc::from(tenant),
            device: Arc::from(operation.device.as_str()),
            topic: LiveTopic::Operations,
            ts: operation.updated_at,
            data: Arc::new(data),
        });
    }

    /// Creates an operation for `device` of `tenant` (whoever may, already checked) and tells
    /// the device's connection.
    pub(crate) async fn insert_operation(
        &self,
        tenant: &str,
        device: &str,
        new: NewOperation,
        origin: Origin<'_>,
    ) -> Result<Operation, QueryError> {
        check_type(&new.op_type)?;
        if new.op_type == FIRMWARE_UPDATE && origin.campaign.is_none() {
            return Err(QueryError::Invalid(
                "firmware_update operations come from campaigns (POST /api/v1/campaigns), which check anti-rollback"
                    .into(),
            ));
        }
        if new.payload.as_ref().is_some_and(|payload| payload.to_string().len() > MAX_OPERATION_JSON_BYTES) {
            return Err(QueryError::Invalid("payload is larger than 64 KiB".into()));
        }
        if new.timeout_s.is_some_and(|timeout| timeout == 0 || timeout > MAX_OPERATION_TIMEOUT_S) {
            return Err(QueryError::Invalid(format!("timeout_s must be 1 to {MAX_OPERATION_TIMEOUT_S}")));
        }
        let keys = self.keys.get(tenant, device).await.map_err(key_error)?;
        let now = self.platform.now_ms();
        let id = crate::writer::row_id(now);
        let payload_sealed =
            new.payload.as_ref().map(|payload| seal_json(&keys, tenant, device, seal::OPERATION_PAYLOAD, &id, payload));
        let row = OperationRow {
            tenant: tenant.to_owned(),
            id,
            device: device.to_owned(),
            op_type: new.op_type,
            payload_sealed,
            status: OperationStatus::Pending,
            reason: None,
            result_sealed: None,
            campaign: origin.campaign.map(str::to_owned),
            created_by: origin.created_by,
            created_at: now,
            updated_at: now,
            timeout_at: new.timeout_s.map(|timeout| now + i64::from(timeout) * 1000),
        };
        self.store.create_operation(&row).await?;
        let operation = self.open_operation(row).await?;
        self.platform.device_feed_changed(tenant, device, DeviceFeed::Operation { id: operation.id.clone() });
        self.publish_operation(tenant, &operation);
        Ok(operation)
    }

    /// Moves an operation as `update` says and publishes the result.
    async fn move_operation(&self, update: &OperationUpdate<'_>) -> Result<Operation, QueryError> {
        let row = match self.store.set_operation_status(update).await {
            Ok(row) => row,
            Err(StoreError::Conflict(reason)) => return Err(QueryError::Conflict(reason)),
            Err(other) => return Err(other.into()),
        };
        let operation = self.open_operation(row).await?;
        self.publish_operation(update.tenant, &operation);
        Ok(operation)
    }
}

impl Ingestor {
    /// Creates an operation for a device the principal sees (`operations:write`), audited.
    pub async fn create_operation(
        &self,
        principal: &Principal,
        device: &DeviceId,
        new: NewOperation,
    ) -> Result<Operation, QueryError> {
        let shared = &self.inner.shared;
        let platform = &shared.platform;
        let device = platform
            .visible_device(principal, Permission::OperationsWrite, device)
            .await
            .map_err(QueryError::from_service)?;
        let origin = Origin { created_by: created_by(principal), campaign: None };
        let operation = shared.insert_operation(&principal.tenant, &device.id, new, origin).await?;
        let details = json!({"operation": operation.id, "type": operation.op_type, "timeout_at": operation.timeout_at});
        platform.audit_by(principal, AuditAction::OperationCreate, format!("device:{}", device.id), details).await;
        Ok(operation)
    }

    /// An operation of a device the principal sees (`operations:read`); `NotFound` otherwise.
    pub async fn operation(&self, principal: &Principal, id: &str) -> Result<Operation, QueryError> {
        self.visible_operation(principal, Permission::OperationsRead, id).await
    }

    async fn visible_operation(
        &self,
        principal: &Principal,
        permission: Permission,
        id: &str,
    ) -> Result<Operation, QueryError> {
        let shared = &self.inner.shared;
        shared.platform.authorize(principal, permission).await.map_err(QueryError::from_service)?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(QueryError::NotFound);
        }
        let row = shared.store.get_operation(&principal.tenant, id).await?;
        match shared.platform.sees_device(principal, &row.device).await.map_err(QueryError::from_service)? {
            true => shared.open_operation(row).await,
            false => Err(QueryError::NotFound),
        }
    }

    /// The operations of a device the principal sees (`operations:read`), newest first.
    pub async fn device_operations(
        &self,
        principal: &Principal,
        device: &DeviceId,
        status: Option<OperationStatus>,
        page: &Page,
    ) -> Result<ListPage<Operation>, QueryError> {
        let shared = &self.inner.shared;
        let device = shared
            .platform
            .visible_device(principal, Permission::OperationsRead, device)
            .await
            .map_err(QueryError::from_service)?;
        let filter = OperationFilter { device: Some(device.id), status, campaign: None };
        self.list_operations(&principal.tenant, &filter, page).await
    }

    /// The tenant's operations matching `filter`, newest first (no authorisation: for the
    /// device's own view and for campaigns).
    pub(crate) async fn list_operations(
        &self,
        tenant: &str,
        filter: &OperationFilter,
        page: &Page,
    ) -> Result<ListPage<Operation>, QueryError> {
        let shared = &self.inner.shared;
        let rows = shared.store.list_operations(tenant, filter, page).await?;
        let next_cursor = match rows.len() == page.limit as usize && page.limit > 0 {
            true => rows.last().map(|row| row.id.clone()),
            false => None,
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(shared.open_operation(row).await?);
        }
        Ok(ListPage { items, next_cursor })
    }

    /// Cancels a PENDING operation (`operations:write`): it becomes FAILED with reason
    /// `cancelled`. `Conflict` once the device has taken it up.
    pub async fn cancel_operation(&self, principal: &Principal, id: &str) -> Result<Operation, QueryError> {
        let before = self.visible_operation(principal, Permission::OperationsWrite, id).await?;
        let update = OperationUpdate {
            tenant: &principal.tenant,
            id: &before.id,
            device: None,
            from: &[OperationStatus::Pending],
            to: OperationStatus::Failed,
            reason: Some("cancelled"),
            result_sealed: None,
            now_ms: self.inner.shared.platform.now_ms(),
        };
        let cancelled = self.inner.shared.move_operation(&update).await?;
        let details = json!({"operation": cancelled.id, "type": cancelled.op_type});
        let target = format!("device:{}", cancelled.device);
        self.inner.shared.platform.audit_by(principal, AuditAction::OperationCancel, target, details).await;
        Ok(cancelled)
    }

    /// The device's own operations, newest first, optionally of one status (the device's view
    /// over HTTPS; the caller authenticated the device).
    pub async fn operations_of_device(
        &self,
        tenant: &str,
        device: &str,
        status: Option<OperationStatus>,
        page: &Page,
    ) -> Result<ListPage<Operation>, QueryError> {
        let filter = OperationFilter { device: Some(device.to_owned()), status, campaign: None };
        self.list_operations(tenant, &filter, page).await
    }

    /// One of the device's own operations (the caller authenticated the device).
    pub async fn operation_of_device(&self, tenant: &str, device: &str, id: &str) -> Result<Operation, QueryError> {
        let shared = &self.inner.shared;
        let row = shared.store.get_operation(tenant, id).await?;
        match row.device == device {
            true => shared.open_operation(row).await,
            false => Err(QueryError::NotFound),
        }
    }

    /// The device's PENDING operations, oldest first: what it is sent on connecting and on
    /// subscribing to `devices/{id}/operations`.
    pub async fn pending_operations(&self, tenant: &str, device: &str) -> Result<Vec<Operation>, QueryError> {
        let page = Page { after: None, limit: 1000 };
        let mut pending = self.operations_of_device(tenant, device, Some(OperationStatus::Pending), &page).await?.items;
        pending.reverse();
        Ok(pending)
    }

    /// [`Ingestor::report_operation_status`] from the untrusted payload of an MQTT status
    /// report, with the outcome as an ingest outcome (the gateway answers it like a publish).
    pub async fn submit_operation_status(
        &self,
        tenant: &str,
        device: &str,
        id: &str,
        payload: &[u8],
    ) -> Result<(), IngestError> {
        let report = StatusReport::parse(payload)?;
        match self.report_operation_status(tenant, device, id, report).await {
            Ok(_) => Ok(()),
            Err(QueryError::NotFound) => Err(IngestError::Refused("no such operation of this device".into())),
            Err(QueryError::Conflict(reason) | QueryError::Invalid(reason)) => Err(IngestError::Refused(reason)),
            Err(QueryError::Forbidden) => Err(IngestError::Refused("not allowed".into())),
            Err(QueryError::Internal(reason)) => Err(IngestError::Storage(reason)),
        }
    }

    /// A device reports on one of its own operations; it may only move it forward. `NotFound`
    /// for another device's (or no) operation, `Conflict` for a move backwards.
    pub async fn report_operation_status(
        &self,
        tenant: &str,
        device: &str,
        id: &str,
        report: StatusReport,
    ) -> Result<Operation, QueryError> {
        let shared = &self.inner.shared;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(QueryError::NotFound);
        }
        let keys = shared.keys.get(tenant, device).await.map_err(key_error)?;
        let result_sealed =
            report.result.as_ref().map(|result| seal_json(&keys, tenant, device, seal::OPERATION_RESULT, id, result));
        let update = OperationUpdate {
            tenant,
            id,
            device: Some(device),
            from: report.status.device_may_move_from(),
            to: report.status,
            reason: report.reason.as_deref(),
            result_sealed: result_sealed.as_deref(),
            now_ms: shared.platform.now_ms(),
        };
        let operation = shared.move_operation(&update).await?;
        if operation.status == OperationStatus::Successful && operation.op_type == FIRMWARE_UPDATE {
            shared.record_installed(tenant, device, &operation).await;
        }
        Ok(operation)
    }

    /// Creates an operation on the platform's own behalf (a campaign), unaudited here: the
    /// campaign's creation is.
    pub async fn create_campaign_operation(
        &self,
        tenant: &str,
        device: &str,
        new: NewOperation,
        campaign: &str,
    ) -> Result<Operation, QueryError> {
        let origin = Origin { created_by: format!("campaign:{campaign}"), campaign: Some(campaign) };
        self.inner.shared.insert_operation(tenant, device, new, origin).await
    }

    /// Fails an unfinished operation on the platform's own behalf (a campaign cancelled, an
    /// update refused), with `reason`.
    pub async fn fail_operation(&self, tenant: &str, id: &str, reason: &str) -> Result<Operation, QueryError> {
        let shared = &self.inner.shared;
        let update = OperationUpdate {
            tenant,
            id,
            device: None,
            from: OperationStatus::UNFINISHED,
            to: OperationStatus::Failed,
            reason: Some(reason),
            result_sealed: None,
            now_ms: shared.platform.now_ms(),
        };
        shared.move_operation(&update).await
    }
}

impl Shared {
    /// A device confirmed a firmware update: the image becomes what it runs, and its security
    /// counter the device's floor (it never decreases).
    async fn record_installed(&self, tenant: &str, device: &str, operation: &Operation) {
        let Some(update) = operation.payload.as_ref().and_then(FirmwareUpdate::from_payload) else { return };
        let now = self.platform.now_ms();
        let row = DeviceFirmwareRow {
            tenant: tenant.to_owned(),
            device: device.to_owned(),
            firmware_id: Some(update.firmware_id),
            firmware_name: Some(update.name),
            firmware_version: Some(update.version),
            firmware_sha256: Some(update.sha256),
            security_counter: Some(update.security_counter),
            updated_at: now,
            ..DeviceFirmwareRow::default()
        };
        if let Err(error) = self.store.record_device_firmware(&row, false).await {
            tracing::warn!(%error, tenant, device, "recording an installed firmware failed");
        }
    }
}

/// Fails every unfinished operation past its deadline; answers how many.
pub(crate) async fn time_out_once(shared: &Shared) -> Result<usize, QueryError> {
    let now = shared.platform.now_ms();
    let due = shared.store.list_timed_out_operations(now, TIMEOUTS_PER_SWEEP).await?;
    let mut failed = 0;
    for row in due {
        let update = OperationUpdate {
            tenant: &row.tenant,
            id: &row.id,
            device: None,
            from: OperationStatus::UNFINISHED,
            to: OperationStatus::Failed,
            reason: Some("timeout"),
            result_sealed: None,
            now_ms: now,
        };
        match shared.move_operation(&update).await {
            Ok(_) => failed += 1,
            // The device finished it meanwhile.
            Err(QueryError::Conflict(_)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(failed)
}
