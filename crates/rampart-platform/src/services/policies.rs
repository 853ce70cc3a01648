//! Tenant-wide settings: the tenant policy (SPEC §4, §10), the topic policy (SPEC §7) and the
//! tenant data key (SPEC §12). Reading them needs `security:read`; changing them needs
//! `security:write` and the whole tenant in scope. Live connections obey a change from their
//! next packet.

use rampart_core::acl::TopicPolicy;
use rampart_core::{AuditAction, Permission, PolicyError, TenantPolicy, TenantPolicyPatch};
use rampart_store::StoreError;
use serde_json::json;

use crate::bus::ControlEvent;
use crate::error::{PlatformError, ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;

/// Attempts of a partial policy update racing other writers.
const UPDATE_ATTEMPTS: usize = 8;

fn stored(error: PolicyError) -> ServiceError {
    ServiceError::Internal(PlatformError::StoredDocument(error.to_string()))
}

impl Platform {
    /// The tenant policy, with defaults filled in.
    pub async fn tenant_policy(&self, principal: &Principal) -> ServiceResult<TenantPolicy> {
        self.authorize(principal, Permission::SecurityRead).await?;
        self.tenant_policy_of(&principal.tenant).await
    }

    /// Applies a partial update of the tenant policy and answers the whole policy. Concurrent
    /// updates each apply to what the other left (a compare-and-set, retried).
    pub async fn update_tenant_policy(
        &self,
        principal: &Principal,
        patch: TenantPolicyPatch,
    ) -> ServiceResult<TenantPolicy> {
        self.authorize_tenant_wide(principal, Permission::SecurityWrite).await?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.store.get_tenant_policy(&principal.tenant).await?;
            let before = TenantPolicy::from_stored(current.as_deref()).map_err(stored)?;
            let mut after = before.clone();
            after.apply(patch.clone()).map_err(|error| ServiceError::invalid(error.to_string()))?;
            match self.store.put_tenant_policy(&principal.tenant, current.as_deref(), &after.to_stored()).await {
                Ok(()) => {
                    self.publish(ControlEvent::TenantPolicyChanged { tenant: principal.tenant.clone() });
                    let details = json!({"before": before, "after": after});
                    self.audit_by(
                        principal,
                        AuditAction::PolicyUpdate,
                        format!("tenant:{}", principal.tenant),
                        details,
                    )
                    .await;
                    return Ok(after);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(ServiceError::Conflict("the tenant policy is being changed by others; try again".to_owned()))
    }

    /// The tenant's topic policy (defaults: no free namespace, no rules).
    pub async fn topic_policy(&self, principal: &Principal) -> ServiceResult<TopicPolicy> {
        self.authorize(principal, Permission::SecurityRead).await?;
        self.topic_policy_of(&principal.tenant).await
    }

    /// The topic policy of a tenant as stored (the gateway's rules).
    pub async fn topic_policy_of(&self, tenant: &str) -> ServiceResult<TopicPolicy> {
        TopicPolicy::from_stored(self.store.get_topic_policy(tenant).await?.as_deref()).map_err(stored)
    }

    /// The tenant policy of a tenant as stored (the gateway's takeover rule).
    pub async fn tenant_policy_for(&self, tenant: &str) -> ServiceResult<TenantPolicy> {
        self.tenant_policy_of(tenant).await
    }

    /// Replaces the tenant's topic policy.
    pub async fn replace_topic_policy(&self, principal: &Principal, policy: TopicPolicy) -> ServiceResult<TopicPolicy> {
        self.authorize_tenant_wide(principal, Permission::SecurityWrite).await?;
        policy.check().map_err(|error| ServiceError::invalid(error.to_string()))?;
        let before = self.topic_policy_of(&principal.tenant).await?;
        self.store.put_topic_policy(&principal.tenant, &policy.to_stored()).await?;
        self.publish(ControlEvent::TenantPolicyChanged { tenant: principal.tenant.clone() });
        let details = json!({"before": before, "after": policy});
        self.audit_by(principal, AuditAction::TopicPolicyUpdate, format!("tenant:{}", principal.tenant), details).await;
        Ok(policy)
    }

    /// Starts a new tenant data key; new secrets and device keys are sealed under it, old data
    /// stays readable under the key that sealed it. Answers the new key's id.
    pub async fn rotate_tenant_key(&self, principal: &Principal) -> ServiceResult<String> {
        self.authorize_tenant_wide(principal, Permission::SecurityWrite).await?;
        let key_id = self.keyring.create_tenant_key(&principal.tenant, self.now_ms()).await?;
        let details = json!({ "key_id": key_id });
        self.audit_by(principal, AuditAction::KeysRotateTenant, format!("tenant:{}", principal.tenant), details).await;
        Ok(key_id)
    }
}
