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
