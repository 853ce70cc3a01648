//! Device data (SPEC §8): telemetry (packed rows, see `telemetry_rows`), events, attestation
//! reports, alarms, the reported twin and the `last_seen` bookkeeping of ingest. Payloads
//! arrive sealed under the device key; rows go with their device and tenant (see
//! [`crate::owned_tables`]).

use async_trait::async_trait;
use rampart_core::{AlarmStatus, Severity};

use crate::sql_store::SqlStore;
use crate::telemetry_rows;
use crate::value::{Row, Statement, Value, placeholders};
use crate::{Durable, Page, StoreError, StoreResult};

/// One telemetry message (or one element of an array message) of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryRow {
    pub tenant: String,
    pub device: String,
    pub ts: i64,
    /// Orders rows with equal `ts`; random, unique per (tenant, device, ts).
    pub seq: i64,
    pub sealed: Vec<u8>,
}

/// One event of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEventRow {
    pub tenant: String,
    pub device: String,
    pub ts: i64,
    pub id: String,
    /// Keyed hash of the event type (the clear type is inside `sealed`), for `?type=` filters.
    pub type_tag: String,
    pub sealed: Vec<u8>,
}

/// One attestation report of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRow {
    pub tenant: String,
    pub device: String,
    pub ts: i64,
    pub id: String,
    pub sealed: Vec<u8>,
}

/// An alarm as stored; at most one alarm per (tenant, device, alarm_type) is not `CLEARED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRow {
    pub tenant: String,
    pub id: String,
    pub device: String,
    pub alarm_type: String,
    pub severity: Severity,
    pub status: AlarmStatus,
    pub count: i64,
    pub text_sealed: Option<Vec<u8>>,
    pub first_ts: i64,
    pub last_ts: i64,
    pub updated_at: i64,
}

/// Raising an alarm: creates it (with `id`, count 1, ACTIVE) unless the device already has one
/// of this type that is not CLEARED, in which case that one's count goes up by one and its
/// severity, text and last time are replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRaise {
    pub tenant: String,
    /// Used only when a new alarm is created.
    pub id: String,
    pub device: String,
    pub alarm_type: String,
    pub severity: Severity,
    pub text_sealed: Option<Vec<u8>>,
    pub ts: i64,
}

/// A device clears its alarm of `alarm_type` (no-op if none is open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmClear {
    pub tenant: String,
    pub device: String,
    pub alarm_type: String,
    pub ts: i64,
}

/// One write of a [`DeviceDataBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceDataRow {
    Telemetry(TelemetryRow),
    Event(DeviceEventRow),
    Attestation(AttestationRow),
    RaiseAlarm(AlarmRaise),
    ClearAlarm(AlarmClear),
}

/// A device sent data at `at_ms`: `last_seen` becomes at least `at_ms`, `registered` becomes
/// `active`, and its open `unavailable` alarm is cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSeen {
    pub tenant: String,
    pub device: String,
    pub at_ms: i64,
}

/// Everything the ingest writer commits in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDataBatch {
    /// Applied in order (an alarm raised then cleared in one batch ends CLEARED).
    pub rows: Vec<DeviceDataRow>,
    /// At most one per device is useful; the latest time wins anyway.
    pub seen: Vec<DeviceSeen>,
}

/// Time range and keyset position for listing telemetry or events of one device.
/// `from`/`to` are inclusive; rows strictly after `after` = (ts, seq or id) in the list order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeRange<K> {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub after: Option<(i64, K)>,
    pub descending: bool,
    /// 0 = no limit.
    pub limit: u32,
}

/// Filters for listing alarms; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmFilter {
    pub status: Option<AlarmStatus>,
    pub severity: Option<Severity>,
    pub device: Option<String>,
    /// Only devices whose group is one of these (group-scoped callers); `None` = no restriction.
    pub within_groups: Option<Vec<String>>,
}

/// A device with `required_interval_s` that has been silent for longer than that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentDevice {
    pub tenant: String,
    pub device: String,
    pub last_seen: i64,
    pub required_interval_s: i64,
}

/// The reported twin state of a device, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinReportedRow {
    pub tenant: String,
    pub device: String,
    pub reported_sealed: Vec<u8>,
    pub reported_version: i64,
    pub updated_at: i64,
}

/// Device data persistence.
#[async_trait]
pub trait DeviceDataStore: Send + Sync {
    /// Commits the whole batch in ONE transaction (all or nothing): rows in order, then the
    /// `seen` updates, and returns once it is durable.
    async fn insert_device_data_batch(&self, batch: &DeviceDataBatch) -> StoreResult<()> {
        self.write_device_data_batch(batch).await?.wait().await
    }
    /// The group-commit path of ingest: commits the batch like
    /// [`DeviceDataStore::insert_device_data_batch`] and returns as soon as it is committed (visible to
    /// readers), with a [`Durable`] that resolves once it is on disk. SQLite commits without
    /// fsync and one sync thread then fsyncs the WAL for every commit made since its last sync,
    /// so the caller can write the next batch while this one is flushed. PostgreSQL is durable
    /// at commit.
    async fn write_device_data_batch(&self, batch: &DeviceDataBatch) -> StoreResult<Durable>;
    /// `last_seen = max(last_seen, at_ms)` and `registered` → `active` per device, touching only
    /// those columns (no lost update against API edits or the gateway's connect bookkeeping).
    async fn touch_devices_last_seen(&self, seen: &[DeviceSeen]) -> StoreResult<()>;
    /// Telemetry rows of one device ordered by (ts, seq), ascending or descending.
    async fn list_telemetry(
        &self,
        tenant: &str,
        device: &str,
        range: &TimeRange<i64>,
    ) -> StoreResult<Vec<TelemetryRow>>;
    /// Event rows of one device ordered by (ts, id); `type_tag` filters when set.
    async fn list_device_events(
        &self,
        tenant: &str,
        device: &str,
        type_tag: Option<&str>,
        range: &TimeRange<String>,
    ) -> StoreResult<Vec<DeviceEventRow>>;
    /// Attestation reports of one device, newest first.
    async fn list_attestations(&self, tenant: &str, device: &str, limit: u32) -> StoreResult<Vec<AttestationRow>>;
    /// Alarms of the tenant, newest first (by id); `page.after` is the last id of the previous page.
    async fn list_alarms(&self, tenant: &str, filter: &AlarmFilter, page: &Page) -> StoreResult<Vec<AlarmRow>>;
    async fn get_alarm(&self, tenant: &str, id: &str) -> StoreResult<AlarmRow>;
    /// The newest alarm of (device, type), open or not.
    async fn latest_alarm(&self, tenant: &str, device: &str, alarm_type: &str) -> StoreResult<Option<AlarmRow>>;
    /// Sets the status of an alarm whose current status is one of `from`; `NotFound` if no
    /// such alarm, `Conflict` if its status is not in `from`. Returns the updated alarm.
    async fn set_alarm_status(
        &self,
        tenant: &str,
        id: &str,
        from: &[AlarmStatus],
        to: AlarmStatus,
        now_ms: i64,
    ) -> StoreResult<AlarmRow>;
    /// Raises an alarm outside a batch (see [`AlarmRaise`]); used by the availability monitor.
    async fn raise_alarm(&self, raise: &AlarmRaise) -> StoreResult<()>;
    /// Active devices with `required_interval_s` whose `last_seen` is older than that interval
    /// at `now_ms` and which have no open `unavailable` alarm yet, across tenants.
    async fn list_silent_devices(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<SilentDevice>>;
    async fn get_twin_reported(&self, tenant: &str, device: &str) -> StoreResult<Option<TwinReportedRow>>;
    /// Stores the reported twin if the stored version is still `expected_version` (0 = none
    /// stored yet); `Conflict` when another writer got there first.
    async fn put_twin_reported(&self, row: &TwinReportedRow, expected_version: i64) -> StoreResult<()>;
}

#[async_trait]
impl DeviceDataStore for SqlStore {
    async fn write_device_data_batch(&self, batch: &DeviceDataBatch) -> StoreResult<Durable> {
        let mut telemetry = Vec::new();
        let mut events = Vec::new();
        let mut attestations = Vec::new();
        let mut alarm_statements = Vec::new();
        for row in &batch.rows {
            match row {
                DeviceDataRow::Telemetry(row) => telemetry.push(row),
                DeviceDataRow::Event(row) => events.push(row),
                DeviceDataRow::Attestation(row) => attestations.push(row),
                DeviceDataRow::RaiseAlarm(raise) => alarm_statements.push(raise_alarm_statement(raise)),
                DeviceDataRow::ClearAlarm(clear) => alarm_statements.push(Statement::new(
                    "UPDATE alarms SET status = 'CLEARED', updated_at = ? \
                     WHERE tenant = ? AND device = ? AND alarm_type = ? AND status <> 'CLEARED'",
                    vec![clear.ts.into(), (&clear.tenant).into(), (&clear.device).into(), (&clear.alarm_type).into()],
                )),
            }
        }
        let mut statements = Vec::new();
        let telemetry = telemetry_rows::pack(&telemetry);
        multi_row_inserts(
            &mut statements,
            self.driver.rows_per_insert(),
            "INSERT INTO device_telemetry (tenant, device, ts, seq, points, sealed) VALUES ",
            6,
            &telemetry.iter().collect::<Vec<_>>(),
            |row, params| {
                params.extend([
                    row.tenant.into(),
                    row.device.into(),
                    row.ts.into(),
                    row.seq.into(),
                    row.points.into(),
                    row.sealed.as_ref().into(),
                ])
            },
        );
        multi_row_inserts(
            &mut statements,
            self.driver.rows_per_insert(),
            "INSERT INTO device_events (tenant, device, ts, id, type_tag, sealed) VALUES ",
            6,
            &events,
            |row, params| {
                params.extend([
                    (&row.tenant).into(),
                    (&row.device).into(),
                    row.ts.into(),
                    (&row.id).into(),
                    (&row.type_tag).into(),
                    (&row.sealed).into(),
                ])
            },
        );
        multi_row_inserts(
            &mut statements,
            self.driver.rows_per_insert(),
            "INSERT INTO device_attestations (tenant, device, ts, id, sealed) VALUES ",
            5,
            &attestations,
            |row, params| {
                params.extend([
                    (&row.tenant).into(),
                    (&row.device).into(),
                    row.ts.into(),
                    (&row.id).into(),
                    (&row.sealed).into(),
                ])
            },
        );
        // Alarms after the rows, in their order: one upsert per change, because one statement
        // may not update the same open alarm twice (PostgreSQL refuses that).
        statements.extend(alarm_statements);
        statements.extend(seen_statements(&batch.seen));
        if statements.is_empty() {
            return Ok(Durable::now());
        }
        self.driver.transaction_durable_later(statements).await
    }

    async fn touch_devices_last_seen(&self, seen: &[DeviceSeen]) -> StoreResult<()> {
        // Only the `last_seen` half of `seen_statements` (every other statement).
        let statements: Vec<Statement> = seen_statements(seen).into_iter().step_by(2).collect();
        if statements.is_empty() {
            return Ok(());
        }
        self.driver.transaction(statements).await
    }

    async fn list_telemetry(
        &self,
        tenant: &str,
        device: &str,
        range: &TimeRange<i64>,
    ) -> StoreResult<Vec<TelemetryRow>> {
        // Rows are packed (telemetry_rows.rs): a row's points lie in [ts, ts + PACK_SPAN_MS] of
        // its key, so the rows are read in key order, page by page, until no unread row can hold
        // a point that belongs among the first `limit`.
        let span = telemetry_rows::PACK_SPAN_MS;
        let (ascending, limit) = (!range.descending, range.limit as usize);
        let mut rows_range = TimeRange {
            from: range.from.map(|from| from.saturating_sub(span)),
            to: range.to,
            after: None,
            descending: range.descending,
            // A row holds 1 to 64 points: start small, read more per page as pages go by.
            limit: if limit == 0 { 0 } else { (range.limit / 4).clamp(16, 1000) },
        };
        if let Some((ts, _)) = range.after {
            // Rows keyed before `after` may still hold points after it (ascending), rows keyed
            // after it cannot hold points before it (descending).
            match ascending {
                true => rows_range.from = rows_range.from.max(Some(ts.saturating_sub(span))),
                false => rows_range.to = rows_range.to.map_or(Some(ts), |to| Some(to.min(ts))),
            }
        }
        let wanted = |point: &TelemetryRow| {
            range.from.is_none_or(|from| point.ts >= from)
                && range.to.is_none_or(|to| point.ts <= to)
                && range.after.is_none_or(|after| match ascending {
                    true => (point.ts, point.seq) > after,
                    false => (point.ts, point.seq) < after,
                })
        };
        let in_order = |a: &TelemetryRow, b: &TelemetryRow| match ascending {
            true => (a.ts, a.seq).cmp(&(b.ts, b.seq)),
            false => (b.ts, b.seq).cmp(&(a.ts, a.seq)),
        };
        let mut points = Vec::new();
        loop {
            let after = rows_range.after.map(|(ts, seq)| (ts, Value::Int(seq)));
            let (sql, params) = time_range_query(
                "SELECT ts, seq, points, sealed FROM device_telemetry WHERE tenant = ? AND device = ?",
                vec![tenant.into(), device.into()],
                "seq",
                &rows_range,
                after,
            );
            let rows = self.driver.query(&sql, params).await?;
            let exhausted = rows_range.limit == 0 || rows.len() < rows_range.limit as usize;
            let mut last_key = None;
            for mut row in rows {
                let (ts, seq, count, sealed) = (row.int()?, row.int()?, row.int()?, row.blob()?);
                points
                    .extend(telemetry_rows::unpack(tenant, device, ts, seq, count, sealed)?.into_iter().filter(wanted));
                last_key = Some((ts, seq));
            }
            points.sort_unstable_by(in_order);
            if limit > 0 {
                points.truncate(limit);
            }
            let Some(last_key) = last_key else { break };
            if exhausted {
                break;
            }
            // Unread rows hold points from their key on (ascending) or up to their key plus the
            // span (descending); once those all come after the `limit`-th point, stop.
            if let Some(kth) = limit.checked_sub(1).and_then(|index| points.get(index)) {
                let done = match ascending {
                    true => last_key.0 > kth.ts,
                    false => last_key.0.saturating_add(span) < kth.ts,
                };
                if done {
                    break;
                }
            }
            rows_range.after = Some(last_key);
            rows_range.limit = rows_range.limit.saturating_mul(2).min(1000);
        }
        Ok(points)
    }

    async fn list_device_events(
        &self,
        tenant: &str,
        device: &str,
        type_tag: Option<&str>,
        range: &TimeRange<String>,
    ) -> StoreResult<Vec<DeviceEventRow>> {
        let mut base = String::from(
            "SELECT tenant, device, ts, id, type_tag, sealed FROM device_events WHERE tenant = ? AND device = ?",
        );
        let mut params = vec![tenant.into(), device.into()];
        if let Some(tag) = type_tag {
            base.push_str(" AND type_tag = ?");
            params.push(tag.into());
        }
        let after = range.after.as_ref().map(|(ts, id)| (*ts, Value::Text(id.clone())));
        let (sql, params) = time_range_query(&base, params, "id", range, after);
        self.all(&sql, params, |mut row| {
            Ok(DeviceEventRow {
                tenant: row.text()?,
                device: row.text()?,
                ts: row.int()?,
                id: row.text()?,
                type_tag: row.text()?,
                sealed: row.blob()?,
            })
        })
        .await
    }

    async fn list_attestations(&self, tenant: &str, device: &str, limit: u32) -> StoreResult<Vec<AttestationRow>> {
        let sql = "SELECT tenant, device, ts, id, sealed FROM device_attestations WHERE tenant = ? AND device = ? \
                   ORDER BY ts DESC, id DESC LIMIT ?";
        self.all(sql, vec![tenant.into(), device.into(), i64::from(limit.max(1)).into()], |mut row| {
            Ok(AttestationRow {
                tenant: row.text()?,
                device: row.text()?,
                ts: row.int()?,
                id: row.text()?,
                sealed: row.blob()?,
            })
        })
        .await
    }

    async fn list_alarms(&self, tenant: &str, filter: &AlarmFilter, page: &Page) -> StoreResult<Vec<AlarmRow>> {
        let mut sql = format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE tenant = ?");
        let mut params: Vec<Value> = vec![tenant.into()];
        if let Some(status) = filter.status {
            sql.push_str(" AND status = ?");
            params.push(status.as_str().into());
        }
        if let Some(severity) = filter.severity {
            sql.push_str(" AND severity = ?");
            params.push(severity.as_str().into());
        }
        if let Some(device) = &filter.device {
            sql.push_str(" AND device = ?");
            params.push(device.into());
        }
        if let Some(groups) = &filter.within_groups {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(&format!(
                " AND device IN (SELECT id FROM devices WHERE tenant = ? AND group_id IN ({}))",
                placeholders(groups.len())
            ));
            params.push(tenant.into());
            params.extend(groups.iter().map(Value::from));
        }
        if let Some(after) = &page.after {
            sql.push_str(" AND id < ?");
            params.push(after.into());
        }
        sql.push_str(" ORDER BY id DESC");
        if page.limit > 0 {
            sql.push_str(" LIMIT ?");
            params.push(i64::from(page.limit).into());
        }
        self.all(&sql, params, alarm_from_row).await
    }

    async fn get_alarm(&self, tenant: &str, id: &str) -> StoreResult<AlarmRow> {
        let sql = format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE tenant = ? AND id = ?");
        self.one(&sql, vec![tenant.into(), id.into()], alarm_from_row).await
    }

    async fn latest_alarm(&self, tenant: &str, device: &str, alarm_type: &str) -> StoreResult<Option<AlarmRow>> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE tenant = ? AND device = ? AND alarm_type = ? \
             ORDER BY id DESC LIMIT 1"
        );
        let rows = self.all(&sql, vec![tenant.into(), device.into(), alarm_type.into()], alarm_from_row).await?;
        Ok(rows.into_iter().next())
    }

    async fn set_alarm_status(
        &self,
        tenant: &str,
        id: &str,
        from: &[AlarmStatus],
        to: AlarmStatus,
        now_ms: i64,
    ) -> StoreResult<AlarmRow> {
        if !from.is_empty() {
            let sql = format!(
                "UPDATE alarms SET status = ?, updated_at = ? WHERE tenant = ? AND id = ? AND status IN ({})",
                placeholders(from.len())
            );
            let mut params: Vec<Value> = vec![to.as_str().into(), now_ms.into(), tenant.into(), id.into()];
            params.extend(from.iter().map(|status| Value::from(status.as_str())));
            if self.driver.execute(&sql, params).await? > 0 {
                return self.get_alarm(tenant, id).await;
            }
        }
        // Nothing changed: either there is no such alarm or its status does not allow it.
        let current = self.get_alarm(tenant, id).await?;
        Err(StoreError::Conflict(format!("alarm is {}", current.status)))
    }

    async fn raise_alarm(&self, raise: &AlarmRaise) -> StoreResult<()> {
        let statement = raise_alarm_statement(raise);
        self.driver.execute(&statement.sql, statement.params).await.map(drop)
    }

    async fn list_silent_devices(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<SilentDevice>> {
        let sql = "SELECT d.tenant, d.id, d.last_seen, d.required_interval_s FROM devices d \
                   WHERE d.status = 'active' AND d.required_interval_s IS NOT NULL AND d.required_interval_s > 0 \
                   AND d.last_seen IS NOT NULL AND d.last_seen + d.required_interval_s * 1000 < ? \
                   AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.tenant = d.tenant AND a.device = d.id \
                   AND a.alarm_type = 'unavailable' AND a.status <> 'CLEARED') \
                   ORDER BY d.tenant, d.id LIMIT ?";
        self.all(sql, vec![now_ms.into(), i64::from(limit.max(1)).into()], |mut row| {
            Ok(SilentDevice {
                tenant: row.text()?,
                device: row.text()?,
                last_seen: row.int()?,
                required_interval_s: row.int()?,
            })
        })
        .await
    }

    async fn get_twin_reported(&self, tenant: &str, device: &str) -> StoreResult<Option<TwinReportedRow>> {
        let sql = "SELECT tenant, device, reported_sealed, reported_version, updated_at FROM device_twins \
                   WHERE tenant = ? AND device = ?";
        let rows = self
            .all(sql, vec![tenant.into(), device.into()], |mut row| {
                Ok(TwinReportedRow {
                    tenant: row.text()?,
                    device: row.text()?,
                    reported_sealed: row.blob()?,
                    reported_version: row.int()?,
                    updated_at: row.int()?,
                })
            })
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn put_twin_reported(&self, row: &TwinReportedRow, expected_version: i64) -> StoreResult<()> {
        let changed = if expected_version == 0 {
            let sql = "INSERT INTO device_twins (tenant, device, reported_sealed, reported_version, updated_at) \
                       VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, device) DO NOTHING";
            let params = vec![
                (&row.tenant).into(),
                (&row.device).into(),
                (&row.reported_sealed).into(),
                row.reported_version.into(),
                row.updated_at.into(),
            ];
            self.driver.execute(sql, params).await?
        } else {
            let sql = "UPDATE device_twins SET reported_sealed = ?, reported_version = ?, updated_at = ? \
                       WHERE tenant = ? AND device = ? AND reported_version = ?";
            let params = vec![
                (&row.reported_sealed).into(),
                row.reported_version.into(),
                row.updated_at.into(),
                (&row.tenant).into(),
                (&row.device).into(),
                expected_version.into(),
            ];
            self.driver.execute(sql, params).await?
        };
        match changed {
            0 => Err(StoreError::Conflict("reported twin changed meanwhile".into())),
            _ => Ok(()),
        }
    }
}

// ---- device data helpers ----

const ALARM_COLUMNS: &str = "tenant, id, device, alarm_type, severity, status, alarm_count, text_sealed, \
                             first_ts, last_ts, updated_at";

fn alarm_from_row(mut row: Row) -> StoreResult<AlarmRow> {
    Ok(AlarmRow {
        tenant: row.text()?,
        id: row.text()?,
        device: row.text()?,
        alarm_type: row.text()?,
        severity: Severity::parse(&row.text()?).ok_or_else(|| StoreError::Corrupt("unknown alarm severity".into()))?,
        status: AlarmStatus::parse(&row.text()?).ok_or_else(|| StoreError::Corrupt("unknown alarm status".into()))?,
        count: row.int()?,
        text_sealed: row.opt_blob()?,
        first_ts: row.int()?,
        last_ts: row.int()?,
        updated_at: row.int()?,
    })
}

/// The upsert of [`AlarmRaise`]: the partial unique index `alarms_open` makes "the open alarm
/// of this device and type" the conflict target, so two raises never create two open alarms.
fn raise_alarm_statement(raise: &AlarmRaise) -> Statement {
    Statement::new(
        format!(
            "INSERT INTO alarms ({ALARM_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'ACTIVE', 1, ?, ?, ?, ?) \
             ON CONFLICT (tenant, device, alarm_type) WHERE status <> 'CLEARED' DO UPDATE SET \
             alarm_count = alarms.alarm_count + 1, severity = excluded.severity, \
             text_sealed = COALESCE(excluded.text_sealed, alarms.text_sealed), \
             last_ts = CASE WHEN excluded.last_ts > alarms.last_ts THEN excluded.last_ts ELSE alarms.last_ts END, \
             updated_at = excluded.updated_at"
        ),
        vec![
            (&raise.tenant).into(),
            (&raise.id).into(),
            (&raise.device).into(),
            (&raise.alarm_type).into(),
            raise.severity.as_str().into(),
            raise.text_sealed.as_ref().into(),
            raise.ts.into(),
            raise.ts.into(),
            raise.ts.into(),
        ],
    )
}

/// Multi-row INSERTs of at most `rows_per_insert` rows, in chunks of a few fixed sizes so
/// that both drivers' statement caches see at most three distinct SQL texts per table.
fn multi_row_inserts<T>(
    statements: &mut Vec<Statement>,
    rows_per_insert: usize,
    prefix: &str,
    columns: usize,
    rows: &[&T],
    bind: impl Fn(&T, &mut Vec<Value>),
) {
    let row_placeholders = format!("({})", placeholders(columns));
    let mut texts: Vec<(usize, std::sync::Arc<str>)> = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size =
            [100, 10, 1].into_iter().find(|size| *size <= rows_per_insert.max(1) && rest.len() >= *size).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        let sql = match texts.iter().find(|(built, _)| *built == size) {
            Some((_, sql)) => std::sync::Arc::clone(sql),
            None => {
                let sql: std::sync::Arc<str> =
                    format!("{prefix}{}", vec![row_placeholders.as_str(); size].join(", ")).into();
                texts.push((size, std::sync::Arc::clone(&sql)));
                sql
            }
        };
        let mut params = Vec::with_capacity(size * columns);
        for row in chunk {
            bind(row, &mut params);
        }
        statements.push(Statement::new(sql, params));
        rest = tail;
    }
}

/// One entry per device with its latest time.
fn latest_seen(seen: &[DeviceSeen]) -> Vec<&DeviceSeen> {
    let mut latest: std::collections::BTreeMap<(&str, &str), &DeviceSeen> = std::collections::BTreeMap::new();
    for entry in seen {
        let slot = latest.entry((entry.tenant.as_str(), entry.device.as_str())).or_insert(entry);
        if entry.at_ms > slot.at_ms {
            *slot = entry;
        }
    }
    latest.into_values().collect()
}

/// `last_seen` updates plus the clearing of each device's open `unavailable` alarm: two
/// statements per chunk of devices (not per device), so a batch costs few round trips.
fn seen_statements(seen: &[DeviceSeen]) -> Vec<Statement> {
    let latest = latest_seen(seen);
    let mut statements = Vec::new();
    let mut rest = latest.as_slice();
    while !rest.is_empty() {
        let size = [100, 10, 1].into_iter().find(|size| rest.len() >= *size).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        // Explicit casts: PostgreSQL cannot infer the types of bare parameters in VALUES.
        let rows = vec!["(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT))"; size].join(", ");
        let mut params = Vec::with_capacity(size * 3);
        for entry in chunk {
            params.extend([(&entry.tenant).into(), (&entry.device).into(), entry.at_ms.into()]);
        }
        statements.push(Statement::new(
            format!(
                "UPDATE devices SET \
                 last_seen = CASE WHEN devices.last_seen IS NULL OR devices.last_seen < seen.column3 \
                 THEN seen.column3 ELSE devices.last_seen END, \
                 status = CASE WHEN devices.status = 'registered' THEN 'active' ELSE devices.status END \
                 FROM (VALUES {rows}) AS seen WHERE devices.tenant = seen.column1 AND devices.id = seen.column2"
            ),
            params.clone(),
        ));
        statements.push(Statement::new(
            format!(
                "UPDATE alarms SET status = 'CLEARED', updated_at = seen.column3 \
                 FROM (VALUES {rows}) AS seen WHERE alarms.tenant = seen.column1 AND alarms.device = seen.column2 \
                 AND alarms.alarm_type = 'unavailable' AND alarms.status <> 'CLEARED'"
            ),
            params,
        ));
        rest = tail;
    }
    statements
}

/// Adds the time bounds, the keyset position `(ts, key)` and the order to a listing of one
/// device's rows ordered by (ts, `key_column`).
fn time_range_query<K>(
    base: &str,
    mut params: Vec<Value>,
    key_column: &str,
    range: &TimeRange<K>,
    after: Option<(i64, Value)>,
) -> (String, Vec<Value>) {
    let mut sql = String::from(base);
    if let Some(from) = range.from {
        sql.push_str(" AND ts >= ?");
        params.push(from.into());
    }
    if let Some(to) = range.to {
        sql.push_str(" AND ts <= ?");
        params.push(to.into());
    }
    let (compare, order) = if range.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some((ts, key)) = after {
        sql.push_str(&format!(" AND (ts {compare} ? OR (ts = ? AND {key_column} {compare} ?))"));
        params.extend([ts.into(), ts.into(), key]);
    }
    sql.push_str(&format!(" ORDER BY ts {order}, {key_column} {order}"));
    if range.limit > 0 {
        sql.push_str(" LIMIT ?");
        params.push(i64::from(range.limit).into());
    }
    (sql, params)
}
