//! The events of the WebSocket feed (`/v1/events`) and its subscribe
//! message.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{FieldErrorCode, ValidationErrors};
use crate::model::Timestamp;
use crate::validate::Validate;

/// One event: `{"type": ..., "timestamp": ..., "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub timestamp: Timestamp,
    /// What happened; gives `type` and `data`.
    #[serde(flatten)]
    pub payload: EventPayload,
}

impl Event {
    /// The event type, for example `agent.connected`.
    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }
}

/// The typed `data` of an event, tagged by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventPayload {
    /// An agent opened its stream.
    #[serde(rename = "agent.connected")]
    AgentConnected(AgentConnected),
    /// An agent's stream closed or timed out.
    #[serde(rename = "agent.disconnected")]
    AgentDisconnected(AgentDisconnected),
    /// An agent applied a configuration version.
    #[serde(rename = "config.applied")]
    ConfigApplied(ConfigApplied),
    /// An agent failed to apply a configuration version.
    #[serde(rename = "config.failed")]
    ConfigFailed(ConfigFailed),
    /// An agent raised an alert.
    #[serde(rename = "health.alert")]
    HealthAlert(HealthAlert),
    /// A certificate was issued for the first time (beyond the
    /// specification).
    #[serde(rename = "certificate.issued")]
    CertificateIssued(CertificateIssued),
    /// A certificate was replaced by a renewed one (beyond the
    /// specification).
    #[serde(rename = "certificate.renewed")]
    CertificateRenewed(CertificateIssued),
    /// Issuing or renewing a certificate failed (beyond the specification).
    #[serde(rename = "certificate.failed")]
    CertificateFailed(CertificateFailed),
    /// A certificate is close to expiry and its renewal keeps failing
    /// (beyond the specification).
    #[serde(rename = "certificate.expiring")]
    CertificateExpiring(CertificateExpiring),
}

impl EventPayload {
    /// Every event type this version knows.
    pub const TYPES: [&'static str; 9] = [
        "agent.connected",
        "agent.disconnected",
        "config.applied",
        "config.failed",
        "health.alert",
        "certificate.issued",
        "certificate.renewed",
        "certificate.failed",
        "certificate.expiring",
    ];

    /// The event type, for example `agent.connected`.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventPayload::AgentConnected(_) => "agent.connected",
            EventPayload::AgentDisconnected(_) => "agent.disconnected",
            EventPayload::ConfigApplied(_) => "config.applied",
            EventPayload::ConfigFailed(_) => "config.failed",
            EventPayload::HealthAlert(_) => "health.alert",
            EventPayload::CertificateIssued(_) => "certificate.issued",
            EventPayload::CertificateRenewed(_) => "certificate.renewed",
            EventPayload::CertificateFailed(_) => "certificate.failed",
            EventPayload::CertificateExpiring(_) => "certificate.expiring",
        }
    }

    /// The agent the event is about, for agent events.
    pub fn agent_id(&self) -> Option<Uuid> {
        match self {
            EventPayload::AgentConnected(e) => Some(e.agent_id),
            EventPayload::AgentDisconnected(e) => Some(e.agent_id),
            EventPayload::ConfigApplied(e) => Some(e.agent_id),
            EventPayload::ConfigFailed(e) => Some(e.agent_id),
            EventPayload::HealthAlert(e) => Some(e.agent_id),
            EventPayload::CertificateIssued(_)
            | EventPayload::CertificateRenewed(_)
            | EventPayload::CertificateFailed(_)
            | EventPayload::CertificateExpiring(_) => None,
        }
    }
}

/// `certificate.issued` and `certificate.renewed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateIssued {
    /// The certificate.
    pub certificate_id: Uuid,
    /// Its domain (without `*.`).
    pub domain: String,
    /// Whether it covers `*.domain`.
    pub is_wildcard: bool,
    /// When the new certificate expires.
    pub expires_at: Timestamp,
}

/// `certificate.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFailed {
    /// The certificate.
    pub certificate_id: Uuid,
    /// Its domain (without `*.`).
    pub domain: String,
    /// Why, in the CA's words where they come from the CA.
    pub error: String,
    /// Consecutive failures so far.
    pub failures: u32,
    /// When the next attempt is due, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
}

/// `certificate.expiring`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateExpiring {
    /// The certificate.
    pub certificate_id: Uuid,
    /// Its domain (without `*.`).
    pub domain: String,
    /// When the certificate still being served expires.
    pub expires_at: Timestamp,
    /// The last renewal error.
    pub error: String,
}

/// `agent.connected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConnected {
    /// The agent.
    pub agent_id: Uuid,
    /// Its host name.
    pub hostname: String,
    /// Its address.
    pub ip_address: String,
}

/// `agent.disconnected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDisconnected {
    /// The agent.
    pub agent_id: Uuid,
    /// Why, for example `connection_timeout` or `stream_closed`.
    pub reason: String,
}

/// `config.applied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigApplied {
    /// The agent.
    pub agent_id: Uuid,
    /// The configuration's id.
    pub config_id: String,
    /// The version applied.
    pub version: i64,
    /// How long the apply took.
    pub duration_ms: u64,
    /// Always `true` (failures are `config.failed`); kept for the
    /// specification's shape.
    pub success: bool,
}

/// `config.failed` (beyond the specification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFailed {
    /// The agent.
    pub agent_id: Uuid,
    /// The configuration's id.
    pub config_id: String,
    /// The version that failed.
    pub version: i64,
    /// Whether the agent rolled back to its last good configuration.
    pub rolled_back: bool,
    /// The error, in nginx's own words where it comes from nginx.
    pub error: String,
}

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// For information.
    Info,
    /// Needs attention soon.
    Warning,
    /// Something failed.
    Error,
    /// Service is affected.
    Critical,
}

impl AlertSeverity {
    /// The severity as spelled on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Error => "error",
            AlertSeverity::Critical => "critical",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(AlertSeverity::Info),
            "warning" => Some(AlertSeverity::Warning),
            "error" => Some(AlertSeverity::Error),
            "critical" => Some(AlertSeverity::Critical),
            _ => None,
        }
    }
}

/// `health.alert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthAlert {
    /// The agent.
    pub agent_id: Uuid,
    /// The alert's id, stable while the condition lasts.
    pub alert_id: String,
    /// How serious it is.
    pub severity: AlertSeverity,
    /// What is wrong, in words.
    pub message: String,
    /// The metric that crossed a threshold, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The metric's value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// A message a WebSocket client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Replace the subscription: receive only matching events.
    Subscribe(Subscription),
}

/// A subscription: event type patterns and an optional workspace filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Patterns such as `agent.*`, `config.applied` or `*`.
    pub events: Vec<String>,
    /// Narrows the events to one workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventFilter>,
}

/// The `filter` of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventFilter {
    /// Only events of this workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<Uuid>,
}

impl Validate for Subscription {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.events.is_empty() {
            errors.push(
                "events",
                FieldErrorCode::Required,
                "subscribe to at least one pattern",
            );
        }
        for (i, p) in self.events.iter().enumerate() {
            let ok = !p.is_empty()
                && p.len() <= 128
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._*".contains(&b));
            if !ok {
                errors.push(
                    format!("events[{i}]"),
                    FieldErrorCode::InvalidFormat,
                    "a pattern is lowercase letters, digits, '.', '_' and '*'",
                );
            }
        }
        errors.into_result()
    }
}

impl Subscription {
    /// Whether an event of `event_type` in `workspace_id` passes.
    pub fn matches(&self, event_type: &str, workspace_id: Uuid) -> bool {
        let workspace_ok = self
            .filter
            .as_ref()
            .and_then(|f| f.workspace_id)
            .is_none_or(|w| w == workspace_id);
        workspace_ok && self.events.iter().any(|p| glob_match(p, event_type))
    }
}

/// Matches `text` against a pattern where `*` stands for any run of
/// characters (including none) and everything else for itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position after the last `*` seen, and where in `text` it resumed.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi + 1, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}
