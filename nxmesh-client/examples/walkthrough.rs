//! A walk through the typed client: log in, create an organization, a
//! workspace, an upstream and a virtual host, list them, preview the nginx
//! text and clean up.
//!
//! ```text
//! NXMESH_URL=http://127.0.0.1:8080 NXMESH_EMAIL=admin@example.com \
//! NXMESH_PASSWORD=... cargo run -p nxmesh-client --example walkthrough
//! ```
//!
//! The integration tests run [`walkthrough`] against a master they start.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example reports to its user

use futures_util::TryStreamExt as _;
use nxmesh_client::{Auth, Client, Config, ListParams};
use nxmesh_core::model::{
    CreateOrganization, CreateVirtualHost, CreateWorkspace, LoadBalanceAlgorithm, Location,
    TargetAgents, UpstreamServer, UpstreamSpec, VirtualHostSpec,
};

/// What the walk made and saw, for the caller to check.
#[derive(Debug)]
pub struct Report {
    /// The upstreams listed in the workspace.
    pub upstreams: usize,
    /// The nginx text of the virtual host.
    pub preview: String,
}

/// Runs the walk on `client`; `suffix` keeps slugs unique.
pub async fn walkthrough(client: &Client, suffix: &str) -> nxmesh_client::Result<Report> {
    let me = client.users().me().await?;
    println!("logged in as {}", me.email);

    let org = client
        .organizations()
        .create(&CreateOrganization {
            name: format!("Walkthrough {suffix}"),
            slug: format!("walkthrough-{suffix}"),
        })
        .await?;
    let ws = client
        .workspaces(org.id)
        .create(&CreateWorkspace {
            name: "Staging".into(),
            slug: "staging".into(),
        })
        .await?;
    println!("organization {} / workspace {}", org.slug, ws.slug);

    let upstream = client
        .upstreams(ws.id)
        .create(&UpstreamSpec {
            name: "api".into(),
            algorithm: LoadBalanceAlgorithm::LeastConnections,
            servers: vec![UpstreamServer {
                address: "10.0.1.30:8080".into(),
                weight: 1,
                backup: false,
                down: false,
                max_fails: 3,
                fail_timeout: 30,
            }],
            health_check: None,
            keepalive_connections: 16,
        })
        .await?;
    let vhost = client
        .virtual_hosts(ws.id)
        .create(&CreateVirtualHost {
            spec: VirtualHostSpec {
                name: "Main".into(),
                server_name: "staging.example.com".into(),
                listen_port: 8080,
                ssl_enabled: false,
                ssl_certificate_id: None,
                http2_enabled: false,
                http3_enabled: false,
                locations: vec![Location {
                    path: "/api".into(),
                    modifier: None,
                    upstream_id: Some(upstream.id),
                    proxy_pass: None,
                    root: None,
                    index: None,
                    custom_headers: Vec::new(),
                    rewrite_rules: Vec::new(),
                    custom_directives: Default::default(),
                }],
                custom_directives: Default::default(),
            },
            target_agents: TargetAgents::All,
        })
        .await?;

    let upstreams: Vec<_> = client
        .upstreams(ws.id)
        .list_all(&ListParams::default())
        .try_collect()
        .await?;
    let preview = client.virtual_hosts(ws.id).preview(vhost.id).await?;
    println!("{}:\n{}", preview.path, preview.content);

    client.virtual_hosts(ws.id).delete(vhost.id).await?;
    client.upstreams(ws.id).delete(upstream.id).await?;
    client.workspaces(org.id).delete(ws.id).await?;
    client.organizations().delete(org.id).await?;
    Ok(Report {
        upstreams: upstreams.len(),
        preview: preview.content,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("set {name}"));
    let client = Client::new(Config::new(
        &var("NXMESH_URL")?,
        Auth::Login {
            email: var("NXMESH_EMAIL")?,
            password: var("NXMESH_PASSWORD")?,
        },
    ))?;
    let report = walkthrough(&client, &std::process::id().to_string()).await?;
    println!("done: {} upstream(s) seen", report.upstreams);
    Ok(())
}
