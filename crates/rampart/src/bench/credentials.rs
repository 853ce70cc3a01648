//! The credentials file shared by `bench provision`, `bench run` and `bench connect`:
//! CSV rows `client_id,username,password`, with an optional header row, written with mode
//! 0600 because the passwords are live device tokens. Passwords never appear in `Debug` output
//! or in error messages.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

/// The header row `provision` writes and `run` accepts.
pub(crate) const HEADER: &str = "client_id,username,password";

/// One MQTT identity: client id, username and password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    pub client_id: String,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Credential")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses the text of a credentials file. Blank lines and lines starting with `#` are skipped;
/// a first line equal to [`HEADER`] is the header. Fields are separated by commas and may not
/// contain one (ids, `<tenant>/<device>` and tokens never do).
pub(crate) fn parse(text: &str) -> anyhow::Result<Vec<Credential>> {
    let mut rows = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || (rows.is_empty() && line == HEADER) {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let &[client_id, username, password] = fields.as_slice() else {
            // Say where, never what: the line holds a secret.
            bail!("line {}: expected 3 fields (client_id,username,password), found {}", index + 1, fields.len());
        };
        if client_id.is_empty() {
            bail!("line {}: empty client_id", index + 1);
        }
        rows.push(Credential {
            client_id: client_id.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    Ok(rows)
}

/// Reads and parses a credentials file; an empty one is an error.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<Credential>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows = parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    if rows.is_empty() {
        bail!("{} holds no credentials", path.display());
    }
    Ok(rows)
}

/// Renders rows as CSV with the header.
pub(crate) fn render(rows: &[Credential]) -> String {
    let mut text = String::with_capacity(64 * (rows.len() + 1));
    text.push_str(HEADER);
    text.push('\n');
    for row in rows {
        text.push_str(&row.client_id);
        text.push(',');
        text.push_str(&row.username);
        text.push(',');
        text.push_str(&row.password);
        text.push('\n');
    }
    text
}

/// Writes rows to `path` with mode 0600 (created so, never widened in between).
pub(crate) fn write(path: &Path, rows: &[Credential]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // An existing file keeps its old mode on open: narrow it before writing secrets into it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    file.write_all(render(rows).as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    file.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(client_id: &str, username: &str, password: &str) -> Credential {
        Credential { client_id: client_id.into(), username: username.into(), password: password.into() }
    }

    #[test]
    fn parses_rows_with_or_without_header() {
        let expected = vec![
            credential("bench-00001", "acme/bench-00001", "tok1"),
            credential("bench-00002", "acme/bench-00002", "tok2"),
        ];
        let with_header = "client_id,username,password\nbench-00001,acme/bench-00001,tok1\r\n\n# note\nbench-00002, acme/bench-00002 ,tok2\n";
        assert_eq!(parse(with_header).unwrap(), expected);
        let without = "bench-00001,acme/bench-00001,tok1\nbench-00002,acme/bench-00002,tok2";
        assert_eq!(parse(without).unwrap(), expected);
    }

    #[test]
    fn render_and_parse_round_trip() {
        let rows = vec![credential("a", "t/a", "p"), credential("b", "t/b", "q")];
        assert_eq!(parse(&render(&rows)).unwrap(), rows);
    }

    #[test]
    fn bad_rows_name_the_line_but_not_the_secret() {
        let error = parse("a,t/a,secret-token,extra").unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
        assert!(!error.contains("secret-token"), "{error}");
        assert!(parse("a,t/a").is_err());
        assert!(parse(",t/a,p").is_err());
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", credential("a", "t/a", "hunter2-token"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn written_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.csv");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, &[credential("a", "t/a", "p")]).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap(), vec![credential("a", "t/a", "p")]);
    }
}
