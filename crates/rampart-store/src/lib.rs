//! Persistent state of the platform behind one backend-neutral [`Store`] trait.
//!
//! Two backends implement it: SQLite embedded in the data dir (the default) and PostgreSQL
//! (`--storage postgres://…`). The backend is chosen at run time, so one binary serves both a
//! single node and a cluster. Every call that touches tenant data takes the tenant id, so no
//! query can cross tenants by accident. Secrets arrive here already sealed (encrypted) by the
//! caller; this crate never sees a plaintext key, TOTP secret or e-mail address.

mod gateway_store;
mod postgres;
mod records;
mod security_store;
mod sql_store;
mod sqlite;
mod telemetry_rows;
mod value;

pub use gateway_store::{GatewayStore, RetainedChange, RetainedMessageRow};
pub use records::*;
pub use security_store::{SecurityEvent, SecurityEventFilter, SecurityStore};
pub use sql_store::{open, open_postgres, open_postgres_in_schema, open_sqlite};
pub use telemetry_rows::check_telemetry_row;

use async_trait::async_trait;

/// What a store call can fail with. Messages are for logs, never for API answers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist (or belongs to another tenant, which is the same thing).
    #[error("not found")]
    NotFound,
    /// A unique key already exists.
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
/// [`Store::write_device_data_batch`], whose commit is visible to readers before it is durable.
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

/// The platform's persistent state. Implementations must be safe to share between tasks.
#[async_trait]
pub trait Store: GatewayStore + SecurityStore + Send + Sync + 'static {
    /// Which backend this is: `"sqlite"` or `"postgres"`.
    fn backend_name(&self) -> &'static str;
    /// Cheap round trip to the storage, for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    // ---- platform-wide secrets (sealed under the master key by the caller) ----
    async fn get_platform_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Inserts if absent; returns the value that is stored afterwards (first writer wins).
    async fn put_platform_secret_if_absent(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>>;
    /// Every platform secret, for master-key rotation.
    async fn list_platform_secrets(&self) -> StoreResult<Vec<(String, Vec<u8>)>>;
    async fn replace_platform_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<()>;

    // ---- tenants ----
    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn get_tenant(&self, id: &str) -> StoreResult<Tenant>;
    /// Direct children of `parent`, ordered by id.
    async fn list_child_tenants(&self, parent: &str, page: &Page) -> StoreResult<Vec<Tenant>>;
    /// All tenants, ordered by id (offline tools, key rotation).
    async fn list_all_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Deletes the tenant and every row it owns (users, roles, groups, devices, credentials,
    /// keys, policies) in one transaction. Audit records stay: they are append-only.
    async fn delete_tenant(&self, id: &str) -> StoreResult<()>;
    /// Tenant policy document (JSON text owned by the API layer), if one was stored.
    async fn get_tenant_policy(&self, tenant: &str) -> StoreResult<Option<String>>;
    async fn put_tenant_policy(&self, tenant: &str, policy_json: &str) -> StoreResult<()>;

    // ---- tenant data keys (wrapped by the master key) ----
    async fn insert_tenant_key(&self, key: &TenantKey) -> StoreResult<()>;
    /// Every key of the tenant, newest first; the first one is the active key.
    async fn list_tenant_keys(&self, tenant: &str) -> StoreResult<Vec<TenantKey>>;
    async fn rewrap_tenant_key(&self, tenant: &str, key_id: &str, wrapped: &[u8]) -> StoreResult<()>;

    // ---- users ----
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user(&self, tenant: &str, username: &str) -> StoreResult<User>;
    async fn list_users(&self, tenant: &str, page: &Page) -> StoreResult<Vec<User>>;
    /// Replaces every mutable column of the user identified by (tenant, username).
    async fn update_user(&self, user: &User) -> StoreResult<()>;
    async fn delete_user(&self, tenant: &str, username: &str) -> StoreResult<()>;

    // ---- custom roles ----
    async fn create_role(&self, role: &Role) -> StoreResult<()>;
    async fn get_role(&self, tenant: &str, name: &str) -> StoreResult<Role>;
    async fn list_roles(&self, tenant: &str) -> StoreResult<Vec<Role>>;
    async fn delete_role(&self, tenant: &str, name: &str) -> StoreResult<()>;

    // ---- device groups ----
    async fn create_group(&self, group: &Group) -> StoreResult<()>;
    async fn get_group(&self, tenant: &str, id: &str) -> StoreResult<Group>;
    /// Every group of the tenant (the tree is small enough to hold), ordered by id.
    async fn list_groups(&self, tenant: &str) -> StoreResult<Vec<Group>>;
    /// Refuses with `Conflict` while the group has sub-groups or devices.
    async fn delete_group(&self, tenant: &str, id: &str) -> StoreResult<()>;

    // ---- API keys ----
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// Looks a key up by its globally unique id (the tenant is read from the row).
    async fn get_api_key(&self, id: &str) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>>;
    async fn delete_api_key(&self, tenant: &str, id: &str) -> StoreResult<()>;

    // ---- devices ----
    async fn create_device(&self, device: &Device) -> StoreResult<()>;
    async fn get_device(&self, tenant: &str, id: &str) -> StoreResult<Device>;
    async fn list_devices(&self, tenant: &str, filter: &DeviceFilter, page: &Page) -> StoreResult<Vec<Device>>;
    /// Replaces every mutable column of the device identified by (tenant, id).
    async fn update_device(&self, device: &Device) -> StoreResult<()>;
    /// Deletes the device, its tokens and its key; its certificates are marked revoked (they
    /// stay for the CRL), all in one transaction.
    async fn delete_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<()>;
    /// Sets `status = revoked`, deletes every token and revokes every certificate, atomically.
    async fn revoke_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<Device>;

    // ---- per-device data keys (wrapped by the tenant key) ----
    async fn put_device_key(&self, key: &DeviceKey) -> StoreResult<()>;
    async fn get_device_key(&self, tenant: &str, device: &str) -> StoreResult<DeviceKey>;

    // ---- device tokens ----
    async fn create_device_token(&self, token: &DeviceToken) -> StoreResult<()>;
    async fn list_device_tokens(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceToken>>;
    async fn delete_device_token(&self, tenant: &str, device: &str, id: &str) -> StoreResult<()>;

    // ---- device certificates and the tenant CA ----
    async fn put_tenant_ca(&self, ca: &TenantCa) -> StoreResult<()>;
    async fn get_tenant_ca(&self, tenant: &str) -> StoreResult<TenantCa>;
    async fn create_device_certificate(&self, cert: &DeviceCertificate) -> StoreResult<()>;
    async fn list_device_certificates(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceCertificate>>;
    async fn get_device_certificate(&self, tenant: &str, serial: &str) -> StoreResult<DeviceCertificate>;
    /// Every revoked certificate of the tenant, for the CRL.
    async fn list_revoked_certificates(&self, tenant: &str) -> StoreResult<Vec<DeviceCertificate>>;

    // ---- trusted external CAs ----
    async fn create_trusted_ca(&self, ca: &TrustedCa) -> StoreResult<()>;
    async fn list_trusted_cas(&self, tenant: &str) -> StoreResult<Vec<TrustedCa>>;
    async fn delete_trusted_ca(&self, tenant: &str, id: &str) -> StoreResult<()>;

    // ---- audit (append-only; the chain logic lives in the caller) ----
    /// The last record of the tenant's chain, if any.
    async fn audit_head(&self, tenant: &str) -> StoreResult<Option<AuditRecord>>;
    /// Inserts one record; `Conflict` if (tenant, seq) already exists (another writer won).
    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// Records of the tenant matching the filter, ordered by seq ascending, after `page.after`
    /// (a seq as decimal text).
    async fn list_audit(&self, tenant: &str, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditRecord>>;
    /// Every tenant id that has audit records (including deleted tenants).
    async fn list_audit_tenants(&self) -> StoreResult<Vec<String>>;
    async fn insert_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()>;
    /// Checkpoints of the tenant ordered by seq ascending.
    async fn list_audit_checkpoints(&self, tenant: &str) -> StoreResult<Vec<AuditCheckpoint>>;

    // ---- device data ----
    // Payloads arrive sealed under the device key; rows go with their device and tenant.

    /// Commits the whole batch in ONE transaction (all or nothing): rows in order, then the
    /// `seen` updates, and returns once it is durable.
    async fn insert_device_data_batch(&self, batch: &DeviceDataBatch) -> StoreResult<()> {
        self.write_device_data_batch(batch).await?.wait().await
    }
    /// The group-commit path of ingest: commits the batch like
    /// [`Store::insert_device_data_batch`] and returns as soon as it is committed (visible to
    /// readers), with a [`Durable`] that resolves once it is on disk. SQLite commits without
    /// fsync and one sync thread then fsyncs the WAL for every commit made since its last sync,
    /// so the caller can write the next batch while this one is flushed. PostgreSQL is durable
    /// at commit.
    async fn write_device_data_batch(&self, batch: &DeviceDataBatch) -> StoreResult<Durable>;
    /// `last_seen = max(last_seen, at_ms)` and `registered` → `active` per device, touching only
    /// those columns (no lost update against API edits or the gateway's connect bookkeeping).
    async fn touch_devices_last_seen(&self, seen: &[DeviceSeen]) -> StoreResult<()>;
    /// Telemetry rows of one device ordered by (ts, seq), ascending or descending.
    async fn list_telemetry(
        &self,
        tenant: &str,
        device: &str,
        range: &TimeRange<i64>,
    ) -> StoreResult<Vec<TelemetryRow>>;
    /// Event rows of one device ordered by (ts, id); `type_tag` filters when set.
    async fn list_device_events(
        &self,
        tenant: &str,
        device: &str,
        type_tag: Option<&str>,
        range: &TimeRange<String>,
    ) -> StoreResult<Vec<DeviceEventRow>>;
    /// Attestation reports of one device, newest first.
    async fn list_attestations(&self, tenant: &str, device: &str, limit: u32) -> StoreResult<Vec<AttestationRow>>;
    /// Alarms of the tenant, newest first (by id); `page.after` is the last id of the previous page.
    async fn list_alarms(&self, tenant: &str, filter: &AlarmFilter, page: &Page) -> StoreResult<Vec<AlarmRow>>;
    async fn get_alarm(&self, tenant: &str, id: &str) -> StoreResult<AlarmRow>;
    /// The newest alarm of (device, type), open or not.
    async fn latest_alarm(&self, tenant: &str, device: &str, alarm_type: &str) -> StoreResult<Option<AlarmRow>>;
    /// Sets the status of an alarm whose current status is one of `from`; `NotFound` if no
    /// such alarm, `Conflict` if its status is not in `from`. Returns the updated alarm.
    async fn set_alarm_status(
        &self,
        tenant: &str,
        id: &str,
        from: &[&str],
        to: &str,
        now_ms: i64,
    ) -> StoreResult<AlarmRow>;
    /// Raises an alarm outside a batch (see [`AlarmRaise`]); used by the availability monitor.
    async fn raise_alarm(&self, raise: &AlarmRaise) -> StoreResult<()>;
    /// Active devices with `required_interval_s` whose `last_seen` is older than that interval
    /// at `now_ms` and which have no open `unavailable` alarm yet, across tenants.
    async fn list_silent_devices(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<SilentDevice>>;
    async fn get_twin_reported(&self, tenant: &str, device: &str) -> StoreResult<Option<TwinReportedRow>>;
    /// Stores the reported twin if the stored version is still `expected_version` (0 = none
    /// stored yet); `Conflict` when another writer got there first.
    async fn put_twin_reported(&self, row: &TwinReportedRow, expected_version: i64) -> StoreResult<()>;
}
