//! `DeviceStore`: devices created with their data key, listing filters, partial edits that
//! never touch the status, conditional status moves, revocation (the credential fence),
//! reinstatement, and deletion through the owned-table registry.

use rampart_core::DeviceStatus;
use rampart_store::owned_tables::{OWNED_TABLES, OnDeviceDelete};
use rampart_store::{Device, DeviceChanges, DeviceFilter, DeviceKey};

use crate::support::*;

const T: &str = "dv-one";

conformance!(a_device_is_created_with_its_data_key, |store| {
    let pump = create_device(&*store, &device(T, "pump", None)).await;
    assert_eq!(store.get_device(T, "pump").await.expect("get"), pump);
    assert_eq!(store.get_device_key(T, "pump").await.expect("key"), device_key(T, "pump"));

    let other_key = DeviceKey { wrapped: b"another key".to_vec(), ..device_key(T, "pump") };
    assert_conflict(store.create_device(&device(T, "pump", None), &other_key).await);
    assert_eq!(store.get_device_key(T, "pump").await.expect("key"), device_key(T, "pump"), "key unchanged");

    create_device(&*store, &device("dv-two", "pump", None)).await;
    assert_eq!(store.get_device_key("dv-two", "pump").await.expect("key"), device_key("dv-two", "pump"));
    assert_not_found(store.get_device_key("dv-three", "pump").await);
});

conformance!(a_device_is_never_created_without_its_key_or_with_another_one, |store| {
    assert!(
        store.create_device(&device(T, "fan", None), &device_key(T, "pump")).await.is_err(),
        "another device's key"
    );
    assert!(
        store.create_device(&device(T, "fan", None), &device_key("dv-two", "fan")).await.is_err(),
        "another tenant's"
    );
    assert_not_found(store.get_device(T, "fan").await);
    // The key insert runs after the device insert: a device that fails leaves no key behind.
    assert!(store.create_device(&device(T, "lost", Some("nowhere")), &device_key(T, "lost")).await.is_err());
    assert_not_found(store.get_device(T, "lost").await);
    assert_not_found(store.get_device_key(T, "lost").await);
});

conformance!(devices_are_listed_with_filters_and_pages, |store| {
    for id in ["north", "south", "empty"] {
        store.create_group(&group(T, id, None)).await.expect("group");
    }
    for index in 0..10 {
        let mut row = device(T, &format!("dev-{index:02}"), Some(["north", "south"][index % 2]));
        row.device_type = Some(if index < 4 { "meter" } else { "valve" }.into());
        row.status = if index % 3 == 0 { DeviceStatus::Active } else { DeviceStatus::Registered };
        create_device(&*store, &row).await;
    }
    create_device(&*store, &device(T, "loner", None)).await;
    create_device(&*store, &device("dv-two", "dev-00", None)).await;

    let list = |filter: DeviceFilter, after: Option<&'static str>, limit| {
        let store = store.clone();
        async move {
            let devices = store.list_devices(T, &filter, &page(after, limit)).await.expect("list");
            devices.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    let all = DeviceFilter::default();
    assert_eq!(list(all.clone(), None, 4).await, ["dev-00", "dev-01", "dev-02", "dev-03"]);
    assert_eq!(list(all.clone(), Some("dev-08"), 4).await, ["dev-09", "loner"]);
    assert_eq!(list(all, None, 0).await.len(), 11);
    let north = DeviceFilter { group: Some("north".into()), ..DeviceFilter::default() };
    assert_eq!(list(north.clone(), None, 3).await, ["dev-00", "dev-02", "dev-04"]);
    assert_eq!(list(north, Some("dev-04"), 3).await, ["dev-06", "dev-08"]);
    let active = DeviceFilter { status: Some(DeviceStatus::Active), ..DeviceFilter::default() };
    assert_eq!(list(active, None, 0).await, ["dev-00", "dev-03", "dev-06", "dev-09"]);
    let meters = DeviceFilter { device_type: Some("meter".into()), ..DeviceFilter::default() };
    assert_eq!(list(meters, None, 0).await, ["dev-00", "dev-01", "dev-02", "dev-03"]);
    let combined = DeviceFilter {
        group: Some("south".into()),
        status: Some(DeviceStatus::Registered),
        device_type: Some("valve".into()),
        within_groups: Some(strings(&["south", "empty"])),
    };
    assert_eq!(list(combined, None, 0).await, ["dev-05", "dev-07"]);
    let within = DeviceFilter { within_groups: Some(strings(&["south", "empty"])), ..DeviceFilter::default() };
    assert_eq!(list(within, None, 0).await, ["dev-01", "dev-03", "dev-05", "dev-07", "dev-09"]);
    let nowhere = DeviceFilter { within_groups: Some(Vec::new()), ..DeviceFilter::default() };
    assert!(list(nowhere, None, 0).await.is_empty(), "an empty scope matches nothing");
    let other = store.list_devices("dv-two", &DeviceFilter::default(), &page(None, 0)).await.expect("other tenant");
    assert_eq!(other.into_iter().map(|d| d.id).collect::<Vec<_>>(), ["dev-00"]);
});

conformance!(update_device_changes_only_the_named_columns_and_never_the_status, |store| {
    store.create_group(&group(T, "empty", None)).await.expect("group");
    let base = Device {
        device_type: Some("meter".into()),
        required_interval_s: Some(30),
        status: DeviceStatus::Quarantined,
        connected: true,
        last_seen: Some(123_456),
        last_address: Some("198.51.100.7:51234".into()),
        firmware: Some("1.2.3".into()),
        credentials_valid_after: 77,
        ..device(T, "dev", None)
    };
    create_device(&*store, &base).await;
    create_device(&*store, &device("dv-two", "dev", None)).await;

    let rename = DeviceChanges { name: Some("Renamed".into()), ..DeviceChanges::default() };
    let after = store.update_device(T, "dev", &rename).await.expect("rename");
    assert_eq!(after, Device { name: "Renamed".into(), ..base.clone() });

    let everything = DeviceChanges {
        name: Some("Again".into()),
        device_type: Some(None),
        group: Some(Some("empty".into())),
        attributes_json: Some(r#"{"floor":3}"#.into()),
        required_interval_s: Some(None),
    };
    let expected = Device {
        name: "Again".into(),
        device_type: None,
        group: Some("empty".into()),
        attributes_json: r#"{"floor":3}"#.into(),
        required_interval_s: None,
        ..base.clone()
    };
    assert_eq!(store.update_device(T, "dev", &everything).await.expect("edit"), expected);
    assert_eq!(store.get_device(T, "dev").await.expect("get"), expected, "status, connection state, fence untouched");
    assert_eq!(store.update_device(T, "dev", &DeviceChanges::default()).await.expect("no change"), expected);
    assert_eq!(store.get_device("dv-two", "dev").await.expect("other"), device("dv-two", "dev", None));

    let ungroup = DeviceChanges { group: Some(None), ..DeviceChanges::default() };
    assert_eq!(store.update_device(T, "dev", &ungroup).await.expect("ungroup").group, None);
    let lost = DeviceChanges { group: Some(Some("nowhere".into())), ..DeviceChanges::default() };
    assert!(store.update_device(T, "dev", &lost).await.is_err(), "the group must exist");
});

conformance!(update_device_of_a_missing_device_is_not_found, |store| {
    create_device(&*store, &device(T, "dev", None)).await;
    let rename = DeviceChanges { name: Some("x".into()), ..DeviceChanges::default() };
    assert_not_found(store.update_device(T, "ghost", &rename).await);
    assert_not_found(store.update_device("dv-three", "dev", &rename).await);
    assert_not_found(store.update_device(T, "ghost", &DeviceChanges::default()).await);
});

#[test]
fn device_changes_name_the_fields_they_set() {
    let changes = DeviceChanges {
        name: Some("n".into()),
        group: Some(None),
        required_interval_s: Some(Some(5)),
        ..DeviceChanges::default()
    };
    assert_eq!(changes.changed(), ["name", "group", "required_interval_s"]);
    assert!(DeviceChanges::default().changed().is_empty());
}

conformance!(set_device_status_moves_only_from_the_named_statuses, |store| {
    create_device(&*store, &device(T, "dev", None)).await;
    let quarantine = [DeviceStatus::Registered, DeviceStatus::Active];
    let after = store.set_device_status(T, "dev", &quarantine, DeviceStatus::Quarantined).await.expect("quarantine");
    assert_eq!(after.status, DeviceStatus::Quarantined);
    assert_conflict(store.set_device_status(T, "dev", &quarantine, DeviceStatus::Quarantined).await);
    assert_conflict(store.set_device_status(T, "dev", &[], DeviceStatus::Active).await);
    assert_eq!(store.get_device(T, "dev").await.expect("get").status, DeviceStatus::Quarantined);
    let lift = store.set_device_status(T, "dev", &[DeviceStatus::Quarantined], DeviceStatus::Active).await;
    assert_eq!(lift.expect("lift").status, DeviceStatus::Active);
    assert_not_found(store.set_device_status(T, "ghost", &quarantine, DeviceStatus::Quarantined).await);
    assert_not_found(store.set_device_status("dv-two", "dev", &quarantine, DeviceStatus::Quarantined).await);
});

conformance!(concurrent_status_moves_from_one_status_let_exactly_one_win, |store| {
    create_device(&*store, &device(T, "dev", None)).await;
    let answers = concurrently(10, |index| {
        let store = store.clone();
        let to = [DeviceStatus::Active, DeviceStatus::Quarantined][index % 2];
        async move { store.set_device_status(T, "dev", &[DeviceStatus::Registered], to).await }
    })
    .await;
    let winners: Vec<DeviceStatus> =
        answers.iter().filter_map(|answer| answer.as_ref().ok()).map(|d| d.status).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(store.get_device(T, "dev").await.expect("get").status, winners[0]);
    assert!(
        answers
            .iter()
            .filter(|answer| answer.is_err())
            .all(|answer| matches!(answer, Err(rampart_store::StoreError::Conflict(_))))
    );
});

conformance!(revoking_a_device_fences_off_every_credential, |store| {
    equip(&*store, T, "gate").await;
    equip(&*store, "dv-two", "gate").await;
    let revoked = store.revoke_device(T, "gate", 99).await.expect("revoke");
    assert_eq!((revoked.status, revoked.credentials_valid_after), (DeviceStatus::Revoked, 99));
    assert_eq!(store.get_device(T, "gate").await.expect("get"), revoked);
    assert!(store.list_device_tokens(T, "gate").await.expect("tokens").is_empty());
    let certificates = store.list_device_certificates(T, "gate").await.expect("certificates");
    let revoked_at: Vec<(&str, Option<i64>)> = certificates.iter().map(|c| (c.serial.as_str(), c.revoked_at)).collect();
    assert_eq!(revoked_at, [("gate-live", Some(99)), ("gate-old", Some(7))], "earlier revocations keep their time");
    store.get_device_key(T, "gate").await.expect("the data key stays");
    assert_equipped(&*store, "dv-two", "gate").await;

    // Revoking again moves the fence forward.
    assert_eq!(store.revoke_device(T, "gate", 150).await.expect("again").credentials_valid_after, 150);
    assert_not_found(store.revoke_device(T, "ghost", 99).await);
    assert_not_found(store.revoke_device("dv-three", "gate", 99).await);
    assert_equipped(&*store, "dv-two", "gate").await;
});

conformance!(reinstating_lifts_only_a_revocation, |store| {
    create_device(&*store, &device(T, "fresh", None)).await;
    equip(&*store, T, "seen").await;
    assert_conflict(store.reinstate_device(T, "fresh").await);
    assert_conflict(store.reinstate_device(T, "seen").await);
    store.set_device_status(T, "fresh", &[DeviceStatus::Registered], DeviceStatus::Quarantined).await.expect("q");
    assert_conflict(store.reinstate_device(T, "fresh").await);
    assert_eq!(store.get_device(T, "fresh").await.expect("get").status, DeviceStatus::Quarantined);
    assert_not_found(store.reinstate_device(T, "ghost").await);

    for id in ["fresh", "seen"] {
        store.revoke_device(T, id, 500).await.expect("revoke");
    }
    let fresh = store.reinstate_device(T, "fresh").await.expect("reinstate fresh");
    assert_eq!((fresh.status, fresh.credentials_valid_after), (DeviceStatus::Registered, 500), "never connected");
    let seen = store.reinstate_device(T, "seen").await.expect("reinstate seen");
    assert_eq!((seen.status, seen.credentials_valid_after), (DeviceStatus::Active, 500), "seen before");
    assert!(store.list_device_tokens(T, "seen").await.expect("tokens").is_empty(), "no credential comes back");
    assert!(store.list_device_certificates(T, "seen").await.expect("certs").iter().all(|c| c.revoked_at.is_some()));
    assert_conflict(store.reinstate_device(T, "seen").await);
});

conformance!(deleting_a_device_empties_its_rows_in_every_owned_table, |store, raw| {
    populate_every_owned_table(&*store, T, "gone").await;
    // Another device of the tenant and the same device id in another tenant, with rows too.
    populate_every_owned_table(&*store, "dv-two", "gone").await;
    let rows = vec![
        telemetry(T, "kept", 100, 1),
        event(T, "kept", 100, "ev", "tag"),
        attestation(T, "kept", 100, "at"),
        rampart_store::DeviceDataRow::RaiseAlarm(raise(
            T,
            "kept",
            "leak",
            "kept-alarm",
            rampart_core::Severity::Major,
            1,
        )),
    ];
    create_device(&*store, &device(T, "kept", None)).await;
    store.create_device_token(&token(T, "kept", "t1")).await.expect("token");
    store.create_device_certificate(&certificate(T, "kept", "kept-cert")).await.expect("cert");
    store.insert_device_data_batch(&batch(rows)).await.expect("data");
    store.put_twin_reported(&twin(T, "kept", 1, b"r"), 0).await.expect("twin");
    let op = crate::operations::operation(T, "kept", "kept-op", None);
    store.create_operation(&op).await.expect("operation");
    let desired = rampart_store::TwinDesiredRow {
        tenant: T.into(),
        device: "kept".into(),
        desired_sealed: b"d".to_vec(),
        desired_version: 1,
        updated_at: 1,
    };
    store.put_twin_desired(&desired, 0).await.expect("desired twin");
    let runs = rampart_store::DeviceFirmwareRow {
        tenant: T.into(),
        device: "kept".into(),
        security_counter: Some(1),
        updated_at: 1,
        ..Default::default()
    };
    store.record_device_firmware(&runs, true).await.expect("device firmware");

    let device_tables: Vec<_> = OWNED_TABLES.iter().filter(|owned| owned.device_column.is_some()).collect();
    let count = |tenant: &'static str, device: &'static str, table: &'static str, column: &'static str| {
        let raw = raw.clone();
        async move { raw.count(&format!("{table} WHERE tenant = '{tenant}' AND {column} = '{device}'")).await }
    };
    let mut before = Vec::new();
    for owned in &device_tables {
        let column = owned.device_column.expect("device column");
        let counts = [count(T, "gone", owned.table, column).await, count(T, "kept", owned.table, column).await];
        assert!(counts.iter().all(|rows| *rows > 0), "the fixture gives both devices a row in {}", owned.table);
        before.push((owned, counts, count("dv-two", "gone", owned.table, column).await));
    }

    store.delete_device(T, "gone", 777).await.expect("delete device");

    for (owned, [_, kept_before], elsewhere_before) in before {
        let column = owned.device_column.expect("device column");
        let gone = count(T, "gone", owned.table, column).await;
        match owned.on_device_delete {
            OnDeviceDelete::Delete => assert_eq!(gone, 0, "{}: rows of the deleted device remain", owned.table),
            OnDeviceDelete::Revoke => {
                let live = format!("{} WHERE tenant = '{T}' AND {column} = 'gone' AND revoked_at IS NULL", owned.table);
                assert_eq!(raw.count(&live).await, 0, "{}: rows are revoked", owned.table);
                assert!(gone > 0, "{}: revoked rows stay", owned.table);
            }
            OnDeviceDelete::Keep => {}
        }
        assert_eq!(count(T, "kept", owned.table, column).await, kept_before, "{}: another device's rows", owned.table);
        let elsewhere = count("dv-two", "gone", owned.table, column).await;
        assert_eq!(elsewhere, elsewhere_before, "{}: the same id in another tenant", owned.table);
    }
    let crl = store.list_revoked_certificates(T).await.expect("crl");
    assert_eq!(
        crl.iter().map(|c| (c.serial.as_str(), c.revoked_at)).collect::<Vec<_>>(),
        [("dv-one-gone-cert", Some(777))]
    );
    assert_not_found(store.get_device(T, "gone").await);
    assert_not_found(store.get_device_key(T, "gone").await);
    store.get_device(T, "kept").await.expect("the other device stays");
});

conformance!(a_device_created_under_a_deleted_id_takes_only_later_credentials, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    assert_eq!(store.get_device(T, "pump").await.expect("get").credentials_valid_after, 0);
    store.delete_device(T, "pump", 5_000).await.expect("delete");
    create_device(&*store, &device(T, "pump", None)).await;
    assert_eq!(store.get_device(T, "pump").await.expect("get").credentials_valid_after, 5_000);
    store.delete_device(T, "pump", 9_000).await.expect("delete again");
    create_device(&*store, &device(T, "pump", None)).await;
    assert_eq!(store.get_device(T, "pump").await.expect("get").credentials_valid_after, 9_000, "the latest deletion");
    // A later fence of its own stays; other ids and other tenants are untouched.
    store.delete_device(T, "pump", 9_500).await.expect("delete");
    create_device(&*store, &Device { credentials_valid_after: 12_000, ..device(T, "pump", None) }).await;
    assert_eq!(store.get_device(T, "pump").await.expect("get").credentials_valid_after, 12_000);
    create_device(&*store, &device(T, "fan", None)).await;
    assert_eq!(store.get_device(T, "fan").await.expect("get").credentials_valid_after, 0);
    create_device(&*store, &device("dv-two", "pump", None)).await;
    assert_eq!(store.get_device("dv-two", "pump").await.expect("get").credentials_valid_after, 0);
    assert_eq!(store.device_deleted_at(T, "pump").await.expect("tombstone"), Some(9_500));
    assert_eq!(store.device_deleted_at(T, "fan").await.expect("tombstone"), None);
    assert_eq!(store.device_deleted_at("dv-two", "pump").await.expect("tombstone"), None);
});

conformance!(a_failed_device_delete_changes_nothing, |store| {
    equip(&*store, "dv-two", "lamp").await;
    assert_not_found(store.delete_device(T, "lamp", 78).await);
    // Not even the certificates of a device of that name (they outlive devices).
    store.create_device_certificate(&certificate(T, "lamp", "stray")).await.expect("stray certificate");
    assert_not_found(store.delete_device(T, "lamp", 78).await);
    assert_eq!(store.get_device_certificate(T, "stray").await.expect("stray").revoked_at, None);
    assert_equipped(&*store, "dv-two", "lamp").await;
    store.delete_device("dv-two", "lamp", 79).await.expect("delete");
    assert_not_found(store.delete_device("dv-two", "lamp", 80).await);
});
