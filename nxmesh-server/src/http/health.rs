//! `/healthz` (the process answers) and `/readyz` (storage answers too).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<Value>)> {
    state
        .store
        .count_users()
        .await
        .map_err(|e| ApiError::unavailable(format!("storage not ready: {e}")))?;
    Ok((StatusCode::OK, Json(json!({"status": "ready"}))))
}
