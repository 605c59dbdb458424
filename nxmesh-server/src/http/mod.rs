//! The REST API. Each feature module owns its routes; [`app`] merges them
//! under `/v1`, adds health checks, and wraps everything in the request-id,
//! error-rendering, authentication, rate-limit and body-limit layers.

mod access;
mod agents;
mod auth;
mod certificates;
pub mod error;
pub mod extract;
mod health;
pub(crate) mod limits;
mod middleware;
mod organizations;
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

pub use agents::REGISTRATION_TOKEN_PREFIX;
pub use middleware::API_TOKEN_PREFIX;

use crate::state::AppState;
use error::ApiError;

/// The `/v1` routes, without layers: for embedding under another prefix.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(organizations::router())
        .merge(workspaces::router())
        .merge(agents::router())
        .merge(virtual_hosts::router())
        .merge(upstreams::router())
        .merge(certificates::router())
        .merge(telemetry::router())
}

/// The whole HTTP application: `/v1/...`, `/healthz`, `/readyz`.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static(middleware::REQUEST_ID);
    Router::new()
        .nest("/v1", api_routes())
        .merge(health::router())
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
