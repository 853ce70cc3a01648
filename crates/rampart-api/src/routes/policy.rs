//! The tenant policy document (SPEC §4, §10): MFA requirement, MQTT client takeover and the
//! detection thresholds, read with defaults filled in and changed by partial updates. Its
//! schema and parser are `rampart_core::TenantPolicy`'s; the rules are the platform's.

use axum::Json;
use axum::extract::State;
use rampart_core::{TenantPolicy, TenantPolicyPatch};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_policy, put_policy))
}

/// The tenant policy, with defaults filled in.
#[utoipa::path(
    get,
    path = "/api/v1/tenant/policy",
    tag = "tenant",
    responses(
        (status = 200, description = "The tenant policy", body = TenantPolicy),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing security:read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_policy(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<TenantPolicy>> {
    Ok(Json(state.platform.tenant_policy(&principal).await?))
}

/// Changes the keys given and answers the whole policy.
#[utoipa::path(
    put,
    path = "/api/v1/tenant/policy",
    tag = "tenant",
    request_body = TenantPolicyPatch,
    responses(
        (status = 200, description = "The updated tenant policy", body = TenantPolicy),
        (status = 400, description = "Unknown key or invalid value", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing security:write", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn put_policy(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(patch): ApiJson<TenantPolicyPatch>,
) -> ApiResult<Json<TenantPolicy>> {
    Ok(Json(state.platform.update_tenant_policy(&principal, patch).await?))
}
