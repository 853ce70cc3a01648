//! Roles (SPEC §5): the four built-in roles and a tenant's custom roles, and the rule every
//! grant of roles follows (users, API keys): only roles that exist, only permissions the
//! principal holds itself. Custom roles apply tenant-wide, so changing them needs the whole
//! tenant in scope.

use rampart_core::{AuditAction, BUILTIN_ROLES, Permission, PermissionSet, RoleName, builtin_role_permissions};
use rampart_store::{Role, StoreError};
use serde_json::json;

use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;

/// A role with its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub name: String,
    pub permissions: PermissionSet,
    /// One of the built-in roles (which cannot be changed).
    pub builtin: bool,
}

impl RoleInfo {
    fn custom(role: Role) -> RoleInfo {
        // Stored names were validated on the way in.
        let permissions = role.permissions.iter().filter_map(|p| Permission::parse(p)).collect();
        RoleInfo { name: role.name, permissions, builtin: false }
    }

    fn builtin(name: &str) -> Option<RoleInfo> {
        builtin_role_permissions(name).map(|permissions| RoleInfo { name: name.to_owned(), permissions, builtin: true })
    }
}

impl Platform {
    /// The permissions of `role` in `tenant`, or `None` when no such role exists.
    async fn role(&self, tenant: &str, role: &str) -> ServiceResult<Option<PermissionSet>> {
        if let Some(builtin) = builtin_role_permissions(role) {
            return Ok(Some(builtin));
        }
        match self.store.get_role(tenant, role).await {
            Ok(custom) => Ok(Some(RoleInfo::custom(custom).permissions)),
            Err(StoreError::NotFound) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Checks `roles` before they are granted: each a valid name (`Invalid`) of a role of the
    /// principal's tenant (`Invalid`) carrying only permissions the principal holds
    /// (`Forbidden`). Answers them deduplicated, in the order given.
    pub(crate) async fn grantable_roles(&self, principal: &Principal, roles: &[String]) -> ServiceResult<Vec<String>> {
        let mut granted = PermissionSet::new();
        let mut unique: Vec<String> = Vec::with_capacity(roles.len());
        for role in roles {
            RoleName::parse(role)?;
            if unique.contains(role) {
                continue;
            }
            let permissions = self
                .role(&principal.tenant, role)
                .await?
                .ok_or_else(|| ServiceError::invalid(format!("unknown role: {role}")))?;
            granted.extend(permissions);
            unique.push(role.clone());
        }
        self.authorize_all(principal, &granted).await?;
        Ok(unique)
    }

    /// Creates a custom role from permission names.
    pub async fn create_role(
        &self,
        principal: &Principal,
        name: &RoleName,
        permission_names: &[String],
    ) -> ServiceResult<RoleInfo> {
        self.authorize_tenant_wide(principal, Permission::UsersWrite).await?;
        if BUILTIN_ROLES.contains(&name.as_str()) {
            return Err(ServiceError::Conflict(format!("{name} is a built-in role")));
        }
        let mut permissions = PermissionSet::new();
        for permission in permission_names {
            permissions.insert(
                Permission::parse(permission)
                    .ok_or_else(|| ServiceError::invalid(format!("unknown permission: {permission}")))?,
            );
        }
        self.authorize_all(principal, &permissions).await?;
        let role = Role {
            tenant: principal.tenant.clone(),
            name: name.as_str().to_owned(),
            permissions: permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            created_at: self.now_ms(),
        };
        match self.store.create_role(&role).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(ServiceError::Conflict(format!("role {name} already exists"))),
            Err(other) => return Err(other.into()),
        }
        let details = json!({"permissions": role.permissions});
        self.audit_by(principal, AuditAction::RoleCreate, format!("role:{}", role.name), details).await;
        Ok(RoleInfo::custom(role))
    }

    /// Built-in and custom roles, ordered by name.
    pub async fn list_roles(&self, principal: &Principal) -> ServiceResult<Vec<RoleInfo>> {
        self.authorize(principal, Permission::UsersRead).await?;
        let mut roles: Vec<RoleInfo> = BUILTIN_ROLES.iter().filter_map(|name| RoleInfo::builtin(name)).collect();
        roles.extend(self.store.list_roles(&principal.tenant).await?.into_iter().map(RoleInfo::custom));
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(roles)
    }

    /// One role.
    pub async fn get_role(&self, principal: &Principal, name: &RoleName) -> ServiceResult<RoleInfo> {
        self.authorize(principal, Permission::UsersRead).await?;
        if let Some(builtin) = RoleInfo::builtin(name.as_str()) {
            return Ok(builtin);
        }
        Ok(RoleInfo::custom(self.store.get_role(&principal.tenant, name.as_str()).await?))
    }

    /// Deletes a custom role; users and keys holding it lose its permissions at once (their
    /// authority is resolved on every request).
    pub async fn delete_role(&self, principal: &Principal, name: &RoleName) -> ServiceResult<()> {
        self.authorize_tenant_wide(principal, Permission::UsersWrite).await?;
        if BUILTIN_ROLES.contains(&name.as_str()) {
            return Err(ServiceError::Conflict(format!("{name} is a built-in role and cannot be deleted")));
        }
        self.store.delete_role(&principal.tenant, name.as_str()).await?;
        self.audit_by(principal, AuditAction::RoleDelete, format!("role:{name}"), json!({})).await;
        Ok(())
    }
}
