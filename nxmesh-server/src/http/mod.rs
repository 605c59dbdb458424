//! The REST API. Each feature module owns its routes; [`app`] merges them
//! under `/v1`, adds health checks, and wraps everything in the request-id,
//! error-rendering, authentication, rate-limit and body-limit layers.
//!
//! Feature modules build their routers with `utoipa_axum`'s
//! `OpenApiRouter` from handlers annotated with `#[utoipa::path]`, so the
//! routes served and the OpenAPI document ([`openapi()`], served at
//! `/v1/openapi.json`) come from the same annotations and cannot drift.

mod access;
mod agents;
mod auth;
mod certificates;
pub mod error;
mod events;
pub mod extract;
mod health;
pub(crate) mod limits;
mod middleware;
mod openapi;
mod organizations;
mod rollout;
mod telemetry;
mod upstreams;
mod users;
mod virtual_hosts;
mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

pub use agents::REGISTRATION_TOKEN_PREFIX;
pub use middleware::API_TOKEN_PREFIX;

use crate::state::AppState;
use error::ApiError;

/// The `/v1` routes and their OpenAPI paths (relative to `/v1`).
fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(organizations::router())
        .merge(workspaces::router())
        .merge(agents::router())
        .merge(virtual_hosts::router())
        .merge(upstreams::router())
        .merge(certificates::router())
        .merge(telemetry::router())
        .merge(events::router())
        .merge(rollout::router())
        .merge(openapi::router())
}

/// The `/v1` routes, without layers: for embedding under another prefix.
pub fn api_routes() -> Router<AppState> {
    api_router().into()
}

/// Every route, unlayered, and the OpenAPI document of exactly those routes.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(openapi::root())
        .nest("/v1", api_router())
        .merge(health::router())
        .split_for_parts();
    openapi::add_common_errors(&mut doc);
    (router, doc)
}

/// The OpenAPI document of [`app`]: every route it serves, with its
/// parameters, bodies and responses. Served at `GET /v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The whole HTTP application: `/v1/...` (with `/v1/openapi.json` and
/// `/v1/docs`), `/healthz`, `/readyz`.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);
    routes()
        .0
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ))
        .layer(axum::middleware::from_fn(middleware::render_errors))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
