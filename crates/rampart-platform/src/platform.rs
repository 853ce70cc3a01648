//! The platform as the edges see it: the store (reached only from here), keys, the audit log,
//! the token key, the clock and the bus opened together; the first start; bounded password
//! hashing. The services (`services/`) are methods of [`Platform`].

use std::sync::Arc;
use std::time::Duration;

use rampart_core::PLATFORM_TENANT;
use rampart_crypto::{AuditSigningKey, SecretKey256, TokenSigningKey, random_id, verify_password_dummy};
use rampart_store::{Store, StoreError};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditEntry, AuditLog};
use crate::bus::{Bus, BusReceiver, ControlEvent, DeviceFeed, LocalBus};
use crate::clock::Clock;
use crate::error::{PlatformError, PlatformResult, ServiceError, ServiceResult};
use crate::incarnations::Incarnations;
use crate::keyring::Keyring;

const TOKEN_KEY_NAME: &str = "token-signing-key";
const AUDIT_KEY_NAME: &str = "audit-signing-key";

/// Tunables of the platform services.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// Lifetime of access tokens, in seconds (SPEC §4: 900).
    pub access_token_ttl_s: i64,
    /// Password hashes (Argon2id, 19 MiB each) computed at once; more requests wait.
    pub concurrent_password_hashes: usize,
    /// How long a request waits for a hashing slot before it is told to retry.
    pub password_hash_wait: Duration,
    /// Address ranges never blocked automatically (`--ids-exempt`); they still raise events.
    pub ids_exempt: Vec<rampart_core::Cidr>,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        PlatformSettings {
            access_token_ttl_s: 900,
            concurrent_password_hashes: cores.max(2),
            password_hash_wait: Duration::from_secs(10),
            ids_exempt: Vec::new(),
        }
    }
}

/// Everything the edges need, opened once per process.
pub struct Platform {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: Keyring,
    pub(crate) audit: AuditLog,
    pub(crate) token_key: TokenSigningKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) incarnations: Arc<Incarnations>,
    pub(crate) settings: PlatformSettings,
    hashing: tokio::sync::Semaphore,
    /// Failed authentications per address and the blocks they led to.
    pub(crate) ip_blocks: std::sync::Mutex<crate::ip_blocks::IpBlocks>,
    /// ACL denials per device, for the quarantine rule.
    pub(crate) violations: std::sync::Mutex<crate::violations::Violations>,
}

impl Platform {
    /// Opens the platform over `store`, creating the platform signing keys on first use.
    pub async fn open(
        store: Arc<dyn Store>,
        master: SecretKey256,
        clock: Arc<dyn Clock>,
        settings: PlatformSettings,
    ) -> PlatformResult<Platform> {
        Platform::open_with_bus(store, master, clock, settings, LocalBus::shared()).await
    }

    /// [`Platform::open`] with the bus of a cluster.
    pub async fn open_with_bus(
        store: Arc<dyn Store>,
        master: SecretKey256,
        clock: Arc<dyn Clock>,
        settings: PlatformSettings,
        bus: Arc<dyn Bus>,
    ) -> PlatformResult<Platform> {
        let keyring = Keyring::new(master, Arc::clone(&store));
        let token_seed = keyring.platform_secret(TOKEN_KEY_NAME, || TokenSigningKey::generate().to_bytes()).await?;
        let token_key = TokenSigningKey::from_bytes(&token_seed)?;
        let audit_seed = keyring.platform_secret(AUDIT_KEY_NAME, || AuditSigningKey::generate().to_bytes()).await?;
        let incarnations = Arc::new(Incarnations::new(Arc::clone(&store)));
        let audit = AuditLog::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            Arc::clone(&incarnations),
            AuditSigningKey::from_bytes(&audit_seed)?,
        );
        let hashing = tokio::sync::Semaphore::new(settings.concurrent_password_hashes.max(1));
        let ip_blocks = std::sync::Mutex::new(crate::ip_blocks::IpBlocks::new(settings.ids_exempt.clone()));
        let violations = std::sync::Mutex::default();
        Ok(Platform {
            store,
            keyring,
            audit,
            token_key,
            clock,
            bus,
            incarnations,
            settings,
            hashing,
            ip_blocks,
            violations,
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The key hierarchy (sealing tenant secrets, device keys).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The audit log (its public key, checkpoints, verification, export).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn settings(&self) -> &PlatformSettings {
        &self.settings
    }

    /// Subscribes to control events.
    pub fn subscribe(&self) -> BusReceiver {
        self.bus.subscribe()
    }

    pub(crate) fn publish(&self, event: ControlEvent) {
        self.bus.publish(event);
    }

    /// Tells every node that something was queued for `device` on `feed`.
    pub fn device_feed_changed(&self, tenant: &str, device: &str, feed: DeviceFeed) {
        self.publish(ControlEvent::DeviceFeedChanged { tenant: tenant.to_owned(), device: device.to_owned(), feed });
    }

    /// A cheap round trip to the storage, for `/readyz`.
    pub async fn ping(&self) -> PlatformResult<()> {
        Ok(self.store.ping().await?)
    }

    /// Which storage backend serves the platform.
    pub fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }

    /// Runs an Argon2id hash within the bound on concurrent hashing; `Busy` when no slot frees
    /// up in time.
    pub(crate) async fn hash_password(&self, password: Zeroizing<String>) -> ServiceResult<String> {
        let _slot = self.hashing_slot().await?;
        tokio::task::spawn_blocking(move || rampart_crypto::hash_password(&password))
            .await
            .map_err(|error| PlatformError::Task(error.to_string()))?
            .map_err(ServiceError::from)
    }

    /// Checks a password against a hash within the bound on concurrent hashing; `None` as hash
    /// spends the same work on a dummy and answers `false`.
    pub(crate) async fn verify_password(
        &self,
        password: Zeroizing<String>,
        hash: Option<String>,
    ) -> ServiceResult<bool> {
        let _slot = self.hashing_slot().await?;
        let task = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => rampart_crypto::verify_password(&password, &hash),
            None => verify_password_dummy(&password),
        });
        Ok(task.await.unwrap_or(false))
    }

    async fn hashing_slot(&self) -> ServiceResult<tokio::sync::SemaphorePermit<'_>> {
        match tokio::time::timeout(self.settings.password_hash_wait, self.hashing.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(ServiceError::Busy),
        }
    }

    /// Whether the `platform` tenant exists (the first start is done).
    pub async fn bootstrapped(&self) -> PlatformResult<bool> {
        Ok(self.incarnations.current(PLATFORM_TENANT).await?.is_some())
    }

    /// First start: creates the `platform` tenant and its `admin` user unless they exist.
    /// Returns whether it created them.
    pub async fn bootstrap(&self, admin_password: &str) -> ServiceResult<bool> {
        match self.store.get_tenant(PLATFORM_TENANT).await {
            Ok(_) => return Ok(false),
            Err(StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
        let password_hash = self.hash_password(Zeroizing::new(admin_password.to_owned())).await?;
        let admin = crate::services::users::new_user(PLATFORM_TENANT, "admin", password_hash, vec!["admin".into()]);
        match self.provision_tenant(PLATFORM_TENANT, "Platform", None, admin).await {
            Ok(_) => {}
            // Another node won the race to bootstrap.
            Err(ServiceError::Conflict(_)) => return Ok(false),
            Err(other) => return Err(other),
        }
        let created = AuditEntry::success(
            PLATFORM_TENANT,
            Actor::System,
            rampart_core::AuditAction::TenantCreate,
            format!("tenant:{PLATFORM_TENANT}"),
        );
        self.audit.append(created).await?;
        let admin =
            AuditEntry::success(PLATFORM_TENANT, Actor::System, rampart_core::AuditAction::UserCreate, "user:admin");
        self.audit.append(admin).await?;
        Ok(true)
    }

    /// A fresh random incarnation id.
    pub(crate) fn new_uid() -> String {
        random_id(16)
    }
}
