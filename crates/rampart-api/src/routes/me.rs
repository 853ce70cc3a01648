//! The caller's own account (SPEC §4): who am I, change my password, enrol and confirm TOTP.
//! These routes stay reachable for a user without MFA in a tenant that requires it, so that
//! the user can enrol (see `auth::ENROLMENT_PATHS`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::state::AppState;

/// The caller as the platform sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct Me {
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
pub(super) struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// A TOTP secret to load into an authenticator app; confirm it with a code to enable MFA.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct MfaEnrolment {
    /// RFC 4648 base32, no padding.
    pub secret: String,
    pub otpauth_uri: String,
}

/// Body of `POST /api/v1/me/mfa/confirm`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MfaConfirm {
    /// The current 6-digit code from the authenticator.
    pub code: String,
}

/// MFA state after confirmation.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct MfaStatus {
    pub mfa_enabled: bool,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_me))
        .routes(routes!(change_password))
        .routes(routes!(enroll_mfa))
        .routes(routes!(confirm_mfa))
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
    let mut me = state.platform.me(&principal).await?;
    me.permissions.sort();
    Ok(Json(Me {
        tenant: me.tenant,
        username: me.username,
        roles: me.roles,
        permissions: me.permissions,
        mfa_enabled: me.mfa_enabled,
        api_key_id: me.api_key_id,
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
    let (current, new) = (Zeroizing::new(body.current), Zeroizing::new(body.new));
    state.platform.change_own_password(&principal, current, new).await?;
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
    let enrolment = state.platform.enroll_mfa(&principal).await?;
    Ok(Json(MfaEnrolment { secret: enrolment.secret_base32, otpauth_uri: enrolment.otpauth_uri }))
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
    state.platform.confirm_mfa(&principal, &body.code).await?;
    Ok(Json(MfaStatus { mfa_enabled: true }))
}
