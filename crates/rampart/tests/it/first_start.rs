//! SPEC §1 and §3 through the real process: first start, files and modes, configuration
//! errors, TLS versions, security headers, body limits, shutdown.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use rampart_testkit::{ServerOptions, TestServer};
use serde_json::json;

use crate::BIN;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test]
async fn first_start_creates_private_files_and_a_working_admin() {
    let mut server = TestServer::start(BIN, ServerOptions { generated_password: true, ..Default::default() }).await;
    let data = server.data_dir.clone();
    assert_eq!(mode(&data), 0o700, "data dir mode");
    assert_eq!(mode(&data.join("master.key")), 0o600, "master key mode");
    let password_file = data.join("initial-admin-password");
    assert_eq!(mode(&password_file), 0o600, "password file mode");
    assert!(data.join("tls/ca.pem").is_file());
    let password = std::fs::read_to_string(&password_file).expect("password").trim().to_owned();
    assert!(password.len() >= 16);
    let token = server.login("platform", "admin", &password).await;
    let (status, me) = server.get("/api/v1/me", &token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["tenant"], "platform");
    assert_eq!(me["username"], "admin");

    let log = server.log();
    assert!(log.contains("console https://127.0.0.1:"), "{log}");
    assert!(log.contains(&format!("admin password {}", password_file.display())), "{log}");
    assert!(!log.contains(&password), "the admin password must never be printed");

    let status = server.terminate();
    assert!(status.success(), "SIGTERM must exit 0, got {status}");
    // A restart keeps the admin and does not write a new password.
    server.spawn().await;
    let token = server.login("platform", "admin", &password).await;
    assert_eq!(server.get("/api/v1/me", &token).await.0, 200);
    assert!(!server.log().contains(&password));
}

#[tokio::test]
async fn a_readable_master_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("master.key");
    std::fs::write(&key, "00".repeat(32)).expect("write key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let output = Command::new(BIN)
        .args(["serve", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RAMPART_MASTER_KEY_FILE", &key)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master key"), "{stderr}");
}

#[tokio::test]
async fn unknown_configuration_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("rampart.toml");
    std::fs::write(&config, "http_listen = \"127.0.0.1:0\"\nhttp_lissen = \"x\"\n").expect("write");
    let output = Command::new(BIN).arg("serve").arg("--config").arg(&config).output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("http_lissen"));

    let output = Command::new(BIN).arg("serve").env("RAMPART_HTTP_LISSEN", "x").output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RAMPART_HTTP_LISSEN"));
}

#[tokio::test]
async fn config_file_flags_and_environment_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("rampart.toml");
    // The file asks for a fixed port; the environment overrides it with port 0.
    std::fs::write(&config, "http_listen = \"127.0.0.1:1\"\nlog_format = \"json\"\n").expect("write");
    let options =
        ServerOptions { extra_args: vec!["--config".into(), config.display().to_string()], ..Default::default() };
    let server = TestServer::start(BIN, options).await;
    assert!(!server.http_addr.ends_with(":1"));
    assert!(server.log().contains("\"level\":\"INFO\""), "json logs from the file: {}", server.log());
}

#[tokio::test]
async fn api_answers_carry_security_headers_and_json_errors() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let response = server.client.get(server.url("/api/v1/devices")).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let headers = response.headers().clone();
    assert!(headers.get("strict-transport-security").is_some());
    assert_eq!(headers.get("x-content-type-options").map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
    assert_eq!(headers.get("cache-control").map(|v| v.as_bytes()), Some(&b"no-store"[..]));
    assert!(headers.get("server").is_none(), "no server banner");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized");

    let (status, body) = server.call(reqwest::Method::GET, "/api/v1/nothing-here", None, None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(server.call(reqwest::Method::GET, "/healthz", None, None).await.0, 200);
    assert_eq!(server.call(reqwest::Method::GET, "/readyz", None, None).await.0, 200);
}

/// Sends `head` then `body` over a raw TLS connection and returns the status line of the answer.
async fn raw_https(server: &TestServer, head: String, body: &[u8]) -> String {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pem = std::fs::read(server.data_dir.join("tls/ca.pem")).expect("ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("cert")).expect("add root");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&server.http_addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (and close) before the body is through: that is the point.
    let _ = tls.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn oversized_bodies_answer_413_without_being_read() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let token = server.admin_token().await;
    // 2 GiB announced, 1 KiB sent: only an answer from the header alone can arrive.
    let head = format!(
        "POST /api/v1/devices HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2147483648\r\n\r\n"
    );
    let status = raw_https(&server, head, &[b' '; 1024]).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // Chunked, no length: refused once the stream passes 1 MiB.
    let head = format!(
        "POST /api/v1/devices HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut body = Vec::new();
    for _ in 0..20 {
        body.extend_from_slice(b"10000\r\n");
        body.extend_from_slice(&[b' '; 0x10000]);
        body.extend_from_slice(b"\r\n");
    }
    let status = raw_https(&server, head, &body).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    let (status, body) = server.post("/api/v1/devices", &token, json!({"id": "ok", "bogus": 1})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
}

/// `openssl s_client` must fail to negotiate TLS 1.1 and succeed with TLS 1.2 and 1.3.
#[tokio::test]
async fn only_tls_12_and_13_are_offered() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let Ok(version) = Command::new("openssl").arg("version").output() else {
        println!("skipping: openssl CLI not installed");
        return;
    };
    assert!(version.status.success());
    let handshake = |flag: &str| {
        Command::new("openssl")
            .args(["s_client", "-connect", &server.http_addr, flag, "-CAfile"])
            .arg(server.data_dir.join("tls/ca.pem"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl")
    };
    assert!(handshake("-tls1_3").status.success(), "TLS 1.3");
    assert!(handshake("-tls1_2").status.success(), "TLS 1.2");
    assert!(!handshake("-tls1_1").status.success(), "TLS 1.1 must be refused");
}

#[tokio::test]
async fn openapi_document_lists_the_routes() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let (status, document) = server.call(reqwest::Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/me/mfa",
        "/api/v1/me/mfa/confirm",
        "/api/v1/me/password",
        "/api/v1/tenant/policy",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{id}",
        "/api/v1/tenants",
        "/api/v1/tenants/{id}",
        "/api/v1/roles",
        "/api/v1/groups",
        "/api/v1/users",
        "/api/v1/users/{username}",
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/devices/{id}/tokens",
        "/api/v1/devices/{id}/tokens/{token_id}",
        "/api/v1/devices/{id}/certificates",
        "/api/v1/devices/{id}/revoke",
        "/api/v1/devices/{id}/reinstate",
        "/api/v1/ca",
        "/api/v1/ca/crl",
        "/api/v1/ca/trusted",
        "/api/v1/audit",
        "/api/v1/audit/verify",
        "/api/v1/audit/public-key",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }
}

#[tokio::test]
async fn a_premade_open_data_dir_is_made_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut child = Command::new(BIN)
        .args(["serve", "--http-listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RAMPART_ADMIN_PASSWORD", rampart_testkit::ADMIN_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    while !data.join("endpoints.json").exists() && started.elapsed() < std::time::Duration::from_secs(30) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().ok();
    child.wait().ok();
    assert!(data.join("endpoints.json").exists(), "the server started");
    assert_eq!(mode(&data), 0o700);
}
