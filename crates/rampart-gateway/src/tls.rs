//! TLS for the MQTT listener: the rustls server configuration (TLS 1.3 and 1.2, the aws-lc-rs
//! provider's AEAD suites) with optional client certificates.
//!
//! Client certificates are asked for but never required, and the TLS layer does not decide
//! whether to trust them: which CA a device certificate must chain to depends on the tenant it
//! claims, and revocation lives in the store. So the verifier here only checks that the client
//! proved possession of the certificate's key (the handshake signature); the chain is verified
//! at CONNECT against the tenant CA or a trusted CA (`rampart_platform::device_auth`).

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::DistinguishedName;
use rustls::ServerConfig;
use rustls::SignatureScheme;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::error::GatewayError;

/// ALPN protocol id some MQTT clients offer; clients that offer none are served too.
const MQTT_ALPN: &[u8] = b"mqtt";

/// Accepts any well-formed client certificate whose holder signs the handshake; trust is
/// decided later, at CONNECT.
#[derive(Debug)]
struct DeferredTrustVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredTrustVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Parsing checks the certificate is syntactically valid X.509; the chain and validity
        // period are verified at CONNECT against the store.
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client certificate verifier for listeners that authenticate devices by certificate:
/// certificates are optional, no CA names are hinted, any well-formed chain is accepted as long
/// as the client signs the handshake with its key. The caller MUST then authenticate the
/// chain (see `Platform::authenticate_device_certificate`).
pub fn client_cert_verifier() -> Arc<dyn ClientCertVerifier> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(DeferredTrustVerifier { algorithms: provider.signature_verification_algorithms })
}

/// The rustls configuration of the MQTT listener from a PEM certificate chain (leaf first) and
/// its PEM private key: TLS 1.3 and 1.2 only, AEAD suites only, optional client certificates
/// through [`client_cert_verifier`], ALPN `mqtt` accepted but not required.
pub fn mqtt_server_config(cert_chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, GatewayError> {
    let tls = |what: &str, error: &dyn std::fmt::Display| GatewayError::Tls(format!("{what}: {error}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|error| tls("parsing the certificate chain", &error))?;
    if certs.is_empty() {
        return Err(GatewayError::Tls("the certificate chain holds no certificate".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|error| tls("parsing the private key", &error))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // Every suite the aws-lc-rs provider offers for TLS 1.2 and 1.3 is an AEAD.
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| tls("protocol versions", &error))?
        .with_client_cert_verifier(client_cert_verifier())
        .with_single_cert(certs, key)
        .map_err(|error| tls("certificate and key do not match", &error))?;
    // With ALPN configured, rustls refuses clients offering only other protocols; clients
    // offering none (most MQTT clients) are unaffected.
    config.alpn_protocols = vec![MQTT_ALPN.to_vec()];
    Ok(Arc::new(config))
}
