//! The agents connected to this master: one outbound queue per open
//! stream, and commands awaiting their answer.
//!
//! The gRPC `AgentService` attaches a queue when an agent's stream opens and
//! detaches it when it closes; REST handlers send commands through
//! [`Fleet::command`] and get the agent's [`CommandResult`] back.
//!
//! Configuration does not queue: each stream has one slot holding the
//! newest configuration it has not sent yet, so a push never waits for a
//! slow agent, and an agent that falls behind gets only the latest version
//! (versions are complete configurations, never deltas). The slot holds the
//! content shared by every agent with the same configuration, encoded once
//! (`crate::wire`), and this agent's version of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nxmesh_core::protocol::{Command, CommandKind, CommandResult, MasterPayload};
use nxmesh_core::transport::{AgentSender, TransportError};
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::wire::SharedConfig;

/// Messages queued per agent before a slow stream is considered stuck.
const QUEUE: usize = 64;

/// Why a command got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The agent has no open stream here.
    #[error("agent is not connected")]
    NotConnected,
    /// The agent did not answer in time.
    #[error("agent did not answer within {0:?}")]
    Timeout(Duration),
}

/// The newest configuration a stream has not sent yet.
#[derive(Default)]
struct ConfigSlot {
    pending: Mutex<Option<(Arc<SharedConfig>, i64)>>,
    ready: Notify,
}

impl ConfigSlot {
    /// Keeps `config` at `version` unless a newer version is already
    /// waiting.
    fn offer(&self, config: Arc<SharedConfig>, version: i64) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.as_ref().is_none_or(|(_, v)| *v < version) {
            *pending = Some((config, version));
            drop(pending);
            self.ready.notify_one();
        }
    }

    fn take(&self) -> Option<(Arc<SharedConfig>, i64)> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// What a stream sends next.
#[derive(Debug)]
pub enum Next {
    /// A queued message (a command).
    Message(MasterPayload),
    /// The newest configuration, at this agent's version.
    Config(Arc<SharedConfig>, i64),
}

/// What one open stream sends: queued messages and the newest
/// configuration. It ends when the stream is detached or replaced.
pub struct Outbound {
    queue: mpsc::Receiver<MasterPayload>,
    config: Arc<ConfigSlot>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

impl Outbound {
    /// The next message to send, `None` once the stream is detached.
    pub async fn next(&mut self) -> Option<Next> {
        loop {
            if let Some((config, version)) = self.config.take() {
                return Some(Next::Config(config, version));
            }
            tokio::select! {
                message = self.queue.recv() => return message.map(Next::Message),
                () = self.config.ready.notified() => {}
            }
        }
    }
}

struct Link {
    generation: u64,
    queue: mpsc::Sender<MasterPayload>,
    config: Arc<ConfigSlot>,
}

/// Connected agents and pending commands.
#[derive(Default)]
pub struct Fleet {
    agents: Mutex<HashMap<Uuid, Link>>,
    generation: std::sync::atomic::AtomicU64,
    pending: Mutex<HashMap<String, oneshot::Sender<CommandResult>>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

impl Fleet {
    /// Registers an open stream for `agent_id`, replacing an older one (whose
    /// outbound then ends), and returns what the stream sends with the
    /// stream's generation.
    pub fn attach(&self, agent_id: Uuid) -> (Outbound, u64) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let config = Arc::new(ConfigSlot::default());
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock_agents().insert(
            agent_id,
            Link {
                generation,
                queue: tx,
                config: config.clone(),
            },
        );
        (Outbound { queue: rx, config }, generation)
    }

    /// Forgets the stream of `agent_id` if it is still `generation` (a newer
    /// stream of the same agent stays). Returns whether it was removed.
    pub fn detach(&self, agent_id: Uuid, generation: u64) -> bool {
        let mut agents = self.lock_agents();
        if agents
            .get(&agent_id)
            .is_some_and(|l| l.generation == generation)
        {
            agents.remove(&agent_id);
            true
        } else {
            false
        }
    }

    /// Closes the stream of `agent_id`, whatever its generation (the agent
    /// was deleted).
    pub fn disconnect(&self, agent_id: Uuid) {
        self.lock_agents().remove(&agent_id);
    }

    /// How many agents have an open stream.
    pub fn connected(&self) -> usize {
        self.lock_agents().len()
    }

    /// Queues `config` at `version` for `agent_id`: like sending a
    /// `ConfigUpdate`, with the content (and its encoding) shared with the
    /// other agents that receive it.
    pub fn offer_config(
        &self,
        agent_id: Uuid,
        config: Arc<SharedConfig>,
        version: i64,
    ) -> Result<(), TransportError> {
        let slot = self
            .lock_agents()
            .get(&agent_id)
            .filter(|l| !l.queue.is_closed())
            .map(|l| l.config.clone())
            .ok_or(TransportError::NotConnected(agent_id))?;
        slot.offer(config, version);
        Ok(())
    }

    /// Sends a command and waits for the agent's answer.
    pub async fn command(
        &self,
        agent_id: Uuid,
        kind: CommandKind,
        timeout: Duration,
    ) -> Result<CommandResult, CommandError> {
        let command_id = Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(command_id.clone(), tx);
        let sent = self
            .send(
                agent_id,
                MasterPayload::Command(Command {
                    command_id: command_id.clone(),
                    kind,
                }),
            )
            .await;
        if sent.is_err() {
            self.lock_pending().remove(&command_id);
            return Err(CommandError::NotConnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(CommandError::NotConnected),
            Err(_) => {
                self.lock_pending().remove(&command_id);
                Err(CommandError::Timeout(timeout))
            }
        }
    }

    /// Delivers an agent's answer to whoever waits for it.
    pub fn complete(&self, result: CommandResult) {
        if let Some(tx) = self.lock_pending().remove(&result.command_id) {
            // The waiter may have timed out and gone; nothing to do then.
            let _ = tx.send(result);
        }
    }

    fn lock_agents(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Link>> {
        self.agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<CommandResult>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl AgentSender for Fleet {
    async fn send(&self, agent_id: Uuid, payload: MasterPayload) -> Result<(), TransportError> {
        if let MasterPayload::ConfigUpdate(update) = payload {
            let version = update.version;
            return self.offer_config(agent_id, Arc::new(SharedConfig::new(*update)), version);
        }
        let tx = self
            .lock_agents()
            .get(&agent_id)
            .map(|l| l.queue.clone())
            .ok_or(TransportError::NotConnected(agent_id))?;
        tx.send(payload)
            .await
            .map_err(|_| TransportError::NotConnected(agent_id))
    }

    fn is_connected(&self, agent_id: Uuid) -> bool {
        self.lock_agents()
            .get(&agent_id)
            .is_some_and(|l| !l.queue.is_closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn command_round_trip_and_offline() {
        let fleet = std::sync::Arc::new(Fleet::default());
        let agent = Uuid::new_v4();
        assert!(matches!(
            fleet
                .command(agent, CommandKind::GetStatus, Duration::from_millis(10))
                .await,
            Err(CommandError::NotConnected)
        ));
        let (mut rx, _) = fleet.attach(agent);
        let f = fleet.clone();
        let answer = tokio::spawn(async move {
            let Some(Next::Message(MasterPayload::Command(c))) = rx.next().await else {
                panic!("expected a command")
            };
            f.complete(CommandResult {
                command_id: c.command_id,
                success: true,
                message: "ok".into(),
                details: Default::default(),
            });
        });
        let r = fleet
            .command(
                agent,
                CommandKind::Reload { graceful: true },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(r.success);
        answer.await.unwrap();
        let _rx = fleet.attach(agent);
        assert!(matches!(
            fleet
                .command(agent, CommandKind::GetStatus, Duration::from_millis(20))
                .await,
            Err(CommandError::Timeout(_))
        ));
    }

    fn update(version: i64) -> MasterPayload {
        MasterPayload::ConfigUpdate(Box::new(nxmesh_core::config::ConfigUpdate {
            config_id: format!("cfg-{version}"),
            version,
            virtual_hosts: Vec::new(),
            upstreams: Vec::new(),
            certificates: Default::default(),
            global_settings: Default::default(),
        }))
    }

    fn version(next: Option<Next>) -> i64 {
        match next {
            Some(Next::Config(_, version)) => version,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_stream_gets_only_the_newest_configuration() {
        let fleet = Fleet::default();
        let agent = Uuid::new_v4();
        assert!(fleet.send(agent, update(1)).await.is_err());
        let (mut out, generation) = fleet.attach(agent);
        // Far more pushes than the command queue holds: none waits.
        for v in 1..=1000 {
            fleet.send(agent, update(v)).await.unwrap();
        }
        // A late, older version does not replace the newer one waiting.
        fleet.send(agent, update(3)).await.unwrap();
        assert_eq!(version(out.next().await), 1000);
        fleet.send(agent, update(1001)).await.unwrap();
        assert_eq!(version(out.next().await), 1001);
        assert!(fleet.detach(agent, generation));
        assert!(out.next().await.is_none());
    }
}
