//! The per-agent configuration ledger: what each agent should serve
//! (desired version) against what it reported (applied version, last
//! status and error). Desired and observed are kept apart and reconciled by
//! the rollout.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::ConfigApplyStatus;
use crate::model::Timestamp;

/// One agent's row of the ledger.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfigState {
    /// The agent.
    pub agent_id: Uuid,
    /// The version the agent should serve (0: nothing yet).
    pub desired_version: i64,
    /// The last version the agent applied successfully (0: none).
    pub applied_version: i64,
    /// The status of the last report.
    pub last_status: Option<ConfigApplyStatus>,
    /// The error of the last failed apply.
    pub last_error: Option<String>,
    /// When the applied version was applied.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub applied_at: Option<Timestamp>,
    /// Checksum of the tree the agent serves.
    pub config_checksum: Option<String>,
}

impl AgentConfigState {
    /// A row for an agent that has never been targeted.
    pub fn new(agent_id: Uuid) -> AgentConfigState {
        AgentConfigState {
            agent_id,
            desired_version: 0,
            applied_version: 0,
            last_status: None,
            last_error: None,
            applied_at: None,
            config_checksum: None,
        }
    }

    /// Whether the agent serves what it should.
    pub fn in_sync(&self) -> bool {
        self.applied_version >= self.desired_version
    }

    /// Whether the last apply failed.
    pub fn failed(&self) -> bool {
        matches!(
            self.last_status,
            Some(ConfigApplyStatus::Failed | ConfigApplyStatus::RolledBack)
        )
    }
}

/// Counts over a workspace's ledger.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RolloutSummary {
    /// Agents in the workspace.
    pub total: u64,
    /// Agents serving their desired version.
    pub in_sync: u64,
    /// Agents behind, not failed.
    pub pending: u64,
    /// Agents whose last apply failed.
    pub failed: u64,
}

/// `GET /v1/workspaces/{id}/rollout`: per-agent rows and a summary.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The counts.
    pub summary: RolloutSummary,
    /// One row per agent.
    pub agents: Vec<AgentConfigState>,
}

impl RolloutStatus {
    /// Summarizes rows.
    pub fn from_rows(agents: Vec<AgentConfigState>) -> RolloutStatus {
        let mut s = RolloutSummary {
            total: agents.len() as u64,
            ..RolloutSummary::default()
        };
        for a in &agents {
            if a.in_sync() {
                s.in_sync += 1;
            } else if a.failed() {
                s.failed += 1;
            } else {
                s.pending += 1;
            }
        }
        RolloutStatus { summary: s, agents }
    }
}
