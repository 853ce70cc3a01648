//! TLS to PostgreSQL, as the URL asks (`sslmode`, `sslrootcert`, with libpq's names), on
//! rustls. Rampart always verifies the server: `sslmode=require` and `verify-ca` check the
//! certificate chain against `sslrootcert`, `verify-full` also checks that the certificate
//! names the host. Without `sslmode` (or with `disable`) connections are in clear text, for a
//! server on loopback or a private network.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::{StoreError, StoreResult};

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// No TLS (no `sslmode`, or `sslmode=disable`).
    Plain,
    /// TLS; the chain must verify to `sslrootcert` (`require`, `verify-ca`).
    VerifyCa,
    /// TLS; the chain must verify and name the host (`verify-full`).
    VerifyFull,
}

/// A URL split into what tokio-postgres reads and the TLS settings Rampart applies itself.
#[derive(Debug)]
pub(crate) struct TlsUrl {
    /// The URL without `sslmode` and `sslrootcert`.
    pub url: String,
    pub mode: TlsMode,
    pub root_cert: Option<String>,
}

fn invalid(why: &str) -> StoreError {
    // The URL may hold a password: never echo it.
    StoreError::Backend(format!("invalid PostgreSQL URL: {why}"))
}

/// Decodes `%XX` escapes of a query value.
fn percent_decode(value: &str) -> StoreResult<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes.get(index + 1..index + 3).ok_or_else(|| invalid("bad % escape"))?;
                let hex = std::str::from_utf8(hex).map_err(|_| invalid("bad % escape"))?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| invalid("bad % escape"))?);
                index += 3;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| invalid("a query value is not UTF-8"))
}

/// Takes `sslmode` and `sslrootcert` out of the URL's query string.
pub(crate) fn split_url(url: &str) -> StoreResult<TlsUrl> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => return Ok(TlsUrl { url: url.to_owned(), mode: TlsMode::Plain, root_cert: None }),
    };
    let mut kept = Vec::new();
    let mut mode = TlsMode::Plain;
    let mut root_cert = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = match percent_decode(value)?.as_str() {
                    "disable" => TlsMode::Plain,
                    "require" | "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    _ => return Err(invalid("sslmode must be disable, require, verify-ca or verify-full")),
                }
            }
            "sslrootcert" => root_cert = Some(percent_decode(value)?),
            _ => kept.push(pair),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    if mode != TlsMode::Plain && root_cert.is_none() {
        return Err(invalid("sslmode=require|verify-ca|verify-full needs sslrootcert=<CA file> to verify the server"));
    }
    Ok(TlsUrl { url, mode, root_cert })
}

/// The rustls client configuration for `mode`, trusting the certificates in `root_cert`.
pub(crate) fn client_config(mode: TlsMode, root_cert: &str) -> StoreResult<rustls::ClientConfig> {
    let pem = std::fs::read(root_cert).map_err(|error| StoreError::Backend(format!("reading sslrootcert: {error}")))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|_| StoreError::Backend("sslrootcert is not PEM certificates".into()))?;
        roots.add(certificate).map_err(|error| StoreError::Backend(format!("sslrootcert: {error}")))?;
    }
    if roots.is_empty() {
        return Err(StoreError::Backend("sslrootcert holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|error| StoreError::Backend(format!("PostgreSQL TLS verifier: {error}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| StoreError::Backend(format!("PostgreSQL TLS: {error}")))?;
    let config = match mode {
        TlsMode::VerifyFull | TlsMode::Plain => builder.with_webpki_verifier(verifier).with_no_client_auth(),
        TlsMode::VerifyCa => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verifier))).with_no_client_auth()
        }
    };
    Ok(config)
}

/// libpq's `verify-ca`: the chain must verify to the trusted roots; the name in the
/// certificate is not compared with the host. Everything else is the webpki verifier's.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_the_tls_settings_and_keep_the_rest() {
        let split = split_url("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=5")
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(split.url, "postgres://u@h/db?connect_timeout=5");
        assert_eq!(split.mode, TlsMode::VerifyFull);
        assert_eq!(split.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let plain = split_url("postgres://u@h/db").unwrap_or_else(|error| panic!("{error}"));
        assert_eq!((plain.url.as_str(), plain.mode), ("postgres://u@h/db", TlsMode::Plain));
        assert!(split_url("postgres://u:secret@h/db?sslmode=require").is_err(), "require needs a root");
        let error = split_url("postgres://u:secret@h/db?sslmode=allow").err().map(|e| e.to_string());
        assert!(error.is_some_and(|text| !text.contains("secret")));
    }
}
