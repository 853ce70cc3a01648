//! Sub-tenants (SPEC §2, §5): parse, call the platform, answer. A parent manages a
//! sub-tenant's lifecycle only; every tenant outside the caller's sub-tree answers 404.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rampart_core::{TenantId, Username};
use rampart_platform::rows::Tenant;
use rampart_platform::{NewTenant, format_rfc3339_ms};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{ListQuery, Paginated, paginate};
use crate::state::AppState;

/// The first user of a new tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantAdmin {
    pub username: String,
    pub password: String,
}

/// Body of `POST /api/v1/tenants`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    /// Tenant id, `^[a-z][a-z0-9-]{1,62}$`, unique across the platform.
    pub id: String,
    pub name: String,
    /// The sub-tenant's first user; it gets the built-in role `admin`.
    pub admin: TenantAdmin,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub(super) struct TenantView {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        TenantView {
            id: tenant.id,
            name: tenant.name,
            parent: tenant.parent,
            created_at: format_rfc3339_ms(tenant.created_at),
        }
    }
}

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_tenant, list_tenants)).routes(routes!(get_tenant, delete_tenant))
}

/// Creates a sub-tenant of the caller's tenant, with its keys, its CA and its first admin.
#[utoipa::path(
    post,
    path = "/api/v1/tenants",
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Tenant created", body = TenantView),
        (status = 400, description = "Invalid id, name or admin password", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
        (status = 409, description = "The tenant id is taken", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_tenant(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    let new = NewTenant {
        id: TenantId::parse(&body.id)?,
        name: body.name,
        admin: Username::parse(&body.admin.username)?,
        admin_password: Zeroizing::new(body.admin.password),
    };
    let tenant = state.platform.create_tenant(&principal, new).await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// Lists the direct sub-tenants of the caller's tenant, ordered by id.
#[utoipa::path(
    get,
    path = "/api/v1/tenants",
    tag = "tenants",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of sub-tenants", body = Paginated<TenantView>),
        (status = 400, description = "Invalid paging", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_tenants(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Paginated<TenantView>>> {
    let rows = state.platform.list_tenants(&principal, &query.page()?).await?;
    Ok(Json(paginate(&query, rows, |tenant| tenant.id.clone(), TenantView::from)?))
}

/// Shows one tenant below the caller's.
#[utoipa::path(
    get,
    path = "/api/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 400, description = "Invalid tenant id", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant below the caller's", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_tenant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TenantView>> {
    let tenant = state.platform.get_tenant(&principal, &TenantId::parse(&id)?).await?;
    Ok(Json(tenant.into()))
}

/// Deletes a tenant below the caller's: its data is deleted and its keys destroyed.
#[utoipa::path(
    delete,
    path = "/api/v1/tenants/{id}",
    tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 204, description = "Tenant deleted"),
        (status = 400, description = "Invalid tenant id", body = crate::error::ErrorBody),
        (status = 401, description = "Not authenticated", body = crate::error::ErrorBody),
        (status = 403, description = "Missing tenants:write", body = crate::error::ErrorBody),
        (status = 404, description = "No such tenant below the caller's", body = crate::error::ErrorBody),
        (status = 409, description = "The tenant has sub-tenants", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_tenant(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.platform.delete_tenant(&principal, &TenantId::parse(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
