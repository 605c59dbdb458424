//! NxMesh client: the typed REST client of the master and its event feed.
//!
//! One cheap-clone [`Client`] holds the connection pool, the credentials
//! (a login session refreshed before it expires, or an API token) and the
//! retry policy; handles per resource give every resource the same verbs
//! (`get`, `get_opt`, `list`, `list_all`, `create`, `update`, `delete`),
//! typed with the `nxmesh-core` model. Errors mirror the server's body
//! ([`Error::Api`]) apart from transport errors. The crate also ships the
//! `nxmesh` command line (`src/bin/nxmesh`).
//!
//! ```no_run
//! # async fn demo() -> nxmesh_client::Result<()> {
//! use futures_util::TryStreamExt as _;
//! use nxmesh_client::{Auth, Client, Config, ListParams};
//! use nxmesh_core::model::CreateOrganization;
//!
//! let client = Client::new(Config::new(
//!     "http://127.0.0.1:8080",
//!     Auth::Token("nxm_…".into()),
//! ))?;
//! let org = client
//!     .organizations()
//!     .create(&CreateOrganization { name: "Acme".into(), slug: "acme".into() })
//!     .await?;
//! let workspaces: Vec<_> = client
//!     .workspaces(org.id)
//!     .list_all(&ListParams::default())
//!     .try_collect()
//!     .await?;
//! # let _ = workspaces;
//! # Ok(())
//! # }
//! ```

mod api;
mod client;
mod error;
mod events;

pub use api::{
    AccessLogs, AgentCommand, AgentFilter, AgentWithConfig, Api, ApiTokens, AuditLog,
    CommandResponse, ConfigPreview, Creatable, ListParams, Members, Metrics, Resource, Rollout,
    Updatable, Users,
};
pub use client::{Auth, Client, Config, RetryPolicy};
pub use error::{Error, Result};
pub use events::EventStream;

use nxmesh_core::model::{Agent, Certificate, Organization, Upstream, VirtualHost, Workspace};
use uuid::Uuid;

impl Client {
    /// Organizations the caller belongs to.
    pub fn organizations(&self) -> Api<Organization> {
        Api::new(self, ())
    }

    /// The workspaces of an organization. Item verbs (`get`, `update`,
    /// `delete`) work on any workspace id whatever the handle's parent.
    pub fn workspaces(&self, organization: Uuid) -> Api<Workspace> {
        Api::new(self, organization)
    }

    /// The agents of a workspace (item verbs work on any agent id).
    pub fn agents(&self, workspace: Uuid) -> Api<Agent> {
        Api::new(self, workspace)
    }

    /// The virtual hosts of a workspace (item verbs work on any id).
    pub fn virtual_hosts(&self, workspace: Uuid) -> Api<VirtualHost> {
        Api::new(self, workspace)
    }

    /// The upstreams of a workspace (item verbs work on any id).
    pub fn upstreams(&self, workspace: Uuid) -> Api<Upstream> {
        Api::new(self, workspace)
    }

    /// The certificates of a workspace (item verbs work on any id).
    pub fn certificates(&self, workspace: Uuid) -> Api<Certificate> {
        Api::new(self, workspace)
    }

    /// The members of an organization.
    pub fn members(&self, organization: Uuid) -> Members {
        Members::new(self, organization)
    }

    /// The audit log of an organization.
    pub fn audit_log(&self, organization: Uuid) -> AuditLog {
        AuditLog::new(self, organization)
    }

    /// Users: create, the caller, delete.
    pub fn users(&self) -> Users {
        Users::new(self)
    }

    /// The caller's API tokens.
    pub fn api_tokens(&self) -> ApiTokens {
        ApiTokens::new(self)
    }

    /// Rollout status per workspace.
    pub fn rollout(&self) -> Rollout {
        Rollout::new(self)
    }

    /// Metrics summaries.
    pub fn metrics(&self) -> Metrics {
        Metrics::new(self)
    }

    /// Access logs.
    pub fn access_logs(&self) -> AccessLogs {
        AccessLogs::new(self)
    }
}
