//! The HTTPS API for devices without MQTT (SPEC §7): a device authenticates with a device token
//! (`Authorization: Bearer rdt_…`) or with its TLS client certificate, and publishes what it
//! would publish on its MQTT topics. Data is acknowledged only once it is durable.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use rampart_data::{DataKind, IngestError, StatusReport};
use rampart_platform::{AuthenticatedDevice, DEVICE_TOKEN_PREFIX, DeviceAuthError};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery, PeerCertificates, RawBody, client_ip};
use crate::pagination::Paginated;
use crate::routes::data::ingestor;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_telemetry))
        .routes(routes!(post_events))
        .routes(routes!(post_alarms))
        .routes(routes!(post_attestation))
        .routes(routes!(get_twin))
        .routes(routes!(patch_reported))
        .routes(routes!(list_own_operations))
        .routes(routes!(put_operation_status))
}

/// A device authenticated by token or client certificate.
pub(super) struct DeviceCaller {
    pub(super) tenant: String,
    pub(super) device: String,
}

impl FromRequestParts<AppState> for DeviceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let platform = &state.platform;
        let source_ip = client_ip(parts);
        let bearer = crate::auth::bearer(parts);
        let outcome = match (bearer, parts.extensions.get::<PeerCertificates>()) {
            (Some(token), _) if token.starts_with(DEVICE_TOKEN_PREFIX) => {
                platform.find_device_by_token(token.as_bytes()).await
            }
            (Some(_), _) => return Err(ApiError::Unauthorized),
            (None, Some(PeerCertificates(Some(chain)))) => {
                platform.authenticate_device_certificate(chain, platform.now_ms()).await
            }
            (None, _) => return Err(ApiError::Unauthorized),
        };
        match outcome {
            Ok(AuthenticatedDevice { device, .. }) => {
                let address = source_ip.unwrap_or_default();
                // An HTTPS device is "seen", not connected: record the visit and its address.
                platform.device_seen(&device.tenant, &device.id, &address).await?;
                Ok(DeviceCaller { tenant: device.tenant, device: device.id })
            }
            Err(error) => {
                platform.record_device_auth_failure(&error, source_ip.as_deref(), "https").await;
                match error {
                    DeviceAuthError::Platform(cause) => Err(cause.into()),
                    DeviceAuthError::NotAuthorized { revoked_credential: false, .. } => Err(ApiError::Forbidden),
                    _ => Err(ApiError::Unauthorized),
                }
            }
        }
    }
}

/// What the platform stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Stored {
    stored: bool,
}

async fn ingest(state: &AppState, caller: &DeviceCaller, kind: DataKind, body: &[u8]) -> ApiResult<Json<Stored>> {
    let ingestor = ingestor(state)?;
    let now = state.platform.now_ms();
    match ingestor.submit(&caller.tenant, &caller.device, kind, body, now).await {
        Ok(()) => Ok(Json(Stored { stored: true })),
        Err(IngestError::Malformed(reason)) => Err(ApiError::invalid(format!("malformed payload: {reason}"))),
        Err(IngestError::UnknownDevice { .. }) => Err(ApiError::Unauthorized),
        Err(IngestError::TooLarge(reason)) => Err(ApiError::TooLarge(reason)),
        Err(IngestError::Refused(reason)) => Err(ApiError::Conflict(reason)),
        Err(other) => Err(ApiError::Internal(other.to_string())),
    }
}

/// Stores telemetry, as on `devices/{id}/telemetry`.
#[utoipa::path(
    post,
    path = "/api/v1/device/telemetry",
    tag = "device",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = Stored),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn post_telemetry(
    State(state): State<AppState>,
    caller: DeviceCaller,
    RawBody(body): RawBody,
) -> ApiResult<Json<Stored>> {
    ingest(&state, &caller, DataKind::Telemetry, &body).await
}

/// Stores an event, as on `devices/{id}/events`.
#[utoipa::path(
    post,
    path = "/api/v1/device/events",
    tag = "device",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = Stored),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn post_events(
    State(state): State<AppState>,
    caller: DeviceCaller,
    RawBody(body): RawBody,
) -> ApiResult<Json<Stored>> {
    ingest(&state, &caller, DataKind::Events, &body).await
}

/// Raises or clears an alarm, as on `devices/{id}/alarms`.
#[utoipa::path(
    post,
    path = "/api/v1/device/alarms",
    tag = "device",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = Stored),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn post_alarms(
    State(state): State<AppState>,
    caller: DeviceCaller,
    RawBody(body): RawBody,
) -> ApiResult<Json<Stored>> {
    ingest(&state, &caller, DataKind::Alarms, &body).await
}

/// Stores an attestation report, as on `devices/{id}/attestation`.
#[utoipa::path(
    post,
    path = "/api/v1/device/attestation",
    tag = "device",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = Stored),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn post_attestation(
    State(state): State<AppState>,
    caller: DeviceCaller,
    RawBody(body): RawBody,
) -> ApiResult<Json<Stored>> {
    ingest(&state, &caller, DataKind::Attestation, &body).await
}

/// Reads the device's own twin (desired, reported, delta).
#[utoipa::path(
    get,
    path = "/api/v1/device/twin",
    tag = "device",
    responses((status = 200, body = super::operations::TwinDto), (status = 401, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn get_twin(State(state): State<AppState>, caller: DeviceCaller) -> ApiResult<Json<super::operations::TwinDto>> {
    Ok(Json(ingestor(&state)?.device_twin(&caller.tenant, &caller.device).await?.into()))
}

/// Merges a JSON merge patch into the reported state.
#[utoipa::path(
    patch,
    path = "/api/v1/device/twin/reported",
    tag = "device",
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = Stored),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn patch_reported(
    State(state): State<AppState>,
    caller: DeviceCaller,
    RawBody(body): RawBody,
) -> ApiResult<Json<Stored>> {
    ingest(&state, &caller, DataKind::TwinReported, &body).await
}

/// `GET /api/v1/device/operations` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct OwnOperationParams {
    /// `PENDING`, `EXECUTING`, `SUCCESSFUL` or `FAILED`.
    status: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    cursor: Option<String>,
}

/// Lists the device's own operations, newest first (`?status=PENDING` for what is to do).
#[utoipa::path(
    get,
    path = "/api/v1/device/operations",
    tag = "device",
    params(OwnOperationParams),
    responses(
        (status = 200, body = Paginated<super::operations::OperationDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_own_operations(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiQuery(params): ApiQuery<OwnOperationParams>,
) -> ApiResult<Json<Paginated<super::operations::OperationDto>>> {
    let status = super::operations::status_param(params.status.as_deref())?;
    let page = super::operations::page_param(params.limit, params.cursor)?;
    let listed = ingestor(&state)?.operations_of_device(&caller.tenant, &caller.device, status, &page).await?;
    Ok(Json(super::operations::operations_page(listed)))
}

/// Reports on one of the device's own operations: `{"status":"EXECUTING|SUCCESSFUL|FAILED",
/// "result"?,"reason"?}`, forward only (409 for a move backwards, 404 for another device's).
#[utoipa::path(
    put,
    path = "/api/v1/device/operations/{id}",
    tag = "device",
    params(("id" = String, Path, description = "Operation id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = super::operations::OperationDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn put_operation_status(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiPath(id): ApiPath<String>,
    RawBody(body): RawBody,
) -> ApiResult<Json<super::operations::OperationDto>> {
    let report = StatusReport::parse(&body).map_err(|error| ApiError::invalid(error.to_string()))?;
    let operation = ingestor(&state)?.report_operation_status(&caller.tenant, &caller.device, &id, report).await?;
    Ok(Json(operation.into()))
}
