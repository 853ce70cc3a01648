//! Per-tenant quotas (retained messages, persistent sessions): a refusal is answered with the
//! protocol's quota code by the caller, and recorded here as a `quota_exceeded` security event,
//! at most once per tenant and quota per [`QUOTA_EVENT_EVERY_MS`], so a client that keeps
//! hitting a quota cannot turn it into a flood of event writes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use rampart_core::{SecurityEventType, Severity};
use rampart_platform::SecurityEventDraft;

use crate::Shared;
use crate::identity::Identity;

/// At most one `quota_exceeded` event per tenant and quota in this many milliseconds.
pub(crate) const QUOTA_EVENT_EVERY_MS: u64 = 60_000;

/// A per-tenant quota of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Quota {
    RetainedMessages,
    PersistentSessions,
}

impl Quota {
    fn as_str(self) -> &'static str {
        match self {
            Quota::RetainedMessages => "retained_messages",
            Quota::PersistentSessions => "persistent_sessions",
        }
    }

    fn limit(self, shared: &Shared) -> usize {
        match self {
            Quota::RetainedMessages => shared.settings.max_retained_per_tenant,
            Quota::PersistentSessions => shared.settings.max_sessions_per_tenant,
        }
    }
}

/// When each tenant last got an event for each quota, and how many refusals it has not
/// reported since.
#[derive(Default)]
pub(crate) struct QuotaEvents {
    last: Mutex<HashMap<(String, Quota), (u64, u64)>>,
}

impl Shared {
    /// A quota refused something of `identity`'s tenant.
    pub(crate) fn quota_exceeded(&self, identity: &Identity, quota: Quota, peer: Option<SocketAddr>) {
        let tenant = identity.tenant();
        tracing::debug!(tenant, quota = quota.as_str(), "quota reached");
        let now = self.now_ms();
        let unreported = {
            let mut last = self.quota_events.last.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = last.entry((tenant.to_owned(), quota)).or_insert((0, 0));
            if entry.0 != 0 && now < entry.0.saturating_add(QUOTA_EVENT_EVERY_MS) {
                entry.1 += 1;
                return;
            }
            let unreported = entry.1;
            *entry = (now.max(1), 0);
            unreported
        };
        let mut draft = SecurityEventDraft::new(tenant, SecurityEventType::QuotaExceeded, Severity::Warning);
        draft.source_ip = peer.map(|peer| peer.ip().to_string());
        let mut details = serde_json::json!({"quota": quota.as_str(), "limit": quota.limit(self), "protocol": "mqtt"});
        if unreported > 0 {
            details["suppressed"] = serde_json::Value::from(unreported);
        }
        match identity {
            Identity::Device { device, .. } => draft.device = Some(device.clone()),
            Identity::Application { principal } => details["api_key"] = serde_json::Value::from(principal.api_key_id()),
        }
        draft.details = details;
        self.raise_in_background(draft);
    }
}
