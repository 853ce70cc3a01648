//! Device groups (SPEC §5): a tree per tenant. A group-scoped user sees and changes only the
//! groups inside its scope; every other group answers 404 as if it did not exist.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::GroupId;
use rampart_platform::rows::Group;
use rampart_platform::{NewGroup, format_rfc3339_ms};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate_in_memory};
use crate::state::AppState;

/// Body of `POST /api/v1/groups`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGroup {
    /// Group id, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
    pub id: String,
    /// Display name; defaults to the id.
    pub name: Option<String>,
    /// Parent group id; the group is a root when absent.
    pub parent: Option<String>,
}

/// A device group as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct GroupView {
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

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_group, list_groups)).routes(routes!(get_group, delete_group))
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
    let new = NewGroup {
        id: GroupId::parse(&body.id)?,
        name: body.name,
        parent: body.parent.as_deref().map(GroupId::parse).transpose()?,
    };
    Ok((StatusCode::CREATED, Json(state.platform.create_group(&principal, new).await?.into())))
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
    let groups = state.platform.list_groups(&principal).await?;
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
    Ok(Json(state.platform.get_group(&principal, &GroupId::parse(&id)?).await?.into()))
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
    state.platform.delete_group(&principal, &GroupId::parse(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
