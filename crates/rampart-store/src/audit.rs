//! The audit chains (SPEC §11), append-only: one chain per tenant incarnation, its records and
//! its signed checkpoints. The chain logic (hashing, signing, verifying) lives in the caller.

use async_trait::async_trait;

use crate::sql_store::{Select, SqlStore};
use crate::table::Table;
use crate::value::{Row, Value};
use crate::{Page, StoreError, StoreResult};

/// One chain: a tenant id and its incarnation (empty for chains begun before incarnations).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditChain {
    pub tenant: String,
    pub incarnation: String,
}

/// One record of an audit hash chain (see SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub tenant: String,
    /// The tenant incarnation whose chain this record belongs to.
    pub incarnation: String,
    pub seq: i64,
    pub ts: i64,
    /// `user`, `device` or `system`.
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub target: String,
    pub source_ip: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// JSON object text.
    pub details_json: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Filters for listing audit records; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Only records about devices in these groups (or their alarms), for group-scoped callers;
    /// `None` = every record.
    pub within_groups: Option<Vec<String>>,
}

/// An Ed25519 signature over a chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub tenant: String,
    pub incarnation: String,
    pub seq: i64,
    pub hash: String,
    pub ts: i64,
    /// Base64 signature.
    pub signature: String,
}

const RECORDS: Table = Table {
    name: "audit_records",
    columns: &[
        "tenant",
        "incarnation",
        "seq",
        "ts",
        "actor_type",
        "actor_id",
        "action",
        "target",
        "source_ip",
        "outcome",
        "details_json",
        "prev_hash",
        "hash",
    ],
};
const CHECKPOINTS: Table =
    Table { name: "audit_checkpoints", columns: &["tenant", "incarnation", "seq", "hash", "ts", "signature"] };

fn record_from_row(mut row: Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        tenant: row.text()?,
        incarnation: row.text()?,
        seq: row.int()?,
        ts: row.int()?,
        actor_type: row.text()?,
        actor_id: row.text()?,
        action: row.text()?,
        target: row.text()?,
        source_ip: row.opt_text()?,
        outcome: row.text()?,
        details_json: row.text()?,
        prev_hash: row.text()?,
        hash: row.text()?,
    })
}

fn checkpoint_from_row(mut row: Row) -> StoreResult<AuditCheckpoint> {
    Ok(AuditCheckpoint {
        tenant: row.text()?,
        incarnation: row.text()?,
        seq: row.int()?,
        hash: row.text()?,
        ts: row.int()?,
        signature: row.text()?,
    })
}

fn chain_key(chain: &AuditChain) -> Vec<Value> {
    vec![(&chain.tenant).into(), (&chain.incarnation).into()]
}

/// Audit persistence (append-only; the storage refuses UPDATE and DELETE by trigger).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// The last record of the chain, if any.
    async fn audit_head(&self, chain: &AuditChain) -> StoreResult<Option<AuditRecord>>;
    /// Inserts one record; `Conflict` if (tenant, incarnation, seq) already exists (another
    /// writer won).
    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// Records of the chain matching the filter, ordered by seq ascending, after `page.after`
    /// (a seq as decimal text).
    async fn list_audit(&self, chain: &AuditChain, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditRecord>>;
    /// Every chain that has records (including chains of deleted tenants).
    async fn list_audit_chains(&self) -> StoreResult<Vec<AuditChain>>;
    async fn insert_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()>;
    /// Checkpoints of the chain ordered by seq ascending.
    async fn list_audit_checkpoints(&self, chain: &AuditChain) -> StoreResult<Vec<AuditCheckpoint>>;
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit_head(&self, chain: &AuditChain) -> StoreResult<Option<AuditRecord>> {
        let sql = RECORDS.select("WHERE tenant = ? AND incarnation = ? ORDER BY seq DESC LIMIT 1");
        self.optional(&sql, chain_key(chain), record_from_row).await
    }

    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let params = vec![
            (&record.tenant).into(),
            (&record.incarnation).into(),
            record.seq.into(),
            record.ts.into(),
            (&record.actor_type).into(),
            (&record.actor_id).into(),
            (&record.action).into(),
            (&record.target).into(),
            record.source_ip.as_ref().into(),
            (&record.outcome).into(),
            (&record.details_json).into(),
            (&record.prev_hash).into(),
            (&record.hash).into(),
        ];
        self.insert(&RECORDS.insert(""), params).await
    }

    async fn list_audit(&self, chain: &AuditChain, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditRecord>> {
        let after = match &page.after {
            Some(after) => Some(
                after
                    .parse::<i64>()
                    .map_err(|_| StoreError::Backend("audit cursor is not a sequence number".into()))?,
            ),
            None => None,
        };
        let mut select = Select::new(&RECORDS.select("WHERE tenant = ? AND incarnation = ?"), chain_key(chain));
        if let Some(from) = filter.from {
            select.and("ts >= ?", from);
        }
        if let Some(to) = filter.to {
            select.and("ts <= ?", to);
        }
        if let Some(action) = &filter.action {
            select.and("action = ?", action);
        }
        if let Some(actor) = &filter.actor {
            select.and("actor_id = ?", actor);
        }
        if let Some(groups) = &filter.within_groups {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            // Records about a device in scope (`device:<id>`) or about one of its alarms.
            let places = crate::value::placeholders(groups.len());
            select.sql.push_str(&format!(
                " AND (target IN (SELECT 'device:' || id FROM devices WHERE tenant = ? AND group_id IN ({places})) \
                 OR target IN (SELECT 'alarm:' || a.id FROM alarms a JOIN devices d \
                 ON d.tenant = a.tenant AND d.id = a.device WHERE a.tenant = ? AND d.group_id IN ({places})))"
            ));
            select.params.push((&chain.tenant).into());
            select.params.extend(groups.iter().map(Value::from));
            select.params.push((&chain.tenant).into());
            select.params.extend(groups.iter().map(Value::from));
        }
        let select = select.page("seq", after.map(Value::from), page.limit);
        self.all(&select.sql, select.params, record_from_row).await
    }

    async fn list_audit_chains(&self) -> StoreResult<Vec<AuditChain>> {
        let sql = "SELECT DISTINCT tenant, incarnation FROM audit_records ORDER BY tenant, incarnation";
        self.all(sql, vec![], |mut row| Ok(AuditChain { tenant: row.text()?, incarnation: row.text()? })).await
    }

    async fn insert_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()> {
        let params = vec![
            (&checkpoint.tenant).into(),
            (&checkpoint.incarnation).into(),
            checkpoint.seq.into(),
            (&checkpoint.hash).into(),
            checkpoint.ts.into(),
            (&checkpoint.signature).into(),
        ];
        self.insert(&CHECKPOINTS.insert(""), params).await
    }

    async fn list_audit_checkpoints(&self, chain: &AuditChain) -> StoreResult<Vec<AuditCheckpoint>> {
        let sql = CHECKPOINTS.select("WHERE tenant = ? AND incarnation = ? ORDER BY seq");
        self.all(&sql, chain_key(chain), checkpoint_from_row).await
    }
}
