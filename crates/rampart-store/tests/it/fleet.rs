//! `FleetStore`: the signing key is stored once, images are unique per name, version and
//! hardware, a device's security counter only grows, campaigns move only from the statuses
//! named, and campaign operations are counted per status.

use rampart_core::AttestationStatus;
use rampart_core::CampaignStatus::{self, *};
use rampart_core::OperationStatus;
use rampart_store::{
    AdvisoryRow, CampaignRow, CampaignUpdate, DeviceFirmwareRow, FirmwareRow, OperationUpdate, SigningKeyRow,
};

use crate::operations::operation;
use crate::support::*;

const T: &str = "fleet-one";

fn image(id: &str, version: &str, counter: i64) -> FirmwareRow {
    FirmwareRow {
        tenant: T.into(),
        id: id.into(),
        name: "sensor-fw".into(),
        version: version.into(),
        hardware: "rev-b".into(),
        security_counter: counter,
        sha256: format!("{id:0>64}"),
        size: 1024,
        signature: "c2ln".into(),
        key_id: None,
        file_key_sealed: vec![1, 2, 3],
        created_at: 1_000,
    }
}

fn campaign(id: &str) -> CampaignRow {
    CampaignRow {
        tenant: T.into(),
        id: id.into(),
        firmware_id: "fw1".into(),
        target: r#"{"group":"g"}"#.into(),
        strategy: "{}".into(),
        devices: r#"["pump"]"#.into(),
        dispatched: 0,
        accepted: 0,
        status: Running,
        reason: None,
        created_by: "user:admin".into(),
        created_at: 1_000,
        updated_at: 1_000,
    }
}

fn moving<'a>(id: &'a str, from: &'a [CampaignStatus], to: CampaignStatus) -> CampaignUpdate<'a> {
    CampaignUpdate { tenant: T, id, from, to, dispatched: None, accepted: None, reason: None, now_ms: 2_000 }
}

conformance!(the_signing_key_is_stored_once_and_images_are_unique, |store| {
    let first = SigningKeyRow { tenant: T.into(), private_sealed: vec![1], public_key: vec![2], created_at: 1 };
    assert_eq!(store.put_signing_key_once(&first).await.expect("first"), first);
    let second = SigningKeyRow { private_sealed: vec![9], public_key: vec![9], ..first.clone() };
    assert_eq!(store.put_signing_key_once(&second).await.expect("second"), first, "the first key stays");
    assert_eq!(store.get_signing_key("fleet-two").await.expect("none"), None);

    store.insert_firmware(&image("fw1", "1.0.0", 1)).await.expect("insert");
    assert_conflict(store.insert_firmware(&image("fw2", "1.0.0", 1)).await);
    store.insert_firmware(&image("fw3", "1.1.0", 2)).await.expect("another version");
    assert_eq!(store.get_firmware(T, "fw1").await.expect("get"), image("fw1", "1.0.0", 1));
    assert_not_found(store.get_firmware("fleet-two", "fw1").await);
    assert_eq!(store.firmware_by_sha256(T, &image("fw3", "", 0).sha256).await.expect("by hash").len(), 1);
    assert_eq!(store.list_firmware(T).await.expect("list").len(), 2);
});

conformance!(a_devices_security_counter_only_grows, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    let mut row = DeviceFirmwareRow {
        tenant: T.into(),
        device: "pump".into(),
        firmware_version: Some("1.1.0".into()),
        security_counter: Some(5),
        secure_boot: Some(true),
        attestation_status: Some(AttestationStatus::Trusted),
        checked_at: Some(10),
        updated_at: 10,
        ..DeviceFirmwareRow::default()
    };
    store.record_device_firmware(&row, true).await.expect("record");
    row.security_counter = Some(3);
    row.firmware_version = Some("1.0.0".into());
    row.attestation_status = Some(AttestationStatus::Untrusted);
    store.record_device_firmware(&row, false).await.expect("record without attestation");
    let stored = store.get_device_firmware(T, "pump").await.expect("get").expect("row");
    assert_eq!(stored.security_counter, Some(5), "never decreases");
    assert_eq!(stored.firmware_version.as_deref(), Some("1.0.0"));
    assert_eq!(stored.attestation_status, Some(AttestationStatus::Trusted), "attestation fields kept");
    row.security_counter = Some(7);
    store.record_device_firmware(&row, true).await.expect("record");
    let stored = store.get_device_firmware(T, "pump").await.expect("get").expect("row");
    assert_eq!((stored.security_counter, stored.attestation_status), (Some(7), Some(AttestationStatus::Untrusted)));
    assert_not_found(store.record_device_firmware(&DeviceFirmwareRow { device: "ghost".into(), ..row }, true).await);
    assert_eq!(store.list_device_firmware(T).await.expect("list").len(), 1);
});

conformance!(campaigns_move_only_from_the_statuses_named_and_count_their_operations, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    store.insert_campaign(&campaign("c1")).await.expect("insert");
    assert_conflict(store.insert_campaign(&campaign("c1")).await);
    assert_eq!(store.list_running_campaigns().await.expect("running").len(), 1);
    let mut progress = moving("c1", &[Running], Running);
    progress.dispatched = Some(1);
    assert_eq!(store.update_campaign(&progress).await.expect("progress").dispatched, 1);
    let paused = store.update_campaign(&moving("c1", Paused.reachable_from(), Paused)).await.expect("pause");
    assert_eq!(paused.status, Paused);
    assert!(store.list_running_campaigns().await.expect("running").is_empty());
    assert_conflict(store.update_campaign(&moving("c1", Paused.reachable_from(), Paused)).await);
    store.update_campaign(&moving("c1", Cancelled.reachable_from(), Cancelled)).await.expect("cancel");
    assert_conflict(store.update_campaign(&moving("c1", Running.reachable_from(), Running)).await);
    assert_not_found(store.update_campaign(&moving("c9", &[Running], Paused)).await);

    for id in ["0001", "0002", "0003"] {
        let mut op = operation(T, "pump", id, None);
        op.campaign = Some("c1".into());
        store.create_operation(&op).await.expect("create");
    }
    let fail = OperationUpdate {
        tenant: T,
        id: "0002",
        device: None,
        from: &[OperationStatus::Pending],
        to: OperationStatus::Failed,
        reason: None,
        result_sealed: None,
        now_ms: 3,
    };
    store.set_operation_status(&fail).await.expect("fail");
    let mut counts = store.campaign_operation_counts(T, "c1").await.expect("counts");
    counts.sort();
    assert_eq!(counts, vec![("FAILED".to_owned(), 1), ("PENDING".to_owned(), 2)]);
});

conformance!(advisories_are_replaced_by_id, |store| {
    let advisory = AdvisoryRow { tenant: T.into(), id: "OSV-1".into(), record: "{}".into(), updated_at: 1 };
    store.put_advisory(&advisory).await.expect("put");
    store.put_advisory(&AdvisoryRow { record: r#"{"a":1}"#.into(), ..advisory }).await.expect("replace");
    let listed = store.list_advisories(T).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].record, r#"{"a":1}"#);
});
