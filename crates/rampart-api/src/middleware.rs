//! Middleware on every route: security headers (SPEC §3) and the request body limit (1 MiB;
//! firmware uploads have their own, streamed).
//!
//! A body over the limit is answered 413 in a way HTTP/1.1 and HTTP/2 clients can read: a
//! client that announced `Expect: 100-continue` is answered before it sends the body; any
//! other is read to its end (discarded, up to a bound) before the answer, because a server
//! that answers and closes while the client is still sending makes the client's TCP stack
//! reset the connection, and the client never sees the 413 (python `requests` reports an SSL
//! EOF, curl over HTTP/2 a stream error). Bodies within the limit are read here, whole, so
//! the handlers see a body that is complete and bounded.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::state::AppState;

/// How long an oversized body may take to be read to its end before the connection is closed.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// How long the rest of an oversized body may pause before the answer goes out anyway.
const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// Adds the security headers every answer carries.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=63072000; includeSubDomains"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    if is_api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.remove(header::SERVER);
    response
}

/// What reading a body up to the limit found.
enum Read {
    Whole(Bytes),
    /// Over the limit; `drained` says whether the rest was read to its end.
    TooLarge {
        drained: bool,
    },
    Broken,
}

/// Reads `body` whole if it stays within `limit`; otherwise reads and discards the rest (so
/// that HTTP/2 and `Expect`-less HTTP/1.1 clients still read the 413), up to `drain_limit`
/// bytes in all, [`DRAIN_TIME`], and a pause of [`DRAIN_IDLE`] in the stream.
async fn read_body(mut body: Body, limit: usize, drain_limit: usize) -> Read {
    let mut kept: Vec<u8> = Vec::new();
    let mut total: usize = 0;
    let reading = async {
        loop {
            let frame = match total > limit {
                // Past the limit a sender that pauses gets its answer now.
                true => match tokio::time::timeout(DRAIN_IDLE, body.frame()).await {
                    Ok(frame) => frame,
                    Err(_) => return Some(Read::TooLarge { drained: false }),
                },
                false => body.frame().await,
            };
            let frame = frame?;
            let Ok(frame) = frame else { return Some(Read::Broken) };
            let Ok(data) = frame.into_data() else { continue };
            total = total.saturating_add(data.len());
            if total <= limit {
                kept.extend_from_slice(&data);
            } else {
                kept = Vec::new();
                if total > drain_limit {
                    return Some(Read::TooLarge { drained: false });
                }
            }
        }
    };
    match tokio::time::timeout(DRAIN_TIME, reading).await {
        Ok(Some(read)) => read,
        Ok(None) if total > limit => Read::TooLarge { drained: true },
        Ok(None) => Read::Whole(Bytes::from(kept)),
        Err(_) => Read::TooLarge { drained: false },
    }
}

fn too_large(close: bool) -> Response {
    let mut response = ApiError::PayloadTooLarge.into_response();
    if close {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The one route with its own, larger body limit: firmware uploads, streamed to disk.
pub(crate) const FIRMWARE_UPLOAD_PATH: &str = "/api/v1/firmware";

/// Room for the multipart framing and the metadata part around the image.
const MULTIPART_ALLOWANCE: u64 = 1024 * 1024;

/// A firmware upload is not read whole here: the handler streams it to an encrypted file.
/// Its body is bounded by the firmware size limit instead (declared lengths over it are
/// refused from the headers alone).
async fn limit_upload(state: &AppState, request: Request, next: Next) -> Response {
    let limit = state.fleet.max_image_bytes().saturating_add(MULTIPART_ALLOWANCE);
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return too_large(true);
    }
    let (parts, body) = request.into_parts();
    let bounded = Body::new(http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)));
    next.run(Request::from_parts(parts, bounded)).await
}

/// Refuses bodies over the limit with a 413 the client can read, and hands every other body
/// to the handler complete.
pub(crate) async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST && request.uri().path() == FIRMWARE_UPLOAD_PATH {
        return limit_upload(&state, request, next).await;
    }
    let limit = state.settings.body_limit_bytes;
    let headers = request.headers();
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let declared_too_large = declared.is_some_and(|length| length > limit as u64);
    if declared_too_large && expects_continue {
        // The client waits for our word before sending: it gets the 413 instead.
        return too_large(true);
    }
    if declared_too_large && declared.is_some_and(|length| length > state.settings.oversized_drain_bytes as u64) {
        // Not worth reading: answer from the header alone, and close.
        return too_large(true);
    }
    let drain_limit = state.settings.oversized_drain_bytes;
    let (parts, body) = request.into_parts();
    match read_body(body, limit, drain_limit.max(limit)).await {
        Read::Whole(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Read::TooLarge { drained } => too_large(!drained),
        Read::Broken => ApiError::invalid("could not read the request body").into_response(),
    }
}
