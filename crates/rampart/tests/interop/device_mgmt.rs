//! SPEC §9 black-box with third-party clients (`device_mgmt.py`: paho-mqtt devices, urllib for
//! REST, Python `cryptography` for Ed25519): operations across a reconnect, desired state,
//! the firmware signature checked with the published key, anti-rollback, attestation
//! verdicts, exposure from an OSV record, and another tenant reaching none of it.

use std::process::Command;
use std::time::Duration;

use rampart_testkit::{ServerOptions, TestServer};

use crate::BIN;
use crate::support::{ca_pem, mqtt_addr, mqtt_port, paho_python, run_async, text};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/device_mgmt.py");

#[tokio::test]
async fn device_management_black_box_with_paho_and_python_cryptography() {
    let Some(python) = paho_python() else { return };
    let server = TestServer::start(BIN, ServerOptions::default()).await;
    let acme = server.tenant_admin("acme").await;
    let globex = server.tenant_admin("globex").await;
    let mut command = Command::new(python);
    command.arg(SCRIPT).args(["--url", &server.url(""), "--port", &mqtt_port(&mqtt_addr(&server))]);
    command.arg("--ca").arg(ca_pem(&server));
    command.args(["--tenant", "acme", "--token", &acme, "--other-token", &globex]);
    let output = run_async(command, Duration::from_secs(120)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let checks = stdout.lines().filter(|line| line.contains("\"check\"")).count();
    assert!(output.status.success() && checks == 19, "{}", text(&output));
}
