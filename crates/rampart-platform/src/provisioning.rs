//! The platform as the edges see it: store, keys, audit and signing keys opened together, and
//! the provisioning of tenants (row, data key, CA) and of the first start.

use std::sync::Arc;

use rampart_core::PLATFORM_TENANT;
use rampart_crypto::{AuditSigningKey, SecretKey256, TokenSigningKey, generate_ca, hash_password};
use rampart_store::{Store, StoreError, Tenant, TenantCa, User};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditEntry, AuditLog};
use crate::clock::Clock;
use crate::control::ControlBus;
use crate::error::PlatformResult;
use crate::keyring::Keyring;

const TOKEN_KEY_NAME: &str = "token-signing-key";
const AUDIT_KEY_NAME: &str = "audit-signing-key";
/// Purpose label binding a sealed CA private key to its use.
pub const CA_KEY_PURPOSE: &str = "ca-key";

/// Everything the edges need, opened once per process.
pub struct Platform {
    pub store: Arc<dyn Store>,
    pub keyring: Keyring,
    pub audit: AuditLog,
    pub token_key: TokenSigningKey,
    pub clock: Arc<dyn Clock>,
    /// Revocations and policy changes for live connections.
    pub control: ControlBus,
}

impl Platform {
    /// Opens the platform over `store`, creating the platform signing keys on first use.
    pub async fn open(store: Arc<dyn Store>, master: SecretKey256, clock: Arc<dyn Clock>) -> PlatformResult<Platform> {
        let keyring = Keyring::new(master, Arc::clone(&store));
        let token_seed = keyring.platform_secret(TOKEN_KEY_NAME, || TokenSigningKey::generate().to_bytes()).await?;
        let token_key = TokenSigningKey::from_bytes(&token_seed)?;
        let audit_seed = keyring.platform_secret(AUDIT_KEY_NAME, || AuditSigningKey::generate().to_bytes()).await?;
        let audit = AuditLog::new(Arc::clone(&store), Arc::clone(&clock), AuditSigningKey::from_bytes(&audit_seed)?);
        Ok(Platform { store, keyring, audit, token_key, clock, control: ControlBus::default() })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Creates a tenant with its data key and its device CA. On failure nothing is left behind.
    pub async fn provision_tenant(&self, id: &str, name: &str, parent: Option<&str>) -> PlatformResult<()> {
        let now = self.now_ms();
        let tenant =
            Tenant { id: id.to_owned(), name: name.to_owned(), parent: parent.map(str::to_owned), created_at: now };
        self.store.create_tenant(&tenant).await?;
        if let Err(error) = self.provision_tenant_keys(id, now).await {
            if let Err(cleanup) = self.delete_tenant(id).await {
                tracing::error!(%cleanup, tenant = id, "could not remove half-provisioned tenant");
            }
            return Err(error);
        }
        Ok(())
    }

    async fn provision_tenant_keys(&self, id: &str, now: i64) -> PlatformResult<()> {
        self.keyring.create_tenant_key(id, now).await?;
        let ca = generate_ca(&format!("Rampart device CA {id}"))?;
        let key_sealed = self.keyring.seal_for_tenant(id, CA_KEY_PURPOSE, ca.key_pem.as_bytes()).await?;
        let row = TenantCa { tenant: id.to_owned(), cert_pem: ca.cert_pem, key_sealed, crl_number: 0, created_at: now };
        self.store.put_tenant_ca(&row).await?;
        Ok(())
    }

    /// Deletes a tenant's rows and destroys its keys.
    pub async fn delete_tenant(&self, id: &str) -> PlatformResult<()> {
        self.store.delete_tenant(id).await?;
        self.keyring.forget_tenant(id);
        self.control.publish(crate::control::ControlEvent::TenantDeleted { tenant: id.to_owned() });
        Ok(())
    }

    /// The tenant CA certificate and its unsealed private key.
    pub async fn tenant_ca(&self, tenant: &str) -> PlatformResult<(TenantCa, Zeroizing<String>)> {
        let ca = self.store.get_tenant_ca(tenant).await?;
        let key = self.keyring.open_for_tenant(tenant, CA_KEY_PURPOSE, &ca.key_sealed).await?;
        let key_pem = Zeroizing::new(String::from_utf8_lossy(&key).into_owned());
        Ok((ca, key_pem))
    }

    /// First start: creates the `platform` tenant and its `admin` user unless they exist.
    /// Returns whether it created them.
    pub async fn bootstrap(&self, admin_password: &str) -> PlatformResult<bool> {
        match self.store.get_tenant(PLATFORM_TENANT).await {
            Ok(_) => return Ok(false),
            Err(StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
        match self.provision_tenant(PLATFORM_TENANT, "Platform", None).await {
            Ok(()) => {}
            // Another node won the race to bootstrap.
            Err(crate::PlatformError::Store(StoreError::Conflict(_))) => return Ok(false),
            Err(other) => return Err(other),
        }
        let now = self.now_ms();
        let admin = new_user(PLATFORM_TENANT, "admin", hash_password(admin_password)?, vec!["admin".to_owned()], now);
        self.store.create_user(&admin).await?;
        self.audit
            .append(AuditEntry::success(PLATFORM_TENANT, Actor::System, "tenant.create", "tenant:platform"))
            .await?;
        self.audit.append(AuditEntry::success(PLATFORM_TENANT, Actor::System, "user.create", "user:admin")).await?;
        Ok(true)
    }
}

/// A fresh, enabled user row with no MFA.
pub fn new_user(tenant: &str, username: &str, password_hash: String, roles: Vec<String>, now_ms: i64) -> User {
    User {
        tenant: tenant.to_owned(),
        username: username.to_owned(),
        password_hash,
        roles,
        groups: Vec::new(),
        disabled: false,
        token_version: 1,
        mfa_enabled: false,
        mfa_secret_sealed: None,
        mfa_pending_sealed: None,
        mfa_last_step: 0,
        email_sealed: None,
        failed_logins: 0,
        failed_window_start: 0,
        locked_until: 0,
        password_changed_at: now_ms,
        created_at: now_ms,
    }
}
