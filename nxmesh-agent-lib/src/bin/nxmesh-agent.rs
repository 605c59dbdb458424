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
use nxmesh_agent_lib::accesslog::{AccessLogConfig, AccessLogShipper};
use nxmesh_agent_lib::drift::{
    CheckAfterApply, DriftConfig, DriftDetector, DriftHealth, DriftPolicy,
};
use nxmesh_agent_lib::health::RuntimeHealth;
use nxmesh_agent_lib::nginx::NginxMode;
use nxmesh_agent_lib::telemetry::{AgentTelemetry, EventQueue};
use nxmesh_agent_lib::upstream_health::{UpstreamHealth, UpstreamHealthConfig};
use nxmesh_agent_lib::{
    AgentConfig, AgentIdentity, CancellationToken, ConfigApplier as _, Handlers, NginxRuntime,
    RuntimeConfig,
};
use nxmesh_core::config::{ConfigApplyStatus, ConfigUpdate};
use nxmesh_core::model::{DeploymentMode, Labels};
use nxmesh_core::validate::Validate as _;
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
        required_unless_present = "config_file"
    )]
    masters: Vec<String>,
    /// A local model file (a configuration update as JSON: `config_id`,
    /// `version`, `virtual_hosts`, `upstreams`, `certificates`) to serve
    /// without a master: applied at start when its version is newer than
    /// the applied one; then the agent keeps nginx supervised and its
    /// upstreams health-checked until stopped. No master is dialed.
    #[arg(long, env = "NXMESH_CONFIG_FILE", conflicts_with = "masters")]
    config_file: Option<PathBuf>,
    /// With --config-file: apply it and exit (0 when nginx serves it, or
    /// already did); nginx keeps running.
    #[arg(long, requires = "config_file")]
    once: bool,
    /// The least time between two reloads caused by the active upstream
    /// health checks, in seconds.
    #[arg(long, env = "NXMESH_HEALTH_RELOAD_INTERVAL", default_value_t = 5)]
    health_reload_interval: u64,
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
    /// Ship nginx's JSON access log to the master and derive traffic
    /// metrics from it (`true` or `false`).
    #[arg(long, env = "NXMESH_SHIP_ACCESS_LOGS", default_value_t = true, action = clap::ArgAction::Set)]
    ship_access_logs: bool,
    /// Seconds between two traffic-metrics batches.
    #[arg(long, env = "NXMESH_METRICS_INTERVAL", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    metrics_interval: u64,
    /// Seconds between two checksums of the live configuration (drift
    /// detection); 0 turns drift detection off.
    #[arg(long, env = "NXMESH_DRIFT_INTERVAL", default_value_t = 30)]
    drift_interval: u64,
    /// What to do about an out-of-band edit of the live configuration:
    /// `revert` restores the last applied tree (`nginx -t`, then reload),
    /// `report` only reports it.
    #[arg(long, env = "NXMESH_DRIFT_POLICY", default_value = "revert")]
    drift_policy: DriftPolicy,
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
            ("--config-file", self.config_file.as_ref()),
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
    let local = match &args.config_file {
        Some(path) => Some(read_model(path)?),
        None => {
            agent.validate().context("invalid agent configuration")?;
            None
        }
    };

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

    if let Some(update) = local.clone() {
        let version = update.version;
        let out = runtime.apply(update).await;
        match out.status {
            ConfigApplyStatus::Success => {
                tracing::info!(version, checksum = ?out.checksum, "local configuration served");
            }
            status => {
                let why = out.error_message.unwrap_or_default();
                if args.once {
                    anyhow::bail!("the local configuration was not applied ({status:?}): {why}");
                }
                tracing::error!(?status, error = %why, "the local configuration was not applied");
            }
        }
        if args.once {
            return Ok(());
        }
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let supervisor = {
        let runtime = runtime.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { runtime.supervise(Duration::from_secs(5), shutdown).await })
    };
    let upstreams = UpstreamHealth::new(
        runtime.clone(),
        UpstreamHealthConfig {
            min_reload_interval: Duration::from_secs(args.health_reload_interval),
            ..UpstreamHealthConfig::default()
        },
    );
    let checker = {
        let upstreams = upstreams.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { upstreams.run(shutdown).await })
    };
    let events = EventQueue::new(256);
    let drift = DriftDetector::new(
        runtime.clone(),
        DriftConfig {
            interval: Duration::from_secs(args.drift_interval.max(1)),
            policy: args.drift_policy,
            snapshot_dir: args.data_dir.join("drift"),
        },
        events.clone(),
    );
    let drift_task = (args.drift_interval > 0).then(|| {
        let drift = drift.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { drift.run(shutdown).await })
    });
    let result = if local.is_some() {
        // No master: serve the local configuration until stopped.
        shutdown.cancelled().await;
        Ok(())
    } else {
        let access_logs = args.ship_access_logs.then(|| {
            let mut c = AccessLogConfig::new(
                PathBuf::from(&runtime.config().layout.access_log),
                args.data_dir.join("access-log.checkpoint.json"),
            );
            c.metrics_interval = Duration::from_secs(args.metrics_interval);
            c.status_port = Some(runtime.config().status_port);
            AccessLogShipper::start(c, shutdown.clone())
        });
        let handlers = Handlers {
            // Each successful apply is followed by a drift check, which
            // keeps the pristine copy of the new tree at once.
            applier: Arc::new(CheckAfterApply::new(runtime.clone(), drift.clone())),
            commands: Arc::new(runtime.clone()),
            health: Arc::new(DriftHealth::new(
                RuntimeHealth::new(runtime.clone()).with_upstream_health(upstreams),
                drift,
            )),
            telemetry: Some(Arc::new(AgentTelemetry::new(
                events,
                access_logs,
                shutdown.clone(),
            ))),
        };
        nxmesh_agent_lib::run(agent, handlers, shutdown.clone()).await
    };
    shutdown.cancel();
    let _ = supervisor.await;
    let _ = checker.await;
    if let Some(t) = drift_task {
        let _ = t.await;
    }
    result.context("the agent stopped")?;
    tracing::info!("stopped; nginx keeps serving the last applied configuration");
    Ok(())
}

/// Reads and validates a local model file (JSON).
fn read_model(path: &std::path::Path) -> anyhow::Result<ConfigUpdate> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let update: ConfigUpdate = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid configuration", path.display()))?;
    update
        .validate()
        .map_err(|e| anyhow::anyhow!("{} is not a valid configuration: {e}", path.display()))?;
    Ok(update)
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
