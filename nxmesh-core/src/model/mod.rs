//! The domain model: every resource and payload of the REST API, as the
//! specification shapes its JSON.
//!
//! Resources come in three shapes: the resource as returned (with `id` and
//! timestamps), the create request and the update (`PATCH`) request. The
//! user-editable content of virtual hosts and upstreams is a `*Spec` shared
//! by the resource, the create request and the agent-facing configuration
//! in [`crate::config`], so that the three can never drift apart.

mod agent;
mod certificate;
mod operations;
mod telemetry;
mod tenancy;
mod upstream;
mod users;
mod vhost;

pub use agent::{
    Agent, AgentHealth, AgentState, AgentStateFilter, CreateRegistrationToken, DeploymentMode,
    MAX_TOKEN_HOURS, NginxRunState, RegistrationTokenCreated, ReloadResponse, UnknownVariant,
    UpdateAgent,
};
pub use certificate::{Certificate, CertificateProvider, CertificateStatus, CreateCertificate};
pub use operations::{AgentCommand, AgentWithConfig, CommandResponse, ConfigPreview};
pub use telemetry::{
    AccessLogEntry, AccessLogMeta, AccessLogPage, AccessLogQuery, Bandwidth, MAX_ACCESS_LOG_LIMIT,
    MetricsQuery, MetricsSummary, StatusCodeCounts,
};
pub use tenancy::{
    CreateOrganization, CreateWorkspace, LoginRequest, Organization, RefreshRequest, TokenResponse,
    UpdateOrganization, UpdateWorkspace, Workspace,
};
pub use upstream::{
    CreateUpstream, DEFAULT_FAIL_TIMEOUT, DEFAULT_MAX_FAILS, HealthCheck, LoadBalanceAlgorithm,
    MAX_SERVERS, UpdateUpstream, Upstream, UpstreamServer, UpstreamSpec,
};
pub use users::{
    AddMember, ApiToken, ApiTokenCreated, AuditEntry, CreateApiToken, CreateUser, LogoutRequest,
    MIN_PASSWORD_LEN, Member, Role, Scope, UpdateMember, User,
};
pub use vhost::{
    CreateVirtualHost, Header, Location, LocationModifier, RewriteFlag, RewriteRule, TargetAgents,
    UpdateVirtualHost, VirtualHost, VirtualHostSpec,
};

/// A point in time, serialized as RFC 3339 in UTC (`2026-01-15T10:30:00Z`).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Labels: string keys to string values, kept sorted so that output is
/// deterministic.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Serde helper for `PATCH` fields that can be set, cleared with `null`, or
/// left alone by omitting them: `None` = absent, `Some(None)` = `null`.
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }

    pub(crate) fn serialize<T, S>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize,
        S: Serializer,
    {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
