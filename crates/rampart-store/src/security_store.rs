//! Security events (SPEC §10), per tenant incarnation: a tenant that gets a deleted tenant's
//! id never sees the old tenant's events.

use async_trait::async_trait;
use rampart_core::{SecurityEventType, Severity};

use crate::sql_store::SqlStore;
use crate::value::{Row, Value};
use crate::{Page, StoreError, StoreResult};

/// One security event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub tenant: String,
    /// The tenant incarnation the event happened in.
    pub incarnation: String,
    pub id: String,
    pub ts: i64,
    pub event_type: SecurityEventType,
    pub severity: Severity,
    pub source_ip: Option<String>,
    pub device: Option<String>,
    pub user: Option<String>,
    /// JSON object text.
    pub details_json: String,
}

/// Filters for listing security events; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct SecurityEventFilter {
    pub event_type: Option<SecurityEventType>,
    pub severity: Option<Severity>,
    pub since: Option<i64>,
    pub device: Option<String>,
    /// Only events about devices in these groups (group-scoped callers); `None` = every event.
    pub within_groups: Option<Vec<String>>,
}

/// Security event persistence.
#[async_trait]
pub trait SecurityStore: Send + Sync {
    async fn insert_security_event(&self, event: &SecurityEvent) -> StoreResult<()>;
    /// The events of the tenant incarnation, newest first; `page.after` is the id of the last
    /// event of the previous page.
    async fn list_security_events(
        &self,
        tenant: &str,
        incarnation: &str,
        filter: &SecurityEventFilter,
        page: &Page,
    ) -> StoreResult<Vec<SecurityEvent>>;
}

const COLUMNS: &str = "tenant, incarnation, id, ts, event_type, severity, source_ip, device, user_name, details_json";

fn opt_text(value: &Option<String>) -> Value {
    value.as_ref().map_or(Value::Null, |v| Value::Text(v.clone()))
}

fn event_from_row(mut row: Row) -> StoreResult<SecurityEvent> {
    Ok(SecurityEvent {
        tenant: row.text()?,
        incarnation: row.text()?,
        id: row.text()?,
        ts: row.int()?,
        event_type: SecurityEventType::parse(&row.text()?)
            .ok_or_else(|| StoreError::Corrupt("unknown security event type".into()))?,
        severity: Severity::parse(&row.text()?).ok_or_else(|| StoreError::Corrupt("unknown severity".into()))?,
        source_ip: row.opt_text()?,
        device: row.opt_text()?,
        user: row.opt_text()?,
        details_json: row.text()?,
    })
}

#[async_trait]
impl SecurityStore for SqlStore {
    async fn insert_security_event(&self, event: &SecurityEvent) -> StoreResult<()> {
        let sql = format!("INSERT INTO security_events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        let params = vec![
            Value::Text(event.tenant.clone()),
            Value::Text(event.incarnation.clone()),
            Value::Text(event.id.clone()),
            Value::Int(event.ts),
            Value::from(event.event_type.as_str()),
            Value::from(event.severity.as_str()),
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
        incarnation: &str,
        filter: &SecurityEventFilter,
        page: &Page,
    ) -> StoreResult<Vec<SecurityEvent>> {
        let mut sql = format!("SELECT {COLUMNS} FROM security_events WHERE tenant = ? AND incarnation = ?");
        let mut params = vec![Value::from(tenant), Value::from(incarnation)];
        if let Some(event_type) = filter.event_type {
            sql.push_str(" AND event_type = ?");
            params.push(Value::from(event_type.as_str()));
        }
        if let Some(severity) = filter.severity {
            sql.push_str(" AND severity = ?");
            params.push(Value::from(severity.as_str()));
        }
        if let Some(since) = filter.since {
            sql.push_str(" AND ts >= ?");
            params.push(Value::Int(since));
        }
        if let Some(device) = &filter.device {
            sql.push_str(" AND device = ?");
            params.push(Value::Text(device.clone()));
        }
        if let Some(groups) = &filter.within_groups {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(&format!(
                " AND device IN (SELECT id FROM devices WHERE tenant = ? AND group_id IN ({}))",
                crate::value::placeholders(groups.len())
            ));
            params.push(Value::from(tenant));
            params.extend(groups.iter().map(Value::from));
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
