//! Attestation verdicts (SPEC §9): a device's report (`firmware_version`, `firmware_sha256`,
//! `secure_boot`) is compared with the tenant's firmware repository once it is stored. A hash
//! the repository holds is `trusted` (and its security counter becomes the device's installed
//! one); an unknown hash raises `untrusted_firmware` with a CRITICAL alarm, and quarantines
//! the device when the tenant policy says so; `secure_boot:false` raises
//! `secure_boot_disabled` and is `untrusted` too: such a device cannot vouch for what it runs.
//! With an empty repository there is nothing to judge by: `unknown`.

use std::sync::Arc;

use rampart_core::{AttestationStatus, SecurityEventType, Severity};
use rampart_platform::SecurityEventDraft;
use rampart_store::{AlarmRaise, DeviceFirmwareRow, FirmwareRow};
use serde_json::{Map, Value, json};

use crate::ingest::Shared;
use crate::queries::alarm_live_event;
use crate::writer::seal_alarm_text;

/// The alarm type raised on untrusted firmware: the security event's own name.
const UNTRUSTED_ALARM: &str = SecurityEventType::UntrustedFirmware.as_str();

/// What a report says, as far as the verdict goes.
struct Report {
    version: Option<String>,
    sha256: String,
    secure_boot: bool,
}

fn report(body: &Map<String, Value>) -> Option<Report> {
    Some(Report {
        version: body.get("firmware_version").and_then(Value::as_str).map(str::to_owned),
        sha256: body.get("firmware_sha256")?.as_str()?.to_ascii_lowercase(),
        secure_boot: body.get("secure_boot")?.as_bool()?,
    })
}

/// The verdict on a report, given the repository's images with its hash and whether the
/// repository holds any image at all.
fn verdict(report: &Report, known: Option<&FirmwareRow>, repository_empty: bool) -> AttestationStatus {
    match (known, report.secure_boot) {
        (Some(_), true) => AttestationStatus::Trusted,
        (Some(_), false) => AttestationStatus::Untrusted,
        (None, _) if repository_empty => AttestationStatus::Unknown,
        (None, _) => AttestationStatus::Untrusted,
    }
}

/// Judges a stored report and records the verdict, events, alarm and quarantine.
pub(crate) async fn judge(shared: Arc<Shared>, tenant: Arc<str>, device: Arc<str>, body: Map<String, Value>) {
    if let Err(error) = judge_inner(&shared, &tenant, &device, &body).await {
        tracing::warn!(%error, tenant = %tenant, device = %device, "judging an attestation failed");
    }
}

async fn judge_inner(
    shared: &Shared,
    tenant: &str,
    device: &str,
    body: &Map<String, Value>,
) -> Result<(), rampart_store::StoreError> {
    let Some(report) = report(body) else { return Ok(()) };
    let store = &shared.store;
    let images = store.firmware_by_sha256(tenant, &report.sha256).await?;
    let known = images.first();
    let repository_empty = known.is_none() && store.list_firmware(tenant).await?.is_empty();
    let status = verdict(&report, known, repository_empty);
    let now = shared.platform.now_ms();
    let row = DeviceFirmwareRow {
        tenant: tenant.to_owned(),
        device: device.to_owned(),
        firmware_id: known.map(|image| image.id.clone()),
        firmware_name: known.map(|image| image.name.clone()),
        firmware_version: report.version.clone(),
        firmware_sha256: Some(report.sha256.clone()),
        security_counter: known.map(|image| image.security_counter),
        secure_boot: Some(report.secure_boot),
        attestation_status: Some(status),
        checked_at: Some(now),
        updated_at: now,
    };
    store.record_device_firmware(&row, true).await?;
    if !report.secure_boot {
        let mut draft = SecurityEventDraft::new(tenant, SecurityEventType::SecureBootDisabled, Severity::Major);
        draft.device = Some(device.to_owned());
        draft.details = json!({"firmware_version": report.version, "firmware_sha256": report.sha256});
        shared.platform.raise_security_event(draft).await;
    }
    if known.is_none() && !repository_empty {
        let mut draft = SecurityEventDraft::new(tenant, SecurityEventType::UntrustedFirmware, Severity::Critical);
        draft.device = Some(device.to_owned());
        draft.details = json!({"firmware_version": report.version, "firmware_sha256": report.sha256});
        shared.platform.raise_security_event(draft).await;
        raise_alarm(shared, tenant, device, &report, now).await?;
    }
    if status == AttestationStatus::Untrusted {
        let policy = shared.platform.tenant_policy_for(tenant).await;
        if policy.is_ok_and(|policy| policy.quarantine_untrusted_firmware) {
            let why = "attestation: untrusted firmware";
            if let Err(error) = shared.platform.quarantine_device_by_policy(tenant, device, why).await {
                tracing::warn!(%error, tenant, device, "quarantining on untrusted firmware failed");
            }
        }
    }
    Ok(())
}

async fn raise_alarm(
    shared: &Shared,
    tenant: &str,
    device: &str,
    report: &Report,
    now: i64,
) -> Result<(), rampart_store::StoreError> {
    let text = format!("Firmware {} is not in the repository", report.sha256);
    let text_sealed = shared
        .keys
        .get(tenant, device)
        .await
        .ok()
        .map(|keys| seal_alarm_text(&keys, tenant, device, UNTRUSTED_ALARM, &text));
    let raise = AlarmRaise {
        tenant: tenant.to_owned(),
        id: crate::writer::row_id(now),
        device: device.to_owned(),
        alarm_type: UNTRUSTED_ALARM.to_owned(),
        severity: Severity::Critical,
        text_sealed,
        ts: now,
    };
    shared.store.raise_alarm(&raise).await?;
    if let Ok(Some(row)) = shared.store.latest_alarm(tenant, device, UNTRUSTED_ALARM).await
        && let Some(event) = alarm_live_event(shared, row).await
    {
        shared.publish(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> FirmwareRow {
        FirmwareRow {
            tenant: "t".into(),
            id: "fw".into(),
            name: "n".into(),
            version: "1.0.0".into(),
            hardware: "h".into(),
            security_counter: 1,
            sha256: "ab".into(),
            size: 1,
            signature: "s".into(),
            key_id: None,
            file_key_sealed: Vec::new(),
            created_at: 0,
        }
    }

    #[test]
    fn verdicts() {
        let on = Report { version: None, sha256: "ab".into(), secure_boot: true };
        let off = Report { version: None, sha256: "ab".into(), secure_boot: false };
        assert_eq!(verdict(&on, Some(&image()), false), AttestationStatus::Trusted);
        assert_eq!(verdict(&off, Some(&image()), false), AttestationStatus::Untrusted);
        assert_eq!(verdict(&on, None, false), AttestationStatus::Untrusted);
        assert_eq!(verdict(&on, None, true), AttestationStatus::Unknown);
        assert!(report(&Map::new()).is_none());
    }
}

/// What the platform knows a device runs, and the verdict on its last attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAttestation {
    pub status: AttestationStatus,
    pub checked_at: Option<i64>,
    pub firmware_id: Option<String>,
    pub firmware_version: Option<String>,
    pub firmware_sha256: Option<String>,
    pub secure_boot: Option<bool>,
    /// The highest security counter the device has run (anti-rollback floor).
    pub security_counter: Option<i64>,
}

impl DeviceAttestation {
    /// Nothing known yet.
    pub fn unknown() -> Self {
        DeviceAttestation {
            status: AttestationStatus::Unknown,
            checked_at: None,
            firmware_id: None,
            firmware_version: None,
            firmware_sha256: None,
            secure_boot: None,
            security_counter: None,
        }
    }
}

impl From<DeviceFirmwareRow> for DeviceAttestation {
    fn from(row: DeviceFirmwareRow) -> Self {
        DeviceAttestation {
            status: row.attestation_status.unwrap_or(AttestationStatus::Unknown),
            checked_at: row.checked_at,
            firmware_id: row.firmware_id,
            firmware_version: row.firmware_version,
            firmware_sha256: row.firmware_sha256,
            secure_boot: row.secure_boot,
            security_counter: row.security_counter,
        }
    }
}

impl crate::Ingestor {
    /// The attestation state of one device of `tenant` (callers have checked the device is
    /// visible).
    pub async fn attestation(&self, tenant: &str, device: &str) -> Result<DeviceAttestation, crate::QueryError> {
        let row = self.inner.shared.store.get_device_firmware(tenant, device).await?;
        Ok(row.map_or_else(DeviceAttestation::unknown, DeviceAttestation::from))
    }

    /// The attestation state of every device of `tenant` that has one, by device id.
    pub async fn attestations(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<String, DeviceAttestation>, crate::QueryError> {
        let rows = self.inner.shared.store.list_device_firmware(tenant).await?;
        Ok(rows.into_iter().map(|row| (row.device.clone(), DeviceAttestation::from(row))).collect())
    }
}
