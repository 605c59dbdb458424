//! The domain side of the master-agent protocol: the messages of
//! `nxmesh.agent.v1` that are not configuration (see [`crate::config`]).
//!
//! `nxmesh-proto` converts between these and the generated wire types; the
//! master and the agent only ever handle these.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

use crate::config::{ConfigStatus, ConfigUpdate};
use crate::event::AlertSeverity;
use crate::model::{DeploymentMode, Labels, Timestamp};

/// How an agent proves who it is when it opens its stream.
#[derive(Clone, PartialEq, Eq)]
pub enum AgentAuth {
    /// First registration, with the single-use registration token.
    Token(String),
    /// Every later connection, with the durable credential the master
    /// returned at registration.
    Credential(String),
}

impl fmt::Debug for AgentAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentAuth::Token(_) => f.write_str("Token(<redacted>)"),
            AgentAuth::Credential(_) => f.write_str("Credential(<redacted>)"),
        }
    }
}

/// The configuration an agent already serves when it (re)connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedConfig {
    /// The version applied.
    pub version: i64,
    /// Checksum of the served tree.
    pub checksum: String,
}

/// The first message of every stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRequest {
    /// Token or credential.
    pub auth: AgentAuth,
    /// Host name of the agent's machine.
    pub hostname: String,
    /// The agent's address.
    pub ip_address: String,
    /// Agent software version.
    pub version: String,
    /// Features of the agent's nginx (`http2`, `http3`, …).
    pub capabilities: Vec<String>,
    /// Labels the agent reports.
    pub labels: Labels,
    /// How it runs beside nginx.
    pub deployment_mode: DeploymentMode,
    /// What it already serves, if anything.
    pub applied: Option<AppliedConfig>,
}

/// The master's answer to a registration.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistrationResponse {
    /// Welcome.
    Accepted {
        /// The agent's id.
        agent_id: Uuid,
        /// Seconds between the heartbeats the master expects.
        heartbeat_interval_seconds: i64,
        /// The durable credential, on first registration only.
        agent_credential: Option<String>,
    },
    /// Refused.
    Rejected {
        /// Why.
        error_message: String,
    },
}

impl fmt::Debug for RegistrationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistrationResponse::Accepted {
                agent_id,
                heartbeat_interval_seconds,
                agent_credential,
            } => f
                .debug_struct("Accepted")
                .field("agent_id", agent_id)
                .field("heartbeat_interval_seconds", heartbeat_interval_seconds)
                .field(
                    "agent_credential",
                    &agent_credential.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
            RegistrationResponse::Rejected { error_message } => f
                .debug_struct("Rejected")
                .field("error_message", error_message)
                .finish(),
        }
    }
}

/// The state of nginx on the agent's host.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NginxStatus {
    /// Whether the nginx master runs.
    pub is_running: bool,
    /// Its PID.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// Open client connections.
    pub active_connections: u32,
    /// Requests served since it started.
    pub total_requests: u64,
    /// Requests per second over the last interval.
    pub requests_per_second: f32,
}

/// Resource use of the agent's host.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SystemMetrics {
    /// CPU use, percent.
    pub cpu_percent: f32,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Memory in all.
    pub memory_total_bytes: u64,
    /// Disk in use.
    pub disk_used_bytes: u64,
    /// Disk in all.
    pub disk_total_bytes: u64,
    /// Load average over one minute.
    pub load_average_1m: f32,
}

/// An alert an agent raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Stable while the condition lasts.
    pub id: String,
    /// How serious it is.
    pub severity: AlertSeverity,
    /// What is wrong.
    pub message: String,
    /// When it was raised.
    pub timestamp: Timestamp,
}

/// A periodic health report, which is also the heartbeat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthReport {
    /// nginx.
    pub nginx: NginxStatus,
    /// The host.
    pub system: SystemMetrics,
    /// Checksum of the served tree.
    pub config_checksum: String,
    /// The version served.
    pub config_version: i64,
    /// Active alerts.
    pub alerts: Vec<Alert>,
}

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up.
    Counter,
    /// A bucket of a distribution.
    Histogram,
}

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// For example `nginx_requests_total`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// When it was sampled.
    pub timestamp: Timestamp,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its kind.
    pub kind: MetricType,
}

/// Samples sent together.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsBatch {
    /// When the batch was sent.
    pub timestamp: Timestamp,
    /// The samples.
    pub metrics: Vec<Metric>,
}

/// One log line (for access logs, the parsed fields are in `fields`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When it was written.
    pub timestamp: Timestamp,
    /// `access`, or an error-log level.
    pub level: String,
    /// The line.
    pub message: String,
    /// Parsed fields.
    pub fields: BTreeMap<String, String>,
}

/// Log lines sent together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogBatch {
    /// The lines.
    pub entries: Vec<LogEntry>,
}

/// What a command asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandKind {
    /// Reload nginx.
    Reload {
        /// Graceful (signal) rather than restart.
        graceful: bool,
    },
    /// Restart nginx.
    Restart {
        /// Without waiting for connections to finish.
        force: bool,
    },
    /// Stop nginx.
    Stop {
        /// Let connections finish.
        graceful: bool,
        /// Seconds to wait before stopping hard.
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

/// A command from the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Correlates the agent's [`CommandResult`].
    pub command_id: String,
    /// What to do.
    pub kind: CommandKind,
}

/// The agent's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The command answered.
    pub command_id: String,
    /// Whether it succeeded.
    pub success: bool,
    /// What happened.
    pub message: String,
    /// Structured outcome.
    pub details: BTreeMap<String, String>,
}

/// An event an agent raises (the protocol's `Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEvent {
    /// Its id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Its data.
    pub data: BTreeMap<String, String>,
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// What is acknowledged.
    pub message_id: String,
    /// Whether it was accepted.
    pub success: bool,
    /// Why not.
    pub error_message: String,
}

/// An error the master sends down the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// An error code, such as `UNAUTHORIZED`.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// More about it.
    pub details: BTreeMap<String, String>,
}

/// What an agent sends on its stream.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentPayload {
    /// The first message.
    Registration(RegistrationRequest),
    /// A heartbeat with health.
    Health(HealthReport),
    /// The outcome of a configuration.
    ConfigStatus(ConfigStatus),
    /// Metrics.
    Metrics(MetricsBatch),
    /// Logs.
    Logs(LogBatch),
    /// An event.
    Event(AgentEvent),
    /// The answer to a command.
    CommandResult(CommandResult),
}

/// A message from an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMessage {
    /// The sender (empty before registration assigns it).
    pub agent_id: Option<Uuid>,
    /// When it was sent.
    pub timestamp: Timestamp,
    /// What it carries.
    pub payload: AgentPayload,
}

/// What the master sends on a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterPayload {
    /// The answer to the registration.
    RegistrationResponse(RegistrationResponse),
    /// A configuration to apply.
    ConfigUpdate(Box<ConfigUpdate>),
    /// A command.
    Command(Command),
    /// An acknowledgement.
    Ack(Ack),
    /// An error.
    Error(ProtocolError),
}

/// A message from the master.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterMessage {
    /// When it was sent.
    pub timestamp: Timestamp,
    /// What it carries.
    pub payload: MasterPayload,
}
