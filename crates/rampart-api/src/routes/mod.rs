//! Every route of the API, one module per resource; each exposes `routes()`.

mod health;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// All resource routers merged.
pub fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(health::routes())
}
