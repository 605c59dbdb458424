//! `nxmesh-server`: the reference master. Started with no arguments it
//! creates its data directory and SQLite database, runs migrations,
//! generates its keys, creates the first administrator and serves the REST
//! API.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use nxmesh_server::auth::TokenKeys;
use nxmesh_server::db::SeaStore;
use nxmesh_server::grpc::{AgentService, AgentServiceSettings};
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, acme, agent_tls, bootstrap, http};
use tracing_subscriber::EnvFilter;

/// The NxMesh master: desired state, REST API, agents.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Config {
    /// Directory for the SQLite database, keys and the first administrator's
    /// generated password; created (mode 0700) if absent.
    #[arg(long, env = "NXMESH_DATA_DIR", default_value = "nxmesh-data")]
    data_dir: PathBuf,
    /// Address of the REST API and the WebSocket event feed.
    #[arg(long, env = "NXMESH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Address of the gRPC agent service (TLS).
    #[arg(long, env = "NXMESH_GRPC_ADDR", default_value = "0.0.0.0:8443")]
    grpc_addr: SocketAddr,
    /// Names (DNS or IP) agents use to reach the master, written into the
    /// serving certificate the master makes for itself, comma-separated.
    #[arg(
        long,
        env = "NXMESH_GRPC_NAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    grpc_names: Vec<String>,
    /// PEM certificate of the agent service (instead of the master's own CA).
    #[arg(long, env = "NXMESH_GRPC_TLS_CERT", requires = "grpc_tls_key")]
    grpc_tls_cert: Option<PathBuf>,
    /// PEM key of `--grpc-tls-cert`.
    #[arg(long, env = "NXMESH_GRPC_TLS_KEY", requires = "grpc_tls_cert")]
    grpc_tls_key: Option<PathBuf>,
    /// Seconds between the heartbeats agents must send (3 missed: offline).
    #[arg(long, env = "NXMESH_HEARTBEAT_INTERVAL", default_value_t = 10)]
    heartbeat_interval: u64,
    /// Database: `sqlite://PATH?mode=rwc` or `postgres://…`. Default: the
    /// SQLite file `nxmesh.db` in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Ed25519 PKCS#8 key signing access tokens. Default: generated in the
    /// data directory.
    #[arg(long, env = "NXMESH_JWT_KEY_FILE")]
    jwt_key_file: Option<PathBuf>,
    /// Keyring encrypting private keys at rest (AES-256-GCM): one
    /// `<id>:<base64 of 32 bytes>` per line, the last one encrypting, the
    /// others still decrypting (rotation). Default: generated in the data
    /// directory.
    #[arg(long, env = "NXMESH_SECRET_KEY_FILE", conflicts_with = "secret_keys")]
    secret_key_file: Option<PathBuf>,
    /// The keyring itself instead of a file (same format; entries may be
    /// separated by commas).
    #[arg(long, env = "NXMESH_SECRET_KEYS", hide_env_values = true)]
    secret_keys: Option<String>,
    /// ACME directory: `letsencrypt`, `letsencrypt-staging` or the URL of any
    /// RFC 8555 directory. Without it, `letsencrypt` certificates stay
    /// `pending`.
    #[arg(long, env = "NXMESH_ACME_DIRECTORY")]
    acme_directory: Option<String>,
    /// PEM root certificate to trust for the ACME directory's HTTPS (a test
    /// CA such as Pebble).
    #[arg(long, env = "NXMESH_ACME_CA_ROOT", requires = "acme_directory")]
    acme_ca_root: Option<PathBuf>,
    /// Contact of new ACME accounts (`mailto:…`), comma-separated.
    #[arg(long, env = "NXMESH_ACME_CONTACT", value_delimiter = ',')]
    acme_contact: Vec<String>,
    /// DNS server (`ip:port`) that accepts RFC 2136 updates for DNS-01
    /// (wildcard certificates).
    #[arg(long, env = "NXMESH_ACME_DNS_SERVER", requires_all = ["acme_dns_zone", "acme_dns_tsig_key_file"])]
    acme_dns_server: Option<SocketAddr>,
    /// The zone the DNS-01 records are written into.
    #[arg(long, env = "NXMESH_ACME_DNS_ZONE", requires = "acme_dns_server")]
    acme_dns_zone: Option<String>,
    /// TSIG key signing the updates, as `tsig-keygen` writes it.
    #[arg(
        long,
        env = "NXMESH_ACME_DNS_TSIG_KEY_FILE",
        requires = "acme_dns_server"
    )]
    acme_dns_tsig_key_file: Option<PathBuf>,
    /// Email of the first administrator (used only when there are no users).
    #[arg(long, env = "NXMESH_ADMIN_EMAIL")]
    admin_email: Option<String>,
    /// Password of the first administrator; generated when absent.
    #[arg(long, env = "NXMESH_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Lifetime of access tokens, in seconds (60 to 86400).
    #[arg(long, env = "NXMESH_ACCESS_TOKEN_TTL", default_value_t = 900)]
    access_token_ttl: i64,
    /// Requests per principal per minute.
    #[arg(long, env = "NXMESH_RATE_LIMIT_PER_MINUTE", default_value_t = 1000)]
    rate_limit_per_minute: u32,
}

impl Config {
    /// Checks everything that can be checked before touching disk or
    /// network.
    fn validate(&self) -> anyhow::Result<()> {
        let known = |url: &str| {
            ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| url.starts_with(p))
        };
        if self.database_url.as_deref().is_some_and(|url| !known(url)) {
            bail!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
        }
        if !(60..=86_400).contains(&self.access_token_ttl) {
            bail!("--access-token-ttl must be between 60 and 86400 seconds");
        }
        if self.rate_limit_per_minute == 0 {
            bail!("--rate-limit-per-minute must be positive");
        }
        if !(1..=300).contains(&self.heartbeat_interval) {
            bail!("--heartbeat-interval must be between 1 and 300 seconds");
        }
        if self.grpc_names.iter().any(|n| n.trim().is_empty()) {
            bail!("--grpc-names must not contain empty names");
        }
        if let Some(d) = &self.acme_directory {
            acme::directory_url(d).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("nxmesh.db").display()
            )
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    config.validate()?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = SeaStore::connect(&config.database_url())
        .await
        .context("opening the database")?;
    let keys = TokenKeys::load_or_create(
        &config
            .jwt_key_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("jwt-ed25519.pem")),
        config.access_token_ttl,
    )?;
    let secrets = match &config.secret_keys {
        Some(text) => SecretBox::from_keyring(text).context("NXMESH_SECRET_KEYS")?,
        None => SecretBox::load_or_create(
            &config
                .secret_key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join("secret.keys")),
        )?,
    };
    let dns: Option<Arc<dyn acme::dns::DnsProvider>> = match (
        config.acme_dns_server,
        &config.acme_dns_zone,
        &config.acme_dns_tsig_key_file,
    ) {
        (Some(server), Some(zone), Some(key_file)) => {
            let text = std::fs::read_to_string(key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            let key = acme::dns::parse_bind_key(&text)?;
            Some(Arc::new(acme::dns::Rfc2136::new(server, zone, key)?))
        }
        _ => None,
    };
    // Completes a rotation of the keyring: values sealed under an older key
    // are sealed again under the newest.
    let resealed = store
        .reseal_secrets(&secrets)
        .await
        .context("resealing private keys under the newest key")?;
    if resealed > 0 {
        tracing::info!(resealed, "private keys sealed again under the newest key");
    }
    let store = Arc::new(store);
    match bootstrap::ensure_first_admin(
        store.as_ref(),
        &config.data_dir,
        config.admin_email.as_deref(),
        config.admin_password.as_deref(),
    )
    .await
    .context("creating the first administrator")?
    {
        Some(admin) => match admin.password_file {
            Some(path) => {
                tracing::info!(email = %admin.user.email, password_file = %path.display(), "created the first administrator; the generated password is in the file")
            }
            None => tracing::info!(email = %admin.user.email, "created the first administrator"),
        },
        None => tracing::debug!("users exist; no first administrator created"),
    }

    let identity = agent_tls::load_or_create(
        &config.data_dir,
        config
            .grpc_tls_cert
            .as_deref()
            .zip(config.grpc_tls_key.as_deref()),
        &config.grpc_names,
    )
    .context("preparing the agent service's TLS identity")?;

    let settings = ApiSettings {
        rate_limit_per_minute: config.rate_limit_per_minute,
        ..ApiSettings::default()
    };
    let state = AppState::new(store.clone(), keys, secrets, settings);
    // On PostgreSQL this master joins whichever others share the database.
    // An agent's presence lasts as long as its heartbeats may be missed.
    let lease =
        Duration::from_secs(config.heartbeat_interval) * nxmesh_server::grpc::MISSED_HEARTBEATS;
    let state = match store.cluster(lease) {
        Some(cluster) => {
            tracing::info!(master_id = %cluster.master_id(), "clustered: changes, events and agent presence are shared with the other masters of this database");
            state.in_cluster(cluster)
        }
        None => state,
    };
    let state = match &config.acme_directory {
        Some(d) => {
            let mut acme_config =
                acme::AcmeConfig::new(acme::directory_url(d).map_err(anyhow::Error::msg)?);
            acme_config.ca_root = config.acme_ca_root.clone();
            acme_config.contact = config.acme_contact.clone();
            acme_config.dns = dns;
            tracing::info!(directory = %acme_config.directory_url, "ACME issuance enabled");
            let (service, _task) =
                acme::CertificateService::spawn(state.clone(), store, acme_config, shutdown());
            state.with_certificates(service)
        }
        None => state.with_certificates(acme::CertificateService::without_acme(store)),
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding {}", config.grpc_addr))?;
    let http_addr = listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;

    let agents = AgentService::new(
        state.clone(),
        AgentServiceSettings {
            heartbeat_interval: Duration::from_secs(config.heartbeat_interval),
            ..AgentServiceSettings::default()
        },
    );
    let tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&identity.certificate_pem, &identity.key_pem),
    );
    let grpc = tonic::transport::Server::builder()
        .tls_config(tls)
        .context("configuring TLS of the agent service")?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(agents.into_server())
        // Given a listener, tonic leaves the accepted sockets' options
        // alone: without TCP_NODELAY, the last TLS record of a message
        // waits for the agent's ACK of the one before (Nagle).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            shutdown(),
        );
    let rest = axum::serve(
        listener,
        http::app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown());

    tracing::info!(data_dir = %config.data_dir.display(), "NxMesh master: REST API at http://{http_addr}/v1, agents at https://{grpc_addr}");
    if let Some(ca) = &identity.ca_path {
        tracing::info!(ca = %ca.display(), "agents trust the master's CA in this file");
    }
    let (rest, grpc) = tokio::join!(rest, grpc);
    rest.context("serving the REST API")?;
    grpc.context("serving the agent service")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (each server awaits its own copy);
/// in-flight requests then get a bounded grace period.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        tracing::warn!("grace period over; exiting");
        std::process::exit(0);
    });
}
