//! API keys for applications (SPEC §4): `rak_<id>_<secret>`, shown once at creation. Parse,
//! call the platform, answer; a key never reaches further than the user it acts for.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_platform::rows::ApiKey;
use rampart_platform::{NewApiKey, format_rfc3339_ms, parse_timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::state::AppState;

/// Body of `POST /api/v1/api-keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateApiKey {
    pub name: String,
    /// Built-in or custom role names.
    pub roles: Vec<String>,
    /// Expiry: RFC 3339 text or epoch milliseconds; absent = never.
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Value>,
}

/// The answer to a creation: the only time `key` is ever shown.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct CreatedApiKey {
    pub id: String,
    /// Use as `Authorization: Bearer <key>`. Not retrievable later.
    pub key: String,
    pub name: String,
    pub roles: Vec<String>,
    pub expires_at: Option<String>,
    pub created_at: String,
}

/// An API key as listed, without its secret.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub expires_at: Option<String>,
    pub created_by: String,
    /// The user the key acts for.
    pub owner: String,
    pub created_at: String,
}

impl From<ApiKey> for ApiKeyView {
    fn from(key: ApiKey) -> Self {
        ApiKeyView {
            id: key.id,
            name: key.name,
            roles: key.roles,
            expires_at: key.expires_at.map(format_rfc3339_ms),
            created_by: key.created_by,
            owner: key.owner,
            created_at: format_rfc3339_ms(key.created_at),
        }
    }
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_api_key, list_api_keys)).routes(routes!(delete_api_key))
}

fn parse_expiry(value: &Value) -> ApiResult<Option<i64>> {
    let parsed = match value {
        Value::Null => return Ok(None),
        Value::Number(number) => number.as_i64(),
        Value::String(text) => parse_timestamp(text),
        _ => None,
    };
    parsed.map(Some).ok_or_else(|| ApiError::invalid("expires_at must be RFC 3339 or epoch milliseconds"))
}

/// Creates an API key; the key itself is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Key created", body = CreatedApiKey),
        (status = 400, description = "Invalid name, unknown role or bad expiry", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:write, or granting more than the caller holds", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let expires_at = match &body.expires_at {
        None => None,
        Some(value) => parse_expiry(value)?,
    };
    let new = NewApiKey { name: body.name, roles: body.roles, expires_at };
    let created = state.platform.create_api_key(&principal, new).await?;
    let row = created.row;
    let answer = CreatedApiKey {
        id: row.id,
        key: created.key.to_string(),
        name: row.name,
        roles: row.roles,
        expires_at: row.expires_at.map(format_rfc3339_ms),
        created_at: format_rfc3339_ms(row.created_at),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Lists the tenant's API keys (never their secrets), ordered by id.
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "api-keys",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of API keys", body = Paginated<ApiKeyView>),
        (status = 400, description = "Invalid paging", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_api_keys(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<ApiKeyView>>> {
    let keys = state.platform.list_api_keys(&principal).await?;
    Ok(Json(paginate_in_memory(&query, keys, |key| key.id.clone(), ApiKeyView::from)?))
}

/// Revokes an API key at once.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "API key id")),
    responses(
        (status = 204, description = "Key revoked"),
        (status = 400, description = "Invalid id", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:write", body = crate::error::ErrorBody),
        (status = 404, description = "No such key", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.platform.delete_api_key(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
