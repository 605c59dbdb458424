//! Conversions between the generated wire types ([`crate::pb`]) and the
//! domain types of `nxmesh-core`.
//!
//! Wire → domain is `TryFrom`, failing with [`InvalidMessage`] on anything
//! the domain cannot represent (an unparsable id, an unspecified enum, a
//! port above 65535, …). Domain → wire is `From`. Both destructure the
//! struct they read exhaustively, so a new field breaks the build here
//! instead of being dropped silently. Timestamps on the wire are Unix
//! milliseconds; `0` means "absent" where the domain has an `Option`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use nxmesh_core::{config, event::AlertSeverity, model, protocol};
use uuid::Uuid;

use crate::pb;

/// A wire message the domain cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidMessage {
    /// The field, for example `virtual_host.listen_port`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The result of a wire → domain conversion.
pub type Result<T, E = InvalidMessage> = std::result::Result<T, E>;

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidMessage {
    InvalidMessage {
        field,
        reason: reason.into(),
    }
}

fn uuid(field: &'static str, s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| invalid(field, e.to_string()))
}

fn opt_uuid(field: &'static str, s: &str) -> Result<Option<Uuid>> {
    if s.is_empty() {
        Ok(None)
    } else {
        uuid(field, s).map(Some)
    }
}

fn opt_string(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

fn time(field: &'static str, ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| invalid(field, format!("timestamp {ms} out of range")))
}

fn opt_time(field: &'static str, ms: i64) -> Result<Option<DateTime<Utc>>> {
    if ms == 0 {
        Ok(None)
    } else {
        time(field, ms).map(Some)
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn btree(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn hash(m: BTreeMap<String, String>) -> HashMap<String, String> {
    m.into_iter().collect()
}

fn nonzero(v: u32) -> Option<u32> {
    if v == 0 { None } else { Some(v) }
}

// ---- enums ----

impl TryFrom<pb::DeploymentMode> for model::DeploymentMode {
    type Error = InvalidMessage;
    fn try_from(v: pb::DeploymentMode) -> Result<Self> {
        match v {
            pb::DeploymentMode::Unspecified => Err(invalid("deployment_mode", "unspecified")),
            pb::DeploymentMode::DockerSidecar => Ok(model::DeploymentMode::DockerSidecar),
            pb::DeploymentMode::KubernetesSidecar => Ok(model::DeploymentMode::KubernetesSidecar),
            pb::DeploymentMode::Standalone => Ok(model::DeploymentMode::Standalone),
        }
    }
}

impl From<model::DeploymentMode> for pb::DeploymentMode {
    fn from(v: model::DeploymentMode) -> Self {
        match v {
            model::DeploymentMode::DockerSidecar => pb::DeploymentMode::DockerSidecar,
            model::DeploymentMode::KubernetesSidecar => pb::DeploymentMode::KubernetesSidecar,
            model::DeploymentMode::Standalone => pb::DeploymentMode::Standalone,
        }
    }
}

impl TryFrom<pb::LoadBalanceAlgorithm> for model::LoadBalanceAlgorithm {
    type Error = InvalidMessage;
    fn try_from(v: pb::LoadBalanceAlgorithm) -> Result<Self> {
        match v {
            pb::LoadBalanceAlgorithm::Unspecified => {
                Err(invalid("upstream.algorithm", "unspecified"))
            }
            pb::LoadBalanceAlgorithm::RoundRobin => Ok(model::LoadBalanceAlgorithm::RoundRobin),
            pb::LoadBalanceAlgorithm::LeastConnections => {
                Ok(model::LoadBalanceAlgorithm::LeastConnections)
            }
            pb::LoadBalanceAlgorithm::IpHash => Ok(model::LoadBalanceAlgorithm::IpHash),
            pb::LoadBalanceAlgorithm::WeightedRoundRobin => {
                Ok(model::LoadBalanceAlgorithm::WeightedRoundRobin)
            }
        }
    }
}

impl From<model::LoadBalanceAlgorithm> for pb::LoadBalanceAlgorithm {
    fn from(v: model::LoadBalanceAlgorithm) -> Self {
        match v {
            model::LoadBalanceAlgorithm::RoundRobin => pb::LoadBalanceAlgorithm::RoundRobin,
            model::LoadBalanceAlgorithm::LeastConnections => {
                pb::LoadBalanceAlgorithm::LeastConnections
            }
            model::LoadBalanceAlgorithm::IpHash => pb::LoadBalanceAlgorithm::IpHash,
            model::LoadBalanceAlgorithm::WeightedRoundRobin => {
                pb::LoadBalanceAlgorithm::WeightedRoundRobin
            }
        }
    }
}

fn modifier_from_pb(v: pb::LocationModifier) -> Option<model::LocationModifier> {
    match v {
        pb::LocationModifier::Unspecified => None,
        pb::LocationModifier::Exact => Some(model::LocationModifier::Exact),
        pb::LocationModifier::PreferentialPrefix => {
            Some(model::LocationModifier::PreferentialPrefix)
        }
        pb::LocationModifier::Regex => Some(model::LocationModifier::Regex),
        pb::LocationModifier::RegexCaseInsensitive => {
            Some(model::LocationModifier::RegexCaseInsensitive)
        }
    }
}

fn modifier_to_pb(v: Option<model::LocationModifier>) -> pb::LocationModifier {
    match v {
        None => pb::LocationModifier::Unspecified,
        Some(model::LocationModifier::Exact) => pb::LocationModifier::Exact,
        Some(model::LocationModifier::PreferentialPrefix) => {
            pb::LocationModifier::PreferentialPrefix
        }
        Some(model::LocationModifier::Regex) => pb::LocationModifier::Regex,
        Some(model::LocationModifier::RegexCaseInsensitive) => {
            pb::LocationModifier::RegexCaseInsensitive
        }
    }
}

impl TryFrom<pb::ConfigApplyStatus> for config::ConfigApplyStatus {
    type Error = InvalidMessage;
    fn try_from(v: pb::ConfigApplyStatus) -> Result<Self> {
        match v {
            pb::ConfigApplyStatus::Unspecified => {
                Err(invalid("config_status.status", "unspecified"))
            }
            pb::ConfigApplyStatus::Pending => Ok(config::ConfigApplyStatus::Pending),
            pb::ConfigApplyStatus::Validating => Ok(config::ConfigApplyStatus::Validating),
            pb::ConfigApplyStatus::Applying => Ok(config::ConfigApplyStatus::Applying),
            pb::ConfigApplyStatus::Success => Ok(config::ConfigApplyStatus::Success),
            pb::ConfigApplyStatus::Failed => Ok(config::ConfigApplyStatus::Failed),
            pb::ConfigApplyStatus::RolledBack => Ok(config::ConfigApplyStatus::RolledBack),
        }
    }
}

impl From<config::ConfigApplyStatus> for pb::ConfigApplyStatus {
    fn from(v: config::ConfigApplyStatus) -> Self {
        match v {
            config::ConfigApplyStatus::Pending => pb::ConfigApplyStatus::Pending,
            config::ConfigApplyStatus::Validating => pb::ConfigApplyStatus::Validating,
            config::ConfigApplyStatus::Applying => pb::ConfigApplyStatus::Applying,
            config::ConfigApplyStatus::Success => pb::ConfigApplyStatus::Success,
            config::ConfigApplyStatus::Failed => pb::ConfigApplyStatus::Failed,
            config::ConfigApplyStatus::RolledBack => pb::ConfigApplyStatus::RolledBack,
        }
    }
}

impl TryFrom<pb::MetricType> for protocol::MetricType {
    type Error = InvalidMessage;
    fn try_from(v: pb::MetricType) -> Result<Self> {
        match v {
            pb::MetricType::Unspecified => Err(invalid("metric.type", "unspecified")),
            pb::MetricType::Gauge => Ok(protocol::MetricType::Gauge),
            pb::MetricType::Counter => Ok(protocol::MetricType::Counter),
            pb::MetricType::Histogram => Ok(protocol::MetricType::Histogram),
        }
    }
}

impl From<protocol::MetricType> for pb::MetricType {
    fn from(v: protocol::MetricType) -> Self {
        match v {
            protocol::MetricType::Gauge => pb::MetricType::Gauge,
            protocol::MetricType::Counter => pb::MetricType::Counter,
            protocol::MetricType::Histogram => pb::MetricType::Histogram,
        }
    }
}

/// Decodes an `i32` enum field, naming the field when the value is unknown.
fn decode_enum<E: TryFrom<i32>>(field: &'static str, v: i32) -> Result<E> {
    E::try_from(v).map_err(|_| invalid(field, format!("unknown enum value {v}")))
}

// ---- registration ----

impl TryFrom<pb::RegistrationRequest> for protocol::RegistrationRequest {
    type Error = InvalidMessage;
    fn try_from(v: pb::RegistrationRequest) -> Result<Self> {
        let pb::RegistrationRequest {
            token,
            hostname,
            ip_address,
            version,
            capabilities,
            labels,
            deployment_mode,
            agent_credential,
            applied_config_version,
            applied_config_checksum,
        } = v;
        let auth = match (token.is_empty(), agent_credential.is_empty()) {
            (false, true) => protocol::AgentAuth::Token(token),
            (true, false) => protocol::AgentAuth::Credential(agent_credential),
            (true, true) => {
                return Err(invalid(
                    "registration",
                    "needs a token or an agent credential",
                ));
            }
            (false, false) => {
                return Err(invalid(
                    "registration",
                    "send a token or a credential, not both",
                ));
            }
        };
        let mode: pb::DeploymentMode =
            decode_enum("registration.deployment_mode", deployment_mode)?;
        if applied_config_version < 0 {
            return Err(invalid("registration.applied_config_version", "negative"));
        }
        let has_applied = applied_config_version > 0 || !applied_config_checksum.is_empty();
        let applied = has_applied.then_some(protocol::AppliedConfig {
            version: applied_config_version,
            checksum: applied_config_checksum,
        });
        Ok(protocol::RegistrationRequest {
            auth,
            hostname,
            ip_address,
            version,
            capabilities,
            labels: btree(labels),
            deployment_mode: mode.try_into()?,
            applied,
        })
    }
}

impl From<protocol::RegistrationRequest> for pb::RegistrationRequest {
    fn from(v: protocol::RegistrationRequest) -> Self {
        let protocol::RegistrationRequest {
            auth,
            hostname,
            ip_address,
            version,
            capabilities,
            labels,
            deployment_mode,
            applied,
        } = v;
        let (token, agent_credential) = match auth {
            protocol::AgentAuth::Token(t) => (t, String::new()),
            protocol::AgentAuth::Credential(c) => (String::new(), c),
        };
        let (applied_config_version, applied_config_checksum) =
            applied.map_or((0, String::new()), |a| (a.version, a.checksum));
        pb::RegistrationRequest {
            token,
            hostname,
            ip_address,
            version,
            capabilities,
            labels: hash(labels),
            deployment_mode: pb::DeploymentMode::from(deployment_mode).into(),
            agent_credential,
            applied_config_version,
            applied_config_checksum,
        }
    }
}

impl TryFrom<pb::RegistrationResponse> for protocol::RegistrationResponse {
    type Error = InvalidMessage;
    fn try_from(v: pb::RegistrationResponse) -> Result<Self> {
        let pb::RegistrationResponse {
            agent_id,
            success,
            error_message,
            heartbeat_interval_seconds,
            agent_credential,
        } = v;
        if !success {
            return Ok(protocol::RegistrationResponse::Rejected { error_message });
        }
        if heartbeat_interval_seconds <= 0 {
            return Err(invalid(
                "registration_response.heartbeat_interval_seconds",
                "must be positive",
            ));
        }
        Ok(protocol::RegistrationResponse::Accepted {
            agent_id: uuid("registration_response.agent_id", &agent_id)?,
            heartbeat_interval_seconds,
            agent_credential: opt_string(agent_credential),
        })
    }
}

impl From<protocol::RegistrationResponse> for pb::RegistrationResponse {
    fn from(v: protocol::RegistrationResponse) -> Self {
        match v {
            protocol::RegistrationResponse::Accepted {
                agent_id,
                heartbeat_interval_seconds,
                agent_credential,
            } => pb::RegistrationResponse {
                agent_id: agent_id.to_string(),
                success: true,
                error_message: String::new(),
                heartbeat_interval_seconds,
                agent_credential: agent_credential.unwrap_or_default(),
            },
            protocol::RegistrationResponse::Rejected { error_message } => {
                pb::RegistrationResponse {
                    agent_id: String::new(),
                    success: false,
                    error_message,
                    heartbeat_interval_seconds: 0,
                    agent_credential: String::new(),
                }
            }
        }
    }
}

// ---- health ----

impl From<pb::NginxStatus> for protocol::NginxStatus {
    fn from(v: pb::NginxStatus) -> Self {
        let pb::NginxStatus {
            is_running,
            pid,
            uptime_seconds,
            active_connections,
            total_requests,
            requests_per_second,
        } = v;
        protocol::NginxStatus {
            is_running,
            pid,
            uptime_seconds,
            active_connections,
            total_requests,
            requests_per_second,
        }
    }
}

impl From<protocol::NginxStatus> for pb::NginxStatus {
    fn from(v: protocol::NginxStatus) -> Self {
        let protocol::NginxStatus {
            is_running,
            pid,
            uptime_seconds,
            active_connections,
            total_requests,
            requests_per_second,
        } = v;
        pb::NginxStatus {
            is_running,
            pid,
            uptime_seconds,
            active_connections,
            total_requests,
            requests_per_second,
        }
    }
}

impl From<pb::SystemMetrics> for protocol::SystemMetrics {
    fn from(v: pb::SystemMetrics) -> Self {
        let pb::SystemMetrics {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            load_average_1m,
        } = v;
        protocol::SystemMetrics {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            load_average_1m,
        }
    }
}

impl From<protocol::SystemMetrics> for pb::SystemMetrics {
    fn from(v: protocol::SystemMetrics) -> Self {
        let protocol::SystemMetrics {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            load_average_1m,
        } = v;
        pb::SystemMetrics {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            load_average_1m,
        }
    }
}

impl TryFrom<pb::Alert> for protocol::Alert {
    type Error = InvalidMessage;
    fn try_from(v: pb::Alert) -> Result<Self> {
        let pb::Alert {
            id,
            severity,
            message,
            timestamp,
        } = v;
        let severity = AlertSeverity::parse(&severity).ok_or_else(|| {
            invalid(
                "alert.severity",
                format!("{severity:?} is not info, warning, error or critical"),
            )
        })?;
        Ok(protocol::Alert {
            id,
            severity,
            message,
            timestamp: time("alert.timestamp", timestamp)?,
        })
    }
}

impl From<protocol::Alert> for pb::Alert {
    fn from(v: protocol::Alert) -> Self {
        let protocol::Alert {
            id,
            severity,
            message,
            timestamp,
        } = v;
        pb::Alert {
            id,
            severity: severity.as_str().to_owned(),
            message,
            timestamp: millis(timestamp),
        }
    }
}

impl TryFrom<pb::HealthReport> for protocol::HealthReport {
    type Error = InvalidMessage;
    fn try_from(v: pb::HealthReport) -> Result<Self> {
        let pb::HealthReport {
            nginx,
            system,
            config_checksum,
            config_version,
            alerts,
        } = v;
        Ok(protocol::HealthReport {
            nginx: nginx.map(Into::into).unwrap_or_default(),
            system: system.map(Into::into).unwrap_or_default(),
            config_checksum,
            config_version,
            alerts: alerts
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
        })
    }
}

impl From<protocol::HealthReport> for pb::HealthReport {
    fn from(v: protocol::HealthReport) -> Self {
        let protocol::HealthReport {
            nginx,
            system,
            config_checksum,
            config_version,
            alerts,
        } = v;
        pb::HealthReport {
            nginx: Some(nginx.into()),
            system: Some(system.into()),
            config_checksum,
            config_version,
            alerts: alerts.into_iter().map(Into::into).collect(),
        }
    }
}

// ---- configuration ----

impl From<pb::Header> for model::Header {
    fn from(v: pb::Header) -> Self {
        let pb::Header {
            name,
            value,
            always,
        } = v;
        model::Header {
            name,
            value,
            always,
        }
    }
}

impl From<model::Header> for pb::Header {
    fn from(v: model::Header) -> Self {
        let model::Header {
            name,
            value,
            always,
        } = v;
        pb::Header {
            name,
            value,
            always,
        }
    }
}

impl TryFrom<pb::RewriteRule> for model::RewriteRule {
    type Error = InvalidMessage;
    fn try_from(v: pb::RewriteRule) -> Result<Self> {
        let pb::RewriteRule {
            pattern,
            replacement,
            flag,
        } = v;
        let flag = match flag.as_str() {
            "" => None,
            "last" => Some(model::RewriteFlag::Last),
            "break" => Some(model::RewriteFlag::Break),
            "redirect" => Some(model::RewriteFlag::Redirect),
            "permanent" => Some(model::RewriteFlag::Permanent),
            other => {
                return Err(invalid(
                    "rewrite_rule.flag",
                    format!("{other:?} is not last, break, redirect or permanent"),
                ));
            }
        };
        Ok(model::RewriteRule {
            pattern,
            replacement,
            flag,
        })
    }
}

impl From<model::RewriteRule> for pb::RewriteRule {
    fn from(v: model::RewriteRule) -> Self {
        let model::RewriteRule {
            pattern,
            replacement,
            flag,
        } = v;
        pb::RewriteRule {
            pattern,
            replacement,
            flag: flag.map(|f| f.as_nginx().to_owned()).unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::Location> for model::Location {
    type Error = InvalidMessage;
    fn try_from(v: pb::Location) -> Result<Self> {
        let pb::Location {
            path,
            proxy_pass,
            upstream_id,
            root,
            index,
            custom_headers,
            rewrite_rules,
            custom_directives,
            modifier,
        } = v;
        let modifier: pb::LocationModifier = decode_enum("location.modifier", modifier)?;
        Ok(model::Location {
            path,
            modifier: modifier_from_pb(modifier),
            upstream_id: opt_uuid("location.upstream_id", &upstream_id)?,
            proxy_pass: opt_string(proxy_pass),
            root: opt_string(root),
            index: opt_string(index),
            custom_headers: custom_headers.into_iter().map(Into::into).collect(),
            rewrite_rules: rewrite_rules
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
            custom_directives: btree(custom_directives),
        })
    }
}

impl From<model::Location> for pb::Location {
    fn from(v: model::Location) -> Self {
        let model::Location {
            path,
            modifier,
            upstream_id,
            proxy_pass,
            root,
            index,
            custom_headers,
            rewrite_rules,
            custom_directives,
        } = v;
        pb::Location {
            path,
            proxy_pass: proxy_pass.unwrap_or_default(),
            upstream_id: upstream_id.map(|u| u.to_string()).unwrap_or_default(),
            root: root.unwrap_or_default(),
            index: index.unwrap_or_default(),
            custom_headers: custom_headers.into_iter().map(Into::into).collect(),
            rewrite_rules: rewrite_rules.into_iter().map(Into::into).collect(),
            custom_directives: hash(custom_directives),
            modifier: modifier_to_pb(modifier).into(),
        }
    }
}

impl TryFrom<pb::VirtualHost> for config::VirtualHostConfig {
    type Error = InvalidMessage;
    fn try_from(v: pb::VirtualHost) -> Result<Self> {
        let pb::VirtualHost {
            id,
            name,
            server_name,
            listen_port,
            ssl_enabled,
            ssl_certificate_id,
            http2_enabled,
            http3_enabled,
            locations,
            custom_directives,
        } = v;
        let listen_port = u16::try_from(listen_port).map_err(|_| {
            invalid(
                "virtual_host.listen_port",
                format!("{listen_port} is not a port"),
            )
        })?;
        Ok(config::VirtualHostConfig {
            id: uuid("virtual_host.id", &id)?,
            spec: model::VirtualHostSpec {
                name,
                server_name,
                listen_port,
                ssl_enabled,
                ssl_certificate_id: opt_uuid(
                    "virtual_host.ssl_certificate_id",
                    &ssl_certificate_id,
                )?,
                http2_enabled,
                http3_enabled,
                locations: locations
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect::<Result<_>>()?,
                custom_directives: btree(custom_directives),
            },
        })
    }
}

impl From<config::VirtualHostConfig> for pb::VirtualHost {
    fn from(v: config::VirtualHostConfig) -> Self {
        let config::VirtualHostConfig { id, spec } = v;
        let model::VirtualHostSpec {
            name,
            server_name,
            listen_port,
            ssl_enabled,
            ssl_certificate_id,
            http2_enabled,
            http3_enabled,
            locations,
            custom_directives,
        } = spec;
        pb::VirtualHost {
            id: id.to_string(),
            name,
            server_name,
            listen_port: listen_port.into(),
            ssl_enabled,
            ssl_certificate_id: ssl_certificate_id
                .map(|u| u.to_string())
                .unwrap_or_default(),
            http2_enabled,
            http3_enabled,
            locations: locations.into_iter().map(Into::into).collect(),
            custom_directives: hash(custom_directives),
        }
    }
}

impl From<pb::UpstreamServer> for model::UpstreamServer {
    fn from(v: pb::UpstreamServer) -> Self {
        let pb::UpstreamServer {
            address,
            weight,
            backup,
            down,
            max_fails,
            fail_timeout_seconds,
        } = v;
        model::UpstreamServer {
            address,
            weight,
            backup,
            down,
            max_fails,
            fail_timeout: fail_timeout_seconds,
        }
    }
}

impl From<model::UpstreamServer> for pb::UpstreamServer {
    fn from(v: model::UpstreamServer) -> Self {
        let model::UpstreamServer {
            address,
            weight,
            backup,
            down,
            max_fails,
            fail_timeout,
        } = v;
        pb::UpstreamServer {
            address,
            weight,
            backup,
            down,
            max_fails,
            fail_timeout_seconds: fail_timeout,
        }
    }
}

impl From<pb::HealthCheckConfig> for model::HealthCheck {
    fn from(v: pb::HealthCheckConfig) -> Self {
        let pb::HealthCheckConfig {
            enabled,
            path,
            interval_seconds,
            timeout_seconds,
            healthy_threshold,
            unhealthy_threshold,
        } = v;
        model::HealthCheck {
            enabled,
            path,
            interval: interval_seconds,
            timeout: timeout_seconds,
            healthy_threshold: nonzero(healthy_threshold),
            unhealthy_threshold: nonzero(unhealthy_threshold),
        }
    }
}

impl From<model::HealthCheck> for pb::HealthCheckConfig {
    fn from(v: model::HealthCheck) -> Self {
        let model::HealthCheck {
            enabled,
            path,
            interval,
            timeout,
            healthy_threshold,
            unhealthy_threshold,
        } = v;
        pb::HealthCheckConfig {
            enabled,
            path,
            interval_seconds: interval,
            timeout_seconds: timeout,
            healthy_threshold: healthy_threshold.unwrap_or(0),
            unhealthy_threshold: unhealthy_threshold.unwrap_or(0),
        }
    }
}

impl TryFrom<pb::Upstream> for config::UpstreamConfig {
    type Error = InvalidMessage;
    fn try_from(v: pb::Upstream) -> Result<Self> {
        let pb::Upstream {
            id,
            name,
            algorithm,
            servers,
            health_check,
            keepalive_connections,
        } = v;
        let algorithm: pb::LoadBalanceAlgorithm = decode_enum("upstream.algorithm", algorithm)?;
        Ok(config::UpstreamConfig {
            id: uuid("upstream.id", &id)?,
            spec: model::UpstreamSpec {
                name,
                algorithm: algorithm.try_into()?,
                servers: servers.into_iter().map(Into::into).collect(),
                health_check: health_check.map(Into::into),
                keepalive_connections,
            },
        })
    }
}

impl From<config::UpstreamConfig> for pb::Upstream {
    fn from(v: config::UpstreamConfig) -> Self {
        let config::UpstreamConfig { id, spec } = v;
        let model::UpstreamSpec {
            name,
            algorithm,
            servers,
            health_check,
            keepalive_connections,
        } = spec;
        pb::Upstream {
            id: id.to_string(),
            name,
            algorithm: pb::LoadBalanceAlgorithm::from(algorithm).into(),
            servers: servers.into_iter().map(Into::into).collect(),
            health_check: health_check.map(Into::into),
            keepalive_connections,
        }
    }
}

impl TryFrom<pb::Certificate> for config::CertificateBundle {
    type Error = InvalidMessage;
    fn try_from(v: pb::Certificate) -> Result<Self> {
        let pb::Certificate {
            id,
            domain,
            certificate_pem,
            private_key_pem,
            expires_at,
        } = v;
        Ok(config::CertificateBundle {
            id: uuid("certificate.id", &id)?,
            domain,
            certificate_pem,
            private_key_pem,
            expires_at: time("certificate.expires_at", expires_at)?,
        })
    }
}

impl From<config::CertificateBundle> for pb::Certificate {
    fn from(v: config::CertificateBundle) -> Self {
        let config::CertificateBundle {
            id,
            domain,
            certificate_pem,
            private_key_pem,
            expires_at,
        } = v;
        pb::Certificate {
            id: id.to_string(),
            domain,
            certificate_pem,
            private_key_pem,
            expires_at: millis(expires_at),
        }
    }
}

impl From<pb::GlobalSettings> for config::GlobalSettings {
    fn from(v: pb::GlobalSettings) -> Self {
        let pb::GlobalSettings {
            nginx_directives,
            env_vars,
            acme_challenges,
        } = v;
        config::GlobalSettings {
            nginx_directives: btree(nginx_directives),
            env_vars: btree(env_vars),
            acme_challenges: acme_challenges.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<config::GlobalSettings> for pb::GlobalSettings {
    fn from(v: config::GlobalSettings) -> Self {
        let config::GlobalSettings {
            nginx_directives,
            env_vars,
            acme_challenges,
        } = v;
        pb::GlobalSettings {
            nginx_directives: hash(nginx_directives),
            env_vars: hash(env_vars),
            acme_challenges: acme_challenges.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<pb::AcmeChallenge> for config::AcmeChallenge {
    fn from(v: pb::AcmeChallenge) -> Self {
        let pb::AcmeChallenge {
            domain,
            token,
            key_authorization,
        } = v;
        config::AcmeChallenge {
            domain,
            token,
            key_authorization,
        }
    }
}

impl From<config::AcmeChallenge> for pb::AcmeChallenge {
    fn from(v: config::AcmeChallenge) -> Self {
        let config::AcmeChallenge {
            domain,
            token,
            key_authorization,
        } = v;
        pb::AcmeChallenge {
            domain,
            token,
            key_authorization,
        }
    }
}

impl TryFrom<pb::ConfigUpdate> for config::ConfigUpdate {
    type Error = InvalidMessage;
    fn try_from(v: pb::ConfigUpdate) -> Result<Self> {
        let pb::ConfigUpdate {
            config_id,
            version,
            virtual_hosts,
            upstreams,
            certificates,
            global_settings,
        } = v;
        if version < 0 {
            return Err(invalid("config_update.version", "negative"));
        }
        Ok(config::ConfigUpdate {
            config_id,
            version,
            virtual_hosts: virtual_hosts
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
            upstreams: upstreams
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
            certificates: certificates
                .into_iter()
                .map(|(k, c)| Ok((k, c.try_into()?)))
                .collect::<Result<_>>()?,
            global_settings: global_settings.map(Into::into).unwrap_or_default(),
        })
    }
}

impl From<config::ConfigUpdate> for pb::ConfigUpdate {
    fn from(v: config::ConfigUpdate) -> Self {
        let config::ConfigUpdate {
            config_id,
            version,
            virtual_hosts,
            upstreams,
            certificates,
            global_settings,
        } = v;
        pb::ConfigUpdate {
            config_id,
            version,
            virtual_hosts: virtual_hosts.into_iter().map(Into::into).collect(),
            upstreams: upstreams.into_iter().map(Into::into).collect(),
            certificates: certificates
                .into_iter()
                .map(|(k, c)| (k, c.into()))
                .collect(),
            global_settings: Some(global_settings.into()),
        }
    }
}

impl TryFrom<pb::ConfigStatus> for config::ConfigStatus {
    type Error = InvalidMessage;
    fn try_from(v: pb::ConfigStatus) -> Result<Self> {
        let pb::ConfigStatus {
            config_id,
            version,
            status,
            error_message,
            applied_at,
            config_checksum,
        } = v;
        let status: pb::ConfigApplyStatus = decode_enum("config_status.status", status)?;
        Ok(config::ConfigStatus {
            config_id,
            version,
            status: status.try_into()?,
            error_message: opt_string(error_message),
            applied_at: opt_time("config_status.applied_at", applied_at)?,
            config_checksum: opt_string(config_checksum),
        })
    }
}

impl From<config::ConfigStatus> for pb::ConfigStatus {
    fn from(v: config::ConfigStatus) -> Self {
        let config::ConfigStatus {
            config_id,
            version,
            status,
            error_message,
            applied_at,
            config_checksum,
        } = v;
        pb::ConfigStatus {
            config_id,
            version,
            status: pb::ConfigApplyStatus::from(status).into(),
            error_message: error_message.unwrap_or_default(),
            applied_at: applied_at.map_or(0, millis),
            config_checksum: config_checksum.unwrap_or_default(),
        }
    }
}

// ---- metrics and logs ----

impl TryFrom<pb::Metric> for protocol::Metric {
    type Error = InvalidMessage;
    fn try_from(v: pb::Metric) -> Result<Self> {
        let pb::Metric {
            name,
            value,
            timestamp,
            labels,
            r#type,
        } = v;
        let kind: pb::MetricType = decode_enum("metric.type", r#type)?;
        Ok(protocol::Metric {
            name,
            value,
            timestamp: time("metric.timestamp", timestamp)?,
            labels: btree(labels),
            kind: kind.try_into()?,
        })
    }
}

impl From<protocol::Metric> for pb::Metric {
    fn from(v: protocol::Metric) -> Self {
        let protocol::Metric {
            name,
            value,
            timestamp,
            labels,
            kind,
        } = v;
        pb::Metric {
            name,
            value,
            timestamp: millis(timestamp),
            labels: hash(labels),
            r#type: pb::MetricType::from(kind).into(),
        }
    }
}

impl TryFrom<pb::MetricsBatch> for protocol::MetricsBatch {
    type Error = InvalidMessage;
    fn try_from(v: pb::MetricsBatch) -> Result<Self> {
        let pb::MetricsBatch { timestamp, metrics } = v;
        Ok(protocol::MetricsBatch {
            timestamp: time("metrics_batch.timestamp", timestamp)?,
            metrics: metrics
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
        })
    }
}

impl From<protocol::MetricsBatch> for pb::MetricsBatch {
    fn from(v: protocol::MetricsBatch) -> Self {
        let protocol::MetricsBatch { timestamp, metrics } = v;
        pb::MetricsBatch {
            timestamp: millis(timestamp),
            metrics: metrics.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::LogEntry> for protocol::LogEntry {
    type Error = InvalidMessage;
    fn try_from(v: pb::LogEntry) -> Result<Self> {
        let pb::LogEntry {
            timestamp,
            level,
            message,
            fields,
        } = v;
        Ok(protocol::LogEntry {
            timestamp: time("log_entry.timestamp", timestamp)?,
            level,
            message,
            fields: btree(fields),
        })
    }
}

impl From<protocol::LogEntry> for pb::LogEntry {
    fn from(v: protocol::LogEntry) -> Self {
        let protocol::LogEntry {
            timestamp,
            level,
            message,
            fields,
        } = v;
        pb::LogEntry {
            timestamp: millis(timestamp),
            level,
            message,
            fields: hash(fields),
        }
    }
}

impl TryFrom<pb::LogBatch> for protocol::LogBatch {
    type Error = InvalidMessage;
    fn try_from(v: pb::LogBatch) -> Result<Self> {
        let pb::LogBatch { entries } = v;
        Ok(protocol::LogBatch {
            entries: entries
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_>>()?,
        })
    }
}

impl From<protocol::LogBatch> for pb::LogBatch {
    fn from(v: protocol::LogBatch) -> Self {
        let protocol::LogBatch { entries } = v;
        pb::LogBatch {
            entries: entries.into_iter().map(Into::into).collect(),
        }
    }
}

// ---- commands, events, acks, errors ----

impl TryFrom<pb::Command> for protocol::Command {
    type Error = InvalidMessage;
    fn try_from(v: pb::Command) -> Result<Self> {
        use pb::command::Command as C;
        let pb::Command {
            command_id,
            command,
        } = v;
        let kind = match command.ok_or_else(|| invalid("command.command", "missing"))? {
            C::Reload(pb::ReloadCommand { graceful }) => protocol::CommandKind::Reload { graceful },
            C::Restart(pb::RestartCommand { force }) => protocol::CommandKind::Restart { force },
            C::Stop(pb::StopCommand {
                graceful,
                timeout_seconds,
            }) => protocol::CommandKind::Stop {
                graceful,
                timeout_seconds,
            },
            C::GetStatus(pb::GetStatusCommand {}) => protocol::CommandKind::GetStatus,
            C::ValidateConfig(pb::ValidateConfigCommand { config_content }) => {
                protocol::CommandKind::ValidateConfig { config_content }
            }
        };
        if command_id.is_empty() {
            return Err(invalid("command.command_id", "missing"));
        }
        Ok(protocol::Command { command_id, kind })
    }
}

impl From<protocol::Command> for pb::Command {
    fn from(v: protocol::Command) -> Self {
        use pb::command::Command as C;
        let protocol::Command { command_id, kind } = v;
        let command = match kind {
            protocol::CommandKind::Reload { graceful } => C::Reload(pb::ReloadCommand { graceful }),
            protocol::CommandKind::Restart { force } => C::Restart(pb::RestartCommand { force }),
            protocol::CommandKind::Stop {
                graceful,
                timeout_seconds,
            } => C::Stop(pb::StopCommand {
                graceful,
                timeout_seconds,
            }),
            protocol::CommandKind::GetStatus => C::GetStatus(pb::GetStatusCommand {}),
            protocol::CommandKind::ValidateConfig { config_content } => {
                C::ValidateConfig(pb::ValidateConfigCommand { config_content })
            }
        };
        pb::Command {
            command_id,
            command: Some(command),
        }
    }
}

impl From<pb::CommandResult> for protocol::CommandResult {
    fn from(v: pb::CommandResult) -> Self {
        let pb::CommandResult {
            command_id,
            success,
            message,
            details,
        } = v;
        protocol::CommandResult {
            command_id,
            success,
            message,
            details: btree(details),
        }
    }
}

impl From<protocol::CommandResult> for pb::CommandResult {
    fn from(v: protocol::CommandResult) -> Self {
        let protocol::CommandResult {
            command_id,
            success,
            message,
            details,
        } = v;
        pb::CommandResult {
            command_id,
            success,
            message,
            details: hash(details),
        }
    }
}

impl TryFrom<pb::Event> for protocol::AgentEvent {
    type Error = InvalidMessage;
    fn try_from(v: pb::Event) -> Result<Self> {
        let pb::Event {
            event_id,
            event_type,
            timestamp,
            data,
        } = v;
        Ok(protocol::AgentEvent {
            event_id,
            event_type,
            timestamp: time("event.timestamp", timestamp)?,
            data: btree(data),
        })
    }
}

impl From<protocol::AgentEvent> for pb::Event {
    fn from(v: protocol::AgentEvent) -> Self {
        let protocol::AgentEvent {
            event_id,
            event_type,
            timestamp,
            data,
        } = v;
        pb::Event {
            event_id,
            event_type,
            timestamp: millis(timestamp),
            data: hash(data),
        }
    }
}

impl From<pb::Ack> for protocol::Ack {
    fn from(v: pb::Ack) -> Self {
        let pb::Ack {
            message_id,
            success,
            error_message,
        } = v;
        protocol::Ack {
            message_id,
            success,
            error_message,
        }
    }
}

impl From<protocol::Ack> for pb::Ack {
    fn from(v: protocol::Ack) -> Self {
        let protocol::Ack {
            message_id,
            success,
            error_message,
        } = v;
        pb::Ack {
            message_id,
            success,
            error_message,
        }
    }
}

impl From<pb::Error> for protocol::ProtocolError {
    fn from(v: pb::Error) -> Self {
        let pb::Error {
            code,
            message,
            details,
        } = v;
        protocol::ProtocolError {
            code,
            message,
            details: btree(details),
        }
    }
}

impl From<protocol::ProtocolError> for pb::Error {
    fn from(v: protocol::ProtocolError) -> Self {
        let protocol::ProtocolError {
            code,
            message,
            details,
        } = v;
        pb::Error {
            code,
            message,
            details: hash(details),
        }
    }
}

// ---- envelopes ----

impl TryFrom<pb::AgentMessage> for protocol::AgentMessage {
    type Error = InvalidMessage;
    fn try_from(v: pb::AgentMessage) -> Result<Self> {
        use pb::agent_message::Payload as P;
        let pb::AgentMessage {
            agent_id,
            timestamp,
            payload,
        } = v;
        let payload = match payload.ok_or_else(|| invalid("agent_message.payload", "missing"))? {
            P::Registration(r) => protocol::AgentPayload::Registration(r.try_into()?),
            P::Health(h) => protocol::AgentPayload::Health(h.try_into()?),
            P::ConfigStatus(s) => protocol::AgentPayload::ConfigStatus(s.try_into()?),
            P::Metrics(m) => protocol::AgentPayload::Metrics(m.try_into()?),
            P::Logs(l) => protocol::AgentPayload::Logs(l.try_into()?),
            P::Event(e) => protocol::AgentPayload::Event(e.try_into()?),
            P::CommandResult(c) => protocol::AgentPayload::CommandResult(c.into()),
        };
        Ok(protocol::AgentMessage {
            agent_id: opt_uuid("agent_message.agent_id", &agent_id)?,
            timestamp: time("agent_message.timestamp", timestamp)?,
            payload,
        })
    }
}

impl From<protocol::AgentMessage> for pb::AgentMessage {
    fn from(v: protocol::AgentMessage) -> Self {
        use pb::agent_message::Payload as P;
        let protocol::AgentMessage {
            agent_id,
            timestamp,
            payload,
        } = v;
        let payload = match payload {
            protocol::AgentPayload::Registration(r) => P::Registration(r.into()),
            protocol::AgentPayload::Health(h) => P::Health(h.into()),
            protocol::AgentPayload::ConfigStatus(s) => P::ConfigStatus(s.into()),
            protocol::AgentPayload::Metrics(m) => P::Metrics(m.into()),
            protocol::AgentPayload::Logs(l) => P::Logs(l.into()),
            protocol::AgentPayload::Event(e) => P::Event(e.into()),
            protocol::AgentPayload::CommandResult(c) => P::CommandResult(c.into()),
        };
        pb::AgentMessage {
            agent_id: agent_id.map(|u| u.to_string()).unwrap_or_default(),
            timestamp: millis(timestamp),
            payload: Some(payload),
        }
    }
}

impl TryFrom<pb::MasterMessage> for protocol::MasterMessage {
    type Error = InvalidMessage;
    fn try_from(v: pb::MasterMessage) -> Result<Self> {
        use pb::master_message::Payload as P;
        let pb::MasterMessage { timestamp, payload } = v;
        let payload = match payload.ok_or_else(|| invalid("master_message.payload", "missing"))? {
            P::RegistrationResponse(r) => {
                protocol::MasterPayload::RegistrationResponse(r.try_into()?)
            }
            P::ConfigUpdate(c) => protocol::MasterPayload::ConfigUpdate(Box::new(c.try_into()?)),
            P::Command(c) => protocol::MasterPayload::Command(c.try_into()?),
            P::Ack(a) => protocol::MasterPayload::Ack(a.into()),
            P::Error(e) => protocol::MasterPayload::Error(e.into()),
        };
        Ok(protocol::MasterMessage {
            timestamp: time("master_message.timestamp", timestamp)?,
            payload,
        })
    }
}

impl From<protocol::MasterMessage> for pb::MasterMessage {
    fn from(v: protocol::MasterMessage) -> Self {
        use pb::master_message::Payload as P;
        let protocol::MasterMessage { timestamp, payload } = v;
        let payload = match payload {
            protocol::MasterPayload::RegistrationResponse(r) => P::RegistrationResponse(r.into()),
            protocol::MasterPayload::ConfigUpdate(c) => P::ConfigUpdate((*c).into()),
            protocol::MasterPayload::Command(c) => P::Command(c.into()),
            protocol::MasterPayload::Ack(a) => P::Ack(a.into()),
            protocol::MasterPayload::Error(e) => P::Error(e.into()),
        };
        pb::MasterMessage {
            timestamp: millis(timestamp),
            payload: Some(payload),
        }
    }
}
