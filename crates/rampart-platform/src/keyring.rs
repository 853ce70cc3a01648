//! The key hierarchy of SPEC §12: the master key wraps per-tenant data keys, which wrap
//! per-device keys and seal tenant secrets (CA keys, TOTP secrets, e-mail addresses).
//!
//! Sealed tenant values carry the id of the tenant key that sealed them, so a rotated tenant
//! key still opens old data, and a deleted tenant's data can no longer be opened by anyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rampart_crypto::{SecretKey256, random_id};
use rampart_store::prelude::*;
use rampart_store::{DeviceKey, TenantKey};
use zeroize::Zeroizing;

use crate::error::{PlatformError, PlatformResult};

/// Holds the master key and caches unwrapped tenant keys.
pub struct Keyring {
    master: SecretKey256,
    store: Arc<dyn Store>,
    tenant_keys: Mutex<HashMap<(String, String), Arc<SecretKey256>>>,
}

fn tenant_key_aad(tenant: &str, key_id: &str) -> Vec<u8> {
    format!("rampart:tenant-key:{tenant}:{key_id}").into_bytes()
}

fn device_key_aad(tenant: &str, device: &str) -> Vec<u8> {
    format!("rampart:device-key:{tenant}:{device}").into_bytes()
}

fn sealed_aad(tenant: &str, purpose: &str) -> Vec<u8> {
    format!("rampart:sealed:{tenant}:{purpose}").into_bytes()
}

fn platform_secret_aad(name: &str) -> Vec<u8> {
    format!("rampart:platform-secret:{name}").into_bytes()
}

impl Keyring {
    pub(crate) fn new(master: SecretKey256, store: Arc<dyn Store>) -> Self {
        Keyring { master, store, tenant_keys: Mutex::new(HashMap::new()) }
    }

    /// Returns the platform secret `name`, creating it with `generate` on first use. It is
    /// stored sealed under the master key; the first writer wins when nodes race.
    pub async fn platform_secret(
        &self,
        name: &str,
        generate: impl FnOnce() -> Zeroizing<Vec<u8>>,
    ) -> PlatformResult<Zeroizing<Vec<u8>>> {
        let aad = platform_secret_aad(name);
        let sealed = match self.store.get_platform_secret(name).await? {
            Some(sealed) => sealed,
            None => {
                let fresh = self.master.seal(&generate(), &aad);
                self.store.put_platform_secret_if_absent(name, &fresh).await?
            }
        };
        Ok(self.master.open(&sealed, &aad)?)
    }

    /// Creates a new tenant data key and makes it the active one.
    pub(crate) async fn create_tenant_key(&self, tenant: &str, now_ms: i64) -> PlatformResult<String> {
        let key = SecretKey256::generate();
        let key_id = random_id(8);
        let wrapped = self.master.wrap(&key, &tenant_key_aad(tenant, &key_id));
        let row = TenantKey { tenant: tenant.to_owned(), key_id: key_id.clone(), wrapped, created_at: now_ms };
        self.store.insert_tenant_key(&row).await?;
        self.cache().insert((tenant.to_owned(), key_id.clone()), Arc::new(key));
        Ok(key_id)
    }

    /// Drops every cached key of a deleted tenant.
    pub(crate) fn forget_tenant(&self, tenant: &str) {
        self.cache().retain(|(owner, _), _| owner != tenant);
    }

    /// Seals `plaintext` under the tenant's active key; `purpose` is bound as associated data.
    pub async fn seal_for_tenant(&self, tenant: &str, purpose: &str, plaintext: &[u8]) -> PlatformResult<Vec<u8>> {
        let (key_id, key) = self.active_tenant_key(tenant).await?;
        let mut out = Vec::with_capacity(1 + key_id.len() + plaintext.len() + 29);
        let id_len = u8::try_from(key_id.len()).map_err(|_| PlatformError::MalformedSealed)?;
        out.push(id_len);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&key.seal(plaintext, &sealed_aad(tenant, purpose)));
        Ok(out)
    }

    /// Opens a value sealed by [`Keyring::seal_for_tenant`] with the same `purpose`.
    pub async fn open_for_tenant(
        &self,
        tenant: &str,
        purpose: &str,
        sealed: &[u8],
    ) -> PlatformResult<Zeroizing<Vec<u8>>> {
        let (&id_len, rest) = sealed.split_first().ok_or(PlatformError::MalformedSealed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len {
            return Err(PlatformError::MalformedSealed);
        }
        let (key_id, body) = rest.split_at(id_len);
        let key_id = std::str::from_utf8(key_id).map_err(|_| PlatformError::MalformedSealed)?;
        let key = self.tenant_key(tenant, key_id).await?;
        Ok(key.open(body, &sealed_aad(tenant, purpose))?)
    }

    /// A fresh data key for a device, wrapped by the tenant's active key, to store with the
    /// device.
    pub(crate) async fn new_device_key(&self, tenant: &str, device: &str) -> PlatformResult<DeviceKey> {
        let (key_id, tenant_key) = self.active_tenant_key(tenant).await?;
        let device_key = SecretKey256::generate();
        let wrapped = tenant_key.wrap(&device_key, &device_key_aad(tenant, device));
        Ok(DeviceKey { tenant: tenant.to_owned(), device: device.to_owned(), tenant_key_id: key_id, wrapped })
    }

    /// Unwraps the data key of a device.
    pub async fn device_key(&self, tenant: &str, device: &str) -> PlatformResult<SecretKey256> {
        let row = self.store.get_device_key(tenant, device).await?;
        let tenant_key = self.tenant_key(tenant, &row.tenant_key_id).await?;
        Ok(tenant_key.unwrap_key(&row.wrapped, &device_key_aad(tenant, device))?)
    }

    /// Re-wraps every tenant key and platform secret under `new_master` (master key rotation).
    pub async fn rewrap_all(&self, new_master: &SecretKey256) -> PlatformResult<usize> {
        let mut rewrapped = 0;
        for tenant in self.store.list_all_tenants().await? {
            for row in self.store.list_tenant_keys(&tenant.id).await? {
                let aad = tenant_key_aad(&row.tenant, &row.key_id);
                let key = self.master.unwrap_key(&row.wrapped, &aad)?;
                self.store.rewrap_tenant_key(&row.tenant, &row.key_id, &new_master.wrap(&key, &aad)).await?;
                rewrapped += 1;
            }
        }
        for (name, sealed) in self.store.list_platform_secrets().await? {
            let aad = platform_secret_aad(&name);
            let plain = self.master.open(&sealed, &aad)?;
            self.store.replace_platform_secret(&name, &new_master.seal(&plain, &aad)).await?;
            rewrapped += 1;
        }
        Ok(rewrapped)
    }

    async fn active_tenant_key(&self, tenant: &str) -> PlatformResult<(String, Arc<SecretKey256>)> {
        let newest = self.store.list_tenant_keys(tenant).await?.into_iter().next();
        let row = newest.ok_or_else(|| PlatformError::KeyGone { tenant: tenant.to_owned(), key_id: String::new() })?;
        let key = self.unwrap_tenant_key(&row)?;
        Ok((row.key_id, key))
    }

    async fn tenant_key(&self, tenant: &str, key_id: &str) -> PlatformResult<Arc<SecretKey256>> {
        if let Some(key) = self.cache().get(&(tenant.to_owned(), key_id.to_owned())) {
            return Ok(Arc::clone(key));
        }
        let rows = self.store.list_tenant_keys(tenant).await?;
        let row = rows
            .iter()
            .find(|row| row.key_id == key_id)
            .ok_or_else(|| PlatformError::KeyGone { tenant: tenant.to_owned(), key_id: key_id.to_owned() })?;
        self.unwrap_tenant_key(row)
    }

    fn unwrap_tenant_key(&self, row: &TenantKey) -> PlatformResult<Arc<SecretKey256>> {
        let cache_key = (row.tenant.clone(), row.key_id.clone());
        if let Some(key) = self.cache().get(&cache_key) {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(self.master.unwrap_key(&row.wrapped, &tenant_key_aad(&row.tenant, &row.key_id))?);
        self.cache().insert(cache_key, Arc::clone(&key));
        Ok(key)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<SecretKey256>>> {
        // A poisoned cache only means another thread panicked mid-insert; the map is still valid.
        self.tenant_keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
