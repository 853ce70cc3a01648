//! Group commit. One queue feeds two tasks. `prepare` takes messages as they arrive, seals
//! each under its device key and appends its rows to one pending batch. `commit`, whenever it
//! is free, takes the whole pending batch (up to `max_batch` messages) and writes it in ONE
//! transaction; a task of its own answers each waiter once the store says the commit is
//! durable (fsync'd), while `commit` already writes the next batch. Sealing and the fsync of
//! one batch thus overlap the writing of another, and every message that arrives during a
//! commit rides the next one: one transaction per batch, however many messages it holds.
//!
//! If a batch fails, its messages are retried one by one, so one bad message (or a device
//! deleted meanwhile) cannot fail the others.

use std::ops::Range;
use std::sync::Arc;

use rampart_core::{SecurityEventType, Severity};
use rampart_crypto::random_id;
use rampart_platform::{SecurityEventDraft, format_rfc3339_ms};
use rampart_store::{
    AlarmClear, AlarmRaise, AttestationRow, DeviceDataBatch, DeviceDataRow, DeviceEventRow, DeviceSeen, StoreError,
    TelemetryRow,
};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::error::IngestError;
use crate::ingest::Shared;
use crate::keys::KeyError;
use crate::live::{LiveEvent, LiveTopic};
use crate::payload::{AlarmPayload, Parsed};
use crate::queries::alarm_live_event;
use crate::seal::{self, DeviceKeys};

/// What the queue carries.
pub(crate) enum Command {
    Write(Job),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<()>),
}

/// One validated message on its way to storage.
pub(crate) struct Job {
    tenant: Arc<str>,
    device: Arc<str>,
    received_at_ms: i64,
    parsed: Parsed,
    done: Option<oneshot::Sender<Result<(), IngestError>>>,
    /// This message's share of the queue's byte budget, held until it is committed.
    budget: OwnedSemaphorePermit,
}

impl Job {
    pub(crate) fn new(
        tenant: &str,
        device: &str,
        received_at_ms: i64,
        parsed: Parsed,
        done: Option<oneshot::Sender<Result<(), IngestError>>>,
        budget: OwnedSemaphorePermit,
    ) -> Job {
        Job { tenant: Arc::from(tenant), device: Arc::from(device), received_at_ms, parsed, done, budget }
    }
}

/// A security event to raise once the event that carries it is committed.
struct SecurityNotice {
    event_type: SecurityEventType,
    severity: Severity,
    details: Value,
}

/// Work to do after a message is committed.
#[derive(Default)]
struct AfterCommit {
    live: Vec<LiveEvent>,
    security: Option<SecurityNotice>,
    /// The alarm type whose new state must be read back and published.
    alarm_type: Option<String>,
    /// An attestation report to judge against the firmware repository.
    attestation: Option<Map<String, Value>>,
}

struct PreparedJob {
    tenant: Arc<str>,
    device: Arc<str>,
    rows: Range<usize>,
    /// Index into the batch's `seen`, unless this message did not need to move `last_seen`.
    seen: Option<usize>,
    done: Option<oneshot::Sender<Result<(), IngestError>>>,
    after: AfterCommit,
    /// Released once the message is committed (or failed).
    _budget: OwnedSemaphorePermit,
}

/// `last_seen` is written at most once per this many milliseconds per device (the availability
/// monitor allows for it), which spares a row update per message for chatty devices.
pub(crate) const SEEN_RESOLUTION_MS: i64 = 1000;

/// When this process last wrote `last_seen` for each device.
type SeenWritten = std::collections::HashMap<(Arc<str>, Arc<str>), i64>;

struct Prepared {
    batch: DeviceDataBatch,
    jobs: Vec<PreparedJob>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Prepared {
    fn empty() -> Prepared {
        Prepared { batch: DeviceDataBatch::default(), jobs: Vec::new(), flushes: Vec::new() }
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.flushes.is_empty()
    }
}

/// The batch being filled by `prepare` and taken whole by `commit`.
struct Pending {
    batch: std::sync::Mutex<Prepared>,
    /// `prepare` added something.
    filled: tokio::sync::Notify,
    /// `commit` took the batch.
    taken: tokio::sync::Notify,
    /// `prepare` has stopped (the queue closed); `commit` ends once the batch is empty.
    closed: std::sync::atomic::AtomicBool,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Prepared> {
        // A panic elsewhere leaves a consistent batch behind; keep going.
        self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(crate) fn spawn(shared: Arc<Shared>, queue: mpsc::Receiver<Command>, max_batch: usize) {
    let pending = Arc::new(Pending {
        batch: std::sync::Mutex::new(Prepared::empty()),
        filled: tokio::sync::Notify::new(),
        taken: tokio::sync::Notify::new(),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    tokio::spawn(prepare_loop(Arc::clone(&shared), queue, Arc::clone(&pending), max_batch));
    tokio::spawn(commit_loop(shared, pending));
}

async fn prepare_loop(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Command>,
    pending: Arc<Pending>,
    max_batch: usize,
) {
    // Messages are sealed in small groups so that `commit` never waits long for the lock.
    const GROUP: usize = 64;
    let mut seen_written = SeenWritten::new();
    while let Some(first) = queue.recv().await {
        let mut commands = vec![first];
        while commands.len() < GROUP {
            match queue.try_recv() {
                Ok(command) => commands.push(command),
                Err(_) => break,
            }
        }
        let prepared = prepare(&shared, commands, &mut seen_written).await;
        loop {
            // Register interest before checking, so a `take` in between is not missed.
            let taken = pending.taken.notified();
            {
                let mut batch = pending.lock();
                if batch.jobs.len() < max_batch || batch.is_empty() {
                    append(&mut batch, prepared);
                    break;
                }
            }
            // The pending batch is full: wait for `commit` to take it (back pressure).
            taken.await;
        }
        pending.filled.notify_one();
    }
    pending.closed.store(true, std::sync::atomic::Ordering::Release);
    pending.filled.notify_one();
}

/// Moves `more` to the end of `batch`, shifting its row and seen indices.
fn append(batch: &mut Prepared, more: Prepared) {
    let (row_offset, seen_offset) = (batch.batch.rows.len(), batch.batch.seen.len());
    batch.batch.rows.extend(more.batch.rows);
    batch.batch.seen.extend(more.batch.seen);
    batch.jobs.extend(more.jobs.into_iter().map(|mut job| {
        job.rows = job.rows.start + row_offset..job.rows.end + row_offset;
        job.seen = job.seen.map(|seen| seen + seen_offset);
        job
    }));
    batch.flushes.extend(more.flushes);
}

async fn commit_loop(shared: Arc<Shared>, pending: Arc<Pending>) {
    // The task answering the previous batch once it is durable.
    let mut answering: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let filled = pending.filled.notified();
        let taken = std::mem::replace(&mut *pending.lock(), Prepared::empty());
        if taken.is_empty() {
            if pending.closed.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            filled.await;
            continue;
        }
        pending.taken.notify_one();
        answering = commit(&shared, taken, answering.take()).await;
    }
}

/// Writes the batch and returns once it is committed; its waiters are answered by the task it
/// returns once it is also durable, so the next batch is written meanwhile. `previous` is that
/// task of the batch before, for flushes that come alone.
async fn commit(
    shared: &Arc<Shared>,
    prepared: Prepared,
    previous: Option<tokio::task::JoinHandle<()>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let Prepared { batch, jobs, flushes } = prepared;
    if jobs.is_empty() {
        // Durability is in order: once the previous batch is answered, all before it are durable.
        return Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _answered_or_panicked = previous.await;
            }
            answer_flushes(flushes);
        }));
    }
    let started = std::time::Instant::now();
    let written = shared.store.write_device_data_batch(&batch).await;
    tracing::debug!(
        messages = jobs.len(),
        rows = batch.rows.len(),
        write_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "batch committed"
    );
    match written {
        Ok(durable) => {
            let shared = Arc::clone(shared);
            Some(tokio::spawn(async move {
                let synced = durable.wait().await;
                if let Err(error) = &synced {
                    tracing::error!(%error, messages = jobs.len(), "ingest batch committed but not made durable");
                }
                for job in jobs {
                    let result = synced.as_ref().copied().map_err(|error| IngestError::Storage(error.to_string()));
                    finish(&shared, job, result);
                }
                answer_flushes(flushes);
            }))
        }
        Err(error) => {
            // Rare: settle the batch before, so flushes below are answered in order.
            if let Some(previous) = previous {
                let _answered_or_panicked = previous.await;
            }
            retry_or_fail(shared, batch, jobs, error).await;
            answer_flushes(flushes);
            None
        }
    }
}

/// A batch failed: its messages are retried one by one, so one bad message (or a device
/// deleted meanwhile) cannot fail the others.
async fn retry_or_fail(shared: &Arc<Shared>, batch: DeviceDataBatch, jobs: Vec<PreparedJob>, error: StoreError) {
    match error {
        error if jobs.len() > 1 => {
            tracing::warn!(%error, messages = jobs.len(), "ingest batch failed; retrying one by one");
            for job in jobs {
                let single = DeviceDataBatch {
                    rows: batch.rows[job.rows.clone()].to_vec(),
                    seen: job.seen.and_then(|seen| batch.seen.get(seen)).cloned().into_iter().collect(),
                };
                let result = shared.store.insert_device_data_batch(&single).await;
                finish(shared, job, result.map_err(|error| IngestError::Storage(error.to_string())));
            }
        }
        error => {
            tracing::warn!(%error, "ingest commit failed");
            for job in jobs {
                finish(shared, job, Err(IngestError::Storage(error.to_string())));
            }
        }
    }
}

fn answer_flushes(flushes: Vec<oneshot::Sender<()>>) {
    for flush in flushes {
        let _waiter_gone_is_fine = flush.send(());
    }
}

/// Answers the waiter, then publishes what was committed.
fn finish(shared: &Arc<Shared>, job: PreparedJob, result: Result<(), IngestError>) {
    let committed = result.is_ok();
    match job.done {
        Some(done) => {
            let _waiter_gone_is_fine = done.send(result);
        }
        None => {
            if let Err(error) = result {
                tracing::warn!(tenant = %job.tenant, device = %job.device, %error, "QoS 0 message not stored");
            }
        }
    }
    if !committed {
        return;
    }
    for event in job.after.live {
        shared.publish(event);
    }
    let cleared_unavailable = {
        let mut open = shared.unavailable_open();
        !open.is_empty() && open.remove(&(job.tenant.to_string(), job.device.to_string()))
    };
    // Reading an alarm back only serves the live channel.
    let needs_alarm_read = (job.after.alarm_type.is_some() || cleared_unavailable) && shared.live.receiver_count() > 0;
    if let Some(body) = job.after.attestation {
        let judged =
            crate::attestation::judge(Arc::clone(shared), Arc::clone(&job.tenant), Arc::clone(&job.device), body);
        tokio::spawn(judged);
    }
    if job.after.security.is_none() && !needs_alarm_read {
        return;
    }
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        if let Some(notice) = job.after.security {
            let mut draft = SecurityEventDraft::new(&job.tenant, notice.event_type, notice.severity);
            draft.device = Some(job.device.to_string());
            draft.details = notice.details;
            shared.platform.raise_security_event(draft).await;
        }
        let types = job.after.alarm_type.into_iter().chain(cleared_unavailable.then(|| "unavailable".to_owned()));
        for alarm_type in types {
            match shared.store.latest_alarm(&job.tenant, &job.device, &alarm_type).await {
                Ok(Some(row)) => {
                    if let Some(event) = alarm_live_event(&shared, row).await {
                        shared.publish(event);
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "reading an alarm back for the live stream failed"),
            }
        }
    });
}

async fn prepare(shared: &Shared, commands: Vec<Command>, seen_written: &mut SeenWritten) -> Prepared {
    let mut prepared = Prepared::empty();
    // Live events are built only while someone listens.
    let want_live = shared.live.receiver_count() > 0;
    for command in commands {
        let job = match command {
            Command::Write(job) => job,
            Command::Flush(done) => {
                prepared.flushes.push(done);
                continue;
            }
        };
        let keys = match shared.keys.get(&job.tenant, &job.device).await {
            Ok(keys) => keys,
            Err(error) => {
                let error = match error {
                    KeyError::Unknown => {
                        IngestError::UnknownDevice { tenant: job.tenant.to_string(), device: job.device.to_string() }
                    }
                    KeyError::Other(reason) => IngestError::Storage(reason),
                };
                match job.done {
                    Some(done) => {
                        let _waiter_gone_is_fine = done.send(Err(error));
                    }
                    None => {
                        tracing::warn!(tenant = %job.tenant, device = %job.device, %error, "QoS 0 message not stored")
                    }
                }
                continue;
            }
        };
        let start = prepared.batch.rows.len();
        let mut after = AfterCommit::default();
        rows_for(&job, &keys, want_live, &mut prepared.batch.rows, &mut after);
        // "Seen" is when the message arrived, not the (device-chosen) data time.
        let at_ms = job.received_at_ms;
        let device_key = (Arc::clone(&job.tenant), Arc::clone(&job.device));
        let seen = match seen_written.get(&device_key) {
            Some(&written) if (written..written + SEEN_RESOLUTION_MS).contains(&at_ms) => None,
            _ => {
                if seen_written.len() >= 1_000_000 {
                    seen_written.clear();
                }
                seen_written.insert(device_key, at_ms);
                prepared.batch.seen.push(DeviceSeen {
                    tenant: job.tenant.to_string(),
                    device: job.device.to_string(),
                    at_ms,
                });
                Some(prepared.batch.seen.len() - 1)
            }
        };
        prepared.jobs.push(PreparedJob {
            tenant: job.tenant,
            device: job.device,
            rows: start..prepared.batch.rows.len(),
            seen,
            done: job.done,
            after,
            _budget: job.budget,
        });
    }
    prepared
}

/// A random positive 63-bit number.
fn random_seq() -> i64 {
    i64::try_from(rand::random::<u64>() >> 1).unwrap_or(0)
}

pub(crate) fn row_id(ts: i64) -> String {
    format!("{:016x}{}", ts.max(0), random_id(6))
}

/// The JSON text of a map, serialised from the map itself (no copy into a `Value`). A map
/// with string keys always serialises, so the empty fallback is never taken.
fn json_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).unwrap_or_default()
}

/// Appends the rows of one message and what to publish once they are committed.
fn rows_for(job: &Job, keys: &DeviceKeys, want_live: bool, rows: &mut Vec<DeviceDataRow>, after: &mut AfterCommit) {
    let (tenant, device) = (&*job.tenant, &*job.device);
    match &job.parsed {
        Parsed::Telemetry(groups) => {
            for group in groups {
                let plain = json_text(&group.values);
                rows.push(DeviceDataRow::Telemetry(TelemetryRow {
                    tenant: tenant.to_owned(),
                    device: device.to_owned(),
                    ts: group.ts,
                    seq: random_seq(),
                    sealed: keys.seal_telemetry(tenant, device, group.ts, plain.as_bytes()),
                }));
                if want_live {
                    let mut data = Map::new();
                    data.insert("device".into(), Value::from(device));
                    data.insert("ts".into(), Value::from(format_rfc3339_ms(group.ts)));
                    data.insert("values".into(), Value::Object(group.values.clone()));
                    after.live.push(live(job, LiveTopic::Telemetry, group.ts, data));
                }
            }
        }
        Parsed::Event(event) => {
            let id = row_id(event.ts);
            let plain = json_text(&event.body);
            rows.push(DeviceDataRow::Event(DeviceEventRow {
                tenant: tenant.to_owned(),
                device: device.to_owned(),
                ts: event.ts,
                id: id.clone(),
                type_tag: keys.event_type_tag(&event.event_type),
                sealed: keys.seal_record(seal::EVENTS, tenant, device, &id, plain.as_bytes()),
            }));
            let security = event.event_type.strip_prefix("security.");
            if let Some(suffix) = security {
                after.security = Some(security_notice(suffix, &event.event_type, &event.body));
            }
            if want_live {
                let mut data = Map::new();
                data.insert("device".into(), Value::from(device));
                data.insert("ts".into(), Value::from(format_rfc3339_ms(event.ts)));
                data.insert("id".into(), Value::from(id));
                for (key, value) in &event.body {
                    data.entry(key.clone()).or_insert_with(|| value.clone());
                }
                if security.is_some() {
                    after.live.push(live(job, LiveTopic::SecurityEvent, event.ts, data.clone()));
                }
                after.live.push(live(job, LiveTopic::Events, event.ts, data));
            }
        }
        Parsed::Alarm(alarm) => {
            rows.push(alarm_row(tenant, device, keys, alarm, job.received_at_ms));
            after.alarm_type = Some(alarm.alarm_type.clone());
        }
        Parsed::Attestation(report) => {
            let id = row_id(report.ts);
            let plain = json_text(&report.body);
            rows.push(DeviceDataRow::Attestation(AttestationRow {
                tenant: tenant.to_owned(),
                device: device.to_owned(),
                ts: report.ts,
                id: id.clone(),
                sealed: keys.seal_record(seal::ATTESTATIONS, tenant, device, &id, plain.as_bytes()),
            }));
            after.attestation = Some(report.body.clone());
            if want_live {
                let mut data = report.body.clone();
                data.insert("device".into(), Value::from(device));
                data.insert("ts".into(), Value::from(format_rfc3339_ms(report.ts)));
                after.live.push(live(job, LiveTopic::Attestation, report.ts, data));
            }
        }
        // Handled outside the batch (read-modify-write); never queued.
        Parsed::TwinReported(_) => {}
    }
}

/// `received_at_ms` names a new alarm: alarm ids sort by when they were raised here, whatever
/// time the device claims.
fn alarm_row(
    tenant: &str,
    device: &str,
    keys: &DeviceKeys,
    alarm: &AlarmPayload,
    received_at_ms: i64,
) -> DeviceDataRow {
    if alarm.clear {
        return DeviceDataRow::ClearAlarm(AlarmClear {
            tenant: tenant.to_owned(),
            device: device.to_owned(),
            alarm_type: alarm.alarm_type.clone(),
            ts: alarm.ts,
        });
    }
    let severity = alarm.severity.unwrap_or(Severity::Major);
    DeviceDataRow::RaiseAlarm(AlarmRaise {
        tenant: tenant.to_owned(),
        id: row_id(received_at_ms),
        device: device.to_owned(),
        alarm_type: alarm.alarm_type.clone(),
        severity,
        text_sealed: alarm.text.as_ref().map(|text| seal_alarm_text(keys, tenant, device, &alarm.alarm_type, text)),
        ts: alarm.ts,
    })
}

pub(crate) fn seal_alarm_text(keys: &DeviceKeys, tenant: &str, device: &str, alarm_type: &str, text: &str) -> Vec<u8> {
    keys.seal_record(seal::ALARM_TEXT, tenant, device, alarm_type, text.as_bytes())
}

fn live(job: &Job, topic: LiveTopic, ts: i64, data: Map<String, Value>) -> LiveEvent {
    LiveEvent {
        tenant: Arc::clone(&job.tenant),
        device: Arc::clone(&job.device),
        topic,
        ts,
        data: Arc::new(Value::Object(data)),
    }
}

fn security_notice(suffix: &str, reported_type: &str, body: &Map<String, Value>) -> SecurityNotice {
    let event_type = SecurityEventType::reported_by_device(suffix);
    let severity = match body.get("severity").and_then(Value::as_str).and_then(Severity::parse) {
        Some(severity) => severity,
        None if event_type == SecurityEventType::Tamper => Severity::Critical,
        None => Severity::Major,
    };
    let mut details = Map::new();
    details.insert("device_event_type".into(), Value::from(reported_type));
    if let Some(text) = body.get("text") {
        details.insert("text".into(), text.clone());
    }
    SecurityNotice { event_type, severity, details: Value::Object(details) }
}
