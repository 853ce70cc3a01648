//! Rampart's vocabulary, pure and free of IO: identifier syntax and typed ids (SPEC §2), the
//! fixed permission set and built-in roles (SPEC §5), the password policy (SPEC §4), device
//! and alarm statuses and severities, the registries of audit actions and security-event
//! types, the tenant policy and the topic policies with every ACL decision (SPEC §7, §10),
//! MQTT topic syntax, and the group scope of a principal.

pub mod acl;
mod ids;
mod net;
mod password_policy;
mod permissions;
mod registry;
mod scope;
mod status;
mod tenant_policy;
mod text;
pub mod topic;
mod wire_enum;

pub use ids::{DeviceId, GroupId, IdKind, InvalidId, RoleName, TenantId, Username, validate_id};
pub use net::{Cidr, canonical_ip};
pub use password_policy::{PasswordRejected, check_password_policy};
pub use permissions::{BUILTIN_ROLES, Permission, PermissionSet, builtin_role_permissions};
pub use registry::{AuditAction, SecurityEventType};
pub use scope::{Scope, groups_in_scope};
pub use status::{AlarmStatus, AttestationStatus, CampaignStatus, DeviceStatus, OperationStatus, Severity};
pub use tenant_policy::{
    ClientTakeover, DetectionPatch, DetectionPolicy, PolicyError, TenantPolicy, TenantPolicyPatch,
};
pub use text::{InvalidText, TextKind, check_text};

/// Name of the root (management) tenant.
pub const PLATFORM_TENANT: &str = "platform";
