//! The test bench: a real platform over a temporary SQLite store (the testkit's fixture, set
//! up through the services), the real ingestor, the gateway on 127.0.0.1:0 with a fresh server
//! certificate, and MQTT clients over real TLS (rumqttc for 3.1.1 and 5.0, plus a raw TLS
//! socket for protocol edge cases).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use rampart_core::SecurityEventType;
use rampart_crypto::{generate_ca, issue_server_certificate};
use rampart_data::Ingestor;
use rampart_gateway::{Gateway, GatewaySettings, Guard, OpenGuard, mqtt_server_config};
use rampart_platform::{Platform, Principal};
use rampart_store::{Page, SecurityEvent, SecurityEventFilter, Store};
use rampart_testkit::fixture::Fixture;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long a test waits for something that should happen at once.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

pub(crate) struct Harness {
    pub fixture: Fixture,
    pub platform: Arc<Platform>,
    /// The test's own handle on the store, to look at what the services wrote.
    pub store: Arc<dyn Store>,
    pub ingestor: Ingestor,
    /// The `admin` of each tenant (`acme`, `globex`).
    admins: HashMap<String, Principal>,
    pub gateway: Option<Gateway>,
    pub addr: SocketAddr,
    ca_pem: String,
    tls: Arc<rustls::ServerConfig>,
    settings: GatewaySettings,
    guard: Arc<dyn Guard>,
}

/// A device's or application's client certificate and key, PEM.
pub(crate) struct ClientIdentity {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Harness {
    pub(crate) async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(adjust: impl FnOnce(&mut GatewaySettings)) -> Harness {
        Harness::start_guarded(adjust, Arc::new(OpenGuard)).await
    }

    /// A harness whose gateway asks `guard` at its decision points.
    pub(crate) async fn start_guarded(adjust: impl FnOnce(&mut GatewaySettings), guard: Arc<dyn Guard>) -> Harness {
        let fixture = Fixture::new().await;
        let mut admins = HashMap::new();
        for tenant in ["acme", "globex"] {
            admins.insert(tenant.to_owned(), fixture.tenant(tenant).await);
        }
        let (platform, store, ingestor) =
            (Arc::clone(&fixture.platform), Arc::clone(&fixture.store), fixture.ingestor.clone());
        let ca = generate_ca("Gateway test CA").expect("ca");
        let server =
            issue_server_certificate(&ca.cert_pem, &ca.key_pem, &["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate");
        let tls = mqtt_server_config(&format!("{}{}", server.cert_pem, ca.cert_pem), &server.key_pem).expect("tls");
        let mut settings = GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            connect_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(2),
            ..GatewaySettings::default()
        };
        adjust(&mut settings);
        let gateway = Gateway::start_guarded(
            Arc::clone(&platform),
            ingestor.clone(),
            Arc::clone(&tls),
            settings.clone(),
            Arc::clone(&guard),
        )
        .await
        .expect("gateway");
        let addr = gateway.local_addr();
        Harness {
            fixture,
            platform,
            store,
            ingestor,
            admins,
            gateway: Some(gateway),
            addr,
            ca_pem: ca.cert_pem,
            tls,
            settings,
            guard,
        }
    }

    /// Shuts the gateway down gracefully and starts a new one over the same store, as a
    /// restart of the process would (on a new port: `addr` changes).
    pub(crate) async fn restart_gateway(&mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        self.start_gateway().await;
    }

    /// Starts a gateway over the same store (after the previous one was shut down or taken).
    pub(crate) async fn start_gateway(&mut self) {
        let gateway = Gateway::start_guarded(
            Arc::clone(&self.platform),
            self.ingestor.clone(),
            Arc::clone(&self.tls),
            self.settings.clone(),
            Arc::clone(&self.guard),
        )
        .await
        .expect("gateway");
        self.addr = gateway.local_addr();
        self.gateway = Some(gateway);
    }

    /// The `admin` of `tenant`.
    pub(crate) fn admin(&self, tenant: &str) -> &Principal {
        &self.admins[tenant]
    }

    /// Registers a device with a token; returns the token.
    pub(crate) async fn device(&self, tenant: &str, id: &str) -> String {
        self.fixture.device(self.admin(tenant), id).await
    }

    /// Creates an API key with `roles` acting for the tenant's admin; returns `(id, key)`.
    pub(crate) async fn api_key(&self, tenant: &str, roles: &[&str]) -> (String, String) {
        self.fixture.api_key(self.admin(tenant), roles).await
    }

    /// Revokes a device through the platform (which tells the gateway).
    pub(crate) async fn revoke(&self, tenant: &str, id: &str) {
        let id = rampart_core::DeviceId::parse(id).expect("device id");
        self.platform.revoke_device(self.admin(tenant), &id).await.expect("revoke");
    }

    /// Trusts `ca_pem` (with `auto_register`) for `tenant`, proving possession of its key.
    pub(crate) async fn trust_ca(
        &self,
        tenant: &str,
        ca_pem: &str,
        ca_key: &rcgen::KeyPair,
    ) -> rampart_store::TrustedCa {
        let admin = self.admin(tenant);
        let code = self.platform.trusted_ca_registration_code(admin).await.expect("code");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, code);
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca_pem, ca_key).expect("issuer");
        let verification = params.signed_by(&key, &issuer).expect("verification certificate").pem();
        let new = rampart_platform::NewTrustedCa {
            certificate: ca_pem.to_owned(),
            verification_certificate: Some(verification),
            auto_register: true,
        };
        self.platform.create_trusted_ca(admin, new).await.expect("trusted CA")
    }

    /// Replaces the topic policy through the platform (which tells the gateway).
    pub(crate) async fn topic_policy(&self, tenant: &str, json: &str) {
        let policy = rampart_core::acl::TopicPolicy::from_stored(Some(json)).expect("topic policy");
        self.platform.replace_topic_policy(self.admin(tenant), policy).await.expect("topic policy");
    }

    /// Sets the tenant's ACL-violation threshold (tests of many denials that are not about the
    /// quarantine rule raise it above the default 3).
    pub(crate) async fn acl_violation_threshold(&self, tenant: &str, threshold: u32) {
        let detection = rampart_core::DetectionPatch { acl_violation_threshold: Some(threshold), ..Default::default() };
        let patch = rampart_core::TenantPolicyPatch { detection: Some(detection), ..Default::default() };
        self.platform.update_tenant_policy(self.admin(tenant), patch).await.expect("tenant policy");
    }

    /// The tenant's security events of `event_type`, newest first.
    pub(crate) async fn security_events(&self, tenant: &str, event_type: &str) -> Vec<SecurityEvent> {
        let event_type = SecurityEventType::parse(event_type).expect("event type");
        let filter = SecurityEventFilter { event_type: Some(event_type), ..SecurityEventFilter::default() };
        let page = Page { after: None, limit: 100 };
        self.platform.security_events(self.admin(tenant), filter, &page).await.expect("events")
    }

    /// Waits until at least `count` events of `event_type` exist (they are raised in the
    /// background).
    pub(crate) async fn wait_for_events(&self, tenant: &str, event_type: &str, count: usize) -> Vec<SecurityEvent> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let events = self.security_events(tenant, event_type).await;
            if events.len() >= count || tokio::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A TLS client configuration trusting the gateway's CA, optionally with a client
    /// certificate.
    pub(crate) fn client_tls(&self, identity: Option<&ClientIdentity>) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("ca pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(identity.chain_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client chain");
                let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("client key");
                builder.with_client_auth_cert(chain, key).expect("client auth")
            }
        };
        Arc::new(config)
    }

    /// A raw TLS connection to the gateway.
    pub(crate) async fn raw(&self, identity: Option<&ClientIdentity>) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.expect("tcp");
        let connector = TlsConnector::from(self.client_tls(identity));
        connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("tls")
    }

    fn v3_options(
        &self,
        client_id: &str,
        credentials: Option<(&str, &str)>,
        identity: Option<&ClientIdentity>,
    ) -> rumqttc::MqttOptions {
        let mut options = rumqttc::MqttOptions::new(client_id, "localhost", self.addr.port());
        if let Some((username, password)) = credentials {
            options.set_credentials(username, password);
        }
        options.set_keep_alive(Duration::from_secs(30));
        let tls = rumqttc::TlsConfiguration::Rustls(self.client_tls(identity));
        options.set_transport(rumqttc::Transport::tls_with_config(tls));
        options
    }

    /// Connects with MQTT 3.1.1 (rumqttc); `Err` carries the refusal.
    pub(crate) async fn connect_v3(
        &self,
        client_id: &str,
        credentials: Option<(&str, &str)>,
        identity: Option<&ClientIdentity>,
    ) -> Result<V3Client, rumqttc::ConnectionError> {
        self.connect_v3_with(self.v3_options(client_id, credentials, identity)).await
    }

    pub(crate) async fn connect_v3_with(
        &self,
        options: rumqttc::MqttOptions,
    ) -> Result<V3Client, rumqttc::ConnectionError> {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
        loop {
            match tokio::time::timeout(PATIENCE, eventloop.poll()).await.expect("CONNACK in time")? {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => break,
                _ => continue,
            }
        }
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event.map_err(|e| e.to_string())).is_err() || failed {
                    return;
                }
            }
        });
        Ok(V3Client { client, events, task })
    }

    /// MQTT 5.0 options over TLS with these credentials, to adjust before connecting.
    pub(crate) fn v5_options(
        &self,
        client_id: &str,
        credentials: Option<(&str, &str)>,
        identity: Option<&ClientIdentity>,
    ) -> rumqttc::v5::MqttOptions {
        let mut options = rumqttc::v5::MqttOptions::new(client_id, "localhost", self.addr.port());
        if let Some((username, password)) = credentials {
            options.set_credentials(username, password);
        }
        options.set_keep_alive(Duration::from_secs(30));
        let tls = rumqttc::TlsConfiguration::Rustls(self.client_tls(identity));
        options.set_transport(rumqttc::Transport::tls_with_config(tls));
        options
    }

    /// MQTT 3.1.1 options over TLS with these credentials, to adjust before connecting.
    pub(crate) fn v3_options_for(&self, client_id: &str, credentials: Option<(&str, &str)>) -> rumqttc::MqttOptions {
        self.v3_options(client_id, credentials, None)
    }

    /// Connects with MQTT 5.0 (rumqttc); `Err` carries the refusal.
    pub(crate) async fn connect_v5(
        &self,
        client_id: &str,
        credentials: Option<(&str, &str)>,
        identity: Option<&ClientIdentity>,
    ) -> Result<V5Client, rumqttc::v5::ConnectionError> {
        self.connect_v5_with(self.v5_options(client_id, credentials, identity)).await
    }

    pub(crate) async fn connect_v5_with(
        &self,
        options: rumqttc::v5::MqttOptions,
    ) -> Result<V5Client, rumqttc::v5::ConnectionError> {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 64);
        loop {
            match tokio::time::timeout(PATIENCE, eventloop.poll()).await.expect("CONNACK in time")? {
                rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_)) => break,
                _ => continue,
            }
        }
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if sender.send(event.map_err(|e| e.to_string())).is_err() || failed {
                    return;
                }
            }
        });
        Ok(V5Client { client, events, task })
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // The runtime ends with the test; the gateway's tasks end with it.
        self.gateway.take();
    }
}

/// A connected MQTT 3.1.1 client whose event loop runs in the background.
pub(crate) struct V3Client {
    pub client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for V3Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl V3Client {
    /// The next incoming packet matching `pick`, skipping others; `None` on timeout.
    pub(crate) async fn next_incoming<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(&rumqttc::Packet) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(rumqttc::Event::Incoming(packet)))) => {
                    if let Some(found) = pick(&packet) {
                        return Some(found);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Waits until the connection fails (closed by the server); answers whether it did.
    pub(crate) async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A connected MQTT 5.0 client whose event loop runs in the background.
pub(crate) struct V5Client {
    pub client: rumqttc::v5::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<rumqttc::v5::Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for V5Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl V5Client {
    pub(crate) async fn next_incoming<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(packet)))) => {
                    if let Some(found) = pick(&packet) {
                        return Some(found);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            }
        }
    }

    pub(crate) async fn closed_within(&mut self, wait: Duration) -> bool {
        self.closed_with(wait).await.is_some()
    }

    /// Waits until the connection fails; answers the client's error text (which names the
    /// reason of a server DISCONNECT), or `None` if it stayed open.
    pub(crate) async fn closed_with(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(error))) => return Some(error),
                Ok(None) => return Some("event stream ended".into()),
                Err(_) => return None,
            }
        }
    }
}
