//! Tenant topic policies (SPEC §7): `GET/PUT /api/v1/tenant/topic-policies`. The document adds
//! MQTT topics to the per-device namespace (`allow` rules, `${device}` standing for the
//! device's own id), removes topics (`deny` rules win) and may open a free namespace outside
//! `devices/`. The MQTT gateway reads the stored document and re-reads it when the control bus
//! announces a change.

use axum::Json;
use axum::extract::State;
use rampart_core::acl::TopicPolicy as TopicPolicies;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_topic_policies, put_topic_policies))
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
    Ok(Json(state.platform.topic_policy(&principal).await?))
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
    Ok(Json(state.platform.replace_topic_policy(&principal, policies).await?))
}
