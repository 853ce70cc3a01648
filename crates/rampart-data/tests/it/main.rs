//! Device data end to end through the real store: ingest → commit → query, alarms,
//! `unavailable`, encryption at rest, the live channel and a throughput print. Every check runs
//! on SQLite, and on PostgreSQL when `RAMPART_TEST_POSTGRES` names a server (fresh schema).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_core::{AlarmStatus, DeviceId, Severity as AlarmSeverity};
use rampart_data::*;
use rampart_platform::{NewDevice, Platform, Principal, SystemClock};
use rampart_store::prelude::*;
use serde_json::{Value, json};

struct Fixture {
    platform: Arc<Platform>,
    /// The test's own handle on the store.
    store: Arc<dyn Store>,
    ingestor: Ingestor,
    /// The admins of `acme` and `globex`.
    acme: Principal,
    globex: Principal,
    /// The SQLite file, for raw reads.
    sqlite: Option<PathBuf>,
    _base: rampart_testkit::fixture::Fixture,
}

fn settings() -> IngestSettings {
    IngestSettings { availability_check: Some(Duration::from_millis(200)), ..IngestSettings::default() }
}

async fn fixture(store: Arc<dyn Store>, dir: tempfile::TempDir, sqlite: Option<PathBuf>) -> Fixture {
    let base = rampart_testkit::fixture::Fixture::over(store, Arc::new(SystemClock), dir, settings()).await;
    let (acme, globex) = (base.tenant("acme").await, base.tenant("globex").await);
    Fixture {
        platform: Arc::clone(&base.platform),
        store: Arc::clone(&base.store),
        ingestor: base.ingestor.clone(),
        acme,
        globex,
        sqlite,
        _base: base,
    }
}

async fn sqlite_fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let store = rampart_store::open_sqlite(&path).await.unwrap();
    fixture(store, dir, Some(path)).await
}

/// A fixture in a fresh PostgreSQL schema, or `None` (with the reason printed).
async fn postgres_fixture() -> Option<(Fixture, String, String)> {
    let Ok(url) = std::env::var("RAMPART_TEST_POSTGRES") else {
        println!("skipping PostgreSQL: RAMPART_TEST_POSTGRES not set");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let schema = format!("rd_{}_{}", std::process::id(), nanos % 1_000_000_000_000);
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let store = rampart_store::open_postgres_in_schema(&url, &schema).await.unwrap();
    Some((fixture(store, tempfile::tempdir().unwrap(), None).await, url, schema))
}

async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

impl Fixture {
    fn admin(&self, tenant: &str) -> &Principal {
        match tenant {
            "acme" => &self.acme,
            _ => &self.globex,
        }
    }

    async fn device(&self, tenant: &str, id: &str, required_interval_s: Option<i64>) {
        let new = NewDevice { required_interval_s, ..NewDevice::default() };
        self.platform.create_device(self.admin(tenant), &DeviceId::parse(id).unwrap(), new).await.unwrap();
    }

    async fn submit(&self, tenant: &str, device: &str, kind: DataKind, payload: &str) -> Result<(), IngestError> {
        self.ingestor.submit(tenant, device, kind, payload.as_bytes(), self.platform.now_ms()).await
    }

    async fn points(&self, tenant: &str, device: &str, query: MeasurementQuery) -> Vec<(i64, String, f64)> {
        let page = self.ingestor.measurements(tenant, device, &query).await.unwrap();
        page.items.into_iter().map(|point| (point.ts, point.series, point.value)).collect()
    }

    async fn all_points(&self, tenant: &str, device: &str) -> Vec<(i64, String, f64)> {
        self.points(tenant, device, MeasurementQuery { limit: 1000, ..MeasurementQuery::default() }).await
    }

    async fn alarms_of(&self, tenant: &str, device: &str) -> Vec<Alarm> {
        let query = AlarmQuery { device: Some(device.into()), ..AlarmQuery::default() };
        self.ingestor.alarms(tenant, &query).await.unwrap().items
    }
}

async fn suite(f: &Fixture) {
    round_trip(f).await;
    malformed_stores_nothing(f).await;
    pagination_and_aggregate(f).await;
    events_and_security(f).await;
    alarms(f).await;
    unavailable(f).await;
    twin_and_attestation(f).await;
    live_channel(f).await;
    unknown_devices_and_tenants(f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_device_data() {
    let f = sqlite_fixture().await;
    suite(&f).await;
    encrypted_at_rest(&f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_device_data() {
    let Some((f, url, schema)) = postgres_fixture().await else { return };
    let outcome = tokio::spawn(async move {
        suite(&f).await;
        throughput(&f, "PostgreSQL", 50, 50, 40).await;
    })
    .await;
    drop_schema(&url, &schema).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn round_trip(f: &Fixture) {
    f.device("acme", "rt", None).await;
    let t0 = 1_764_000_000_000_i64;
    let payloads = [
        format!(r#"{{"ts":{t0},"temp":21.5,"hum":40}}"#),
        r#"{"ts":"2025-11-24T16:00:01.000Z","values":{"temp":22}}"#.to_owned(),
        format!(r#"[{{"ts":{},"temp":23}},{{"ts":{},"values":{{"temp":24,"hum":41}}}}]"#, t0 + 2000, t0 + 3000),
    ];
    for payload in &payloads {
        f.submit("acme", "rt", DataKind::Telemetry, payload).await.unwrap();
    }
    let before = f.platform.now_ms();
    f.submit("acme", "rt", DataKind::Telemetry, r#"{"late":1}"#).await.unwrap();
    let points = f.all_points("acme", "rt").await;
    let expected_head = [
        (t0, "hum".to_owned(), 40.0),
        (t0, "temp".to_owned(), 21.5),
        (t0 + 1000, "temp".to_owned(), 22.0),
        (t0 + 2000, "temp".to_owned(), 23.0),
        (t0 + 3000, "hum".to_owned(), 41.0),
        (t0 + 3000, "temp".to_owned(), 24.0),
    ];
    assert_eq!(points[..6], expected_head[..]);
    // No ts: the time it was received.
    let (late_ts, late_series, late_value) = points[6].clone();
    assert!(late_ts >= before - 5_000 && late_ts <= f.platform.now_ms(), "{late_ts}");
    assert_eq!((late_series.as_str(), late_value), ("late", 1.0));
    // Series filter, descending, time range.
    let query = MeasurementQuery {
        series: Some("temp".into()),
        from: Some(t0 + 1000),
        to: Some(t0 + 3000),
        descending: true,
        ..MeasurementQuery::default()
    };
    let temps = f.points("acme", "rt", query).await;
    assert_eq!(
        temps.iter().map(|p| (p.0, p.2)).collect::<Vec<_>>(),
        [(t0 + 3000, 24.0), (t0 + 2000, 23.0), (t0 + 1000, 22.0)]
    );
    // Ingest marks the device seen (`last_seen` moves at most once a second per device).
    let device = f.store.get_device("acme", "rt").await.unwrap();
    assert_eq!(device.status, rampart_core::DeviceStatus::Active);
    assert!(device.last_seen.is_some_and(|seen| seen > before - 1_000 && seen <= before), "{:?}", device.last_seen);
    // QoS 0 path, then flush: stored.
    f.ingestor.submit_nowait("acme", "rt", DataKind::Telemetry, br#"{"ts":1,"q0":7}"#, 0).unwrap();
    f.ingestor.flush().await;
    let first = f.points("acme", "rt", MeasurementQuery { limit: 1, ..MeasurementQuery::default() }).await;
    assert_eq!(first, [(1, "q0".to_owned(), 7.0)]);
}

async fn malformed_stores_nothing(f: &Fixture) {
    f.device("acme", "bad", None).await;
    let before = f.ingestor.malformed_total();
    let cases: &[(DataKind, &str)] = &[
        (DataKind::Telemetry, "not json"),
        (DataKind::Telemetry, r#"{"temp":"NaN"}"#),
        (DataKind::Telemetry, r#"[{"ok":1},{"bad":"x"}]"#),
        (DataKind::Telemetry, r#"{"nested":{"garbage":[1,{"x":2}]}}"#),
        (DataKind::Telemetry, r#"{"flag":true}"#),
        (DataKind::Events, r#"{"text":"no type"}"#),
        (DataKind::Alarms, r#"{"type":"x","severity":"LOUD"}"#),
        (DataKind::Attestation, r#"{"firmware_version":"1"}"#),
        (DataKind::TwinReported, "[]"),
    ];
    let oversized = format!("[{}]", vec![r#"{"a":1}"#; 1001].join(","));
    for (kind, payload) in cases.iter().copied().chain([(DataKind::Telemetry, oversized.as_str())]) {
        match f.submit("acme", "bad", kind, payload).await {
            Err(IngestError::Malformed(_)) => {}
            other => panic!("{payload}: {other:?}"),
        }
        assert!(f.ingestor.submit_nowait("acme", "bad", kind, payload.as_bytes(), 1).is_err());
    }
    assert_eq!(f.ingestor.malformed_total() - before, 2 * (cases.len() as u64 + 1));
    f.ingestor.flush().await;
    assert!(f.all_points("acme", "bad").await.is_empty());
    let events = f.ingestor.events("acme", "bad", &EventQuery::default()).await.unwrap();
    assert!(events.items.is_empty());
    assert!(f.alarms_of("acme", "bad").await.is_empty());
    assert_eq!(f.ingestor.reported_twin("acme", "bad").await.unwrap().version, 0);
    // Never seen either: nothing was accepted.
    assert_eq!(f.store.get_device("acme", "bad").await.unwrap().last_seen, None);
}

async fn pagination_and_aggregate(f: &Fixture) {
    f.device("acme", "pg", None).await;
    // 30 messages, one minute apart, 2 series each: 60 points.
    let base = 1_764_028_800_000_i64; // 2025-11-25T00:00:00Z, an hour and day boundary
    let messages: Vec<Value> = (0..30).map(|i| json!({"ts": base + i * 60_000, "a": i, "b": 100 + i})).collect();
    f.submit("acme", "pg", DataKind::Telemetry, &Value::Array(messages).to_string()).await.unwrap();
    // The same 60 points 10 ms apart: one batch, so they share stored rows (packed).
    f.device("acme", "pk", None).await;
    let dense: Vec<Value> = (0..30).map(|i| json!({"ts": base + i * 10, "a": i, "b": 100 + i})).collect();
    f.submit("acme", "pk", DataKind::Telemetry, &Value::Array(dense).to_string()).await.unwrap();
    if let Some(path) = &f.sqlite {
        let connection = rusqlite::Connection::open(path).unwrap();
        let rows: (i64, i64) = connection
            .query_row("SELECT COUNT(*), SUM(points) FROM device_telemetry WHERE device = 'pk'", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        assert_eq!(rows, (1, 30), "30 messages within 1 s share one row");
    }
    for (device, descending) in [("pg", false), ("pg", true), ("pk", false), ("pk", true)] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let query =
                MeasurementQuery { limit: 7, cursor: cursor.clone(), descending, ..MeasurementQuery::default() };
            let page = f.ingestor.measurements("acme", device, &query).await.unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(page.items.into_iter().map(|point| (point.ts, point.series)));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 60, "{device} descending={descending}");
        let mut sorted = seen.clone();
        sorted.sort();
        if descending {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "pages are ordered and do not overlap");
    }
    // Filtered pages across rows.
    let query = MeasurementQuery { series: Some("b".into()), limit: 20, ..MeasurementQuery::default() };
    let page = f.ingestor.measurements("acme", "pg", &query).await.unwrap();
    assert_eq!(page.items.len(), 20);
    assert!(page.items.iter().all(|point| point.series == "b"));
    let query = MeasurementQuery { cursor: page.next_cursor, ..query };
    let rest = f.ingestor.measurements("acme", "pg", &query).await.unwrap();
    assert_eq!(
        rest.items.iter().map(|point| point.value).collect::<Vec<_>>(),
        (120..130).map(f64::from).collect::<Vec<_>>()
    );
    assert_eq!(rest.next_cursor, None);
    let bad = MeasurementQuery { cursor: Some("garbage".into()), ..MeasurementQuery::default() };
    assert!(matches!(f.ingestor.measurements("acme", "pg", &bad).await, Err(QueryError::Invalid(_))));

    // Aggregates: 10-minute data in hour buckets; a of minute i is i.
    let aggregate = |function, interval, from, to| AggregateQuery { series: "a".into(), from, to, interval, function };
    let check = |function, interval, from, to, expected: Vec<(i64, f64)>| {
        let query = aggregate(function, interval, from, to);
        async move {
            let buckets = f.ingestor.aggregate("acme", "pg", &query).await.unwrap();
            assert_eq!(buckets.into_iter().map(|b| (b.ts, b.value)).collect::<Vec<_>>(), expected, "{query:?}");
        }
    };
    check(AggregateFn::Avg, AggregateInterval::Hour, None, None, vec![(base, 14.5)]).await;
    check(AggregateFn::Sum, AggregateInterval::Day, None, None, vec![(base, 435.0)]).await;
    check(
        AggregateFn::Count,
        AggregateInterval::Minute,
        Some(base),
        Some(base + 120_000),
        vec![(base, 1.0), (base + 60_000, 1.0), (base + 120_000, 1.0)],
    )
    .await;
    check(AggregateFn::Min, AggregateInterval::Hour, Some(base + 600_000), None, vec![(base, 10.0)]).await;
    check(AggregateFn::Max, AggregateInterval::Hour, None, Some(base + 600_000), vec![(base, 10.0)]).await;
    let none =
        AggregateQuery { series: "missing".into(), ..aggregate(AggregateFn::Avg, AggregateInterval::Hour, None, None) };
    assert!(f.ingestor.aggregate("acme", "pg", &none).await.unwrap().is_empty());
}

async fn events_and_security(f: &Fixture) {
    f.device("acme", "ev", None).await;
    f.submit("acme", "ev", DataKind::Events, r#"{"type":"door","text":"open","ts":1000,"floor":3}"#).await.unwrap();
    f.submit("acme", "ev", DataKind::Events, r#"{"type":"boot","ts":2000}"#).await.unwrap();
    f.submit("acme", "ev", DataKind::Events, r#"{"type":"door","text":"closed","ts":3000}"#).await.unwrap();
    f.submit("acme", "ev", DataKind::Events, r#"{"type":"security.tamper","text":"case opened","ts":4000}"#)
        .await
        .unwrap();
    let all = f.ingestor.events("acme", "ev", &EventQuery::default()).await.unwrap();
    assert_eq!(
        all.items.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["door", "boot", "door", "security.tamper"]
    );
    assert_eq!(all.items[0].text.as_deref(), Some("open"));
    assert_eq!(all.items[0].extra.get("floor"), Some(&json!(3)));
    assert_eq!(all.items[1].text, None);
    let doors = EventQuery { event_type: Some("door".into()), descending: true, ..EventQuery::default() };
    let doors = f.ingestor.events("acme", "ev", &doors).await.unwrap();
    assert_eq!(doors.items.iter().map(|e| e.ts).collect::<Vec<_>>(), [3000, 1000]);
    let ranged = EventQuery { from: Some(1500), to: Some(3500), limit: 1, ..EventQuery::default() };
    let first = f.ingestor.events("acme", "ev", &ranged).await.unwrap();
    assert_eq!(first.items.iter().map(|e| e.ts).collect::<Vec<_>>(), [2000]);
    let second = f.ingestor.events("acme", "ev", &EventQuery { cursor: first.next_cursor, ..ranged }).await.unwrap();
    assert_eq!((second.items.iter().map(|e| e.ts).collect::<Vec<_>>(), second.next_cursor), (vec![3000], None));

    // The security event is raised after the commit (asynchronously).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let filter = rampart_store::SecurityEventFilter { device: Some("ev".into()), ..Default::default() };
        let page = rampart_store::Page { after: None, limit: 10 };
        let events = f.platform.security_events(&f.acme, filter, &page).await.unwrap();
        if let Some(event) = events.first() {
            assert_eq!((event.event_type.as_str(), event.severity.as_str()), ("tamper", "CRITICAL"));
            assert!(event.details_json.contains("security.tamper"));
            break;
        }
        assert!(Instant::now() < deadline, "no security event raised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alarms(f: &Fixture) {
    f.device("acme", "al", None).await;
    f.device("globex", "al", None).await;
    let raise =
        |severity: &str, text: &str| format!(r#"{{"type":"overheat","severity":"{severity}","text":"{text}"}}"#);
    f.submit("acme", "al", DataKind::Alarms, &raise("MINOR", "warm")).await.unwrap();
    f.submit("acme", "al", DataKind::Alarms, &raise("MAJOR", "hot")).await.unwrap();
    f.submit("acme", "al", DataKind::Alarms, &raise("CRITICAL", "burning")).await.unwrap();
    f.submit("acme", "al", DataKind::Alarms, r#"{"type":"door","severity":"WARNING"}"#).await.unwrap();
    f.submit("globex", "al", DataKind::Alarms, &raise("MINOR", "other tenant")).await.unwrap();
    let alarms = f.alarms_of("acme", "al").await;
    assert_eq!(alarms.len(), 2, "one open alarm per type: {alarms:?}");
    let overheat = alarms.iter().find(|a| a.alarm_type == "overheat").unwrap().clone();
    assert_eq!(
        (overheat.count, overheat.severity, overheat.status, overheat.text.as_deref()),
        (3, AlarmSeverity::Critical, AlarmStatus::Active, Some("burning"))
    );
    assert!(overheat.last_ts >= overheat.first_ts);
    // Filters.
    let critical = AlarmQuery { severity: Some(AlarmSeverity::Critical), ..AlarmQuery::default() };
    assert_eq!(f.ingestor.alarms("acme", &critical).await.unwrap().items.len(), 1);
    // Acknowledge, repeat (still counts on it), device clears, a new one opens.
    let acked = f.ingestor.update_alarm_status(&f.acme, &overheat.id, AlarmStatus::Acknowledged).await.unwrap();
    assert_eq!(acked.status, AlarmStatus::Acknowledged);
    assert!(matches!(
        f.ingestor.update_alarm_status(&f.acme, &overheat.id, AlarmStatus::Acknowledged).await,
        Err(QueryError::Conflict(_))
    ));
    assert!(matches!(
        f.ingestor.update_alarm_status(&f.acme, &overheat.id, AlarmStatus::Active).await,
        Err(QueryError::Invalid(_))
    ));
    assert!(matches!(
        f.ingestor.update_alarm_status(&f.globex, &overheat.id, AlarmStatus::Cleared).await,
        Err(QueryError::NotFound)
    ));
    f.submit("acme", "al", DataKind::Alarms, &raise("MAJOR", "again")).await.unwrap();
    let again = f.ingestor.alarm("acme", &overheat.id).await.unwrap();
    assert_eq!((again.count, again.status, again.severity), (4, AlarmStatus::Acknowledged, AlarmSeverity::Major));
    f.submit("acme", "al", DataKind::Alarms, r#"{"type":"overheat","status":"CLEARED"}"#).await.unwrap();
    assert_eq!(f.ingestor.alarm("acme", &overheat.id).await.unwrap().status, AlarmStatus::Cleared);
    f.submit("acme", "al", DataKind::Alarms, &raise("MINOR", "fresh")).await.unwrap();
    let open = AlarmQuery { status: Some(AlarmStatus::Active), device: Some("al".into()), ..AlarmQuery::default() };
    let open = f.ingestor.alarms("acme", &open).await.unwrap().items;
    let fresh = open.iter().find(|a| a.alarm_type == "overheat").unwrap();
    assert_ne!(fresh.id, overheat.id);
    assert_eq!(fresh.count, 1);
    // Operator clears the door alarm.
    let door = open.iter().find(|a| a.alarm_type == "door").unwrap();
    let cleared = f.ingestor.update_alarm_status(&f.acme, &door.id, AlarmStatus::Cleared).await.unwrap();
    assert_eq!(cleared.status, AlarmStatus::Cleared);
    // The other tenant's alarm is its own.
    let theirs = f.alarms_of("globex", "al").await;
    assert_eq!((theirs.len(), theirs[0].count, theirs[0].text.as_deref()), (1, 1, Some("other tenant")));
    // Pagination over alarms.
    let page = f.ingestor.alarms("acme", &AlarmQuery { limit: 1, ..AlarmQuery::default() }).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let next = AlarmQuery { limit: 1, cursor: page.next_cursor.clone(), ..AlarmQuery::default() };
    let next = f.ingestor.alarms("acme", &next).await.unwrap();
    assert!(next.items[0].id < page.items[0].id);
}

async fn wait_for_alarm(f: &Fixture, device: &str, status: AlarmStatus) -> Alarm {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alarms = f.alarms_of("acme", device).await;
        if let Some(alarm) = alarms.iter().find(|a| a.alarm_type == "unavailable" && a.status == status) {
            return alarm.clone();
        }
        assert!(Instant::now() < deadline, "no {status:?} unavailable alarm on {device}: {alarms:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn unavailable(f: &Fixture) {
    f.device("acme", "quiet", Some(1)).await;
    f.device("acme", "chatty", None).await;
    f.submit("acme", "quiet", DataKind::Telemetry, r#"{"x":1}"#).await.unwrap();
    f.submit("acme", "chatty", DataKind::Telemetry, r#"{"x":1}"#).await.unwrap();
    let started = Instant::now();
    let alarm = wait_for_alarm(f, "quiet", AlarmStatus::Active).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "raised too early");
    assert_eq!((alarm.severity, alarm.count), (AlarmSeverity::Major, 1));
    assert_eq!(alarm.text.as_deref(), Some("No data for more than 1 s"));
    // Raised once, not once per check.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let alarms = f.alarms_of("acme", "quiet").await;
    assert_eq!(alarms.iter().filter(|a| a.alarm_type == "unavailable").count(), 1);
    assert_eq!(alarms[0].count, 1);
    // The next message clears it.
    f.submit("acme", "quiet", DataKind::Telemetry, r#"{"x":2}"#).await.unwrap();
    let cleared = f.ingestor.alarm("acme", &alarm.id).await.unwrap();
    assert_eq!(cleared.status, AlarmStatus::Cleared);
    // A device without required_interval_s never gets one.
    assert!(f.alarms_of("acme", "chatty").await.is_empty());
}

async fn twin_and_attestation(f: &Fixture) {
    f.device("acme", "tw", None).await;
    f.submit("acme", "tw", DataKind::TwinReported, r#"{"fw":"1.0","net":{"rssi":-70,"ssid":"x"}}"#).await.unwrap();
    f.submit("acme", "tw", DataKind::TwinReported, r#"{"net":{"ssid":null},"up":true}"#).await.unwrap();
    let twin = f.ingestor.reported_twin("acme", "tw").await.unwrap();
    assert_eq!(twin.version, 2);
    assert_eq!(twin.reported, json!({"fw": "1.0", "net": {"rssi": -70}, "up": true}));
    // Concurrent patches are all applied.
    let submits = (0..8).map(|i| {
        let ingestor = f.ingestor.clone();
        let now = f.platform.now_ms();
        tokio::spawn(async move {
            ingestor.submit("acme", "tw", DataKind::TwinReported, format!(r#"{{"k{i}":{i}}}"#).as_bytes(), now).await
        })
    });
    for submit in submits.collect::<Vec<_>>() {
        submit.await.unwrap().unwrap();
    }
    let twin = f.ingestor.reported_twin("acme", "tw").await.unwrap();
    assert_eq!(twin.version, 10);
    assert_eq!(twin.reported.as_object().map(|map| map.len()), Some(11));
    // The state is capped in bytes and in keys: a patch that would outgrow it changes nothing.
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(70 * 1024));
    let refused = f.submit("acme", "tw", DataKind::TwinReported, &big).await.unwrap_err();
    assert!(matches!(refused, IngestError::TooLarge(_)), "{refused:?}");
    let many: serde_json::Map<String, Value> = (0..1100).map(|i| (format!("k{i}"), json!(i))).collect();
    let refused = f.submit("acme", "tw", DataKind::TwinReported, &Value::Object(many).to_string()).await.unwrap_err();
    assert!(matches!(refused, IngestError::TooLarge(_)), "{refused:?}");
    let after = f.ingestor.reported_twin("acme", "tw").await.unwrap();
    assert_eq!((after.version, &after.reported), (twin.version, &twin.reported), "refused patches changed nothing");
    let digest = "0f".repeat(32);
    let report = format!(r#"{{"firmware_version":"2.1","firmware_sha256":"{digest}","secure_boot":true}}"#);
    f.submit("acme", "tw", DataKind::Attestation, &report).await.unwrap();
    let stored = f.store.list_attestations("acme", "tw", 5).await.unwrap();
    assert_eq!(stored.len(), 1);
}

async fn live_channel(f: &Fixture) {
    f.device("acme", "lv", None).await;
    let mut live = f.ingestor.subscribe_live("acme");
    f.submit("acme", "lv", DataKind::Telemetry, r#"{"ts":1764000000000,"temp":5}"#).await.unwrap();
    f.submit("acme", "lv", DataKind::Telemetry, r#"{"temp":"bad"}"#).await.unwrap_err();
    f.submit("acme", "lv", DataKind::Alarms, r#"{"type":"leak","severity":"MAJOR","text":"wet"}"#).await.unwrap();
    let mut telemetry = None;
    let mut alarm = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while telemetry.is_none() || alarm.is_none() {
        let event = tokio::time::timeout_at(deadline.into(), live.recv()).await.expect("live events").expect("event");
        if &*event.device != "lv" {
            continue;
        }
        assert_eq!(&*event.tenant, "acme");
        match event.topic {
            LiveTopic::Telemetry => telemetry = Some(event),
            LiveTopic::Alarms => alarm = Some(event),
            other => panic!("unexpected {other:?}"),
        }
    }
    let telemetry = telemetry.unwrap();
    assert_eq!(*telemetry.data, json!({"device": "lv", "ts": "2025-11-24T16:00:00.000Z", "values": {"temp": 5}}));
    let alarm = alarm.unwrap();
    assert_eq!(alarm.data["type"], "leak");
    assert_eq!(alarm.data["text"], "wet");
    assert_eq!(alarm.data["status"], "ACTIVE");
    assert_eq!(alarm.data["count"], 1);
}

async fn unknown_devices_and_tenants(f: &Fixture) {
    // Device ids are per tenant: globex has no `rt`.
    assert!(matches!(
        f.submit("globex", "rt", DataKind::Telemetry, r#"{"x":1}"#).await,
        Err(IngestError::UnknownDevice { .. })
    ));
    assert!(matches!(
        f.ingestor.measurements("globex", "rt", &MeasurementQuery::default()).await,
        Err(QueryError::NotFound)
    ));
    assert!(matches!(f.ingestor.alarm("globex", "0000").await, Err(QueryError::NotFound)));
    // A deleted device: its key is gone with it, so new data is refused and old data is gone.
    f.device("acme", "gone", None).await;
    f.submit("acme", "gone", DataKind::Telemetry, r#"{"x":1}"#).await.unwrap();
    f.platform.delete_device(&f.acme, &DeviceId::parse("gone").unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f.submit("acme", "gone", DataKind::Telemetry, r#"{"x":2}"#).await {
            Err(IngestError::UnknownDevice { .. }) => break,
            other => assert!(Instant::now() < deadline, "deleted device still ingests: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads every telemetry/event/alarm column of the raw SQLite file and the database bytes:
/// neither the series name nor the value nor the event text may appear in clear.
async fn encrypted_at_rest(f: &Fixture) {
    let Some(path) = &f.sqlite else { return };
    f.device("acme", "vault", None).await;
    f.submit("acme", "vault", DataKind::Telemetry, r#"{"ts":5000,"zzsecretseries":12345.678}"#).await.unwrap();
    f.submit("acme", "vault", DataKind::Events, r#"{"type":"zzsecrettype","text":"zzsecrettext"}"#).await.unwrap();
    f.submit("acme", "vault", DataKind::Alarms, r#"{"type":"smoke","severity":"MAJOR","text":"zzalarmtext"}"#)
        .await
        .unwrap();
    let needles = ["zzsecretseries", "12345.678", "zzsecrettype", "zzsecrettext", "zzalarmtext"];
    let connection = rusqlite::Connection::open(path).unwrap();
    for table in ["device_telemetry", "device_events", "alarms"] {
        let mut statement = connection.prepare(&format!("SELECT * FROM {table} WHERE device = 'vault'")).unwrap();
        let columns = statement.column_count();
        let mut rows = statement.query([]).unwrap();
        let mut count = 0;
        while let Some(row) = rows.next().unwrap() {
            count += 1;
            for index in 0..columns {
                let bytes = match row.get_ref(index).unwrap() {
                    rusqlite::types::ValueRef::Text(bytes) | rusqlite::types::ValueRef::Blob(bytes) => bytes.to_vec(),
                    other => format!("{other:?}").into_bytes(),
                };
                let text = String::from_utf8_lossy(&bytes);
                for needle in needles {
                    assert!(!text.contains(needle), "{table} column {index} holds {needle} in clear");
                }
            }
        }
        assert_eq!(count, 1, "{table}");
    }
    // The ciphertext is bound to its row: moved to another time, it no longer opens.
    connection.execute("UPDATE device_telemetry SET ts = 6000 WHERE device = 'vault' AND ts = 5000", []).unwrap();
    assert!(matches!(
        f.ingestor.measurements("acme", "vault", &MeasurementQuery::default()).await,
        Err(QueryError::Internal(_))
    ));
    connection.execute("UPDATE device_telemetry SET ts = 5000 WHERE device = 'vault' AND ts = 6000", []).unwrap();
    assert_eq!(f.all_points("acme", "vault").await, [(5000, "zzsecretseries".to_owned(), 12345.678)]);
    // And the database files themselves hold none of it.
    drop(connection);
    for suffix in ["", "-wal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        let Ok(bytes) = std::fs::read(&file) else { continue };
        for needle in needles {
            assert!(!bytes.windows(needle.len()).any(|window| window == needle.as_bytes()), "{needle} in {file:?}");
        }
    }
}

/// Many concurrent submitters spread over `devices` devices, each submitter waiting for its
/// durable commit before sending the next message (like a QoS 1 publisher); prints msgs/s.
async fn throughput(f: &Fixture, backend: &str, devices: usize, submitters: usize, per_submitter: usize) {
    for index in 0..devices {
        f.device("globex", &format!("tp{devices}-{index}"), None).await;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..submitters)
        .map(|index| {
            let ingestor = f.ingestor.clone();
            let device = format!("tp{devices}-{}", index % devices);
            tokio::spawn(async move {
                for sequence in 0..per_submitter {
                    let payload = format!(r#"{{"temp":{sequence}.5,"hum":40}}"#);
                    ingestor
                        .submit("globex", &device, DataKind::Telemetry, payload.as_bytes(), 1_764_000_000_000)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = submitters * per_submitter;
    println!(
        "ingest throughput ({backend}, {devices} devices, {submitters} concurrent submitters, durable): \
         {total} msgs in {:.2} s = {:.0} msgs/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    let points = f.all_points("globex", &format!("tp{devices}-0")).await;
    let per_device = submitters.div_ceil(devices) * per_submitter;
    assert_eq!(points.len(), (2 * per_device).min(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_throughput() {
    let f = sqlite_fixture().await;
    // Release builds: `cargo test -p rampart-data --release -- --nocapture sqlite_throughput`.
    if cfg!(debug_assertions) {
        throughput(&f, "SQLite", 200, 200, 50).await;
        return;
    }
    // One message in flight per device (worst case: every message dirties its own pages), then
    // 100 devices with 10 messages in flight each (a QoS 1 publisher with a window).
    throughput(&f, "SQLite", 1000, 1000, 100).await;
    throughput(&f, "SQLite", 100, 1000, 100).await;
    throughput(&f, "SQLite", 1001, 4000, 50).await;
}

/// The ingest queue is bounded in bytes: QoS 0 messages past the budget are refused as
/// `Overloaded` (nothing of them is queued), and the budget comes back once the queued ones
/// are committed.
#[tokio::test]
async fn the_ingest_queue_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = rampart_store::open_sqlite(&dir.path().join("rampart.db")).await.expect("store");
    let settings = IngestSettings { queue_bytes: 4096, availability_check: None, ..IngestSettings::default() };
    let base = rampart_testkit::fixture::Fixture::over(store, Arc::new(SystemClock), dir, settings).await;
    let acme = base.tenant("acme").await;
    base.device(&acme, "flood").await;
    let payload = format!(r#"{{"type":"pad","text":"{}"}}"#, "x".repeat(1500));
    let now = base.platform.now_ms();
    // A current-thread runtime: the writer cannot run between these synchronous calls.
    let mut accepted = 0;
    let refused = loop {
        match base.ingestor.submit_nowait("acme", "flood", DataKind::Events, payload.as_bytes(), now + accepted) {
            Ok(()) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 100, "the queue never refused");
    };
    assert!(matches!(refused, IngestError::Overloaded), "{refused:?}");
    let per_message = (payload.len() + QUEUED_MESSAGE_OVERHEAD) as i64;
    assert_eq!(accepted, 4096 / per_message, "exactly what fits in 4096 bytes was queued");
    base.ingestor.flush().await;
    base.ingestor
        .submit_nowait("acme", "flood", DataKind::Events, payload.as_bytes(), now + 100)
        .expect("the budget is back after the commit");
    // A message larger than the whole budget still goes through, alone.
    let huge = format!(r#"{{"type":"pad","text":"{}"}}"#, "x".repeat(8000));
    base.ingestor.flush().await;
    base.ingestor.submit("acme", "flood", DataKind::Events, huge.as_bytes(), now + 200).await.expect("alone");
}
