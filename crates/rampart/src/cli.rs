//! Command-line syntax. Raw flags here; `config` turns them into validated settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "rampart", version, about = "Secure multi-tenant IoT platform")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the platform (HTTPS API and console).
    Serve(ServeArgs),
    /// Verify or export the tamper-evident audit log.
    Audit(AuditArgs),
    /// Manage the key hierarchy.
    Keys(KeysArgs),
    /// Load-test Rampart or any MQTT broker over TLS.
    Bench(crate::bench::BenchArgs),
    /// Vulnerability advisories (OSV records) over the REST API.
    Advisories(crate::advisories_cmd::AdvisoriesArgs),
    /// Simulated devices over MQTT/TLS: telemetry, operations, desired state, firmware
    /// updates with signature checks, attestation.
    Simulate(crate::simulate::SimulateArgs),
}

/// `rampart serve` flags; each may also come from `RAMPART_<NAME>` or the config file.
#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (keys as in the flags, with underscores).
    #[arg(long, env = "RAMPART_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (default ./rampart-data).
    #[arg(long, env = "RAMPART_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTPS listen address (default 127.0.0.1:8443; port 0 picks a free port).
    #[arg(long, env = "RAMPART_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// MQTT over TLS listen address (default 127.0.0.1:8883).
    #[arg(long, env = "RAMPART_MQTT_LISTEN")]
    pub mqtt_listen: Option<String>,
    /// `sqlite` (default, in the data dir) or a `postgres://` URL.
    #[arg(long, env = "RAMPART_STORAGE")]
    pub storage: Option<String>,
    /// PEM certificate chain for the listeners (instead of the platform CA's).
    #[arg(long, env = "RAMPART_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "RAMPART_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Extra subject alternative names for the generated server certificate.
    #[arg(long, env = "RAMPART_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Prometheus metrics listen address (default off).
    #[arg(long, env = "RAMPART_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Log format: `text` (default) or `json`.
    #[arg(long, env = "RAMPART_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Address ranges never blocked automatically (CIDR, comma-separated; default none).
    #[arg(long, env = "RAMPART_IDS_EXEMPT", value_delimiter = ',')]
    pub ids_exempt: Vec<String>,
    /// Retained messages one tenant may keep (default 100000).
    #[arg(long, env = "RAMPART_MAX_RETAINED_PER_TENANT")]
    pub max_retained_per_tenant: Option<usize>,
    /// Persistent MQTT sessions one tenant may hold (default 100000).
    #[arg(long, env = "RAMPART_MAX_SESSIONS_PER_TENANT")]
    pub max_sessions_per_tenant: Option<usize>,
    /// Bytes of device messages waiting to be stored before QoS 1 waits and QoS 0 is dropped
    /// (default 64 MiB).
    #[arg(long, env = "RAMPART_INGEST_QUEUE_BYTES")]
    pub ingest_queue_bytes: Option<usize>,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the chains in a data dir (server stopped or running), or an export file.
    Verify {
        /// Data directory whose store is verified.
        #[arg(long, conflicts_with = "file")]
        data_dir: Option<PathBuf>,
        /// Storage URL when the data lives in PostgreSQL.
        #[arg(long, env = "RAMPART_STORAGE")]
        storage: Option<String>,
        /// Export file (JSON lines) to verify instead of a data dir.
        #[arg(long, requires = "public_key")]
        file: Option<PathBuf>,
        /// Platform audit public key (base64, or a file holding it) for `--file`.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Export one tenant's chain with its signed checkpoints as JSON lines.
    Export {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, env = "RAMPART_STORAGE")]
        storage: Option<String>,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Re-wrap every tenant key and platform secret under a new master key.
    RotateMaster {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, env = "RAMPART_STORAGE")]
        storage: Option<String>,
        /// The new key file; created (0600) if it does not exist.
        #[arg(long)]
        new_key_file: PathBuf,
    },
}
