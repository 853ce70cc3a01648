//! TLS to PostgreSQL: with `RAMPART_TEST_POSTGRES` set, the local server runs `ssl = on` with
//! Debian's snakeoil certificate. A store asked for TLS connects encrypted (the server's own
//! `pg_stat_ssl` says so), verification really happens (a root that did not sign the server's
//! certificate, or a host the certificate does not name, is refused), and no refusal echoes
//! the URL's password.

use rampart_store::StoreError;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::support::*;

const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
/// A bundle of public roots, none of which signed the snakeoil certificate.
const PUBLIC_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
const PASSWORD: &str = "not-a-real-password-7Qx";

/// The suite's server URL and the snakeoil certificate, or why the test cannot run.
fn server_and_snakeoil() -> Option<String> {
    let Some(url) = postgres_url() else {
        println!("PostgreSQL TLS skipped: {POSTGRES_ENV} is not set");
        return None;
    };
    if !std::path::Path::new(SNAKEOIL).exists() {
        println!("PostgreSQL TLS skipped: {SNAKEOIL} is missing (Debian's ssl-cert package makes it)");
        return None;
    }
    Some(url)
}

/// `url` with `params` appended to its query string.
fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// `url` with its host replaced (and a password set when `password` is given).
fn with_host(url: &str, host: &str, password: Option<&str>) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (Some(user.split(':').next().unwrap_or(user)), host_port),
        None => (None, authority),
    };
    let port = host_port.rsplit_once(':').map(|(_, port)| port).filter(|port| port.chars().all(|c| c.is_ascii_digit()));
    let user = match (user, password) {
        (Some(user), Some(password)) => format!("{user}:{password}@"),
        (Some(user), None) => format!("{user}@"),
        (None, Some(password)) => format!("postgres:{password}@"),
        (None, None) => String::new(),
    };
    let port = port.map(|port| format!(":{port}")).unwrap_or_default();
    format!("{scheme}://{user}{host}{port}{tail}")
}

/// Whether the server connection named `application_name` is encrypted, as the server sees
/// it (`None` when no such connection is open).
async fn encrypted(url: &str, application_name: &str) -> Option<bool> {
    let admin = raw_postgres(url, None).await;
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name = $1",
            &[&application_name],
        )
        .await
        .expect("pg_stat_ssl");
    let flags: Vec<bool> = rows.iter().map(|row| row.get(0)).collect();
    (!flags.is_empty()).then(|| flags.iter().all(|flag| *flag))
}

/// The error opening a store at `url` in a fresh schema.
async fn open_error(url: &str, schema: &str) -> String {
    match rampart_store::open_postgres_in_schema(url, schema).await {
        Ok(_) => panic!("connected, but the connection should have been refused"),
        Err(StoreError::Backend(message)) => message,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_asked_for_tls_connects_encrypted() {
    let Some(url) = server_and_snakeoil() else { return };
    on_postgres("tls connects", &url.clone(), |raw| async move {
        let Raw::Postgres { schema, .. } = &raw else { unreachable!("a PostgreSQL location") };
        let name = format!("{schema}_tls");
        let tls_url = with_params(&url, &format!("sslmode=require&sslrootcert={SNAKEOIL}&application_name={name}"));
        let store = rampart_store::open_postgres_in_schema(&tls_url, schema).await.expect("TLS with the snakeoil root");
        store.ping().await.expect("ping");
        create_tenant(&*store, "over-tls").await;
        assert_eq!(store.get_tenant("over-tls").await.expect("read back").id, "over-tls");
        assert_eq!(encrypted(&url, &name).await, Some(true), "the server sees an encrypted connection");

        // The control: without sslmode the same check sees a clear-text connection.
        let plain_name = format!("{schema}_plain");
        let plain_url = with_params(&url, &format!("application_name={plain_name}"));
        let plain = rampart_store::open_postgres_in_schema(&plain_url, schema).await.expect("clear text");
        plain.ping().await.expect("ping");
        assert_eq!(encrypted(&url, &plain_name).await, Some(false));
        let disabled_name = format!("{schema}_disabled");
        let disabled = with_params(&url, &format!("sslmode=disable&application_name={disabled_name}"));
        let disabled = rampart_store::open_postgres_in_schema(&disabled, schema).await.expect("disable");
        disabled.ping().await.expect("ping");
        assert_eq!(encrypted(&url, &disabled_name).await, Some(false));
        drop(store);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_that_the_certificate_names_the_host() {
    let Some(url) = server_and_snakeoil() else { return };
    on_postgres("tls verify-full", &url.clone(), |raw| async move {
        let Raw::Postgres { schema, .. } = &raw else { unreachable!("a PostgreSQL location") };
        // The snakeoil certificate names the machine (`localhost` or its hostname), never 127.0.0.1.
        let by_address = with_host(&url, "127.0.0.1", Some(PASSWORD));
        let refused =
            open_error(&with_params(&by_address, &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}")), schema).await;
        // The message names the TLS handshake (see the report: the driver drops rustls's reason);
        // that it is the name, not the chain, shows verify-ca passing on the same address below.
        assert!(refused.contains("TLS"), "a refused handshake is reported: {refused}");
        assert!(!refused.contains(PASSWORD), "{refused}");
        // verify-ca (and require) check the chain only, so the same address is fine.
        let verify_ca = with_params(&by_address, &format!("sslmode=verify-ca&sslrootcert={SNAKEOIL}"));
        let store =
            rampart_store::open_postgres_in_schema(&verify_ca, schema).await.expect("verify-ca ignores the name");
        store.ping().await.expect("ping");

        // A name the certificate holds passes verify-full.
        let pem = std::fs::read(SNAKEOIL).expect("snakeoil");
        let der = CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
        let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_owned();
        let named = ["localhost", hostname.as_str()]
            .into_iter()
            .find(|name| !name.is_empty() && der.as_ref().windows(name.len()).any(|window| window == name.as_bytes()));
        match named {
            Some(name) => {
                let by_name =
                    with_params(&with_host(&url, name, None), &format!("sslmode=verify-full&sslrootcert={SNAKEOIL}"));
                let store = rampart_store::open_postgres_in_schema(&by_name, schema).await;
                store.unwrap_or_else(|error| panic!("verify-full to {name}: {error}")).ping().await.expect("ping");
            }
            None => {
                println!("verify-full by name skipped: the snakeoil certificate names neither localhost nor {hostname}")
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_that_did_not_sign_the_server_certificate_is_refused() {
    let Some(url) = server_and_snakeoil() else { return };
    if !std::path::Path::new(PUBLIC_ROOTS).exists() {
        println!("skipped: {PUBLIC_ROOTS} is missing");
        return;
    }
    on_postgres("tls foreign root", &url.clone(), |raw| async move {
        let Raw::Postgres { schema, .. } = &raw else { unreachable!("a PostgreSQL location") };
        let with_password = with_host(&url, "127.0.0.1", Some(PASSWORD));
        for mode in ["require", "verify-ca"] {
            let refused =
                open_error(&with_params(&with_password, &format!("sslmode={mode}&sslrootcert={PUBLIC_ROOTS}")), schema)
                    .await;
            assert!(refused.contains("TLS"), "{mode}: {refused}");
            assert!(!refused.contains(PASSWORD), "{mode}: {refused}");
        }
    })
    .await;
}

#[tokio::test]
async fn tls_without_a_root_certificate_is_refused_without_echoing_the_password() {
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:5432/test");
    for params in ["sslmode=require", "sslmode=verify-full", "sslmode=verify-ca", "sslmode=prefer"] {
        let refused = open_error(&with_params(&url, params), "rt_unused").await;
        assert!(!refused.contains(PASSWORD), "{params}: {refused}");
        if params != "sslmode=prefer" {
            assert!(refused.contains("sslrootcert"), "{params}: the message says what is missing: {refused}");
        }
    }
    let missing_file = with_params(&url, "sslmode=require&sslrootcert=/nonexistent/root.pem");
    let refused = open_error(&missing_file, "rt_unused").await;
    assert!(refused.contains("sslrootcert") && !refused.contains(PASSWORD), "{refused}");
}

#[test]
fn urls_are_rewritten_for_the_tls_checks() {
    assert_eq!(
        with_host("postgres://postgres@127.0.0.1:5432/test", "localhost", Some("pw")),
        "postgres://postgres:pw@localhost:5432/test"
    );
    assert_eq!(with_host("postgresql://u:old@db/x?a=b", "127.0.0.1", None), "postgresql://u@127.0.0.1/x?a=b");
    assert_eq!(with_params("postgres://h/db", "sslmode=require"), "postgres://h/db?sslmode=require");
    assert_eq!(with_params("postgres://h/db?a=b", "sslmode=require"), "postgres://h/db?a=b&sslmode=require");
}
