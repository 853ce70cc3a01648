//! `DeviceDataStore`: batches (atomic, in order, with `seen` bookkeeping), the group-commit
//! path, telemetry/event/attestation listings, alarms (upsert of the open alarm, guarded status
//! moves), silent devices, the reported twin's compare-and-set, and erasure with the device
//! and the tenant. Packed telemetry has its own module.

mod packed_telemetry;

use rampart_core::{AlarmStatus, DeviceStatus, Severity};
use rampart_store::prelude::*;
use rampart_store::{AlarmFilter, AlarmRow, Device, DeviceDataBatch, DeviceDataRow};

use crate::support::*;

const T: &str = "dx-one";

/// Two tenants with a device `probe` each.
async fn two_probes(store: &dyn Store) {
    for tenant in [T, "dx-two"] {
        create_tenant(store, tenant).await;
        create_device(store, &device(tenant, "probe", None)).await;
    }
}

conformance!(a_batch_commits_telemetry_listed_in_pages_both_ways, |store| {
    two_probes(&*store).await;
    // 250 points (more than one multi-row chunk and more than one packed row) plus a tie.
    let mut rows: Vec<DeviceDataRow> = (0..250).map(|i| telemetry(T, "probe", 1_000 + i, 5)).collect();
    rows.push(telemetry(T, "probe", 1_000, 3));
    rows.push(telemetry("dx-two", "probe", 1_000, 1));
    store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    store.insert_device_data_batch(&DeviceDataBatch::default()).await.expect("an empty batch");

    let all = store.list_telemetry(T, "probe", &everything()).await.expect("all");
    assert_eq!(all.len(), 251);
    assert_eq!((all[0].ts, all[0].seq, all[1].ts, all[1].seq), (1_000, 3, 1_000, 5));
    assert_eq!(
        (all[0].tenant.as_str(), all[0].device.as_str(), all[0].sealed.as_slice()),
        (T, "probe", &b"sealed-1000-3"[..])
    );
    let keys =
        |rows: Vec<rampart_store::TelemetryRow>| rows.into_iter().map(|row| (row.ts, row.seq)).collect::<Vec<_>>();
    let page = store.list_telemetry(T, "probe", &range(Some(1_000), Some(1_010), Some((1_000, 3)), false, 3)).await;
    assert_eq!(keys(page.expect("page")), [(1_000, 5), (1_001, 5), (1_002, 5)]);
    let page = store.list_telemetry(T, "probe", &range(Some(1_000), Some(1_010), None, true, 2)).await;
    assert_eq!(keys(page.expect("page")), [(1_010, 5), (1_009, 5)]);
    let page = store.list_telemetry(T, "probe", &range(None, None, Some((1_000, 5)), true, 5)).await;
    assert_eq!(keys(page.expect("page")), [(1_000, 3)]);
    let other = store.list_telemetry("dx-two", "probe", &everything()).await.expect("other tenant");
    assert_eq!((other.len(), other[0].tenant.as_str()), (1, "dx-two"));
    assert!(store.list_telemetry(T, "ghost", &everything()).await.expect("no device").is_empty());
});

conformance!(events_are_listed_by_time_with_tag_filter_and_cursor, |store| {
    two_probes(&*store).await;
    let rows = vec![
        event(T, "probe", 2_000, "e2", "tag-b"),
        event(T, "probe", 2_000, "e1", "tag-a"),
        event(T, "probe", 2_500, "e3", "tag-a"),
        event("dx-two", "probe", 2_000, "e1", "tag-a"),
    ];
    store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    let ids = |rows: Vec<rampart_store::DeviceEventRow>| rows.into_iter().map(|row| row.id).collect::<Vec<_>>();
    let all = store.list_device_events(T, "probe", None, &everything()).await.expect("all");
    assert_eq!(
        all[0],
        match event(T, "probe", 2_000, "e1", "tag-a") {
            DeviceDataRow::Event(row) => row,
            _ => unreachable!("an event row"),
        }
    );
    assert_eq!(ids(all), ["e1", "e2", "e3"]);
    let tagged = store.list_device_events(T, "probe", Some("tag-a"), &range(None, None, None, true, 0)).await;
    assert_eq!(ids(tagged.expect("tagged")), ["e3", "e1"]);
    let after = range(None, Some(2_000), Some((2_000, "e1".to_owned())), false, 0);
    assert_eq!(ids(store.list_device_events(T, "probe", None, &after).await.expect("after")), ["e2"]);
    let limited = range(Some(2_000), None, None, true, 1);
    assert_eq!(ids(store.list_device_events(T, "probe", None, &limited).await.expect("limited")), ["e3"]);
    assert_eq!(ids(store.list_device_events("dx-two", "probe", None, &everything()).await.expect("other")), ["e1"]);
});

conformance!(attestations_are_listed_newest_first_up_to_the_limit, |store| {
    two_probes(&*store).await;
    let rows = vec![
        attestation(T, "probe", 3_000, "a1"),
        attestation(T, "probe", 5_000, "a3"),
        attestation(T, "probe", 4_000, "a2"),
        attestation("dx-two", "probe", 9_000, "a9"),
    ];
    store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    let listed = store.list_attestations(T, "probe", 2).await.expect("list");
    assert_eq!(listed.iter().map(|row| row.id.as_str()).collect::<Vec<_>>(), ["a3", "a2"]);
    assert_eq!(listed[0].sealed, b"report a3");
    assert_eq!(store.list_attestations(T, "probe", 10).await.expect("list").len(), 3);
    assert_eq!(store.list_attestations(T, "probe", 0).await.expect("limit 0 reads one").len(), 1);
    assert_eq!(store.list_attestations("dx-two", "probe", 10).await.expect("other").len(), 1);
});

conformance!(seen_keeps_the_latest_time_and_activates_registered_devices, |store| {
    two_probes(&*store).await;
    let with_seen = DeviceDataBatch {
        rows: vec![telemetry(T, "probe", 1, 1)],
        seen: vec![seen(T, "probe", 50_000), seen(T, "probe", 40_000), seen("dx-two", "probe", 7)],
    };
    store.insert_device_data_batch(&with_seen).await.expect("batch");
    let probe = store.get_device(T, "probe").await.expect("probe");
    assert_eq!((probe.last_seen, probe.status, probe.connected), (Some(50_000), DeviceStatus::Active, false));
    assert_eq!(store.get_device("dx-two", "probe").await.expect("other").last_seen, Some(7));
    store.touch_devices_last_seen(&[seen(T, "probe", 10)]).await.expect("older");
    assert_eq!(store.get_device(T, "probe").await.expect("probe").last_seen, Some(50_000), "never moves back");
    store.touch_devices_last_seen(&[seen(T, "probe", 60_000), seen(T, "ghost", 1)]).await.expect("newer");
    assert_eq!(store.get_device(T, "probe").await.expect("probe").last_seen, Some(60_000));
    store.touch_devices_last_seen(&[]).await.expect("nothing");
    // A revoked or quarantined device stays so.
    store.revoke_device("dx-two", "probe", 9).await.expect("revoke");
    store.touch_devices_last_seen(&[seen("dx-two", "probe", 8)]).await.expect("touch");
    assert_eq!(store.get_device("dx-two", "probe").await.expect("other").status, DeviceStatus::Revoked);
});

conformance!(seen_changes_only_its_columns, |store| {
    create_tenant(&*store, T).await;
    let base =
        Device { name: "Kept".into(), firmware: Some("1.0".into()), connected: true, ..device(T, "probe", None) };
    create_device(&*store, &base).await;
    store.touch_devices_last_seen(&[seen(T, "probe", 5_000)]).await.expect("touch");
    let after = store.get_device(T, "probe").await.expect("probe");
    assert_eq!(after, Device { last_seen: Some(5_000), status: DeviceStatus::Active, ..base });
});

conformance!(a_failing_batch_leaves_nothing_behind, |store| {
    two_probes(&*store).await;
    store.insert_device_data_batch(&batch(vec![telemetry(T, "probe", 1_000, 3)])).await.expect("first");
    let failing = DeviceDataBatch {
        rows: vec![
            telemetry(T, "probe", 9_000, 1),
            event(T, "probe", 9_000, "e9", "tag"),
            DeviceDataRow::RaiseAlarm(raise(T, "probe", "leak", "a9", Severity::Major, 9_000)),
            telemetry(T, "probe", 1_000, 3),
        ],
        seen: vec![seen(T, "probe", 99_000)],
    };
    assert_conflict(store.insert_device_data_batch(&failing).await);
    assert!(
        store.list_telemetry(T, "probe", &range(Some(9_000), None, None, false, 0)).await.expect("list").is_empty()
    );
    assert!(store.list_device_events(T, "probe", None, &everything()).await.expect("events").is_empty());
    assert_not_found(store.get_alarm(T, "a9").await);
    assert_eq!(store.get_device(T, "probe").await.expect("probe").last_seen, None);
    assert_conflict(store.write_device_data_batch(&failing).await.map(drop));
    assert!(
        store.list_telemetry(T, "probe", &range(Some(9_000), None, None, false, 0)).await.expect("list").is_empty()
    );
});

conformance!(the_group_commit_path_is_readable_at_once_and_durable_on_wait, |store| {
    two_probes(&*store).await;
    let one = |ts| batch(vec![telemetry(T, "probe", ts, 1)]);
    let durable = store.write_device_data_batch(&one(9_500)).await.expect("write");
    let written = store.list_telemetry(T, "probe", &range(Some(9_500), Some(9_500), None, false, 0)).await;
    assert_eq!(written.expect("list").len(), 1, "visible before durable");
    durable.wait().await.expect("durable");
    // Several writes waiting at once are all answered (one sync may serve several).
    let mut waiting = Vec::new();
    for ts in 9_600..9_620 {
        waiting.push(store.write_device_data_batch(&one(ts)).await.expect("write"));
    }
    for durable in waiting {
        durable.wait().await.expect("durable");
    }
    let written = store.list_telemetry(T, "probe", &range(Some(9_600), None, None, false, 0)).await;
    assert_eq!(written.expect("list").len(), 20);
    store.write_device_data_batch(&DeviceDataBatch::default()).await.expect("empty").wait().await.expect("durable");
});

/// Alarm fixtures: tenant T with `pump` in group north and `fan`; `pump` also in dx-two.
async fn alarm_devices(store: &dyn Store) {
    two_probes(store).await;
    store.create_group(&group(T, "north", None)).await.expect("group");
    create_device(store, &device(T, "pump", Some("north"))).await;
    create_device(store, &device(T, "fan", None)).await;
    create_device(store, &device("dx-two", "pump", None)).await;
}

conformance!(raising_counts_repeats_on_the_open_alarm, |store| {
    alarm_devices(&*store).await;
    let rows = vec![
        DeviceDataRow::RaiseAlarm(raise(T, "pump", "overheat", "0001", Severity::Minor, 100)),
        DeviceDataRow::RaiseAlarm(raise(T, "pump", "overheat", "0002", Severity::Critical, 200)),
        DeviceDataRow::RaiseAlarm(raise(T, "fan", "overheat", "0003", Severity::Major, 150)),
        DeviceDataRow::RaiseAlarm(raise("dx-two", "pump", "overheat", "0004", Severity::Major, 150)),
    ];
    store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    let pump = store.get_alarm(T, "0001").await.expect("pump alarm");
    let expected = AlarmRow {
        tenant: T.into(),
        id: "0001".into(),
        device: "pump".into(),
        alarm_type: "overheat".into(),
        severity: Severity::Critical,
        status: AlarmStatus::Active,
        count: 2,
        text_sealed: Some(b"text-0002".to_vec()),
        first_ts: 100,
        last_ts: 200,
        updated_at: 200,
    };
    assert_eq!(pump, expected);
    assert_not_found(store.get_alarm(T, "0002").await);
    assert_not_found(store.get_alarm("dx-two", "0001").await);
    // A repeat without text keeps the old text; an older time does not move last_ts back.
    let mut quiet = raise(T, "pump", "overheat", "0005", Severity::Critical, 50);
    quiet.text_sealed = None;
    store.raise_alarm(&quiet).await.expect("raise");
    let pump = store.get_alarm(T, "0001").await.expect("pump alarm");
    assert_eq!((pump.count, pump.last_ts, pump.text_sealed.as_deref()), (3, 200, Some(&b"text-0002"[..])));
    let theirs = store.get_alarm("dx-two", "0004").await.expect("other tenant");
    assert_eq!((theirs.status, theirs.count), (AlarmStatus::Active, 1));
});

conformance!(concurrent_raises_count_on_one_open_alarm, |store| {
    alarm_devices(&*store).await;
    concurrently(10, |index| {
        let store = store.clone();
        let raise = raise(T, "pump", "overheat", &format!("c{index:02}"), Severity::Major, 100 + index as i64);
        async move { store.raise_alarm(&raise).await.expect("raise") }
    })
    .await;
    let open = AlarmFilter { status: Some(AlarmStatus::Active), ..AlarmFilter::default() };
    let alarms = store.list_alarms(T, &open, &page(None, 0)).await.expect("list");
    assert_eq!(alarms.len(), 1, "one open alarm per device and type: {alarms:?}");
    assert_eq!((alarms[0].count, alarms[0].last_ts), (10, 109));
});

conformance!(alarms_are_listed_newest_first_with_filters_and_pages, |store| {
    alarm_devices(&*store).await;
    store.raise_alarm(&raise(T, "pump", "overheat", "0001", Severity::Critical, 100)).await.expect("1");
    store.raise_alarm(&raise(T, "fan", "overheat", "0003", Severity::Major, 150)).await.expect("3");
    store.raise_alarm(&raise(T, "fan", "door", "0002", Severity::Minor, 150)).await.expect("2");
    store.set_alarm_status(T, "0002", &[AlarmStatus::Active], AlarmStatus::Cleared, 160).await.expect("clear 2");
    store.raise_alarm(&raise("dx-two", "pump", "overheat", "0009", Severity::Critical, 150)).await.expect("other");
    let ids = |filter: AlarmFilter, after: Option<&'static str>, limit| {
        let store = store.clone();
        async move {
            let alarms = store.list_alarms(T, &filter, &page(after, limit)).await.expect("list");
            alarms.into_iter().map(|alarm| alarm.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(AlarmFilter::default(), None, 0).await, ["0003", "0002", "0001"]);
    assert_eq!(ids(AlarmFilter::default(), None, 1).await, ["0003"]);
    assert_eq!(ids(AlarmFilter::default(), Some("0003"), 1).await, ["0002"]);
    let critical = AlarmFilter { severity: Some(Severity::Critical), ..AlarmFilter::default() };
    assert_eq!(ids(critical, None, 0).await, ["0001"]);
    let fan = AlarmFilter { device: Some("fan".into()), ..AlarmFilter::default() };
    assert_eq!(ids(fan, None, 0).await, ["0003", "0002"]);
    let cleared = AlarmFilter { status: Some(AlarmStatus::Cleared), ..AlarmFilter::default() };
    assert_eq!(ids(cleared, None, 0).await, ["0002"]);
    let north = AlarmFilter { within_groups: Some(strings(&["north"])), ..AlarmFilter::default() };
    assert_eq!(ids(north, None, 0).await, ["0001"]);
    let nowhere = AlarmFilter { within_groups: Some(Vec::new()), ..AlarmFilter::default() };
    assert!(ids(nowhere, None, 0).await.is_empty(), "an empty scope matches nothing");
});

conformance!(alarm_status_moves_only_from_the_named_statuses, |store| {
    alarm_devices(&*store).await;
    store.raise_alarm(&raise(T, "pump", "overheat", "0001", Severity::Major, 100)).await.expect("raise");
    let acked = store.set_alarm_status(T, "0001", &[AlarmStatus::Active], AlarmStatus::Acknowledged, 300).await;
    let acked = acked.expect("acknowledge");
    assert_eq!((acked.status, acked.updated_at, acked.count), (AlarmStatus::Acknowledged, 300, 1));
    assert_conflict(store.set_alarm_status(T, "0001", &[AlarmStatus::Active], AlarmStatus::Acknowledged, 301).await);
    assert_conflict(store.set_alarm_status(T, "0001", &[], AlarmStatus::Cleared, 301).await);
    assert_not_found(store.set_alarm_status("dx-two", "0001", &[AlarmStatus::Active], AlarmStatus::Cleared, 301).await);
    assert_not_found(store.set_alarm_status(T, "nope", &[AlarmStatus::Active], AlarmStatus::Cleared, 301).await);
    assert_eq!(store.get_alarm(T, "0001").await.expect("get").updated_at, 300, "refusals change nothing");
    // An acknowledged alarm is still the open one: a repeat counts on it.
    store.raise_alarm(&raise(T, "pump", "overheat", "0006", Severity::Major, 400)).await.expect("repeat");
    assert_eq!(store.get_alarm(T, "0001").await.expect("get").count, 2);
    let cleared = store.set_alarm_status(T, "0001", AlarmStatus::Cleared.reachable_from(), AlarmStatus::Cleared, 500);
    assert_eq!(cleared.await.expect("clear").status, AlarmStatus::Cleared);
});

conformance!(a_cleared_alarm_makes_the_next_raise_a_new_alarm, |store| {
    alarm_devices(&*store).await;
    assert!(store.latest_alarm(T, "pump", "overheat").await.expect("none yet").is_none());
    store.raise_alarm(&raise(T, "pump", "overheat", "0001", Severity::Major, 100)).await.expect("raise");
    store.insert_device_data_batch(&batch(vec![clear(T, "pump", "overheat", 500)])).await.expect("clear");
    let cleared = store.get_alarm(T, "0001").await.expect("get");
    assert_eq!((cleared.status, cleared.updated_at), (AlarmStatus::Cleared, 500));
    store.insert_device_data_batch(&batch(vec![clear(T, "pump", "overheat", 501)])).await.expect("clear nothing");
    assert_eq!(store.get_alarm(T, "0001").await.expect("get").updated_at, 500, "a cleared alarm is not cleared again");
    store.raise_alarm(&raise(T, "pump", "overheat", "0007", Severity::Minor, 600)).await.expect("raise again");
    let fresh = store.get_alarm(T, "0007").await.expect("new alarm");
    assert_eq!((fresh.status, fresh.count, fresh.first_ts), (AlarmStatus::Active, 1, 600));
    assert_eq!(store.latest_alarm(T, "pump", "overheat").await.expect("latest").map(|a| a.id).as_deref(), Some("0007"));
    assert!(store.latest_alarm(T, "pump", "other").await.expect("other type").is_none());
    assert!(store.latest_alarm("dx-two", "pump", "overheat").await.expect("other tenant").is_none());
});

conformance!(a_raise_and_a_clear_in_one_batch_end_cleared, |store| {
    alarm_devices(&*store).await;
    let rows = vec![
        DeviceDataRow::RaiseAlarm(raise(T, "fan", "door", "0008", Severity::Major, 700)),
        clear(T, "fan", "door", 701),
    ];
    store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    assert_eq!(store.get_alarm(T, "0008").await.expect("get").status, AlarmStatus::Cleared);
    let rows = vec![
        clear(T, "fan", "door", 800),
        DeviceDataRow::RaiseAlarm(raise(T, "fan", "door", "0009", Severity::Major, 801)),
    ];
    store.insert_device_data_batch(&batch(rows)).await.expect("batch");
    assert_eq!(store.get_alarm(T, "0009").await.expect("get").status, AlarmStatus::Active, "in order");
});

conformance!(silent_devices_are_listed_once_until_they_speak, |store| {
    create_tenant(&*store, T).await;
    let watched = Device { required_interval_s: Some(10), ..device(T, "watched", None) };
    create_device(&*store, &watched).await;
    create_device(&*store, &Device { required_interval_s: Some(10), ..device(T, "never", None) }).await;
    create_device(&*store, &device(T, "free", None)).await;
    create_device(&*store, &Device { required_interval_s: Some(10), ..device(T, "quiet-revoked", None) }).await;
    let touched = [seen(T, "watched", 1_000), seen(T, "free", 1_000), seen(T, "quiet-revoked", 1_000)];
    store.touch_devices_last_seen(&touched).await.expect("touch");
    store.revoke_device(T, "quiet-revoked", 1_001).await.expect("revoke");

    let silent = |now| {
        let store = store.clone();
        async move {
            let devices = store.list_silent_devices(now, 100).await.expect("silent");
            devices.into_iter().map(|d| (d.tenant, d.device, d.last_seen, d.required_interval_s)).collect::<Vec<_>>()
        }
    };
    assert!(silent(11_000).await.is_empty(), "exactly the interval is not yet silent");
    assert_eq!(silent(11_001).await, [(T.to_owned(), "watched".to_owned(), 1_000, 10)]);
    store.raise_alarm(&raise(T, "watched", "unavailable", "0100", Severity::Major, 11_001)).await.expect("raise");
    assert!(silent(20_000).await.is_empty(), "raised once");
    // New data clears it in the same transaction.
    let speaks =
        DeviceDataBatch { rows: vec![telemetry(T, "watched", 20_000, 1)], seen: vec![seen(T, "watched", 20_000)] };
    store.insert_device_data_batch(&speaks).await.expect("batch");
    assert_eq!(store.get_alarm(T, "0100").await.expect("get").status, AlarmStatus::Cleared);
    assert!(silent(30_000).await.is_empty());
    assert_eq!(silent(30_001).await, [(T.to_owned(), "watched".to_owned(), 20_000, 10)]);
    create_device(&*store, &Device { required_interval_s: Some(1), ..device("dx-two", "other", None) }).await;
    store.touch_devices_last_seen(&[seen("dx-two", "other", 1_000)]).await.expect("touch");
    assert_eq!(silent(30_001).await.len(), 2, "across tenants");
    assert_eq!(store.list_silent_devices(30_001, 1).await.expect("limited").len(), 1);
});

conformance!(the_reported_twin_is_compare_and_set, |store| {
    two_probes(&*store).await;
    assert!(store.get_twin_reported(T, "probe").await.expect("none").is_none());
    store.put_twin_reported(&twin(T, "probe", 1, b"one"), 0).await.expect("first");
    assert_conflict(store.put_twin_reported(&twin(T, "probe", 1, b"again"), 0).await);
    assert_conflict(store.put_twin_reported(&twin(T, "probe", 3, b"skipped"), 2).await);
    store.put_twin_reported(&twin(T, "probe", 2, b"two"), 1).await.expect("second");
    assert_conflict(store.put_twin_reported(&twin(T, "probe", 2, b"stale"), 1).await);
    assert_eq!(store.get_twin_reported(T, "probe").await.expect("get"), Some(twin(T, "probe", 2, b"two")));
    assert!(store.get_twin_reported("dx-two", "probe").await.expect("other tenant").is_none());
    assert_conflict(store.put_twin_reported(&twin("dx-two", "probe", 2, b"x"), 1).await);
    let answers = concurrently(10, |index| {
        let store = store.clone();
        async move { store.put_twin_reported(&twin(T, "probe", 3, format!("w{index}").as_bytes()), 2).await }
    })
    .await;
    assert_eq!(answers.iter().filter(|answer| answer.is_ok()).count(), 1, "{answers:?}");
});

conformance!(device_data_goes_with_its_device_and_its_tenant, |store| {
    for tenant in ["de-one", "de-two"] {
        create_tenant(&*store, tenant).await;
        create_device(&*store, &device(tenant, "meter", None)).await;
        let rows = vec![
            telemetry(tenant, "meter", 1, 1),
            event(tenant, "meter", 1, "ev", "tag"),
            DeviceDataRow::RaiseAlarm(raise(tenant, "meter", "leak", "0200", Severity::Major, 1)),
            attestation(tenant, "meter", 1, "at"),
        ];
        store.insert_device_data_batch(&batch(rows)).await.expect("batch");
        store.put_twin_reported(&twin(tenant, "meter", 1, b"r"), 0).await.expect("twin");
    }
    store.delete_device("de-one", "meter", 5).await.expect("delete device");
    assert!(store.list_telemetry("de-one", "meter", &everything()).await.expect("telemetry").is_empty());
    assert!(store.list_device_events("de-one", "meter", None, &everything()).await.expect("events").is_empty());
    assert!(store.list_attestations("de-one", "meter", 10).await.expect("attestations").is_empty());
    assert_not_found(store.get_alarm("de-one", "0200").await);
    assert!(store.get_twin_reported("de-one", "meter").await.expect("twin").is_none());
    // The same device id in another tenant keeps its data until its tenant goes.
    assert_eq!(store.list_telemetry("de-two", "meter", &everything()).await.expect("telemetry").len(), 1);
    store.get_alarm("de-two", "0200").await.expect("alarm");
    store.delete_tenant("de-two").await.expect("delete tenant");
    assert!(store.list_telemetry("de-two", "meter", &everything()).await.expect("telemetry").is_empty());
    assert!(store.list_device_events("de-two", "meter", None, &everything()).await.expect("events").is_empty());
    assert_not_found(store.get_alarm("de-two", "0200").await);
    assert!(store.get_twin_reported("de-two", "meter").await.expect("twin").is_none());
    assert!(store.list_attestations("de-two", "meter", 10).await.expect("attestations").is_empty());
});
