//! First start and every start after it: the data dir (0700), the master key (0600), the
//! `platform` tenant with its `admin` user, and the TLS material of the listeners.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rampart_core::check_password_policy;
use rampart_crypto::{SecretKey256, load_or_create_master_key, random_secret};
use rampart_platform::Platform;
use zeroize::Zeroizing;

pub(crate) const ADMIN_PASSWORD_FILE: &str = "initial-admin-password";
const ADMIN_USERNAME: &str = "admin";

/// Creates the data dir with mode 0700, or makes an existing one private (0700): it holds the
/// master key, the database and the initial admin password.
pub(crate) fn prepare_data_dir(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating data dir {}", path.display()))?;
    }
    let metadata = std::fs::metadata(path).with_context(|| format!("reading data dir {}", path.display()))?;
    if !metadata.is_dir() {
        bail!("data dir {} is not a directory", path.display());
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).with_context(|| {
            format!("data dir {} is open to group or others (mode {mode:o}) and cannot be made private", path.display())
        })?;
        tracing::warn!(path = %path.display(), previous_mode = format!("{mode:o}"), "data dir was open to group or others; set to 0700");
    }
    Ok(())
}

/// Where the master key lives: `RAMPART_MASTER_KEY_FILE` (which must exist) or `DATA_DIR/master.key`.
pub(crate) fn master_key_path(data_dir: &Path) -> (PathBuf, bool) {
    match std::env::var_os("RAMPART_MASTER_KEY_FILE") {
        Some(path) => (PathBuf::from(path), false),
        None => (data_dir.join("master.key"), true),
    }
}

/// Loads the master key, creating it on first start. Refuses group/world-readable key files.
pub(crate) fn load_master_key(data_dir: &Path) -> anyhow::Result<SecretKey256> {
    let (path, create) = master_key_path(data_dir);
    let (key, created) =
        load_or_create_master_key(&path, create).with_context(|| format!("master key {}", path.display()))?;
    if created {
        tracing::info!(path = %path.display(), "created master key");
    }
    Ok(key)
}

/// How the first admin password was chosen.
pub(crate) enum AdminPassword {
    /// Nothing to do: the platform tenant already exists.
    AlreadyBootstrapped,
    FromEnvironment,
    Generated(PathBuf),
}

/// Creates the `platform` tenant and `admin` user on first start. The password comes from
/// `RAMPART_ADMIN_PASSWORD` or is generated into `DATA_DIR/initial-admin-password` (0600); it
/// is never printed or logged.
pub(crate) async fn bootstrap_admin(platform: &Platform, data_dir: &Path) -> anyhow::Result<AdminPassword> {
    if platform.bootstrapped().await.context("reading the platform tenant")? {
        return Ok(AdminPassword::AlreadyBootstrapped);
    }
    if let Ok(password) = std::env::var("RAMPART_ADMIN_PASSWORD") {
        let password = Zeroizing::new(password);
        check_password_policy(ADMIN_USERNAME, &password).context("RAMPART_ADMIN_PASSWORD")?;
        let created = platform.bootstrap(&password).await.context("creating the platform tenant")?;
        return Ok(if created { AdminPassword::FromEnvironment } else { AdminPassword::AlreadyBootstrapped });
    }
    let password = random_secret("", 18);
    let path = data_dir.join(ADMIN_PASSWORD_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(password.as_bytes()).and_then(|()| file.write_all(b"\n")).and_then(|()| file.sync_all())?;
    let created = platform.bootstrap(&password).await.context("creating the platform tenant")?;
    if !created {
        // Another node bootstrapped first; our password was never used.
        std::fs::remove_file(&path).ok();
        return Ok(AdminPassword::AlreadyBootstrapped);
    }
    Ok(AdminPassword::Generated(path))
}

/// Opens the platform of an existing data dir for the offline tools (never creates anything
/// but missing platform signing keys).
pub(crate) async fn open_existing_platform(data_dir: &Path, storage: Option<&str>) -> anyhow::Result<Platform> {
    if !data_dir.is_dir() {
        bail!("data dir {} does not exist", data_dir.display());
    }
    let (path, _) = master_key_path(data_dir);
    let (master, _) =
        load_or_create_master_key(&path, false).with_context(|| format!("master key {}", path.display()))?;
    let storage = crate::config::StorageSetting::parse(storage)?;
    let store = rampart_store::open(storage.as_spec(), data_dir).await.context("opening the store")?;
    let clock = std::sync::Arc::new(rampart_platform::SystemClock);
    Platform::open(store, master, clock, rampart_platform::PlatformSettings::default())
        .await
        .context("opening the platform")
}
