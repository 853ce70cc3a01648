//! An in-process platform for the crates' integration tests: a fresh SQLite store (or a
//! PostgreSQL schema), the platform over it with a [`FakeClock`] or the system clock, the
//! ingestor, and helpers that set things up *through the services*, as an administrator
//! would: tenants with their admin principal, devices with tokens, API keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rampart_core::{DeviceId, TenantId, Username};
use rampart_crypto::SecretKey256;
use rampart_data::{IngestSettings, Ingestor};
use rampart_platform::{
    Clock, LoginRequest, NewApiKey, NewDevice, NewTenant, Platform, PlatformSettings, Principal, Purpose, SystemClock,
};
use rampart_store::Store;
use zeroize::Zeroizing;

/// The password every fixture user gets.
pub const FIXTURE_PASSWORD: &str = "correct-Horse-battery-77";

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    pub fn at(now_ms: i64) -> Arc<FakeClock> {
        Arc::new(FakeClock(AtomicI64::new(now_ms)))
    }

    pub fn advance_ms(&self, by: i64) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A platform over a fresh store.
pub struct Fixture {
    /// The store, as the test's own handle (to look at rows the services wrote).
    pub store: Arc<dyn Store>,
    pub platform: Arc<Platform>,
    pub ingestor: Ingestor,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A platform on SQLite with the system clock, bootstrapped.
    pub async fn new() -> Fixture {
        Fixture::with_clock(Arc::new(SystemClock)).await
    }

    /// A platform on SQLite with `clock`, bootstrapped.
    pub async fn with_clock(clock: Arc<dyn Clock>) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = rampart_store::open_sqlite(&dir.path().join("rampart.db")).await.expect("store");
        Fixture::over(store, clock, dir, IngestSettings::default()).await
    }

    /// A platform over `store`, bootstrapped; `dir` lives as long as the fixture.
    pub async fn over(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        dir: tempfile::TempDir,
        ingest: IngestSettings,
    ) -> Fixture {
        let platform = Platform::open(Arc::clone(&store), SecretKey256::generate(), clock, PlatformSettings::default())
            .await
            .expect("platform");
        platform.bootstrap(FIXTURE_PASSWORD).await.expect("bootstrap");
        let platform = Arc::new(platform);
        let ingestor = Ingestor::start(Arc::clone(&platform), Arc::clone(&store), ingest);
        Fixture { store, platform, ingestor, dir }
    }

    /// The fixture's own temporary directory (the SQLite file lives there).
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Logs `username` of `tenant` in and answers its principal.
    pub async fn login(&self, tenant: &str, username: &str) -> Principal {
        let request = LoginRequest {
            tenant: tenant.to_owned(),
            username: username.to_owned(),
            password: Zeroizing::new(FIXTURE_PASSWORD.to_owned()),
            totp: None,
            source_ip: None,
        };
        let token = self.platform.login(request).await.expect("login");
        // Set-up acts before any MFA policy gets in the way of a test's own requests.
        self.platform.authenticate_bearer(&token.token, None, Purpose::Enrolment).await.expect("principal")
    }

    /// The platform tenant's `admin`.
    pub async fn platform_admin(&self) -> Principal {
        self.login(rampart_core::PLATFORM_TENANT, "admin").await
    }

    /// Creates sub-tenant `id` of `platform` with an `admin`, and answers that admin.
    pub async fn tenant(&self, id: &str) -> Principal {
        let new = NewTenant {
            id: TenantId::parse(id).expect("tenant id"),
            name: id.to_owned(),
            admin: Username::parse("admin").expect("username"),
            admin_password: Zeroizing::new(FIXTURE_PASSWORD.to_owned()),
        };
        self.platform.create_tenant(&self.platform_admin().await, new).await.expect("tenant");
        self.login(id, "admin").await
    }

    /// Registers device `id` in the principal's tenant and answers a token of it.
    pub async fn device(&self, admin: &Principal, id: &str) -> String {
        let id = DeviceId::parse(id).expect("device id");
        self.platform.create_device(admin, &id, NewDevice::default()).await.expect("device");
        self.token(admin, id.as_str()).await
    }

    /// Issues another token of an existing device.
    pub async fn token(&self, admin: &Principal, id: &str) -> String {
        let id = DeviceId::parse(id).expect("device id");
        self.platform.create_device_token(admin, &id).await.expect("token").token.to_string()
    }

    /// Creates an API key with `roles` acting for the principal; answers `(id, key)`.
    pub async fn api_key(&self, admin: &Principal, roles: &[&str]) -> (String, String) {
        let new = NewApiKey {
            name: "test".to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            expires_at: None,
        };
        let created = self.platform.create_api_key(admin, new).await.expect("api key");
        (created.row.id, created.key.to_string())
    }
}
