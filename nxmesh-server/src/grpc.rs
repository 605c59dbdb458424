//! The gRPC `AgentService`: registration and resumption, heartbeats and
//! states, configuration status into the ledger, metrics and access logs
//! into storage, command answers to their waiters, events onto the bus.
//!
//! A stream speaks only for the agent it registered as: the agent id of
//! later messages is taken from the registration, never from the message.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use nxmesh_core::config::{ConfigApplyStatus, ConfigStatus};
use nxmesh_core::event::{
    AgentConnected, AgentDisconnected, ConfigApplied, ConfigFailed, Event, EventPayload,
    HealthAlert,
};
use nxmesh_core::model::{AccessLogEntry, Agent, AgentHealth, AgentState, NginxRunState};
use nxmesh_core::protocol::{
    Ack, AgentAuth, AgentPayload, AppliedConfig, HealthReport, LogBatch, MasterMessage,
    MasterPayload, RegistrationRequest, RegistrationResponse,
};
use nxmesh_core::storage::{AgentIdentity, AgentStateRecord, StorageError};
use nxmesh_core::transport::{AgentSender as _, EventEnvelope, EventPublisher as _};
use nxmesh_proto::pb;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::auth::{hash_secret, new_secret};
use crate::fleet::Next;
use crate::reports::ReportWriter;
use crate::rollout::build_config;
use crate::state::AppState;
use crate::wire::{AgentServer, Outgoing};

/// Prefix of durable agent credentials.
pub const CREDENTIAL_PREFIX: &str = "nxmesh_cred_";
/// How long a new stream may take to send its registration.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeats an agent may miss before it counts as offline.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Tunables of the agent service.
#[derive(Debug, Clone)]
pub struct AgentServiceSettings {
    /// The heartbeat interval agents are told to keep.
    pub heartbeat_interval: Duration,
    /// New streams admitted per second (reconnect storms queue up).
    pub admissions_per_second: u32,
}

impl Default for AgentServiceSettings {
    fn default() -> Self {
        AgentServiceSettings {
            heartbeat_interval: Duration::from_secs(10),
            admissions_per_second: 500,
        }
    }
}

/// The `AgentService` implementation.
#[derive(Debug, Clone)]
pub struct AgentService {
    state: AppState,
    settings: AgentServiceSettings,
    admission: Arc<Admission>,
    reports: ReportWriter,
}

impl AgentService {
    /// The service over the master's state.
    pub fn new(state: AppState, settings: AgentServiceSettings) -> AgentService {
        let admission = Arc::new(Admission::new(settings.admissions_per_second));
        let reports = ReportWriter::spawn(state.store.clone());
        AgentService {
            state,
            settings,
            admission,
            reports,
        }
    }

    /// The tonic server for it: `Stream` writes configurations encoded
    /// once for many agents (see [`crate::wire`]).
    pub fn into_server(self) -> AgentServer {
        AgentServer::new(self)
    }
}

/// A token bucket for new streams: a restart with thousands of agents is
/// admitted at a bounded rate; a stream that cannot get a token within a
/// few seconds is told to come back later (`UNAVAILABLE`, retried with
/// backoff by the agent).
#[derive(Debug)]
struct Admission {
    rate: f64,
    bucket: Mutex<(Instant, f64)>,
}

impl Admission {
    fn new(per_second: u32) -> Admission {
        let rate = f64::from(per_second.max(1));
        Admission {
            rate,
            bucket: Mutex::new((Instant::now(), rate)),
        }
    }

    async fn admit(&self) -> Result<(), Status> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let wait = {
                let mut b = self.bucket.lock().await;
                let now = Instant::now();
                b.1 = (b.1 + now.duration_since(b.0).as_secs_f64() * self.rate).min(self.rate);
                b.0 = now;
                if b.1 >= 1.0 {
                    b.1 -= 1.0;
                    return Ok(());
                }
                Duration::from_secs_f64((1.0 - b.1) / self.rate)
            };
            if Instant::now() + wait > deadline {
                return Err(Status::unavailable(
                    "the master is admitting agents at its limit; retry later",
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

fn internal(e: StorageError) -> Status {
    tracing::error!(error = %e, "storage failed in the agent service");
    Status::unavailable("storage unavailable")
}

type MasterStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send + 'static>>;

/// What the served `Stream` method writes (see [`crate::wire`]).
pub(crate) type OutgoingStream =
    Pin<Box<dyn Stream<Item = Result<Outgoing, Status>> + Send + 'static>>;

fn master(payload: MasterPayload) -> pb::MasterMessage {
    MasterMessage {
        timestamp: Utc::now(),
        payload,
    }
    .into()
}

/// A refused registration: the answer, then `FAILED_PRECONDITION`.
fn refuse(message: &str) -> OutgoingStream {
    let resp = master(MasterPayload::RegistrationResponse(
        RegistrationResponse::Rejected {
            error_message: message.to_owned(),
        },
    ));
    Box::pin(tokio_stream::iter(vec![
        Ok(Outgoing::Message(Box::new(resp))),
        Err(Status::failed_precondition(message.to_owned())),
    ]))
}

/// Who a connection is, for events and storage.
#[derive(Debug, Clone)]
struct Peer {
    agent: Agent,
    organization_id: Uuid,
}

impl AgentService {
    async fn publish(&self, peer: &Peer, payload: EventPayload) {
        let envelope = EventEnvelope {
            organization_id: peer.organization_id,
            workspace_id: peer.agent.workspace_id,
            event: Event {
                timestamp: Utc::now(),
                payload,
            },
        };
        let _ = self.state.events.publish(envelope).await;
    }

    /// Checks the token or credential. `Ok(Err(message))` is a refusal.
    async fn authenticate(
        &self,
        reg: &RegistrationRequest,
    ) -> Result<Result<(Agent, Option<String>), String>, Status> {
        match &reg.auth {
            AgentAuth::Token(token) => {
                let credential =
                    new_secret(CREDENTIAL_PREFIX).map_err(|e| Status::internal(e.to_string()))?;
                let identity = AgentIdentity {
                    hostname: reg.hostname.clone(),
                    ip_address: reg.ip_address.clone(),
                    version: reg.version.clone(),
                    capabilities: reg.capabilities.clone(),
                    deployment_mode: reg.deployment_mode,
                };
                match self
                    .state
                    .store
                    .register_agent(
                        &hash_secret(token),
                        Utc::now(),
                        &identity,
                        &hash_secret(&credential),
                    )
                    .await
                {
                    Ok(agent) => Ok(Ok((agent, Some(credential)))),
                    Err(StorageError::NotFound { .. }) => Ok(Err(
                        "the registration token is unknown, already used or expired".into(),
                    )),
                    Err(e) => Err(internal(e)),
                }
            }
            AgentAuth::Credential(c) => {
                match self.state.store.agent_by_credential(&hash_secret(c)).await {
                    Ok(Some(agent)) => Ok(Ok((agent, None))),
                    Ok(None) => Ok(Err(
                        "the agent credential is unknown or revoked (was the agent deleted?)"
                            .into(),
                    )),
                    Err(e) => Err(internal(e)),
                }
            }
        }
    }

    async fn peer(&self, agent: Agent) -> Result<Peer, Status> {
        let ws = self
            .state
            .store
            .get_workspace(agent.workspace_id)
            .await
            .map_err(internal)?;
        let ws = ws.ok_or_else(|| Status::failed_precondition("the agent's workspace is gone"))?;
        Ok(Peer {
            agent,
            organization_id: ws.organization_id,
        })
    }

    /// Sends the latest configuration when the agent is behind it.
    async fn converge(&self, peer: &Peer, reported: Option<&AppliedConfig>) -> Result<(), Status> {
        let id = peer.agent.id;
        let mut ledger = self.state.store.agent_ledger(id).await.map_err(internal)?;
        let applied = reported.map_or(0, |a| a.version);
        if let Some(r) = reported.filter(|r| r.version > ledger.applied_version) {
            // The agent applied a version whose status never reached us (the
            // connection dropped first): record what it says it serves.
            let status = ConfigStatus {
                config_id: String::new(),
                version: r.version,
                status: ConfigApplyStatus::Success,
                error_message: None,
                applied_at: None,
                config_checksum: Some(r.checksum.clone()),
            };
            ledger = self
                .state
                .store
                .record_config_status(id, &status)
                .await
                .map_err(internal)?;
        }
        if ledger.desired_version == 0 {
            // Never targeted: if something targets it now (it registered
            // after the virtual hosts were made), start at version 1.
            let probe = build_config(self.state.store.as_ref(), &self.state.secrets, id, 0)
                .await
                .map_err(internal)?;
            if !probe.virtual_hosts.is_empty() {
                self.state.rollout.agents_changed(vec![id]);
            }
            return Ok(());
        }
        if applied >= ledger.desired_version {
            return Ok(());
        }
        let update = build_config(
            self.state.store.as_ref(),
            &self.state.secrets,
            id,
            ledger.desired_version,
        )
        .await
        .map_err(internal)?;
        let _ = self
            .state
            .fleet
            .send(id, MasterPayload::ConfigUpdate(Box::new(update)))
            .await;
        Ok(())
    }
}

/// What one stream remembers between messages.
struct Session {
    peer: Peer,
    alerts: BTreeSet<String>,
    last_failed: bool,
    pushed: HashMap<i64, Instant>,
}

impl AgentService {
    async fn on_health(&self, s: &mut Session, h: HealthReport) -> Result<(), StorageError> {
        let degraded = !h.nginx.is_running || !h.alerts.is_empty() || s.last_failed;
        let state = if degraded {
            AgentState::Degraded
        } else {
            AgentState::Online
        };
        let health = AgentHealth {
            nginx_status: if h.nginx.is_running {
                NginxRunState::Running
            } else {
                NginxRunState::Stopped
            },
            nginx_uptime_seconds: h.nginx.uptime_seconds,
            active_connections: u64::from(h.nginx.active_connections),
            requests_per_second: f64::from(h.nginx.requests_per_second),
            cpu_percent: f64::from(h.system.cpu_percent),
            memory_used_mb: h.system.memory_used_bytes / (1024 * 1024),
            config_version: h.config_version,
        };
        self.reports
            .state(AgentStateRecord {
                agent_id: s.peer.agent.id,
                state,
                seen_at: Utc::now(),
                health: Some(health),
            })
            .await?;
        let current: BTreeSet<String> = h.alerts.iter().map(|a| a.id.clone()).collect();
        for a in &h.alerts {
            if !s.alerts.contains(&a.id) {
                let alert = HealthAlert {
                    agent_id: s.peer.agent.id,
                    alert_id: a.id.clone(),
                    severity: a.severity,
                    message: a.message.clone(),
                    metric: None,
                    value: None,
                };
                self.publish(&s.peer, EventPayload::HealthAlert(alert))
                    .await;
            }
        }
        s.alerts = current;
        Ok(())
    }

    async fn on_status(&self, s: &mut Session, st: ConfigStatus) -> Result<(), StorageError> {
        let row = self.reports.status(s.peer.agent.id, st.clone()).await?;
        if st.version < row.applied_version {
            // A late report about an older version: nothing to publish.
            return Ok(());
        }
        let duration_ms = s
            .pushed
            .remove(&st.version)
            .map_or(0, |t| t.elapsed().as_millis() as u64);
        match st.status {
            ConfigApplyStatus::Success => {
                s.last_failed = false;
                let e = ConfigApplied {
                    agent_id: s.peer.agent.id,
                    config_id: st.config_id,
                    version: st.version,
                    duration_ms,
                    success: true,
                };
                self.publish(&s.peer, EventPayload::ConfigApplied(e)).await;
            }
            ConfigApplyStatus::Failed | ConfigApplyStatus::RolledBack => {
                s.last_failed = true;
                self.state
                    .store
                    .record_agent_state(s.peer.agent.id, AgentState::Degraded, Utc::now(), None)
                    .await?;
                let e = ConfigFailed {
                    agent_id: s.peer.agent.id,
                    config_id: st.config_id,
                    version: st.version,
                    rolled_back: st.status == ConfigApplyStatus::RolledBack,
                    error: st.error_message.unwrap_or_default(),
                };
                self.publish(&s.peer, EventPayload::ConfigFailed(e)).await;
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_logs(&self, s: &Session, logs: LogBatch) -> Result<(), StorageError> {
        let entries: Vec<AccessLogEntry> = logs
            .entries
            .iter()
            .filter(|e| e.level == "access")
            .filter_map(|e| AccessLogEntry::from_log_entry(Uuid::new_v4(), s.peer.agent.id, e))
            .collect();
        self.state.store.insert_access_logs(&entries).await
    }

    /// Handles one message; `Err` ends the stream.
    async fn on_message(&self, s: &mut Session, msg: pb::AgentMessage) -> Result<(), Status> {
        let msg = nxmesh_core::protocol::AgentMessage::try_from(msg)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let r = match msg.payload {
            AgentPayload::Registration(_) => {
                return Err(Status::invalid_argument(
                    "registration is only the first message",
                ));
            }
            // Health, metrics and logs come again: a write that failed now
            // (the database busy or away) is logged, and the stream stays,
            // rather than sending the fleet into a reconnect storm.
            AgentPayload::Health(h) => {
                let r = self.on_health(s, h).await;
                transient(s, "health", r)
            }
            AgentPayload::ConfigStatus(st) => self.on_status(s, st).await,
            AgentPayload::Metrics(m) => transient(
                s,
                "metrics",
                self.state.store.insert_metrics(s.peer.agent.id, &m).await,
            ),
            AgentPayload::Logs(l) => transient(s, "logs", self.on_logs(s, l).await),
            AgentPayload::CommandResult(r) => {
                self.state.fleet.complete(r);
                Ok(())
            }
            AgentPayload::Event(e) => {
                tracing::debug!(agent = %s.peer.agent.id, event_type = %e.event_type, "agent event");
                Ok(())
            }
        };
        r.map_err(internal)
    }
}

/// Logs the failure of a write that the agent repeats anyway.
fn transient(s: &Session, what: &str, r: Result<(), StorageError>) -> Result<(), StorageError> {
    match r {
        Err(e @ (StorageError::Unavailable(_) | StorageError::Backend(_))) => {
            tracing::warn!(agent = %s.peer.agent.id, error = %e, report = what, "could not store a report; the next one is");
            Ok(())
        }
        other => other,
    }
}

/// Authenticates a unary call by its `authorization: Bearer <credential>`.
async fn unary_agent(
    state: &AppState,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<Agent, Status> {
    let cred = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Status::unauthenticated("expected authorization: Bearer <agent credential>")
        })?;
    state
        .store
        .agent_by_credential(&hash_secret(cred))
        .await
        .map_err(internal)?
        .ok_or_else(|| Status::unauthenticated("unknown or revoked agent credential"))
}

fn ack() -> pb::Ack {
    Ack {
        message_id: Uuid::new_v4().to_string(),
        success: true,
        error_message: String::new(),
    }
    .into()
}

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentService {
    type StreamStream = MasterStream;

    /// The generic path (the served one is `AgentService::open_stream`
    /// through [`AgentServer`]): the same stream, as generated messages.
    async fn stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let response = self.open_stream(request).await?;
        let (meta, stream, ext) = response.into_parts();
        let messages: MasterStream =
            Box::pin(stream.map(|item| item.and_then(Outgoing::into_message)));
        Ok(Response::from_parts(meta, messages, ext))
    }

    async fn report_health(
        &self,
        request: Request<pb::HealthReport>,
    ) -> Result<Response<pb::Ack>, Status> {
        let agent = unary_agent(&self.state, request.metadata()).await?;
        let report = HealthReport::try_from(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let peer = self.peer(agent).await?;
        let ledger = self
            .state
            .store
            .agent_ledger(peer.agent.id)
            .await
            .map_err(internal)?;
        let mut s = Session {
            peer,
            alerts: BTreeSet::new(),
            last_failed: ledger.failed(),
            pushed: HashMap::new(),
        };
        self.on_health(&mut s, report).await.map_err(internal)?;
        Ok(Response::new(ack()))
    }

    async fn report_metrics(
        &self,
        request: Request<pb::MetricsBatch>,
    ) -> Result<Response<pb::Ack>, Status> {
        let agent = unary_agent(&self.state, request.metadata()).await?;
        let batch = nxmesh_core::protocol::MetricsBatch::try_from(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.state
            .store
            .insert_metrics(agent.id, &batch)
            .await
            .map_err(internal)?;
        Ok(Response::new(ack()))
    }
}

impl AgentService {
    /// Serves one agent's stream: registration, then its messages in and
    /// its configuration and commands out, until it ends.
    pub(crate) async fn open_stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<OutgoingStream>, Status> {
        self.admission.admit().await?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTRATION_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no registration within 10 s"))??
            .ok_or_else(|| Status::invalid_argument("the stream closed before registration"))?;
        let first = nxmesh_core::protocol::AgentMessage::try_from(first)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let AgentPayload::Registration(reg) = first.payload else {
            return Err(Status::invalid_argument(
                "the first message must be a registration",
            ));
        };
        let (agent, credential) = match self.authenticate(&reg).await? {
            Ok(found) => found,
            Err(message) => {
                tracing::info!(reason = %message, "agent registration refused");
                return Ok(Response::new(refuse(&message)));
            }
        };
        let peer = self.peer(agent).await?;
        let id = peer.agent.id;
        let (outbound, generation) = self.state.fleet.attach(id);
        // With several masters, the presence lease says which stream speaks
        // for the agent: this one, from now on.
        let presence = Uuid::new_v4();
        if let Some(cluster) = &self.state.cluster
            && let Err(e) = cluster.claim(id, presence).await
        {
            self.state.fleet.detach(id, generation);
            tracing::error!(agent = %id, error = %e, "could not record the agent's presence");
            return Err(Status::unavailable("storage unavailable"));
        }
        self.state
            .store
            .record_agent_state(id, AgentState::Online, Utc::now(), None)
            .await
            .map_err(internal)?;
        tracing::info!(agent = %id, hostname = %reg.hostname, generation, "agent connected");
        self.publish(
            &peer,
            EventPayload::AgentConnected(AgentConnected {
                agent_id: id,
                hostname: reg.hostname.clone(),
                ip_address: reg.ip_address.clone(),
            }),
        )
        .await;

        // What the stream sends: the answer to the registration, then the
        // agent's configurations and commands as they come, and an error
        // status if the inbound side ends the stream (`out`).
        let (out, out_rx) = mpsc::channel::<Result<Outgoing, Status>>(1);
        let heartbeat = self.settings.heartbeat_interval;
        let welcome = RegistrationResponse::Accepted {
            agent_id: id,
            heartbeat_interval_seconds: i64::try_from(heartbeat.as_secs()).unwrap_or(10).max(1),
            agent_credential: credential,
        };
        let welcome = Outgoing::Message(Box::new(master(MasterPayload::RegistrationResponse(
            welcome,
        ))));
        let pushed_tx = Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
        let pushed_log = pushed_tx.clone();
        let queued = futures_util::stream::unfold(outbound, move |mut outbound| {
            let pushed_log = pushed_log.clone();
            async move {
                let message = match outbound.next().await? {
                    Next::Message(payload) => Outgoing::Message(Box::new(master(payload))),
                    Next::Config(config, version) => {
                        pushed_log
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(version);
                        Outgoing::config(config, version)
                    }
                };
                Some((Ok(message), outbound))
            }
        });
        let sent: OutgoingStream = Box::pin(
            tokio_stream::once(Ok(welcome)).chain(queued.merge(ReceiverStream::new(out_rx))),
        );

        if let Err(status) = self.converge(&peer, reg.applied.as_ref()).await {
            // The stream stays up; the agent gets the latest version with
            // the next change or reconnect.
            tracing::warn!(agent = %id, error = %status, "could not send the latest configuration on connect");
        }

        // Inbound: until the stream ends or heartbeats stop.
        let svc = self.clone();
        tokio::spawn(async move {
            let mut session = Session {
                peer,
                alerts: BTreeSet::new(),
                last_failed: false,
                pushed: HashMap::new(),
            };
            let mut renewed = Instant::now();
            let reason = loop {
                let next =
                    tokio::time::timeout(heartbeat * MISSED_HEARTBEATS, inbound.message()).await;
                if let (Some(cluster), Ok(Ok(Some(_)))) = (&svc.state.cluster, &next)
                    && renewed.elapsed() >= heartbeat / 2
                {
                    match cluster.renew(id, presence).await {
                        Ok(true) => renewed = Instant::now(),
                        // A newer stream (on this master or another) took over.
                        Ok(false) => break "superseded",
                        Err(e) => {
                            tracing::warn!(agent = %id, error = %e, "could not renew the agent's presence")
                        }
                    }
                }
                for v in pushed_tx
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .drain(..)
                {
                    session.pushed.insert(v, Instant::now());
                }
                match next {
                    Err(_) => break "connection_timeout",
                    Ok(Ok(None)) => break "stream_closed",
                    Ok(Err(_)) => break "stream_error",
                    Ok(Ok(Some(msg))) => {
                        if let Err(status) = svc.on_message(&mut session, msg).await {
                            tracing::warn!(agent = %id, error = %status, "ending the agent's stream");
                            let _ = out.send(Err(status)).await;
                            break "protocol_error";
                        }
                    }
                }
            };
            let mut ours = svc.state.fleet.detach(id, generation);
            if ours && let Some(cluster) = &svc.state.cluster {
                // Another master holding the agent now keeps it online.
                ours = cluster.release(id, presence).await.unwrap_or_else(|e| {
                    tracing::warn!(agent = %id, error = %e, "could not release the agent's presence");
                    true
                });
            }
            if ours {
                tracing::info!(agent = %id, reason, "agent disconnected");
                if let Err(e) = svc
                    .state
                    .store
                    .record_agent_state(id, AgentState::Offline, Utc::now(), None)
                    .await
                {
                    tracing::error!(agent = %id, error = %e, "could not record the agent offline");
                }
                svc.publish(
                    &session.peer,
                    EventPayload::AgentDisconnected(AgentDisconnected {
                        agent_id: id,
                        reason: reason.to_owned(),
                    }),
                )
                .await;
            }
        });
        Ok(Response::new(sent))
    }
}
