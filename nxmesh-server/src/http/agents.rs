//! Agents and their registration tokens; the reload command.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use nxmesh_core::error::{FieldErrorCode, ValidationErrors};
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

use super::error::{ApiError, ApiResult};
use super::extract::{ADMIN, ApiJson, ApiQuery, Auth, EDIT, Id};
use crate::auth::{hash_secret, new_secret};
use crate::fleet::CommandError;
use crate::state::AppState;

/// Prefix of agent registration tokens (as in the specification's example).
pub const REGISTRATION_TOKEN_PREFIX: &str = "nxmesh_agent_";

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{id}/agents", get(list))
        .route("/workspaces/{id}/agents/tokens", post(create_token))
        .route("/agents/{id}", get(read).patch(update).delete(remove))
        .route("/agents/{id}/reload", post(reload))
}

/// The query of the agent list.
#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u32>,
    per_page: Option<u32>,
    state: Option<String>,
    label_selector: Option<String>,
}

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

async fn read(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<Json<Agent>> {
    Ok(Json(state.agent(&auth, id, Role::Viewer).await?.0))
}

async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<UpdateAgent>,
) -> ApiResult<Json<Agent>> {
    let (_, ws) = state.agent(&auth, id, EDIT).await?;
    req.validate()?;
    let agent = state.store.update_agent(id, &req).await?;
    state
        .audit(&auth, ws.organization_id, "agent.update", Some(id))
        .await;
    Ok(Json(agent))
}

async fn remove(State(state): State<AppState>, auth: Auth, Id(id): Id) -> ApiResult<StatusCode> {
    let (_, ws) = state.agent(&auth, id, ADMIN).await?;
    state.store.delete_agent(id).await?;
    state
        .audit(&auth, ws.organization_id, "agent.delete", Some(id))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

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
