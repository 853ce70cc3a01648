//! Bring your own CA (SPEC §6): a tenant trusts an external CA for device certificates only
//! after proving it holds the CA's key, as AWS IoT asks: it fetches a single-use registration
//! code, and presents a verification certificate with CN = that code, signed by the CA. One
//! CA belongs to one tenant. Removing a CA closes its devices' connections at once. Trusted
//! CAs act on the whole tenant (with `auto_register` they create devices), so changing them
//! needs the whole tenant in scope.

use rampart_core::{AuditAction, Permission};
use rampart_crypto::{CryptoError, parse_ca_certificate, random_id};
use rampart_store::{StoreError, TrustedCa};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::bus::ControlEvent;
use crate::device_auth::{chain_verifies_to, parse_leaf};
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;
use crate::services::credentials::{check_pem_size, check_short_id};

/// How long a registration code stays usable.
const REGISTRATION_CODE_TTL_MS: i64 = 60 * 60 * 1000;

/// A CA to trust.
pub struct NewTrustedCa {
    pub certificate: String,
    /// Signed by the CA's key, with CN = a registration code of the tenant.
    pub verification_certificate: Option<String>,
    pub auto_register: bool,
}

/// The SHA-256 fingerprint of a trusted CA row (computed for rows stored before fingerprints).
fn fingerprint_of(ca: &TrustedCa) -> Option<String> {
    ca.fingerprint
        .clone()
        .or_else(|| parse_ca_certificate(&ca.cert_pem, ca.created_at).ok().map(|info| info.fingerprint_sha256))
}

impl Platform {
    /// A single-use code to put, as CN, in the verification certificate of a CA to trust.
    pub async fn trusted_ca_registration_code(&self, principal: &Principal) -> ServiceResult<String> {
        self.authorize_tenant_wide(principal, Permission::DevicesWrite).await?;
        let code = random_id(16);
        let now = self.now_ms();
        self.store.create_registration_code(&principal.tenant, &code, now + REGISTRATION_CODE_TTL_MS, now).await?;
        let details = json!({"expires_in_s": REGISTRATION_CODE_TTL_MS / 1000});
        self.audit_by(principal, AuditAction::TrustedCaRegistrationCode, "trusted_ca", details).await;
        Ok(code)
    }

    /// Trusts an external CA for device certificates, once its key is proven held.
    pub async fn create_trusted_ca(&self, principal: &Principal, new: NewTrustedCa) -> ServiceResult<TrustedCa> {
        self.authorize_tenant_wide(principal, Permission::DevicesWrite).await?;
        check_pem_size("certificate", &new.certificate)?;
        let now = self.now_ms();
        let info = match parse_ca_certificate(&new.certificate, now) {
            Ok(info) => info,
            Err(CryptoError::InvalidCertificate { reason }) => {
                // The reasons are fixed sentences of our own ("not a CA certificate", "expired").
                return Err(ServiceError::invalid(format!("certificate is not a usable CA certificate: {reason}")));
            }
            Err(other) => return Err(other.into()),
        };
        let Some(verification) = &new.verification_certificate else {
            return Err(ServiceError::invalid(
                "verification_certificate is required: a certificate with CN = a registration code \
                 (GET /api/v1/ca/trusted/registration-code), signed by the CA's key",
            ));
        };
        check_pem_size("verification_certificate", verification)?;
        let code = self.check_proof_of_possession(&new.certificate, verification, now)?;
        if !self.store.consume_registration_code(&principal.tenant, &code, now).await? {
            return Err(ServiceError::invalid("the registration code is unknown, used or expired"));
        }
        // One tenant per CA: rows stored before fingerprints are compared by recomputing.
        for existing in self.store.list_trusted_cas_by_subject(&info.subject).await? {
            if fingerprint_of(&existing).as_deref() == Some(info.fingerprint_sha256.as_str()) {
                return Err(ServiceError::Conflict("this CA is already trusted".to_owned()));
            }
        }
        let row = TrustedCa {
            tenant: principal.tenant.clone(),
            id: random_id(8),
            cert_pem: new.certificate,
            subject: info.subject.clone(),
            auto_register: new.auto_register,
            fingerprint: Some(info.fingerprint_sha256.clone()),
            created_at: now,
        };
        match self.store.create_trusted_ca(&row).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict("this CA is already trusted".to_owned()));
            }
            Err(other) => return Err(other.into()),
        }
        let details = json!({
            "subject": info.subject,
            "fingerprint_sha256": info.fingerprint_sha256,
            "auto_register": row.auto_register,
        });
        self.audit_by(principal, AuditAction::TrustedCaCreate, format!("trusted_ca:{}", row.id), details).await;
        Ok(row)
    }

    /// Checks that `verification_pem` is signed by the CA `ca_pem` (a real signature chain, at
    /// `now_ms`) and answers its CN, the registration code it proves.
    fn check_proof_of_possession(&self, ca_pem: &str, verification_pem: &str, now_ms: i64) -> ServiceResult<String> {
        let refused = || ServiceError::invalid("verification_certificate is not signed by the CA's key");
        let der = CertificateDer::from_pem_slice(verification_pem.as_bytes())
            .map_err(|_| ServiceError::invalid("verification_certificate is not a PEM certificate"))?;
        if !chain_verifies_to(std::slice::from_ref(&der), ca_pem, now_ms) {
            return Err(refused());
        }
        let leaf = parse_leaf(&der).ok_or_else(refused)?;
        leaf.common_name.ok_or_else(|| ServiceError::invalid("verification_certificate has no CN"))
    }

    /// The external CAs the tenant trusts.
    pub async fn list_trusted_cas(&self, principal: &Principal) -> ServiceResult<Vec<TrustedCa>> {
        self.authorize(principal, Permission::DevicesRead).await?;
        Ok(self.store.list_trusted_cas(&principal.tenant).await?)
    }

    /// Stops trusting an external CA; devices connected through it are disconnected at once.
    pub async fn delete_trusted_ca(&self, principal: &Principal, id: &str) -> ServiceResult<()> {
        self.authorize_tenant_wide(principal, Permission::DevicesWrite).await?;
        check_short_id("trusted CA id", id)?;
        self.store.delete_trusted_ca(&principal.tenant, id).await?;
        self.publish(ControlEvent::TrustedCaRemoved { tenant: principal.tenant.clone(), ca_id: id.to_owned() });
        self.audit_by(principal, AuditAction::TrustedCaDelete, format!("trusted_ca:{id}"), json!({})).await;
        Ok(())
    }
}

/// The SHA-256 fingerprint shown for a trusted CA, and its expiry, read from its certificate.
pub fn trusted_ca_facts(ca: &TrustedCa) -> (Option<String>, Option<i64>) {
    // The certificate was checked when it was added; parsing it "as of" that moment recovers
    // its facts even after it expired.
    let info = parse_ca_certificate(&ca.cert_pem, ca.created_at).ok();
    (fingerprint_of(ca), info.map(|info| info.not_after_ms))
}
