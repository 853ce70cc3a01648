//! Services shared by every edge of Rampart (REST API, MQTT gateway, CLI): the key hierarchy
//! (master key → tenant keys → device keys), the per-tenant audit hash chain with signed
//! checkpoints, and tenant provisioning. No HTTP, no sockets: the edges call in here.

mod audit;
mod clock;
mod control;
mod device_auth;
mod error;
mod keyring;
mod provisioning;
mod security_events;
mod time_format;

pub use audit::{
    Actor, AuditEntry, AuditLog, ChainVerifier, ExportLine, VerifyReport, checkpoint_json, parse_export_line,
    record_json, verify_stored_chain,
};
pub use clock::{Clock, SystemClock};
pub use control::{ControlBus, ControlEvent, CutOffReason};
pub use device_auth::{
    API_KEY_PREFIX, AuthenticatedApplication, AuthenticatedDevice, DeviceAuthError, DeviceAuthMethod,
    resolve_role_permissions, split_username,
};
pub use error::{PlatformError, PlatformResult};
pub use keyring::Keyring;
pub use provisioning::{CA_KEY_PURPOSE, Platform, new_user};
pub use security_events::{SecurityEventDraft, Severity};
pub use time_format::{format_rfc3339_ms, parse_timestamp};
