//! Workspaces: `/organizations/{id}/workspaces` and `/workspaces/{id}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nxmesh_core::error::ErrorBody;
use nxmesh_core::model::{CreateWorkspace, Role, UpdateWorkspace, Workspace};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::{ADMIN, ApiJson, ApiQuery, Auth, Id};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

/// The workspaces of an organization (viewer).
#[utoipa::path(
    get,
    path = "/organizations/{organization_id}/workspaces",
    tag = "workspaces",
    operation_id = "list_workspaces",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id."), PageParams),
    responses(
        (status = 200, description = "A page of workspaces.", body = Page<Workspace>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Bad `page` or `per_page`.", body = ErrorBody),
    )
)]
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

/// Create a workspace (admin).
#[utoipa::path(
    post,
    path = "/organizations/{organization_id}/workspaces",
    tag = "workspaces",
    operation_id = "create_workspace",
    security(("bearer" = [])),
    params(("organization_id" = Uuid, Path, description = "The organization's id.")),
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "Created.", body = Workspace),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such organization, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "The slug is taken in this organization.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
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

/// One workspace (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}",
    tag = "workspaces",
    operation_id = "get_workspace",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    responses(
        (status = 200, description = "The workspace.", body = Workspace),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn read(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<Json<Workspace>> {
    Ok(Json(state.workspace(&auth, id, Role::Viewer).await?))
}

/// Rename a workspace (admin).
#[utoipa::path(
    patch,
    path = "/workspaces/{workspace_id}",
    tag = "workspaces",
    operation_id = "update_workspace",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    request_body = UpdateWorkspace,
    responses(
        (status = 200, description = "Updated.", body = Workspace),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "The slug is taken in this organization.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
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

/// Delete a workspace and everything in it (admin).
#[utoipa::path(
    delete,
    path = "/workspaces/{workspace_id}",
    tag = "workspaces",
    operation_id = "delete_workspace",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let ws = state.workspace(&auth, id, ADMIN).await?;
    state.store.delete_workspace(id).await?;
    state
        .audit(&auth, ws.organization_id, "workspace.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
