//! Timestamps on the wire: RFC 3339 UTC with milliseconds out; RFC 3339 or epoch ms in (SPEC §3).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats epoch milliseconds as `2026-11-24T15:35:41.123Z`.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
        return String::from("1970-01-01T00:00:00.000Z");
    };
    let date = at.date();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Parses RFC 3339 (any offset) or decimal epoch milliseconds into epoch milliseconds.
pub fn parse_timestamp(input: &str) -> Option<i64> {
    if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
        return input.parse().ok();
    }
    let at = OffsetDateTime::parse(input, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_ms(1_764_000_000_123), "2025-11-24T16:00:00.123Z");
        assert_eq!(parse_timestamp("2025-11-24T16:00:00.123Z"), Some(1_764_000_000_123));
        assert_eq!(parse_timestamp("2025-11-24T17:00:00.123+01:00"), Some(1_764_000_000_123));
        assert_eq!(parse_timestamp("1764000000123"), Some(1_764_000_000_123));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp(""), None);
    }
}
