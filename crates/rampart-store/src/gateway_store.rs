//! Store methods the MQTT gateway and the device edges need (topic policies, credential
//! lookups across tenants, connection state, retained messages), as a supertrait of
//! [`crate::Store`] so it can grow without touching the core trait.

use async_trait::async_trait;

use crate::sql_store::{SqlStore, device_token_from_row, trusted_ca_from_row};
use crate::value::{Row, Statement, Value};
use crate::{DeviceToken, StoreError, StoreResult, TrustedCa};

/// A retained MQTT message as stored: the topic in clear (it is the key), everything a
/// subscriber receives sealed under the tenant key by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessageRow {
    pub tenant: String,
    pub topic: String,
    /// 0, 1 or 2.
    pub qos: i64,
    pub payload_sealed: Vec<u8>,
    /// The forwarded MQTT 5.0 properties, sealed; `None` when the message had none.
    pub properties_sealed: Option<Vec<u8>>,
    /// End of the message expiry interval, epoch ms; `None` when it does not expire.
    pub expires_at: Option<i64>,
    /// When the gateway received it, epoch ms.
    pub updated_at: i64,
}

/// One change to the retained messages of a tenant, as written by
/// [`GatewayStore::write_retained_messages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetainedChange {
    /// Keeps the message of its (tenant, topic), replacing the one kept before.
    Put(RetainedMessageRow),
    /// Forgets the message of (tenant, topic), if one is kept (an empty retained publish).
    Delete { tenant: String, topic: String },
}

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

    /// Applies the changes in order, in ONE transaction (all or nothing). A `Put` for a tenant
    /// that does not exist (any more) fails the whole batch with `Conflict`.
    async fn write_retained_messages(&self, changes: &[RetainedChange]) -> StoreResult<()>;

    /// Deletes every retained message, in any tenant, whose expiry is at or before `now_ms`.
    /// Answers how many went.
    async fn delete_expired_retained_messages(&self, now_ms: i64) -> StoreResult<u64>;

    /// The retained messages of one tenant, ordered by topic.
    async fn list_retained_messages(&self, tenant: &str) -> StoreResult<Vec<RetainedMessageRow>>;

    /// The retained messages of every tenant, ordered by tenant and topic (loaded by the
    /// gateway at start).
    async fn list_all_retained_messages(&self) -> StoreResult<Vec<RetainedMessageRow>>;
}

const RETAINED_COLUMNS: &str = "tenant, topic, qos, payload_sealed, properties_sealed, expires_at, updated_at";

fn retained_from_row(mut row: Row) -> StoreResult<RetainedMessageRow> {
    Ok(RetainedMessageRow {
        tenant: row.text()?,
        topic: row.text()?,
        qos: row.int()?,
        payload_sealed: row.blob()?,
        properties_sealed: row.opt_blob()?,
        expires_at: row.opt_int()?,
        updated_at: row.int()?,
    })
}

fn retained_statement(change: &RetainedChange) -> Statement {
    match change {
        RetainedChange::Put(row) => {
            let sql = format!(
                "INSERT INTO retained_messages ({RETAINED_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (tenant, topic) DO UPDATE SET qos = excluded.qos, \
                 payload_sealed = excluded.payload_sealed, properties_sealed = excluded.properties_sealed, \
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at"
            );
            let params = vec![
                Value::from(&row.tenant),
                Value::from(&row.topic),
                Value::Int(row.qos),
                Value::from(&row.payload_sealed),
                Value::from(row.properties_sealed.as_ref()),
                Value::from(row.expires_at),
                Value::Int(row.updated_at),
            ];
            Statement::new(sql, params)
        }
        RetainedChange::Delete { tenant, topic } => {
            let sql = "DELETE FROM retained_messages WHERE tenant = ? AND topic = ?";
            Statement::new(sql, vec![Value::from(tenant), Value::from(topic)])
        }
    }
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

    async fn write_retained_messages(&self, changes: &[RetainedChange]) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.driver.transaction(changes.iter().map(retained_statement).collect()).await
    }

    async fn delete_expired_retained_messages(&self, now_ms: i64) -> StoreResult<u64> {
        let sql = "DELETE FROM retained_messages WHERE expires_at IS NOT NULL AND expires_at <= ?";
        self.driver.execute(sql, vec![Value::Int(now_ms)]).await
    }

    async fn list_retained_messages(&self, tenant: &str) -> StoreResult<Vec<RetainedMessageRow>> {
        let sql = format!("SELECT {RETAINED_COLUMNS} FROM retained_messages WHERE tenant = ? ORDER BY topic");
        self.all(&sql, vec![Value::from(tenant)], retained_from_row).await
    }

    async fn list_all_retained_messages(&self) -> StoreResult<Vec<RetainedMessageRow>> {
        let sql = format!("SELECT {RETAINED_COLUMNS} FROM retained_messages ORDER BY tenant, topic");
        self.all(&sql, Vec::new(), retained_from_row).await
    }
}
