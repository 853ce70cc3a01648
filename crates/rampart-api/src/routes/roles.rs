//! Roles (SPEC §5): the four built-in roles and a tenant's custom roles. Parse, call the
//! platform, answer; the rule that nobody grants more than they hold is the platform's.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::RoleName;
use rampart_platform::RoleInfo;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::state::AppState;

/// Body of `POST /api/v1/roles`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRole {
    /// Role name, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`, not a built-in name.
    pub name: String,
    /// Permissions from the fixed set, e.g. `devices:read`.
    pub permissions: Vec<String>,
}

/// A role as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct RoleView {
    pub name: String,
    /// Permission names, sorted in SPEC order.
    pub permissions: Vec<String>,
    /// Whether this is one of the built-in roles (which cannot be changed).
    pub builtin: bool,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_role, list_roles)).routes(routes!(get_role, delete_role))
}

impl From<RoleInfo> for RoleView {
    fn from(role: RoleInfo) -> Self {
        RoleView {
            name: role.name,
            permissions: role.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            builtin: role.builtin,
        }
    }
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
    let role = state.platform.create_role(&principal, &RoleName::parse(&body.name)?, &body.permissions).await?;
    Ok((StatusCode::CREATED, Json(role.into())))
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
    let roles = state.platform.list_roles(&principal).await?;
    Ok(Json(paginate_in_memory(&query, roles, |role| role.name.clone(), RoleView::from)?))
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
    Ok(Json(state.platform.get_role(&principal, &RoleName::parse(&name)?).await?.into()))
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
    state.platform.delete_role(&principal, &RoleName::parse(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
