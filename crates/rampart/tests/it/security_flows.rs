//! SPEC §4–§6 over real HTTPS, as a newcomer and as an attacker: MFA with replay protection,
//! lockout, token revocation, API keys, roles, group scope, certificates and the CRL.

use rustls_pki_types::pem::PemObject;
use std::time::{SystemTime, UNIX_EPOCH};

use rampart_crypto::TotpSecret;
use rampart_testkit::{ADMIN_PASSWORD, ServerOptions, TestServer};
use reqwest::Method;
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

use crate::BIN;

pub(crate) fn base32_decode(text: &str) -> Vec<u8> {
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
        }
    }
    out
}

pub(crate) fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

async fn login_raw(server: &TestServer, body: Value) -> (u16, Value) {
    server.call(Method::POST, "/api/v1/auth/login", None, Some(body)).await
}

#[tokio::test]
async fn mfa_enrolment_login_and_replay() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let (status, enrol) = server.post("/api/v1/me/mfa", &acme, json!({})).await;
    assert_eq!(status, 200, "{enrol}");
    assert!(enrol["otpauth_uri"].as_str().is_some_and(|u| u.starts_with("otpauth://totp/Rampart:")), "{enrol}");
    let secret = TotpSecret::from_bytes(&base32_decode(enrol["secret"].as_str().expect("secret"))).expect("secret");
    let code = secret.code_at(now_s());
    let (status, confirmed) = server.post("/api/v1/me/mfa/confirm", &acme, json!({"code": code})).await;
    assert_eq!(status, 200, "{confirmed}");

    let password_only = json!({"tenant": "acme", "username": "admin", "password": ADMIN_PASSWORD});
    let (status, body) = login_raw(&server, password_only).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("mfa_required")));
    // The confirmation code was used: it cannot log in (replay).
    let replay = json!({"tenant": "acme", "username": "admin", "password": ADMIN_PASSWORD, "totp": code});
    assert_eq!(login_raw(&server, replay).await.0, 401);
    // The next step's code works once.
    let next = secret.code_at(now_s() + 30);
    let fresh = json!({"tenant": "acme", "username": "admin", "password": ADMIN_PASSWORD, "totp": next});
    assert_eq!(login_raw(&server, fresh.clone()).await.0, 200);
    assert_eq!(login_raw(&server, fresh).await.0, 401, "a used code is not accepted twice");
}

#[tokio::test]
async fn lockout_and_token_revocation() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let user = json!({"username": "olga", "password": ADMIN_PASSWORD, "roles": ["operator"]});
    assert_eq!(server.post("/api/v1/users", &acme, user).await.0, 201);
    let olga = server.login("acme", "olga", ADMIN_PASSWORD).await;
    assert_eq!(server.get("/api/v1/devices", &olga).await.0, 200);

    // A role change kills the old token at once.
    let patch = json!({"roles": ["viewer"]});
    let (status, _) = server.call(Method::PATCH, "/api/v1/users/olga", Some(&acme), Some(patch)).await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/api/v1/devices", &olga).await.0, 401);

    // Five failures lock the account; the right password is then refused too.
    for _ in 0..5 {
        let wrong = json!({"tenant": "acme", "username": "olga", "password": "wrong-password-123"});
        assert_eq!(login_raw(&server, wrong).await.0, 401);
    }
    let right = json!({"tenant": "acme", "username": "olga", "password": ADMIN_PASSWORD});
    let (status, body) = login_raw(&server, right).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    let (_, audit) = server.get("/api/v1/audit?action=auth.lockout", &acme).await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
}

#[tokio::test]
async fn api_keys_roles_and_group_scope() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    for group in [
        json!({"id": "eu", "name": "EU"}),
        json!({"id": "de", "name": "DE", "parent": "eu"}),
        json!({"id": "us", "name": "US"}),
    ] {
        assert_eq!(server.post("/api/v1/groups", &acme, group).await.0, 201);
    }
    for (id, group) in [("berlin-1", "de"), ("ny-1", "us")] {
        assert_eq!(server.post("/api/v1/devices", &acme, json!({"id": id, "group": group})).await.0, 201);
    }
    // An API key with the viewer role reads devices but cannot write.
    let (status, key) = server.post("/api/v1/api-keys", &acme, json!({"name": "dashboard", "roles": ["viewer"]})).await;
    assert_eq!(status, 201, "{key}");
    let api_key = key["key"].as_str().expect("key").to_owned();
    assert_eq!(server.get("/api/v1/devices", &api_key).await.1["items"].as_array().map(Vec::len), Some(2));
    let (status, body) = server.post("/api/v1/devices", &api_key, json!({"id": "x"})).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (_, denied) = server.get("/api/v1/audit?action=access.denied", &acme).await;
    assert!(!denied["items"].as_array().expect("items").is_empty(), "403 is audited");
    let path = format!("/api/v1/api-keys/{}", key["id"].as_str().expect("id"));
    assert_eq!(server.call(Method::DELETE, &path, Some(&acme), None).await.0, 204);
    assert_eq!(server.get("/api/v1/devices", &api_key).await.0, 401, "a revoked key stops working");

    // A user scoped to "eu" sees berlin-1 (in eu/de) and nothing of "us".
    let user = json!({"username": "erik", "password": ADMIN_PASSWORD, "roles": ["operator"], "groups": ["eu"]});
    assert_eq!(server.post("/api/v1/users", &acme, user).await.0, 201);
    let erik = server.login("acme", "erik", ADMIN_PASSWORD).await;
    let (_, listing) = server.get("/api/v1/devices", &erik).await;
    let ids: Vec<&str> = listing["items"].as_array().expect("items").iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids, ["berlin-1"]);
    assert_eq!(server.get("/api/v1/devices/ny-1", &erik).await.0, 404);
    assert_eq!(server.post("/api/v1/devices/ny-1/tokens", &erik, json!({})).await.0, 404);
}

#[tokio::test]
async fn certificates_crl_and_trusted_cas() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    assert_eq!(server.post("/api/v1/devices", &acme, json!({"id": "cam-1"})).await.0, 201);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["ignored.example".to_owned()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "someone-else");
    let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
    let (status, issued) = server.post("/api/v1/devices/cam-1/certificates", &acme, json!({"csr": csr})).await;
    assert_eq!(status, 201, "{issued}");
    let pem = issued["certificate"].as_str().expect("certificate");
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    let cert = der.parse_x509().expect("x509");
    let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
    assert_eq!(cn, Some("cam-1"), "the CN is the device id, whatever the CSR asked");
    let san = cert.subject_alternative_name().expect("san").expect("san present");
    let uris: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["urn:rampart:acme:cam-1"]);

    // Garbage and weak input are refused with a clear error.
    let (status, body) = server.post("/api/v1/devices/cam-1/certificates", &acme, json!({"csr": "garbage"})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

    // Revocation puts the serial in the CRL.
    assert_eq!(server.post("/api/v1/devices/cam-1/revoke", &acme, json!({})).await.0, 200);
    let crl = server.client.get(server.url("/api/v1/ca/crl")).bearer_auth(&acme).send().await.expect("crl");
    assert_eq!(crl.status().as_u16(), 200);
    let crl_pem = crl.text().await.expect("crl text");
    let (_, crl_der) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).expect("crl pem");
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&crl_der.contents).expect("crl");
    let serial = issued["serial"].as_str().expect("serial").to_owned();
    assert!(parsed.iter_revoked_certificates().any(|r| hex_serial(r.raw_serial()) == serial), "serial {serial} in CRL");

    // A trusted external CA: a CA certificate is accepted, a leaf is refused.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Factory CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), &ca_key).expect("issuer");
    let verification = verification_certificate(&server, &acme, &issuer).await;
    let body = json!({"certificate": ca.pem(), "verification_certificate": verification, "auto_register": true});
    let (status, trusted) = server.post("/api/v1/ca/trusted", &acme, body).await;
    assert_eq!(status, 201, "{trusted}");
    // The leaf's key proves possession of the leaf, which is still no CA.
    let leaf = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("leaf der");
    let issuer = rcgen::Issuer::from_ca_cert_der(&leaf, &key).expect("issuer");
    let verification = verification_certificate(&server, &acme, &issuer).await;
    let body = json!({"certificate": pem, "verification_certificate": verification, "auto_register": false});
    let (status, body) = server.post("/api/v1/ca/trusted", &acme, body).await;
    assert_eq!(status, 400, "a leaf certificate is not a CA: {body}");
}

/// A certificate whose CN is a fresh registration code of the tenant, signed by `issuer`: the
/// proof that the caller holds the key of the CA it asks to trust.
async fn verification_certificate(
    server: &TestServer,
    token: &str,
    issuer: &rcgen::Issuer<'_, &rcgen::KeyPair>,
) -> String {
    let (status, code) = server.get("/api/v1/ca/trusted/registration-code", token).await;
    assert_eq!(status, 200, "{code}");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, code["code"].as_str().expect("code"));
    params.signed_by(&key, issuer).expect("signed").pem()
}

fn hex_serial(raw: &[u8]) -> String {
    let trimmed: Vec<u8> = raw.iter().copied().skip_while(|b| *b == 0).collect();
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn require_mfa_policy_allows_only_enrolment() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let (status, policy) =
        server.call(Method::PUT, "/api/v1/tenant/policy", Some(&acme), Some(json!({"require_mfa": true}))).await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["require_mfa"], true);
    let (status, body) = server.get("/api/v1/devices", &acme).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("mfa_required")));
    assert_eq!(server.get("/api/v1/me", &acme).await.0, 200);
    assert_eq!(server.post("/api/v1/me/mfa", &acme, json!({})).await.0, 200);
}
