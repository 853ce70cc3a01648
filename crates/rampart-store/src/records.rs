//! Plain rows as the store reads and writes them. Times are epoch milliseconds (UTC);
//! `sealed` fields hold ciphertext produced by the caller's envelope encryption.

use std::fmt;

/// A tenant: a node of the tenant tree rooted at `platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// `None` only for the root tenant `platform`.
    pub parent: Option<String>,
    pub created_at: i64,
}

/// A tenant data key wrapped (AES-256-GCM) by the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantKey {
    pub tenant: String,
    pub key_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: i64,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey").field("tenant", &self.tenant).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// A person who logs in to one tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub tenant: String,
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    /// Device groups the user is confined to; empty means the whole tenant.
    pub groups: Vec<String>,
    pub disabled: bool,
    /// Bumped on disable, password change and role change: older access tokens stop working.
    pub token_version: i64,
    pub mfa_enabled: bool,
    /// Confirmed TOTP secret, sealed under the tenant key.
    pub mfa_secret_sealed: Option<Vec<u8>>,
    /// Secret issued by enrolment but not yet confirmed, sealed under the tenant key.
    pub mfa_pending_sealed: Option<Vec<u8>>,
    /// The last TOTP time step accepted (replay protection).
    pub mfa_last_step: i64,
    /// E-mail address, sealed under the tenant key.
    pub email_sealed: Option<Vec<u8>>,
    pub failed_logins: i64,
    pub failed_window_start: i64,
    pub locked_until: i64,
    pub password_changed_at: i64,
    pub created_at: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("tenant", &self.tenant)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("groups", &self.groups)
            .field("disabled", &self.disabled)
            .field("token_version", &self.token_version)
            .field("mfa_enabled", &self.mfa_enabled)
            .finish_non_exhaustive()
    }
}

/// A custom role of a tenant (built-in roles are not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub tenant: String,
    pub name: String,
    pub permissions: Vec<String>,
    pub created_at: i64,
}

/// A device group; groups form a tree per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub created_at: i64,
}

/// An application's API key; only the SHA-256 of the key is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub roles: Vec<String>,
    pub key_hash: Vec<u8>,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

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
    /// `registered`, `active`, `revoked` or `quarantined`.
    pub status: String,
    pub connected: bool,
    pub last_seen: Option<i64>,
    pub last_address: Option<String>,
    pub firmware: Option<String>,
    pub created_at: i64,
}

/// Filters for listing devices; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Exact group id.
    pub group: Option<String>,
    /// The device's group must be one of these (group-scoped users); `None` = no restriction.
    pub within_groups: Option<Vec<String>>,
    pub status: Option<String>,
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

/// A device token; only the SHA-256 of the token is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken {
    pub tenant: String,
    pub device: String,
    pub id: String,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceToken")
            .field("tenant", &self.tenant)
            .field("device", &self.device)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The tenant's own CA: certificate in clear, private key sealed under the tenant key.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantCa {
    pub tenant: String,
    pub cert_pem: String,
    pub key_sealed: Vec<u8>,
    /// Monotonic CRL number, bumped by the caller on every CRL it signs.
    pub crl_number: i64,
    pub created_at: i64,
}

impl fmt::Debug for TenantCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCa").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// A certificate issued to a device by the tenant CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub tenant: String,
    pub device: String,
    /// Lower-case hex, no separators.
    pub serial: String,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub cert_pem: String,
    pub created_at: i64,
}

/// An external CA a tenant trusts for device certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCa {
    pub tenant: String,
    pub id: String,
    pub cert_pem: String,
    pub subject: String,
    pub auto_register: bool,
    pub created_at: i64,
}

/// One record of a tenant's audit hash chain (see SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub tenant: String,
    pub seq: i64,
    pub ts: i64,
    /// `user`, `device` or `system`.
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub target: String,
    pub source_ip: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// JSON object text.
    pub details_json: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Filters for listing audit records; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub action: Option<String>,
    pub actor: Option<String>,
}

/// An Ed25519 signature over a tenant chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub tenant: String,
    pub seq: i64,
    pub hash: String,
    pub ts: i64,
    /// Base64 signature.
    pub signature: String,
}

// ---- device data (SPEC §8); payloads are sealed under the device key by the caller ----

/// One telemetry message (or one element of an array message) of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryRow {
    pub tenant: String,
    pub device: String,
    pub ts: i64,
    /// Orders rows with equal `ts`; random, unique per (tenant, device, ts).
    pub seq: i64,
    pub sealed: Vec<u8>,
}

/// One event of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEventRow {
    pub tenant: String,
    pub device: String,
    pub ts: i64,
    pub id: String,
    /// Keyed hash of the event type (the clear type is inside `sealed`), for `?type=` filters.
    pub type_tag: String,
    pub sealed: Vec<u8>,
}

/// One attestation report of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRow {
    pub tenant: String,
    pub device: String,
    pub ts: i64,
    pub id: String,
    pub sealed: Vec<u8>,
}

/// An alarm as stored. `status` is `ACTIVE`, `ACKNOWLEDGED` or `CLEARED`; at most one alarm per
/// (tenant, device, alarm_type) is not `CLEARED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRow {
    pub tenant: String,
    pub id: String,
    pub device: String,
    pub alarm_type: String,
    pub severity: String,
    pub status: String,
    pub count: i64,
    pub text_sealed: Option<Vec<u8>>,
    pub first_ts: i64,
    pub last_ts: i64,
    pub updated_at: i64,
}

/// Raising an alarm: creates it (with `id`, count 1, ACTIVE) unless the device already has one
/// of this type that is not CLEARED, in which case that one's count goes up by one and its
/// severity, text and last time are replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRaise {
    pub tenant: String,
    /// Used only when a new alarm is created.
    pub id: String,
    pub device: String,
    pub alarm_type: String,
    pub severity: String,
    pub text_sealed: Option<Vec<u8>>,
    pub ts: i64,
}

/// A device clears its alarm of `alarm_type` (no-op if none is open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmClear {
    pub tenant: String,
    pub device: String,
    pub alarm_type: String,
    pub ts: i64,
}

/// One write of a [`DeviceDataBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceDataRow {
    Telemetry(TelemetryRow),
    Event(DeviceEventRow),
    Attestation(AttestationRow),
    RaiseAlarm(AlarmRaise),
    ClearAlarm(AlarmClear),
}

/// A device sent data at `at_ms`: `last_seen` becomes at least `at_ms`, `registered` becomes
/// `active`, and its open `unavailable` alarm is cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSeen {
    pub tenant: String,
    pub device: String,
    pub at_ms: i64,
}

/// Everything the ingest writer commits in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDataBatch {
    /// Applied in order (an alarm raised then cleared in one batch ends CLEARED).
    pub rows: Vec<DeviceDataRow>,
    /// At most one per device is useful; the latest time wins anyway.
    pub seen: Vec<DeviceSeen>,
}

/// Time range and keyset position for listing telemetry or events of one device.
/// `from`/`to` are inclusive; rows strictly after `after` = (ts, seq or id) in the list order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeRange<K> {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub after: Option<(i64, K)>,
    pub descending: bool,
    /// 0 = no limit.
    pub limit: u32,
}

/// Filters for listing alarms; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmFilter {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub device: Option<String>,
    /// Only devices whose group is one of these (group-scoped callers); `None` = no restriction.
    pub within_groups: Option<Vec<String>>,
}

/// A device with `required_interval_s` that has been silent for longer than that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentDevice {
    pub tenant: String,
    pub device: String,
    pub last_seen: i64,
    pub required_interval_s: i64,
}

/// The reported twin state of a device, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinReportedRow {
    pub tenant: String,
    pub device: String,
    pub reported_sealed: Vec<u8>,
    pub reported_version: i64,
    pub updated_at: i64,
}
