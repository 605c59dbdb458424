//! The typed objects the package returns: each wraps the `nxmesh-core`
//! type it shows (`PyX { inner: core::X }`), with one read-only attribute
//! per field, `to_dict()` (the wire JSON as plain Python objects), equality
//! and a `repr` that hides secrets.

use nxmesh_core::config::ConfigApplyStatus;
use nxmesh_core::error::{FieldError, FieldErrorCode};
use nxmesh_core::event::Event;
use nxmesh_core::ledger::{AgentConfigState, RolloutStatus, RolloutSummary};
use nxmesh_core::lint::{Finding, Severity};
use nxmesh_core::model::{
    AccessLogEntry, AccessLogPage, Agent, AgentHealth, AgentState, AgentWithConfig, ApiToken,
    ApiTokenCreated, AuditEntry, Bandwidth, Certificate, CertificateProvider, CertificateStatus,
    CommandResponse, ConfigPreview, DeploymentMode, Header, HealthCheck, LoadBalanceAlgorithm,
    Location, LocationModifier, Member, MetricsSummary, NginxRunState, Organization,
    RegistrationTokenCreated, ReloadResponse, RewriteFlag, RewriteRule, Role, Scope,
    StatusCodeCounts, TargetAgents, Upstream, UpstreamServer, User, VirtualHost, Workspace,
};
use nxmesh_core::pagination::PageMeta;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use serde_json::Value;

use crate::convert::{ToPy, json_to_py, to_py_as_json, to_py_json};

to_py_as_json!(
    FieldErrorCode,
    NginxRunState,
    AgentState,
    DeploymentMode,
    ConfigApplyStatus,
    LocationModifier,
    RewriteFlag,
    LoadBalanceAlgorithm,
    CertificateProvider,
    CertificateStatus,
    Role,
    Scope,
    StatusCodeCounts,
    Severity,
);

impl ToPy for &'static str {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(pyo3::types::PyString::new(py, self).into_any().unbind())
    }
}

/// The `repr` text of a wire value: `Name({...})`, with secrets hidden.
fn repr_of<T: serde::Serialize>(name: &str, value: &T) -> String {
    let mut json = serde_json::to_value(value).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut json {
        for secret in ["token", "password", "private_key_pem"] {
            if let Some(v) = map.get_mut(secret) {
                *v = Value::String("<redacted>".into());
            }
        }
    }
    format!("{name}({json})")
}

/// Declares a wrapper class: `model!(PyX as "X" wraps core::X { attr: path.to.field, ... })`.
macro_rules! model {
    (
        $(#[doc = $doc:literal])+
        $py:ident as $name:literal wraps $rust:ty {
            $($field:ident : $($path:ident).+),* $(,)?
        }
    ) => {
        $(#[doc = $doc])+
        #[pyclass(frozen, name = $name, module = "nxmesh")]
        pub(crate) struct $py {
            pub(crate) inner: $rust,
        }

        #[pymethods]
        impl $py {
            $(
                #[getter]
                fn $field(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                    ToPy::to_py(&self.inner.$($path).+, py)
                }
            )*

            /// The object as on the wire: plain dicts, lists, strings and numbers.
            fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                to_py_json(py, &self.inner)
            }

            fn __repr__(&self) -> String {
                repr_of($name, &self.inner)
            }

            fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
                match other.cast::<$py>() {
                    Ok(o) => {
                        serde_json::to_value(&self.inner).ok()
                            == serde_json::to_value(&o.get().inner).ok()
                    }
                    Err(_) => false,
                }
            }
        }

        impl From<$rust> for $py {
            fn from(inner: $rust) -> Self {
                $py { inner }
            }
        }

        impl ToPy for $rust {
            fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                Ok(Py::new(py, $py::from(self.clone()))?.into_any())
            }
        }
    };
}

model!(
    /// One field-level problem: `field`, `message`, `code`.
    PyFieldError as "FieldError" wraps FieldError { field: field, message: message, code: code }
);

model!(
    /// An organization.
    PyOrganization as "Organization" wraps Organization {
        id: id, name: name, slug: slug, created_at: created_at, updated_at: updated_at,
    }
);

model!(
    /// A workspace of an organization.
    PyWorkspace as "Workspace" wraps Workspace {
        id: id, organization_id: organization_id, name: name, slug: slug, created_at: created_at,
    }
);

model!(
    /// What an agent last reported about nginx and its host.
    PyAgentHealth as "AgentHealth" wraps AgentHealth {
        nginx_status: nginx_status,
        nginx_uptime_seconds: nginx_uptime_seconds,
        active_connections: active_connections,
        requests_per_second: requests_per_second,
        cpu_percent: cpu_percent,
        memory_used_mb: memory_used_mb,
        config_version: config_version,
    }
);

model!(
    /// An agent beside an nginx.
    PyAgent as "Agent" wraps Agent {
        id: id,
        workspace_id: workspace_id,
        name: name,
        hostname: hostname,
        ip_address: ip_address,
        version: version,
        state: state,
        deployment_mode: deployment_mode,
        last_seen_at: last_seen_at,
        capabilities: capabilities,
        labels: labels,
        health: health,
        created_at: created_at,
    }
);

model!(
    /// A single-use registration token for a new agent (shown once).
    PyRegistrationToken as "RegistrationToken" wraps RegistrationTokenCreated {
        token: token, agent_id: agent_id, expires_at: expires_at,
    }
);

model!(
    /// The answer to an nginx reload.
    PyReloadResponse as "ReloadResponse" wraps ReloadResponse {
        success: success, message: message, timestamp: timestamp,
    }
);

model!(
    /// An agent's answer to a command.
    PyCommandResponse as "CommandResponse" wraps CommandResponse {
        command_id: command_id,
        success: success,
        message: message,
        details: details,
        timestamp: timestamp,
    }
);

model!(
    /// The configuration ledger row of one agent: desired and applied versions.
    PyAgentConfigState as "AgentConfigState" wraps AgentConfigState {
        agent_id: agent_id,
        desired_version: desired_version,
        applied_version: applied_version,
        last_status: last_status,
        last_error: last_error,
        applied_at: applied_at,
        config_checksum: config_checksum,
    }
);

model!(
    /// An agent with its configuration ledger row.
    PyAgentWithConfig as "AgentWithConfig" wraps AgentWithConfig { agent: agent, config: config }
);

model!(
    /// A response header a location adds.
    PyHeader as "Header" wraps Header { name: name, value: value, always: always }
);

model!(
    /// A rewrite rule of a location.
    PyRewriteRule as "RewriteRule" wraps RewriteRule {
        pattern: pattern, replacement: replacement, flag: flag,
    }
);

model!(
    /// A location of a virtual host.
    PyLocation as "Location" wraps Location {
        path: path,
        modifier: modifier,
        upstream_id: upstream_id,
        proxy_pass: proxy_pass,
        root: root,
        index: index,
        custom_headers: custom_headers,
        rewrite_rules: rewrite_rules,
        custom_directives: custom_directives,
    }
);

/// Which agents a virtual host is deployed to: `type` is `"all"` or
/// `"selector"` (then `label_selector` is set).
#[pyclass(frozen, name = "TargetAgents", module = "nxmesh")]
pub(crate) struct PyTargetAgents {
    inner: TargetAgents,
}

#[pymethods]
impl PyTargetAgents {
    #[getter(r#type)]
    fn kind(&self) -> &'static str {
        match self.inner {
            TargetAgents::All => "all",
            TargetAgents::Selector { .. } => "selector",
        }
    }

    #[getter]
    fn label_selector(&self) -> Option<String> {
        match &self.inner {
            TargetAgents::All => None,
            TargetAgents::Selector { label_selector } => Some(label_selector.clone()),
        }
    }

    /// The object as on the wire.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py_json(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        repr_of("TargetAgents", &self.inner)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyTargetAgents>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
}

impl ToPy for TargetAgents {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(
            py,
            PyTargetAgents {
                inner: self.clone(),
            },
        )?
        .into_any())
    }
}

model!(
    /// A virtual host (an nginx `server`).
    PyVirtualHost as "VirtualHost" wraps VirtualHost {
        id: id,
        workspace_id: workspace_id,
        name: spec.name,
        server_name: spec.server_name,
        listen_port: spec.listen_port,
        ssl_enabled: spec.ssl_enabled,
        ssl_certificate_id: spec.ssl_certificate_id,
        http2_enabled: spec.http2_enabled,
        http3_enabled: spec.http3_enabled,
        locations: spec.locations,
        custom_directives: spec.custom_directives,
        target_agents: target_agents,
        created_at: created_at,
        updated_at: updated_at,
    }
);

model!(
    /// The nginx text the generator renders for a virtual host.
    PyConfigPreview as "ConfigPreview" wraps ConfigPreview {
        path: path, content: content, nginx_version: nginx_version,
    }
);

model!(
    /// A server of an upstream.
    PyUpstreamServer as "UpstreamServer" wraps UpstreamServer {
        address: address,
        weight: weight,
        backup: backup,
        down: down,
        max_fails: max_fails,
        fail_timeout: fail_timeout,
    }
);

model!(
    /// The health check of an upstream.
    PyHealthCheck as "HealthCheck" wraps HealthCheck {
        enabled: enabled,
        path: path,
        interval: interval,
        timeout: timeout,
        healthy_threshold: healthy_threshold,
        unhealthy_threshold: unhealthy_threshold,
    }
);

model!(
    /// An upstream (a group of backend servers).
    PyUpstream as "Upstream" wraps Upstream {
        id: id,
        workspace_id: workspace_id,
        name: spec.name,
        algorithm: spec.algorithm,
        servers: spec.servers,
        health_check: spec.health_check,
        keepalive_connections: spec.keepalive_connections,
        created_at: created_at,
        updated_at: updated_at,
    }
);

model!(
    /// A TLS certificate (never its private key).
    PyCertificate as "Certificate" wraps Certificate {
        id: id,
        workspace_id: workspace_id,
        domain: domain,
        is_wildcard: is_wildcard,
        provider: provider,
        status: status,
        issued_at: issued_at,
        expires_at: expires_at,
        auto_renew: auto_renew,
        last_error: last_error,
        created_at: created_at,
    }
);

model!(
    /// A user.
    PyUser as "User" wraps User {
        id: id, email: email, name: name, is_admin: is_admin, created_at: created_at,
    }
);

model!(
    /// A member of an organization with a role.
    PyMember as "Member" wraps Member {
        user_id: user_id, email: email, name: name, role: role, created_at: created_at,
    }
);

model!(
    /// An API token (without its secret).
    PyApiToken as "ApiToken" wraps ApiToken {
        id: id, name: name, scopes: scopes, created_at: created_at, expires_at: expires_at,
    }
);

model!(
    /// A new API token with its secret `token`, shown once.
    PyApiTokenCreated as "ApiTokenCreated" wraps ApiTokenCreated {
        token: token,
        id: api_token.id,
        name: api_token.name,
        scopes: api_token.scopes,
        created_at: api_token.created_at,
        expires_at: api_token.expires_at,
    }
);

model!(
    /// An entry of an organization's audit log.
    PyAuditEntry as "AuditEntry" wraps AuditEntry {
        id: id,
        organization_id: organization_id,
        actor_id: actor_id,
        actor: actor,
        action: action,
        target_type: target_type,
        target_id: target_id,
        created_at: created_at,
    }
);

model!(
    /// Agents in sync, pending and failed in a workspace.
    PyRolloutSummary as "RolloutSummary" wraps RolloutSummary {
        total: total, in_sync: in_sync, pending: pending, failed: failed,
    }
);

model!(
    /// The rollout status of a workspace: the summary and every agent's row.
    PyRolloutStatus as "RolloutStatus" wraps RolloutStatus { summary: summary, agents: agents }
);

model!(
    /// Bytes in and out.
    PyBandwidth as "Bandwidth" wraps Bandwidth { in_bytes: in_bytes, out_bytes: out_bytes }
);

model!(
    /// A metrics summary over a time window; `status_codes` maps `"2xx"`… to counts.
    PyMetricsSummary as "MetricsSummary" wraps MetricsSummary {
        requests_total: requests_total,
        requests_per_second: requests_per_second,
        error_rate: error_rate,
        active_connections: active_connections,
        bandwidth: bandwidth,
        status_codes: status_codes,
    }
);

model!(
    /// One access-log line an agent reported.
    PyAccessLogEntry as "AccessLogEntry" wraps AccessLogEntry {
        id: id,
        agent_id: agent_id,
        timestamp: timestamp,
        remote_addr: remote_addr,
        method: method,
        uri: uri,
        protocol: protocol,
        host: host,
        status: status,
        body_bytes_sent: body_bytes_sent,
        response_time_ms: response_time_ms,
        user_agent: user_agent,
        referer: referer,
        request_id: request_id,
    }
);

model!(
    /// Access-log entries matching a query: `data`, and `total` matches of which at most `limit` are returned.
    PyAccessLogPage as "AccessLogPage" wraps AccessLogPage {
        data: data, total: meta.total, limit: meta.limit,
    }
);

model!(
    /// Where a page sits in the whole list.
    PyPageMeta as "PageMeta" wraps PageMeta { page: page, per_page: per_page, total: total }
);

model!(
    /// A finding of the security linter.
    PyLintFinding as "LintFinding" wraps Finding {
        id: id, severity: severity, message: message, file: file, line: line,
    }
);

/// An event of the WebSocket feed: `type` (`agent.connected`, …),
/// `timestamp`, `data` (the event's fields as a dict) and `agent_id`.
#[pyclass(frozen, name = "Event", module = "nxmesh")]
pub(crate) struct PyEvent {
    inner: Event,
}

impl From<Event> for PyEvent {
    fn from(inner: Event) -> Self {
        PyEvent { inner }
    }
}

#[pymethods]
impl PyEvent {
    #[getter(r#type)]
    fn kind(&self) -> &'static str {
        self.inner.event_type()
    }

    #[getter]
    fn timestamp(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.inner.timestamp.to_py(py)
    }

    #[getter]
    fn agent_id(&self) -> Option<String> {
        self.inner.payload.agent_id().map(|id| id.to_string())
    }

    #[getter]
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let json = serde_json::to_value(&self.inner.payload)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        json_to_py(py, json.get("data").unwrap_or(&Value::Null))
    }

    /// The event as on the wire.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py_json(py, &self.inner)
    }

    fn __repr__(&self) -> String {
        repr_of("Event", &self.inner)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyEvent>().is_ok_and(|o| {
            serde_json::to_value(&o.get().inner).ok() == serde_json::to_value(&self.inner).ok()
        })
    }
}

/// One page of a list: `data` (the items) and `meta`; iterable and sized.
#[pyclass(frozen, name = "Page", module = "nxmesh")]
pub(crate) struct PyPage {
    data: Vec<Py<PyAny>>,
    meta: PageMeta,
}

impl PyPage {
    /// A page of core items, converted.
    pub(crate) fn new<T: ToPy>(
        py: Python<'_>,
        page: nxmesh_core::pagination::Page<T>,
    ) -> PyResult<Self> {
        let data = page
            .data
            .iter()
            .map(|item| item.to_py(py))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyPage {
            data,
            meta: page.meta,
        })
    }
}

#[pymethods]
impl PyPage {
    #[getter]
    fn data(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        self.data.iter().map(|o| o.clone_ref(py)).collect()
    }

    #[getter]
    fn meta(&self) -> PyPageMeta {
        PyPageMeta::from(self.meta)
    }

    /// The page as on the wire.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let dict = PyDict::new(py);
        let items = pyo3::types::PyList::empty(py);
        for item in &self.data {
            items.append(item.bind(py).call_method0("to_dict")?)?;
        }
        dict.set_item("data", items)?;
        dict.set_item("meta", to_py_json(py, &self.meta)?)?;
        Ok(dict.into_any().unbind())
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = pyo3::types::PyList::new(py, self.data.iter().map(|o| o.clone_ref(py)))?;
        Ok(list.try_iter()?.into_any().unbind())
    }

    fn __repr__(&self) -> String {
        format!(
            "Page(page={}, per_page={}, total={}, items={})",
            self.meta.page,
            self.meta.per_page,
            self.meta.total,
            self.data.len()
        )
    }
}

/// A rendered nginx configuration tree: `files` maps each path (relative to
/// the directory of `nginx.conf`) to its bytes; `checksum` is the SHA-256
/// the agent reports.
#[pyclass(frozen, name = "RenderedConfig", module = "nxmesh")]
pub(crate) struct PyRenderedConfig {
    pub(crate) inner: nxmesh_core::generator::Rendered,
}

#[pymethods]
impl PyRenderedConfig {
    #[getter]
    fn files(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let dict = PyDict::new(py);
        for f in &self.inner.files {
            dict.set_item(&f.path, PyBytes::new(py, &f.bytes))?;
        }
        Ok(dict.into_any().unbind())
    }

    #[getter]
    fn checksum(&self) -> String {
        self.inner.checksum.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "RenderedConfig(files={}, checksum={})",
            self.inner.files.len(),
            self.inner.checksum
        )
    }
}

/// Adds every model class to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFieldError>()?;
    m.add_class::<PyOrganization>()?;
    m.add_class::<PyWorkspace>()?;
    m.add_class::<PyAgentHealth>()?;
    m.add_class::<PyAgent>()?;
    m.add_class::<PyRegistrationToken>()?;
    m.add_class::<PyReloadResponse>()?;
    m.add_class::<PyCommandResponse>()?;
    m.add_class::<PyAgentConfigState>()?;
    m.add_class::<PyAgentWithConfig>()?;
    m.add_class::<PyHeader>()?;
    m.add_class::<PyRewriteRule>()?;
    m.add_class::<PyLocation>()?;
    m.add_class::<PyTargetAgents>()?;
    m.add_class::<PyVirtualHost>()?;
    m.add_class::<PyConfigPreview>()?;
    m.add_class::<PyUpstreamServer>()?;
    m.add_class::<PyHealthCheck>()?;
    m.add_class::<PyUpstream>()?;
    m.add_class::<PyCertificate>()?;
    m.add_class::<PyUser>()?;
    m.add_class::<PyMember>()?;
    m.add_class::<PyApiToken>()?;
    m.add_class::<PyApiTokenCreated>()?;
    m.add_class::<PyAuditEntry>()?;
    m.add_class::<PyRolloutSummary>()?;
    m.add_class::<PyRolloutStatus>()?;
    m.add_class::<PyBandwidth>()?;
    m.add_class::<PyMetricsSummary>()?;
    m.add_class::<PyAccessLogEntry>()?;
    m.add_class::<PyAccessLogPage>()?;
    m.add_class::<PyPageMeta>()?;
    m.add_class::<PyLintFinding>()?;
    m.add_class::<PyEvent>()?;
    m.add_class::<PyPage>()?;
    m.add_class::<PyRenderedConfig>()?;
    Ok(())
}
