//! `OperationStore`: operations created only for existing devices, listed per tenant with
//! filters and pages, moved only from the statuses named (and only for their own device),
//! timed out by deadline; desired twins written by compare-and-set.

use rampart_core::OperationStatus::{self, *};
use rampart_store::{OperationFilter, OperationRow, OperationUpdate, Page, StoreError, TwinDesiredRow};

use crate::support::*;

const T: &str = "op-one";

pub(crate) fn operation(tenant: &str, device: &str, id: &str, timeout_at: Option<i64>) -> OperationRow {
    OperationRow {
        tenant: tenant.into(),
        id: id.into(),
        device: device.into(),
        op_type: "restart".into(),
        payload_sealed: Some(format!("payload of {id}").into_bytes()),
        status: Pending,
        reason: None,
        result_sealed: None,
        campaign: None,
        created_by: "user:admin".into(),
        created_at: 1_000,
        updated_at: 1_000,
        timeout_at,
    }
}

fn update<'a>(id: &'a str, from: &'a [OperationStatus], to: OperationStatus) -> OperationUpdate<'a> {
    OperationUpdate { tenant: T, id, device: None, from, to, reason: None, result_sealed: None, now_ms: 2_000 }
}

fn page(after: Option<&str>, limit: u32) -> Page {
    Page { after: after.map(str::to_owned), limit }
}

conformance!(operations_are_created_for_existing_devices_only, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    let op = operation(T, "pump", "0001", Some(5_000));
    store.create_operation(&op).await.expect("create");
    assert_eq!(store.get_operation(T, "0001").await.expect("get"), op);
    assert_conflict(store.create_operation(&op).await);
    assert_not_found(store.create_operation(&operation(T, "ghost", "0002", None)).await);
    assert_not_found(store.get_operation(T, "0002").await);
    assert_not_found(store.get_operation("op-two", "0001").await);
});

conformance!(operations_are_listed_newest_first_with_filters_and_pages, |store| {
    for device_id in ["pump", "fan"] {
        create_device(&*store, &device(T, device_id, None)).await;
    }
    create_device(&*store, &device("op-two", "pump", None)).await;
    for (id, device_id) in [("0001", "pump"), ("0002", "fan"), ("0003", "pump"), ("0004", "pump")] {
        store.create_operation(&operation(T, device_id, id, None)).await.expect("create");
    }
    store.create_operation(&operation("op-two", "pump", "0005", None)).await.expect("other tenant");
    store.set_operation_status(&update("0003", &[Pending], Executing)).await.expect("move");
    let ids = |rows: Vec<OperationRow>| rows.into_iter().map(|row| row.id).collect::<Vec<_>>();
    let all = OperationFilter::default();
    assert_eq!(
        ids(store.list_operations(T, &all, &page(None, 0)).await.expect("list")),
        ["0004", "0003", "0002", "0001"]
    );
    assert_eq!(ids(store.list_operations(T, &all, &page(Some("0003"), 1)).await.expect("page")), ["0002"]);
    let pump = OperationFilter { device: Some("pump".into()), ..Default::default() };
    assert_eq!(ids(store.list_operations(T, &pump, &page(None, 0)).await.expect("pump")), ["0004", "0003", "0001"]);
    let pending = OperationFilter { device: Some("pump".into()), status: Some(Pending), campaign: None };
    assert_eq!(ids(store.list_operations(T, &pending, &page(None, 0)).await.expect("pending")), ["0004", "0001"]);
    let campaign = OperationFilter { campaign: Some("c1".into()), ..Default::default() };
    assert!(store.list_operations(T, &campaign, &page(None, 0)).await.expect("campaign").is_empty());
});

conformance!(operations_move_only_from_the_named_statuses_and_for_their_own_device, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    create_device(&*store, &device(T, "fan", None)).await;
    store.create_operation(&operation(T, "pump", "0001", None)).await.expect("create");

    let foreign = OperationUpdate { device: Some("fan"), ..update("0001", &[Pending], Executing) };
    assert_not_found(store.set_operation_status(&foreign).await);
    assert_eq!(store.get_operation(T, "0001").await.expect("get").status, Pending, "another device moved nothing");
    let own = OperationUpdate { device: Some("pump"), ..update("0001", &[Pending], Executing) };
    let moved = store.set_operation_status(&own).await.expect("executing");
    assert_eq!((moved.status, moved.updated_at), (Executing, 2_000));
    assert_conflict(store.set_operation_status(&update("0001", &[Pending], Executing)).await);
    assert_conflict(store.set_operation_status(&update("0001", &[], Failed)).await);

    let done = OperationUpdate {
        reason: Some("flashed"),
        result_sealed: Some(b"sealed result"),
        ..update("0001", &[Pending, Executing], Successful)
    };
    let finished = store.set_operation_status(&done).await.expect("successful");
    assert_eq!(finished.status, Successful);
    assert_eq!(
        (finished.reason.as_deref(), finished.result_sealed.as_deref()),
        (Some("flashed"), Some(&b"sealed result"[..]))
    );
    assert_conflict(store.set_operation_status(&update("0001", &[Pending, Executing], Failed)).await);
    assert_not_found(store.set_operation_status(&update("0009", &[Pending], Failed)).await);
    let elsewhere = OperationUpdate { tenant: "op-two", ..update("0001", &[Successful], Failed) };
    assert_not_found(store.set_operation_status(&elsewhere).await);
});

conformance!(concurrent_moves_of_one_operation_let_exactly_one_win, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    store.create_operation(&operation(T, "pump", "0001", None)).await.expect("create");
    let answers = concurrently(10, |index| {
        let store = store.clone();
        async move {
            let to = if index % 2 == 0 { Successful } else { Failed };
            let update = OperationUpdate { now_ms: index as i64, ..update("0001", &[Pending, Executing], to) };
            store.set_operation_status(&update).await.map(|row| row.status)
        }
    })
    .await;
    let winners: Vec<_> = answers.iter().filter_map(|answer| answer.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert!(
        answers.iter().filter(|answer| answer.is_err()).all(|answer| matches!(answer, Err(StoreError::Conflict(_))))
    );
    assert_eq!(store.get_operation(T, "0001").await.expect("get").status, *winners[0]);
});

conformance!(unfinished_operations_past_their_deadline_are_listed_oldest_deadline_first, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    create_device(&*store, &device("op-two", "fan", None)).await;
    for (tenant, device_id, id, deadline) in [
        (T, "pump", "0001", Some(3_000)),
        (T, "pump", "0002", Some(1_500)),
        (T, "pump", "0003", None),
        (T, "pump", "0004", Some(9_000)),
        ("op-two", "fan", "0005", Some(2_000)),
        (T, "pump", "0006", Some(1_000)),
    ] {
        store.create_operation(&operation(tenant, device_id, id, deadline)).await.expect("create");
    }
    store.set_operation_status(&update("0001", &[Pending], Executing)).await.expect("executing still times out");
    store.set_operation_status(&update("0006", &[Pending], Successful)).await.expect("finished never times out");
    let due = store.list_timed_out_operations(3_000, 10).await.expect("due");
    let due: Vec<_> = due.iter().map(|row| (row.tenant.as_str(), row.id.as_str())).collect();
    assert_eq!(due, [(T, "0002"), ("op-two", "0005"), (T, "0001")]);
    assert_eq!(store.list_timed_out_operations(3_000, 1).await.expect("limited").len(), 1);
    assert!(store.list_timed_out_operations(999, 10).await.expect("none yet").is_empty());
});

fn desired(tenant: &str, device: &str, version: i64) -> TwinDesiredRow {
    TwinDesiredRow {
        tenant: tenant.into(),
        device: device.into(),
        desired_sealed: format!("desired v{version}").into_bytes(),
        desired_version: version,
        updated_at: version * 10,
    }
}

conformance!(desired_twins_are_written_by_compare_and_set, |store| {
    create_device(&*store, &device(T, "pump", None)).await;
    assert_eq!(store.get_twin_desired(T, "pump").await.expect("none yet"), None);
    store.put_twin_desired(&desired(T, "pump", 1), 0).await.expect("first");
    assert_conflict(store.put_twin_desired(&desired(T, "pump", 1), 0).await);
    store.put_twin_desired(&desired(T, "pump", 2), 1).await.expect("second");
    assert_conflict(store.put_twin_desired(&desired(T, "pump", 2), 1).await);
    assert_eq!(store.get_twin_desired(T, "pump").await.expect("get"), Some(desired(T, "pump", 2)));
    assert_not_found(store.put_twin_desired(&desired(T, "ghost", 1), 0).await);
    assert_eq!(store.get_twin_desired("op-two", "pump").await.expect("other tenant"), None);

    let answers = concurrently(10, |_| {
        let store = store.clone();
        async move { store.put_twin_desired(&desired(T, "pump", 3), 2).await }
    })
    .await;
    assert_eq!(answers.iter().filter(|answer| answer.is_ok()).count(), 1, "{answers:?}");
});
