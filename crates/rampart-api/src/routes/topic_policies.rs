//! Tenant topic policies (SPEC §7): `GET/PUT /api/v1/tenant/topic-policies`. The document adds
//! MQTT topics to the per-device namespace (`allow` rules, `${device}` standing for the
//! device's own id), removes topics (`deny` rules win) and may open a free namespace outside
//! `devices/`. The MQTT gateway reads the stored document and re-reads it when the control bus
//! announces a change.

use axum::Json;
use axum::extract::State;
use rampart_core::Permission;
use rampart_platform::ControlEvent;
use rampart_store::Store;
use rampart_core::acl::TopicPolicy as TopicPolicies;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_topic_policies, put_topic_policies))
}

fn check(policies: &TopicPolicies) -> ApiResult<()> {
    policies.check().map_err(|error| ApiError::invalid(error.to_string()))
}

async fn load(store: &dyn Store, tenant: &str) -> ApiResult<TopicPolicies> {
    TopicPolicies::from_stored(store.get_topic_policy(tenant).await?.as_deref())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// The tenant's topic policy (defaults: no free namespace, no rules).
#[utoipa::path(
    get,
    path = "/api/v1/tenant/topic-policies",
    tag = "tenant",
    responses(
        (status = 200, description = "The topic policy", body = TopicPolicies),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing security:read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_topic_policies(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<TopicPolicies>> {
    principal.require(&state, Permission::SecurityRead).await?;
    Ok(Json(load(state.platform.store.as_ref(), &principal.tenant).await?))
}

/// Replaces the tenant's topic policy; live MQTT connections obey it from their next packet.
#[utoipa::path(
    put,
    path = "/api/v1/tenant/topic-policies",
    tag = "tenant",
    request_body = TopicPolicies,
    responses(
        (status = 200, description = "The stored topic policy", body = TopicPolicies),
        (status = 400, description = "Unknown key or invalid rule", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing security:write", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn put_topic_policies(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(policies): ApiJson<TopicPolicies>,
) -> ApiResult<Json<TopicPolicies>> {
    principal.require(&state, Permission::SecurityWrite).await?;
    check(&policies)?;
    let store = state.platform.store.as_ref();
    let before = load(store, &principal.tenant).await?;
    let text = policies.to_stored();
    store.put_topic_policy(&principal.tenant, &text).await?;
    state.platform.control.publish(ControlEvent::TenantPolicyChanged { tenant: principal.tenant.clone() });
    let details = json!({"topic_policies": {"before": before, "after": policies}});
    principal.audit(&state, "policy.update", format!("tenant:{}", principal.tenant), details).await;
    Ok(Json(policies))
}
