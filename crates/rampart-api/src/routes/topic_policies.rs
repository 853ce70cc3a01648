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
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Most rules one policy may hold.
const MAX_RULES: usize = 256;
/// Longest rule topic, in bytes, and deepest, in levels (the gateway's topic limits).
const MAX_TOPIC_BYTES: usize = 256;
const MAX_TOPIC_LEVELS: usize = 8;
const DEVICE_PLACEHOLDER: &str = "${device}";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_topic_policies, put_topic_policies))
}

/// Which topics outside `devices/` are open to everyone of the tenant, as on any broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeNamespace {
    #[serde(default)]
    pub applications: bool,
    #[serde(default)]
    pub devices: bool,
}

/// Whom a rule concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RulePrincipal {
    Device,
    Application,
}

/// What a rule concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Publish,
    Subscribe,
    All,
}

/// Whether a rule opens or closes its topics; deny wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleEffect {
    Allow,
    Deny,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicRule {
    pub principal: RulePrincipal,
    pub action: RuleAction,
    /// An MQTT topic filter; `${device}` stands for the connected device's id.
    pub topic: String,
    pub effect: RuleEffect,
}

/// The tenant's topic policy; `PUT` replaces it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicPolicies {
    #[serde(default)]
    pub free_namespace: FreeNamespace,
    #[serde(default)]
    pub rules: Vec<TopicRule>,
}

fn check_rule(index: usize, rule: &TopicRule) -> ApiResult<()> {
    let topic = &rule.topic;
    let invalid = |why: &str| Err(ApiError::invalid(format!("rules[{index}].topic {why}")));
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES {
        return invalid(&format!("must be 1 to {MAX_TOPIC_BYTES} bytes"));
    }
    if topic.split('/').count() > MAX_TOPIC_LEVELS {
        return invalid(&format!("must have at most {MAX_TOPIC_LEVELS} levels"));
    }
    if topic.chars().any(char::is_control) || topic.starts_with("$share/") {
        return invalid("must be a plain topic filter");
    }
    // `${device}` is replaced by a device id before matching; check the filter with one.
    if !rampart_mqtt::topic::valid_topic_filter(&topic.replace(DEVICE_PLACEHOLDER, "device")) {
        return invalid("is not a valid MQTT topic filter");
    }
    Ok(())
}

fn check(policies: &TopicPolicies) -> ApiResult<()> {
    if policies.rules.len() > MAX_RULES {
        return Err(ApiError::invalid(format!("at most {MAX_RULES} rules")));
    }
    policies.rules.iter().enumerate().try_for_each(|(index, rule)| check_rule(index, rule))
}

async fn load(store: &dyn Store, tenant: &str) -> ApiResult<TopicPolicies> {
    match store.get_topic_policy(tenant).await? {
        None => Ok(TopicPolicies::default()),
        Some(text) => serde_json::from_str(&text).map_err(|e| ApiError::Internal(format!("stored topic policy: {e}"))),
    }
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
    let text = serde_json::to_string(&policies).map_err(|e| ApiError::Internal(e.to_string()))?;
    store.put_topic_policy(&principal.tenant, &text).await?;
    state.platform.control.publish(ControlEvent::TenantPolicyChanged { tenant: principal.tenant.clone() });
    let details = json!({"topic_policies": {"before": before, "after": policies}});
    principal.audit(&state, "policy.update", format!("tenant:{}", principal.tenant), details).await;
    Ok(Json(policies))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(topic: &str) -> TopicRule {
        TopicRule {
            principal: RulePrincipal::Device,
            action: RuleAction::All,
            topic: topic.to_owned(),
            effect: RuleEffect::Allow,
        }
    }

    #[test]
    fn rule_topics_are_checked() {
        for (topic, ok) in [
            ("custom/${device}/#", true),
            ("a/+/b", true),
            ("#", true),
            ("", false),
            ("a/#/b", false),
            ("a/b+", false),
            ("$share/g/a", false),
            ("a/b/c/d/e/f/g/h/i", false),
        ] {
            assert_eq!(check_rule(0, &rule(topic)).is_ok(), ok, "{topic:?}");
        }
    }

    #[test]
    fn documents_parse_strictly_with_defaults() {
        let parsed: Result<TopicPolicies, _> = serde_json::from_str(r#"{"free_namespace":{"devices":true}}"#);
        assert_eq!(
            parsed.ok(),
            Some(TopicPolicies { free_namespace: FreeNamespace { applications: false, devices: true }, rules: vec![] })
        );
        assert!(serde_json::from_str::<TopicPolicies>(r#"{"free":true}"#).is_err());
        assert!(
            serde_json::from_str::<TopicPolicies>(
                r#"{"rules":[{"principal":"user","action":"all","topic":"a","effect":"allow"}]}"#
            )
            .is_err()
        );
    }
}
