//! Endpoints beyond the common verbs: users, API tokens, members, the audit
//! log, agent tokens and commands, rollout status, configuration preview,
//! metrics and access logs. Response types the core crate does not define
//! (the agent's ledger view, command answers, the preview) are mirrored
//! here from the server's OpenAPI schemas.

use futures_util::Stream;
use nxmesh_core::ledger::RolloutStatus;
use nxmesh_core::model::{
    AccessLogPage, AccessLogQuery, AddMember, Agent, ApiToken, ApiTokenCreated, AuditEntry,
    CreateApiToken, CreateRegistrationToken, CreateUser, Member, MetricsQuery, MetricsSummary,
    RegistrationTokenCreated, ReloadResponse, UpdateMember, User, VirtualHost,
};
use nxmesh_core::pagination::Page;
use reqwest::Method;
use uuid::Uuid;

use super::{Api, ListParams, paginate};
use crate::client::{Client, Request};
use crate::error::Result;

/// Users: create (administrators), the caller, delete.
#[derive(Debug, Clone)]
pub struct Users {
    client: Client,
}

impl Users {
    pub(crate) fn new(client: &Client) -> Users {
        Users {
            client: client.clone(),
        }
    }

    /// Creates a user (administrators only).
    pub async fn create(&self, request: &CreateUser) -> Result<User> {
        self.client
            .send_json(Method::POST, "v1/users".into(), request)
            .await
    }

    /// The authenticated user.
    pub async fn me(&self) -> Result<User> {
        self.client.get_json("v1/users/me".into(), Vec::new()).await
    }

    /// Deletes a user (administrators only).
    pub async fn delete(&self, id: Uuid) -> Result<()> {
        self.client.delete_path(format!("v1/users/{id}")).await
    }
}

/// The caller's API tokens.
#[derive(Debug, Clone)]
pub struct ApiTokens {
    client: Client,
}

impl ApiTokens {
    pub(crate) fn new(client: &Client) -> ApiTokens {
        ApiTokens {
            client: client.clone(),
        }
    }

    /// Every API token of the caller (not paginated by the server).
    pub async fn list(&self) -> Result<Vec<ApiToken>> {
        self.client
            .get_json("v1/auth/tokens".into(), Vec::new())
            .await
    }

    /// Creates a token; its secret is in the answer and nowhere else.
    /// Needs a login session, not another API token.
    pub async fn create(&self, request: &CreateApiToken) -> Result<ApiTokenCreated> {
        self.client
            .send_json(Method::POST, "v1/auth/tokens".into(), request)
            .await
    }

    /// Revokes a token.
    pub async fn delete(&self, id: Uuid) -> Result<()> {
        self.client
            .delete_path(format!("v1/auth/tokens/{id}"))
            .await
    }
}

/// The members of one organization.
#[derive(Debug, Clone)]
pub struct Members {
    client: Client,
    organization: Uuid,
}

impl Members {
    pub(crate) fn new(client: &Client, organization: Uuid) -> Members {
        Members {
            client: client.clone(),
            organization,
        }
    }

    fn path(&self) -> String {
        format!("v1/organizations/{}/members", self.organization)
    }

    /// One page of members.
    pub async fn list(&self, params: &ListParams) -> Result<Page<Member>> {
        self.client.get_json(self.path(), params.query()).await
    }

    /// Every member, page after page.
    pub fn list_all(
        &self,
        params: &ListParams,
    ) -> impl Stream<Item = Result<Member>> + Send + 'static {
        paginate(self.client.clone(), self.path(), Vec::new(), *params)
    }

    /// Adds a user (by email or id) with a role.
    pub async fn create(&self, request: &AddMember) -> Result<Member> {
        self.client
            .send_json(Method::POST, self.path(), request)
            .await
    }

    /// Changes a member's role.
    pub async fn update(&self, user_id: Uuid, request: &UpdateMember) -> Result<Member> {
        self.client
            .send_json(Method::PATCH, format!("{}/{user_id}", self.path()), request)
            .await
    }

    /// Removes a member.
    pub async fn delete(&self, user_id: Uuid) -> Result<()> {
        self.client
            .delete_path(format!("{}/{user_id}", self.path()))
            .await
    }
}

/// The audit log of one organization, newest first.
#[derive(Debug, Clone)]
pub struct AuditLog {
    client: Client,
    organization: Uuid,
}

impl AuditLog {
    pub(crate) fn new(client: &Client, organization: Uuid) -> AuditLog {
        AuditLog {
            client: client.clone(),
            organization,
        }
    }

    fn path(&self) -> String {
        format!("v1/organizations/{}/audit-log", self.organization)
    }

    /// One page of entries.
    pub async fn list(&self, params: &ListParams) -> Result<Page<AuditEntry>> {
        self.client.get_json(self.path(), params.query()).await
    }

    /// Every entry, page after page.
    pub fn list_all(
        &self,
        params: &ListParams,
    ) -> impl Stream<Item = Result<AuditEntry>> + Send + 'static {
        paginate(self.client.clone(), self.path(), Vec::new(), *params)
    }
}

pub use nxmesh_core::model::{AgentCommand, AgentWithConfig, CommandResponse, ConfigPreview};

impl Api<Agent> {
    /// Creates a single-use registration token for a new agent in this
    /// handle's workspace.
    pub async fn create_registration_token(
        &self,
        request: &CreateRegistrationToken,
    ) -> Result<RegistrationTokenCreated> {
        self.client
            .send_json(
                Method::POST,
                format!("v1/workspaces/{}/agents/tokens", self.parent),
                request,
            )
            .await
    }

    /// Asks a connected agent to reload nginx and waits for its answer
    /// (503 when it is not connected or does not answer in time). Not
    /// retried: a reload must not happen twice by accident.
    pub async fn reload(&self, id: Uuid) -> Result<ReloadResponse> {
        let res = self
            .client
            .send(&Request::new(
                Method::POST,
                format!("v1/agents/{id}/reload"),
            ))
            .await?;
        self.client.decode(res).await
    }

    /// Sends a command to a connected agent and waits for its answer.
    pub async fn command(&self, id: Uuid, command: &AgentCommand) -> Result<CommandResponse> {
        self.client
            .send_json(Method::POST, format!("v1/agents/{id}/commands"), command)
            .await
    }

    /// The agent with its configuration ledger row.
    pub async fn config(&self, id: Uuid) -> Result<AgentWithConfig> {
        self.client
            .get_json(format!("v1/agents/{id}/config"), Vec::new())
            .await
    }
}

impl Api<VirtualHost> {
    /// The nginx text the generator renders for the virtual host `id`.
    pub async fn preview(&self, id: Uuid) -> Result<ConfigPreview> {
        self.client
            .get_json(format!("v1/virtual-hosts/{id}/config"), Vec::new())
            .await
    }
}

/// The rollout status of a workspace: which agents run which version.
#[derive(Debug, Clone)]
pub struct Rollout {
    client: Client,
}

impl Rollout {
    pub(crate) fn new(client: &Client) -> Rollout {
        Rollout {
            client: client.clone(),
        }
    }

    /// Desired and applied versions of every agent of `workspace`.
    pub async fn status(&self, workspace: Uuid) -> Result<RolloutStatus> {
        self.client
            .get_json(format!("v1/workspaces/{workspace}/rollout"), Vec::new())
            .await
    }
}

fn window(q: &MetricsQuery) -> Vec<(&'static str, String)> {
    vec![("from", q.from.to_rfc3339()), ("to", q.to.to_rfc3339())]
}

/// Metrics summaries over a time window.
#[derive(Debug, Clone)]
pub struct Metrics {
    client: Client,
}

impl Metrics {
    pub(crate) fn new(client: &Client) -> Metrics {
        Metrics {
            client: client.clone(),
        }
    }

    /// The summary of every agent of `workspace`.
    pub async fn workspace(
        &self,
        workspace: Uuid,
        window_: &MetricsQuery,
    ) -> Result<MetricsSummary> {
        self.client
            .get_json(
                format!("v1/workspaces/{workspace}/metrics"),
                window(window_),
            )
            .await
    }

    /// The summary of one agent.
    pub async fn agent(&self, agent: Uuid, window_: &MetricsQuery) -> Result<MetricsSummary> {
        self.client
            .get_json(format!("v1/agents/{agent}/metrics"), window(window_))
            .await
    }
}

/// The access logs agents report.
#[derive(Debug, Clone)]
pub struct AccessLogs {
    client: Client,
}

impl AccessLogs {
    pub(crate) fn new(client: &Client) -> AccessLogs {
        AccessLogs {
            client: client.clone(),
        }
    }

    /// Entries of `workspace` matching `query`, newest first.
    pub async fn query(&self, workspace: Uuid, query: &AccessLogQuery) -> Result<AccessLogPage> {
        let mut q = Vec::new();
        if let Some(from) = query.from {
            q.push(("from", from.to_rfc3339()));
        }
        if let Some(to) = query.to {
            q.push(("to", to.to_rfc3339()));
        }
        if let Some(s) = query.status_code {
            q.push(("status_code", s.to_string()));
        }
        if let Some(l) = query.limit {
            q.push(("limit", l.to_string()));
        }
        self.client
            .get_json(format!("v1/workspaces/{workspace}/access-logs"), q)
            .await
    }
}
