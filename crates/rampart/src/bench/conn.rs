//! One MQTT 3.1.1 client connection over TLS for the bench: TCP (no Nagle), rustls trusting
//! only `--ca`, CONNECT with username/password, CONNACK; then buffered writes and incremental
//! reads through [`super::wire`]. Connection and TLS set-up share one [`Target`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::credentials::Credential;
use super::wire::{self, Incoming};

/// TCP connect, TLS handshake and CONNACK must each finish within this.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest packet we accept from a broker (subscribers receive bench payloads).
const MAX_INCOMING_PACKET: usize = 16 * 1024 * 1024;

/// Where and how to connect: the broker address and a TLS configuration trusting `--ca`.
pub(crate) struct Target {
    address: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

impl Target {
    /// `mqtt` is `host:port` (`[v6]:port` for IPv6); `ca` a PEM file of trusted certificates.
    pub(crate) fn new(mqtt: &str, ca: &Path) -> anyhow::Result<Target> {
        install_crypto_provider();
        let (host, port) = mqtt.rsplit_once(':').ok_or_else(|| anyhow!("--mqtt must be HOST:PORT, got {mqtt:?}"))?;
        port.parse::<u16>().with_context(|| format!("--mqtt port in {mqtt:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host:?} is not a DNS name or IP address"))?;
        let mut roots = rustls::RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", ca.display()))?;
        let (added, _ignored) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            bail!("{} holds no usable CA certificate", ca.display());
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        Ok(Target { address: mqtt.to_owned(), server_name, connector: TlsConnector::from(Arc::new(config)) })
    }
}

/// The process uses aws-lc-rs, as the server does; a second install is harmless.
pub(crate) fn install_crypto_provider() {
    let _already_installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// An open MQTT session: the TLS stream, bytes read but not yet decoded, and bytes to send.
pub(crate) struct Connection {
    stream: TlsStream<TcpStream>,
    read_buffer: Vec<u8>,
    pub(crate) write_buffer: Vec<u8>,
}

impl Connection {
    /// Connects, sends CONNECT and waits for a successful CONNACK, all within
    /// [`CONNECT_TIMEOUT`] each. A refusal names the broker's return code.
    pub(crate) async fn open(
        target: &Target,
        credential: &Credential,
        keep_alive_s: u16,
    ) -> anyhow::Result<Connection> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&target.address))
            .await
            .map_err(|_| anyhow!("TCP connect timed out"))?
            .with_context(|| format!("connecting to {}", target.address))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, target.connector.connect(target.server_name.clone(), tcp))
            .await
            .map_err(|_| anyhow!("TLS handshake timed out"))?
            .context("TLS handshake")?;
        let mut connection = Connection { stream, read_buffer: Vec::with_capacity(256), write_buffer: Vec::new() };
        wire::encode_connect(
            &mut connection.write_buffer,
            &wire::Connect {
                client_id: &credential.client_id,
                username: &credential.username,
                password: &credential.password,
                keep_alive_s,
                clean_session: true,
            },
        );
        connection.flush().await?;
        let answer = tokio::time::timeout(CONNECT_TIMEOUT, connection.next_packet())
            .await
            .map_err(|_| anyhow!("no CONNACK within {CONNECT_TIMEOUT:?}"))??;
        match answer {
            Incoming::ConnAck { return_code: 0, .. } => {}
            Incoming::ConnAck { return_code, .. } => bail!("CONNACK refused the connection with code {return_code}"),
            other => bail!("expected CONNACK, got {other:?}"),
        }
        connection.read_buffer = Vec::with_capacity(64);
        connection.write_buffer = Vec::with_capacity(256);
        Ok(connection)
    }

    /// Writes everything buffered and flushes TLS.
    pub(crate) async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.write_buffer.is_empty() {
            self.stream.write_all(&self.write_buffer).await.context("writing")?;
            self.write_buffer.clear();
        }
        self.stream.flush().await.context("flushing")?;
        Ok(())
    }

    /// Reads more bytes; `Ok(0)` is end of stream. Cancel safe (for `select!`).
    pub(crate) async fn fill(&mut self) -> std::io::Result<usize> {
        if self.read_buffer.capacity() - self.read_buffer.len() < 512 {
            self.read_buffer.reserve(4096);
        }
        self.stream.read_buf(&mut self.read_buffer).await
    }

    /// Takes the next complete packet out of the bytes read so far, if any.
    pub(crate) fn take_packet(&mut self) -> anyhow::Result<Option<Incoming>> {
        match wire::decode(&self.read_buffer, MAX_INCOMING_PACKET)? {
            Some((packet, used)) => {
                self.read_buffer.drain(..used);
                if self.read_buffer.is_empty() && self.read_buffer.capacity() > 64 * 1024 {
                    // A burst of large deliveries should not pin memory for the rest of the run.
                    self.read_buffer = Vec::with_capacity(4096);
                }
                Ok(Some(packet))
            }
            None => Ok(None),
        }
    }

    /// Reads until one packet is complete.
    pub(crate) async fn next_packet(&mut self) -> anyhow::Result<Incoming> {
        loop {
            if let Some(packet) = self.take_packet()? {
                return Ok(packet);
            }
            if self.fill().await.context("reading")? == 0 {
                bail!("the broker closed the connection");
            }
        }
    }

    /// Sends DISCONNECT and closes TLS, ignoring errors: the run is over either way.
    pub(crate) async fn close(mut self) {
        wire::encode_disconnect(&mut self.write_buffer);
        let _closing = tokio::time::timeout(Duration::from_secs(2), async {
            let _flushed = self.flush().await;
            let _shut = self.stream.shutdown().await;
        })
        .await;
    }
}
