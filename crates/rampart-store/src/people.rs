//! People and access: users (each incarnation with its own `uid`), custom roles, device groups
//! and API keys. User rows are never written back whole: edits name the columns they change,
//! login counters move in SQL, a TOTP step is accepted only if it is newer than the last one.

use std::fmt;

use async_trait::async_trait;

use crate::sql_store::{Select, SqlStore};
use crate::table::Table;
use crate::value::{Row, Statement, Value, list_value};
use crate::{Page, StoreError, StoreResult};

/// A person who logs in to one tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub tenant: String,
    pub username: String,
    /// This incarnation of the username: random, never reused. Empty for users created before
    /// incarnations existed.
    pub uid: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    /// Device groups the user is confined to; empty means the whole tenant.
    pub groups: Vec<String>,
    pub disabled: bool,
    /// Bumped on disable, password change and role change: older access tokens stop working.
    pub token_version: i64,
    pub mfa_enabled: bool,
    /// Confirmed TOTP secret, sealed under the tenant key.
    pub mfa_secret_sealed: Option<Vec<u8>>,
    /// Secret issued by enrolment but not yet confirmed, sealed under the tenant key.
    pub mfa_pending_sealed: Option<Vec<u8>>,
    /// The last TOTP time step accepted (replay protection).
    pub mfa_last_step: i64,
    /// E-mail address, sealed under the tenant key.
    pub email_sealed: Option<Vec<u8>>,
    /// Login attempts counted in the current window (see [`PeopleStore::begin_login_attempt`]).
    pub failed_logins: i64,
    pub failed_window_start: i64,
    pub locked_until: i64,
    pub password_changed_at: i64,
    pub created_at: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("tenant", &self.tenant)
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("groups", &self.groups)
            .field("disabled", &self.disabled)
            .field("token_version", &self.token_version)
            .field("mfa_enabled", &self.mfa_enabled)
            .finish_non_exhaustive()
    }
}

/// The columns an edit of a user changes; `None` leaves a column alone.
#[derive(Default, Clone)]
pub struct UserChanges {
    pub roles: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// A new Argon2id hash and when it was set; also lifts a lockout.
    pub password: Option<(String, i64)>,
    /// `Some(None)` removes the address.
    pub email_sealed: Option<Option<Vec<u8>>>,
    /// `Some(None)` discards a pending enrolment.
    pub mfa_pending_sealed: Option<Option<Vec<u8>>>,
    /// Bump the token version: every access token issued before stops working.
    pub revoke_tokens: bool,
    /// Apply only while the stored password hash is still this one (a password change checks
    /// the current password first); `Conflict` otherwise.
    pub expect_password_hash: Option<String>,
}

/// Whether a login attempt may check its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginGate {
    /// Counted; go ahead.
    Open,
    /// Locked, or the window's attempts are used up: refuse without checking.
    Closed,
}

/// A custom role of a tenant (built-in roles are not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub tenant: String,
    pub name: String,
    pub permissions: Vec<String>,
    pub created_at: i64,
}

/// A device group; groups form a tree per tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub tenant: String,
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub created_at: i64,
}

/// An application's API key; only the SHA-256 of the key is stored. A key acts for the user
/// who owns it (never further than that user) and within its own groups.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub roles: Vec<String>,
    /// Device groups the key is confined to; empty means its owner's whole scope.
    pub groups: Vec<String>,
    pub key_hash: Vec<u8>,
    pub expires_at: Option<i64>,
    /// Who created it: a username or `api-key:<id>`.
    pub created_by: String,
    /// The user the key acts for, and that user's incarnation.
    pub owner: String,
    pub owner_uid: String,
    pub created_at: i64,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

const USERS: Table = Table {
    name: "users",
    columns: &[
        "tenant",
        "username",
        "uid",
        "password_hash",
        "roles_json",
        "groups_json",
        "disabled",
        "token_version",
        "mfa_enabled",
        "mfa_secret_sealed",
        "mfa_pending_sealed",
        "mfa_last_step",
        "email_sealed",
        "failed_logins",
        "failed_window_start",
        "locked_until",
        "password_changed_at",
        "created_at",
    ],
};
const ROLES: Table = Table { name: "roles", columns: &["tenant", "name", "permissions_json", "created_at"] };
const GROUPS: Table = Table { name: "device_groups", columns: &["tenant", "id", "name", "parent", "created_at"] };
const API_KEYS: Table = Table {
    name: "api_keys",
    columns: &[
        "id",
        "tenant",
        "name",
        "roles_json",
        "groups_json",
        "key_hash",
        "expires_at",
        "created_by",
        "owner",
        "owner_uid",
        "created_at",
    ],
};

fn user_from_row(mut row: Row) -> StoreResult<User> {
    Ok(User {
        tenant: row.text()?,
        username: row.text()?,
        uid: row.text()?,
        password_hash: row.text()?,
        roles: row.list()?,
        groups: row.list()?,
        disabled: row.bool()?,
        token_version: row.int()?,
        mfa_enabled: row.bool()?,
        mfa_secret_sealed: row.opt_blob()?,
        mfa_pending_sealed: row.opt_blob()?,
        mfa_last_step: row.int()?,
        email_sealed: row.opt_blob()?,
        failed_logins: row.int()?,
        failed_window_start: row.int()?,
        locked_until: row.int()?,
        password_changed_at: row.int()?,
        created_at: row.int()?,
    })
}

fn user_values(user: &User) -> StoreResult<Vec<Value>> {
    Ok(vec![
        (&user.tenant).into(),
        (&user.username).into(),
        (&user.uid).into(),
        (&user.password_hash).into(),
        list_value(&user.roles)?,
        list_value(&user.groups)?,
        user.disabled.into(),
        user.token_version.into(),
        user.mfa_enabled.into(),
        user.mfa_secret_sealed.as_ref().into(),
        user.mfa_pending_sealed.as_ref().into(),
        user.mfa_last_step.into(),
        user.email_sealed.as_ref().into(),
        user.failed_logins.into(),
        user.failed_window_start.into(),
        user.locked_until.into(),
        user.password_changed_at.into(),
        user.created_at.into(),
    ])
}

fn role_from_row(mut row: Row) -> StoreResult<Role> {
    Ok(Role { tenant: row.text()?, name: row.text()?, permissions: row.list()?, created_at: row.int()? })
}

fn group_from_row(mut row: Row) -> StoreResult<Group> {
    Ok(Group {
        tenant: row.text()?,
        id: row.text()?,
        name: row.text()?,
        parent: row.opt_text()?,
        created_at: row.int()?,
    })
}

fn api_key_from_row(mut row: Row) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: row.text()?,
        tenant: row.text()?,
        name: row.text()?,
        roles: row.list()?,
        groups: row.list()?,
        key_hash: row.blob()?,
        expires_at: row.opt_int()?,
        created_by: row.text()?,
        owner: row.text()?,
        owner_uid: row.text()?,
        created_at: row.int()?,
    })
}

/// The UPDATE of [`UserChanges`]: only the named columns, keyed by tenant, username and uid.
fn user_update(tenant: &str, username: &str, uid: &str, changes: &UserChanges) -> StoreResult<Option<Statement>> {
    let mut sets: Vec<&str> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(roles) = &changes.roles {
        sets.push("roles_json = ?");
        params.push(list_value(roles)?);
    }
    if let Some(groups) = &changes.groups {
        sets.push("groups_json = ?");
        params.push(list_value(groups)?);
    }
    if let Some(disabled) = changes.disabled {
        sets.push("disabled = ?");
        params.push(disabled.into());
    }
    if let Some((hash, at)) = &changes.password {
        sets.extend([
            "password_hash = ?",
            "password_changed_at = ?",
            "failed_logins = 0",
            "failed_window_start = 0",
            "locked_until = 0",
        ]);
        params.extend([hash.into(), (*at).into()]);
    }
    if let Some(email) = &changes.email_sealed {
        sets.push("email_sealed = ?");
        params.push(email.as_ref().into());
    }
    if let Some(pending) = &changes.mfa_pending_sealed {
        sets.push("mfa_pending_sealed = ?");
        params.push(pending.as_ref().into());
    }
    if changes.revoke_tokens {
        sets.push("token_version = token_version + 1");
    }
    if sets.is_empty() {
        return Ok(None);
    }
    let mut sql = format!("UPDATE users SET {} WHERE tenant = ? AND username = ? AND uid = ?", sets.join(", "));
    params.extend([tenant.into(), username.into(), uid.into()]);
    if let Some(expected) = &changes.expect_password_hash {
        sql.push_str(" AND password_hash = ?");
        params.push(expected.into());
    }
    Ok(Some(Statement::new(sql, params)))
}

/// People persistence.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    // ---- users ----
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user(&self, tenant: &str, username: &str) -> StoreResult<User>;
    async fn list_users(&self, tenant: &str, page: &Page) -> StoreResult<Vec<User>>;
    /// Changes the named columns of the user `(tenant, username)` whose incarnation is `uid`
    /// and answers the user as stored afterwards. `NotFound` when that incarnation is gone;
    /// `Conflict` when `expect_password_hash` no longer holds.
    async fn update_user(&self, tenant: &str, username: &str, uid: &str, changes: &UserChanges) -> StoreResult<User>;
    /// Deletes the user incarnation `uid`, then the API keys it owns, and answers the ids of
    /// exactly the keys deleted, ordered. `NotFound` (and nothing deleted) when that
    /// incarnation is gone.
    async fn delete_user(&self, tenant: &str, username: &str, uid: &str) -> StoreResult<Vec<String>>;

    // ---- login ----
    /// Counts a login attempt before its password is checked: `Open` when the user is not
    /// locked and fewer than `max_attempts` attempts were counted in the window of `window_ms`
    /// (a window older than that starts over), `Closed` otherwise. Concurrent attempts are
    /// counted one by one, so no more than `max_attempts` passwords are checked per window.
    async fn begin_login_attempt(
        &self,
        tenant: &str,
        username: &str,
        now_ms: i64,
        window_ms: i64,
        max_attempts: i64,
    ) -> StoreResult<LoginGate>;
    /// A counted attempt succeeded: the counters start over.
    async fn login_succeeded(&self, tenant: &str, username: &str) -> StoreResult<()>;
    /// A counted attempt failed: once `max_attempts` are counted the user is locked until
    /// `locked_until` and the counters start over. Answers whether this call locked it.
    async fn login_failed(
        &self,
        tenant: &str,
        username: &str,
        max_attempts: i64,
        locked_until: i64,
    ) -> StoreResult<bool>;
    /// A counted attempt ended in a way that does not count (the password was right but a TOTP
    /// code is missing): it is taken back.
    async fn login_not_counted(&self, tenant: &str, username: &str) -> StoreResult<()>;
    /// Accepts TOTP time step `step` for the user incarnation `uid` if it is newer than the last
    /// step accepted; `false` for a replay (also when two logins race with one code).
    async fn accept_totp_step(&self, tenant: &str, username: &str, uid: &str, step: i64) -> StoreResult<bool>;
    /// Confirms the pending enrolment `pending` (exactly the sealed secret checked) with step
    /// `step`: it becomes the MFA secret and MFA is on. `false` when the pending secret changed
    /// meanwhile, MFA is already on, or the step is not newer than the last one.
    async fn enable_mfa(&self, tenant: &str, username: &str, uid: &str, pending: &[u8], step: i64)
    -> StoreResult<bool>;

    // ---- custom roles ----
    async fn create_role(&self, role: &Role) -> StoreResult<()>;
    async fn get_role(&self, tenant: &str, name: &str) -> StoreResult<Role>;
    async fn list_roles(&self, tenant: &str) -> StoreResult<Vec<Role>>;
    async fn delete_role(&self, tenant: &str, name: &str) -> StoreResult<()>;

    // ---- device groups ----
    async fn create_group(&self, group: &Group) -> StoreResult<()>;
    async fn get_group(&self, tenant: &str, id: &str) -> StoreResult<Group>;
    /// Every group of the tenant (the tree is small enough to hold), ordered by id.
    async fn list_groups(&self, tenant: &str) -> StoreResult<Vec<Group>>;
    /// Refuses with `Conflict` while the group has sub-groups or devices.
    async fn delete_group(&self, tenant: &str, id: &str) -> StoreResult<()>;

    // ---- API keys ----
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    /// Looks a key up by its globally unique id (the tenant is read from the row).
    async fn get_api_key(&self, id: &str) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>>;
    async fn delete_api_key(&self, tenant: &str, id: &str) -> StoreResult<()>;
}

#[async_trait]
impl PeopleStore for SqlStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.insert(&USERS.insert(""), user_values(user)?).await
    }

    async fn get_user(&self, tenant: &str, username: &str) -> StoreResult<User> {
        self.one(
            &USERS.select("WHERE tenant = ? AND username = ?"),
            vec![tenant.into(), username.into()],
            user_from_row,
        )
        .await
    }

    async fn list_users(&self, tenant: &str, page: &Page) -> StoreResult<Vec<User>> {
        let select = Select::new(&USERS.select("WHERE tenant = ?"), vec![tenant.into()]).page(
            "username",
            page.after.as_ref().map(Value::from),
            page.limit,
        );
        self.all(&select.sql, select.params, user_from_row).await
    }

    async fn update_user(&self, tenant: &str, username: &str, uid: &str, changes: &UserChanges) -> StoreResult<User> {
        let changed = match user_update(tenant, username, uid, changes)? {
            Some(update) => self.driver.execute(&update.sql, update.params).await? > 0,
            None => false,
        };
        let user = self.get_user(tenant, username).await?;
        if user.uid != uid {
            return Err(StoreError::NotFound);
        }
        // Nothing changed although the incarnation is there: the expected hash did not hold
        // (also for an edit naming no column, which ran no statement).
        match &changes.expect_password_hash {
            Some(expected) if !changed && *expected != user.password_hash => {
                Err(StoreError::Conflict("the password changed meanwhile".into()))
            }
            _ => Ok(user),
        }
    }

    async fn delete_user(&self, tenant: &str, username: &str, uid: &str) -> StoreResult<Vec<String>> {
        let key = || -> Vec<Value> { vec![tenant.into(), username.into(), uid.into()] };
        let sql = "DELETE FROM users WHERE tenant = ? AND username = ? AND uid = ?";
        if self.driver.execute(sql, key()).await? == 0 {
            return Err(StoreError::NotFound);
        }
        // The keys go after their owner, and the ids answered are exactly the rows this
        // statement deleted. A key written for the gone incarnation afterwards stays inert:
        // a key authenticates only while its owner's incarnation exists.
        let sql = "DELETE FROM api_keys WHERE tenant = ? AND owner = ? AND owner_uid = ? RETURNING id";
        let rows = self.driver.query(sql, key()).await?;
        let mut keys = rows.into_iter().map(|mut row| row.text()).collect::<StoreResult<Vec<_>>>()?;
        keys.sort();
        Ok(keys)
    }

    async fn begin_login_attempt(
        &self,
        tenant: &str,
        username: &str,
        now_ms: i64,
        window_ms: i64,
        max_attempts: i64,
    ) -> StoreResult<LoginGate> {
        // Every expression reads the row as it was before this statement: a window older than
        // `window_ms` starts over at this attempt.
        let sql = "UPDATE users SET \
                   failed_window_start = CASE WHEN ? - failed_window_start > ? THEN ? ELSE failed_window_start END, \
                   failed_logins = CASE WHEN ? - failed_window_start > ? THEN 1 ELSE failed_logins + 1 END \
                   WHERE tenant = ? AND username = ? AND locked_until <= ? \
                   AND (CASE WHEN ? - failed_window_start > ? THEN 0 ELSE failed_logins END) < ?";
        let params = vec![
            now_ms.into(),
            window_ms.into(),
            now_ms.into(),
            now_ms.into(),
            window_ms.into(),
            tenant.into(),
            username.into(),
            now_ms.into(),
            now_ms.into(),
            window_ms.into(),
            max_attempts.into(),
        ];
        match self.driver.execute(sql, params).await? {
            0 => Ok(LoginGate::Closed),
            _ => Ok(LoginGate::Open),
        }
    }

    async fn login_succeeded(&self, tenant: &str, username: &str) -> StoreResult<()> {
        let sql = "UPDATE users SET failed_logins = 0, failed_window_start = 0, locked_until = 0 \
                   WHERE tenant = ? AND username = ?";
        self.driver.execute(sql, vec![tenant.into(), username.into()]).await.map(drop)
    }

    async fn login_failed(
        &self,
        tenant: &str,
        username: &str,
        max_attempts: i64,
        locked_until: i64,
    ) -> StoreResult<bool> {
        let sql = "UPDATE users SET locked_until = ?, failed_logins = 0, failed_window_start = 0 \
                   WHERE tenant = ? AND username = ? AND failed_logins >= ? AND locked_until < ?";
        let params =
            vec![locked_until.into(), tenant.into(), username.into(), max_attempts.into(), locked_until.into()];
        Ok(self.driver.execute(sql, params).await? > 0)
    }

    async fn login_not_counted(&self, tenant: &str, username: &str) -> StoreResult<()> {
        let sql = "UPDATE users SET failed_logins = failed_logins - 1 \
                   WHERE tenant = ? AND username = ? AND failed_logins > 0";
        self.driver.execute(sql, vec![tenant.into(), username.into()]).await.map(drop)
    }

    async fn accept_totp_step(&self, tenant: &str, username: &str, uid: &str, step: i64) -> StoreResult<bool> {
        let sql = "UPDATE users SET mfa_last_step = ? \
                   WHERE tenant = ? AND username = ? AND uid = ? AND mfa_last_step < ?";
        let params = vec![step.into(), tenant.into(), username.into(), uid.into(), step.into()];
        Ok(self.driver.execute(sql, params).await? > 0)
    }

    async fn enable_mfa(
        &self,
        tenant: &str,
        username: &str,
        uid: &str,
        pending: &[u8],
        step: i64,
    ) -> StoreResult<bool> {
        let sql = "UPDATE users SET mfa_secret_sealed = mfa_pending_sealed, mfa_pending_sealed = NULL, \
                   mfa_enabled = ?, mfa_last_step = ? \
                   WHERE tenant = ? AND username = ? AND uid = ? AND mfa_enabled = ? AND mfa_pending_sealed = ? \
                   AND mfa_last_step < ?";
        let params = vec![
            true.into(),
            step.into(),
            tenant.into(),
            username.into(),
            uid.into(),
            false.into(),
            pending.into(),
            step.into(),
        ];
        Ok(self.driver.execute(sql, params).await? > 0)
    }

    async fn create_role(&self, role: &Role) -> StoreResult<()> {
        let params =
            vec![(&role.tenant).into(), (&role.name).into(), list_value(&role.permissions)?, role.created_at.into()];
        self.insert(&ROLES.insert(""), params).await
    }

    async fn get_role(&self, tenant: &str, name: &str) -> StoreResult<Role> {
        self.one(&ROLES.select("WHERE tenant = ? AND name = ?"), vec![tenant.into(), name.into()], role_from_row).await
    }

    async fn list_roles(&self, tenant: &str) -> StoreResult<Vec<Role>> {
        self.all(&ROLES.select("WHERE tenant = ? ORDER BY name"), vec![tenant.into()], role_from_row).await
    }

    async fn delete_role(&self, tenant: &str, name: &str) -> StoreResult<()> {
        self.change_one("DELETE FROM roles WHERE tenant = ? AND name = ?", vec![tenant.into(), name.into()]).await
    }

    async fn create_group(&self, group: &Group) -> StoreResult<()> {
        let params = vec![
            (&group.tenant).into(),
            (&group.id).into(),
            (&group.name).into(),
            group.parent.as_ref().into(),
            group.created_at.into(),
        ];
        self.insert(&GROUPS.insert(""), params).await
    }

    async fn get_group(&self, tenant: &str, id: &str) -> StoreResult<Group> {
        self.one(&GROUPS.select("WHERE tenant = ? AND id = ?"), vec![tenant.into(), id.into()], group_from_row).await
    }

    async fn list_groups(&self, tenant: &str) -> StoreResult<Vec<Group>> {
        self.all(&GROUPS.select("WHERE tenant = ? ORDER BY id"), vec![tenant.into()], group_from_row).await
    }

    async fn delete_group(&self, tenant: &str, id: &str) -> StoreResult<()> {
        // Foreign keys back these checks up against concurrent inserts.
        let key = || vec![tenant.into(), id.into()];
        if self.exists("SELECT 1 FROM device_groups WHERE tenant = ? AND parent = ? LIMIT 1", key()).await? {
            return Err(StoreError::Conflict("group has sub-groups".into()));
        }
        if self.exists("SELECT 1 FROM devices WHERE tenant = ? AND group_id = ? LIMIT 1", key()).await? {
            return Err(StoreError::Conflict("group has devices".into()));
        }
        self.change_one("DELETE FROM device_groups WHERE tenant = ? AND id = ?", key()).await
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let params = vec![
            (&key.id).into(),
            (&key.tenant).into(),
            (&key.name).into(),
            list_value(&key.roles)?,
            list_value(&key.groups)?,
            (&key.key_hash).into(),
            key.expires_at.into(),
            (&key.created_by).into(),
            (&key.owner).into(),
            (&key.owner_uid).into(),
            key.created_at.into(),
        ];
        self.insert(&API_KEYS.insert(""), params).await
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<ApiKey> {
        self.one(&API_KEYS.select("WHERE id = ?"), vec![id.into()], api_key_from_row).await
    }

    async fn list_api_keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>> {
        self.all(&API_KEYS.select("WHERE tenant = ? ORDER BY id"), vec![tenant.into()], api_key_from_row).await
    }

    async fn delete_api_key(&self, tenant: &str, id: &str) -> StoreResult<()> {
        self.change_one("DELETE FROM api_keys WHERE tenant = ? AND id = ?", vec![tenant.into(), id.into()]).await
    }
}
