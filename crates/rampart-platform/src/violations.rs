//! ACL violations → quarantine (SPEC §10): the denials of one device are counted in the
//! tenant's window (default 3 in 60 s); past the threshold the device is quarantined (its
//! connections cut off, `quarantine` event, audited), until a person lifts it with
//! `DELETE /api/v1/devices/{id}/quarantine`. Bounded like the address counters.

use std::collections::{HashMap, VecDeque};
use std::sync::PoisonError;

use rampart_core::{AuditAction, DeviceId, DeviceStatus, Permission, SecurityEventType, Severity};
use rampart_store::{Device, StoreError};
use serde_json::json;

use crate::error::{ServiceError, ServiceResult};
use crate::ip_blocks::MAX_TRACKED;
use crate::platform::Platform;
use crate::principal::Principal;
use crate::security_events::SecurityEventDraft;

/// Denials per device, newest last.
#[derive(Debug, Default)]
pub(crate) struct Violations(HashMap<(String, String), VecDeque<i64>>);

impl Platform {
    /// Counts `count` ACL denials of `device`; quarantines it past the tenant's threshold.
    pub async fn note_acl_violations(&self, tenant: &str, device: &str, count: u32) {
        let Ok(policy) = self.tenant_policy_for(tenant).await else { return };
        let detection = policy.detection;
        let now = self.now_ms();
        let window_ms = i64::from(detection.acl_violation_window_s) * 1000;
        let threshold = detection.acl_violation_threshold.max(1) as usize;
        let passed = {
            let mut violations = self.violations.lock().unwrap_or_else(PoisonError::into_inner);
            if violations.0.len() >= MAX_TRACKED {
                violations.0.retain(|_, times| times.back().is_some_and(|last| *last > now - window_ms));
            }
            let times = violations.0.entry((tenant.to_owned(), device.to_owned())).or_default();
            for _ in 0..count.min(threshold as u32) {
                times.push_back(now);
            }
            while times.front().is_some_and(|first| *first <= now - window_ms) || times.len() > threshold {
                times.pop_front();
            }
            let passed = times.len() >= threshold;
            if passed {
                times.clear();
            }
            passed
        };
        if !passed {
            return;
        }
        let why = format!("{threshold} ACL violations within {} s", detection.acl_violation_window_s);
        match self.quarantine_device_by_policy(tenant, device, &why).await {
            Ok(true) => {
                let mut draft = SecurityEventDraft::new(tenant, SecurityEventType::Quarantine, Severity::Major);
                draft.device = Some(device.to_owned());
                draft.details = json!({"reason": why});
                self.raise_security_event(draft).await;
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, tenant, device, "quarantining after ACL violations failed"),
        }
    }

    /// Lifts a quarantine (`devices:write`, audited): the device may connect again with the
    /// credentials it has. `Conflict` unless it is quarantined.
    pub async fn lift_quarantine(&self, principal: &Principal, id: &DeviceId) -> ServiceResult<Device> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        let to = match device.last_seen {
            Some(_) => DeviceStatus::Active,
            None => DeviceStatus::Registered,
        };
        let lifted =
            match self.store.set_device_status(&device.tenant, &device.id, &[DeviceStatus::Quarantined], to).await {
                Ok(device) => device,
                Err(StoreError::Conflict(_)) => {
                    return Err(ServiceError::Conflict(format!("the device is {}, not quarantined", device.status)));
                }
                Err(other) => return Err(other.into()),
            };
        self.violations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .remove(&(device.tenant.clone(), device.id.clone()));
        let details = json!({"status": lifted.status.as_str()});
        self.audit_by(principal, AuditAction::DeviceQuarantineLift, format!("device:{}", device.id), details).await;
        Ok(lifted)
    }
}
