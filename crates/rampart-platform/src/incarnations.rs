//! The current incarnation (`uid`) of each tenant, cached: audit records and security events
//! are filed under it, so whoever later gets a deleted tenant's id starts with empty ones.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use rampart_store::{Store, StoreError};

use crate::error::PlatformResult;

/// Tenant id → uid of its live incarnation.
pub(crate) struct Incarnations {
    store: Arc<dyn Store>,
    known: RwLock<HashMap<String, String>>,
}

/// Tenants remembered at most; the cache starts over beyond it.
const MAX_CACHED: usize = 100_000;

impl Incarnations {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Incarnations { store, known: RwLock::new(HashMap::new()) }
    }

    /// The uid of the tenant's live incarnation; `None` when the tenant does not exist.
    pub(crate) async fn current(&self, tenant: &str) -> PlatformResult<Option<String>> {
        if let Some(uid) = self.known.read().unwrap_or_else(PoisonError::into_inner).get(tenant) {
            return Ok(Some(uid.clone()));
        }
        match self.store.get_tenant(tenant).await {
            Ok(row) => {
                self.remember(tenant, &row.uid);
                Ok(Some(row.uid))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    pub(crate) fn remember(&self, tenant: &str, uid: &str) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_CACHED {
            known.clear();
        }
        known.insert(tenant.to_owned(), uid.to_owned());
    }

    pub(crate) fn forget(&self, tenant: &str) {
        self.known.write().unwrap_or_else(PoisonError::into_inner).remove(tenant);
    }
}
