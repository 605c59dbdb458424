//! Metrics summaries and access-log queries.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use nxmesh_core::model::{AccessLogPage, AccessLogQuery, MetricsQuery, MetricsSummary, Role};
use nxmesh_core::validate::Validate;

use super::error::ApiResult;
use super::extract::{ApiQuery, Auth, Id};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{id}/metrics", get(workspace_metrics))
        .route("/agents/{id}/metrics", get(agent_metrics))
        .route("/workspaces/{id}/access-logs", get(access_logs))
}

async fn workspace_metrics(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> ApiResult<Json<MetricsSummary>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    q.validate()?;
    Ok(Json(state.store.metrics_summary(ws, None, &q).await?))
}

async fn agent_metrics(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> ApiResult<Json<MetricsSummary>> {
    let (agent, _) = state.agent(&auth, id, Role::Viewer).await?;
    q.validate()?;
    Ok(Json(
        state
            .store
            .metrics_summary(agent.workspace_id, Some(id), &q)
            .await?,
    ))
}

async fn access_logs(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiQuery(q): ApiQuery<AccessLogQuery>,
) -> ApiResult<Json<AccessLogPage>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    q.validate()?;
    Ok(Json(state.store.query_access_logs(ws, &q).await?))
}
