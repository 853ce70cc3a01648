//! `rampart bench`: load generation against Rampart or any MQTT broker (SPEC §14).
//!
//! `provision` registers devices with tokens over the REST API and writes a credentials file;
//! `run` drives one MQTT 3.1.1 connection per row over TLS and prints one JSON line of results;
//! `connect` holds idle connections so the broker's memory per connection can be measured.
//! The client is purpose-built ([`wire`], [`conn`]): a few hundred lines that speak exactly
//! what a load generator needs, with no per-connection event loop of its own, so thousands of
//! connections cost little and a latency sample is the time between our write and the
//! broker's answer, nothing else.

mod conn;
mod credentials;
mod idle;
mod load;
mod payload;
mod provision;
mod stats;
mod wire;

pub(crate) use conn::install_crypto_provider;
pub(crate) use provision::device_id;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Register N devices with tokens in the token's tenant; write client_id,username,password rows.
    Provision(ProvisionArgs),
    /// Publish telemetry over one TLS connection per credentials row; print one JSON line.
    Run(RunArgs),
    /// Hold one idle TLS connection per credentials row (to measure broker memory).
    Connect(ConnectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    /// Rampart's HTTPS base URL, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    pub url: String,
    /// PEM file of the CA to trust (DATA_DIR/tls/ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// Access token or API key with devices:write.
    #[arg(long, env = "RAMPART_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Number of devices.
    #[arg(long)]
    pub devices: usize,
    /// Credentials file to write (mode 0600).
    #[arg(long)]
    pub out: PathBuf,
    /// Device id prefix; ids are PREFIX00001, PREFIX00002, ...
    #[arg(long, default_value = "bench-")]
    pub prefix: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// Also create an API key (role viewer) and write its credentials here, for `run --subscribe`.
    #[arg(long)]
    pub subscriber_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Broker address HOST:PORT (MQTT over TLS).
    #[arg(long)]
    pub mqtt: String,
    /// PEM file of the CA that signed the broker's certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// Credentials file: client_id,username,password per line.
    #[arg(long)]
    pub credentials: PathBuf,
    /// QoS of the publishes: 0 or 1.
    #[arg(long, default_value_t = 1)]
    pub qos: u8,
    /// Payload size in bytes (JSON telemetry padded with whitespace).
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    /// Length of the send phase in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Total messages per second over all connections; flat out when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open one more connection that subscribes to FILTER and measures publish→subscriber latency.
    #[arg(long)]
    pub subscribe: Option<String>,
    /// Credentials file whose first row the subscriber uses (on Rampart: an API key, see
    /// `provision --subscriber-out`); default: the first publisher row with client id `<id>-sub`.
    #[arg(long)]
    pub subscriber_credentials: Option<PathBuf>,
    /// Unacknowledged QoS 1 messages allowed per connection.
    #[arg(long, default_value_t = 10)]
    pub inflight: usize,
    /// TLS handshakes in progress at once while connecting.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Broker address HOST:PORT (MQTT over TLS).
    #[arg(long)]
    pub mqtt: String,
    /// PEM file of the CA that signed the broker's certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// Credentials file: client_id,username,password per line.
    #[arg(long)]
    pub credentials: PathBuf,
    /// Seconds to hold the connections once all are attempted.
    #[arg(long, default_value_t = 30)]
    pub hold: u64,
    /// TLS handshakes in progress at once while connecting.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Provision(args) => {
            let failures = provision::run(provision::ProvisionSettings {
                url: args.url,
                ca: args.ca,
                token: args.token,
                devices: args.devices,
                prefix: args.prefix,
                parallel: args.parallel,
                out: args.out,
                subscriber_out: args.subscriber_out,
            })
            .await?;
            if failures > 0 {
                eprintln!("{failures} devices could not be provisioned");
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Run(args) => {
            let settings = run_settings(args)?;
            let summary = load::run(settings).await?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Connect(args) => {
            let rows = credentials::read(&args.credentials)?;
            warn_about_file_limit(rows.len());
            let summary = idle::run(idle::ConnectSettings {
                target: conn::Target::new(&args.mqtt, &args.ca)?,
                rows,
                hold: Duration::from_secs(args.hold),
                connect_concurrency: args.connect_concurrency,
            })
            .await;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Turns raw `run` flags into validated settings.
fn run_settings(args: RunArgs) -> anyhow::Result<load::RunSettings> {
    if args.qos > 1 {
        bail!("--qos must be 0 or 1");
    }
    if args.duration == 0 {
        bail!("--duration must be at least 1 second");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a positive number of messages per second");
    }
    let publishers = credentials::read(&args.credentials)?;
    warn_about_file_limit(publishers.len() + 1);
    let subscribe = match args.subscribe {
        None => None,
        Some(filter) => {
            let credential = match &args.subscriber_credentials {
                Some(path) => credentials::read(path)?.swap_remove(0),
                None => {
                    let mut first = publishers[0].clone();
                    first.client_id.push_str("-sub");
                    first
                }
            };
            Some((filter, credential))
        }
    };
    Ok(load::RunSettings {
        target: conn::Target::new(&args.mqtt, &args.ca)?,
        publishers,
        qos: args.qos,
        payload_bytes: args.payload,
        duration: Duration::from_secs(args.duration),
        rate: args.rate,
        inflight: args.inflight,
        connect_concurrency: args.connect_concurrency,
        subscribe,
    })
}

/// Thousands of connections need as many file descriptors; say so up front rather than let
/// connections fail one by one. Raising the limit needs `ulimit -n` (the bench scripts do).
fn warn_about_file_limit(connections: usize) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    if connections as u64 + 64 > limit {
        eprintln!("warning: {connections} connections but only {limit} open files allowed; raise it with `ulimit -n`");
    }
}

fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
