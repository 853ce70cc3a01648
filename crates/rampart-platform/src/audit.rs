//! The tamper-evident audit log of SPEC §11: one SHA-256 hash chain per tenant, Ed25519 signed
//! checkpoints of each chain head, and a verifier that works the same on the live store, on a
//! stopped server's data dir and on an exported file.

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_crypto::{AuditSigningKey, GENESIS_HASH, audit_hash, verify_checkpoint};
use rampart_store::{AuditCheckpoint, AuditFilter, AuditRecord, Page, Store, StoreError};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::{PlatformError, PlatformResult};
use crate::time_format::{format_rfc3339_ms, parse_timestamp};

/// Records between signed checkpoints; the timer signs the rest at least every 60 s.
const CHECKPOINT_EVERY: i64 = 1000;
const APPEND_RETRIES: usize = 8;
const VERIFY_PAGE: u32 = 1000;

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Device(String),
    System,
}

impl Actor {
    fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Device(_) => "device",
            Actor::System => "system",
        }
    }

    fn id(&self) -> &str {
        match self {
            Actor::User(id) | Actor::Device(id) => id,
            Actor::System => "rampart",
        }
    }
}

/// One thing to record, before the chain gives it a seq and hashes.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub tenant: String,
    pub actor: Actor,
    pub action: String,
    pub target: String,
    pub source_ip: Option<String>,
    pub success: bool,
    pub details: Value,
}

impl AuditEntry {
    /// A successful action with empty details.
    pub fn success(tenant: &str, actor: Actor, action: &str, target: impl Into<String>) -> Self {
        AuditEntry {
            tenant: tenant.to_owned(),
            actor,
            action: action.to_owned(),
            target: target.into(),
            source_ip: None,
            success: true,
            details: json!({}),
        }
    }

    /// A failed or refused action with empty details.
    pub fn failure(tenant: &str, actor: Actor, action: &str, target: impl Into<String>) -> Self {
        AuditEntry { success: false, ..AuditEntry::success(tenant, actor, action, target) }
    }

    pub fn from_ip(mut self, source_ip: Option<String>) -> Self {
        self.source_ip = source_ip;
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// The JSON form of a record, exactly as hashed (`with_hash = false`) or shown and exported.
pub fn record_json(record: &AuditRecord, with_hash: bool) -> Value {
    let details: Value =
        serde_json::from_str(&record.details_json).unwrap_or(Value::String(record.details_json.clone()));
    let mut value = json!({
        "seq": record.seq,
        "ts": format_rfc3339_ms(record.ts),
        "tenant": record.tenant,
        "actor": {"type": record.actor_type, "id": record.actor_id},
        "action": record.action,
        "target": record.target,
        "source_ip": record.source_ip,
        "outcome": record.outcome,
        "details": details,
        "prev_hash": record.prev_hash,
    });
    if with_hash && let Value::Object(map) = &mut value {
        map.insert("hash".to_owned(), Value::String(record.hash.clone()));
    }
    value
}

/// The JSON form of a checkpoint line in an export file.
pub fn checkpoint_json(checkpoint: &AuditCheckpoint) -> Value {
    json!({"checkpoint": {
        "tenant": checkpoint.tenant,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "ts": format_rfc3339_ms(checkpoint.ts),
        "signature": checkpoint.signature,
    }})
}

/// One line of an export file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLine {
    Record(AuditRecord),
    Checkpoint(AuditCheckpoint),
}

/// Parses one export line back into a record or a checkpoint.
pub fn parse_export_line(line: &str) -> Result<ExportLine, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text =
        |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned).ok_or(format!("missing {key}"));
    let int = |v: &Value, key: &str| v.get(key).and_then(Value::as_i64).ok_or(format!("missing {key}"));
    let ts = |v: &Value| text(v, "ts").and_then(|t| parse_timestamp(&t).ok_or("bad ts".to_owned()));
    if let Some(cp) = value.get("checkpoint") {
        return Ok(ExportLine::Checkpoint(AuditCheckpoint {
            tenant: text(cp, "tenant")?,
            seq: int(cp, "seq")?,
            hash: text(cp, "hash")?,
            ts: ts(cp)?,
            signature: text(cp, "signature")?,
        }));
    }
    let actor = value.get("actor").ok_or("missing actor")?;
    Ok(ExportLine::Record(AuditRecord {
        tenant: text(&value, "tenant")?,
        seq: int(&value, "seq")?,
        ts: ts(&value)?,
        actor_type: text(actor, "type")?,
        actor_id: text(actor, "id")?,
        action: text(&value, "action")?,
        target: text(&value, "target")?,
        source_ip: value.get("source_ip").and_then(Value::as_str).map(str::to_owned),
        outcome: text(&value, "outcome")?,
        details_json: value.get("details").map(Value::to_string).ok_or("missing details")?,
        prev_hash: text(&value, "prev_hash")?,
        hash: text(&value, "hash")?,
    }))
}

/// The outcome of verifying one tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyReport {
    Valid { records: u64, head: Option<(i64, String)> },
    Invalid { first_bad_seq: i64, reason: String },
}

impl VerifyReport {
    pub fn is_valid(&self) -> bool {
        matches!(self, VerifyReport::Valid { .. })
    }

    /// The `GET /audit/verify` answer.
    pub fn to_json(&self) -> Value {
        match self {
            VerifyReport::Valid { records, head } => json!({
                "valid": true,
                "records": records,
                "head": head.as_ref().map(|(seq, hash)| json!({"seq": seq, "hash": hash})),
            }),
            VerifyReport::Invalid { first_bad_seq, reason } => {
                json!({"valid": false, "first_bad_seq": first_bad_seq, "reason": reason})
            }
        }
    }
}

/// Streams a tenant's records in seq order and checks links, hashes and signed checkpoints.
pub struct ChainVerifier {
    tenant: String,
    /// Signed hashes by seq (only checkpoints whose signature verified).
    signed: BTreeMap<i64, String>,
    last: Option<(i64, String)>,
    records: u64,
    failure: Option<(i64, String)>,
}

impl ChainVerifier {
    /// `checkpoints` are verified against `public_key_base64` first; a bad signature fails the
    /// chain at that checkpoint's seq.
    pub fn new(tenant: &str, checkpoints: &[AuditCheckpoint], public_key_base64: &str) -> Self {
        let mut verifier =
            ChainVerifier { tenant: tenant.to_owned(), signed: BTreeMap::new(), last: None, records: 0, failure: None };
        for cp in checkpoints {
            if cp.tenant != tenant || !verify_checkpoint(public_key_base64, tenant, cp.seq, &cp.hash, &cp.signature) {
                verifier.fail(cp.seq, "checkpoint signature does not verify");
                continue;
            }
            verifier.signed.insert(cp.seq, cp.hash.clone());
        }
        verifier
    }

    fn fail(&mut self, seq: i64, reason: &str) {
        let earlier = self.failure.as_ref().is_some_and(|(bad, _)| *bad <= seq);
        if !earlier {
            self.failure = Some((seq, reason.to_owned()));
        }
    }

    /// Feeds the next record (in the order storage returned it).
    pub fn push(&mut self, record: &AuditRecord) {
        if self.failure.is_some() {
            return;
        }
        self.records += 1;
        let expected_seq = self.last.as_ref().map_or(1, |(seq, _)| seq + 1);
        let expected_prev = self.last.as_ref().map_or(GENESIS_HASH, |(_, hash)| hash.as_str());
        if record.tenant != self.tenant {
            return self.fail(record.seq, "record belongs to another tenant");
        }
        if record.seq != expected_seq {
            return self.fail(expected_seq, "record missing or out of order");
        }
        if record.prev_hash != expected_prev {
            return self.fail(record.seq, "prev_hash does not link to the previous record");
        }
        if audit_hash(&record.prev_hash, &record_json(record, false)) != record.hash {
            return self.fail(record.seq, "hash does not match the record: it was altered");
        }
        if self.signed.get(&record.seq).is_some_and(|signed| *signed != record.hash) {
            return self.fail(record.seq, "record differs from its signed checkpoint");
        }
        self.last = Some((record.seq, record.hash.clone()));
    }

    /// Ends the stream: records missing after the last one are caught by later checkpoints.
    pub fn finish(mut self) -> VerifyReport {
        let head_seq = self.last.as_ref().map_or(0, |(seq, _)| *seq);
        if self.failure.is_none()
            && let Some((&signed_seq, _)) = self.signed.iter().next_back()
            && signed_seq > head_seq
        {
            self.fail(head_seq + 1, "records signed by a checkpoint are missing");
        }
        match self.failure {
            Some((first_bad_seq, reason)) => VerifyReport::Invalid { first_bad_seq, reason },
            None => VerifyReport::Valid { records: self.records, head: self.last },
        }
    }
}

/// Appends to and verifies the per-tenant chains.
pub struct AuditLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    signer: AuditSigningKey,
    append_lock: tokio::sync::Mutex<()>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, signer: AuditSigningKey) -> Self {
        AuditLog { store, clock, signer, append_lock: tokio::sync::Mutex::new(()) }
    }

    /// The platform audit public key (standard base64 Ed25519).
    pub fn public_key_base64(&self) -> String {
        self.signer.public_key_base64()
    }

    /// Appends one record to its tenant's chain. Writers on other nodes are detected by the
    /// store's unique (tenant, seq) key and retried.
    pub async fn append(&self, entry: AuditEntry) -> PlatformResult<AuditRecord> {
        let _serialised = self.append_lock.lock().await;
        for _ in 0..APPEND_RETRIES {
            let head = self.store.audit_head(&entry.tenant).await?;
            let (seq, prev_hash) = head.map_or((1, GENESIS_HASH.to_owned()), |h| (h.seq + 1, h.hash));
            let mut record = AuditRecord {
                tenant: entry.tenant.clone(),
                seq,
                ts: self.clock.now_ms(),
                actor_type: entry.actor.kind().to_owned(),
                actor_id: entry.actor.id().to_owned(),
                action: entry.action.clone(),
                target: entry.target.clone(),
                source_ip: entry.source_ip.clone(),
                outcome: if entry.success { "success" } else { "failure" }.to_owned(),
                details_json: entry.details.to_string(),
                prev_hash,
                hash: String::new(),
            };
            record.hash = audit_hash(&record.prev_hash, &record_json(&record, false));
            match self.store.insert_audit(&record).await {
                Ok(()) => {
                    if record.seq % CHECKPOINT_EVERY == 0 {
                        self.sign_head(&record).await?;
                    }
                    return Ok(record);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(PlatformError::AuditContention(entry.tenant))
    }

    /// Appends and logs a failure instead of returning it: for records written on paths that
    /// must answer the caller anyway (e.g. a refused request).
    pub async fn record(&self, entry: AuditEntry) {
        let action = entry.action.clone();
        if let Err(error) = self.append(entry).await {
            tracing::error!(%error, %action, "audit append failed");
        }
    }

    async fn sign_head(&self, head: &AuditRecord) -> PlatformResult<()> {
        let checkpoint = AuditCheckpoint {
            tenant: head.tenant.clone(),
            seq: head.seq,
            hash: head.hash.clone(),
            ts: self.clock.now_ms(),
            signature: self.signer.sign_checkpoint(&head.tenant, head.seq, &head.hash),
        };
        match self.store.insert_audit_checkpoint(&checkpoint).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// Signs every chain head that moved since its last checkpoint (run at least every 60 s).
    pub async fn checkpoint_all(&self) -> PlatformResult<usize> {
        let mut signed = 0;
        for tenant in self.store.list_audit_tenants().await? {
            let Some(head) = self.store.audit_head(&tenant).await? else { continue };
            let last_signed = self.store.list_audit_checkpoints(&tenant).await?.last().map_or(0, |cp| cp.seq);
            if head.seq > last_signed {
                self.sign_head(&head).await?;
                signed += 1;
            }
        }
        Ok(signed)
    }

    /// Verifies one tenant's chain as stored.
    pub async fn verify_tenant(&self, tenant: &str) -> PlatformResult<VerifyReport> {
        verify_stored_chain(self.store.as_ref(), tenant, &self.public_key_base64()).await
    }

    /// Streams the tenant's records as export lines (records, then every checkpoint, then a
    /// fresh checkpoint of the head so the whole export is signed).
    pub async fn export_lines(&self, tenant: &str) -> PlatformResult<Vec<Value>> {
        let mut lines = Vec::new();
        let mut page = Page { after: None, limit: VERIFY_PAGE };
        loop {
            let batch = self.store.list_audit(tenant, &AuditFilter::default(), &page).await?;
            let Some(last) = batch.last() else { break };
            page.after = Some(last.seq.to_string());
            lines.extend(batch.iter().map(|r| record_json(r, true)));
        }
        if let Some(head) = self.store.audit_head(tenant).await? {
            self.sign_head(&head).await?;
        }
        let checkpoints = self.store.list_audit_checkpoints(tenant).await?;
        lines.extend(checkpoints.iter().map(checkpoint_json));
        Ok(lines)
    }
}

/// Verifies a tenant's chain straight from a store (also used offline by the CLI).
pub async fn verify_stored_chain(
    store: &dyn Store,
    tenant: &str,
    public_key_base64: &str,
) -> PlatformResult<VerifyReport> {
    let checkpoints = store.list_audit_checkpoints(tenant).await?;
    let mut verifier = ChainVerifier::new(tenant, &checkpoints, public_key_base64);
    let mut page = Page { after: None, limit: VERIFY_PAGE };
    loop {
        let batch = store.list_audit(tenant, &AuditFilter::default(), &page).await?;
        let Some(last) = batch.last() else { break };
        page.after = Some(last.seq.to_string());
        batch.iter().for_each(|record| verifier.push(record));
    }
    Ok(verifier.finish())
}
