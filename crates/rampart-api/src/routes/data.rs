//! Device data (SPEC §8): measurements, aggregates and events of one device, and the tenant's
//! alarms. Reads need `telemetry:read` (measurements, aggregates, events) or `alarms:read`;
//! changing an alarm needs `alarms:write` and is audited as `alarm.update`. A group-scoped
//! caller sees only devices (and their alarms) in its groups; everything else answers 404.
//!
//! Decisions: `aggregate` defaults to `interval=1h` and `fn=avg` when they are absent (invalid
//! values answer 400) and refuses ranges holding more than
//! 100,000 messages (`rampart_data::MAX_AGGREGATE_ROWS`) with 400; a measurements page
//! reads at most 10,000 messages and may then end early with a `next_cursor`.

use axum::Json;
use axum::extract::State;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_core::{AlarmStatus, DeviceId, Permission, Severity};
use rampart_data::{
    AggregateFn, AggregateInterval, AggregateQuery, Alarm, AlarmQuery, DeviceEvent, EventQuery, Ingestor,
    MeasurementQuery, QueryError,
};
use rampart_platform::{format_rfc3339_ms, parse_timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::Paginated;
use crate::state::AppState;

/// Longest series name or event type, in bytes (as devices may send them).
const MAX_NAME_BYTES: usize = 128;
/// Page sizes (SPEC §3).
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_measurements))
        .routes(routes!(aggregate_measurements))
        .routes(routes!(list_events))
        .routes(routes!(list_alarms))
        .routes(routes!(get_alarm, patch_alarm))
}

/// The device data service.
pub(crate) fn ingestor(state: &AppState) -> ApiResult<&Ingestor> {
    Ok(&state.ingestor)
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::NotFound => ApiError::NotFound,
            QueryError::Forbidden => ApiError::Forbidden,
            QueryError::Invalid(message) => ApiError::InvalidRequest(message),
            QueryError::Conflict(message) => ApiError::Conflict(message),
            QueryError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

fn time_param(name: &str, value: Option<&str>) -> ApiResult<Option<i64>> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => parse_timestamp(text)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{name} must be RFC 3339 or epoch milliseconds"))),
    }
}

fn time_range(from: Option<&str>, to: Option<&str>) -> ApiResult<(Option<i64>, Option<i64>)> {
    let (from, to) = (time_param("from", from)?, time_param("to", to)?);
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::invalid("from must not be after to"));
    }
    Ok((from, to))
}

fn descending(order: Option<&str>) -> ApiResult<bool> {
    match order {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(_) => Err(ApiError::invalid("order must be asc or desc")),
    }
}

pub(super) fn limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::invalid("limit must be between 1 and 1000")),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

fn check_name(field: &str, value: &str) -> ApiResult<()> {
    if value.is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid(format!("{field} must be 1 to {MAX_NAME_BYTES} bytes")));
    }
    Ok(())
}

/// Cursors of the data layer travel base64url-encoded, like every other cursor of the API.
pub(super) fn decode_cursor(cursor: Option<String>) -> ApiResult<Option<String>> {
    cursor
        .map(|cursor| {
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| ApiError::invalid("invalid cursor"))
        })
        .transpose()
}

pub(super) fn encode_cursor(cursor: Option<String>) -> Option<String> {
    cursor.map(|cursor| URL_SAFE_NO_PAD.encode(cursor))
}

/// One measurement point.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MeasurementDto {
    /// RFC 3339 with milliseconds.
    pub ts: String,
    pub series: String,
    pub value: f64,
}

/// `GET /api/v1/devices/{id}/measurements` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MeasurementParams {
    /// Only this series.
    pub series: Option<String>,
    /// Inclusive lower bound: RFC 3339 or epoch milliseconds.
    pub from: Option<String>,
    /// Inclusive upper bound: RFC 3339 or epoch milliseconds.
    pub to: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    pub cursor: Option<String>,
}

/// Lists a device's measurements as points, ordered by time then series.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/measurements",
    tag = "data",
    params(("id" = String, Path, description = "Device id"), MeasurementParams),
    responses(
        (status = 200, body = Paginated<MeasurementDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_measurements(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<MeasurementParams>,
) -> ApiResult<Json<Paginated<MeasurementDto>>> {
    let device = state.platform.visible_device(&principal, Permission::TelemetryRead, &DeviceId::parse(&id)?).await?;
    if let Some(series) = &params.series {
        check_name("series", series)?;
    }
    let (from, to) = time_range(params.from.as_deref(), params.to.as_deref())?;
    let query = MeasurementQuery {
        series: params.series,
        from,
        to,
        descending: descending(params.order.as_deref())?,
        limit: limit(params.limit)?,
        cursor: decode_cursor(params.cursor)?,
    };
    let page = ingestor(&state)?.measurements(&principal.tenant, &device.id, &query).await?;
    let items = page
        .items
        .into_iter()
        .map(|point| MeasurementDto { ts: format_rfc3339_ms(point.ts), series: point.series, value: point.value })
        .collect();
    Ok(Json(Paginated { items, next_cursor: encode_cursor(page.next_cursor) }))
}

/// One aggregate bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct BucketDto {
    /// Bucket start (UTC-aligned), RFC 3339 with milliseconds.
    pub ts: String,
    pub value: f64,
}

/// Aggregate buckets; empty buckets are left out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct AggregateDto {
    pub items: Vec<BucketDto>,
    /// Always `null`: an aggregate is answered whole.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/devices/{id}/measurements/aggregate` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AggregateParams {
    /// The series to aggregate (required).
    pub series: Option<String>,
    /// Inclusive lower bound: RFC 3339 or epoch milliseconds.
    pub from: Option<String>,
    /// Inclusive upper bound: RFC 3339 or epoch milliseconds.
    pub to: Option<String>,
    /// `1m`, `1h` (default) or `1d`.
    pub interval: Option<String>,
    /// `avg` (default), `min`, `max`, `sum` or `count`.
    #[serde(rename = "fn")]
    #[param(rename = "fn")]
    pub function: Option<String>,
}

/// Aggregates one series of a device into time buckets.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/measurements/aggregate",
    tag = "data",
    params(("id" = String, Path, description = "Device id"), AggregateParams),
    responses(
        (status = 200, body = AggregateDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn aggregate_measurements(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<AggregateParams>,
) -> ApiResult<Json<AggregateDto>> {
    let device = state.platform.visible_device(&principal, Permission::TelemetryRead, &DeviceId::parse(&id)?).await?;
    let series = params.series.ok_or_else(|| ApiError::invalid("series is required"))?;
    check_name("series", &series)?;
    let interval = match params.interval.as_deref() {
        None => AggregateInterval::Hour,
        Some(text) => {
            AggregateInterval::parse(text).ok_or_else(|| ApiError::invalid("interval must be 1m, 1h or 1d"))?
        }
    };
    let function = match params.function.as_deref() {
        None => AggregateFn::Avg,
        Some(text) => {
            AggregateFn::parse(text).ok_or_else(|| ApiError::invalid("fn must be avg, min, max, sum or count"))?
        }
    };
    let (from, to) = time_range(params.from.as_deref(), params.to.as_deref())?;
    let query = AggregateQuery { series, from, to, interval, function };
    let buckets = ingestor(&state)?.aggregate(&principal.tenant, &device.id, &query).await?;
    let items =
        buckets.into_iter().map(|bucket| BucketDto { ts: format_rfc3339_ms(bucket.ts), value: bucket.value }).collect();
    Ok(Json(AggregateDto { items, next_cursor: None }))
}

/// A device event: `id`, `ts`, `type`, `text` and every other field the device sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct EventDto {
    pub id: String,
    /// RFC 3339 with milliseconds.
    pub ts: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub text: Option<String>,
    /// The device's other fields, as sent.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
}

impl From<DeviceEvent> for EventDto {
    fn from(event: DeviceEvent) -> Self {
        let mut extra = event.extra;
        // The envelope's own fields win over device fields of the same name.
        for reserved in ["id", "ts", "type", "text"] {
            extra.remove(reserved);
        }
        EventDto {
            id: event.id,
            ts: format_rfc3339_ms(event.ts),
            event_type: event.event_type,
            text: event.text,
            extra,
        }
    }
}

/// `GET /api/v1/devices/{id}/events` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventParams {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Inclusive lower bound: RFC 3339 or epoch milliseconds.
    pub from: Option<String>,
    /// Inclusive upper bound: RFC 3339 or epoch milliseconds.
    pub to: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    pub cursor: Option<String>,
}

/// Lists a device's events by time (permission `telemetry:read`).
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/events",
    tag = "data",
    params(("id" = String, Path, description = "Device id"), EventParams),
    responses(
        (status = 200, body = Paginated<EventDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<EventParams>,
) -> ApiResult<Json<Paginated<EventDto>>> {
    let device = state.platform.visible_device(&principal, Permission::TelemetryRead, &DeviceId::parse(&id)?).await?;
    if let Some(event_type) = &params.event_type {
        check_name("type", event_type)?;
    }
    let (from, to) = time_range(params.from.as_deref(), params.to.as_deref())?;
    let query = EventQuery {
        event_type: params.event_type,
        from,
        to,
        descending: descending(params.order.as_deref())?,
        limit: limit(params.limit)?,
        cursor: decode_cursor(params.cursor)?,
    };
    let page = ingestor(&state)?.events(&principal.tenant, &device.id, &query).await?;
    Ok(Json(Paginated {
        items: page.items.into_iter().map(EventDto::from).collect(),
        next_cursor: encode_cursor(page.next_cursor),
    }))
}

/// An alarm (SPEC §8).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct AlarmDto {
    pub id: String,
    pub device: String,
    #[serde(rename = "type")]
    pub alarm_type: String,
    /// `CRITICAL`, `MAJOR`, `MINOR` or `WARNING`.
    pub severity: String,
    /// `ACTIVE`, `ACKNOWLEDGED` or `CLEARED`.
    pub status: String,
    /// How often the device raised it while open.
    pub count: i64,
    pub text: Option<String>,
    pub first_ts: String,
    pub last_ts: String,
}

impl From<Alarm> for AlarmDto {
    fn from(alarm: Alarm) -> Self {
        AlarmDto {
            id: alarm.id,
            device: alarm.device,
            alarm_type: alarm.alarm_type,
            severity: alarm.severity.as_str().to_owned(),
            status: alarm.status.as_str().to_owned(),
            count: alarm.count,
            text: alarm.text,
            first_ts: format_rfc3339_ms(alarm.first_ts),
            last_ts: format_rfc3339_ms(alarm.last_ts),
        }
    }
}

/// `GET /api/v1/alarms` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AlarmParams {
    /// `ACTIVE`, `ACKNOWLEDGED` or `CLEARED`.
    pub status: Option<String>,
    /// `CRITICAL`, `MAJOR`, `MINOR` or `WARNING`.
    pub severity: Option<String>,
    /// Only alarms of this device.
    pub device: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    pub cursor: Option<String>,
}

/// Lists the tenant's alarms, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alarms",
    tag = "data",
    params(AlarmParams),
    responses(
        (status = 200, body = Paginated<AlarmDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_alarms(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<AlarmParams>,
) -> ApiResult<Json<Paginated<AlarmDto>>> {
    state.platform.authorize(&principal, Permission::AlarmsRead).await?;
    let status = params
        .status
        .as_deref()
        .map(|text| {
            AlarmStatus::parse(text).ok_or_else(|| ApiError::invalid("status must be ACTIVE, ACKNOWLEDGED or CLEARED"))
        })
        .transpose()?;
    let severity = params
        .severity
        .as_deref()
        .map(|text| {
            Severity::parse(text).ok_or_else(|| ApiError::invalid("severity must be CRITICAL, MAJOR, MINOR or WARNING"))
        })
        .transpose()?;
    if let Some(device) = &params.device {
        rampart_core::validate_id(rampart_core::IdKind::Device, device)?;
    }
    let within_groups = principal.scope.group_filter();
    let query = AlarmQuery {
        status,
        severity,
        device: params.device,
        within_groups,
        limit: limit(params.limit)?,
        cursor: decode_cursor(params.cursor)?,
    };
    let page = ingestor(&state)?.alarms(&principal.tenant, &query).await?;
    Ok(Json(Paginated {
        items: page.items.into_iter().map(AlarmDto::from).collect(),
        next_cursor: encode_cursor(page.next_cursor),
    }))
}

/// Reads one alarm.
#[utoipa::path(
    get,
    path = "/api/v1/alarms/{id}",
    tag = "data",
    params(("id" = String, Path, description = "Alarm id")),
    responses(
        (status = 200, body = AlarmDto),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn get_alarm(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<AlarmDto>> {
    Ok(Json(ingestor(&state)?.visible_alarm(&principal, Permission::AlarmsRead, &id).await?.into()))
}

/// `PATCH /api/v1/alarms/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchAlarm {
    /// `ACKNOWLEDGED` (only from `ACTIVE`) or `CLEARED`.
    pub status: String,
}

/// Acknowledges or clears an alarm (audited as `alarm.update`).
#[utoipa::path(
    patch,
    path = "/api/v1/alarms/{id}",
    tag = "data",
    params(("id" = String, Path, description = "Alarm id")),
    request_body = PatchAlarm,
    responses(
        (status = 200, body = AlarmDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn patch_alarm(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchAlarm>,
) -> ApiResult<Json<AlarmDto>> {
    let status = match AlarmStatus::parse(&body.status) {
        Some(status @ (AlarmStatus::Acknowledged | AlarmStatus::Cleared)) => status,
        _ => return Err(ApiError::invalid("status must be ACKNOWLEDGED or CLEARED")),
    };
    Ok(Json(ingestor(&state)?.update_alarm_status(&principal, &id, status).await?.into()))
}
