//! `/healthz` (the process answers) and `/readyz` (storage answers too).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nxmesh_core::error::ErrorBody;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Liveness: the process answers. Public.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The process is up.", body = Object, example = json!({"status": "ok"})),
    )
)]
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: storage answers too. Public.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready to serve.", body = Object, example = json!({"status": "ready"})),
        (status = 503, description = "Storage does not answer.", body = ErrorBody),
    )
)]
async fn readyz(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<Value>)> {
    state
        .store
        .count_users()
        .await
        .map_err(|e| ApiError::unavailable(format!("storage not ready: {e}")))?;
    Ok((StatusCode::OK, Json(json!({"status": "ready"}))))
}
