//! ACL denials of one connection: every one is counted; `acl_violation` events are recorded
//! in full up to a budget per window, and the rest of the window as one event carrying
//! `suppressed`, so a flood of denied publishes cannot become a flood of security-event
//! writes (every denial is still accounted for).

use std::net::SocketAddr;
use std::sync::Arc;

use rampart_core::{SecurityEventType, Severity};
use rampart_platform::SecurityEventDraft;

use super::Connection;
use crate::Shared;
use crate::identity::Identity;

/// `acl_violation` events one connection records in full per window.
const ACL_EVENTS_PER_WINDOW: u32 = 10;
const ACL_EVENT_WINDOW_MS: u64 = 10_000;

pub(super) struct DenialBudget {
    window_start_ms: u64,
    recorded: u32,
    /// The window's denials beyond the budget, if any.
    suppressed: Option<Suppressed>,
}

/// How many denials were only counted, and the last of them.
struct Suppressed {
    topic: String,
    action: &'static str,
    why: &'static str,
    count: u32,
}

impl DenialBudget {
    fn starting(now_ms: u64) -> DenialBudget {
        DenialBudget { window_start_ms: now_ms, recorded: 0, suppressed: None }
    }
}

impl Connection {
    /// Records a denial as an `acl_violation` event, within this connection's budget.
    pub(super) fn denied(&mut self, topic: &str, action: &'static str, why: &'static str) {
        self.shared.count_denial();
        let now = self.shared.now_ms();
        if self.denials.as_ref().is_some_and(|budget| now >= budget.window_start_ms.saturating_add(ACL_EVENT_WINDOW_MS))
        {
            self.report_suppressed();
            self.denials = None;
        }
        let budget = self.denials.get_or_insert_with(|| Box::new(DenialBudget::starting(now)));
        if budget.recorded < ACL_EVENTS_PER_WINDOW {
            budget.recorded += 1;
            self.shared.raise_acl_violation(&self.identity, topic, action, why, Some(self.peer), 0);
        } else {
            budget.suppressed = Some(Suppressed {
                topic: topic.to_owned(),
                action,
                why,
                count: budget.suppressed.as_ref().map_or(0, |last| last.count) + 1,
            });
        }
    }

    /// Records the denials of the current window that were only counted, as one event.
    pub(super) fn report_suppressed(&mut self) {
        if let Some(last) = self.denials.as_mut().and_then(|budget| budget.suppressed.take()) {
            // Counted when they happened.
            self.shared.raise_acl_violation(
                &self.identity,
                &last.topic,
                last.action,
                last.why,
                Some(self.peer),
                last.count,
            );
        }
    }
}

impl Shared {
    /// Counts a denial (every one, recorded as an event or not).
    pub(crate) fn count_denial(&self) {
        self.stats.acl_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records an `acl_violation` security event without holding up the connection;
    /// `suppressed` > 0 says how many denials, the last of them this one, it stands for.
    pub(crate) fn raise_acl_violation(
        &self,
        identity: &Identity,
        topic: &str,
        action: &str,
        why: &str,
        peer: Option<SocketAddr>,
        suppressed: u32,
    ) {
        let mut draft = SecurityEventDraft::new(identity.tenant(), SecurityEventType::AclViolation, Severity::Minor);
        draft.source_ip = peer.map(|peer| peer.ip().to_string());
        let mut details = serde_json::json!({"topic": topic, "action": action, "reason": why, "protocol": "mqtt"});
        if suppressed > 0 {
            details["suppressed"] = serde_json::Value::from(suppressed);
        }
        match identity {
            Identity::Device { device, .. } => {
                draft.device = Some(device.clone());
                details["device"] = serde_json::Value::String(device.clone());
            }
            Identity::Application { principal } => {
                details["api_key"] = serde_json::Value::from(principal.api_key_id());
            }
        }
        draft.details = details;
        match identity {
            // A device's denials count towards its quarantine (SPEC §10).
            Identity::Device { device, .. } => {
                let platform = Arc::clone(&self.platform);
                let (tenant, device) = (identity.tenant().to_owned(), device.clone());
                tokio::spawn(async move {
                    platform.raise_security_event(draft).await;
                    platform.note_acl_violations(&tenant, &device, suppressed.max(1)).await;
                });
            }
            Identity::Application { .. } => self.raise_in_background(draft),
        }
    }

    pub(crate) fn raise_in_background(&self, draft: SecurityEventDraft) {
        let platform = Arc::clone(&self.platform);
        tokio::spawn(async move { platform.raise_security_event(draft).await });
    }
}
