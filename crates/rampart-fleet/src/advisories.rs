//! Vulnerability advisories (SPEC §9): OSV records (`id`, `summary`, `severity`,
//! `affected[].package.name` = a firmware name, `affected[].ranges[]` of type `SEMVER` with
//! `introduced` / `fixed` / `last_affected` events, or `affected[].versions`), checked on the
//! way in with errors that name the field, and the exposure: the devices whose firmware an
//! advisory affects.

use rampart_core::{AuditAction, Permission};
use rampart_data::QueryError;
use rampart_platform::Principal;
use rampart_store::AdvisoryRow;
use semver::Version;
use serde_json::{Map, Value, json};

use crate::Fleet;

/// Largest OSV record accepted, in bytes of JSON.
pub const MAX_ADVISORY_BYTES: usize = 256 * 1024;

/// One event of a SEMVER range.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Introduced(Version),
    Fixed(Version),
    LastAffected(Version),
}

impl Event {
    fn version(&self) -> &Version {
        match self {
            Event::Introduced(version) | Event::Fixed(version) | Event::LastAffected(version) => version,
        }
    }
}

/// What an advisory says is affected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Affected {
    package: String,
    ranges: Vec<Vec<Event>>,
    versions: Vec<String>,
}

/// A checked advisory.
#[derive(Debug, Clone, PartialEq)]
pub struct Advisory {
    pub id: String,
    pub summary: Option<String>,
    pub severity: Value,
    affected: Vec<Affected>,
    record: Value,
}

fn field<'a>(object: &'a Map<String, Value>, name: &str, at: &str) -> Result<&'a Value, String> {
    object.get(name).ok_or_else(|| format!("{at}{name} is required"))
}

fn text<'a>(value: &'a Value, at: &str) -> Result<&'a str, String> {
    value.as_str().ok_or_else(|| format!("{at} must be a string"))
}

fn version(text: &str, at: &str) -> Result<Version, String> {
    match text {
        "0" => Ok(Version::new(0, 0, 0)),
        other => Version::parse(other).map_err(|_| format!("{at} must be a SemVer version, got {other:?}")),
    }
}

impl Advisory {
    /// Checks an OSV record; the error names the offending field.
    pub fn parse(record: Value) -> Result<Advisory, String> {
        let object = record.as_object().ok_or("the advisory must be a JSON object (an OSV record)")?;
        let id = text(field(object, "id", "")?, "id")?.to_owned();
        let id_ok = !id.is_empty()
            && id.len() <= 128
            && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b':'));
        if !id_ok {
            return Err("id must be 1-128 of A-Z a-z 0-9 . _ - :".into());
        }
        let summary = match object.get("summary") {
            None | Some(Value::Null) => None,
            Some(value) => Some(text(value, "summary")?.to_owned()),
        };
        let severity = object.get("severity").cloned().unwrap_or(Value::Null);
        if !matches!(severity, Value::Null | Value::String(_) | Value::Array(_)) {
            return Err("severity must be a string or an OSV severity array".into());
        }
        let affected_list = field(object, "affected", "")?.as_array().ok_or("affected must be an array")?;
        if affected_list.is_empty() {
            return Err("affected must name at least one package".into());
        }
        let mut affected = Vec::new();
        for (index, entry) in affected_list.iter().enumerate() {
            affected.push(Self::affected(entry, &format!("affected[{index}]"))?);
        }
        Ok(Advisory { id, summary, severity, affected, record })
    }

    fn affected(entry: &Value, at: &str) -> Result<Affected, String> {
        let entry = entry.as_object().ok_or_else(|| format!("{at} must be an object"))?;
        let package = field(entry, "package", &format!("{at}."))?
            .as_object()
            .ok_or_else(|| format!("{at}.package must be an object"))?;
        let package = text(field(package, "name", &format!("{at}.package."))?, &format!("{at}.package.name"))?;
        if package.is_empty() {
            return Err(format!("{at}.package.name must not be empty"));
        }
        let mut ranges = Vec::new();
        if let Some(list) = entry.get("ranges") {
            let list = list.as_array().ok_or_else(|| format!("{at}.ranges must be an array"))?;
            for (index, range) in list.iter().enumerate() {
                ranges.push(Self::range(range, &format!("{at}.ranges[{index}]"))?);
            }
        }
        let mut versions = Vec::new();
        if let Some(list) = entry.get("versions") {
            let list = list.as_array().ok_or_else(|| format!("{at}.versions must be an array"))?;
            for (index, value) in list.iter().enumerate() {
                versions.push(text(value, &format!("{at}.versions[{index}]"))?.to_owned());
            }
        }
        if ranges.is_empty() && versions.is_empty() {
            return Err(format!("{at} must have ranges or versions"));
        }
        Ok(Affected { package: package.to_owned(), ranges, versions })
    }

    fn range(range: &Value, at: &str) -> Result<Vec<Event>, String> {
        let range = range.as_object().ok_or_else(|| format!("{at} must be an object"))?;
        let kind = text(field(range, "type", &format!("{at}."))?, &format!("{at}.type"))?;
        if kind != "SEMVER" {
            return Err(format!("{at}.type must be SEMVER (firmware versions are SemVer), got {kind:?}"));
        }
        let list = field(range, "events", &format!("{at}."))?
            .as_array()
            .ok_or_else(|| format!("{at}.events must be an array"))?;
        let mut events = Vec::new();
        for (index, event) in list.iter().enumerate() {
            let at = format!("{at}.events[{index}]");
            let event = event
                .as_object()
                .filter(|event| event.len() == 1)
                .ok_or_else(|| format!("{at} must be an object with one of introduced, fixed, last_affected"))?;
            let (kind, value) = event.iter().next().ok_or_else(|| format!("{at} is empty"))?;
            let value = version(text(value, &format!("{at}.{kind}"))?, &format!("{at}.{kind}"))?;
            events.push(match kind.as_str() {
                "introduced" => Event::Introduced(value),
                "fixed" => Event::Fixed(value),
                "last_affected" => Event::LastAffected(value),
                other => return Err(format!("{at}: unknown event {other:?} (introduced, fixed, last_affected)")),
            });
        }
        if !events.iter().any(|event| matches!(event, Event::Introduced(_))) {
            return Err(format!("{at}.events must have an introduced event"));
        }
        events.sort_by(|a, b| a.version().cmp(b.version()));
        Ok(events)
    }

    /// Whether the advisory affects firmware `name` at `version`.
    pub fn affects(&self, name: &str, version: &str) -> bool {
        let parsed = Version::parse(version).ok();
        self.affected.iter().filter(|affected| affected.package == name).any(|affected| {
            affected.versions.iter().any(|listed| listed == version)
                || parsed.as_ref().is_some_and(|parsed| affected.ranges.iter().any(|range| in_range(range, parsed)))
        })
    }
}

/// The OSV evaluation of one range: events in version order, the last one at or below the
/// version decides.
fn in_range(events: &[Event], version: &Version) -> bool {
    let mut affected = false;
    for event in events {
        match event {
            Event::Introduced(at) if version >= at => affected = true,
            Event::Fixed(at) if version >= at => affected = false,
            Event::LastAffected(at) if version > at => affected = false,
            _ => {}
        }
    }
    affected
}

/// A device running firmware that advisories affect.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub device: String,
    pub firmware_name: String,
    pub firmware_version: String,
    /// `{"id","summary","severity"}` of each advisory.
    pub advisories: Vec<Value>,
}

impl Fleet {
    /// Stores an OSV record, replacing one with the same id (`firmware:write`, audited).
    pub async fn import_advisory(&self, principal: &Principal, record: Value) -> Result<Advisory, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareWrite).await.map_err(QueryError::from_service)?;
        let text = record.to_string();
        if text.len() > MAX_ADVISORY_BYTES {
            return Err(QueryError::Invalid(format!("the advisory is larger than {MAX_ADVISORY_BYTES} bytes")));
        }
        let advisory = Advisory::parse(record).map_err(QueryError::Invalid)?;
        let row = AdvisoryRow {
            tenant: principal.tenant.clone(),
            id: advisory.id.clone(),
            record: text,
            updated_at: self.0.platform.now_ms(),
        };
        self.0.store.put_advisory(&row).await?;
        let details = json!({"advisory": advisory.id});
        self.0
            .platform
            .audit_by(principal, AuditAction::AdvisoryImport, format!("advisory:{}", advisory.id), details)
            .await;
        Ok(advisory)
    }

    /// The tenant's advisories (`firmware:read`).
    pub async fn advisories(&self, principal: &Principal) -> Result<Vec<Advisory>, QueryError> {
        self.0.platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        self.stored_advisories(&principal.tenant).await
    }

    async fn stored_advisories(&self, tenant: &str) -> Result<Vec<Advisory>, QueryError> {
        let mut advisories = Vec::new();
        for row in self.0.store.list_advisories(tenant).await? {
            let record: Value =
                serde_json::from_str(&row.record).map_err(|error| QueryError::Internal(error.to_string()))?;
            advisories.push(Advisory::parse(record).map_err(QueryError::Internal)?);
        }
        Ok(advisories)
    }

    /// The devices the principal sees whose firmware an advisory affects (`firmware:read`).
    pub async fn exposure(&self, principal: &Principal) -> Result<Vec<Exposure>, QueryError> {
        let platform = &self.0.platform;
        platform.authorize(principal, Permission::FirmwareRead).await.map_err(QueryError::from_service)?;
        let advisories = self.stored_advisories(&principal.tenant).await?;
        let mut exposed = Vec::new();
        for device in self.0.store.list_device_firmware(&principal.tenant).await? {
            let (Some(name), Some(version)) = (device.firmware_name, device.firmware_version) else { continue };
            let matching: Vec<Value> = advisories
                .iter()
                .filter(|advisory| advisory.affects(&name, &version))
                .map(|advisory| json!({"id": advisory.id, "summary": advisory.summary, "severity": advisory.severity}))
                .collect();
            if matching.is_empty()
                || !platform.sees_device(principal, &device.device).await.map_err(QueryError::from_service)?
            {
                continue;
            }
            exposed.push(Exposure {
                device: device.device,
                firmware_name: name,
                firmware_version: version,
                advisories: matching,
            });
        }
        Ok(exposed)
    }
}

impl Advisory {
    /// The record as imported.
    pub fn record(&self) -> &Value {
        &self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osv(ranges: Value) -> Value {
        json!({"id": "RSA-2026-1", "summary": "bad", "severity": "HIGH",
            "affected": [{"package": {"name": "sensor-fw"}, "ranges": ranges}]})
    }

    #[test]
    fn semver_ranges_follow_osv() {
        let advisory = Advisory::parse(osv(json!([{"type": "SEMVER", "events": [
            {"introduced": "1.0.0"}, {"fixed": "1.2.0"}, {"introduced": "2.0.0"}, {"last_affected": "2.1.0"}]}])))
        .expect("valid");
        for (version, affected) in
            [("0.9.0", false), ("1.0.0", true), ("1.1.9", true), ("1.2.0", false), ("2.1.0", true), ("2.1.1", false)]
        {
            assert_eq!(advisory.affects("sensor-fw", version), affected, "{version}");
        }
        assert!(!advisory.affects("other-fw", "1.1.0"));
        let from_zero =
            Advisory::parse(osv(json!([{"type": "SEMVER", "events": [{"introduced": "0"}]}]))).expect("valid");
        assert!(from_zero.affects("sensor-fw", "0.0.1"));
    }

    #[test]
    fn malformed_records_name_the_field() {
        for (record, names) in [
            (json!({"summary": "x", "affected": []}), "id"),
            (json!({"id": "A", "affected": []}), "affected"),
            (json!({"id": "A", "affected": [{"ranges": []}]}), "affected[0].package"),
            (osv(json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}])), "affected[0].ranges[0].type"),
            (
                osv(json!([{"type": "SEMVER", "events": [{"introduced": "one"}]}])),
                "affected[0].ranges[0].events[0].introduced",
            ),
            (osv(json!([{"type": "SEMVER", "events": [{"fixed": "1.0.0"}]}])), "affected[0].ranges[0].events"),
            (osv(json!([{"type": "SEMVER"}])), "affected[0].ranges[0].events"),
            (json!([1]), "object"),
        ] {
            let error = Advisory::parse(record).expect_err(names);
            assert!(error.contains(names), "{error} should name {names}");
        }
    }
}
