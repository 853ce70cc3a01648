//! The fixed permission set and the four built-in roles (SPEC §5).

use std::collections::BTreeSet;

/// One permission of the fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    DevicesRead,
    DevicesWrite,
    TelemetryRead,
    OperationsRead,
    OperationsWrite,
    FirmwareRead,
    FirmwareWrite,
    AlarmsRead,
    AlarmsWrite,
    AuditRead,
    SecurityRead,
    SecurityWrite,
    UsersRead,
    UsersWrite,
    TenantsWrite,
}

impl Permission {
    /// Every permission, in SPEC order.
    pub const ALL: [Permission; 15] = [
        Permission::DevicesRead,
        Permission::DevicesWrite,
        Permission::TelemetryRead,
        Permission::OperationsRead,
        Permission::OperationsWrite,
        Permission::FirmwareRead,
        Permission::FirmwareWrite,
        Permission::AlarmsRead,
        Permission::AlarmsWrite,
        Permission::AuditRead,
        Permission::SecurityRead,
        Permission::SecurityWrite,
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::TenantsWrite,
    ];

    /// The wire name, e.g. `devices:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::DevicesRead => "devices:read",
            Permission::DevicesWrite => "devices:write",
            Permission::TelemetryRead => "telemetry:read",
            Permission::OperationsRead => "operations:read",
            Permission::OperationsWrite => "operations:write",
            Permission::FirmwareRead => "firmware:read",
            Permission::FirmwareWrite => "firmware:write",
            Permission::AlarmsRead => "alarms:read",
            Permission::AlarmsWrite => "alarms:write",
            Permission::AuditRead => "audit:read",
            Permission::SecurityRead => "security:read",
            Permission::SecurityWrite => "security:write",
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::TenantsWrite => "tenants:write",
        }
    }

    /// Parses a wire name; `None` for anything outside the fixed set.
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }

    fn is_read(self) -> bool {
        self.as_str().ends_with(":read")
    }
}

/// A set of permissions, ordered for stable output.
pub type PermissionSet = BTreeSet<Permission>;

/// Names of the built-in roles.
pub const BUILTIN_ROLES: [&str; 4] = ["admin", "operator", "viewer", "auditor"];

/// Permissions of a built-in role, or `None` if `role` is not built in.
pub fn builtin_role_permissions(role: &str) -> Option<PermissionSet> {
    use Permission::*;
    let set: PermissionSet = match role {
        "admin" => Permission::ALL.into_iter().collect(),
        "operator" => [
            DevicesRead,
            DevicesWrite,
            TelemetryRead,
            OperationsRead,
            OperationsWrite,
            AlarmsRead,
            AlarmsWrite,
            FirmwareRead,
        ]
        .into_iter()
        .collect(),
        "viewer" => Permission::ALL
            .into_iter()
            .filter(|p| p.is_read() && !matches!(p, AuditRead | SecurityRead | UsersRead))
            .collect(),
        "auditor" => [AuditRead, SecurityRead].into_iter().collect(),
        _ => return None,
    };
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(role: &str) -> Vec<&'static str> {
        builtin_role_permissions(role).unwrap_or_default().into_iter().map(Permission::as_str).collect()
    }

    #[test]
    fn builtin_roles_match_the_spec() {
        assert_eq!(names("admin").len(), 15);
        assert_eq!(
            names("operator"),
            [
                "devices:read",
                "devices:write",
                "telemetry:read",
                "operations:read",
                "operations:write",
                "firmware:read",
                "alarms:read",
                "alarms:write"
            ]
        );
        assert_eq!(
            names("viewer"),
            ["devices:read", "telemetry:read", "operations:read", "firmware:read", "alarms:read"]
        );
        assert_eq!(names("auditor"), ["audit:read", "security:read"]);
        assert!(builtin_role_permissions("root").is_none());
    }

    #[test]
    fn parse_round_trips() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse("devices:*"), None);
    }
}
