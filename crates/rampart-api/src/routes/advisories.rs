//! Vulnerability advisories (SPEC §9): OSV records in, and the exposure: the devices running
//! firmware an advisory affects.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_fleet::Advisory;
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::pagination::Paginated;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(import_advisory, list_advisories)).routes(routes!(exposure))
}

/// An advisory as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct AdvisoryDto {
    id: String,
    summary: Option<String>,
    #[schema(value_type = Object)]
    severity: Value,
    /// The OSV record as imported.
    #[schema(value_type = Object)]
    record: Value,
}

impl From<Advisory> for AdvisoryDto {
    fn from(advisory: Advisory) -> Self {
        AdvisoryDto {
            record: advisory.record().clone(),
            id: advisory.id,
            summary: advisory.summary,
            severity: advisory.severity,
        }
    }
}

/// Imports an OSV record (`affected[].package.name` = firmware name, `SEMVER` ranges),
/// replacing one with the same id; a malformed record is refused naming the field. Audited.
#[utoipa::path(
    post,
    path = "/api/v1/advisories",
    tag = "advisories",
    request_body(content = Object, description = "An OSV record"),
    responses(
        (status = 201, body = AdvisoryDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn import_advisory(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(record): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<AdvisoryDto>)> {
    let advisory = state.fleet.import_advisory(&principal, record).await?;
    Ok((StatusCode::CREATED, Json(advisory.into())))
}

/// The tenant's advisories.
#[utoipa::path(
    get,
    path = "/api/v1/advisories",
    tag = "advisories",
    responses((status = 200, body = Paginated<AdvisoryDto>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn list_advisories(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Paginated<AdvisoryDto>>> {
    let advisories = state.fleet.advisories(&principal).await?;
    Ok(Json(Paginated::whole(advisories)))
}

/// A device running affected firmware.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ExposureDto {
    device: String,
    firmware_name: String,
    firmware_version: String,
    /// `{"id","summary","severity"}` of each advisory that affects it.
    #[schema(value_type = Vec<Object>)]
    advisories: Vec<Value>,
}

/// The devices (in the caller's scope) running firmware that an advisory affects.
#[utoipa::path(
    get,
    path = "/api/v1/advisories/exposure",
    tag = "advisories",
    responses((status = 200, body = Paginated<ExposureDto>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn exposure(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Paginated<ExposureDto>>> {
    let exposed = state.fleet.exposure(&principal).await?;
    let items = exposed
        .into_iter()
        .map(|item| ExposureDto {
            device: item.device,
            firmware_name: item.firmware_name,
            firmware_version: item.firmware_version,
            advisories: item.advisories,
        })
        .collect();
    Ok(Json(Paginated { items, next_cursor: None }))
}
