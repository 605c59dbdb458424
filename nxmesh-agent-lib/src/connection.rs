//! The connection manager: dial, register or resume, heartbeats, dispatch,
//! reconnect with backoff, final errors, graceful shutdown.
//!
//! One session is one `AgentService.Stream` call. Its first message is the
//! registration (token the first time, the stored credential after); the
//! master's first answer must be the `RegistrationResponse`. After that the
//! session runs a heartbeat task (and a telemetry task when a source is
//! given) that send on the stream, and the manager loop forwards apply
//! results and dispatches what the master pushes. When the session ends with
//! a retryable error the manager sleeps a jittered backoff and dials the
//! next endpoint; `FAILED_PRECONDITION` and `INVALID_ARGUMENT` end [`run`].

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nxmesh_core::config::{ConfigApplyStatus, ConfigStatus};
use nxmesh_core::protocol::{self, AgentAuth, AgentPayload, RegistrationResponse};
use nxmesh_core::validate::Validate as _;
use nxmesh_proto::pb::{self, agent_service_client::AgentServiceClient};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::apply::{self, ApplyQueue, Offer};
use crate::backoff::Backoff;
use crate::config::AgentConfig;
use crate::credential::CredentialStore;
use crate::error::{ConfigError, ConnectError, FatalError};
use crate::runtime::{CommandHandler, ConfigApplier, HealthSource, Telemetry, TelemetrySource};
use crate::transport::{Dial, MAX_MESSAGE_BYTES};

/// How long to wait for the status that ends a stream after a
/// `success: false` registration response.
const REFUSAL_STATUS_WAIT: Duration = Duration::from_secs(5);

/// Messages queued for the stream before senders wait.
const OUTBOUND_BUFFER: usize = 64;

/// Apply results waiting to be sent (they also wait across reconnects).
const STATUS_BUFFER: usize = 16;

/// The runtime's implementations of the [`crate::runtime`] traits.
#[derive(Clone)]
pub struct Handlers {
    /// Applies configuration updates.
    pub applier: Arc<dyn ConfigApplier>,
    /// Executes commands.
    pub commands: Arc<dyn CommandHandler>,
    /// Produces the heartbeat's health report.
    pub health: Arc<dyn HealthSource>,
    /// Metrics, logs and events to send on the stream, if any.
    pub telemetry: Option<Arc<dyn TelemetrySource>>,
}

/// Runs the agent's connection to the master until `shutdown` is cancelled
/// (then `Ok(())`) or the master refuses the agent for good.
///
/// Configuration is checked and the CA file and stored credential are read
/// before anything is dialed. A running apply is given
/// [`crate::Timeouts::shutdown_grace`] to finish on shutdown.
pub async fn run(
    config: AgentConfig,
    handlers: Handlers,
    shutdown: CancellationToken,
) -> Result<(), FatalError> {
    config.validate().map_err(FatalError::Config)?;
    let ca_pem = match &config.ca_file {
        Some(path) => Some(tokio::fs::read(path).await.map_err(|source| {
            FatalError::Config(ConfigError::CaFile {
                path: path.clone(),
                source,
            })
        })?),
        None => None,
    };
    let store = CredentialStore::new(config.credential_file.clone());
    let credential = store.load().await.map_err(FatalError::Credential)?;
    if credential.is_none() && config.registration_token.is_none() {
        return Err(FatalError::NoCredential(config.credential_file.clone()));
    }
    let dial = Dial {
        ca_pem,
        server_name: config.tls_server_name.clone(),
        connect_timeout: config.timeouts.connect,
        keepalive: config.timeouts.keepalive,
    };

    let queue = Arc::new(ApplyQueue::default());
    let (status_tx, status_rx) = mpsc::channel(STATUS_BUFFER);
    let worker_stop = CancellationToken::new();
    let mut worker = tokio::spawn(
        apply::worker(
            Arc::clone(&queue),
            Arc::clone(&handlers.applier),
            status_tx,
            worker_stop.clone(),
        )
        .instrument(tracing::info_span!("apply_worker")),
    );

    let grace = config.timeouts.shutdown_grace;
    let mut manager = Manager {
        config,
        dial,
        store,
        credential,
        agent_id: None,
        handlers,
        queue,
        statuses: status_rx,
        shutdown,
    };
    let result = manager.run_loop().await;
    drop(manager);

    worker_stop.cancel();
    match tokio::time::timeout(grace, &mut worker).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the apply worker failed"),
        Err(_) => {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                "an apply was still running at shutdown; abandoning it"
            );
            worker.abort();
        }
    }
    result
}

/// Why a session ended.
#[derive(Debug)]
enum SessionEnd {
    /// The shutdown token was cancelled.
    Shutdown,
    /// Final: stop and report.
    Fatal(FatalError),
    /// Retry after a backoff.
    Retry {
        error: SessionError,
        /// How long the session stayed registered, if it got that far.
        registered_for: Option<Duration>,
    },
}

/// Retryable reasons a session ended; only logged.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Connect(ConnectError),
    #[error("the stream ended with status {}: {}", .0.code(), .0.message())]
    Status(Status),
    #[error("the master closed the stream")]
    Closed,
    #[error("no registration response within {0:?}")]
    RegistrationTimeout(Duration),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

fn retry(error: SessionError) -> SessionEnd {
    SessionEnd::Retry {
        error,
        registered_for: None,
    }
}

/// `FAILED_PRECONDITION` and `INVALID_ARGUMENT` are final; every other
/// status is retried.
fn classify(status: Status) -> SessionEnd {
    match status.code() {
        Code::FailedPrecondition | Code::InvalidArgument => {
            SessionEnd::Fatal(FatalError::Refused {
                code: status.code(),
                message: status.message().to_owned(),
            })
        }
        _ => retry(SessionError::Status(status)),
    }
}

/// Wraps a payload in the wire envelope.
fn envelope(agent_id: Option<Uuid>, payload: AgentPayload) -> pb::AgentMessage {
    pb::AgentMessage::from(protocol::AgentMessage {
        agent_id,
        timestamp: Utc::now(),
        payload,
    })
}

struct Manager {
    config: AgentConfig,
    dial: Dial,
    store: CredentialStore,
    credential: Option<String>,
    agent_id: Option<Uuid>,
    handlers: Handlers,
    queue: Arc<ApplyQueue>,
    statuses: mpsc::Receiver<ConfigStatus>,
    shutdown: CancellationToken,
}

impl Manager {
    async fn run_loop(&mut self) -> Result<(), FatalError> {
        let mut backoff = Backoff::new(self.config.backoff);
        let mut index = 0;
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let endpoint = self.config.endpoints[index % self.config.endpoints.len()].clone();
            let span = tracing::info_span!(
                "agent_session",
                endpoint = %endpoint,
                agent_id = tracing::field::Empty
            );
            match self.session(&endpoint).instrument(span).await {
                SessionEnd::Shutdown => {
                    tracing::info!("agent connection shut down");
                    return Ok(());
                }
                SessionEnd::Fatal(e) => return Err(e),
                SessionEnd::Retry {
                    error,
                    registered_for,
                } => {
                    match registered_for {
                        Some(d) if d >= self.config.backoff.reset_after => backoff.reset(),
                        Some(_) => {}
                        // Never registered there: try the next address.
                        None => index = index.wrapping_add(1),
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        endpoint = %endpoint,
                        error = %error,
                        retry_in_ms = delay.as_millis(),
                        "connection to the master failed; retrying"
                    );
                    tokio::select! {
                        () = self.shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    fn registration(&self, auth: AgentAuth) -> protocol::RegistrationRequest {
        let id = &self.config.identity;
        protocol::RegistrationRequest {
            auth,
            hostname: id.hostname.clone(),
            ip_address: id.ip_address.clone(),
            version: id.version.clone(),
            capabilities: id.capabilities.clone(),
            labels: id.labels.clone(),
            deployment_mode: id.deployment_mode,
            applied: self.handlers.applier.applied(),
        }
    }

    async fn session(&mut self, endpoint: &str) -> SessionEnd {
        let channel = tokio::select! {
            () = self.shutdown.cancelled() => return SessionEnd::Shutdown,
            r = self.dial.connect(endpoint) => match r {
                Ok(c) => c,
                Err(e) => return retry(SessionError::Connect(e)),
            },
        };
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let (auth, with_token) = match (&self.credential, &self.config.registration_token) {
            (Some(c), _) => (AgentAuth::Credential(c.clone()), false),
            (None, Some(t)) => (AgentAuth::Token(t.clone()), true),
            (None, None) => {
                return SessionEnd::Fatal(FatalError::NoCredential(
                    self.config.credential_file.clone(),
                ));
            }
        };
        let (out_tx, out_rx) = mpsc::channel(OUTBOUND_BUFFER);
        let hello = envelope(
            self.agent_id,
            AgentPayload::Registration(self.registration(auth)),
        );
        // The receiver is right here, so the first send cannot fail.
        if out_tx.send(hello).await.is_err() {
            return retry(SessionError::Closed);
        }

        let wait = self.config.timeouts.registration;
        let opened = async {
            let response = client.stream(ReceiverStream::new(out_rx)).await?;
            let mut inbound = response.into_inner();
            let first = inbound.message().await?;
            Ok::<_, Status>((inbound, first))
        };
        let (mut inbound, first) = tokio::select! {
            () = self.shutdown.cancelled() => return SessionEnd::Shutdown,
            r = tokio::time::timeout(wait, opened) => match r {
                Err(_) => return retry(SessionError::RegistrationTimeout(wait)),
                Ok(Err(status)) => return classify(status),
                Ok(Ok(v)) => v,
            },
        };
        let response = match first.and_then(|m| m.payload) {
            None => return retry(SessionError::Closed),
            Some(pb::master_message::Payload::RegistrationResponse(r)) => {
                match RegistrationResponse::try_from(r) {
                    Ok(r) => r,
                    Err(e) => return retry(SessionError::Protocol(e.to_string())),
                }
            }
            Some(_) => {
                return retry(SessionError::Protocol(
                    "the first message was not a registration response".into(),
                ));
            }
        };
        let (agent_id, interval, credential) = match response {
            RegistrationResponse::Rejected { error_message } => {
                return refused(&mut inbound, error_message).await;
            }
            RegistrationResponse::Accepted {
                agent_id,
                heartbeat_interval_seconds,
                agent_credential,
            } => (agent_id, heartbeat_interval_seconds, agent_credential),
        };
        tracing::Span::current().record("agent_id", tracing::field::display(agent_id));

        if let Some(credential) = credential {
            // Persist before use: the token it replaces is already spent.
            if let Err(e) = self.store.save(&credential).await {
                return SessionEnd::Fatal(FatalError::Credential(e));
            }
            tracing::info!(path = %self.store.path().display(), "agent credential stored");
            self.credential = Some(credential);
        } else if with_token {
            tracing::warn!(
                "registered with the token but the master issued no credential; \
                 the next reconnect will present the token again"
            );
        }
        self.agent_id = Some(agent_id);
        let interval = Duration::from_secs(u64::try_from(interval).unwrap_or(1).max(1));
        tracing::info!(
            heartbeat_interval_s = interval.as_secs(),
            "registered with the master"
        );

        let registered_at = Instant::now();
        let end = self.connected(agent_id, interval, inbound, out_tx).await;
        match end {
            SessionEnd::Retry { error, .. } => SessionEnd::Retry {
                error,
                registered_for: Some(registered_at.elapsed()),
            },
            other => other,
        }
    }

    async fn connected(
        &mut self,
        agent_id: Uuid,
        interval: Duration,
        mut inbound: Streaming<pb::MasterMessage>,
        out: mpsc::Sender<pb::AgentMessage>,
    ) -> SessionEnd {
        // Session tasks are aborted when this set is dropped, i.e. when the
        // session ends for any reason.
        let mut tasks = JoinSet::new();
        tasks.spawn(
            heartbeat(
                out.clone(),
                Arc::clone(&self.handlers.health),
                Arc::clone(&self.handlers.applier),
                agent_id,
                interval,
            )
            .in_current_span(),
        );
        if let Some(source) = &self.handlers.telemetry {
            tasks.spawn(telemetry(out.clone(), Arc::clone(source), agent_id).in_current_span());
        }
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return SessionEnd::Shutdown,
                Some(status) = self.statuses.recv() => {
                    if send(&out, agent_id, AgentPayload::ConfigStatus(status)).await.is_err() {
                        return retry(SessionError::Closed);
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(m)) => {
                        if self.dispatch(agent_id, m, &out).await.is_err() {
                            return retry(SessionError::Closed);
                        }
                    }
                    Ok(None) => return retry(SessionError::Closed),
                    Err(status) => return classify(status),
                },
            }
        }
    }

    async fn dispatch(
        &mut self,
        agent_id: Uuid,
        message: pb::MasterMessage,
        out: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), Closed> {
        use pb::master_message::Payload as P;
        match message.payload {
            Some(P::ConfigUpdate(update)) => self.on_config(agent_id, update, out).await?,
            Some(P::Command(cmd)) => self.on_command(agent_id, cmd, out).await?,
            Some(P::Ack(ack)) => tracing::trace!(message_id = %ack.message_id, "ack"),
            Some(P::Error(e)) => {
                tracing::warn!(code = %e.code, message = %e.message, "the master reported an error");
            }
            Some(P::RegistrationResponse(_)) => {
                tracing::warn!("ignoring a second registration response");
            }
            None => tracing::warn!("ignoring a master message without payload"),
        }
        Ok(())
    }

    /// Filters, checks and queues a configuration update.
    ///
    /// Older than the applied version: ignored, no answer. Equal: answered
    /// `SUCCESS` with the applied checksum and no `applied_at` (the master
    /// resends its latest version after a reconnect; this confirms it
    /// without reapplying). Already being applied or queued: ignored (its
    /// status follows). Invalid on the wire or by core validation: answered
    /// `FAILED` with the error text, the last good config stays. Otherwise
    /// queued, replacing an older queued one.
    async fn on_config(
        &mut self,
        agent_id: Uuid,
        update: pb::ConfigUpdate,
        out: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), Closed> {
        let version = update.version;
        let config_id = update.config_id.clone();
        let applied = self.handlers.applier.applied();
        if let Some(applied) = &applied {
            if version < applied.version {
                tracing::debug!(
                    version,
                    applied = applied.version,
                    "ignoring an older config version"
                );
                return Ok(());
            }
            if version == applied.version {
                tracing::debug!(version, "config version already applied; confirming");
                let status = ConfigStatus {
                    config_id,
                    version,
                    status: ConfigApplyStatus::Success,
                    error_message: None,
                    applied_at: None,
                    config_checksum: Some(applied.checksum.clone()),
                };
                return send(out, agent_id, AgentPayload::ConfigStatus(status)).await;
            }
        }
        if self.queue.covers(version) {
            tracing::debug!(version, "config version already queued or applying");
            return Ok(());
        }
        let checked = nxmesh_core::config::ConfigUpdate::try_from(update)
            .map_err(|e| e.to_string())
            .and_then(|u| u.validate().map(|()| u).map_err(|e| e.to_string()));
        let update = match checked {
            Ok(u) => u,
            Err(error) => {
                tracing::warn!(version, %error, "refusing an invalid config update");
                let status = ConfigStatus {
                    config_id,
                    version,
                    status: ConfigApplyStatus::Failed,
                    error_message: Some(error),
                    applied_at: Some(Utc::now()),
                    config_checksum: applied.map(|a| a.checksum),
                };
                return send(out, agent_id, AgentPayload::ConfigStatus(status)).await;
            }
        };
        match self.queue.offer(update) {
            Offer::Queued { superseded } => {
                tracing::debug!(version, ?superseded, "config update queued");
            }
            Offer::AlreadyQueued => tracing::debug!(version, "config version already queued"),
        }
        Ok(())
    }

    async fn on_command(
        &mut self,
        agent_id: Uuid,
        cmd: pb::Command,
        out: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), Closed> {
        let command_id = cmd.command_id.clone();
        let cmd = match protocol::Command::try_from(cmd) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%command_id, error = %e, "refusing an invalid command");
                let result = protocol::CommandResult {
                    command_id,
                    success: false,
                    message: e.to_string(),
                    details: Default::default(),
                };
                return send(out, agent_id, AgentPayload::CommandResult(result)).await;
            }
        };
        // Not a session task: a command that already started (a restart,
        // say) runs to completion even if the connection drops meanwhile;
        // its answer is then lost with the stream.
        let handler = Arc::clone(&self.handlers.commands);
        let out = out.clone();
        let span = tracing::info_span!("command", command_id = %command_id);
        tokio::spawn(
            async move {
                let mut result = handler.handle(cmd).await;
                result.command_id = command_id;
                tracing::info!(success = result.success, "command handled");
                if send(&out, agent_id, AgentPayload::CommandResult(result))
                    .await
                    .is_err()
                {
                    tracing::warn!("the stream closed before the command result was sent");
                }
            }
            .instrument(span),
        );
        Ok(())
    }
}

/// The stream's sending half is gone (the session is ending).
#[derive(Debug)]
struct Closed;

async fn send(
    out: &mpsc::Sender<pb::AgentMessage>,
    agent_id: Uuid,
    payload: AgentPayload,
) -> Result<(), Closed> {
    out.send(envelope(Some(agent_id), payload))
        .await
        .map_err(|_| Closed)
}

/// After a `success: false` response: the status that ends the stream
/// decides. A retryable status is retried; a final one, a clean end or no
/// status at all is a final refusal (the master said no).
async fn refused(inbound: &mut Streaming<pb::MasterMessage>, error_message: String) -> SessionEnd {
    let trailing = tokio::time::timeout(REFUSAL_STATUS_WAIT, async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await;
    let code = match trailing {
        Ok(Some(status)) => match status.code() {
            Code::FailedPrecondition | Code::InvalidArgument => status.code(),
            _ => return retry(SessionError::Status(status)),
        },
        Ok(None) | Err(_) => Code::FailedPrecondition,
    };
    SessionEnd::Fatal(FatalError::Refused {
        code,
        message: error_message,
    })
}

/// Sends a health report now and then every `interval`.
async fn heartbeat(
    out: mpsc::Sender<pb::AgentMessage>,
    health: Arc<dyn HealthSource>,
    applier: Arc<dyn ConfigApplier>,
    agent_id: Uuid,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut report = health.health().await;
        let applied = applier.applied();
        report.config_version = applied.as_ref().map_or(0, |a| a.version);
        report.config_checksum = applied.map(|a| a.checksum).unwrap_or_default();
        if send(&out, agent_id, AgentPayload::Health(report))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Forwards telemetry batches while the session lasts.
async fn telemetry(
    out: mpsc::Sender<pb::AgentMessage>,
    source: Arc<dyn TelemetrySource>,
    agent_id: Uuid,
) {
    while let Some(batch) = source.next().await {
        let payload = match batch {
            Telemetry::Metrics(m) => AgentPayload::Metrics(m),
            Telemetry::Logs(l) => AgentPayload::Logs(l),
            Telemetry::Event(e) => AgentPayload::Event(e),
        };
        if send(&out, agent_id, payload).await.is_err() {
            return;
        }
    }
    tracing::debug!("the telemetry source ended");
}
