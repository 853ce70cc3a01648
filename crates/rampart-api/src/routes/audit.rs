//! The audit log (SPEC §11): list and filter the tenant's hash-chained records, verify the
//! chain, and publish the platform key that signs its checkpoints. Read-only by design.

use axum::Json;
use axum::extract::State;
use rampart_platform::rows::AuditFilter;
use rampart_platform::{parse_timestamp, record_json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::state::AppState;

/// Longest accepted `action` or `actor` filter.
const MAX_FILTER_CHARS: usize = 256;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit)).routes(routes!(verify_audit)).routes(routes!(audit_public_key))
}

/// `GET /api/v1/audit` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Earliest record time, RFC 3339 or epoch milliseconds (inclusive).
    pub from: Option<String>,
    /// Latest record time, RFC 3339 or epoch milliseconds (inclusive).
    pub to: Option<String>,
    /// Only this action, e.g. `device.create`.
    pub action: Option<String>,
    /// Only records by this actor id (a username, `api-key:<id>`, a device id).
    pub actor: Option<String>,
    /// Items per page, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Opaque cursor from a previous answer's `next_cursor`.
    pub cursor: Option<String>,
}

/// The platform key that signs audit checkpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct AuditPublicKey {
    /// Always `ed25519`.
    pub algorithm: &'static str,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
}

fn timestamp(field: &str, value: Option<&str>) -> ApiResult<Option<i64>> {
    match value {
        None => Ok(None),
        Some(text) => parse_timestamp(text)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{field} must be an RFC 3339 time or epoch milliseconds"))),
    }
}

fn text_filter(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(text) if text.is_empty() || text.chars().count() > MAX_FILTER_CHARS => {
            Err(ApiError::invalid(format!("{field} must be 1 to {MAX_FILTER_CHARS} characters")))
        }
        other => Ok(other),
    }
}

/// Lists the tenant's audit records in chain order (oldest first), filtered.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of audit records with their hashes", body = Paginated<Object>),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn list_audit(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Paginated<Value>>> {
    let filter = AuditFilter {
        from: timestamp("from", query.from.as_deref())?,
        to: timestamp("to", query.to.as_deref())?,
        action: text_filter("action", query.action)?,
        actor: text_filter("actor", query.actor)?,
        within_groups: None,
    };
    let list = ListQuery { limit: query.limit, cursor: query.cursor };
    let page = list.page()?;
    // The cursor is a sequence number; anything else is a forged cursor, not a storage failure.
    if let Some(after) = &page.after
        && after.parse::<i64>().is_err()
    {
        return Err(ApiError::invalid("invalid cursor"));
    }
    let rows = state.platform.audit_records(&principal, filter, &page).await?;
    Ok(Json(paginate(&list, rows, |record| record.seq.to_string(), |record| record_json(&record, true))?))
}

/// Verifies the tenant's audit chain: links, hashes and signed checkpoints.
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, description = "`{\"valid\":true,\"records\",\"head\":{\"seq\",\"hash\"}}` or `{\"valid\":false,\"first_bad_seq\",\"reason\"}`", body = Object),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn verify_audit(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(state.platform.verify_audit(&principal).await?.to_json()))
}

/// The Ed25519 public key that verifies audit checkpoints.
#[utoipa::path(
    get,
    path = "/api/v1/audit/public-key",
    tag = "audit",
    responses(
        (status = 200, body = AuditPublicKey),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn audit_public_key(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<AuditPublicKey>> {
    Ok(Json(AuditPublicKey { algorithm: "ed25519", public_key: state.platform.audit_public_key(&principal).await? }))
}
