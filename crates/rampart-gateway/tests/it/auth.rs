//! Authentication at CONNECT (SPEC §7): tokens, certificates from the tenant CA and from
//! trusted CAs, API keys; the CONNACK codes of each refusal; takeover; revocation.

use std::time::{Duration, Instant};

use rampart_core::{ClientTakeover, DeviceId, DeviceStatus, TenantPolicyPatch};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rumqttc::v5::ConnectionError as V5Error;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5Code;
use rumqttc::{ConnectReturnCode, ConnectionError};

use crate::harness::{ClientIdentity, Harness, PATIENCE};

fn v3_refusal(result: Result<crate::harness::V3Client, ConnectionError>) -> Option<ConnectReturnCode> {
    match result {
        Err(ConnectionError::ConnectionRefused(code)) => Some(code),
        _ => None,
    }
}

fn v5_refusal(result: Result<crate::harness::V5Client, V5Error>) -> Option<V5Code> {
    match result {
        Err(V5Error::ConnectionRefused(code)) => Some(code),
        _ => None,
    }
}

#[tokio::test]
async fn wrong_tokens_are_bad_credentials_in_both_versions() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "valve").await;
    let wrong = harness.connect_v3("valve", Some(("acme/valve", "rdt_wrong")), None).await;
    assert_eq!(v3_refusal(wrong), Some(ConnectReturnCode::BadUserNamePassword));
    let wrong = harness.connect_v5("valve", Some(("acme/valve", "rdt_wrong")), None).await;
    assert_eq!(v5_refusal(wrong), Some(V5Code::BadUserNamePassword));
    // A right token presented for the same device id in another tenant.
    harness.device("globex", "valve").await;
    let other_tenant = harness.connect_v3("valve", Some(("globex/valve", &token)), None).await;
    assert_eq!(v3_refusal(other_tenant), Some(ConnectReturnCode::BadUserNamePassword));
    let no_credentials = harness.connect_v3("valve", None, None).await;
    assert_eq!(v3_refusal(no_credentials), Some(ConnectReturnCode::BadUserNamePassword));
    let failures = harness.wait_for_events("acme", "auth_failure", 2).await;
    assert!(failures.len() >= 2, "auth_failure events: {failures:?}");
    assert_eq!(failures[0].severity, rampart_core::Severity::Minor);
    assert_eq!(failures[0].device.as_deref(), Some("valve"));
    assert!(!failures.iter().any(|event| event.details_json.contains("rdt_")), "no secret in events");
    assert_eq!(harness.wait_for_events("globex", "auth_failure", 1).await.len(), 1);
    // Made-up tenants get no events (nobody could read them, anybody could fill the store).
    let made_up = harness.connect_v3("x", Some(("no-such-tenant/x", "rdt_x")), None).await;
    assert_eq!(v3_refusal(made_up), Some(ConnectReturnCode::BadUserNamePassword));
    let page = rampart_store::Page { after: None, limit: 10 };
    let filter = rampart_store::SecurityEventFilter::default();
    let stored = harness.store.list_security_events("no-such-tenant", "", &filter, &page).await.expect("events");
    assert!(stored.is_empty());
}

#[tokio::test]
async fn client_ids_must_be_the_device_id() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "sensor-9").await;
    let wrong = harness.connect_v3("someone-else", Some(("acme/sensor-9", &token)), None).await;
    assert_eq!(v3_refusal(wrong), Some(ConnectReturnCode::BadClientId));
    let wrong = harness.connect_v5("someone-else", Some(("acme/sensor-9", &token)), None).await;
    assert_eq!(v5_refusal(wrong), Some(V5Code::ClientIdentifierNotValid));
    // An empty client id is given the device id.
    assert!(harness.connect_v5("", Some(("acme/sensor-9", &token)), None).await.is_ok());
}

#[tokio::test]
async fn revoked_and_quarantined_devices_are_not_authorized() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "lost").await;
    let quarantined_token = harness.device("acme", "suspect").await;
    harness.revoke("acme", "lost").await;
    let revoked = harness.connect_v3("lost", Some(("acme/lost", &token)), None).await;
    assert_eq!(v3_refusal(revoked), Some(ConnectReturnCode::NotAuthorized));
    let revoked = harness.connect_v5("lost", Some(("acme/lost", &token)), None).await;
    assert_eq!(v5_refusal(revoked), Some(V5Code::NotAuthorized));
    let events = harness.wait_for_events("acme", "revoked_credential_used", 1).await;
    assert_eq!(events.first().map(|e| e.severity.as_str()), Some("MAJOR"));

    let quarantine = [DeviceStatus::Registered, DeviceStatus::Active];
    harness
        .store
        .set_device_status("acme", "suspect", &quarantine, DeviceStatus::Quarantined)
        .await
        .expect("quarantine");
    let quarantined = harness.connect_v3("suspect", Some(("acme/suspect", &quarantined_token)), None).await;
    assert_eq!(v3_refusal(quarantined), Some(ConnectReturnCode::NotAuthorized));
}

#[tokio::test]
async fn revocation_closes_live_connections_within_a_second() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "door").await;
    let mut v3 = harness.connect_v3("door", Some(("acme/door", &token)), None).await.expect("connect");
    let started = Instant::now();
    harness.revoke("acme", "door").await;
    assert!(v3.closed_within(Duration::from_secs(1)).await, "still connected after 1 s");
    assert!(started.elapsed() < Duration::from_secs(1));
    let again = harness.connect_v3("door", Some(("acme/door", &token)), None).await;
    assert_eq!(v3_refusal(again), Some(ConnectReturnCode::NotAuthorized));
}

#[tokio::test]
async fn deleting_the_token_in_use_closes_the_connection() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "gate").await;
    let bystander = harness.device("acme", "bystander").await;
    let mut device = harness.connect_v5("gate", Some(("acme/gate", &token)), None).await.expect("connect");
    let mut other = harness.connect_v5("bystander", Some(("acme/bystander", &bystander)), None).await.expect("connect");
    let gate = DeviceId::parse("gate").expect("id");
    let rows = harness.platform.list_device_tokens(harness.admin("acme"), &gate).await.expect("tokens");
    harness.platform.delete_device_token(harness.admin("acme"), &gate, &rows[0].id).await.expect("delete token");
    assert!(device.closed_within(Duration::from_secs(1)).await);
    assert!(!other.closed_within(Duration::from_millis(200)).await, "other devices stay connected");
}

#[tokio::test]
async fn same_device_id_in_two_tenants_are_two_devices() {
    let harness = Harness::start().await;
    let acme_token = harness.device("acme", "twin").await;
    let globex_token = harness.device("globex", "twin").await;
    let mut acme = harness.connect_v3("twin", Some(("acme/twin", &acme_token)), None).await.expect("acme");
    let mut globex = harness.connect_v3("twin", Some(("globex/twin", &globex_token)), None).await.expect("globex");
    // Neither connection took the other over.
    assert!(!acme.closed_within(Duration::from_millis(300)).await);
    assert!(!globex.closed_within(Duration::from_millis(10)).await);
}

#[tokio::test]
async fn a_second_connection_takes_over_unless_the_tenant_rejects_it() {
    let harness = Harness::start().await;
    let token = harness.device("acme", "clone").await;
    let mut first = harness.connect_v5("clone", Some(("acme/clone", &token)), None).await.expect("first");
    let mut second = harness.connect_v5("clone", Some(("acme/clone", &token)), None).await.expect("second");
    assert!(first.closed_within(PATIENCE).await, "the newcomer replaces the live session");
    assert!(!second.closed_within(Duration::from_millis(200)).await, "the newcomer stays");

    let patch = TenantPolicyPatch { client_takeover: Some(ClientTakeover::Reject), ..TenantPolicyPatch::default() };
    harness.platform.update_tenant_policy(harness.admin("acme"), patch).await.expect("policy");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = harness.connect_v5("clone", Some(("acme/clone", &token)), None).await;
    assert_eq!(v5_refusal(refused), Some(V5Code::NotAuthorized));
}

#[tokio::test]
async fn applications_authenticate_with_api_keys() {
    let harness = Harness::start().await;
    let (id, key) = harness.api_key("acme", &["viewer"]).await;
    assert!(harness.connect_v3("any-client", Some((&format!("acme/{id}"), &key)), None).await.is_ok());
    let wrong_tenant = harness.connect_v3("any-client", Some((&format!("globex/{id}"), &key)), None).await;
    assert_eq!(v3_refusal(wrong_tenant), Some(ConnectReturnCode::BadUserNamePassword));
    let tampered = format!("{key}x");
    let wrong_key = harness.connect_v5("any-client", Some((&format!("acme/{id}"), &tampered)), None).await;
    assert_eq!(v5_refusal(wrong_key), Some(V5Code::BadUserNamePassword));
}

/// A CSR for `common_name` and the key that signs it.
fn csr(common_name: &str) -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, common_name);
    let request = params.serialize_request(&key).expect("csr");
    (request.pem().expect("csr pem"), key)
}

#[tokio::test]
async fn tenant_ca_certificates_authenticate_their_device() {
    let harness = Harness::start().await;
    harness.device("acme", "cam-1").await;
    let (request, key) = csr("cam-1");
    let cam = DeviceId::parse("cam-1").expect("id");
    let issued = harness.platform.issue_certificate(harness.admin("acme"), &cam, &request).await.expect("issue");
    let identity = ClientIdentity { chain_pem: issued.row.cert_pem.clone(), key_pem: key.serialize_pem() };

    assert!(harness.connect_v3("cam-1", None, Some(&identity)).await.is_ok(), "certificate alone");
    assert!(harness.connect_v5("", Some(("acme/cam-1", "")), Some(&identity)).await.is_ok(), "with agreeing username");
    let disagreeing = harness.connect_v3("cam-1", Some(("acme/other", "x")), Some(&identity)).await;
    assert_eq!(v3_refusal(disagreeing), Some(ConnectReturnCode::BadUserNamePassword));

    // A certificate of another tenant's device with the same id authenticates that device,
    // never acme's: presented as acme's, it is refused.
    harness.device("globex", "cam-1").await;
    let (request, key) = csr("cam-1");
    let foreign = harness.platform.issue_certificate(harness.admin("globex"), &cam, &request).await.expect("issue");
    let foreign = ClientIdentity { chain_pem: foreign.row.cert_pem, key_pem: key.serialize_pem() };
    assert_eq!(
        v3_refusal(harness.connect_v3("cam-1", Some(("acme/cam-1", "")), Some(&foreign)).await),
        Some(ConnectReturnCode::BadUserNamePassword)
    );

    // Revoking the certificate in the store refuses it at once, CRL or not.
    harness.revoke("acme", "cam-1").await;
    assert_eq!(
        v3_refusal(harness.connect_v3("cam-1", None, Some(&identity)).await),
        Some(ConnectReturnCode::NotAuthorized)
    );
}

/// An external CA and a device certificate it issues (CN = `device`, clientAuth).
fn external_ca(name: &str) -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).expect("ca");
    (cert.pem(), key)
}

fn leaf_from(ca_pem: &str, ca_key: &KeyPair, device: &str) -> ClientIdentity {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, device);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).expect("issuer");
    let cert = params.signed_by(&key, &issuer).expect("leaf");
    ClientIdentity { chain_pem: cert.pem(), key_pem: key.serialize_pem() }
}

#[tokio::test]
async fn trusted_cas_register_devices_just_in_time() {
    let harness = Harness::start().await;
    let (ca_pem, ca_key) = external_ca("Acme Factory CA");
    harness.trust_ca("acme", &ca_pem, &ca_key).await;
    let identity = leaf_from(&ca_pem, &ca_key, "robot-7");
    assert!(harness.connect_v3("robot-7", None, Some(&identity)).await.is_ok());
    let device = harness.store.get_device("acme", "robot-7").await.expect("registered just in time");
    assert_eq!(device.status, DeviceStatus::Active);
    assert!(harness.store.get_device_key("acme", "robot-7").await.is_ok(), "device key created");

    // Same issuer name, different key: names the CA but is not signed by it.
    let (impostor_pem, impostor_key) = external_ca("Acme Factory CA");
    let forged = leaf_from(&impostor_pem, &impostor_key, "robot-8");
    assert_eq!(
        v3_refusal(harness.connect_v3("robot-8", None, Some(&forged)).await),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert!(harness.store.get_device("acme", "robot-8").await.is_err());
}

/// Holds every CONNECT between its authentication and its registration until released.
struct HoldAfterAuthentication {
    reached: std::sync::mpsc::SyncSender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl rampart_gateway::Guard for HoldAfterAuthentication {
    fn on_connect(&self, _origin: &rampart_gateway::Origin<'_>) -> rampart_gateway::Verdict {
        let _told = self.reached.try_send(());
        let release = self.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _released_or_timed_out = release.recv_timeout(PATIENCE);
        rampart_gateway::Verdict::Allow
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_while_the_connection_is_being_set_up_still_reaches_it() {
    let (reached, reached_receiver) = std::sync::mpsc::sync_channel(1);
    let (release, release_receiver) = std::sync::mpsc::channel();
    let guard = HoldAfterAuthentication { reached, release: std::sync::Mutex::new(release_receiver) };
    let harness = std::sync::Arc::new(Harness::start_guarded(|_| {}, std::sync::Arc::new(guard)).await);
    let token = harness.device("acme", "racer").await;
    let connecting = {
        let harness = std::sync::Arc::clone(&harness);
        tokio::spawn(async move { harness.connect_v3("racer", Some(("acme/racer", &token)), None).await })
    };
    // The token was checked and accepted; the connection is not registered yet.
    let waited = tokio::task::spawn_blocking(move || reached_receiver.recv_timeout(PATIENCE)).await.expect("wait");
    waited.expect("the CONNECT reached the guard");
    harness.revoke("acme", "racer").await;
    release.send(()).expect("release");
    match connecting.await.expect("connect task") {
        Err(refused) => assert_eq!(v3_refusal(Err(refused)), Some(ConnectReturnCode::NotAuthorized)),
        Ok(mut client) => assert!(client.closed_within(Duration::from_secs(1)).await, "revoked, still connected"),
    }
}
