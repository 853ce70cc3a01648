//! The state every handler receives: the platform services, the device data service, the
//! fleet services (firmware, campaigns, advisories) and the API's settings.

use std::sync::Arc;

use rampart_platform::Platform;

/// Tunables of the HTTP edge.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest request body accepted, in bytes (SPEC §3: 1 MiB).
    pub body_limit_bytes: usize,
    /// Largest oversized body read to its end (and discarded) before answering 413, so that
    /// HTTP/1.1 and HTTP/2 clients still sending it can read the answer; a larger one gets
    /// the connection closed.
    pub oversized_drain_bytes: usize,
    /// How often a live stream checks that its principal still holds its authority.
    pub stream_recheck: std::time::Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            body_limit_bytes: 1024 * 1024,
            oversized_drain_bytes: 64 * 1024 * 1024,
            stream_recheck: std::time::Duration::from_secs(2),
        }
    }
}

/// Shared, cheaply cloned handler state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub platform: Arc<Platform>,
    pub settings: ApiSettings,
    /// Device data: queries, alarms, the live channel, the HTTPS device API.
    pub ingestor: rampart_data::Ingestor,
    /// Firmware repository, campaigns and advisories.
    pub fleet: rampart_fleet::Fleet,
}

impl AppState {
    pub fn new(
        platform: Arc<Platform>,
        ingestor: rampart_data::Ingestor,
        fleet: rampart_fleet::Fleet,
        settings: ApiSettings,
    ) -> Self {
        AppState(Arc::new(Inner { platform, settings, ingestor, fleet }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
