//! Firmware campaigns (SPEC §9): a firmware image rolled out to a group or a list of devices,
//! canary first, then waves by percentage; each wave is judged once all its operations are
//! over, and the campaign pauses itself when the wave's failures pass the threshold. A person
//! may pause, resume (accepting the failures so far) or cancel (pending operations fail with
//! reason `cancelled`). Anti-rollback: a device whose installed security counter is higher
//! than the image's refuses the campaign at creation, and is failed (reason `anti_rollback`)
//! if it got there by the time its wave starts.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rampart_core::{AuditAction, CampaignStatus, DeviceId, GroupId, OperationStatus, Permission};
use rampart_data::{FIRMWARE_UPDATE, FirmwareUpdate, NewOperation, QueryError};
use rampart_platform::{DeviceQuery, Principal};
use rampart_store::{CampaignRow, CampaignUpdate, FirmwareRow, OperationFilter, Page, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Fleet;

/// Most devices one campaign may target.
pub const MAX_CAMPAIGN_DEVICES: usize = 100_000;
/// Failure threshold when the strategy names none, in percent of a wave.
pub const DEFAULT_FAILURE_THRESHOLD_PCT: u32 = 10;

/// `POST /api/v1/campaigns` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    pub firmware_id: String,
    pub target: Target,
    #[serde(default)]
    pub strategy: Strategy,
}

/// Which devices a campaign updates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub group: Option<String>,
    pub devices: Option<Vec<String>>,
}

/// How a campaign rolls out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Strategy {
    /// Devices in the first wave.
    pub canary: u32,
    /// Percentages of the target: cumulative when they rise to 100 (`[10, 50, 100]`), else
    /// shares that add up to 100 (`[30, 30, 40]`).
    pub waves: Vec<u32>,
    /// A wave whose failures pass this percentage pauses the campaign.
    pub failure_threshold_pct: u32,
    /// Seconds each device has to finish its update before it fails with reason `timeout`.
    pub timeout_s: Option<u32>,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy { canary: 1, waves: vec![100], failure_threshold_pct: DEFAULT_FAILURE_THRESHOLD_PCT, timeout_s: None }
    }
}

impl Strategy {
    fn check(&self) -> Result<(), QueryError> {
        let invalid = |text: &str| Err(QueryError::Invalid(text.to_owned()));
        if self.waves.is_empty() || self.waves.len() > 100 {
            return invalid("strategy.waves must list 1 to 100 percentages");
        }
        if self.waves.iter().any(|pct| *pct == 0 || *pct > 100) {
            return invalid("strategy.waves: each percentage must be 1 to 100");
        }
        if !self.cumulative() && self.waves.iter().sum::<u32>() != 100 {
            return invalid("strategy.waves must rise to 100 (cumulative) or add up to 100 (shares)");
        }
        if self.failure_threshold_pct > 100 {
            return invalid("strategy.failure_threshold_pct must be 0 to 100");
        }
        if self.timeout_s.is_some_and(|timeout| timeout == 0 || timeout > rampart_data::MAX_OPERATION_TIMEOUT_S) {
            return invalid("strategy.timeout_s is out of range");
        }
        Ok(())
    }

    fn cumulative(&self) -> bool {
        self.waves.last() == Some(&100) && self.waves.windows(2).all(|pair| pair[0] < pair[1])
    }

    /// Where each wave ends (device counts from the front of the target list), canary first.
    pub fn wave_ends(&self, total: usize) -> Vec<usize> {
        let mut ends = Vec::new();
        let canary = (self.canary as usize).min(total);
        if canary > 0 {
            ends.push(canary);
        }
        let mut sum = 0u32;
        for pct in &self.waves {
            let cumulative = if self.cumulative() {
                *pct
            } else {
                sum += pct;
                sum
            };
            let end = (total * cumulative as usize).div_ceil(100).max(canary).min(total);
            if ends.last().is_none_or(|last| end > *last) {
                ends.push(end);
            }
        }
        if ends.last().is_none_or(|last| *last < total) {
            ends.push(total);
        }
        ends
    }
}

/// A campaign as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: String,
    pub firmware_id: String,
    pub status: CampaignStatus,
    pub reason: Option<String>,
    pub target: Value,
    pub strategy: Value,
    pub total: usize,
    pub dispatched: i64,
    /// Operations per status, and `NOT_STARTED` for devices whose wave has not come.
    pub counts: BTreeMap<String, i64>,
    /// The wave in progress (1 = the first, canary included) and how many waves there are.
    pub wave: usize,
    pub waves: usize,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

fn devices_of(row: &CampaignRow) -> Vec<String> {
    serde_json::from_str(&row.devices).unwrap_or_default()
}

fn strategy_of(row: &CampaignRow) -> Strategy {
    serde_json::from_str(&row.strategy).unwrap_or_default()
}

fn store_conflict(error: StoreError) -> QueryError {
    match error {
        StoreError::Conflict(reason) => QueryError::Conflict(reason),
        other => other.into(),
    }
}

impl Fleet {
    /// Creates a campaign (`firmware:write`, audited) and dispatches its first wave.
    pub async fn create_campaign(
        &self,
        principal: &Principal,
        request: CampaignRequest,
    ) -> Result<Campaign, QueryError> {
        let platform = &self.0.platform;
        platform.authorize(principal, Permission::FirmwareWrite).await.map_err(QueryError::from_service)?;
        platform.authorize(principal, Permission::OperationsWrite).await.map_err(QueryError::from_service)?;
        request.strategy.check()?;
        let tenant = &principal.tenant;
        let firmware = match self.0.store.get_firmware(tenant, &request.firmware_id).await {
            Ok(firmware) => firmware,
            Err(StoreError::NotFound) => {
                return Err(QueryError::Invalid(format!("firmware_id: no firmware {}", request.firmware_id)));
            }
            Err(other) => return Err(other.into()),
        };
        let devices = self.target_devices(principal, &request.target).await?;
        let mut refused = Vec::new();
        for device in &devices {
            if let Some(installed) = self.installed_counter(tenant, device).await?
                && installed > firmware.security_counter
            {
                refused.push(format!("{device} (installed {installed})"));
            }
        }
        if !refused.is_empty() {
            return Err(QueryError::Conflict(format!(
                "anti-rollback: security_counter {} is lower than installed on {}",
                firmware.security_counter,
                refused.join(", ")
            )));
        }
        let now = platform.now_ms();
        let target = match &request.target {
            Target { group: Some(group), .. } => json!({"group": group}),
            Target { devices: Some(ids), .. } => json!({"devices": ids}),
            Target { .. } => json!({}),
        };
        let row = CampaignRow {
            tenant: tenant.clone(),
            id: rampart_crypto::random_id(8),
            firmware_id: firmware.id.clone(),
            target: target.to_string(),
            strategy: serde_json::to_string(&request.strategy)
                .map_err(|error| QueryError::Internal(error.to_string()))?,
            devices: serde_json::to_string(&devices).map_err(|error| QueryError::Internal(error.to_string()))?,
            dispatched: 0,
            accepted: 0,
            status: CampaignStatus::Running,
            reason: None,
            created_by: rampart_data::created_by(principal),
            created_at: now,
            updated_at: now,
        };
        self.0.store.insert_campaign(&row).await?;
        let details = json!({"campaign": row.id, "firmware": firmware.id, "devices": devices.len(),
            "security_counter": firmware.security_counter});
        platform.audit_by(principal, AuditAction::CampaignCreate, format!("campaign:{}", row.id), details).await;
        self.advance(&row).await?;
        self.campaign_view(self.0.store.get_campaign(tenant, &row.id).await?).await
    }

    /// The target's devices, in rollout order, each one the principal sees.
    async fn target_devices(&self, principal: &Principal, target: &Target) -> Result<Vec<String>, QueryError> {
        let devices = match (&target.group, &target.devices) {
            (Some(group), None) => {
                let group =
                    GroupId::parse(group).map_err(|error| QueryError::Invalid(format!("target.group: {error}")))?;
                let query = DeviceQuery { group: Some(group), ..DeviceQuery::default() };
                let page = Page { after: None, limit: (MAX_CAMPAIGN_DEVICES + 1) as u32 };
                let listed =
                    self.0.platform.list_devices(principal, query, &page).await.map_err(QueryError::from_service)?;
                listed.into_iter().map(|device| device.id).collect::<Vec<_>>()
            }
            (None, Some(ids)) => {
                let mut seen = std::collections::BTreeSet::new();
                let mut devices = Vec::new();
                for id in ids {
                    let parsed =
                        DeviceId::parse(id).map_err(|error| QueryError::Invalid(format!("target.devices: {error}")))?;
                    match self.0.platform.visible_device(principal, Permission::DevicesRead, &parsed).await {
                        Ok(device) if seen.insert(device.id.clone()) => devices.push(device.id),
                        Ok(_) => {}
                        Err(rampart_platform::ServiceError::NotFound) => {
                            return Err(QueryError::Invalid(format!("target.devices: no device {id}")));
                        }
                        Err(other) => return Err(QueryError::from_service(other)),
                    }
                }
                devices
            }
            _ => return Err(QueryError::Invalid("target must be {\"group\":...} or {\"devices\":[...]}".into())),
        };
        if devices.is_empty() {
            return Err(QueryError::Invalid("target matches no device".into()));
        }
        if devices.len() > MAX_CAMPAIGN_DEVICES {
            return Err(QueryError::Invalid(format!("target matches more than {MAX_CAMPAIGN_DEVICES} devices")));
        }
        Ok(devices)
    }

    async fn installed_counter(&self, tenant: &str, device: &str) -> Result<Option<i64>, QueryError> {
        Ok(self.0.store.get_device_firmware(tenant, device).await?.and_then(|row| row.security_counter))
    }

    /// A campaign (`firmware:read`).
    pub async fn campaign(&self, principal: &Principal, id: &str) -> Result<Campaign, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        self.campaign_view(self.0.store.get_campaign(&principal.tenant, id).await?).await
    }

    /// The tenant's campaigns, newest first (`firmware:read`).
    pub async fn campaigns(&self, principal: &Principal) -> Result<Vec<Campaign>, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        let mut campaigns = Vec::new();
        for row in self.0.store.list_campaigns(&principal.tenant).await? {
            campaigns.push(self.campaign_view(row).await?);
        }
        Ok(campaigns)
    }

    async fn campaign_view(&self, row: CampaignRow) -> Result<Campaign, QueryError> {
        let devices = devices_of(&row);
        let strategy = strategy_of(&row);
        let mut counts: BTreeMap<String, i64> =
            OperationStatus::ALL.iter().map(|status| (status.as_str().to_owned(), 0)).collect();
        let mut operations = 0;
        for (status, count) in self.0.store.campaign_operation_counts(&row.tenant, &row.id).await? {
            operations += count;
            counts.insert(status, count);
        }
        counts.insert("NOT_STARTED".into(), (devices.len() as i64 - operations).max(0));
        let ends = strategy.wave_ends(devices.len());
        let wave = ends.iter().position(|end| *end as i64 >= row.dispatched.max(1)).map_or(ends.len(), |at| at + 1);
        Ok(Campaign {
            target: serde_json::from_str(&row.target).unwrap_or(Value::Null),
            strategy: serde_json::to_value(&strategy).unwrap_or(Value::Null),
            total: devices.len(),
            waves: ends.len(),
            wave,
            id: row.id,
            firmware_id: row.firmware_id,
            status: row.status,
            reason: row.reason,
            dispatched: row.dispatched,
            counts,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }

    /// Pauses, resumes or cancels a campaign (`firmware:write`, audited). Resuming accepts
    /// the failures so far; cancelling fails the pending operations with reason `cancelled`.
    pub async fn set_campaign_status(
        &self,
        principal: &Principal,
        id: &str,
        to: CampaignStatus,
    ) -> Result<Campaign, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareWrite).await.map_err(QueryError::from_service)?;
        let (action, reason) = match to {
            CampaignStatus::Paused => (AuditAction::CampaignPause, "paused by a person"),
            CampaignStatus::Running => (AuditAction::CampaignResume, "resumed by a person"),
            CampaignStatus::Cancelled => (AuditAction::CampaignCancel, "cancelled by a person"),
            CampaignStatus::Completed => return Err(QueryError::Invalid("a campaign completes by itself".into())),
        };
        let tenant = &principal.tenant;
        let current = self.0.store.get_campaign(tenant, id).await?;
        let update = CampaignUpdate {
            tenant,
            id,
            from: to.reachable_from(),
            to,
            dispatched: None,
            accepted: (to == CampaignStatus::Running).then_some(current.dispatched),
            reason: Some(reason),
            now_ms: self.0.platform.now_ms(),
        };
        let row = self.0.store.update_campaign(&update).await.map_err(store_conflict)?;
        if to == CampaignStatus::Cancelled {
            self.fail_pending(&row, "cancelled").await?;
        }
        let details = json!({"campaign": id, "status": to.as_str()});
        self.0.platform.audit_by(principal, action, format!("campaign:{id}"), details).await;
        if to == CampaignStatus::Running {
            self.advance(&row).await?;
        }
        self.campaign_view(self.0.store.get_campaign(tenant, id).await?).await
    }

    async fn fail_pending(&self, row: &CampaignRow, reason: &str) -> Result<(), QueryError> {
        let filter =
            OperationFilter { device: None, status: Some(OperationStatus::Pending), campaign: Some(row.id.clone()) };
        let pending = self.0.store.list_operations(&row.tenant, &filter, &Page::default()).await?;
        for operation in pending {
            match self.0.ingestor.fail_operation(&row.tenant, &operation.id, reason).await {
                Ok(_) | Err(QueryError::Conflict(_)) | Err(QueryError::NotFound) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Moves a running campaign on: judges the wave in progress once all its operations are
    /// over (pausing past the threshold), then dispatches the next wave or completes.
    pub(crate) async fn advance(&self, row: &CampaignRow) -> Result<(), QueryError> {
        let _one_at_a_time = self.0.advancing.lock().await;
        let row = self.0.store.get_campaign(&row.tenant, &row.id).await?;
        if row.status != CampaignStatus::Running {
            return Ok(());
        }
        // Earlier waves are over, so an unfinished operation means the wave in progress is
        // too: a count answers that without reading every operation of the campaign.
        let counts = self.0.store.campaign_operation_counts(&row.tenant, &row.id).await?;
        let unfinished = OperationStatus::UNFINISHED.iter().map(|status| status.as_str());
        if counts.iter().any(|(status, count)| *count > 0 && unfinished.clone().any(|word| word == status)) {
            return Ok(());
        }
        let devices = devices_of(&row);
        let strategy = strategy_of(&row);
        let filter = OperationFilter { device: None, status: None, campaign: Some(row.id.clone()) };
        let operations = self.0.store.list_operations(&row.tenant, &filter, &Page::default()).await?;
        let status_of: BTreeMap<&str, OperationStatus> =
            operations.iter().map(|operation| (operation.device.as_str(), operation.status)).collect();
        let dispatched = usize::try_from(row.dispatched).unwrap_or(0).min(devices.len());
        let accepted = usize::try_from(row.accepted).unwrap_or(0).min(dispatched);
        let wave = &devices[accepted..dispatched];
        if wave.iter().any(|device| status_of.get(device.as_str()).is_none_or(|status| !status.is_final())) {
            return Ok(());
        }
        let now = self.0.platform.now_ms();
        if !wave.is_empty() {
            let failed =
                wave.iter().filter(|device| status_of.get(device.as_str()) == Some(&OperationStatus::Failed)).count();
            let passed = failed * 100 > strategy.failure_threshold_pct as usize * wave.len();
            let (to, accepted, reason) = match passed {
                true => (
                    CampaignStatus::Paused,
                    None,
                    Some(format!(
                        "paused itself: {failed} of {} devices in the wave failed (threshold {} %)",
                        wave.len(),
                        strategy.failure_threshold_pct
                    )),
                ),
                false => (CampaignStatus::Running, Some(dispatched as i64), None),
            };
            let update = CampaignUpdate {
                tenant: &row.tenant,
                id: &row.id,
                from: &[CampaignStatus::Running],
                to,
                dispatched: None,
                accepted,
                reason: reason.as_deref(),
                now_ms: now,
            };
            self.0.store.update_campaign(&update).await.map_err(store_conflict)?;
            if passed {
                tracing::info!(tenant = %row.tenant, campaign = %row.id, failed, "campaign paused itself");
                return Ok(());
            }
        }
        if dispatched >= devices.len() {
            let update = CampaignUpdate {
                tenant: &row.tenant,
                id: &row.id,
                from: &[CampaignStatus::Running],
                to: CampaignStatus::Completed,
                dispatched: None,
                accepted: None,
                reason: None,
                now_ms: now,
            };
            self.0.store.update_campaign(&update).await.map_err(store_conflict)?;
            return Ok(());
        }
        let next = strategy.wave_ends(devices.len()).into_iter().find(|end| *end > dispatched).unwrap_or(devices.len());
        let firmware = self.0.store.get_firmware(&row.tenant, &row.firmware_id).await?;
        for device in &devices[dispatched..next] {
            if status_of.contains_key(device.as_str()) {
                continue;
            }
            self.dispatch(&row, &firmware, &strategy, device).await?;
        }
        let update = CampaignUpdate {
            tenant: &row.tenant,
            id: &row.id,
            from: &[CampaignStatus::Running],
            to: CampaignStatus::Running,
            dispatched: Some(next as i64),
            accepted: None,
            reason: None,
            now_ms: self.0.platform.now_ms(),
        };
        self.0.store.update_campaign(&update).await.map_err(store_conflict)?;
        Ok(())
    }

    /// Creates one device's `firmware_update` operation (failed at once, reason
    /// `anti_rollback`, when the device now runs a higher security counter).
    async fn dispatch(
        &self,
        row: &CampaignRow,
        firmware: &FirmwareRow,
        strategy: &Strategy,
        device: &str,
    ) -> Result<(), QueryError> {
        let update = FirmwareUpdate {
            firmware_id: firmware.id.clone(),
            name: firmware.name.clone(),
            version: firmware.version.clone(),
            hardware: firmware.hardware.clone(),
            security_counter: firmware.security_counter,
            sha256: firmware.sha256.clone(),
            size: firmware.size,
            signature: firmware.signature.clone(),
            key_id: firmware.key_id.clone(),
            url: format!("/api/v1/device/firmware/{}", firmware.id),
        };
        let new = NewOperation {
            op_type: FIRMWARE_UPDATE.to_owned(),
            payload: Some(update.to_payload()),
            timeout_s: strategy.timeout_s,
        };
        let installed = self.installed_counter(&row.tenant, device).await?;
        let operation = match self.0.ingestor.create_campaign_operation(&row.tenant, device, new, &row.id).await {
            Ok(operation) => operation,
            // Deleted since: nothing to update; counted as not started.
            Err(QueryError::NotFound) => return Ok(()),
            Err(other) => return Err(other),
        };
        if installed.is_some_and(|installed| installed > firmware.security_counter) {
            self.0.ingestor.fail_operation(&row.tenant, &operation.id, "anti_rollback").await?;
        }
        Ok(())
    }
}

/// Advances every running campaign, every `period`.
pub(crate) fn spawn_runner(fleet: Weak<crate::Inner>, period: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(inner) = fleet.upgrade() else { return };
            let fleet = Fleet(Arc::clone(&inner));
            drop(inner);
            let running = match fleet.0.store.list_running_campaigns().await {
                Ok(running) => running,
                Err(error) => {
                    tracing::warn!(%error, "listing running campaigns failed");
                    continue;
                }
            };
            for row in running {
                if let Err(error) = fleet.advance(&row).await {
                    tracing::warn!(%error, tenant = %row.tenant, campaign = %row.id, "advancing a campaign failed");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(canary: u32, waves: &[u32]) -> Strategy {
        Strategy { canary, waves: waves.to_vec(), ..Strategy::default() }
    }

    #[test]
    fn waves_are_cumulative_or_shares() {
        assert_eq!(strategy(10, &[10, 50, 100]).wave_ends(1000), vec![10, 100, 500, 1000]);
        assert_eq!(strategy(10, &[30, 30, 40]).wave_ends(1000), vec![10, 300, 600, 1000]);
        assert_eq!(strategy(0, &[100]).wave_ends(7), vec![7]);
        assert_eq!(strategy(5, &[50, 100]).wave_ends(3), vec![3]);
        assert_eq!(strategy(1, &[34, 100]).wave_ends(3), vec![1, 2, 3]);
        assert!(strategy(1, &[30, 30]).check().is_err());
        assert!(strategy(1, &[0, 100]).check().is_err());
        assert!(strategy(1, &[10, 50, 100]).check().is_ok());
    }
}
