//! Remote device management state (SPEC §9): operations with their lifecycle, and the desired
//! half of device twins. Payloads, results and desired states arrive sealed under the device's
//! data key. Status changes are conditional: they name the statuses they leave.

use async_trait::async_trait;
use rampart_core::OperationStatus;

use crate::sql_store::SqlStore;
use crate::table::Table;
use crate::value::{Row, Statement, Value, placeholders};
use crate::{Page, StoreError, StoreResult};

/// One operation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRow {
    pub tenant: String,
    /// Sorts by creation time (`<ms as 16 hex digits><random>`).
    pub id: String,
    pub device: String,
    pub op_type: String,
    pub payload_sealed: Option<Vec<u8>>,
    pub status: OperationStatus,
    pub reason: Option<String>,
    pub result_sealed: Option<Vec<u8>>,
    /// The campaign that created it, if one did.
    pub campaign: Option<String>,
    /// `user:<name>`, `api-key:<id>` or `system`.
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// When an unfinished operation fails with reason `timeout`; `None` = never.
    pub timeout_at: Option<i64>,
}

/// A status change of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationUpdate<'a> {
    pub tenant: &'a str,
    pub id: &'a str,
    /// Only an operation of this device moves (a device updates its own operations only).
    pub device: Option<&'a str>,
    /// The statuses it may be in; anything else is a `Conflict`.
    pub from: &'a [OperationStatus],
    pub to: OperationStatus,
    pub reason: Option<&'a str>,
    pub result_sealed: Option<&'a [u8]>,
    pub now_ms: i64,
}

/// Filters for listing operations; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationFilter {
    pub device: Option<String>,
    pub status: Option<OperationStatus>,
    pub campaign: Option<String>,
}

/// The desired state of a device twin, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinDesiredRow {
    pub tenant: String,
    pub device: String,
    pub desired_sealed: Vec<u8>,
    pub desired_version: i64,
    pub updated_at: i64,
}

const OPERATIONS: Table = Table {
    name: "operations",
    columns: &[
        "tenant",
        "id",
        "device",
        "op_type",
        "payload_sealed",
        "status",
        "reason",
        "result_sealed",
        "campaign",
        "created_by",
        "created_at",
        "updated_at",
        "timeout_at",
    ],
};

const TWIN_DESIRED: Table = Table {
    name: "device_twin_desired",
    columns: &["tenant", "device", "desired_sealed", "desired_version", "updated_at"],
};

fn operation_values(row: &OperationRow) -> Vec<Value> {
    vec![
        (&row.tenant).into(),
        (&row.id).into(),
        (&row.device).into(),
        (&row.op_type).into(),
        row.payload_sealed.as_ref().into(),
        row.status.as_str().into(),
        row.reason.as_ref().into(),
        row.result_sealed.as_ref().into(),
        row.campaign.as_ref().into(),
        (&row.created_by).into(),
        row.created_at.into(),
        row.updated_at.into(),
        row.timeout_at.into(),
    ]
}

fn operation_from_row(mut row: Row) -> StoreResult<OperationRow> {
    Ok(OperationRow {
        tenant: row.text()?,
        id: row.text()?,
        device: row.text()?,
        op_type: row.text()?,
        payload_sealed: row.opt_blob()?,
        status: OperationStatus::parse(&row.text()?)
            .ok_or_else(|| StoreError::Corrupt("unknown operation status".into()))?,
        reason: row.opt_text()?,
        result_sealed: row.opt_blob()?,
        campaign: row.opt_text()?,
        created_by: row.text()?,
        created_at: row.int()?,
        updated_at: row.int()?,
        timeout_at: row.opt_int()?,
    })
}

fn twin_desired_from_row(mut row: Row) -> StoreResult<TwinDesiredRow> {
    Ok(TwinDesiredRow {
        tenant: row.text()?,
        device: row.text()?,
        desired_sealed: row.blob()?,
        desired_version: row.int()?,
        updated_at: row.int()?,
    })
}

/// Operations and desired twins.
#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Stores a new operation; `Conflict` if the id is taken, `NotFound` if the device is gone.
    async fn create_operation(&self, row: &OperationRow) -> StoreResult<()>;
    async fn get_operation(&self, tenant: &str, id: &str) -> StoreResult<OperationRow>;
    /// The tenant's operations matching `filter`, newest first; `page.after` is the id of the
    /// last operation of the previous page.
    async fn list_operations(
        &self,
        tenant: &str,
        filter: &OperationFilter,
        page: &Page,
    ) -> StoreResult<Vec<OperationRow>>;
    /// Moves the operation to `update.to` if its status is one of `update.from` (and it is
    /// `update.device`'s, when given); `NotFound` if there is no such operation, `Conflict` if
    /// its status is not in `from`. Answers the operation afterwards.
    async fn set_operation_status(&self, update: &OperationUpdate<'_>) -> StoreResult<OperationRow>;
    /// Unfinished operations (any tenant) whose `timeout_at` is at or before `now_ms`, oldest
    /// deadline first, at most `limit`.
    async fn list_timed_out_operations(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<OperationRow>>;

    async fn get_twin_desired(&self, tenant: &str, device: &str) -> StoreResult<Option<TwinDesiredRow>>;
    /// Writes the desired state if the stored version is still `expected_version` (0: none
    /// stored yet); `Conflict` otherwise, `NotFound` if the device is gone.
    async fn put_twin_desired(&self, row: &TwinDesiredRow, expected_version: i64) -> StoreResult<()>;
}

/// Takes the device's row lock for the rest of the transaction, or fails it with `NotFound`
/// when the device is gone: a row written with it cannot outlive a concurrent device deletion
/// (the tables have no foreign key to `devices`; deletion empties them through the owned-table
/// registry).
fn device_must_exist(tenant: &str, device: &str) -> Statement {
    Statement::new("UPDATE devices SET id = id WHERE tenant = ? AND id = ?", vec![tenant.into(), device.into()])
        .must_change_row()
}

async fn device_exists(store: &SqlStore, tenant: &str, device: &str) -> StoreResult<bool> {
    let sql = "SELECT id FROM devices WHERE tenant = ? AND id = ?";
    Ok(store.optional(sql, vec![tenant.into(), device.into()], |mut row| row.text()).await?.is_some())
}

#[async_trait]
impl OperationStore for SqlStore {
    async fn create_operation(&self, row: &OperationRow) -> StoreResult<()> {
        self.driver
            .transaction(vec![
                device_must_exist(&row.tenant, &row.device),
                Statement::new(OPERATIONS.insert(""), operation_values(row)),
            ])
            .await
    }

    async fn get_operation(&self, tenant: &str, id: &str) -> StoreResult<OperationRow> {
        self.one(&OPERATIONS.select("WHERE tenant = ? AND id = ?"), vec![tenant.into(), id.into()], operation_from_row)
            .await
    }

    async fn list_operations(
        &self,
        tenant: &str,
        filter: &OperationFilter,
        page: &Page,
    ) -> StoreResult<Vec<OperationRow>> {
        let mut rest = String::from("WHERE tenant = ?");
        let mut params: Vec<Value> = vec![tenant.into()];
        if let Some(device) = &filter.device {
            rest.push_str(" AND device = ?");
            params.push(device.into());
        }
        if let Some(status) = filter.status {
            rest.push_str(" AND status = ?");
            params.push(status.as_str().into());
        }
        if let Some(campaign) = &filter.campaign {
            rest.push_str(" AND campaign = ?");
            params.push(campaign.into());
        }
        if let Some(after) = &page.after {
            rest.push_str(" AND id < ?");
            params.push(after.into());
        }
        rest.push_str(" ORDER BY id DESC");
        if page.limit > 0 {
            rest.push_str(" LIMIT ?");
            params.push(i64::from(page.limit).into());
        }
        self.all(&OPERATIONS.select(&rest), params, operation_from_row).await
    }

    async fn set_operation_status(&self, update: &OperationUpdate<'_>) -> StoreResult<OperationRow> {
        if update.from.is_empty() {
            return Err(StoreError::Conflict(format!("nothing moves to {}", update.to)));
        }
        let mut sql = format!(
            "UPDATE operations SET status = ?, reason = ?, result_sealed = COALESCE(?, result_sealed), \
             updated_at = ? WHERE tenant = ? AND id = ? AND status IN ({})",
            placeholders(update.from.len())
        );
        let mut params: Vec<Value> = vec![
            update.to.as_str().into(),
            update.reason.into(),
            update.result_sealed.map(<[u8]>::to_vec).as_ref().into(),
            update.now_ms.into(),
            update.tenant.into(),
            update.id.into(),
        ];
        params.extend(update.from.iter().map(|status| Value::from(status.as_str())));
        if let Some(device) = update.device {
            sql.push_str(" AND device = ?");
            params.push(device.into());
        }
        let changed = self.driver.execute(&sql, params).await?;
        let current = self.get_operation(update.tenant, update.id).await?;
        if update.device.is_some_and(|device| device != current.device) {
            return Err(StoreError::NotFound);
        }
        match changed {
            0 => Err(StoreError::Conflict(format!("the operation is {}", current.status))),
            _ => Ok(current),
        }
    }

    async fn list_timed_out_operations(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<OperationRow>> {
        let unfinished = OperationStatus::UNFINISHED;
        let rest = format!(
            "WHERE status IN ({}) AND timeout_at IS NOT NULL AND timeout_at <= ? ORDER BY timeout_at LIMIT ?",
            placeholders(unfinished.len())
        );
        let mut params: Vec<Value> = unfinished.iter().map(|status| Value::from(status.as_str())).collect();
        params.extend([now_ms.into(), i64::from(limit.max(1)).into()]);
        self.all(&OPERATIONS.select(&rest), params, operation_from_row).await
    }

    async fn get_twin_desired(&self, tenant: &str, device: &str) -> StoreResult<Option<TwinDesiredRow>> {
        let sql = TWIN_DESIRED.select("WHERE tenant = ? AND device = ?");
        self.optional(&sql, vec![tenant.into(), device.into()], twin_desired_from_row).await
    }

    async fn put_twin_desired(&self, row: &TwinDesiredRow, expected_version: i64) -> StoreResult<()> {
        let write = if expected_version == 0 {
            Statement::new(
                TWIN_DESIRED.insert("ON CONFLICT (tenant, device) DO NOTHING"),
                vec![
                    (&row.tenant).into(),
                    (&row.device).into(),
                    (&row.desired_sealed).into(),
                    row.desired_version.into(),
                    row.updated_at.into(),
                ],
            )
        } else {
            Statement::new(
                "UPDATE device_twin_desired SET desired_sealed = ?, desired_version = ?, updated_at = ? \
                 WHERE tenant = ? AND device = ? AND desired_version = ?",
                vec![
                    (&row.desired_sealed).into(),
                    row.desired_version.into(),
                    row.updated_at.into(),
                    (&row.tenant).into(),
                    (&row.device).into(),
                    expected_version.into(),
                ],
            )
        };
        let statements = vec![device_must_exist(&row.tenant, &row.device), write.must_change_row()];
        match self.driver.transaction(statements).await {
            Err(StoreError::NotFound) if device_exists(self, &row.tenant, &row.device).await? => {
                Err(StoreError::Conflict("the desired state changed meanwhile".into()))
            }
            other => other,
        }
    }
}
