//! `PeopleStore`: users (partial, uid-keyed, conditional edits; deletion with their API keys),
//! login counters and TOTP steps under concurrency, MFA enrolment, roles, device groups and
//! API keys.

use rampart_store::{ApiKey, LoginGate, User, UserChanges};

use crate::support::*;

const T: &str = "us-one";
const MAX: i64 = 5;
const WINDOW: i64 = 60_000;

conformance!(users_are_per_tenant_and_every_column_round_trips, |store| {
    let alice = User {
        roles: strings(&["admin", "custom-role"]),
        groups: strings(&["g1", "g2"]),
        disabled: true,
        token_version: 7,
        mfa_enabled: true,
        mfa_secret_sealed: Some(vec![1, 2, 3]),
        mfa_pending_sealed: Some(vec![]),
        mfa_last_step: 55_555_555,
        email_sealed: Some(vec![9; 40]),
        failed_logins: 3,
        failed_window_start: 12_345,
        locked_until: 99_999,
        password_changed_at: 5_000,
        ..user(T, "alice")
    };
    store.create_user(&alice).await.expect("create");
    assert_conflict(store.create_user(&user(T, "alice")).await);
    assert_eq!(store.get_user(T, "alice").await.expect("get"), alice);
    assert_not_found(store.get_user("us-two", "alice").await);
    let other_alice = User { roles: strings(&["viewer"]), ..user("us-two", "alice") };
    store.create_user(&other_alice).await.expect("same name, other tenant");
    assert_eq!(store.get_user("us-two", "alice").await.expect("get"), other_alice);
    assert_eq!(store.get_user(T, "alice").await.expect("get"), alice, "first tenant untouched");
});

conformance!(users_are_listed_by_username_in_pages, |store| {
    for name in ["dave", "bob", "alice", "carol", "erin"] {
        create_user(&*store, T, name).await;
    }
    create_user(&*store, "us-two", "zed").await;
    let names = |users: Vec<User>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(names(store.list_users(T, &page(None, 3)).await.expect("page 1")), ["alice", "bob", "carol"]);
    assert_eq!(names(store.list_users(T, &page(Some("carol"), 3)).await.expect("page 2")), ["dave", "erin"]);
    assert!(store.list_users(T, &page(Some("erin"), 3)).await.expect("page 3").is_empty());
    assert_eq!(store.list_users(T, &page(None, 0)).await.expect("all").len(), 5);
    assert_eq!(names(store.list_users("us-two", &page(None, 0)).await.expect("other")), ["zed"]);
});

conformance!(update_user_changes_only_the_named_columns, |store| {
    let base = User {
        email_sealed: Some(b"mail".to_vec()),
        mfa_pending_sealed: Some(b"pending".to_vec()),
        failed_logins: 2,
        failed_window_start: 500,
        ..user(T, "alice")
    };
    store.create_user(&base).await.expect("create");
    let uid = base.uid.as_str();
    let mut expected = base.clone();

    let changes = UserChanges { roles: Some(strings(&["admin"])), ..Default::default() };
    expected.roles = strings(&["admin"]);
    assert_eq!(store.update_user(T, "alice", uid, &changes).await.expect("roles"), expected);

    let changes = UserChanges { groups: Some(strings(&["north"])), disabled: Some(true), ..Default::default() };
    expected.groups = strings(&["north"]);
    expected.disabled = true;
    assert_eq!(store.update_user(T, "alice", uid, &changes).await.expect("groups, disabled"), expected);

    let changes = UserChanges { email_sealed: Some(None), mfa_pending_sealed: Some(None), ..Default::default() };
    expected.email_sealed = None;
    expected.mfa_pending_sealed = None;
    assert_eq!(store.update_user(T, "alice", uid, &changes).await.expect("clear blobs"), expected);

    let changes = UserChanges {
        email_sealed: Some(Some(b"new".to_vec())),
        mfa_pending_sealed: Some(Some(b"p2".to_vec())),
        ..Default::default()
    };
    expected.email_sealed = Some(b"new".to_vec());
    expected.mfa_pending_sealed = Some(b"p2".to_vec());
    assert_eq!(store.update_user(T, "alice", uid, &changes).await.expect("set blobs"), expected);

    assert_eq!(store.update_user(T, "alice", uid, &UserChanges::default()).await.expect("no change"), expected);
    assert_eq!(store.get_user(T, "alice").await.expect("get"), expected, "login counters and the rest untouched");
});

conformance!(update_user_sets_a_password_and_lifts_a_lockout, |store| {
    let locked = User { failed_logins: 4, failed_window_start: 500, locked_until: 9_999_999, ..user(T, "alice") };
    store.create_user(&locked).await.expect("create");
    let changes = UserChanges { password: Some(("$argon2id$new".into(), 7_000)), ..Default::default() };
    let after = store.update_user(T, "alice", &locked.uid, &changes).await.expect("password");
    assert_eq!(
        (
            after.password_hash.as_str(),
            after.password_changed_at,
            after.failed_logins,
            after.failed_window_start,
            after.locked_until
        ),
        ("$argon2id$new", 7_000, 0, 0, 0)
    );
    assert_eq!(after.token_version, locked.token_version, "only revoke_tokens bumps the version");
});

conformance!(update_user_is_keyed_by_the_incarnation, |store| {
    let first = create_user(&*store, T, "alice").await;
    store.delete_user(T, "alice", &first.uid).await.expect("delete");
    let second = User { uid: "alice-uid-2".into(), ..user(T, "alice") };
    store.create_user(&second).await.expect("re-create");
    let changes = UserChanges { roles: Some(strings(&["admin"])), revoke_tokens: true, ..Default::default() };
    assert_not_found(store.update_user(T, "alice", &first.uid, &changes).await);
    assert_not_found(store.update_user(T, "alice", &first.uid, &UserChanges::default()).await);
    assert_eq!(store.get_user(T, "alice").await.expect("get"), second, "the new incarnation is untouched");
    assert_not_found(store.update_user(T, "nobody", "x", &changes).await);
    assert_not_found(store.update_user("us-three", "alice", &second.uid, &changes).await);
});

conformance!(update_user_with_a_stale_password_hash_conflicts, |store| {
    let alice = create_user(&*store, T, "alice").await;
    let changes = UserChanges {
        password: Some(("$argon2id$mine".into(), 9_000)),
        revoke_tokens: true,
        expect_password_hash: Some("$argon2id$someone-else-changed-it".into()),
        ..Default::default()
    };
    assert_conflict(store.update_user(T, "alice", &alice.uid, &changes).await);
    assert_eq!(store.get_user(T, "alice").await.expect("get"), alice, "nothing changed");
    let changes = UserChanges { expect_password_hash: Some(alice.password_hash.clone()), ..changes };
    let after = store.update_user(T, "alice", &alice.uid, &changes).await.expect("matching hash");
    assert_eq!((after.password_hash.as_str(), after.token_version), ("$argon2id$mine", alice.token_version + 1));
});

conformance!(
    /// An edit that names no column but expects a password hash is still checked.
    update_user_checks_the_expected_hash_even_without_changes,
    |store| {
        let alice = create_user(&*store, T, "alice").await;
        let changes = UserChanges { expect_password_hash: Some("$argon2id$stale".into()), ..Default::default() };
        assert_conflict(store.update_user(T, "alice", &alice.uid, &changes).await);
    }
);

conformance!(revoke_tokens_bumps_the_token_version_in_sql, |store| {
    let alice = create_user(&*store, T, "alice").await;
    let answers =
        concurrently(10, |_| {
            let (store, uid) = (store.clone(), alice.uid.clone());
            async move {
                store.update_user(T, "alice", &uid, &UserChanges { revoke_tokens: true, ..Default::default() }).await
            }
        })
        .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(store.get_user(T, "alice").await.expect("get").token_version, alice.token_version + 10, "no bump lost");
});

conformance!(delete_user_deletes_the_api_keys_of_that_incarnation_only, |store| {
    let alice = create_user(&*store, T, "alice").await;
    let bob = create_user(&*store, T, "bob").await;
    for (id, owner, uid) in [
        ("key-a2", "alice", alice.uid.as_str()),
        ("key-a1", "alice", alice.uid.as_str()),
        ("key-old", "alice", "alice-uid-0"),
        ("key-b", "bob", bob.uid.as_str()),
    ] {
        store.create_api_key(&api_key(T, id, owner, uid)).await.expect("key");
    }
    store.create_api_key(&api_key("us-two", "key-elsewhere", "alice", &alice.uid)).await.expect("other tenant");

    let deleted = store.delete_user(T, "alice", &alice.uid).await.expect("delete");
    assert_eq!(deleted, ["key-a1", "key-a2"], "the ids of the keys deleted, ordered");
    assert_not_found(store.get_user(T, "alice").await);
    assert_not_found(store.get_api_key("key-a1").await);
    assert_not_found(store.get_api_key("key-a2").await);
    for kept in ["key-old", "key-b", "key-elsewhere"] {
        store.get_api_key(kept).await.unwrap_or_else(|error| panic!("{kept} must stay: {error}"));
    }
    assert_eq!(store.get_user(T, "bob").await.expect("bob"), bob);
    assert_eq!(store.delete_user(T, "bob", &bob.uid).await.expect("bob"), ["key-b"]);
});

conformance!(
    /// Every key `delete_user` deletes is answered, also while keys are being created for
    /// that user (the caller forgets and audits exactly those).
    delete_user_answers_every_key_it_deleted_even_under_concurrent_creation,
    |store| {
        for round in 0..20 {
            let alice = User { uid: format!("alice-uid-{round}"), ..user(T, "alice") };
            store.create_user(&alice).await.expect("create");
            let creator = {
                let (store, uid) = (store.clone(), alice.uid.clone());
                tokio::spawn(async move {
                    let mut created = Vec::new();
                    for index in 0..60 {
                        let id = format!("key-{round}-{index:02}");
                        store.create_api_key(&api_key(T, &id, "alice", &uid)).await.expect("key");
                        created.push(id);
                        tokio::task::yield_now().await;
                    }
                    created
                })
            };
            tokio::task::yield_now().await;
            let answered = store.delete_user(T, "alice", &alice.uid).await.expect("delete");
            let created = creator.await.expect("creator");
            let mut silently_deleted = Vec::new();
            for id in &created {
                let gone = matches!(store.get_api_key(id).await, Err(rampart_store::StoreError::NotFound));
                if gone && !answered.contains(id) {
                    silently_deleted.push(id.clone());
                }
            }
            assert!(silently_deleted.is_empty(), "round {round}: deleted but not answered: {silently_deleted:?}");
        }
    }
);

conformance!(delete_user_of_another_incarnation_is_not_found_and_deletes_nothing, |store| {
    let alice = create_user(&*store, T, "alice").await;
    store.create_api_key(&api_key(T, "key-ghost", "alice", "alice-uid-0")).await.expect("key of an older alice");
    store.create_api_key(&api_key(T, "key-live", "alice", &alice.uid)).await.expect("key");
    assert_not_found(store.delete_user(T, "alice", "alice-uid-0").await);
    store.get_api_key("key-ghost").await.expect("rolled back with the failed delete");
    store.get_api_key("key-live").await.expect("untouched");
    assert_eq!(store.get_user(T, "alice").await.expect("alice"), alice);
    assert_not_found(store.delete_user("us-three", "alice", &alice.uid).await);
    assert!(store.delete_user(T, "alice", &alice.uid).await.expect("delete").contains(&"key-live".to_owned()));
    assert_not_found(store.delete_user(T, "alice", &alice.uid).await);
});

conformance!(concurrent_login_attempts_open_exactly_max_attempts, |store| {
    create_user(&*store, T, "alice").await;
    let gates = concurrently(40, |_| {
        let store = store.clone();
        async move { store.begin_login_attempt(T, "alice", 1_000_000, WINDOW, MAX).await.expect("attempt") }
    })
    .await;
    assert_eq!(gates.iter().filter(|gate| **gate == LoginGate::Open).count(), MAX as usize, "{gates:?}");
    let alice = store.get_user(T, "alice").await.expect("get");
    assert_eq!((alice.failed_logins, alice.failed_window_start), (MAX, 1_000_000));
});

conformance!(an_unknown_user_gets_a_closed_gate, |store| {
    create_user(&*store, T, "alice").await;
    assert_eq!(store.begin_login_attempt(T, "nobody", 1_000, WINDOW, MAX).await.expect("attempt"), LoginGate::Closed);
    assert_eq!(
        store.begin_login_attempt("us-two", "alice", 1_000, WINDOW, MAX).await.expect("attempt"),
        LoginGate::Closed
    );
});

conformance!(an_expired_login_window_starts_counting_over, |store| {
    create_user(&*store, T, "alice").await;
    let start = 1_000_000;
    for _ in 0..MAX {
        assert_eq!(store.begin_login_attempt(T, "alice", start, WINDOW, MAX).await.expect("attempt"), LoginGate::Open);
    }
    let attempt = |now| {
        let store = store.clone();
        async move { store.begin_login_attempt(T, "alice", now, WINDOW, MAX).await.expect("attempt") }
    };
    assert_eq!(attempt(start + WINDOW).await, LoginGate::Closed, "the window's last millisecond still counts");
    assert_eq!(attempt(start + WINDOW + 1).await, LoginGate::Open, "a new window");
    let alice = store.get_user(T, "alice").await.expect("get");
    assert_eq!((alice.failed_logins, alice.failed_window_start), (1, start + WINDOW + 1));
    for _ in 1..MAX {
        assert_eq!(attempt(start + WINDOW + 2).await, LoginGate::Open);
    }
    assert_eq!(attempt(start + WINDOW + 3).await, LoginGate::Closed);
});

conformance!(login_failed_locks_at_the_max_and_says_so_once, |store| {
    create_user(&*store, T, "alice").await;
    for attempt in 1..=MAX {
        assert_eq!(store.begin_login_attempt(T, "alice", 1_000, WINDOW, MAX).await.expect("attempt"), LoginGate::Open);
        let locked = store.login_failed(T, "alice", MAX, 500_000).await.expect("failed");
        assert_eq!(locked, attempt == MAX, "attempt {attempt}");
    }
    assert!(!store.login_failed(T, "alice", MAX, 500_000).await.expect("again"), "already locked");
    let alice = store.get_user(T, "alice").await.expect("get");
    assert_eq!((alice.locked_until, alice.failed_logins, alice.failed_window_start), (500_000, 0, 0));
    assert!(!store.login_failed(T, "nobody", MAX, 500_000).await.expect("unknown user"));
});

conformance!(a_locked_user_gets_a_closed_gate_until_the_lock_ends, |store| {
    create_user(&*store, T, "alice").await;
    for _ in 0..MAX {
        store.begin_login_attempt(T, "alice", 1_000, WINDOW, MAX).await.expect("attempt");
        store.login_failed(T, "alice", MAX, 500_000).await.expect("failed");
    }
    for now in [1_001, 200_000, 499_999] {
        assert_eq!(store.begin_login_attempt(T, "alice", now, WINDOW, MAX).await.expect("attempt"), LoginGate::Closed);
    }
    assert_eq!(store.get_user(T, "alice").await.expect("get").failed_logins, 0, "closed gates count nothing");
    assert_eq!(store.begin_login_attempt(T, "alice", 500_000, WINDOW, MAX).await.expect("attempt"), LoginGate::Open);
});

conformance!(login_succeeded_starts_the_counters_over, |store| {
    create_user(&*store, T, "alice").await;
    for _ in 0..MAX {
        store.begin_login_attempt(T, "alice", 1_000, WINDOW, MAX).await.expect("attempt");
    }
    assert_eq!(store.begin_login_attempt(T, "alice", 1_001, WINDOW, MAX).await.expect("attempt"), LoginGate::Closed);
    store.login_succeeded(T, "alice").await.expect("succeeded");
    let alice = store.get_user(T, "alice").await.expect("get");
    assert_eq!((alice.failed_logins, alice.failed_window_start, alice.locked_until), (0, 0, 0));
    assert_eq!(store.begin_login_attempt(T, "alice", 1_002, WINDOW, MAX).await.expect("attempt"), LoginGate::Open);
    store.login_succeeded(T, "nobody").await.expect("an unknown user is no error");
});

conformance!(login_not_counted_takes_one_attempt_back, |store| {
    create_user(&*store, T, "alice").await;
    for _ in 0..MAX {
        store.begin_login_attempt(T, "alice", 1_000, WINDOW, MAX).await.expect("attempt");
    }
    store.login_not_counted(T, "alice").await.expect("not counted");
    assert_eq!(store.get_user(T, "alice").await.expect("get").failed_logins, MAX - 1);
    assert_eq!(store.begin_login_attempt(T, "alice", 1_001, WINDOW, MAX).await.expect("attempt"), LoginGate::Open);
    assert_eq!(store.begin_login_attempt(T, "alice", 1_002, WINDOW, MAX).await.expect("attempt"), LoginGate::Closed);
    // Never below zero.
    store.login_succeeded(T, "alice").await.expect("reset");
    store.login_not_counted(T, "alice").await.expect("not counted");
    assert_eq!(store.get_user(T, "alice").await.expect("get").failed_logins, 0);
});

conformance!(a_totp_step_is_accepted_once_even_by_concurrent_logins, |store| {
    let alice = User { mfa_last_step: 100, ..user(T, "alice") };
    store.create_user(&alice).await.expect("create");
    let accepted = concurrently(10, |_| {
        let (store, uid) = (store.clone(), alice.uid.clone());
        async move { store.accept_totp_step(T, "alice", &uid, 105).await.expect("accept") }
    })
    .await;
    assert_eq!(accepted.iter().filter(|accepted| **accepted).count(), 1, "{accepted:?}");
    assert_eq!(store.get_user(T, "alice").await.expect("get").mfa_last_step, 105);
    assert!(!store.accept_totp_step(T, "alice", &alice.uid, 104).await.expect("older"));
    assert!(!store.accept_totp_step(T, "alice", &alice.uid, 105).await.expect("replay"));
    assert!(!store.accept_totp_step(T, "alice", "alice-uid-0", 106).await.expect("other incarnation"));
    assert!(store.accept_totp_step(T, "alice", &alice.uid, 106).await.expect("newer"));
});

conformance!(enable_mfa_confirms_exactly_the_pending_secret, |store| {
    let alice = User { mfa_pending_sealed: Some(b"pending-1".to_vec()), mfa_last_step: 10, ..user(T, "alice") };
    store.create_user(&alice).await.expect("create");
    let uid = alice.uid.as_str();
    assert!(!store.enable_mfa(T, "alice", uid, b"pending-0", 11).await.expect("other secret"));
    assert!(!store.enable_mfa(T, "alice", uid, b"pending-1", 10).await.expect("step not newer"));
    assert!(!store.enable_mfa(T, "alice", "alice-uid-0", b"pending-1", 11).await.expect("other incarnation"));
    assert_eq!(store.get_user(T, "alice").await.expect("get"), alice, "refusals change nothing");

    assert!(store.enable_mfa(T, "alice", uid, b"pending-1", 11).await.expect("confirm"));
    let after = store.get_user(T, "alice").await.expect("get");
    assert_eq!(
        (
            after.mfa_enabled,
            after.mfa_secret_sealed.as_deref(),
            after.mfa_pending_sealed.as_deref(),
            after.mfa_last_step
        ),
        (true, Some(&b"pending-1"[..]), None, 11)
    );
    // Already on: a second confirmation (even with a re-issued pending secret) is refused.
    let changes = UserChanges { mfa_pending_sealed: Some(Some(b"pending-2".to_vec())), ..Default::default() };
    store.update_user(T, "alice", uid, &changes).await.expect("re-enrol");
    assert!(!store.enable_mfa(T, "alice", uid, b"pending-2", 12).await.expect("already on"));
    assert_eq!(store.get_user(T, "alice").await.expect("get").mfa_secret_sealed.as_deref(), Some(&b"pending-1"[..]));
});

conformance!(roles_are_per_tenant, |store| {
    store.create_role(&role(T, "reader")).await.expect("reader");
    store.create_role(&role(T, "auditor-lite")).await.expect("auditor");
    assert_conflict(store.create_role(&role(T, "reader")).await);
    store.create_role(&role("us-two", "reader")).await.expect("other tenant");
    assert_eq!(store.get_role(T, "reader").await.expect("get"), role(T, "reader"));
    assert_not_found(store.get_role("us-three", "reader").await);
    let names: Vec<String> = store.list_roles(T).await.expect("list").into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["auditor-lite", "reader"]);
    assert_not_found(store.delete_role("us-three", "reader").await);
    store.delete_role(T, "reader").await.expect("delete");
    assert_not_found(store.get_role(T, "reader").await);
    assert_not_found(store.delete_role(T, "reader").await);
    store.get_role("us-two", "reader").await.expect("other tenant keeps its role");
});

conformance!(groups_form_a_tree_per_tenant, |store| {
    store.create_group(&group(T, "site", None)).await.expect("site");
    store.create_group(&group(T, "floor-1", Some("site"))).await.expect("floor-1");
    store.create_group(&group(T, "floor-2", Some("site"))).await.expect("floor-2");
    assert_conflict(store.create_group(&group(T, "site", None)).await);
    assert!(store.create_group(&group("us-two", "floor-1", Some("site"))).await.is_err(), "parent of another tenant");
    assert_not_found(store.get_group("us-two", "floor-1").await);
    store.create_group(&group("us-two", "site", None)).await.expect("other tenant");
    assert_eq!(store.get_group(T, "floor-1").await.expect("get"), group(T, "floor-1", Some("site")));
    let ids: Vec<String> = store.list_groups(T).await.expect("list").into_iter().map(|g| g.id).collect();
    assert_eq!(ids, ["floor-1", "floor-2", "site"]);
});

conformance!(a_group_with_sub_groups_or_devices_is_not_deleted, |store| {
    store.create_group(&group(T, "site", None)).await.expect("site");
    store.create_group(&group(T, "floor-1", Some("site"))).await.expect("floor-1");
    store.create_group(&group("us-two", "site", None)).await.expect("other tenant");
    assert_conflict(store.delete_group(T, "site").await);
    create_device(&*store, &device(T, "sensor", Some("floor-1"))).await;
    assert_conflict(store.delete_group(T, "floor-1").await);
    store.delete_device(T, "sensor", 5).await.expect("delete device");
    store.delete_group(T, "floor-1").await.expect("empty now");
    store.delete_group(T, "site").await.expect("leaf now");
    assert_not_found(store.delete_group(T, "site").await);
    store.get_group("us-two", "site").await.expect("other tenant keeps its group");
});

conformance!(api_keys_have_global_ids_and_round_trip, |store| {
    let alice = create_user(&*store, T, "alice").await;
    let expiring = full_api_key(&alice.uid);
    store.create_api_key(&api_key(T, "key-a", "alice", &alice.uid)).await.expect("key-a");
    store.create_api_key(&expiring).await.expect("key-b");
    assert_conflict(store.create_api_key(&api_key("us-two", "key-a", "zed", "zed-uid")).await);
    store.create_api_key(&api_key("us-two", "key-c", "zed", "zed-uid")).await.expect("key-c");

    assert_eq!(store.get_api_key("key-b").await.expect("get"), expiring);
    assert_eq!(store.get_api_key("key-c").await.expect("get").tenant, "us-two");
    assert_not_found(store.get_api_key("key-z").await);
    let ids: Vec<String> = store.list_api_keys(T).await.expect("list").into_iter().map(|k| k.id).collect();
    assert_eq!(ids, ["key-a", "key-b"]);

    assert_not_found(store.delete_api_key("us-two", "key-a").await);
    store.delete_api_key(T, "key-a").await.expect("delete");
    assert_not_found(store.get_api_key("key-a").await);
    assert_not_found(store.delete_api_key(T, "key-a").await);
    store.get_api_key("key-c").await.expect("other tenant untouched");
});

/// An API key with every optional field set.
fn full_api_key(owner_uid: &str) -> ApiKey {
    ApiKey {
        groups: strings(&["north", "south"]),
        roles: strings(&["operator", "custom"]),
        expires_at: Some(1_900_000_000_000),
        created_by: "api-key:key-a".into(),
        ..api_key(T, "key-b", "alice", owner_uid)
    }
}
