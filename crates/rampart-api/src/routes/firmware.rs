//! The firmware repository (SPEC §9): the tenant's signing key, registered public keys,
//! multipart uploads (`metadata` JSON and `image`, streamed to an encrypted file under their
//! own body limit), image records, and the device download with `Range`.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_data::QueryError;
use rampart_fleet::{ByteRange, Firmware, FirmwareKey, FirmwareMetadata};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::pagination::Paginated;
use crate::routes::device_api::DeviceCaller;
use crate::state::AppState;

/// Largest `metadata` part, in bytes.
const MAX_METADATA_BYTES: usize = 16 * 1024;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signing_key))
        .routes(routes!(register_key, list_keys))
        .routes(routes!(delete_key))
        .routes(routes!(upload, list_firmware))
        .routes(routes!(get_firmware))
        .routes(routes!(download))
}

/// The tenant's firmware signing public key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SigningKeyDto {
    /// Always `ed25519`.
    algorithm: &'static str,
    /// The 32-byte public key, base64.
    public_key: String,
}

/// The tenant's Ed25519 firmware signing public key (created on first use).
#[utoipa::path(
    get,
    path = "/api/v1/firmware/signing-key",
    tag = "firmware",
    responses(
        (status = 200, body = SigningKeyDto),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn signing_key(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<SigningKeyDto>> {
    let public_key = state.fleet.signing_public_key(&principal).await?;
    Ok(Json(SigningKeyDto { algorithm: "ed25519", public_key }))
}

/// A registered public key for images signed offline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct FirmwareKeyDto {
    id: String,
    algorithm: &'static str,
    public_key: String,
    created_at: String,
}

impl From<FirmwareKey> for FirmwareKeyDto {
    fn from(key: FirmwareKey) -> Self {
        FirmwareKeyDto {
            id: key.id,
            algorithm: "ed25519",
            public_key: key.public_key,
            created_at: rampart_platform::format_rfc3339_ms(key.created_at),
        }
    }
}

/// `POST /api/v1/firmware/keys` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterKey {
    /// 1–64 of `A-Z a-z 0-9 . _ -`; generated when absent.
    id: Option<String>,
    /// The 32-byte Ed25519 public key, base64.
    public_key: String,
}

/// Registers a public key whose signatures the repository accepts for uploads signed offline
/// (audited).
#[utoipa::path(
    post,
    path = "/api/v1/firmware/keys",
    tag = "firmware",
    request_body = RegisterKey,
    responses(
        (status = 201, body = FirmwareKeyDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn register_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<RegisterKey>,
) -> ApiResult<(StatusCode, Json<FirmwareKeyDto>)> {
    let key = state.fleet.register_key(&principal, body.id, &body.public_key).await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// The registered public keys.
#[utoipa::path(
    get,
    path = "/api/v1/firmware/keys",
    tag = "firmware",
    responses((status = 200, body = Paginated<FirmwareKeyDto>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn list_keys(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Paginated<FirmwareKeyDto>>> {
    let keys = state.fleet.keys(&principal).await?;
    Ok(Json(Paginated::whole(keys)))
}

/// Removes a registered key (images it signed stay; audited).
#[utoipa::path(
    delete,
    path = "/api/v1/firmware/keys/{id}",
    tag = "firmware",
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.fleet.delete_key(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A firmware image.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct FirmwareDto {
    id: String,
    name: String,
    version: String,
    hardware: String,
    security_counter: i64,
    /// SHA-256 of the image, hex.
    sha256: String,
    size: i64,
    /// Ed25519 signature (base64) over `rampart-fw-v1\n{name}\n{version}\n{hardware}\n{security_counter}\n{sha256}\n`.
    signature: String,
    /// The registered key that signed it; absent: the tenant's signing key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    created_at: String,
}

impl From<Firmware> for FirmwareDto {
    fn from(firmware: Firmware) -> Self {
        FirmwareDto {
            id: firmware.id,
            name: firmware.name,
            version: firmware.version,
            hardware: firmware.hardware,
            security_counter: firmware.security_counter,
            sha256: firmware.sha256,
            size: firmware.size,
            signature: firmware.signature,
            key_id: firmware.key_id,
            created_at: rampart_platform::format_rfc3339_ms(firmware.created_at),
        }
    }
}

/// The multipart form of an upload (for the OpenAPI document).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UploadForm {
    /// `{"name","version","hardware","security_counter"}`, plus `signature` (base64) and
    /// optionally `key_id` for an image signed offline, and optionally `sha256` to check.
    metadata: String,
    /// The image bytes (at most the firmware size limit, 64 MiB by default).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    match error.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::invalid(format!("the multipart body is malformed: {}", error.body_text())),
    }
}

/// Uploads an image (multipart `metadata` + `image`), streamed to an encrypted file: signed
/// with the tenant key, or, with `metadata.signature`, verified against the registered keys.
/// A bad signature or a `sha256` mismatch is refused (400) and leaves nothing behind.
#[utoipa::path(
    post,
    path = "/api/v1/firmware",
    tag = "firmware",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = FirmwareDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<FirmwareDto>)> {
    let multipart_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !multipart_form {
        drain(request.into_body()).await;
        return Err(ApiError::invalid("the upload must be multipart/form-data with the parts metadata and image"));
    }
    let mut multipart = match Multipart::from_request(request, &state).await {
        Ok(multipart) => multipart,
        Err(rejection) => {
            return Err(ApiError::invalid(format!("the multipart body is malformed: {}", rejection.body_text())));
        }
    };
    let result = receive(&state, &principal, &mut multipart).await;
    if result.is_err() {
        // Read what the client is still sending, so that it can read the answer (an HTTP/2
        // stream reset, or a TCP reset over HTTP/1.1, would hide it).
        let rest = async {
            while let Ok(Some(mut field)) = multipart.next_field().await {
                while let Ok(Some(_)) = field.chunk().await {}
            }
        };
        let _late_client_is_fine = tokio::time::timeout(DRAIN_TIME, rest).await;
    }
    let firmware = result?;
    Ok((StatusCode::CREATED, Json(firmware.into())))
}

/// How long a refused upload's remaining body may take to be read before the answer goes out.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads and discards a body (bounded by the upload limit and [`DRAIN_TIME`]).
async fn drain(body: Body) {
    use http_body_util::BodyExt;
    let mut body = body;
    let reading = async { while let Some(Ok(_)) = body.frame().await {} };
    let _late_client_is_fine = tokio::time::timeout(DRAIN_TIME, reading).await;
}

/// Streams the parts of an upload into the repository.
async fn receive(state: &AppState, principal: &Principal, multipart: &mut Multipart) -> ApiResult<Firmware> {
    let fleet = &state.fleet;
    let mut upload = fleet.begin_upload(principal).await?;
    let mut metadata: Option<FirmwareMetadata> = None;
    let mut image_seen = false;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("metadata") if metadata.is_none() => {
                let mut text = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    text.extend_from_slice(&chunk);
                    if text.len() > MAX_METADATA_BYTES {
                        return Err(ApiError::invalid("metadata is larger than 16 KiB"));
                    }
                }
                metadata = Some(FirmwareMetadata::parse(&text).map_err(ApiError::InvalidRequest)?);
            }
            Some("image") if !image_seen => {
                image_seen = true;
                let mut written: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    written = written.saturating_add(chunk.len() as u64);
                    if written > fleet.max_image_bytes() {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    upload.write(&chunk).await?;
                }
            }
            Some(name @ ("metadata" | "image")) => return Err(ApiError::invalid(format!("{name} is given twice"))),
            other => {
                return Err(ApiError::invalid(format!(
                    "unexpected part {:?}: the form has metadata and image",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let metadata = metadata.ok_or_else(|| ApiError::invalid("metadata is required"))?;
    if !image_seen {
        return Err(ApiError::invalid("image is required"));
    }
    Ok(fleet.finish_upload(principal, upload, metadata).await?)
}

/// The tenant's images, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/firmware",
    tag = "firmware",
    responses((status = 200, body = Paginated<FirmwareDto>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn list_firmware(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Paginated<FirmwareDto>>> {
    let images = state.fleet.list_firmware(&principal).await?;
    Ok(Json(Paginated::whole(images)))
}

/// One image.
#[utoipa::path(
    get,
    path = "/api/v1/firmware/{id}",
    tag = "firmware",
    params(("id" = String, Path, description = "Firmware id")),
    responses((status = 200, body = FirmwareDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn get_firmware(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<FirmwareDto>> {
    Ok(Json(state.fleet.firmware(&principal, &id).await?.into()))
}

/// `Range: bytes=a-b` / `bytes=a-` / `bytes=-n`; `None` when there is no single byte range to
/// honour (no header, another unit, or several ranges: served whole, as RFC 9110 allows).
fn requested_range(headers: &HeaderMap) -> Result<Option<ByteRange>, ApiError> {
    let Some(value) = headers.get(header::RANGE) else { return Ok(None) };
    let malformed = || ApiError::RangeNotSatisfiable("malformed Range".into());
    let text = value.to_str().map_err(|_| malformed())?;
    let Some(spec) = text.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (first, last) = spec.split_once('-').ok_or_else(malformed)?;
    let number = |text: &str| text.trim().parse::<u64>().map_err(|_| malformed());
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (false, true) => Ok(Some(ByteRange::From { first: number(first)?, last: None })),
        (false, false) => {
            let (first, last) = (number(first)?, number(last)?);
            if last < first {
                return Err(ApiError::RangeNotSatisfiable("the range ends before it starts".into()));
            }
            Ok(Some(ByteRange::From { first, last: Some(last) }))
        }
        (true, false) => Ok(Some(ByteRange::Suffix(number(last)?))),
        (true, true) => Err(malformed()),
    }
}

/// Downloads an image of the device's tenant (device token or client certificate), whole or
/// one byte range (`206` with `Content-Range`).
#[utoipa::path(
    get,
    path = "/api/v1/device/firmware/{id}",
    tag = "device",
    params(("id" = String, Path, description = "Firmware id"), ("Range" = Option<String>, Header, description = "bytes=first-last")),
    responses(
        (status = 200, description = "The image", content_type = "application/octet-stream"),
        (status = 206, description = "The range", content_type = "application/octet-stream"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 416, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn download(
    State(state): State<AppState>,
    caller: DeviceCaller,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let range = requested_range(&headers)?;
    let (firmware, body) = match state.fleet.download(&caller.tenant, &id, range).await {
        Ok(found) => found,
        Err(QueryError::Conflict(message)) if range.is_some() => return Err(ApiError::RangeNotSatisfiable(message)),
        Err(other) => return Err(other.into()),
    };
    let (start, end, size) = (body.start, body.end, body.size);
    let chunks = futures::stream::unfold(body, |mut body| async move {
        match body.next().await {
            Ok(Some(piece)) => Some((Ok::<_, std::io::Error>(piece), body)),
            Ok(None) => None,
            Err(error) => Some((Err(std::io::Error::other(error.to_string())), body)),
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let length =
        HeaderValue::from_str(&(end - start).to_string()).map_err(|error| ApiError::Internal(error.to_string()))?;
    headers.insert(header::CONTENT_LENGTH, length);
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", firmware.sha256)) {
        headers.insert(header::ETAG, etag);
    }
    if range.is_some() {
        let content_range = format!("bytes {start}-{}/{size}", end - 1);
        let value = HeaderValue::from_str(&content_range).map_err(|error| ApiError::Internal(error.to_string()))?;
        headers.insert(header::CONTENT_RANGE, value);
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}
