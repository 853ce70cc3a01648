//! The password policy of SPEC §4: at least 12 characters, not the username, not common.
//! "Not the username" is checked case-insensitively, ignoring surrounding whitespace.

/// Why a password was refused. The text is safe to show to the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("password must be at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("password must be at most {MAX_LENGTH} characters")]
    TooLong,
    #[error("password must not be the username")]
    SameAsUsername,
    #[error("password is too common")]
    Common,
}

const MIN_LENGTH: usize = 12;
/// Bounds the Argon2 input so nobody can make the server hash megabytes.
const MAX_LENGTH: usize = 256;
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Checks a new password for `username` against the policy.
pub fn check_password_policy(username: &str, password: &str) -> Result<(), PasswordRejected> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PasswordRejected::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(PasswordRejected::TooLong);
    }
    let lowered = password.to_lowercase();
    if lowered.trim() == username.to_lowercase() {
        return Err(PasswordRejected::SameAsUsername);
    }
    if COMMON_PASSWORDS.lines().any(|common| common == lowered) || is_one_repeated_char(&lowered) {
        return Err(PasswordRejected::Common);
    }
    Ok(())
}

fn is_one_repeated_char(password: &str) -> bool {
    let mut chars = password.chars();
    chars.next().is_some_and(|first| chars.all(|c| c == first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        for (username, password, expected) in [
            ("alice", "short", Err(PasswordRejected::TooShort)),
            ("alice.liddell", "alice.liddell", Err(PasswordRejected::SameAsUsername)),
            ("alice.liddell", "ALICE.Liddell", Err(PasswordRejected::SameAsUsername)),
            ("admin", "Admin-Password-2026", Ok(())),
            ("alice", "Password1234", Err(PasswordRejected::Common)),
            ("alice", "zzzzzzzzzzzzzz", Err(PasswordRejected::Common)),
            ("alice", &"x1".repeat(200), Err(PasswordRejected::TooLong)),
            ("alice", "violet-Harbor-91", Ok(())),
        ] {
            assert_eq!(check_password_policy(username, password), expected, "{password}");
        }
    }
}
