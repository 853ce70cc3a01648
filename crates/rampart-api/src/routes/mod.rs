//! Every route of the API, one module per resource; each exposes `routes()`.

mod health;
mod auth_login;
mod me;
mod policy;
mod api_keys;
mod tenants;
mod users;
mod roles;
mod security_events;
mod tenant_keys;
mod groups;
mod devices;
mod device_tokens;
mod certificates;
mod audit;
mod topic_policies;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// All resource routers merged.
pub fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::routes())
        .merge(auth_login::routes())
        .merge(me::routes())
        .merge(policy::routes())
        .merge(api_keys::routes())
        .merge(tenants::routes())
        .merge(users::routes())
        .merge(roles::routes())
        .merge(security_events::routes())
        .merge(tenant_keys::routes())
        .merge(groups::routes())
        .merge(devices::routes())
        .merge(device_tokens::routes())
        .merge(certificates::routes())
        .merge(audit::routes())
        .merge(topic_policies::routes())
}
