//! The one place where errors become HTTP answers: `{"error":"<code>","message":"<text>"}`.
//! Internal causes are logged here and answered generically, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_platform::{PlatformError, ServiceError};
use serde::Serialize;

/// Every way a request can fail, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("authentication failed")]
    Unauthorized,
    #[error("{0}")]
    MfaRequired(&'static str),
    #[error("missing permission")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    /// A byte range outside the resource.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// Something the request would create is over a bound of the platform (twin size).
    #[error("{0}")]
    TooLarge(String),
    #[error("too many requests")]
    RateLimited { retry_after_s: u64 },
    /// Something broke inside; the cause is logged, the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// Machine-readable code, e.g. `not_found`.
    pub error: &'static str,
    /// Text for people.
    pub message: String,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest(message.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::MfaRequired(_) => (StatusCode::UNAUTHORIZED, "mfa_required"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid_request"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge | ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (status, axum::Json(ErrorBody { error: code, message })).into_response();
        if let ApiError::RateLimited { retry_after_s } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(message) => ApiError::InvalidRequest(message),
            ServiceError::Unauthorized => ApiError::Unauthorized,
            ServiceError::MfaRequired(message) => ApiError::MfaRequired(message),
            ServiceError::Forbidden => ApiError::Forbidden,
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::TooLarge(message) => ApiError::TooLarge(message),
            ServiceError::Busy => ApiError::RateLimited { retry_after_s: 1 },
            ServiceError::Internal(cause) => ApiError::Internal(cause.to_string()),
        }
    }
}

impl From<PlatformError> for ApiError {
    fn from(error: PlatformError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<rampart_crypto::CryptoError> for ApiError {
    fn from(error: rampart_crypto::CryptoError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<rampart_core::InvalidId> for ApiError {
    fn from(error: rampart_core::InvalidId) -> Self {
        ApiError::InvalidRequest(error.to_string())
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
