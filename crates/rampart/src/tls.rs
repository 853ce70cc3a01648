//! TLS for the listeners: rustls with TLS 1.3 and 1.2 only, AEAD suites only. The platform CA
//! lives in the store (sealed under the master key) so every node serves the same chain; a
//! fresh server certificate with the configured SANs is issued at each start.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rampart_crypto::{generate_ca, issue_server_certificate};
use rampart_platform::Platform;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::ServeSettings;

const PLATFORM_CA_SECRET: &str = "tls-platform-ca";

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_pem: String,
}

impl Drop for StoredCa {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key_pem);
    }
}

/// The rustls configurations of the two listeners.
pub(crate) struct ListenerTls {
    pub https: Arc<ServerConfig>,
    pub mqtt: Arc<ServerConfig>,
}

/// Builds the TLS configurations of the HTTPS and MQTT listeners from the same certificate.
pub(crate) async fn listener_configs(platform: &Platform, settings: &ServeSettings) -> anyhow::Result<ListenerTls> {
    let (cert_pem, key_pem) = server_credentials(platform, settings).await?;
    Ok(ListenerTls {
        https: build_https_config(&cert_pem, &key_pem)?,
        mqtt: rampart_gateway::mqtt_server_config(&cert_pem, &key_pem)?,
    })
}

/// The server certificate chain and key: the operator's files, or one issued by the platform CA.
async fn server_credentials(
    platform: &Platform,
    settings: &ServeSettings,
) -> anyhow::Result<(String, Zeroizing<String>)> {
    let (cert_pem, key_pem) = match &settings.tls_files {
        Some((cert, key)) => {
            let cert_pem = std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key_pem =
                Zeroizing::new(std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?);
            (cert_pem, key_pem)
        }
        None => platform_server_certificate(platform, &settings.data_dir, &settings.tls_sans).await?,
    };
    Ok((cert_pem, key_pem))
}

async fn platform_server_certificate(
    platform: &Platform,
    data_dir: &Path,
    extra_sans: &[String],
) -> anyhow::Result<(String, Zeroizing<String>)> {
    let stored = platform
        .keyring()
        .platform_secret(PLATFORM_CA_SECRET, || {
            let ca = match generate_ca("Rampart platform CA") {
                Ok(ca) => ca,
                // An empty secret makes the parse below fail with a clear error.
                Err(_) => return Zeroizing::new(Vec::new()),
            };
            let stored = StoredCa { cert_pem: ca.cert_pem.clone(), key_pem: ca.key_pem.to_string() };
            Zeroizing::new(serde_json::to_vec(&stored).unwrap_or_default())
        })
        .await
        .context("loading the platform CA")?;
    let ca: StoredCa = serde_json::from_slice(&stored).context("the stored platform CA is unreadable")?;
    let tls_dir = data_dir.join("tls");
    std::fs::create_dir_all(&tls_dir).with_context(|| format!("creating {}", tls_dir.display()))?;
    std::fs::write(tls_dir.join("ca.pem"), &ca.cert_pem).context("writing tls/ca.pem")?;
    let mut sans: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).to_vec();
    sans.extend(extra_sans.iter().filter(|s| !s.is_empty()).cloned());
    let server =
        issue_server_certificate(&ca.cert_pem, &ca.key_pem, &sans).context("issuing the server certificate")?;
    let chain = format!("{}{}", server.cert_pem, ca.cert_pem);
    Ok((chain, server.key_pem))
}

/// HTTPS: TLS 1.3/1.2, AEAD only; client certificates optional (devices may authenticate the
/// device API with one; trust is decided per request against the store).
fn build_https_config(cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing the TLS certificate chain")?;
    if certs.is_empty() {
        bail!("the TLS certificate file holds no certificate");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parsing the TLS private key")?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // Every suite the aws-lc-rs provider offers for TLS 1.2 and 1.3 is an AEAD (GCM/ChaCha20-Poly1305).
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_client_cert_verifier(rampart_gateway::client_cert_verifier())
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
