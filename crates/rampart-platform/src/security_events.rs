//! Raising security events (SPEC §10): one call for every edge, stored per tenant and logged
//! (without secrets). Detection rules and responses build on these records.

use std::sync::atomic::{AtomicU32, Ordering};

use rampart_crypto::random_id;
use rampart_store::SecurityEvent;
use serde_json::Value;

use crate::provisioning::Platform;

static EVENT_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Severity of a security event, the same scale as alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Major,
    Minor,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::Major => "MAJOR",
            Severity::Minor => "MINOR",
            Severity::Warning => "WARNING",
        }
    }
}

/// A security event before it gets an id and a time.
#[derive(Debug, Clone)]
pub struct SecurityEventDraft {
    pub tenant: String,
    /// e.g. `acl_violation`.
    pub event_type: &'static str,
    pub severity: Severity,
    pub source_ip: Option<String>,
    pub device: Option<String>,
    pub user: Option<String>,
    pub details: Value,
}

impl SecurityEventDraft {
    pub fn new(tenant: &str, event_type: &'static str, severity: Severity) -> Self {
        SecurityEventDraft {
            tenant: tenant.to_owned(),
            event_type,
            severity,
            source_ip: None,
            device: None,
            user: None,
            details: Value::Object(serde_json::Map::new()),
        }
    }
}

impl Platform {
    /// Stores a security event; failures are logged, never returned, because the path that
    /// raises an event must still answer its client.
    pub async fn raise_security_event(&self, draft: SecurityEventDraft) {
        let ts = self.now_ms();
        let event = SecurityEvent {
            tenant: draft.tenant,
            // Ids sort by time (then by order within this process), so listings page newest
            // first by id; the random tail keeps ids of different nodes apart.
            id: format!("{:016x}{:08x}{}", ts.max(0), EVENT_COUNTER.fetch_add(1, Ordering::Relaxed), random_id(4)),
            ts,
            event_type: draft.event_type.to_owned(),
            severity: draft.severity.as_str().to_owned(),
            source_ip: draft.source_ip,
            device: draft.device,
            user: draft.user,
            details_json: draft.details.to_string(),
        };
        tracing::warn!(
            tenant = %event.tenant,
            event_type = %event.event_type,
            severity = %event.severity,
            device = event.device.as_deref().unwrap_or(""),
            source_ip = event.source_ip.as_deref().unwrap_or(""),
            "security event"
        );
        if let Err(error) = self.store.insert_security_event(&event).await {
            tracing::error!(%error, "storing a security event failed");
        }
    }
}
