//! The agent protocol end to end, over real gRPC sockets on loopback with
//! the generated client: registration and credentials, rollout to exactly
//! the targeted agents, the ledger, the WebSocket feed, disconnects and
//! heartbeat timeouts, commands, metrics and access logs.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use nxmesh_core::config::{ConfigApplyStatus, ConfigStatus};
use nxmesh_core::model::DeploymentMode;
use nxmesh_core::protocol::{
    AgentAuth, AgentMessage, AgentPayload, AppliedConfig, CommandKind, CommandResult, HealthReport,
    LogBatch, LogEntry, MasterMessage, MasterPayload, NginxStatus, RegistrationRequest,
    RegistrationResponse,
};
use nxmesh_proto::pb;
use nxmesh_proto::pb::agent_service_client::AgentServiceClient;
use nxmesh_server::grpc::{AgentService, AgentServiceSettings};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::support::{App, Backend, id};

/// The master's agent service on 127.0.0.1 (plain HTTP/2: TLS is covered
/// by its own test), beside the REST app.
async fn grpc(app: &App, heartbeat: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = AgentService::new(
        app.state.clone(),
        AgentServiceSettings {
            heartbeat_interval: heartbeat,
            admissions_per_second: 1000,
        },
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

/// A hand-driven agent: the raw protocol, so the test controls every message.
struct TestAgent {
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::MasterMessage>,
    id: Uuid,
}

fn message(agent: Option<Uuid>, payload: AgentPayload) -> pb::AgentMessage {
    AgentMessage {
        agent_id: agent,
        timestamp: chrono::Utc::now(),
        payload,
    }
    .into()
}

fn registration(auth: AgentAuth, hostname: &str, applied: Option<AppliedConfig>) -> AgentPayload {
    AgentPayload::Registration(RegistrationRequest {
        auth,
        hostname: hostname.into(),
        ip_address: "10.0.1.10".into(),
        version: "0.1.0".into(),
        capabilities: vec!["http2".into()],
        labels: BTreeMap::new(),
        deployment_mode: DeploymentMode::Standalone,
        applied,
    })
}

/// Opens a stream and registers; returns the agent, or the refusal.
async fn connect(
    url: &str,
    auth: AgentAuth,
    applied: Option<AppliedConfig>,
) -> Result<(TestAgent, Option<String>), (String, tonic::Status)> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    tx.send(message(
        None,
        registration(auth, "web-01.internal", applied),
    ))
    .await
    .unwrap();
    let mut inbound = client
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first: MasterMessage = inbound
        .message()
        .await
        .unwrap()
        .unwrap()
        .try_into()
        .unwrap();
    match first.payload {
        MasterPayload::RegistrationResponse(RegistrationResponse::Accepted {
            agent_id,
            heartbeat_interval_seconds,
            agent_credential,
        }) => {
            assert!(heartbeat_interval_seconds > 0);
            Ok((
                TestAgent {
                    tx,
                    rx: inbound,
                    id: agent_id,
                },
                agent_credential,
            ))
        }
        MasterPayload::RegistrationResponse(RegistrationResponse::Rejected { error_message }) => {
            let status = inbound
                .message()
                .await
                .expect_err("a refusal ends the stream with a status");
            Err((error_message, status))
        }
        other => panic!("expected a registration response, got {other:?}"),
    }
}

impl TestAgent {
    async fn send(&self, payload: AgentPayload) {
        self.tx.send(message(Some(self.id), payload)).await.unwrap();
    }

    /// The next message from the master, within `secs`.
    async fn next(&mut self, secs: u64) -> Option<MasterPayload> {
        match tokio::time::timeout(Duration::from_secs(secs), self.rx.message()).await {
            Ok(Ok(Some(m))) => Some(MasterMessage::try_from(m).unwrap().payload),
            _ => None,
        }
    }

    async fn healthy(&self) {
        self.send(AgentPayload::Health(HealthReport {
            nginx: NginxStatus {
                is_running: true,
                pid: 42,
                uptime_seconds: 10,
                active_connections: 3,
                total_requests: 100,
                requests_per_second: 1.5,
            },
            ..HealthReport::default()
        }))
        .await;
    }
}

async fn token(app: &App, ws: Uuid, name: &str, labels: Value) -> String {
    let t = app
        .post(
            &format!("/v1/workspaces/{ws}/agents/tokens"),
            &app.admin,
            json!({"name": name, "labels": labels}),
        )
        .await
        .ok(201);
    t["token"].as_str().unwrap().to_owned()
}

/// Polls until `f` holds (bounded).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn registration_credentials_and_revocation() {
    let app = App::new(Backend::Sqlite).await.unwrap();
    let url = grpc(&app, Duration::from_secs(10)).await;
    let (_, ws) = app.org_and_workspace(&app.admin, "acme").await;
    let tok = token(&app, ws, "web-01", json!({"env": "production"})).await;

    let (agent, credential) = connect(&url, AgentAuth::Token(tok.clone()), None)
        .await
        .expect("registration with a fresh token");
    let credential = credential.expect("first registration returns a credential");
    assert!(credential.starts_with("nxmesh_cred_"));
    agent.healthy().await;
    let path = format!("/v1/agents/{}", agent.id);
    eventually("agent online with health", || async {
        app.get(&path, &app.admin).await.body["health"]["nginx_status"] == "running"
    })
    .await;
    let a = app.get(&path, &app.admin).await.ok(200);
    assert_eq!(a["state"], "online");
    assert_eq!(a["hostname"], "web-01.internal");
    assert_eq!(a["deployment_mode"], "standalone");
    assert!(a["last_seen_at"].is_string());

    // The token is single-use.
    let (message, status) = connect(&url, AgentAuth::Token(tok), None)
        .await
        .err()
        .expect("token reuse is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(message.contains("token"), "{message}");

    // The credential resumes, without a new credential.
    drop(agent);
    let (again, none) = connect(&url, AgentAuth::Credential(credential.clone()), None)
        .await
        .expect("resume with the credential");
    assert!(none.is_none());
    drop(again);

    // A deleted agent's credential is refused.
    app.delete(&path, &app.admin).await.ok(204);
    let (_, status) = connect(&url, AgentAuth::Credential(credential), None)
        .await
        .err()
        .expect("deleted agents are refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn rollout_reaches_exactly_the_targeted_agents() {
    let app = App::new(Backend::Sqlite).await.unwrap();
    let url = grpc(&app, Duration::from_secs(10)).await;
    let (org, ws) = app.org_and_workspace(&app.admin, "acme").await;
    let (mut prod, _) = connect(
        &url,
        AgentAuth::Token(token(&app, ws, "prod", json!({"env": "production"})).await),
        None,
    )
    .await
    .unwrap();
    let (mut staging, _) = connect(
        &url,
        AgentAuth::Token(token(&app, ws, "staging", json!({"env": "staging"})).await),
        None,
    )
    .await
    .unwrap();

    // A WebSocket client of this organization, and one of another.
    let feed = format!("{}/v1/events", app_ws_url(&app).await);
    let mut mine = ws_connect(&feed, &app.admin).await;
    let sub =
        json!({"action": "subscribe", "events": ["config.*"], "filter": {"workspace_id": ws}});
    mine.send(tokio_tungstenite::tungstenite::Message::Text(
        sub.to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(ws_next(&mut mine).await["type"], "subscribed");
    let (_, outsider) = app.user("outsider@example.com").await;
    let mut theirs = ws_connect(&feed, &outsider).await;

    let up = app
        .post(
            &format!("/v1/workspaces/{ws}/upstreams"),
            &app.admin,
            json!({"name": "api", "servers": [{"address": "10.0.0.1:8080"}]}),
        )
        .await
        .ok(201);
    let vh = app
        .post(
            &format!("/v1/workspaces/{ws}/virtual-hosts"),
            &app.admin,
            json!({"name": "API", "server_name": "api.example.com", "listen_port": 80,
                   "locations": [{"path": "/", "upstream_id": up["id"]}],
                   "target_agents": {"type": "selector", "label_selector": "env=production"}}),
        )
        .await
        .ok(201);
    let Some(MasterPayload::ConfigUpdate(update)) = prod.next(10).await else {
        panic!("the production agent gets its configuration")
    };
    assert_eq!(update.version, 1);
    assert_eq!(update.virtual_hosts.len(), 1);
    assert_eq!(update.virtual_hosts[0].id, id(&vh));
    assert_eq!(update.upstreams.len(), 1, "with the upstream it uses");
    assert!(
        staging.next(1).await.is_none(),
        "the staging agent receives nothing"
    );

    prod.send(AgentPayload::ConfigStatus(ConfigStatus {
        config_id: update.config_id.clone(),
        version: 1,
        status: ConfigApplyStatus::Success,
        error_message: None,
        applied_at: Some(chrono::Utc::now()),
        config_checksum: Some("sha256:abc".into()),
    }))
    .await;
    let event = ws_next(&mut mine).await;
    assert_eq!(event["type"], "config.applied");
    assert_eq!(event["data"]["agent_id"], json!(prod.id));
    assert_eq!(event["data"]["version"], 1);
    assert_eq!(event["data"]["success"], true);
    assert!(
        ws_quiet(&mut theirs).await,
        "another organization's client sees nothing"
    );

    let rollout = app
        .get(&format!("/v1/workspaces/{ws}/rollout"), &app.admin)
        .await
        .ok(200);
    assert_eq!(
        rollout["summary"],
        json!({"total": 2, "in_sync": 2, "pending": 0, "failed": 0})
    );
    let row = rollout["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent_id"] == json!(prod.id))
        .unwrap()
        .clone();
    assert_eq!(row["applied_version"], 1);
    assert_eq!(row["config_checksum"], "sha256:abc");

    // A burst of changes is coalesced into one update.
    for i in 0..5 {
        app.patch(
            &format!("/v1/virtual-hosts/{}", id(&vh)),
            &app.admin,
            json!({"name": format!("API {i}")}),
        )
        .await
        .ok(200);
    }
    let Some(MasterPayload::ConfigUpdate(update)) = prod.next(10).await else {
        panic!("an update after the burst")
    };
    assert_eq!(update.virtual_hosts[0].spec.name, "API 4");
    assert!(prod.next(1).await.is_none(), "one update for the burst");
    assert!(staging.next(1).await.is_none());

    // A failed apply is recorded and published.
    prod.send(AgentPayload::ConfigStatus(ConfigStatus {
        config_id: update.config_id.clone(),
        version: update.version,
        status: ConfigApplyStatus::RolledBack,
        error_message: Some("nginx: [emerg] host not found in upstream".into()),
        applied_at: None,
        config_checksum: None,
    }))
    .await;
    let event = ws_next(&mut mine).await;
    assert_eq!(event["type"], "config.failed");
    assert_eq!(event["data"]["rolled_back"], true);
    eventually("the agent is degraded", || async {
        app.get(&format!("/v1/agents/{}", prod.id), &app.admin)
            .await
            .body["state"]
            == "degraded"
    })
    .await;
    let _ = org;
}

#[tokio::test]
async fn reconnect_converges_and_timeouts_go_offline() {
    let app = App::new(Backend::Sqlite).await.unwrap();
    let url = grpc(&app, Duration::from_secs(1)).await;
    let (_, ws) = app.org_and_workspace(&app.admin, "acme").await;
    let (mut agent, credential) = connect(
        &url,
        AgentAuth::Token(token(&app, ws, "a", json!({})).await),
        None,
    )
    .await
    .unwrap();
    let credential = credential.unwrap();
    let feed = format!("{}/v1/events", app_ws_url(&app).await);
    let mut events = ws_connect(&feed, &app.admin).await;
    let sub = json!({"action": "subscribe", "events": ["agent.*"]});
    events
        .send(tokio_tungstenite::tungstenite::Message::Text(
            sub.to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut events).await["type"], "subscribed");

    // Two changes while the agent is away; it gets the latest on reconnect.
    app.post(
        &format!("/v1/workspaces/{ws}/virtual-hosts"),
        &app.admin,
        json!({"name": "a", "server_name": "a.example.com", "listen_port": 80}),
    )
    .await
    .ok(201);
    let Some(MasterPayload::ConfigUpdate(first)) = agent.next(10).await else {
        panic!("first update")
    };
    drop(agent);
    let gone = ws_next(&mut events).await;
    assert_eq!(gone["type"], "agent.disconnected");
    assert_eq!(gone["data"]["reason"], "stream_closed");
    app.post(
        &format!("/v1/workspaces/{ws}/virtual-hosts"),
        &app.admin,
        json!({"name": "b", "server_name": "b.example.com", "listen_port": 80}),
    )
    .await
    .ok(201);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let applied = AppliedConfig {
        version: first.version,
        checksum: "x".into(),
    };
    let (mut agent, _) = connect(&url, AgentAuth::Credential(credential), Some(applied))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut events).await["type"], "agent.connected");
    let Some(MasterPayload::ConfigUpdate(latest)) = agent.next(10).await else {
        panic!("the latest on reconnect")
    };
    assert!(latest.version > first.version);
    assert_eq!(latest.virtual_hosts.len(), 2);

    // No heartbeat for three intervals: offline, with the reason.
    let timeout = ws_next(&mut events).await;
    assert_eq!(timeout["type"], "agent.disconnected");
    assert_eq!(timeout["data"]["reason"], "connection_timeout");
    assert_eq!(
        app.get(&format!("/v1/agents/{}", agent.id), &app.admin)
            .await
            .ok(200)["state"],
        "offline"
    );
}

#[tokio::test]
async fn commands_metrics_and_logs() {
    let app = App::new(Backend::Sqlite).await.unwrap();
    let url = grpc(&app, Duration::from_secs(10)).await;
    let (_, ws) = app.org_and_workspace(&app.admin, "acme").await;
    let (mut agent, _) = connect(
        &url,
        AgentAuth::Token(token(&app, ws, "a", json!({})).await),
        None,
    )
    .await
    .unwrap();
    let agent_id = agent.id;

    // Reload: the REST call waits for the agent's answer.
    let reload = {
        let app = &app;
        async move {
            app.post(
                &format!("/v1/agents/{agent_id}/reload"),
                &app.admin,
                json!({}),
            )
            .await
        }
    };
    let answer = async {
        let Some(MasterPayload::Command(cmd)) = agent.next(10).await else {
            panic!("a reload command")
        };
        assert_eq!(cmd.kind, CommandKind::Reload { graceful: true });
        agent
            .send(AgentPayload::CommandResult(CommandResult {
                command_id: cmd.command_id,
                success: true,
                message: String::new(),
                details: BTreeMap::new(),
            }))
            .await;
    };
    let (r, ()) = tokio::join!(reload, answer);
    let body = r.ok(200);
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Nginx reloaded successfully");

    // Access logs shipped on the stream come back from the query endpoint.
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:30:00Z")
        .unwrap()
        .to_utc();
    let fields = |status: &str| -> BTreeMap<String, String> {
        [
            ("remote_addr", "192.168.1.100"),
            ("method", "GET"),
            ("uri", "/api/error"),
            ("protocol", "HTTP/1.1"),
            ("host", "api.example.com"),
            ("status", status),
            ("body_bytes_sent", "123"),
            ("request_time", "0.150"),
            ("user_agent", "curl"),
            ("request_id", "req-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    agent
        .send(AgentPayload::Logs(LogBatch {
            entries: vec![
                LogEntry {
                    timestamp: at,
                    level: "access".into(),
                    message: String::new(),
                    fields: fields("500"),
                },
                LogEntry {
                    timestamp: at,
                    level: "access".into(),
                    message: String::new(),
                    fields: fields("200"),
                },
            ],
        }))
        .await;
    let q = format!(
        "/v1/workspaces/{ws}/access-logs?from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z&status_code=500"
    );
    eventually("access logs stored", || async {
        app.get(&q, &app.admin).await.body["meta"]["total"] == 1
    })
    .await;
    let logs = app.get(&q, &app.admin).await.ok(200);
    assert_eq!(logs["data"][0]["response_time_ms"], 150.0);
    assert_eq!(logs["data"][0]["agent_id"], json!(agent_id));

    // Offline: reload answers 503.
    drop(agent);
    eventually("agent offline", || async {
        app.get(&format!("/v1/agents/{agent_id}"), &app.admin)
            .await
            .body["state"]
            == "offline"
    })
    .await;
    app.post(
        &format!("/v1/agents/{agent_id}/reload"),
        &app.admin,
        json!({}),
    )
    .await
    .err(503, "SERVICE_UNAVAILABLE");
}

// ---- WebSocket helpers: the REST app on a real socket ----

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn app_ws_url(app: &App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("ws://{addr}")
}

async fn ws_connect(url: &str, token: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}?token={token}"))
        .await
        .unwrap();
    ws
}

async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn ws_quiet(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_)))) => return false,
            Ok(Some(Ok(_))) => {}
            Ok(_) => return true,
        }
    }
}
