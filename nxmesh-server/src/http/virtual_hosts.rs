//! Virtual hosts: `/workspaces/{id}/virtual-hosts` and `/virtual-hosts/{id}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nxmesh_core::error::{ErrorBody, FieldErrorCode, ValidationErrors};
use nxmesh_core::model::{
    CreateVirtualHost, Role, TargetAgents, UpdateVirtualHost, VirtualHost, VirtualHostSpec,
};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::validate::Validate;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiQuery, Auth, EDIT, Id, parse_json};
use crate::rollout::targeted;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, update, remove))
}

/// `CreateVirtualHost` flattens its spec, and serde cannot report unknown
/// fields through a flatten: split `target_agents` off and read the spec
/// on its own, so a misspelt field anywhere is a field error.
fn create_body(body: serde_json::Value) -> ApiResult<CreateVirtualHost> {
    let serde_json::Value::Object(mut fields) = body else {
        return Err(ApiError::bad_request(
            "invalid JSON body: expected an object",
        ));
    };
    let target_agents = match fields.remove("target_agents") {
        Some(t) => {
            check_target_keys(&t)?;
            parse_json(t.to_string().as_bytes()).map_err(|e| prefixed(e, "target_agents"))?
        }
        None => TargetAgents::default(),
    };
    let spec = parse_json(serde_json::Value::Object(fields).to_string().as_bytes())?;
    Ok(CreateVirtualHost {
        spec,
        target_agents,
    })
}

/// `target_agents` is tagged by `type`, and serde ignores extra keys of a
/// tagged enum: check them here.
fn check_target_keys(t: &serde_json::Value) -> ApiResult<()> {
    let Some(obj) = t.as_object() else {
        return Ok(());
    };
    let allowed: &[&str] = match obj.get("type").and_then(|v| v.as_str()) {
        Some("selector") => &["type", "label_selector"],
        _ => &["type"],
    };
    let mut errors = ValidationErrors::default();
    for k in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
        errors.push(
            format!("target_agents.{k}"),
            FieldErrorCode::NotAllowed,
            "unknown field",
        );
    }
    Ok(errors.into_result()?)
}

fn prefixed(mut e: ApiError, field: &str) -> ApiError {
    for d in &mut e.details {
        d.field = format!("{field}.{}", d.field);
    }
    e
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

/// The virtual hosts of a workspace (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/virtual-hosts",
    tag = "virtual-hosts",
    operation_id = "list_virtual_hosts",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id."), PageParams),
    responses(
        (status = 200, description = "A page of virtual hosts.", body = Page<VirtualHost>),
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
) -> ApiResult<Json<Page<VirtualHost>>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    page.validate().map_err(ValidationErrors::from)?;
    Ok(Json(state.store.list_virtual_hosts(ws, page).await?))
}

/// Create a virtual host (editor); its upstreams and certificate must be in the workspace.
#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/virtual-hosts",
    tag = "virtual-hosts",
    operation_id = "create_virtual_host",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    request_body = CreateVirtualHost,
    responses(
        (status = 201, description = "Created.", body = VirtualHost),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "A virtual host with this name exists in the workspace.", body = ErrorBody),
        (status = 422, description = "Validation failed, or a referenced upstream or certificate is not in the workspace.", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<VirtualHost>)> {
    let workspace = state.workspace(&auth, ws, EDIT).await?;
    let req = create_body(body)?;
    req.validate()?;
    check_references(&state, ws, &req.spec).await?;
    let vh = state
        .store
        .create_virtual_host(ws, &req.spec, &req.target_agents)
        .await?;
    let target = req.target_agents.clone();
    state
        .roll_out("virtual_host.create", |store| async move {
            targeted(store.as_ref(), ws, &[&target]).await
        })
        .await;
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

/// One virtual host (viewer).
#[utoipa::path(
    get,
    path = "/virtual-hosts/{virtual_host_id}",
    tag = "virtual-hosts",
    operation_id = "get_virtual_host",
    security(("bearer" = [])),
    params(("virtual_host_id" = Uuid, Path, description = "The virtual host's id.")),
    responses(
        (status = 200, description = "The virtual host.", body = VirtualHost),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such virtual host, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn read(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<Json<VirtualHost>> {
    Ok(Json(state.virtual_host(&auth, id, Role::Viewer).await?.0))
}

/// Change a virtual host (editor): fields present are replaced, `null` clears `ssl_certificate_id`.
#[utoipa::path(
    patch,
    path = "/virtual-hosts/{virtual_host_id}",
    tag = "virtual-hosts",
    operation_id = "update_virtual_host",
    security(("bearer" = [])),
    params(("virtual_host_id" = Uuid, Path, description = "The virtual host's id.")),
    request_body = UpdateVirtualHost,
    responses(
        (status = 200, description = "Updated.", body = VirtualHost),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such virtual host, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "A virtual host with this name exists in the workspace.", body = ErrorBody),
        (status = 422, description = "Validation failed, or a referenced upstream or certificate is not in the workspace.", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Json<VirtualHost>> {
    let (current, ws) = state.virtual_host(&auth, id, EDIT).await?;
    if let Some(t) = body.get("target_agents") {
        check_target_keys(t)?;
    }
    let req: UpdateVirtualHost = parse_json(body.to_string().as_bytes())?;
    let (spec, target) = req.apply_to(&current)?;
    check_references(&state, ws.id, &spec).await?;
    let vh = state.store.update_virtual_host(id, &spec, &target).await?;
    let (before, after, ws_id) = (current.target_agents.clone(), target.clone(), ws.id);
    state
        .roll_out("virtual_host.update", |store| async move {
            targeted(store.as_ref(), ws_id, &[&before, &after]).await
        })
        .await;
    state
        .audit(&auth, ws.organization_id, "virtual_host.update", Some(id))
        .await;
    Ok(Json(vh))
}

/// Delete a virtual host (editor).
#[utoipa::path(
    delete,
    path = "/virtual-hosts/{virtual_host_id}",
    tag = "virtual-hosts",
    operation_id = "delete_virtual_host",
    security(("bearer" = [])),
    params(("virtual_host_id" = Uuid, Path, description = "The virtual host's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such virtual host, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let (current, ws) = state.virtual_host(&auth, id, EDIT).await?;
    state.store.delete_virtual_host(id).await?;
    let (before, ws_id) = (current.target_agents.clone(), ws.id);
    state
        .roll_out("virtual_host.delete", |store| async move {
            targeted(store.as_ref(), ws_id, &[&before]).await
        })
        .await;
    state
        .audit(&auth, ws.organization_id, "virtual_host.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
