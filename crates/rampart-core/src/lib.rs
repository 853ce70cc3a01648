//! Rampart's domain rules, pure and free of IO: identifier syntax (SPEC §2), the fixed
//! permission set and built-in roles (SPEC §5), the password policy (SPEC §4) and the
//! group-tree scope of a user.

mod ids;
mod password_policy;
mod permissions;
mod scope;

pub use ids::{IdKind, InvalidId, validate_id};
pub use password_policy::{PasswordRejected, check_password_policy};
pub use permissions::{BUILTIN_ROLES, Permission, PermissionSet, builtin_role_permissions};
pub use scope::groups_in_scope;

/// Name of the root (management) tenant.
pub const PLATFORM_TENANT: &str = "platform";
