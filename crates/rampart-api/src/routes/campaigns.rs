//! Firmware campaigns (SPEC §9): create (canary, waves, failure threshold; anti-rollback
//! checked for every target device), read with counts per status, pause / resume / cancel.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::CampaignStatus;
use rampart_fleet::{Campaign, CampaignRequest};
use serde::Serialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::pagination::Paginated;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_campaign, list_campaigns))
        .routes(routes!(get_campaign))
        .routes(routes!(pause_campaign))
        .routes(routes!(resume_campaign))
        .routes(routes!(cancel_campaign))
}

/// A campaign with its progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct CampaignDto {
    id: String,
    firmware_id: String,
    /// `running`, `paused`, `cancelled` or `completed`.
    status: String,
    /// Why it last changed status (e.g. the failure threshold it passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[schema(value_type = Object)]
    target: Value,
    #[schema(value_type = Object)]
    strategy: Value,
    /// Target devices.
    total: usize,
    /// Devices whose operation has been created.
    dispatched: i64,
    /// Operations per status (`PENDING`, `EXECUTING`, `SUCCESSFUL`, `FAILED`) and
    /// `NOT_STARTED` for devices whose wave has not come.
    counts: BTreeMap<String, i64>,
    /// The wave in progress (1 = the canary, when there is one) of `waves`.
    wave: usize,
    waves: usize,
    created_by: String,
    created_at: String,
    updated_at: String,
}

impl From<Campaign> for CampaignDto {
    fn from(campaign: Campaign) -> Self {
        let format = rampart_platform::format_rfc3339_ms;
        CampaignDto {
            id: campaign.id,
            firmware_id: campaign.firmware_id,
            status: campaign.status.as_str().to_owned(),
            reason: campaign.reason,
            target: campaign.target,
            strategy: campaign.strategy,
            total: campaign.total,
            dispatched: campaign.dispatched,
            counts: campaign.counts,
            wave: campaign.wave,
            waves: campaign.waves,
            created_by: campaign.created_by,
            created_at: format(campaign.created_at),
            updated_at: format(campaign.updated_at),
        }
    }
}

/// `POST /api/v1/campaigns` body (documentation).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct CreateCampaign {
    firmware_id: String,
    /// `{"group":"<id>"}` or `{"devices":["<id>",...]}`.
    #[schema(value_type = Object)]
    target: Value,
    /// `{"canary":n,"waves":[pct,...],"failure_threshold_pct":n,"timeout_s"?:n}`; waves are
    /// cumulative when they rise to 100 (`[10,50,100]`), else shares adding up to 100.
    #[schema(value_type = Object)]
    strategy: Value,
}

/// Creates a campaign and dispatches its first wave; 409 when a target device runs a higher
/// security counter (anti-rollback). Audited.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns",
    tag = "campaigns",
    request_body = CreateCampaign,
    responses(
        (status = 201, body = CampaignDto),
        (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn create_campaign(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CampaignRequest>,
) -> ApiResult<(StatusCode, Json<CampaignDto>)> {
    let campaign = state.fleet.create_campaign(&principal, body).await?;
    Ok((StatusCode::CREATED, Json(campaign.into())))
}

/// The tenant's campaigns, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns",
    tag = "campaigns",
    responses((status = 200, body = Paginated<CampaignDto>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn list_campaigns(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Paginated<CampaignDto>>> {
    let campaigns = state.fleet.campaigns(&principal).await?;
    Ok(Json(Paginated::whole(campaigns)))
}

/// One campaign with counts per status.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}",
    tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignDto), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn get_campaign(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CampaignDto>> {
    Ok(Json(state.fleet.campaign(&principal, &id).await?.into()))
}

async fn move_campaign(
    state: &AppState,
    principal: &Principal,
    id: &str,
    to: CampaignStatus,
) -> ApiResult<Json<CampaignDto>> {
    Ok(Json(state.fleet.set_campaign_status(principal, id, to).await?.into()))
}

/// Pauses a running campaign: no further wave starts (audited).
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/pause",
    tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignDto), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn pause_campaign(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CampaignDto>> {
    move_campaign(&state, &principal, &id, CampaignStatus::Paused).await
}

/// Resumes a paused campaign, accepting the failures so far (audited).
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/resume",
    tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignDto), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn resume_campaign(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CampaignDto>> {
    move_campaign(&state, &principal, &id, CampaignStatus::Running).await
}

/// Cancels a campaign: its pending operations fail with reason `cancelled` (audited).
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/cancel",
    tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id")),
    responses((status = 200, body = CampaignDto), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = []))
)]
async fn cancel_campaign(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CampaignDto>> {
    move_campaign(&state, &principal, &id, CampaignStatus::Cancelled).await
}
