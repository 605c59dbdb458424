//! [`MemoryStore`]: every storage trait of `nxmesh-core`, in memory.
//!
//! It shows what a storage backend must do — the same semantics as the
//! sea-orm reference, checked by the same conformance suite — with none of
//! a database's machinery. All data sits behind one [`Mutex`]: every
//! method takes the lock once and never holds it across an `.await`, so
//! each call is atomic (a registration token is consumed once, a refresh
//! token is used once, a cascade is all or nothing). Tables are vectors in
//! creation order, which is the order lists are returned in; lookups scan,
//! which is fine for examples and tests and nothing bigger. Nothing
//! survives the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::Utc;
use nxmesh_conformance::metric_names;
use nxmesh_core::config::{ConfigApplyStatus, ConfigStatus};
use nxmesh_core::error::{FieldErrorCode, ValidationErrors};
use nxmesh_core::ledger::AgentConfigState;
use nxmesh_core::model::{
    AccessLogEntry, AccessLogMeta, AccessLogPage, AccessLogQuery, Agent, AgentHealth, AgentState,
    ApiToken, AuditEntry, Certificate, CreateOrganization, CreateWorkspace, Member, MetricsQuery,
    MetricsSummary, Organization, Role, StatusCodeCounts, TargetAgents, Timestamp, UpdateAgent,
    UpdateOrganization, UpdateWorkspace, Upstream, UpstreamSpec, User, VirtualHost,
    VirtualHostSpec, Workspace,
};
use nxmesh_core::pagination::{Page, PageParams};
use nxmesh_core::protocol::{Metric, MetricsBatch};
use nxmesh_core::storage::{
    AgentFilter, AgentIdentity, AgentStore, AuditStore, CertificateStore, LedgerStore, NewAgent,
    NewApiToken, NewCertificate, NewUser, OrganizationStore, RefreshUse, SessionStore,
    StorageError, StorageResult, TelemetryStore, UpstreamStore, UserStore, VirtualHostStore,
    WorkspaceStore,
};
use uuid::Uuid;

/// Every storage trait of `nxmesh-core`, in memory; see the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The tables, locked. A poisoned lock means a panic in the middle of
    /// a change, so the data may be inconsistent: refuse to go on.
    fn tables(&self) -> StorageResult<MutexGuard<'_, Tables>> {
        self.tables
            .lock()
            .map_err(|_| StorageError::Backend("the memory store's lock is poisoned".into()))
    }
}

#[derive(Debug)]
struct AgentRow {
    agent: Agent,
    token_hash: Option<String>,
    token_expires_at: Timestamp,
    credential_hash: Option<String>,
}

#[derive(Debug)]
struct CertificateRow {
    certificate: Certificate,
    pem: Option<String>,
    encrypted_key: Option<Vec<u8>>,
}

#[derive(Debug)]
struct UserRow {
    user: User,
    password_hash: String,
}

#[derive(Debug)]
struct MemberRow {
    organization_id: Uuid,
    user_id: Uuid,
    role: Role,
    created_at: Timestamp,
}

#[derive(Debug)]
struct RefreshRow {
    token_hash: String,
    user_id: Uuid,
    family_id: Uuid,
    used: bool,
    revoked: bool,
    expires_at: Timestamp,
}

#[derive(Debug)]
struct ApiTokenRow {
    token: ApiToken,
    user_id: Uuid,
    token_hash: String,
}

#[derive(Debug)]
struct MetricRow {
    workspace_id: Uuid,
    agent_id: Uuid,
    metric: Metric,
}

#[derive(Debug)]
struct AccessLogRow {
    workspace_id: Uuid,
    entry: AccessLogEntry,
}

/// Every table, in creation order.
#[derive(Debug, Default)]
struct Tables {
    organizations: Vec<Organization>,
    workspaces: Vec<Workspace>,
    agents: Vec<AgentRow>,
    virtual_hosts: Vec<VirtualHost>,
    upstreams: Vec<Upstream>,
    certificates: Vec<CertificateRow>,
    metrics: Vec<MetricRow>,
    access_logs: Vec<AccessLogRow>,
    users: Vec<UserRow>,
    members: Vec<MemberRow>,
    refresh_tokens: Vec<RefreshRow>,
    api_tokens: Vec<ApiTokenRow>,
    audit: Vec<AuditEntry>,
    ledger: BTreeMap<Uuid, AgentConfigState>,
}

impl Tables {
    fn has_organization(&self, id: Uuid) -> bool {
        self.organizations.iter().any(|o| o.id == id)
    }

    fn workspace(&self, id: Uuid) -> Option<&Workspace> {
        self.workspaces.iter().find(|w| w.id == id)
    }

    fn agent(&self, id: Uuid) -> Option<&AgentRow> {
        self.agents.iter().find(|a| a.agent.id == id)
    }

    fn agent_mut(&mut self, id: Uuid) -> StorageResult<&mut AgentRow> {
        self.agents
            .iter_mut()
            .find(|a| a.agent.id == id)
            .ok_or(not_found("agent"))
    }

    /// Removes a workspace and everything in it.
    fn delete_workspace(&mut self, id: Uuid) {
        self.workspaces.retain(|w| w.id != id);
        let agents = &self.agents;
        self.ledger.retain(|agent_id, _| {
            agents
                .iter()
                .any(|a| a.agent.id == *agent_id && a.agent.workspace_id != id)
        });
        self.agents.retain(|a| a.agent.workspace_id != id);
        self.virtual_hosts.retain(|v| v.workspace_id != id);
        self.upstreams.retain(|u| u.workspace_id != id);
        self.certificates
            .retain(|c| c.certificate.workspace_id != id);
        self.metrics.retain(|m| m.workspace_id != id);
        self.access_logs.retain(|l| l.workspace_id != id);
    }

    /// Whether a virtual host of `workspace_id` satisfies `uses`.
    fn vhost_uses(&self, workspace_id: Uuid, uses: impl Fn(&VirtualHostSpec) -> bool) -> bool {
        self.virtual_hosts
            .iter()
            .any(|v| v.workspace_id == workspace_id && uses(&v.spec))
    }
}

fn not_found(what: &'static str) -> StorageError {
    StorageError::NotFound { what }
}

fn conflict(what: &str) -> StorageError {
    StorageError::Conflict {
        what: what.to_owned(),
    }
}

/// One page of `items` (already in list order), with the total.
fn paginate<T: Clone>(items: impl Iterator<Item = T>, page: PageParams) -> Page<T> {
    let all: Vec<T> = items.collect();
    let total = all.len() as u64;
    let data = all
        .into_iter()
        .skip(usize::try_from(page.offset()).unwrap_or(usize::MAX))
        .take(page.per_page as usize)
        .collect();
    Page {
        data,
        meta: page.meta(total),
    }
}

// ---- organizations and workspaces ----

#[async_trait]
impl OrganizationStore for MemoryStore {
    async fn create_organization(&self, new: &CreateOrganization) -> StorageResult<Organization> {
        let mut t = self.tables()?;
        if t.organizations.iter().any(|o| o.slug == new.slug) {
            return Err(conflict("an organization with this slug already exists"));
        }
        let now = Utc::now();
        let o = Organization {
            id: Uuid::new_v4(),
            name: new.name.clone(),
            slug: new.slug.clone(),
            created_at: now,
            updated_at: now,
        };
        t.organizations.push(o.clone());
        Ok(o)
    }

    async fn get_organization(&self, id: Uuid) -> StorageResult<Option<Organization>> {
        let t = self.tables()?;
        Ok(t.organizations.iter().find(|o| o.id == id).cloned())
    }

    async fn list_organizations(
        &self,
        ids: &[Uuid],
        page: PageParams,
    ) -> StorageResult<Page<Organization>> {
        let t = self.tables()?;
        Ok(paginate(
            t.organizations
                .iter()
                .filter(|o| ids.contains(&o.id))
                .cloned(),
            page,
        ))
    }

    async fn update_organization(
        &self,
        id: Uuid,
        update: &UpdateOrganization,
    ) -> StorageResult<Organization> {
        let UpdateOrganization { name, slug } = update;
        let mut t = self.tables()?;
        if let Some(s) = slug
            && t.organizations.iter().any(|o| o.id != id && &o.slug == s)
        {
            return Err(conflict("an organization with this slug already exists"));
        }
        let o = t
            .organizations
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or(not_found("organization"))?;
        if let Some(v) = name {
            o.name.clone_from(v);
        }
        if let Some(v) = slug {
            o.slug.clone_from(v);
        }
        o.updated_at = Utc::now();
        Ok(o.clone())
    }

    async fn delete_organization(&self, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        if !t.has_organization(id) {
            return Err(not_found("organization"));
        }
        let workspaces: Vec<Uuid> = t
            .workspaces
            .iter()
            .filter(|w| w.organization_id == id)
            .map(|w| w.id)
            .collect();
        for w in workspaces {
            t.delete_workspace(w);
        }
        t.members.retain(|m| m.organization_id != id);
        t.audit.retain(|a| a.organization_id != id);
        t.organizations.retain(|o| o.id != id);
        Ok(())
    }
}

#[async_trait]
impl WorkspaceStore for MemoryStore {
    async fn create_workspace(
        &self,
        organization_id: Uuid,
        new: &CreateWorkspace,
    ) -> StorageResult<Workspace> {
        let mut t = self.tables()?;
        if !t.has_organization(organization_id) {
            return Err(not_found("organization"));
        }
        if t.workspaces
            .iter()
            .any(|w| w.organization_id == organization_id && w.slug == new.slug)
        {
            return Err(conflict("a workspace with this slug already exists"));
        }
        let w = Workspace {
            id: Uuid::new_v4(),
            organization_id,
            name: new.name.clone(),
            slug: new.slug.clone(),
            created_at: Utc::now(),
        };
        t.workspaces.push(w.clone());
        Ok(w)
    }

    async fn get_workspace(&self, id: Uuid) -> StorageResult<Option<Workspace>> {
        Ok(self.tables()?.workspace(id).cloned())
    }

    async fn list_workspaces(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Workspace>> {
        let t = self.tables()?;
        Ok(paginate(
            t.workspaces
                .iter()
                .filter(|w| w.organization_id == organization_id)
                .cloned(),
            page,
        ))
    }

    async fn update_workspace(
        &self,
        id: Uuid,
        update: &UpdateWorkspace,
    ) -> StorageResult<Workspace> {
        let UpdateWorkspace { name, slug } = update;
        let mut t = self.tables()?;
        let org = t
            .workspace(id)
            .ok_or(not_found("workspace"))?
            .organization_id;
        if let Some(s) = slug
            && t.workspaces
                .iter()
                .any(|w| w.id != id && w.organization_id == org && &w.slug == s)
        {
            return Err(conflict("a workspace with this slug already exists"));
        }
        let w = t
            .workspaces
            .iter_mut()
            .find(|w| w.id == id)
            .ok_or(not_found("workspace"))?;
        if let Some(v) = name {
            w.name.clone_from(v);
        }
        if let Some(v) = slug {
            w.slug.clone_from(v);
        }
        Ok(w.clone())
    }

    async fn delete_workspace(&self, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        if t.workspace(id).is_none() {
            return Err(not_found("workspace"));
        }
        t.delete_workspace(id);
        Ok(())
    }
}

// ---- agents ----

#[async_trait]
impl AgentStore for MemoryStore {
    async fn create_agent(&self, new: &NewAgent) -> StorageResult<Agent> {
        let mut t = self.tables()?;
        if t.workspace(new.workspace_id).is_none() {
            return Err(not_found("workspace"));
        }
        if t.agents
            .iter()
            .any(|a| a.token_hash.as_deref() == Some(new.token_hash.as_str()))
        {
            return Err(conflict("an agent with this token already exists"));
        }
        let agent = Agent {
            id: Uuid::new_v4(),
            workspace_id: new.workspace_id,
            name: new.name.clone(),
            hostname: None,
            ip_address: None,
            version: None,
            state: AgentState::Offline,
            deployment_mode: None,
            last_seen_at: None,
            capabilities: Vec::new(),
            labels: new.labels.clone(),
            health: None,
            created_at: Utc::now(),
        };
        t.agents.push(AgentRow {
            agent: agent.clone(),
            token_hash: Some(new.token_hash.clone()),
            token_expires_at: new.token_expires_at,
            credential_hash: None,
        });
        Ok(agent)
    }

    async fn get_agent(&self, id: Uuid) -> StorageResult<Option<Agent>> {
        Ok(self.tables()?.agent(id).map(|a| a.agent.clone()))
    }

    async fn list_agents(
        &self,
        workspace_id: Uuid,
        filter: &AgentFilter,
        page: PageParams,
    ) -> StorageResult<Page<Agent>> {
        let t = self.tables()?;
        Ok(paginate(
            t.agents
                .iter()
                .map(|a| &a.agent)
                .filter(|a| a.workspace_id == workspace_id)
                .filter(|a| filter.state.matches(a.state))
                .filter(|a| {
                    filter
                        .selector
                        .as_ref()
                        .is_none_or(|s| s.matches(&a.labels))
                })
                .cloned(),
            page,
        ))
    }

    async fn target_agents(
        &self,
        workspace_id: Uuid,
        target: &TargetAgents,
    ) -> StorageResult<Vec<Uuid>> {
        let selector = target.selector().map_err(|e| {
            let mut v = ValidationErrors::default();
            v.push(
                "target_agents.label_selector",
                FieldErrorCode::InvalidFormat,
                e.to_string(),
            );
            StorageError::Invalid(v)
        })?;
        let t = self.tables()?;
        Ok(t.agents
            .iter()
            .map(|a| &a.agent)
            .filter(|a| a.workspace_id == workspace_id)
            .filter(|a| selector.as_ref().is_none_or(|s| s.matches(&a.labels)))
            .map(|a| a.id)
            .collect())
    }

    async fn update_agent(&self, id: Uuid, update: &UpdateAgent) -> StorageResult<Agent> {
        let UpdateAgent { name, labels } = update;
        let mut t = self.tables()?;
        let a = &mut t.agent_mut(id)?.agent;
        if let Some(v) = name {
            a.name.clone_from(v);
        }
        if let Some(v) = labels {
            a.labels.clone_from(v);
        }
        Ok(a.clone())
    }

    async fn delete_agent(&self, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        if t.agent(id).is_none() {
            return Err(not_found("agent"));
        }
        // The credential goes with the row; so does the agent's telemetry.
        t.agents.retain(|a| a.agent.id != id);
        t.ledger.remove(&id);
        t.metrics.retain(|m| m.agent_id != id);
        t.access_logs.retain(|l| l.entry.agent_id != id);
        Ok(())
    }

    async fn register_agent(
        &self,
        token_hash: &str,
        now: Timestamp,
        identity: &AgentIdentity,
        credential_hash: &str,
    ) -> StorageResult<Agent> {
        let AgentIdentity {
            hostname,
            ip_address,
            version,
            capabilities,
            deployment_mode,
        } = identity;
        let mut t = self.tables()?;
        if t.agents
            .iter()
            .any(|a| a.credential_hash.as_deref() == Some(credential_hash))
        {
            return Err(conflict("an agent with this credential already exists"));
        }
        let row = t
            .agents
            .iter_mut()
            .find(|a| a.token_hash.as_deref() == Some(token_hash) && a.token_expires_at > now)
            .ok_or(not_found("registration token"))?;
        row.token_hash = None;
        row.credential_hash = Some(credential_hash.to_owned());
        let a = &mut row.agent;
        a.hostname = Some(hostname.clone());
        a.ip_address = Some(ip_address.clone());
        a.version = Some(version.clone());
        a.capabilities.clone_from(capabilities);
        a.deployment_mode = Some(*deployment_mode);
        Ok(a.clone())
    }

    async fn agent_by_credential(&self, credential_hash: &str) -> StorageResult<Option<Agent>> {
        let t = self.tables()?;
        Ok(t.agents
            .iter()
            .find(|a| a.credential_hash.as_deref() == Some(credential_hash))
            .map(|a| a.agent.clone()))
    }

    async fn record_agent_state(
        &self,
        id: Uuid,
        state: AgentState,
        seen_at: Timestamp,
        health: Option<&AgentHealth>,
    ) -> StorageResult<()> {
        let mut t = self.tables()?;
        let a = &mut t.agent_mut(id)?.agent;
        a.state = state;
        a.last_seen_at = Some(seen_at);
        if let Some(h) = health {
            a.health = Some(h.clone());
        }
        Ok(())
    }
}

// ---- virtual hosts, upstreams, certificates ----

#[async_trait]
impl VirtualHostStore for MemoryStore {
    async fn create_virtual_host(
        &self,
        workspace_id: Uuid,
        spec: &VirtualHostSpec,
        target: &TargetAgents,
    ) -> StorageResult<VirtualHost> {
        let mut t = self.tables()?;
        if t.workspace(workspace_id).is_none() {
            return Err(not_found("workspace"));
        }
        if t.virtual_hosts
            .iter()
            .any(|v| v.workspace_id == workspace_id && v.spec.name == spec.name)
        {
            return Err(conflict("a virtual host with this name already exists"));
        }
        let now = Utc::now();
        let v = VirtualHost {
            id: Uuid::new_v4(),
            workspace_id,
            spec: spec.clone(),
            target_agents: target.clone(),
            created_at: now,
            updated_at: now,
        };
        t.virtual_hosts.push(v.clone());
        Ok(v)
    }

    async fn get_virtual_host(&self, id: Uuid) -> StorageResult<Option<VirtualHost>> {
        let t = self.tables()?;
        Ok(t.virtual_hosts.iter().find(|v| v.id == id).cloned())
    }

    async fn list_virtual_hosts(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<VirtualHost>> {
        let t = self.tables()?;
        Ok(paginate(
            t.virtual_hosts
                .iter()
                .filter(|v| v.workspace_id == workspace_id)
                .cloned(),
            page,
        ))
    }

    async fn update_virtual_host(
        &self,
        id: Uuid,
        spec: &VirtualHostSpec,
        target: &TargetAgents,
    ) -> StorageResult<VirtualHost> {
        let mut t = self.tables()?;
        let ws = t
            .virtual_hosts
            .iter()
            .find(|v| v.id == id)
            .ok_or(not_found("virtual host"))?
            .workspace_id;
        if t.virtual_hosts
            .iter()
            .any(|v| v.id != id && v.workspace_id == ws && v.spec.name == spec.name)
        {
            return Err(conflict("a virtual host with this name already exists"));
        }
        let v = t
            .virtual_hosts
            .iter_mut()
            .find(|v| v.id == id)
            .ok_or(not_found("virtual host"))?;
        v.spec = spec.clone();
        v.target_agents = target.clone();
        v.updated_at = Utc::now();
        Ok(v.clone())
    }

    async fn delete_virtual_host(&self, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        let before = t.virtual_hosts.len();
        t.virtual_hosts.retain(|v| v.id != id);
        if t.virtual_hosts.len() == before {
            return Err(not_found("virtual host"));
        }
        Ok(())
    }
}

#[async_trait]
impl UpstreamStore for MemoryStore {
    async fn create_upstream(
        &self,
        workspace_id: Uuid,
        spec: &UpstreamSpec,
    ) -> StorageResult<Upstream> {
        let mut t = self.tables()?;
        if t.workspace(workspace_id).is_none() {
            return Err(not_found("workspace"));
        }
        if t.upstreams
            .iter()
            .any(|u| u.workspace_id == workspace_id && u.spec.name == spec.name)
        {
            return Err(conflict("an upstream with this name already exists"));
        }
        let now = Utc::now();
        let u = Upstream {
            id: Uuid::new_v4(),
            workspace_id,
            spec: spec.clone(),
            created_at: now,
            updated_at: now,
        };
        t.upstreams.push(u.clone());
        Ok(u)
    }

    async fn get_upstream(&self, id: Uuid) -> StorageResult<Option<Upstream>> {
        let t = self.tables()?;
        Ok(t.upstreams.iter().find(|u| u.id == id).cloned())
    }

    async fn list_upstreams(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Upstream>> {
        let t = self.tables()?;
        Ok(paginate(
            t.upstreams
                .iter()
                .filter(|u| u.workspace_id == workspace_id)
                .cloned(),
            page,
        ))
    }

    async fn update_upstream(&self, id: Uuid, spec: &UpstreamSpec) -> StorageResult<Upstream> {
        let mut t = self.tables()?;
        let ws = t
            .upstreams
            .iter()
            .find(|u| u.id == id)
            .ok_or(not_found("upstream"))?
            .workspace_id;
        if t.upstreams
            .iter()
            .any(|u| u.id != id && u.workspace_id == ws && u.spec.name == spec.name)
        {
            return Err(conflict("an upstream with this name already exists"));
        }
        let u = t
            .upstreams
            .iter_mut()
            .find(|u| u.id == id)
            .ok_or(not_found("upstream"))?;
        u.spec = spec.clone();
        u.updated_at = Utc::now();
        Ok(u.clone())
    }

    async fn delete_upstream(&self, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        let ws = t
            .upstreams
            .iter()
            .find(|u| u.id == id)
            .ok_or(not_found("upstream"))?
            .workspace_id;
        if t.vhost_uses(ws, |s| {
            s.locations.iter().any(|l| l.upstream_id == Some(id))
        }) {
            return Err(conflict("the upstream is used by a virtual host"));
        }
        t.upstreams.retain(|u| u.id != id);
        Ok(())
    }
}

#[async_trait]
impl CertificateStore for MemoryStore {
    async fn create_certificate(&self, new: &NewCertificate) -> StorageResult<Certificate> {
        let mut t = self.tables()?;
        if t.workspace(new.workspace_id).is_none() {
            return Err(not_found("workspace"));
        }
        let certificate = Certificate {
            id: Uuid::new_v4(),
            workspace_id: new.workspace_id,
            domain: new.domain.clone(),
            is_wildcard: new.is_wildcard,
            provider: new.provider,
            status: new.status,
            issued_at: new.issued_at,
            expires_at: new.expires_at,
            auto_renew: new.auto_renew,
            last_error: None,
            created_at: Utc::now(),
        };
        t.certificates.push(CertificateRow {
            certificate: certificate.clone(),
            pem: new.certificate_pem.clone(),
            encrypted_key: new.encrypted_private_key.clone(),
        });
        Ok(certificate)
    }

    async fn get_certificate(&self, id: Uuid) -> StorageResult<Option<Certificate>> {
        let t = self.tables()?;
        Ok(t.certificates
            .iter()
            .find(|c| c.certificate.id == id)
            .map(|c| c.certificate.clone()))
    }

    async fn list_certificates(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Certificate>> {
        let t = self.tables()?;
        Ok(paginate(
            t.certificates
                .iter()
                .map(|c| &c.certificate)
                .filter(|c| c.workspace_id == workspace_id)
                .cloned(),
            page,
        ))
    }

    async fn certificate_material(&self, id: Uuid) -> StorageResult<Option<(String, Vec<u8>)>> {
        let t = self.tables()?;
        Ok(t.certificates
            .iter()
            .find(|c| c.certificate.id == id)
            .and_then(|c| Some((c.pem.clone()?, c.encrypted_key.clone()?))))
    }

    async fn delete_certificate(&self, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        let ws = t
            .certificates
            .iter()
            .find(|c| c.certificate.id == id)
            .ok_or(not_found("certificate"))?
            .certificate
            .workspace_id;
        if t.vhost_uses(ws, |s| s.ssl_certificate_id == Some(id)) {
            return Err(conflict("the certificate is used by a virtual host"));
        }
        t.certificates.retain(|c| c.certificate.id != id);
        Ok(())
    }
}

// ---- telemetry ----

#[async_trait]
impl TelemetryStore for MemoryStore {
    async fn insert_metrics(&self, agent_id: Uuid, batch: &MetricsBatch) -> StorageResult<()> {
        let mut t = self.tables()?;
        let workspace_id = t
            .agent(agent_id)
            .ok_or(not_found("agent"))?
            .agent
            .workspace_id;
        t.metrics.extend(batch.metrics.iter().map(|m| MetricRow {
            workspace_id,
            agent_id,
            metric: m.clone(),
        }));
        Ok(())
    }

    async fn metrics_summary(
        &self,
        workspace_id: Uuid,
        agent_id: Option<Uuid>,
        query: &MetricsQuery,
    ) -> StorageResult<MetricsSummary> {
        let t = self.tables()?;
        let mut rows: Vec<&MetricRow> = t
            .metrics
            .iter()
            .filter(|r| r.workspace_id == workspace_id)
            .filter(|r| agent_id.is_none_or(|a| r.agent_id == a))
            .filter(|r| r.metric.timestamp >= query.from && r.metric.timestamp < query.to)
            .collect();
        // Stable: samples with equal timestamps keep their arrival order.
        rows.sort_by_key(|r| r.metric.timestamp);
        Ok(summarize(&rows, query))
    }

    async fn insert_access_logs(&self, entries: &[AccessLogEntry]) -> StorageResult<()> {
        let mut t = self.tables()?;
        // Check everything first, so that a refused batch stores nothing.
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            let workspace_id = t
                .agent(e.agent_id)
                .ok_or(not_found("agent"))?
                .agent
                .workspace_id;
            if t.access_logs.iter().any(|l| l.entry.id == e.id)
                || entries.iter().filter(|o| o.id == e.id).count() > 1
            {
                return Err(conflict("access-log entry already exists"));
            }
            rows.push(AccessLogRow {
                workspace_id,
                entry: e.clone(),
            });
        }
        t.access_logs.extend(rows);
        Ok(())
    }

    async fn query_access_logs(
        &self,
        workspace_id: Uuid,
        query: &AccessLogQuery,
    ) -> StorageResult<AccessLogPage> {
        let t = self.tables()?;
        let mut matching: Vec<&AccessLogEntry> = t
            .access_logs
            .iter()
            .filter(|l| l.workspace_id == workspace_id)
            .map(|l| &l.entry)
            .filter(|e| query.from.is_none_or(|f| e.timestamp >= f))
            .filter(|e| query.to.is_none_or(|to| e.timestamp < to))
            .filter(|e| query.status_code.is_none_or(|s| e.status == s))
            .collect();
        // Newest first; the id breaks ties so that the order is total.
        matching.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(b.id.cmp(&a.id)));
        let limit = query.limit.unwrap_or(100);
        Ok(AccessLogPage {
            meta: AccessLogMeta {
                total: matching.len() as u64,
                limit,
            },
            data: matching.into_iter().take(limit as usize).cloned().collect(),
        })
    }
}

/// A counter series: agent, metric name, labels.
type SeriesKey<'a> = (Uuid, &'a str, Vec<(&'a str, &'a str)>);

/// The summary of samples sorted by time. Counters are cumulative per
/// agent and label set: the window's value is their increase, and a drop
/// (nginx restarted) counts from zero. The active-connections gauge is each
/// agent's latest sample, summed over agents.
fn summarize(rows: &[&MetricRow], query: &MetricsQuery) -> MetricsSummary {
    // (agent, name, labels) -> (last value, increase so far)
    let mut series: BTreeMap<SeriesKey<'_>, (f64, f64)> = BTreeMap::new();
    let mut active: BTreeMap<Uuid, f64> = BTreeMap::new();
    for r in rows {
        let m = &r.metric;
        if m.name == metric_names::ACTIVE {
            active.insert(r.agent_id, m.value);
            continue;
        }
        let labels = m
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        series
            .entry((r.agent_id, m.name.as_str(), labels))
            .and_modify(|(last, increase)| {
                *increase += if m.value >= *last {
                    m.value - *last
                } else {
                    m.value
                };
                *last = m.value;
            })
            .or_insert((m.value, 0.0));
    }
    let mut summary = MetricsSummary::default();
    let mut status = StatusCodeCounts::default();
    for ((_, name, labels), (_, increase)) in &series {
        let n = increase.max(0.0).round() as u64;
        match *name {
            metric_names::REQUESTS => summary.requests_total += n,
            metric_names::BYTES_IN => summary.bandwidth.in_bytes += n,
            metric_names::BYTES_OUT => summary.bandwidth.out_bytes += n,
            metric_names::RESPONSES => {
                // `2xx` (a class) or `404` (a code): the class is what counts.
                let code = labels
                    .iter()
                    .find(|(k, _)| *k == "status")
                    .and_then(|(_, v)| v.replace("xx", "00").parse::<u16>().ok());
                if let Some(code) = code {
                    status.record(code, n);
                }
            }
            _ => {}
        }
    }
    summary.status_codes = status;
    summary.active_connections = active.values().map(|v| v.max(0.0).round() as u64).sum();
    let seconds = (query.to - query.from).num_milliseconds() as f64 / 1000.0;
    if seconds > 0.0 {
        summary.requests_per_second = summary.requests_total as f64 / seconds;
    }
    let responses = status.s2xx + status.s3xx + status.s4xx + status.s5xx;
    if responses > 0 {
        summary.error_rate = status.s5xx as f64 / responses as f64;
    }
    summary
}

// ---- users, members, sessions, audit ----

#[async_trait]
impl UserStore for MemoryStore {
    async fn create_user(&self, new: &NewUser) -> StorageResult<User> {
        let mut t = self.tables()?;
        // Emails are unique and matched without regard to case; they are
        // stored lowercased, like the reference store does.
        let email = new.email.to_lowercase();
        if t.users.iter().any(|u| u.user.email == email) {
            return Err(conflict("a user with this email already exists"));
        }
        let user = User {
            id: Uuid::new_v4(),
            email,
            name: new.name.clone(),
            is_admin: new.is_admin,
            created_at: Utc::now(),
        };
        t.users.push(UserRow {
            user: user.clone(),
            password_hash: new.password_hash.clone(),
        });
        Ok(user)
    }

    async fn get_user(&self, id: Uuid) -> StorageResult<Option<User>> {
        let t = self.tables()?;
        Ok(t.users
            .iter()
            .find(|u| u.user.id == id)
            .map(|u| u.user.clone()))
    }

    async fn user_by_email(&self, email: &str) -> StorageResult<Option<(User, String)>> {
        let email = email.to_lowercase();
        let t = self.tables()?;
        Ok(t.users
            .iter()
            .find(|u| u.user.email == email)
            .map(|u| (u.user.clone(), u.password_hash.clone())))
    }

    async fn count_users(&self) -> StorageResult<u64> {
        Ok(self.tables()?.users.len() as u64)
    }

    async fn delete_user(&self, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        let before = t.users.len();
        t.users.retain(|u| u.user.id != id);
        if t.users.len() == before {
            return Err(not_found("user"));
        }
        t.members.retain(|m| m.user_id != id);
        t.refresh_tokens.retain(|r| r.user_id != id);
        t.api_tokens.retain(|a| a.user_id != id);
        Ok(())
    }

    async fn set_member(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
        role: Role,
    ) -> StorageResult<Member> {
        let mut t = self.tables()?;
        let user = t
            .users
            .iter()
            .find(|u| u.user.id == user_id)
            .ok_or(not_found("user"))?
            .user
            .clone();
        if !t.has_organization(organization_id) {
            return Err(not_found("organization"));
        }
        let created_at = match t
            .members
            .iter_mut()
            .find(|m| m.organization_id == organization_id && m.user_id == user_id)
        {
            Some(m) => {
                m.role = role;
                m.created_at
            }
            None => {
                let created_at = Utc::now();
                t.members.push(MemberRow {
                    organization_id,
                    user_id,
                    role,
                    created_at,
                });
                created_at
            }
        };
        Ok(Member {
            user_id,
            email: user.email,
            name: user.name,
            role,
            created_at,
        })
    }

    async fn member_role(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
    ) -> StorageResult<Option<Role>> {
        let t = self.tables()?;
        Ok(t.members
            .iter()
            .find(|m| m.organization_id == organization_id && m.user_id == user_id)
            .map(|m| m.role))
    }

    async fn list_members(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Member>> {
        let t = self.tables()?;
        let mut members = Vec::new();
        for m in t
            .members
            .iter()
            .filter(|m| m.organization_id == organization_id)
        {
            let u = &t
                .users
                .iter()
                .find(|u| u.user.id == m.user_id)
                .ok_or(not_found("user"))?
                .user;
            members.push(Member {
                user_id: m.user_id,
                email: u.email.clone(),
                name: u.name.clone(),
                role: m.role,
                created_at: m.created_at,
            });
        }
        Ok(paginate(members.into_iter(), page))
    }

    async fn remove_member(&self, organization_id: Uuid, user_id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        let before = t.members.len();
        t.members
            .retain(|m| !(m.organization_id == organization_id && m.user_id == user_id));
        if t.members.len() == before {
            return Err(not_found("member"));
        }
        Ok(())
    }

    async fn memberships(&self, user_id: Uuid) -> StorageResult<Vec<(Uuid, Role)>> {
        let t = self.tables()?;
        Ok(t.members
            .iter()
            .filter(|m| m.user_id == user_id)
            .map(|m| (m.organization_id, m.role))
            .collect())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn insert_refresh_token(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> StorageResult<()> {
        let mut t = self.tables()?;
        if !t.users.iter().any(|u| u.user.id == user_id) {
            return Err(not_found("user"));
        }
        if t.refresh_tokens.iter().any(|r| r.token_hash == token_hash) {
            return Err(conflict("refresh token already exists"));
        }
        t.refresh_tokens.push(RefreshRow {
            token_hash: token_hash.to_owned(),
            user_id,
            family_id,
            used: false,
            revoked: false,
            expires_at,
        });
        Ok(())
    }

    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StorageResult<RefreshUse> {
        let mut t = self.tables()?;
        let Some(r) = t
            .refresh_tokens
            .iter_mut()
            .find(|r| r.token_hash == token_hash)
        else {
            return Ok(RefreshUse::Invalid);
        };
        if r.revoked {
            return Ok(RefreshUse::Invalid);
        }
        if r.used {
            let family_id = r.family_id;
            for r in t
                .refresh_tokens
                .iter_mut()
                .filter(|r| r.family_id == family_id)
            {
                r.revoked = true;
            }
            return Ok(RefreshUse::Reused { family_id });
        }
        if r.expires_at <= now {
            return Ok(RefreshUse::Invalid);
        }
        r.used = true;
        Ok(RefreshUse::Valid {
            user_id: r.user_id,
            family_id: r.family_id,
        })
    }

    async fn revoke_refresh_family(&self, family_id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        for r in t
            .refresh_tokens
            .iter_mut()
            .filter(|r| r.family_id == family_id)
        {
            r.revoked = true;
        }
        Ok(())
    }

    async fn refresh_family(&self, token_hash: &str) -> StorageResult<Option<Uuid>> {
        let t = self.tables()?;
        Ok(t.refresh_tokens
            .iter()
            .find(|r| r.token_hash == token_hash)
            .map(|r| r.family_id))
    }

    async fn create_api_token(&self, new: &NewApiToken) -> StorageResult<ApiToken> {
        let mut t = self.tables()?;
        if !t.users.iter().any(|u| u.user.id == new.user_id) {
            return Err(not_found("user"));
        }
        if t.api_tokens.iter().any(|a| a.token_hash == new.token_hash) {
            return Err(conflict("API token already exists"));
        }
        let token = ApiToken {
            id: Uuid::new_v4(),
            name: new.name.clone(),
            scopes: new.scopes.clone(),
            created_at: Utc::now(),
            expires_at: new.expires_at,
        };
        t.api_tokens.push(ApiTokenRow {
            token: token.clone(),
            user_id: new.user_id,
            token_hash: new.token_hash.clone(),
        });
        Ok(token)
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StorageResult<Option<(ApiToken, Uuid)>> {
        let t = self.tables()?;
        Ok(t.api_tokens
            .iter()
            .find(|a| a.token_hash == token_hash)
            .filter(|a| a.token.expires_at.is_none_or(|e| e > now))
            .map(|a| (a.token.clone(), a.user_id)))
    }

    async fn list_api_tokens(&self, user_id: Uuid) -> StorageResult<Vec<ApiToken>> {
        let t = self.tables()?;
        Ok(t.api_tokens
            .iter()
            .filter(|a| a.user_id == user_id)
            .map(|a| a.token.clone())
            .collect())
    }

    async fn revoke_api_token(&self, user_id: Uuid, id: Uuid) -> StorageResult<()> {
        let mut t = self.tables()?;
        let before = t.api_tokens.len();
        t.api_tokens
            .retain(|a| !(a.token.id == id && a.user_id == user_id));
        if t.api_tokens.len() == before {
            return Err(not_found("API token"));
        }
        Ok(())
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn record_audit(&self, entry: &AuditEntry) -> StorageResult<()> {
        let mut t = self.tables()?;
        if !t.has_organization(entry.organization_id) {
            return Err(not_found("organization"));
        }
        if t.audit.iter().any(|a| a.id == entry.id) {
            return Err(conflict("audit entry already exists"));
        }
        t.audit.push(entry.clone());
        Ok(())
    }

    async fn list_audit(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<AuditEntry>> {
        let t = self.tables()?;
        let mut entries: Vec<&AuditEntry> = t
            .audit
            .iter()
            .filter(|a| a.organization_id == organization_id)
            .collect();
        // Newest first; the id breaks ties, as in the reference store.
        entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(paginate(entries.into_iter().cloned(), page))
    }
}

// ---- configuration ledger ----

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn bump_desired_versions(&self, agent_ids: &[Uuid]) -> StorageResult<Vec<(Uuid, i64)>> {
        let mut t = self.tables()?;
        // All or nothing: check every agent before bumping any.
        if agent_ids.iter().any(|id| t.agent(*id).is_none()) {
            return Err(not_found("agent"));
        }
        // Each id once, in the order given.
        let mut seen = std::collections::HashSet::new();
        Ok(agent_ids
            .iter()
            .filter(|id| seen.insert(**id))
            .map(|id| {
                let row = t
                    .ledger
                    .entry(*id)
                    .or_insert_with(|| AgentConfigState::new(*id));
                row.desired_version += 1;
                (*id, row.desired_version)
            })
            .collect())
    }

    async fn record_config_status(
        &self,
        agent_id: Uuid,
        status: &ConfigStatus,
    ) -> StorageResult<AgentConfigState> {
        let mut t = self.tables()?;
        if t.agent(agent_id).is_none() {
            return Err(not_found("agent"));
        }
        let row = t
            .ledger
            .entry(agent_id)
            .or_insert_with(|| AgentConfigState::new(agent_id));
        row.last_status = Some(status.status);
        match status.status {
            // The applied version only moves forward.
            ConfigApplyStatus::Success if status.version >= row.applied_version => {
                row.applied_version = status.version;
                row.applied_at = Some(status.applied_at.unwrap_or_else(Utc::now));
                row.config_checksum.clone_from(&status.config_checksum);
                row.last_error = None;
            }
            ConfigApplyStatus::Failed | ConfigApplyStatus::RolledBack => {
                row.last_error.clone_from(&status.error_message);
            }
            _ => {}
        }
        Ok(row.clone())
    }

    async fn agent_ledger(&self, agent_id: Uuid) -> StorageResult<AgentConfigState> {
        let t = self.tables()?;
        Ok(t.ledger
            .get(&agent_id)
            .cloned()
            .unwrap_or_else(|| AgentConfigState::new(agent_id)))
    }

    async fn workspace_ledger(&self, workspace_id: Uuid) -> StorageResult<Vec<AgentConfigState>> {
        let t = self.tables()?;
        Ok(t.agents
            .iter()
            .filter(|a| a.agent.workspace_id == workspace_id)
            .map(|a| {
                t.ledger
                    .get(&a.agent.id)
                    .cloned()
                    .unwrap_or_else(|| AgentConfigState::new(a.agent.id))
            })
            .collect())
    }
}
