//! `rampart simulate` (SPEC §14): N devices over real MQTT/TLS, by token or client
//! certificate, doing the device side of SPEC §7 and §9: telemetry, operations (EXECUTING,
//! then SUCCESSFUL or FAILED), desired state applied and reported, firmware updates
//! (download over HTTPS, SHA-256 and Ed25519 manifest signature checked against the tenant's
//! published keys with an implementation that is not the server's, FAILED on any mismatch)
//! and attestation. `--fail-rate` injects failures so a campaign can be watched pausing
//! itself. A progress line every two seconds; one JSON line of results at the end.
//!
//! The MQTT client is rumqttc (not ours), so the simulator is also an interoperability check.

mod device;
mod provision;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::{Method, StatusCode};

use crate::rest::{Api, describe, https_client};
use stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AuthMode {
    /// A device token (username `<tenant>/<device>`).
    Token,
    /// A client certificate from the tenant CA (CSR signed over the API).
    Certificate,
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// Rampart's HTTPS base URL, e.g. https://127.0.0.1:8443.
    #[arg(long, env = "RAMPART_URL")]
    pub url: String,
    /// Rampart's MQTT over TLS address HOST:PORT.
    #[arg(long)]
    pub mqtt: String,
    /// PEM file of the CA to trust (DATA_DIR/tls/ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// Access token or API key that may register devices (devices:write) and read the
    /// firmware keys (firmware:read).
    #[arg(long, env = "RAMPART_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Device id prefix; ids are PREFIX00001, PREFIX00002, ... (registered if missing).
    #[arg(long, default_value = "sim-")]
    pub prefix: String,
    /// How devices authenticate.
    #[arg(long, value_enum, default_value_t = AuthMode::Token)]
    pub auth: AuthMode,
    /// Seconds between two telemetry messages of one device.
    #[arg(long, default_value_t = 5.0)]
    pub telemetry_interval: f64,
    /// Share of operations (0 to 1) a device reports FAILED on purpose.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Milliseconds a device takes to execute an operation.
    #[arg(long, default_value_t = 200)]
    pub execute_ms: u64,
    /// Stop after this many seconds (Ctrl-C stops it too; both print the results).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Connections opened at once while starting.
    #[arg(long, default_value_t = 50)]
    pub parallel: usize,
    /// Report secure boot as off (to see `secure_boot_disabled`).
    #[arg(long)]
    pub secure_boot_off: bool,
}

pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    crate::bench::install_crypto_provider();
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!("--fail-rate must be between 0 and 1");
    }
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    if args.telemetry_interval.is_nan() || args.telemetry_interval <= 0.0 {
        bail!("--telemetry-interval must be positive");
    }
    let http = https_client(&args.ca)?;
    let api = Arc::new(Api::new(http.clone(), &args.url, args.token.clone()));
    let (status, me) = api.call(Method::GET, "/api/v1/me", None).await?;
    if status != StatusCode::OK {
        bail!("GET /api/v1/me: {}", describe(status, &me));
    }
    let tenant = me["tenant"].as_str().context("GET /api/v1/me: no tenant")?.to_owned();
    let keys = Arc::new(device::FirmwareKeys::fetch(&api).await?);
    let initial = device::Running::initial(&api).await?;
    eprintln!(
        "simulating {} devices in tenant {tenant} ({:?} auth), starting on firmware {} {}",
        args.devices, args.auth, initial.version, initial.sha256
    );
    let identities = provision::provision(&api, &args).await?;
    let stats = Arc::new(Stats::new(args.devices));
    let settings = Arc::new(device::Settings {
        tenant: tenant.clone(),
        mqtt: args.mqtt.clone(),
        ca: std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?,
        base_url: args.url.trim_end_matches('/').to_owned(),
        telemetry_interval: Duration::from_secs_f64(args.telemetry_interval),
        fail_rate: args.fail_rate,
        execute: Duration::from_millis(args.execute_ms),
        secure_boot: !args.secure_boot_off,
        keys,
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, identity) in identities.into_iter().enumerate() {
        let (settings, stats, initial) = (Arc::clone(&settings), Arc::clone(&stats), initial.clone());
        tasks.spawn(device::run(settings, identity, initial, stats));
        // Spread the connection storm a little.
        if (index + 1) % args.parallel.max(1) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let progress = tokio::spawn(stats::progress(Arc::clone(&stats)));
    // Until --duration has passed or Ctrl-C (SIGINT), whichever comes first.
    let duration = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = duration => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    progress.abort();
    tasks.abort_all();
    println!("{}", stats.summary(started.elapsed()));
    Ok(ExitCode::SUCCESS)
}
