//! The tamper-evident audit log of SPEC §11: one SHA-256 hash chain per tenant incarnation
//! (its first record links to a genesis hash derived from the incarnation, so a tenant that
//! gets a deleted tenant's id starts a chain of its own), Ed25519 signed checkpoints of each
//! chain head, and a verifier that works the same on the live store, on a stopped server's
//! data dir and on an exported file. Actions come only from [`AuditAction`].

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_core::AuditAction;
use rampart_crypto::{AuditSigningKey, audit_hash, genesis_hash, verify_checkpoint};
use rampart_store::{AuditChain, AuditCheckpoint, AuditFilter, AuditRecord, Page, Store, StoreError};
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::{PlatformError, PlatformResult};
use crate::incarnations::Incarnations;
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
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Device(_) => "device",
            Actor::System => "system",
        }
    }

    pub(crate) fn id(&self) -> &str {
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
    pub action: AuditAction,
    pub target: String,
    pub source_ip: Option<String>,
    pub success: bool,
    pub details: Value,
}

impl AuditEntry {
    /// A successful action with empty details.
    pub fn success(tenant: &str, actor: Actor, action: AuditAction, target: impl Into<String>) -> Self {
        AuditEntry {
            tenant: tenant.to_owned(),
            actor,
            action,
            target: target.into(),
            source_ip: None,
            success: true,
            details: json!({}),
        }
    }

    /// A failed or refused action with empty details.
    pub fn failure(tenant: &str, actor: Actor, action: AuditAction, target: impl Into<String>) -> Self {
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

/// The JSON form of a record, exactly as hashed (`with_hash = false`) or shown and exported
/// (with its `hash`, and its `incarnation` when it has one; the incarnation is bound by the
/// chain's genesis hash rather than hashed per record, so the hashed form stays that of SPEC §11).
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
        if !record.incarnation.is_empty() {
            map.insert("incarnation".to_owned(), Value::String(record.incarnation.clone()));
        }
    }
    value
}

/// The JSON form of a checkpoint line in an export file.
pub fn checkpoint_json(checkpoint: &AuditCheckpoint) -> Value {
    let mut value = json!({"checkpoint": {
        "tenant": checkpoint.tenant,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "ts": format_rfc3339_ms(checkpoint.ts),
        "signature": checkpoint.signature,
    }});
    if !checkpoint.incarnation.is_empty() {
        value["checkpoint"]["incarnation"] = Value::String(checkpoint.incarnation.clone());
    }
    value
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
    let incarnation = |v: &Value| v.get("incarnation").and_then(Value::as_str).unwrap_or_default().to_owned();
    if let Some(cp) = value.get("checkpoint") {
        return Ok(ExportLine::Checkpoint(AuditCheckpoint {
            tenant: text(cp, "tenant")?,
            incarnation: incarnation(cp),
            seq: int(cp, "seq")?,
            hash: text(cp, "hash")?,
            ts: ts(cp)?,
            signature: text(cp, "signature")?,
        }));
    }
    let actor = value.get("actor").ok_or("missing actor")?;
    Ok(ExportLine::Record(AuditRecord {
        tenant: text(&value, "tenant")?,
        incarnation: incarnation(&value),
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
    chain: AuditChain,
    genesis: String,
    /// Signed hashes by seq (only checkpoints whose signature verified).
    signed: BTreeMap<i64, String>,
    last: Option<(i64, String)>,
    records: u64,
    failure: Option<(i64, String)>,
}

impl ChainVerifier {
    /// `checkpoints` are verified against `public_key_base64` first; a bad signature fails the
    /// chain at that checkpoint's seq.
    pub fn new(chain: &AuditChain, checkpoints: &[AuditCheckpoint], public_key_base64: &str) -> Self {
        let mut verifier = ChainVerifier {
            chain: chain.clone(),
            genesis: genesis_hash(&chain.tenant, &chain.incarnation),
            signed: BTreeMap::new(),
            last: None,
            records: 0,
            failure: None,
        };
        for cp in checkpoints {
            let ours = cp.tenant == chain.tenant && cp.incarnation == chain.incarnation;
            if !ours || !verify_checkpoint(public_key_base64, &chain.tenant, cp.seq, &cp.hash, &cp.signature) {
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
        let expected_prev = self.last.as_ref().map_or(self.genesis.as_str(), |(_, hash)| hash.as_str());
        if record.tenant != self.chain.tenant || record.incarnation != self.chain.incarnation {
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
    incarnations: Arc<Incarnations>,
    signer: AuditSigningKey,
    append_lock: tokio::sync::Mutex<()>,
}

impl AuditLog {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        incarnations: Arc<Incarnations>,
        signer: AuditSigningKey,
    ) -> Self {
        AuditLog { store, clock, incarnations, signer, append_lock: tokio::sync::Mutex::new(()) }
    }

    /// The chain of the tenant's live incarnation; `NotFound` when the tenant does not exist.
    pub(crate) async fn current_chain(&self, tenant: &str) -> PlatformResult<AuditChain> {
        match self.incarnations.current(tenant).await? {
            Some(incarnation) => Ok(AuditChain { tenant: tenant.to_owned(), incarnation }),
            None => Err(PlatformError::Store(StoreError::NotFound)),
        }
    }

    /// The platform audit public key (standard base64 Ed25519).
    pub fn public_key_base64(&self) -> String {
        self.signer.public_key_base64()
    }

    /// Appends one record to the chain of its tenant's live incarnation. Writers on other
    /// nodes are detected by the store's unique (tenant, incarnation, seq) key and retried.
    pub async fn append(&self, entry: AuditEntry) -> PlatformResult<AuditRecord> {
        let chain = self.current_chain(&entry.tenant).await?;
        let _serialised = self.append_lock.lock().await;
        for _ in 0..APPEND_RETRIES {
            let head = self.store.audit_head(&chain).await?;
            let (seq, prev_hash) =
                head.map_or_else(|| (1, genesis_hash(&chain.tenant, &chain.incarnation)), |h| (h.seq + 1, h.hash));
            let mut record = AuditRecord {
                tenant: entry.tenant.clone(),
                incarnation: chain.incarnation.clone(),
                seq,
                ts: self.clock.now_ms(),
                actor_type: entry.actor.kind().to_owned(),
                actor_id: entry.actor.id().to_owned(),
                action: entry.action.as_str().to_owned(),
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
        let action = entry.action;
        if let Err(error) = self.append(entry).await {
            tracing::error!(%error, %action, "audit append failed");
        }
    }

    async fn sign_head(&self, head: &AuditRecord) -> PlatformResult<()> {
        let checkpoint = AuditCheckpoint {
            tenant: head.tenant.clone(),
            incarnation: head.incarnation.clone(),
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
        for chain in self.store.list_audit_chains().await? {
            let Some(head) = self.store.audit_head(&chain).await? else { continue };
            let last_signed = self.store.list_audit_checkpoints(&chain).await?.last().map_or(0, |cp| cp.seq);
            if head.seq > last_signed {
                self.sign_head(&head).await?;
                signed += 1;
            }
        }
        Ok(signed)
    }

    /// Verifies the chain of the tenant's live incarnation as stored.
    pub async fn verify_tenant(&self, tenant: &str) -> PlatformResult<VerifyReport> {
        let chain = self.current_chain(tenant).await?;
        verify_stored_chain(self.store.as_ref(), &chain, &self.public_key_base64()).await
    }

    /// Every chain in the store (those of deleted tenants too), verified: the offline check.
    pub async fn verify_all(&self) -> PlatformResult<Vec<(AuditChain, VerifyReport)>> {
        let mut reports = Vec::new();
        for chain in self.store.list_audit_chains().await? {
            let report = verify_stored_chain(self.store.as_ref(), &chain, &self.public_key_base64()).await?;
            reports.push((chain, report));
        }
        Ok(reports)
    }

    /// Streams the records of the tenant's live incarnation as export lines (records, then
    /// every checkpoint, then a fresh checkpoint of the head so the whole export is signed).
    pub async fn export_lines(&self, tenant: &str) -> PlatformResult<Vec<Value>> {
        let chain = self.current_chain(tenant).await?;
        let mut lines = Vec::new();
        let mut page = Page { after: None, limit: VERIFY_PAGE };
        loop {
            let batch = self.store.list_audit(&chain, &AuditFilter::default(), &page).await?;
            let Some(last) = batch.last() else { break };
            page.after = Some(last.seq.to_string());
            lines.extend(batch.iter().map(|r| record_json(r, true)));
        }
        if let Some(head) = self.store.audit_head(&chain).await? {
            self.sign_head(&head).await?;
        }
        let checkpoints = self.store.list_audit_checkpoints(&chain).await?;
        lines.extend(checkpoints.iter().map(checkpoint_json));
        Ok(lines)
    }
}

/// Verifies one chain straight from a store.
async fn verify_stored_chain(
    store: &dyn Store,
    chain: &AuditChain,
    public_key_base64: &str,
) -> PlatformResult<VerifyReport> {
    let checkpoints = store.list_audit_checkpoints(chain).await?;
    let mut verifier = ChainVerifier::new(chain, &checkpoints, public_key_base64);
    let mut page = Page { after: None, limit: VERIFY_PAGE };
    loop {
        let batch = store.list_audit(chain, &AuditFilter::default(), &page).await?;
        let Some(last) = batch.last() else { break };
        page.after = Some(last.seq.to_string());
        batch.iter().for_each(|record| verifier.push(record));
    }
    Ok(verifier.finish())
}
