//! Settings of `rampart serve`, layered: built-in defaults < config file < `RAMPART_*`
//! environment < flags (clap already puts flags over the environment). Unknown keys in the
//! file and unknown `RAMPART_*` variables are errors, not ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rampart_data::IngestSettings;
use rampart_gateway::GatewaySettings;
use serde::Deserialize;

use crate::cli::ServeArgs;

/// The config file: the same names as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http_listen: Option<String>,
    mqtt_listen: Option<String>,
    storage: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_san: Option<Vec<String>>,
    metrics_listen: Option<String>,
    log_format: Option<String>,
    ids_exempt: Option<Vec<String>>,
    max_retained_per_tenant: Option<usize>,
    max_sessions_per_tenant: Option<usize>,
    ingest_queue_bytes: Option<usize>,
}

/// Where the platform keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StorageSetting {
    Sqlite,
    Postgres(String),
}

impl StorageSetting {
    pub(crate) fn parse(value: Option<&str>) -> anyhow::Result<StorageSetting> {
        match value {
            None | Some("") | Some("sqlite") => Ok(StorageSetting::Sqlite),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StorageSetting::Postgres(url.to_owned()))
            }
            Some(_) => bail!("storage must be `sqlite` or a postgres:// URL"),
        }
    }

    /// The spec string the store opener understands.
    pub(crate) fn as_spec(&self) -> &str {
        match self {
            StorageSetting::Sqlite => "sqlite",
            StorageSetting::Postgres(url) => url,
        }
    }
}

/// Validated settings for `rampart serve`.
#[derive(Debug, Clone)]
pub(crate) struct ServeSettings {
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub mqtt_listen: SocketAddr,
    pub storage: StorageSetting,
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub tls_sans: Vec<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub json_logs: bool,
    /// `--ids-exempt`: never blocked automatically.
    pub ids_exempt: Vec<rampart_core::Cidr>,
    pub quotas: Quotas,
}

/// The resource bounds an operator may tune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quotas {
    pub max_retained_per_tenant: usize,
    pub max_sessions_per_tenant: usize,
    pub ingest_queue_bytes: usize,
}

/// Environment variables Rampart reads besides the `RAMPART_<FLAG>` ones.
const OTHER_ENV: [&str; 6] = [
    "RAMPART_ADMIN_PASSWORD",
    "RAMPART_MASTER_KEY_FILE",
    "RAMPART_TOKEN",
    "RAMPART_URL",
    "RAMPART_LOG",
    "RAMPART_CONFIG",
];
const FLAG_ENV: [&str; 13] = [
    "RAMPART_DATA_DIR",
    "RAMPART_HTTP_LISTEN",
    "RAMPART_MQTT_LISTEN",
    "RAMPART_STORAGE",
    "RAMPART_TLS_CERT",
    "RAMPART_TLS_KEY",
    "RAMPART_TLS_SAN",
    "RAMPART_METRICS_LISTEN",
    "RAMPART_LOG_FORMAT",
    "RAMPART_IDS_EXEMPT",
    "RAMPART_MAX_RETAINED_PER_TENANT",
    "RAMPART_MAX_SESSIONS_PER_TENANT",
    "RAMPART_INGEST_QUEUE_BYTES",
];

/// Refuses `RAMPART_*` variables that Rampart does not know (a typo must not silently fall
/// back to a default). `RAMPART_TEST_*` belongs to the test suites.
pub(crate) fn check_environment(vars: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    for name in vars {
        let known = !name.starts_with("RAMPART_")
            || name.starts_with("RAMPART_TEST_")
            || OTHER_ENV.contains(&name.as_str())
            || FLAG_ENV.contains(&name.as_str());
        if !known {
            bail!("unknown environment variable {name}");
        }
    }
    Ok(())
}

fn parse_addr(name: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().with_context(|| format!("{name} must be an address like 127.0.0.1:8443, got {value:?}"))
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

impl ServeSettings {
    /// Layers the config file under the flags/environment and validates the result.
    pub(crate) fn resolve(args: ServeArgs) -> anyhow::Result<ServeSettings> {
        let file = match &args.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./rampart-data"));
        let http = args.http_listen.or(file.http_listen).unwrap_or_else(|| "127.0.0.1:8443".to_owned());
        let mqtt = args.mqtt_listen.or(file.mqtt_listen).unwrap_or_else(|| "127.0.0.1:8883".to_owned());
        let metrics = args.metrics_listen.or(file.metrics_listen);
        let storage = StorageSetting::parse(args.storage.or(file.storage).as_deref())?;
        let tls_files = match (args.tls_cert.or(file.tls_cert), args.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key must be given together"),
        };
        let tls_sans = if args.tls_san.is_empty() { file.tls_san.unwrap_or_default() } else { args.tls_san };
        let json_logs = match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log_format must be text or json, got {other:?}"),
        };
        let exempt = if args.ids_exempt.is_empty() { file.ids_exempt.unwrap_or_default() } else { args.ids_exempt };
        let ids_exempt = exempt
            .iter()
            .map(|range| rampart_core::Cidr::parse(range).map_err(|error| anyhow::anyhow!("ids_exempt: {error}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (gateway, ingest) = (GatewaySettings::default(), IngestSettings::default());
        let quotas = Quotas {
            max_retained_per_tenant: args
                .max_retained_per_tenant
                .or(file.max_retained_per_tenant)
                .unwrap_or(gateway.max_retained_per_tenant),
            max_sessions_per_tenant: args
                .max_sessions_per_tenant
                .or(file.max_sessions_per_tenant)
                .unwrap_or(gateway.max_sessions_per_tenant),
            ingest_queue_bytes: args.ingest_queue_bytes.or(file.ingest_queue_bytes).unwrap_or(ingest.queue_bytes),
        };
        if quotas.ingest_queue_bytes < 64 * 1024 || quotas.ingest_queue_bytes > u32::MAX as usize {
            bail!("ingest_queue_bytes must be between 64 KiB and 4 GiB, got {}", quotas.ingest_queue_bytes);
        }
        Ok(ServeSettings {
            data_dir,
            http_listen: parse_addr("http_listen", &http)?,
            mqtt_listen: parse_addr("mqtt_listen", &mqtt)?,
            storage,
            tls_files,
            tls_sans,
            metrics_listen: metrics.map(|m| parse_addr("metrics_listen", &m)).transpose()?,
            json_logs,
            ids_exempt,
            quotas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_with_config(text: &str) -> (tempfile::TempDir, ServeArgs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rampart.toml");
        std::fs::write(&path, text).expect("write config");
        (dir, ServeArgs { config: Some(path), ..ServeArgs::default() })
    }

    #[test]
    fn defaults_are_loopback() {
        let settings = ServeSettings::resolve(ServeArgs::default()).expect("defaults");
        assert_eq!(settings.http_listen.to_string(), "127.0.0.1:8443");
        assert_eq!(settings.mqtt_listen.to_string(), "127.0.0.1:8883");
        assert_eq!(settings.storage, StorageSetting::Sqlite);
        assert_eq!(settings.data_dir, PathBuf::from("./rampart-data"));
        assert_eq!(settings.quotas.max_retained_per_tenant, GatewaySettings::default().max_retained_per_tenant);
        assert_eq!(settings.quotas.ingest_queue_bytes, IngestSettings::default().queue_bytes);
    }

    #[test]
    fn quotas_come_from_flags_or_the_file() {
        let (_dir, mut args) = args_with_config("max_retained_per_tenant = 5\nmax_sessions_per_tenant = 7\n");
        args.ingest_queue_bytes = Some(1 << 20);
        let quotas = ServeSettings::resolve(args).expect("settings").quotas;
        assert_eq!((quotas.max_retained_per_tenant, quotas.max_sessions_per_tenant), (5, 7));
        assert_eq!(quotas.ingest_queue_bytes, 1 << 20);
        let (_dir, mut args) = args_with_config("");
        args.ingest_queue_bytes = Some(10);
        assert!(ServeSettings::resolve(args).is_err(), "a queue too small to hold a message");
    }

    #[test]
    fn flags_beat_the_file() {
        let (_dir, mut args) = args_with_config("http_listen = \"127.0.0.1:9000\"\nmqtt_listen = \"127.0.0.1:9001\"\n");
        args.http_listen = Some("127.0.0.1:0".to_owned());
        let settings = ServeSettings::resolve(args).expect("settings");
        assert_eq!(settings.http_listen.to_string(), "127.0.0.1:0");
        assert_eq!(settings.mqtt_listen.to_string(), "127.0.0.1:9001");
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let (_dir, args) = args_with_config("http_listn = \"127.0.0.1:9000\"\n");
        let error = ServeSettings::resolve(args).expect_err("typo must fail");
        assert!(format!("{error:#}").contains("http_listn"), "{error:#}");
    }

    #[test]
    fn unknown_env_vars_are_errors() {
        assert!(check_environment(["RAMPART_DATA_DIR".to_owned(), "PATH".to_owned()]).is_ok());
        assert!(check_environment(["RAMPART_TEST_POSTGRES".to_owned()]).is_ok());
        assert!(check_environment(["RAMPART_DATA_DIRR".to_owned()]).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        let args = ServeArgs { storage: Some("mysql://x".to_owned()), ..ServeArgs::default() };
        assert!(ServeSettings::resolve(args).is_err());
        let args = ServeArgs { http_listen: Some("localhost".to_owned()), ..ServeArgs::default() };
        assert!(ServeSettings::resolve(args).is_err());
    }
}
