//! Identifier syntax for tenants, devices, users, groups and roles (SPEC §2), and the typed
//! ids built on it: a [`TenantId`], [`DeviceId`], [`Username`], [`GroupId`] or [`RoleName`]
//! exists only once its text was checked, so a service handed one never re-checks it.

/// What kind of identifier is being checked; decides the allowed syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Tenant,
    Device,
    Username,
    Group,
    Role,
}

impl IdKind {
    fn label(self) -> &'static str {
        match self {
            IdKind::Tenant => "tenant id",
            IdKind::Device => "device id",
            IdKind::Username => "username",
            IdKind::Group => "group id",
            IdKind::Role => "role name",
        }
    }
}

/// An identifier that does not match its syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind_label} must match {pattern}")]
pub struct InvalidId {
    pub kind_label: &'static str,
    pub pattern: &'static str,
}

const TENANT_PATTERN: &str = "^[a-z][a-z0-9-]{1,62}$";
const NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// Checks `value` against the syntax of `kind`.
pub fn validate_id(kind: IdKind, value: &str) -> Result<(), InvalidId> {
    let valid = match kind {
        IdKind::Tenant => is_tenant_id(value),
        IdKind::Device | IdKind::Username | IdKind::Group | IdKind::Role => is_name(value),
    };
    if valid {
        return Ok(());
    }
    let pattern = match kind {
        IdKind::Tenant => TENANT_PATTERN,
        _ => NAME_PATTERN,
    };
    Err(InvalidId { kind_label: kind.label(), pattern })
}

/// Declares a typed id: a string that passed [`validate_id`] for its kind.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `value` and wraps it; the error says which syntax it must follow.
            pub fn parse(value: &str) -> Result<$name, InvalidId> {
                validate_id($kind, value)?;
                Ok($name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

typed_id!(
    /// A tenant id, `^[a-z][a-z0-9-]{1,62}$`.
    TenantId,
    IdKind::Tenant
);
typed_id!(
    /// A device id, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
    DeviceId,
    IdKind::Device
);
typed_id!(
    /// A username, with the device id's syntax.
    Username,
    IdKind::Username
);
typed_id!(
    /// A device group id, with the device id's syntax.
    GroupId,
    IdKind::Group
);
typed_id!(
    /// A role name, with the device id's syntax.
    RoleName,
    IdKind::Role
);

fn is_tenant_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[1..].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn is_name(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..].iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: IdKind, value: &str, ok: bool) {
        assert_eq!(validate_id(kind, value).is_ok(), ok, "{kind:?} {value:?}");
    }

    #[test]
    fn tenant_ids() {
        for (value, ok) in [
            ("acme", true),
            ("a1", true),
            ("a-b-c", true),
            ("a", false),
            ("1acme", false),
            ("Acme", false),
            ("ac_me", false),
            ("", false),
            (&"a".repeat(63), true),
            (&"a".repeat(64), false),
        ] {
            check(IdKind::Tenant, value, ok);
        }
    }

    #[test]
    fn names() {
        for (value, ok) in [
            ("d", true),
            ("Sensor-01.a_b", true),
            ("-x", false),
            (".x", false),
            ("a/b", false),
            ("a b", false),
            ("ü", false),
            ("", false),
            (&"a".repeat(128), true),
            (&"a".repeat(129), false),
        ] {
            check(IdKind::Device, value, ok);
            check(IdKind::Username, value, ok);
        }
    }

    #[test]
    fn typed_ids_exist_only_when_valid() {
        assert_eq!(TenantId::parse("acme").map(|id| id.to_string()), Ok("acme".to_owned()));
        assert!(TenantId::parse("Acme").is_err());
        assert!(DeviceId::parse("a/b").is_err());
        assert_eq!(DeviceId::parse("pump-1").map(|id| id == "pump-1"), Ok(true));
    }
}
