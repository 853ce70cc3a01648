//! The registry of tenant- and device-owned tables: which tables hold a tenant's rows, which
//! of them hold a device's rows, and what deleting the device does to them. Deleting a tenant
//! or a device walks this list (retention, export and erasure will too), and a test checks it
//! against the schema, so a new table cannot be forgotten.

use crate::value::{Statement, Value};

/// What deleting a device does to its rows in a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDeviceDelete {
    /// The rows go with the device.
    Delete,
    /// The rows stay, marked revoked (certificates stay listed in the CRL).
    Revoke,
    /// The table does not hold device rows.
    Keep,
}

/// One tenant-owned table.
#[derive(Debug)]
pub struct OwnedTable {
    pub table: &'static str,
    /// The column naming the device, for tables that hold device rows.
    pub device_column: Option<&'static str>,
    pub on_device_delete: OnDeviceDelete,
}

const fn device_rows(table: &'static str, column: &'static str) -> OwnedTable {
    OwnedTable { table, device_column: Some(column), on_device_delete: OnDeviceDelete::Delete }
}

const fn tenant_rows(table: &'static str) -> OwnedTable {
    OwnedTable { table, device_column: None, on_device_delete: OnDeviceDelete::Keep }
}

/// Every table that holds rows of one tenant (column `tenant`), children before parents (the
/// order deletions run in).
pub const OWNED_TABLES: &[OwnedTable] = &[
    device_rows("device_tokens", "device"),
    device_rows("device_keys", "device"),
    device_rows("device_telemetry", "device"),
    device_rows("device_events", "device"),
    device_rows("device_attestations", "device"),
    device_rows("device_twins", "device"),
    device_rows("alarms", "device"),
    device_rows("operations", "device"),
    device_rows("device_twin_desired", "device"),
    device_rows("device_firmware", "device"),
    OwnedTable {
        table: "device_certificates",
        device_column: Some("device"),
        on_device_delete: OnDeviceDelete::Revoke,
    },
    device_rows("devices", "id"),
    // The ids of deleted devices and when they were deleted: they outlive the device, not the tenant.
    tenant_rows("device_tombstones"),
    tenant_rows("device_groups"),
    tenant_rows("users"),
    tenant_rows("roles"),
    tenant_rows("api_keys"),
    tenant_rows("trusted_cas"),
    tenant_rows("registration_codes"),
    tenant_rows("tenant_cas"),
    tenant_rows("tenant_keys"),
    tenant_rows("tenant_policies"),
    tenant_rows("topic_policies"),
    tenant_rows("retained_messages"),
    // Security events are the tenant's own security history; they go with the tenant.
    tenant_rows("security_events"),
    // The firmware repository and its campaigns belong to the tenant, not to one device.
    tenant_rows("firmware_signing_keys"),
    tenant_rows("firmware_public_keys"),
    tenant_rows("firmware"),
    tenant_rows("campaigns"),
    tenant_rows("advisories"),
];

/// Tables that do not belong to one tenant: platform-wide state, and the audit chains, which
/// are append-only and outlive their tenant (kept per tenant incarnation).
pub const NOT_TENANT_OWNED: &[&str] =
    &["platform_secrets", "tenants", "audit_records", "audit_checkpoints", "schema_migrations"];

/// The statements deleting every row of `tenant` (then its tenant row, which must exist).
pub(crate) fn tenant_deletion(tenant: &str) -> Vec<Statement> {
    let mut statements: Vec<Statement> = OWNED_TABLES
        .iter()
        .map(|owned| Statement::new(format!("DELETE FROM {} WHERE tenant = ?", owned.table), vec![tenant.into()]))
        .collect();
    statements.push(Statement::new("DELETE FROM tenants WHERE id = ?", vec![tenant.into()]).must_change_row());
    statements
}

/// The statements deleting device `device` of `tenant`: its rows go, its certificates are
/// revoked at `now_ms`; the device row itself must exist.
pub(crate) fn device_deletion(tenant: &str, device: &str, now_ms: i64) -> Vec<Statement> {
    let key = || -> Vec<Value> { vec![tenant.into(), device.into()] };
    OWNED_TABLES
        .iter()
        .filter_map(|owned| {
            let column = owned.device_column?;
            let statement = match owned.on_device_delete {
                OnDeviceDelete::Keep => return None,
                OnDeviceDelete::Delete => {
                    Statement::new(format!("DELETE FROM {} WHERE tenant = ? AND {column} = ?", owned.table), key())
                }
                OnDeviceDelete::Revoke => Statement::new(
                    format!(
                        "UPDATE {} SET revoked_at = ? WHERE tenant = ? AND {column} = ? AND revoked_at IS NULL",
                        owned.table
                    ),
                    vec![now_ms.into(), tenant.into(), device.into()],
                ),
            };
            Some(match owned.table {
                "devices" => statement.must_change_row(),
                _ => statement,
            })
        })
        .chain([Statement::new(
            "INSERT INTO device_tombstones (tenant, device, deleted_at) VALUES (?, ?, ?) \
             ON CONFLICT (tenant, device) DO UPDATE SET deleted_at = excluded.deleted_at",
            vec![tenant.into(), device.into(), now_ms.into()],
        )])
        .collect()
}
