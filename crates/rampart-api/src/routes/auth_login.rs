//! Login of people (SPEC §4): parse, call the platform, answer. Password, TOTP, lockout (which
//! holds under concurrent attempts) and the uniform 401 are the platform's.

use axum::Json;
use axum::extract::State;
use rampart_platform::LoginRequest as Attempt;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::error::ApiResult;
use crate::extract::{ApiJson, ClientIp};
use crate::state::AppState;

/// Body of `POST /api/v1/auth/login`. Not `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginRequest {
    pub tenant: String,
    pub username: String,
    pub password: String,
    /// The current 6-digit TOTP code, required once MFA is enabled.
    pub totp: Option<String>,
}

/// A fresh access token.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct LoginResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

/// Logs a person in and returns a signed access token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed body", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`: wrong tenant, user, password or TOTP code, or locked; `mfa_required`: a TOTP code is needed", body = crate::error::ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    ClientIp(source_ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let attempt = Attempt {
        tenant: body.tenant,
        username: body.username,
        password: Zeroizing::new(body.password),
        totp: body.totp,
        source_ip,
    };
    let token = state.platform.login(attempt).await?;
    Ok(Json(LoginResponse {
        access_token: token.token,
        token_type: "Bearer".to_owned(),
        expires_in: token.expires_in_s,
    }))
}
