//! Agents and their registration tokens; the reload command.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use nxmesh_core::error::{ErrorBody, FieldErrorCode, ValidationErrors};
use nxmesh_core::model::{
    Agent, AgentStateFilter, CreateRegistrationToken, RegistrationTokenCreated, ReloadResponse,
    Role, UpdateAgent,
};
use nxmesh_core::pagination::{DEFAULT_PER_PAGE, Page, PageParams};
use nxmesh_core::protocol::CommandKind;
use nxmesh_core::selector::LabelSelector;
use nxmesh_core::storage::{AgentFilter, NewAgent};
use nxmesh_core::validate::Validate;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ADMIN, ApiJson, ApiQuery, Auth, EDIT, Id};
use crate::auth::{hash_secret, new_secret};
use crate::fleet::CommandError;
use crate::state::AppState;

/// Prefix of agent registration tokens (as in the specification's example).
pub const REGISTRATION_TOKEN_PREFIX: &str = "nxmesh_agent_";

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(create_token))
        .routes(routes!(read, update, remove))
        .routes(routes!(reload))
}

/// The query of the agent list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The page to return, starting at 1 (default 1).
    page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    per_page: Option<u32>,
    /// Only agents in this state (default `all`).
    #[param(value_type = Option<AgentStateFilter>, inline)]
    state: Option<String>,
    /// A Kubernetes-style label selector, for example `env=prod,tier!=edge`.
    label_selector: Option<String>,
}

/// The agents of a workspace, filtered by state and label selector (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/agents",
    tag = "agents",
    operation_id = "list_agents",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id."), ListQuery),
    responses(
        (status = 200, description = "A page of agents.", body = Page<Agent>),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Bad `page`, `per_page`, `state` or `label_selector`.", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Agent>>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    let page = PageParams {
        page: q.page.unwrap_or(1),
        per_page: q.per_page.unwrap_or(DEFAULT_PER_PAGE),
    };
    let mut errors = ValidationErrors::default();
    if let Err(e) = page.validate() {
        errors.errors.push(e);
    }
    let filter_state = match q.state.as_deref().map(str::parse::<AgentStateFilter>) {
        None => AgentStateFilter::All,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            errors.push("state", FieldErrorCode::InvalidFormat, e.to_string());
            AgentStateFilter::All
        }
    };
    let selector = match q.label_selector.as_deref().map(str::parse::<LabelSelector>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            errors.push(
                "label_selector",
                FieldErrorCode::InvalidFormat,
                e.to_string(),
            );
            None
        }
    };
    errors.into_result()?;
    Ok(Json(
        state
            .store
            .list_agents(
                ws,
                &AgentFilter {
                    state: filter_state,
                    selector,
                },
                page,
            )
            .await?,
    ))
}

/// Create an agent and its single-use registration token (admin).
///
/// The token is shown only in this answer; the agent uses it to register.
#[utoipa::path(
    post,
    path = "/workspaces/{workspace_id}/agents/tokens",
    tag = "agents",
    operation_id = "create_registration_token",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    request_body = CreateRegistrationToken,
    responses(
        (status = 201, description = "Created.", body = RegistrationTokenCreated),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "An agent with this name exists in the workspace.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
    ApiJson(req): ApiJson<CreateRegistrationToken>,
) -> ApiResult<(StatusCode, Json<RegistrationTokenCreated>)> {
    let workspace = state.workspace(&auth, ws, ADMIN).await?;
    req.validate()?;
    let token = new_secret(REGISTRATION_TOKEN_PREFIX)?;
    let expires_at =
        Utc::now() + chrono::Duration::hours(i64::from(req.expires_in_hours.unwrap_or(24)));
    let agent = state
        .store
        .create_agent(&NewAgent {
            workspace_id: ws,
            name: req.name.clone(),
            labels: req.labels.clone(),
            token_hash: hash_secret(&token),
            token_expires_at: expires_at,
        })
        .await?;
    state
        .audit(
            &auth,
            workspace.organization_id,
            "agent.create",
            Some(agent.id),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(RegistrationTokenCreated {
            token,
            agent_id: agent.id,
            expires_at,
        }),
    ))
}

/// One agent with its last reported health (viewer).
#[utoipa::path(
    get,
    path = "/agents/{agent_id}",
    tag = "agents",
    operation_id = "get_agent",
    security(("bearer" = [])),
    params(("agent_id" = Uuid, Path, description = "The agent's id.")),
    responses(
        (status = 200, description = "The agent.", body = Agent),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 404, description = "No such agent, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn read(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<Json<Agent>> {
    Ok(Json(state.agent(&auth, id, Role::Viewer).await?.0))
}

/// Rename an agent or replace its labels (editor).
#[utoipa::path(
    patch,
    path = "/agents/{agent_id}",
    tag = "agents",
    operation_id = "update_agent",
    security(("bearer" = [])),
    params(("agent_id" = Uuid, Path, description = "The agent's id.")),
    request_body = UpdateAgent,
    responses(
        (status = 200, description = "Updated.", body = Agent),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such agent, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 409, description = "An agent with this name exists in the workspace.", body = ErrorBody),
        (status = 422, description = "Validation failed.", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<UpdateAgent>,
) -> ApiResult<Json<Agent>> {
    let (_, ws) = state.agent(&auth, id, EDIT).await?;
    req.validate()?;
    let agent = state.store.update_agent(id, &req).await?;
    if req.labels.is_some() {
        // Its labels decide which virtual hosts target it.
        state.rollout.agents_changed(vec![id]);
    }
    state
        .audit(&auth, ws.organization_id, "agent.update", Some(id))
        .await;
    Ok(Json(agent))
}

/// Delete an agent (admin).
#[utoipa::path(
    delete,
    path = "/agents/{agent_id}",
    tag = "agents",
    operation_id = "delete_agent",
    security(("bearer" = [])),
    params(("agent_id" = Uuid, Path, description = "The agent's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such agent, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let (_, ws) = state.agent(&auth, id, ADMIN).await?;
    state.store.delete_agent(id).await?;
    // Its credential is revoked with it; close its stream, if any.
    state.fleet.disconnect(id);
    state
        .audit(&auth, ws.organization_id, "agent.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ask a connected agent to reload nginx gracefully and wait for its answer (editor).
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/reload",
    tag = "agents",
    operation_id = "reload_agent",
    security(("bearer" = [])),
    params(("agent_id" = Uuid, Path, description = "The agent's id.")),
    responses(
        (status = 200, description = "The agent's answer.", body = ReloadResponse),
        (status = 401, description = "Authentication required.", body = ErrorBody),
        (status = 403, description = "The caller's role is too low.", body = ErrorBody),
        (status = 404, description = "No such agent, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 503, description = "The agent is not connected, or did not answer in time.", body = ErrorBody),
    )
)]
async fn reload(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<Json<ReloadResponse>> {
    let (_, ws) = state.agent(&auth, id, EDIT).await?;
    let result = state
        .fleet
        .command(
            id,
            CommandKind::Reload { graceful: true },
            state.settings.command_timeout,
        )
        .await
        .map_err(|e| match e {
            CommandError::NotConnected => ApiError::unavailable("the agent is not connected"),
            CommandError::Timeout(t) => {
                ApiError::unavailable(format!("the agent did not answer within {}s", t.as_secs()))
            }
        })?;
    state
        .audit(&auth, ws.organization_id, "agent.reload", Some(id))
        .await;
    let message = if result.success && result.message.is_empty() {
        "Nginx reloaded successfully".to_owned()
    } else {
        result.message
    };
    Ok(Json(ReloadResponse {
        success: result.success,
        message,
        timestamp: Utc::now(),
    }))
}
