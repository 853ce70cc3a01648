//! The tenant PKI (SPEC §6): the tenant CA certificate and its CRL, device certificates signed
//! from CSRs, and external CAs the tenant trusts for device certificates ("bring your own CA").

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_core::Permission;
use rampart_crypto::{CryptoError, build_crl, parse_ca_certificate, random_id, sign_device_csr};
use rampart_platform::format_rfc3339_ms;
use rampart_store::{DeviceCertificate, TrustedCa};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated};
use crate::routes::devices::{ensure_may_get_credentials, paginate_in_memory, visible_device};
use crate::state::AppState;

/// Validity of device certificates, in days.
const DEVICE_CERT_VALIDITY_DAYS: u32 = 365;
/// Largest PEM accepted for a CSR or a CA certificate; real ones are a few KiB.
const MAX_PEM_BYTES: usize = 64 * 1024;
const PEM_CONTENT_TYPE: &str = "application/x-pem-file";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_ca))
        .routes(routes!(get_crl))
        .routes(routes!(issue_certificate, list_certificates))
        .routes(routes!(create_trusted_ca, list_trusted_cas))
        .routes(routes!(delete_trusted_ca))
}

/// `POST /api/v1/devices/{id}/certificates` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateRequest {
    /// PKCS#10 certificate signing request, PEM.
    pub csr: String,
}

/// A certificate just issued to a device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuedCertificateDto {
    /// The device certificate, PEM.
    pub certificate: String,
    /// The tenant CA certificate, PEM.
    pub ca_chain: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    pub not_after: String,
}

/// A device certificate as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertificateDto {
    pub serial: String,
    pub not_after: String,
    pub revoked_at: Option<String>,
    pub created_at: String,
}

impl From<DeviceCertificate> for CertificateDto {
    fn from(cert: DeviceCertificate) -> Self {
        CertificateDto {
            serial: cert.serial,
            not_after: format_rfc3339_ms(cert.not_after),
            revoked_at: cert.revoked_at.map(format_rfc3339_ms),
            created_at: format_rfc3339_ms(cert.created_at),
        }
    }
}

/// `POST /api/v1/ca/trusted` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrustedCa {
    /// The CA certificate, PEM.
    pub certificate: String,
    /// Register unknown devices at their first connection with a certificate from this CA.
    #[serde(default)]
    pub auto_register: bool,
}

/// An external CA trusted for device certificates.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TrustedCaDto {
    pub id: String,
    pub subject: String,
    pub auto_register: bool,
    pub not_after: Option<String>,
    pub fingerprint_sha256: Option<String>,
    pub created_at: String,
}

impl From<TrustedCa> for TrustedCaDto {
    fn from(ca: TrustedCa) -> Self {
        // The certificate was checked when it was added; parsing it "as of" that moment
        // recovers its facts even after it expired.
        let info = parse_ca_certificate(&ca.cert_pem, ca.created_at).ok();
        TrustedCaDto {
            id: ca.id,
            subject: ca.subject,
            auto_register: ca.auto_register,
            not_after: info.as_ref().map(|info| format_rfc3339_ms(info.not_after_ms)),
            fingerprint_sha256: info.map(|info| info.fingerprint_sha256),
            created_at: format_rfc3339_ms(ca.created_at),
        }
    }
}

fn pem_response(pem: String) -> Response {
    let mut response = pem.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PEM_CONTENT_TYPE));
    response
}

fn check_pem_size(field: &str, pem: &str) -> ApiResult<()> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(ApiError::invalid(format!("{field} is larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(())
}

/// Trusted CA ids are the hex of 8 random bytes; anything far from that is malformed.
fn check_trusted_ca_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid("trusted CA id must be 1 to 64 letters or digits"));
    }
    Ok(())
}

/// Trusted CAs act on the whole tenant (with `auto_register` they even create devices), so a
/// caller confined to device groups may read them but not change them.
async fn require_whole_tenant(state: &AppState, principal: &Principal) -> ApiResult<()> {
    if principal.groups.is_empty() {
        return Ok(());
    }
    let details = json!({"reason": "caller is confined to device groups"});
    principal.audit_failure(state, "access.denied", "trusted_ca", details).await;
    Err(ApiError::Forbidden)
}

/// The tenant's device CA certificate.
#[utoipa::path(
    get,
    path = "/api/v1/ca",
    tag = "certificates",
    responses(
        (status = 200, body = String, content_type = "application/x-pem-file"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn get_ca(State(state): State<AppState>, principal: Principal) -> ApiResult<Response> {
    principal.require(&state, Permission::DevicesRead).await?;
    let ca = state.platform.store.get_tenant_ca(&principal.tenant).await?;
    Ok(pem_response(ca.cert_pem))
}

/// A fresh CRL of the tenant CA listing every revoked device certificate.
#[utoipa::path(
    get,
    path = "/api/v1/ca/crl",
    tag = "certificates",
    responses(
        (status = 200, body = String, content_type = "application/x-pem-file"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn get_crl(State(state): State<AppState>, principal: Principal) -> ApiResult<Response> {
    principal.require(&state, Permission::DevicesRead).await?;
    let platform = &state.platform;
    let (mut ca, key_pem) = platform.tenant_ca(&principal.tenant).await?;
    let revoked: Vec<(String, i64)> = platform
        .store
        .list_revoked_certificates(&principal.tenant)
        .await?
        .into_iter()
        .filter_map(|cert| cert.revoked_at.map(|at| (cert.serial, at)))
        .collect();
    let crl_number = ca.crl_number.saturating_add(1).max(1);
    let number = u64::try_from(crl_number).map_err(|_| ApiError::Internal("negative CRL number".to_owned()))?;
    let pem = build_crl(&ca.cert_pem, &key_pem, &revoked, number, platform.now_ms())?;
    ca.crl_number = crl_number;
    platform.store.put_tenant_ca(&ca).await?;
    Ok(pem_response(pem))
}

/// Signs a device certificate from a CSR: CN = device id, SAN URI `urn:rampart:<tenant>:<device>`.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/certificates",
    tag = "certificates",
    params(("id" = String, Path, description = "Device id")),
    request_body = CertificateRequest,
    responses(
        (status = 201, body = IssuedCertificateDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn issue_certificate(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CertificateRequest>,
) -> ApiResult<(StatusCode, Json<IssuedCertificateDto>)> {
    principal.require(&state, Permission::DevicesWrite).await?;
    let device = visible_device(&state, &principal, &id).await?;
    ensure_may_get_credentials(&device)?;
    check_pem_size("csr", &body.csr)?;
    let platform = &state.platform;
    let (ca, key_pem) = platform.tenant_ca(&principal.tenant).await?;
    let issued = match sign_device_csr(
        &ca.cert_pem,
        &key_pem,
        &body.csr,
        &principal.tenant,
        &device.id,
        DEVICE_CERT_VALIDITY_DAYS,
    ) {
        Ok(issued) => issued,
        Err(CryptoError::WeakKey { .. }) => {
            return Err(ApiError::invalid("RSA keys under 2048 bits are refused"));
        }
        Err(CryptoError::InvalidCsr { .. }) => {
            return Err(ApiError::invalid(
                "csr is not a valid PEM certificate signing request with a supported key and signature",
            ));
        }
        Err(other) => return Err(other.into()),
    };
    let row = DeviceCertificate {
        tenant: principal.tenant.clone(),
        device: device.id.clone(),
        serial: issued.serial_hex,
        not_after: issued.not_after_ms,
        revoked_at: None,
        cert_pem: issued.cert_pem,
        created_at: platform.now_ms(),
    };
    platform.store.create_device_certificate(&row).await?;
    let details = json!({"serial": row.serial, "not_after": format_rfc3339_ms(row.not_after)});
    principal.audit(&state, "certificate.issue", format!("device:{}", device.id), details).await;
    let answer = IssuedCertificateDto {
        certificate: row.cert_pem,
        ca_chain: ca.cert_pem,
        serial: row.serial,
        not_after: format_rfc3339_ms(row.not_after),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Lists the device's certificates, revoked ones included.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/certificates",
    tag = "certificates",
    params(("id" = String, Path, description = "Device id"), ListQuery),
    responses(
        (status = 200, body = Paginated<CertificateDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_certificates(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<CertificateDto>>> {
    principal.require(&state, Permission::DevicesRead).await?;
    let device = visible_device(&state, &principal, &id).await?;
    let rows = state.platform.store.list_device_certificates(&principal.tenant, &device.id).await?;
    Ok(Json(paginate_in_memory(&query, rows, |cert| cert.serial.clone(), CertificateDto::from)?))
}

/// Trusts an external CA for device certificates.
#[utoipa::path(
    post,
    path = "/api/v1/ca/trusted",
    tag = "certificates",
    request_body = CreateTrustedCa,
    responses(
        (status = 201, body = TrustedCaDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create_trusted_ca(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTrustedCa>,
) -> ApiResult<(StatusCode, Json<TrustedCaDto>)> {
    principal.require(&state, Permission::DevicesWrite).await?;
    require_whole_tenant(&state, &principal).await?;
    check_pem_size("certificate", &body.certificate)?;
    let platform = &state.platform;
    let now = platform.now_ms();
    let info = match parse_ca_certificate(&body.certificate, now) {
        Ok(info) => info,
        Err(CryptoError::InvalidCertificate { reason }) => {
            // The reasons are fixed sentences of our own ("not a CA certificate", "expired").
            return Err(ApiError::invalid(format!("certificate is not a usable CA certificate: {reason}")));
        }
        Err(other) => return Err(other.into()),
    };
    let existing = platform.store.list_trusted_cas(&principal.tenant).await?;
    let duplicate = existing
        .into_iter()
        .map(TrustedCaDto::from)
        .any(|ca| ca.fingerprint_sha256.as_deref().is_some_and(|fingerprint| fingerprint == info.fingerprint_sha256));
    if duplicate {
        return Err(ApiError::Conflict("this CA is already trusted".to_owned()));
    }
    let row = TrustedCa {
        tenant: principal.tenant.clone(),
        id: random_id(8),
        cert_pem: body.certificate,
        subject: info.subject.clone(),
        auto_register: body.auto_register,
        created_at: now,
    };
    platform.store.create_trusted_ca(&row).await?;
    let details = json!({
        "subject": info.subject,
        "fingerprint_sha256": info.fingerprint_sha256,
        "auto_register": row.auto_register,
    });
    principal.audit(&state, "trusted_ca.create", format!("trusted_ca:{}", row.id), details).await;
    let answer = TrustedCaDto {
        id: row.id,
        subject: row.subject,
        auto_register: row.auto_register,
        not_after: Some(format_rfc3339_ms(info.not_after_ms)),
        fingerprint_sha256: Some(info.fingerprint_sha256),
        created_at: format_rfc3339_ms(row.created_at),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Lists the external CAs the tenant trusts.
#[utoipa::path(
    get,
    path = "/api/v1/ca/trusted",
    tag = "certificates",
    params(ListQuery),
    responses(
        (status = 200, body = Paginated<TrustedCaDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_trusted_cas(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<TrustedCaDto>>> {
    principal.require(&state, Permission::DevicesRead).await?;
    let rows = state.platform.store.list_trusted_cas(&principal.tenant).await?;
    Ok(Json(paginate_in_memory(&query, rows, |ca| ca.id.clone(), TrustedCaDto::from)?))
}

/// Stops trusting an external CA.
#[utoipa::path(
    delete,
    path = "/api/v1/ca/trusted/{id}",
    tag = "certificates",
    params(("id" = String, Path, description = "Trusted CA id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn delete_trusted_ca(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    principal.require(&state, Permission::DevicesWrite).await?;
    require_whole_tenant(&state, &principal).await?;
    check_trusted_ca_id(&id)?;
    state.platform.store.delete_trusted_ca(&principal.tenant, &id).await?;
    // Sessions authenticated through this CA re-check their chain on the policy change.
    state
        .platform
        .control
        .publish(rampart_platform::ControlEvent::TenantPolicyChanged { tenant: principal.tenant.clone() });
    principal.audit(&state, "trusted_ca.delete", format!("trusted_ca:{id}"), json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
