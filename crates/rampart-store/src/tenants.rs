//! Tenancy: platform secrets, tenants (each incarnation with its own `uid`), their data keys,
//! and their policy documents (the tenant policy and the topic policy, JSON owned by
//! `rampart-core`).

use std::fmt;

use async_trait::async_trait;

use crate::owned_tables::tenant_deletion;
use crate::sql_store::{Select, SqlStore};
use crate::table::Table;
use crate::value::{Row, Value};
use crate::{Page, StoreError, StoreResult};

/// A tenant: a node of the tenant tree rooted at `platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    /// This incarnation of the id: random, never reused. Empty for tenants created before
    /// incarnations existed.
    pub uid: String,
    pub name: String,
    /// `None` only for the root tenant `platform`.
    pub parent: Option<String>,
    pub created_at: i64,
}

/// A tenant data key wrapped (AES-256-GCM) by the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantKey {
    pub tenant: String,
    pub key_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: i64,
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantKey").field("tenant", &self.tenant).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

const TENANTS: Table = Table { name: "tenants", columns: &["id", "uid", "name", "parent", "created_at"] };
const TENANT_KEYS: Table = Table { name: "tenant_keys", columns: &["tenant", "key_id", "wrapped", "created_at"] };

fn tenant_from_row(mut row: Row) -> StoreResult<Tenant> {
    Ok(Tenant { id: row.text()?, uid: row.text()?, name: row.text()?, parent: row.opt_text()?, created_at: row.int()? })
}

fn tenant_values(tenant: &Tenant) -> Vec<Value> {
    vec![
        (&tenant.id).into(),
        (&tenant.uid).into(),
        (&tenant.name).into(),
        tenant.parent.as_ref().into(),
        tenant.created_at.into(),
    ]
}

fn tenant_key_from_row(mut row: Row) -> StoreResult<TenantKey> {
    Ok(TenantKey { tenant: row.text()?, key_id: row.text()?, wrapped: row.blob()?, created_at: row.int()? })
}

/// Tenancy persistence.
#[async_trait]
pub trait TenantStore: Send + Sync {
    // ---- platform-wide secrets (sealed under the master key by the caller) ----
    async fn get_platform_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Inserts if absent; returns the value that is stored afterwards (first writer wins).
    async fn put_platform_secret_if_absent(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>>;
    /// Every platform secret, for master-key rotation.
    async fn list_platform_secrets(&self) -> StoreResult<Vec<(String, Vec<u8>)>>;
    async fn replace_platform_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<()>;

    // ---- tenants ----
    /// `Conflict` when the id is taken.
    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    async fn get_tenant(&self, id: &str) -> StoreResult<Tenant>;
    /// Direct children of `parent`, ordered by id.
    async fn list_child_tenants(&self, parent: &str, page: &Page) -> StoreResult<Vec<Tenant>>;
    /// All tenants, ordered by id (offline tools, key rotation).
    async fn list_all_tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Deletes the tenant and every row of every owned table (see
    /// [`crate::owned_tables`]) in one transaction; `Conflict` while it has sub-tenants.
    /// Audit records stay: they are append-only.
    async fn delete_tenant(&self, id: &str) -> StoreResult<()>;

    // ---- policy documents ----
    /// The tenant policy document, if one was stored.
    async fn get_tenant_policy(&self, tenant: &str) -> StoreResult<Option<String>>;
    /// Stores the tenant policy if the stored document is still `expected` (`None`: none
    /// stored yet); `Conflict` when another writer changed it meanwhile.
    async fn put_tenant_policy(&self, tenant: &str, expected: Option<&str>, policy_json: &str) -> StoreResult<()>;
    /// The tenant's topic policy document, if one was stored.
    async fn get_topic_policy(&self, tenant: &str) -> StoreResult<Option<String>>;
    /// Replaces the topic policy (a PUT replaces the whole document by design).
    async fn put_topic_policy(&self, tenant: &str, policy_json: &str) -> StoreResult<()>;

    // ---- tenant data keys (wrapped by the master key) ----
    async fn insert_tenant_key(&self, key: &TenantKey) -> StoreResult<()>;
    /// Every key of the tenant, newest first; the first one is the active key.
    async fn list_tenant_keys(&self, tenant: &str) -> StoreResult<Vec<TenantKey>>;
    async fn rewrap_tenant_key(&self, tenant: &str, key_id: &str, wrapped: &[u8]) -> StoreResult<()>;
}

#[async_trait]
impl TenantStore for SqlStore {
    async fn get_platform_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let sql = "SELECT sealed FROM platform_secrets WHERE name = ?";
        self.optional(sql, vec![name.into()], |mut row| row.blob()).await
    }

    async fn put_platform_secret_if_absent(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>> {
        let sql = "INSERT INTO platform_secrets (name, sealed) VALUES (?, ?) ON CONFLICT (name) DO NOTHING";
        self.insert(sql, vec![name.into(), sealed.into()]).await?;
        let stored = self.get_platform_secret(name).await?;
        stored.ok_or_else(|| StoreError::Backend("platform secret vanished after insert".into()))
    }

    async fn list_platform_secrets(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let sql = "SELECT name, sealed FROM platform_secrets ORDER BY name";
        self.all(sql, vec![], |mut row| Ok((row.text()?, row.blob()?))).await
    }

    async fn replace_platform_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<()> {
        let sql = "UPDATE platform_secrets SET sealed = ? WHERE name = ?";
        self.change_one(sql, vec![sealed.into(), name.into()]).await
    }

    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        self.insert(&TENANTS.insert(""), tenant_values(tenant)).await
    }

    async fn get_tenant(&self, id: &str) -> StoreResult<Tenant> {
        self.one(&TENANTS.select("WHERE id = ?"), vec![id.into()], tenant_from_row).await
    }

    async fn list_child_tenants(&self, parent: &str, page: &Page) -> StoreResult<Vec<Tenant>> {
        let select = Select::new(&TENANTS.select("WHERE parent = ?"), vec![parent.into()]).page(
            "id",
            page.after.as_ref().map(Value::from),
            page.limit,
        );
        self.all(&select.sql, select.params, tenant_from_row).await
    }

    async fn list_all_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.all(&TENANTS.select("ORDER BY id"), vec![], tenant_from_row).await
    }

    async fn delete_tenant(&self, id: &str) -> StoreResult<()> {
        // The foreign key on tenants.parent backs this check up against a concurrent insert.
        if self.exists("SELECT 1 FROM tenants WHERE parent = ? LIMIT 1", vec![id.into()]).await? {
            return Err(StoreError::Conflict("tenant has sub-tenants".into()));
        }
        self.driver.transaction(tenant_deletion(id)).await
    }

    async fn get_tenant_policy(&self, tenant: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT policy_json FROM tenant_policies WHERE tenant = ?";
        self.optional(sql, vec![tenant.into()], |mut row| row.text()).await
    }

    async fn put_tenant_policy(&self, tenant: &str, expected: Option<&str>, policy_json: &str) -> StoreResult<()> {
        let changed = match expected {
            None => {
                let sql = "INSERT INTO tenant_policies (tenant, policy_json) VALUES (?, ?) \
                           ON CONFLICT (tenant) DO NOTHING";
                self.driver.execute(sql, vec![tenant.into(), policy_json.into()]).await?
            }
            Some(expected) => {
                let sql = "UPDATE tenant_policies SET policy_json = ? WHERE tenant = ? AND policy_json = ?";
                self.driver.execute(sql, vec![policy_json.into(), tenant.into(), expected.into()]).await?
            }
        };
        match changed {
            0 => Err(StoreError::Conflict("tenant policy changed meanwhile".into())),
            _ => Ok(()),
        }
    }

    async fn get_topic_policy(&self, tenant: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT policy_json FROM topic_policies WHERE tenant = ?";
        self.optional(sql, vec![tenant.into()], |mut row| row.text()).await
    }

    async fn put_topic_policy(&self, tenant: &str, policy_json: &str) -> StoreResult<()> {
        let sql = "INSERT INTO topic_policies (tenant, policy_json) VALUES (?, ?) \
                   ON CONFLICT (tenant) DO UPDATE SET policy_json = excluded.policy_json";
        self.insert(sql, vec![tenant.into(), policy_json.into()]).await
    }

    async fn insert_tenant_key(&self, key: &TenantKey) -> StoreResult<()> {
        let params = vec![(&key.tenant).into(), (&key.key_id).into(), (&key.wrapped).into(), key.created_at.into()];
        self.insert(&TENANT_KEYS.insert(""), params).await
    }

    async fn list_tenant_keys(&self, tenant: &str) -> StoreResult<Vec<TenantKey>> {
        let sql = TENANT_KEYS.select("WHERE tenant = ? ORDER BY created_at DESC, key_id DESC");
        self.all(&sql, vec![tenant.into()], tenant_key_from_row).await
    }

    async fn rewrap_tenant_key(&self, tenant: &str, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        let sql = "UPDATE tenant_keys SET wrapped = ? WHERE tenant = ? AND key_id = ?";
        self.change_one(sql, vec![wrapped.into(), tenant.into(), key_id.into()]).await
    }
}
