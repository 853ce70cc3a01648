//! `SecurityStore`: security events listed newest first per tenant incarnation, with filters,
//! pages and the group scope.

use rampart_core::{SecurityEventType, Severity};
use rampart_store::prelude::*;
use rampart_store::{SecurityEvent, SecurityEventFilter};

use crate::support::*;

const T: &str = "se-one";
const INC: &str = "se-one-uid-1";

/// The ids of the events listed for (T, INC).
async fn ids(store: &dyn Store, filter: &SecurityEventFilter, after: Option<&str>, limit: u32) -> Vec<String> {
    let events = store.list_security_events(T, INC, filter, &page(after, limit)).await.expect("list");
    events.into_iter().map(|event| event.id).collect()
}

conformance!(security_events_round_trip_newest_first_in_pages, |store| {
    let full = SecurityEvent {
        event_type: SecurityEventType::Tamper,
        severity: Severity::Critical,
        source_ip: None,
        device: Some("dev".into()),
        user: Some("alice".into()),
        details_json: r#"{"sensor":"lid"}"#.into(),
        ..security_event(T, INC, 300, "cc")
    };
    for event in [security_event(T, INC, 100, "aa"), full.clone(), security_event(T, INC, 200, "bb")] {
        store.insert_security_event(&event).await.expect("insert");
    }
    assert_conflict(store.insert_security_event(&security_event(T, INC, 100, "aa")).await);
    let listed = store.list_security_events(T, INC, &SecurityEventFilter::default(), &page(None, 0)).await;
    let listed = listed.expect("list");
    assert_eq!(listed[0], full, "every column round-trips");
    let all = ids(&*store, &SecurityEventFilter::default(), None, 0).await;
    assert_eq!(all, [full.id.clone(), security_event(T, INC, 200, "bb").id, security_event(T, INC, 100, "aa").id]);
    assert_eq!(ids(&*store, &SecurityEventFilter::default(), None, 2).await, all[..2]);
    assert_eq!(ids(&*store, &SecurityEventFilter::default(), Some(&all[1]), 2).await, all[2..]);
    assert!(ids(&*store, &SecurityEventFilter::default(), Some(&all[2]), 2).await.is_empty());
});

conformance!(security_events_are_filtered_by_type_severity_time_and_device, |store| {
    let events = [
        SecurityEvent { device: Some("d1".into()), ..security_event(T, INC, 100, "a") },
        SecurityEvent { severity: Severity::Major, device: Some("d2".into()), ..security_event(T, INC, 200, "b") },
        SecurityEvent { event_type: SecurityEventType::AclViolation, ..security_event(T, INC, 300, "c") },
        SecurityEvent {
            event_type: SecurityEventType::AclViolation,
            severity: Severity::Major,
            device: Some("d1".into()),
            ..security_event(T, INC, 400, "d")
        },
    ];
    for event in &events {
        store.insert_security_event(event).await.expect("insert");
    }
    let id = |index: usize| events[index].id.clone();
    let acl = SecurityEventFilter { event_type: Some(SecurityEventType::AclViolation), ..Default::default() };
    assert_eq!(ids(&*store, &acl, None, 0).await, [id(3), id(2)]);
    let major = SecurityEventFilter { severity: Some(Severity::Major), ..Default::default() };
    assert_eq!(ids(&*store, &major, None, 0).await, [id(3), id(1)]);
    let since = SecurityEventFilter { since: Some(200), ..Default::default() };
    assert_eq!(ids(&*store, &since, None, 0).await, [id(3), id(2), id(1)]);
    let d1 = SecurityEventFilter { device: Some("d1".into()), ..Default::default() };
    assert_eq!(ids(&*store, &d1, None, 0).await, [id(3), id(0)]);
    let all_of_them = SecurityEventFilter {
        event_type: Some(SecurityEventType::AclViolation),
        severity: Some(Severity::Major),
        since: Some(400),
        device: Some("d1".into()),
        within_groups: None,
    };
    assert_eq!(ids(&*store, &all_of_them, None, 0).await, [id(3)]);
});

conformance!(security_events_are_kept_per_tenant_incarnation, |store| {
    store.insert_security_event(&security_event(T, INC, 100, "old")).await.expect("old incarnation");
    store.insert_security_event(&security_event(T, "se-one-uid-2", 200, "new")).await.expect("new incarnation");
    store.insert_security_event(&security_event("se-two", INC, 300, "other")).await.expect("other tenant");
    let listed = |tenant: &'static str, incarnation: &'static str| {
        let store = store.clone();
        async move {
            let events = store.list_security_events(tenant, incarnation, &Default::default(), &page(None, 0)).await;
            events.expect("list").into_iter().map(|e| e.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(T, INC).await, [security_event(T, INC, 100, "old").id]);
    assert_eq!(listed(T, "se-one-uid-2").await, [security_event(T, INC, 200, "new").id]);
    assert_eq!(listed("se-two", INC).await, [security_event(T, INC, 300, "other").id]);
    assert!(listed(T, "").await.is_empty());
});

conformance!(the_group_scope_keeps_events_about_devices_in_scope, |store| {
    for id in ["north", "south"] {
        store.create_group(&group(T, id, None)).await.expect("group");
    }
    store.create_group(&group("se-two", "north", None)).await.expect("other tenant's group");
    for (id, group_id) in [("n1", Some("north")), ("s1", Some("south")), ("free", None)] {
        create_device(&*store, &device(T, id, group_id)).await;
    }
    create_device(&*store, &device("se-two", "free", Some("north"))).await;
    let events: Vec<SecurityEvent> = [Some("n1"), Some("s1"), Some("free"), None, Some("ghost")]
        .into_iter()
        .enumerate()
        .map(|(index, device)| SecurityEvent {
            device: device.map(Into::into),
            ..security_event(T, INC, 100 * (index as i64 + 1), "x")
        })
        .collect();
    for event in &events {
        store.insert_security_event(event).await.expect("insert");
    }
    let scoped = |groups: &[&str]| SecurityEventFilter { within_groups: Some(strings(groups)), ..Default::default() };
    let id = |index: usize| events[index].id.clone();
    assert_eq!(ids(&*store, &scoped(&["north"]), None, 0).await, [id(0)]);
    assert_eq!(ids(&*store, &scoped(&["north", "south"]), None, 0).await, [id(1), id(0)]);
    assert!(ids(&*store, &scoped(&[]), None, 0).await.is_empty(), "an empty scope matches nothing");
    let unscoped = ids(&*store, &SecurityEventFilter::default(), None, 0).await;
    assert_eq!(unscoped.len(), 5);
});
