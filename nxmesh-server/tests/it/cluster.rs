//! Two `nxmesh-server` processes on one PostgreSQL database (issue 11):
//! changes made through one master reach agents connected to the other,
//! events cross over to the other master's WebSocket clients, and when a
//! master is killed its agents fail over (or are recorded offline) without
//! a human.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use nxmesh_agent_lib::{
    AgentConfig, AgentIdentity, ApplyOutcome, BackoffConfig, CancellationToken, CommandHandler,
    ConfigApplier, Handlers, HealthSource, Timeouts,
};
use nxmesh_client::{Auth, Client, Config};
use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::event::{EventFilter, EventPayload, Subscription};
use nxmesh_core::model::{
    AgentState, CreateOrganization, CreateRegistrationToken, CreateVirtualHost, CreateWorkspace,
    DeploymentMode, Labels, Location, TargetAgents, VirtualHostSpec,
};
use nxmesh_core::protocol::{AppliedConfig, Command as AgentCommand, CommandResult, HealthReport};
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::{Backend, fresh_database};

const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "cluster test password";
/// Long enough for a loaded CI machine; every wait ends as soon as it can.
const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One master process.
struct Master {
    child: Child,
    rest: String,
    grpc: String,
}

impl Master {
    /// Starts `nxmesh-server` on `database` with its data in `dir` and the
    /// keys every master of the cluster shares in `shared`.
    fn start(database: &str, dir: &Path, shared: &Path) -> Master {
        let (http, grpc) = (free_port(), free_port());
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nxmesh-server"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{http}"))
            .arg("--grpc-addr")
            .arg(format!("127.0.0.1:{grpc}"))
            .args(["--grpc-names", "127.0.0.1,localhost"])
            .args(["--heartbeat-interval", "1"])
            .arg("--jwt-key-file")
            .arg(shared.join("jwt.pem"))
            .arg("--secret-key-file")
            .arg(shared.join("secret.keys"))
            .env("DATABASE_URL", database)
            .env("NXMESH_ADMIN_EMAIL", EMAIL)
            .env("NXMESH_ADMIN_PASSWORD", PASSWORD)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nxmesh-server");
        Master {
            child,
            rest: format!("http://127.0.0.1:{http}"),
            grpc: format!("https://127.0.0.1:{grpc}"),
        }
    }

    /// Logs in, retrying until the master answers.
    async fn client(&self) -> Client {
        let client = Client::new(Config::new(
            &self.rest,
            Auth::Login {
                email: EMAIL.into(),
                password: PASSWORD.into(),
            },
        ))
        .unwrap();
        let start = Instant::now();
        while client.users().me().await.is_err() {
            assert!(start.elapsed() < DEADLINE, "{} never answered", self.rest);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records the versions it applies and the virtual hosts of the last one.
#[derive(Default)]
struct Recorder {
    versions: Mutex<Vec<i64>>,
    last: Mutex<Option<ConfigUpdate>>,
}

impl Recorder {
    fn server_names(&self) -> BTreeSet<String> {
        self.last
            .lock()
            .unwrap()
            .iter()
            .flat_map(|u| u.virtual_hosts.iter().map(|v| v.spec.server_name.clone()))
            .collect()
    }
}

#[async_trait]
impl ConfigApplier for Recorder {
    async fn apply(&self, update: ConfigUpdate) -> ApplyOutcome {
        self.versions.lock().unwrap().push(update.version);
        let checksum = format!("sha256:{}", update.config_id);
        *self.last.lock().unwrap() = Some(update);
        ApplyOutcome::success(checksum)
    }

    fn applied(&self) -> Option<AppliedConfig> {
        self.last.lock().unwrap().as_ref().map(|u| AppliedConfig {
            version: u.version,
            checksum: format!("sha256:{}", u.config_id),
        })
    }
}

struct NoCommands;

#[async_trait]
impl CommandHandler for NoCommands {
    async fn handle(&self, cmd: AgentCommand) -> CommandResult {
        CommandResult {
            command_id: cmd.command_id,
            success: false,
            message: "not in this test".into(),
            details: Default::default(),
        }
    }
}

struct Healthy;

#[async_trait]
impl HealthSource for Healthy {
    async fn health(&self) -> HealthReport {
        let mut h = HealthReport::default();
        h.nginx.is_running = true;
        h
    }
}

/// Runs an agent that dials `endpoints` in turn.
fn agent(
    endpoints: Vec<String>,
    ca: &Path,
    dir: &Path,
    name: &str,
    token: String,
) -> (Arc<Recorder>, CancellationToken) {
    let mut config = AgentConfig::new(
        endpoints,
        dir.join(format!("{name}.credential")),
        AgentIdentity::new(name, "127.0.0.1", DeploymentMode::Standalone),
    );
    config.ca_file = Some(ca.to_owned());
    config.registration_token = Some(token);
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
    let recorder = Arc::new(Recorder::default());
    let handlers = Handlers {
        applier: recorder.clone(),
        commands: Arc::new(NoCommands),
        health: Arc::new(Healthy),
        telemetry: None,
    };
    let stop = CancellationToken::new();
    tokio::spawn(nxmesh_agent_lib::run(config, handlers, stop.clone()));
    (recorder, stop)
}

fn vhost(name: &str) -> CreateVirtualHost {
    CreateVirtualHost {
        spec: VirtualHostSpec {
            name: name.into(),
            server_name: format!("{name}.example.com"),
            listen_port: 80,
            ssl_enabled: false,
            ssl_certificate_id: None,
            http2_enabled: false,
            http3_enabled: false,
            locations: vec![Location {
                path: "/".into(),
                modifier: None,
                upstream_id: None,
                proxy_pass: Some("http://127.0.0.1:9".into()),
                root: None,
                index: None,
                custom_headers: vec![],
                rewrite_rules: vec![],
                custom_directives: Default::default(),
            }],
            custom_directives: Default::default(),
        },
        target_agents: TargetAgents::Selector {
            label_selector: "env=production".into(),
        },
    }
}

/// Waits until `check` holds, polling.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No version applied twice, none going back.
fn strictly_increasing(versions: &[i64]) -> bool {
    versions.windows(2).all(|w| w[0] < w[1])
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nxmesh-{tag}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_share_changes_events_and_agents() {
    let Some(database) = fresh_database(Backend::Postgres).await else {
        return;
    };
    let root = tempdir("cluster");
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    let a = Master::start(&database, &dir_a, &shared);
    let client_a = a.client().await;
    // The masters share the agents' CA, so an agent trusts either.
    std::fs::create_dir_all(&dir_b).unwrap();
    for file in ["agent-ca.pem", "agent-ca.key"] {
        std::fs::copy(dir_a.join(file), dir_b.join(file)).unwrap();
    }
    let mut b = Master::start(&database, &dir_b, &shared);
    let client_b = b.client().await;
    let ca = dir_a.join("agent-ca.pem");

    let org = client_a
        .organizations()
        .create(&CreateOrganization {
            name: "Cluster".into(),
            slug: "cluster".into(),
        })
        .await
        .unwrap();
    let ws = client_a
        .workspaces(org.id)
        .create(&CreateWorkspace {
            name: "Prod".into(),
            slug: "prod".into(),
        })
        .await
        .unwrap();
    let production: Labels = [("env".to_owned(), "production".to_owned())]
        .into_iter()
        .collect();
    let token = |name: &'static str| {
        let client = client_a.clone();
        let labels = production.clone();
        async move {
            client
                .agents(ws.id)
                .create_registration_token(&CreateRegistrationToken {
                    name: name.into(),
                    labels,
                    expires_in_hours: None,
                })
                .await
                .unwrap()
        }
    };
    let mut events = client_a
        .events(Subscription {
            events: vec!["agent.*".into(), "config.*".into()],
            filter: Some(EventFilter {
                workspace_id: Some(ws.id),
            }),
        })
        .await
        .unwrap();

    // `roamer` prefers B and may fail over to A; `settled` stays on A;
    // `stranded` knows only B.
    let roamer_token = token("roamer").await;
    let settled_token = token("settled").await;
    let stranded_token = token("stranded").await;
    let (roamer, _stop_roamer) = agent(
        vec![b.grpc.clone(), a.grpc.clone()],
        &ca,
        &root,
        "roamer",
        roamer_token.token,
    );
    let (settled, _stop_settled) = agent(
        vec![a.grpc.clone()],
        &ca,
        &root,
        "settled",
        settled_token.token,
    );
    let (_stranded, _stop_stranded) = agent(
        vec![b.grpc.clone()],
        &ca,
        &root,
        "stranded",
        stranded_token.token,
    );

    // A virtual host created through A reaches the agent on B; A's
    // WebSocket client sees B's agent connect and apply.
    client_a
        .virtual_hosts(ws.id)
        .create(&vhost("first"))
        .await
        .unwrap();
    let mut connected = BTreeSet::new();
    let mut applied = BTreeSet::new();
    let deadline = Instant::now() + DEADLINE;
    while !(connected.contains(&roamer_token.agent_id) && applied.contains(&roamer_token.agent_id))
    {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("agent.connected and config.applied of the agent on B reach A's feed")
            .expect("the feed goes on")
            .unwrap();
        match event.payload {
            EventPayload::AgentConnected(e) => {
                connected.insert(e.agent_id);
            }
            EventPayload::ConfigApplied(e) if e.success => {
                applied.insert(e.agent_id);
            }
            _ => {}
        }
    }
    eventually(
        "the agent on B serves the virtual host made through A",
        || {
            let r = roamer.clone();
            async move { r.server_names().contains("first.example.com") }
        },
    )
    .await;

    // 100 concurrent changes, half through each master.
    let mut changes = Vec::new();
    for i in 0..100 {
        let client = if i % 2 == 0 { &client_a } else { &client_b }.clone();
        changes.push(tokio::spawn(async move {
            client
                .virtual_hosts(ws.id)
                .create(&vhost(&format!("site-{i}")))
                .await
                .map(|v| v.spec.server_name)
        }));
    }
    let mut expected: BTreeSet<String> = ["first.example.com".to_owned()].into();
    for c in changes {
        expected.insert(c.await.unwrap().expect("every change is acknowledged"));
    }
    for (name, rec, id) in [
        ("roamer", &roamer, roamer_token.agent_id),
        ("settled", &settled, settled_token.agent_id),
    ] {
        let client = client_b.clone();
        let wanted = expected.clone();
        eventually(
            &format!("{name} ends at the latest desired version with every change"),
            || {
                let (client, rec, wanted) = (client.clone(), rec.clone(), wanted.clone());
                async move {
                    let Ok(row) = client.agents(ws.id).config(id).await else {
                        return false;
                    };
                    row.config.desired_version > 0
                        && row.config.applied_version == row.config.desired_version
                        && rec.versions.lock().unwrap().last() == Some(&row.config.desired_version)
                        && rec.server_names() == wanted
                }
            },
        )
        .await;
        let versions = rec.versions.lock().unwrap().clone();
        assert!(
            strictly_increasing(&versions),
            "{name} applied {versions:?}"
        );
    }

    // SIGKILL B: the roamer fails over to A and converges; the stranded
    // agent, which knows only B, is recorded offline by A.
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let after = client_a
        .virtual_hosts(ws.id)
        .create(&vhost("after-failover"))
        .await
        .unwrap();
    expected.insert(after.spec.server_name);
    let roamer_id = roamer_token.agent_id;
    eventually("the roamer converges through A", || {
        let (rec, wanted) = (roamer.clone(), expected.clone());
        async move { rec.server_names() == wanted }
    })
    .await;
    eventually("the roamer is online through A", || {
        let client = client_a.clone();
        async move {
            client
                .agents(ws.id)
                .get(roamer_id)
                .await
                .is_ok_and(|a| a.state == AgentState::Online)
        }
    })
    .await;
    let stranded_id = stranded_token.agent_id;
    eventually("the agent stranded on the dead master goes offline", || {
        let client = client_a.clone();
        async move {
            client
                .agents(ws.id)
                .get(stranded_id)
                .await
                .is_ok_and(|a| a.state == AgentState::Offline)
        }
    })
    .await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("A's feed tells that the stranded agent went offline")
            .expect("the feed goes on")
            .unwrap();
        if let EventPayload::AgentDisconnected(e) = event.payload
            && e.agent_id == stranded_id
        {
            assert_eq!(e.reason, "master_lost");
            break;
        }
    }
    let versions = roamer.versions.lock().unwrap().clone();
    assert!(
        strictly_increasing(&versions),
        "roamer applied {versions:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
