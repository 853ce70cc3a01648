//! Security events (SPEC §10): `GET /api/v1/security/events?type=&severity=&since=`.

use axum::Json;
use axum::extract::State;
use rampart_core::{SecurityEventType, Severity};
use rampart_platform::rows::{SecurityEvent, SecurityEventFilter};
use rampart_platform::{format_rfc3339_ms, parse_timestamp};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_security_events))
}

/// Query of the security event list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    /// Event type, e.g. `acl_violation`.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// `CRITICAL`, `MAJOR`, `MINOR` or `WARNING`.
    severity: Option<String>,
    /// RFC 3339 or epoch milliseconds.
    since: Option<String>,
    /// Only events about this device.
    device: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// One security event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SecurityEventDto {
    id: String,
    ts: String,
    #[serde(rename = "type")]
    event_type: String,
    severity: String,
    source_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

impl From<SecurityEvent> for SecurityEventDto {
    fn from(event: SecurityEvent) -> Self {
        SecurityEventDto {
            id: event.id,
            ts: format_rfc3339_ms(event.ts),
            event_type: event.event_type.as_str().to_owned(),
            severity: event.severity.as_str().to_owned(),
            source_ip: event.source_ip,
            device: event.device,
            user: event.user,
            details: serde_json::from_str(&event.details_json).unwrap_or_default(),
        }
    }
}

/// Lists the tenant's security events, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/security/events",
    tag = "security",
    params(EventQuery),
    responses(
        (status = 200, body = Paginated<SecurityEventDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_security_events(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> ApiResult<Json<Paginated<SecurityEventDto>>> {
    let severity = match query.severity.as_deref() {
        None => None,
        Some(text) => Some(
            Severity::parse(text)
                .ok_or_else(|| ApiError::invalid("severity must be CRITICAL, MAJOR, MINOR or WARNING"))?,
        ),
    };
    let event_type = match query.event_type.as_deref() {
        None => None,
        Some(text) => Some(SecurityEventType::parse(text).ok_or_else(|| ApiError::invalid("unknown event type"))?),
    };
    let since = match &query.since {
        None => None,
        Some(text) => {
            Some(parse_timestamp(text).ok_or_else(|| ApiError::invalid("since must be RFC 3339 or epoch ms"))?)
        }
    };
    let list = ListQuery { limit: query.limit, cursor: query.cursor };
    let filter = SecurityEventFilter { event_type, severity, since, device: query.device, within_groups: None };
    let rows = state.platform.security_events(&principal, filter, &list.page()?).await?;
    Ok(Json(paginate(&list, rows, |event| event.id.clone(), SecurityEventDto::from)?))
}
