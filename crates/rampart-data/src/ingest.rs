//! The [`Ingestor`]: the one entry point for device data, from validation to durable commit,
//! and the read side (queries, alarm updates) that shares its key cache and live channel.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rampart_platform::Platform;
use rampart_store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::error::IngestError;
use crate::keys::KeyCache;
use crate::kind::DataKind;
use crate::live::{LiveEvent, LiveHub, LiveReceiver};
use crate::payload::{self, Parsed};
use crate::writer::{self, Command, Job};

/// Tunables of the ingest pipeline.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Most messages committed in one transaction. Batches only grow this large under load
    /// (a commit takes whatever arrived during the previous one), so a high cap costs latency
    /// only when the alternative is queueing.
    pub max_batch: usize,
    /// Messages waiting for the writer before `submit` waits and `submit_nowait` drops.
    pub queue_capacity: usize,
    /// Bytes of messages (payload plus [`QUEUED_MESSAGE_OVERHEAD`] each) queued or being
    /// committed before `submit` waits and `submit_nowait` drops: what devices can make this
    /// process hold, whatever the sizes of their messages. At most `u32::MAX`.
    pub queue_bytes: usize,
    /// Unwrapped device keys kept in memory.
    pub key_cache_capacity: usize,
    /// Bytes of live events one subscriber may leave unread before it is dropped.
    pub live_subscriber_bytes: usize,
    /// How often silent devices are looked for (`unavailable` alarms); `None` disables it.
    pub availability_check: Option<Duration>,
    /// How often operations past their deadline are failed; `None` disables it.
    pub operation_timeouts: Option<Duration>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_batch: 4000,
            queue_capacity: 100_000,
            queue_bytes: 64 * 1024 * 1024,
            key_cache_capacity: 100_000,
            live_subscriber_bytes: 1024 * 1024,
            availability_check: Some(Duration::from_secs(1)),
            operation_timeouts: Some(Duration::from_secs(1)),
        }
    }
}

/// What one queued message counts for beyond its payload (its parsed form, ids, the job).
pub const QUEUED_MESSAGE_OVERHEAD: usize = 256;

/// Validates `payload` for `kind` exactly as [`Ingestor::submit`] does, without storing or
/// counting anything (dry runs, the fuzz target). `Err` is always [`IngestError::Malformed`].
pub fn check_payload(kind: DataKind, payload: &[u8], received_at_ms: i64) -> Result<(), IngestError> {
    payload::parse(kind, payload, received_at_ms).map(drop).map_err(|reason| IngestError::Malformed(reason.0))
}

/// What the writer tasks, the availability monitor and the queries share.
pub(crate) struct Shared {
    pub(crate) platform: Arc<Platform>,
    /// The device-data half of the store: this crate is the data plane's service layer.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Arc<KeyCache>,
    pub(crate) live: LiveHub,
    pub(crate) malformed_total: AtomicU64,
    /// Devices whose `unavailable` alarm this process raised and has not yet seen cleared;
    /// only used to publish the clearing on the live channel (the store clears it anyway).
    pub(crate) unavailable_open: Mutex<HashSet<(String, String)>>,
    /// Serialises reported-twin merges of one device in this process (they are
    /// read-modify-write); other nodes are caught by the version check.
    pub(crate) twin_locks: crate::twin::TwinLocks,
}

impl Shared {
    pub(crate) fn publish(&self, event: LiveEvent) {
        self.live.publish(event);
    }

    pub(crate) fn unavailable_open(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.unavailable_open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Device data service: ingest (group commit), queries, alarms and the live channel.
/// Cheap to clone; every clone shares one writer, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct Ingestor {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    queue: mpsc::Sender<Command>,
    /// The queue's byte budget: one permit per byte.
    budget: Arc<Semaphore>,
    budget_total: u32,
}

impl Ingestor {
    /// Starts the group-commit writer and (unless disabled) the availability monitor. Must be
    /// called inside a tokio runtime.
    pub fn start(platform: Arc<Platform>, store: Arc<dyn Store>, settings: IngestSettings) -> Ingestor {
        let live = LiveHub::new(settings.live_subscriber_bytes.max(4096));
        let keys = Arc::new(KeyCache::new(Arc::clone(&platform), settings.key_cache_capacity));
        keys.spawn_invalidation();
        let shared = Arc::new(Shared {
            platform,
            store,
            keys,
            live,
            malformed_total: AtomicU64::new(0),
            unavailable_open: Mutex::new(HashSet::new()),
            twin_locks: crate::twin::TwinLocks::default(),
        });
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        writer::spawn(Arc::clone(&shared), receiver, settings.max_batch.max(1));
        let budget_total = u32::try_from(settings.queue_bytes.max(QUEUED_MESSAGE_OVERHEAD)).unwrap_or(u32::MAX);
        let budget = Arc::new(Semaphore::new(budget_total as usize));
        let inner = Arc::new(Inner { shared, queue, budget, budget_total });
        if let Some(period) = settings.availability_check {
            every(Arc::downgrade(&inner), period, "availability check", |shared| async move {
                crate::availability::check_once(&shared).await
            });
        }
        if let Some(period) = settings.operation_timeouts {
            every(Arc::downgrade(&inner), period, "failing timed-out operations", |shared| async move {
                crate::operations::time_out_once(&shared).await
            });
        }
        Ingestor { inner }
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The budget a message of `payload_len` bytes takes (a message larger than the whole
    /// budget takes all of it, so it still goes through, alone).
    fn cost(&self, payload_len: usize) -> u32 {
        let cost = payload_len.saturating_add(QUEUED_MESSAGE_OVERHEAD);
        u32::try_from(cost).unwrap_or(u32::MAX).min(self.inner.budget_total)
    }

    /// Waits for `payload_len` bytes of the queue's budget.
    async fn reserve(&self, payload_len: usize) -> Result<OwnedSemaphorePermit, IngestError> {
        let budget = Arc::clone(&self.inner.budget);
        budget.acquire_many_owned(self.cost(payload_len)).await.map_err(|_| IngestError::Stopped)
    }

    /// Takes `payload_len` bytes of the queue's budget now, or answers `Overloaded`.
    fn try_reserve(&self, payload_len: usize) -> Result<OwnedSemaphorePermit, IngestError> {
        let budget = Arc::clone(&self.inner.budget);
        budget.try_acquire_many_owned(self.cost(payload_len)).map_err(|error| match error {
            tokio::sync::TryAcquireError::NoPermits => IngestError::Overloaded,
            tokio::sync::TryAcquireError::Closed => IngestError::Stopped,
        })
    }

    fn validate(&self, kind: DataKind, payload: &[u8], received_at_ms: i64) -> Result<Parsed, IngestError> {
        payload::parse(kind, payload, received_at_ms).map_err(|reason| {
            self.shared().malformed_total.fetch_add(1, Ordering::Relaxed);
            IngestError::Malformed(reason.0)
        })
    }

    /// Parses and validates `payload` (untrusted bytes from a device) for `kind`, encrypts it
    /// under the device key, and returns once it is durably committed (SQLite WAL with
    /// `synchronous=FULL`; PostgreSQL commit). A malformed payload is rejected whole with
    /// [`IngestError::Malformed`], nothing of it is stored, and [`Ingestor::malformed_total`]
    /// counts it.
    ///
    /// An event whose `type` starts with `security.` also raises a security event (SPEC §10)
    /// after the commit, through [`Platform::raise_security_event`] (`security.tamper` →
    /// `tamper`, other known §10 types likewise, anything else `device_security_event`), and
    /// appears on the live channel as [`crate::LiveTopic::SecurityEvent`]; callers do not raise
    /// it again.
    pub async fn submit(
        &self,
        tenant: &str,
        device: &str,
        kind: DataKind,
        payload: &[u8],
        received_at_ms: i64,
    ) -> Result<(), IngestError> {
        let parsed = self.validate(kind, payload, received_at_ms)?;
        if let Parsed::TwinReported(patch) = parsed {
            return crate::twin::apply_reported(self.shared(), tenant, device, patch, received_at_ms).await;
        }
        let budget = self.reserve(payload.len()).await?;
        let (done, outcome) = oneshot::channel();
        let job = Job::new(tenant, device, received_at_ms, parsed, Some(done), budget);
        self.inner.queue.send(Command::Write(job)).await.map_err(|_| IngestError::Stopped)?;
        outcome.await.unwrap_or(Err(IngestError::Stopped))
    }

    /// For QoS 0: the same validation, synchronously; the message is queued for the next
    /// commit without waiting for it. A full queue (in messages or in bytes) answers
    /// [`IngestError::Overloaded`] (the message is dropped); storage failures after that are
    /// only logged.
    pub fn submit_nowait(
        &self,
        tenant: &str,
        device: &str,
        kind: DataKind,
        payload: &[u8],
        received_at_ms: i64,
    ) -> Result<(), IngestError> {
        let parsed = self.validate(kind, payload, received_at_ms)?;
        let budget = self.try_reserve(payload.len())?;
        if let Parsed::TwinReported(patch) = parsed {
            // The merge runs on its own task; the budget it holds bounds how many can.
            let shared = Arc::clone(&self.inner.shared);
            let (tenant, device) = (tenant.to_owned(), device.to_owned());
            tokio::spawn(async move {
                let _budget = budget;
                if let Err(error) = crate::twin::apply_reported(&shared, &tenant, &device, patch, received_at_ms).await
                {
                    tracing::warn!(%tenant, %device, %error, "reported twin update (QoS 0) failed");
                }
            });
            return Ok(());
        }
        let job = Job::new(tenant, device, received_at_ms, parsed, None, budget);
        self.inner.queue.try_send(Command::Write(job)).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => IngestError::Stopped,
        })
    }

    /// Every committed piece of device data of `tenant`, as it is committed (filter by device,
    /// topic and scope yourself).
    pub fn subscribe_live(&self, tenant: &str) -> LiveReceiver {
        self.shared().live.subscribe(tenant)
    }

    /// Live subscribers dropped for falling behind their byte limit, since start.
    pub fn live_subscribers_dropped(&self) -> u64 {
        self.shared().live.dropped()
    }

    /// Returns once everything submitted before the call is committed (graceful shutdown).
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.inner.queue.send(Command::Flush(done)).await.is_ok() {
            // An error means the writer is gone, so nothing is pending either.
            let _writer_gone_is_fine = flushed.await;
        }
    }

    /// Messages rejected as malformed since start.
    pub fn malformed_total(&self) -> u64 {
        self.shared().malformed_total.load(Ordering::Relaxed)
    }
}

/// Runs `job` every `period` until the ingestor is gone; a failed round is logged and the next
/// one runs as usual.
fn every<Job, Round, Error>(inner: std::sync::Weak<Inner>, period: Duration, what: &'static str, job: Job)
where
    Job: Fn(Arc<Shared>) -> Round + Send + 'static,
    Round: std::future::Future<Output = Result<usize, Error>> + Send,
    Error: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            let shared = Arc::clone(&inner.shared);
            drop(inner);
            if let Err(error) = job(shared).await {
                tracing::warn!(%error, "{what} failed");
            }
        }
    });
}
