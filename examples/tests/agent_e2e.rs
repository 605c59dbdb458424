//! The agent protocol end to end over real TLS sockets on loopback: the
//! master (REST app and `AgentService`, in process, with the CA and serving
//! certificate it makes for itself) and the real agent library
//! (`nxmesh_agent_lib::run`) with recording test handlers.
//!
//! These tests live in the examples crate because `nxmesh-server` and
//! `nxmesh-agent-lib` must never depend on each other, not even for tests.
//!
//! - registration with a token, refusal of its reuse, resumption with the
//!   stored credential, refusal of a deleted agent;
//! - a virtual host targeting `env=production` reaches exactly the matching
//!   agents, and their `ConfigStatus` lands in the ledger;
//! - a connection that goes dead (a partition, through a TCP proxy that
//!   stops forwarding) yields `agent.disconnected` and `offline` after the
//!   heartbeat timeout; healing it yields `agent.connected`, `online` and
//!   convergence to the latest version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::Method;
use nxmesh_agent_lib::{
    AgentConfig, AgentIdentity, ApplyOutcome, BackoffConfig, CancellationToken, CommandHandler,
    ConfigApplier, FatalError, Handlers, HealthSource, Timeouts,
};
use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::event::EventPayload;
use nxmesh_core::model::DeploymentMode;
use nxmesh_core::protocol::{AppliedConfig, Command, CommandResult, HealthReport, NginxStatus};
use nxmesh_core::transport::{EventEnvelope, EventSubscriber as _, EventSubscription};
use nxmesh_server::auth::TokenKeys;
use nxmesh_server::db::SeaStore;
use nxmesh_server::grpc::{AgentService, AgentServiceSettings};
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, agent_tls, bootstrap, http};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use uuid::Uuid;

mod common;
use common::{Rest, id};

const ADMIN_EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// The longest any wait of these tests may take.
const DEADLINE: Duration = Duration::from_secs(20);

// ---- The master, in process ----

/// The REST app (called without a socket) and the agent service on a TLS
/// socket on 127.0.0.1, over a fresh SQLite database.
struct Master {
    rest: Rest,
    state: AppState,
    /// `https://127.0.0.1:PORT` of the agent service.
    grpc_addr: std::net::SocketAddr,
    /// The master's own CA, which agents pin.
    ca_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Master {
    async fn start(heartbeat: Duration) -> Master {
        // Logs of master and agents when RUST_LOG is set; a second test in
        // the same binary finds the subscriber installed already.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db.sqlite").display()
        );
        let store = Arc::new(SeaStore::connect(&url).await.unwrap());
        bootstrap::ensure_first_admin(
            store.as_ref(),
            dir.path(),
            Some(ADMIN_EMAIL),
            Some(PASSWORD),
        )
        .await
        .unwrap();
        let keys = TokenKeys::load_or_create(&dir.path().join("jwt.pem"), 900).unwrap();
        let secrets = SecretBox::load_or_create(&dir.path().join("secret.key")).unwrap();
        let settings = ApiSettings {
            rate_limit_per_minute: 100_000,
            ..ApiSettings::default()
        };
        let state = AppState::new(store, keys, secrets, settings);

        // The TLS identity exactly as the binary makes it at first start.
        let identity =
            agent_tls::load_or_create(dir.path(), None, &["127.0.0.1".into(), "localhost".into()])
                .unwrap();
        let ca_file = identity
            .ca_path
            .clone()
            .expect("the master made its own CA");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = listener.local_addr().unwrap();
        let service = AgentService::new(
            state.clone(),
            AgentServiceSettings {
                heartbeat_interval: heartbeat,
                admissions_per_second: 1000,
            },
        );
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(
            &identity.certificate_pem,
            &identity.key_pem,
        ));
        tokio::spawn(
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(service.into_server())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        let rest = Rest::login(http::app(state.clone()), ADMIN_EMAIL, PASSWORD).await;
        Master {
            rest,
            state,
            grpc_addr,
            ca_file,
            dir,
        }
    }

    /// A new agent and its single-use registration token.
    async fn token(&self, ws: Uuid, name: &str, labels: Value) -> (Uuid, String) {
        let t = self
            .ok(
                Method::POST,
                &format!("/v1/workspaces/{ws}/agents/tokens"),
                Some(json!({"name": name, "labels": labels})),
                201,
            )
            .await;
        let agent = t["agent_id"].as_str().unwrap().parse().unwrap();
        (agent, t["token"].as_str().unwrap().to_owned())
    }

    async fn agent_state(&self, agent: Uuid) -> String {
        self.get(&format!("/v1/agents/{agent}")).await["state"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The agent's ledger row.
    async fn ledger(&self, agent: Uuid) -> Value {
        self.get(&format!("/v1/agents/{agent}/config")).await["config"].clone()
    }

    fn agent_url(&self) -> String {
        format!("https://{}", self.grpc_addr)
    }
}

/// Polls `f` until it holds, at most [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The next event about `agent` on the bus matching `pick`, within the
/// deadline.
async fn next_event<T>(
    events: &mut Box<dyn EventSubscription>,
    agent: Uuid,
    pick: impl Fn(&EventPayload) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let EventEnvelope { event, .. } = events.next_event().await.unwrap();
            let about = match &event.payload {
                EventPayload::AgentConnected(e) => Some(e.agent_id),
                EventPayload::AgentDisconnected(e) => Some(e.agent_id),
                EventPayload::ConfigApplied(e) => Some(e.agent_id),
                _ => None,
            };
            if about == Some(agent)
                && let Some(t) = pick(&event.payload)
            {
                return t;
            }
        }
    })
    .await;
    found.expect("the event in time")
}

// ---- The agent: the real library with recording handlers ----

/// Records every update it is handed and "applies" it, taking `delay`.
#[derive(Default)]
struct Recorder {
    updates: Mutex<Vec<ConfigUpdate>>,
    applied: Mutex<Option<AppliedConfig>>,
    delay: Duration,
}

impl Recorder {
    fn versions(&self) -> Vec<i64> {
        self.updates
            .lock()
            .unwrap()
            .iter()
            .map(|u| u.version)
            .collect()
    }

    fn last(&self) -> Option<ConfigUpdate> {
        self.updates.lock().unwrap().last().cloned()
    }
}

#[async_trait]
impl ConfigApplier for Recorder {
    async fn apply(&self, update: ConfigUpdate) -> ApplyOutcome {
        tokio::time::sleep(self.delay).await;
        let checksum = format!("sha256:{}", update.config_id);
        *self.applied.lock().unwrap() = Some(AppliedConfig {
            version: update.version,
            checksum: checksum.clone(),
        });
        self.updates.lock().unwrap().push(update);
        ApplyOutcome::success(checksum)
    }

    fn applied(&self) -> Option<AppliedConfig> {
        self.applied.lock().unwrap().clone()
    }
}

/// Answers every command with success.
struct Commands;

#[async_trait]
impl CommandHandler for Commands {
    async fn handle(&self, cmd: Command) -> CommandResult {
        CommandResult {
            command_id: cmd.command_id,
            success: true,
            message: "ok".into(),
            details: BTreeMap::new(),
        }
    }
}

/// A running nginx.
struct Healthy;

#[async_trait]
impl HealthSource for Healthy {
    async fn health(&self) -> HealthReport {
        HealthReport {
            nginx: NginxStatus {
                is_running: true,
                pid: 42,
                uptime_seconds: 10,
                active_connections: 1,
                total_requests: 1,
                requests_per_second: 0.1,
            },
            ..HealthReport::default()
        }
    }
}

/// One agent of a test: its handlers and credential file outlive the runs.
struct TestAgent {
    recorder: Arc<Recorder>,
    credential_file: PathBuf,
    hostname: String,
}

/// A running `nxmesh_agent_lib::run`.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), FatalError>>,
}

impl Running {
    /// Stops the agent gracefully (closing its stream) and waits.
    async fn stop(self) {
        self.stop.cancel();
        let r = tokio::time::timeout(DEADLINE, self.task).await;
        r.expect("the agent stops in time")
            .unwrap()
            .expect("a clean shutdown");
    }

    /// Waits for `run` to end by itself and returns its result.
    async fn ended(self) -> Result<(), FatalError> {
        let r = tokio::time::timeout(DEADLINE, self.task).await;
        r.expect("the agent stops by itself in time").unwrap()
    }
}

impl TestAgent {
    fn new(dir: &Path, hostname: &str) -> TestAgent {
        Self::with_apply_delay(dir, hostname, Duration::ZERO)
    }

    fn with_apply_delay(dir: &Path, hostname: &str, delay: Duration) -> TestAgent {
        TestAgent {
            recorder: Arc::new(Recorder {
                delay,
                ..Recorder::default()
            }),
            credential_file: dir.join(format!("{hostname}.credential")),
            hostname: hostname.into(),
        }
    }

    /// Starts `run` against `endpoint` (the master or a proxy in front of
    /// it), registering with `token` if no credential is stored yet.
    fn run(&self, master: &Master, endpoint: &str, token: Option<&str>) -> Running {
        let identity = AgentIdentity::new(&self.hostname, "127.0.0.1", DeploymentMode::Standalone);
        let mut config = AgentConfig::new(
            vec![endpoint.to_owned()],
            self.credential_file.clone(),
            identity,
        );
        config.ca_file = Some(master.ca_file.clone());
        // Dialing an address: the serving certificate names 127.0.0.1 too,
        // but verify the DNS name to cover `tls_server_name`.
        config.tls_server_name = Some("localhost".into());
        config.registration_token = token.map(str::to_owned);
        // Fast reconnects and a fast dead-connection check keep the test
        // short; the behaviour is the same as with the defaults.
        config.backoff = BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
            reset_after: Duration::from_secs(60),
        };
        config.timeouts = Timeouts {
            connect: Duration::from_secs(2),
            registration: Duration::from_secs(5),
            keepalive: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(2),
        };
        let handlers = Handlers {
            applier: self.recorder.clone(),
            commands: Arc::new(Commands),
            health: Arc::new(Healthy),
            telemetry: None,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(nxmesh_agent_lib::run(config, handlers, stop.clone()));
        Running { stop, task }
    }
}

// ---- Tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_reuse_resume_and_deletion_over_tls() {
    let master = Master::start(Duration::from_secs(1)).await;
    let ws = master.workspace().await;
    let (agent_id, token) = master
        .token(ws, "web-01", json!({"env": "production"}))
        .await;
    let mut events = master.state.events.subscribe();

    // Registration with the token, over TLS with the pinned CA.
    let web = TestAgent::new(master.dir.path(), "web-01");
    let running = web.run(&master, &master.agent_url(), Some(&token));
    let hostname = next_event(&mut events, agent_id, |p| match p {
        EventPayload::AgentConnected(e) => Some(e.hostname.clone()),
        _ => None,
    })
    .await;
    assert_eq!(hostname, "web-01");
    eventually("the agent is online", || async {
        master.agent_state(agent_id).await == "online"
    })
    .await;
    eventually("the credential is stored", || async {
        web.credential_file.exists()
    })
    .await;
    let credential = std::fs::read_to_string(&web.credential_file).unwrap();
    assert!(credential.starts_with("nxmesh_cred_"), "{credential}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&web.credential_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Reuse of the token by another agent (no credential of its own): a
    // final refusal, so `run` ends by itself.
    let thief = TestAgent::new(master.dir.path(), "thief");
    let refused = thief
        .run(&master, &master.agent_url(), Some(&token))
        .ended()
        .await;
    match refused {
        Err(FatalError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::FailedPrecondition);
            assert!(message.contains("token"), "{message}");
        }
        other => panic!("token reuse must be refused, got {other:?}"),
    }
    assert!(!thief.credential_file.exists());

    // Stop, then resume with the stored credential (no token any more).
    running.stop().await;
    let reason = next_event(&mut events, agent_id, |p| match p {
        EventPayload::AgentDisconnected(e) => Some(e.reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, "stream_closed");
    let running = web.run(&master, &master.agent_url(), None);
    next_event(&mut events, agent_id, |p| {
        matches!(p, EventPayload::AgentConnected(_)).then_some(())
    })
    .await;
    eventually("online again with the credential", || async {
        master.agent_state(agent_id).await == "online"
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&web.credential_file).unwrap(),
        credential,
        "resuming issues no new credential"
    );

    // Deleting the agent closes its stream; its credential is refused on
    // the reconnect, and the refusal is final.
    master
        .ok(Method::DELETE, &format!("/v1/agents/{agent_id}"), None, 204)
        .await;
    match running.ended().await {
        Err(FatalError::Refused { code, message }) => {
            assert_eq!(code, tonic::Code::FailedPrecondition);
            assert!(message.contains("credential"), "{message}");
        }
        other => panic!("a deleted agent must be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_rollout_reaches_exactly_the_matching_agents() {
    // A long heartbeat interval and staggered applies keep the agents'
    // writes apart: the SQLite store refuses concurrent ConfigStatus writes
    // (a deferred read-then-write transaction gets SQLITE_BUSY), the master
    // ends the stream, and the lost status is never recorded (see the
    // report of this work). Concurrency is the fleet benchmark's business.
    let master = Master::start(Duration::from_secs(10)).await;
    let ws = master.workspace().await;
    let mut agents = Vec::new();
    for (i, (name, env)) in [
        ("prod-1", "production"),
        ("prod-2", "production"),
        ("staging-1", "staging"),
    ]
    .into_iter()
    .enumerate()
    {
        let (agent_id, token) = master.token(ws, name, json!({"env": env})).await;
        let delay = Duration::from_millis(300) * u32::try_from(i).unwrap();
        let agent = TestAgent::with_apply_delay(master.dir.path(), name, delay);
        let running = agent.run(&master, &master.agent_url(), Some(&token));
        agents.push((agent_id, env, agent, running));
    }
    for (agent_id, ..) in &agents {
        eventually("every agent online", || async {
            master.agent_state(*agent_id).await == "online"
        })
        .await;
    }

    let upstream = master
        .ok(
            Method::POST,
            &format!("/v1/workspaces/{ws}/upstreams"),
            Some(json!({"name": "api", "servers": [{"address": "10.0.0.1:8080"}]})),
            201,
        )
        .await;
    let vhost = master
        .ok(
            Method::POST,
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            Some(json!({
                "name": "API", "server_name": "api.example.com", "listen_port": 80,
                "locations": [{"path": "/", "upstream_id": upstream["id"]}],
                "target_agents": {"type": "selector", "label_selector": "env=production"}
            })),
            201,
        )
        .await;

    // Every production agent applies it and the ledger records it.
    for (agent_id, env, agent, _) in &agents {
        if *env != "production" {
            continue;
        }
        eventually("the production agent applied the update", || async {
            !agent.recorder.versions().is_empty()
        })
        .await;
        let update = agent.recorder.last().unwrap();
        assert_eq!(update.version, 1);
        assert_eq!(update.virtual_hosts.len(), 1);
        assert_eq!(update.virtual_hosts[0].id, id(&vhost));
        assert_eq!(update.upstreams.len(), 1, "with the upstream it uses");
        eventually("the ConfigStatus lands in the ledger", || async {
            master.ledger(*agent_id).await["applied_version"] == 1
        })
        .await;
        let row = master.ledger(*agent_id).await;
        assert_eq!(row["desired_version"], 1);
        assert_eq!(row["last_status"], "success", "{row}");
        assert_eq!(
            row["config_checksum"],
            json!(format!("sha256:{}", update.config_id))
        );
    }
    // By the time both production agents reported, the staging agent's
    // update would have been pushed in the same rollout; give it a further
    // quiet period anyway.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (staging_id, _, staging, _) = &agents[2];
    assert!(
        staging.recorder.versions().is_empty(),
        "the staging agent receives nothing"
    );
    assert_eq!(master.ledger(*staging_id).await["desired_version"], 0);

    let rollout = master.get(&format!("/v1/workspaces/{ws}/rollout")).await;
    assert_eq!(
        rollout["summary"],
        json!({"total": 3, "in_sync": 3, "pending": 0, "failed": 0})
    );
    for (.., running) in agents {
        running.stop().await;
    }
}

/// A TCP proxy that can partition the network: while partitioned, bytes
/// in both directions of every connection open at that moment are
/// swallowed (the sockets stay open, as with a dead link), and new
/// connections are closed at once (as a rejecting firewall does); after
/// healing, new connections forward again.
///
/// New connections are rejected rather than blackholed because the agent
/// library bounds only the TCP connect of a dial, not the TLS handshake
/// (see the report of this work): a blackholed handshake would hang the
/// agent for good.
struct Proxy {
    addr: std::net::SocketAddr,
    partitioned: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            partitioned: Arc::new(AtomicBool::new(false)),
            connections: Arc::new(Mutex::new(Vec::new())),
        };
        let partitioned = proxy.partitioned.clone();
        let connections = proxy.connections.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if partitioned.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let dead = Arc::new(AtomicBool::new(false));
                connections.lock().unwrap().push(dead.clone());
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, dead.clone()));
                tokio::spawn(pipe(sr, cw, dead));
            }
        });
        proxy
    }

    fn partition(&self) {
        self.partitioned.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().iter() {
            c.store(true, Ordering::SeqCst);
        }
    }

    fn heal(&self) {
        self.partitioned.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either end closes; swallows while `dead`.
/// A dead link carries no FIN either: the other side's socket then stays
/// open (until the test's runtime ends).
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dead: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) if dead.load(Ordering::SeqCst) => {
                std::future::pending::<()>().await;
                return;
            }
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if dead.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_connection_goes_offline_and_reconnect_converges() {
    let heartbeat = Duration::from_secs(1);
    let master = Master::start(heartbeat).await;
    let proxy = Proxy::start(master.grpc_addr).await;
    let ws = master.workspace().await;
    let (agent_id, token) = master.token(ws, "edge-1", json!({})).await;
    let mut events = master.state.events.subscribe();
    let agent = TestAgent::new(master.dir.path(), "edge-1");
    let running = agent.run(&master, &format!("https://{}", proxy.addr), Some(&token));
    next_event(&mut events, agent_id, |p| {
        matches!(p, EventPayload::AgentConnected(_)).then_some(())
    })
    .await;

    let vhost = |name: &str| json!({"name": name, "server_name": format!("{name}.example.com"), "listen_port": 80});
    master
        .ok(
            Method::POST,
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            Some(vhost("a")),
            201,
        )
        .await;
    let first = next_event(&mut events, agent_id, |p| match p {
        EventPayload::ConfigApplied(e) => Some(e.version),
        _ => None,
    })
    .await;
    assert_eq!(agent.recorder.versions(), [first]);

    // The link dies without a FIN: the master hears no heartbeat for three
    // intervals and marks the agent offline.
    proxy.partition();
    let partitioned_at = Instant::now();
    // A change while the agent is cut off.
    master
        .ok(
            Method::POST,
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            Some(vhost("b")),
            201,
        )
        .await;
    let reason = next_event(&mut events, agent_id, |p| match p {
        EventPayload::AgentDisconnected(e) => Some(e.reason.clone()),
        _ => None,
    })
    .await;
    assert_eq!(reason, "connection_timeout");
    assert!(
        partitioned_at.elapsed() >= heartbeat * 2,
        "offline only after the timeout, not at once ({:?})",
        partitioned_at.elapsed()
    );
    assert_eq!(master.agent_state(agent_id).await, "offline");
    let desired = master.ledger(agent_id).await["desired_version"]
        .as_i64()
        .unwrap();
    assert!(desired > first, "the change bumped the desired version");
    assert_eq!(agent.recorder.versions(), [first], "nothing got through");

    // The link heals: the agent's own keepalive noticed the dead
    // connection; it redials, resumes with its credential, and receives the
    // latest version because it reports that it is behind.
    proxy.heal();
    next_event(&mut events, agent_id, |p| {
        matches!(p, EventPayload::AgentConnected(_)).then_some(())
    })
    .await;
    eventually("online again", || async {
        master.agent_state(agent_id).await == "online"
    })
    .await;
    eventually("converged to the latest version", || async {
        master.ledger(agent_id).await["applied_version"] == desired
    })
    .await;
    let latest = agent.recorder.last().unwrap();
    assert_eq!(latest.version, desired);
    assert_eq!(latest.virtual_hosts.len(), 2, "both virtual hosts");
    assert_eq!(agent.recorder.versions(), [first, desired]);
    running.stop().await;
}

impl std::ops::Deref for Master {
    type Target = Rest;

    fn deref(&self) -> &Rest {
        &self.rest
    }
}
