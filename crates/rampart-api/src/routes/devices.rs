//! Device registry (SPEC §6): register, list, read, update, delete, revoke and reinstate
//! devices. A caller confined to device groups sees only the devices in its scope; every other
//! device answers 404, exactly like a missing one.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{IdKind, Permission, validate_id};
use rampart_platform::{ControlEvent, CutOffReason, format_rfc3339_ms};
use rampart_store::{Device, DeviceFilter, StoreError};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::state::AppState;

/// Longest accepted display name or type label, in characters.
const MAX_LABEL_CHARS: usize = 256;
/// Statuses a device can have (SPEC §6).
const STATUSES: [&str; 4] = ["registered", "active", "revoked", "quarantined"];

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_device, list_devices))
        .routes(routes!(get_device, patch_device, delete_device))
        .routes(routes!(revoke_device))
        .routes(routes!(reinstate_device))
}

/// A device as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceDto {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    pub group: Option<String>,
    /// `registered`, `active`, `revoked` or `quarantined`.
    pub status: String,
    pub connected: bool,
    pub last_seen: Option<String>,
    pub firmware: Option<String>,
    pub created_at: String,
    /// Free-form JSON object.
    #[schema(value_type = Object)]
    pub attributes: Value,
    pub required_interval_s: Option<i64>,
}

impl From<Device> for DeviceDto {
    fn from(device: Device) -> Self {
        let attributes =
            serde_json::from_str(&device.attributes_json).ok().filter(Value::is_object).unwrap_or_else(|| json!({}));
        DeviceDto {
            id: device.id,
            name: device.name,
            device_type: device.device_type,
            group: device.group,
            status: device.status,
            connected: device.connected,
            last_seen: device.last_seen.map(format_rfc3339_ms),
            firmware: device.firmware,
            created_at: format_rfc3339_ms(device.created_at),
            attributes,
            required_interval_s: device.required_interval_s,
        }
    }
}

/// `POST /api/v1/devices` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    pub id: String,
    /// Display name; defaults to the id.
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub device_type: Option<String>,
    /// An existing device group.
    pub group: Option<String>,
    /// A JSON object.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    /// Longest silence, in seconds, before an `unavailable` alarm; must be positive.
    pub required_interval_s: Option<i64>,
}

/// `PATCH /api/v1/devices/{id}` body; absent fields stay, `null` clears the optional ones.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchDevice {
    pub name: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub device_type: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub group: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub required_interval_s: Option<Option<i64>>,
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`, via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `GET /api/v1/devices` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    /// Only devices in this group (exactly).
    pub group: Option<String>,
    /// `registered`, `active`, `revoked` or `quarantined`.
    pub status: Option<String>,
    /// Only devices of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub device_type: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    pub cursor: Option<String>,
}

/// Loads a device the caller may see: checks the id's syntax, reads it within the caller's
/// tenant and hides it (404) when it lies outside the caller's group scope.
pub(crate) async fn visible_device(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Device> {
    validate_id(IdKind::Device, id)?;
    let device = state.platform.store.get_device(&principal.tenant, id).await?;
    let scope = principal.device_scope(state).await?;
    if !Principal::sees_group(&scope, device.group.as_deref()) {
        return Err(ApiError::NotFound);
    }
    Ok(device)
}

/// Whether a device in this status may receive new credentials (tokens, certificates).
pub(crate) fn ensure_may_get_credentials(device: &Device) -> ApiResult<()> {
    match device.status.as_str() {
        "revoked" | "quarantined" => {
            Err(ApiError::Conflict(format!("the device is {}; it cannot get new credentials", device.status)))
        }
        _ => Ok(()),
    }
}

/// Pages a complete, small list held in memory the same way the store pages: rows sorted by
/// `key`, strictly after the cursor.
pub(crate) fn paginate_in_memory<R, T>(
    query: &ListQuery,
    mut rows: Vec<R>,
    key: impl Fn(&R) -> String,
    to_item: impl FnMut(R) -> T,
) -> ApiResult<Paginated<T>> {
    let page = query.page()?;
    rows.sort_by_key(|row| key(row));
    if let Some(after) = &page.after {
        rows.retain(|row| key(row).as_str() > after.as_str());
    }
    rows.truncate(page.limit as usize);
    paginate(query, rows, key, to_item)
}

fn check_label(field: &str, value: &str) -> ApiResult<()> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_LABEL_CHARS || value.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{field} must be 1 to {MAX_LABEL_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

fn check_interval(value: i64) -> ApiResult<()> {
    if value <= 0 {
        return Err(ApiError::invalid("required_interval_s must be a positive number of seconds"));
    }
    Ok(())
}

fn attributes_text(attributes: &Value) -> ApiResult<String> {
    if !attributes.is_object() {
        return Err(ApiError::invalid("attributes must be a JSON object"));
    }
    Ok(attributes.to_string())
}

/// Checks that `group` exists in the caller's tenant and lies within the caller's scope.
/// An unknown group and a group outside the scope answer the same 400.
async fn check_group(
    state: &AppState,
    principal: &Principal,
    scope: &Option<BTreeSet<String>>,
    group: &str,
) -> ApiResult<()> {
    validate_id(IdKind::Group, group)?;
    let unknown = || ApiError::invalid(format!("unknown group {group:?}"));
    match state.platform.store.get_group(&principal.tenant, group).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(unknown()),
        Err(other) => return Err(other.into()),
    }
    if !Principal::sees_group(scope, Some(group)) {
        return Err(unknown());
    }
    Ok(())
}

/// Registers a device and creates its data key.
#[utoipa::path(
    post,
    path = "/api/v1/devices",
    tag = "devices",
    request_body = CreateDevice,
    responses(
        (status = 201, body = DeviceDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create_device(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateDevice>,
) -> ApiResult<(StatusCode, Json<DeviceDto>)> {
    principal.require(&state, Permission::DevicesWrite).await?;
    validate_id(IdKind::Device, &body.id)?;
    let name = body.name.unwrap_or_else(|| body.id.clone());
    check_label("name", &name)?;
    if let Some(device_type) = &body.device_type {
        check_label("type", device_type)?;
    }
    if let Some(interval) = body.required_interval_s {
        check_interval(interval)?;
    }
    let attributes_json = match &body.attributes {
        Some(attributes) => attributes_text(attributes)?,
        None => "{}".to_owned(),
    };
    let scope = principal.device_scope(&state).await?;
    match &body.group {
        Some(group) => check_group(&state, &principal, &scope, group).await?,
        None if scope.is_some() => {
            return Err(ApiError::invalid("group is required: you may only register devices in your groups"));
        }
        None => {}
    }
    let platform = &state.platform;
    let device = Device {
        tenant: principal.tenant.clone(),
        id: body.id,
        name,
        device_type: body.device_type,
        group: body.group,
        attributes_json,
        required_interval_s: body.required_interval_s,
        status: "registered".to_owned(),
        connected: false,
        last_seen: None,
        last_address: None,
        firmware: None,
        created_at: platform.now_ms(),
    };
    platform.store.create_device(&device).await?;
    if let Err(error) = platform.keyring.create_device_key(&device.tenant, &device.id).await {
        // Nothing half-stored: a device without its data key must not exist.
        if let Err(cleanup) = platform.store.delete_device(&device.tenant, &device.id, platform.now_ms()).await {
            tracing::error!(%cleanup, tenant = %device.tenant, device = %device.id, "could not remove half-created device");
        }
        return Err(error.into());
    }
    let details = json!({"name": device.name, "type": device.device_type, "group": device.group});
    principal.audit(&state, "device.create", format!("device:{}", device.id), details).await;
    Ok((StatusCode::CREATED, Json(device.into())))
}

/// Lists the devices the caller may see, filtered and paginated by id.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "devices",
    params(DeviceListQuery),
    responses(
        (status = 200, body = Paginated<DeviceDto>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_devices(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<DeviceListQuery>,
) -> ApiResult<Json<Paginated<DeviceDto>>> {
    principal.require(&state, Permission::DevicesRead).await?;
    if let Some(group) = &query.group {
        validate_id(IdKind::Group, group)?;
    }
    if let Some(status) = &query.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::invalid("status must be one of registered, active, revoked, quarantined"));
    }
    let list = ListQuery { limit: query.limit, cursor: query.cursor };
    let page = list.page()?;
    let within_groups = principal.device_scope(&state).await?.map(|scope| scope.into_iter().collect());
    let filter =
        DeviceFilter { group: query.group, within_groups, status: query.status, device_type: query.device_type };
    let rows = state.platform.store.list_devices(&principal.tenant, &filter, &page).await?;
    Ok(Json(paginate(&list, rows, |device| device.id.clone(), DeviceDto::from)?))
}

/// Reads one device.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, body = DeviceDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn get_device(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceDto>> {
    principal.require(&state, Permission::DevicesRead).await?;
    let device = visible_device(&state, &principal, &id).await?;
    Ok(Json(device.into()))
}

/// Updates a device's name, type, group, attributes or reporting interval (not its status).
#[utoipa::path(
    patch,
    path = "/api/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    request_body = PatchDevice,
    responses(
        (status = 200, body = DeviceDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn patch_device(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchDevice>,
) -> ApiResult<Json<DeviceDto>> {
    principal.require(&state, Permission::DevicesWrite).await?;
    let mut device = visible_device(&state, &principal, &id).await?;
    let mut changed = Vec::new();
    if let Some(name) = body.name {
        check_label("name", &name)?;
        device.name = name;
        changed.push("name");
    }
    if let Some(device_type) = body.device_type {
        if let Some(label) = &device_type {
            check_label("type", label)?;
        }
        device.device_type = device_type;
        changed.push("type");
    }
    if let Some(group) = body.group {
        let scope = principal.device_scope(&state).await?;
        match &group {
            Some(group) => check_group(&state, &principal, &scope, group).await?,
            None if scope.is_some() => {
                return Err(ApiError::invalid("group is required: devices must stay in your groups"));
            }
            None => {}
        }
        device.group = group;
        changed.push("group");
    }
    if let Some(attributes) = &body.attributes {
        device.attributes_json = attributes_text(attributes)?;
        changed.push("attributes");
    }
    if let Some(interval) = body.required_interval_s {
        if let Some(seconds) = interval {
            check_interval(seconds)?;
        }
        device.required_interval_s = interval;
        changed.push("required_interval_s");
    }
    state.platform.store.update_device(&device).await?;
    let details = json!({"changed": changed, "group": device.group});
    principal.audit(&state, "device.update", format!("device:{}", device.id), details).await;
    Ok(Json(device.into()))
}

/// Deletes a device: its tokens and data key go, its certificates are revoked (they stay in
/// the CRL).
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn delete_device(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    principal.require(&state, Permission::DevicesWrite).await?;
    let device = visible_device(&state, &principal, &id).await?;
    let platform = &state.platform;
    platform.store.delete_device(&principal.tenant, &device.id, platform.now_ms()).await?;
    cut_off(&state, &principal.tenant, &device.id, CutOffReason::Deleted);
    principal.audit(&state, "device.delete", format!("device:{}", device.id), json!({"group": device.group})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a device: every token is deleted, every certificate revoked, status `revoked`.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/revoke",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, body = DeviceDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn revoke_device(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceDto>> {
    principal.require(&state, Permission::DevicesWrite).await?;
    let device = visible_device(&state, &principal, &id).await?;
    let platform = &state.platform;
    let revoked = platform.store.revoke_device(&principal.tenant, &device.id, platform.now_ms()).await?;
    cut_off(&state, &principal.tenant, &revoked.id, CutOffReason::Revoked);
    let details = json!({"previous_status": device.status});
    principal.audit(&state, "device.revoke", format!("device:{}", revoked.id), details).await;
    Ok(Json(revoked.into()))
}

/// Lifts a revocation. Issues no credential: the device needs new tokens or certificates.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{id}/reinstate",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, body = DeviceDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn reinstate_device(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceDto>> {
    principal.require(&state, Permission::DevicesWrite).await?;
    let mut device = visible_device(&state, &principal, &id).await?;
    if device.status != "revoked" {
        return Err(ApiError::Conflict(format!("only a revoked device can be reinstated; it is {}", device.status)));
    }
    device.status = if device.last_seen.is_none() { "registered" } else { "active" }.to_owned();
    state.platform.store.update_device(&device).await?;
    let details = json!({"status": device.status});
    principal.audit(&state, "device.reinstate", format!("device:{}", device.id), details).await;
    Ok(Json(device.into()))
}

/// Tells every live connection of the device to close (the gateway acts on it within 1 s).
pub(crate) fn cut_off(state: &AppState, tenant: &str, device: &str, reason: CutOffReason) {
    state.platform.control.publish(ControlEvent::DeviceCutOff {
        tenant: tenant.to_owned(),
        device: device.to_owned(),
        reason,
    });
}
