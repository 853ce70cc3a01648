//! The tenant PKI: CAs, server certificates, device certificates from CSRs, CRLs, and checks
//! of CA certificates brought by customers. All keys we generate are ECDSA P-256.
//!
//! Device CSRs are parsed and verified with x509-parser directly rather than through
//! `rcgen::CertificateSigningRequestParams::from_pem`: that parser refuses CSRs carrying
//! extensions it does not model, and we ignore everything a CSR asks for except its key anyway.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA1WITHRSA,
    OID_SHA1_WITH_RSA, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::{Zeroize, Zeroizing};

use crate::error::CryptoError;

const CA_VALIDITY_DAYS: i64 = 3650;
const SERVER_VALIDITY_DAYS: i64 = 397;
/// Certificates start a little in the past so peers with slightly slow clocks accept them.
const BACKDATE: Duration = Duration::minutes(5);
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// A certificate and its private key, both PEM. The key is wiped on drop.
pub struct GeneratedCa {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for GeneratedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCa").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

/// A device certificate issued from a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub cert_pem: String,
    /// Lower-case hex, no separators.
    pub serial_hex: String,
    /// Unix milliseconds.
    pub not_after_ms: i64,
}

/// What we keep about an accepted CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificateInfo {
    /// RFC 4514-style, e.g. `CN=Acme Devices, O=Acme`.
    pub subject: String,
    pub not_after_ms: i64,
    /// Lower-case hex SHA-256 of the DER certificate.
    pub fingerprint_sha256: String,
}

/// An rcgen key pair that wipes its DER copy on drop.
struct WipedKeyPair(KeyPair);

impl Drop for WipedKeyPair {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn pki_error(operation: &'static str) -> impl Fn(rcgen::Error) -> CryptoError {
    move |error| CryptoError::Pki { operation, reason: error.to_string() }
}

fn invalid_parameter(name: &'static str, reason: impl Into<String>) -> CryptoError {
    CryptoError::InvalidParameter { name, reason: reason.into() }
}

fn invalid_csr(reason: impl Into<String>) -> CryptoError {
    CryptoError::InvalidCsr { reason: reason.into() }
}

fn invalid_certificate(reason: impl Into<String>) -> CryptoError {
    CryptoError::InvalidCertificate { reason: reason.into() }
}

/// Now, truncated to whole seconds as certificates encode it.
fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn datetime_from_ms(ms: i64, name: &'static str) -> Result<OffsetDateTime, CryptoError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| invalid_parameter(name, format!("{ms} ms is out of range")))
}

fn unix_ms(time: OffsetDateTime) -> i64 {
    time.unix_timestamp().saturating_mul(1000)
}

/// 16 random bytes, top bit clear (positive) and second-highest set (no leading zero byte),
/// so the DER encoding and the hex form are exactly 16 bytes / 32 characters.
fn random_serial() -> Vec<u8> {
    let mut serial = crate::random_array::<16>().to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    serial
}

fn generate_p256() -> Result<WipedKeyPair, CryptoError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map(WipedKeyPair).map_err(pki_error("key generation"))
}

fn parse_pem(pem: &str, labels: &[&str], what: &str) -> Result<Vec<u8>, String> {
    let (rest, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| format!("not a PEM {what}"))?;
    if !labels.contains(&parsed.label.as_str()) {
        return Err(format!("expected a PEM {what}, found {:?}", parsed.label));
    }
    if rest.windows(10).any(|window| window == b"-----BEGIN") {
        return Err(format!("expected exactly one {what}"));
    }
    Ok(parsed.contents)
}

fn parse_certificate_der(der: &[u8]) -> Result<X509Certificate<'_>, CryptoError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(invalid_certificate("trailing data after certificate")),
        Err(_) => Err(invalid_certificate("malformed certificate")),
    }
}

/// Loads the CA key, checks it belongs to the CA certificate (a mismatch would yield
/// certificates that verify against nothing) and returns both as an rcgen issuer.
fn with_issuer<T>(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    operation: &'static str,
    sign: impl FnOnce(&Issuer<'_, &KeyPair>) -> Result<T, rcgen::Error>,
) -> Result<T, CryptoError> {
    let key = KeyPair::from_pem(ca_key_pem)
        .map(WipedKeyPair)
        .map_err(|_| invalid_parameter("CA key", "not a supported PEM private key"))?;
    let der = parse_pem(ca_cert_pem, &["CERTIFICATE"], "certificate").map_err(invalid_certificate)?;
    let cert = parse_certificate_der(&der)?;
    if cert.public_key().subject_public_key.data.as_ref() != key.0.public_key_raw() {
        return Err(invalid_parameter("CA key", "does not match the CA certificate"));
    }
    let issuer =
        Issuer::from_ca_cert_der(&der.as_slice().into(), &key.0).map_err(pki_error("reading the CA certificate"))?;
    sign(&issuer).map_err(pki_error(operation))
}

/// A self-signed CA: ECDSA P-256, 10 years, `CA:true, pathlen:0`, keyCertSign + cRLSign,
/// subject `CN=<common_name>, O=Rampart`.
pub fn generate_ca(common_name: &str) -> Result<GeneratedCa, CryptoError> {
    if common_name.is_empty() || common_name.len() > 64 {
        return Err(invalid_parameter("common name", "must be 1 to 64 bytes"));
    }
    let key = generate_p256()?;
    let now = now_seconds();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.distinguished_name.push(DnType::OrganizationName, "Rampart");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params.self_signed(&key.0).map_err(pki_error("CA self-signing"))?;
    Ok(GeneratedCa { cert_pem: cert.pem(), key_pem: Zeroizing::new(key.0.serialize_pem()) })
}

/// A TLS server certificate signed by the CA: fresh P-256 key, 397 days, serverAuth, one SAN
/// per entry (IP addresses recognised as such), CN = the first SAN.
pub fn issue_server_certificate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    sans: &[String],
) -> Result<GeneratedCa, CryptoError> {
    let Some(first_san) = sans.first() else {
        return Err(invalid_parameter("SANs", "at least one is required"));
    };
    let mut params =
        CertificateParams::new(sans.to_vec()).map_err(|error| invalid_parameter("SANs", error.to_string()))?;
    let key = generate_p256()?;
    let now = now_seconds();
    params.distinguished_name.push(DnType::CommonName, first_san.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(SERVER_VALIDITY_DAYS);
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.use_authority_key_identifier_extension = true;
    let cert =
        with_issuer(ca_cert_pem, ca_key_pem, "server certificate signing", |issuer| params.signed_by(&key.0, issuer))?;
    Ok(GeneratedCa { cert_pem: cert.pem(), key_pem: Zeroizing::new(key.0.serialize_pem()) })
}

/// `^[a-z][a-z0-9-]{1,62}$` (SPEC §2).
fn is_tenant_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` (SPEC §2).
fn is_device_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Significant bits of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}

/// Accepts RSA 2048–8192, ECDSA P-256/P-384 and Ed25519 public keys.
fn check_device_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), CryptoError> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(invalid_csr("malformed RSA public key"));
        };
        let bits = bit_length(rsa.modulus);
        if bits < MIN_RSA_BITS {
            return Err(CryptoError::WeakKey { bits });
        }
        if bits > MAX_RSA_BITS {
            return Err(invalid_csr(format!("RSA key of {bits} bits is larger than 8192")));
        }
        Ok(())
    } else if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|parameters| parameters.as_oid().ok());
        match curve {
            Some(curve) if curve == OID_EC_P256 || curve == OID_NIST_EC_P384 => Ok(()),
            _ => Err(invalid_csr("unsupported elliptic curve (P-256 or P-384 required)")),
        }
    } else if *algorithm == OID_SIG_ED25519 {
        Ok(())
    } else {
        Err(invalid_csr(format!("unsupported key algorithm {algorithm}")))
    }
}

/// Signs a device CSR (PEM). Only the CSR's public key is used: the certificate gets
/// CN = `device_id`, SAN URI `urn:rampart:{tenant}:{device_id}`, clientAuth, `CA:false`,
/// digitalSignature, a random 16-byte serial and `validity_days` of validity.
///
/// Refuses RSA keys under 2048 bits ([`CryptoError::WeakKey`]), and bad signatures,
/// SHA-1 signatures, unsupported algorithms and garbage ([`CryptoError::InvalidCsr`]).
pub fn sign_device_csr(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    csr_pem: &str,
    tenant: &str,
    device_id: &str,
    validity_days: u32,
) -> Result<IssuedCertificate, CryptoError> {
    if !is_tenant_id(tenant) {
        return Err(invalid_parameter("tenant id", format!("{tenant:?} is not a tenant id")));
    }
    if !is_device_id(device_id) {
        return Err(invalid_parameter("device id", format!("{device_id:?} is not a device id")));
    }
    if validity_days == 0 {
        return Err(invalid_parameter("validity", "must be at least one day"));
    }
    let der = parse_pem(csr_pem, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"], "certificate request")
        .map_err(invalid_csr)?;
    let csr = match X509CertificationRequest::from_der(&der) {
        Ok(([], csr)) => csr,
        Ok(_) => return Err(invalid_csr("trailing data after the request")),
        Err(_) => return Err(invalid_csr("malformed certificate request")),
    };
    let spki = &csr.certification_request_info.subject_pki;
    // Check the key before the signature: aws-lc refuses to verify with short RSA keys, and
    // the caller should learn the key is weak rather than that the signature is bad.
    check_device_key(spki)?;
    let signature_algorithm = &csr.signature_algorithm.algorithm;
    if *signature_algorithm == OID_PKCS1_SHA1WITHRSA || *signature_algorithm == OID_SHA1_WITH_RSA {
        return Err(invalid_csr("SHA-1 signatures are not accepted"));
    }
    csr.verify_signature().map_err(|_| invalid_csr("signature does not verify"))?;
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki.raw)
        .map_err(|error| invalid_csr(format!("unsupported public key: {error}")))?;

    let now = now_seconds();
    let not_after = now + Duration::days(i64::from(validity_days));
    let serial = random_serial();
    let uri = format!("urn:rampart:{tenant}:{device_id}");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, device_id);
    params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(pki_error("building the SAN URI"))?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.use_authority_key_identifier_extension = true;
    let cert = with_issuer(ca_cert_pem, ca_key_pem, "device certificate signing", |issuer| {
        params.signed_by(&public_key, issuer)
    })?;
    Ok(IssuedCertificate { cert_pem: cert.pem(), serial_hex: hex::encode(serial), not_after_ms: unix_ms(not_after) })
}

/// A v2 CRL signed by the CA: thisUpdate = `now_ms`, nextUpdate one day later, the given CRL
/// number, one entry per `(serial hex, revoked_at_ms)`. Returns PEM.
pub fn build_crl(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    revoked: &[(String, i64)],
    crl_number: u64,
    now_ms: i64,
) -> Result<String, CryptoError> {
    let revoked_certs = revoked
        .iter()
        .map(|(serial_hex, revoked_at_ms)| {
            let serial = hex::decode(serial_hex)
                .ok()
                .filter(|serial| (1..=20).contains(&serial.len()))
                .ok_or_else(|| invalid_parameter("serial", format!("{serial_hex:?} is not 1 to 20 hex bytes")))?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: datetime_from_ms(*revoked_at_ms, "revocation time")?,
                reason_code: None,
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, CryptoError>>()?;
    let this_update = datetime_from_ms(now_ms, "CRL time")?;
    let params = CertificateRevocationListParams {
        this_update,
        next_update: this_update + Duration::days(1),
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    with_issuer(ca_cert_pem, ca_key_pem, "CRL signing", |issuer| params.signed_by(issuer)?.pem())
}

/// Parses one PEM certificate and checks it can act as a CA (basicConstraints `CA:true`, and
/// keyCertSign if key usage is present) and is valid at `now_ms`.
pub fn parse_ca_certificate(pem: &str, now_ms: i64) -> Result<CaCertificateInfo, CryptoError> {
    let der = parse_pem(pem, &["CERTIFICATE"], "certificate").map_err(invalid_certificate)?;
    let cert = parse_certificate_der(&der)?;
    let is_ca = cert
        .basic_constraints()
        .map_err(|_| invalid_certificate("malformed basicConstraints"))?
        .is_some_and(|extension| extension.value.ca);
    if !is_ca {
        return Err(invalid_certificate("not a CA certificate (basicConstraints CA:true missing)"));
    }
    let key_usage = cert.key_usage().map_err(|_| invalid_certificate("malformed keyUsage"))?;
    if key_usage.is_some_and(|extension| !extension.value.key_cert_sign()) {
        return Err(invalid_certificate("keyUsage does not allow certificate signing"));
    }
    let not_before_ms = cert.validity().not_before.timestamp().saturating_mul(1000);
    let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
    if now_ms < not_before_ms {
        return Err(invalid_certificate("not yet valid"));
    }
    if now_ms > not_after_ms {
        return Err(invalid_certificate("expired"));
    }
    Ok(CaCertificateInfo {
        subject: cert.subject().to_string(),
        not_after_ms,
        fingerprint_sha256: crate::secrets::sha256_hex(&der),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use rcgen::{PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256};
    use x509_parser::extensions::GeneralName;
    use x509_parser::revocation_list::CertificateRevocationList;

    const RSA_1024_CSR: &str = include_str!("../tests/fixtures/rsa1024.csr.pem");

    fn now_ms() -> i64 {
        unix_ms(OffsetDateTime::now_utc())
    }

    fn pem_to_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
    }

    fn der_to_pem(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }

    /// A CSR asking for things we must ignore: another CN, a DNS SAN, CA rights.
    fn csr_for(key: &KeyPair) -> String {
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "admin");
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    fn rsa_key(size: aws_lc_rs::rsa::KeySize) -> KeyPair {
        use aws_lc_rs::encoding::AsDer;
        let rsa = aws_lc_rs::rsa::KeyPair::generate(size).unwrap();
        let pkcs8 = rsa.as_der().unwrap();
        let pem = der_to_pem("PRIVATE KEY", pkcs8.as_ref());
        KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &PKCS_RSA_SHA256).unwrap()
    }

    #[test]
    fn ca_and_server_certificate() {
        let ca = generate_ca("Acme Devices").unwrap();
        let info = parse_ca_certificate(&ca.cert_pem, now_ms()).unwrap();
        assert_eq!(info.subject, "CN=Acme Devices, O=Rampart");
        assert_eq!(info.fingerprint_sha256, crate::secrets::sha256_hex(&pem_to_der(&ca.cert_pem)));
        let ten_years_ms = 3650 * 86_400_000;
        assert!((info.not_after_ms - now_ms() - ten_years_ms).abs() < 60_000);
        assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        let ca_der = pem_to_der(&ca.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let bc = ca_cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = ca_cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());

        let sans = ["localhost", "127.0.0.1", "::1"].map(String::from);
        let server = issue_server_certificate(&ca.cert_pem, &ca.key_pem, &sans).unwrap();
        let der = pem_to_der(&server.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=localhost");
        let names = &cert.subject_alternative_name().unwrap().unwrap().value.general_names;
        assert_eq!(names[0], GeneralName::DNSName("localhost"));
        assert_eq!(names[1], GeneralName::IPAddress(&[127, 0, 0, 1]));
        assert!(matches!(names[2], GeneralName::IPAddress(ip) if ip.len() == 16));
        assert!(cert.extended_key_usage().unwrap().unwrap().value.server_auth);
        let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(lifetime <= 398 * 86_400, "{lifetime}");
        assert!(parse_ca_certificate(&server.cert_pem, now_ms()).is_err(), "leaf is not a CA");

        let other = generate_ca("Other").unwrap();
        let mismatch = issue_server_certificate(&ca.cert_pem, &other.key_pem, &sans);
        assert!(matches!(mismatch, Err(CryptoError::InvalidParameter { .. })));
        assert!(issue_server_certificate(&ca.cert_pem, &ca.key_pem, &[]).is_err());
    }

    #[test]
    fn parse_ca_certificate_refusals() {
        let ca = generate_ca("Acme").unwrap();
        let two = format!("{}{}", ca.cert_pem, ca.cert_pem);
        let far_future = now_ms() + 20 * 365 * 86_400_000;
        let past = now_ms() - 86_400_000;
        for (name, pem, now) in [
            ("garbage", "garbage", now_ms()),
            ("empty", "", now_ms()),
            ("two certificates", two.as_str(), now_ms()),
            ("key instead", ca.key_pem.as_str(), now_ms()),
            ("expired", ca.cert_pem.as_str(), far_future),
            ("not yet valid", ca.cert_pem.as_str(), past),
        ] {
            assert!(matches!(parse_ca_certificate(pem, now), Err(CryptoError::InvalidCertificate { .. })), "{name}");
        }
    }

    #[test]
    fn sign_device_csr_accepts_supported_keys() {
        let ca = generate_ca("Acme Devices").unwrap();
        let ca_der = pem_to_der(&ca.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let keys = [
            ("P-256", KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()),
            ("P-384", KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap()),
            ("Ed25519", KeyPair::generate_for(&PKCS_ED25519).unwrap()),
            ("RSA-2048", rsa_key(aws_lc_rs::rsa::KeySize::Rsa2048)),
        ];
        for (name, key) in keys {
            let before_ms = now_ms();
            let issued = sign_device_csr(&ca.cert_pem, &ca.key_pem, &csr_for(&key), "acme", "sensor-1", 30)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            let der = pem_to_der(&issued.cert_pem);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            cert.verify_signature(Some(ca_cert.public_key())).unwrap();
            assert_eq!(
                cert.public_key().raw,
                X509CertificationRequest::from_der(&pem_to_der(&csr_for(&key)))
                    .unwrap()
                    .1
                    .certification_request_info
                    .subject_pki
                    .raw,
                "{name}"
            );
            assert_eq!(cert.subject().to_string(), "CN=sensor-1", "{name}");
            assert_eq!(cert.issuer(), ca_cert.subject(), "{name}");
            let names = &cert.subject_alternative_name().unwrap().unwrap().value.general_names;
            assert_eq!(names, &vec![GeneralName::URI("urn:rampart:acme:sensor-1")], "{name}");
            assert_eq!(hex::encode(cert.raw_serial()), issued.serial_hex, "{name}");
            assert_eq!(issued.serial_hex.len(), 32, "{name}");
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.client_auth && !eku.server_auth, "{name}");
            assert!(!cert.basic_constraints().unwrap().unwrap().value.ca, "{name}");
            assert!(cert.key_usage().unwrap().unwrap().value.digital_signature(), "{name}");
            assert_eq!(cert.validity().not_after.timestamp() * 1000, issued.not_after_ms, "{name}");
            let expected_ms = before_ms + 30 * 86_400_000;
            assert!((issued.not_after_ms - expected_ms).abs() < 5_000, "{name}");
        }
    }

    #[test]
    fn sign_device_csr_refusals() {
        let ca = generate_ca("Acme Devices").unwrap();
        let sign = |csr: &str| sign_device_csr(&ca.cert_pem, &ca.key_pem, csr, "acme", "sensor-1", 30);

        assert!(matches!(sign(RSA_1024_CSR), Err(CryptoError::WeakKey { bits: 1024 })));

        let good = csr_for(&KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap());
        let mut der = pem_to_der(&good);
        *der.last_mut().unwrap() ^= 0x01;
        let bad_signature = der_to_pem("CERTIFICATE REQUEST", &der);
        let garbage_der = der_to_pem("CERTIFICATE REQUEST", b"definitely not DER");
        for (name, csr) in [
            ("bad signature", bad_signature.as_str()),
            ("garbage DER", garbage_der.as_str()),
            ("not PEM", "hello"),
            ("empty", ""),
            ("certificate instead", ca.cert_pem.as_str()),
        ] {
            assert!(matches!(sign(csr), Err(CryptoError::InvalidCsr { .. })), "{name}: {:?}", sign(csr));
        }

        for (tenant, device, days) in [("Acme", "d", 30), ("acme", "bad/id", 30), ("acme", "", 30), ("acme", "d", 0)] {
            let result = sign_device_csr(&ca.cert_pem, &ca.key_pem, &good, tenant, device, days);
            assert!(matches!(result, Err(CryptoError::InvalidParameter { .. })), "{tenant} {device} {days}");
        }
    }

    #[test]
    fn crl_round_trip() {
        let ca = generate_ca("Acme Devices").unwrap();
        let ca_der = pem_to_der(&ca.cert_pem);
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let now = 1_750_000_000_000;
        let revoked = vec![
            ("4a1b2c3d4e5f60718293a4b5c6d7e8f9".to_string(), now - 3_600_000),
            ("7fffffffffffffffffffffffffffffff".to_string(), now - 1000),
        ];
        let crl_pem = build_crl(&ca.cert_pem, &ca.key_pem, &revoked, 42, now).unwrap();
        assert!(crl_pem.starts_with("-----BEGIN X509 CRL-----"));
        let der = pem_to_der(&crl_pem);
        let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
        crl.verify_signature(ca_cert.public_key()).unwrap();
        assert_eq!(crl.version().map(|v| v.0), Some(1));
        assert_eq!(crl.issuer(), ca_cert.subject());
        assert_eq!(crl.crl_number().map(|n| n.to_string()), Some("42".to_string()));
        assert_eq!(crl.last_update().timestamp(), now / 1000);
        assert_eq!(crl.next_update().unwrap().timestamp(), now / 1000 + 86_400);
        let serials: Vec<(String, i64)> = crl
            .iter_revoked_certificates()
            .map(|entry| (hex::encode(entry.raw_serial()), entry.revocation_date.timestamp() * 1000))
            .collect();
        assert_eq!(serials, revoked.iter().map(|(s, t)| (s.clone(), t / 1000 * 1000)).collect::<Vec<_>>());

        let empty = build_crl(&ca.cert_pem, &ca.key_pem, &[], 1, now).unwrap();
        let der = pem_to_der(&empty);
        assert_eq!(CertificateRevocationList::from_der(&der).unwrap().1.iter_revoked_certificates().count(), 0);
        for bad_serial in ["", "xyz", &"ab".repeat(21)] {
            let result = build_crl(&ca.cert_pem, &ca.key_pem, &[(bad_serial.to_string(), now)], 2, now);
            assert!(matches!(result, Err(CryptoError::InvalidParameter { .. })), "{bad_serial}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[0, 0]), 0);
        for (id, ok) in [("acme", true), ("a", false), ("a-1", true), ("1a", false), ("Acme", false)] {
            assert_eq!(is_tenant_id(id), ok, "{id}");
        }
        for (id, ok) in [("d", true), ("Sensor_1.a-b", true), (".x", false), ("a/b", false), ("", false)] {
            assert_eq!(is_device_id(id), ok, "{id}");
        }
    }
}
