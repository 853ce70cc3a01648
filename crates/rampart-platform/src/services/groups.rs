//! Device groups (SPEC §5): a tree per tenant. A group-scoped principal sees and changes only
//! the groups inside its scope; every other group is not found.

use rampart_core::{AuditAction, GroupId, Permission, TextKind, check_text};
use rampart_store::{Group, StoreError};
use serde_json::json;

use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::Principal;

/// A group to create.
pub struct NewGroup {
    pub id: GroupId,
    /// Display name; defaults to the id.
    pub name: Option<String>,
    /// The parent group; a root group when absent.
    pub parent: Option<GroupId>,
}

impl Platform {
    /// Creates a device group.
    pub async fn create_group(&self, principal: &Principal, new: NewGroup) -> ServiceResult<Group> {
        self.authorize(principal, Permission::DevicesWrite).await?;
        let name = new.name.unwrap_or_else(|| new.id.to_string());
        check_text("name", TextKind::DisplayName, &name)?;
        match &new.parent {
            Some(parent) => {
                let exists = match self.store.get_group(&principal.tenant, parent.as_str()).await {
                    Ok(_) => true,
                    Err(StoreError::NotFound) => false,
                    Err(other) => return Err(other.into()),
                };
                // A parent outside the principal's scope is reported exactly like a missing one.
                if !exists || !principal.scope.contains_group(parent.as_str()) {
                    return Err(ServiceError::invalid(format!("parent group {parent} does not exist")));
                }
            }
            None if !principal.scope.is_whole_tenant() => {
                // A root group would fall outside the principal's own scope.
                self.deny(principal, &format!("group:{}", new.id), json!({"reason": "root group outside scope"})).await;
                return Err(ServiceError::Forbidden);
            }
            None => {}
        }
        let group = Group {
            tenant: principal.tenant.clone(),
            id: new.id.into_string(),
            name,
            parent: new.parent.map(GroupId::into_string),
            created_at: self.now_ms(),
        };
        match self.store.create_group(&group).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!("group {} already exists", group.id)));
            }
            Err(other) => return Err(other.into()),
        }
        let details = json!({"name": group.name, "parent": group.parent});
        self.audit_by(principal, AuditAction::GroupCreate, format!("group:{}", group.id), details).await;
        Ok(group)
    }

    /// The groups the principal can see, ordered by id.
    pub async fn list_groups(&self, principal: &Principal) -> ServiceResult<Vec<Group>> {
        self.authorize(principal, Permission::DevicesRead).await?;
        let mut groups = self.store.list_groups(&principal.tenant).await?;
        groups.retain(|group| principal.scope.contains_group(&group.id));
        Ok(groups)
    }

    /// One group within the principal's scope.
    pub async fn get_group(&self, principal: &Principal, id: &GroupId) -> ServiceResult<Group> {
        self.authorize(principal, Permission::DevicesRead).await?;
        if !principal.scope.contains_group(id.as_str()) {
            return Err(ServiceError::NotFound);
        }
        Ok(self.store.get_group(&principal.tenant, id.as_str()).await?)
    }

    /// Deletes a group that has no sub-groups and no devices.
    pub async fn delete_group(&self, principal: &Principal, id: &GroupId) -> ServiceResult<()> {
        self.authorize(principal, Permission::DevicesWrite).await?;
        if !principal.scope.contains_group(id.as_str()) {
            return Err(ServiceError::NotFound);
        }
        match self.store.delete_group(&principal.tenant, id.as_str()).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!("group {id} has sub-groups or devices")));
            }
            Err(other) => return Err(other.into()),
        }
        self.audit_by(principal, AuditAction::GroupDelete, format!("group:{id}"), json!({})).await;
        Ok(())
    }
}
