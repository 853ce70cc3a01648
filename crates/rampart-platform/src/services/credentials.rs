//! Device credentials (SPEC §6): tokens (256 random bits, shown once, stored as a hash, several
//! at once for rotation), certificates signed by the tenant CA from CSRs (CN = device id, SAN
//! URI binding the tenant), the tenant CA certificate and its CRL.

use rampart_core::{AuditAction, DeviceId, Permission};
use rampart_crypto::{CryptoError, build_crl, random_id, random_secret, sha256, sign_device_csr};
use rampart_store::{Device, DeviceCertificate, DeviceToken, TenantCa};
use serde_json::json;
use zeroize::Zeroizing;

use crate::bus::ControlEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;
use crate::services::tenants::CA_KEY_PURPOSE;
use crate::time_format::format_rfc3339_ms;

/// Prefix of device tokens, so leaked ones are recognisable by secret scanners.
pub const DEVICE_TOKEN_PREFIX: &str = "rdt_";
/// Random bytes per token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Validity of device certificates, in days.
const DEVICE_CERT_VALIDITY_DAYS: u32 = 365;
/// Largest PEM accepted for a CSR or a CA certificate; real ones are a few KiB.
pub(crate) const MAX_PEM_BYTES: usize = 64 * 1024;

/// A token just issued: the only time its secret exists outside the device.
pub struct IssuedToken {
    pub row: DeviceToken,
    pub token: Zeroizing<String>,
}

/// A certificate just issued, with the CA that signed it.
pub struct IssuedCertificate {
    pub row: DeviceCertificate,
    pub ca_pem: String,
}

pub(crate) fn check_pem_size(field: &str, pem: &str) -> ServiceResult<()> {
    match pem.len() > MAX_PEM_BYTES {
        true => Err(ServiceError::invalid(format!("{field} is larger than {MAX_PEM_BYTES} bytes"))),
        false => Ok(()),
    }
}

/// Ids of tokens and trusted CAs are the hex of 8 random bytes; anything far from that is
/// malformed.
pub(crate) fn check_short_id(what: &str, id: &str) -> ServiceResult<()> {
    match id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        true => Err(ServiceError::invalid(format!("{what} must be 1 to 64 letters or digits"))),
        false => Ok(()),
    }
}

/// Whether a device in this status may receive new credentials.
fn ensure_may_get_credentials(device: &Device) -> ServiceResult<()> {
    match device.status.may_get_credentials() {
        true => Ok(()),
        false => Err(ServiceError::Conflict(format!("the device is {}; it cannot get new credentials", device.status))),
    }
}

impl Platform {
    /// Issues a new token for the device.
    pub async fn create_device_token(&self, principal: &Principal, id: &DeviceId) -> ServiceResult<IssuedToken> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        ensure_may_get_credentials(&device)?;
        let token = random_secret(DEVICE_TOKEN_PREFIX, TOKEN_BYTES);
        let row = DeviceToken {
            tenant: device.tenant.clone(),
            device: device.id.clone(),
            id: random_id(8),
            token_hash: sha256(token.as_bytes()).to_vec(),
            created_at: self.now_ms(),
        };
        self.store.create_device_token(&row).await?;
        let details = json!({"token_id": row.id});
        self.audit_by(principal, AuditAction::DeviceTokenCreate, format!("device:{}", device.id), details).await;
        Ok(IssuedToken { row, token })
    }

    /// The device's tokens (ids and creation times only).
    pub async fn list_device_tokens(&self, principal: &Principal, id: &DeviceId) -> ServiceResult<Vec<DeviceToken>> {
        let device = self.visible_device(principal, Permission::DevicesRead, id).await?;
        Ok(self.store.list_device_tokens(&device.tenant, &device.id).await?)
    }

    /// Deletes one token; connections that authenticated with it close at once.
    pub async fn delete_device_token(&self, principal: &Principal, id: &DeviceId, token_id: &str) -> ServiceResult<()> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        check_short_id("token id", token_id)?;
        self.store.delete_device_token(&device.tenant, &device.id, token_id).await?;
        self.publish(ControlEvent::DeviceTokenDeleted {
            tenant: device.tenant.clone(),
            device: device.id.clone(),
            token_id: token_id.to_owned(),
        });
        let details = json!({"token_id": token_id});
        self.audit_by(principal, AuditAction::DeviceTokenDelete, format!("device:{}", device.id), details).await;
        Ok(())
    }

    /// Signs a device certificate from a CSR: CN = device id, SAN URI
    /// `urn:rampart:<tenant>:<device>`, whatever the CSR asked.
    pub async fn issue_certificate(
        &self,
        principal: &Principal,
        id: &DeviceId,
        csr_pem: &str,
    ) -> ServiceResult<IssuedCertificate> {
        let device = self.visible_device(principal, Permission::DevicesWrite, id).await?;
        ensure_may_get_credentials(&device)?;
        check_pem_size("csr", csr_pem)?;
        let (ca, key_pem) = self.tenant_ca_with_key(&device.tenant).await?;
        let issued = match sign_device_csr(
            &ca.cert_pem,
            &key_pem,
            csr_pem,
            &device.tenant,
            &device.id,
            DEVICE_CERT_VALIDITY_DAYS,
        ) {
            Ok(issued) => issued,
            Err(CryptoError::WeakKey { .. }) => {
                return Err(ServiceError::invalid("RSA keys under 2048 bits are refused"));
            }
            Err(CryptoError::InvalidCsr { .. }) => {
                return Err(ServiceError::invalid(
                    "csr is not a valid PEM certificate signing request with a supported key and signature",
                ));
            }
            Err(other) => return Err(other.into()),
        };
        let row = DeviceCertificate {
            tenant: device.tenant.clone(),
            device: device.id.clone(),
            serial: issued.serial_hex,
            not_after: issued.not_after_ms,
            revoked_at: None,
            cert_pem: issued.cert_pem,
            created_at: self.now_ms(),
        };
        self.store.create_device_certificate(&row).await?;
        let details = json!({"serial": row.serial, "not_after": format_rfc3339_ms(row.not_after)});
        self.audit_by(principal, AuditAction::CertificateIssue, format!("device:{}", device.id), details).await;
        Ok(IssuedCertificate { row, ca_pem: ca.cert_pem })
    }

    /// The device's certificates, revoked ones included.
    pub async fn list_certificates(
        &self,
        principal: &Principal,
        id: &DeviceId,
    ) -> ServiceResult<Vec<DeviceCertificate>> {
        let device = self.visible_device(principal, Permission::DevicesRead, id).await?;
        Ok(self.store.list_device_certificates(&device.tenant, &device.id).await?)
    }

    /// The tenant's device CA certificate (PEM).
    pub async fn tenant_ca_certificate(&self, principal: &Principal) -> ServiceResult<String> {
        self.authorize(principal, Permission::DevicesRead).await?;
        Ok(self.store.get_tenant_ca(&principal.tenant).await?.cert_pem)
    }

    /// A fresh CRL of the tenant CA listing every revoked device certificate, under a CRL
    /// number no other CRL of the tenant has.
    pub async fn tenant_crl(&self, principal: &Principal) -> ServiceResult<String> {
        self.authorize(principal, Permission::DevicesRead).await?;
        let (ca, key_pem) = self.tenant_ca_with_key(&principal.tenant).await?;
        let revoked: Vec<(String, i64)> = self
            .store
            .list_revoked_certificates(&principal.tenant)
            .await?
            .into_iter()
            .filter_map(|cert| cert.revoked_at.map(|at| (cert.serial, at)))
            .collect();
        let number = self.store.next_crl_number(&principal.tenant).await?;
        let number = u64::try_from(number.max(1)).unwrap_or(1);
        Ok(build_crl(&ca.cert_pem, &key_pem, &revoked, number, self.now_ms())?)
    }

    /// The tenant CA certificate and its unsealed private key.
    async fn tenant_ca_with_key(&self, tenant: &str) -> ServiceResult<(TenantCa, Zeroizing<String>)> {
        let ca = self.store.get_tenant_ca(tenant).await?;
        let key = self.keyring.open_for_tenant(tenant, CA_KEY_PURPOSE, &ca.key_sealed).await?;
        let key_pem = Zeroizing::new(String::from_utf8_lossy(&key).into_owned());
        Ok((ca, key_pem))
    }
}
