//! Login of people (SPEC §4): password (Argon2id), optional TOTP second factor, lockout after
//! repeated failures, and a signed stateless access token on success.
//!
//! Every failure before the password has checked out (unknown tenant, unknown user, wrong
//! password, disabled or locked user) answers the same 401 body after the same Argon2 work, so
//! the answer reveals nothing about which part was wrong. Every outcome is audited.

use axum::Json;
use axum::extract::State;
use rampart_core::{IdKind, PLATFORM_TENANT, validate_id};
use rampart_crypto::{AccessClaims, TotpSecret, random_id, verify_password, verify_password_dummy};
use rampart_platform::{Actor, AuditEntry};
use rampart_store::{StoreError, User};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ClientIp};
use crate::state::AppState;

/// Purpose label binding a sealed TOTP secret to its use.
pub(crate) const TOTP_PURPOSE: &str = "totp";
/// Failed logins of one user within [`FAILURE_WINDOW_MS`] that lock it.
const MAX_FAILURES: i64 = 5;
const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
const LOCKOUT_MS: i64 = 15 * 60 * 1000;
/// Longer passwords are refused without being hashed (the policy allows at most 256 chars).
const MAX_PASSWORD_BYTES: usize = 1024;

/// Body of `POST /api/v1/auth/login`. Not `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub tenant: String,
    pub username: String,
    pub password: String,
    /// The current 6-digit TOTP code, required once MFA is enabled.
    pub totp: Option<String>,
}

/// A fresh access token.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

/// Runs an Argon2 check off the async threads; `None` as hash runs the dummy check, which
/// costs the same and always fails.
async fn check_password(password: Zeroizing<String>, hash: Option<String>) -> bool {
    let task = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_password(&password, &hash),
        None => verify_password_dummy(&password),
    });
    task.await.unwrap_or(false)
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

    /// Whether this failure counts towards the user's lockout.
    fn counts(self) -> bool {
        matches!(self, Failure::BadPassword | Failure::BadTotp)
    }

    fn into_error(self) -> ApiError {
        match self {
            Failure::MfaMissing => ApiError::MfaRequired("a TOTP code is required"),
            _ => ApiError::Unauthorized,
        }
    }
}

struct Attempt<'a> {
    state: &'a AppState,
    tenant: &'a str,
    username: &'a str,
    source_ip: Option<String>,
}

impl Attempt<'_> {
    async fn audit(&self, tenant: &str, success: bool, action: &str, details: Value) {
        let actor = Actor::User(self.username.to_owned());
        let target = format!("user:{}", self.username);
        let entry = if success {
            AuditEntry::success(tenant, actor, action, target)
        } else {
            AuditEntry::failure(tenant, actor, action, target)
        };
        self.state.platform.audit.record(entry.from_ip(self.source_ip.clone()).with_details(details)).await;
    }

    /// Audits a failure, counts it against the user where it counts, and answers.
    async fn fail(&self, failure: Failure) -> ApiError {
        match failure {
            // An attempt on a tenant that does not exist has no chain of its own; it goes to
            // the platform's, without echoing the attacker's strings beyond the tenant id.
            Failure::UnknownTenant => {
                let details = json!({"reason": failure.reason(), "tenant": self.tenant});
                let entry = AuditEntry::failure(PLATFORM_TENANT, Actor::System, "auth.login", "user:unknown")
                    .from_ip(self.source_ip.clone())
                    .with_details(details);
                self.state.platform.audit.record(entry).await;
            }
            _ => {
                if failure.counts()
                    && let Err(error) = self.count_failure().await
                {
                    tracing::error!(%error, "could not record a failed login");
                }
                self.audit(self.tenant, false, "auth.login", json!({"reason": failure.reason()})).await;
            }
        }
        failure.into_error()
    }

    /// Adds a failure to the user's window and locks the user at the threshold. Re-reads the
    /// row so that a concurrent change (role, disable) is not overwritten with stale values.
    async fn count_failure(&self) -> ApiResult<()> {
        let platform = &self.state.platform;
        let now = platform.now_ms();
        let mut user = platform.store.get_user(self.tenant, self.username).await?;
        if now - user.failed_window_start > FAILURE_WINDOW_MS {
            user.failed_window_start = now;
            user.failed_logins = 0;
        }
        user.failed_logins += 1;
        let locks = user.failed_logins >= MAX_FAILURES;
        if locks {
            user.locked_until = now + LOCKOUT_MS;
            user.failed_logins = 0;
            user.failed_window_start = 0;
        }
        platform.store.update_user(&user).await?;
        if locks {
            let details = json!({"failures": MAX_FAILURES, "locked_for_s": LOCKOUT_MS / 1000});
            let entry =
                AuditEntry::success(self.tenant, Actor::System, "auth.lockout", format!("user:{}", self.username))
                    .from_ip(self.source_ip.clone())
                    .with_details(details);
            platform.audit.record(entry).await;
        }
        Ok(())
    }
}

/// Checks the TOTP code against the user's secret; a step at or before the last one accepted
/// is a replay. Returns the matched step.
async fn check_totp(state: &AppState, user: &User, code: &str) -> ApiResult<Option<i64>> {
    let Some(sealed) = &user.mfa_secret_sealed else { return Ok(None) };
    let bytes = state.platform.keyring.open_for_tenant(&user.tenant, TOTP_PURPOSE, sealed).await?;
    let secret = TotpSecret::from_bytes(&bytes)?;
    let now_s = u64::try_from(state.platform.now_ms() / 1000).unwrap_or(0);
    let step = secret.verify(code, now_s).and_then(|step| i64::try_from(step).ok());
    Ok(step.filter(|step| *step > user.mfa_last_step))
}

/// Logs a person in and returns a signed access token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 400, description = "Malformed body", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`: wrong tenant, user, password or TOTP code, or locked; `mfa_required`: a TOTP code is needed", body = crate::error::ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    ClientIp(source_ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let password = Zeroizing::new(body.password);
    let platform = &state.platform;
    // Syntactically impossible names are treated like unknown ones, after the same work.
    let tenant_valid = validate_id(IdKind::Tenant, &body.tenant).is_ok();
    let username_valid = validate_id(IdKind::Username, &body.username).is_ok();
    let tenant_label = if tenant_valid { body.tenant.as_str() } else { "invalid" };
    let username_label = if username_valid { body.username.as_str() } else { "invalid" };
    let attempt = Attempt { state: &state, tenant: tenant_label, username: username_label, source_ip };

    let tenant_exists = tenant_valid
        && match platform.store.get_tenant(&body.tenant).await {
            Ok(_) => true,
            Err(StoreError::NotFound) => false,
            Err(other) => return Err(other.into()),
        };
    let user = if tenant_exists && username_valid {
        match platform.store.get_user(&body.tenant, &body.username).await {
            Ok(user) => Some(user),
            Err(StoreError::NotFound) => None,
            Err(other) => return Err(other.into()),
        }
    } else {
        None
    };
    let oversized = password.len() > MAX_PASSWORD_BYTES;
    let hash = user.as_ref().filter(|_| !oversized).map(|u| u.password_hash.clone());
    let password_ok = if oversized {
        check_password(Zeroizing::new(String::new()), None).await
    } else {
        check_password(password, hash).await
    };
    let Some(user) = user else {
        let failure = if tenant_exists { Failure::UnknownUser } else { Failure::UnknownTenant };
        return Err(attempt.fail(failure).await);
    };
    let now = platform.now_ms();
    if user.locked_until > now {
        return Err(attempt.fail(Failure::Locked).await);
    }
    if !password_ok {
        return Err(attempt.fail(Failure::BadPassword).await);
    }
    if user.disabled {
        return Err(attempt.fail(Failure::Disabled).await);
    }
    let mut accepted_step = None;
    if user.mfa_enabled {
        let Some(code) = body.totp.as_deref() else {
            return Err(attempt.fail(Failure::MfaMissing).await);
        };
        match check_totp(&state, &user, code).await? {
            Some(step) => accepted_step = Some(step),
            None => return Err(attempt.fail(Failure::BadTotp).await),
        }
    }

    // Re-read so that a change made while Argon2 ran (disable, role change) is neither lost
    // nor bypassed, then store the accepted TOTP step and clear the failure counters.
    let mut fresh = platform.store.get_user(&user.tenant, &user.username).await?;
    if fresh.disabled || fresh.locked_until > now || fresh.password_hash != user.password_hash {
        return Err(attempt.fail(Failure::Disabled).await);
    }
    let mut dirty = fresh.failed_logins != 0 || fresh.failed_window_start != 0 || fresh.locked_until != 0;
    fresh.failed_logins = 0;
    fresh.failed_window_start = 0;
    fresh.locked_until = 0;
    if let Some(step) = accepted_step {
        // A concurrent login may have used the same code meanwhile: only one wins.
        if step <= fresh.mfa_last_step {
            return Err(attempt.fail(Failure::BadTotp).await);
        }
        fresh.mfa_last_step = step;
        dirty = true;
    }
    if dirty {
        platform.store.update_user(&fresh).await?;
    }

    let ttl = state.settings.access_token_ttl_s;
    let issued_at = now / 1000;
    let claims = AccessClaims {
        tenant: fresh.tenant.clone(),
        username: fresh.username.clone(),
        token_version: fresh.token_version,
        issued_at,
        expires_at: issued_at + ttl,
        token_id: random_id(16),
    };
    let access_token = platform.token_key.sign(&claims)?;
    attempt
        .audit(&fresh.tenant, true, "auth.login", json!({"mfa": user.mfa_enabled, "token_id": claims.token_id}))
        .await;
    Ok(Json(LoginResponse { access_token, token_type: "Bearer".to_owned(), expires_in: ttl }))
}
