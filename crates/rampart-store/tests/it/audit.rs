//! `AuditStore`: chains per tenant incarnation (heads, seq conflicts, listing filters and
//! pages, the group scope), checkpoints, the list of chains, and the append-only triggers of
//! the storage itself.

use rampart_core::Severity;
use rampart_store::prelude::*;
use rampart_store::{AuditFilter, AuditRecord, StoreError};

use crate::support::*;

const ACTIONS: [&str; 6] = ["login", "device.create", "login", "device.revoke", "login", "user.create"];

/// Appends six records (actors alternate alice, bob) to `chain` and answers them.
async fn six_records(store: &dyn Store, chain: &rampart_store::AuditChain) -> Vec<AuditRecord> {
    let mut records = Vec::new();
    for (index, action) in ACTIONS.iter().enumerate() {
        let seq = index as i64 + 1;
        let record = audit(chain, seq, action, if seq % 2 == 0 { "bob" } else { "alice" });
        store.insert_audit(&record).await.expect("insert");
        records.push(record);
    }
    records
}

conformance!(an_audit_chain_appends_and_answers_its_head, |store| {
    let one = chain("au-one", "inc-1");
    assert_eq!(store.audit_head(&one).await.expect("head"), None);
    let records = six_records(&*store, &one).await;
    // Another writer already took seq 3.
    assert_conflict(store.insert_audit(&audit(&one, 3, "login", "mallory")).await);
    assert_eq!(store.audit_head(&one).await.expect("head").as_ref(), records.last());
    let two = chain("au-two", "inc-1");
    store.insert_audit(&audit(&two, 1, "login", "alice")).await.expect("other tenant");
    assert_eq!(store.audit_head(&two).await.expect("head"), Some(audit(&two, 1, "login", "alice")));
    assert_eq!(store.audit_head(&one).await.expect("head").as_ref(), records.last());
});

conformance!(audit_records_are_listed_with_filters_and_pages, |store| {
    let one = chain("au-one", "inc-1");
    let records = six_records(&*store, &one).await;
    store.insert_audit(&audit(&chain("au-two", "inc-1"), 1, "login", "alice")).await.expect("other tenant");
    let list = |filter: AuditFilter, after: Option<&'static str>, limit| {
        let (store, one) = (store.clone(), one.clone());
        async move {
            let listed = store.list_audit(&one, &filter, &page(after, limit)).await.expect("list");
            listed.into_iter().map(|r| r.seq).collect::<Vec<_>>()
        }
    };
    assert_eq!(store.list_audit(&one, &AuditFilter::default(), &page(None, 0)).await.expect("all"), records);
    assert_eq!(list(AuditFilter::default(), None, 4).await, [1, 2, 3, 4]);
    assert_eq!(list(AuditFilter::default(), Some("4"), 4).await, [5, 6]);
    assert_eq!(list(AuditFilter::default(), Some("10"), 4).await, Vec::<i64>::new(), "numeric, not text, order");
    let logins = AuditFilter { action: Some("login".into()), ..AuditFilter::default() };
    assert_eq!(list(logins.clone(), None, 0).await, [1, 3, 5]);
    assert_eq!(list(logins, Some("1"), 1).await, [3]);
    let bob = AuditFilter { actor: Some("bob".into()), ..AuditFilter::default() };
    assert_eq!(list(bob, None, 0).await, [2, 4, 6]);
    let window = AuditFilter {
        from: Some(audit(&one, 2, "", "").ts),
        to: Some(audit(&one, 4, "", "").ts),
        ..AuditFilter::default()
    };
    assert_eq!(list(window, None, 0).await, [2, 3, 4]);
});

conformance!(an_audit_cursor_must_be_a_sequence_number, |store| {
    let one = chain("au-one", "inc-1");
    six_records(&*store, &one).await;
    let listed = store.list_audit(&one, &AuditFilter::default(), &page(Some("not-a-number"), 10)).await;
    assert!(matches!(listed, Err(StoreError::Backend(_))), "{listed:?}");
});

conformance!(two_incarnations_of_one_tenant_keep_separate_chains, |store| {
    let (old, new) = (chain("au-one", "inc-old"), chain("au-one", "inc-new"));
    let old_records = six_records(&*store, &old).await;
    assert_eq!(store.audit_head(&new).await.expect("head"), None, "the new incarnation starts empty");
    store.insert_audit(&audit(&new, 1, "tenant.create", "root")).await.expect("seq 1 again, in its own chain");
    store.insert_audit(&audit(&new, 2, "login", "root")).await.expect("seq 2");
    assert_eq!(store.audit_head(&old).await.expect("head").as_ref(), old_records.last());
    assert_eq!(store.audit_head(&new).await.expect("head").map(|r| (r.seq, r.action)), Some((2, "login".to_owned())));
    let listed = store.list_audit(&new, &AuditFilter::default(), &page(None, 0)).await.expect("list");
    assert_eq!(
        listed.iter().map(|r| (r.incarnation.as_str(), r.seq)).collect::<Vec<_>>(),
        [("inc-new", 1), ("inc-new", 2)]
    );
    assert_eq!(store.list_audit(&old, &AuditFilter::default(), &page(None, 0)).await.expect("list"), old_records);
    let logins = AuditFilter { action: Some("login".into()), ..AuditFilter::default() };
    assert_eq!(store.list_audit(&new, &logins, &page(None, 0)).await.expect("filtered").len(), 1);

    store.insert_audit_checkpoint(&checkpoint(&old, 2)).await.expect("old checkpoint");
    store.insert_audit_checkpoint(&checkpoint(&new, 2)).await.expect("same seq, other chain");
    assert_eq!(store.list_audit_checkpoints(&old).await.expect("old"), [checkpoint(&old, 2)]);
    assert_eq!(store.list_audit_checkpoints(&new).await.expect("new"), [checkpoint(&new, 2)]);
    let none = chain("au-one", "");
    assert_eq!(store.audit_head(&none).await.expect("legacy chain"), None);
});

conformance!(audit_chains_are_listed_distinct_and_ordered, |store| {
    assert!(store.list_audit_chains().await.expect("none").is_empty());
    for (tenant, incarnation) in [("au-two", "b"), ("au-one", "z"), ("au-one", ""), ("au-one", "a")] {
        let chain = chain(tenant, incarnation);
        store.insert_audit(&audit(&chain, 1, "login", "alice")).await.expect("1");
        store.insert_audit(&audit(&chain, 2, "login", "alice")).await.expect("2");
    }
    store.insert_audit_checkpoint(&checkpoint(&chain("au-three", "c"), 1)).await.expect("a checkpoint alone");
    let chains = store.list_audit_chains().await.expect("chains");
    let expected = [("au-one", ""), ("au-one", "a"), ("au-one", "z"), ("au-two", "b")].map(|(t, i)| chain(t, i));
    assert_eq!(chains, expected, "chains that have records, once each, ordered");
});

conformance!(checkpoints_are_listed_per_chain_by_seq, |store| {
    let one = chain("au-one", "inc-1");
    store.insert_audit_checkpoint(&checkpoint(&one, 4)).await.expect("4");
    store.insert_audit_checkpoint(&checkpoint(&one, 2)).await.expect("2");
    assert_conflict(store.insert_audit_checkpoint(&checkpoint(&one, 4)).await);
    store.insert_audit_checkpoint(&checkpoint(&chain("au-two", "inc-1"), 4)).await.expect("other tenant");
    assert_eq!(store.list_audit_checkpoints(&one).await.expect("list"), vec![checkpoint(&one, 2), checkpoint(&one, 4)]);
    assert!(store.list_audit_checkpoints(&chain("au-three", "inc-1")).await.expect("none").is_empty());
});

conformance!(the_group_scope_keeps_records_about_devices_in_scope_and_their_alarms, |store| {
    let t = "au-scope";
    for id in ["north", "south"] {
        store.create_group(&group(t, id, None)).await.expect("group");
        store.create_group(&group("au-other", id, None)).await.expect("other tenant's group");
    }
    for (id, group_id) in [("n1", Some("north")), ("s1", Some("south")), ("free", None)] {
        create_device(&*store, &device(t, id, group_id)).await;
    }
    // In another tenant, `s1` and `free` are in north: that must not widen this tenant's scope.
    create_device(&*store, &device("au-other", "s1", Some("north"))).await;
    create_device(&*store, &device("au-other", "free", Some("north"))).await;
    for (id, device_id) in [("alarm-n", "n1"), ("alarm-s", "s1"), ("alarm-free", "free")] {
        store.raise_alarm(&raise(t, device_id, id, id, Severity::Major, 1)).await.expect("alarm");
    }
    store.raise_alarm(&raise("au-other", "s1", "x", "alarm-other", Severity::Major, 1)).await.expect("alarm");

    let own = chain(t, "inc-1");
    let targets = [
        "device:n1",
        "device:s1",
        "device:free",
        "alarm:alarm-n",
        "alarm:alarm-s",
        "alarm:alarm-free",
        "alarm:alarm-other",
        "user:n1",
        "device:n1x",
        "group:north",
    ];
    for (index, target) in targets.iter().enumerate() {
        let action = if index % 2 == 0 { "even" } else { "odd" };
        let record = AuditRecord { target: (*target).into(), ..audit(&own, index as i64 + 1, action, "alice") };
        store.insert_audit(&record).await.expect("record");
    }
    let scoped = |groups: &[&str], action: Option<&str>| {
        let filter = AuditFilter {
            within_groups: Some(strings(groups)),
            action: action.map(Into::into),
            ..AuditFilter::default()
        };
        let (store, own) = (store.clone(), own.clone());
        async move {
            let records = store.list_audit(&own, &filter, &page(None, 0)).await.expect("list");
            records.into_iter().map(|r| r.target).collect::<Vec<_>>()
        }
    };
    assert_eq!(scoped(&["north"], None).await, ["device:n1", "alarm:alarm-n"]);
    assert_eq!(scoped(&["north", "south"], None).await, ["device:n1", "device:s1", "alarm:alarm-n", "alarm:alarm-s"]);
    assert_eq!(scoped(&["north", "south"], Some("even")).await, ["device:n1", "alarm:alarm-s"]);
    assert!(scoped(&[], None).await.is_empty(), "an empty scope matches nothing");
    assert!(scoped(&["elsewhere"], None).await.is_empty());
    let everything = store.list_audit(&own, &AuditFilter::default(), &page(None, 0)).await.expect("all");
    assert_eq!(everything.len(), targets.len(), "no scope, every record");
});

conformance!(audit_rows_are_append_only_in_the_storage_itself, |store, raw| {
    let one = chain("au-one", "inc-1");
    let records = six_records(&*store, &one).await;
    store.insert_audit_checkpoint(&checkpoint(&one, 2)).await.expect("checkpoint");
    store.insert_audit_checkpoint(&checkpoint(&one, 4)).await.expect("checkpoint");
    let mut refused = vec![
        "UPDATE audit_records SET action = 'nothing' WHERE tenant = 'au-one' AND seq = 2",
        "UPDATE audit_records SET incarnation = 'forged' WHERE tenant = 'au-one'",
        "DELETE FROM audit_records WHERE tenant = 'au-one' AND seq = 2",
        "DELETE FROM audit_records",
        "UPDATE audit_checkpoints SET hash = 'forged' WHERE tenant = 'au-one'",
        "DELETE FROM audit_checkpoints WHERE tenant = 'au-one'",
    ];
    if raw.backend() == "postgres" {
        refused.extend(["TRUNCATE audit_records", "TRUNCATE audit_checkpoints"]);
    }
    for sql in refused {
        let error = raw.execute(sql).await.expect_err(sql);
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(store.list_audit(&one, &AuditFilter::default(), &page(None, 0)).await.expect("list"), records);
    assert_eq!(store.list_audit_checkpoints(&one).await.expect("checkpoints").len(), 2);
    // Deleting the tenant does not reach the audit tables either.
    create_tenant(&*store, "au-one").await;
    store.delete_tenant("au-one").await.expect("delete tenant");
    assert_eq!(raw.count("audit_records WHERE tenant = 'au-one'").await, 6);
});
