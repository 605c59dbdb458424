//! Beyond the specification: the rollout status of a workspace, the
//! commands an agent accepts, an agent with its ledger row, and the nginx
//! text the generator renders for a virtual host.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use nxmesh_core::error::ErrorBody;
use nxmesh_core::generator::{self, RenderOptions};
use nxmesh_core::ledger::RolloutStatus;
use nxmesh_core::model::{AgentCommand, AgentWithConfig, CommandResponse, ConfigPreview, Role};
use nxmesh_core::protocol::CommandKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Auth, EDIT, Id};
use crate::fleet::CommandError;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(workspace_rollout))
        .routes(routes!(agent_config))
        .routes(routes!(command))
        .routes(routes!(preview))
}

/// Per-agent ledger rows of a workspace and a summary (viewer).
#[utoipa::path(
    get,
    path = "/workspaces/{workspace_id}/rollout",
    tag = "agents",
    operation_id = "workspace_rollout",
    security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path, description = "The workspace's id.")),
    responses(
        (status = 200, description = "The rollout status.", body = RolloutStatus),
        (status = 404, description = "No such workspace, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn workspace_rollout(
    State(state): State<AppState>,
    auth: Auth,
    Id(ws): Id,
) -> ApiResult<Json<RolloutStatus>> {
    state.workspace(&auth, ws, Role::Viewer).await?;
    Ok(Json(RolloutStatus::from_rows(
        state.store.workspace_ledger(ws).await?,
    )))
}

/// The agent with its ledger row: desired and applied version, last status
/// and error (viewer).
#[utoipa::path(
    get,
    path = "/agents/{agent_id}/config",
    tag = "agents",
    operation_id = "get_agent_config",
    security(("bearer" = [])),
    params(("agent_id" = Uuid, Path, description = "The agent's id.")),
    responses(
        (status = 200, description = "The agent and its ledger row.", body = AgentWithConfig),
        (status = 404, description = "No such agent, or the caller is not a member of its organization.", body = ErrorBody),
    )
)]
async fn agent_config(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<Json<AgentWithConfig>> {
    let (agent, _) = state.agent(&auth, id, Role::Viewer).await?;
    let config = state.store.agent_ledger(id).await?;
    Ok(Json(AgentWithConfig { agent, config }))
}

/// Sends a command to a connected agent and waits for its answer (editor).
#[utoipa::path(
    post,
    path = "/agents/{agent_id}/commands",
    tag = "agents",
    operation_id = "agent_command",
    security(("bearer" = [])),
    params(("agent_id" = Uuid, Path, description = "The agent's id.")),
    request_body = AgentCommand,
    responses(
        (status = 200, description = "The agent's answer.", body = CommandResponse),
        (status = 403, description = "The caller's role is below editor.", body = ErrorBody),
        (status = 404, description = "No such agent, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "Not a known command.", body = ErrorBody),
        (status = 503, description = "The agent is not connected or did not answer in time.", body = ErrorBody),
    )
)]
async fn command(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
    ApiJson(req): ApiJson<AgentCommand>,
) -> ApiResult<Json<CommandResponse>> {
    let (_, ws) = state.agent(&auth, id, EDIT).await?;
    let kind = match req {
        AgentCommand::Reload { graceful } => CommandKind::Reload { graceful },
        AgentCommand::Restart { force } => CommandKind::Restart { force },
        AgentCommand::Stop {
            graceful,
            timeout_seconds,
        } => CommandKind::Stop {
            graceful,
            timeout_seconds,
        },
        AgentCommand::GetStatus => CommandKind::GetStatus,
        AgentCommand::ValidateConfig { config_content } => {
            if config_content.len() > 1024 * 1024 {
                return Err(ApiError::bad_request("config_content is larger than 1 MiB"));
            }
            CommandKind::ValidateConfig { config_content }
        }
    };
    let action = match &kind {
        CommandKind::Reload { .. } => "agent.reload",
        CommandKind::Restart { .. } => "agent.restart",
        CommandKind::Stop { .. } => "agent.stop",
        CommandKind::GetStatus => "agent.get_status",
        CommandKind::ValidateConfig { .. } => "agent.validate_config",
    };
    let result = state
        .fleet
        .command(id, kind, state.settings.command_timeout)
        .await
        .map_err(|e| match e {
            CommandError::NotConnected => ApiError::unavailable("the agent is not connected"),
            CommandError::Timeout(t) => {
                ApiError::unavailable(format!("the agent did not answer within {}s", t.as_secs()))
            }
        })?;
    state
        .audit(&auth, ws.organization_id, action, Some(id))
        .await;
    Ok(Json(CommandResponse {
        command_id: result.command_id,
        success: result.success,
        message: result.message,
        details: result.details,
        timestamp: Utc::now(),
    }))
}

/// The nginx text the generator renders for a virtual host (viewer).
#[utoipa::path(
    get,
    path = "/virtual-hosts/{virtual_host_id}/config",
    tag = "virtual-hosts",
    operation_id = "preview_virtual_host",
    security(("bearer" = [])),
    params(("virtual_host_id" = Uuid, Path, description = "The virtual host's id.")),
    responses(
        (status = 200, description = "The rendered server block.", body = ConfigPreview),
        (status = 404, description = "No such virtual host, or the caller is not a member of its organization.", body = ErrorBody),
        (status = 422, description = "The generator refuses the virtual host (field errors).", body = ErrorBody),
    )
)]
async fn preview(
    State(state): State<AppState>,
    auth: Auth,
    Id(id): Id,
) -> ApiResult<Json<ConfigPreview>> {
    let (vh, _) = state.virtual_host(&auth, id, Role::Viewer).await?;
    let mut upstreams: Vec<nxmesh_core::config::UpstreamConfig> = Vec::new();
    for up in vh.spec.locations.iter().filter_map(|l| l.upstream_id) {
        if let Some(u) = state.store.get_upstream(up).await?
            && !upstreams.iter().any(|x| x.id == u.id)
        {
            upstreams.push(nxmesh_core::config::UpstreamConfig {
                id: u.id,
                spec: u.spec,
            });
        }
    }
    // The preview shows the server block; a TLS host renders against a
    // placeholder certificate path, never the real key.
    let mut certificates = std::collections::BTreeMap::new();
    if let Some(cert) = vh.spec.ssl_certificate_id.filter(|_| vh.spec.ssl_enabled) {
        certificates.insert(
            cert.to_string(),
            nxmesh_core::config::CertificateBundle {
                id: cert,
                domain: String::new(),
                certificate_pem:
                    "-----BEGIN CERTIFICATE-----\npreview\n-----END CERTIFICATE-----\n".into(),
                private_key_pem:
                    "-----BEGIN PRIVATE KEY-----\npreview\n-----END PRIVATE KEY-----\n".into(),
                expires_at: Utc::now(),
            },
        );
    }
    let update = nxmesh_core::config::ConfigUpdate {
        config_id: "preview".into(),
        version: 0,
        virtual_hosts: vec![nxmesh_core::config::VirtualHostConfig {
            id: vh.id,
            spec: vh.spec,
        }],
        upstreams,
        certificates,
        global_settings: Default::default(),
    };
    let opts = RenderOptions::default();
    let rendered = generator::render(&update, &opts)?;
    let file = rendered
        .files
        .into_iter()
        .find(|f| f.path.contains("/servers/") && f.path.contains(&id.to_string()))
        .ok_or_else(|| ApiError::internal("the generator rendered no file for the virtual host"))?;
    Ok(Json(ConfigPreview {
        path: file.path,
        content: String::from_utf8_lossy(&file.bytes).into_owned(),
        nginx_version: opts.nginx_version.to_string(),
    }))
}
