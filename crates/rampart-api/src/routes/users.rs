//! Users of a tenant (SPEC §4, §5). Nobody can grant more than they hold: roles carry only
//! permissions the caller has, a group-scoped caller creates only users inside its scope, and
//! a user is managed only by callers holding every permission that user holds. Changing a
//! user's roles, password or disabling it bumps its token version, so its tokens die at once.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{IdKind, Permission, check_password_policy, validate_id};
use rampart_platform::{format_rfc3339_ms, new_user};
use rampart_store::{StoreError, User};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::{Principal, resolve_permissions};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::routes::roles::{check_grantable_roles, require_all};
use crate::routes::tenants::hash_password_blocking;
use crate::state::AppState;

/// Purpose label binding a sealed e-mail address to its use.
const EMAIL_PURPOSE: &str = "email";
const MAX_EMAIL_CHARS: usize = 254;

/// Body of `POST /api/v1/users`. Not `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
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
pub struct UpdateUser {
    pub roles: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
    /// An empty string removes the address.
    pub email: Option<String>,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
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

fn view(user: User, email: Option<String>) -> UserView {
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

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user, list_users)).routes(routes!(get_user, update_user, delete_user))
}

fn check_email(email: &str) -> ApiResult<()> {
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if valid { Ok(()) } else { Err(ApiError::invalid("email is not a valid e-mail address")) }
}

async fn seal_email(state: &AppState, tenant: &str, email: &str) -> ApiResult<Vec<u8>> {
    Ok(state.platform.keyring.seal_for_tenant(tenant, EMAIL_PURPOSE, email.as_bytes()).await?)
}

async fn open_email(state: &AppState, user: &User) -> ApiResult<Option<String>> {
    let Some(sealed) = &user.email_sealed else { return Ok(None) };
    let plain = state.platform.keyring.open_for_tenant(&user.tenant, EMAIL_PURPOSE, sealed).await?;
    Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
}

/// Checks the groups a user is to be confined to: valid ids that exist in the tenant (400),
/// and, for a group-scoped caller, a non-empty list inside the caller's own scope (403).
async fn check_groups(state: &AppState, principal: &Principal, groups: &[String]) -> ApiResult<Vec<String>> {
    let mut unique: Vec<String> = Vec::with_capacity(groups.len());
    for group in groups {
        validate_id(IdKind::Group, group)?;
        if !unique.contains(group) {
            unique.push(group.clone());
        }
    }
    let tree = state.platform.store.list_groups(&principal.tenant).await?;
    let known: BTreeSet<&str> = tree.iter().map(|g| g.id.as_str()).collect();
    if let Some(missing) = unique.iter().find(|g| !known.contains(g.as_str())) {
        return Err(ApiError::invalid(format!("unknown group: {missing}")));
    }
    if let Some(scope) = principal.device_scope(state).await?
        && (unique.is_empty() || unique.iter().any(|g| !scope.contains(g)))
    {
        let details = json!({"reason": "groups outside the caller's scope"});
        principal.audit_failure(state, "access.denied", "groups", details).await;
        return Err(ApiError::Forbidden);
    }
    Ok(unique)
}

/// A user may be changed only by a caller holding every permission the user holds, and, for a
/// group-scoped caller, only when the user is confined inside the caller's scope.
async fn check_can_manage(state: &AppState, principal: &Principal, user: &User) -> ApiResult<()> {
    let held = resolve_permissions(state.platform.store.as_ref(), &user.tenant, &user.roles).await?;
    require_all(state, principal, &held).await?;
    if let Some(scope) = principal.device_scope(state).await?
        && (user.groups.is_empty() || user.groups.iter().any(|g| !scope.contains(g)))
    {
        let details = json!({"reason": "user outside the caller's scope"});
        principal.audit_failure(state, "access.denied", format!("user:{}", user.username), details).await;
        return Err(ApiError::Forbidden);
    }
    Ok(())
}

async fn load_user(state: &AppState, principal: &Principal, username: &str) -> ApiResult<User> {
    validate_id(IdKind::Username, username)?;
    Ok(state.platform.store.get_user(&principal.tenant, username).await?)
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
    principal.require(&state, Permission::UsersWrite).await?;
    validate_id(IdKind::Username, &body.username)?;
    let roles = check_grantable_roles(&state, &principal, &body.roles).await?;
    let groups = check_groups(&state, &principal, body.groups.as_deref().unwrap_or_default()).await?;
    let password = Zeroizing::new(body.password);
    check_password_policy(&body.username, &password).map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(email) = &body.email {
        check_email(email)?;
    }
    let password_hash = hash_password_blocking(password).await?;
    let mut user = new_user(&principal.tenant, &body.username, password_hash, roles, state.platform.now_ms());
    user.groups = groups;
    if let Some(email) = &body.email {
        user.email_sealed = Some(seal_email(&state, &principal.tenant, email).await?);
    }
    match state.platform.store.create_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict(format!("user {} already exists", user.username)));
        }
        Err(other) => return Err(other.into()),
    }
    let details = json!({"roles": user.roles, "groups": user.groups});
    principal.audit(&state, "user.create", format!("user:{}", user.username), details).await;
    Ok((StatusCode::CREATED, Json(view(user, body.email))))
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
    principal.require(&state, Permission::UsersRead).await?;
    let rows = state.platform.store.list_users(&principal.tenant, &query.page()?).await?;
    Ok(Json(paginate(&query, rows, |user| user.username.clone(), |user| view(user, None))?))
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
    principal.require(&state, Permission::UsersRead).await?;
    let user = load_user(&state, &principal, &username).await?;
    let email = open_email(&state, &user).await?;
    Ok(Json(view(user, email)))
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
    principal.require(&state, Permission::UsersWrite).await?;
    let mut user = load_user(&state, &principal, &username).await?;
    check_can_manage(&state, &principal, &user).await?;
    let is_self = principal.username() == Some(user.username.as_str());
    let mut changed: Vec<&str> = Vec::new();
    let mut revoke_tokens = false;
    if let Some(roles) = &body.roles {
        let roles = check_grantable_roles(&state, &principal, roles).await?;
        if roles != user.roles {
            user.roles = roles;
            changed.push("roles");
            revoke_tokens = true;
        }
    }
    if let Some(groups) = &body.groups {
        let groups = check_groups(&state, &principal, groups).await?;
        if groups != user.groups {
            user.groups = groups;
            changed.push("groups");
            // Narrower groups could leave a live token with a wider view than intended.
            revoke_tokens = true;
        }
    }
    if let Some(disabled) = body.disabled
        && disabled != user.disabled
    {
        if disabled && is_self {
            return Err(ApiError::Conflict("you cannot disable yourself".to_owned()));
        }
        user.disabled = disabled;
        changed.push("disabled");
        revoke_tokens = true;
    }
    if let Some(password) = body.password {
        let password = Zeroizing::new(password);
        check_password_policy(&user.username, &password).map_err(|e| ApiError::invalid(e.to_string()))?;
        user.password_hash = hash_password_blocking(password).await?;
        user.password_changed_at = state.platform.now_ms();
        // An administrator's password reset also lifts a lockout.
        user.failed_logins = 0;
        user.failed_window_start = 0;
        user.locked_until = 0;
        changed.push("password");
        revoke_tokens = true;
    }
    let mut email_shown = None;
    if let Some(email) = &body.email {
        if email.is_empty() {
            user.email_sealed = None;
        } else {
            check_email(email)?;
            user.email_sealed = Some(seal_email(&state, &principal.tenant, email).await?);
            email_shown = Some(email.clone());
        }
        changed.push("email");
    }
    if revoke_tokens {
        user.token_version += 1;
    }
    if !changed.is_empty() {
        state.platform.store.update_user(&user).await?;
        let details =
            json!({"changed": changed, "roles": user.roles, "groups": user.groups, "disabled": user.disabled});
        principal.audit(&state, "user.update", format!("user:{}", user.username), details).await;
    }
    if body.email.is_none() {
        email_shown = open_email(&state, &user).await?;
    }
    Ok(Json(view(user, email_shown)))
}

/// Deletes a user; its tokens stop working at once.
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
    principal.require(&state, Permission::UsersWrite).await?;
    let user = load_user(&state, &principal, &username).await?;
    if principal.username() == Some(user.username.as_str()) {
        return Err(ApiError::Conflict("you cannot delete yourself".to_owned()));
    }
    check_can_manage(&state, &principal, &user).await?;
    state.platform.store.delete_user(&principal.tenant, &user.username).await?;
    principal.audit(&state, "user.delete", format!("user:{}", user.username), json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}
