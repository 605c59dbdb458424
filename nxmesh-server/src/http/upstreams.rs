//! Upstreams: `/workspaces/{id}/upstreams` and `/upstreams/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use nxmesh_core::error::ValidationErrors;
use nxmesh_core::model::{CreateUpstream, Role, UpdateUpstream, Upstream};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;

use super::error::ApiResult;
use super::extract::{ApiJson, ApiQuery, Auth, EDIT, Id};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{id}/upstreams", get(list).post(create))
        .route("/upstreams/{id}", get(read).patch(update).delete(remove))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Upstream>>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    page.validate().map_err(ValidationErrors::from)?;
    Ok(Json(state.store.list_upstreams(ws, page).await?))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiJson(req): ApiJson<CreateUpstream>,
) -> ApiResult<(StatusCode, Json<Upstream>)> {
    let workspace = state.workspace(&auth, ws, EDIT).await?;
    req.validate()?;
    let up = state.store.create_upstream(ws, &req).await?;
    state
        .audit(
            &auth,
            workspace.organization_id,
            "upstream.create",
            Some(up.id),
        )
        .await;
    Ok((StatusCode::CREATED, Json(up)))
}

async fn read(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<Json<Upstream>> {
    Ok(Json(state.upstream(&auth, id, Role::Viewer).await?.0))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<UpdateUpstream>,
) -> ApiResult<Json<Upstream>> {
    let (current, ws) = state.upstream(&auth, id, EDIT).await?;
    let spec = req.apply_to(&current.spec)?;
    let up = state.store.update_upstream(id, &spec).await?;
    state
        .audit(&auth, ws.organization_id, "upstream.update", Some(id))
        .await;
    Ok(Json(up))
}

async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let (_, ws) = state.upstream(&auth, id, EDIT).await?;
    state.store.delete_upstream(id).await?;
    state
        .audit(&auth, ws.organization_id, "upstream.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
