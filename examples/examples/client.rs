//! Driving NxMesh from Rust with the typed client: a master is started in
//! this process (SQLite in a temporary directory, real socket on
//! 127.0.0.1), then the client logs in, builds an organization, a
//! workspace, an upstream and a virtual host, walks the paginated lists,
//! previews the nginx text, maps an API error, and cleans up.
//!
//! Run with `cargo run -p nxmesh-examples --example client`; point a client
//! at your own master with `Config::new("https://…", Auth::Login { … })`.

// An example reports to its reader on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use nxmesh_client::{Auth, Client, Config, Error, ListParams};
use nxmesh_core::model::{
    CreateOrganization, CreateVirtualHost, CreateWorkspace, LoadBalanceAlgorithm, Location,
    TargetAgents, UpstreamServer, UpstreamSpec, VirtualHostSpec,
};
use nxmesh_server::auth::TokenKeys;
use nxmesh_server::db::SeaStore;
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, bootstrap, http};

const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// A master on 127.0.0.1 over a fresh SQLite database in `dir`; returns
/// its URL.
async fn start_master(dir: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let store = Arc::new(
        SeaStore::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.join("db.sqlite").display()
        ))
        .await?,
    );
    bootstrap::ensure_first_admin(store.as_ref(), dir, Some(EMAIL), Some(PASSWORD)).await?;
    let keys = TokenKeys::load_or_create(&dir.join("signing.key"), 900)?;
    let secrets = SecretBox::load_or_create(&dir.join("secret.key"))?;
    let state = AppState::new(store, keys, secrets, ApiSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = http::app(state).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("master stopped: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("nxmesh-client-example-{nanos}"));
    let url = start_master(&dir).await?;
    let client = Client::new(Config::new(
        &url,
        Auth::Login {
            email: EMAIL.into(),
            password: PASSWORD.into(),
        },
    ))?;
    println!("logged in as {}", client.users().me().await?.email);

    let org = client
        .organizations()
        .create(&CreateOrganization {
            name: "Acme".into(),
            slug: "acme".into(),
        })
        .await?;
    let ws = client
        .workspaces(org.id)
        .create(&CreateWorkspace {
            name: "Production".into(),
            slug: "production".into(),
        })
        .await?;
    for i in 0..25 {
        client
            .upstreams(ws.id)
            .create(&UpstreamSpec {
                name: format!("backend-{i}"),
                algorithm: LoadBalanceAlgorithm::RoundRobin,
                servers: vec![UpstreamServer {
                    address: format!("10.0.0.{}:8080", i + 1),
                    weight: 1,
                    backup: false,
                    down: false,
                    max_fails: 1,
                    fail_timeout: 10,
                }],
                health_check: None,
                keepalive_connections: 0,
            })
            .await?;
    }
    // `list_all` walks every page (25 items, 10 per page).
    let all: Vec<_> = client
        .upstreams(ws.id)
        .list_all(&ListParams {
            page: None,
            per_page: Some(10),
        })
        .try_collect()
        .await?;
    assert_eq!(all.len(), 25);
    println!("{} upstreams over 3 pages", all.len());

    let vh = client
        .virtual_hosts(ws.id)
        .create(&CreateVirtualHost {
            spec: VirtualHostSpec {
                name: "Shop".into(),
                server_name: "shop.example.com".into(),
                listen_port: 80,
                ssl_enabled: false,
                ssl_certificate_id: None,
                http2_enabled: false,
                http3_enabled: false,
                locations: vec![Location {
                    path: "/".into(),
                    modifier: None,
                    upstream_id: Some(all[0].id),
                    proxy_pass: None,
                    root: None,
                    index: None,
                    custom_headers: vec![],
                    rewrite_rules: vec![],
                    custom_directives: Default::default(),
                }],
                custom_directives: Default::default(),
            },
            target_agents: TargetAgents::All,
        })
        .await?;
    let preview = client.virtual_hosts(ws.id).preview(vh.id).await?;
    assert!(
        preview.content.contains("server_name shop.example.com;"),
        "{}",
        preview.content
    );
    println!("{}:\n{}", preview.path, preview.content);

    // API errors carry the server's code, message, request id and details.
    let dup = client
        .organizations()
        .create(&CreateOrganization {
            name: "Again".into(),
            slug: "acme".into(),
        })
        .await;
    match dup {
        Err(Error::Api { status, code, .. }) => {
            assert_eq!(status, 409);
            println!("duplicate slug refused: {code}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    client.organizations().delete(org.id).await?;
    assert!(client.organizations().get_opt(org.id).await?.is_none());
    println!("cleaned up");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
