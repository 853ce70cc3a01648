//! Parsing and validation of what devices publish (SPEC §7 payload table). Input is untrusted:
//! every rule answers a [`Malformed`] reason instead of panicking, and a message is accepted
//! or rejected whole.
//!
//! Decisions:
//! - Payloads are UTF-8 JSON (RFC 8259); anything else is malformed.
//! - Telemetry values must be JSON numbers and finite. Booleans, strings (`"NaN"`, `"1.5"`),
//!   `null`, arrays and objects are malformed: a series is a number series, and guessing would
//!   silently store garbage. A key `values` holding an object selects the second shape; the
//!   two shapes may not be mixed in one object.
//! - `ts` is epoch milliseconds (an integer JSON number, or a string of digits) or an RFC 3339
//!   string, between 1970 and 9999; absent means the time the message was received.
//! - Series names and event/alarm types are 1..=128 bytes without control characters; a
//!   message holds at most 1000 points (and an array at most 1000 elements).

use serde_json::{Map, Value};

use rampart_core::Severity;

/// Why a payload was refused; the text never quotes the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) String);

fn malformed<T>(reason: impl Into<String>) -> Result<T, Malformed> {
    Err(Malformed(reason.into()))
}

/// Longest series name, event type or alarm type, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 128;
/// Most points in one telemetry message.
pub(crate) const MAX_POINTS: usize = 1000;
/// Latest accepted time: 9999-12-31T23:59:59.999Z.
const MAX_TS: i64 = 253_402_300_799_999;

/// The measurements of one time stamp.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TelemetryGroup {
    pub(crate) ts: i64,
    /// Sorted by series name, names unique.
    pub(crate) values: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventPayload {
    pub(crate) ts: i64,
    pub(crate) event_type: String,
    /// The object as sent, without `ts` (it has its own column).
    pub(crate) body: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlarmPayload {
    pub(crate) ts: i64,
    pub(crate) alarm_type: String,
    /// `None` only when the device clears the alarm.
    pub(crate) severity: Option<Severity>,
    pub(crate) text: Option<String>,
    pub(crate) clear: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttestationPayload {
    pub(crate) ts: i64,
    /// `firmware_version`, `firmware_sha256` (lower-case), `secure_boot` and any extra fields.
    pub(crate) body: Map<String, Value>,
}

/// A validated message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    Telemetry(Vec<TelemetryGroup>),
    Event(EventPayload),
    Alarm(AlarmPayload),
    Attestation(AttestationPayload),
    /// A JSON merge patch (RFC 7386) of the reported state.
    TwinReported(Map<String, Value>),
}

fn json(payload: &[u8]) -> Result<Value, Malformed> {
    let text = match std::str::from_utf8(payload) {
        Ok(text) => text,
        Err(_) => return malformed("payload is not UTF-8"),
    };
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(_) => malformed("payload is not valid JSON"),
    }
}

fn object(value: Value, what: &str) -> Result<Map<String, Value>, Malformed> {
    match value {
        Value::Object(map) => Ok(map),
        _ => malformed(format!("{what} must be a JSON object")),
    }
}

fn check_name(name: &str, what: &str) -> Result<(), Malformed> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return malformed(format!("{what} must be 1 to {MAX_NAME_BYTES} bytes"));
    }
    if name.chars().any(char::is_control) {
        return malformed(format!("{what} contains control characters"));
    }
    Ok(())
}

/// `ts` of a message: epoch ms or RFC 3339; `default` when absent.
fn timestamp(value: Option<Value>, default: i64) -> Result<i64, Malformed> {
    let ts = match value {
        None => return Ok(default),
        Some(Value::Number(number)) => match number.as_i64() {
            Some(ms) => ms,
            None => return malformed("ts must be integer epoch milliseconds"),
        },
        Some(Value::String(text)) => match rampart_platform::parse_timestamp(&text) {
            Some(ms) => ms,
            None => return malformed("ts must be RFC 3339 or epoch milliseconds"),
        },
        Some(_) => return malformed("ts must be RFC 3339 or epoch milliseconds"),
    };
    if !(0..=MAX_TS).contains(&ts) {
        return malformed("ts is out of range");
    }
    Ok(ts)
}

fn optional_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, Malformed> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => malformed(format!("{key} must be a string")),
    }
}

fn required_name(map: &Map<String, Value>, key: &str) -> Result<String, Malformed> {
    match map.get(key) {
        Some(Value::String(text)) => {
            check_name(text, key)?;
            Ok(text.clone())
        }
        Some(_) => malformed(format!("{key} must be a string")),
        None => malformed(format!("{key} is required")),
    }
}

/// Parses a telemetry message: one object of either shape, or an array of them.
pub(crate) fn telemetry(payload: &[u8], received_at_ms: i64) -> Result<Vec<TelemetryGroup>, Malformed> {
    let elements = match json(payload)? {
        Value::Array(elements) => {
            if elements.is_empty() {
                return malformed("telemetry array is empty");
            }
            if elements.len() > MAX_POINTS {
                return malformed(format!("telemetry array has more than {MAX_POINTS} elements"));
            }
            elements
        }
        value @ Value::Object(_) => vec![value],
        _ => return malformed("telemetry must be a JSON object or an array of objects"),
    };
    let mut points = 0usize;
    let mut groups = Vec::with_capacity(elements.len());
    for element in elements {
        let group = telemetry_group(object(element, "telemetry element")?, received_at_ms)?;
        points += group.values.len();
        if points > MAX_POINTS {
            return malformed(format!("telemetry message has more than {MAX_POINTS} points"));
        }
        groups.push(group);
    }
    Ok(groups)
}

fn telemetry_group(mut map: Map<String, Value>, received_at_ms: i64) -> Result<TelemetryGroup, Malformed> {
    let ts = timestamp(map.remove("ts"), received_at_ms)?;
    let series = match map.remove("values") {
        Some(Value::Object(values)) => {
            if !map.is_empty() {
                return malformed("telemetry with \"values\" may hold only \"ts\" besides it");
            }
            values
        }
        // A number under `values` is a series named "values" (first shape).
        Some(other) => {
            map.insert("values".to_owned(), other);
            map
        }
        None => map,
    };
    if series.is_empty() {
        return malformed("telemetry holds no measurement");
    }
    let mut values = Map::new();
    for (name, value) in series {
        check_name(&name, "series name")?;
        if name == "ts" {
            return malformed("\"ts\" is not a series name");
        }
        match &value {
            Value::Number(number) if number.as_f64().is_some_and(f64::is_finite) => {}
            _ => return malformed("measurement values must be finite numbers"),
        }
        values.insert(name, value);
    }
    Ok(TelemetryGroup { ts, values })
}

/// Parses an event: `{"type","text"?,"ts"?,...}`; extra fields are kept.
pub(crate) fn event(payload: &[u8], received_at_ms: i64) -> Result<EventPayload, Malformed> {
    let mut map = object(json(payload)?, "event")?;
    let ts = timestamp(map.remove("ts"), received_at_ms)?;
    let event_type = required_name(&map, "type")?;
    optional_string(&map, "text")?;
    Ok(EventPayload { ts, event_type, body: map })
}

/// Parses an alarm: `{"type","severity","text"?,"status"?:"ACTIVE|CLEARED","ts"?}`. Severity
/// is required unless the alarm is being cleared.
pub(crate) fn alarm(payload: &[u8], received_at_ms: i64) -> Result<AlarmPayload, Malformed> {
    let mut map = object(json(payload)?, "alarm")?;
    let ts = timestamp(map.remove("ts"), received_at_ms)?;
    let alarm_type = required_name(&map, "type")?;
    let text = optional_string(&map, "text")?;
    let clear = match optional_string(&map, "status")?.as_deref() {
        None | Some("ACTIVE") => false,
        Some("CLEARED") => true,
        Some(_) => return malformed("status must be ACTIVE or CLEARED"),
    };
    let severity = match optional_string(&map, "severity")? {
        Some(text) => match Severity::parse(&text) {
            Some(severity) => Some(severity),
            None => return malformed("severity must be CRITICAL, MAJOR, MINOR or WARNING"),
        },
        None if clear => None,
        None => return malformed("severity is required"),
    };
    Ok(AlarmPayload { ts, alarm_type, severity, text, clear })
}

/// Parses an attestation report: `{"firmware_version","firmware_sha256","secure_boot":bool}`.
pub(crate) fn attestation(payload: &[u8], received_at_ms: i64) -> Result<AttestationPayload, Malformed> {
    let mut map = object(json(payload)?, "attestation")?;
    let ts = timestamp(map.remove("ts"), received_at_ms)?;
    required_name(&map, "firmware_version")?;
    let digest = match map.get("firmware_sha256") {
        Some(Value::String(text)) if text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit()) => {
            text.to_ascii_lowercase()
        }
        Some(_) => return malformed("firmware_sha256 must be 64 hex digits"),
        None => return malformed("firmware_sha256 is required"),
    };
    map.insert("firmware_sha256".to_owned(), Value::String(digest));
    match map.get("secure_boot") {
        Some(Value::Bool(_)) => {}
        Some(_) => return malformed("secure_boot must be a boolean"),
        None => return malformed("secure_boot is required"),
    }
    Ok(AttestationPayload { ts, body: map })
}

/// Parses a reported-twin merge patch: any JSON object.
pub(crate) fn twin_reported(payload: &[u8]) -> Result<Map<String, Value>, Malformed> {
    object(json(payload)?, "reported state patch")
}

/// Applies a JSON merge patch (RFC 7386) to `target`: `null` removes a member, objects merge
/// recursively, anything else replaces.
pub(crate) fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(patch_object) => {
                let slot = target.entry(key).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(inner) = slot {
                    merge_patch(inner, patch_object);
                }
            }
            other => {
                target.insert(key, other);
            }
        }
    }
}

/// Parses `payload` for `kind`.
pub(crate) fn parse(kind: crate::DataKind, payload: &[u8], received_at_ms: i64) -> Result<Parsed, Malformed> {
    use crate::DataKind;
    match kind {
        DataKind::Telemetry => telemetry(payload, received_at_ms).map(Parsed::Telemetry),
        DataKind::Events => event(payload, received_at_ms).map(Parsed::Event),
        DataKind::Alarms => alarm(payload, received_at_ms).map(Parsed::Alarm),
        DataKind::Attestation => attestation(payload, received_at_ms).map(Parsed::Attestation),
        DataKind::TwinReported => twin_reported(payload).map(Parsed::TwinReported),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::DataKind;

    const NOW: i64 = 1_764_000_000_000;

    /// Parses `payload` as `kind`; `Ok` with the JSON of what was accepted, or the reason.
    fn check(kind: DataKind, payload: &str) -> Result<Value, String> {
        parse(kind, payload.as_bytes(), NOW).map(|parsed| describe(&parsed)).map_err(|reason| reason.0)
    }

    fn describe(parsed: &Parsed) -> Value {
        match parsed {
            Parsed::Telemetry(groups) => {
                Value::Array(groups.iter().map(|group| json!([group.ts, group.values])).collect())
            }
            Parsed::Event(event) => json!([event.ts, event.event_type, event.body]),
            Parsed::Alarm(alarm) => {
                json!([alarm.ts, alarm.alarm_type, alarm.severity.map(Severity::as_str), alarm.text, alarm.clear])
            }
            Parsed::Attestation(report) => json!([report.ts, report.body]),
            Parsed::TwinReported(patch) => Value::Object(patch.clone()),
        }
    }

    #[test]
    fn telemetry_shapes_and_times() {
        let accepted = [
            (r#"{"temp":21.5,"hum":40}"#, json!([[NOW, {"hum": 40, "temp": 21.5}]])),
            (r#"{"ts":1764000000123,"values":{"temp":-1e3}}"#, json!([[1_764_000_000_123_i64, {"temp": -1000.0}]])),
            (r#"{"ts":"2025-11-24T16:00:00.5Z","temp":1}"#, json!([[1_764_000_000_500_i64, {"temp": 1}]])),
            (r#"{"ts":"2025-11-24T17:00:00+01:00","temp":1}"#, json!([[1_764_000_000_000_i64, {"temp": 1}]])),
            (r#"{"ts":"1764000000001","temp":1}"#, json!([[1_764_000_000_001_i64, {"temp": 1}]])),
            (r#"[{"ts":1,"a":1},{"values":{"b":2}}]"#, json!([[1, {"a": 1}], [NOW, {"b": 2}]])),
            // A number under "values" is an ordinary series of that name.
            (r#"{"values":3}"#, json!([[NOW, {"values": 3}]])),
            (r#"{"ts":0,"x":0}"#, json!([[0, {"x": 0}]])),
        ];
        for (payload, expected) in accepted {
            assert_eq!(check(DataKind::Telemetry, payload), Ok(expected), "{payload}");
        }
    }

    #[test]
    fn malformed_telemetry_is_refused_whole() {
        let long_name = format!(r#"{{"{}":1}}"#, "s".repeat(129));
        let too_many = format!("[{}]", vec![r#"{"a":1}"#; 1001].join(","));
        let too_many_points = format!(
            "[{}]",
            (0..3)
                .map(|i| format!("{{{}}}", (0..400).map(|j| format!(r#""s{i}_{j}":1"#)).collect::<Vec<_>>().join(",")))
                .collect::<Vec<_>>()
                .join(",")
        );
        let refused: &[(&str, &str)] = &[
            ("", "not valid JSON"),
            ("temp=21", "not valid JSON"),
            (r#"{"temp":21.5"#, "not valid JSON"),
            ("\u{0}", "not valid JSON"),
            ("42", "JSON object or an array"),
            (r#""temp""#, "JSON object or an array"),
            ("[]", "empty"),
            ("[1,2]", "must be a JSON object"),
            (r#"[{"a":1},"b"]"#, "must be a JSON object"),
            ("{}", "no measurement"),
            (r#"{"ts":5}"#, "no measurement"),
            (r#"{"values":{}}"#, "no measurement"),
            (r#"{"temp":"21.5"}"#, "finite numbers"),
            (r#"{"temp":"NaN"}"#, "finite numbers"),
            (r#"{"temp":"Infinity"}"#, "finite numbers"),
            (r#"{"temp":true}"#, "finite numbers"),
            (r#"{"temp":null}"#, "finite numbers"),
            (r#"{"temp":[1]}"#, "finite numbers"),
            (r#"{"temp":{"deep":{"deeper":1}}}"#, "finite numbers"),
            (r#"{"temp":1e999}"#, "not valid JSON"),
            (r#"{"values":{"a":1},"b":2}"#, "only \"ts\""),
            (r#"{"values":{"a":"x"}}"#, "finite numbers"),
            (r#"{"":1}"#, "1 to 128 bytes"),
            (r#"{"a\u0001":1}"#, "control characters"),
            (r#"{"ts":-1,"a":1}"#, "out of range"),
            (r#"{"ts":1.5,"a":1}"#, "integer epoch"),
            (r#"{"ts":"yesterday","a":1}"#, "RFC 3339"),
            (r#"{"ts":true,"a":1}"#, "RFC 3339"),
            (r#"{"ts":253402300800000,"a":1}"#, "out of range"),
            (r#"{"values":{"ts":1}}"#, "not a series name"),
            // One bad element rejects the whole array.
            (r#"[{"a":1},{"b":"x"}]"#, "finite numbers"),
        ];
        for (payload, reason) in refused {
            match check(DataKind::Telemetry, payload) {
                Err(message) => assert!(message.contains(reason), "{payload}: {message}"),
                Ok(parsed) => panic!("{payload} accepted as {parsed}"),
            }
        }
        for (payload, reason) in [
            (long_name.as_str(), "1 to 128 bytes"),
            (too_many.as_str(), "more than 1000 elements"),
            (too_many_points.as_str(), "more than 1000 points"),
        ] {
            assert!(check(DataKind::Telemetry, payload).is_err_and(|message| message.contains(reason)), "{reason}");
        }
        assert!(parse(DataKind::Telemetry, b"\xff\xfe{}", NOW).is_err_and(|reason| reason.0.contains("UTF-8")));
        // Exactly 128 bytes and exactly 1000 points are fine.
        assert!(check(DataKind::Telemetry, &format!(r#"{{"{}":1}}"#, "s".repeat(128))).is_ok());
        let thousand = format!("{{{}}}", (0..1000).map(|j| format!(r#""s{j}":1"#)).collect::<Vec<_>>().join(","));
        assert!(check(DataKind::Telemetry, &thousand).is_ok());
    }

    #[test]
    fn events() {
        assert_eq!(
            check(DataKind::Events, r#"{"type":"door","text":"open","ts":5,"floor":3,"tags":["a"]}"#),
            Ok(json!([5, "door", {"type": "door", "text": "open", "floor": 3, "tags": ["a"]}]))
        );
        assert_eq!(
            check(DataKind::Events, r#"{"type":"security.tamper"}"#),
            Ok(json!([NOW, "security.tamper", {"type": "security.tamper"}]))
        );
        for (payload, reason) in [
            (r#"{"text":"no type"}"#, "type is required"),
            (r#"{"type":7}"#, "type must be a string"),
            (r#"{"type":""}"#, "1 to 128"),
            (r#"{"type":"x","text":5}"#, "text must be a string"),
            (r#"{"type":"x","ts":"soon"}"#, "RFC 3339"),
            ("[]", "JSON object"),
        ] {
            assert!(check(DataKind::Events, payload).is_err_and(|message| message.contains(reason)), "{payload}");
        }
    }

    #[test]
    fn alarms() {
        assert_eq!(
            check(DataKind::Alarms, r#"{"type":"overheat","severity":"MAJOR","text":"hot"}"#),
            Ok(json!([NOW, "overheat", "MAJOR", "hot", false]))
        );
        assert_eq!(
            check(DataKind::Alarms, r#"{"type":"overheat","severity":"MINOR","status":"ACTIVE","ts":9}"#),
            Ok(json!([9, "overheat", "MINOR", null, false]))
        );
        assert_eq!(
            check(DataKind::Alarms, r#"{"type":"overheat","status":"CLEARED"}"#),
            Ok(json!([NOW, "overheat", null, null, true]))
        );
        for (payload, reason) in [
            (r#"{"type":"overheat"}"#, "severity is required"),
            (r#"{"type":"overheat","severity":"major"}"#, "severity must be"),
            (r#"{"type":"overheat","severity":"FATAL"}"#, "severity must be"),
            (r#"{"severity":"MAJOR"}"#, "type is required"),
            (r#"{"type":"x","severity":"MAJOR","status":"ACKNOWLEDGED"}"#, "status must be"),
            (r#"{"type":"x","severity":"MAJOR","text":[]}"#, "text must be"),
        ] {
            assert!(check(DataKind::Alarms, payload).is_err_and(|message| message.contains(reason)), "{payload}");
        }
    }

    #[test]
    fn attestation_and_twin() {
        let digest = "AB".repeat(32);
        let report = format!(r#"{{"firmware_version":"1.2.3","firmware_sha256":"{digest}","secure_boot":true}}"#);
        assert_eq!(
            check(DataKind::Attestation, &report),
            Ok(json!([NOW, {"firmware_version": "1.2.3", "firmware_sha256": "ab".repeat(32), "secure_boot": true}]))
        );
        for (payload, reason) in [
            (r#"{"firmware_sha256":"00","secure_boot":true}"#.to_owned(), "firmware_version is required"),
            (
                format!(r#"{{"firmware_version":"1","firmware_sha256":"{}","secure_boot":true}}"#, "g".repeat(64)),
                "64 hex",
            ),
            (
                format!(r#"{{"firmware_version":"1","firmware_sha256":"{}","secure_boot":true}}"#, "a".repeat(63)),
                "64 hex",
            ),
            (
                format!(r#"{{"firmware_version":"1","firmware_sha256":"{}","secure_boot":"yes"}}"#, "a".repeat(64)),
                "boolean",
            ),
            (
                format!(r#"{{"firmware_version":"1","firmware_sha256":"{}"}}"#, "a".repeat(64)),
                "secure_boot is required",
            ),
        ] {
            assert!(check(DataKind::Attestation, &payload).is_err_and(|message| message.contains(reason)), "{payload}");
        }
        assert_eq!(
            check(DataKind::TwinReported, r#"{"fw":"1.0","net":{"rssi":-70}}"#),
            Ok(json!({"fw": "1.0", "net": {"rssi": -70}}))
        );
        assert!(check(DataKind::TwinReported, "[1]").is_err());
        assert!(check(DataKind::TwinReported, "null").is_err());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut state =
            json!({"a": "b", "c": {"d": "e", "f": "g"}, "keep": 1}).as_object().cloned().unwrap_or_default();
        let patch = json!({"a": "z", "c": {"f": null, "h": [1]}, "n": {"x": null}, "keep": null});
        merge_patch(&mut state, patch.as_object().cloned().unwrap_or_default());
        assert_eq!(Value::Object(state), json!({"a": "z", "c": {"d": "e", "h": [1]}, "n": {}}));
        let mut scalar = json!({"a": 1}).as_object().cloned().unwrap_or_default();
        merge_patch(&mut scalar, json!({"a": {"b": 2}}).as_object().cloned().unwrap_or_default());
        assert_eq!(Value::Object(scalar), json!({"a": {"b": 2}}));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            for kind in [DataKind::Telemetry, DataKind::Events, DataKind::Alarms, DataKind::Attestation, DataKind::TwinReported] {
                let _ = parse(kind, &bytes, NOW);
            }
        }

        #[test]
        fn json_like_text_never_panics(text in r#"[\[\]{}",:0-9a-zA-Z.eE+\- ]{0,200}"#) {
            for kind in [DataKind::Telemetry, DataKind::Events, DataKind::Alarms, DataKind::Attestation, DataKind::TwinReported] {
                let _ = parse(kind, text.as_bytes(), NOW);
            }
        }

        #[test]
        fn accepted_telemetry_is_finite_and_bounded(
            values in proptest::collection::btree_map("x[a-z]{0,8}", any::<f64>(), 1..20),
        ) {
            let body = values.iter().map(|(name, value)| format!("\"{name}\":{value:?}")).collect::<Vec<_>>().join(",");
            let payload = format!("{{{body}}}");
            let all_finite = values.values().all(|value| value.is_finite());
            match parse(DataKind::Telemetry, payload.as_bytes(), NOW) {
                Ok(Parsed::Telemetry(groups)) => {
                    prop_assert!(all_finite);
                    prop_assert_eq!(groups.len(), 1);
                    for value in groups[0].values.values() {
                        prop_assert!(value.as_f64().is_some_and(f64::is_finite));
                    }
                }
                Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                Err(_) => prop_assert!(!all_finite),
            }
        }
    }
}
