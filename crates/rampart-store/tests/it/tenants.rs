//! `TenantStore`: platform secrets, tenants and their incarnations, policy documents (the
//! tenant policy's compare-and-set, topic policies), tenant keys, and tenant deletion through
//! the owned-table registry.

use rampart_store::owned_tables::OWNED_TABLES;
use rampart_store::prelude::*;
use rampart_store::{AuditFilter, DeviceFilter, Page, Tenant};

use crate::support::*;

conformance!(platform_secrets_first_writer_wins_and_are_replaced_in_place, |store| {
    assert_eq!(store.get_platform_secret("audit-signing-key").await.expect("get"), None);
    assert_eq!(store.put_platform_secret_if_absent("audit-signing-key", b"first").await.expect("put"), b"first");
    assert_eq!(store.put_platform_secret_if_absent("audit-signing-key", b"second").await.expect("put"), b"first");
    assert_eq!(store.get_platform_secret("audit-signing-key").await.expect("get").as_deref(), Some(&b"first"[..]));
    store.put_platform_secret_if_absent("api-token-key", b"other").await.expect("put");

    store.replace_platform_secret("audit-signing-key", b"rewrapped").await.expect("replace");
    assert_not_found(store.replace_platform_secret("missing", b"x").await);
    assert_eq!(store.get_platform_secret("missing").await.expect("get"), None, "replace never inserts");
    let all = store.list_platform_secrets().await.expect("list");
    assert_eq!(
        all,
        vec![("api-token-key".to_owned(), b"other".to_vec()), ("audit-signing-key".to_owned(), b"rewrapped".to_vec())]
    );
});

conformance!(concurrent_first_platform_secrets_all_answer_the_one_stored, |store| {
    let answers = concurrently(10, |index| {
        let store = store.clone();
        async move { store.put_platform_secret_if_absent("node-key", format!("candidate {index}").as_bytes()).await }
    })
    .await;
    let stored = store.get_platform_secret("node-key").await.expect("get").expect("stored");
    for answer in answers {
        assert_eq!(answer.expect("put"), stored, "every writer learns the value that won");
    }
});

conformance!(tenants_are_created_once_and_read_back_with_their_uid, |store| {
    let root = tenant("tn-root");
    store.create_tenant(&root).await.expect("create");
    let again = Tenant { uid: "another-uid".into(), ..root.clone() };
    assert_conflict(store.create_tenant(&again).await);
    assert_eq!(store.get_tenant("tn-root").await.expect("get"), root);
    assert_not_found(store.get_tenant("tn-missing").await);
    let legacy = Tenant { uid: String::new(), ..tenant("tn-legacy") };
    store.create_tenant(&legacy).await.expect("a tenant without uid (made before incarnations)");
    assert_eq!(store.get_tenant("tn-legacy").await.expect("get").uid, "");
});

conformance!(a_tenant_needs_an_existing_parent, |store| {
    assert!(store.create_tenant(&child_tenant("tn-orphan", "tn-nowhere")).await.is_err());
    assert_not_found(store.get_tenant("tn-orphan").await);
    create_tenant(&*store, "tn-parent").await;
    store.create_tenant(&child_tenant("tn-child", "tn-parent")).await.expect("child");
    assert_eq!(store.get_tenant("tn-child").await.expect("get").parent.as_deref(), Some("tn-parent"));
});

conformance!(child_tenants_are_listed_by_id_in_pages, |store| {
    create_tenant(&*store, "tn-root").await;
    for id in ["tn-c", "tn-a", "tn-e", "tn-b", "tn-d"] {
        store.create_tenant(&child_tenant(id, "tn-root")).await.expect("child");
    }
    store.create_tenant(&child_tenant("tn-grandchild", "tn-a")).await.expect("grandchild");
    let ids = |tenants: Vec<Tenant>| tenants.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_child_tenants("tn-root", &page(None, 2)).await.expect("page 1")), ["tn-a", "tn-b"]);
    assert_eq!(
        ids(store.list_child_tenants("tn-root", &page(Some("tn-b"), 2)).await.expect("page 2")),
        ["tn-c", "tn-d"]
    );
    assert_eq!(ids(store.list_child_tenants("tn-root", &page(Some("tn-d"), 2)).await.expect("page 3")), ["tn-e"]);
    assert_eq!(ids(store.list_child_tenants("tn-a", &page(None, 10)).await.expect("a")), ["tn-grandchild"]);
    assert!(store.list_child_tenants("tn-e", &page(None, 10)).await.expect("e").is_empty());
    assert_eq!(
        store.list_child_tenants("tn-root", &Page::default()).await.expect("all").len(),
        5,
        "limit 0 = no limit"
    );
});

conformance!(all_tenants_are_listed_in_id_order, |store| {
    for id in ["tn-m", "tn-b", "tn-z"] {
        create_tenant(&*store, id).await;
    }
    store.create_tenant(&child_tenant("tn-a", "tn-z")).await.expect("child");
    let all: Vec<String> = store.list_all_tenants().await.expect("list").into_iter().map(|t| t.id).collect();
    assert_eq!(all, ["tn-a", "tn-b", "tn-m", "tn-z"]);
});

conformance!(a_tenant_with_sub_tenants_is_not_deleted, |store| {
    create_tenant(&*store, "tn-parent").await;
    store.create_tenant(&child_tenant("tn-child", "tn-parent")).await.expect("child");
    assert_conflict(store.delete_tenant("tn-parent").await);
    store.get_tenant("tn-parent").await.expect("still there");
    store.delete_tenant("tn-child").await.expect("leaf goes");
    store.delete_tenant("tn-parent").await.expect("then the parent");
    assert_not_found(store.delete_tenant("tn-parent").await);
    assert_not_found(store.delete_tenant("tn-missing").await);
});

conformance!(a_deleted_tenant_id_comes_back_as_a_new_incarnation, |store| {
    populate_every_owned_table(&*store, "tn-reused", "dev").await;
    store.delete_tenant("tn-reused").await.expect("delete");
    let reborn = Tenant { uid: "tn-reused-uid-2".into(), ..tenant("tn-reused") };
    store.create_tenant(&reborn).await.expect("the id is free again");
    assert_eq!(store.get_tenant("tn-reused").await.expect("get"), reborn);
    // Nothing of the earlier incarnation reaches the new one.
    assert!(store.list_users("tn-reused", &page(None, 0)).await.expect("users").is_empty());
    assert!(
        store.list_devices("tn-reused", &DeviceFilter::default(), &page(None, 0)).await.expect("devices").is_empty()
    );
    assert_eq!(store.get_tenant_policy("tn-reused").await.expect("policy"), None);
    let events = store
        .list_security_events("tn-reused", &reborn.uid, &Default::default(), &page(None, 0))
        .await
        .expect("events");
    assert!(events.is_empty());
    let new_chain = chain("tn-reused", &reborn.uid);
    assert_eq!(store.audit_head(&new_chain).await.expect("head"), None, "the new incarnation starts its own chain");
});

conformance!(the_tenant_policy_is_compare_and_set, |store| {
    create_tenant(&*store, "tn-a").await;
    create_tenant(&*store, "tn-b").await;
    assert_eq!(store.get_tenant_policy("tn-a").await.expect("get"), None);
    assert_conflict(store.put_tenant_policy("tn-a", Some("{}"), r#"{"v":1}"#).await);
    assert_eq!(store.get_tenant_policy("tn-a").await.expect("get"), None, "a failed CAS stores nothing");
    store.put_tenant_policy("tn-a", None, r#"{"v":1}"#).await.expect("first");
    assert_conflict(store.put_tenant_policy("tn-a", None, r#"{"v":2}"#).await);
    assert_conflict(store.put_tenant_policy("tn-a", Some(r#"{"v":0}"#), r#"{"v":2}"#).await);
    assert_eq!(store.get_tenant_policy("tn-a").await.expect("get").as_deref(), Some(r#"{"v":1}"#));
    store.put_tenant_policy("tn-a", Some(r#"{"v":1}"#), r#"{"v":2}"#).await.expect("second");
    assert_eq!(store.get_tenant_policy("tn-a").await.expect("get").as_deref(), Some(r#"{"v":2}"#));
    assert_eq!(store.get_tenant_policy("tn-b").await.expect("get"), None, "per tenant");
    assert_conflict(store.put_tenant_policy("tn-b", Some(r#"{"v":2}"#), r#"{"v":3}"#).await);
});

conformance!(concurrent_tenant_policy_writers_from_one_version_let_exactly_one_win, |store| {
    create_tenant(&*store, "tn-a").await;
    store.put_tenant_policy("tn-a", None, "v0").await.expect("v0");
    let answers = concurrently(10, |index| {
        let store = store.clone();
        async move { store.put_tenant_policy("tn-a", Some("v0"), &format!("v1-{index}")).await }
    })
    .await;
    let won = answers.iter().filter(|answer| answer.is_ok()).count();
    assert_eq!(won, 1, "{answers:?}");
    assert!(
        answers
            .into_iter()
            .filter_map(Result::err)
            .all(|error| matches!(error, rampart_store::StoreError::Conflict(_)))
    );
    let stored = store.get_tenant_policy("tn-a").await.expect("get").expect("stored");
    assert!(stored.starts_with("v1-"), "{stored}");
});

conformance!(topic_policies_are_per_tenant_and_replaced_whole, |store| {
    for id in ["acme", "globex"] {
        create_tenant(&*store, id).await;
    }
    assert_eq!(store.get_topic_policy("acme").await.expect("get"), None);
    store.put_topic_policy("acme", r#"{"rules":[]}"#).await.expect("put");
    store.put_topic_policy("acme", r#"{"free_namespace":{"devices":true}}"#).await.expect("replace");
    assert_eq!(
        store.get_topic_policy("acme").await.expect("get").as_deref(),
        Some(r#"{"free_namespace":{"devices":true}}"#)
    );
    assert_eq!(store.get_topic_policy("globex").await.expect("get"), None);
});

conformance!(a_topic_policy_goes_with_its_tenant, |store| {
    for id in ["acme", "globex"] {
        create_tenant(&*store, id).await;
        store.put_topic_policy(id, &format!(r#"{{"of":"{id}"}}"#)).await.expect("put");
    }
    store.delete_tenant("acme").await.expect("delete tenant");
    assert_eq!(store.get_topic_policy("acme").await.expect("get"), None);
    assert_eq!(store.get_topic_policy("globex").await.expect("get").as_deref(), Some(r#"{"of":"globex"}"#));
});

conformance!(tenant_keys_are_listed_newest_first_and_rewrapped, |store| {
    store.insert_tenant_key(&tenant_key("tk-one", "k1", 100)).await.expect("k1");
    store.insert_tenant_key(&tenant_key("tk-one", "k2", 200)).await.expect("k2");
    store.insert_tenant_key(&tenant_key("tk-one", "k0", 200)).await.expect("k0, same time as k2");
    assert_conflict(store.insert_tenant_key(&tenant_key("tk-one", "k1", 300)).await);
    store.insert_tenant_key(&tenant_key("tk-two", "k1", 100)).await.expect("same key id, other tenant");
    let keys = store.list_tenant_keys("tk-one").await.expect("list");
    let order: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(order, ["k2", "k0", "k1"], "newest first, then key id descending");
    assert!(store.list_tenant_keys("tk-three").await.expect("list").is_empty());

    store.rewrap_tenant_key("tk-one", "k1", b"rewrapped").await.expect("rewrap");
    let keys = store.list_tenant_keys("tk-one").await.expect("list");
    assert_eq!((keys[2].wrapped.as_slice(), keys[2].created_at), (&b"rewrapped"[..], 100));
    assert_eq!(store.list_tenant_keys("tk-two").await.expect("list")[0].wrapped, b"k1", "other tenant untouched");
    assert_not_found(store.rewrap_tenant_key("tk-three", "k1", b"x").await);
    assert_not_found(store.rewrap_tenant_key("tk-one", "k9", b"x").await);
});

/// The tables of the schema that have a `tenant` column.
async fn tables_with_a_tenant_column(store: &dyn Store) -> Vec<String> {
    let schema = store.describe_schema().await.expect("describe schema");
    schema.into_iter().filter(|(_, columns)| columns.iter().any(|c| c == "tenant")).map(|(table, _)| table).collect()
}

conformance!(deleting_a_tenant_empties_every_owned_table_and_nothing_else, |store, raw| {
    populate_every_owned_table(&*store, "gone", "dev").await;
    populate_every_owned_table(&*store, "kept", "dev").await;
    let tables = tables_with_a_tenant_column(&*store).await;
    for owned in OWNED_TABLES {
        assert!(tables.iter().any(|t| t == owned.table), "{} has a tenant column", owned.table);
        for id in ["gone", "kept"] {
            let rows = raw.count(&format!("{} WHERE tenant = '{id}'", owned.table)).await;
            assert!(rows > 0, "the fixture gives {id} a row in {} (extend populate_every_owned_table)", owned.table);
        }
    }
    let mut before = Vec::new();
    for table in &tables {
        let gone = raw.count(&format!("{table} WHERE tenant = 'gone'")).await;
        let kept = raw.count(&format!("{table} WHERE tenant = 'kept'")).await;
        before.push((table.clone(), gone, kept));
    }

    store.delete_tenant("gone").await.expect("delete tenant");

    for (table, gone_before, kept_before) in before {
        let gone = raw.count(&format!("{table} WHERE tenant = 'gone'")).await;
        let kept = raw.count(&format!("{table} WHERE tenant = 'kept'")).await;
        match OWNED_TABLES.iter().any(|owned| owned.table == table) {
            true => assert_eq!(gone, 0, "{table}: rows of the deleted tenant remain"),
            false => assert_eq!(gone, gone_before, "{table} is not owned: its rows stay"),
        }
        assert_eq!(kept, kept_before, "{table}: the other tenant's rows changed");
    }
    assert_eq!(raw.count("tenants WHERE id = 'gone'").await, 0);
    assert_eq!(raw.count("tenants WHERE id = 'kept'").await, 1);
});

conformance!(a_deleted_tenant_keeps_its_audit_chain, |store| {
    populate_every_owned_table(&*store, "gone", "dev").await;
    let gone_chain = chain("gone", &tenant("gone").uid);
    let head = store.audit_head(&gone_chain).await.expect("head").expect("a record");
    store.delete_tenant("gone").await.expect("delete tenant");
    assert_eq!(store.audit_head(&gone_chain).await.expect("head"), Some(head));
    assert_eq!(store.list_audit(&gone_chain, &AuditFilter::default(), &page(None, 0)).await.expect("list").len(), 1);
    assert_eq!(store.list_audit_checkpoints(&gone_chain).await.expect("checkpoints").len(), 1);
    assert!(store.list_audit_chains().await.expect("chains").contains(&gone_chain));
});

conformance!(a_deleted_tenant_answers_nothing_through_the_api, |store| {
    populate_every_owned_table(&*store, "gone", "dev").await;
    populate_every_owned_table(&*store, "kept", "dev").await;
    equip(&*store, "bystander", "dev").await;
    store.delete_tenant("gone").await.expect("delete tenant");

    let gone = "gone";
    assert_not_found(store.get_tenant(gone).await);
    assert_eq!(store.get_tenant_policy(gone).await.expect("policy"), None);
    assert_eq!(store.get_topic_policy(gone).await.expect("topic policy"), None);
    assert!(store.list_tenant_keys(gone).await.expect("keys").is_empty());
    assert!(store.list_users(gone, &page(None, 0)).await.expect("users").is_empty());
    assert!(store.list_roles(gone).await.expect("roles").is_empty());
    assert!(store.list_groups(gone).await.expect("groups").is_empty());
    assert!(store.list_api_keys(gone).await.expect("api keys").is_empty());
    assert_not_found(store.get_api_key("gone-key").await);
    assert!(store.list_devices(gone, &DeviceFilter::default(), &page(None, 0)).await.expect("devices").is_empty());
    assert_not_found(store.get_device_key(gone, "dev").await);
    assert!(store.list_device_tokens(gone, "dev").await.expect("tokens").is_empty());
    assert!(store.list_device_certificates(gone, "dev").await.expect("certificates").is_empty());
    assert_not_found(store.get_tenant_ca(gone).await);
    assert!(store.list_trusted_cas(gone).await.expect("trusted").is_empty());
    assert!(!store.consume_registration_code(gone, "gone-code", 2).await.expect("code"));
    assert!(store.list_retained_messages(gone).await.expect("retained").is_empty());
    assert!(store.list_telemetry(gone, "dev", &everything()).await.expect("telemetry").is_empty());
    assert_not_found(store.get_alarm(gone, "gone-alarm").await);
    assert!(store.get_twin_reported(gone, "dev").await.expect("twin").is_none());
    let events = store.list_security_events(gone, &tenant(gone).uid, &Default::default(), &page(None, 0)).await;
    assert!(events.expect("events").is_empty());

    // The sibling and a device of the same id elsewhere are untouched.
    assert_equipped(&*store, "bystander", "dev").await;
    store.get_tenant("kept").await.expect("kept tenant");
    assert_eq!(store.list_groups("kept").await.expect("groups").len(), 2);
    store.get_api_key("kept-key").await.expect("kept key");
    assert_eq!(store.list_retained_messages("kept").await.expect("retained").len(), 1);
    assert!(store.consume_registration_code("kept", "kept-code", 2).await.expect("kept code"));
});
