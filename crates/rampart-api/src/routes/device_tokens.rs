//! Device tokens (SPEC §6): bearer secrets of 256 random bits, shown once and stored only as
//! their SHA-256. Several may live at once so a device can rotate without downtime.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::Permission;
use rampart_crypto::{random_id, random_secret, sha256};
use rampart_platform::format_rfc3339_ms;
use rampart_store::DeviceToken;
use serde::{Serialize, Serializer};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated};
use crate::routes::devices::{ensure_may_get_credentials, paginate_in_memory, visible_device};
use crate::state::AppState;

/// Prefix of device tokens, so leaked ones are recognisable by secret scanners.
const TOKEN_PREFIX: &str = "rdt_";
/// Random bytes per token (256 bits).
const TOKEN_BYTES: usize = 32;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(delete_token))
}

/// A freshly issued token: the only answer that ever carries the secret. No `Debug`, so the
/// secret cannot end up in a log line.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedTokenDto {
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
pub struct TokenDto {
    pub id: String,
    pub created_at: String,
}

/// Token ids are the hex of 8 random bytes; anything far from that is a malformed request.
fn check_token_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid("token id must be 1 to 64 letters or digits"));
    }
    Ok(())
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
    principal.require(&state, Permission::DevicesWrite).await?;
    let device = visible_device(&state, &principal, &id).await?;
    ensure_may_get_credentials(&device)?;
    let token = random_secret(TOKEN_PREFIX, TOKEN_BYTES);
    let row = DeviceToken {
        tenant: principal.tenant.clone(),
        device: device.id.clone(),
        id: random_id(8),
        token_hash: sha256(token.as_bytes()).to_vec(),
        created_at: state.platform.now_ms(),
    };
    state.platform.store.create_device_token(&row).await?;
    let details = json!({"token_id": row.id});
    principal.audit(&state, "device_token.create", format!("device:{}", device.id), details).await;
    Ok((StatusCode::CREATED, Json(IssuedTokenDto { id: row.id, token, created_at: format_rfc3339_ms(row.created_at) })))
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
    principal.require(&state, Permission::DevicesRead).await?;
    let device = visible_device(&state, &principal, &id).await?;
    let rows = state.platform.store.list_device_tokens(&principal.tenant, &device.id).await?;
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
    principal.require(&state, Permission::DevicesWrite).await?;
    let device = visible_device(&state, &principal, &id).await?;
    check_token_id(&token_id)?;
    state.platform.store.delete_device_token(&principal.tenant, &device.id, &token_id).await?;
    state.platform.control.publish(rampart_platform::ControlEvent::DeviceTokenDeleted {
        tenant: principal.tenant.clone(),
        device: device.id.clone(),
        token_id: token_id.clone(),
    });
    let details = json!({"token_id": token_id});
    principal.audit(&state, "device_token.delete", format!("device:{}", device.id), details).await;
    Ok(StatusCode::NO_CONTENT)
}
