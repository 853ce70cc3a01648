//! Bench payloads: telemetry that Rampart stores as measurements and any broker carries as
//! bytes. `{"ts":<epoch ms>,"seq":<n>,"sent_ns":<ns>}` padded with JSON whitespace to the
//! requested size, so padding adds no series to store and every JSON parser accepts it.
//! `sent_ns` counts nanoseconds since a process-local epoch: a subscriber in the same process
//! subtracts it from its own clock to get the publish→subscriber latency.

use std::io::Write;

/// The field that carries the send time; parsed back by [`sent_ns`].
const SENT_FIELD: &[u8] = b"\"sent_ns\":";

/// Writes the payload for message `seq` into `out` (cleared first), at least `size` bytes long
/// (longer only when the fields alone exceed it).
pub(crate) fn build(out: &mut Vec<u8>, size: usize, epoch_ms: u64, seq: u64, sent_ns: u64) {
    out.clear();
    // Writing into a Vec cannot fail.
    let _infallible = write!(out, "{{\"ts\":{epoch_ms},\"seq\":{seq},\"sent_ns\":{sent_ns}");
    let padding = size.saturating_sub(out.len() + 1);
    out.resize(out.len() + padding, b' ');
    out.push(b'}');
}

/// The `sent_ns` field of a payload built by [`build`], if there is one.
pub(crate) fn sent_ns(payload: &[u8]) -> Option<u64> {
    let start = payload.windows(SENT_FIELD.len()).position(|window| window == SENT_FIELD)? + SENT_FIELD.len();
    let digits = &payload[start..];
    let length = digits.iter().take_while(|byte| byte.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..length]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_to_size_and_valid_json() {
        let mut out = Vec::new();
        for size in [0, 10, 64, 100, 256, 1024, 16_384] {
            build(&mut out, size, 1_767_225_600_000, 12, 987_654_321);
            assert!(out.len() >= size.max(10), "size {size}: {}", out.len());
            let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(value["seq"], 12);
            assert_eq!(value["ts"], 1_767_225_600_000_u64);
            assert_eq!(value.as_object().map(|o| o.len()), Some(3), "padding adds no series");
            if size >= 64 {
                assert_eq!(out.len(), size);
            }
        }
    }

    #[test]
    fn the_send_time_reads_back() {
        let mut out = Vec::new();
        build(&mut out, 200, 1, 2, 123_456_789_012);
        assert_eq!(sent_ns(&out), Some(123_456_789_012));
        assert_eq!(sent_ns(b"{\"v\":1}"), None);
        assert_eq!(sent_ns(b"\"sent_ns\":"), None);
        assert_eq!(sent_ns(b"\"sent_ns\":99999999999999999999999"), None);
    }
}
