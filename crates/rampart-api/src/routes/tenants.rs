//! Sub-tenants (SPEC §2, §5): a tenant admin creates, lists and deletes the tenants below its
//! own. A parent manages a sub-tenant's lifecycle only: it never reads the sub-tenant's users,
//! devices or data, and every tenant outside the caller's sub-tree answers 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{IdKind, PLATFORM_TENANT, Permission, check_password_policy, validate_id};
use rampart_crypto::hash_password;
use rampart_platform::{Actor, AuditEntry, format_rfc3339_ms, new_user};
use rampart_store::{Page, StoreError, Tenant};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::state::AppState;

/// Longest display name accepted (tenants, groups, API keys).
const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Deepest tenant tree walked when checking ancestry; deeper chains are treated as unrelated.
const MAX_TENANT_DEPTH: usize = 64;

/// Checks a free-text display name: 1 to 200 characters, no control characters.
pub(crate) fn check_display_name(field: &str, value: &str) -> ApiResult<()> {
    let length = value.chars().count();
    if length == 0 || length > MAX_DISPLAY_NAME_CHARS || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must be 1 to {MAX_DISPLAY_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

/// Runs Argon2id hashing off the async threads.
pub(crate) async fn hash_password_blocking(password: Zeroizing<String>) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing task: {e}")))?
        .map_err(ApiError::from)
}

/// The first user of a new tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantAdmin {
    pub username: String,
    pub password: String,
}

/// Body of `POST /api/v1/tenants`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Tenant id, `^[a-z][a-z0-9-]{1,62}$`, unique across the platform.
    pub id: String,
    pub name: String,
    /// The sub-tenant's first user; it gets the built-in role `admin`.
    pub admin: TenantAdmin,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        TenantView {
            id: tenant.id,
            name: tenant.name,
            parent: tenant.parent,
            created_at: format_rfc3339_ms(tenant.created_at),
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_tenant, list_tenants)).routes(routes!(get_tenant, delete_tenant))
}

/// The tenant `id` if it lies strictly below `ancestor` in the tenant tree; `NotFound` otherwise,
/// exactly as for a missing tenant.
async fn descendant(state: &AppState, ancestor: &str, id: &str) -> ApiResult<Tenant> {
    if id == ancestor || id == PLATFORM_TENANT {
        return Err(ApiError::NotFound);
    }
    let target = state.platform.store.get_tenant(id).await?;
    let mut parent = target.parent.clone();
    for _ in 0..MAX_TENANT_DEPTH {
        let Some(current) = parent else { break };
        if current == ancestor {
            return Ok(target);
        }
        parent = match state.platform.store.get_tenant(&current).await {
            Ok(tenant) => tenant.parent,
            Err(StoreError::NotFound) => None,
            Err(other) => return Err(other.into()),
        };
    }
    Err(ApiError::NotFound)
}

/// Creates a sub-tenant of the caller's tenant, with its keys, its CA and its first admin.
#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Tenant created", body = TenantView),
        (status = 400, description = "Invalid id, name or admin password", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
        (status = 409, description = "The tenant id is taken", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_tenant(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    principal.require(&state, Permission::TenantsWrite).await?;
    validate_id(IdKind::Tenant, &body.id)?;
    check_display_name("name", &body.name)?;
    validate_id(IdKind::Username, &body.admin.username)?;
    let password = Zeroizing::new(body.admin.password);
    check_password_policy(&body.admin.username, &password).map_err(|e| ApiError::invalid(e.to_string()))?;
    // Hash before provisioning so that a failure leaves no tenant behind.
    let password_hash = hash_password_blocking(password).await?;
    let platform = &state.platform;
    match platform.provision_tenant(&body.id, &body.name, Some(&principal.tenant)).await {
        Ok(()) => {}
        Err(rampart_platform::PlatformError::Store(StoreError::Conflict(_))) => {
            return Err(ApiError::Conflict(format!("tenant {} already exists", body.id)));
        }
        Err(other) => return Err(other.into()),
    }
    let now = platform.now_ms();
    let admin = new_user(&body.id, &body.admin.username, password_hash, vec!["admin".to_owned()], now);
    if let Err(error) = platform.store.create_user(&admin).await {
        if let Err(cleanup) = platform.delete_tenant(&body.id).await {
            tracing::error!(%cleanup, tenant = %body.id, "could not remove tenant after its admin failed");
        }
        return Err(error.into());
    }
    let tenant = platform.store.get_tenant(&body.id).await?;
    let details = json!({"name": tenant.name, "parent": tenant.parent, "admin": admin.username});
    principal.audit(&state, "tenant.create", format!("tenant:{}", tenant.id), details).await;
    // The new tenant's own chain starts with who created it and its first user.
    let by = match principal.actor() {
        Actor::User(id) | Actor::Device(id) => id,
        Actor::System => "rampart".to_owned(),
    };
    let created_by = json!({"by_tenant": principal.tenant, "by": by});
    platform
        .audit
        .record(
            AuditEntry::success(&tenant.id, Actor::System, "tenant.create", format!("tenant:{}", tenant.id))
                .with_details(created_by),
        )
        .await;
    platform
        .audit
        .record(AuditEntry::success(&tenant.id, Actor::System, "user.create", format!("user:{}", admin.username)))
        .await;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// Lists the direct sub-tenants of the caller's tenant, ordered by id.
#[utoipa::path(
    get,
    path = "/api/v1/tenants",
    tag = "tenants",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of sub-tenants", body = Paginated<TenantView>),
        (status = 400, description = "Invalid paging", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_tenants(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<TenantView>>> {
    principal.require(&state, Permission::TenantsWrite).await?;
    let page: Page = query.page()?;
    let rows = state.platform.store.list_child_tenants(&principal.tenant, &page).await?;
    Ok(Json(paginate(&query, rows, |tenant| tenant.id.clone(), TenantView::from)?))
}

/// Shows one tenant below the caller's.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 400, description = "Invalid tenant id", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant below the caller's", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_tenant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TenantView>> {
    principal.require(&state, Permission::TenantsWrite).await?;
    validate_id(IdKind::Tenant, &id)?;
    let tenant = descendant(&state, &principal.tenant, &id).await?;
    Ok(Json(tenant.into()))
}

/// Deletes a tenant below the caller's: its data is deleted and its keys destroyed.
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Tenant deleted"),
        (status = 400, description = "Invalid tenant id", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant below the caller's", body = crate::error::ErrorBody),
        (status = 409, description = "The tenant has sub-tenants", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_tenant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    principal.require(&state, Permission::TenantsWrite).await?;
    validate_id(IdKind::Tenant, &id)?;
    let tenant = descendant(&state, &principal.tenant, &id).await?;
    match state.platform.delete_tenant(&tenant.id).await {
        Ok(()) => {}
        Err(rampart_platform::PlatformError::Store(StoreError::Conflict(_))) => {
            return Err(ApiError::Conflict(format!("tenant {id} has sub-tenants; delete them first")));
        }
        Err(other) => return Err(other.into()),
    }
    let details = json!({"name": tenant.name, "parent": tenant.parent});
    principal.audit(&state, "tenant.delete", format!("tenant:{id}"), details).await;
    Ok(StatusCode::NO_CONTENT)
}
