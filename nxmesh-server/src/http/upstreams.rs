//! Upstreams: `/workspaces/{id}/upstreams` and `/upstreams/{id}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nxmesh_core::error::{ErrorBody, ValidationErrors};
use nxmesh_core::model::{CreateUpstream, Role, UpdateUpstream, Upstream};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::extract::{ApiJson, ApiQuery, Auth, EDIT, Id};
use crate::rollout::targeted_by_reference;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

/// The upstreams of a workspace (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/upstreams",
    tag = "upstreams",
    operation_id = "list_upstreams",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id."), PageParams),
    responses(
        (status = 200, description = "A page of upstreams.", body = Page<Upstream>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Bad `page` or `per_page`.", body = ErrorBody),
    )
)]
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

/// Create an upstream (editor).
#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/upstreams",
    tag = "upstreams",
    operation_id = "create_upstream",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    request_body = CreateUpstream,
    responses(
        (status = 201, description = "Created.", body = Upstream),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "An upstream with this name exists in the workspace.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
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

/// One upstream (viewer).
#[utoipa::path(
    get,
    path = "/upstreams/{upstream_id}",
    tag = "upstreams",
    operation_id = "get_upstream",
    security(("bearer" = [])),
    params(("upstream_id" = Uuid, Path, description = "The upstream's id.")),
    responses(
        (status = 200, description = "The upstream.", body = Upstream),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such upstream, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn read(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<Json<Upstream>> {
    Ok(Json(state.upstream(&auth, id, Role::Viewer).await?.0))
}

/// Change an upstream (editor): fields present are replaced.
#[utoipa::path(
    patch,
    path = "/upstreams/{upstream_id}",
    tag = "upstreams",
    operation_id = "update_upstream",
    security(("bearer" = [])),
    params(("upstream_id" = Uuid, Path, description = "The upstream's id.")),
    request_body = UpdateUpstream,
    responses(
        (status = 200, description = "Updated.", body = Upstream),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such upstream, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "An upstream with this name exists in the workspace.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<UpdateUpstream>,
) -> ApiResult<Json<Upstream>> {
    let (current, ws) = state.upstream(&auth, id, EDIT).await?;
    let spec = req.apply_to(&current.spec)?;
    let up = state.store.update_upstream(id, &spec).await?;
    let ws_id = ws.id;
    state
        .roll_out("upstream.update", |store| async move {
            targeted_by_reference(store.as_ref(), ws_id, id).await
        })
        .await;
    state
        .audit(&auth, ws.organization_id, "upstream.update", Some(id))
        .await;
    Ok(Json(up))
}

/// Delete an upstream (editor).
#[utoipa::path(
    delete,
    path = "/upstreams/{upstream_id}",
    tag = "upstreams",
    operation_id = "delete_upstream",
    security(("bearer" = [])),
    params(("upstream_id" = Uuid, Path, description = "The upstream's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such upstream, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "A virtual host still uses the upstream.", body = ErrorBody),
    )
)]
async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let (_, ws) = state.upstream(&auth, id, EDIT).await?;
    state.store.delete_upstream(id).await?;
    state
        .audit(&auth, ws.organization_id, "upstream.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
