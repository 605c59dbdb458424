//! Workspaces: `/organizations/{id}/workspaces` and `/workspaces/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use nxmesh_core::model::{CreateWorkspace, Role, UpdateWorkspace, Workspace};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;

use super::error::ApiResult;
use super::extract::{ADMIN, ApiJson, ApiQuery, Auth, Id};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/organizations/{id}/workspaces", get(list).post(create))
        .route("/workspaces/{id}", get(read).patch(update).delete(remove))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Id(org): Id,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Workspace>>> {
    state
        .require(&auth, org, Role::Viewer, "organization")
        .await?;
    page.validate()
        .map_err(nxmesh_core::error::ValidationErrors::from)?;
    Ok(Json(state.store.list_workspaces(org, page).await?))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Id(org): Id,
    ApiJson(req): ApiJson<CreateWorkspace>,
) -> ApiResult<(StatusCode, Json<Workspace>)> {
    state.require(&auth, org, ADMIN, "organization").await?;
    req.validate()?;
    let ws = state.store.create_workspace(org, &req).await?;
    state
        .audit(&auth, org, "workspace.create", Some(ws.id))
        .await;
    Ok((StatusCode::CREATED, Json(ws)))
}

async fn read(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<Json<Workspace>> {
    Ok(Json(state.workspace(&auth, id, Role::Viewer).await?))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<UpdateWorkspace>,
) -> ApiResult<Json<Workspace>> {
    let ws = state.workspace(&auth, id, ADMIN).await?;
    req.validate()?;
    let ws2 = state.store.update_workspace(id, &req).await?;
    state
        .audit(&auth, ws.organization_id, "workspace.update", Some(id))
        .await;
    Ok(Json(ws2))
}

async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let ws = state.workspace(&auth, id, ADMIN).await?;
    state.store.delete_workspace(id).await?;
    state
        .audit(&auth, ws.organization_id, "workspace.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
