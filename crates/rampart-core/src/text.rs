//! Free-text fields people set (display names, labels, e-mail addresses): bounded in length,
//! free of control characters, checked in one place.

/// What kind of text a field holds; decides its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Names of tenants, groups, API keys: 1 to 200 characters.
    DisplayName,
    /// Device names and types: 1 to 256 characters.
    Label,
    /// An e-mail address: at most 254 characters, `local@domain`, no spaces.
    Email,
}

/// A text field that does not fit its kind; the message is safe to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidText(pub String);

/// Checks `value` of the field named `field`.
pub fn check_text(field: &str, kind: TextKind, value: &str) -> Result<(), InvalidText> {
    let length = value.chars().count();
    let bounded = |max: usize| match length == 0 || length > max || value.chars().any(char::is_control) {
        true => Err(InvalidText(format!("{field} must be 1 to {max} characters without control characters"))),
        false => Ok(()),
    };
    match kind {
        TextKind::DisplayName => bounded(200),
        TextKind::Label => bounded(256),
        TextKind::Email => {
            let valid = length <= 254
                && !value.chars().any(|c| c.is_whitespace() || c.is_control())
                && value.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
            match valid {
                true => Ok(()),
                false => Err(InvalidText(format!("{field} is not a valid e-mail address"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_characters() {
        for (kind, value, ok) in [
            (TextKind::DisplayName, "Acme Corp", true),
            (TextKind::DisplayName, "", false),
            (TextKind::DisplayName, "tab\there", false),
            (TextKind::DisplayName, &"x".repeat(201), false),
            (TextKind::Label, &"x".repeat(256), true),
            (TextKind::Email, "alice@example.com", true),
            (TextKind::Email, "alice at example", false),
            (TextKind::Email, "@example.com", false),
        ] {
            assert_eq!(check_text("field", kind, value).is_ok(), ok, "{kind:?} {value:?}");
        }
    }
}
