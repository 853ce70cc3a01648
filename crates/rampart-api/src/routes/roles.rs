//! Roles (SPEC §5): the four built-in roles and a tenant's custom roles, and the rule shared by
//! every route that hands out roles (users, API keys): a caller can grant only roles that exist
//! and only permissions it holds itself.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{BUILTIN_ROLES, IdKind, Permission, PermissionSet, builtin_role_permissions, validate_id};
use rampart_store::{Role, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::state::AppState;

/// Body of `POST /api/v1/roles`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    /// Role name, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, not a built-in name.
    pub name: String,
    /// Permissions from the fixed set, e.g. `devices:read`.
    pub permissions: Vec<String>,
}

/// A role as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    /// Permission names, sorted in SPEC order.
    pub permissions: Vec<String>,
    /// Whether this is one of the built-in roles (which cannot be changed).
    pub builtin: bool,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_role, list_roles)).routes(routes!(get_role, delete_role))
}

fn names(permissions: &PermissionSet) -> Vec<String> {
    permissions.iter().map(|p| p.as_str().to_owned()).collect()
}

fn builtin_view(name: &str, permissions: &PermissionSet) -> RoleView {
    RoleView { name: name.to_owned(), permissions: names(permissions), builtin: true }
}

fn custom_view(role: Role) -> RoleView {
    // Stored names were validated on the way in; re-parsing also sorts them in SPEC order.
    let permissions: PermissionSet = role.permissions.iter().filter_map(|p| Permission::parse(p)).collect();
    RoleView { name: role.name, permissions: names(&permissions), builtin: false }
}

/// The permissions of `role` in `tenant`, or `None` when no such role exists.
pub(crate) async fn role_permissions(state: &AppState, tenant: &str, role: &str) -> ApiResult<Option<PermissionSet>> {
    if let Some(builtin) = builtin_role_permissions(role) {
        return Ok(Some(builtin));
    }
    match state.platform.store.get_role(tenant, role).await {
        Ok(custom) => Ok(Some(custom.permissions.iter().filter_map(|p| Permission::parse(p)).collect())),
        Err(StoreError::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// Refuses permissions the caller does not hold with 403, audited as `access.denied`.
pub(crate) async fn require_all(state: &AppState, principal: &Principal, wanted: &PermissionSet) -> ApiResult<()> {
    let missing: Vec<&str> = wanted.difference(&principal.permissions).map(|p| p.as_str()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    principal.audit_failure(state, "access.denied", "permissions", json!({"missing": missing})).await;
    Err(ApiError::Forbidden)
}

/// Checks `roles` before they are granted: each must be a valid name (400), exist in the
/// caller's tenant (400) and carry only permissions the caller holds (403). Returns the
/// roles deduplicated, in the order given.
pub(crate) async fn check_grantable_roles(
    state: &AppState,
    principal: &Principal,
    roles: &[String],
) -> ApiResult<Vec<String>> {
    let mut granted = PermissionSet::new();
    let mut unique: Vec<String> = Vec::with_capacity(roles.len());
    for role in roles {
        validate_id(IdKind::Role, role)?;
        if unique.contains(role) {
            continue;
        }
        let permissions = role_permissions(state, &principal.tenant, role)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("unknown role: {role}")))?;
        granted.extend(permissions);
        unique.push(role.clone());
    }
    require_all(state, principal, &granted).await?;
    Ok(unique)
}

/// Creates a custom role.
#[utoipa::path(
    post,
    path = "/api/v1/roles",
    tag = "roles",
    request_body = CreateRole,
    responses(
        (status = 201, description = "Role created", body = RoleView),
        (status = 400, description = "Invalid name or unknown permission", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:write, or a permission the caller lacks", body = crate::error::ErrorBody),
        (status = 409, description = "Built-in or existing role name", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateRole>,
) -> ApiResult<(StatusCode, Json<RoleView>)> {
    principal.require(&state, Permission::UsersWrite).await?;
    validate_id(IdKind::Role, &body.name)?;
    if BUILTIN_ROLES.contains(&body.name.as_str()) {
        return Err(ApiError::Conflict(format!("{} is a built-in role", body.name)));
    }
    let mut permissions = PermissionSet::new();
    for name in &body.permissions {
        let permission =
            Permission::parse(name).ok_or_else(|| ApiError::invalid(format!("unknown permission: {name}")))?;
        permissions.insert(permission);
    }
    require_all(&state, &principal, &permissions).await?;
    let role = Role {
        tenant: principal.tenant.clone(),
        name: body.name.clone(),
        permissions: names(&permissions),
        created_at: state.platform.now_ms(),
    };
    match state.platform.store.create_role(&role).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::Conflict(format!("role {} already exists", role.name))),
        Err(other) => return Err(other.into()),
    }
    let details = json!({"permissions": role.permissions});
    principal.audit(&state, "role.create", format!("role:{}", role.name), details).await;
    Ok((StatusCode::CREATED, Json(custom_view(role))))
}

/// Lists built-in and custom roles, ordered by name.
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    tag = "roles",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of roles", body = Paginated<RoleView>),
        (status = 400, description = "Invalid paging", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_roles(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<RoleView>>> {
    principal.require(&state, Permission::UsersRead).await?;
    let mut views: Vec<RoleView> = BUILTIN_ROLES
        .iter()
        .filter_map(|name| builtin_role_permissions(name).map(|p| builtin_view(name, &p)))
        .collect();
    let custom = state.platform.store.list_roles(&principal.tenant).await?;
    views.extend(custom.into_iter().map(custom_view));
    Ok(Json(paginate_in_memory(&query, views, |view| view.name.clone(), |view| view)?))
}

/// Shows one role.
#[utoipa::path(
    get,
    path = "/api/v1/roles/{name}",
    tag = "roles",
    params(("name" = String, Path, description = "Role name")),
    responses(
        (status = 200, description = "The role", body = RoleView),
        (status = 400, description = "Invalid role name", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:read", body = crate::error::ErrorBody),
        (status = 404, description = "No such role", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<RoleView>> {
    principal.require(&state, Permission::UsersRead).await?;
    validate_id(IdKind::Role, &name)?;
    if let Some(builtin) = builtin_role_permissions(&name) {
        return Ok(Json(builtin_view(&name, &builtin)));
    }
    let role = state.platform.store.get_role(&principal.tenant, &name).await?;
    Ok(Json(custom_view(role)))
}

/// Deletes a custom role. Users holding it lose its permissions at once.
#[utoipa::path(
    delete,
    path = "/api/v1/roles/{name}",
    tag = "roles",
    params(("name" = String, Path, description = "Role name")),
    responses(
        (status = 204, description = "Role deleted"),
        (status = 400, description = "Invalid role name", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:write", body = crate::error::ErrorBody),
        (status = 404, description = "No such role", body = crate::error::ErrorBody),
        (status = 409, description = "Built-in roles cannot be deleted", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_role(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    principal.require(&state, Permission::UsersWrite).await?;
    validate_id(IdKind::Role, &name)?;
    if BUILTIN_ROLES.contains(&name.as_str()) {
        return Err(ApiError::Conflict(format!("{name} is a built-in role and cannot be deleted")));
    }
    state.platform.store.delete_role(&principal.tenant, &name).await?;
    principal.audit(&state, "role.delete", format!("role:{name}"), json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
