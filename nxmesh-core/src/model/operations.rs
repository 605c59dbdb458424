//! Operations beyond the specification's resources: commands for an
//! agent's nginx and their answers, an agent with its ledger row, and the
//! rendered preview of a virtual host.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Agent, Timestamp};
use crate::ledger::AgentConfigState;

/// A command for an agent's nginx (`POST /agents/{id}/commands`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentCommand {
    /// Reload the configuration.
    Reload {
        /// Signal the master process (the default) rather than restart.
        #[serde(default = "yes")]
        graceful: bool,
    },
    /// Restart nginx.
    Restart {
        /// Without waiting for connections.
        #[serde(default)]
        force: bool,
    },
    /// Stop nginx.
    Stop {
        /// Let connections finish (the default).
        #[serde(default = "yes")]
        graceful: bool,
        /// Seconds to wait before stopping hard (default 30).
        #[serde(default = "thirty")]
        timeout_seconds: u32,
    },
    /// Report nginx's status.
    GetStatus,
    /// Run `nginx -t` on this configuration text.
    ValidateConfig {
        /// The configuration.
        config_content: String,
    },
}

fn yes() -> bool {
    true
}

fn thirty() -> u32 {
    30
}

/// An agent's answer to a command.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResponse {
    /// Correlates the command.
    pub command_id: String,
    /// Whether it succeeded.
    pub success: bool,
    /// What happened (nginx's own text on failure).
    pub message: String,
    /// Structured outcome.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// When the agent answered.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
}

/// An agent with its configuration ledger row (`GET /agents/{id}/config`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentWithConfig {
    /// The agent.
    #[serde(flatten)]
    pub agent: Agent,
    /// Desired and applied versions, last status and error.
    pub config: AgentConfigState,
}

/// The nginx text of one virtual host (`GET /virtual-hosts/{id}/config`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPreview {
    /// The file's path in the rendered tree.
    pub path: String,
    /// The nginx text.
    pub content: String,
    /// The nginx version it was rendered for.
    pub nginx_version: String,
}
