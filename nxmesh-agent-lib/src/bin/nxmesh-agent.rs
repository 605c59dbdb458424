//! The NxMesh agent: runs beside one nginx, applies the configuration the
//! master pushes, and reports health.
//!
//! In standalone mode it starts nginx (`-c DATA/live/nginx.conf`) and
//! restarts it if it dies; in the sidecar modes nginx is started elsewhere
//! with that same `-c` path on a shared volume and the agent signals the
//! pid in the pid file. Stopping the agent leaves nginx serving the last
//! applied configuration.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use nxmesh_agent_lib::health::RuntimeHealth;
use nxmesh_agent_lib::nginx::NginxMode;
use nxmesh_agent_lib::{
    AgentConfig, AgentIdentity, CancellationToken, Handlers, NginxRuntime, RuntimeConfig,
};
use nxmesh_core::model::{DeploymentMode, Labels};
use tracing_subscriber::EnvFilter;

/// How the agent runs beside nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The agent starts and supervises nginx.
    Standalone,
    /// nginx runs in another container sharing the configuration volume
    /// and the process namespace; the agent only signals it.
    #[value(alias = "external")]
    DockerSidecar,
    /// Like `docker-sidecar`, in a Kubernetes pod.
    KubernetesSidecar,
}

/// The NxMesh agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The master's gRPC endpoints (`https://host:port`), comma-separated;
    /// tried in turn.
    #[arg(
        long = "master",
        env = "NXMESH_MASTER",
        value_delimiter = ',',
        required = true
    )]
    masters: Vec<String>,
    /// PEM file of the CA that signed the master's certificate.
    #[arg(long, env = "NXMESH_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Name to verify in the master's certificate, when it differs from the
    /// endpoint's host.
    #[arg(long, env = "NXMESH_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// Single-use registration token, needed only until a credential is
    /// stored.
    #[arg(long, env = "NXMESH_REGISTRATION_TOKEN", hide_env_values = true)]
    registration_token: Option<String>,
    /// The agent's directory: credential, configuration trees, last known
    /// good.
    #[arg(long, env = "NXMESH_DATA_DIR", default_value = "/var/lib/nxmesh-agent")]
    data_dir: PathBuf,
    /// The nginx binary.
    #[arg(long, env = "NXMESH_NGINX", default_value = "/usr/sbin/nginx")]
    nginx_binary: PathBuf,
    /// nginx's prefix (`-p`); pid file, logs and temporary files go under
    /// it unless set below.
    #[arg(
        long,
        env = "NXMESH_NGINX_PREFIX",
        default_value = "/var/lib/nxmesh-agent/nginx"
    )]
    prefix: PathBuf,
    /// The pid file (absolute); defaults to PREFIX/logs/nginx.pid.
    #[arg(long, env = "NXMESH_NGINX_PID_FILE")]
    pid_file: Option<PathBuf>,
    /// How the agent runs beside nginx.
    #[arg(long, env = "NXMESH_MODE", value_enum, default_value = "standalone")]
    mode: Mode,
    /// Port of nginx's local status endpoint (127.0.0.1).
    #[arg(long, env = "NXMESH_STATUS_PORT", default_value_t = 18080)]
    status_port: u16,
    /// Address the virtual hosts listen on (default: every address).
    #[arg(long, env = "NXMESH_LISTEN_ADDRESS")]
    listen_address: Option<IpAddr>,
    /// Host name reported to the master (default: the kernel's).
    #[arg(long, env = "NXMESH_AGENT_HOSTNAME")]
    hostname: Option<String>,
    /// Address reported to the master.
    #[arg(long, env = "NXMESH_AGENT_ADDRESS", default_value = "127.0.0.1")]
    advertise_address: IpAddr,
    /// Labels reported to the master, `key=value`, comma-separated.
    #[arg(long, env = "NXMESH_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
}

impl Args {
    fn labels(&self) -> anyhow::Result<Labels> {
        self.labels
            .iter()
            .map(|l| {
                let (k, v) = l
                    .split_once('=')
                    .with_context(|| format!("label {l:?} is not key=value"))?;
                Ok((k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    fn absolute(&self) -> anyhow::Result<()> {
        for (what, p) in [
            ("--data-dir", Some(&self.data_dir)),
            ("--prefix", Some(&self.prefix)),
            ("--pid-file", self.pid_file.as_ref()),
        ] {
            if let Some(p) = p
                && !p.is_absolute()
            {
                anyhow::bail!("{what} must be an absolute path, not {}", p.display());
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Everything that can be checked without IO, before touching nginx or
    // dialing the master.
    args.absolute()?;
    let (nginx_mode, deployment) = match args.mode {
        Mode::Standalone => (NginxMode::Standalone, DeploymentMode::Standalone),
        Mode::DockerSidecar => (NginxMode::External, DeploymentMode::DockerSidecar),
        Mode::KubernetesSidecar => (NginxMode::External, DeploymentMode::KubernetesSidecar),
    };
    let hostname = match &args.hostname {
        Some(h) => h.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned()),
    };
    let mut identity = AgentIdentity::new(hostname, args.advertise_address.to_string(), deployment);
    identity.labels = args.labels()?;
    let mut agent = AgentConfig::new(
        args.masters.clone(),
        args.data_dir.join("credential"),
        identity,
    );
    agent.ca_file.clone_from(&args.ca_file);
    agent.tls_server_name.clone_from(&args.tls_server_name);
    agent
        .registration_token
        .clone_from(&args.registration_token);
    agent.validate().context("invalid agent configuration")?;

    let mut rc = RuntimeConfig::new(
        args.nginx_binary.clone(),
        args.prefix.clone(),
        args.data_dir.join("nginx"),
        nginx_mode,
    );
    if let Some(p) = &args.pid_file {
        rc.layout.pid_file = p.to_string_lossy().into_owned();
    }
    rc.status_port = args.status_port;
    rc.listen_address = args.listen_address;

    let runtime = NginxRuntime::open(rc)
        .await
        .context("cannot prepare the nginx runtime")?;
    tracing::info!(nginx = %runtime.nginx_version(), mode = ?args.mode, "nginx runtime ready");
    if nginx_mode == NginxMode::Standalone {
        let m = runtime
            .ensure_started()
            .await
            .context("cannot start nginx")?;
        tracing::info!(pid = m.pid, "nginx running");
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let supervisor = {
        let runtime = runtime.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { runtime.supervise(Duration::from_secs(5), shutdown).await })
    };
    let handlers = Handlers {
        applier: Arc::new(runtime.clone()),
        commands: Arc::new(runtime.clone()),
        health: Arc::new(RuntimeHealth::new(runtime.clone())),
        telemetry: None,
    };
    let result = nxmesh_agent_lib::run(agent, handlers, shutdown.clone()).await;
    shutdown.cancel();
    let _ = supervisor.await;
    result.context("the agent stopped")?;
    tracing::info!("stopped; nginx keeps serving the last applied configuration");
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::error!("cannot listen for SIGTERM");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
