//! Reading the audit log (SPEC §11): the records of the principal's tenant incarnation, within
//! its scope (a group-scoped principal reads only records about its devices), the chain's
//! verification and the key that signs its checkpoints. Nothing here writes.

use rampart_core::Permission;
use rampart_store::{AuditChain, AuditFilter, AuditRecord, Page};

use crate::audit::VerifyReport;
use crate::error::ServiceResult;
use crate::platform::Platform;
use crate::principal::Principal;

impl Platform {
    /// The records of the principal's tenant in chain order, filtered, within its scope.
    pub async fn audit_records(
        &self,
        principal: &Principal,
        mut filter: AuditFilter,
        page: &Page,
    ) -> ServiceResult<Vec<AuditRecord>> {
        self.authorize(principal, Permission::AuditRead).await?;
        filter.within_groups = principal.scope.group_filter();
        let chain = AuditChain { tenant: principal.tenant.clone(), incarnation: principal.tenant_uid.clone() };
        Ok(self.store.list_audit(&chain, &filter, page).await?)
    }

    /// Verifies the chain of the principal's tenant: links, hashes and signed checkpoints.
    pub async fn verify_audit(&self, principal: &Principal) -> ServiceResult<VerifyReport> {
        self.authorize(principal, Permission::AuditRead).await?;
        Ok(self.audit.verify_tenant(&principal.tenant).await?)
    }

    /// The Ed25519 public key that verifies audit checkpoints (standard base64).
    pub async fn audit_public_key(&self, principal: &Principal) -> ServiceResult<String> {
        self.authorize(principal, Permission::AuditRead).await?;
        Ok(self.audit.public_key_base64())
    }
}
