//! The resources with the common verbs: where each lives, what creates and
//! updates it, and the agents' list filter.

use nxmesh_core::model::{
    Agent, AgentStateFilter, Certificate, CreateCertificate, CreateOrganization, CreateUpstream,
    CreateVirtualHost, CreateWorkspace, Organization, UpdateAgent, UpdateOrganization,
    UpdateUpstream, UpdateVirtualHost, UpdateWorkspace, Upstream, VirtualHost, Workspace,
};
use uuid::Uuid;

use super::{Creatable, Resource, Updatable};

impl Resource for Organization {
    type Parent = ();
    type Filter = ();
    const KIND: &'static str = "organization";
    fn collection_path((): ()) -> String {
        "v1/organizations".into()
    }
    fn item_path(id: Uuid) -> String {
        format!("v1/organizations/{id}")
    }
    fn filter_query((): &()) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}
impl Creatable for Organization {
    type Request = CreateOrganization;
}
impl Updatable for Organization {
    type Request = UpdateOrganization;
}

/// A workspace's resources: collection under the workspace, items at the
/// top level.
macro_rules! in_workspace {
    ($ty:ty, $kind:literal, $plural:literal) => {
        impl Resource for $ty {
            type Parent = Uuid;
            type Filter = ();
            const KIND: &'static str = $kind;
            fn collection_path(workspace: Uuid) -> String {
                format!("v1/workspaces/{workspace}/{}", $plural)
            }
            fn item_path(id: Uuid) -> String {
                format!("v1/{}/{id}", $plural)
            }
            fn filter_query((): &()) -> Vec<(&'static str, String)> {
                Vec::new()
            }
        }
    };
}

impl Resource for Workspace {
    type Parent = Uuid;
    type Filter = ();
    const KIND: &'static str = "workspace";
    fn collection_path(organization: Uuid) -> String {
        format!("v1/organizations/{organization}/workspaces")
    }
    fn item_path(id: Uuid) -> String {
        format!("v1/workspaces/{id}")
    }
    fn filter_query((): &()) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}
impl Creatable for Workspace {
    type Request = CreateWorkspace;
}
impl Updatable for Workspace {
    type Request = UpdateWorkspace;
}

in_workspace!(VirtualHost, "virtual host", "virtual-hosts");
impl Creatable for VirtualHost {
    type Request = CreateVirtualHost;
}
impl Updatable for VirtualHost {
    type Request = UpdateVirtualHost;
}

in_workspace!(Upstream, "upstream", "upstreams");
impl Creatable for Upstream {
    type Request = CreateUpstream;
}
impl Updatable for Upstream {
    type Request = UpdateUpstream;
}

// Certificates are requested and deleted, never edited.
in_workspace!(Certificate, "certificate", "certificates");
impl Creatable for Certificate {
    type Request = CreateCertificate;
}

/// The agent list's filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only agents in this state.
    pub state: Option<AgentStateFilter>,
    /// A Kubernetes-style label selector, for example `env=prod,tier!=edge`.
    pub label_selector: Option<String>,
}

// Agents are not created by POST: a registration token makes one (see
// `Api::<Agent>::create_registration_token`).
impl Resource for Agent {
    type Parent = Uuid;
    type Filter = AgentFilter;
    const KIND: &'static str = "agent";
    fn collection_path(workspace: Uuid) -> String {
        format!("v1/workspaces/{workspace}/agents")
    }
    fn item_path(id: Uuid) -> String {
        format!("v1/agents/{id}")
    }
    fn filter_query(filter: &AgentFilter) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = filter.state {
            q.push(("state", state_str(s).to_owned()));
        }
        if let Some(sel) = &filter.label_selector {
            q.push(("label_selector", sel.clone()));
        }
        q
    }
}
impl Updatable for Agent {
    type Request = UpdateAgent;
}

fn state_str(s: AgentStateFilter) -> &'static str {
    match s {
        AgentStateFilter::Online => "online",
        AgentStateFilter::Offline => "offline",
        AgentStateFilter::Degraded => "degraded",
        AgentStateFilter::All => "all",
    }
}
