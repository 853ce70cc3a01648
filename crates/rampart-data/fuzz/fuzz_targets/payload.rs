//! Fuzzes the device payload parser: the first byte picks the topic, the rest is the payload.
//! Any input must be accepted or refused as malformed, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_data::{DataKind, IngestError, check_payload};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let kind = match selector % 5 {
        0 => DataKind::Telemetry,
        1 => DataKind::Events,
        2 => DataKind::Alarms,
        3 => DataKind::Attestation,
        _ => DataKind::TwinReported,
    };
    match check_payload(kind, payload, 1_764_000_000_000) {
        Ok(()) | Err(IngestError::Malformed(_)) => {}
        Err(other) => panic!("parser answered {other:?}"),
    }
});
