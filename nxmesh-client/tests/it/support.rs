//! Test support: a real master (REST on a real socket, optionally its gRPC
//! agent service) over a temporary SQLite database, and a hand-driven test
//! agent speaking the raw protocol.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use nxmesh_client::{Auth, Client, Config, RetryPolicy};
use nxmesh_core::model::DeploymentMode;
use nxmesh_core::protocol::{
    AgentAuth, AgentMessage, AgentPayload, MasterMessage, MasterPayload, RegistrationRequest,
    RegistrationResponse,
};
use nxmesh_proto::pb;
use nxmesh_proto::pb::agent_service_client::AgentServiceClient;
use nxmesh_server::auth::TokenKeys;
use nxmesh_server::db::SeaStore;
use nxmesh_server::grpc::{AgentService, AgentServiceSettings};
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, bootstrap, http};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

pub(crate) const ADMIN_EMAIL: &str = "admin@example.com";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A master listening on 127.0.0.1.
pub(crate) struct Master {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    pub(crate) state: AppState,
    /// Holds the database until the test ends.
    pub(crate) dir: tempfile::TempDir,
}

impl Master {
    pub(crate) async fn start() -> Master {
        Self::with(
            ApiSettings {
                rate_limit_per_minute: 100_000,
                ..ApiSettings::default()
            },
            900,
        )
        .await
    }

    /// A master with these settings and access tokens living `ttl` seconds.
    pub(crate) async fn with(settings: ApiSettings, ttl: i64) -> Master {
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
        let mut keys =
            TokenKeys::from_signing_key(&SigningKey::from_bytes(&[42u8; 32]), 60).unwrap();
        keys.access_ttl = ttl;
        let state = AppState::new(store, keys, SecretBox::new([9; 32]), settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = http::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Master {
            url: format!("http://{addr}"),
            state,
            dir,
        }
    }

    /// A client logged in as the administrator.
    pub(crate) fn admin(&self) -> Client {
        self.client(Auth::Login {
            email: ADMIN_EMAIL.into(),
            password: PASSWORD.into(),
        })
    }

    pub(crate) fn client(&self, auth: Auth) -> Client {
        Client::new(Config {
            retry: RetryPolicy {
                max_delay: Duration::from_secs(2),
                ..RetryPolicy::default()
            },
            ..Config::new(&self.url, auth)
        })
        .unwrap()
    }

    /// The master's agent service on 127.0.0.1 (plain HTTP/2).
    pub(crate) async fn grpc(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = AgentService::new(
            self.state.clone(),
            AgentServiceSettings {
                heartbeat_interval: Duration::from_secs(10),
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

    /// A fresh directory under the test's temporary directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A registered test agent: keep it alive to stay connected.
pub(crate) struct TestAgent {
    pub(crate) id: Uuid,
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::MasterMessage>,
}

impl TestAgent {
    /// Waits for the next `ConfigUpdate` and reports it applied; returns
    /// its version.
    pub(crate) async fn apply_next(&mut self) -> i64 {
        loop {
            let m: MasterMessage = self
                .rx
                .message()
                .await
                .unwrap()
                .unwrap()
                .try_into()
                .unwrap();
            if let MasterPayload::ConfigUpdate(u) = m.payload {
                let status = AgentMessage {
                    agent_id: Some(self.id),
                    timestamp: chrono::Utc::now(),
                    payload: AgentPayload::ConfigStatus(nxmesh_core::config::ConfigStatus {
                        config_id: u.config_id.clone(),
                        version: u.version,
                        status: nxmesh_core::config::ConfigApplyStatus::Success,
                        error_message: None,
                        applied_at: Some(chrono::Utc::now()),
                        config_checksum: Some(format!("sha256:{}", u.config_id)),
                    }),
                };
                self.tx.send(status.into()).await.unwrap();
                return u.version;
            }
        }
    }
}

/// Registers an agent with a registration token over the raw protocol.
pub(crate) async fn register_agent(grpc_url: &str, token: &str) -> TestAgent {
    let channel = tonic::transport::Channel::from_shared(grpc_url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    let hello: pb::AgentMessage = AgentMessage {
        agent_id: None,
        timestamp: chrono::Utc::now(),
        payload: AgentPayload::Registration(RegistrationRequest {
            auth: AgentAuth::Token(token.to_owned()),
            hostname: "web-01.internal".into(),
            ip_address: "10.0.1.10".into(),
            version: "0.1.0".into(),
            capabilities: vec!["http2".into()],
            labels: BTreeMap::new(),
            deployment_mode: DeploymentMode::Standalone,
            applied: None,
        }),
    }
    .into();
    tx.send(hello).await.unwrap();
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
            agent_id, ..
        }) => TestAgent {
            id: agent_id,
            tx,
            rx: inbound,
        },
        other => panic!("registration refused: {other:?}"),
    }
}
