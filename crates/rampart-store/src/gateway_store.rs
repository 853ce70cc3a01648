//! Store methods the MQTT gateway and the device edges need (topic policies, credential
//! lookups across tenants, connection state), as a supertrait of [`crate::Store`] so it can
//! grow without touching the core trait.

use async_trait::async_trait;

use crate::sql_store::{SqlStore, device_token_from_row, trusted_ca_from_row};
use crate::value::Value;
use crate::{DeviceToken, StoreError, StoreResult, TrustedCa};

/// Gateway-specific persistence.
#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// The tenant's topic policy document (JSON text owned by the API layer), if one was stored.
    async fn get_topic_policy(&self, tenant: &str) -> StoreResult<Option<String>>;
    async fn put_topic_policy(&self, tenant: &str, policy_json: &str) -> StoreResult<()>;

    /// The device token whose SHA-256 is `token_hash`, in any tenant (a bearer token carries no
    /// tenant). The caller still compares the hash in constant time.
    async fn find_device_token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<DeviceToken>>;

    /// Every trusted external CA, in any tenant, whose subject is exactly `subject` (the issuer
    /// named by a client certificate). The caller verifies the chain against each.
    async fn list_trusted_cas_by_subject(&self, subject: &str) -> StoreResult<Vec<TrustedCa>>;

    /// Records a connect: `connected`, `last_seen`, `last_address`, and `registered` becomes
    /// `active`. Only these columns change, so it never races with API edits of the device.
    async fn mark_device_connected(&self, tenant: &str, device: &str, at_ms: i64, address: &str) -> StoreResult<()>;

    /// Records a disconnect: `connected = false` and `last_seen`.
    async fn mark_device_disconnected(&self, tenant: &str, device: &str, at_ms: i64) -> StoreResult<()>;

    /// Records a visit without a connection (HTTPS device API): `last_seen`, `last_address`, and
    /// `registered` becomes `active`; `connected` is left as it is.
    async fn mark_device_seen(&self, tenant: &str, device: &str, at_ms: i64, address: &str) -> StoreResult<()>;
}

#[async_trait]
impl GatewayStore for SqlStore {
    async fn get_topic_policy(&self, tenant: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT policy_json FROM topic_policies WHERE tenant = ?";
        let rows = self.driver.query(sql, vec![Value::Text(tenant.to_owned())]).await?;
        match rows.into_iter().next() {
            Some(mut row) => Ok(Some(row.text()?)),
            None => Ok(None),
        }
    }

    async fn put_topic_policy(&self, tenant: &str, policy_json: &str) -> StoreResult<()> {
        let sql = "INSERT INTO topic_policies (tenant, policy_json) VALUES (?, ?) \
                   ON CONFLICT (tenant) DO UPDATE SET policy_json = excluded.policy_json";
        let params = vec![Value::Text(tenant.to_owned()), Value::Text(policy_json.to_owned())];
        self.driver.execute(sql, params).await.map(drop)
    }

    async fn find_device_token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<DeviceToken>> {
        let sql = "SELECT tenant, device, id, token_hash, created_at FROM device_tokens WHERE token_hash = ?";
        let rows = self.driver.query(sql, vec![Value::Blob(token_hash.to_vec())]).await?;
        rows.into_iter().next().map(device_token_from_row).transpose()
    }

    async fn list_trusted_cas_by_subject(&self, subject: &str) -> StoreResult<Vec<TrustedCa>> {
        let sql = "SELECT tenant, id, cert_pem, subject, auto_register, created_at FROM trusted_cas \
                   WHERE subject = ? ORDER BY tenant, id";
        let rows = self.driver.query(sql, vec![Value::Text(subject.to_owned())]).await?;
        rows.into_iter().map(trusted_ca_from_row).collect::<Result<_, StoreError>>()
    }

    async fn mark_device_connected(&self, tenant: &str, device: &str, at_ms: i64, address: &str) -> StoreResult<()> {
        // Booleans are bound as parameters: SQLite stores 0/1, PostgreSQL a BOOLEAN.
        let sql = "UPDATE devices SET connected = ?, last_seen = ?, last_address = ?, \
                   status = CASE WHEN status = 'registered' THEN 'active' ELSE status END \
                   WHERE tenant = ? AND id = ?";
        let params = vec![
            Value::from(true),
            Value::Int(at_ms),
            Value::Text(address.to_owned()),
            Value::Text(tenant.to_owned()),
            Value::Text(device.to_owned()),
        ];
        self.change_one(sql, params).await
    }

    async fn mark_device_disconnected(&self, tenant: &str, device: &str, at_ms: i64) -> StoreResult<()> {
        let sql = "UPDATE devices SET connected = ?, last_seen = ? WHERE tenant = ? AND id = ?";
        let params =
            vec![Value::from(false), Value::Int(at_ms), Value::Text(tenant.to_owned()), Value::Text(device.to_owned())];
        self.change_one(sql, params).await
    }

    async fn mark_device_seen(&self, tenant: &str, device: &str, at_ms: i64, address: &str) -> StoreResult<()> {
        let sql = "UPDATE devices SET last_seen = ?, last_address = ?, \
                   status = CASE WHEN status = 'registered' THEN 'active' ELSE status END \
                   WHERE tenant = ? AND id = ?";
        let params = vec![
            Value::Int(at_ms),
            Value::Text(address.to_owned()),
            Value::Text(tenant.to_owned()),
            Value::Text(device.to_owned()),
        ];
        self.change_one(sql, params).await
    }
}
