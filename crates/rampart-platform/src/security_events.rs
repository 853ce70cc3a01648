//! Security events (SPEC §10): raised by every edge through one call, stored under the
//! tenant's live incarnation and logged (without secrets); listed within a principal's scope.
//! Detection rules and responses build on these records.

use std::sync::atomic::{AtomicU32, Ordering};

use rampart_core::{Permission, SecurityEventType, Severity};
use rampart_crypto::random_id;
use rampart_store::{Page, SecurityEvent, SecurityEventFilter};
use serde_json::Value;

use crate::error::ServiceResult;
use crate::platform::Platform;
use crate::principal::Principal;

static EVENT_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A security event before it gets an id and a time.
#[derive(Debug, Clone)]
pub struct SecurityEventDraft {
    pub tenant: String,
    pub event_type: SecurityEventType,
    pub severity: Severity,
    pub source_ip: Option<String>,
    pub device: Option<String>,
    pub user: Option<String>,
    pub details: Value,
}

impl SecurityEventDraft {
    pub fn new(tenant: &str, event_type: SecurityEventType, severity: Severity) -> Self {
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
    /// Stores a security event in the tenant's live incarnation; failures are logged, never
    /// returned, because the path that raises an event must still answer its client. A
    /// tenant that does not exist gets no event: a username can name any tenant, and nobody
    /// may fill the store with events of made-up tenants.
    pub async fn raise_security_event(&self, draft: SecurityEventDraft) {
        let incarnation = match self.incarnations.current(&draft.tenant).await {
            Ok(Some(uid)) => uid,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(%error, "could not resolve the tenant of a security event");
                return;
            }
        };
        let ts = self.now_ms();
        let event = SecurityEvent {
            tenant: draft.tenant,
            incarnation,
            // Ids sort by time (then by order within this process), so listings page newest
            // first by id; the random tail keeps ids of different nodes apart.
            id: format!("{:016x}{:08x}{}", ts.max(0), EVENT_COUNTER.fetch_add(1, Ordering::Relaxed), random_id(4)),
            ts,
            event_type: draft.event_type,
            severity: draft.severity,
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

    /// The principal's tenant's security events, newest first, within its scope (a
    /// group-scoped principal sees only events about devices in its groups).
    pub async fn security_events(
        &self,
        principal: &Principal,
        mut filter: SecurityEventFilter,
        page: &Page,
    ) -> ServiceResult<Vec<SecurityEvent>> {
        self.authorize(principal, Permission::SecurityRead).await?;
        filter.within_groups = principal.scope.group_filter();
        Ok(self.store.list_security_events(&principal.tenant, &principal.tenant_uid, &filter, page).await?)
    }
}
