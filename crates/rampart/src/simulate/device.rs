//! One simulated device: an MQTT/TLS session (rumqttc) that publishes telemetry and its
//! attestation, executes the operations it is sent, applies its desired state, and updates
//! its firmware only after checking the download's SHA-256 and the manifest's Ed25519
//! signature against the tenant's published keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use reqwest::{Method, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::provision::{Credential, Identity};
use super::stats::Stats;
use crate::rest::Api;

/// Largest firmware image a simulated device downloads, in bytes.
const MAX_IMAGE_BYTES: usize = 256 * 1024 * 1024;

/// The tenant's keys a device trusts for firmware: its signing key and registered keys.
pub(crate) struct FirmwareKeys {
    tenant: VerifyingKey,
    registered: HashMap<String, VerifyingKey>,
}

fn verifying_key(base64: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = STANDARD.decode(base64).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

impl FirmwareKeys {
    /// Reads the published keys, as a device would have them provisioned.
    pub(crate) async fn fetch(api: &Api) -> anyhow::Result<FirmwareKeys> {
        let (status, answer) = api.call(Method::GET, "/api/v1/firmware/signing-key", None).await?;
        if status != StatusCode::OK {
            bail!("GET /api/v1/firmware/signing-key: {}", crate::rest::describe(status, &answer));
        }
        let tenant = verifying_key(answer["public_key"].as_str().unwrap_or_default())
            .context("the signing key is not a base64 Ed25519 public key")?;
        let (status, answer) = api.call(Method::GET, "/api/v1/firmware/keys", None).await?;
        let mut registered = HashMap::new();
        if status == StatusCode::OK {
            for key in answer["items"].as_array().into_iter().flatten() {
                if let (Some(id), Some(key)) = (key["id"].as_str(), key["public_key"].as_str().and_then(verifying_key))
                {
                    registered.insert(id.to_owned(), key);
                }
            }
        }
        Ok(FirmwareKeys { tenant, registered })
    }

    /// Whether `signature` over the manifest of `update` verifies with the key it names.
    fn verifies(&self, update: &Value) -> bool {
        let manifest = format!(
            "rampart-fw-v1\n{}\n{}\n{}\n{}\n{}\n",
            update["name"].as_str().unwrap_or_default(),
            update["version"].as_str().unwrap_or_default(),
            update["hardware"].as_str().unwrap_or_default(),
            update["security_counter"].as_i64().unwrap_or(-1),
            update["sha256"].as_str().unwrap_or_default(),
        );
        let key = match update["key_id"].as_str() {
            Some(id) => self.registered.get(id),
            None => Some(&self.tenant),
        };
        let Some(key) = key else { return false };
        let Some(signature) = update["signature"].as_str().and_then(|text| STANDARD.decode(text).ok()) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&signature) else { return false };
        key.verify_strict(manifest.as_bytes(), &signature).is_ok()
    }
}

/// What a device runs.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub version: String,
    pub sha256: String,
}

impl Running {
    /// The repository's image with the lowest security counter, or nothing known.
    pub(crate) async fn initial(api: &Api) -> anyhow::Result<Running> {
        let (status, answer) = api.call(Method::GET, "/api/v1/firmware", None).await?;
        let images = match status {
            StatusCode::OK => answer["items"].as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        let lowest = images.into_iter().min_by_key(|image| image["security_counter"].as_i64().unwrap_or(i64::MAX));
        Ok(match lowest {
            Some(image) => Running {
                version: image["version"].as_str().unwrap_or("0.0.0").to_owned(),
                sha256: image["sha256"].as_str().unwrap_or_default().to_owned(),
            },
            None => Running { version: "0.0.0".into(), sha256: hex::encode(Sha256::digest(b"")) },
        })
    }
}

/// What every simulated device shares.
pub(crate) struct Settings {
    pub tenant: String,
    pub mqtt: String,
    pub ca: Vec<u8>,
    pub base_url: String,
    pub telemetry_interval: Duration,
    pub fail_rate: f64,
    pub execute: Duration,
    pub secure_boot: bool,
    pub keys: Arc<FirmwareKeys>,
}

fn tls_config(ca: &[u8], credential: &Credential) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca) {
        roots.add(certificate.context("parsing the CA")?).context("adding the CA")?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    Ok(Arc::new(match credential {
        Credential::Token(_) => builder.with_no_client_auth(),
        Credential::Certificate { chain, key } => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("parsing the device certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("parsing the device key")?;
            builder.with_client_auth_cert(chain, key).context("the device certificate and key")?
        }
    }))
}

/// The device's HTTPS client (for firmware downloads), with its certificate if it has one.
fn http_client(ca: &[u8], credential: &Credential) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca).context("parsing the CA")?)
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(300));
    if let Credential::Certificate { chain, key } = credential {
        let identity = reqwest::Identity::from_pem(format!("{}\n{chain}", key.as_str()).as_bytes())
            .context("the device certificate for HTTPS")?;
        builder = builder.identity(identity);
    }
    builder.build().context("building the device's HTTPS client")
}

/// Runs one device until the task is aborted; reconnects after errors.
pub(crate) async fn run(settings: Arc<Settings>, identity: Identity, initial: Running, stats: Arc<Stats>) {
    if let Err(error) = run_inner(&settings, &identity, initial, &stats).await {
        stats.count(|s| &s.connect_errors);
        eprintln!("{}: {error:#}", identity.id);
    }
}

async fn run_inner(
    settings: &Settings,
    identity: &Identity,
    initial: Running,
    stats: &Arc<Stats>,
) -> anyhow::Result<()> {
    let (host, port) = settings.mqtt.rsplit_once(':').context("--mqtt must be HOST:PORT")?;
    let port: u16 = port.parse().context("--mqtt port")?;
    let mut options = MqttOptions::new(identity.id.clone(), host.trim_start_matches('[').trim_end_matches(']'), port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_session(true);
    if let Credential::Token(token) = &identity.credential {
        options.set_credentials(format!("{}/{}", settings.tenant, identity.id), token.as_str());
    }
    options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls_config(&settings.ca, &identity.credential)?)));
    let http = http_client(&settings.ca, &identity.credential)?;
    let bearer = match &identity.credential {
        Credential::Token(token) => Some(token.clone()),
        Credential::Certificate { .. } => None,
    };
    let (client, mut events) = AsyncClient::new(options, 64);
    let device = Arc::new(Device {
        id: identity.id.clone(),
        client,
        http,
        bearer,
        running: tokio::sync::Mutex::new(initial),
        reported: tokio::sync::Mutex::new(serde_json::Map::new()),
    });
    let mut telemetry = tokio::time::interval(settings.telemetry_interval);
    telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    loop {
        tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    stats.count(|s| &s.connected);
                    stats.count(|s| &s.connects);
                    let id = &device.id;
                    device.client.subscribe(format!("devices/{id}/operations"), QoS::AtLeastOnce).await?;
                    device.client.subscribe(format!("devices/{id}/twin/desired"), QoS::AtLeastOnce).await?;
                    device.attest(settings.secure_boot).await?;
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let device = Arc::clone(&device);
                    let payload: Value = serde_json::from_slice(&publish.payload).unwrap_or(Value::Null);
                    if publish.topic.ends_with("/operations") {
                        if let Some(created) = payload["created_at"].as_str().and_then(parse_ms) {
                            stats.receipt((now_ms() - created) as f64);
                        }
                        stats.count(|s| &s.operations);
                        let job = device.execute(payload, settings.clone_for_task(), Arc::clone(stats));
                        tokio::spawn(job);
                    } else if publish.topic.ends_with("/twin/desired") {
                        stats.count(|s| &s.desired);
                        tokio::spawn(async move { device.apply_desired(payload).await });
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if connected {
                        connected = false;
                        stats.connected.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tracing::debug!(device = %device.id, %error, "connection lost; rumqttc reconnects");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = telemetry.tick(), if connected => {
                let value = 20.0 + rand::random::<f64>() * 5.0;
                let body = json!({"temp": (value * 100.0).round() / 100.0});
                device.client.publish(format!("devices/{}/telemetry", device.id), QoS::AtMostOnce, false, body.to_string()).await?;
                stats.count(|s| &s.telemetry);
            }
        }
    }
}

/// A device's live state.
struct Device {
    id: String,
    client: AsyncClient,
    http: reqwest::Client,
    bearer: Option<zeroize::Zeroizing<String>>,
    running: tokio::sync::Mutex<Running>,
    reported: tokio::sync::Mutex<serde_json::Map<String, Value>>,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn parse_ms(text: &str) -> Option<i64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// What an operation's task needs, cheaply cloned.
#[derive(Clone)]
pub(crate) struct TaskSettings {
    base_url: String,
    fail_rate: f64,
    execute: Duration,
    secure_boot: bool,
    keys: Arc<FirmwareKeys>,
}

impl Settings {
    fn clone_for_task(&self) -> TaskSettings {
        TaskSettings {
            base_url: self.base_url.clone(),
            fail_rate: self.fail_rate,
            execute: self.execute,
            secure_boot: self.secure_boot,
            keys: Arc::clone(&self.keys),
        }
    }
}

impl Device {
    async fn attest(&self, secure_boot: bool) -> anyhow::Result<()> {
        let running = self.running.lock().await.clone();
        let report =
            json!({"firmware_version": running.version, "firmware_sha256": running.sha256, "secure_boot": secure_boot});
        self.client
            .publish(format!("devices/{}/attestation", self.id), QoS::AtLeastOnce, false, report.to_string())
            .await?;
        Ok(())
    }

    async fn report(&self, operation: &str, body: Value) -> anyhow::Result<()> {
        let topic = format!("devices/{}/operations/{operation}/status", self.id);
        self.client.publish(topic, QoS::AtLeastOnce, false, body.to_string()).await?;
        Ok(())
    }

    async fn execute(self: Arc<Self>, operation: Value, settings: TaskSettings, stats: Arc<Stats>) {
        let Some(id) = operation["id"].as_str().map(str::to_owned) else { return };
        if self.report(&id, json!({"status": "EXECUTING"})).await.is_err() {
            return;
        }
        tokio::time::sleep(settings.execute).await;
        let outcome = if rand::random::<f64>() < settings.fail_rate {
            stats.count(|s| &s.injected_failures);
            Err("injected failure".to_owned())
        } else if operation["type"] == "firmware_update" {
            self.update_firmware(&operation["payload"], &settings, &stats).await
        } else {
            Ok(json!({"ok": true}))
        };
        let body = match outcome {
            Ok(result) => {
                stats.count(|s| &s.successful);
                json!({"status": "SUCCESSFUL", "result": result})
            }
            Err(reason) => {
                stats.count(|s| &s.failed);
                json!({"status": "FAILED", "reason": reason})
            }
        };
        let _ = self.report(&id, body).await;
        if operation["type"] == "firmware_update" {
            let _ = self.attest(settings.secure_boot).await;
        }
    }

    /// Downloads, checks and "installs" an image; the error is the FAILED reason.
    async fn update_firmware(&self, update: &Value, settings: &TaskSettings, stats: &Stats) -> Result<Value, String> {
        if !settings.keys.verifies(update) {
            stats.count(|s| &s.signature_failures);
            return Err("manifest signature does not verify".into());
        }
        let url = format!("{}{}", settings.base_url, update["url"].as_str().unwrap_or_default());
        let started = Instant::now();
        let mut request = self.http.get(&url);
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token.as_str());
        }
        let response = request.send().await.map_err(|error| format!("download failed: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("download failed: {}", response.status()));
        }
        let mut hasher = Sha256::new();
        let mut size = 0usize;
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|error| format!("download failed: {error}"))? {
            size += chunk.len();
            if size > MAX_IMAGE_BYTES {
                return Err("image too large".into());
            }
            hasher.update(&chunk);
        }
        stats.download(size as u64, started, Instant::now());
        let sha256 = hex::encode(hasher.finalize());
        if Some(sha256.as_str()) != update["sha256"].as_str() || update["size"].as_u64() != Some(size as u64) {
            stats.count(|s| &s.hash_failures);
            return Err("the image does not match its manifest (sha256 or size)".into());
        }
        let version = update["version"].as_str().unwrap_or_default().to_owned();
        *self.running.lock().await = Running { version: version.clone(), sha256 };
        Ok(json!({"installed": version}))
    }

    /// Applies the desired state and reports it back.
    async fn apply_desired(&self, message: Value) {
        let Some(desired) = message["desired"].as_object() else { return };
        let mut reported = self.reported.lock().await;
        let mut patch = serde_json::Map::new();
        for (key, value) in desired {
            if reported.get(key) != Some(value) {
                patch.insert(key.clone(), value.clone());
            }
        }
        for key in reported.keys().filter(|key| !desired.contains_key(*key)).cloned().collect::<Vec<_>>() {
            patch.insert(key, Value::Null);
        }
        if patch.is_empty() {
            return;
        }
        *reported = desired.clone();
        let topic = format!("devices/{}/twin/reported", self.id);
        let _ = self.client.publish(topic, QoS::AtLeastOnce, false, Value::Object(patch).to_string()).await;
    }
}
