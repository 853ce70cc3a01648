//! API keys for applications (SPEC §4): `rak_<id>_<secret>`, shown once at creation and stored
//! as a SHA-256 hash. A key carries roles like a user and acts for the user who created it (or
//! for the owner of the key that created it): never further than that user, now or later,
//! and within that user's groups.

use rampart_core::{AuditAction, Permission, Scope, TextKind, check_text};
use rampart_crypto::{random_id, random_secret, sha256};
use rampart_store::ApiKey;
use serde_json::json;
use zeroize::Zeroizing;

use crate::bus::ControlEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::{API_KEY_PREFIX, Principal, PrincipalKind};
use crate::time_format::format_rfc3339_ms;

/// Random bytes in a key id (hex) and in its secret part (base64url): 256 bits of secret.
const KEY_ID_BYTES: usize = 8;
const KEY_SECRET_BYTES: usize = 32;

/// A key to create.
pub struct NewApiKey {
    pub name: String,
    pub roles: Vec<String>,
    /// Epoch ms; `None` = never.
    pub expires_at: Option<i64>,
}

/// A key just created: the only time its secret exists outside the caller's hands.
pub struct CreatedApiKey {
    pub row: ApiKey,
    pub key: Zeroizing<String>,
}

impl Platform {
    /// Creates an API key acting for the principal's user.
    pub async fn create_api_key(&self, principal: &Principal, new: NewApiKey) -> ServiceResult<CreatedApiKey> {
        self.authorize(principal, Permission::UsersWrite).await?;
        check_text("name", TextKind::DisplayName, &new.name)?;
        let now = self.now_ms();
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(ServiceError::invalid("expires_at must lie in the future"));
        }
        let roles = self.grantable_roles(principal, &new.roles).await?;
        let (owner, owner_uid) = match &principal.kind {
            PrincipalKind::User { username, uid } => (username.clone(), uid.clone()),
            PrincipalKind::ApiKey { owner, .. } => {
                let user = self.store.get_user(&principal.tenant, owner).await?;
                (user.username, user.uid)
            }
        };
        let groups = match &principal.scope {
            Scope::Tenant => Vec::new(),
            Scope::Groups(groups) => groups.iter().cloned().collect(),
        };
        let id = random_id(KEY_ID_BYTES);
        let key = random_secret(&format!("{API_KEY_PREFIX}{id}_"), KEY_SECRET_BYTES);
        let row = ApiKey {
            id: id.clone(),
            tenant: principal.tenant.clone(),
            name: new.name,
            roles,
            groups,
            key_hash: sha256(key.as_bytes()).to_vec(),
            expires_at: new.expires_at,
            created_by: principal.actor().id().to_owned(),
            owner,
            owner_uid,
            created_at: now,
        };
        self.store.create_api_key(&row).await?;
        let details = json!({
            "name": row.name, "roles": row.roles, "owner": row.owner, "groups": row.groups,
            "expires_at": row.expires_at.map(format_rfc3339_ms),
        });
        self.audit_by(principal, AuditAction::ApiKeyCreate, format!("api_key:{id}"), details).await;
        Ok(CreatedApiKey { row, key })
    }

    /// The tenant's API keys (never their secrets), ordered by id; a group-scoped principal
    /// sees only the keys acting for its own user.
    pub async fn list_api_keys(&self, principal: &Principal) -> ServiceResult<Vec<ApiKey>> {
        self.authorize(principal, Permission::UsersRead).await?;
        let mut keys = self.store.list_api_keys(&principal.tenant).await?;
        if !principal.scope.is_whole_tenant() {
            keys.retain(|key| key.owner == principal.acting_user());
        }
        Ok(keys)
    }

    /// Deletes an API key: requests with it fail at once, its MQTT sessions and streams end.
    pub async fn delete_api_key(&self, principal: &Principal, id: &str) -> ServiceResult<()> {
        self.authorize(principal, Permission::UsersWrite).await?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServiceError::invalid("API key id must be hexadecimal"));
        }
        if !principal.scope.is_whole_tenant() {
            let key = self.store.get_api_key(id).await?;
            if key.tenant != principal.tenant || key.owner != principal.acting_user() {
                return Err(ServiceError::NotFound);
            }
        }
        self.store.delete_api_key(&principal.tenant, id).await?;
        self.publish(ControlEvent::ApiKeyRevoked { tenant: principal.tenant.clone(), key_id: id.to_owned() });
        self.audit_by(principal, AuditAction::ApiKeyDelete, format!("api_key:{id}"), json!({})).await;
        Ok(())
    }
}
