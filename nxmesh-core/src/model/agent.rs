//! Agents, their registration tokens and their health.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Labels, Timestamp};
use crate::error::ValidationErrors;
use crate::validate::{self, Validate};

/// Whether an agent is connected and healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Its stream is up and heartbeats arrive on time.
    Online,
    /// Not connected, or heartbeats stopped (also before first registration).
    Offline,
    /// Connected, but nginx is down, the last apply failed, or alerts are
    /// active.
    Degraded,
}

impl AgentState {
    /// The state as spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Online => "online",
            AgentState::Offline => "offline",
            AgentState::Degraded => "degraded",
        }
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `state` filter of `GET /workspaces/{id}/agents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStateFilter {
    /// Agents in any state.
    #[default]
    All,
    /// Only online agents.
    Online,
    /// Only offline agents.
    Offline,
    /// Only degraded agents.
    Degraded,
}

impl AgentStateFilter {
    /// Whether an agent in `state` passes the filter.
    pub fn matches(self, state: AgentState) -> bool {
        match self {
            AgentStateFilter::All => true,
            AgentStateFilter::Online => state == AgentState::Online,
            AgentStateFilter::Offline => state == AgentState::Offline,
            AgentStateFilter::Degraded => state == AgentState::Degraded,
        }
    }
}

/// The error of parsing an unknown enum spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of: {expected}")]
pub struct UnknownVariant {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for AgentStateFilter {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(AgentStateFilter::All),
            "online" => Ok(AgentStateFilter::Online),
            "offline" => Ok(AgentStateFilter::Offline),
            "degraded" => Ok(AgentStateFilter::Degraded),
            _ => Err(UnknownVariant {
                what: "agent state",
                value: s.to_owned(),
                expected: "online, offline, degraded, all",
            }),
        }
    }
}

/// How the agent runs beside nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeploymentMode {
    /// A container sharing the nginx container's volumes and PID namespace.
    DockerSidecar,
    /// A sidecar container in the nginx pod.
    KubernetesSidecar,
    /// On the host; the agent starts and supervises nginx itself.
    Standalone,
}

/// Whether nginx runs on the agent's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NginxRunState {
    /// The nginx master process is running.
    Running,
    /// nginx is not running.
    Stopped,
}

/// The `health` block of `GET /agents/{id}`, from the latest health report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentHealth {
    /// Whether nginx runs.
    pub nginx_status: NginxRunState,
    /// Seconds since the nginx master started.
    pub nginx_uptime_seconds: u64,
    /// Open client connections.
    pub active_connections: u64,
    /// Requests per second over the last report interval.
    pub requests_per_second: f64,
    /// Host CPU use, percent.
    pub cpu_percent: f64,
    /// Host memory in use, MiB.
    pub memory_used_mb: u64,
    /// The configuration version nginx serves.
    pub config_version: i64,
}

/// An agent: one nginx server of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    /// Its id, fixed when its registration token is created.
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// Display name.
    pub name: String,
    /// Host name the agent reported (`null` before it first registered).
    pub hostname: Option<String>,
    /// Address the agent reported.
    pub ip_address: Option<String>,
    /// Agent software version.
    pub version: Option<String>,
    /// Connection and health state.
    pub state: AgentState,
    /// How the agent runs beside nginx.
    pub deployment_mode: Option<DeploymentMode>,
    /// When the master last heard from it.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_seen_at: Option<Timestamp>,
    /// Features the agent's nginx supports, for example `http2`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Labels, matched by virtual hosts' label selectors.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub labels: Labels,
    /// The latest health report (only in `GET /agents/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<AgentHealth>,
    /// When the agent was created (its registration token issued).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// `POST /workspaces/{id}/agents/tokens`: creates an agent and a
/// single-use registration token for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateRegistrationToken {
    /// The agent's display name.
    pub name: String,
    /// The agent's labels.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub labels: Labels,
    /// Hours until the token expires (1 to 720; default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_hours: Option<u32>,
}

/// The longest a registration token may live, in hours (30 days).
pub const MAX_TOKEN_HOURS: u32 = 720;

impl Validate for CreateRegistrationToken {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        validate::name(&mut errors, "name", &self.name);
        validate::labels(&mut errors, "labels", &self.labels);
        if let Some(h) = self.expires_in_hours {
            validate::range(
                &mut errors,
                "expires_in_hours",
                u64::from(h),
                1,
                u64::from(MAX_TOKEN_HOURS),
            );
        }
        errors.into_result()
    }
}

/// The answer to [`CreateRegistrationToken`]; the token is shown only here.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationTokenCreated {
    /// The secret token the agent presents when it first registers.
    pub token: String,
    /// The id the agent will have.
    pub agent_id: Uuid,
    /// When the token stops working.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

impl fmt::Debug for RegistrationTokenCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationTokenCreated")
            .field("token", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `PATCH /agents/{id}`: absent fields are left unchanged; `labels`
/// replaces the whole label set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateAgent {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, String>>))]
    pub labels: Option<Labels>,
}

impl Validate for UpdateAgent {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(name) = &self.name {
            validate::name(&mut errors, "name", name);
        }
        if let Some(labels) = &self.labels {
            validate::labels(&mut errors, "labels", labels);
        }
        errors.into_result()
    }
}

/// The answer to `POST /agents/{id}/reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReloadResponse {
    /// Whether nginx reloaded.
    pub success: bool,
    /// What happened, in words (nginx's own error text on failure).
    pub message: String,
    /// When the agent answered.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
}
