//! Virtual hosts: `/workspaces/{id}/virtual-hosts` and `/virtual-hosts/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use nxmesh_core::error::{FieldErrorCode, ValidationErrors};
use nxmesh_core::model::{
    CreateVirtualHost, Role, UpdateVirtualHost, VirtualHost, VirtualHostSpec,
};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;
use uuid::Uuid;

use super::error::ApiResult;
use super::extract::{ApiJson, ApiQuery, Auth, EDIT, Id};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{id}/virtual-hosts", get(list).post(create))
        .route(
            "/virtual-hosts/{id}",
            get(read).patch(update).delete(remove),
        )
}

/// The upstreams and certificate a virtual host names must exist in its
/// workspace.
async fn check_references(state: &AppState, ws: Uuid, spec: &VirtualHostSpec) -> ApiResult<()> {
    let mut errors = ValidationErrors::default();
    for (i, l) in spec.locations.iter().enumerate() {
        if let Some(up) = l.upstream_id {
            let found = state.store.get_upstream(up).await?;
            if found.is_none_or(|u| u.workspace_id != ws) {
                errors.push(
                    format!("locations[{i}].upstream_id"),
                    FieldErrorCode::NotFound,
                    "no such upstream in this workspace",
                );
            }
        }
    }
    if let Some(cert) = spec.ssl_certificate_id {
        let found = state.store.get_certificate(cert).await?;
        if found.is_none_or(|c| c.workspace_id != ws) {
            errors.push(
                "ssl_certificate_id",
                FieldErrorCode::NotFound,
                "no such certificate in this workspace",
            );
        }
    }
    Ok(errors.into_result()?)
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<VirtualHost>>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    page.validate().map_err(ValidationErrors::from)?;
    Ok(Json(state.store.list_virtual_hosts(ws, page).await?))
}

async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiJson(req): ApiJson<CreateVirtualHost>,
) -> ApiResult<(StatusCode, Json<VirtualHost>)> {
    let workspace = state.workspace(&auth, ws, EDIT).await?;
    req.validate()?;
    check_references(&state, ws, &req.spec).await?;
    let vh = state
        .store
        .create_virtual_host(ws, &req.spec, &req.target_agents)
        .await?;
    state
        .audit(
            &auth,
            workspace.organization_id,
            "virtual_host.create",
            Some(vh.id),
        )
        .await;
    Ok((StatusCode::CREATED, Json(vh)))
}

async fn read(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<Json<VirtualHost>> {
    Ok(Json(state.virtual_host(&auth, id, Role::Viewer).await?.0))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<UpdateVirtualHost>,
) -> ApiResult<Json<VirtualHost>> {
    let (current, ws) = state.virtual_host(&auth, id, EDIT).await?;
    let (spec, target) = req.apply_to(&current)?;
    check_references(&state, ws.id, &spec).await?;
    let vh = state.store.update_virtual_host(id, &spec, &target).await?;
    state
        .audit(&auth, ws.organization_id, "virtual_host.update", Some(id))
        .await;
    Ok(Json(vh))
}

async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let (_, ws) = state.virtual_host(&auth, id, EDIT).await?;
    state.store.delete_virtual_host(id).await?;
    state
        .audit(&auth, ws.organization_id, "virtual_host.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
