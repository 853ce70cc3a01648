//! Temporary measurement tool (not committed): RSS growth per idle TLS connection.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rampart_crypto::{SecretKey256, generate_ca, issue_server_certificate, random_id, random_secret, sha256};
use rampart_data::{IngestSettings, Ingestor};
use rampart_gateway::{Gateway, GatewaySettings, mqtt_server_config};
use rampart_mqtt::{Connect, Packet, Properties, Protocol, encode};
use rampart_platform::{Platform, SystemClock};
use rampart_store::{Device, DeviceToken};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        return client(&args[2], args[3].parse().unwrap(), &args[4], &args[5]).await;
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let store = rampart_store::open_sqlite(&dir.path().join("rampart.db")).await.unwrap();
    let platform = Arc::new(Platform::open(store, SecretKey256::generate(), Arc::new(SystemClock)).await.unwrap());
    platform.provision_tenant("acme", "acme", None).await.unwrap();
    let creds = dir.path().join("creds");
    let mut lines = String::new();
    for i in 0..n {
        let id = format!("d{i}");
        let device = Device { tenant: "acme".into(), id: id.clone(), name: id.clone(), device_type: None, group: None, attributes_json: "{}".into(), required_interval_s: None, status: "registered".into(), connected: false, last_seen: None, last_address: None, firmware: None, created_at: 1 };
        platform.store.create_device(&device).await.unwrap();
        let token = random_secret("rdt_", 32).to_string();
        platform.store.create_device_token(&DeviceToken { tenant: "acme".into(), device: id.clone(), id: random_id(8), token_hash: sha256(token.as_bytes()).to_vec(), created_at: 1 }).await.unwrap();
        lines.push_str(&format!("{id} {token}\n"));
    }
    std::fs::write(&creds, lines).unwrap();
    let ingestor = Ingestor::start(Arc::clone(&platform), IngestSettings::default());
    let ca = generate_ca("x").unwrap();
    let server = issue_server_certificate(&ca.cert_pem, &ca.key_pem, &["localhost".to_owned()]).unwrap();
    let tls = mqtt_server_config(&format!("{}{}", server.cert_pem, ca.cert_pem), &server.key_pem).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let settings = GatewaySettings { listen: SocketAddr::from(([127, 0, 0, 1], 0)), connect_timeout: Duration::from_secs(120), ..GatewaySettings::default() };
    let gateway = Gateway::start(platform.clone(), ingestor, tls, settings).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args(["client", &dir.path().join("ca.pem").display().to_string(), &gateway.local_addr().port().to_string(), &creds.display().to_string(), "x"])
        .spawn().unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = gateway.stats();
        println!("sessions {} rss {} KiB (+{} KiB, {:.1} KiB/conn)", stats.sessions, rss_kib(), rss_kib() - before, (rss_kib() - before) as f64 / stats.sessions.max(1) as f64);
        if stats.sessions >= n || std::env::var("NOCONNECT").is_ok() && rss_kib() - before > 0 && std::path::Path::new("/tmp/idle_done").exists() { break; }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = gateway.stats();
    println!("FINAL sessions {} rss +{} KiB, {:.2} KiB/conn", stats.sessions, rss_kib() - before, (rss_kib() - before) as f64 / stats.sessions.max(1) as f64);
    child.kill().ok();
}

async fn client(ca: &str, port: u16, creds: &str, _x: &str) {
    let ca_pem = std::fs::read_to_string(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) { roots.add(c.unwrap()).unwrap(); }
    let config = Arc::new(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider())).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots).with_no_client_auth());
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut held = Vec::new();
    for line in std::fs::read_to_string(creds).unwrap().lines() {
        let (id, token) = line.split_once(' ').unwrap();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        if std::env::var("NOCONNECT").is_ok() { held.push(tls); continue; }
        let connect = Packet::Connect(Box::new(Connect { protocol: Protocol::V311, clean_start: true, keep_alive: 600, client_id: id.into(), will: None, username: Some(format!("acme/{id}")), password: Some(Bytes::copy_from_slice(token.as_bytes())), properties: Properties::default() }));
        let mut out = BytesMut::new();
        encode(&connect, Protocol::V311, &mut out).unwrap();
        tls.write_all(&out).await.unwrap();
        let mut ack = [0u8; 4];
        tls.read_exact(&mut ack).await.unwrap();
        held.push(tls);
    }
    std::fs::write("/tmp/idle_done", "").unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}
