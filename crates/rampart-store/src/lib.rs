//! Persistent state of the platform behind one backend-neutral [`Store`], split by area: each
//! area module holds its rows, the column list of each of its tables (written once, see
//! [`table`]) and its part of the trait.
//!
//! Two backends implement it: SQLite embedded in the data dir (the default) and PostgreSQL
//! (`--storage postgres://…`, TLS when the URL asks for it). The backend is chosen at run
//! time, so one binary serves both a single node and a cluster. Every call that touches tenant
//! data takes the tenant id, so no query can cross tenants by accident. Secrets arrive here
//! already sealed (encrypted) by the caller; this crate never sees a plaintext key, TOTP
//! secret or e-mail address.
//!
//! Writes that two components can race are partial or conditional: they name the columns
//! they change, or the state they expect (a status moving from → to, a counter bumped in SQL,
//! a version), never write back a whole row read earlier. Deleting a tenant or a device walks
//! the registry of owned tables ([`owned_tables`]).

mod audit;
mod credentials;
mod device_data;
mod devices;
mod fleet;
mod gateway_store;
mod operations;
pub mod owned_tables;
mod people;
mod postgres;
mod postgres_tls;
mod security_store;
mod sql_store;
mod sqlite;
mod table;
mod telemetry_rows;
mod tenants;
mod value;

pub use audit::{AuditChain, AuditCheckpoint, AuditFilter, AuditRecord, AuditStore};
pub use credentials::{CredentialStore, DeviceCertificate, DeviceToken, TenantCa, TrustedCa};
pub use device_data::{
    AlarmClear, AlarmFilter, AlarmRaise, AlarmRow, AttestationRow, DeviceDataBatch, DeviceDataRow, DeviceDataStore,
    DeviceEventRow, DeviceSeen, SilentDevice, TelemetryRow, TimeRange, TwinReportedRow,
};
pub use devices::{Device, DeviceChanges, DeviceFilter, DeviceKey, DeviceStore};
pub use fleet::{
    AdvisoryRow, CampaignRow, CampaignUpdate, DeviceFirmwareRow, FirmwareKeyRow, FirmwareRow, FleetStore, SigningKeyRow,
};
pub use gateway_store::{GatewayStore, RetainedChange, RetainedMessageRow};
pub use operations::{OperationFilter, OperationRow, OperationStore, OperationUpdate, TwinDesiredRow};
pub use people::{ApiKey, Group, LoginGate, PeopleStore, Role, User, UserChanges};
pub use security_store::{SecurityEvent, SecurityEventFilter, SecurityStore};
pub use sql_store::{open, open_postgres, open_postgres_in_schema, open_sqlite};
pub use telemetry_rows::check_telemetry_row;
pub use tenants::{Tenant, TenantKey, TenantStore};

use async_trait::async_trait;

/// Every trait of the store, for callers that use several areas: `use rampart_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        AuditStore, CredentialStore, DeviceDataStore, DeviceStore, FleetStore, GatewayStore, OperationStore,
        PeopleStore, SecurityStore, Store, TenantStore,
    };
}

/// What a store call can fail with. Messages are for logs, never for API answers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or belongs to another tenant, which is the same thing).
    #[error("not found")]
    NotFound,
    /// A unique key already exists, or a conditional write found another state than it expected.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend failed (connection, SQL, I/O). The text is for the operator's log.
    #[error("storage backend: {0}")]
    Backend(String),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Resolves once a committed write is on disk. Returned by
/// [`DeviceDataStore::write_device_data_batch`], whose commit is visible to readers before it
/// is durable.
#[must_use = "a write is not durable until its Durable resolves"]
pub struct Durable(Option<tokio::sync::oneshot::Receiver<StoreResult<()>>>);

impl Durable {
    /// Already durable (the backend synced at commit).
    pub(crate) fn now() -> Durable {
        Durable(None)
    }

    /// Durable once `synced` answers.
    pub(crate) fn later(synced: tokio::sync::oneshot::Receiver<StoreResult<()>>) -> Durable {
        Durable(Some(synced))
    }

    /// Waits until the write is on disk; `Err` if the sync failed (the write may or may not
    /// survive a crash, so it must not be acknowledged as stored).
    pub async fn wait(self) -> StoreResult<()> {
        match self.0 {
            None => Ok(()),
            Some(synced) => synced.await.unwrap_or_else(|_| Err(StoreError::Backend("the sync thread stopped".into()))),
        }
    }
}

/// Keyset pagination: rows strictly after `after` (in the list's sort order), at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: u32,
}

/// The platform's persistent state: every area. Implementations must be safe to share
/// between tasks.
#[async_trait]
pub trait Store:
    TenantStore
    + PeopleStore
    + DeviceStore
    + CredentialStore
    + AuditStore
    + DeviceDataStore
    + GatewayStore
    + SecurityStore
    + OperationStore
    + FleetStore
    + Send
    + Sync
    + 'static
{
    /// Which backend this is: `"sqlite"` or `"postgres"`.
    fn backend_name(&self) -> &'static str;
    /// Cheap round trip to the storage, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Every table of the schema with its columns, sorted (the parity test compares backends).
    async fn describe_schema(&self) -> StoreResult<Vec<(String, Vec<String>)>>;
}
