//! Who is calling, decided once: a [`Principal`] is a person (access token) or an application
//! (API key), with its permissions and its [`Scope`] computed when it authenticates. Every
//! route and stream asks the same principal; a stream asks again ([`Platform::reauthenticate`])
//! so that authority stays live.
//!
//! - An access token names the tenant and user *incarnations* (`tuid`, `uid`): a token never
//!   works for whoever later gets a deleted tenant's or user's id. The user must be enabled
//!   and carry the token's version (a disable, password or role change kills old tokens).
//! - An API key acts for the user who owns it, never further: its permissions are its roles'
//!   within its owner's current permissions, its scope its groups within its owner's current
//!   scope, and it dies with its owner (deleted, disabled, re-created).

use rampart_core::{Permission, PermissionSet, Scope, TenantPolicy, Username, builtin_role_permissions};
use rampart_crypto::{ct_eq, sha256};
use rampart_store::{ApiKey, StoreError, User};
use serde_json::json;

use crate::audit::{Actor, AuditEntry};
use crate::error::{PlatformError, ServiceError, ServiceResult};
use crate::platform::Platform;

/// Prefix of application API keys: `rak_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "rak_";
/// Prefix of access tokens (PASETO v4.public).
pub const ACCESS_TOKEN_PREFIX: &str = "v4.public.";

/// How the principal authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    User { username: String, uid: String },
    ApiKey { id: String, owner: String },
}

/// What a request may do with a principal that has not enrolled MFA in a tenant requiring it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Anything its permissions allow.
    Any,
    /// Only enrol (read itself, change its password, set up MFA).
    Enrolment,
}

/// An authenticated caller with its effective authority.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    /// The incarnation of the tenant the principal belongs to.
    pub tenant_uid: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
    pub permissions: PermissionSet,
    pub scope: Scope,
    pub source_ip: Option<String>,
    /// When the credential ends (token expiry, key expiry), epoch ms.
    pub expires_at_ms: Option<i64>,
    /// The credential, to authenticate again (streams).
    credential: Credential,
}

/// What the principal presented, kept to check it again.
#[derive(Debug, Clone)]
enum Credential {
    AccessToken { token_version: i64 },
    ApiKey { key_hash: Vec<u8> },
}

impl Principal {
    /// The audit actor for this principal.
    pub fn actor(&self) -> Actor {
        match &self.kind {
            PrincipalKind::User { username, .. } => Actor::User(username.clone()),
            PrincipalKind::ApiKey { id, .. } => Actor::User(format!("api-key:{id}")),
        }
    }

    /// The username, if the principal is a person.
    pub fn username(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::User { username, .. } => Some(username),
            PrincipalKind::ApiKey { .. } => None,
        }
    }

    /// The user whose authority this principal carries: the person, or the key's owner.
    pub fn acting_user(&self) -> &str {
        match &self.kind {
            PrincipalKind::User { username, .. } => username,
            PrincipalKind::ApiKey { owner, .. } => owner,
        }
    }

    /// The API key id, if the principal is an application.
    pub fn api_key_id(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::ApiKey { id, .. } => Some(id),
            PrincipalKind::User { .. } => None,
        }
    }

    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// An audit entry by this principal, from its address.
    pub(crate) fn entry(&self, success: bool, action: rampart_core::AuditAction, target: String) -> AuditEntry {
        let entry = match success {
            true => AuditEntry::success(&self.tenant, self.actor(), action, target),
            false => AuditEntry::failure(&self.tenant, self.actor(), action, target),
        };
        entry.from_ip(self.source_ip.clone())
    }
}

/// The union of the permissions of `roles` in `tenant` (built-in or custom; unknown roles add
/// none).
pub(crate) async fn role_permissions(
    platform: &Platform,
    tenant: &str,
    roles: &[String],
) -> ServiceResult<PermissionSet> {
    let mut permissions = PermissionSet::new();
    for role in roles {
        if let Some(builtin) = builtin_role_permissions(role) {
            permissions.extend(builtin);
            continue;
        }
        match platform.store.get_role(tenant, role).await {
            Ok(custom) => permissions.extend(custom.permissions.iter().filter_map(|p| Permission::parse(p))),
            Err(StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(permissions)
}

impl Platform {
    /// The scope of someone confined to `groups` in `tenant` (none: the whole tenant).
    pub(crate) async fn scope_of(&self, tenant: &str, groups: &[String]) -> ServiceResult<Scope> {
        if groups.is_empty() {
            return Ok(Scope::Tenant);
        }
        let tree = self.store.list_groups(tenant).await?;
        Ok(Scope::of(groups, tree.iter().map(|group| (group.id.as_str(), group.parent.as_deref()))))
    }

    /// Authenticates an `Authorization: Bearer` credential: an access token or an API key.
    pub async fn authenticate_bearer(
        &self,
        bearer: &str,
        source_ip: Option<String>,
        purpose: Purpose,
    ) -> ServiceResult<Principal> {
        if bearer.starts_with(ACCESS_TOKEN_PREFIX) {
            return self.authenticate_access_token(bearer, source_ip, purpose).await;
        }
        if bearer.starts_with(API_KEY_PREFIX) {
            return self.authenticate_api_key(bearer.as_bytes(), source_ip).await;
        }
        Err(ServiceError::Unauthorized)
    }

    async fn authenticate_access_token(
        &self,
        token: &str,
        source_ip: Option<String>,
        purpose: Purpose,
    ) -> ServiceResult<Principal> {
        let now_s = self.now_ms() / 1000;
        let claims = self.token_key.verify(token, now_s).map_err(|_| ServiceError::Unauthorized)?;
        let credential = Credential::AccessToken { token_version: claims.token_version };
        let principal = self
            .user_principal(
                &claims.tenant,
                &claims.tenant_uid,
                &claims.username,
                &claims.user_uid,
                credential,
                source_ip,
                claims.expires_at.saturating_mul(1000),
            )
            .await?;
        if purpose == Purpose::Any && self.mfa_missing(&principal).await? {
            return Err(ServiceError::MfaRequired("the tenant requires MFA: enroll at /api/v1/me/mfa first"));
        }
        Ok(principal)
    }

    /// Whether the principal is a person without MFA in a tenant that requires it.
    async fn mfa_missing(&self, principal: &Principal) -> ServiceResult<bool> {
        let PrincipalKind::User { username, .. } = &principal.kind else { return Ok(false) };
        let user = self.store.get_user(&principal.tenant, username).await?;
        if user.mfa_enabled {
            return Ok(false);
        }
        Ok(self.tenant_policy_of(&principal.tenant).await?.require_mfa)
    }

    /// The tenant policy as stored, with defaults.
    pub(crate) async fn tenant_policy_of(&self, tenant: &str) -> ServiceResult<TenantPolicy> {
        let stored = self.store.get_tenant_policy(tenant).await?;
        TenantPolicy::from_stored(stored.as_deref())
            .map_err(|error| ServiceError::Internal(PlatformError::StoredDocument(error.to_string())))
    }

    /// The live user `(tenant, username)` of incarnation `uid` in tenant incarnation
    /// `tenant_uid`, as a principal; `Unauthorized` when any of it changed.
    #[allow(clippy::too_many_arguments)]
    async fn user_principal(
        &self,
        tenant: &str,
        tenant_uid: &str,
        username: &str,
        uid: &str,
        credential: Credential,
        source_ip: Option<String>,
        expires_at_ms: i64,
    ) -> ServiceResult<Principal> {
        let live_tenant = self.incarnations.current(tenant).await?;
        if live_tenant.as_deref() != Some(tenant_uid) {
            return Err(ServiceError::Unauthorized);
        }
        let user = match self.store.get_user(tenant, username).await {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(ServiceError::Unauthorized),
            Err(other) => return Err(other.into()),
        };
        let Credential::AccessToken { token_version } = credential else { return Err(ServiceError::Unauthorized) };
        if user.uid != uid || user.disabled || user.token_version != token_version {
            return Err(ServiceError::Unauthorized);
        }
        let permissions = role_permissions(self, tenant, &user.roles).await?;
        let scope = self.scope_of(tenant, &user.groups).await?;
        Ok(Principal {
            tenant: user.tenant,
            tenant_uid: tenant_uid.to_owned(),
            kind: PrincipalKind::User { username: user.username, uid: user.uid },
            roles: user.roles,
            permissions,
            scope,
            source_ip,
            expires_at_ms: Some(expires_at_ms),
            credential,
        })
    }

    /// Checks an API key (`rak_<id>_<secret>`) on its own, as a bearer credential: the id names
    /// the stored key, whose SHA-256 must match in constant time, which must not be expired,
    /// and whose owner must still be the same live, enabled user.
    pub async fn authenticate_api_key(&self, key: &[u8], source_ip: Option<String>) -> ServiceResult<Principal> {
        let Ok(key_text) = std::str::from_utf8(key) else { return Err(ServiceError::Unauthorized) };
        let Some((key_id, _)) = key_text.strip_prefix(API_KEY_PREFIX).and_then(|rest| rest.split_once('_')) else {
            return Err(ServiceError::Unauthorized);
        };
        let stored = match self.store.get_api_key(key_id).await {
            Ok(stored) => stored,
            Err(StoreError::NotFound) => return Err(ServiceError::Unauthorized),
            Err(other) => return Err(other.into()),
        };
        if !ct_eq(&sha256(key), &stored.key_hash) {
            return Err(ServiceError::Unauthorized);
        }
        self.api_key_principal(stored, source_ip).await
    }

    async fn api_key_principal(&self, stored: ApiKey, source_ip: Option<String>) -> ServiceResult<Principal> {
        if stored.expires_at.is_some_and(|at| at <= self.now_ms()) {
            return Err(ServiceError::Unauthorized);
        }
        let Some(tenant_uid) = self.incarnations.current(&stored.tenant).await? else {
            return Err(ServiceError::Unauthorized);
        };
        let owner: User = match self.store.get_user(&stored.tenant, &stored.owner).await {
            Ok(owner) => owner,
            Err(StoreError::NotFound) => return Err(ServiceError::Unauthorized),
            Err(other) => return Err(other.into()),
        };
        if stored.owner.is_empty() || owner.uid != stored.owner_uid || owner.disabled {
            return Err(ServiceError::Unauthorized);
        }
        let own = role_permissions(self, &stored.tenant, &stored.roles).await?;
        let owners = role_permissions(self, &stored.tenant, &owner.roles).await?;
        let permissions: PermissionSet = own.intersection(&owners).copied().collect();
        let scope = self
            .scope_of(&stored.tenant, &owner.groups)
            .await?
            .intersect(&self.scope_of(&stored.tenant, &stored.groups).await?);
        Ok(Principal {
            tenant: stored.tenant,
            tenant_uid,
            kind: PrincipalKind::ApiKey { id: stored.id, owner: stored.owner },
            roles: stored.roles,
            permissions,
            scope,
            source_ip,
            expires_at_ms: stored.expires_at,
            credential: Credential::ApiKey { key_hash: stored.key_hash },
        })
    }

    /// Authenticates the principal again, as it stands now: a stream asks this every few
    /// seconds and ends when it fails. Its credential must still be valid (not expired, not
    /// deleted, its user enabled with the same token version and incarnation), and its
    /// authority is recomputed.
    pub async fn reauthenticate(&self, principal: &Principal) -> ServiceResult<Principal> {
        if principal.expires_at_ms.is_some_and(|at| at <= self.now_ms()) {
            return Err(ServiceError::Unauthorized);
        }
        match (&principal.kind, &principal.credential) {
            (PrincipalKind::User { username, uid }, Credential::AccessToken { .. }) => {
                self.user_principal(
                    &principal.tenant,
                    &principal.tenant_uid,
                    username,
                    uid,
                    principal.credential.clone(),
                    principal.source_ip.clone(),
                    principal.expires_at_ms.unwrap_or(i64::MAX),
                )
                .await
            }
            (PrincipalKind::ApiKey { id, .. }, Credential::ApiKey { key_hash }) => {
                let stored = match self.store.get_api_key(id).await {
                    Ok(stored) => stored,
                    Err(StoreError::NotFound) => return Err(ServiceError::Unauthorized),
                    Err(other) => return Err(other.into()),
                };
                if !ct_eq(key_hash, &stored.key_hash) || stored.tenant != principal.tenant {
                    return Err(ServiceError::Unauthorized);
                }
                let again = self.api_key_principal(stored, principal.source_ip.clone()).await?;
                match again.tenant_uid == principal.tenant_uid {
                    true => Ok(again),
                    false => Err(ServiceError::Unauthorized),
                }
            }
            _ => Err(ServiceError::Unauthorized),
        }
    }

    /// Succeeds if the principal holds `permission`; otherwise audits the refusal
    /// (`access.denied`) and answers `Forbidden`.
    pub async fn authorize(&self, principal: &Principal, permission: Permission) -> ServiceResult<()> {
        if principal.has(permission) {
            return Ok(());
        }
        self.deny(principal, permission.as_str(), json!({"permission": permission.as_str()})).await;
        Err(ServiceError::Forbidden)
    }

    /// [`Platform::authorize`] for a change of tenant-wide settings, which also needs the whole
    /// tenant in scope: a principal confined to device groups cannot change what applies to
    /// everyone.
    pub async fn authorize_tenant_wide(&self, principal: &Principal, permission: Permission) -> ServiceResult<()> {
        self.authorize(principal, permission).await?;
        if principal.scope.is_whole_tenant() {
            return Ok(());
        }
        self.deny(principal, permission.as_str(), json!({"reason": "tenant-wide settings need the whole tenant"}))
            .await;
        Err(ServiceError::Forbidden)
    }

    /// Refuses anything `wanted` holds that the principal does not: nobody grants more than
    /// they hold.
    pub(crate) async fn authorize_all(&self, principal: &Principal, wanted: &PermissionSet) -> ServiceResult<()> {
        let missing: Vec<&str> = wanted.difference(&principal.permissions).map(|p| p.as_str()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.deny(principal, "permissions", json!({"missing": missing})).await;
        Err(ServiceError::Forbidden)
    }

    /// Audits a refusal of the principal.
    pub(crate) async fn deny(&self, principal: &Principal, target: &str, details: serde_json::Value) {
        let entry = principal.entry(false, rampart_core::AuditAction::AccessDenied, target.to_owned());
        self.audit.record(entry.with_details(details)).await;
    }

    /// Records a successful action of the principal (also for the service crates above this
    /// one, such as the data plane).
    pub async fn audit_by(
        &self,
        principal: &Principal,
        action: rampart_core::AuditAction,
        target: impl Into<String>,
        details: serde_json::Value,
    ) {
        self.audit.record(principal.entry(true, action, target.into()).with_details(details)).await;
    }

    /// The username the principal may act on as itself (`/me` routes): people only.
    pub(crate) fn own_username(&self, principal: &Principal) -> ServiceResult<Username> {
        match &principal.kind {
            PrincipalKind::User { username, .. } => Ok(Username::parse(username)?),
            PrincipalKind::ApiKey { .. } => Err(ServiceError::Forbidden),
        }
    }
}
