//! `unavailable` alarms (SPEC §8): a device with `required_interval_s` that stays silent
//! longer raises one MAJOR alarm of type `unavailable`, once; its next message clears it (the
//! ingest batch does that in the same transaction as the data). Since `last_seen` is written at
//! most once a second per device, a device is silent after `required_interval_s` + 1 s.

use rampart_store::AlarmRaise;

use crate::ingest::Shared;
use crate::queries::alarm_live_event;
use crate::writer::{SEEN_RESOLUTION_MS, seal_alarm_text};

/// Devices handled per check; the rest wait for the next round.
const PER_ROUND: u32 = 1000;

/// Raises `unavailable` on every silent device; answers how many were raised.
pub(crate) async fn check_once(shared: &Shared) -> Result<usize, rampart_store::StoreError> {
    let now = shared.platform.now_ms();
    let store = &shared.store;
    // `last_seen` may lag the last message by up to `SEEN_RESOLUTION_MS`: allow for it.
    let silent = store.list_silent_devices(now - SEEN_RESOLUTION_MS, PER_ROUND).await?;
    let mut raised = 0;
    for device in silent {
        let text = format!("No data for more than {} s", device.required_interval_s);
        let text_sealed = match shared.keys.get(&device.tenant, &device.device).await {
            Ok(keys) => Some(seal_alarm_text(&keys, &device.tenant, &device.device, "unavailable", &text)),
            Err(_) => None,
        };
        let raise = AlarmRaise {
            tenant: device.tenant.clone(),
            id: crate::writer::row_id(now),
            device: device.device.clone(),
            alarm_type: "unavailable".to_owned(),
            severity: rampart_core::Severity::Major,
            text_sealed,
            ts: now,
        };
        store.raise_alarm(&raise).await?;
        raised += 1;
        shared.unavailable_open().insert((device.tenant.clone(), device.device.clone()));
        if let Ok(Some(row)) = store.latest_alarm(&device.tenant, &device.device, "unavailable").await
            && let Some(event) = alarm_live_event(shared, row).await
        {
            shared.publish(event);
        }
    }
    Ok(raised)
}
