//! The scripted fake master and fake runtime shared by the tests.
//!
//! The fake master implements the real tonic `AgentService`; each stream an
//! agent opens is handed to the test as a [`Conn`] after its first message,
//! and the test plays the master: it accepts or refuses, pushes messages and
//! reads what the agent sends. Every wait is bounded by [`WAIT`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nxmesh_agent_lib::{
    AgentConfig, AgentIdentity, ApplyOutcome, BackoffConfig, CommandHandler, ConfigApplier,
    FatalError, Handlers, HealthSource, Telemetry, TelemetrySource, Timeouts,
};
use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::model::DeploymentMode;
use nxmesh_core::protocol::{AppliedConfig, Command, CommandResult, HealthReport};
use nxmesh_proto::pb::{
    self, agent_message::Payload as Up, agent_service_server::AgentService,
    agent_service_server::AgentServiceServer, master_message::Payload as Down,
};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

/// The bound on every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut` for at most [`WAIT`].
pub(crate) async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One stream an agent opened.
pub(crate) struct Conn {
    /// The agent's first message.
    pub(crate) hello: pb::AgentMessage,
    inbound: mpsc::UnboundedReceiver<pb::AgentMessage>,
    outbound: mpsc::Sender<Result<pb::MasterMessage, Status>>,
}

impl Conn {
    /// The registration of the first message.
    pub(crate) fn registration(&self) -> &pb::RegistrationRequest {
        match &self.hello.payload {
            Some(Up::Registration(r)) => r,
            other => panic!("first message is not a registration: {other:?}"),
        }
    }

    /// Sends a master message.
    pub(crate) async fn push(&self, payload: Down) {
        let m = pb::MasterMessage {
            timestamp: chrono::Utc::now().timestamp_millis(),
            payload: Some(payload),
        };
        self.outbound.send(Ok(m)).await.expect("stream open");
    }

    /// Accepts the registration.
    pub(crate) async fn accept(&self, agent_id: Uuid, interval_s: i64, credential: Option<&str>) {
        self.push(Down::RegistrationResponse(pb::RegistrationResponse {
            agent_id: agent_id.to_string(),
            success: true,
            error_message: String::new(),
            heartbeat_interval_seconds: interval_s,
            agent_credential: credential.unwrap_or_default().to_owned(),
        }))
        .await;
    }

    /// Refuses the registration and ends the stream with `status`.
    pub(crate) async fn refuse(self, message: &str, status: Status) {
        self.push(Down::RegistrationResponse(pb::RegistrationResponse {
            agent_id: String::new(),
            success: false,
            error_message: message.to_owned(),
            heartbeat_interval_seconds: 0,
            agent_credential: String::new(),
        }))
        .await;
        self.end(status).await;
    }

    /// Ends the stream with `status`.
    pub(crate) async fn end(self, status: Status) {
        self.outbound.send(Err(status)).await.expect("stream open");
    }

    /// The next message from the agent.
    pub(crate) async fn next(&mut self) -> pb::AgentMessage {
        within("an agent message", self.inbound.recv())
            .await
            .expect("the agent closed the stream")
    }

    /// The next payload that is not a heartbeat.
    pub(crate) async fn next_non_health(&mut self) -> Up {
        loop {
            let m = self.next().await;
            match m.payload.expect("payload") {
                Up::Health(_) => continue,
                other => return other,
            }
        }
    }

    /// The next `ConfigStatus`, skipping heartbeats.
    pub(crate) async fn next_status(&mut self) -> pb::ConfigStatus {
        match self.next_non_health().await {
            Up::ConfigStatus(s) => s,
            other => panic!("expected a config status, got {other:?}"),
        }
    }

    /// The next `CommandResult`, skipping heartbeats.
    pub(crate) async fn next_command_result(&mut self) -> pb::CommandResult {
        match self.next_non_health().await {
            Up::CommandResult(r) => r,
            other => panic!("expected a command result, got {other:?}"),
        }
    }
}

struct Service {
    conns: mpsc::UnboundedSender<Conn>,
    unary: mpsc::UnboundedSender<Unary>,
}

/// A unary call the fake master received.
#[derive(Debug)]
pub(crate) struct Unary {
    /// `report_health` or `report_metrics`.
    pub(crate) method: &'static str,
    /// The `authorization` metadata, if any.
    pub(crate) authorization: Option<String>,
}

fn record<T>(
    tx: &mpsc::UnboundedSender<Unary>,
    method: &'static str,
    request: &Request<T>,
) -> Result<Response<pb::Ack>, Status> {
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = tx.send(Unary {
        method,
        authorization,
    });
    Ok(Response::new(pb::Ack {
        message_id: method.to_owned(),
        success: true,
        error_message: String::new(),
    }))
}

#[async_trait]
impl AgentService for Service {
    type StreamStream = ReceiverStream<Result<pb::MasterMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = request.into_inner();
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let conns = self.conns.clone();
        tokio::spawn(async move {
            let Ok(Some(hello)) = inbound.message().await else {
                return;
            };
            let conn = Conn {
                hello,
                inbound: in_rx,
                outbound: out_tx,
            };
            if conns.send(conn).is_err() {
                return;
            }
            while let Ok(Some(m)) = inbound.message().await {
                if in_tx.send(m).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    async fn report_health(
        &self,
        request: Request<pb::HealthReport>,
    ) -> Result<Response<pb::Ack>, Status> {
        record(&self.unary, "report_health", &request)
    }

    async fn report_metrics(
        &self,
        request: Request<pb::MetricsBatch>,
    ) -> Result<Response<pb::Ack>, Status> {
        record(&self.unary, "report_metrics", &request)
    }
}

/// A fake master serving on loopback.
pub(crate) struct FakeMaster {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<Conn>,
    /// The unary calls received.
    pub(crate) unary: mpsc::UnboundedReceiver<Unary>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

impl FakeMaster {
    /// Starts a plain-HTTP/2 master on a free port.
    pub(crate) async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), None).await
    }

    /// Starts a master on `addr`, over TLS with `identity` if given.
    pub(crate) async fn start_on(addr: SocketAddr, identity: Option<Identity>) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conns_tx, conns) = mpsc::unbounded_channel();
        let (unary_tx, unary) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut builder = Server::builder();
        if let Some(identity) = identity {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        let router = builder.add_service(AgentServiceServer::new(Service {
            conns: conns_tx,
            unary: unary_tx,
        }));
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        FakeMaster {
            addr,
            conns,
            unary,
            stop: Some(stop),
            server,
        }
    }

    /// `http://addr`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next stream an agent opens.
    pub(crate) async fn conn(&mut self) -> Conn {
        within("an agent connection", self.conns.recv())
            .await
            .expect("server running")
    }

    /// Whether a stream is waiting that was not taken.
    pub(crate) fn has_pending_conn(&mut self) -> bool {
        self.conns.try_recv().is_ok()
    }

    /// Stops the server; the streams of live `Conn`s must be ended first.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within("the server to stop", &mut self.server)
            .await
            .unwrap();
    }
}

/// A fake [`ConfigApplier`]: records every update, succeeds with checksum
/// `sum-<version>`, and can be held at a gate.
pub(crate) struct FakeApplier {
    applied: Mutex<Option<AppliedConfig>>,
    calls: mpsc::UnboundedSender<ConfigUpdate>,
    gate: Option<Arc<Semaphore>>,
}

impl FakeApplier {
    /// An applier and the receiver of its calls; with a gate, each apply
    /// waits for one permit.
    pub(crate) fn new(
        gate: Option<Arc<Semaphore>>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<ConfigUpdate>) {
        let (calls, rx) = mpsc::unbounded_channel();
        let a = FakeApplier {
            applied: Mutex::new(None),
            calls,
            gate,
        };
        (Arc::new(a), rx)
    }
}

#[async_trait]
impl ConfigApplier for FakeApplier {
    async fn apply(&self, update: ConfigUpdate) -> ApplyOutcome {
        let version = update.version;
        let _ = self.calls.send(update);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let checksum = format!("sum-{version}");
        *self.applied.lock().unwrap() = Some(AppliedConfig {
            version,
            checksum: checksum.clone(),
        });
        ApplyOutcome::success(checksum)
    }

    fn applied(&self) -> Option<AppliedConfig> {
        self.applied.lock().unwrap().clone()
    }
}

/// Answers every command with success and the command's kind.
pub(crate) struct FakeCommands;

#[async_trait]
impl CommandHandler for FakeCommands {
    async fn handle(&self, cmd: Command) -> CommandResult {
        CommandResult {
            // Deliberately wrong: the manager must answer with the command's id.
            command_id: "wrong".into(),
            success: true,
            message: format!("{:?}", cmd.kind),
            details: Default::default(),
        }
    }
}

/// Reports a running nginx.
pub(crate) struct FakeHealth;

#[async_trait]
impl HealthSource for FakeHealth {
    async fn health(&self) -> HealthReport {
        let mut h = HealthReport::default();
        h.nginx.is_running = true;
        h.nginx.pid = 42;
        h
    }
}

/// An agent configuration with short backoff, for `endpoints`, keeping its
/// credential in `dir`.
pub(crate) fn agent_config(endpoints: Vec<String>, dir: &Path, token: Option<&str>) -> AgentConfig {
    let mut identity = AgentIdentity::new("web-1", "127.0.0.1", DeploymentMode::Standalone);
    identity.labels.insert("env".into(), "test".into());
    identity.capabilities.push("http2".into());
    let mut c = AgentConfig::new(endpoints, credential_path(dir), identity);
    c.registration_token = token.map(str::to_owned);
    c.backoff = BackoffConfig {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        reset_after: Duration::from_secs(60),
    };
    c.timeouts = Timeouts {
        connect: Duration::from_secs(5),
        registration: Duration::from_secs(5),
        keepalive: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(5),
    };
    c
}

/// Where [`agent_config`] keeps the credential.
pub(crate) fn credential_path(dir: &Path) -> PathBuf {
    dir.join("state/credential")
}

/// A running agent.
pub(crate) struct Agent {
    /// Cancels it.
    pub(crate) shutdown: CancellationToken,
    handle: JoinHandle<Result<(), FatalError>>,
}

impl Agent {
    /// Starts `run` with the fake runtime around `applier`.
    pub(crate) fn start(config: AgentConfig, applier: Arc<FakeApplier>) -> Self {
        Self::start_with(config, applier, None)
    }

    /// Starts `run` with a telemetry source too.
    pub(crate) fn start_with(
        config: AgentConfig,
        applier: Arc<FakeApplier>,
        telemetry: Option<Arc<dyn TelemetrySource>>,
    ) -> Self {
        let handlers = Handlers {
            applier,
            commands: Arc::new(FakeCommands),
            health: Arc::new(FakeHealth),
            telemetry,
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(nxmesh_agent_lib::run(config, handlers, shutdown.clone()));
        Agent { shutdown, handle }
    }

    /// Waits for `run` to return by itself.
    pub(crate) async fn finished(self) -> Result<(), FatalError> {
        within("the agent to stop", self.handle).await.unwrap()
    }

    /// Cancels and waits; `run` must return `Ok`.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.finished().await.expect("clean shutdown");
    }
}

/// A valid (empty) configuration at `version`.
pub(crate) fn config_update(version: i64) -> Down {
    Down::ConfigUpdate(pb::ConfigUpdate {
        config_id: format!("cfg-{version}"),
        version,
        ..Default::default()
    })
}

/// Registers a fresh agent with `master`: returns the accepted connection
/// (first heartbeat consumed) and the agent id.
pub(crate) async fn registered(master: &mut FakeMaster, interval_s: i64) -> (Conn, Uuid) {
    let mut conn = master.conn().await;
    let id = Uuid::new_v4();
    conn.accept(id, interval_s, Some("cred-1")).await;
    match conn.next().await.payload {
        Some(Up::Health(_)) => {}
        other => panic!("expected the first heartbeat, got {other:?}"),
    }
    (conn, id)
}

/// Telemetry the test feeds through a channel.
pub(crate) struct ChannelTelemetry(
    pub(crate) tokio::sync::Mutex<mpsc::UnboundedReceiver<Telemetry>>,
);

#[async_trait]
impl TelemetrySource for ChannelTelemetry {
    async fn next(&self) -> Option<Telemetry> {
        self.0.lock().await.recv().await
    }
}
