//! Storage traits: what the master persists, one repository per resource.
//!
//! The master keeps *desired* state (organizations, workspaces, virtual
//! hosts, upstreams, certificates, agent labels) apart from *observed* state
//! (what each agent reported: state, health, applied version), and stores
//! telemetry (metrics samples, access-log entries) for the query endpoints.
//! The reference implementation is sea-orm in `nxmesh-server`; an embedder
//! may bring their own by implementing these traits, and must then pass the
//! storage conformance suite.
//!
//! Every method that changes data commits before it returns: a write that
//! returned `Ok` survives a crash. Ids are chosen by the store.

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::ConfigStatus;
use crate::error::ValidationErrors;
use crate::ledger::AgentConfigState;
use crate::model::{
    AccessLogEntry, AccessLogPage, AccessLogQuery, Agent, AgentHealth, AgentState,
    AgentStateFilter, ApiToken, AuditEntry, Certificate, CertificateProvider, CertificateStatus,
    CreateOrganization, CreateWorkspace, Labels, Member, MetricsQuery, MetricsSummary,
    Organization, Role, Scope, TargetAgents, Timestamp, UpdateAgent, UpdateOrganization,
    UpdateWorkspace, Upstream, UpstreamSpec, User, VirtualHost, VirtualHostSpec, Workspace,
};
use crate::pagination::{Page, PageParams};
use crate::protocol::MetricsBatch;
use crate::selector::LabelSelector;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist (or is not visible in this scope).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, for example `workspace`.
        what: &'static str,
    },
    /// A uniqueness rule was broken, for example a duplicate slug.
    #[error("conflict: {what}")]
    Conflict {
        /// Which rule, for example `slug already exists`.
        what: String,
    },
    /// The data was refused by a rule checked at storage time.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// The backend cannot be reached now; the caller may retry.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend failed.
    #[error("storage backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The result of storage operations.
pub type StorageResult<T> = Result<T, StorageError>;

/// Organizations.
#[async_trait]
pub trait OrganizationStore: Send + Sync {
    /// Creates an organization. Fails with `Conflict` on a duplicate slug.
    async fn create_organization(&self, new: &CreateOrganization) -> StorageResult<Organization>;
    /// The organization with `id`.
    async fn get_organization(&self, id: Uuid) -> StorageResult<Option<Organization>>;
    /// Organizations among `ids` (those a principal may see), by creation.
    async fn list_organizations(
        &self,
        ids: &[Uuid],
        page: PageParams,
    ) -> StorageResult<Page<Organization>>;
    /// Changes an organization.
    async fn update_organization(
        &self,
        id: Uuid,
        update: &UpdateOrganization,
    ) -> StorageResult<Organization>;
    /// Deletes an organization and everything in it.
    async fn delete_organization(&self, id: Uuid) -> StorageResult<()>;
}

/// Workspaces.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// Creates a workspace. Fails with `Conflict` on a duplicate slug in
    /// the organization.
    async fn create_workspace(
        &self,
        organization_id: Uuid,
        new: &CreateWorkspace,
    ) -> StorageResult<Workspace>;
    /// The workspace with `id`.
    async fn get_workspace(&self, id: Uuid) -> StorageResult<Option<Workspace>>;
    /// The workspaces of an organization.
    async fn list_workspaces(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Workspace>>;
    /// Changes a workspace.
    async fn update_workspace(
        &self,
        id: Uuid,
        update: &UpdateWorkspace,
    ) -> StorageResult<Workspace>;
    /// Deletes a workspace and everything in it.
    async fn delete_workspace(&self, id: Uuid) -> StorageResult<()>;
}

/// A new agent with its registration token, which the store keeps only as a
/// hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    /// The workspace.
    pub workspace_id: Uuid,
    /// Display name.
    pub name: String,
    /// Labels.
    pub labels: Labels,
    /// Hash of the registration token.
    pub token_hash: String,
    /// When the token expires.
    pub token_expires_at: Timestamp,
}

/// Filters of the agent list.
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    /// By state.
    pub state: AgentStateFilter,
    /// By labels.
    pub selector: Option<LabelSelector>,
}

/// What an agent reported about itself when it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    /// Host name.
    pub hostname: String,
    /// Address.
    pub ip_address: String,
    /// Agent version.
    pub version: String,
    /// nginx features.
    pub capabilities: Vec<String>,
    /// Deployment mode.
    pub deployment_mode: crate::model::DeploymentMode,
}

/// Agents: desired fields (name, labels) and observed ones (identity,
/// state, health).
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Creates an agent that has not registered yet.
    async fn create_agent(&self, new: &NewAgent) -> StorageResult<Agent>;
    /// The agent with `id`, with its latest health.
    async fn get_agent(&self, id: Uuid) -> StorageResult<Option<Agent>>;
    /// The agents among `ids` that exist, in no particular order. Backends
    /// should answer in a few statements: a rollout reads thousands at once.
    async fn get_agents(&self, ids: &[Uuid]) -> StorageResult<Vec<Agent>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(a) = self.get_agent(*id).await? {
                out.push(a);
            }
        }
        Ok(out)
    }
    /// The workspace and labels of the agents among `ids` that exist, in
    /// no particular order: what a rollout reads of thousands of agents to
    /// build their configurations. Backends should read only those columns,
    /// in a few statements.
    async fn agent_labels(&self, ids: &[Uuid]) -> StorageResult<Vec<AgentLabels>> {
        Ok(self
            .get_agents(ids)
            .await?
            .into_iter()
            .map(|a| AgentLabels {
                agent_id: a.id,
                workspace_id: a.workspace_id,
                labels: a.labels,
            })
            .collect())
    }
    /// The agents of a workspace.
    async fn list_agents(
        &self,
        workspace_id: Uuid,
        filter: &AgentFilter,
        page: PageParams,
    ) -> StorageResult<Page<Agent>>;
    /// Every agent of a workspace whose labels match `target`.
    async fn target_agents(
        &self,
        workspace_id: Uuid,
        target: &TargetAgents,
    ) -> StorageResult<Vec<Uuid>>;
    /// Changes name or labels.
    async fn update_agent(&self, id: Uuid, update: &UpdateAgent) -> StorageResult<Agent>;
    /// Deletes an agent and revokes its credential.
    async fn delete_agent(&self, id: Uuid) -> StorageResult<()>;
    /// Consumes a registration token (by hash) that has not expired at
    /// `now`, records the agent's identity and the hash of its new durable
    /// credential, and returns the agent. `NotFound` when no such unused
    /// token exists.
    async fn register_agent(
        &self,
        token_hash: &str,
        now: Timestamp,
        identity: &AgentIdentity,
        credential_hash: &str,
    ) -> StorageResult<Agent>;
    /// The agent holding the credential with this hash.
    async fn agent_by_credential(&self, credential_hash: &str) -> StorageResult<Option<Agent>>;
    /// Records observed state: connection state, last seen, latest health.
    async fn record_agent_state(
        &self,
        id: Uuid,
        state: AgentState,
        seen_at: Timestamp,
        health: Option<&AgentHealth>,
    ) -> StorageResult<()>;
    /// [`record_agent_state`](AgentStore::record_agent_state) for many
    /// agents at once (a fleet's heartbeats); answers, in order, whether
    /// each agent exists. Backends should write them together (one
    /// transaction): the default writes them one by one.
    async fn record_agent_states(&self, records: &[AgentStateRecord]) -> StorageResult<Vec<bool>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            match self
                .record_agent_state(r.agent_id, r.state, r.seen_at, r.health.as_ref())
                .await
            {
                Ok(()) => out.push(true),
                Err(StorageError::NotFound { .. }) => out.push(false),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Where an agent belongs and what it is labelled, for
/// [`AgentStore::agent_labels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLabels {
    /// The agent.
    pub agent_id: Uuid,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// Its labels.
    pub labels: Labels,
}

/// One agent's observed state, for [`AgentStore::record_agent_states`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStateRecord {
    /// The agent.
    pub agent_id: Uuid,
    /// Its connection state.
    pub state: AgentState,
    /// When it was last heard from.
    pub seen_at: Timestamp,
    /// Its latest health, if the report carried one.
    pub health: Option<AgentHealth>,
}

/// Virtual hosts.
#[async_trait]
pub trait VirtualHostStore: Send + Sync {
    /// Creates a virtual host. `Conflict` on a duplicate name.
    async fn create_virtual_host(
        &self,
        workspace_id: Uuid,
        spec: &VirtualHostSpec,
        target: &TargetAgents,
    ) -> StorageResult<VirtualHost>;
    /// The virtual host with `id`.
    async fn get_virtual_host(&self, id: Uuid) -> StorageResult<Option<VirtualHost>>;
    /// The virtual hosts of a workspace.
    async fn list_virtual_hosts(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<VirtualHost>>;
    /// Replaces content and target.
    async fn update_virtual_host(
        &self,
        id: Uuid,
        spec: &VirtualHostSpec,
        target: &TargetAgents,
    ) -> StorageResult<VirtualHost>;
    /// Deletes a virtual host.
    async fn delete_virtual_host(&self, id: Uuid) -> StorageResult<()>;
}

/// Upstreams.
#[async_trait]
pub trait UpstreamStore: Send + Sync {
    /// Creates an upstream. `Conflict` on a duplicate name.
    async fn create_upstream(
        &self,
        workspace_id: Uuid,
        spec: &UpstreamSpec,
    ) -> StorageResult<Upstream>;
    /// The upstream with `id`.
    async fn get_upstream(&self, id: Uuid) -> StorageResult<Option<Upstream>>;
    /// The upstreams of a workspace.
    async fn list_upstreams(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Upstream>>;
    /// Replaces content.
    async fn update_upstream(&self, id: Uuid, spec: &UpstreamSpec) -> StorageResult<Upstream>;
    /// Deletes an upstream. `Conflict` while a virtual host uses it.
    async fn delete_upstream(&self, id: Uuid) -> StorageResult<()>;
}

/// A certificate to store. The private key arrives already encrypted with
/// a key that is not in the database.
#[derive(Clone, PartialEq, Eq)]
pub struct NewCertificate {
    /// The workspace.
    pub workspace_id: Uuid,
    /// The domain (without `*.`).
    pub domain: String,
    /// Wildcard or not.
    pub is_wildcard: bool,
    /// Where it comes from.
    pub provider: CertificateProvider,
    /// Initial status.
    pub status: CertificateStatus,
    /// Renew automatically.
    pub auto_renew: bool,
    /// The PEM chain, when issued.
    pub certificate_pem: Option<String>,
    /// The encrypted private key, when issued.
    pub encrypted_private_key: Option<Vec<u8>>,
    /// When issued.
    pub issued_at: Option<Timestamp>,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for NewCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCertificate")
            .field("workspace_id", &self.workspace_id)
            .field("domain", &self.domain)
            .field("provider", &self.provider)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Certificates.
#[async_trait]
pub trait CertificateStore: Send + Sync {
    /// Stores a certificate.
    async fn create_certificate(&self, new: &NewCertificate) -> StorageResult<Certificate>;
    /// The certificate with `id` (never its key).
    async fn get_certificate(&self, id: Uuid) -> StorageResult<Option<Certificate>>;
    /// The certificates of a workspace.
    async fn list_certificates(
        &self,
        workspace_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Certificate>>;
    /// The PEM chain and encrypted key, for distribution to agents.
    async fn certificate_material(&self, id: Uuid) -> StorageResult<Option<(String, Vec<u8>)>>;
    /// Deletes a certificate. `Conflict` while a virtual host uses it.
    async fn delete_certificate(&self, id: Uuid) -> StorageResult<()>;
    /// The ACME HTTP-01 challenges the agents of a workspace answer while
    /// a certificate is ordered (written by the master's ACME client). A
    /// store of a master without ACME has none: the default.
    async fn acme_http_challenges(
        &self,
        workspace_id: Uuid,
    ) -> StorageResult<Vec<crate::config::AcmeChallenge>> {
        let _ = workspace_id;
        Ok(Vec::new())
    }
}

/// Metrics and access logs.
#[async_trait]
pub trait TelemetryStore: Send + Sync {
    /// Stores a batch of samples from an agent.
    async fn insert_metrics(&self, agent_id: Uuid, batch: &MetricsBatch) -> StorageResult<()>;
    /// Aggregates a workspace's (or, with `agent_id`, one agent's) samples
    /// over the window.
    async fn metrics_summary(
        &self,
        workspace_id: Uuid,
        agent_id: Option<Uuid>,
        query: &MetricsQuery,
    ) -> StorageResult<MetricsSummary>;
    /// Stores access-log entries.
    async fn insert_access_logs(&self, entries: &[AccessLogEntry]) -> StorageResult<()>;
    /// The newest matching entries of a workspace.
    async fn query_access_logs(
        &self,
        workspace_id: Uuid,
        query: &AccessLogQuery,
    ) -> StorageResult<AccessLogPage>;
}

/// A user to create; the password arrives already hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// The Argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// Server administrator.
    pub is_admin: bool,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Users and organization membership.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user. `Conflict` on a duplicate email.
    async fn create_user(&self, new: &NewUser) -> StorageResult<User>;
    /// The user with `id`.
    async fn get_user(&self, id: Uuid) -> StorageResult<Option<User>>;
    /// The user with `email` (case-insensitive) and their password hash.
    async fn user_by_email(&self, email: &str) -> StorageResult<Option<(User, String)>>;
    /// How many users exist.
    async fn count_users(&self) -> StorageResult<u64>;
    /// Deletes a user, their memberships and sessions.
    async fn delete_user(&self, id: Uuid) -> StorageResult<()>;
    /// Adds (or changes) a member of an organization.
    async fn set_member(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
        role: Role,
    ) -> StorageResult<Member>;
    /// The role of a user in an organization, if a member.
    async fn member_role(
        &self,
        organization_id: Uuid,
        user_id: Uuid,
    ) -> StorageResult<Option<Role>>;
    /// The members of an organization.
    async fn list_members(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<Member>>;
    /// Removes a member.
    async fn remove_member(&self, organization_id: Uuid, user_id: Uuid) -> StorageResult<()>;
    /// The organizations a user belongs to, with the role in each.
    async fn memberships(&self, user_id: Uuid) -> StorageResult<Vec<(Uuid, Role)>>;
}

/// What became of a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid and now consumed: issue a new one in the same family.
    Valid {
        /// Its user.
        user_id: Uuid,
        /// Its family.
        family_id: Uuid,
    },
    /// Already used: the whole family has been revoked.
    Reused {
        /// The revoked family.
        family_id: Uuid,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// An API token to store, by hash.
#[derive(Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// Its owner.
    pub user_id: Uuid,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Hash of the secret.
    pub token_hash: String,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
}

impl std::fmt::Debug for NewApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Refresh tokens (single-use, rotated, in families) and API tokens, all
/// stored as hashes.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a refresh token of `family_id` for `user_id`.
    async fn insert_refresh_token(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> StorageResult<()>;
    /// Consumes a refresh token, atomically: valid tokens are marked used;
    /// a used token revokes its whole family.
    async fn use_refresh_token(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StorageResult<RefreshUse>;
    /// Revokes a family (logout).
    async fn revoke_refresh_family(&self, family_id: Uuid) -> StorageResult<()>;
    /// The family of a refresh token, if it exists.
    async fn refresh_family(&self, token_hash: &str) -> StorageResult<Option<Uuid>>;
    /// Stores an API token.
    async fn create_api_token(&self, new: &NewApiToken) -> StorageResult<ApiToken>;
    /// The API token with this hash, unexpired at `now`, and its owner.
    async fn api_token_by_hash(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StorageResult<Option<(ApiToken, Uuid)>>;
    /// A user's API tokens.
    async fn list_api_tokens(&self, user_id: Uuid) -> StorageResult<Vec<ApiToken>>;
    /// Revokes one of a user's API tokens.
    async fn revoke_api_token(&self, user_id: Uuid, id: Uuid) -> StorageResult<()>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records a change.
    async fn record_audit(&self, entry: &AuditEntry) -> StorageResult<()>;
    /// An organization's audit log, newest first.
    async fn list_audit(
        &self,
        organization_id: Uuid,
        page: PageParams,
    ) -> StorageResult<Page<AuditEntry>>;
}

/// The per-agent configuration ledger.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Increments the desired version of each agent, atomically per agent,
    /// and returns the new versions in the order of `agent_ids` (an id
    /// given twice is bumped once and answered once).
    async fn bump_desired_versions(&self, agent_ids: &[Uuid]) -> StorageResult<Vec<(Uuid, i64)>>;
    /// Records what an agent reported. The applied version only moves
    /// forward: a report about a version older than the applied one changes
    /// nothing (the row is returned as it is).
    async fn record_config_status(
        &self,
        agent_id: Uuid,
        status: &ConfigStatus,
    ) -> StorageResult<AgentConfigState>;
    /// [`record_config_status`](LedgerStore::record_config_status) for
    /// many reports at once (a fleet answering a rollout), in order, with
    /// the same results. Backends should write them together (one
    /// transaction): the default writes them one by one.
    async fn record_config_statuses(
        &self,
        reports: &[(Uuid, ConfigStatus)],
    ) -> StorageResult<Vec<AgentConfigState>> {
        let mut out = Vec::with_capacity(reports.len());
        for (agent_id, status) in reports {
            out.push(self.record_config_status(*agent_id, status).await?);
        }
        Ok(out)
    }
    /// One agent's row (a fresh row when it was never targeted).
    async fn agent_ledger(&self, agent_id: Uuid) -> StorageResult<AgentConfigState>;
    /// The rows of every agent of a workspace.
    async fn workspace_ledger(&self, workspace_id: Uuid) -> StorageResult<Vec<AgentConfigState>>;
}

/// Everything the master stores, as one object.
pub trait Storage:
    OrganizationStore
    + WorkspaceStore
    + AgentStore
    + VirtualHostStore
    + UpstreamStore
    + CertificateStore
    + TelemetryStore
    + UserStore
    + SessionStore
    + AuditStore
    + LedgerStore
{
}

impl<T> Storage for T where
    T: OrganizationStore
        + WorkspaceStore
        + AgentStore
        + VirtualHostStore
        + UpstreamStore
        + CertificateStore
        + TelemetryStore
        + UserStore
        + SessionStore
        + AuditStore
        + LedgerStore
{
}
