//! Logging in and one's own account (SPEC §4): password (Argon2id, bounded concurrency),
//! optional TOTP, lockout, a signed stateless access token naming the tenant and user
//! incarnations; password change, TOTP enrolment and confirmation.
//!
//! The lockout holds under concurrent requests: an attempt is counted in the store *before*
//! its password is checked, so no more than five passwords are checked per window however
//! many arrive at once. A TOTP step is accepted by a conditional write, so one code logs in
//! once. Every failure before the password has checked out answers the same 401 after the
//! same Argon2 work; every outcome is audited.

use rampart_core::{AuditAction, PLATFORM_TENANT, TenantId, Username, check_password_policy};
use rampart_crypto::{AccessClaims, TotpSecret, random_id};
use rampart_store::{LoginGate, StoreError, User, UserChanges};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditEntry};
use crate::bus::ControlEvent;
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::principal::{Principal, PrincipalKind};

/// Purpose label binding a sealed TOTP secret to its use.
const TOTP_PURPOSE: &str = "totp";
const TOTP_ISSUER: &str = "Rampart";
/// Login attempts of one user within [`ATTEMPT_WINDOW_MS`] before it is locked.
const MAX_ATTEMPTS: i64 = 5;
const ATTEMPT_WINDOW_MS: i64 = 15 * 60 * 1000;
const LOCKOUT_MS: i64 = 15 * 60 * 1000;
/// Longer passwords are refused without being hashed (the policy allows at most 256 chars).
const MAX_PASSWORD_BYTES: usize = 1024;

/// A login attempt.
pub struct LoginRequest {
    pub tenant: String,
    pub username: String,
    pub password: Zeroizing<String>,
    pub totp: Option<String>,
    pub source_ip: Option<String>,
}

/// A fresh access token.
pub struct AccessToken {
    pub token: String,
    pub expires_in_s: i64,
}

/// The principal as it sees itself.
pub struct Me {
    pub tenant: String,
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub mfa_enabled: bool,
    pub api_key_id: Option<String>,
}

/// A TOTP secret to load into an authenticator app.
pub struct MfaEnrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

/// Why a login failed, for the audit record only; the client always sees the same answer.
#[derive(Debug, Clone, Copy)]
enum Failure {
    UnknownTenant,
    UnknownUser,
    BadPassword,
    Disabled,
    Locked,
    MfaMissing,
    BadTotp,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::UnknownTenant => "unknown_tenant",
            Failure::UnknownUser => "unknown_user",
            Failure::BadPassword => "bad_password",
            Failure::Disabled => "disabled",
            Failure::Locked => "locked",
            Failure::MfaMissing => "mfa_required",
            Failure::BadTotp => "bad_totp",
        }
    }

    fn into_error(self) -> ServiceError {
        match self {
            Failure::MfaMissing => ServiceError::MfaRequired("a TOTP code is required"),
            _ => ServiceError::Unauthorized,
        }
    }
}

/// One login attempt on its way through the checks.
struct Attempt<'a> {
    platform: &'a Platform,
    tenant: &'a str,
    username: &'a str,
    source_ip: Option<String>,
}

impl Attempt<'_> {
    async fn audit(&self, success: bool, details: Value) {
        let actor = Actor::User(self.username.to_owned());
        let target = format!("user:{}", self.username);
        let entry = match success {
            true => AuditEntry::success(self.tenant, actor, AuditAction::AuthLogin, target),
            false => AuditEntry::failure(self.tenant, actor, AuditAction::AuthLogin, target),
        };
        self.platform.audit.record(entry.from_ip(self.source_ip.clone()).with_details(details)).await;
    }

    /// Audits a failure, counts it against the source address, and answers.
    async fn fail(&self, failure: Failure) -> ServiceError {
        let tenant = (!matches!(failure, Failure::UnknownTenant)).then_some(self.tenant);
        self.platform.note_auth_failure(self.source_ip.as_deref(), tenant).await;
        match failure {
            // An attempt on a tenant that does not exist has no chain of its own; it goes to
            // the platform's, without echoing the attacker's strings beyond the tenant id.
            Failure::UnknownTenant => {
                let details = json!({"reason": failure.reason(), "tenant": self.tenant});
                let entry = AuditEntry::failure(PLATFORM_TENANT, Actor::System, AuditAction::AuthLogin, "user:unknown")
                    .from_ip(self.source_ip.clone())
                    .with_details(details);
                self.platform.audit.record(entry).await;
            }
            _ => self.audit(false, json!({"reason": failure.reason()})).await,
        }
        failure.into_error()
    }

    /// A counted attempt failed: the store locks the user once the window's attempts are used.
    async fn counted_failure(&self, failure: Failure) -> ServiceError {
        let now = self.platform.now_ms();
        match self.platform.store.login_failed(self.tenant, self.username, MAX_ATTEMPTS, now + LOCKOUT_MS).await {
            Ok(true) => {
                let details = json!({"failures": MAX_ATTEMPTS, "locked_for_s": LOCKOUT_MS / 1000});
                let target = format!("user:{}", self.username);
                let entry = AuditEntry::success(self.tenant, Actor::System, AuditAction::AuthLockout, target)
                    .from_ip(self.source_ip.clone())
                    .with_details(details);
                self.platform.audit.record(entry).await;
            }
            Ok(false) => {}
            Err(error) => tracing::error!(%error, "could not record a failed login"),
        }
        self.fail(failure).await
    }

    /// A counted attempt ended in a way that does not count against the user.
    async fn uncounted_failure(&self, failure: Failure) -> ServiceError {
        if let Err(error) = self.platform.store.login_not_counted(self.tenant, self.username).await {
            tracing::error!(%error, "could not take back a login attempt");
        }
        self.fail(failure).await
    }
}

impl Platform {
    /// Logs a person in and answers a signed access token.
    pub async fn login(&self, request: LoginRequest) -> ServiceResult<AccessToken> {
        // Syntactically impossible names are treated like unknown ones, after the same work.
        let tenant_valid = TenantId::parse(&request.tenant).is_ok();
        let username_valid = Username::parse(&request.username).is_ok();
        let tenant = if tenant_valid { request.tenant.as_str() } else { "invalid" };
        let username = if username_valid { request.username.as_str() } else { "invalid" };
        let attempt = Attempt { platform: self, tenant, username, source_ip: request.source_ip.clone() };

        let tenant_uid = match tenant_valid {
            true => self.incarnations.current(tenant).await?,
            false => None,
        };
        let user = match (&tenant_uid, username_valid) {
            (Some(_), true) => match self.store.get_user(tenant, username).await {
                Ok(user) => Some(user),
                Err(StoreError::NotFound) => None,
                Err(other) => return Err(other.into()),
            },
            _ => None,
        };
        let now = self.now_ms();
        let gate = match &user {
            Some(_) => self.store.begin_login_attempt(tenant, username, now, ATTEMPT_WINDOW_MS, MAX_ATTEMPTS).await?,
            None => LoginGate::Open,
        };
        let oversized = request.password.len() > MAX_PASSWORD_BYTES;
        let checked_hash =
            user.as_ref().filter(|_| !oversized && gate == LoginGate::Open).map(|u| u.password_hash.clone());
        let password = if oversized { Zeroizing::new(String::new()) } else { request.password };
        let password_ok = self.verify_password(password, checked_hash).await?;
        let (Some(user), Some(tenant_uid)) = (user, tenant_uid) else {
            let failure = if tenant_valid && self.incarnations.current(tenant).await?.is_some() {
                Failure::UnknownUser
            } else {
                Failure::UnknownTenant
            };
            return Err(attempt.fail(failure).await);
        };
        if gate == LoginGate::Closed {
            return Err(attempt.fail(Failure::Locked).await);
        }
        if !password_ok {
            return Err(attempt.counted_failure(Failure::BadPassword).await);
        }
        if user.disabled {
            return Err(attempt.uncounted_failure(Failure::Disabled).await);
        }
        if user.mfa_enabled {
            let Some(code) = request.totp.as_deref() else {
                return Err(attempt.uncounted_failure(Failure::MfaMissing).await);
            };
            let accepted = match self.totp_step(&user, user.mfa_secret_sealed.as_deref(), code).await? {
                Some(step) => self.store.accept_totp_step(tenant, username, &user.uid, step).await?,
                None => false,
            };
            if !accepted {
                return Err(attempt.counted_failure(Failure::BadTotp).await);
            }
        }
        // Re-read so that a change made while Argon2 ran (disable, password change) is not
        // bypassed.
        let fresh = self.store.get_user(tenant, username).await?;
        if fresh.disabled || fresh.uid != user.uid || fresh.password_hash != user.password_hash {
            return Err(attempt.uncounted_failure(Failure::Disabled).await);
        }
        self.store.login_succeeded(tenant, username).await?;
        let ttl = self.settings.access_token_ttl_s;
        let issued_at = now / 1000;
        let claims = AccessClaims {
            tenant: fresh.tenant.clone(),
            tenant_uid,
            username: fresh.username.clone(),
            user_uid: fresh.uid.clone(),
            token_version: fresh.token_version,
            issued_at,
            expires_at: issued_at + ttl,
            token_id: random_id(16),
        };
        let token = self.token_key.sign(&claims)?;
        attempt.audit(true, json!({"mfa": fresh.mfa_enabled, "token_id": claims.token_id})).await;
        Ok(AccessToken { token, expires_in_s: ttl })
    }

    /// The TOTP time step `code` matches for the sealed secret, if any (replays are refused
    /// by the store's conditional write, not here).
    async fn totp_step(&self, user: &User, sealed: Option<&[u8]>, code: &str) -> ServiceResult<Option<i64>> {
        let Some(sealed) = sealed else { return Ok(None) };
        let bytes = self.keyring.open_for_tenant(&user.tenant, TOTP_PURPOSE, sealed).await?;
        let secret = TotpSecret::from_bytes(&bytes)?;
        let now_s = u64::try_from(self.now_ms() / 1000).unwrap_or(0);
        Ok(secret.verify(code.trim(), now_s).and_then(|step| i64::try_from(step).ok()))
    }

    /// Who the principal is and what it may do.
    pub async fn me(&self, principal: &Principal) -> ServiceResult<Me> {
        let (mfa_enabled, api_key_id) = match &principal.kind {
            PrincipalKind::User { username, .. } => {
                (self.store.get_user(&principal.tenant, username).await?.mfa_enabled, None)
            }
            PrincipalKind::ApiKey { id, .. } => (false, Some(id.clone())),
        };
        Ok(Me {
            tenant: principal.tenant.clone(),
            username: principal.username().map(str::to_owned),
            roles: principal.roles.clone(),
            permissions: principal.permissions.iter().map(|p| p.as_str().to_owned()).collect(),
            mfa_enabled,
            api_key_id,
        })
    }

    /// The principal's own user row (people only; API keys have no password and no MFA).
    async fn own_user(&self, principal: &Principal) -> ServiceResult<User> {
        let username = self.own_username(principal)?;
        let user = self.store.get_user(&principal.tenant, username.as_str()).await?;
        match &principal.kind {
            PrincipalKind::User { uid, .. } if *uid == user.uid => Ok(user),
            _ => Err(ServiceError::Unauthorized),
        }
    }

    /// Changes the principal's password; every token issued before stops working.
    pub async fn change_own_password(
        &self,
        principal: &Principal,
        current: Zeroizing<String>,
        new: Zeroizing<String>,
    ) -> ServiceResult<()> {
        let user = self.own_user(principal).await?;
        let target = format!("user:{}", user.username);
        if !self.verify_password(current, Some(user.password_hash.clone())).await? {
            let entry = principal.entry(false, AuditAction::UserPasswordChange, target);
            self.audit.record(entry.with_details(json!({"reason": "wrong current password"}))).await;
            return Err(ServiceError::Unauthorized);
        }
        check_password_policy(&user.username, &new).map_err(|error| ServiceError::invalid(error.to_string()))?;
        let changes = UserChanges {
            password: Some((self.hash_password(new).await?, self.now_ms())),
            revoke_tokens: true,
            expect_password_hash: Some(user.password_hash.clone()),
            ..UserChanges::default()
        };
        match self.store.update_user(&user.tenant, &user.username, &user.uid, &changes).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict("the password changed meanwhile".into()));
            }
            Err(other) => return Err(other.into()),
        }
        self.publish(ControlEvent::PrincipalChanged { tenant: user.tenant.clone(), username: user.username.clone() });
        self.audit_by(principal, AuditAction::UserPasswordChange, target, json!({})).await;
        Ok(())
    }

    /// Starts TOTP enrolment: a new secret, pending until confirmed with a code.
    pub async fn enroll_mfa(&self, principal: &Principal) -> ServiceResult<MfaEnrolment> {
        let user = self.own_user(principal).await?;
        if user.mfa_enabled {
            return Err(ServiceError::Conflict("MFA is already enabled".to_owned()));
        }
        let secret = TotpSecret::generate();
        let sealed = self.keyring.seal_for_tenant(&user.tenant, TOTP_PURPOSE, secret.expose_bytes()).await?;
        let changes = UserChanges { mfa_pending_sealed: Some(Some(sealed)), ..UserChanges::default() };
        self.store.update_user(&user.tenant, &user.username, &user.uid, &changes).await?;
        self.audit_by(principal, AuditAction::MfaEnroll, format!("user:{}", user.username), json!({})).await;
        let account = format!("{}@{}", user.username, user.tenant);
        Ok(MfaEnrolment { secret_base32: secret.base32(), otpauth_uri: secret.otpauth_uri(TOTP_ISSUER, &account) })
    }

    /// Confirms the pending TOTP secret with a current code and turns MFA on.
    pub async fn confirm_mfa(&self, principal: &Principal, code: &str) -> ServiceResult<()> {
        let user = self.own_user(principal).await?;
        let target = format!("user:{}", user.username);
        let Some(pending) = user.mfa_pending_sealed.clone() else {
            return Err(ServiceError::invalid("no MFA enrolment is pending: POST /api/v1/me/mfa first"));
        };
        let enabled = match self.totp_step(&user, Some(&pending), code).await? {
            Some(step) => self.store.enable_mfa(&user.tenant, &user.username, &user.uid, &pending, step).await?,
            None => false,
        };
        if !enabled {
            let entry = principal.entry(false, AuditAction::MfaEnable, target);
            self.audit.record(entry.with_details(json!({"reason": "wrong code"}))).await;
            return Err(ServiceError::invalid("the code does not match the pending secret"));
        }
        self.audit_by(principal, AuditAction::MfaEnable, target, json!({})).await;
        Ok(())
    }
}
