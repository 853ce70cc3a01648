//! `rampart bench` end to end: `provision` against the real server's REST API; `run` and
//! `connect` against a Mosquitto of our own (TLS, password auth, `persistence true`, started by
//! `bench/mosquitto.sh` in a temp dir) and against Rampart's gateway.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rampart_testkit::{ServerOptions, TestServer};
use serde_json::Value;

use crate::BIN;
use crate::support::{ca_pem, measurements, mqtt_addr, run_async, text};

const MOSQUITTO_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/mosquitto.sh");
const SUMMARY_FIELDS: [&str; 9] =
    ["sent", "acked", "received", "msgs_per_s", "ack_p50_ms", "ack_p99_ms", "ack_p999_ms", "e2e_p99_ms", "errors"];

/// A Mosquitto started by `bench/mosquitto.sh` in a temp dir; stopped on drop.
struct Mosquitto {
    dir: tempfile::TempDir,
    address: String,
    ca: PathBuf,
    credentials: PathBuf,
}

impl Mosquitto {
    /// `None` (reason printed) when Mosquitto is not installed.
    fn start(users: usize) -> Option<Mosquitto> {
        if !Path::new("/usr/sbin/mosquitto").exists() && Command::new("mosquitto").arg("-h").output().is_err() {
            println!("skipping: mosquitto is not installed (apt-get install mosquitto mosquitto-clients)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let output = Command::new("bash")
            .arg(MOSQUITTO_SCRIPT)
            .arg("start")
            .arg(dir.path().join("broker"))
            .arg(users.to_string())
            .output()
            .expect("run bench/mosquitto.sh");
        assert!(output.status.success(), "bench/mosquitto.sh start: {}", String::from_utf8_lossy(&output.stderr));
        let env = String::from_utf8_lossy(&output.stdout).to_string();
        let field = |name: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_owned))
                .unwrap_or_else(|| panic!("{name} missing in {env}"))
        };
        Some(Mosquitto {
            address: field("MQTT"),
            ca: PathBuf::from(field("CA")),
            credentials: PathBuf::from(field("CREDS")),
            dir,
        })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _stopped =
            Command::new("bash").arg(MOSQUITTO_SCRIPT).arg("stop").arg(self.dir.path().join("broker")).status();
    }
}

/// Runs `rampart bench ARGS` and returns its last stdout line as JSON.
async fn bench(args: &[&str]) -> Value {
    let mut command = Command::new(BIN);
    command.arg("bench").args(args);
    let output = run_async(command, Duration::from_secs(120)).await;
    assert!(output.status.success(), "rampart bench {args:?}: {}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|_| panic!("last line is not JSON: {}", text(&output)))
}

fn count(summary: &Value, field: &str) -> u64 {
    summary[field].as_u64().unwrap_or_else(|| panic!("{field} in {summary}"))
}

fn assert_spec_fields(summary: &Value) {
    let object = summary.as_object().expect("object");
    let fields: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = SUMMARY_FIELDS.to_vec();
    expected.sort_unstable();
    let mut fields_sorted = fields.clone();
    fields_sorted.sort_unstable();
    assert_eq!(fields_sorted, expected, "{summary}");
}

#[tokio::test]
async fn bench_provision_writes_private_credentials_and_tops_up() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("creds.csv");
    let subscriber = dir.path().join("subscriber.csv");
    let url = format!("https://{}", server.http_addr);
    let provision = |devices: &str| {
        let mut command = Command::new(BIN);
        command.args(["bench", "provision", "--url", &url, "--devices", devices, "--parallel", "4"]);
        command.arg("--ca").arg(ca_pem(&server)).arg("--out").arg(&out).arg("--subscriber-out").arg(&subscriber);
        // The token comes from the environment, so it never shows in a process list.
        command.env("RAMPART_TOKEN", &acme);
        command
    };
    let output = run_async(provision("5"), Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains(&acme), "the token is never printed");

    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).expect("creds").permissions().mode() & 0o777, 0o600);
    let first = std::fs::read_to_string(&out).expect("creds");
    let rows: Vec<Vec<&str>> = first.lines().skip(1).map(|line| line.split(',').collect()).collect();
    assert_eq!(first.lines().next(), Some("client_id,username,password"));
    assert_eq!(rows.len(), 5, "{first}");
    for (index, row) in rows.iter().enumerate() {
        let id = format!("bench-{:05}", index + 1);
        assert_eq!(row[..2], [id.as_str(), &format!("acme/{id}")]);
        assert!(row[2].len() >= 22, "a token of at least 128 bits");
    }
    let (status, device) = server.get("/api/v1/devices/bench-00003", &acme).await;
    assert_eq!(status, 200, "{device}");

    // A rerun with more devices keeps the old ones (409) and gives every device a new token.
    let output = run_async(provision("6"), Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", text(&output));
    let second = std::fs::read_to_string(&out).expect("creds");
    assert_eq!(second.lines().count(), 7, "{second}");
    assert_ne!(second.lines().nth(1), first.lines().nth(1), "a new token for bench-00001");

    let subscriber = std::fs::read_to_string(&subscriber).expect("subscriber creds");
    let row: Vec<&str> = subscriber.lines().nth(1).expect("row").split(',').collect();
    assert_eq!(row[0], "bench-subscriber");
    assert!(row[1].starts_with("acme/") && row[2].starts_with("rak_"), "{row:?}");
}

#[tokio::test]
async fn bench_run_and_connect_against_mosquitto() {
    let Some(broker) = Mosquitto::start(3) else { return };
    let ca = broker.ca.to_string_lossy().to_string();
    let credentials = broker.credentials.to_string_lossy().to_string();
    let common = ["--mqtt", broker.address.as_str(), "--ca", &ca, "--credentials", &credentials];

    // QoS 1 flat out for 2 s with a subscriber on every device's telemetry.
    let mut args = vec!["run"];
    args.extend(common);
    args.extend(["--qos", "1", "--payload", "200", "--duration", "2", "--subscribe", "devices/+/telemetry"]);
    let summary = bench(&args).await;
    assert_spec_fields(&summary);
    let sent = count(&summary, "sent");
    assert!(sent > 100, "{summary}");
    assert_eq!(count(&summary, "acked"), sent, "{summary}");
    // Mosquitto may drop deliveries to a subscriber that falls behind (max_queued_messages).
    let received = count(&summary, "received");
    assert!(received > 0 && received <= sent, "{summary}");
    assert_eq!(count(&summary, "errors"), 0, "{summary}");
    for field in ["msgs_per_s", "ack_p50_ms", "ack_p99_ms", "ack_p999_ms", "e2e_p99_ms"] {
        assert!(summary[field].as_f64().is_some_and(|value| value > 0.0), "{field}: {summary}");
    }
    let (p50, p99) = (summary["ack_p50_ms"].as_f64(), summary["ack_p99_ms"].as_f64());
    assert!(p50 <= p99, "{summary}");

    // QoS 0 at 100 msgs/s for 2 s: about 200 sent, nothing to acknowledge.
    let mut args = vec!["run"];
    args.extend(common);
    args.extend(["--qos", "0", "--payload", "64", "--duration", "2", "--rate", "100"]);
    let summary = bench(&args).await;
    assert_spec_fields(&summary);
    let sent = count(&summary, "sent");
    assert!((150..=250).contains(&sent), "{summary}");
    assert_eq!(count(&summary, "acked"), 0);
    assert!(summary["ack_p50_ms"].is_null() && summary["e2e_p99_ms"].is_null(), "{summary}");
    assert_eq!(count(&summary, "errors"), 0, "{summary}");

    // Idle connections.
    let mut args = vec!["connect"];
    args.extend(common);
    args.extend(["--hold", "1"]);
    let summary = bench(&args).await;
    assert_eq!((count(&summary, "connected"), count(&summary, "failed")), (3, 0), "{summary}");

    // A wrong password is counted as an error, not a crash.
    let bad = broker.dir.path().join("bad.csv");
    std::fs::write(&bad, "bench-00001,bench-00001,wrong\n").expect("write");
    let bad = bad.to_string_lossy().to_string();
    let summary =
        bench(&["connect", "--mqtt", &broker.address, "--ca", &ca, "--credentials", &bad, "--hold", "0"]).await;
    assert_eq!((count(&summary, "connected"), count(&summary, "failed")), (0, 1), "{summary}");
}

#[tokio::test]
async fn bench_run_against_rampart() {
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("creds.csv");
    let subscriber = dir.path().join("subscriber.csv");
    let mut provision = Command::new(BIN);
    provision.args(["bench", "provision", "--url", &format!("https://{}", server.http_addr), "--devices", "3"]);
    provision.arg("--ca").arg(ca_pem(&server)).arg("--out").arg(&creds).arg("--subscriber-out").arg(&subscriber);
    provision.env("RAMPART_TOKEN", &acme);
    let output = run_async(provision, Duration::from_secs(60)).await;
    assert!(output.status.success(), "{}", text(&output));

    let address = mqtt_addr(&server);
    let ca = ca_pem(&server).to_string_lossy().to_string();
    let (creds, subscriber) = (creds.to_string_lossy().to_string(), subscriber.to_string_lossy().to_string());
    let summary = bench(&[
        "run",
        "--mqtt",
        &address,
        "--ca",
        &ca,
        "--credentials",
        &creds,
        "--qos",
        "1",
        "--payload",
        "128",
        "--duration",
        "2",
        "--subscribe",
        "devices/+/telemetry",
        "--subscriber-credentials",
        &subscriber,
    ])
    .await;
    assert_spec_fields(&summary);
    let sent = count(&summary, "sent");
    assert!(sent > 0, "{summary}");
    assert_eq!(count(&summary, "acked"), sent, "{summary}");
    assert_eq!(count(&summary, "received"), sent, "{summary}");
    assert_eq!(count(&summary, "errors"), 0, "{summary}");
    // Every acknowledged message is stored: its `seq` series holds one value per message.
    let per_device = measurements(&server, &acme, "bench-00001", "seq", 1).await;
    assert!(!per_device.is_empty());
}
