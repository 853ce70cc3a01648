//! `GatewayStore`: the connection bookkeeping of devices (touching only its own columns) and
//! retained messages (batches applied in order and atomically, expiry, per tenant).

use rampart_core::DeviceStatus;
use rampart_store::{Device, DeviceChanges, RetainedChange, RetainedMessageRow};

use crate::support::*;

conformance!(connection_state_touches_only_its_columns, |store| {
    for tenant in ["acme", "globex"] {
        create_tenant(&*store, tenant).await;
        create_device(&*store, &Device { attributes_json: r#"{"a":1}"#.into(), ..device(tenant, "d1", None) }).await;
    }
    store.mark_device_connected("acme", "d1", 1_000, "192.0.2.7").await.expect("connected");
    let connected = store.get_device("acme", "d1").await.expect("device");
    let expected = Device {
        status: DeviceStatus::Active,
        connected: true,
        last_seen: Some(1_000),
        last_address: Some("192.0.2.7".into()),
        attributes_json: r#"{"a":1}"#.into(),
        ..device("acme", "d1", None)
    };
    assert_eq!(connected, expected);
    store.mark_device_disconnected("acme", "d1", 2_000).await.expect("disconnected");
    let disconnected = store.get_device("acme", "d1").await.expect("device");
    assert_eq!(disconnected, Device { connected: false, last_seen: Some(2_000), ..expected });
    assert_eq!(store.get_device("globex", "d1").await.expect("other tenant").status, DeviceStatus::Registered);
    assert_not_found(store.mark_device_connected("acme", "missing", 1, "x").await);
    assert_not_found(store.mark_device_disconnected("acme", "missing", 1).await);
    assert_not_found(store.mark_device_connected("initech", "d1", 1, "x").await);
});

conformance!(connection_bookkeeping_never_lifts_a_revocation_or_quarantine, |store| {
    create_device(&*store, &device("acme", "revoked", None)).await;
    create_device(&*store, &device("acme", "quarantined", None)).await;
    store.revoke_device("acme", "revoked", 50).await.expect("revoke");
    store
        .set_device_status("acme", "quarantined", &[DeviceStatus::Registered], DeviceStatus::Quarantined)
        .await
        .expect("quarantine");
    for (id, status) in [("revoked", DeviceStatus::Revoked), ("quarantined", DeviceStatus::Quarantined)] {
        store.mark_device_connected("acme", id, 1_000, "192.0.2.7").await.expect("connected");
        store.mark_device_seen("acme", id, 1_500, "192.0.2.8").await.expect("seen");
        store.mark_device_disconnected("acme", id, 2_000).await.expect("disconnected");
        assert_eq!(store.get_device("acme", id).await.expect("device").status, status, "{id}");
    }
});

conformance!(a_visit_without_a_connection_leaves_connected_alone, |store| {
    create_device(&*store, &device("acme", "d1", None)).await;
    store.mark_device_seen("acme", "d1", 1_000, "203.0.113.5").await.expect("seen");
    let seen = store.get_device("acme", "d1").await.expect("device");
    assert_eq!(
        (seen.status, seen.connected, seen.last_seen, seen.last_address.as_deref()),
        (DeviceStatus::Active, false, Some(1_000), Some("203.0.113.5"))
    );
    store.mark_device_connected("acme", "d1", 2_000, "192.0.2.7").await.expect("connected");
    store.mark_device_seen("acme", "d1", 3_000, "203.0.113.6").await.expect("seen");
    let seen = store.get_device("acme", "d1").await.expect("device");
    assert_eq!(
        (seen.connected, seen.last_seen, seen.last_address.as_deref()),
        (true, Some(3_000), Some("203.0.113.6"))
    );
    assert_not_found(store.mark_device_seen("acme", "missing", 1, "x").await);
});

conformance!(an_api_edit_between_connect_and_disconnect_is_not_lost, |store| {
    create_device(&*store, &device("acme", "d1", None)).await;
    store.mark_device_connected("acme", "d1", 1_000, "192.0.2.7").await.expect("connected");
    let rename = DeviceChanges { name: Some("Renamed".into()), ..DeviceChanges::default() };
    store.update_device("acme", "d1", &rename).await.expect("rename");
    store.mark_device_disconnected("acme", "d1", 2_000).await.expect("disconnected");
    let after = store.get_device("acme", "d1").await.expect("device");
    assert_eq!((after.name.as_str(), after.connected, after.last_seen), ("Renamed", false, Some(2_000)));
});

conformance!(retained_messages_round_trip_every_column, |store| {
    for tenant in ["rm-a", "rm-b"] {
        create_tenant(&*store, tenant).await;
    }
    let full = RetainedMessageRow {
        qos: 2,
        properties_sealed: Some(vec![0, 255, 7]),
        expires_at: Some(1_900_000_000_000),
        updated_at: 1_800_000_000_000,
        ..retained("rm-a", "plant/line-1/state", b"\x00running\xff")
    };
    put_retained(&*store, &full).await.expect("full");
    put_retained(&*store, &retained("rm-a", "plant/line-2/state", b"idle")).await.expect("plain");
    put_retained(&*store, &retained("rm-b", "plant/line-1/state", b"other tenant")).await.expect("other tenant");
    let listed = store.list_retained_messages("rm-a").await.expect("list");
    assert_eq!(listed, vec![full, retained("rm-a", "plant/line-2/state", b"idle")]);
});

conformance!(a_retained_message_replaces_the_one_of_its_topic_in_its_tenant, |store| {
    for tenant in ["rm-a", "rm-b"] {
        create_tenant(&*store, tenant).await;
    }
    let full = RetainedMessageRow {
        properties_sealed: Some(vec![1]),
        expires_at: Some(5_000),
        ..retained("rm-a", "state", b"running")
    };
    put_retained(&*store, &full).await.expect("first");
    put_retained(&*store, &retained("rm-b", "state", b"other tenant")).await.expect("other tenant");
    let replaced = RetainedMessageRow { qos: 0, updated_at: 2, ..retained("rm-a", "state", b"stopped") };
    put_retained(&*store, &replaced).await.expect("replace");
    assert_eq!(store.list_retained_messages("rm-a").await.expect("list"), [replaced], "cleared columns too");
    assert_eq!(store.list_retained_messages("rm-b").await.expect("list")[0].payload_sealed, b"other tenant");
});

conformance!(deleting_a_retained_message_clears_one_topic_of_one_tenant, |store| {
    for tenant in ["rm-a", "rm-b"] {
        create_tenant(&*store, tenant).await;
        put_retained(&*store, &retained(tenant, "one", b"1")).await.expect("one");
        put_retained(&*store, &retained(tenant, "two", b"2")).await.expect("two");
    }
    delete_retained(&*store, "rm-a", "one").await.expect("delete");
    delete_retained(&*store, "rm-a", "one").await.expect("deleting what is gone is fine");
    delete_retained(&*store, "rm-a", "never/retained").await.expect("so is what never was");
    let topics = |rows: Vec<RetainedMessageRow>| rows.into_iter().map(|row| row.topic).collect::<Vec<_>>();
    assert_eq!(topics(store.list_retained_messages("rm-a").await.expect("a")), ["two"]);
    assert_eq!(topics(store.list_retained_messages("rm-b").await.expect("b")), ["one", "two"]);
});

conformance!(a_retained_batch_applies_in_order, |store| {
    for tenant in ["rm-a", "rm-b"] {
        create_tenant(&*store, tenant).await;
    }
    put_retained(&*store, &retained("rm-a", "gone", b"1")).await.expect("put");
    let batch = [
        RetainedChange::Put(retained("rm-b", "x", b"1")),
        RetainedChange::Delete { tenant: "rm-b".into(), topic: "x".into() },
        RetainedChange::Put(retained("rm-b", "y", b"1")),
        RetainedChange::Put(retained("rm-b", "y", b"2")),
        RetainedChange::Delete { tenant: "rm-a".into(), topic: "gone".into() },
    ];
    store.write_retained_messages(&batch).await.expect("batch");
    store.write_retained_messages(&[]).await.expect("an empty batch");
    assert!(store.list_retained_messages("rm-a").await.expect("a").is_empty());
    let listed = store.list_retained_messages("rm-b").await.expect("b");
    assert_eq!(
        listed.iter().map(|row| (row.topic.as_str(), row.payload_sealed.as_slice())).collect::<Vec<_>>(),
        [("y", &b"2"[..])]
    );
});

conformance!(a_retained_batch_with_a_missing_tenant_fails_as_a_whole, |store| {
    create_tenant(&*store, "rm-b").await;
    put_retained(&*store, &retained("rm-b", "kept", b"1")).await.expect("put");
    let doomed = [
        RetainedChange::Put(retained("rm-b", "z", b"1")),
        RetainedChange::Delete { tenant: "rm-b".into(), topic: "kept".into() },
        RetainedChange::Put(retained("rm-none", "z", b"1")),
    ];
    assert_conflict(store.write_retained_messages(&doomed).await);
    let listed = store.list_retained_messages("rm-b").await.expect("b");
    assert_eq!(
        listed.into_iter().map(|row| row.topic).collect::<Vec<_>>(),
        ["kept"],
        "nothing of a failed batch stays"
    );
    assert!(store.list_retained_messages("rm-none").await.expect("none").is_empty());
});

conformance!(all_retained_messages_are_listed_by_tenant_then_topic, |store| {
    for tenant in ["rm-b", "rm-a"] {
        create_tenant(&*store, tenant).await;
    }
    for (tenant, topic) in [("rm-b", "y"), ("rm-a", "b"), ("rm-b", "plant/line-1/state"), ("rm-a", "a")] {
        put_retained(&*store, &retained(tenant, topic, b"1")).await.expect("put");
    }
    let all = store.list_all_retained_messages().await.expect("all");
    let keys: Vec<(&str, &str)> = all.iter().map(|row| (row.tenant.as_str(), row.topic.as_str())).collect();
    assert_eq!(keys, [("rm-a", "a"), ("rm-a", "b"), ("rm-b", "plant/line-1/state"), ("rm-b", "y")]);
    assert_eq!(all[0], retained("rm-a", "a", b"1"));
});

conformance!(expired_retained_messages_are_purged_in_every_tenant, |store| {
    for tenant in ["rm-a", "rm-b"] {
        create_tenant(&*store, tenant).await;
    }
    put_retained(&*store, &RetainedMessageRow { expires_at: Some(100), ..retained("rm-a", "a", b"1") })
        .await
        .expect("a");
    put_retained(&*store, &retained("rm-a", "forever", b"1")).await.expect("forever");
    put_retained(&*store, &RetainedMessageRow { expires_at: Some(100), ..retained("rm-b", "b", b"1") })
        .await
        .expect("b");
    put_retained(&*store, &RetainedMessageRow { expires_at: Some(200), ..retained("rm-b", "later", b"2") })
        .await
        .expect("later");
    assert_eq!(store.delete_expired_retained_messages(99).await.expect("purge"), 0);
    assert_eq!(store.delete_expired_retained_messages(100).await.expect("purge"), 2, "at expiry, in both tenants");
    let topics = |rows: Vec<RetainedMessageRow>| rows.into_iter().map(|row| row.topic).collect::<Vec<_>>();
    assert_eq!(topics(store.list_retained_messages("rm-a").await.expect("a")), ["forever"]);
    assert_eq!(topics(store.list_retained_messages("rm-b").await.expect("b")), ["later"]);
    assert_eq!(store.delete_expired_retained_messages(10_000).await.expect("purge"), 1);
    assert_eq!(topics(store.list_all_retained_messages().await.expect("all")), ["forever"]);
});

conformance!(retained_messages_go_with_their_tenant, |store| {
    for tenant in ["rm-a", "rm-b"] {
        create_tenant(&*store, tenant).await;
        put_retained(&*store, &retained(tenant, "status", b"on")).await.expect("put");
    }
    store.delete_tenant("rm-a").await.expect("delete tenant");
    assert!(store.list_retained_messages("rm-a").await.expect("a").is_empty());
    assert_eq!(store.list_retained_messages("rm-b").await.expect("b").len(), 1);
});
