//! Device registry (SPEC §6): register, list, read, update, delete, revoke and reinstate
//! devices: parse, call the platform, answer. A device outside the caller's group scope
//! answers 404, exactly like a missing one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{DeviceId, DeviceStatus, GroupId};
use rampart_data::DeviceAttestation;
use rampart_platform::rows::Device;
use rampart_platform::{DeviceEdit, DeviceQuery, NewDevice, format_rfc3339_ms};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::state::AppState;
use rampart_core::Permission;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_device, list_devices))
        .routes(routes!(get_device, patch_device, delete_device))
        .routes(routes!(revoke_device))
        .routes(routes!(reinstate_device))
        .routes(routes!(lift_quarantine))
}

/// A device as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct DeviceDto {
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
    /// The verdict on the device's last attestation (SPEC §9) and what it runs.
    pub attestation: AttestationDto,
}

/// `{"status":"trusted|untrusted|unknown","checked_at"}` and what the device runs.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct AttestationDto {
    pub status: String,
    pub checked_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_boot: Option<bool>,
    /// The highest security counter the device has run (the anti-rollback floor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_counter: Option<i64>,
}

impl From<DeviceAttestation> for AttestationDto {
    fn from(attestation: DeviceAttestation) -> Self {
        AttestationDto {
            status: attestation.status.as_str().to_owned(),
            checked_at: attestation.checked_at.map(format_rfc3339_ms),
            firmware_id: attestation.firmware_id,
            firmware_version: attestation.firmware_version,
            firmware_sha256: attestation.firmware_sha256,
            secure_boot: attestation.secure_boot,
            security_counter: attestation.security_counter,
        }
    }
}

impl DeviceDto {
    fn with(device: Device, attestation: DeviceAttestation) -> Self {
        let mut dto = DeviceDto::from(device);
        dto.attestation = attestation.into();
        dto
    }
}

/// The device as the API shows it, its attestation read.
async fn shown(state: &AppState, device: Device) -> ApiResult<DeviceDto> {
    let attestation = state.ingestor.attestation(&device.tenant, &device.id).await?;
    Ok(DeviceDto::with(device, attestation))
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
            status: device.status.as_str().to_owned(),
            connected: device.connected,
            last_seen: device.last_seen.map(format_rfc3339_ms),
            firmware: device.firmware,
            created_at: format_rfc3339_ms(device.created_at),
            attributes,
            required_interval_s: device.required_interval_s,
            attestation: DeviceAttestation::unknown().into(),
        }
    }
}

/// `POST /api/v1/devices` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateDevice {
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
pub(super) struct PatchDevice {
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
pub(super) struct DeviceListQuery {
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
    let id = DeviceId::parse(&body.id)?;
    let new = NewDevice {
        name: body.name,
        device_type: body.device_type,
        group: body.group.as_deref().map(GroupId::parse).transpose()?,
        attributes: body.attributes,
        required_interval_s: body.required_interval_s,
    };
    let device = state.platform.create_device(&principal, &id, new).await?;
    Ok((StatusCode::CREATED, Json(shown(&state, device).await?)))
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
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(
            DeviceStatus::parse(text)
                .ok_or_else(|| ApiError::invalid("status must be one of registered, active, revoked, quarantined"))?,
        ),
    };
    let filter = DeviceQuery {
        group: query.group.as_deref().map(GroupId::parse).transpose()?,
        status,
        device_type: query.device_type,
    };
    let list = ListQuery { limit: query.limit, cursor: query.cursor };
    let rows = state.platform.list_devices(&principal, filter, &list.page()?).await?;
    let mut attestations = state.ingestor.attestations(&principal.tenant).await?;
    let show = |device: Device| {
        let attestation = attestations.remove(&device.id).unwrap_or_else(DeviceAttestation::unknown);
        DeviceDto::with(device, attestation)
    };
    Ok(Json(paginate(&list, rows, |device| device.id.clone(), show)?))
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
    let device = state.platform.visible_device(&principal, Permission::DevicesRead, &DeviceId::parse(&id)?).await?;
    Ok(Json(shown(&state, device).await?))
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
    let edit = DeviceEdit {
        name: body.name,
        device_type: body.device_type,
        group: body.group.map(|group| group.as_deref().map(GroupId::parse).transpose()).transpose()?,
        attributes: body.attributes,
        required_interval_s: body.required_interval_s,
    };
    let device = state.platform.update_device(&principal, &DeviceId::parse(&id)?, edit).await?;
    Ok(Json(shown(&state, device).await?))
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
    state.platform.delete_device(&principal, &DeviceId::parse(&id)?).await?;
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
    let device = state.platform.revoke_device(&principal, &DeviceId::parse(&id)?).await?;
    Ok(Json(shown(&state, device).await?))
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
    let device = state.platform.reinstate_device(&principal, &DeviceId::parse(&id)?).await?;
    Ok(Json(shown(&state, device).await?))
}

/// Lifts a quarantine (SPEC §10; audited as `device.quarantine_lift`): the device may connect
/// again with the credentials it has. 409 unless it is quarantined.
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{id}/quarantine",
    tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses(
        (status = 200, body = DeviceDto),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn lift_quarantine(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<DeviceDto>> {
    let device = state.platform.lift_quarantine(&principal, &DeviceId::parse(&id)?).await?;
    Ok(Json(shown(&state, device).await?))
}
