//! What the MQTT gateway and the device edges keep: connection state of devices (partial
//! updates of their own columns) and retained messages.

use async_trait::async_trait;

use crate::StoreResult;
use crate::sql_store::SqlStore;
use crate::value::{Row, Statement, Value};

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
