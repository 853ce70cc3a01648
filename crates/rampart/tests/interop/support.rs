//! Helpers shared by the interop tests: the gateway's address, devices with tokens and
//! certificates made over the REST API, data checks, and finding the outside tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rampart_testkit::TestServer;
use serde_json::{Value, json};

/// The MQTT address from `DATA_DIR/endpoints.json` (SPEC §1). Fails with a clear message while
/// the gateway is not wired into `rampart serve`.
pub(crate) fn mqtt_addr(server: &TestServer) -> String {
    let path = server.data_dir.join("endpoints.json");
    let text = std::fs::read_to_string(&path).expect("endpoints.json");
    let endpoints: Value = serde_json::from_str(&text).expect("endpoints.json is JSON");
    match endpoints["mqtt"].as_str() {
        Some(address) => address.to_owned(),
        None => panic!("the MQTT gateway is not wired into `rampart serve` yet: endpoints.json is {text}"),
    }
}

pub(crate) fn mqtt_port(address: &str) -> String {
    address.rsplit_once(':').map(|(_, port)| port.to_owned()).expect("HOST:PORT")
}

/// The platform CA that signs the server certificate of every listener.
pub(crate) fn ca_pem(server: &TestServer) -> PathBuf {
    server.data_dir.join("tls/ca.pem")
}

/// Registers `device` and returns a fresh token for it.
pub(crate) async fn device_with_token(server: &TestServer, admin: &str, device: &str) -> String {
    let (status, answer) = server.post("/api/v1/devices", admin, json!({"id": device})).await;
    assert!(status == 201 || status == 409, "register {device}: {status} {answer}");
    let (status, answer) = server.post(&format!("/api/v1/devices/{device}/tokens"), admin, json!({})).await;
    assert_eq!(status, 201, "token for {device}: {answer}");
    answer["token"].as_str().expect("token").to_owned()
}

/// A client certificate and key for `device` (registered first), issued by the tenant CA from a
/// CSR made here; written as PEM files into `dir`. Returns (certificate, key) paths.
pub(crate) async fn device_with_certificate(
    server: &TestServer,
    admin: &str,
    device: &str,
    dir: &Path,
) -> (PathBuf, PathBuf) {
    let (status, answer) = server.post("/api/v1/devices", admin, json!({"id": device})).await;
    assert!(status == 201 || status == 409, "register {device}: {status} {answer}");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, device);
    let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
    let (status, issued) =
        server.post(&format!("/api/v1/devices/{device}/certificates"), admin, json!({"csr": csr})).await;
    assert_eq!(status, 201, "certificate for {device}: {issued}");
    let certificate = issued["certificate"].as_str().expect("certificate");
    let chain = issued["ca_chain"].as_str().unwrap_or_default();
    let cert_path = dir.join(format!("{device}.pem"));
    let key_path = dir.join(format!("{device}.key"));
    std::fs::write(&cert_path, format!("{certificate}\n{chain}")).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// Measurements of `device` (SPEC §8), polled until at least `at_least` arrive or 10 s pass.
pub(crate) async fn measurements(
    server: &TestServer,
    admin: &str,
    device: &str,
    series: &str,
    at_least: usize,
) -> Vec<Value> {
    let path = format!("/api/v1/devices/{device}/measurements?series={series}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = server.get(&path, admin).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= at_least || Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Security events of one type (SPEC §10), polled until one arrives or 10 s pass.
pub(crate) async fn security_events(server: &TestServer, admin: &str, event_type: &str) -> Vec<Value> {
    let path = format!("/api/v1/security/events?type={event_type}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = server.get(&path, admin).await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        let items = answer["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() || Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `program` can be started at all (it may still exit non-zero for `--help`).
pub(crate) fn have(program: &str) -> bool {
    Command::new(program).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Runs a command to completion with a time limit, killing it when the limit passes.
pub(crate) fn run_with_timeout(command: &mut Command, limit: Duration) -> Output {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > limit {
            child.kill().ok();
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Same as [`run_with_timeout`] but off the async runtime's worker threads.
pub(crate) async fn run_async(mut command: Command, limit: Duration) -> Output {
    tokio::task::spawn_blocking(move || run_with_timeout(&mut command, limit)).await.expect("join")
}

pub(crate) fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A Python interpreter with paho-mqtt and cryptography: the system one if it has both, else a
/// venv under the test target dir with both installed from PyPI. `None` (reason printed) if
/// neither works.
pub(crate) fn paho_python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let has_paho = |python: &Path| {
                Command::new(python)
                    .args([
                        "-c",
                        "import paho.mqtt.client, paho.mqtt.enums, cryptography.hazmat.primitives.asymmetric.ed25519",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            };
            if let Ok(python) = std::env::var("RAMPART_TEST_PYTHON") {
                let python = PathBuf::from(python);
                return has_paho(&python).then_some(python);
            }
            let system = PathBuf::from("python3");
            if has_paho(&system) {
                return Some(system);
            }
            let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("paho-venv");
            let venv_python = venv.join("bin/python");
            if has_paho(&venv_python) {
                return Some(venv_python);
            }
            let created = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
            if !created.is_ok_and(|status| status.success()) {
                println!("skipping paho tests: python3 with venv is not available");
                return None;
            }
            let installed = Command::new(&venv_python)
                .args(["-m", "pip", "install", "--quiet", "paho-mqtt>=2,<3", "cryptography"])
                .status();
            if installed.is_ok_and(|status| status.success()) && has_paho(&venv_python) {
                Some(venv_python)
            } else {
                println!("skipping paho tests: paho-mqtt and cryptography could not be installed from PyPI");
                None
            }
        })
        .clone()
}
