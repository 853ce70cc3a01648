//! Device tokens (SPEC §6): bearer secrets of 256 random bits, shown once and stored only as
//! their SHA-256; several at once for rotation. Parse, call the platform, answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::DeviceId;
use rampart_platform::format_rfc3339_ms;
use serde::{Serialize, Serializer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(delete_token))
}

/// A freshly issued token: the only answer that ever carries the secret. No `Debug`, so the
/// secret cannot end up in a log line.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct IssuedTokenDto {
    pub id: String,
    /// The bearer secret; store it now, it is never shown again.
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub token: Zeroizing<String>,
    pub created_at: String,
}

fn expose<S: Serializer>(secret: &Zeroizing<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.as_str())
}

/// A token as listed: never the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TokenDto {
    pub id: String,
    pub created_at: String,
}

/// Issues a new token for the device.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/tokens",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 201, body = IssuedTokenDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<IssuedTokenDto>)> {
    let issued = state.platform.create_device_token(&principal, &DeviceId::parse(&id)?).await?;
    let created_at = format_rfc3339_ms(issued.row.created_at);
    Ok((StatusCode::CREATED, Json(IssuedTokenDto { id: issued.row.id, token: issued.token, created_at })))
}

/// Lists the device's tokens (ids and creation times only).
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/tokens",
    tag = "devices",
    params(("id" = String, Path, description = "Device id"), ListQuery),
    responses(
        (status = 200, body = Paginated<TokenDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<TokenDto>>> {
    let rows = state.platform.list_device_tokens(&principal, &DeviceId::parse(&id)?).await?;
    let page = paginate_in_memory(
        &query,
        rows,
        |row| row.id.clone(),
        |row| TokenDto { id: row.id, created_at: format_rfc3339_ms(row.created_at) },
    )?;
    Ok(Json(page))
}

/// Deletes one token; a device using it can no longer connect with it.
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{id}/tokens/{token_id}",
    tag = "devices",
    params(("id" = String, Path, description = "Device id"), ("token_id" = String, Path, description = "Token id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn delete_token(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, token_id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.platform.delete_device_token(&principal, &DeviceId::parse(&id)?, &token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
