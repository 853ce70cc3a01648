//! Rampart's HTTPS REST API (SPEC §3–§6, §11): axum routes under `/api/v1`, the OpenAPI 3.1
//! document generated from the handlers, authentication of people and applications, and the
//! single place where errors become HTTP answers ([`ApiError`]).
//!
//! This crate knows HTTP and nothing about sockets or TLS: the binary serves the [`router`].

mod auth;
mod error;
mod extract;
mod middleware;
mod pagination;
mod routes;
mod state;

pub use error::ApiError;
pub use extract::PeerCertificates;
pub use state::{ApiSettings, AppState};

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "Rampart API", description = "Secure multi-tenant IoT platform", version = "1"),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route with its OpenAPI description, before state is attached.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes::all())
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The complete HTTP application: API routes, OpenAPI document, fallbacks and middleware.
pub fn router(state: AppState) -> Router {
    let (routes, document) = api_routes().split_for_parts();
    let document = std::sync::Arc::new(document);
    routes
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let document = std::sync::Arc::clone(&document);
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // `limit_body` bounds every body (and firmware uploads by their own limit); axum's
        // default 2 MB limit for extractors would only cap uploads a second, lower time.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::limit_body))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .with_state(state)
}
