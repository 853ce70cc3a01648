//! A minimal MQTT client over TLS for end-to-end tests, built on Rampart's own codec: it
//! exposes every CONNACK, PUBACK and SUBACK code exactly, and pipelines QoS 1 publishes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rampart_mqtt::codec::{decode, encode};
use rampart_mqtt::{
    ConnAck, Connect, Packet, Properties, Protocol, PubResponse, Publish, QoS, Subscribe, SubscriptionOptions,
};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An MQTT connection under test.
pub struct MqttClient {
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    protocol: Protocol,
    next_packet_id: u16,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub protocol: Protocol,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: u16,
    /// Client certificate chain and private key (PEM) to present in the TLS handshake.
    pub identity: Option<(String, String)>,
    /// `false` asks for a persistent session (3.1.1 clean session 0, 5.0 clean start 0 with
    /// a session expiry of one hour).
    pub clean_start: bool,
}

impl ConnectOptions {
    /// A device authenticated by its client certificate alone.
    pub fn certificate(protocol: Protocol, device: &str, cert_pem: &str, key_pem: &str) -> Self {
        ConnectOptions {
            protocol,
            client_id: device.to_owned(),
            username: None,
            password: None,
            keep_alive: 60,
            identity: Some((cert_pem.to_owned(), key_pem.to_owned())),
            clean_start: true,
        }
    }

    pub fn token(protocol: Protocol, tenant: &str, device: &str, token: &str) -> Self {
        ConnectOptions {
            protocol,
            client_id: device.to_owned(),
            username: Some(format!("{tenant}/{device}")),
            password: Some(token.to_owned()),
            keep_alive: 60,
            identity: None,
            clean_start: true,
        }
    }

    /// An application authenticated by an API key (username `<tenant>/<key id>`).
    pub fn application(protocol: Protocol, tenant: &str, key_id: &str, key: &str, client_id: &str) -> Self {
        ConnectOptions {
            protocol,
            client_id: client_id.to_owned(),
            username: Some(format!("{tenant}/{key_id}")),
            password: Some(key.to_owned()),
            keep_alive: 60,
            identity: None,
            clean_start: true,
        }
    }

    /// The same options asking for a persistent session.
    pub fn persistent(mut self) -> Self {
        self.clean_start = false;
        self
    }
}

fn tls_config(ca_pem: &Path, identity: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca_pem).expect("read CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("CA certificate")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("client certificate");
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("client key");
            builder.with_client_auth_cert(chain, key).expect("client auth")
        }
    };
    Arc::new(config)
}

impl MqttClient {
    /// Opens TLS to `addr` (trusting `ca_pem`), sends CONNECT and returns the client with the
    /// CONNACK code (0 = accepted).
    pub async fn connect(addr: &str, ca_pem: &Path, options: &ConnectOptions) -> std::io::Result<(MqttClient, u8)> {
        let (client, ack) = MqttClient::connect_ack(addr, ca_pem, options).await?;
        Ok((client, ack.code))
    }

    /// Like [`MqttClient::connect`], answering the whole CONNACK (session present, properties).
    pub async fn connect_ack(
        addr: &str,
        ca_pem: &Path,
        options: &ConnectOptions,
    ) -> std::io::Result<(MqttClient, ConnAck)> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        let stream = TlsConnector::from(tls_config(ca_pem, options.identity.as_ref())).connect(name, tcp).await?;
        let mut client = MqttClient { stream, buffer: BytesMut::new(), protocol: options.protocol, next_packet_id: 1 };
        let mut properties = Properties::default();
        if !options.clean_start && options.protocol == Protocol::V5 {
            properties.session_expiry_interval = Some(3600);
        }
        let connect = Connect {
            protocol: options.protocol,
            clean_start: options.clean_start,
            keep_alive: options.keep_alive,
            client_id: options.client_id.clone(),
            will: None,
            username: options.username.clone(),
            password: options.password.clone().map(Bytes::from),
            properties,
        };
        client.send(&Packet::Connect(Box::new(connect))).await?;
        match client.next_packet().await? {
            Some(Packet::ConnAck(ack)) => Ok((client, ack)),
            other => Err(std::io::Error::other(format!("expected CONNACK, got {other:?}"))),
        }
    }

    pub async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, self.protocol, &mut out).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.stream.write_all(&out).await
    }

    /// The next packet, or `None` when the server closed the connection.
    pub async fn next_packet(&mut self) -> std::io::Result<Option<Packet>> {
        loop {
            match decode(&mut self.buffer, Some(self.protocol), 16 * 1024 * 1024) {
                Ok(Some(packet)) => return Ok(Some(packet)),
                Ok(None) => {}
                Err(error) => return Err(std::io::Error::other(error.to_string())),
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no packet in time"))?;
            match read {
                Ok(0) => return Ok(None),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Sends a PUBLISH without waiting; returns its packet id (QoS > 0).
    pub async fn publish(&mut self, topic: &str, qos: QoS, payload: &[u8]) -> std::io::Result<Option<u16>> {
        self.send_publish(topic, qos, payload, false).await
    }

    async fn send_publish(
        &mut self,
        topic: &str,
        qos: QoS,
        payload: &[u8],
        retain: bool,
    ) -> std::io::Result<Option<u16>> {
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.packet_id());
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: topic.to_owned(),
            packet_id,
            payload: Bytes::copy_from_slice(payload),
            properties: Properties::default(),
        };
        self.send(&Packet::Publish(publish)).await?;
        Ok(packet_id)
    }

    /// Publishes at QoS 1 and waits for its PUBACK; returns the reason code, or `None` when
    /// the server closed the connection or sent nothing (3.1.1 drops denied publishes).
    pub async fn publish_qos1(&mut self, topic: &str, payload: &[u8]) -> std::io::Result<Option<u8>> {
        let id = self.send_publish(topic, QoS::AtLeastOnce, payload, false).await?;
        self.puback(id).await
    }

    /// [`MqttClient::publish_qos1`] with the retain flag set.
    pub async fn publish_retained_qos1(&mut self, topic: &str, payload: &[u8]) -> std::io::Result<Option<u8>> {
        let id = self.send_publish(topic, QoS::AtLeastOnce, payload, true).await?;
        self.puback(id).await
    }

    async fn puback(&mut self, id: Option<u16>) -> std::io::Result<Option<u8>> {
        loop {
            match self.next_packet().await {
                Ok(Some(Packet::PubAck(PubResponse { packet_id, reason, .. }))) if Some(packet_id) == id => {
                    return Ok(Some(reason));
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(None),
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    /// Subscribes to one filter and returns the SUBACK code.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> std::io::Result<u8> {
        let packet_id = self.packet_id();
        let options = SubscriptionOptions { qos, no_local: false, retain_as_published: false, retain_handling: 0 };
        let subscribe =
            Subscribe { packet_id, filters: vec![(filter.to_owned(), options)], properties: Properties::default() };
        self.send(&Packet::Subscribe(subscribe)).await?;
        loop {
            match self.next_packet().await? {
                Some(Packet::SubAck(ack)) if ack.packet_id == packet_id => {
                    return ack.reasons.first().copied().ok_or_else(|| std::io::Error::other("empty SUBACK"));
                }
                Some(_) => continue,
                None => return Err(std::io::Error::other("closed before SUBACK")),
            }
        }
    }

    /// The next PUBLISH within `wait` (acknowledged when QoS 1), or `None` when none came or
    /// the connection closed.
    pub async fn next_publish(&mut self, wait: Duration) -> Option<Publish> {
        let next = async {
            loop {
                match self.next_packet().await {
                    Ok(Some(Packet::Publish(publish))) => return Some(publish),
                    Ok(Some(_)) => continue,
                    Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
                    Ok(None) | Err(_) => return None,
                }
            }
        };
        let publish = tokio::time::timeout(wait, next).await.ok().flatten()?;
        if let (QoS::AtLeastOnce, Some(packet_id)) = (publish.qos, publish.packet_id) {
            let ack = PubResponse { packet_id, reason: 0, properties: Properties::default() };
            self.send(&Packet::PubAck(ack)).await.ok()?;
        }
        Some(publish)
    }

    /// Waits until the server closes the connection (a DISCONNECT packet first is fine).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let closed = async {
            loop {
                match self.next_packet().await {
                    Ok(Some(Packet::Disconnect(_))) | Ok(None) => return true,
                    Ok(Some(_)) => continue,
                    Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
                    Err(_) => return true,
                }
            }
        };
        tokio::time::timeout(wait, closed).await.unwrap_or(false)
    }
}
