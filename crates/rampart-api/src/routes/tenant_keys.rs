//! Tenant key rotation (SPEC §12): `POST /api/v1/tenant/keys/rotate` starts a new tenant data
//! key for new data; old data stays readable under the key that sealed it.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(rotate_tenant_key))
}

/// The new active tenant key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RotatedKey {
    key_id: String,
}

/// Starts a new tenant data key; new secrets and device keys are sealed under it.
#[utoipa::path(
    post,
    path = "/api/v1/tenant/keys/rotate",
    tag = "tenant",
    responses(
        (status = 200, body = RotatedKey),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)
    ),
    security(("bearer" = []))
)]
async fn rotate_tenant_key(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<RotatedKey>> {
    Ok(Json(RotatedKey { key_id: state.platform.rotate_tenant_key(&principal).await? }))
}
