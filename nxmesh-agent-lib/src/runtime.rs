//! The traits the nginx runtime implements, and what they return.
//!
//! The connection manager ([`crate::run`]) knows nothing about nginx: it
//! receives configuration and commands from the master and hands them to
//! these traits, and it asks them for health and telemetry to send up. Every
//! method is called from tokio tasks, so implementations must not block the
//! thread for long (use `spawn_blocking` for slow synchronous work).

use async_trait::async_trait;
use nxmesh_core::config::{ConfigApplyStatus, ConfigUpdate};
use nxmesh_core::protocol::{
    AgentEvent, AppliedConfig, Command, CommandResult, HealthReport, LogBatch, MetricsBatch,
};

/// The outcome of one [`ConfigApplier::apply`], reported to the master as a
/// `ConfigStatus` for the update's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// `Success`, `Failed` (refused before the live tree was touched) or
    /// `RolledBack` (applied, then restored to the last good tree). The
    /// intermediate states (`Pending`, `Validating`, `Applying`) are not
    /// outcomes; the manager reports them as given if an applier returns one.
    pub status: ConfigApplyStatus,
    /// Why it failed, for example nginx's own error text.
    pub error_message: Option<String>,
    /// Checksum of the tree nginx serves after this attempt (the new one on
    /// success, the old one after a failure or rollback).
    pub checksum: Option<String>,
}

impl ApplyOutcome {
    /// nginx now serves the update; `checksum` is the new tree's.
    pub fn success(checksum: impl Into<String>) -> Self {
        ApplyOutcome {
            status: ConfigApplyStatus::Success,
            error_message: None,
            checksum: Some(checksum.into()),
        }
    }

    /// Refused before the live tree was touched; the last good config stays.
    pub fn failed(error: impl Into<String>, checksum: Option<String>) -> Self {
        ApplyOutcome {
            status: ConfigApplyStatus::Failed,
            error_message: Some(error.into()),
            checksum,
        }
    }

    /// Applied, then restored to the last good tree.
    pub fn rolled_back(error: impl Into<String>, checksum: Option<String>) -> Self {
        ApplyOutcome {
            status: ConfigApplyStatus::RolledBack,
            error_message: Some(error.into()),
            checksum,
        }
    }
}

/// Applies desired configuration to nginx.
///
/// The manager calls [`apply`](ConfigApplier::apply) for one update at a
/// time, never concurrently, and only with versions newer than
/// [`applied`](ConfigApplier::applied): duplicates and older versions are
/// filtered before, and an update that arrives during an apply replaces any
/// older one still waiting, so a burst of pushes applies only the newest.
/// Every update handed over has passed `TryFrom` from the wire and
/// `nxmesh_core::validate::Validate`.
///
/// An apply is never cancelled by a lost connection; on shutdown the manager
/// waits for a running apply up to [`crate::Timeouts::shutdown_grace`].
#[async_trait]
pub trait ConfigApplier: Send + Sync + 'static {
    /// Renders and applies `update`; returns what nginx serves afterwards.
    ///
    /// Before returning a `Success` outcome the implementation must make
    /// [`applied`](ConfigApplier::applied) report the new version (the
    /// manager reads it right after to filter duplicates).
    async fn apply(&self, update: ConfigUpdate) -> ApplyOutcome;

    /// The last known good configuration (version and checksum), or `None`
    /// when nothing was ever applied. It must survive agent restarts, since
    /// the manager sends it in every registration so that the master
    /// resends configuration only when the agent is behind.
    fn applied(&self) -> Option<AppliedConfig>;
}

/// Executes the master's commands (reload, restart, stop, status, validate).
#[async_trait]
pub trait CommandHandler: Send + Sync + 'static {
    /// Runs `cmd` and answers it. The result's `command_id` should be
    /// `cmd.command_id`; the manager overwrites it with that id in any case.
    ///
    /// Commands run in their own tasks, so `handle` may be called while an
    /// apply or another command is in progress.
    async fn handle(&self, cmd: Command) -> CommandResult;
}

/// Reports the health of nginx and its host; every report is a heartbeat.
#[async_trait]
pub trait HealthSource: Send + Sync + 'static {
    /// The current health. The manager overwrites `config_version` and
    /// `config_checksum` with [`ConfigApplier::applied`], the one source of
    /// truth for what is served.
    async fn health(&self) -> HealthReport;
}

/// A batch of telemetry for the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Telemetry {
    /// Metrics samples.
    Metrics(MetricsBatch),
    /// Log lines (access logs, error logs).
    Logs(LogBatch),
    /// An event the agent raises.
    Event(AgentEvent),
}

/// Produces metrics, log batches and events to send on the stream.
#[async_trait]
pub trait TelemetrySource: Send + Sync + 'static {
    /// Waits for the next batch; `None` when the source has ended for good.
    ///
    /// The manager calls it only while connected and registered; a batch it
    /// took when the connection drops is lost (at most one), the rest stays
    /// with the source, which should bound what it keeps.
    async fn next(&self) -> Option<Telemetry>;
}
