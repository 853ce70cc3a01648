//! Device credentials: tokens (stored as hashes), the tenant CA and the certificates it
//! issued, external CAs a tenant trusts (one tenant per CA, by fingerprint), and the
//! single-use registration codes that prove possession of such a CA's key.

use std::fmt;

use async_trait::async_trait;

use crate::sql_store::SqlStore;
use crate::table::Table;
use crate::value::{Row, Value};
use crate::{StoreError, StoreResult};

/// A device token; only the SHA-256 of the token is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken {
    pub tenant: String,
    pub device: String,
    pub id: String,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceToken")
            .field("tenant", &self.tenant)
            .field("device", &self.device)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The tenant's own CA: certificate in clear, private key sealed under the tenant key.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantCa {
    pub tenant: String,
    pub cert_pem: String,
    pub key_sealed: Vec<u8>,
    /// The number of the last CRL signed (see [`CredentialStore::next_crl_number`]).
    pub crl_number: i64,
    pub created_at: i64,
}

impl fmt::Debug for TenantCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantCa").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

/// A certificate issued to a device by the tenant CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub tenant: String,
    pub device: String,
    /// Lower-case hex, no separators.
    pub serial: String,
    pub not_after: i64,
    pub revoked_at: Option<i64>,
    pub cert_pem: String,
    pub created_at: i64,
}

/// An external CA a tenant trusts for device certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCa {
    pub tenant: String,
    pub id: String,
    pub cert_pem: String,
    pub subject: String,
    pub auto_register: bool,
    /// SHA-256 of the certificate (lower-case hex), unique across every tenant; `None` for
    /// CAs added before fingerprints were kept.
    pub fingerprint: Option<String>,
    pub created_at: i64,
}

const DEVICE_TOKENS: Table =
    Table { name: "device_tokens", columns: &["tenant", "device", "id", "token_hash", "created_at"] };
const TENANT_CAS: Table =
    Table { name: "tenant_cas", columns: &["tenant", "cert_pem", "key_sealed", "crl_number", "created_at"] };
const CERTIFICATES: Table = Table {
    name: "device_certificates",
    columns: &["tenant", "device", "serial", "not_after", "revoked_at", "cert_pem", "created_at"],
};
const TRUSTED_CAS: Table = Table {
    name: "trusted_cas",
    columns: &["tenant", "id", "cert_pem", "subject", "auto_register", "fingerprint", "created_at"],
};

fn device_token_from_row(mut row: Row) -> StoreResult<DeviceToken> {
    Ok(DeviceToken {
        tenant: row.text()?,
        device: row.text()?,
        id: row.text()?,
        token_hash: row.blob()?,
        created_at: row.int()?,
    })
}

fn tenant_ca_from_row(mut row: Row) -> StoreResult<TenantCa> {
    Ok(TenantCa {
        tenant: row.text()?,
        cert_pem: row.text()?,
        key_sealed: row.blob()?,
        crl_number: row.int()?,
        created_at: row.int()?,
    })
}

fn certificate_from_row(mut row: Row) -> StoreResult<DeviceCertificate> {
    Ok(DeviceCertificate {
        tenant: row.text()?,
        device: row.text()?,
        serial: row.text()?,
        not_after: row.int()?,
        revoked_at: row.opt_int()?,
        cert_pem: row.text()?,
        created_at: row.int()?,
    })
}

fn trusted_ca_from_row(mut row: Row) -> StoreResult<TrustedCa> {
    Ok(TrustedCa {
        tenant: row.text()?,
        id: row.text()?,
        cert_pem: row.text()?,
        subject: row.text()?,
        auto_register: row.bool()?,
        fingerprint: row.opt_text()?,
        created_at: row.int()?,
    })
}

/// Credential persistence.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    // ---- device tokens ----
    /// `NotFound` when the device does not exist.
    async fn create_device_token(&self, token: &DeviceToken) -> StoreResult<()>;
    async fn list_device_tokens(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceToken>>;
    async fn delete_device_token(&self, tenant: &str, device: &str, id: &str) -> StoreResult<()>;
    /// The device token whose SHA-256 is `token_hash`, in any tenant (a bearer token carries no
    /// tenant). The caller still compares the hash in constant time.
    async fn find_device_token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<DeviceToken>>;

    // ---- the tenant CA and its certificates ----
    /// `Conflict` when the tenant already has a CA.
    async fn create_tenant_ca(&self, ca: &TenantCa) -> StoreResult<()>;
    async fn get_tenant_ca(&self, tenant: &str) -> StoreResult<TenantCa>;
    /// Bumps the tenant's CRL number in one statement and answers the new number, so two CRLs
    /// never share one.
    async fn next_crl_number(&self, tenant: &str) -> StoreResult<i64>;
    async fn create_device_certificate(&self, cert: &DeviceCertificate) -> StoreResult<()>;
    async fn list_device_certificates(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceCertificate>>;
    async fn get_device_certificate(&self, tenant: &str, serial: &str) -> StoreResult<DeviceCertificate>;
    /// Every revoked certificate of the tenant, for the CRL.
    async fn list_revoked_certificates(&self, tenant: &str) -> StoreResult<Vec<DeviceCertificate>>;

    // ---- trusted external CAs ----
    /// `Conflict` when a CA with the same fingerprint is trusted by any tenant.
    async fn create_trusted_ca(&self, ca: &TrustedCa) -> StoreResult<()>;
    async fn get_trusted_ca(&self, tenant: &str, id: &str) -> StoreResult<TrustedCa>;
    async fn list_trusted_cas(&self, tenant: &str) -> StoreResult<Vec<TrustedCa>>;
    /// Every trusted CA, in any tenant, whose subject is exactly `subject` (the issuer named by
    /// a client certificate). The caller verifies the chain against each.
    async fn list_trusted_cas_by_subject(&self, subject: &str) -> StoreResult<Vec<TrustedCa>>;
    async fn delete_trusted_ca(&self, tenant: &str, id: &str) -> StoreResult<()>;
    /// Keeps a registration code for the tenant until `expires_at` (and forgets expired ones).
    async fn create_registration_code(&self, tenant: &str, code: &str, expires_at: i64, now_ms: i64)
    -> StoreResult<()>;
    /// Uses up the tenant's registration code: `true` exactly once per code, before it expires.
    async fn consume_registration_code(&self, tenant: &str, code: &str, now_ms: i64) -> StoreResult<bool>;
}

#[async_trait]
impl CredentialStore for SqlStore {
    async fn create_device_token(&self, token: &DeviceToken) -> StoreResult<()> {
        // A token for a missing device is NotFound; the foreign key closes the race.
        let device = vec![(&token.tenant).into(), (&token.device).into()];
        if !self.exists("SELECT 1 FROM devices WHERE tenant = ? AND id = ?", device).await? {
            return Err(StoreError::NotFound);
        }
        let params = vec![
            (&token.tenant).into(),
            (&token.device).into(),
            (&token.id).into(),
            (&token.token_hash).into(),
            token.created_at.into(),
        ];
        self.insert(&DEVICE_TOKENS.insert(""), params).await
    }

    async fn list_device_tokens(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceToken>> {
        let sql = DEVICE_TOKENS.select("WHERE tenant = ? AND device = ? ORDER BY created_at, id");
        self.all(&sql, vec![tenant.into(), device.into()], device_token_from_row).await
    }

    async fn delete_device_token(&self, tenant: &str, device: &str, id: &str) -> StoreResult<()> {
        let sql = "DELETE FROM device_tokens WHERE tenant = ? AND device = ? AND id = ?";
        self.change_one(sql, vec![tenant.into(), device.into(), id.into()]).await
    }

    async fn find_device_token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<DeviceToken>> {
        self.optional(&DEVICE_TOKENS.select("WHERE token_hash = ?"), vec![token_hash.into()], device_token_from_row)
            .await
    }

    async fn create_tenant_ca(&self, ca: &TenantCa) -> StoreResult<()> {
        let params = vec![
            (&ca.tenant).into(),
            (&ca.cert_pem).into(),
            (&ca.key_sealed).into(),
            ca.crl_number.into(),
            ca.created_at.into(),
        ];
        self.insert(&TENANT_CAS.insert(""), params).await
    }

    async fn get_tenant_ca(&self, tenant: &str) -> StoreResult<TenantCa> {
        self.one(&TENANT_CAS.select("WHERE tenant = ?"), vec![tenant.into()], tenant_ca_from_row).await
    }

    async fn next_crl_number(&self, tenant: &str) -> StoreResult<i64> {
        let sql = "UPDATE tenant_cas SET crl_number = crl_number + 1 WHERE tenant = ? RETURNING crl_number";
        self.one(sql, vec![tenant.into()], |mut row| row.int()).await
    }

    async fn create_device_certificate(&self, cert: &DeviceCertificate) -> StoreResult<()> {
        let params = vec![
            (&cert.tenant).into(),
            (&cert.device).into(),
            (&cert.serial).into(),
            cert.not_after.into(),
            cert.revoked_at.into(),
            (&cert.cert_pem).into(),
            cert.created_at.into(),
        ];
        self.insert(&CERTIFICATES.insert(""), params).await
    }

    async fn list_device_certificates(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceCertificate>> {
        let sql = CERTIFICATES.select("WHERE tenant = ? AND device = ? ORDER BY created_at, serial");
        self.all(&sql, vec![tenant.into(), device.into()], certificate_from_row).await
    }

    async fn get_device_certificate(&self, tenant: &str, serial: &str) -> StoreResult<DeviceCertificate> {
        let sql = CERTIFICATES.select("WHERE tenant = ? AND serial = ?");
        self.one(&sql, vec![tenant.into(), serial.into()], certificate_from_row).await
    }

    async fn list_revoked_certificates(&self, tenant: &str) -> StoreResult<Vec<DeviceCertificate>> {
        let sql = CERTIFICATES.select("WHERE tenant = ? AND revoked_at IS NOT NULL ORDER BY serial");
        self.all(&sql, vec![tenant.into()], certificate_from_row).await
    }

    async fn create_trusted_ca(&self, ca: &TrustedCa) -> StoreResult<()> {
        let params = vec![
            (&ca.tenant).into(),
            (&ca.id).into(),
            (&ca.cert_pem).into(),
            (&ca.subject).into(),
            ca.auto_register.into(),
            ca.fingerprint.as_ref().into(),
            ca.created_at.into(),
        ];
        self.insert(&TRUSTED_CAS.insert(""), params).await
    }

    async fn get_trusted_ca(&self, tenant: &str, id: &str) -> StoreResult<TrustedCa> {
        let sql = TRUSTED_CAS.select("WHERE tenant = ? AND id = ?");
        self.one(&sql, vec![tenant.into(), id.into()], trusted_ca_from_row).await
    }

    async fn list_trusted_cas(&self, tenant: &str) -> StoreResult<Vec<TrustedCa>> {
        self.all(&TRUSTED_CAS.select("WHERE tenant = ? ORDER BY id"), vec![tenant.into()], trusted_ca_from_row).await
    }

    async fn list_trusted_cas_by_subject(&self, subject: &str) -> StoreResult<Vec<TrustedCa>> {
        let sql = TRUSTED_CAS.select("WHERE subject = ? ORDER BY tenant, id");
        self.all(&sql, vec![subject.into()], trusted_ca_from_row).await
    }

    async fn delete_trusted_ca(&self, tenant: &str, id: &str) -> StoreResult<()> {
        self.change_one("DELETE FROM trusted_cas WHERE tenant = ? AND id = ?", vec![tenant.into(), id.into()]).await
    }

    async fn create_registration_code(
        &self,
        tenant: &str,
        code: &str,
        expires_at: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.driver.execute("DELETE FROM registration_codes WHERE expires_at <= ?", vec![now_ms.into()]).await?;
        let sql = "INSERT INTO registration_codes (code, tenant, expires_at) VALUES (?, ?, ?)";
        self.insert(sql, vec![code.into(), tenant.into(), expires_at.into()]).await
    }

    async fn consume_registration_code(&self, tenant: &str, code: &str, now_ms: i64) -> StoreResult<bool> {
        let sql = "DELETE FROM registration_codes WHERE code = ? AND tenant = ? AND expires_at > ?";
        let params: Vec<Value> = vec![code.into(), tenant.into(), now_ms.into()];
        Ok(self.driver.execute(sql, params).await? > 0)
    }
}
