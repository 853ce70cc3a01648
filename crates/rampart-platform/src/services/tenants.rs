//! Tenants (SPEC §2, §5): a tenant admin creates, lists and deletes the tenants below its own.
//! A parent manages a sub-tenant's lifecycle only; every tenant outside the caller's sub-tree
//! is not found. A tenant is provisioned whole (row, data key, CA, first admin) or not at all,
//! and each creation is a new incarnation.

use rampart_core::{
    AuditAction, PLATFORM_TENANT, Permission, TenantId, TextKind, Username, check_password_policy, check_text,
};
use rampart_crypto::generate_ca;
use rampart_store::{Page, StoreError, Tenant, TenantCa, User};
use serde_json::json;
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditEntry};
use crate::bus::ControlEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;
use crate::services::users::new_user;

/// Purpose label binding a sealed CA private key to its use.
pub(crate) const CA_KEY_PURPOSE: &str = "ca-key";
/// Deepest tenant tree walked when checking ancestry; deeper chains are treated as unrelated.
const MAX_TENANT_DEPTH: usize = 64;

/// A sub-tenant to create, with its first admin.
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub admin: Username,
    pub admin_password: Zeroizing<String>,
}

impl Platform {
    /// Creates a sub-tenant of the principal's tenant, with its keys, its CA and its first
    /// admin (built-in role `admin`).
    pub async fn create_tenant(&self, principal: &Principal, new: NewTenant) -> ServiceResult<Tenant> {
        self.authorize_tenant_wide(principal, Permission::TenantsWrite).await?;
        check_text("name", TextKind::DisplayName, &new.name)?;
        check_password_policy(new.admin.as_str(), &new.admin_password)
            .map_err(|error| ServiceError::invalid(error.to_string()))?;
        // Hash before provisioning so that a failure leaves no tenant behind.
        let password_hash = self.hash_password(new.admin_password).await?;
        let admin = new_user(new.id.as_str(), new.admin.as_str(), password_hash, vec!["admin".to_owned()]);
        let tenant = match self.provision_tenant(new.id.as_str(), &new.name, Some(&principal.tenant), admin).await {
            Ok(tenant) => tenant,
            Err(ServiceError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!("tenant {} already exists", new.id)));
            }
            Err(other) => return Err(other),
        };
        let details = json!({"name": tenant.name, "parent": tenant.parent, "admin": new.admin.as_str()});
        self.audit_by(principal, AuditAction::TenantCreate, format!("tenant:{}", tenant.id), details).await;
        // The new tenant's own chain starts with who created it and its first user.
        let created_by = json!({"by_tenant": principal.tenant, "by": principal.actor().id()});
        let target = format!("tenant:{}", tenant.id);
        let first = AuditEntry::success(&tenant.id, Actor::System, AuditAction::TenantCreate, target);
        self.audit.record(first.with_details(created_by)).await;
        let user = format!("user:{}", new.admin);
        self.audit.record(AuditEntry::success(&tenant.id, Actor::System, AuditAction::UserCreate, user)).await;
        Ok(tenant)
    }

    /// Creates a tenant incarnation with its data key, its device CA and its first user. On
    /// failure nothing is left behind; `Conflict` when the id is taken.
    pub(crate) async fn provision_tenant(
        &self,
        id: &str,
        name: &str,
        parent: Option<&str>,
        admin: User,
    ) -> ServiceResult<Tenant> {
        let now = self.now_ms();
        let tenant = Tenant {
            id: id.to_owned(),
            uid: Platform::new_uid(),
            name: name.to_owned(),
            parent: parent.map(str::to_owned),
            created_at: now,
        };
        self.store.create_tenant(&tenant).await?;
        self.incarnations.remember(id, &tenant.uid);
        if let Err(error) = self.provision_tenant_parts(&tenant, admin, now).await {
            if let Err(cleanup) = self.store.delete_tenant(id).await {
                tracing::error!(%cleanup, tenant = id, "could not remove half-provisioned tenant");
            }
            self.forget_tenant(id);
            return Err(error);
        }
        Ok(tenant)
    }

    async fn provision_tenant_parts(&self, tenant: &Tenant, admin: User, now: i64) -> ServiceResult<()> {
        self.keyring.create_tenant_key(&tenant.id, now).await?;
        let ca = generate_ca(&format!("Rampart device CA {}", tenant.id))?;
        let key_sealed = self.keyring.seal_for_tenant(&tenant.id, CA_KEY_PURPOSE, ca.key_pem.as_bytes()).await?;
        let row =
            TenantCa { tenant: tenant.id.clone(), cert_pem: ca.cert_pem, key_sealed, crl_number: 0, created_at: now };
        self.store.create_tenant_ca(&row).await?;
        self.store.create_user(&User { created_at: now, password_changed_at: now, ..admin }).await?;
        Ok(())
    }

    fn forget_tenant(&self, id: &str) {
        self.keyring.forget_tenant(id);
        self.incarnations.forget(id);
    }

    /// The direct sub-tenants of the principal's tenant, ordered by id.
    pub async fn list_tenants(&self, principal: &Principal, page: &Page) -> ServiceResult<Vec<Tenant>> {
        self.authorize_tenant_wide(principal, Permission::TenantsWrite).await?;
        Ok(self.store.list_child_tenants(&principal.tenant, page).await?)
    }

    /// A tenant below the principal's.
    pub async fn get_tenant(&self, principal: &Principal, id: &TenantId) -> ServiceResult<Tenant> {
        self.authorize_tenant_wide(principal, Permission::TenantsWrite).await?;
        self.descendant(&principal.tenant, id.as_str()).await
    }

    /// Deletes a tenant below the principal's: every row it owns goes, its keys are destroyed,
    /// and every connection and stream of it ends. Its audit chain stays, under its
    /// incarnation, where no later tenant of the same id will see it.
    pub async fn delete_tenant(&self, principal: &Principal, id: &TenantId) -> ServiceResult<()> {
        self.authorize_tenant_wide(principal, Permission::TenantsWrite).await?;
        let tenant = self.descendant(&principal.tenant, id.as_str()).await?;
        match self.store.delete_tenant(&tenant.id).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!("tenant {id} has sub-tenants; delete them first")));
            }
            Err(other) => return Err(other.into()),
        }
        self.forget_tenant(&tenant.id);
        self.publish(ControlEvent::TenantDeleted { tenant: tenant.id.clone() });
        let details = json!({"name": tenant.name, "parent": tenant.parent, "incarnation": tenant.uid});
        self.audit_by(principal, AuditAction::TenantDelete, format!("tenant:{id}"), details).await;
        Ok(())
    }

    /// The tenant `id` if it lies strictly below `ancestor` in the tenant tree; `NotFound`
    /// otherwise, exactly as for a missing tenant.
    async fn descendant(&self, ancestor: &str, id: &str) -> ServiceResult<Tenant> {
        if id == ancestor || id == PLATFORM_TENANT {
            return Err(ServiceError::NotFound);
        }
        let target = self.store.get_tenant(id).await?;
        let mut parent = target.parent.clone();
        for _ in 0..MAX_TENANT_DEPTH {
            let Some(current) = parent else { break };
            if current == ancestor {
                return Ok(target);
            }
            parent = match self.store.get_tenant(&current).await {
                Ok(tenant) => tenant.parent,
                Err(StoreError::NotFound) => None,
                Err(other) => return Err(other.into()),
            };
        }
        Err(ServiceError::NotFound)
    }
}
