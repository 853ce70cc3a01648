//! The master key file: the one place this crate touches the filesystem.
//!
//! Format: 32 raw bytes, or 64 hex characters with an optional trailing newline. New files are
//! written as hex (easy to back up on paper) with mode 0600, and never overwrite anything.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::envelope::SecretKey256;
use crate::error::CryptoError;

/// Longest file we bother reading; anything bigger is not a key file.
const MAX_FILE_LEN: u64 = 128;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CryptoError + '_ {
    move |source| CryptoError::Io { path: path.to_path_buf(), source }
}

/// Loads the master key from `path`; if it does not exist and `create` is set, creates it.
/// Returns the key and whether it was created now.
///
/// Refuses a file whose mode grants any group or other permission
/// ([`CryptoError::InsecureKeyFile`]).
pub fn load_or_create_master_key(path: &Path, create: bool) -> Result<(SecretKey256, bool), CryptoError> {
    match File::open(path) {
        Ok(file) => Ok((read_key_file(path, file)?, false)),
        Err(error) if error.kind() == ErrorKind::NotFound && create => {
            match write_new_key_file(path) {
                Ok(key) => Ok((key, true)),
                // Another process created it between our open and create: use theirs.
                Err(CryptoError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                    let file = File::open(path).map_err(io_error(path))?;
                    Ok((read_key_file(path, file)?, false))
                }
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(io_error(path)(error)),
    }
}

/// Creates a new key file with a random key (mode 0600). Fails if `path` exists.
pub fn write_new_key_file(path: &Path) -> Result<SecretKey256, CryptoError> {
    let key = SecretKey256::generate();
    let mut contents = Zeroizing::new(hex::encode(key.expose_bytes()));
    contents.push('\n');
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_error(path))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(io_error(path))?;
    Ok(key)
}

fn read_key_file(path: &Path, file: File) -> Result<SecretKey256, CryptoError> {
    // Check the mode of the file we actually opened, not of whatever the path names later.
    let metadata = file.metadata().map_err(io_error(path))?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::InsecureKeyFile { path: path.to_path_buf(), mode });
    }
    let invalid = |reason| CryptoError::InvalidKeyFile { path: path.to_path_buf(), reason };
    if !metadata.is_file() {
        return Err(invalid("not a regular file"));
    }
    let mut contents = Zeroizing::new(Vec::with_capacity(MAX_FILE_LEN as usize));
    file.take(MAX_FILE_LEN).read_to_end(&mut contents).map_err(io_error(path))?;
    if contents.len() == 32 {
        return SecretKey256::from_bytes(&contents);
    }
    let text = contents.strip_suffix(b"\r\n").or_else(|| contents.strip_suffix(b"\n")).unwrap_or(&contents);
    if text.len() != 64 {
        return Err(invalid("expected 32 raw bytes or 64 hex characters and an optional newline"));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, &mut bytes[..]).map_err(|_| invalid("not hexadecimal"))?;
    SecretKey256::from_bytes(&bytes[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rampart-crypto-{name}-{}", crate::secrets::random_id(8)));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_with_mode(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn creates_0600_then_loads_same_key() {
        let dir = temp_dir("create");
        let path = dir.join("master.key");
        assert!(matches!(load_or_create_master_key(&path, false), Err(CryptoError::Io { .. })));
        let (created, was_created) = load_or_create_master_key(&path, true).unwrap();
        assert!(was_created);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (loaded, was_created) = load_or_create_master_key(&path, true).unwrap();
        assert!(!was_created);
        assert_eq!(created.expose_bytes(), loaded.expose_bytes());
        assert!(write_new_key_file(&path).is_err(), "must not overwrite");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn file_formats_and_modes() {
        let dir = temp_dir("formats");
        let hex_key = "ab".repeat(32);
        let cases = [
            ("raw", vec![7u8; 32], 0o600, Some([7u8; 32])),
            ("hex", hex_key.clone().into_bytes(), 0o400, Some([0xab; 32])),
            ("hex-newline", format!("{hex_key}\n").into_bytes(), 0o600, Some([0xab; 32])),
            ("hex-crlf", format!("{hex_key}\r\n").into_bytes(), 0o600, Some([0xab; 32])),
            ("world-readable", vec![7u8; 32], 0o644, None),
            ("group-readable", vec![7u8; 32], 0o640, None),
            ("short", vec![7u8; 31], 0o600, None),
            ("long", vec![7u8; 33], 0o600, None),
            ("not-hex", "zz".repeat(32).into_bytes(), 0o600, None),
            ("empty", Vec::new(), 0o600, None),
        ];
        for (name, contents, mode, expected) in &cases {
            let path = dir.join(name);
            write_with_mode(&path, contents, *mode);
            let result = load_or_create_master_key(&path, true);
            match expected {
                Some(bytes) => assert_eq!(result.unwrap().0.expose_bytes(), bytes, "{name}"),
                None => assert!(result.is_err(), "{name}"),
            }
        }
        let path = dir.join("world-readable");
        assert!(matches!(
            load_or_create_master_key(&path, true),
            Err(CryptoError::InsecureKeyFile { mode: 0o644, .. })
        ));
        fs::remove_dir_all(dir).unwrap();
    }
}
