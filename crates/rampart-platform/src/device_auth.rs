//! Device and application credential checks (SPEC §6, §7), shared by the MQTT gateway and the
//! HTTPS device API so both edges accept exactly the same credentials:
//!
//! - a device token (`<tenant>/<device>` + token, or a bare bearer token over HTTPS), compared
//!   as SHA-256 in constant time;
//! - a client certificate issued by the tenant CA (identity from the SAN URI
//!   `urn:rampart:<tenant>:<device>` and the CN), with revocation checked in the store, not only
//!   in the CRL the TLS layer may have seen;
//! - a client certificate from a trusted external CA whose full chain verifies to it, with
//!   just-in-time registration when the CA has `auto_register`;
//! - an application's API key (`rak_<id>_<secret>`), as a [`Principal`].
//!
//! Trust is decided here, at CONNECT (or per request), against the store: the TLS layer only
//! checks that the client holds the certificate's key. [`Platform::device_credential_valid`]
//! asks again for a connection already admitted (after it is registered, and whenever the bus
//! says to re-check), so a revocation racing a connect still reaches it. A revocation fences
//! off every certificate from a trusted CA issued before it, so reinstating a device revives
//! none of them.

use std::time::Duration;

use rampart_core::{DeviceStatus, IdKind, SecurityEventType, Severity, validate_id};
use rampart_crypto::{ct_eq, sha256};
use rampart_store::{Device, StoreError, TrustedCa};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::json;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{PlatformError, ServiceError};
use crate::platform::Platform;
use crate::principal::Principal;
use crate::security_events::SecurityEventDraft;
use crate::services::devices::{Registrar, fresh_device};

/// The SAN URI scheme binding a device certificate to its tenant.
const RAMPART_SAN_PREFIX: &str = "urn:rampart:";
/// Longest client certificate chain we look at (leaf plus intermediates).
const MAX_CHAIN: usize = 8;

/// How a device proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAuthMethod {
    /// A device token; `token_id` names the row (for cut-off when it is deleted).
    Token { token_id: String },
    /// A certificate issued by the tenant CA.
    Certificate { serial: String },
    /// A certificate from a trusted external CA, valid from `not_before_ms`.
    TrustedCa { ca_id: String, not_before_ms: i64 },
}

/// A device whose credential checked out and whose status allows it to connect.
#[derive(Debug, Clone)]
pub struct AuthenticatedDevice {
    pub device: Device,
    pub method: DeviceAuthMethod,
    /// The device was created just now by just-in-time registration.
    pub registered_now: bool,
}

/// Why a credential was refused. `tenant`/`device` are filled in as far as they are known, so
/// the security event lands in the right tenant; they never leave the process.
#[derive(Debug, thiserror::Error)]
pub enum DeviceAuthError {
    /// Unknown tenant, device or key; wrong secret; a certificate that does not verify.
    #[error("bad credentials: {reason}")]
    BadCredentials { tenant: Option<String>, device: Option<String>, reason: &'static str },
    /// The credential identifies a device that may not connect (revoked, quarantined), or a
    /// revoked certificate.
    #[error("device {device} of tenant {tenant} is not authorized: {reason}")]
    NotAuthorized { tenant: String, device: String, reason: &'static str, revoked_credential: bool },
    /// The store or the keyring failed; the client gets a generic refusal.
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl From<StoreError> for DeviceAuthError {
    fn from(error: StoreError) -> Self {
        DeviceAuthError::Platform(PlatformError::Store(error))
    }
}

impl DeviceAuthError {
    fn bad(tenant: Option<&str>, device: Option<&str>, reason: &'static str) -> Self {
        DeviceAuthError::BadCredentials { tenant: tenant.map(str::to_owned), device: device.map(str::to_owned), reason }
    }
}

/// The parts of a client certificate Rampart looks at.
pub(crate) struct LeafInfo {
    pub(crate) common_name: Option<String>,
    /// `(tenant, device)` from a `urn:rampart:<tenant>:<device>` SAN URI.
    rampart_san: Option<(String, String)>,
    issuer: String,
    /// Lower-case hex of the serial's DER integer bytes (the store's format).
    serial_hex: String,
    not_before_ms: i64,
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_leaf(der: &[u8]) -> Option<LeafInfo> {
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        _ => return None,
    };
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    let mut rampart_san = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(rest) = uri.strip_prefix(RAMPART_SAN_PREFIX)
                && let Some((tenant, device)) = rest.split_once(':')
            {
                rampart_san = Some((tenant.to_owned(), device.to_owned()));
            }
        }
    }
    Some(LeafInfo {
        common_name,
        rampart_san,
        issuer: cert.issuer().to_string(),
        serial_hex: hex_lower(cert.raw_serial()),
        not_before_ms: cert.validity().not_before.timestamp().saturating_mul(1000),
    })
}

fn unix_time(now_ms: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_millis(u64::try_from(now_ms).unwrap_or(0)))
}

/// Whether `chain[0]` verifies, through `chain[1..]`, to the CA certificate `ca_pem`, for
/// client authentication at `now_ms`. Only a real signature chain counts: a certificate that
/// merely names the CA as its issuer fails.
pub(crate) fn chain_verifies_to(chain: &[CertificateDer<'_>], ca_pem: &str, now_ms: i64) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else { return false };
    let Ok(ca_der) = CertificateDer::from_pem_slice(ca_pem.as_bytes()) else { return false };
    let Ok(anchor) = webpki::anchor_from_trusted_cert(&ca_der) else { return false };
    let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else { return false };
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            intermediates,
            unix_time(now_ms),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
}

/// Splits `<tenant>/<name>` as MQTT usernames carry it, checking both id syntaxes.
pub fn split_username(username: &str) -> Option<(&str, &str)> {
    let (tenant, name) = username.split_once('/')?;
    if validate_id(IdKind::Tenant, tenant).is_err() || validate_id(IdKind::Device, name).is_err() {
        return None;
    }
    Some((tenant, name))
}

impl Platform {
    /// Checks a device token presented with its tenant and device id (MQTT username
    /// `<tenant>/<device>`). A revoked or quarantined device is refused even with a token that
    /// once was valid (revocation deletes tokens, so "revoked" is answered for any token).
    pub async fn authenticate_device_token(
        &self,
        tenant: &str,
        device_id: &str,
        token: &[u8],
    ) -> Result<AuthenticatedDevice, DeviceAuthError> {
        if validate_id(IdKind::Tenant, tenant).is_err() || validate_id(IdKind::Device, device_id).is_err() {
            return Err(DeviceAuthError::bad(None, None, "malformed username"));
        }
        let device = match self.store.get_device(tenant, device_id).await {
            Ok(device) => device,
            Err(StoreError::NotFound) => {
                return Err(DeviceAuthError::bad(Some(tenant), None, "unknown device"));
            }
            Err(other) => return Err(other.into()),
        };
        let hash = sha256(token);
        let tokens = self.store.list_device_tokens(tenant, device_id).await?;
        // Compare against every row so the time taken does not tell which one matched.
        let mut matched = None;
        for row in &tokens {
            if ct_eq(&hash, &row.token_hash) {
                matched = Some(row.id.clone());
            }
        }
        if device.status == DeviceStatus::Revoked {
            return Err(DeviceAuthError::NotAuthorized {
                tenant: tenant.to_owned(),
                device: device_id.to_owned(),
                reason: "device revoked",
                revoked_credential: true,
            });
        }
        let Some(token_id) = matched else {
            return Err(DeviceAuthError::bad(Some(tenant), Some(device_id), "wrong token"));
        };
        if let Some(reason) = device.status.connect_refusal() {
            return Err(DeviceAuthError::NotAuthorized {
                tenant: tenant.to_owned(),
                device: device_id.to_owned(),
                reason,
                revoked_credential: false,
            });
        }
        Ok(AuthenticatedDevice { device, method: DeviceAuthMethod::Token { token_id }, registered_now: false })
    }

    /// Finds the device a bare bearer token belongs to (HTTPS device API), in any tenant.
    pub async fn find_device_by_token(&self, token: &[u8]) -> Result<AuthenticatedDevice, DeviceAuthError> {
        let hash = sha256(token);
        let Some(row) = self.store.find_device_token_by_hash(&hash).await? else {
            return Err(DeviceAuthError::bad(None, None, "unknown token"));
        };
        if !ct_eq(&hash, &row.token_hash) {
            return Err(DeviceAuthError::bad(None, None, "unknown token"));
        }
        self.authenticate_device_token(&row.tenant, &row.device, token).await
    }

    /// Checks a client certificate chain (leaf first) at `now_ms`: either a tenant-CA
    /// certificate (Rampart SAN URI) or one from a trusted external CA. The TLS layer has
    /// already checked that the client holds the leaf's private key.
    pub async fn authenticate_device_certificate(
        &self,
        chain: &[CertificateDer<'_>],
        now_ms: i64,
    ) -> Result<AuthenticatedDevice, DeviceAuthError> {
        if chain.is_empty() || chain.len() > MAX_CHAIN {
            return Err(DeviceAuthError::bad(None, None, "no usable certificate chain"));
        }
        let Some(leaf) = parse_leaf(&chain[0]) else {
            return Err(DeviceAuthError::bad(None, None, "malformed certificate"));
        };
        match leaf.rampart_san.clone() {
            Some((tenant, device)) => {
                self.authenticate_tenant_ca_certificate(chain, &leaf, &tenant, &device, now_ms).await
            }
            None => self.authenticate_trusted_ca_certificate(chain, &leaf, now_ms).await,
        }
    }

    async fn authenticate_tenant_ca_certificate(
        &self,
        chain: &[CertificateDer<'_>],
        leaf: &LeafInfo,
        tenant: &str,
        device_id: &str,
        now_ms: i64,
    ) -> Result<AuthenticatedDevice, DeviceAuthError> {
        if validate_id(IdKind::Tenant, tenant).is_err() || validate_id(IdKind::Device, device_id).is_err() {
            return Err(DeviceAuthError::bad(None, None, "malformed certificate identity"));
        }
        if leaf.common_name.as_deref() != Some(device_id) {
            return Err(DeviceAuthError::bad(Some(tenant), Some(device_id), "CN does not match the SAN"));
        }
        let ca = match self.store.get_tenant_ca(tenant).await {
            Ok(ca) => ca,
            Err(StoreError::NotFound) => return Err(DeviceAuthError::bad(None, None, "unknown tenant")),
            Err(other) => return Err(other.into()),
        };
        if !chain_verifies_to(chain, &ca.cert_pem, now_ms) {
            return Err(DeviceAuthError::bad(Some(tenant), Some(device_id), "certificate does not verify"));
        }
        // Issued by the tenant CA: from here on the credential is genuine.
        let issued = match self.store.get_device_certificate(tenant, &leaf.serial_hex).await {
            Ok(issued) if issued.device == device_id => issued,
            Ok(_) | Err(StoreError::NotFound) => {
                return Err(DeviceAuthError::bad(Some(tenant), Some(device_id), "certificate not on record"));
            }
            Err(other) => return Err(other.into()),
        };
        let not_authorized = |reason, revoked_credential| DeviceAuthError::NotAuthorized {
            tenant: tenant.to_owned(),
            device: device_id.to_owned(),
            reason,
            revoked_credential,
        };
        if issued.revoked_at.is_some() {
            return Err(not_authorized("certificate revoked", true));
        }
        let device = match self.store.get_device(tenant, device_id).await {
            Ok(device) => device,
            Err(StoreError::NotFound) => return Err(not_authorized("device deleted", true)),
            Err(other) => return Err(other.into()),
        };
        if let Some(reason) = device.status.connect_refusal() {
            return Err(not_authorized(reason, device.status == DeviceStatus::Revoked));
        }
        Ok(AuthenticatedDevice {
            device,
            method: DeviceAuthMethod::Certificate { serial: leaf.serial_hex.clone() },
            registered_now: false,
        })
    }

    async fn authenticate_trusted_ca_certificate(
        &self,
        chain: &[CertificateDer<'_>],
        leaf: &LeafInfo,
        now_ms: i64,
    ) -> Result<AuthenticatedDevice, DeviceAuthError> {
        let Some(device_id) = leaf.common_name.as_deref().filter(|cn| validate_id(IdKind::Device, cn).is_ok()) else {
            return Err(DeviceAuthError::bad(None, None, "certificate CN is not a device id"));
        };
        let candidates = self.store.list_trusted_cas_by_subject(&leaf.issuer).await?;
        let mut trusted: Option<TrustedCa> = None;
        for candidate in candidates {
            if chain_verifies_to(chain, &candidate.cert_pem, now_ms) {
                if trusted.is_some() {
                    // Two tenants trust the same CA: the certificate does not say which one it
                    // is for, so it authenticates nobody rather than the wrong tenant.
                    return Err(DeviceAuthError::bad(None, Some(device_id), "CA trusted by several tenants"));
                }
                trusted = Some(candidate);
            }
        }
        let Some(ca) = trusted else {
            return Err(DeviceAuthError::bad(None, Some(device_id), "certificate does not verify"));
        };
        let method = DeviceAuthMethod::TrustedCa { ca_id: ca.id.clone(), not_before_ms: leaf.not_before_ms };
        match self.store.get_device(&ca.tenant, device_id).await {
            Ok(device) => {
                let refusal = match device.status.connect_refusal() {
                    Some(reason) => Some((reason, device.status == DeviceStatus::Revoked)),
                    // Issued before the device's last revocation (or before an earlier device
                    // of that id was deleted): dead with it.
                    None if leaf.not_before_ms <= device.credentials_valid_after => {
                        Some(("certificate issued before the device's credentials were fenced", true))
                    }
                    None => None,
                };
                if let Some((reason, revoked_credential)) = refusal {
                    return Err(DeviceAuthError::NotAuthorized {
                        tenant: ca.tenant.clone(),
                        device: device_id.to_owned(),
                        reason,
                        revoked_credential,
                    });
                }
                Ok(AuthenticatedDevice { device, method, registered_now: false })
            }
            Err(StoreError::NotFound) if ca.auto_register => {
                // A device of that id was deleted: its certificates stay dead (SPEC §2).
                if let Some(deleted_at) = self.store.device_deleted_at(&ca.tenant, device_id).await?
                    && leaf.not_before_ms <= deleted_at
                {
                    return Err(DeviceAuthError::NotAuthorized {
                        tenant: ca.tenant.clone(),
                        device: device_id.to_owned(),
                        reason: "certificate issued before a device of that id was deleted",
                        revoked_credential: true,
                    });
                }
                let device = self.register_just_in_time(&ca, device_id).await?;
                Ok(AuthenticatedDevice { device, method, registered_now: true })
            }
            Err(StoreError::NotFound) => {
                Err(DeviceAuthError::bad(Some(&ca.tenant), Some(device_id), "unknown device, no auto_register"))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Registers a device presented by a trusted CA with `auto_register` (the same path as an
    /// API registration). A concurrent first connect of the same device finds the row instead.
    async fn register_just_in_time(&self, ca: &TrustedCa, device_id: &str) -> Result<Device, DeviceAuthError> {
        let device = fresh_device(&ca.tenant, device_id, DeviceStatus::Active, self.now_ms());
        let registrar = Registrar::JustInTime { tenant: &ca.tenant, trusted_ca: &ca.id };
        match self.register_device(registrar, device).await {
            Ok(device) => Ok(device),
            Err(ServiceError::Conflict(_)) => Ok(self.store.get_device(&ca.tenant, device_id).await?),
            Err(ServiceError::Internal(error)) => Err(DeviceAuthError::Platform(error)),
            Err(other) => Err(DeviceAuthError::Platform(PlatformError::Task(other.to_string()))),
        }
    }

    /// Checks an application's API key presented with username `<tenant>/<key id>`.
    pub async fn authenticate_application(
        &self,
        tenant: &str,
        key_id: &str,
        key: &[u8],
        source_ip: Option<String>,
    ) -> Result<Principal, DeviceAuthError> {
        let bad = |reason| {
            DeviceAuthError::bad(Some(tenant).filter(|t| validate_id(IdKind::Tenant, t).is_ok()), None, reason)
        };
        let principal = match self.authenticate_api_key(key, source_ip).await {
            Ok(principal) => principal,
            Err(ServiceError::Internal(error)) => return Err(DeviceAuthError::Platform(error)),
            Err(_) => return Err(bad("unknown, wrong or expired key")),
        };
        if principal.api_key_id() != Some(key_id) || principal.tenant != tenant {
            return Err(bad("key does not match the username"));
        }
        Ok(principal)
    }

    /// Whether the credential a connection of device `(tenant, device)` was admitted with is
    /// still good: the device exists and may connect, and the token, certificate or trusted
    /// CA is still there (and not fenced off by a revocation).
    pub async fn device_credential_valid(
        &self,
        tenant: &str,
        device: &str,
        method: &DeviceAuthMethod,
    ) -> Result<bool, PlatformError> {
        let row = match self.store.get_device(tenant, device).await {
            Ok(row) => row,
            Err(StoreError::NotFound) => return Ok(false),
            Err(other) => return Err(other.into()),
        };
        if row.status.connect_refusal().is_some() {
            return Ok(false);
        }
        Ok(match method {
            DeviceAuthMethod::Token { token_id } => {
                self.store.list_device_tokens(tenant, device).await?.iter().any(|token| token.id == *token_id)
            }
            DeviceAuthMethod::Certificate { serial } => match self.store.get_device_certificate(tenant, serial).await {
                Ok(certificate) => certificate.device == device && certificate.revoked_at.is_none(),
                Err(StoreError::NotFound) => false,
                Err(other) => return Err(other.into()),
            },
            DeviceAuthMethod::TrustedCa { ca_id, not_before_ms } => {
                let trusted = match self.store.get_trusted_ca(tenant, ca_id).await {
                    Ok(_) => true,
                    Err(StoreError::NotFound) => false,
                    Err(other) => return Err(other.into()),
                };
                trusted && *not_before_ms > row.credentials_valid_after
            }
        })
    }

    /// Raises the security event a refused credential deserves: `revoked_credential_used`
    /// (MAJOR) for a genuine credential of a revoked device, `auth_failure` (MINOR) otherwise.
    /// Failures of the store are not the client's doing and raise nothing.
    pub async fn record_device_auth_failure(&self, error: &DeviceAuthError, source_ip: Option<&str>, protocol: &str) {
        let tenant = match error {
            DeviceAuthError::BadCredentials { tenant, .. } => tenant.as_deref(),
            DeviceAuthError::NotAuthorized { tenant, .. } => Some(tenant.as_str()),
            DeviceAuthError::Platform(_) => None,
        };
        if !matches!(error, DeviceAuthError::Platform(_)) {
            self.note_auth_failure(source_ip, tenant).await;
        }
        let draft = match error {
            DeviceAuthError::BadCredentials { tenant: Some(tenant), device, reason } => {
                let mut draft = SecurityEventDraft::new(tenant, SecurityEventType::AuthFailure, Severity::Minor);
                draft.device = device.clone();
                draft.details = json!({"reason": reason, "protocol": protocol});
                draft
            }
            // Without a tenant there is nobody to tell: the event would have no owner.
            DeviceAuthError::BadCredentials { tenant: None, .. } | DeviceAuthError::Platform(_) => return,
            DeviceAuthError::NotAuthorized { tenant, device, reason, revoked_credential } => {
                let (event_type, severity) = match revoked_credential {
                    true => (SecurityEventType::RevokedCredentialUsed, Severity::Major),
                    false => (SecurityEventType::AuthFailure, Severity::Minor),
                };
                let mut draft = SecurityEventDraft::new(tenant, event_type, severity);
                draft.device = Some(device.clone());
                draft.details = json!({"reason": reason, "protocol": protocol});
                draft
            }
        };
        // A username can name any tenant: only existing tenants get events (see
        // `raise_security_event`), so nobody can fill the store with events of made-up tenants.
        let draft = SecurityEventDraft { source_ip: source_ip.map(str::to_owned), ..draft };
        self.raise_security_event(draft).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_split_into_tenant_and_name() {
        assert_eq!(split_username("acme/sensor-1"), Some(("acme", "sensor-1")));
        assert_eq!(split_username("acme/a/b"), None);
        assert_eq!(split_username("Acme/x"), None);
        assert_eq!(split_username("acme"), None);
        assert_eq!(split_username("acme/"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(parse_leaf(b"not a certificate").is_none());
        assert!(!chain_verifies_to(&[CertificateDer::from(vec![0u8; 10])], "garbage", 0));
    }
}
