//! Fuzzes the reading of a stored telemetry row: the first byte picks the point count, the next
//! 16 the row's key (ts, seq), the rest is the stored `sealed` column. Any input must read as
//! exactly that many points or be refused as corrupt, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_store::{StoreError, check_telemetry_row};

fuzz_target!(|data: &[u8]| {
    let Some((header, sealed)) = data.split_first_chunk::<17>() else { return };
    let points = i64::from(header[0] % 70) - 2;
    let ts = i64::from_be_bytes(header[1..9].try_into().unwrap_or_default());
    let seq = i64::from_be_bytes(header[9..17].try_into().unwrap_or_default());
    match check_telemetry_row(ts, seq, points, sealed) {
        Ok(count) => assert_eq!(i64::try_from(count).ok(), Some(points)),
        Err(StoreError::Corrupt(_)) => {}
        Err(other) => panic!("reader answered {other:?}"),
    }
});
