//! Who is calling: the [`Principal`] extractor authenticates `Authorization: Bearer` access
//! tokens (people) and API keys (applications), and every permission check goes through
//! [`Principal::require`], which audits refusals.

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rampart_core::{Permission, PermissionSet, groups_in_scope};
use rampart_platform::{Actor, AuditEntry, DeviceAuthError};
use rampart_store::{Store, StoreError};

use crate::error::{ApiError, ApiResult};
use crate::extract::client_ip;
use crate::state::AppState;

/// Prefix of API keys: `rak_<id>_<secret>`.
pub use rampart_platform::API_KEY_PREFIX;
const ACCESS_TOKEN_PREFIX: &str = "v4.public.";
/// Routes a user may still call while the tenant requires MFA they have not enrolled.
const ENROLMENT_PATHS: [&str; 4] = ["/api/v1/me", "/api/v1/me/mfa", "/api/v1/me/mfa/confirm", "/api/v1/me/password"];

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    User { username: String },
    ApiKey { id: String },
}

/// An authenticated caller of the API, with its effective permissions.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub kind: PrincipalKind,
    pub roles: Vec<String>,
    pub permissions: PermissionSet,
    /// Device groups the caller is confined to; empty means the whole tenant.
    pub groups: Vec<String>,
    pub source_ip: Option<String>,
}

impl Principal {
    /// The audit actor for this caller.
    pub fn actor(&self) -> Actor {
        match &self.kind {
            PrincipalKind::User { username } => Actor::User(username.clone()),
            PrincipalKind::ApiKey { id } => Actor::User(format!("api-key:{id}")),
        }
    }

    /// The username, if the caller is a person.
    pub fn username(&self) -> Option<&str> {
        match &self.kind {
            PrincipalKind::User { username } => Some(username),
            PrincipalKind::ApiKey { .. } => None,
        }
    }

    /// Records a successful action by this caller in the audit chain.
    pub async fn audit(&self, state: &AppState, action: &str, target: impl Into<String>, details: serde_json::Value) {
        let entry = AuditEntry::success(&self.tenant, self.actor(), action, target)
            .from_ip(self.source_ip.clone())
            .with_details(details);
        state.platform.audit.record(entry).await;
    }

    /// Records a refused or failed action by this caller in the audit chain.
    pub async fn audit_failure(
        &self,
        state: &AppState,
        action: &str,
        target: impl Into<String>,
        details: serde_json::Value,
    ) {
        let entry = AuditEntry::failure(&self.tenant, self.actor(), action, target)
            .from_ip(self.source_ip.clone())
            .with_details(details);
        state.platform.audit.record(entry).await;
    }

    /// Succeeds if the caller holds `permission`; otherwise audits the refusal and answers 403.
    pub async fn require(&self, state: &AppState, permission: Permission) -> ApiResult<()> {
        if self.permissions.contains(&permission) {
            return Ok(());
        }
        let details = serde_json::json!({"permission": permission.as_str()});
        self.audit_failure(state, "access.denied", permission.as_str(), details).await;
        Err(ApiError::Forbidden)
    }

    /// The device groups the caller may see, or `None` when not confined to groups.
    pub async fn device_scope(&self, state: &AppState) -> ApiResult<Option<BTreeSet<String>>> {
        if self.groups.is_empty() {
            return Ok(None);
        }
        let tree = state.platform.store.list_groups(&self.tenant).await?;
        let scope = groups_in_scope(&self.groups, tree.iter().map(|g| (g.id.as_str(), g.parent.as_deref())));
        Ok(Some(scope))
    }

    /// Whether a device in `group` is visible to the caller (`scope` from [`Principal::device_scope`]).
    pub fn sees_group(scope: &Option<BTreeSet<String>>, group: Option<&str>) -> bool {
        match scope {
            None => true,
            Some(groups) => group.is_some_and(|g| groups.contains(g)),
        }
    }
}

/// The union of the permissions of `roles` in `tenant` (built-in or custom; unknown roles add none).
pub async fn resolve_permissions(store: &dyn Store, tenant: &str, roles: &[String]) -> ApiResult<PermissionSet> {
    Ok(rampart_platform::resolve_role_permissions(store, tenant, roles).await?)
}

/// Whether the tenant's policy requires MFA of every user.
pub async fn tenant_requires_mfa(store: &dyn Store, tenant: &str) -> ApiResult<bool> {
    let Some(policy) = store.get_tenant_policy(tenant).await? else { return Ok(false) };
    let policy: serde_json::Value = serde_json::from_str(&policy).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(policy.get("require_mfa").and_then(serde_json::Value::as_bool).unwrap_or(false))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let source_ip = client_ip(parts);
        if bearer.starts_with(ACCESS_TOKEN_PREFIX) {
            return user_principal(state, bearer, source_ip, parts.uri.path()).await;
        }
        if bearer.starts_with(API_KEY_PREFIX) {
            return api_key_principal(state, bearer, source_ip).await;
        }
        Err(ApiError::Unauthorized)
    }
}

async fn user_principal(state: &AppState, token: &str, source_ip: Option<String>, path: &str) -> ApiResult<Principal> {
    let platform = &state.platform;
    let now_s = platform.now_ms() / 1000;
    let claims = platform.token_key.verify(token, now_s).map_err(|_| ApiError::Unauthorized)?;
    let user = match platform.store.get_user(&claims.tenant, &claims.username).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(ApiError::Unauthorized),
        Err(other) => return Err(other.into()),
    };
    if user.disabled || user.token_version != claims.token_version {
        return Err(ApiError::Unauthorized);
    }
    if !user.mfa_enabled
        && !ENROLMENT_PATHS.contains(&path)
        && tenant_requires_mfa(platform.store.as_ref(), &user.tenant).await?
    {
        return Err(ApiError::MfaRequired("the tenant requires MFA: enroll at /api/v1/me/mfa first"));
    }
    let permissions = resolve_permissions(platform.store.as_ref(), &user.tenant, &user.roles).await?;
    Ok(Principal {
        tenant: user.tenant,
        kind: PrincipalKind::User { username: user.username },
        roles: user.roles,
        permissions,
        groups: user.groups,
        source_ip,
    })
}

async fn api_key_principal(state: &AppState, key: &str, source_ip: Option<String>) -> ApiResult<Principal> {
    let application = match state.platform.verify_api_key(key.as_bytes()).await {
        Ok(application) => application,
        Err(DeviceAuthError::Platform(cause)) => return Err(cause.into()),
        Err(_) => return Err(ApiError::Unauthorized),
    };
    Ok(Principal {
        tenant: application.tenant,
        kind: PrincipalKind::ApiKey { id: application.key_id },
        roles: application.roles,
        permissions: application.permissions,
        groups: Vec::new(),
        source_ip,
    })
}
