//! The tenant PKI (SPEC §6): the tenant CA certificate and its CRL, device certificates signed
//! from CSRs, and external CAs the tenant trusts for device certificates ("bring your own
//! CA", with proof of possession). Parse, call the platform, answer.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_core::DeviceId;
use rampart_platform::rows::{DeviceCertificate, TrustedCa};
use rampart_platform::{NewTrustedCa, format_rfc3339_ms, trusted_ca_facts};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::state::AppState;

const PEM_CONTENT_TYPE: &str = "application/x-pem-file";

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_ca))
        .routes(routes!(get_crl))
        .routes(routes!(registration_code))
        .routes(routes!(issue_certificate, list_certificates))
        .routes(routes!(create_trusted_ca, list_trusted_cas))
        .routes(routes!(delete_trusted_ca))
}

/// `POST /api/v1/devices/{id}/certificates` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CertificateRequest {
    /// PKCS#10 certificate signing request, PEM.
    pub csr: String,
}

/// A certificate just issued to a device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct IssuedCertificateDto {
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
pub(super) struct CertificateDto {
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
pub(super) struct CreateTrustedCa {
    /// The CA certificate, PEM.
    pub certificate: String,
    /// Proof of possession: a certificate with CN = a registration code
    /// (`GET /api/v1/ca/trusted/registration-code`), signed by the CA's key.
    pub verification_certificate: Option<String>,
    /// Register unknown devices at their first connection with a certificate from this CA.
    #[serde(default)]
    pub auto_register: bool,
}

/// An external CA trusted for device certificates.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TrustedCaDto {
    pub id: String,
    pub subject: String,
    pub auto_register: bool,
    pub not_after: Option<String>,
    pub fingerprint_sha256: Option<String>,
    pub created_at: String,
}

impl From<TrustedCa> for TrustedCaDto {
    fn from(ca: TrustedCa) -> Self {
        let (fingerprint_sha256, not_after) = trusted_ca_facts(&ca);
        TrustedCaDto {
            id: ca.id,
            subject: ca.subject,
            auto_register: ca.auto_register,
            not_after: not_after.map(format_rfc3339_ms),
            fingerprint_sha256,
            created_at: format_rfc3339_ms(ca.created_at),
        }
    }
}

/// A single-use code for the CN of a verification certificate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct RegistrationCode {
    pub code: String,
}

fn pem_response(pem: String) -> Response {
    let mut response = pem.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PEM_CONTENT_TYPE));
    response
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
    Ok(pem_response(state.platform.tenant_ca_certificate(&principal).await?))
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
    Ok(pem_response(state.platform.tenant_crl(&principal).await?))
}

/// A single-use, short-lived code to put as CN in the verification certificate of a CA to
/// trust (proof of possession of the CA's key).
#[utoipa::path(
    get,
    path = "/api/v1/ca/trusted/registration-code",
    tag = "certificates",
    responses(
        (status = 200, body = RegistrationCode),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn registration_code(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<RegistrationCode>> {
    Ok(Json(RegistrationCode { code: state.platform.trusted_ca_registration_code(&principal).await? }))
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
    let issued = state.platform.issue_certificate(&principal, &DeviceId::parse(&id)?, &body.csr).await?;
    let answer = IssuedCertificateDto {
        certificate: issued.row.cert_pem,
        ca_chain: issued.ca_pem,
        serial: issued.row.serial,
        not_after: format_rfc3339_ms(issued.row.not_after),
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
    let rows = state.platform.list_certificates(&principal, &DeviceId::parse(&id)?).await?;
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
    let new = NewTrustedCa {
        certificate: body.certificate,
        verification_certificate: body.verification_certificate,
        auto_register: body.auto_register,
    };
    let trusted = state.platform.create_trusted_ca(&principal, new).await?;
    Ok((StatusCode::CREATED, Json(trusted.into())))
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
    let rows = state.platform.list_trusted_cas(&principal).await?;
    Ok(Json(paginate_in_memory(&query, rows, |ca| ca.id.clone(), TrustedCaDto::from)?))
}

/// Stops trusting an external CA; its devices are disconnected at once.
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
    state.platform.delete_trusted_ca(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
