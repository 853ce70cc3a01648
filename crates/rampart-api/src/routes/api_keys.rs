//! API keys for applications (SPEC §4): `rak_<id>_<secret>`, shown once at creation and
//! stored as a SHA-256 hash. A key carries roles like a user, and nobody can create a key
//! holding permissions they lack.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::Permission;
use rampart_crypto::{random_id, random_secret, sha256};
use rampart_platform::{Actor, format_rfc3339_ms, parse_timestamp};
use rampart_store::ApiKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{API_KEY_PREFIX, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::routes::roles::check_grantable_roles;
use crate::routes::tenants::check_display_name;
use crate::state::AppState;

/// Random bytes in a key id (hex) and in its secret part (base64url): 256 bits of secret.
const KEY_ID_BYTES: usize = 8;
const KEY_SECRET_BYTES: usize = 32;

/// Body of `POST /api/v1/api-keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// Built-in or custom role names.
    pub roles: Vec<String>,
    /// Expiry: RFC 3339 text or epoch milliseconds; absent = never.
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Value>,
}

/// The answer to a creation: the only time `key` is ever shown.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
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
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub expires_at: Option<String>,
    pub created_by: String,
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
            created_at: format_rfc3339_ms(key.created_at),
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
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

fn check_key_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid("API key id must be hexadecimal"));
    }
    Ok(())
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
    principal.require(&state, Permission::UsersWrite).await?;
    check_display_name("name", &body.name)?;
    let now = state.platform.now_ms();
    let expires_at = match &body.expires_at {
        None => None,
        Some(value) => parse_expiry(value)?,
    };
    if expires_at.is_some_and(|at| at <= now) {
        return Err(ApiError::invalid("expires_at must lie in the future"));
    }
    let roles = check_grantable_roles(&state, &principal, &body.roles).await?;
    let id = random_id(KEY_ID_BYTES);
    let key = random_secret(&format!("{API_KEY_PREFIX}{id}_"), KEY_SECRET_BYTES);
    let created_by = match principal.actor() {
        Actor::User(name) | Actor::Device(name) => name,
        Actor::System => "rampart".to_owned(),
    };
    let row = ApiKey {
        id: id.clone(),
        tenant: principal.tenant.clone(),
        name: body.name,
        roles,
        key_hash: sha256(key.as_bytes()).to_vec(),
        expires_at,
        created_by,
        created_at: now,
    };
    state.platform.store.create_api_key(&row).await?;
    let details = json!({"name": row.name, "roles": row.roles, "expires_at": row.expires_at.map(format_rfc3339_ms)});
    principal.audit(&state, "api_key.create", format!("api_key:{id}"), details).await;
    let answer = CreatedApiKey {
        id,
        key: key.to_string(),
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
    principal.require(&state, Permission::UsersRead).await?;
    let keys = state.platform.store.list_api_keys(&principal.tenant).await?;
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
    principal.require(&state, Permission::UsersWrite).await?;
    check_key_id(&id)?;
    state.platform.store.delete_api_key(&principal.tenant, &id).await?;
    let revoked =
        rampart_platform::ControlEvent::ApiKeyRevoked { tenant: principal.tenant.clone(), key_id: id.clone() };
    state.platform.control.publish(revoked);
    principal.audit(&state, "api_key.delete", format!("api_key:{id}"), json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
