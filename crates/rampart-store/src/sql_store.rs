//! [`SqlStore`]: the [`Store`] trait written once over [`SqlDriver`], for every backend, and the
//! public constructors that pick the backend.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use crate::postgres::PostgresDriver;
use crate::sqlite::SqliteDriver;
use crate::value::{Row, SqlDriver, Statement, Value, list_value, placeholders};
use crate::*;

/// Opens (creating and migrating it if needed) the SQLite database at `path`, normally
/// `DATA_DIR/rampart.db`. The file is created readable by its owner only.
pub async fn open_sqlite(path: &Path) -> StoreResult<Arc<dyn Store>> {
    let driver = SqliteDriver::open(path).await?;
    Ok(Arc::new(SqlStore { driver: Box::new(driver) }))
}

/// Connects to PostgreSQL (`postgres://user@host:port/db` or `postgresql://…`) and migrates the
/// schema; several processes may do this at once.
pub async fn open_postgres(url: &str) -> StoreResult<Arc<dyn Store>> {
    let driver = PostgresDriver::connect(url, None).await?;
    Ok(Arc::new(SqlStore { driver: Box::new(driver) }))
}

/// Like [`open_postgres`], with every table in `schema` (which must already exist; lower-case
/// letters, digits and `_`). Meant for tests, which isolate each run in a fresh schema.
pub async fn open_postgres_in_schema(url: &str, schema: &str) -> StoreResult<Arc<dyn Store>> {
    let driver = PostgresDriver::connect(url, Some(schema)).await?;
    Ok(Arc::new(SqlStore { driver: Box::new(driver) }))
}

/// Opens the store named by `--storage`: `sqlite` (or empty) for `data_dir/rampart.db`,
/// `postgres://…` or `postgresql://…` for PostgreSQL.
pub async fn open(spec: &str, data_dir: &Path) -> StoreResult<Arc<dyn Store>> {
    match spec {
        "" | "sqlite" => open_sqlite(&data_dir.join("rampart.db")).await,
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => open_postgres(url).await,
        // The spec may hold a password: never echo it.
        _ => Err(StoreError::Backend("unknown storage: expected `sqlite` or a postgres:// URL".into())),
    }
}

/// The one [`Store`] implementation; the driver supplies the backend.
pub(crate) struct SqlStore {
    pub(crate) driver: Box<dyn SqlDriver>,
}

// Column lists, in the order the `*_from_row` decoders read them and the inserts bind them.
macro_rules! tenant_columns {
    () => {
        "id, name, parent, created_at"
    };
}
macro_rules! tenant_key_columns {
    () => {
        "tenant, key_id, wrapped, created_at"
    };
}
macro_rules! user_columns {
    () => {
        "tenant, username, password_hash, roles_json, groups_json, disabled, token_version, mfa_enabled, \
         mfa_secret_sealed, mfa_pending_sealed, mfa_last_step, email_sealed, failed_logins, \
         failed_window_start, locked_until, password_changed_at, created_at"
    };
}
macro_rules! role_columns {
    () => {
        "tenant, name, permissions_json, created_at"
    };
}
macro_rules! group_columns {
    () => {
        "tenant, id, name, parent, created_at"
    };
}
macro_rules! api_key_columns {
    () => {
        "id, tenant, name, roles_json, key_hash, expires_at, created_by, created_at"
    };
}
macro_rules! device_columns {
    () => {
        "tenant, id, name, device_type, group_id, attributes_json, required_interval_s, status, connected, \
         last_seen, last_address, firmware, created_at"
    };
}
macro_rules! device_key_columns {
    () => {
        "tenant, device, tenant_key_id, wrapped"
    };
}
macro_rules! device_token_columns {
    () => {
        "tenant, device, id, token_hash, created_at"
    };
}
macro_rules! tenant_ca_columns {
    () => {
        "tenant, cert_pem, key_sealed, crl_number, created_at"
    };
}
macro_rules! certificate_columns {
    () => {
        "tenant, device, serial, not_after, revoked_at, cert_pem, created_at"
    };
}
macro_rules! trusted_ca_columns {
    () => {
        "tenant, id, cert_pem, subject, auto_register, created_at"
    };
}
macro_rules! audit_columns {
    () => {
        "tenant, seq, ts, actor_type, actor_id, action, target, source_ip, outcome, details_json, prev_hash, hash"
    };
}
macro_rules! checkpoint_columns {
    () => {
        "tenant, seq, hash, ts, signature"
    };
}

fn tenant_from_row(mut row: Row) -> StoreResult<Tenant> {
    Ok(Tenant { id: row.text()?, name: row.text()?, parent: row.opt_text()?, created_at: row.int()? })
}

fn tenant_key_from_row(mut row: Row) -> StoreResult<TenantKey> {
    Ok(TenantKey { tenant: row.text()?, key_id: row.text()?, wrapped: row.blob()?, created_at: row.int()? })
}

fn user_from_row(mut row: Row) -> StoreResult<User> {
    Ok(User {
        tenant: row.text()?,
        username: row.text()?,
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

/// The user's mutable columns, in `user_columns!` order (between the key and `created_at`).
fn user_mutable_values(user: &User) -> StoreResult<Vec<Value>> {
    Ok(vec![
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
        key_hash: row.blob()?,
        expires_at: row.opt_int()?,
        created_by: row.text()?,
        created_at: row.int()?,
    })
}

fn device_from_row(mut row: Row) -> StoreResult<Device> {
    Ok(Device {
        tenant: row.text()?,
        id: row.text()?,
        name: row.text()?,
        device_type: row.opt_text()?,
        group: row.opt_text()?,
        attributes_json: row.text()?,
        required_interval_s: row.opt_int()?,
        status: row.text()?,
        connected: row.bool()?,
        last_seen: row.opt_int()?,
        last_address: row.opt_text()?,
        firmware: row.opt_text()?,
        created_at: row.int()?,
    })
}

/// The device's mutable columns, in `device_columns!` order (between the key and `created_at`).
fn device_mutable_values(device: &Device) -> Vec<Value> {
    vec![
        (&device.name).into(),
        device.device_type.as_ref().into(),
        device.group.as_ref().into(),
        (&device.attributes_json).into(),
        device.required_interval_s.into(),
        (&device.status).into(),
        device.connected.into(),
        device.last_seen.into(),
        device.last_address.as_ref().into(),
        device.firmware.as_ref().into(),
    ]
}

fn device_key_from_row(mut row: Row) -> StoreResult<DeviceKey> {
    Ok(DeviceKey { tenant: row.text()?, device: row.text()?, tenant_key_id: row.text()?, wrapped: row.blob()? })
}

pub(crate) fn device_token_from_row(mut row: Row) -> StoreResult<DeviceToken> {
    Ok(DeviceToken {
        tenant: row.text()?,
        device: row.text()?,
        id: row.text()?,
        token_hash: row.blob()?,
        created_at: row.int()?,
    })
}

fn tenant_ca_from_row(mut row: Row) -> StoreResult<TenantCa> {
    Ok(TenantCa {
        tenant: row.text()?,
        cert_pem: row.text()?,
        key_sealed: row.blob()?,
        crl_number: row.int()?,
        created_at: row.int()?,
    })
}

fn certificate_from_row(mut row: Row) -> StoreResult<DeviceCertificate> {
    Ok(DeviceCertificate {
        tenant: row.text()?,
        device: row.text()?,
        serial: row.text()?,
        not_after: row.int()?,
        revoked_at: row.opt_int()?,
        cert_pem: row.text()?,
        created_at: row.int()?,
    })
}

pub(crate) fn trusted_ca_from_row(mut row: Row) -> StoreResult<TrustedCa> {
    Ok(TrustedCa {
        tenant: row.text()?,
        id: row.text()?,
        cert_pem: row.text()?,
        subject: row.text()?,
        auto_register: row.bool()?,
        created_at: row.int()?,
    })
}

fn audit_from_row(mut row: Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        tenant: row.text()?,
        seq: row.int()?,
        ts: row.int()?,
        actor_type: row.text()?,
        actor_id: row.text()?,
        action: row.text()?,
        target: row.text()?,
        source_ip: row.opt_text()?,
        outcome: row.text()?,
        details_json: row.text()?,
        prev_hash: row.text()?,
        hash: row.text()?,
    })
}

fn checkpoint_from_row(mut row: Row) -> StoreResult<AuditCheckpoint> {
    Ok(AuditCheckpoint {
        tenant: row.text()?,
        seq: row.int()?,
        hash: row.text()?,
        ts: row.int()?,
        signature: row.text()?,
    })
}

/// A SELECT assembled from fixed fragments, with its parameters alongside.
struct Select {
    sql: String,
    params: Vec<Value>,
}

impl Select {
    fn new(sql: &str, params: Vec<Value>) -> Self {
        Select { sql: sql.to_owned(), params }
    }

    fn and(&mut self, condition: &str, value: impl Into<Value>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.params.push(value.into());
    }

    /// Keyset pagination on `key`: rows after `after`, ordered by `key`, at most `limit`
    /// (0 means no limit).
    fn page(mut self, key: &str, after: Option<Value>, limit: u32) -> Self {
        if let Some(after) = after {
            self.and(&format!("{key} > ?"), after);
        }
        self.sql.push_str(&format!(" ORDER BY {key}"));
        if limit > 0 {
            self.sql.push_str(" LIMIT ?");
            self.params.push(i64::from(limit).into());
        }
        self
    }
}

impl SqlStore {
    pub(crate) async fn all<T>(
        &self,
        sql: &str,
        params: Vec<Value>,
        decode: fn(Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.driver.query(sql, params).await?.into_iter().map(decode).collect()
    }

    async fn one<T>(&self, sql: &str, params: Vec<Value>, decode: fn(Row) -> StoreResult<T>) -> StoreResult<T> {
        self.all(sql, params, decode).await?.into_iter().next().ok_or(StoreError::NotFound)
    }

    async fn exists(&self, sql: &str, params: Vec<Value>) -> StoreResult<bool> {
        Ok(!self.driver.query(sql, params).await?.is_empty())
    }

    async fn insert(&self, sql: &str, params: Vec<Value>) -> StoreResult<()> {
        self.driver.execute(sql, params).await.map(drop)
    }

    /// Runs an UPDATE or DELETE that must hit exactly the row named by its key.
    pub(crate) async fn change_one(&self, sql: &str, params: Vec<Value>) -> StoreResult<()> {
        match self.driver.execute(sql, params).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend_name(&self) -> &'static str {
        self.driver.backend_name()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.driver.query("SELECT 1", vec![]).await.map(drop)
    }

    // ---- platform-wide secrets ----

    async fn get_platform_secret(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let sql = "SELECT sealed FROM platform_secrets WHERE name = ?";
        match self.one(sql, vec![name.into()], |mut row| row.blob()).await {
            Ok(sealed) => Ok(Some(sealed)),
            Err(StoreError::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn put_platform_secret_if_absent(&self, name: &str, sealed: &[u8]) -> StoreResult<Vec<u8>> {
        let sql = "INSERT INTO platform_secrets (name, sealed) VALUES (?, ?) ON CONFLICT (name) DO NOTHING";
        self.insert(sql, vec![name.into(), sealed.into()]).await?;
        let stored = self.get_platform_secret(name).await?;
        stored.ok_or_else(|| StoreError::Backend("platform secret vanished after insert".into()))
    }

    async fn list_platform_secrets(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let sql = "SELECT name, sealed FROM platform_secrets ORDER BY name";
        self.all(sql, vec![], |mut row| Ok((row.text()?, row.blob()?))).await
    }

    async fn replace_platform_secret(&self, name: &str, sealed: &[u8]) -> StoreResult<()> {
        let sql = "UPDATE platform_secrets SET sealed = ? WHERE name = ?";
        self.change_one(sql, vec![sealed.into(), name.into()]).await
    }

    // ---- tenants ----

    async fn create_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let sql = concat!("INSERT INTO tenants (", tenant_columns!(), ") VALUES (?, ?, ?, ?)");
        let params =
            vec![(&tenant.id).into(), (&tenant.name).into(), tenant.parent.as_ref().into(), tenant.created_at.into()];
        self.insert(sql, params).await
    }

    async fn get_tenant(&self, id: &str) -> StoreResult<Tenant> {
        let sql = concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = ?");
        self.one(sql, vec![id.into()], tenant_from_row).await
    }

    async fn list_child_tenants(&self, parent: &str, page: &Page) -> StoreResult<Vec<Tenant>> {
        let select =
            Select::new(concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE parent = ?"), vec![parent.into()])
                .page("id", page.after.as_ref().map(Value::from), page.limit);
        self.all(&select.sql, select.params, tenant_from_row).await
    }

    async fn list_all_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let sql = concat!("SELECT ", tenant_columns!(), " FROM tenants ORDER BY id");
        self.all(sql, vec![], tenant_from_row).await
    }

    async fn delete_tenant(&self, id: &str) -> StoreResult<()> {
        // The foreign key on tenants.parent backs this check up against a concurrent insert.
        if self.exists("SELECT 1 FROM tenants WHERE parent = ? LIMIT 1", vec![id.into()]).await? {
            return Err(StoreError::Conflict("tenant has sub-tenants".into()));
        }
        // Children before parents (foreign keys); audit tables are append-only and stay.
        let owned_tables = [
            "DELETE FROM device_tokens WHERE tenant = ?",
            "DELETE FROM device_keys WHERE tenant = ?",
            "DELETE FROM device_telemetry WHERE tenant = ?",
            "DELETE FROM device_events WHERE tenant = ?",
            "DELETE FROM device_attestations WHERE tenant = ?",
            "DELETE FROM device_twins WHERE tenant = ?",
            "DELETE FROM alarms WHERE tenant = ?",
            "DELETE FROM device_certificates WHERE tenant = ?",
            "DELETE FROM devices WHERE tenant = ?",
            "DELETE FROM device_groups WHERE tenant = ?",
            "DELETE FROM users WHERE tenant = ?",
            "DELETE FROM roles WHERE tenant = ?",
            "DELETE FROM api_keys WHERE tenant = ?",
            "DELETE FROM trusted_cas WHERE tenant = ?",
            "DELETE FROM tenant_cas WHERE tenant = ?",
            "DELETE FROM tenant_keys WHERE tenant = ?",
            "DELETE FROM tenant_policies WHERE tenant = ?",
            "DELETE FROM retained_messages WHERE tenant = ?",
        ];
        let mut statements: Vec<Statement> =
            owned_tables.iter().map(|sql| Statement::new(*sql, vec![id.into()])).collect();
        statements.push(Statement::new("DELETE FROM tenants WHERE id = ?", vec![id.into()]).must_change_row());
        self.driver.transaction(statements).await
    }

    async fn get_tenant_policy(&self, tenant: &str) -> StoreResult<Option<String>> {
        let sql = "SELECT policy_json FROM tenant_policies WHERE tenant = ?";
        match self.one(sql, vec![tenant.into()], |mut row| row.text()).await {
            Ok(policy) => Ok(Some(policy)),
            Err(StoreError::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn put_tenant_policy(&self, tenant: &str, policy_json: &str) -> StoreResult<()> {
        let sql = "INSERT INTO tenant_policies (tenant, policy_json) VALUES (?, ?) \
                   ON CONFLICT (tenant) DO UPDATE SET policy_json = excluded.policy_json";
        self.insert(sql, vec![tenant.into(), policy_json.into()]).await
    }

    // ---- tenant data keys ----

    async fn insert_tenant_key(&self, key: &TenantKey) -> StoreResult<()> {
        let sql = concat!("INSERT INTO tenant_keys (", tenant_key_columns!(), ") VALUES (?, ?, ?, ?)");
        let params = vec![(&key.tenant).into(), (&key.key_id).into(), (&key.wrapped).into(), key.created_at.into()];
        self.insert(sql, params).await
    }

    async fn list_tenant_keys(&self, tenant: &str) -> StoreResult<Vec<TenantKey>> {
        let sql = concat!(
            "SELECT ",
            tenant_key_columns!(),
            " FROM tenant_keys WHERE tenant = ? ORDER BY created_at DESC, key_id DESC"
        );
        self.all(sql, vec![tenant.into()], tenant_key_from_row).await
    }

    async fn rewrap_tenant_key(&self, tenant: &str, key_id: &str, wrapped: &[u8]) -> StoreResult<()> {
        let sql = "UPDATE tenant_keys SET wrapped = ? WHERE tenant = ? AND key_id = ?";
        self.change_one(sql, vec![wrapped.into(), tenant.into(), key_id.into()]).await
    }

    // ---- users ----

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let sql = concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        let mut params = vec![(&user.tenant).into(), (&user.username).into()];
        params.extend(user_mutable_values(user)?);
        params.push(user.created_at.into());
        self.insert(sql, params).await
    }

    async fn get_user(&self, tenant: &str, username: &str) -> StoreResult<User> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE tenant = ? AND username = ?");
        self.one(sql, vec![tenant.into(), username.into()], user_from_row).await
    }

    async fn list_users(&self, tenant: &str, page: &Page) -> StoreResult<Vec<User>> {
        let select = Select::new(
            concat!("SELECT ", user_columns!(), " FROM users WHERE tenant = ?"),
            vec![tenant.into()],
        )
        .page("username", page.after.as_ref().map(Value::from), page.limit);
        self.all(&select.sql, select.params, user_from_row).await
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let sql = "UPDATE users SET password_hash = ?, roles_json = ?, groups_json = ?, disabled = ?, \
                   token_version = ?, mfa_enabled = ?, mfa_secret_sealed = ?, mfa_pending_sealed = ?, \
                   mfa_last_step = ?, email_sealed = ?, failed_logins = ?, failed_window_start = ?, \
                   locked_until = ?, password_changed_at = ? WHERE tenant = ? AND username = ?";
        let mut params = user_mutable_values(user)?;
        params.extend([(&user.tenant).into(), (&user.username).into()]);
        self.change_one(sql, params).await
    }

    async fn delete_user(&self, tenant: &str, username: &str) -> StoreResult<()> {
        let sql = "DELETE FROM users WHERE tenant = ? AND username = ?";
        self.change_one(sql, vec![tenant.into(), username.into()]).await
    }

    // ---- custom roles ----

    async fn create_role(&self, role: &Role) -> StoreResult<()> {
        let sql = concat!("INSERT INTO roles (", role_columns!(), ") VALUES (?, ?, ?, ?)");
        let params =
            vec![(&role.tenant).into(), (&role.name).into(), list_value(&role.permissions)?, role.created_at.into()];
        self.insert(sql, params).await
    }

    async fn get_role(&self, tenant: &str, name: &str) -> StoreResult<Role> {
        let sql = concat!("SELECT ", role_columns!(), " FROM roles WHERE tenant = ? AND name = ?");
        self.one(sql, vec![tenant.into(), name.into()], role_from_row).await
    }

    async fn list_roles(&self, tenant: &str) -> StoreResult<Vec<Role>> {
        let sql = concat!("SELECT ", role_columns!(), " FROM roles WHERE tenant = ? ORDER BY name");
        self.all(sql, vec![tenant.into()], role_from_row).await
    }

    async fn delete_role(&self, tenant: &str, name: &str) -> StoreResult<()> {
        let sql = "DELETE FROM roles WHERE tenant = ? AND name = ?";
        self.change_one(sql, vec![tenant.into(), name.into()]).await
    }

    // ---- device groups ----

    async fn create_group(&self, group: &Group) -> StoreResult<()> {
        let sql = concat!("INSERT INTO device_groups (", group_columns!(), ") VALUES (?, ?, ?, ?, ?)");
        let params = vec![
            (&group.tenant).into(),
            (&group.id).into(),
            (&group.name).into(),
            group.parent.as_ref().into(),
            group.created_at.into(),
        ];
        self.insert(sql, params).await
    }

    async fn get_group(&self, tenant: &str, id: &str) -> StoreResult<Group> {
        let sql = concat!("SELECT ", group_columns!(), " FROM device_groups WHERE tenant = ? AND id = ?");
        self.one(sql, vec![tenant.into(), id.into()], group_from_row).await
    }

    async fn list_groups(&self, tenant: &str) -> StoreResult<Vec<Group>> {
        let sql = concat!("SELECT ", group_columns!(), " FROM device_groups WHERE tenant = ? ORDER BY id");
        self.all(sql, vec![tenant.into()], group_from_row).await
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

    // ---- API keys ----

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let sql = concat!("INSERT INTO api_keys (", api_key_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
        let params = vec![
            (&key.id).into(),
            (&key.tenant).into(),
            (&key.name).into(),
            list_value(&key.roles)?,
            (&key.key_hash).into(),
            key.expires_at.into(),
            (&key.created_by).into(),
            key.created_at.into(),
        ];
        self.insert(sql, params).await
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<ApiKey> {
        let sql = concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE id = ?");
        self.one(sql, vec![id.into()], api_key_from_row).await
    }

    async fn list_api_keys(&self, tenant: &str) -> StoreResult<Vec<ApiKey>> {
        let sql = concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE tenant = ? ORDER BY id");
        self.all(sql, vec![tenant.into()], api_key_from_row).await
    }

    async fn delete_api_key(&self, tenant: &str, id: &str) -> StoreResult<()> {
        let sql = "DELETE FROM api_keys WHERE tenant = ? AND id = ?";
        self.change_one(sql, vec![tenant.into(), id.into()]).await
    }

    // ---- devices ----

    async fn create_device(&self, device: &Device) -> StoreResult<()> {
        let sql =
            concat!("INSERT INTO devices (", device_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        let mut params = vec![(&device.tenant).into(), (&device.id).into()];
        params.extend(device_mutable_values(device));
        params.push(device.created_at.into());
        self.insert(sql, params).await
    }

    async fn get_device(&self, tenant: &str, id: &str) -> StoreResult<Device> {
        let sql = concat!("SELECT ", device_columns!(), " FROM devices WHERE tenant = ? AND id = ?");
        self.one(sql, vec![tenant.into(), id.into()], device_from_row).await
    }

    async fn list_devices(&self, tenant: &str, filter: &DeviceFilter, page: &Page) -> StoreResult<Vec<Device>> {
        let mut select =
            Select::new(concat!("SELECT ", device_columns!(), " FROM devices WHERE tenant = ?"), vec![tenant.into()]);
        if let Some(group) = &filter.group {
            select.and("group_id = ?", group);
        }
        if let Some(groups) = &filter.within_groups {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            select.sql.push_str(&format!(" AND group_id IN ({})", placeholders(groups.len())));
            select.params.extend(groups.iter().map(Value::from));
        }
        if let Some(status) = &filter.status {
            select.and("status = ?", status);
        }
        if let Some(device_type) = &filter.device_type {
            select.and("device_type = ?", device_type);
        }
        let select = select.page("id", page.after.as_ref().map(Value::from), page.limit);
        self.all(&select.sql, select.params, device_from_row).await
    }

    async fn update_device(&self, device: &Device) -> StoreResult<()> {
        let sql = "UPDATE devices SET name = ?, device_type = ?, group_id = ?, attributes_json = ?, \
                   required_interval_s = ?, status = ?, connected = ?, last_seen = ?, last_address = ?, \
                   firmware = ? WHERE tenant = ? AND id = ?";
        let mut params = device_mutable_values(device);
        params.extend([(&device.tenant).into(), (&device.id).into()]);
        self.change_one(sql, params).await
    }

    async fn delete_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<()> {
        let key = || vec![tenant.into(), id.into()];
        let statements = vec![
            Statement::new(
                "UPDATE device_certificates SET revoked_at = ? WHERE tenant = ? AND device = ? AND revoked_at IS NULL",
                vec![now_ms.into(), tenant.into(), id.into()],
            ),
            Statement::new("DELETE FROM device_tokens WHERE tenant = ? AND device = ?", key()),
            Statement::new("DELETE FROM device_keys WHERE tenant = ? AND device = ?", key()),
            // The device's data (sealed under the key deleted above) goes with it.
            Statement::new("DELETE FROM device_telemetry WHERE tenant = ? AND device = ?", key()),
            Statement::new("DELETE FROM device_events WHERE tenant = ? AND device = ?", key()),
            Statement::new("DELETE FROM device_attestations WHERE tenant = ? AND device = ?", key()),
            Statement::new("DELETE FROM device_twins WHERE tenant = ? AND device = ?", key()),
            Statement::new("DELETE FROM alarms WHERE tenant = ? AND device = ?", key()),
            Statement::new("DELETE FROM devices WHERE tenant = ? AND id = ?", key()).must_change_row(),
        ];
        self.driver.transaction(statements).await
    }

    async fn revoke_device(&self, tenant: &str, id: &str, now_ms: i64) -> StoreResult<Device> {
        let key = || vec![tenant.into(), id.into()];
        let statements = vec![
            Statement::new("UPDATE devices SET status = 'revoked' WHERE tenant = ? AND id = ?", key())
                .must_change_row(),
            Statement::new("DELETE FROM device_tokens WHERE tenant = ? AND device = ?", key()),
            Statement::new(
                "UPDATE device_certificates SET revoked_at = ? WHERE tenant = ? AND device = ? AND revoked_at IS NULL",
                vec![now_ms.into(), tenant.into(), id.into()],
            ),
        ];
        self.driver.transaction(statements).await?;
        self.get_device(tenant, id).await
    }

    // ---- per-device data keys ----

    async fn put_device_key(&self, key: &DeviceKey) -> StoreResult<()> {
        let sql = concat!(
            "INSERT INTO device_keys (",
            device_key_columns!(),
            ") VALUES (?, ?, ?, ?) ON CONFLICT (tenant, device) DO UPDATE \
             SET tenant_key_id = excluded.tenant_key_id, wrapped = excluded.wrapped"
        );
        let params =
            vec![(&key.tenant).into(), (&key.device).into(), (&key.tenant_key_id).into(), (&key.wrapped).into()];
        self.insert(sql, params).await
    }

    async fn get_device_key(&self, tenant: &str, device: &str) -> StoreResult<DeviceKey> {
        let sql = concat!("SELECT ", device_key_columns!(), " FROM device_keys WHERE tenant = ? AND device = ?");
        self.one(sql, vec![tenant.into(), device.into()], device_key_from_row).await
    }

    // ---- device tokens ----

    async fn create_device_token(&self, token: &DeviceToken) -> StoreResult<()> {
        // A token for a missing device is NotFound; the foreign key closes the race.
        if !self
            .exists(
                "SELECT 1 FROM devices WHERE tenant = ? AND id = ?",
                vec![(&token.tenant).into(), (&token.device).into()],
            )
            .await?
        {
            return Err(StoreError::NotFound);
        }
        let sql = concat!("INSERT INTO device_tokens (", device_token_columns!(), ") VALUES (?, ?, ?, ?, ?)");
        let params = vec![
            (&token.tenant).into(),
            (&token.device).into(),
            (&token.id).into(),
            (&token.token_hash).into(),
            token.created_at.into(),
        ];
        self.insert(sql, params).await
    }

    async fn list_device_tokens(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceToken>> {
        let sql = concat!(
            "SELECT ",
            device_token_columns!(),
            " FROM device_tokens WHERE tenant = ? AND device = ? ORDER BY created_at, id"
        );
        self.all(sql, vec![tenant.into(), device.into()], device_token_from_row).await
    }

    async fn delete_device_token(&self, tenant: &str, device: &str, id: &str) -> StoreResult<()> {
        let sql = "DELETE FROM device_tokens WHERE tenant = ? AND device = ? AND id = ?";
        self.change_one(sql, vec![tenant.into(), device.into(), id.into()]).await
    }

    // ---- device certificates and the tenant CA ----

    async fn put_tenant_ca(&self, ca: &TenantCa) -> StoreResult<()> {
        let sql = concat!(
            "INSERT INTO tenant_cas (",
            tenant_ca_columns!(),
            ") VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET cert_pem = excluded.cert_pem, \
             key_sealed = excluded.key_sealed, crl_number = excluded.crl_number, created_at = excluded.created_at"
        );
        let params = vec![
            (&ca.tenant).into(),
            (&ca.cert_pem).into(),
            (&ca.key_sealed).into(),
            ca.crl_number.into(),
            ca.created_at.into(),
        ];
        self.insert(sql, params).await
    }

    async fn get_tenant_ca(&self, tenant: &str) -> StoreResult<TenantCa> {
        let sql = concat!("SELECT ", tenant_ca_columns!(), " FROM tenant_cas WHERE tenant = ?");
        self.one(sql, vec![tenant.into()], tenant_ca_from_row).await
    }

    async fn create_device_certificate(&self, cert: &DeviceCertificate) -> StoreResult<()> {
        let sql =
            concat!("INSERT INTO device_certificates (", certificate_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?)");
        let params = vec![
            (&cert.tenant).into(),
            (&cert.device).into(),
            (&cert.serial).into(),
            cert.not_after.into(),
            cert.revoked_at.into(),
            (&cert.cert_pem).into(),
            cert.created_at.into(),
        ];
        self.insert(sql, params).await
    }

    async fn list_device_certificates(&self, tenant: &str, device: &str) -> StoreResult<Vec<DeviceCertificate>> {
        let sql = concat!(
            "SELECT ",
            certificate_columns!(),
            " FROM device_certificates WHERE tenant = ? AND device = ? ORDER BY created_at, serial"
        );
        self.all(sql, vec![tenant.into(), device.into()], certificate_from_row).await
    }

    async fn get_device_certificate(&self, tenant: &str, serial: &str) -> StoreResult<DeviceCertificate> {
        let sql =
            concat!("SELECT ", certificate_columns!(), " FROM device_certificates WHERE tenant = ? AND serial = ?");
        self.one(sql, vec![tenant.into(), serial.into()], certificate_from_row).await
    }

    async fn list_revoked_certificates(&self, tenant: &str) -> StoreResult<Vec<DeviceCertificate>> {
        let sql = concat!(
            "SELECT ",
            certificate_columns!(),
            " FROM device_certificates WHERE tenant = ? AND revoked_at IS NOT NULL ORDER BY serial"
        );
        self.all(sql, vec![tenant.into()], certificate_from_row).await
    }

    // ---- trusted external CAs ----

    async fn create_trusted_ca(&self, ca: &TrustedCa) -> StoreResult<()> {
        let sql = concat!("INSERT INTO trusted_cas (", trusted_ca_columns!(), ") VALUES (?, ?, ?, ?, ?, ?)");
        let params = vec![
            (&ca.tenant).into(),
            (&ca.id).into(),
            (&ca.cert_pem).into(),
            (&ca.subject).into(),
            ca.auto_register.into(),
            ca.created_at.into(),
        ];
        self.insert(sql, params).await
    }

    async fn list_trusted_cas(&self, tenant: &str) -> StoreResult<Vec<TrustedCa>> {
        let sql = concat!("SELECT ", trusted_ca_columns!(), " FROM trusted_cas WHERE tenant = ? ORDER BY id");
        self.all(sql, vec![tenant.into()], trusted_ca_from_row).await
    }

    async fn delete_trusted_ca(&self, tenant: &str, id: &str) -> StoreResult<()> {
        let sql = "DELETE FROM trusted_cas WHERE tenant = ? AND id = ?";
        self.change_one(sql, vec![tenant.into(), id.into()]).await
    }

    // ---- audit ----

    async fn audit_head(&self, tenant: &str) -> StoreResult<Option<AuditRecord>> {
        let sql =
            concat!("SELECT ", audit_columns!(), " FROM audit_records WHERE tenant = ? ORDER BY seq DESC LIMIT 1");
        Ok(self.all(sql, vec![tenant.into()], audit_from_row).await?.into_iter().next())
    }

    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        let sql =
            concat!("INSERT INTO audit_records (", audit_columns!(), ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        let params = vec![
            (&record.tenant).into(),
            record.seq.into(),
            record.ts.into(),
            (&record.actor_type).into(),
            (&record.actor_id).into(),
            (&record.action).into(),
            (&record.target).into(),
            record.source_ip.as_ref().into(),
            (&record.outcome).into(),
            (&record.details_json).into(),
            (&record.prev_hash).into(),
            (&record.hash).into(),
        ];
        self.insert(sql, params).await
    }

    async fn list_audit(&self, tenant: &str, filter: &AuditFilter, page: &Page) -> StoreResult<Vec<AuditRecord>> {
        let after = match &page.after {
            Some(after) => Some(
                after
                    .parse::<i64>()
                    .map_err(|_| StoreError::Backend("audit cursor is not a sequence number".into()))?,
            ),
            None => None,
        };
        let mut select = Select::new(
            concat!("SELECT ", audit_columns!(), " FROM audit_records WHERE tenant = ?"),
            vec![tenant.into()],
        );
        if let Some(from) = filter.from {
            select.and("ts >= ?", from);
        }
        if let Some(to) = filter.to {
            select.and("ts <= ?", to);
        }
        if let Some(action) = &filter.action {
            select.and("action = ?", action);
        }
        if let Some(actor) = &filter.actor {
            select.and("actor_id = ?", actor);
        }
        let select = select.page("seq", after.map(Value::from), page.limit);
        self.all(&select.sql, select.params, audit_from_row).await
    }

    async fn list_audit_tenants(&self) -> StoreResult<Vec<String>> {
        let sql = "SELECT DISTINCT tenant FROM audit_records ORDER BY tenant";
        self.all(sql, vec![], |mut row| row.text()).await
    }

    async fn insert_audit_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()> {
        let sql = concat!("INSERT INTO audit_checkpoints (", checkpoint_columns!(), ") VALUES (?, ?, ?, ?, ?)");
        let params = vec![
            (&checkpoint.tenant).into(),
            checkpoint.seq.into(),
            (&checkpoint.hash).into(),
            checkpoint.ts.into(),
            (&checkpoint.signature).into(),
        ];
        self.insert(sql, params).await
    }

    async fn list_audit_checkpoints(&self, tenant: &str) -> StoreResult<Vec<AuditCheckpoint>> {
        let sql = concat!("SELECT ", checkpoint_columns!(), " FROM audit_checkpoints WHERE tenant = ? ORDER BY seq");
        self.all(sql, vec![tenant.into()], checkpoint_from_row).await
    }

    // ---- device data ----

    async fn write_device_data_batch(&self, batch: &DeviceDataBatch) -> StoreResult<Durable> {
        let mut telemetry = Vec::new();
        let mut events = Vec::new();
        let mut attestations = Vec::new();
        let mut alarm_statements = Vec::new();
        for row in &batch.rows {
            match row {
                DeviceDataRow::Telemetry(row) => telemetry.push(row),
                DeviceDataRow::Event(row) => events.push(row),
                DeviceDataRow::Attestation(row) => attestations.push(row),
                DeviceDataRow::RaiseAlarm(raise) => alarm_statements.push(raise_alarm_statement(raise)),
                DeviceDataRow::ClearAlarm(clear) => alarm_statements.push(Statement::new(
                    "UPDATE alarms SET status = 'CLEARED', updated_at = ? \
                     WHERE tenant = ? AND device = ? AND alarm_type = ? AND status <> 'CLEARED'",
                    vec![clear.ts.into(), (&clear.tenant).into(), (&clear.device).into(), (&clear.alarm_type).into()],
                )),
            }
        }
        let mut statements = Vec::new();
        let telemetry = telemetry_rows::pack(&telemetry);
        multi_row_inserts(
            &mut statements,
            self.driver.rows_per_insert(),
            "INSERT INTO device_telemetry (tenant, device, ts, seq, points, sealed) VALUES ",
            6,
            &telemetry.iter().collect::<Vec<_>>(),
            |row, params| {
                params.extend([
                    row.tenant.into(),
                    row.device.into(),
                    row.ts.into(),
                    row.seq.into(),
                    row.points.into(),
                    row.sealed.as_ref().into(),
                ])
            },
        );
        multi_row_inserts(
            &mut statements,
            self.driver.rows_per_insert(),
            "INSERT INTO device_events (tenant, device, ts, id, type_tag, sealed) VALUES ",
            6,
            &events,
            |row, params| {
                params.extend([
                    (&row.tenant).into(),
                    (&row.device).into(),
                    row.ts.into(),
                    (&row.id).into(),
                    (&row.type_tag).into(),
                    (&row.sealed).into(),
                ])
            },
        );
        multi_row_inserts(
            &mut statements,
            self.driver.rows_per_insert(),
            "INSERT INTO device_attestations (tenant, device, ts, id, sealed) VALUES ",
            5,
            &attestations,
            |row, params| {
                params.extend([
                    (&row.tenant).into(),
                    (&row.device).into(),
                    row.ts.into(),
                    (&row.id).into(),
                    (&row.sealed).into(),
                ])
            },
        );
        // Alarms after the rows, in their order: one upsert per change, because one statement
        // may not update the same open alarm twice (PostgreSQL refuses that).
        statements.extend(alarm_statements);
        statements.extend(seen_statements(&batch.seen));
        if statements.is_empty() {
            return Ok(Durable::now());
        }
        self.driver.transaction_durable_later(statements).await
    }

    async fn touch_devices_last_seen(&self, seen: &[DeviceSeen]) -> StoreResult<()> {
        // Only the `last_seen` half of `seen_statements` (every other statement).
        let statements: Vec<Statement> = seen_statements(seen).into_iter().step_by(2).collect();
        if statements.is_empty() {
            return Ok(());
        }
        self.driver.transaction(statements).await
    }

    async fn list_telemetry(
        &self,
        tenant: &str,
        device: &str,
        range: &TimeRange<i64>,
    ) -> StoreResult<Vec<TelemetryRow>> {
        // Rows are packed (telemetry_rows.rs): a row's points lie in [ts, ts + PACK_SPAN_MS] of
        // its key, so the rows are read in key order, page by page, until no unread row can hold
        // a point that belongs among the first `limit`.
        let span = telemetry_rows::PACK_SPAN_MS;
        let (ascending, limit) = (!range.descending, range.limit as usize);
        let mut rows_range = TimeRange {
            from: range.from.map(|from| from.saturating_sub(span)),
            to: range.to,
            after: None,
            descending: range.descending,
            // A row holds 1 to 64 points: start small, read more per page as pages go by.
            limit: if limit == 0 { 0 } else { (range.limit / 4).clamp(16, 1000) },
        };
        if let Some((ts, _)) = range.after {
            // Rows keyed before `after` may still hold points after it (ascending), rows keyed
            // after it cannot hold points before it (descending).
            match ascending {
                true => rows_range.from = rows_range.from.max(Some(ts.saturating_sub(span))),
                false => rows_range.to = rows_range.to.map_or(Some(ts), |to| Some(to.min(ts))),
            }
        }
        let wanted = |point: &TelemetryRow| {
            range.from.is_none_or(|from| point.ts >= from)
                && range.to.is_none_or(|to| point.ts <= to)
                && range.after.is_none_or(|after| match ascending {
                    true => (point.ts, point.seq) > after,
                    false => (point.ts, point.seq) < after,
                })
        };
        let in_order = |a: &TelemetryRow, b: &TelemetryRow| match ascending {
            true => (a.ts, a.seq).cmp(&(b.ts, b.seq)),
            false => (b.ts, b.seq).cmp(&(a.ts, a.seq)),
        };
        let mut points = Vec::new();
        loop {
            let after = rows_range.after.map(|(ts, seq)| (ts, Value::Int(seq)));
            let (sql, params) = time_range_query(
                "SELECT ts, seq, points, sealed FROM device_telemetry WHERE tenant = ? AND device = ?",
                vec![tenant.into(), device.into()],
                "seq",
                &rows_range,
                after,
            );
            let rows = self.driver.query(&sql, params).await?;
            let exhausted = rows_range.limit == 0 || rows.len() < rows_range.limit as usize;
            let mut last_key = None;
            for mut row in rows {
                let (ts, seq, count, sealed) = (row.int()?, row.int()?, row.int()?, row.blob()?);
                points
                    .extend(telemetry_rows::unpack(tenant, device, ts, seq, count, sealed)?.into_iter().filter(wanted));
                last_key = Some((ts, seq));
            }
            points.sort_unstable_by(in_order);
            if limit > 0 {
                points.truncate(limit);
            }
            let Some(last_key) = last_key else { break };
            if exhausted {
                break;
            }
            // Unread rows hold points from their key on (ascending) or up to their key plus the
            // span (descending); once those all come after the `limit`-th point, stop.
            if let Some(kth) = limit.checked_sub(1).and_then(|index| points.get(index)) {
                let done = match ascending {
                    true => last_key.0 > kth.ts,
                    false => last_key.0.saturating_add(span) < kth.ts,
                };
                if done {
                    break;
                }
            }
            rows_range.after = Some(last_key);
            rows_range.limit = rows_range.limit.saturating_mul(2).min(1000);
        }
        Ok(points)
    }

    async fn list_device_events(
        &self,
        tenant: &str,
        device: &str,
        type_tag: Option<&str>,
        range: &TimeRange<String>,
    ) -> StoreResult<Vec<DeviceEventRow>> {
        let mut base = String::from(
            "SELECT tenant, device, ts, id, type_tag, sealed FROM device_events WHERE tenant = ? AND device = ?",
        );
        let mut params = vec![tenant.into(), device.into()];
        if let Some(tag) = type_tag {
            base.push_str(" AND type_tag = ?");
            params.push(tag.into());
        }
        let after = range.after.as_ref().map(|(ts, id)| (*ts, Value::Text(id.clone())));
        let (sql, params) = time_range_query(&base, params, "id", range, after);
        self.all(&sql, params, |mut row| {
            Ok(DeviceEventRow {
                tenant: row.text()?,
                device: row.text()?,
                ts: row.int()?,
                id: row.text()?,
                type_tag: row.text()?,
                sealed: row.blob()?,
            })
        })
        .await
    }

    async fn list_attestations(&self, tenant: &str, device: &str, limit: u32) -> StoreResult<Vec<AttestationRow>> {
        let sql = "SELECT tenant, device, ts, id, sealed FROM device_attestations WHERE tenant = ? AND device = ? \
                   ORDER BY ts DESC, id DESC LIMIT ?";
        self.all(sql, vec![tenant.into(), device.into(), i64::from(limit.max(1)).into()], |mut row| {
            Ok(AttestationRow {
                tenant: row.text()?,
                device: row.text()?,
                ts: row.int()?,
                id: row.text()?,
                sealed: row.blob()?,
            })
        })
        .await
    }

    async fn list_alarms(&self, tenant: &str, filter: &AlarmFilter, page: &Page) -> StoreResult<Vec<AlarmRow>> {
        let mut sql = format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE tenant = ?");
        let mut params: Vec<Value> = vec![tenant.into()];
        if let Some(status) = &filter.status {
            sql.push_str(" AND status = ?");
            params.push(status.into());
        }
        if let Some(severity) = &filter.severity {
            sql.push_str(" AND severity = ?");
            params.push(severity.into());
        }
        if let Some(device) = &filter.device {
            sql.push_str(" AND device = ?");
            params.push(device.into());
        }
        if let Some(groups) = &filter.within_groups {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(&format!(
                " AND device IN (SELECT id FROM devices WHERE tenant = ? AND group_id IN ({}))",
                placeholders(groups.len())
            ));
            params.push(tenant.into());
            params.extend(groups.iter().map(Value::from));
        }
        if let Some(after) = &page.after {
            sql.push_str(" AND id < ?");
            params.push(after.into());
        }
        sql.push_str(" ORDER BY id DESC");
        if page.limit > 0 {
            sql.push_str(" LIMIT ?");
            params.push(i64::from(page.limit).into());
        }
        self.all(&sql, params, alarm_from_row).await
    }

    async fn get_alarm(&self, tenant: &str, id: &str) -> StoreResult<AlarmRow> {
        let sql = format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE tenant = ? AND id = ?");
        self.one(&sql, vec![tenant.into(), id.into()], alarm_from_row).await
    }

    async fn latest_alarm(&self, tenant: &str, device: &str, alarm_type: &str) -> StoreResult<Option<AlarmRow>> {
        let sql = format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE tenant = ? AND device = ? AND alarm_type = ? \
             ORDER BY id DESC LIMIT 1"
        );
        let rows = self.all(&sql, vec![tenant.into(), device.into(), alarm_type.into()], alarm_from_row).await?;
        Ok(rows.into_iter().next())
    }

    async fn set_alarm_status(
        &self,
        tenant: &str,
        id: &str,
        from: &[&str],
        to: &str,
        now_ms: i64,
    ) -> StoreResult<AlarmRow> {
        if !from.is_empty() {
            let sql = format!(
                "UPDATE alarms SET status = ?, updated_at = ? WHERE tenant = ? AND id = ? AND status IN ({})",
                placeholders(from.len())
            );
            let mut params: Vec<Value> = vec![to.into(), now_ms.into(), tenant.into(), id.into()];
            params.extend(from.iter().map(|status| Value::from(*status)));
            if self.driver.execute(&sql, params).await? > 0 {
                return self.get_alarm(tenant, id).await;
            }
        }
        // Nothing changed: either there is no such alarm or its status does not allow it.
        let current = self.get_alarm(tenant, id).await?;
        Err(StoreError::Conflict(format!("alarm is {}", current.status)))
    }

    async fn raise_alarm(&self, raise: &AlarmRaise) -> StoreResult<()> {
        let statement = raise_alarm_statement(raise);
        self.driver.execute(&statement.sql, statement.params).await.map(drop)
    }

    async fn list_silent_devices(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<SilentDevice>> {
        let sql = "SELECT d.tenant, d.id, d.last_seen, d.required_interval_s FROM devices d \
                   WHERE d.status = 'active' AND d.required_interval_s IS NOT NULL AND d.required_interval_s > 0 \
                   AND d.last_seen IS NOT NULL AND d.last_seen + d.required_interval_s * 1000 < ? \
                   AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.tenant = d.tenant AND a.device = d.id \
                   AND a.alarm_type = 'unavailable' AND a.status <> 'CLEARED') \
                   ORDER BY d.tenant, d.id LIMIT ?";
        self.all(sql, vec![now_ms.into(), i64::from(limit.max(1)).into()], |mut row| {
            Ok(SilentDevice {
                tenant: row.text()?,
                device: row.text()?,
                last_seen: row.int()?,
                required_interval_s: row.int()?,
            })
        })
        .await
    }

    async fn get_twin_reported(&self, tenant: &str, device: &str) -> StoreResult<Option<TwinReportedRow>> {
        let sql = "SELECT tenant, device, reported_sealed, reported_version, updated_at FROM device_twins \
                   WHERE tenant = ? AND device = ?";
        let rows = self
            .all(sql, vec![tenant.into(), device.into()], |mut row| {
                Ok(TwinReportedRow {
                    tenant: row.text()?,
                    device: row.text()?,
                    reported_sealed: row.blob()?,
                    reported_version: row.int()?,
                    updated_at: row.int()?,
                })
            })
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn put_twin_reported(&self, row: &TwinReportedRow, expected_version: i64) -> StoreResult<()> {
        let changed = if expected_version == 0 {
            let sql = "INSERT INTO device_twins (tenant, device, reported_sealed, reported_version, updated_at) \
                       VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, device) DO NOTHING";
            let params = vec![
                (&row.tenant).into(),
                (&row.device).into(),
                (&row.reported_sealed).into(),
                row.reported_version.into(),
                row.updated_at.into(),
            ];
            self.driver.execute(sql, params).await?
        } else {
            let sql = "UPDATE device_twins SET reported_sealed = ?, reported_version = ?, updated_at = ? \
                       WHERE tenant = ? AND device = ? AND reported_version = ?";
            let params = vec![
                (&row.reported_sealed).into(),
                row.reported_version.into(),
                row.updated_at.into(),
                (&row.tenant).into(),
                (&row.device).into(),
                expected_version.into(),
            ];
            self.driver.execute(sql, params).await?
        };
        match changed {
            0 => Err(StoreError::Conflict("reported twin changed meanwhile".into())),
            _ => Ok(()),
        }
    }
}

// ---- device data helpers ----

const ALARM_COLUMNS: &str = "tenant, id, device, alarm_type, severity, status, alarm_count, text_sealed, \
                             first_ts, last_ts, updated_at";

fn alarm_from_row(mut row: Row) -> StoreResult<AlarmRow> {
    Ok(AlarmRow {
        tenant: row.text()?,
        id: row.text()?,
        device: row.text()?,
        alarm_type: row.text()?,
        severity: row.text()?,
        status: row.text()?,
        count: row.int()?,
        text_sealed: row.opt_blob()?,
        first_ts: row.int()?,
        last_ts: row.int()?,
        updated_at: row.int()?,
    })
}

/// The upsert of [`AlarmRaise`]: the partial unique index `alarms_open` makes "the open alarm
/// of this device and type" the conflict target, so two raises never create two open alarms.
fn raise_alarm_statement(raise: &AlarmRaise) -> Statement {
    Statement::new(
        format!(
            "INSERT INTO alarms ({ALARM_COLUMNS}) VALUES (?, ?, ?, ?, ?, 'ACTIVE', 1, ?, ?, ?, ?) \
             ON CONFLICT (tenant, device, alarm_type) WHERE status <> 'CLEARED' DO UPDATE SET \
             alarm_count = alarms.alarm_count + 1, severity = excluded.severity, \
             text_sealed = COALESCE(excluded.text_sealed, alarms.text_sealed), \
             last_ts = CASE WHEN excluded.last_ts > alarms.last_ts THEN excluded.last_ts ELSE alarms.last_ts END, \
             updated_at = excluded.updated_at"
        ),
        vec![
            (&raise.tenant).into(),
            (&raise.id).into(),
            (&raise.device).into(),
            (&raise.alarm_type).into(),
            (&raise.severity).into(),
            raise.text_sealed.as_ref().into(),
            raise.ts.into(),
            raise.ts.into(),
            raise.ts.into(),
        ],
    )
}

/// Multi-row INSERTs of at most `rows_per_insert` rows, in chunks of a few fixed sizes so
/// that both drivers' statement caches see at most three distinct SQL texts per table.
fn multi_row_inserts<T>(
    statements: &mut Vec<Statement>,
    rows_per_insert: usize,
    prefix: &str,
    columns: usize,
    rows: &[&T],
    bind: impl Fn(&T, &mut Vec<Value>),
) {
    let row_placeholders = format!("({})", placeholders(columns));
    let mut texts: Vec<(usize, std::sync::Arc<str>)> = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size =
            [100, 10, 1].into_iter().find(|size| *size <= rows_per_insert.max(1) && rest.len() >= *size).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        let sql = match texts.iter().find(|(built, _)| *built == size) {
            Some((_, sql)) => std::sync::Arc::clone(sql),
            None => {
                let sql: std::sync::Arc<str> =
                    format!("{prefix}{}", vec![row_placeholders.as_str(); size].join(", ")).into();
                texts.push((size, std::sync::Arc::clone(&sql)));
                sql
            }
        };
        let mut params = Vec::with_capacity(size * columns);
        for row in chunk {
            bind(row, &mut params);
        }
        statements.push(Statement::new(sql, params));
        rest = tail;
    }
}

/// One entry per device with its latest time.
fn latest_seen(seen: &[DeviceSeen]) -> Vec<&DeviceSeen> {
    let mut latest: std::collections::BTreeMap<(&str, &str), &DeviceSeen> = std::collections::BTreeMap::new();
    for entry in seen {
        let slot = latest.entry((entry.tenant.as_str(), entry.device.as_str())).or_insert(entry);
        if entry.at_ms > slot.at_ms {
            *slot = entry;
        }
    }
    latest.into_values().collect()
}

/// `last_seen` updates plus the clearing of each device's open `unavailable` alarm: two
/// statements per chunk of devices (not per device), so a batch costs few round trips.
fn seen_statements(seen: &[DeviceSeen]) -> Vec<Statement> {
    let latest = latest_seen(seen);
    let mut statements = Vec::new();
    let mut rest = latest.as_slice();
    while !rest.is_empty() {
        let size = [100, 10, 1].into_iter().find(|size| rest.len() >= *size).unwrap_or(1);
        let (chunk, tail) = rest.split_at(size);
        // Explicit casts: PostgreSQL cannot infer the types of bare parameters in VALUES.
        let rows = vec!["(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT))"; size].join(", ");
        let mut params = Vec::with_capacity(size * 3);
        for entry in chunk {
            params.extend([(&entry.tenant).into(), (&entry.device).into(), entry.at_ms.into()]);
        }
        statements.push(Statement::new(
            format!(
                "UPDATE devices SET \
                 last_seen = CASE WHEN devices.last_seen IS NULL OR devices.last_seen < seen.column3 \
                 THEN seen.column3 ELSE devices.last_seen END, \
                 status = CASE WHEN devices.status = 'registered' THEN 'active' ELSE devices.status END \
                 FROM (VALUES {rows}) AS seen WHERE devices.tenant = seen.column1 AND devices.id = seen.column2"
            ),
            params.clone(),
        ));
        statements.push(Statement::new(
            format!(
                "UPDATE alarms SET status = 'CLEARED', updated_at = seen.column3 \
                 FROM (VALUES {rows}) AS seen WHERE alarms.tenant = seen.column1 AND alarms.device = seen.column2 \
                 AND alarms.alarm_type = 'unavailable' AND alarms.status <> 'CLEARED'"
            ),
            params,
        ));
        rest = tail;
    }
    statements
}

/// Adds the time bounds, the keyset position `(ts, key)` and the order to a listing of one
/// device's rows ordered by (ts, `key_column`).
fn time_range_query<K>(
    base: &str,
    mut params: Vec<Value>,
    key_column: &str,
    range: &TimeRange<K>,
    after: Option<(i64, Value)>,
) -> (String, Vec<Value>) {
    let mut sql = String::from(base);
    if let Some(from) = range.from {
        sql.push_str(" AND ts >= ?");
        params.push(from.into());
    }
    if let Some(to) = range.to {
        sql.push_str(" AND ts <= ?");
        params.push(to.into());
    }
    let (compare, order) = if range.descending { ("<", "DESC") } else { (">", "ASC") };
    if let Some((ts, key)) = after {
        sql.push_str(&format!(" AND (ts {compare} ? OR (ts = ? AND {key_column} {compare} ?))"));
        params.extend([ts.into(), ts.into(), key]);
    }
    sql.push_str(&format!(" ORDER BY ts {order}, {key_column} {order}"));
    if range.limit > 0 {
        sql.push_str(" LIMIT ?");
        params.push(i64::from(range.limit).into());
    }
    (sql, params)
}
