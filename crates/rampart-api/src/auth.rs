//! Who is calling: the [`Principal`] extractor hands `Authorization: Bearer` to the platform,
//! which authenticates it (access token or API key) and computes its authority once. Routes
//! that a user without MFA may still call in a tenant requiring it are the enrolment routes.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rampart_platform::Purpose;

pub(crate) use rampart_platform::Principal;

use crate::error::ApiError;
use crate::extract::client_ip;
use crate::state::AppState;

/// Routes a user may still call while the tenant requires MFA they have not enrolled.
const ENROLMENT_PATHS: [&str; 4] = ["/api/v1/me", "/api/v1/me/mfa", "/api/v1/me/mfa/confirm", "/api/v1/me/password"];

/// The bearer credential of a request, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let purpose = match ENROLMENT_PATHS.contains(&parts.uri.path()) {
            true => Purpose::Enrolment,
            false => Purpose::Any,
        };
        Ok(state.platform.authenticate_bearer(credential, client_ip(parts), purpose).await?)
    }
}
