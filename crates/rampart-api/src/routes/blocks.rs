//! IP blocks (SPEC §10): `GET /api/v1/security/blocks` lists the addresses blocked after
//! repeated authentication failures, `DELETE /api/v1/security/blocks/{ip}` lifts one (audited).
//! A tenant sees the blocks its own thresholds set; the platform tenant sees all.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_platform::IpBlock;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::pagination::Paginated;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_blocks)).routes(routes!(lift_block))
}

/// A blocked address.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct BlockDto {
    ip: String,
    since: String,
    until: String,
    /// Failures counted in the window when it was blocked.
    failures: u32,
    /// The tenant whose threshold was passed.
    tenant: String,
}

impl From<IpBlock> for BlockDto {
    fn from(block: IpBlock) -> Self {
        let format = rampart_platform::format_rfc3339_ms;
        BlockDto {
            ip: block.ip.to_string(),
            since: format(block.since_ms),
            until: format(block.until_ms),
            failures: block.failures,
            tenant: block.tenant,
        }
    }
}

/// The blocks in force.
#[utoipa::path(
    get,
    path = "/api/v1/security/blocks",
    tag = "security",
    responses((status = 200, body = Paginated<BlockDto>), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn list_blocks(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Paginated<BlockDto>>> {
    let blocks = state.platform.ip_blocks(&principal).await?;
    Ok(Json(Paginated::whole(blocks)))
}

/// Lifts a block (audited as `ip_block.lift`).
#[utoipa::path(
    delete,
    path = "/api/v1/security/blocks/{ip}",
    tag = "security",
    params(("ip" = String, Path, description = "The blocked address")),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn lift_block(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(ip): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.platform.lift_ip_block(&principal, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}
