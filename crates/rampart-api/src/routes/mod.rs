//! Every route of the API, one module per resource; each exposes `routes()`.

mod advisories;
mod api_keys;
mod audit;
mod auth_login;
mod blocks;
mod campaigns;
mod certificates;
mod data;
mod device_api;
mod device_tokens;
mod devices;
mod firmware;
mod groups;
mod health;
mod me;
mod operations;
mod policy;
mod roles;
mod security_events;
mod stream;
mod tenant_keys;
mod tenants;
mod topic_policies;
mod users;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// All resource routers merged.
pub(crate) fn all() -> OpenApiRouter<AppState> {
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
        .merge(device_api::routes())
        .merge(devices::routes())
        .merge(device_tokens::routes())
        .merge(certificates::routes())
        .merge(audit::routes())
        .merge(topic_policies::routes())
        .merge(data::routes())
        .merge(operations::routes())
        .merge(blocks::routes())
        .merge(firmware::routes())
        .merge(campaigns::routes())
        .merge(advisories::routes())
        .merge(stream::routes())
}
