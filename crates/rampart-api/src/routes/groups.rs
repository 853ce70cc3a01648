//! Device groups (SPEC §5): a tree per tenant. A group-scoped user sees and changes only the
//! groups inside its scope; every other group answers 404 as if it did not exist.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{IdKind, Permission, validate_id};
use rampart_platform::format_rfc3339_ms;
use rampart_store::{Group, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::routes::tenants::check_display_name;
use crate::state::AppState;

/// Body of `POST /api/v1/groups`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Group id, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
    pub id: String,
    /// Display name; defaults to the id.
    pub name: Option<String>,
    /// Parent group id; the group is a root when absent.
    pub parent: Option<String>,
}

/// A device group as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<Group> for GroupView {
    fn from(group: Group) -> Self {
        GroupView {
            id: group.id,
            name: group.name,
            parent: group.parent,
            created_at: format_rfc3339_ms(group.created_at),
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_group, list_groups)).routes(routes!(get_group, delete_group))
}

fn in_scope(scope: &Option<BTreeSet<String>>, id: &str) -> bool {
    scope.as_ref().is_none_or(|groups| groups.contains(id))
}

/// Creates a device group.
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "groups",
    request_body = CreateGroup,
    responses(
        (status = 201, description = "Group created", body = GroupView),
        (status = 400, description = "Invalid id or unknown parent", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing devices:write, or a root group by a group-scoped user", body = crate::error::ErrorBody),
        (status = 409, description = "Group id exists", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateGroup>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    principal.require(&state, Permission::DevicesWrite).await?;
    validate_id(IdKind::Group, &body.id)?;
    let name = body.name.unwrap_or_else(|| body.id.clone());
    check_display_name("name", &name)?;
    let scope = principal.device_scope(&state).await?;
    match &body.parent {
        Some(parent) => {
            validate_id(IdKind::Group, parent)?;
            let exists = match state.platform.store.get_group(&principal.tenant, parent).await {
                Ok(_) => true,
                Err(StoreError::NotFound) => false,
                Err(other) => return Err(other.into()),
            };
            // A parent outside the caller's scope is reported exactly like a missing one.
            if !exists || !in_scope(&scope, parent) {
                return Err(ApiError::invalid(format!("parent group {parent} does not exist")));
            }
        }
        None if scope.is_some() => {
            // A root group would fall outside the caller's own scope.
            principal
                .audit_failure(
                    &state,
                    "access.denied",
                    format!("group:{}", body.id),
                    json!({"reason": "root group outside scope"}),
                )
                .await;
            return Err(ApiError::Forbidden);
        }
        None => {}
    }
    let group = Group {
        tenant: principal.tenant.clone(),
        id: body.id,
        name,
        parent: body.parent,
        created_at: state.platform.now_ms(),
    };
    match state.platform.store.create_group(&group).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::Conflict(format!("group {} already exists", group.id))),
        Err(other) => return Err(other.into()),
    }
    let details = json!({"name": group.name, "parent": group.parent});
    principal.audit(&state, "group.create", format!("group:{}", group.id), details).await;
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// Lists the device groups the caller can see, as a flat list ordered by id.
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "groups",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of groups", body = Paginated<GroupView>),
        (status = 400, description = "Invalid paging", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing devices:read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_groups(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<GroupView>>> {
    principal.require(&state, Permission::DevicesRead).await?;
    let scope = principal.device_scope(&state).await?;
    let mut groups = state.platform.store.list_groups(&principal.tenant).await?;
    groups.retain(|group| in_scope(&scope, &group.id));
    Ok(Json(paginate_in_memory(&query, groups, |group| group.id.clone(), GroupView::from)?))
}

/// Shows one device group.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}",
    tag = "groups",
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 400, description = "Invalid group id", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing devices:read", body = crate::error::ErrorBody),
        (status = 404, description = "No such group", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<GroupView>> {
    principal.require(&state, Permission::DevicesRead).await?;
    validate_id(IdKind::Group, &id)?;
    let scope = principal.device_scope(&state).await?;
    if !in_scope(&scope, &id) {
        return Err(ApiError::NotFound);
    }
    let group = state.platform.store.get_group(&principal.tenant, &id).await?;
    Ok(Json(group.into()))
}

/// Deletes a device group that has no sub-groups and no devices.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{id}",
    tag = "groups",
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 204, description = "Group deleted"),
        (status = 400, description = "Invalid group id", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing devices:write", body = crate::error::ErrorBody),
        (status = 404, description = "No such group", body = crate::error::ErrorBody),
        (status = 409, description = "The group has sub-groups or devices", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_group(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    principal.require(&state, Permission::DevicesWrite).await?;
    validate_id(IdKind::Group, &id)?;
    let scope = principal.device_scope(&state).await?;
    if !in_scope(&scope, &id) {
        return Err(ApiError::NotFound);
    }
    match state.platform.store.delete_group(&principal.tenant, &id).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict(format!("group {id} has sub-groups or devices")));
        }
        Err(other) => return Err(other.into()),
    }
    principal.audit(&state, "group.delete", format!("group:{id}"), json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
