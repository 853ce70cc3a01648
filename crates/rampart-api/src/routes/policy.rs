//! The tenant policy document (SPEC §4, §10): MFA requirement, MQTT client takeover and the
//! detection thresholds, read with defaults filled in and changed by partial updates.
//!
//! It is stored as JSON text; `require_mfa` stays a top-level key because authentication
//! (`auth::tenant_requires_mfa`) reads it from the stored document directly.

use axum::Json;
use axum::extract::State;
use rampart_core::Permission;
use rampart_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;

/// What happens when a device connects while a session with its id is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientTakeover {
    /// The newcomer replaces the live session (the MQTT default).
    #[default]
    Allow,
    /// The newcomer is refused while the device is connected.
    Reject,
}

/// Thresholds of the detection rules (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct DetectionPolicy {
    /// Failed logins or device connects from one IP that trigger a block.
    pub failed_auth_threshold: u32,
    pub failed_auth_window_s: u32,
    pub block_duration_s: u32,
    /// ACL violations by one device that quarantine it.
    pub acl_violation_threshold: u32,
    pub acl_violation_window_s: u32,
    /// A rate over this multiple of a device's moving baseline is an anomaly.
    pub rate_anomaly_factor: u32,
}

impl Default for DetectionPolicy {
    fn default() -> Self {
        DetectionPolicy {
            failed_auth_threshold: 10,
            failed_auth_window_s: 60,
            block_duration_s: 900,
            acl_violation_threshold: 3,
            acl_violation_window_s: 60,
            rate_anomaly_factor: 10,
        }
    }
}

/// The tenant policy document with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct TenantPolicy {
    /// Users without MFA may only enrol.
    pub require_mfa: bool,
    pub client_takeover: ClientTakeover,
    pub detection: DetectionPolicy,
}

/// Body of `PUT /api/v1/tenant/policy`: only the keys given change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub require_mfa: Option<bool>,
    /// `allow` or `reject`.
    pub client_takeover: Option<ClientTakeover>,
    pub detection: Option<DetectionPatch>,
}

/// Partial update of the detection thresholds; every number must be positive.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectionPatch {
    pub failed_auth_threshold: Option<u32>,
    pub failed_auth_window_s: Option<u32>,
    pub block_duration_s: Option<u32>,
    pub acl_violation_threshold: Option<u32>,
    pub acl_violation_window_s: Option<u32>,
    pub rate_anomaly_factor: Option<u32>,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_policy, put_policy))
}

/// The tenant's policy with defaults for every key not stored. A stored document that no
/// longer parses is an internal error, not silently replaced by defaults.
pub(crate) async fn load_policy(store: &dyn Store, tenant: &str) -> ApiResult<TenantPolicy> {
    match store.get_tenant_policy(tenant).await? {
        None => Ok(TenantPolicy::default()),
        Some(text) => serde_json::from_str(&text).map_err(|e| ApiError::Internal(format!("stored tenant policy: {e}"))),
    }
}

fn set_positive(target: &mut u32, value: Option<u32>, name: &str) -> ApiResult<()> {
    match value {
        None => Ok(()),
        Some(0) => Err(ApiError::invalid(format!("detection.{name} must be a positive number"))),
        Some(value) => {
            *target = value;
            Ok(())
        }
    }
}

fn apply(policy: &mut TenantPolicy, patch: PolicyPatch) -> ApiResult<()> {
    if let Some(require_mfa) = patch.require_mfa {
        policy.require_mfa = require_mfa;
    }
    if let Some(client_takeover) = patch.client_takeover {
        policy.client_takeover = client_takeover;
    }
    if let Some(detection) = patch.detection {
        let target = &mut policy.detection;
        set_positive(&mut target.failed_auth_threshold, detection.failed_auth_threshold, "failed_auth_threshold")?;
        set_positive(&mut target.failed_auth_window_s, detection.failed_auth_window_s, "failed_auth_window_s")?;
        set_positive(&mut target.block_duration_s, detection.block_duration_s, "block_duration_s")?;
        set_positive(
            &mut target.acl_violation_threshold,
            detection.acl_violation_threshold,
            "acl_violation_threshold",
        )?;
        set_positive(&mut target.acl_violation_window_s, detection.acl_violation_window_s, "acl_violation_window_s")?;
        set_positive(&mut target.rate_anomaly_factor, detection.rate_anomaly_factor, "rate_anomaly_factor")?;
    }
    Ok(())
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
    request_body = PolicyPatch,
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
    ApiJson(patch): ApiJson<PolicyPatch>,
) -> ApiResult<Json<TenantPolicy>> {
    principal.require(&state, Permission::SecurityWrite).await?;
    let store = state.platform.store.as_ref();
    let before = load_policy(store, &principal.tenant).await?;
    let mut policy = before.clone();
    apply(&mut policy, patch)?;
    let text = serde_json::to_string(&policy).map_err(|e| ApiError::Internal(e.to_string()))?;
    store.put_tenant_policy(&principal.tenant, &text).await?;
    state
        .platform
        .control
        .publish(rampart_platform::ControlEvent::TenantPolicyChanged { tenant: principal.tenant.clone() });
    let details = json!({"before": before, "after": policy});
    principal.audit(&state, "policy.update", format!("tenant:{}", principal.tenant), details).await;
    Ok(Json(policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_document() {
        let value = serde_json::to_value(TenantPolicy::default()).unwrap_or_default();
        assert_eq!(
            value,
            json!({"require_mfa": false, "client_takeover": "allow", "detection": {
                "failed_auth_threshold": 10, "failed_auth_window_s": 60, "block_duration_s": 900,
                "acl_violation_threshold": 3, "acl_violation_window_s": 60, "rate_anomaly_factor": 10}})
        );
    }

    #[test]
    fn partial_documents_fill_defaults() {
        let policy: TenantPolicy =
            serde_json::from_str(r#"{"require_mfa":true,"detection":{"block_duration_s":5}}"#).unwrap_or_default();
        assert!(policy.require_mfa);
        assert_eq!(policy.detection.block_duration_s, 5);
        assert_eq!(policy.detection.failed_auth_threshold, 10);
    }
}
