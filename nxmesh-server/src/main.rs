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
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, bootstrap, http};
use tracing_subscriber::EnvFilter;

/// The NxMesh master: desired state, REST API, agents.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Config {
    /// Directory for the SQLite database, keys and the first administrator's
    /// generated password; created (mode 0700) if absent.
    #[arg(long, env = "NXMESH_DATA_DIR", default_value = "nxmesh-data")]
    data_dir: PathBuf,
    /// Address of the REST API.
    #[arg(long, env = "NXMESH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Database: `sqlite://PATH?mode=rwc` or `postgres://…`. Default: the
    /// SQLite file `nxmesh.db` in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Ed25519 PKCS#8 key signing access tokens. Default: generated in the
    /// data directory.
    #[arg(long, env = "NXMESH_JWT_KEY_FILE")]
    jwt_key_file: Option<PathBuf>,
    /// 32-byte key encrypting private keys at rest. Default: generated in
    /// the data directory.
    #[arg(long, env = "NXMESH_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
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
        if let Some(url) = &self.database_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                bail!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
            }
        }
        if !(60..=86_400).contains(&self.access_token_ttl) {
            bail!("--access-token-ttl must be between 60 and 86400 seconds");
        }
        if self.rate_limit_per_minute == 0 {
            bail!("--rate-limit-per-minute must be positive");
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
    let secrets = SecretBox::load_or_create(
        &config
            .secret_key_file
            .clone()
            .unwrap_or_else(|| config.data_dir.join("secret.key")),
    )?;
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

    let settings = ApiSettings {
        rate_limit_per_minute: config.rate_limit_per_minute,
        ..ApiSettings::default()
    };
    let state = AppState::new(store, keys, secrets, settings);
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "NxMesh master listening: REST API at http://{}/v1", listener.local_addr()?);
    axum::serve(
        listener,
        http::app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
    .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then get a bounded
/// grace period.
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
