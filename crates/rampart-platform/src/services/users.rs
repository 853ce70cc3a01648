//! Users of a tenant (SPEC §4, §5). Nobody grants more than they hold: roles carry only
//! permissions the principal has, a group-scoped principal creates only users inside its
//! scope, and a user is managed only by principals holding every permission that user holds.
//! Every edit names the columns it changes; changing roles, groups or the password, or
//! disabling, kills the user's tokens and ends its streams and sessions.

use std::collections::BTreeSet;

use rampart_core::{AuditAction, GroupId, Permission, Scope, TextKind, Username, check_password_policy, check_text};
use rampart_store::{Page, StoreError, User, UserChanges};
use serde_json::json;
use zeroize::Zeroizing;

use crate::bus::ControlEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::{Principal, role_permissions};

/// Purpose label binding a sealed e-mail address to its use.
const EMAIL_PURPOSE: &str = "email";

/// A user to create.
pub struct NewUser {
    pub username: Username,
    pub password: Zeroizing<String>,
    pub roles: Vec<String>,
    /// Device groups the user is confined to; `None` = the whole tenant.
    pub groups: Option<Vec<String>>,
    pub email: Option<String>,
}

/// An edit of a user; `None` leaves a field alone.
#[derive(Default)]
pub struct UserEdit {
    pub roles: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub password: Option<Zeroizing<String>>,
    /// An empty string removes the address.
    pub email: Option<String>,
}

/// A user with its e-mail address opened (shown only for one user at a time).
pub struct UserDetails {
    pub user: User,
    pub email: Option<String>,
}

/// A fresh, enabled user row with no MFA and a new incarnation id.
pub(crate) fn new_user(tenant: &str, username: &str, password_hash: String, roles: Vec<String>) -> User {
    User {
        tenant: tenant.to_owned(),
        username: username.to_owned(),
        uid: Platform::new_uid(),
        password_hash,
        roles,
        groups: Vec::new(),
        disabled: false,
        token_version: 1,
        mfa_enabled: false,
        mfa_secret_sealed: None,
        mfa_pending_sealed: None,
        mfa_last_step: 0,
        email_sealed: None,
        failed_logins: 0,
        failed_window_start: 0,
        locked_until: 0,
        password_changed_at: 0,
        created_at: 0,
    }
}

impl Platform {
    /// Creates a user in the principal's tenant.
    pub async fn create_user(&self, principal: &Principal, new: NewUser) -> ServiceResult<UserDetails> {
        self.authorize(principal, Permission::UsersWrite).await?;
        let roles = self.grantable_roles(principal, &new.roles).await?;
        let groups = self.confinable_groups(principal, new.groups.as_deref().unwrap_or_default()).await?;
        check_password_policy(new.username.as_str(), &new.password)
            .map_err(|error| ServiceError::invalid(error.to_string()))?;
        if let Some(email) = &new.email {
            check_text("email", TextKind::Email, email)?;
        }
        let password_hash = self.hash_password(new.password).await?;
        let now = self.now_ms();
        let mut user = new_user(&principal.tenant, new.username.as_str(), password_hash, roles);
        user.groups = groups;
        user.created_at = now;
        user.password_changed_at = now;
        if let Some(email) = &new.email {
            user.email_sealed = Some(self.seal_email(&principal.tenant, email).await?);
        }
        match self.store.create_user(&user).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(format!("user {} already exists", user.username)));
            }
            Err(other) => return Err(other.into()),
        }
        let details = json!({"roles": user.roles, "groups": user.groups});
        self.audit_by(principal, AuditAction::UserCreate, format!("user:{}", user.username), details).await;
        Ok(UserDetails { user, email: new.email })
    }

    /// The users of the principal's tenant, ordered by username.
    pub async fn list_users(&self, principal: &Principal, page: &Page) -> ServiceResult<Vec<User>> {
        self.authorize(principal, Permission::UsersRead).await?;
        Ok(self.store.list_users(&principal.tenant, page).await?)
    }

    /// One user, with the e-mail address opened.
    pub async fn get_user(&self, principal: &Principal, username: &Username) -> ServiceResult<UserDetails> {
        self.authorize(principal, Permission::UsersRead).await?;
        let user = self.store.get_user(&principal.tenant, username.as_str()).await?;
        let email = self.open_email(&user).await?;
        Ok(UserDetails { user, email })
    }

    /// Changes a user's roles, groups, state, password or e-mail address.
    pub async fn update_user(
        &self,
        principal: &Principal,
        username: &Username,
        edit: UserEdit,
    ) -> ServiceResult<UserDetails> {
        self.authorize(principal, Permission::UsersWrite).await?;
        let user = self.store.get_user(&principal.tenant, username.as_str()).await?;
        self.check_can_manage(principal, &user).await?;
        let mut changes = UserChanges::default();
        let mut changed: Vec<&str> = Vec::new();
        if let Some(roles) = &edit.roles {
            let roles = self.grantable_roles(principal, roles).await?;
            if roles != user.roles {
                changes.roles = Some(roles);
                changed.push("roles");
            }
        }
        if let Some(groups) = &edit.groups {
            let groups = self.confinable_groups(principal, groups).await?;
            if groups != user.groups {
                changes.groups = Some(groups);
                changed.push("groups");
            }
        }
        if let Some(disabled) = edit.disabled
            && disabled != user.disabled
        {
            if disabled && principal.username() == Some(user.username.as_str()) {
                return Err(ServiceError::Conflict("you cannot disable yourself".to_owned()));
            }
            changes.disabled = Some(disabled);
            changed.push("disabled");
        }
        if let Some(password) = edit.password {
            check_password_policy(&user.username, &password)
                .map_err(|error| ServiceError::invalid(error.to_string()))?;
            // An administrator's reset also lifts a lockout (the store clears the counters).
            changes.password = Some((self.hash_password(password).await?, self.now_ms()));
            changed.push("password");
        }
        let mut email_shown = None;
        if let Some(email) = &edit.email {
            match email.is_empty() {
                true => changes.email_sealed = Some(None),
                false => {
                    check_text("email", TextKind::Email, email)?;
                    changes.email_sealed = Some(Some(self.seal_email(&principal.tenant, email).await?));
                    email_shown = Some(email.clone());
                }
            }
            changed.push("email");
        }
        // Narrower groups or roles, a new password or a disable: old tokens must not keep a
        // wider view than intended.
        changes.revoke_tokens = changes.roles.is_some()
            || changes.groups.is_some()
            || changes.disabled.is_some()
            || changes.password.is_some();
        let updated = self.store.update_user(&user.tenant, &user.username, &user.uid, &changes).await?;
        if changes.revoke_tokens {
            self.publish(ControlEvent::PrincipalChanged {
                tenant: user.tenant.clone(),
                username: user.username.clone(),
            });
        }
        if !changed.is_empty() {
            let details = json!({
                "changed": changed, "roles": updated.roles, "groups": updated.groups, "disabled": updated.disabled
            });
            self.audit_by(principal, AuditAction::UserUpdate, format!("user:{}", updated.username), details).await;
        }
        if edit.email.is_none() {
            email_shown = self.open_email(&updated).await?;
        }
        Ok(UserDetails { user: updated, email: email_shown })
    }

    /// Deletes a user and the API keys it owns; its tokens, streams and sessions end at once.
    pub async fn delete_user(&self, principal: &Principal, username: &Username) -> ServiceResult<()> {
        self.authorize(principal, Permission::UsersWrite).await?;
        let user = self.store.get_user(&principal.tenant, username.as_str()).await?;
        if principal.username() == Some(user.username.as_str()) {
            return Err(ServiceError::Conflict("you cannot delete yourself".to_owned()));
        }
        self.check_can_manage(principal, &user).await?;
        let keys = self.store.delete_user(&user.tenant, &user.username, &user.uid).await?;
        self.publish(ControlEvent::PrincipalChanged { tenant: user.tenant.clone(), username: user.username.clone() });
        for key_id in &keys {
            self.publish(ControlEvent::ApiKeyRevoked { tenant: user.tenant.clone(), key_id: key_id.clone() });
        }
        let details = json!({"api_keys_deleted": keys});
        self.audit_by(principal, AuditAction::UserDelete, format!("user:{}", user.username), details).await;
        Ok(())
    }

    /// A user may be changed only by a principal holding every permission the user holds, and,
    /// for a group-scoped principal, only when the user is confined inside its scope.
    async fn check_can_manage(&self, principal: &Principal, user: &User) -> ServiceResult<()> {
        let held = role_permissions(self, &user.tenant, &user.roles).await?;
        self.authorize_all(principal, &held).await?;
        if let Scope::Groups(scope) = &principal.scope
            && (user.groups.is_empty() || user.groups.iter().any(|group| !scope.contains(group)))
        {
            let details = json!({"reason": "user outside the principal's scope"});
            self.deny(principal, &format!("user:{}", user.username), details).await;
            return Err(ServiceError::Forbidden);
        }
        Ok(())
    }

    /// Checks the groups someone is to be confined to: valid ids that exist in the tenant
    /// (`Invalid`), and, for a group-scoped principal, a non-empty list inside its own scope
    /// (`Forbidden`). Answers them deduplicated, in the order given.
    pub(crate) async fn confinable_groups(
        &self,
        principal: &Principal,
        groups: &[String],
    ) -> ServiceResult<Vec<String>> {
        let mut unique: Vec<String> = Vec::with_capacity(groups.len());
        for group in groups {
            GroupId::parse(group)?;
            if !unique.contains(group) {
                unique.push(group.clone());
            }
        }
        let tree = self.store.list_groups(&principal.tenant).await?;
        let known: BTreeSet<&str> = tree.iter().map(|group| group.id.as_str()).collect();
        if let Some(missing) = unique.iter().find(|group| !known.contains(group.as_str())) {
            return Err(ServiceError::invalid(format!("unknown group: {missing}")));
        }
        if let Scope::Groups(scope) = &principal.scope
            && (unique.is_empty() || unique.iter().any(|group| !scope.contains(group)))
        {
            let details = json!({"reason": "groups outside the principal's scope"});
            self.deny(principal, "groups", details).await;
            return Err(ServiceError::Forbidden);
        }
        Ok(unique)
    }

    pub(crate) async fn seal_email(&self, tenant: &str, email: &str) -> ServiceResult<Vec<u8>> {
        Ok(self.keyring.seal_for_tenant(tenant, EMAIL_PURPOSE, email.as_bytes()).await?)
    }

    async fn open_email(&self, user: &User) -> ServiceResult<Option<String>> {
        let Some(sealed) = &user.email_sealed else { return Ok(None) };
        let plain = self.keyring.open_for_tenant(&user.tenant, EMAIL_PURPOSE, sealed).await?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }
}
