//! The application layer every edge of Rampart calls (REST API, MQTT gateway, CLI): the
//! service methods of [`Platform`] that authorise (permission and scope), write, audit and
//! publish a control event in one call; authentication into a [`Principal`]; the key
//! hierarchy; the per-tenant-incarnation audit chain; the control bus; the clock. No HTTP, no
//! sockets, and the only crate besides the data plane that reaches the store.

mod audit;
mod bus;
mod clock;
mod device_auth;
mod error;
mod incarnations;
mod ip_blocks;
mod keyring;
mod platform;
mod principal;
mod security_events;
mod services;
mod time_format;
mod violations;

pub use audit::{
    Actor, AuditEntry, AuditLog, ChainVerifier, ExportLine, VerifyReport, checkpoint_json, parse_export_line,
    record_json,
};
pub use bus::{Bus, BusMessage, BusReceiver, ControlEvent, CutOffReason, DeviceFeed, LocalBus};
pub use clock::{Clock, SystemClock};
pub use device_auth::{AuthenticatedDevice, DeviceAuthError, DeviceAuthMethod, split_username};
pub use error::{PlatformError, PlatformResult, ServiceError, ServiceResult};
pub use ip_blocks::{IpBlock, MAX_TRACKED};
pub use keyring::Keyring;
pub use platform::{Platform, PlatformSettings};
pub use principal::{ACCESS_TOKEN_PREFIX, API_KEY_PREFIX, Principal, PrincipalKind, Purpose};
pub use security_events::SecurityEventDraft;
pub use services::api_keys::{CreatedApiKey, NewApiKey};
pub use services::credentials::{DEVICE_TOKEN_PREFIX, IssuedCertificate, IssuedToken};
pub use services::devices::{DeviceEdit, DeviceQuery, NewDevice};
pub use services::groups::NewGroup;
pub use services::login::{AccessToken, LoginRequest, Me, MfaEnrolment};
pub use services::roles::RoleInfo;
pub use services::tenants::NewTenant;
pub use services::trusted_cas::{NewTrustedCa, trusted_ca_facts};
pub use services::users::{NewUser, UserDetails, UserEdit};
pub use time_format::{format_rfc3339_ms, parse_timestamp};

/// The rows services answer with, so the edges need no dependency on the store.
pub mod rows {
    pub use rampart_store::{
        ApiKey, AuditChain, AuditCheckpoint, AuditFilter, AuditRecord, Device, DeviceCertificate, DeviceToken, Group,
        Page, RetainedChange, RetainedMessageRow, SecurityEvent, SecurityEventFilter, Tenant, TrustedCa, User,
    };
}
