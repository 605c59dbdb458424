//! Upstreams: groups of backend servers that locations proxy to.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Timestamp, is_false};
use crate::error::{FieldErrorCode, ValidationErrors};
use crate::validate::{self, Validate};

/// How requests are spread over the servers of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LoadBalanceAlgorithm {
    /// nginx's default: in turn.
    #[default]
    RoundRobin,
    /// `least_conn`: to the server with the fewest active connections.
    LeastConnections,
    /// `ip_hash`: by client address, so a client keeps its server.
    IpHash,
    /// Round robin honouring each server's `weight`.
    WeightedRoundRobin,
}

/// One backend server of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpstreamServer {
    /// `host:port`, `ipv4:port`, `[ipv6]:port` or `unix:/path`.
    pub address: String,
    /// Relative share of requests, 1 to 1000.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Used only when the other servers are unavailable.
    #[serde(default)]
    pub backup: bool,
    /// Marked permanently unavailable.
    #[serde(default, skip_serializing_if = "is_false")]
    pub down: bool,
    /// Failed attempts within `fail_timeout` before the server is considered
    /// unavailable (0 disables; nginx's default 1 is left out of the JSON).
    #[serde(
        default = "default_max_fails",
        skip_serializing_if = "is_default_max_fails"
    )]
    pub max_fails: u32,
    /// Seconds: the window for `max_fails`, and how long the server is then
    /// considered unavailable (nginx's default 10 is left out of the JSON).
    #[serde(
        default = "default_fail_timeout",
        skip_serializing_if = "is_default_fail_timeout"
    )]
    pub fail_timeout: u32,
}

fn default_weight() -> u32 {
    1
}

/// nginx's default `max_fails`.
pub const DEFAULT_MAX_FAILS: u32 = 1;
/// nginx's default `fail_timeout`, seconds.
pub const DEFAULT_FAIL_TIMEOUT: u32 = 10;

fn default_max_fails() -> u32 {
    DEFAULT_MAX_FAILS
}

fn is_default_max_fails(n: &u32) -> bool {
    *n == DEFAULT_MAX_FAILS
}

fn default_fail_timeout() -> u32 {
    DEFAULT_FAIL_TIMEOUT
}

fn is_default_fail_timeout(n: &u32) -> bool {
    *n == DEFAULT_FAIL_TIMEOUT
}

/// The health check of an upstream.
///
/// Open-source nginx has no active health checks: the generator renders
/// passive checks (`max_fails`/`fail_timeout`) and the agent performs the
/// active probe of `path` itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthCheck {
    /// Whether the check runs.
    pub enabled: bool,
    /// The HTTP path probed.
    pub path: String,
    /// Seconds between probes.
    pub interval: u32,
    /// Seconds before a probe fails.
    pub timeout: u32,
    /// Consecutive successes before a server is healthy again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Consecutive failures before a server is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
}

/// The user-editable content of an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpstreamSpec {
    /// Name, unique within the workspace; becomes the nginx upstream name.
    pub name: String,
    /// The balancing algorithm.
    #[serde(default)]
    pub algorithm: LoadBalanceAlgorithm,
    /// The servers, at least one.
    pub servers: Vec<UpstreamServer>,
    /// The health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Idle keepalive connections kept to the servers per worker (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keepalive_connections: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most servers an upstream may have.
pub const MAX_SERVERS: usize = 1000;

impl UpstreamSpec {
    pub(crate) fn validate_into(&self, errors: &mut ValidationErrors) {
        validate::upstream_name(errors, "name", &self.name);
        if self.servers.is_empty() {
            errors.push(
                "servers",
                FieldErrorCode::Required,
                "an upstream needs at least one server",
            );
        }
        if self.servers.len() > MAX_SERVERS {
            errors.push(
                "servers",
                FieldErrorCode::TooLong,
                format!("at most {MAX_SERVERS} servers"),
            );
        }
        for (i, s) in self.servers.iter().enumerate() {
            let f = format!("servers[{i}]");
            validate::upstream_address(errors, &format!("{f}.address"), &s.address);
            validate::range(errors, &format!("{f}.weight"), u64::from(s.weight), 1, 1000);
            validate::range(
                errors,
                &format!("{f}.max_fails"),
                u64::from(s.max_fails),
                0,
                1000,
            );
            validate::range(
                errors,
                &format!("{f}.fail_timeout"),
                u64::from(s.fail_timeout),
                0,
                86_400,
            );
            if s.backup && matches!(self.algorithm, LoadBalanceAlgorithm::IpHash) {
                errors.push(
                    format!("{f}.backup"),
                    FieldErrorCode::NotAllowed,
                    "nginx does not allow backup servers with ip_hash",
                );
            }
        }
        if let Some(hc) = &self.health_check {
            validate::location_path(errors, "health_check.path", &hc.path, None);
            validate::range(
                errors,
                "health_check.interval",
                u64::from(hc.interval),
                1,
                3600,
            );
            validate::range(
                errors,
                "health_check.timeout",
                u64::from(hc.timeout),
                1,
                3600,
            );
            if hc.timeout > hc.interval {
                errors.push(
                    "health_check.timeout",
                    FieldErrorCode::OutOfRange,
                    "timeout must not exceed interval",
                );
            }
            for (name, v) in [
                ("health_check.healthy_threshold", hc.healthy_threshold),
                ("health_check.unhealthy_threshold", hc.unhealthy_threshold),
            ] {
                if let Some(n) = v {
                    validate::range(errors, name, u64::from(n), 1, 100);
                }
            }
        }
        validate::range(
            errors,
            "keepalive_connections",
            u64::from(self.keepalive_connections),
            0,
            10_000,
        );
    }
}

impl Validate for UpstreamSpec {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        self.validate_into(&mut errors);
        errors.into_result()
    }
}

/// An upstream as stored and returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upstream {
    /// Its id.
    pub id: Uuid,
    /// The workspace it belongs to.
    pub workspace_id: Uuid,
    /// Its content.
    #[serde(flatten)]
    pub spec: UpstreamSpec,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When it last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// `POST /workspaces/{id}/upstreams`.
pub type CreateUpstream = UpstreamSpec;

/// `PATCH /upstreams/{id}`: absent fields are left unchanged; `servers`
/// replaces the whole list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateUpstream {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<LoadBalanceAlgorithm>,
    /// New servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<UpstreamServer>>,
    /// New health check; `null` removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::double_option"
    )]
    pub health_check: Option<Option<HealthCheck>>,
    /// New keepalive connection count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_connections: Option<u32>,
}

impl UpdateUpstream {
    /// Applies the update to a copy of `current` and validates the result.
    pub fn apply_to(&self, current: &UpstreamSpec) -> Result<UpstreamSpec, ValidationErrors> {
        let UpdateUpstream {
            name,
            algorithm,
            servers,
            health_check,
            keepalive_connections,
        } = self;
        let mut spec = current.clone();
        if let Some(v) = name {
            spec.name.clone_from(v);
        }
        if let Some(v) = algorithm {
            spec.algorithm = *v;
        }
        if let Some(v) = servers {
            spec.servers.clone_from(v);
        }
        if let Some(v) = health_check {
            spec.health_check.clone_from(v);
        }
        if let Some(v) = keepalive_connections {
            spec.keepalive_connections = *v;
        }
        spec.validate().map(|()| spec)
    }
}
