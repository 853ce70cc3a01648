//! The tenant rules a connection obeys, cached per tenant: the topic policy (SPEC §7) and the
//! `client_takeover` setting of the tenant policy (SPEC §10). The cache is dropped for a
//! tenant when the API announces a policy change on the control bus.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rampart_platform::{Platform, PlatformError, ServiceError};

use rampart_core::acl::TopicPolicy;

/// What the gateway needs of a tenant's policies.
#[derive(Debug, Clone, Default)]
pub(crate) struct TenantRules {
    pub topics: TopicPolicy,
    /// `client_takeover: reject`: a newcomer is refused while the device is connected.
    pub reject_takeover: bool,
}

#[derive(Debug, Default)]
pub(crate) struct PolicyCache {
    tenants: RwLock<HashMap<String, Arc<TenantRules>>>,
    /// Bumped by every invalidation, so a load that raced with one is not cached.
    generation: AtomicU64,
}

impl PolicyCache {
    /// The tenant's rules, read from the store on first use. A stored document that does not
    /// parse is logged and replaced by the defaults, which add no topic (fail closed).
    pub(crate) async fn get(&self, platform: &Platform, tenant: &str) -> Result<Arc<TenantRules>, ServiceError> {
        if let Some(rules) = self.tenants.read().unwrap_or_else(PoisonError::into_inner).get(tenant) {
            return Ok(Arc::clone(rules));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let topics = or_defaults(platform.topic_policy_of(tenant).await, tenant)?;
        let tenant_policy = or_defaults(platform.tenant_policy_for(tenant).await, tenant)?;
        let reject_takeover = tenant_policy.client_takeover == rampart_core::ClientTakeover::Reject;
        let rules = Arc::new(TenantRules { topics, reject_takeover });
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::Acquire) == generation {
            tenants.insert(tenant.to_owned(), Arc::clone(&rules));
        }
        Ok(rules)
    }

    /// Forgets the tenant's rules; the next use reads them again.
    pub(crate) fn invalidate(&self, tenant: &str) {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        tenants.remove(tenant);
    }

    /// Forgets every tenant's rules (after missed control events).
    pub(crate) fn clear(&self) {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        tenants.clear();
    }
}

/// A stored document that no longer parses is logged and replaced by the defaults, which add
/// no topic (fail closed); any other failure is passed on.
fn or_defaults<T: Default>(loaded: Result<T, ServiceError>, tenant: &str) -> Result<T, ServiceError> {
    match loaded {
        Ok(document) => Ok(document),
        Err(ServiceError::Internal(PlatformError::StoredDocument(error))) => {
            tracing::error!(%error, tenant, "a stored policy does not parse; using the defaults");
            Ok(T::default())
        }
        Err(other) => Err(other),
    }
}
