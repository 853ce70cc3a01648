//! The tenant policy document (SPEC §4, §10): MFA requirement, MQTT client takeover and the
//! detection thresholds, read with defaults filled in and changed by partial updates.
//!
//! It is stored as JSON text; `require_mfa` stays a top-level key because authentication
//! (`auth::tenant_requires_mfa`) reads it from the stored document directly.

use axum::Json;
use axum::extract::State;
use rampart_core::Permission;
use rampart_store::Store;
use rampart_core::{TenantPolicy, TenantPolicyPatch};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_policy, put_policy))
}

/// The tenant's policy with defaults for every key not stored. A stored document that no
/// longer parses is an internal error, not silently replaced by defaults.
pub(crate) async fn load_policy(store: &dyn Store, tenant: &str) -> ApiResult<TenantPolicy> {
    TenantPolicy::from_stored(store.get_tenant_policy(tenant).await?.as_deref())
        .map_err(|e| ApiError::Internal(e.to_string()))
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
    principal.require(&state, Permission::SecurityRead).await?;
    Ok(Json(load_policy(state.platform.store.as_ref(), &principal.tenant).await?))
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
    principal.require(&state, Permission::SecurityWrite).await?;
    let store = state.platform.store.as_ref();
    let before = load_policy(store, &principal.tenant).await?;
    let mut policy = before.clone();
    policy.apply(patch).map_err(|e| ApiError::invalid(e.to_string()))?;
    let text = policy.to_stored();
    store.put_tenant_policy(&principal.tenant, &text).await?;
    state
        .platform
        .control
        .publish(rampart_platform::ControlEvent::TenantPolicyChanged { tenant: principal.tenant.clone() });
    let details = json!({"before": before, "after": policy});
    principal.audit(&state, "policy.update", format!("tenant:{}", principal.tenant), details).await;
    Ok(Json(policy))
}
