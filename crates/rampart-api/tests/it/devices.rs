//! Devices, credentials and audit through the API. Tenants, users and groups are set up
//! through the platform's services (the harness), the rest through the routes.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rampart_crypto::sha256;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::harness::Harness;

const RSA_1024_CSR: &str = include_str!("../../../rampart-crypto/tests/fixtures/rsa1024.csr.pem");

async fn create_device(h: &Harness, token: &str, body: Value) -> Value {
    let (status, answer) = h.post("/api/v1/devices", token, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

async fn patch(h: &Harness, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    h.call(Method::PATCH, path, Some(token), Some(body)).await
}

async fn delete(h: &Harness, path: &str, token: &str) -> (StatusCode, Value) {
    h.call(Method::DELETE, path, Some(token), None).await
}

/// A request whose answer is not JSON (PEM) or whose body is not JSON.
async fn raw(h: &Harness, method: Method, path: &str, token: &str, body: &str) -> (StatusCode, HeaderMap, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = h.app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

fn assert_error(status: StatusCode, answer: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{answer}");
    assert_eq!(answer["error"], code, "{answer}");
    assert!(answer["message"].is_string(), "{answer}");
}

fn ids(answer: &Value) -> Vec<String> {
    answer["items"].as_array().expect("items").iter().map(|d| d["id"].as_str().expect("id").to_owned()).collect()
}

/// Audit records of the tenant for `action`, read through the API.
async fn audit_records(h: &Harness, token: &str, action: &str) -> Vec<Value> {
    let (status, answer) = h.get(&format!("/api/v1/audit?action={action}&limit=1000"), token).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["items"].as_array().expect("items").clone()
}

fn csr(key: &rcgen::KeyPair) -> String {
    let params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.serialize_request(key).expect("csr").pem().expect("pem")
}

fn strip_zeros(hex: &str) -> &str {
    hex.trim_start_matches('0')
}

#[tokio::test]
async fn device_crud_filters_and_pagination() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    h.group("acme", "plant-1", None).await;

    let body = json!({"id": "sensor-1", "type": "thermo", "group": "plant-1", "attributes": {"floor": 2}, "required_interval_s": 60});
    let created = create_device(&h, &admin, body).await;
    assert_eq!(created["id"], "sensor-1");
    assert_eq!(created["name"], "sensor-1", "name defaults to the id");
    assert_eq!(created["type"], "thermo");
    assert_eq!(created["group"], "plant-1");
    assert_eq!(created["status"], "registered");
    assert_eq!(created["connected"], false);
    assert_eq!(created["last_seen"], Value::Null);
    assert_eq!(created["firmware"], Value::Null);
    assert_eq!(created["attributes"], json!({"floor": 2}));
    assert_eq!(created["required_interval_s"], 60);
    let created_at = created["created_at"].as_str().expect("created_at");
    assert!(created_at.ends_with('Z') && created_at.len() == 24, "{created_at}");
    h.platform.keyring().device_key("acme", "sensor-1").await.expect("the device got its data key");

    let (status, answer) = h.post("/api/v1/devices", &admin, json!({"id": "sensor-1"})).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "conflict");

    for (id, kind) in [("sensor-2", "meter"), ("sensor-3", "meter"), ("sensor-4", "thermo"), ("sensor-5", "meter")] {
        create_device(&h, &admin, json!({"id": id, "name": format!("Sensor {id}"), "type": kind})).await;
    }

    // Walk the cursor two by two.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/devices?limit=2&cursor={c}"),
            None => "/api/v1/devices?limit=2".to_owned(),
        };
        let (status, answer) = h.get(&path, &admin).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        seen.extend(ids(&answer));
        pages += 1;
        match answer["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the cursor never ends");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["sensor-1", "sensor-2", "sensor-3", "sensor-4", "sensor-5"]);

    let (_, answer) = h.get("/api/v1/devices?type=thermo", &admin).await;
    assert_eq!(ids(&answer), ["sensor-1", "sensor-4"]);
    let (_, answer) = h.get("/api/v1/devices?group=plant-1", &admin).await;
    assert_eq!(ids(&answer), ["sensor-1"]);
    let (_, answer) = h.get("/api/v1/devices?status=registered&type=meter", &admin).await;
    assert_eq!(ids(&answer), ["sensor-2", "sensor-3", "sensor-5"]);
    assert_eq!(answer["next_cursor"], Value::Null);
    let (_, answer) = h.get("/api/v1/devices?status=revoked", &admin).await;
    assert_eq!(ids(&answer), Vec::<String>::new());
    let (status, answer) = h.get("/api/v1/devices?status=bogus", &admin).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");

    let (status, answer) = h.get("/api/v1/devices/sensor-1", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, created);

    let (status, answer) = patch(
        &h,
        "/api/v1/devices/sensor-1",
        &admin,
        json!({"name": "Boiler", "required_interval_s": null, "group": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["name"], "Boiler");
    assert_eq!(answer["required_interval_s"], Value::Null);
    assert_eq!(answer["group"], Value::Null);
    assert_eq!(answer["type"], "thermo", "absent fields stay");
    assert_eq!(answer["attributes"], json!({"floor": 2}));
    let (status, answer) =
        patch(&h, "/api/v1/devices/sensor-1", &admin, json!({"attributes": {"floor": 3}, "group": "plant-1"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["attributes"], json!({"floor": 3}));
    assert_eq!(answer["group"], "plant-1");
    for bad in [
        json!({"status": "active"}),
        json!({"group": "nope"}),
        json!({"required_interval_s": 0}),
        json!({"attributes": [1]}),
        json!({"name": ""}),
    ] {
        let (status, answer) = patch(&h, "/api/v1/devices/sensor-1", &admin, bad.clone()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }

    let (status, _) = delete(&h, "/api/v1/devices/sensor-1", &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = h.get("/api/v1/devices/sensor-1", &admin).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (status, answer) = delete(&h, "/api/v1/devices/sensor-1", &admin).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    assert!(h.platform.keyring().device_key("acme", "sensor-1").await.is_err(), "the data key is destroyed");

    assert_eq!(audit_records(&h, &admin, "device.create").await.len(), 5);
    let updates = audit_records(&h, &admin, "device.update").await;
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0]["target"], "device:sensor-1");
    assert_eq!(updates[0]["actor"], json!({"type": "user", "id": "admin"}));
    assert_eq!(audit_records(&h, &admin, "device.delete").await.len(), 1);
}

#[tokio::test]
async fn malformed_requests_answer_400_401_or_413() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    create_device(&h, &admin, json!({"id": "ok"})).await;

    let long_id = "a".repeat(129);
    let bad_bodies = [
        json!({"id": "bad id"}),
        json!({"id": ""}),
        json!({"id": "-leading-dash"}),
        json!({"id": long_id}),
        json!({"id": "x", "unknown": 1}),
        json!({"id": "x", "status": "active"}),
        json!({"id": "x", "attributes": [1, 2]}),
        json!({"id": "x", "attributes": "text"}),
        json!({"id": "x", "required_interval_s": 0}),
        json!({"id": "x", "required_interval_s": -5}),
        json!({"id": "x", "group": "missing-group"}),
        json!({"id": "x", "group": "bad group"}),
        json!({"id": "x", "name": "line\nbreak"}),
        json!({"id": 42}),
        json!({"name": "no id"}),
        json!([]),
    ];
    for body in bad_bodies {
        let (status, answer) = h.post("/api/v1/devices", &admin, body.clone()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, _, text) = raw(&h, Method::POST, "/api/v1/devices", &admin, "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");

    for path in [
        "/api/v1/devices/bad%20id",
        "/api/v1/devices/bad%20id/tokens",
        "/api/v1/devices/bad%20id/certificates",
        "/api/v1/devices?cursor=%21%21%21",
        "/api/v1/devices?limit=0",
        "/api/v1/devices?limit=abc",
        "/api/v1/devices?group=bad%20group",
    ] {
        let (status, answer) = h.get(path, &admin).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, answer) = h.post("/api/v1/devices/bad%20id/revoke", &admin, json!({})).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, answer) = delete(&h, "/api/v1/devices/ok/tokens/not-hex!", &admin).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");

    // Over 1 MiB: 413 before anything is stored.
    let huge = json!({"id": "huge", "attributes": {"blob": "x".repeat(1_100_000)}});
    let (status, answer) = h.post("/api/v1/devices", &admin, huge).await;
    assert_error(status, &answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let (status, _) = h.get("/api/v1/devices/huge", &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No token, a tampered token, an expired token.
    let (status, answer) = h.call(Method::GET, "/api/v1/devices", None, None).await;
    assert_error(status, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
    let mut tampered = admin.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let (status, answer) = h.get("/api/v1/devices", &tampered).await;
    assert_error(status, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
    // A token past its expiry, on a platform whose clock moved on by an hour.
    let clock = rampart_testkit::fixture::FakeClock::at(h.platform.now_ms());
    let later = Harness::with_clock(clock.clone()).await;
    let token = later.tenant("acme").await;
    assert_eq!(later.get("/api/v1/devices", &token).await.0, StatusCode::OK);
    clock.advance_ms(3_600_000);
    let (status, answer) = later.get("/api/v1/devices", &token).await;
    assert_error(status, &answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn another_tenants_device_is_not_found_on_every_route() {
    let h = Harness::new().await;
    // Through the real tenant and login routes, once, as a black-box client would.
    let acme = h.tenant_admin("acme").await;
    let globex = h.tenant_admin("globex").await;
    let platform_admin = h.admin_token().await;
    create_device(&h, &acme, json!({"id": "dev-a"})).await;
    let (status, token) = h.post("/api/v1/devices/dev-a/tokens", &acme, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let token_id = token["id"].as_str().expect("id").to_owned();
    let key = rcgen::KeyPair::generate().expect("key");
    let request = csr(&key);

    // The parent tenant cannot read its child's data either.
    for intruder in [&globex, &platform_admin] {
        let get_paths = ["/api/v1/devices/dev-a", "/api/v1/devices/dev-a/tokens", "/api/v1/devices/dev-a/certificates"];
        for path in get_paths {
            let (status, answer) = h.get(path, intruder).await;
            assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        }
        let (status, answer) = patch(&h, "/api/v1/devices/dev-a", intruder, json!({"name": "mine"})).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        for path in ["/api/v1/devices/dev-a/revoke", "/api/v1/devices/dev-a/reinstate", "/api/v1/devices/dev-a/tokens"]
        {
            let (status, answer) = h.post(path, intruder, json!({})).await;
            assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        }
        let (status, answer) = h.post("/api/v1/devices/dev-a/certificates", intruder, json!({"csr": request})).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        let (status, answer) = delete(&h, &format!("/api/v1/devices/dev-a/tokens/{token_id}"), intruder).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        let (status, answer) = delete(&h, "/api/v1/devices/dev-a", intruder).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        let (_, answer) = h.get("/api/v1/devices", intruder).await;
        assert!(!ids(&answer).contains(&"dev-a".to_owned()), "{answer}");
        // And nothing about acme in the intruder's audit log.
        let (_, audit) = h.get("/api/v1/audit?limit=1000", intruder).await;
        assert!(!audit.to_string().contains("dev-a"), "{audit}");
    }

    // The same id in another tenant is another device.
    create_device(&h, &globex, json!({"id": "dev-a", "name": "Globex A"})).await;
    let (status, answer) = h.get("/api/v1/devices/dev-a", &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["name"], "dev-a", "acme's device is untouched");
    assert_eq!(answer["status"], "registered");
    let (_, tokens) = h.get("/api/v1/devices/dev-a/tokens", &acme).await;
    assert_eq!(tokens["items"].as_array().map(Vec::len), Some(1));
    let (_, tokens) = h.get("/api/v1/devices/dev-a/tokens", &globex).await;
    assert_eq!(tokens["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn group_scoped_user_sees_only_devices_in_their_groups() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    // Groups and the scoped user through the API, as an operator of the platform would.
    for body in [json!({"id": "north"}), json!({"id": "north-a", "parent": "north"}), json!({"id": "south"})] {
        let (status, answer) = h.post("/api/v1/groups", &admin, body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    for (id, group) in
        [("d-north", Some("north")), ("d-north-a", Some("north-a")), ("d-south", Some("south")), ("d-none", None)]
    {
        create_device(&h, &admin, json!({"id": id, "group": group})).await;
    }
    let password = "Long-scoped-passphrase-77";
    let body = json!({"username": "olga", "password": password, "roles": ["operator"], "groups": ["north"]});
    let (status, answer) = h.post("/api/v1/users", &admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let operator = h.login("acme", "olga", password).await;

    let (status, answer) = h.get("/api/v1/devices", &operator).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(ids(&answer), ["d-north", "d-north-a"]);
    let (_, answer) = h.get("/api/v1/devices?group=south", &operator).await;
    assert_eq!(ids(&answer), Vec::<String>::new());
    let (status, _) = h.get("/api/v1/devices/d-north-a", &operator).await;
    assert_eq!(status, StatusCode::OK, "sub-groups are in scope");

    for outside in ["d-south", "d-none"] {
        let path = format!("/api/v1/devices/{outside}");
        let (status, answer) = h.get(&path, &operator).await;
        assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
        let (status, _) = patch(&h, &path, &operator, json!({"name": "x"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = delete(&h, &path, &operator).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        for sub in ["revoke", "tokens"] {
            let (status, _) = h.post(&format!("{path}/{sub}"), &operator, json!({})).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
        }
        let (status, _) = h.get(&format!("{path}/certificates"), &operator).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // Registering outside the scope, or moving a device out of it, is refused.
    for body in
        [json!({"id": "d-new", "group": "south"}), json!({"id": "d-new"}), json!({"id": "d-new", "group": "ghost"})]
    {
        let (status, answer) = h.post("/api/v1/devices", &operator, body).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    create_device(&h, &operator, json!({"id": "d-new", "group": "north-a"})).await;
    for body in [json!({"group": "south"}), json!({"group": null})] {
        let (status, answer) = patch(&h, "/api/v1/devices/d-north", &operator, body).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, _) = h.post("/api/v1/devices/d-north/tokens", &operator, json!({})).await;
    assert_eq!(status, StatusCode::CREATED);

    // Tenant-wide trust anchors are not for a group-scoped caller.
    let (status, answer) = h.post("/api/v1/ca/trusted", &operator, json!({"certificate": test_ca("Olga CA").0})).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn device_tokens_are_random_hashed_several_and_deletable() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    let viewer = h.user("acme", "vera", &["viewer"], &[]).await;
    create_device(&h, &admin, json!({"id": "meter-7"})).await;

    let (status, first) = h.post("/api/v1/devices/meter-7/tokens", &admin, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, second) = h.post("/api/v1/devices/meter-7/tokens", &admin, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_ne!(first["id"], second["id"]);
    assert_ne!(first["token"], second["token"]);
    let mut secrets = Vec::new();
    for issued in [&first, &second] {
        let token = issued["token"].as_str().expect("token");
        let random = URL_SAFE_NO_PAD.decode(token.strip_prefix("rdt_").expect("rdt_ prefix")).expect("base64url");
        assert!(random.len() * 8 >= 128, "only {} random bits", random.len() * 8);
        assert!(issued["created_at"].is_string());
        secrets.push(token.to_owned());
    }

    // Stored as SHA-256 only.
    let stored = h.store.list_device_tokens("acme", "meter-7").await.expect("tokens");
    assert_eq!(stored.len(), 2);
    for secret in &secrets {
        assert!(stored.iter().any(|row| row.token_hash == sha256(secret.as_bytes())));
        assert!(stored.iter().all(|row| row.token_hash != secret.as_bytes()));
    }

    let (status, listed) = h.get("/api/v1/devices/meter-7/tokens", &viewer).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|item| item.get("token").is_none() && item["id"].is_string() && item["created_at"].is_string())
    );
    assert!(!listed.to_string().contains("rdt_"));

    // A viewer may not issue or delete tokens; the refusal is audited.
    let (status, answer) = h.post("/api/v1/devices/meter-7/tokens", &viewer, json!({})).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    let path = format!("/api/v1/devices/meter-7/tokens/{}", first["id"].as_str().expect("id"));
    let (status, _) = delete(&h, &path, &viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let denied = audit_records(&h, &admin, "access.denied").await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["actor"]["id"], "vera");
    assert_eq!(denied[0]["outcome"], "failure");

    let (status, _) = delete(&h, &path, &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = delete(&h, &path, &admin).await;
    assert_error(status, &answer, StatusCode::NOT_FOUND, "not_found");
    let (_, listed) = h.get("/api/v1/devices/meter-7/tokens", &admin).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["items"][0]["id"], second["id"]);

    // The audit log names token ids, never the secrets.
    assert_eq!(audit_records(&h, &admin, "device_token.create").await.len(), 2);
    assert_eq!(audit_records(&h, &admin, "device_token.delete").await.len(), 1);
    let (_, audit) = h.get("/api/v1/audit?limit=1000", &admin).await;
    for secret in &secrets {
        assert!(!audit.to_string().contains(secret.as_str()));
    }
}

#[tokio::test]
async fn certificates_are_issued_from_csrs_and_weak_keys_are_refused() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    create_device(&h, &admin, json!({"id": "cam-1"})).await;

    let (status, headers, ca_pem) = raw(&h, Method::GET, "/api/v1/ca", &admin, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-pem-file");
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"), "{ca_pem}");

    let key = rcgen::KeyPair::generate().expect("key");
    let (status, issued) = h.post("/api/v1/devices/cam-1/certificates", &admin, json!({"csr": csr(&key)})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["ca_chain"], ca_pem.as_str());
    assert!(issued["not_after"].as_str().is_some_and(|t| t.ends_with('Z')));
    let serial = issued["serial"].as_str().expect("serial").to_owned();

    let certificate = issued["certificate"].as_str().expect("certificate");
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
    assert_eq!(cn, Some("cam-1"));
    let san = cert.subject_alternative_name().expect("SAN parses").expect("SAN present");
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["urn:rampart:acme:cam-1"]);
    let cert_serial: String = cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(strip_zeros(&cert_serial), strip_zeros(&serial));
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("CA PEM");
    assert_eq!(cert.issuer(), ca.parse_x509().expect("CA").subject());

    let (status, listed) = h.get("/api/v1/devices/cam-1/certificates", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["items"][0]["serial"], serial.as_str());
    assert_eq!(listed["items"][0]["revoked_at"], Value::Null);

    let (status, answer) = h.post("/api/v1/devices/cam-1/certificates", &admin, json!({"csr": RSA_1024_CSR})).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(answer["message"], "RSA keys under 2048 bits are refused");

    let garbage = [
        json!({"csr": "hello"}),
        json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
        json!({"csr": ca_pem}),
        json!({"csr": "x".repeat(100_000)}),
        json!({"csr": 5}),
        json!({}),
        json!({"csr": csr(&key), "extra": true}),
    ];
    for body in garbage {
        let (status, answer) = h.post("/api/v1/devices/cam-1/certificates", &admin, body).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (_, listed) = h.get("/api/v1/devices/cam-1/certificates", &admin).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1), "nothing stored for refused requests");

    let issues = audit_records(&h, &admin, "certificate.issue").await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["details"]["serial"], serial.as_str());
}

#[tokio::test]
async fn revoke_removes_credentials_and_lists_certificates_in_the_crl() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    create_device(&h, &admin, json!({"id": "gw-1"})).await;
    for _ in 0..2 {
        let (status, _) = h.post("/api/v1/devices/gw-1/tokens", &admin, json!({})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let key = rcgen::KeyPair::generate().expect("key");
    let (status, issued) = h.post("/api/v1/devices/gw-1/certificates", &admin, json!({"csr": csr(&key)})).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let serial = issued["serial"].as_str().expect("serial").to_owned();

    let (status, answer) = h.post("/api/v1/devices/gw-1/reinstate", &admin, json!({})).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "conflict");

    let (status, revoked) = h.post("/api/v1/devices/gw-1/revoke", &admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["id"], "gw-1");
    let (_, tokens) = h.get("/api/v1/devices/gw-1/tokens", &admin).await;
    assert_eq!(tokens["items"].as_array().map(Vec::len), Some(0));
    let (_, certs) = h.get("/api/v1/devices/gw-1/certificates", &admin).await;
    assert!(certs["items"][0]["revoked_at"].is_string(), "{certs}");

    let (status, headers, crl_pem) = raw(&h, Method::GET, "/api/v1/ca/crl", &admin, "").await;
    assert_eq!(status, StatusCode::OK, "{crl_pem}");
    assert_eq!(headers["content-type"], "application/x-pem-file");
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).expect("CRL PEM");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("CRL");
    let listed: Vec<String> =
        crl.iter_revoked_certificates().map(|r| r.raw_serial().iter().map(|b| format!("{b:02x}")).collect()).collect();
    assert!(listed.iter().any(|s| strip_zeros(s) == strip_zeros(&serial)), "{listed:?} lacks {serial}");
    let first_number = h.store.get_tenant_ca("acme").await.expect("ca").crl_number;
    raw(&h, Method::GET, "/api/v1/ca/crl", &admin, "").await;
    let second_number = h.store.get_tenant_ca("acme").await.expect("ca").crl_number;
    assert!(first_number >= 1 && second_number > first_number, "{first_number} then {second_number}");

    // A revoked device gets no new credentials.
    let (status, answer) = h.post("/api/v1/devices/gw-1/tokens", &admin, json!({})).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "conflict");
    let (status, answer) = h.post("/api/v1/devices/gw-1/certificates", &admin, json!({"csr": csr(&key)})).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "conflict");
    let (status, answer) = patch(&h, "/api/v1/devices/gw-1", &admin, json!({"status": "registered"})).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");

    // Reinstated: back to registered (never connected), with no credential.
    let (status, answer) = h.post("/api/v1/devices/gw-1/reinstate", &admin, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "registered");
    let (_, tokens) = h.get("/api/v1/devices/gw-1/tokens", &admin).await;
    assert_eq!(tokens["items"].as_array().map(Vec::len), Some(0));
    let (status, _) = h.post("/api/v1/devices/gw-1/reinstate", &admin, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A device that once connected comes back as active.
    let seen = rampart_store::DeviceSeen { tenant: "acme".into(), device: "gw-1".into(), at_ms: h.platform.now_ms() };
    h.store.touch_devices_last_seen(&[seen]).await.expect("seen");
    h.post("/api/v1/devices/gw-1/revoke", &admin, json!({})).await;
    let (status, answer) = h.post("/api/v1/devices/gw-1/reinstate", &admin, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["status"], "active");
    assert!(answer["last_seen"].is_string());

    // A deleted device's certificate stays revoked in the CRL.
    let (status, issued) = h.post("/api/v1/devices/gw-1/certificates", &admin, json!({"csr": csr(&key)})).await;
    assert_eq!(status, StatusCode::CREATED);
    let second_serial = issued["serial"].as_str().expect("serial").to_owned();
    delete(&h, "/api/v1/devices/gw-1", &admin).await;
    let (_, _, crl_pem) = raw(&h, Method::GET, "/api/v1/ca/crl", &admin, "").await;
    let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).expect("CRL PEM");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).expect("CRL");
    let listed: Vec<String> =
        crl.iter_revoked_certificates().map(|r| r.raw_serial().iter().map(|b| format!("{b:02x}")).collect()).collect();
    assert!(listed.iter().any(|s| strip_zeros(s) == strip_zeros(&second_serial)));

    assert_eq!(audit_records(&h, &admin, "device.revoke").await.len(), 2);
    assert_eq!(audit_records(&h, &admin, "device.reinstate").await.len(), 2);
}

/// A self-signed CA certificate (PEM) and its subject CN.
fn test_ca(cn: &str) -> (String, String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    (params.self_signed(&key).expect("self-signed").pem(), cn.to_owned(), key)
}

/// Proof of possession of the CA's key: a certificate with CN = a fresh registration code,
/// signed by the CA.
async fn verification_certificate(h: &Harness, token: &str, ca_pem: &str, ca_key: &rcgen::KeyPair) -> String {
    let (status, code) = h.get("/api/v1/ca/trusted/registration-code", token).await;
    assert_eq!(status, StatusCode::OK, "{code}");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, code["code"].as_str().expect("code"));
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key).expect("issuer");
    params.signed_by(&key, &issuer).expect("verification").pem()
}

#[tokio::test]
async fn trusted_cas_are_added_listed_and_deleted_and_leaves_refused() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    let globex = h.tenant("globex").await;
    let viewer = h.user("acme", "vera", &["viewer"], &[]).await;
    let (ca_pem, cn, ca_key) = test_ca("Acme Factory CA");
    let verification = verification_certificate(&h, &admin, &ca_pem, &ca_key).await;
    let body = json!({"certificate": ca_pem, "verification_certificate": verification, "auto_register": true});
    let (status, created) = h.post("/api/v1/ca/trusted", &admin, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["subject"].as_str().is_some_and(|s| s.contains(&cn)), "{created}");
    assert_eq!(created["auto_register"], true);
    assert!(created["not_after"].is_string());
    assert!(created["created_at"].is_string());
    let fingerprint = created["fingerprint_sha256"].as_str().expect("fingerprint");
    assert_eq!(fingerprint.len(), 64);
    let id = created["id"].as_str().expect("id").to_owned();

    let verification = verification_certificate(&h, &admin, &ca_pem, &ca_key).await;
    let body = json!({"certificate": ca_pem, "verification_certificate": verification, "auto_register": false});
    let (status, answer) = h.post("/api/v1/ca/trusted", &admin, body).await;
    assert_error(status, &answer, StatusCode::CONFLICT, "conflict");

    let (status, listed) = h.get("/api/v1/ca/trusted", &viewer).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["items"][0], created);
    let (_, other) = h.get("/api/v1/ca/trusted", &globex).await;
    assert_eq!(other["items"].as_array().map(Vec::len), Some(0));
    let (status, _) = delete(&h, &format!("/api/v1/ca/trusted/{id}"), &globex).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A leaf certificate, a device certificate, garbage: not CAs.
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["leaf.example".to_owned()])
        .expect("params")
        .self_signed(&leaf_key)
        .expect("leaf");
    let (_, issued) = {
        create_device(&h, &admin, json!({"id": "cam-9"})).await;
        h.post("/api/v1/devices/cam-9/certificates", &admin, json!({"csr": csr(&leaf_key)})).await
    };
    for certificate in [leaf.pem(), issued["certificate"].as_str().expect("cert").to_owned(), "garbage".to_owned()] {
        let body =
            json!({"certificate": certificate, "verification_certificate": verification, "auto_register": false});
        let (status, answer) = h.post("/api/v1/ca/trusted", &admin, body).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let (status, answer) = h.post("/api/v1/ca/trusted", &viewer, json!({"certificate": test_ca("V").0})).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");

    let (status, answer) = delete(&h, "/api/v1/ca/trusted/not-an-id!", &admin).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, _) = delete(&h, &format!("/api/v1/ca/trusted/{id}"), &admin).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = delete(&h, &format!("/api/v1/ca/trusted/{id}"), &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = h.get("/api/v1/ca/trusted", &admin).await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));

    let created_records = audit_records(&h, &admin, "trusted_ca.create").await;
    assert_eq!(created_records.len(), 1);
    assert_eq!(created_records[0]["details"]["fingerprint_sha256"], fingerprint);
    assert_eq!(audit_records(&h, &admin, "trusted_ca.delete").await.len(), 1);
}

#[tokio::test]
async fn audit_log_lists_filters_verifies_and_needs_audit_read() {
    let h = Harness::new().await;
    let admin = h.tenant("acme").await;
    let viewer = h.user("acme", "vera", &["viewer"], &[]).await;
    let auditor = h.user("acme", "audrey", &["auditor"], &[]).await;
    for i in 0..12 {
        create_device(&h, &admin, json!({"id": format!("d{i:02}")})).await;
        h.post(&format!("/api/v1/devices/d{i:02}/tokens"), &admin, json!({})).await;
    }
    h.post("/api/v1/devices/d00/revoke", &admin, json!({})).await;

    // Refusals are audited as failures.
    for path in ["/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit/public-key"] {
        let (status, answer) = h.get(path, &viewer).await;
        assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    }
    let (status, answer) = h.post("/api/v1/devices", &viewer, json!({"id": "sneaky"})).await;
    assert_error(status, &answer, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = h.get("/api/v1/devices", &auditor).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, all) = h.get("/api/v1/audit?limit=1000", &auditor).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let records = all["items"].as_array().expect("items");
    let count = |action: &str| records.iter().filter(|r| r["action"] == action).count();
    assert_eq!(
        [count("device.create"), count("device_token.create"), count("device.revoke"), count("access.denied")],
        [12, 12, 1, 5]
    );
    for (index, record) in records.iter().enumerate() {
        for field in
            ["seq", "ts", "tenant", "actor", "action", "target", "source_ip", "outcome", "details", "prev_hash", "hash"]
        {
            assert!(record.get(field).is_some(), "{field} missing in {record}");
        }
        assert_eq!(record["tenant"], "acme");
        if index > 0 {
            assert_eq!(record["prev_hash"], records[index - 1]["hash"], "the chain links");
        }
    }
    let denied: Vec<&Value> = records.iter().filter(|r| r["action"] == "access.denied").collect();
    assert_eq!(denied.len(), 5);
    assert!(denied.iter().all(|r| r["outcome"] == "failure"));
    assert!(denied.iter().any(|r| r["actor"]["id"] == "vera" && r["target"] == "audit:read"));
    assert!(denied.iter().any(|r| r["actor"]["id"] == "audrey" && r["target"] == "devices:read"));

    // Filters.
    let (_, created) = h.get("/api/v1/audit?action=device.create", &auditor).await;
    assert_eq!(created["items"].as_array().map(Vec::len), Some(12));
    let (_, by_vera) = h.get("/api/v1/audit?actor=vera", &auditor).await;
    // Her login and her four refusals.
    assert_eq!(by_vera["items"].as_array().map(Vec::len), Some(5));
    let first_ts = records[0]["ts"].as_str().expect("ts");
    let last_ts = records[records.len() - 1]["ts"].as_str().expect("ts");
    let (_, window) = h.get(&format!("/api/v1/audit?from={first_ts}&to={last_ts}&limit=1000"), &auditor).await;
    assert_eq!(window["items"].as_array().map(Vec::len), Some(records.len()));
    let future = h.platform.now_ms() + 3_600_000;
    let (_, later) = h.get(&format!("/api/v1/audit?from={future}"), &auditor).await;
    assert_eq!(later["items"].as_array().map(Vec::len), Some(0));
    let (_, before) = h.get("/api/v1/audit?to=1970-01-01T00:00:01Z", &auditor).await;
    assert_eq!(before["items"].as_array().map(Vec::len), Some(0));
    for bad in ["from=yesterday", "to=2025-13-01T00:00:00Z", "cursor=YWJj", "cursor=%25%25", "limit=0", "action="] {
        let (status, answer) = h.get(&format!("/api/v1/audit?{bad}"), &auditor).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_request");
    }

    // Cursor walk by seq.
    let mut seqs = Vec::new();
    let mut path = "/api/v1/audit?limit=7".to_owned();
    loop {
        let (status, page) = h.get(&path, &auditor).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seqs.extend(page["items"].as_array().expect("items").iter().map(|r| r["seq"].as_i64().expect("seq")));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/audit?limit=7&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().expect("seq")).collect();
    assert_eq!(seqs, expected);

    let (status, report) = h.get("/api/v1/audit/verify", &auditor).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    // The verify call itself adds nothing, so the head is the last record listed.
    let (_, all_now) = h.get("/api/v1/audit?limit=1000", &auditor).await;
    let items = all_now["items"].as_array().expect("items");
    let last = items.last().expect("records");
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["records"], items.len());
    assert_eq!(report["head"]["seq"], last["seq"]);
    assert_eq!(report["head"]["hash"], last["hash"]);

    let (status, key) = h.get("/api/v1/audit/public-key", &auditor).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(key["algorithm"], "ed25519");
    let raw_key = STANDARD.decode(key["public_key"].as_str().expect("public_key")).expect("base64");
    assert_eq!(raw_key.len(), 32);

    // No route changes or deletes audit records.
    for method in [Method::DELETE, Method::PUT, Method::PATCH, Method::POST] {
        let (status, _) = h.call(method, "/api/v1/audit", Some(&admin), Some(json!({}))).await;
        assert!(status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND, "{status}");
    }
}

#[test]
fn openapi_describes_every_device_credential_and_audit_route() {
    let document = serde_json::to_value(rampart_api::openapi()).expect("OpenAPI JSON");
    let expected = [
        ("/api/v1/devices", ["get", "post"].as_slice()),
        ("/api/v1/devices/{id}", &["get", "patch", "delete"]),
        ("/api/v1/devices/{id}/revoke", &["post"]),
        ("/api/v1/devices/{id}/reinstate", &["post"]),
        ("/api/v1/devices/{id}/tokens", &["get", "post"]),
        ("/api/v1/devices/{id}/tokens/{token_id}", &["delete"]),
        ("/api/v1/devices/{id}/certificates", &["get", "post"]),
        ("/api/v1/ca", &["get"]),
        ("/api/v1/ca/crl", &["get"]),
        ("/api/v1/ca/trusted", &["get", "post"]),
        ("/api/v1/ca/trusted/{id}", &["delete"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/audit/verify", &["get"]),
        ("/api/v1/audit/public-key", &["get"]),
    ];
    for (path, methods) in expected {
        for method in methods {
            let operation = &document["paths"][path][method];
            assert!(operation.is_object(), "{method} {path} missing from the OpenAPI document");
            assert!(operation["security"].is_array(), "{method} {path} does not declare bearer auth");
        }
    }
}

#[test]
fn openapi_describes_every_device_management_route() {
    let document = serde_json::to_value(rampart_api::openapi()).expect("OpenAPI JSON");
    let expected = [
        ("/api/v1/devices/{id}/operations", ["get", "post"].as_slice()),
        ("/api/v1/operations/{id}", &["get"]),
        ("/api/v1/operations/{id}/cancel", &["post"]),
        ("/api/v1/devices/{id}/twin", &["get"]),
        ("/api/v1/devices/{id}/twin/desired", &["patch"]),
        ("/api/v1/device/operations", &["get"]),
        ("/api/v1/device/operations/{id}", &["put"]),
        ("/api/v1/device/firmware/{id}", &["get"]),
        ("/api/v1/firmware", &["get", "post"]),
        ("/api/v1/firmware/{id}", &["get"]),
        ("/api/v1/firmware/signing-key", &["get"]),
        ("/api/v1/firmware/keys", &["get", "post"]),
        ("/api/v1/firmware/keys/{id}", &["delete"]),
        ("/api/v1/campaigns", &["get", "post"]),
        ("/api/v1/campaigns/{id}", &["get"]),
        ("/api/v1/campaigns/{id}/pause", &["post"]),
        ("/api/v1/campaigns/{id}/resume", &["post"]),
        ("/api/v1/campaigns/{id}/cancel", &["post"]),
        ("/api/v1/advisories", &["get", "post"]),
        ("/api/v1/advisories/exposure", &["get"]),
    ];
    for (path, methods) in expected {
        for method in methods {
            let operation = &document["paths"][path][method];
            assert!(operation.is_object(), "{method} {path} missing from the OpenAPI document");
            assert!(operation["security"].is_array(), "{method} {path} does not declare bearer auth");
        }
    }
    let upload = &document["paths"]["/api/v1/firmware"]["post"]["requestBody"]["content"];
    assert!(upload["multipart/form-data"].is_object(), "the upload is described as multipart: {upload}");
}
