//! Metrics summaries and access-log queries.

use axum::Json;
use axum::extract::State;
use nxmesh_core::error::ErrorBody;
use nxmesh_core::model::{AccessLogPage, AccessLogQuery, MetricsQuery, MetricsSummary, Role};
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::{ApiQuery, Auth, Id};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workspace_metrics))
        .routes(routes!(agent_metrics))
        .routes(routes!(access_logs))
}

/// A metrics summary of every agent of a workspace over `[from, to)` (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/metrics",
    tag = "telemetry",
    operation_id = "get_workspace_metrics",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id."), MetricsQuery),
    responses(
        (status = 200, description = "The summary.", body = MetricsSummary),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Missing or bad `from`/`to`.", body = ErrorBody),
    )
)]
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

/// A metrics summary of one agent over `[from, to)` (viewer).
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/metrics",
    tag = "telemetry",
    operation_id = "get_agent_metrics",
    security(("bearer" = [])),
    params(("agent_id" = Uuid, Path, description = "The agent's id."), MetricsQuery),
    responses(
        (status = 200, description = "The summary.", body = MetricsSummary),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such agent, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Missing or bad `from`/`to`.", body = ErrorBody),
    )
)]
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

/// Access-log entries of a workspace, newest first (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/access-logs",
    tag = "telemetry",
    operation_id = "query_access_logs",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id."), AccessLogQuery),
    responses(
        (status = 200, description = "The entries.", body = AccessLogPage),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Bad `from`, `to`, `status_code` or `limit`.", body = ErrorBody),
    )
)]
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
