//! Users of a tenant (SPEC §4, §5): parse, call the platform, answer. The rules (nobody
//! grants more than they hold, scope, tokens dying on changes) are the platform's.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::Username;
use rampart_platform::{NewUser, UserDetails, UserEdit, format_rfc3339_ms};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::state::AppState;

/// Body of `POST /api/v1/users`. Not `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUser {
    /// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
    pub username: String,
    /// At least 12 characters, not the username, not a common password.
    pub password: String,
    /// Built-in or custom role names.
    pub roles: Vec<String>,
    /// Device groups the user is confined to (with their sub-groups); absent = whole tenant.
    pub groups: Option<Vec<String>>,
    /// Stored encrypted.
    pub email: Option<String>,
}

/// Body of `PATCH /api/v1/users/{username}`: only the fields given change. Not `Debug`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUser {
    pub roles: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
    /// An empty string removes the address.
    pub email: Option<String>,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct UserView {
    pub username: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub disabled: bool,
    pub mfa_enabled: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Shown only when reading or writing a single user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

fn view(UserDetails { user, email }: UserDetails) -> UserView {
    UserView {
        username: user.username,
        roles: user.roles,
        groups: user.groups,
        disabled: user.disabled,
        mfa_enabled: user.mfa_enabled,
        created_at: format_rfc3339_ms(user.created_at),
        email,
    }
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user, list_users)).routes(routes!(get_user, update_user, delete_user))
}

/// Creates a user in the caller's tenant.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "User created", body = UserView),
        (status = 400, description = "Invalid username, weak password, unknown role or group", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:write, or granting more than the caller holds", body = crate::error::ErrorBody),
        (status = 409, description = "The username is taken", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let new = NewUser {
        username: Username::parse(&body.username)?,
        password: Zeroizing::new(body.password),
        roles: body.roles,
        groups: body.groups,
        email: body.email,
    };
    let created = state.platform.create_user(&principal, new).await?;
    Ok((StatusCode::CREATED, Json(view(created))))
}

/// Lists the users of the caller's tenant, ordered by username.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of users", body = Paginated<UserView>),
        (status = 400, description = "Invalid paging", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<UserView>>> {
    let rows = state.platform.list_users(&principal, &query.page()?).await?;
    Ok(Json(paginate(&query, rows, |user| user.username.clone(), |user| view(UserDetails { user, email: None }))?))
}

/// Shows one user, with the e-mail address decrypted.
#[utoipa::path(
    get,
    path = "/api/v1/users/{username}",
    tag = "users",
    params(("username" = String, Path, description = "Username")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, description = "Invalid username", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:read", body = crate::error::ErrorBody),
        (status = 404, description = "No such user", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(view(state.platform.get_user(&principal, &Username::parse(&username)?).await?)))
}

/// Changes a user's roles, groups, state, password or e-mail address.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{username}",
    tag = "users",
    params(("username" = String, Path, description = "Username")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "The updated user", body = UserView),
        (status = 400, description = "Invalid field, weak password, unknown role or group", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:write, or the user holds more than the caller", body = crate::error::ErrorBody),
        (status = 404, description = "No such user", body = crate::error::ErrorBody),
        (status = 409, description = "A user cannot disable themself", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    let edit = UserEdit {
        roles: body.roles,
        groups: body.groups,
        disabled: body.disabled,
        password: body.password.map(Zeroizing::new),
        email: body.email,
    };
    Ok(Json(view(state.platform.update_user(&principal, &Username::parse(&username)?, edit).await?)))
}

/// Deletes a user and the API keys acting for it; its tokens, streams and sessions end at once.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{username}",
    tag = "users",
    params(("username" = String, Path, description = "Username")),
    responses(
        (status = 204, description = "User deleted"),
        (status = 400, description = "Invalid username", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing users:write, or the user holds more than the caller", body = crate::error::ErrorBody),
        (status = 404, description = "No such user", body = crate::error::ErrorBody),
        (status = 409, description = "A user cannot delete themself", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.platform.delete_user(&principal, &Username::parse(&username)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
