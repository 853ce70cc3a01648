//! The state every handler receives: the platform services and the API's settings.

use std::sync::Arc;

use rampart_platform::Platform;

/// Tunables of the HTTP edge.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Largest request body accepted, in bytes (SPEC §3: 1 MiB).
    pub body_limit_bytes: usize,
    /// Lifetime of access tokens, in seconds (SPEC §4: 900).
    pub access_token_ttl_s: i64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings { body_limit_bytes: 1024 * 1024, access_token_ttl_s: 900 }
    }
}

/// Shared, cheaply cloned handler state.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub platform: Arc<Platform>,
    pub settings: ApiSettings,
    /// Device data (queries, alarms, live stream); `None` until [`AppState::with_ingestor`].
    pub ingestor: Option<rampart_data::Ingestor>,
}

impl AppState {
    pub fn new(platform: Arc<Platform>, settings: ApiSettings) -> Self {
        AppState(Arc::new(Inner { platform, settings, ingestor: None }))
    }

    /// The same state with the device data service the §8 routes use.
    pub fn with_ingestor(self, ingestor: rampart_data::Ingestor) -> Self {
        let Inner { platform, settings, .. } = &*self.0;
        AppState(Arc::new(Inner {
            platform: Arc::clone(platform),
            settings: settings.clone(),
            ingestor: Some(ingestor),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
