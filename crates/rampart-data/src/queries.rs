//! Reading device data back: measurements (decrypted and expanded into points), aggregates,
//! events, alarms and the reported twin. Every query takes the tenant; the device must exist.

use std::sync::Arc;

use rampart_core::{AlarmStatus, AuditAction, Permission, Severity};
use rampart_platform::{Principal, format_rfc3339_ms};
use rampart_store::{AlarmFilter, AlarmRow, Page, TelemetryRow, TimeRange};
use serde_json::{Map, Value, json};

use crate::error::QueryError;
use crate::ingest::{Ingestor, Shared};
use crate::keys::KeyError;
use crate::live::{LiveEvent, LiveTopic};
use crate::seal::{self, DeviceKeys};

/// Page size when none is asked for.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// Largest page size.
pub(crate) const MAX_LIMIT: u32 = 1000;
/// Most telemetry rows one measurements page reads; a page that hits it ends early with a
/// cursor (so a sparse `series` filter cannot make one request scan a whole history).
pub const MAX_SCAN_ROWS: usize = 10_000;
/// Most telemetry messages one aggregate may read; larger ranges are refused (400).
pub const MAX_AGGREGATE_ROWS: usize = 100_000;

/// A page of a list: `next_cursor` is `Some` when more items may follow.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `GET /devices/{id}/measurements` parameters.
#[derive(Debug, Clone, Default)]
pub struct MeasurementQuery {
    /// Only this series; `None` = all.
    pub series: Option<String>,
    /// Inclusive lower bound, epoch ms.
    pub from: Option<i64>,
    /// Inclusive upper bound, epoch ms.
    pub to: Option<i64>,
    /// Newest first instead of oldest first.
    pub descending: bool,
    /// 1..=1000 (0 means the default, 100).
    pub limit: u32,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
}

/// One point of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub ts: i64,
    pub series: String,
    pub value: f64,
}

/// Bucket width of an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateInterval {
    Minute,
    Hour,
    Day,
}

impl AggregateInterval {
    /// `1m`, `1h` or `1d`.
    pub fn parse(text: &str) -> Option<AggregateInterval> {
        match text {
            "1m" => Some(AggregateInterval::Minute),
            "1h" => Some(AggregateInterval::Hour),
            "1d" => Some(AggregateInterval::Day),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            AggregateInterval::Minute => 60_000,
            AggregateInterval::Hour => 3_600_000,
            AggregateInterval::Day => 86_400_000,
        }
    }
}

/// Aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFn {
    Avg,
    Min,
    Max,
    Sum,
    Count,
}

impl AggregateFn {
    /// `avg`, `min`, `max`, `sum` or `count`.
    pub fn parse(text: &str) -> Option<AggregateFn> {
        match text {
            "avg" => Some(AggregateFn::Avg),
            "min" => Some(AggregateFn::Min),
            "max" => Some(AggregateFn::Max),
            "sum" => Some(AggregateFn::Sum),
            "count" => Some(AggregateFn::Count),
            _ => None,
        }
    }
}

/// `GET /devices/{id}/measurements/aggregate` parameters.
#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub series: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub interval: AggregateInterval,
    pub function: AggregateFn,
}

/// One aggregate bucket: `ts` is the bucket start (UTC-aligned), empty buckets are omitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub ts: i64,
    pub value: f64,
}

/// `GET /devices/{id}/events` parameters.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub event_type: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub descending: bool,
    pub limit: u32,
    pub cursor: Option<String>,
}

/// One stored device event, decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    pub id: String,
    pub ts: i64,
    pub event_type: String,
    pub text: Option<String>,
    /// Every other field the device sent, as it sent it.
    pub extra: Map<String, Value>,
}

/// `GET /alarms` parameters.
#[derive(Debug, Clone, Default)]
pub struct AlarmQuery {
    pub status: Option<AlarmStatus>,
    pub severity: Option<Severity>,
    pub device: Option<String>,
    /// Group scope: only devices in these groups (already expanded to sub-groups); `None` = all.
    pub within_groups: Option<Vec<String>>,
    pub limit: u32,
    pub cursor: Option<String>,
}

/// An alarm, decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    pub id: String,
    pub device: String,
    pub alarm_type: String,
    pub severity: Severity,
    pub status: AlarmStatus,
    pub count: i64,
    pub text: Option<String>,
    pub first_ts: i64,
    pub last_ts: i64,
}

/// The reported half of a device twin.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedTwin {
    /// A JSON object (empty before the first report).
    pub reported: Value,
    /// Bumped on every accepted patch; 0 before the first.
    pub version: i64,
}

fn page_limit(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_LIMIT,
        limit => limit.min(MAX_LIMIT),
    }
}

fn bad_cursor() -> QueryError {
    QueryError::Invalid("invalid cursor".to_owned())
}

/// Measurement cursor: the key of the last row read completely (if any) and how many points
/// of the next row were already returned. Text: `<ts>.<seq>.<skip>` or `-.<skip>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PointCursor {
    after: Option<(i64, i64)>,
    skip: usize,
}

impl PointCursor {
    fn encode(self) -> String {
        match self.after {
            Some((ts, seq)) => format!("{ts}.{seq}.{}", self.skip),
            None => format!("-.{}", self.skip),
        }
    }

    fn decode(text: &str) -> Result<PointCursor, QueryError> {
        let parts: Vec<&str> = text.split('.').collect();
        let number = |part: &str| part.parse::<i64>().map_err(|_| bad_cursor());
        let skip = |part: &str| part.parse::<usize>().ok().filter(|skip| *skip <= 1000).ok_or_else(bad_cursor);
        match parts.as_slice() {
            ["-", rest] => Ok(PointCursor { after: None, skip: skip(rest)? }),
            [ts, seq, rest] => Ok(PointCursor { after: Some((number(ts)?, number(seq)?)), skip: skip(rest)? }),
            _ => Err(bad_cursor()),
        }
    }
}

/// Event cursor: `<ts>.<id>` of the last event returned.
fn decode_event_cursor(text: &str) -> Result<(i64, String), QueryError> {
    let (ts, id) = text.split_once('.').ok_or_else(bad_cursor)?;
    let ts = ts.parse::<i64>().map_err(|_| bad_cursor())?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(bad_cursor());
    }
    Ok((ts, id.to_owned()))
}

/// Alarm cursor: the id of the last alarm returned.
fn decode_alarm_cursor(text: &str) -> Result<String, QueryError> {
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(bad_cursor());
    }
    Ok(text.to_owned())
}

fn decrypt_failed(what: &str) -> QueryError {
    QueryError::Internal(format!("{what} could not be decrypted"))
}

/// The points of one telemetry row, in series order (reversed for descending listings).
fn points_of(keys: &DeviceKeys, row: &TelemetryRow, descending: bool) -> Result<Vec<(String, f64)>, QueryError> {
    let plain =
        keys.open_telemetry(&row.tenant, &row.device, row.ts, &row.sealed).map_err(|_| decrypt_failed("telemetry"))?;
    let Ok(Value::Object(values)) = serde_json::from_slice::<Value>(&plain) else {
        return Err(QueryError::Internal("stored telemetry is not a JSON object".to_owned()));
    };
    let mut points: Vec<(String, f64)> =
        values.into_iter().filter_map(|(series, value)| value.as_f64().map(|value| (series, value))).collect();
    if descending {
        points.reverse();
    }
    Ok(points)
}

fn alarm_from_row(keys: Option<&DeviceKeys>, row: AlarmRow) -> Result<Alarm, QueryError> {
    let (severity, status) = (row.severity, row.status);
    let text = match (&row.text_sealed, keys) {
        (Some(sealed), Some(keys)) => {
            match keys.open_record(seal::ALARM_TEXT, &row.tenant, &row.device, &row.alarm_type, sealed) {
                Ok(plain) => Some(String::from_utf8_lossy(&plain).into_owned()),
                Err(_) => return Err(decrypt_failed("alarm text")),
            }
        }
        _ => None,
    };
    Ok(Alarm {
        id: row.id,
        device: row.device,
        alarm_type: row.alarm_type,
        severity,
        status,
        count: row.count,
        text,
        first_ts: row.first_ts,
        last_ts: row.last_ts,
    })
}

impl Alarm {
    /// The alarm as the API and the live stream show it (times in RFC 3339).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("id".into(), Value::from(self.id.clone()));
        map.insert("device".into(), Value::from(self.device.clone()));
        map.insert("type".into(), Value::from(self.alarm_type.clone()));
        map.insert("severity".into(), Value::from(self.severity.as_str()));
        map.insert("status".into(), Value::from(self.status.as_str()));
        map.insert("count".into(), Value::from(self.count));
        map.insert("text".into(), self.text.clone().map_or(Value::Null, Value::from));
        map.insert("first_ts".into(), Value::from(format_rfc3339_ms(self.first_ts)));
        map.insert("last_ts".into(), Value::from(format_rfc3339_ms(self.last_ts)));
        Value::Object(map)
    }
}

/// The live event for an alarm's current state (after a raise, repeat, clear or update).
pub(crate) async fn alarm_live_event(shared: &Shared, row: AlarmRow) -> Option<LiveEvent> {
    let keys = shared.keys.get(&row.tenant, &row.device).await.ok();
    let (tenant, updated_at) = (row.tenant.clone(), row.updated_at);
    let alarm = match alarm_from_row(keys.as_deref(), row) {
        Ok(alarm) => alarm,
        Err(error) => {
            tracing::warn!(%error, "alarm could not be read for the live stream");
            return None;
        }
    };
    let mut data = alarm.to_json();
    if let Value::Object(map) = &mut data {
        map.insert("ts".into(), Value::from(format_rfc3339_ms(updated_at)));
    }
    Some(LiveEvent {
        tenant: Arc::from(tenant),
        device: Arc::from(alarm.device.as_str()),
        topic: LiveTopic::Alarms,
        ts: updated_at,
        data: Arc::new(data),
    })
}

impl Ingestor {
    async fn query_keys(&self, tenant: &str, device: &str) -> Result<Arc<DeviceKeys>, QueryError> {
        self.inner.shared.keys.get(tenant, device).await.map_err(|error| match error {
            KeyError::Unknown => QueryError::NotFound,
            KeyError::Other(reason) => QueryError::Internal(reason),
        })
    }

    /// Measurements of one device, expanded into points (`ts`, `series`, `value`), ordered by
    /// time then series. At most [`MAX_SCAN_ROWS`] messages are read per page.
    pub async fn measurements(
        &self,
        tenant: &str,
        device: &str,
        query: &MeasurementQuery,
    ) -> Result<ListPage<Measurement>, QueryError> {
        let keys = self.query_keys(tenant, device).await?;
        let limit = page_limit(query.limit) as usize;
        let mut cursor = match &query.cursor {
            Some(text) => PointCursor::decode(text)?,
            None => PointCursor { after: None, skip: 0 },
        };
        let chunk = u32::try_from(limit + 1).unwrap_or(MAX_LIMIT + 1);
        let store = &self.inner.shared.store;
        let mut items = Vec::with_capacity(limit);
        let mut scanned = 0usize;
        loop {
            let range = TimeRange {
                from: query.from,
                to: query.to,
                after: cursor.after,
                descending: query.descending,
                limit: chunk,
            };
            let rows = store.list_telemetry(tenant, device, &range).await?;
            let exhausted = rows.len() < chunk as usize;
            for row in rows {
                scanned += 1;
                let points = points_of(&keys, &row, query.descending)?;
                let wanted = points.into_iter().filter(|(series, _)| query.series.as_ref().is_none_or(|s| s == series));
                for (index, (series, value)) in wanted.enumerate().skip(cursor.skip) {
                    if items.len() == limit {
                        let next = PointCursor { after: cursor.after, skip: index };
                        return Ok(ListPage { items, next_cursor: Some(next.encode()) });
                    }
                    items.push(Measurement { ts: row.ts, series, value });
                }
                cursor = PointCursor { after: Some((row.ts, row.seq)), skip: 0 };
            }
            if exhausted {
                return Ok(ListPage { items, next_cursor: None });
            }
            if scanned >= MAX_SCAN_ROWS {
                return Ok(ListPage { items, next_cursor: Some(cursor.encode()) });
            }
        }
    }

    /// Aggregated buckets of one series of one device, ascending; empty buckets are left out.
    /// A range holding more than [`MAX_AGGREGATE_ROWS`] messages is refused.
    pub async fn aggregate(
        &self,
        tenant: &str,
        device: &str,
        query: &AggregateQuery,
    ) -> Result<Vec<Bucket>, QueryError> {
        let keys = self.query_keys(tenant, device).await?;
        let cap = u32::try_from(MAX_AGGREGATE_ROWS + 1).unwrap_or(u32::MAX);
        let range = TimeRange { from: query.from, to: query.to, after: None, descending: false, limit: cap };
        let rows = self.inner.shared.store.list_telemetry(tenant, device, &range).await?;
        if rows.len() > MAX_AGGREGATE_ROWS {
            return Err(QueryError::Invalid(format!(
                "the range holds more than {MAX_AGGREGATE_ROWS} messages; narrow from/to"
            )));
        }
        let width = query.interval.millis();
        // (bucket start, count, sum, min, max), in ascending bucket order.
        let mut buckets: Vec<(i64, u64, f64, f64, f64)> = Vec::new();
        for row in &rows {
            let start = row.ts.div_euclid(width) * width;
            for (series, value) in points_of(&keys, row, false)? {
                if series != query.series {
                    continue;
                }
                match buckets.last_mut() {
                    Some(bucket) if bucket.0 == start => {
                        bucket.1 += 1;
                        bucket.2 += value;
                        bucket.3 = bucket.3.min(value);
                        bucket.4 = bucket.4.max(value);
                    }
                    _ => buckets.push((start, 1, value, value, value)),
                }
            }
        }
        Ok(buckets
            .into_iter()
            .map(|(ts, count, sum, min, max)| {
                let value = match query.function {
                    AggregateFn::Avg => sum / count as f64,
                    AggregateFn::Min => min,
                    AggregateFn::Max => max,
                    AggregateFn::Sum => sum,
                    AggregateFn::Count => count as f64,
                };
                Bucket { ts, value }
            })
            .collect())
    }

    /// Events of one device, ordered by time.
    pub async fn events(
        &self,
        tenant: &str,
        device: &str,
        query: &EventQuery,
    ) -> Result<ListPage<DeviceEvent>, QueryError> {
        let keys = self.query_keys(tenant, device).await?;
        let limit = page_limit(query.limit);
        let after = query.cursor.as_deref().map(decode_event_cursor).transpose()?;
        let tag = query.event_type.as_deref().map(|event_type| keys.event_type_tag(event_type));
        let range = TimeRange { from: query.from, to: query.to, after, descending: query.descending, limit: limit + 1 };
        let mut rows = self.inner.shared.store.list_device_events(tenant, device, tag.as_deref(), &range).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match rows.last() {
            Some(last) if more => Some(format!("{}.{}", last.ts, last.id)),
            _ => None,
        };
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let plain = keys
                .open_record(seal::EVENTS, &row.tenant, &row.device, &row.id, &row.sealed)
                .map_err(|_| decrypt_failed("event"))?;
            let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&plain) else {
                return Err(QueryError::Internal("stored event is not a JSON object".to_owned()));
            };
            let event_type = match body.remove("type") {
                Some(Value::String(event_type)) => event_type,
                _ => return Err(QueryError::Internal("stored event has no type".to_owned())),
            };
            let text = match body.remove("text") {
                Some(Value::String(text)) => Some(text),
                _ => None,
            };
            items.push(DeviceEvent { id: row.id, ts: row.ts, event_type, text, extra: body });
        }
        Ok(ListPage { items, next_cursor })
    }

    /// Alarms of the tenant, newest first.
    pub async fn alarms(&self, tenant: &str, query: &AlarmQuery) -> Result<ListPage<Alarm>, QueryError> {
        let limit = page_limit(query.limit);
        let after = query.cursor.as_deref().map(decode_alarm_cursor).transpose()?;
        let filter = AlarmFilter {
            status: query.status,
            severity: query.severity,
            device: query.device.clone(),
            within_groups: query.within_groups.clone(),
        };
        let mut rows = self.inner.shared.store.list_alarms(tenant, &filter, &Page { after, limit: limit + 1 }).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|row| row.id.clone()) } else { None };
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.push(self.decode_alarm(row).await?);
        }
        Ok(ListPage { items, next_cursor })
    }

    async fn decode_alarm(&self, row: AlarmRow) -> Result<Alarm, QueryError> {
        let keys = match row.text_sealed {
            Some(_) => self.inner.shared.keys.get(&row.tenant, &row.device).await.ok(),
            None => None,
        };
        alarm_from_row(keys.as_deref(), row)
    }

    /// One alarm.
    pub async fn alarm(&self, tenant: &str, id: &str) -> Result<Alarm, QueryError> {
        let row = self.inner.shared.store.get_alarm(tenant, id).await?;
        self.decode_alarm(row).await
    }

    /// Acknowledges (only from ACTIVE) or clears (from ACTIVE or ACKNOWLEDGED) an alarm of a
    /// device the principal sees (`alarms:write`), audits it as `alarm.update`, and publishes
    /// its new state on the live channel. Other transitions are `Conflict`; asking for ACTIVE
    /// is `Invalid`.
    pub async fn update_alarm_status(
        &self,
        principal: &Principal,
        id: &str,
        status: AlarmStatus,
    ) -> Result<Alarm, QueryError> {
        let from = status.reachable_from();
        if from.is_empty() {
            return Err(QueryError::Invalid("status must be ACKNOWLEDGED or CLEARED".to_owned()));
        }
        let shared = &self.inner.shared;
        let before = self.visible_alarm(principal, Permission::AlarmsWrite, id).await?;
        let now = shared.platform.now_ms();
        let row = match shared.store.set_alarm_status(&principal.tenant, &before.id, from, status, now).await {
            Ok(row) => row,
            Err(rampart_store::StoreError::Conflict(reason)) => return Err(QueryError::Conflict(reason)),
            Err(error) => return Err(error.into()),
        };
        if let Some(event) = alarm_live_event(shared, row.clone()).await {
            shared.publish(event);
        }
        let updated = self.decode_alarm(row).await?;
        let details = json!({
            "device": updated.device,
            "type": updated.alarm_type,
            "from": before.status.as_str(),
            "status": updated.status.as_str(),
        });
        shared.platform.audit_by(principal, AuditAction::AlarmUpdate, format!("alarm:{}", updated.id), details).await;
        Ok(updated)
    }

    /// An alarm of a device the principal sees (needs `permission`); `NotFound` otherwise.
    pub async fn visible_alarm(
        &self,
        principal: &Principal,
        permission: Permission,
        id: &str,
    ) -> Result<Alarm, QueryError> {
        let platform = &self.inner.shared.platform;
        platform.authorize(principal, permission).await.map_err(QueryError::from_service)?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(QueryError::NotFound);
        }
        let alarm = self.alarm(&principal.tenant, id).await?;
        match platform.sees_device(principal, &alarm.device).await.map_err(QueryError::from_service)? {
            true => Ok(alarm),
            false => Err(QueryError::NotFound),
        }
    }

    /// The reported state of a device's twin (an empty object and version 0 before the first
    /// report).
    pub async fn reported_twin(&self, tenant: &str, device: &str) -> Result<ReportedTwin, QueryError> {
        let shared = &self.inner.shared;
        crate::twin::read_reported(&shared.keys, shared, tenant, device).await
    }
}

#[cfg(test)]
mod tests {
    use super::PointCursor;

    #[test]
    fn point_cursors_round_trip_and_reject_garbage() {
        for cursor in [
            PointCursor { after: None, skip: 0 },
            PointCursor { after: None, skip: 7 },
            PointCursor { after: Some((1_764_000_000_000, 42)), skip: 3 },
            PointCursor { after: Some((-5, -9)), skip: 0 },
        ] {
            assert_eq!(PointCursor::decode(&cursor.encode()), Ok(cursor));
        }
        for garbage in ["", "-", "x.1.2", "1.2", "1.2.3.4", "-.99999", "1.2.-1"] {
            assert!(PointCursor::decode(garbage).is_err(), "{garbage}");
        }
    }
}
