//! People, tenants and RBAC through the API: login, lockout, token revocation, TOTP, tenant
//! policy, API keys, sub-tenant isolation, roles, groups and input validation — tested as an
//! attacker too (other tenants' ids, wrong roles, tampered tokens, malformed bodies).

use axum::http::{Method, StatusCode};
use rampart_crypto::TotpSecret;
use rampart_store::{AuditFilter, Page};
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, Harness};

const PASSWORD: &str = "correct-Horse-battery-9";
const NEW_PASSWORD: &str = "another-Staple-moon-77";

/// Audit records of `tenant` (every incarnation, deleted ones too) with `action`, as JSON.
async fn audited(h: &Harness, tenant: &str, action: &str) -> Vec<Value> {
    let filter = AuditFilter { action: Some(action.to_owned()), ..AuditFilter::default() };
    let page = Page { after: None, limit: 1000 };
    let mut records = Vec::new();
    for chain in h.store.list_audit_chains().await.expect("chains").into_iter().filter(|c| c.tenant == tenant) {
        records.extend(h.store.list_audit(&chain, &filter, &page).await.expect("list audit"));
    }
    records.iter().map(|r| rampart_platform::record_json(r, true)).collect()
}

async fn create_user(h: &Harness, token: &str, username: &str, roles: &[&str]) -> (StatusCode, Value) {
    h.post("/api/v1/users", token, json!({"username": username, "password": PASSWORD, "roles": roles})).await
}

async fn try_login(
    h: &Harness,
    tenant: &str,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = json!({"tenant": tenant, "username": username, "password": password});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    h.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut n_bits = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c).expect("base32 character") as u64;
        bits = (bits << 5) | value;
        n_bits += 5;
        if n_bits >= 8 {
            n_bits -= 8;
            out.push((bits >> n_bits) as u8);
            bits &= (1 << n_bits) - 1;
        }
    }
    out
}

/// The TOTP code of `secret` for now + `offset_s` seconds.
fn totp(secret: &str, offset_s: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    TotpSecret::from_bytes(&base32_decode(secret)).expect("secret").code_at(now + offset_s)
}

#[tokio::test]
async fn login_failures_are_indistinguishable_and_audited() {
    let h = Harness::new().await;
    let (status, ok) = try_login(&h, "platform", "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["expires_in"], 900);
    assert!(ok["access_token"].as_str().is_some_and(|t| !t.is_empty()));

    let wrong_password = try_login(&h, "platform", "admin", "not-the-Password-1", None).await;
    let unknown_user = try_login(&h, "platform", "nobody", "not-the-Password-1", None).await;
    let unknown_tenant = try_login(&h, "nowhere", "admin", ADMIN_PASSWORD, None).await;
    let invalid_tenant = try_login(&h, "No Such/Tenant", "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(wrong_password.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.1["error"], "unauthorized");
    for other in [&unknown_user, &unknown_tenant, &invalid_tenant] {
        assert_eq!(other, &wrong_password);
    }

    let logins = audited(&h, "platform", "auth.login").await;
    assert!(logins.iter().any(|r| r["outcome"] == "success" && r["actor"]["id"] == "admin"));
    let failed: Vec<&Value> = logins.iter().filter(|r| r["outcome"] == "failure").collect();
    assert_eq!(failed.len(), 4, "{failed:?}");
    assert!(failed.iter().any(|r| r["target"] == "user:nobody" && r["details"]["reason"] == "unknown_user"));
    let all = serde_json::to_string(&logins).expect("json");
    assert!(!all.contains("not-the-Password-1") && !all.contains(ADMIN_PASSWORD), "password in audit");
}

#[tokio::test]
async fn five_failures_lock_the_user_even_for_the_right_password() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    assert_eq!(create_user(&h, &admin, "locky", &["viewer"]).await.0, StatusCode::CREATED);
    for _ in 0..5 {
        let (status, _) = try_login(&h, "platform", "locky", "wrong-Password-123", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = try_login(&h, "platform", "locky", PASSWORD, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let lockouts = audited(&h, "platform", "auth.lockout").await;
    assert_eq!(lockouts.len(), 1);
    assert_eq!(lockouts[0]["target"], "user:locky");

    // An administrator's password reset lifts the lock.
    let (status, _) =
        h.call(Method::PATCH, "/api/v1/users/locky", Some(&admin), Some(json!({"password": NEW_PASSWORD}))).await;
    assert_eq!(status, StatusCode::OK);
    h.login("platform", "locky", NEW_PASSWORD).await;
}

#[tokio::test]
async fn token_version_revokes_old_tokens() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    assert_eq!(create_user(&h, &admin, "bob", &["operator"]).await.0, StatusCode::CREATED);

    // Own password change: wrong current answers 401, a weak new one 400, then old tokens die.
    let bob = h.login("platform", "bob", PASSWORD).await;
    let change = |current: &str, new: &str| json!({"current": current, "new": new});
    let (status, _) =
        h.call(Method::PUT, "/api/v1/me/password", Some(&bob), Some(change("wrong-Password-123", NEW_PASSWORD))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = h.call(Method::PUT, "/api/v1/me/password", Some(&bob), Some(change(PASSWORD, "short"))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (status, _) =
        h.call(Method::PUT, "/api/v1/me/password", Some(&bob), Some(change(PASSWORD, NEW_PASSWORD))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.get("/api/v1/me", &bob).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(audited(&h, "platform", "user.password_change").await.len(), 2);

    // Role change by an administrator.
    let bob = h.login("platform", "bob", NEW_PASSWORD).await;
    assert_eq!(h.get("/api/v1/me", &bob).await.0, StatusCode::OK);
    let patch = |body: Value| h.call(Method::PATCH, "/api/v1/users/bob", Some(&admin), Some(body));
    let (status, body) = patch(json!({"roles": ["viewer"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["roles"], json!(["viewer"]));
    assert_eq!(h.get("/api/v1/me", &bob).await.0, StatusCode::UNAUTHORIZED);

    // Disable, then delete.
    let bob = h.login("platform", "bob", NEW_PASSWORD).await;
    assert_eq!(patch(json!({"disabled": true})).await.0, StatusCode::OK);
    assert_eq!(h.get("/api/v1/me", &bob).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = try_login(&h, "platform", "bob", NEW_PASSWORD, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(patch(json!({"disabled": false})).await.0, StatusCode::OK);
    let bob = h.login("platform", "bob", NEW_PASSWORD).await;
    assert_eq!(h.call(Method::DELETE, "/api/v1/users/bob", Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.get("/api/v1/me", &bob).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.get("/api/v1/users/bob", &admin).await.0, StatusCode::NOT_FOUND);
    assert_eq!(audited(&h, "platform", "user.delete").await.len(), 1);
    assert_eq!(audited(&h, "platform", "user.update").await.len(), 3);

    // Nobody disables or deletes themself.
    let (status, _) = h.call(Method::PATCH, "/api/v1/users/admin", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(h.call(Method::DELETE, "/api/v1/users/admin", Some(&admin), None).await.0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    let mut tampered = admin.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for token in [tampered.as_str(), "v4.public.garbage", "rak_0011_nothing", "rak_", "", "Basic abc"] {
        let (status, body) = h.get("/api/v1/me", token).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "{token}");
    }
    assert_eq!(h.call(Method::GET, "/api/v1/me", None, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, me) = h.get("/api/v1/me", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["tenant"], "platform");
    assert_eq!(me["username"], "admin");
    assert_eq!(me["mfa_enabled"], false);
    let permissions: Vec<&str> =
        me["permissions"].as_array().expect("array").iter().filter_map(Value::as_str).collect();
    assert_eq!(permissions.len(), 15);
    assert!(permissions.windows(2).all(|w| w[0] < w[1]), "sorted: {permissions:?}");
}

#[tokio::test]
async fn totp_enrolment_login_and_replay() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    assert_eq!(create_user(&h, &admin, "alice", &["viewer"]).await.0, StatusCode::CREATED);
    let alice = h.login("platform", "alice", PASSWORD).await;

    let (status, _) = h.post("/api/v1/me/mfa/confirm", &alice, json!({"code": "123456"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "nothing pending");
    let (status, enrolment) = h.call(Method::POST, "/api/v1/me/mfa", Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK, "{enrolment}");
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    let uri = enrolment["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/Rampart:alice@platform?"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")));

    let wrong = if totp(&secret, 0) == "000000" { "111111" } else { "000000" };
    let (status, body) = h.post("/api/v1/me/mfa/confirm", &alice, json!({"code": wrong})).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let (status, body) = h.post("/api/v1/me/mfa/confirm", &alice, json!({"code": totp(&secret, 0)})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_enabled"], true);
    assert_eq!(h.get("/api/v1/me", &alice).await.1["mfa_enabled"], true);
    assert_eq!(h.call(Method::POST, "/api/v1/me/mfa", Some(&alice), None).await.0, StatusCode::CONFLICT);

    let (status, body) = try_login(&h, "platform", "alice", PASSWORD, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("mfa_required")));
    let (status, body) = try_login(&h, "platform", "alice", PASSWORD, Some(wrong)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    // The confirmation used the current step; the next step's code is still within ±1.
    let code = totp(&secret, 30);
    let (status, body) = try_login(&h, "platform", "alice", PASSWORD, Some(&code)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = try_login(&h, "platform", "alice", PASSWORD, Some(&code)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")), "replay");
    // A wrong password with no code stays `unauthorized`: mfa_required reveals nothing early.
    let (status, body) = try_login(&h, "platform", "alice", "wrong-Password-123", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));

    assert_eq!(audited(&h, "platform", "mfa.enroll").await.len(), 1);
    let enables = audited(&h, "platform", "mfa.enable").await;
    assert!(enables.iter().any(|r| r["outcome"] == "success"));
    assert!(enables.iter().any(|r| r["outcome"] == "failure"));
    let stored = h.store.get_user("platform", "alice").await.expect("user");
    let sealed = stored.mfa_secret_sealed.expect("sealed secret");
    assert!(!sealed.windows(10).any(|w| base32_decode(&secret).windows(10).any(|s| s == w)), "stored in clear");
}

#[tokio::test]
async fn tenant_policy_and_required_mfa() {
    let h = Harness::new().await;
    let acme = h.tenant_admin("acme").await;
    let (status, policy) = h.get("/api/v1/tenant/policy", &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        policy,
        json!({"require_mfa": false, "client_takeover": "allow", "detection": {
            "failed_auth_threshold": 10, "failed_auth_window_s": 60, "block_duration_s": 900,
            "acl_violation_threshold": 3, "acl_violation_window_s": 60, "rate_anomaly_factor": 10},
            "quarantine_untrusted_firmware": false})
    );
    let put = |body: Value| h.call(Method::PUT, "/api/v1/tenant/policy", Some(&acme), Some(body));
    for bad in [
        json!({"surprise": true}),
        json!({"client_takeover": "maybe"}),
        json!({"detection": {"block_duration_s": 0}}),
        json!({"detection": {"block_duration_s": -5}}),
        json!({"detection": {"unknown": 1}}),
    ] {
        assert_eq!(put(bad.clone()).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, policy) = put(json!({"client_takeover": "reject", "detection": {"block_duration_s": 60}})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(policy["client_takeover"], "reject");
    assert_eq!(policy["detection"]["block_duration_s"], 60);
    assert_eq!(policy["detection"]["failed_auth_threshold"], 10);
    let (status, policy) = put(json!({"require_mfa": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((policy["require_mfa"].as_bool(), policy["client_takeover"].as_str()), (Some(true), Some("reject")));
    assert_eq!(audited(&h, "acme", "policy.update").await.len(), 2);

    // The admin has no MFA: everything but enrolment now answers mfa_required.
    let (status, body) = h.get("/api/v1/users", &acme).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("mfa_required")));
    assert_eq!(h.get("/api/v1/me", &acme).await.0, StatusCode::OK);
    let (status, enrolment) = h.call(Method::POST, "/api/v1/me/mfa", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK);
    let secret = enrolment["secret"].as_str().expect("secret");
    let (status, _) = h.post("/api/v1/me/mfa/confirm", &acme, json!({"code": totp(secret, 0)})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.get("/api/v1/users", &acme).await.0, StatusCode::OK);

    // A viewer may not read or change the policy; the refusal is audited.
    let platform_admin = h.admin_token().await;
    assert_eq!(create_user(&h, &platform_admin, "val", &["viewer"]).await.0, StatusCode::CREATED);
    let viewer = h.login("platform", "val", PASSWORD).await;
    assert_eq!(h.get("/api/v1/tenant/policy", &viewer).await.0, StatusCode::FORBIDDEN);
    let (status, _) = h.call(Method::PUT, "/api/v1/tenant/policy", Some(&viewer), Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(audited(&h, "platform", "access.denied").await.len(), 2);
}

#[tokio::test]
async fn api_keys_are_shown_once_scoped_and_revocable() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    let (status, created) =
        h.post("/api/v1/api-keys", &admin, json!({"name": "ingest app", "roles": ["viewer"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let key = created["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with(&format!("rak_{id}_")));
    assert_eq!(created["roles"], json!(["viewer"]));
    assert_eq!(created["expires_at"], Value::Null);

    let (status, me) = h.get("/api/v1/me", &key).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!((me["tenant"].as_str(), &me["username"]), (Some("platform"), &Value::Null));
    assert_eq!(h.get("/api/v1/groups", &key).await.0, StatusCode::OK);
    assert_eq!(h.post("/api/v1/groups", &key, json!({"id": "g1", "name": "G"})).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.call(Method::POST, "/api/v1/me/mfa", Some(&key), None).await.0, StatusCode::FORBIDDEN);

    let (status, list) = h.get("/api/v1/api-keys", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert!(list["items"][0].get("key").is_none() && !list.to_string().contains(&key));

    // A wrong secret with the right id, an expiry in the past, an unknown role.
    let forged = format!("rak_{id}_{}", "A".repeat(43));
    assert_eq!(h.get("/api/v1/me", &forged).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = h
        .post("/api/v1/api-keys", &admin, json!({"name": "old", "roles": [], "expires_at": "2001-01-01T00:00:00Z"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h.post("/api/v1/api-keys", &admin, json!({"name": "x", "roles": ["superuser"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, later) = h
        .post("/api/v1/api-keys", &admin, json!({"name": "later", "roles": [], "expires_at": 4_102_444_800_000_i64}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(later["expires_at"], "2100-01-01T00:00:00.000Z");

    // Another tenant cannot see or revoke it.
    let acme = h.tenant_admin("acme").await;
    assert_eq!(h.get("/api/v1/api-keys", &acme).await.1["items"], json!([]));
    let path = format!("/api/v1/api-keys/{id}");
    assert_eq!(h.call(Method::DELETE, &path, Some(&acme), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        h.call(Method::DELETE, "/api/v1/api-keys/not-hex!", Some(&admin), None).await.0,
        StatusCode::BAD_REQUEST
    );

    assert_eq!(h.call(Method::DELETE, &path, Some(&admin), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.get("/api/v1/me", &key).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(audited(&h, "platform", "api_key.create").await.len(), 2);
    let deletes = audited(&h, "platform", "api_key.delete").await;
    assert_eq!(deletes.len(), 1);
    let everything = serde_json::to_string(&audited(&h, "platform", "api_key.create").await).expect("json");
    assert!(!everything.contains(&key), "key in audit");
}

#[tokio::test]
async fn sub_tenants_are_isolated_from_their_parent() {
    let h = Harness::new().await;
    let root = h.admin_token().await;
    let acme = h.tenant_admin("acme").await;
    assert_eq!(create_user(&h, &acme, "acme-op", &["operator"]).await.0, StatusCode::CREATED);

    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|u| u["username"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&h.get("/api/v1/users", &root).await.1), ["admin"]);
    assert_eq!(names(&h.get("/api/v1/users", &acme).await.1), ["acme-op", "admin"]);
    assert_eq!(h.get("/api/v1/users/acme-op", &root).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.post("/api/v1/groups", &acme, json!({"id": "acme-g", "name": "A"})).await.0, StatusCode::CREATED);
    assert_eq!(h.get("/api/v1/groups/acme-g", &root).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.get("/api/v1/groups", &root).await.1["items"], json!([]));

    // The parent manages the lifecycle: it sees the tenant, the child does not see its parent.
    let (status, tenant) = h.get("/api/v1/tenants/acme", &root).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((tenant["parent"].as_str(), tenant["name"].as_str()), (Some("platform"), Some("acme")));
    let (status, list) = h.get("/api/v1/tenants", &root).await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    for path in ["/api/v1/tenants/platform", "/api/v1/tenants/acme", "/api/v1/tenants/nowhere"] {
        assert_eq!(h.get(path, &acme).await.0, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(h.call(Method::DELETE, path, Some(&acme), None).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(h.get("/api/v1/tenants/Not_Valid", &root).await.0, StatusCode::BAD_REQUEST);

    // Ids are global; a bad admin password leaves nothing behind.
    let new_tenant =
        |id: &str, password: &str| json!({"id": id, "name": id, "admin": {"username": "boss", "password": password}});
    assert_eq!(h.post("/api/v1/tenants", &acme, new_tenant("acme", PASSWORD)).await.0, StatusCode::CONFLICT);
    let (status, body) = h.post("/api/v1/tenants", &root, new_tenant("weak", "short")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    assert_eq!(h.get("/api/v1/tenants/weak", &root).await.0, StatusCode::NOT_FOUND);

    // A grandchild: the root may delete it, not the child that still has it.
    assert_eq!(h.post("/api/v1/tenants", &acme, new_tenant("acme-eu", PASSWORD)).await.0, StatusCode::CREATED);
    assert_eq!(h.get("/api/v1/tenants/acme-eu", &root).await.0, StatusCode::OK);
    let beta = h.tenant_admin("beta").await;
    assert_eq!(h.call(Method::DELETE, "/api/v1/tenants/acme-eu", Some(&beta), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.call(Method::DELETE, "/api/v1/tenants/acme", Some(&root), None).await.0, StatusCode::CONFLICT);
    assert_eq!(h.call(Method::DELETE, "/api/v1/tenants/acme-eu", Some(&root), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.call(Method::DELETE, "/api/v1/tenants/acme", Some(&root), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(h.get("/api/v1/users", &acme).await.0, StatusCode::UNAUTHORIZED, "deleted tenant's token");
    let (status, _) = try_login(&h, "acme", "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(audited(&h, "platform", "tenant.create").await.len(), 3, "platform, acme, beta");
    assert_eq!(audited(&h, "acme", "tenant.create").await.len(), 2, "acme's own chain and acme-eu");
    assert_eq!(audited(&h, "platform", "tenant.delete").await.len(), 2);
}

#[tokio::test]
async fn roles_grant_exactly_their_permissions() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    let (status, role) = h
        .post("/api/v1/roles", &admin, json!({"name": "user-manager", "permissions": ["users:write", "users:read"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    assert_eq!(role, json!({"name": "user-manager", "permissions": ["users:read", "users:write"], "builtin": false}));
    assert_eq!(
        h.post("/api/v1/roles", &admin, json!({"name": "viewer", "permissions": []})).await.0,
        StatusCode::CONFLICT
    );
    let (status, _) = h.post("/api/v1/roles", &admin, json!({"name": "x", "permissions": ["devices:*"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, list) = h.get("/api/v1/roles", &admin).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["items"].as_array().expect("items").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["admin", "auditor", "operator", "user-manager", "viewer"]);
    let (status, viewer) = h.get("/api/v1/roles/viewer", &admin).await;
    assert_eq!((status, viewer["builtin"].as_bool()), (StatusCode::OK, Some(true)));

    assert_eq!(create_user(&h, &admin, "manny", &["user-manager"]).await.0, StatusCode::CREATED);
    let manny = h.login("platform", "manny", PASSWORD).await;
    let (_, me) = h.get("/api/v1/me", &manny).await;
    assert_eq!(me["permissions"], json!(["users:read", "users:write"]));
    assert_eq!(h.get("/api/v1/users", &manny).await.0, StatusCode::OK);
    assert_eq!(h.get("/api/v1/groups", &manny).await.0, StatusCode::FORBIDDEN);
    // No escalation: not an admin user, not an admin key, not a wider role, not the admin.
    assert_eq!(create_user(&h, &manny, "sneaky", &["admin"]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        h.post("/api/v1/api-keys", &manny, json!({"name": "k", "roles": ["operator"]})).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = h.post("/api/v1/roles", &manny, json!({"name": "wide", "permissions": ["tenants:write"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) =
        h.call(Method::PATCH, "/api/v1/users/admin", Some(&manny), Some(json!({"password": NEW_PASSWORD}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.call(Method::DELETE, "/api/v1/users/admin", Some(&manny), None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(create_user(&h, &manny, "peer", &["user-manager"]).await.0, StatusCode::CREATED);

    // A viewer's write is refused and audited as access.denied.
    assert_eq!(create_user(&h, &admin, "vera", &["viewer"]).await.0, StatusCode::CREATED);
    let vera = h.login("platform", "vera", PASSWORD).await;
    let before = audited(&h, "platform", "access.denied").await.len();
    let (status, body) = h.post("/api/v1/groups", &vera, json!({"id": "g", "name": "g"})).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let denied = audited(&h, "platform", "access.denied").await;
    assert_eq!(denied.len(), before + 1);
    assert_eq!(denied[before]["actor"]["id"], "vera");
    assert_eq!(denied[before]["outcome"], "failure");

    // Deleting the custom role takes its permissions away at once; built-ins stay.
    assert_eq!(h.call(Method::DELETE, "/api/v1/roles/viewer", Some(&admin), None).await.0, StatusCode::CONFLICT);
    assert_eq!(
        h.call(Method::DELETE, "/api/v1/roles/user-manager", Some(&admin), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.get("/api/v1/users", &manny).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.get("/api/v1/roles/user-manager", &admin).await.0, StatusCode::NOT_FOUND);
    assert_eq!(audited(&h, "platform", "role.create").await.len(), 1);
    assert_eq!(audited(&h, "platform", "role.delete").await.len(), 1);
}

#[tokio::test]
async fn groups_form_a_tree_and_scope_users() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    for (id, parent) in [("eu", None), ("de", Some("eu")), ("berlin", Some("de")), ("us", None)] {
        let (status, body) = h.post("/api/v1/groups", &admin, json!({"id": id, "name": id, "parent": parent})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["parent"], json!(parent));
    }
    assert_eq!(h.post("/api/v1/groups", &admin, json!({"id": "eu", "name": "again"})).await.0, StatusCode::CONFLICT);
    let (status, _) = h.post("/api/v1/groups", &admin, json!({"id": "x", "name": "x", "parent": "nowhere"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.call(Method::DELETE, "/api/v1/groups/eu", Some(&admin), None).await.0, StatusCode::CONFLICT);

    // A user confined to `de` sees de and berlin only; everything else is 404.
    let body = json!({"username": "dieter", "password": PASSWORD, "roles": ["operator"], "groups": ["de"]});
    assert_eq!(h.post("/api/v1/users", &admin, body).await.0, StatusCode::CREATED);
    let bad = json!({"username": "ghost", "password": PASSWORD, "roles": ["viewer"], "groups": ["nowhere"]});
    assert_eq!(h.post("/api/v1/users", &admin, bad).await.0, StatusCode::BAD_REQUEST);
    let dieter = h.login("platform", "dieter", PASSWORD).await;
    let (status, list) = h.get("/api/v1/groups", &dieter).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["items"].as_array().expect("items").iter().filter_map(|g| g["id"].as_str()).collect();
    assert_eq!(ids, ["berlin", "de"]);
    assert_eq!(h.get("/api/v1/groups/us", &dieter).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.call(Method::DELETE, "/api/v1/groups/us", Some(&dieter), None).await.0, StatusCode::NOT_FOUND);
    let (status, _) = h.post("/api/v1/groups", &dieter, json!({"id": "paris", "name": "P", "parent": "eu"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "parent outside the scope looks missing");
    assert_eq!(h.post("/api/v1/groups", &dieter, json!({"id": "top", "name": "T"})).await.0, StatusCode::FORBIDDEN);
    let (status, _) = h.post("/api/v1/groups", &dieter, json!({"id": "munich", "name": "M", "parent": "de"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h.call(Method::DELETE, "/api/v1/groups/munich", Some(&dieter), None).await.0, StatusCode::NO_CONTENT);

    // Paging walks the whole list.
    let (_, first) = h.get("/api/v1/groups?limit=2", &admin).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (_, second) = h.get(&format!("/api/v1/groups?limit=2&cursor={cursor}"), &admin).await;
    let ids: Vec<&str> = second["items"].as_array().expect("items").iter().filter_map(|g| g["id"].as_str()).collect();
    assert_eq!(ids, ["eu", "us"]);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(audited(&h, "platform", "group.create").await.len(), 5);
    assert_eq!(audited(&h, "platform", "group.delete").await.len(), 1);
}

#[tokio::test]
async fn malformed_input_answers_400() {
    let h = Harness::new().await;
    let admin = h.admin_token().await;
    let user = |extra: Value| {
        let mut body = json!({"username": "carol", "password": PASSWORD, "roles": ["viewer"]});
        if let (Value::Object(map), Value::Object(extra)) = (&mut body, extra) {
            map.extend(extra);
        }
        body
    };
    for (body, what) in [
        (user(json!({"is_admin": true})), "unknown field"),
        (user(json!({"username": "carol smith"})), "invalid username"),
        (user(json!({"username": "-carol"})), "invalid username"),
        (user(json!({"password": "short-1"})), "too short"),
        (user(json!({"username": "carol.smith.2026", "password": "Carol.Smith.2026"})), "is the username"),
        (user(json!({"password": "aaaaaaaaaaaaaaaa"})), "one repeated character"),
        (user(json!({"roles": ["root"]})), "unknown role"),
        (user(json!({"roles": "viewer"})), "wrong type"),
        (user(json!({"email": "not an address"})), "email"),
    ] {
        let (status, answer) = h.post("/api/v1/users", &admin, body).await;
        assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{what}");
    }
    let (_, short) = h.post("/api/v1/users", &admin, user(json!({"password": "short-1"}))).await;
    assert!(short["message"].as_str().is_some_and(|m| m.contains("12")), "{short}");
    let (status, _) = h
        .call(Method::POST, "/api/v1/auth/login", None, Some(json!({"tenant": "platform", "username": "admin"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let extra = json!({"tenant": "platform", "username": "admin", "password": ADMIN_PASSWORD, "remember": true});
    assert_eq!(h.call(Method::POST, "/api/v1/auth/login", None, Some(extra)).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/api/v1/users/bad%20name", &admin).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/api/v1/groups/..", &admin).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/api/v1/users?limit=0", &admin).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.get("/api/v1/users?cursor=%%%", &admin).await.0, StatusCode::BAD_REQUEST);
    let huge = json!({"username": "carol", "password": "x".repeat(2 * 1024 * 1024), "roles": []});
    assert_eq!(h.post("/api/v1/users", &admin, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    // With an e-mail address: stored sealed, shown decrypted on the single user only.
    let (status, created) = h.post("/api/v1/users", &admin, user(json!({"email": "carol@example.com"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(h.get("/api/v1/users/carol", &admin).await.1["email"], "carol@example.com");
    assert!(!h.get("/api/v1/users", &admin).await.1.to_string().contains("carol@example.com"));
    let stored = h.store.get_user("platform", "carol").await.expect("user");
    let sealed = stored.email_sealed.expect("sealed");
    assert!(!sealed.windows(7).any(|w| w == b"example"), "e-mail stored in clear");
    assert_eq!(h.post("/api/v1/users", &admin, user(json!({}))).await.0, StatusCode::CONFLICT);
}

#[test]
fn openapi_describes_the_people_routes() {
    let document = serde_json::to_value(rampart_api::openapi()).expect("json");
    let paths = &document["paths"];
    for (path, method) in [
        ("/api/v1/auth/login", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/password", "put"),
        ("/api/v1/me/mfa", "post"),
        ("/api/v1/me/mfa/confirm", "post"),
        ("/api/v1/tenant/policy", "put"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/tenants/{id}", "delete"),
        ("/api/v1/users/{username}", "patch"),
        ("/api/v1/roles", "post"),
        ("/api/v1/groups", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing from the OpenAPI document");
    }
    let params = paths["/api/v1/users"]["get"]["parameters"].as_array().expect("list parameters");
    assert!(params.iter().any(|p| p["name"] == "limit" && p["in"] == "query"), "{params:?}");
}
