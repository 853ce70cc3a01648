//! The firmware side of device management (SPEC §9): the firmware repository (a per-tenant
//! Ed25519 signing key, registered keys for images signed offline, images encrypted at rest
//! and served by byte range), campaigns (canary, waves, self-pausing past a failure
//! threshold, anti-rollback by security counter) and vulnerability advisories (OSV) with the
//! devices they expose. Operations themselves, device twins and attestation verdicts live in
//! the data crate; campaigns create their operations through it.
//!
//! ```no_run
//! # async fn example(platform: std::sync::Arc<rampart_platform::Platform>, store: std::sync::Arc<dyn rampart_store::Store>, ingestor: rampart_data::Ingestor) {
//! use rampart_fleet::{Fleet, FleetSettings};
//! let fleet = Fleet::start(platform, store, ingestor, "/var/lib/rampart/firmware".into(), FleetSettings::default());
//! # }
//! ```

mod advisories;
mod campaigns;
mod files;
mod manifest;
mod repository;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rampart_data::Ingestor;
use rampart_platform::Platform;
use rampart_store::Store;

pub use advisories::{Advisory, Exposure, MAX_ADVISORY_BYTES};
pub use campaigns::{Campaign, CampaignRequest, DEFAULT_FAILURE_THRESHOLD_PCT, MAX_CAMPAIGN_DEVICES, Strategy, Target};
pub use manifest::{FirmwareMetadata, MAX_SECURITY_COUNTER, manifest, public_key, verifies};
pub use repository::{ByteRange, Download, Firmware, FirmwareKey, Upload};

/// Limits and periods.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Largest firmware image, in bytes (the upload route's own body limit).
    pub max_image_bytes: u64,
    /// How often running campaigns are moved on; `None`: never by themselves (tests).
    pub campaign_period: Option<Duration>,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings { max_image_bytes: 64 * 1024 * 1024, campaign_period: Some(Duration::from_millis(500)) }
    }
}

/// The firmware repository, campaigns and advisories (cheap to clone).
#[derive(Clone)]
pub struct Fleet(Arc<Inner>);

pub(crate) struct Inner {
    platform: Arc<Platform>,
    store: Arc<dyn Store>,
    ingestor: Ingestor,
    /// Where image files live (`<data dir>/firmware`).
    dir: PathBuf,
    settings: FleetSettings,
    /// One campaign step at a time in this process (waves are dispatched idempotently, so a
    /// second node would create nothing twice either).
    advancing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("dir", &self.0.dir).finish_non_exhaustive()
    }
}

impl Fleet {
    /// Opens the fleet services and starts the campaign runner.
    pub fn start(
        platform: Arc<Platform>,
        store: Arc<dyn Store>,
        ingestor: Ingestor,
        dir: PathBuf,
        settings: FleetSettings,
    ) -> Fleet {
        let period = settings.campaign_period;
        let fleet =
            Fleet(Arc::new(Inner { platform, store, ingestor, dir, settings, advancing: tokio::sync::Mutex::new(()) }));
        if let Some(period) = period {
            campaigns::spawn_runner(Arc::downgrade(&fleet.0), period);
        }
        fleet
    }

    /// The largest image an upload may carry, in bytes.
    pub fn max_image_bytes(&self) -> u64 {
        self.0.settings.max_image_bytes
    }
}
