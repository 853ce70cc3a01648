//! The live channel: every committed piece of device data, once, for Server-Sent Events and
//! later for application fan-out. Only committed data is published, never rejected input.

use std::sync::Arc;

/// Which stream an event belongs to; `as_str` is the SSE event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LiveTopic {
    Telemetry,
    Events,
    Alarms,
    /// A device reported an event whose type starts with `security.`; the ingestor has already
    /// raised the security event (SPEC §10) through the platform.
    SecurityEvent,
    Attestation,
    TwinReported,
    /// An operation was created or changed status.
    Operations,
}

impl LiveTopic {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveTopic::Telemetry => "telemetry",
            LiveTopic::Events => "events",
            LiveTopic::Alarms => "alarms",
            LiveTopic::SecurityEvent => "security",
            LiveTopic::Attestation => "attestation",
            LiveTopic::TwinReported => "twin",
            LiveTopic::Operations => "operations",
        }
    }

    /// The topic named `name` (as in `?topics=telemetry,alarms`).
    pub fn parse(name: &str) -> Option<LiveTopic> {
        [
            LiveTopic::Telemetry,
            LiveTopic::Events,
            LiveTopic::Alarms,
            LiveTopic::SecurityEvent,
            LiveTopic::Attestation,
            LiveTopic::TwinReported,
            LiveTopic::Operations,
        ]
        .into_iter()
        .find(|topic| topic.as_str() == name)
    }
}

/// One piece of committed device data. Cheap to clone (shared strings and JSON).
#[derive(Clone)]
pub struct LiveEvent {
    pub tenant: Arc<str>,
    pub device: Arc<str>,
    pub topic: LiveTopic,
    /// Epoch milliseconds of the data (the measurement time, the event time, the alarm's last time).
    pub ts: i64,
    /// The JSON object sent as SSE data: `{"device","ts",...}` with `ts` in RFC 3339.
    /// Telemetry: `{"device","ts","values":{"<series>":n}}`; events: `{"device","ts","id","type","text",...}`;
    /// alarms: the alarm as the API lists it plus `"device"` and `"ts"`.
    pub data: Arc<serde_json::Value>,
}

impl std::fmt::Debug for LiveEvent {
    // Device data stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEvent")
            .field("tenant", &self.tenant)
            .field("device", &self.device)
            .field("topic", &self.topic)
            .field("ts", &self.ts)
            .finish_non_exhaustive()
    }
}

impl LiveEvent {
    /// The bytes this event holds a subscriber to: its data as JSON text, roughly.
    fn weight(&self) -> usize {
        // Counting the encoded text is exact but costs a serialisation; a walk over the
        // values is cheaper and bounds it from above closely enough for a memory cap.
        fn size(value: &serde_json::Value) -> usize {
            match value {
                serde_json::Value::Null | serde_json::Value::Bool(_) => 5,
                serde_json::Value::Number(_) => 24,
                serde_json::Value::String(text) => text.len() + 2,
                serde_json::Value::Array(items) => 2 + items.iter().map(|item| size(item) + 1).sum::<usize>(),
                serde_json::Value::Object(map) => {
                    2 + map.iter().map(|(key, item)| key.len() + 4 + size(item)).sum::<usize>()
                }
            }
        }
        64 + size(&self.data)
    }
}

/// One subscriber's feed: its tenant, and how many bytes wait in it.
struct Feed {
    tenant: Arc<str>,
    sender: tokio::sync::mpsc::UnboundedSender<LiveEvent>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

/// The live channel: every committed piece of device data goes to the subscribers of its
/// tenant. Each subscriber may hold at most `byte_limit` bytes of events it has not read; a
/// subscriber that falls that far behind is dropped (its stream ends and the client
/// reconnects), so a stalled client can pin no more than that.
pub(crate) struct LiveHub {
    feeds: std::sync::Mutex<Vec<Feed>>,
    byte_limit: usize,
    dropped: std::sync::atomic::AtomicU64,
}

impl LiveHub {
    pub(crate) fn new(byte_limit: usize) -> Self {
        LiveHub { feeds: std::sync::Mutex::new(Vec::new()), byte_limit, dropped: Default::default() }
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, Vec<Feed>> {
        self.feeds.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes to the events of `tenant`.
    pub(crate) fn subscribe(&self, tenant: &str) -> LiveReceiver {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        self.feeds().push(Feed { tenant: Arc::from(tenant), sender, queued: Arc::clone(&queued) });
        LiveReceiver { receiver, queued }
    }

    /// Hands the event to every subscriber of its tenant that has room for it; drops those
    /// that do not, and those that went away.
    pub(crate) fn publish(&self, event: LiveEvent) {
        use std::sync::atomic::Ordering;
        let mut feeds = self.feeds();
        if feeds.is_empty() {
            return;
        }
        let mut weight = None;
        let limit = self.byte_limit;
        let before = feeds.len();
        feeds.retain(|feed| {
            if feed.sender.is_closed() {
                return false;
            }
            if feed.tenant != event.tenant {
                return true;
            }
            let weight = *weight.get_or_insert_with(|| event.weight());
            if feed.queued.load(Ordering::Acquire).saturating_add(weight) > limit {
                tracing::warn!(tenant = %feed.tenant, "a live subscriber fell behind its byte limit: dropped");
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            feed.queued.fetch_add(weight, Ordering::AcqRel);
            feed.sender.send(event.clone()).is_ok()
        });
        if feeds.len() < before {
            tracing::debug!(gone = before - feeds.len(), "live subscribers left");
        }
    }

    /// How many subscribers there are (of every tenant): no work is done for none.
    pub(crate) fn receiver_count(&self) -> usize {
        self.feeds().len()
    }

    /// Subscribers dropped for falling behind, since start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A subscriber's end of the live channel. `recv` answers `None` once the subscriber was
/// dropped for falling behind (after what was queued), or the channel is gone.
pub struct LiveReceiver {
    receiver: tokio::sync::mpsc::UnboundedReceiver<LiveEvent>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

impl LiveReceiver {
    pub async fn recv(&mut self) -> Option<LiveEvent> {
        let event = self.receiver.recv().await?;
        self.queued.fetch_sub(
            event.weight().min(self.queued.load(std::sync::atomic::Ordering::Acquire)),
            std::sync::atomic::Ordering::AcqRel,
        );
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tenant: &str, text: &str) -> LiveEvent {
        LiveEvent {
            tenant: Arc::from(tenant),
            device: Arc::from("d1"),
            topic: LiveTopic::Telemetry,
            ts: 0,
            data: Arc::new(serde_json::json!({ "text": text })),
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_its_tenant_only_and_is_dropped_past_its_byte_limit() {
        let hub = LiveHub::new(4096);
        let mut acme = hub.subscribe("acme");
        let mut stalled = hub.subscribe("acme");
        let mut other = hub.subscribe("globex");
        hub.publish(event("acme", "hello"));
        assert_eq!(acme.recv().await.map(|e| e.data["text"].clone()), Some(serde_json::json!("hello")));
        // `acme` keeps reading; `stalled` never does.
        for _ in 0..10 {
            hub.publish(event("acme", &"x".repeat(1000)));
            assert!(acme.recv().await.is_some());
        }
        assert_eq!(hub.dropped(), 1, "the stalled subscriber was dropped");
        let mut held = 0;
        while stalled.recv().await.is_some() {
            held += 1;
        }
        assert!(held <= 5, "it held {held} events past its limit");
        drop(hub);
        assert!(other.recv().await.is_none(), "no event of another tenant");
    }
}
