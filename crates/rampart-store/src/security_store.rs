//! Store methods for security events (SPEC §10), as a supertrait of [`crate::Store`].

use async_trait::async_trait;

use crate::sql_store::SqlStore;
use crate::value::{Row, Value};
use crate::{Page, StoreError, StoreResult};

/// One security event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub tenant: String,
    pub id: String,
    pub ts: i64,
    /// e.g. `acl_violation`, `auth_failure`.
    pub event_type: String,
    /// `CRITICAL`, `MAJOR`, `MINOR` or `WARNING`.
    pub severity: String,
    pub source_ip: Option<String>,
    pub device: Option<String>,
    pub user: Option<String>,
    /// JSON object text.
    pub details_json: String,
}

/// Filters for listing security events; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct SecurityEventFilter {
    pub event_type: Option<String>,
    pub severity: Option<String>,
    pub since: Option<i64>,
    pub device: Option<String>,
}

/// Security event persistence.
#[async_trait]
pub trait SecurityStore: Send + Sync {
    async fn insert_security_event(&self, event: &SecurityEvent) -> StoreResult<()>;
    /// Newest first; `page.after` is the id of the last event of the previous page.
    async fn list_security_events(
        &self,
        tenant: &str,
        filter: &SecurityEventFilter,
        page: &Page,
    ) -> StoreResult<Vec<SecurityEvent>>;
}

const COLUMNS: &str = "tenant, id, ts, event_type, severity, source_ip, device, user_name, details_json";

fn opt_text(value: &Option<String>) -> Value {
    value.as_ref().map_or(Value::Null, |v| Value::Text(v.clone()))
}

fn event_from_row(mut row: Row) -> StoreResult<SecurityEvent> {
    Ok(SecurityEvent {
        tenant: row.text()?,
        id: row.text()?,
        ts: row.int()?,
        event_type: row.text()?,
        severity: row.text()?,
        source_ip: row.opt_text()?,
        device: row.opt_text()?,
        user: row.opt_text()?,
        details_json: row.text()?,
    })
}

#[async_trait]
impl SecurityStore for SqlStore {
    async fn insert_security_event(&self, event: &SecurityEvent) -> StoreResult<()> {
        let sql = format!("INSERT INTO security_events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        let params = vec![
            Value::Text(event.tenant.clone()),
            Value::Text(event.id.clone()),
            Value::Int(event.ts),
            Value::Text(event.event_type.clone()),
            Value::Text(event.severity.clone()),
            opt_text(&event.source_ip),
            opt_text(&event.device),
            opt_text(&event.user),
            Value::Text(event.details_json.clone()),
        ];
        self.driver.execute(&sql, params).await.map(|_| ())
    }

    async fn list_security_events(
        &self,
        tenant: &str,
        filter: &SecurityEventFilter,
        page: &Page,
    ) -> StoreResult<Vec<SecurityEvent>> {
        let mut sql = format!("SELECT {COLUMNS} FROM security_events WHERE tenant = ?");
        let mut params = vec![Value::Text(tenant.to_owned())];
        if let Some(event_type) = &filter.event_type {
            sql.push_str(" AND event_type = ?");
            params.push(Value::Text(event_type.clone()));
        }
        if let Some(severity) = &filter.severity {
            sql.push_str(" AND severity = ?");
            params.push(Value::Text(severity.clone()));
        }
        if let Some(since) = filter.since {
            sql.push_str(" AND ts >= ?");
            params.push(Value::Int(since));
        }
        if let Some(device) = &filter.device {
            sql.push_str(" AND device = ?");
            params.push(Value::Text(device.clone()));
        }
        if let Some(after) = &page.after {
            // Ids are `<ts as 16 hex digits><random>`, so they sort like (ts, random).
            sql.push_str(" AND id < ?");
            params.push(Value::Text(after.clone()));
        }
        sql.push_str(" ORDER BY id DESC");
        if page.limit > 0 {
            sql.push_str(" LIMIT ?");
            params.push(Value::Int(i64::from(page.limit)));
        }
        let rows = self.driver.query(&sql, params).await?;
        rows.into_iter().map(event_from_row).collect::<Result<_, StoreError>>()
    }
}
