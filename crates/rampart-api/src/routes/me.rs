//! The caller's own account (SPEC §4): who am I, change my password, enrol and confirm TOTP.
//! These routes stay reachable for a user without MFA in a tenant that requires it, so that
//! the user can enrol (see `auth::ENROLMENT_PATHS`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::check_password_policy;
use rampart_crypto::{TotpSecret, verify_password};
use rampart_store::User;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::{Principal, PrincipalKind};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::routes::auth_login::TOTP_PURPOSE;
use crate::routes::tenants::hash_password_blocking;
use crate::state::AppState;

const TOTP_ISSUER: &str = "Rampart";

/// The caller as the platform sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    pub tenant: String,
    /// The username of a person; `null` when the caller is an API key.
    pub username: Option<String>,
    pub roles: Vec<String>,
    /// Effective permission names, sorted.
    pub permissions: Vec<String>,
    /// Always `false` for API keys.
    pub mfa_enabled: bool,
    /// The id of the API key when the caller is one; absent for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

/// Body of `PUT /api/v1/me/password`. Not `Debug`: it holds passwords.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// A TOTP secret to load into an authenticator app; confirm it with a code to enable MFA.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct MfaEnrolment {
    /// RFC 4648 base32, no padding.
    pub secret: String,
    pub otpauth_uri: String,
}

/// Body of `POST /api/v1/me/mfa/confirm`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaConfirm {
    /// The current 6-digit code from the authenticator.
    pub code: String,
}

/// MFA state after confirmation.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MfaStatus {
    pub mfa_enabled: bool,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me))
        .routes(routes!(change_password))
        .routes(routes!(enroll_mfa))
        .routes(routes!(confirm_mfa))
}

/// The user row of a person; API keys have no password and no MFA (403).
async fn own_user(state: &AppState, principal: &Principal) -> ApiResult<User> {
    let Some(username) = principal.username() else {
        return Err(ApiError::Forbidden);
    };
    Ok(state.platform.store.get_user(&principal.tenant, username).await?)
}

/// Who the caller is and what it may do.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "me",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_me(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Me>> {
    let mut permissions: Vec<String> = principal.permissions.iter().map(|p| p.as_str().to_owned()).collect();
    permissions.sort();
    let (mfa_enabled, api_key_id) = match &principal.kind {
        PrincipalKind::User { .. } => (own_user(&state, &principal).await?.mfa_enabled, None),
        PrincipalKind::ApiKey { id } => (false, Some(id.clone())),
    };
    Ok(Json(Me {
        tenant: principal.tenant.clone(),
        username: principal.username().map(str::to_owned),
        roles: principal.roles.clone(),
        permissions,
        mfa_enabled,
        api_key_id,
    }))
}

/// Changes the caller's password; every token issued before stops working.
#[utoipa::path(
    put,
    path = "/api/v1/me/password",
    tag = "me",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Password changed; log in again"),
        (status = 400, description = "The new password breaks the policy", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated, or the current password is wrong", body = crate::error::ErrorBody),
        (status = 403, description = "API keys have no password", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let user = own_user(&state, &principal).await?;
    let current = Zeroizing::new(body.current);
    let new = Zeroizing::new(body.new);
    let hash = user.password_hash.clone();
    let current_ok = tokio::task::spawn_blocking(move || verify_password(&current, &hash)).await.unwrap_or(false);
    let target = format!("user:{}", user.username);
    if !current_ok {
        principal
            .audit_failure(&state, "user.password_change", target, json!({"reason": "wrong current password"}))
            .await;
        return Err(ApiError::Unauthorized);
    }
    check_password_policy(&user.username, &new).map_err(|e| ApiError::invalid(e.to_string()))?;
    let new_hash = hash_password_blocking(new).await?;
    // Re-read: only the password columns change, whatever happened meanwhile.
    let mut fresh = state.platform.store.get_user(&user.tenant, &user.username).await?;
    fresh.password_hash = new_hash;
    fresh.password_changed_at = state.platform.now_ms();
    fresh.token_version += 1;
    state.platform.store.update_user(&fresh).await?;
    principal.audit(&state, "user.password_change", target, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts TOTP enrolment: a new secret, pending until confirmed with a code.
#[utoipa::path(
    post,
    path = "/api/v1/me/mfa",
    tag = "me",
    responses(
        (status = 200, description = "The secret to load into an authenticator", body = MfaEnrolment),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "API keys have no MFA", body = crate::error::ErrorBody),
        (status = 409, description = "MFA is already enabled", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn enroll_mfa(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<MfaEnrolment>> {
    let mut user = own_user(&state, &principal).await?;
    if user.mfa_enabled {
        return Err(ApiError::Conflict("MFA is already enabled".to_owned()));
    }
    let secret = TotpSecret::generate();
    let sealed = state.platform.keyring.seal_for_tenant(&user.tenant, TOTP_PURPOSE, secret.expose_bytes()).await?;
    user.mfa_pending_sealed = Some(sealed);
    state.platform.store.update_user(&user).await?;
    principal.audit(&state, "mfa.enroll", format!("user:{}", user.username), json!({})).await;
    let account = format!("{}@{}", user.username, user.tenant);
    Ok(Json(MfaEnrolment { secret: secret.base32(), otpauth_uri: secret.otpauth_uri(TOTP_ISSUER, &account) }))
}

/// Confirms the pending TOTP secret with a current code and enables MFA.
#[utoipa::path(
    post,
    path = "/api/v1/me/mfa/confirm",
    tag = "me",
    request_body = MfaConfirm,
    responses(
        (status = 200, description = "MFA enabled", body = MfaStatus),
        (status = 400, description = "Wrong code, or no enrolment pending", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "API keys have no MFA", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn confirm_mfa(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<MfaConfirm>,
) -> ApiResult<Json<MfaStatus>> {
    let mut user = own_user(&state, &principal).await?;
    let Some(pending) = user.mfa_pending_sealed.clone() else {
        return Err(ApiError::invalid("no MFA enrolment is pending: POST /api/v1/me/mfa first"));
    };
    let bytes = state.platform.keyring.open_for_tenant(&user.tenant, TOTP_PURPOSE, &pending).await?;
    let secret = TotpSecret::from_bytes(&bytes)?;
    let now_s = u64::try_from(state.platform.now_ms() / 1000).unwrap_or(0);
    let step = secret.verify(body.code.trim(), now_s).and_then(|step| i64::try_from(step).ok());
    let target = format!("user:{}", user.username);
    let Some(step) = step.filter(|step| *step > user.mfa_last_step) else {
        principal.audit_failure(&state, "mfa.enable", target, json!({"reason": "wrong code"})).await;
        return Err(ApiError::invalid("the code does not match the pending secret"));
    };
    user.mfa_secret_sealed = Some(pending);
    user.mfa_pending_sealed = None;
    user.mfa_enabled = true;
    user.mfa_last_step = step;
    state.platform.store.update_user(&user).await?;
    principal.audit(&state, "mfa.enable", target, json!({})).await;
    Ok(Json(MfaStatus { mfa_enabled: true }))
}
