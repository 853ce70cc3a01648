//! Remote device management (SPEC §9): operations (`operations:write` to create or cancel,
//! `operations:read` to read; creation and cancellation audited as device control) and device
//! twins (`devices:read`; `devices:write` to patch the desired state). A group-scoped caller
//! reaches only devices in its groups; everything else answers 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{DeviceId, OperationStatus};
use rampart_data::{NewOperation, Operation, Twin};
use rampart_platform::rows::Page;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::Paginated;
use crate::routes::data::{decode_cursor, encode_cursor, ingestor, limit};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_operation, list_device_operations))
        .routes(routes!(get_operation))
        .routes(routes!(cancel_operation))
        .routes(routes!(get_twin))
        .routes(routes!(patch_desired))
}

/// An operation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct OperationDto {
    id: String,
    device: String,
    #[serde(rename = "type")]
    op_type: String,
    #[schema(value_type = Object)]
    payload: Option<Value>,
    /// `PENDING`, `EXECUTING`, `SUCCESSFUL` or `FAILED`.
    status: String,
    /// Why it failed (`timeout`, `cancelled`, or the device's reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<String>,
    created_by: String,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_at: Option<String>,
}

impl From<Operation> for OperationDto {
    fn from(operation: Operation) -> Self {
        let format = rampart_platform::format_rfc3339_ms;
        OperationDto {
            id: operation.id,
            device: operation.device,
            op_type: operation.op_type,
            payload: operation.payload,
            status: operation.status.as_str().to_owned(),
            reason: operation.reason,
            result: operation.result,
            campaign: operation.campaign,
            created_by: operation.created_by,
            created_at: format(operation.created_at),
            updated_at: format(operation.updated_at),
            timeout_at: operation.timeout_at.map(format),
        }
    }
}

/// `POST /api/v1/devices/{id}/operations` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateOperation {
    /// What to do, e.g. `restart`: 1–64 of `A-Z a-z 0-9 . _ -`.
    #[serde(rename = "type")]
    op_type: String,
    /// Any JSON, at most 64 KiB.
    #[schema(value_type = Object)]
    payload: Option<Value>,
    /// Seconds until an unfinished operation fails with reason `timeout` (1 to 2,592,000).
    timeout_s: Option<u32>,
}

/// Creates an operation for a device (audited as `operation.create`); a connected device gets
/// it at once on `devices/{id}/operations`.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/operations",
    tag = "operations",
    params(("id" = String, Path, description = "Device id")),
    request_body = CreateOperation,
    responses(
        (status = 201, body = OperationDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create_operation(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateOperation>,
) -> ApiResult<(StatusCode, Json<OperationDto>)> {
    let new = NewOperation { op_type: body.op_type, payload: body.payload, timeout_s: body.timeout_s };
    let operation = ingestor(&state)?.create_operation(&principal, &DeviceId::parse(&id)?, new).await?;
    Ok((StatusCode::CREATED, Json(operation.into())))
}

/// `GET /api/v1/devices/{id}/operations` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct OperationParams {
    /// `PENDING`, `EXECUTING`, `SUCCESSFUL` or `FAILED`.
    status: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    cursor: Option<String>,
}

/// The status filter of a list query.
pub(super) fn status_param(status: Option<&str>) -> ApiResult<Option<OperationStatus>> {
    status
        .map(|text| {
            OperationStatus::parse(text)
                .ok_or_else(|| ApiError::invalid("status must be PENDING, EXECUTING, SUCCESSFUL or FAILED"))
        })
        .transpose()
}

/// The store page of a list query.
pub(super) fn page_param(limit_value: Option<u32>, cursor: Option<String>) -> ApiResult<Page> {
    Ok(Page { after: decode_cursor(cursor)?, limit: limit(limit_value)? })
}

/// Lists a device's operations, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/operations",
    tag = "operations",
    params(("id" = String, Path, description = "Device id"), OperationParams),
    responses(
        (status = 200, body = Paginated<OperationDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_device_operations(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<OperationParams>,
) -> ApiResult<Json<Paginated<OperationDto>>> {
    let status = status_param(params.status.as_deref())?;
    let page = page_param(params.limit, params.cursor)?;
    let listed = ingestor(&state)?.device_operations(&principal, &DeviceId::parse(&id)?, status, &page).await?;
    Ok(Json(operations_page(listed)))
}

/// A page of operations as the API shows it (the cursor made opaque).
pub(super) fn operations_page(listed: rampart_data::ListPage<Operation>) -> Paginated<OperationDto> {
    Paginated {
        items: listed.items.into_iter().map(OperationDto::from).collect(),
        next_cursor: encode_cursor(listed.next_cursor),
    }
}

/// Reads one operation.
#[utoipa::path(
    get,
    path = "/api/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses(
        (status = 200, body = OperationDto),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn get_operation(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<OperationDto>> {
    Ok(Json(ingestor(&state)?.operation(&principal, &id).await?.into()))
}

/// Cancels a PENDING operation: it becomes FAILED with reason `cancelled` (audited as
/// `operation.cancel`). 409 once the device has taken it up.
#[utoipa::path(
    post,
    path = "/api/v1/operations/{id}/cancel",
    tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses(
        (status = 200, body = OperationDto),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn cancel_operation(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<OperationDto>> {
    Ok(Json(ingestor(&state)?.cancel_operation(&principal, &id).await?.into()))
}

/// A device twin: desired and reported state with their versions, and the delta (what is
/// desired and not reported).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TwinDto {
    #[schema(value_type = Object)]
    desired: Value,
    desired_version: i64,
    #[schema(value_type = Object)]
    reported: Value,
    reported_version: i64,
    #[schema(value_type = Object)]
    delta: Value,
}

impl From<Twin> for TwinDto {
    fn from(twin: Twin) -> Self {
        TwinDto {
            desired: twin.desired,
            desired_version: twin.desired_version,
            reported: twin.reported,
            reported_version: twin.reported_version,
            delta: twin.delta,
        }
    }
}

/// Reads a device's twin.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/twin",
    tag = "operations",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, body = TwinDto),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn get_twin(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TwinDto>> {
    Ok(Json(ingestor(&state)?.twin(&principal, &DeviceId::parse(&id)?).await?.into()))
}

/// Applies a JSON merge patch to a device's desired state (audited as `twin.desired_update`);
/// a connected device gets the new state at once on `devices/{id}/twin/desired`.
#[utoipa::path(
    patch,
    path = "/api/v1/devices/{id}/twin/desired",
    tag = "operations",
    params(("id" = String, Path, description = "Device id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, body = TwinDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn patch_desired(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<Value>,
) -> ApiResult<Json<TwinDto>> {
    Ok(Json(ingestor(&state)?.patch_desired(&principal, &DeviceId::parse(&id)?, patch).await?.into()))
}
