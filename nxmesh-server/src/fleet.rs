//! The agents connected to this master: one outbound queue per open
//! stream, and commands awaiting their answer.
//!
//! The gRPC `AgentService` attaches a queue when an agent's stream opens and
//! detaches it when it closes; REST handlers send commands through
//! [`Fleet::command`] and get the agent's [`CommandResult`] back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use nxmesh_core::protocol::{Command, CommandKind, CommandResult, MasterPayload};
use nxmesh_core::transport::{AgentSender, TransportError};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

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

/// Connected agents and pending commands.
#[derive(Default)]
pub struct Fleet {
    agents: Mutex<HashMap<Uuid, (u64, mpsc::Sender<MasterPayload>)>>,
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
    /// queue then closes), and returns the queue the stream drains with the
    /// stream's generation.
    pub fn attach(&self, agent_id: Uuid) -> (mpsc::Receiver<MasterPayload>, u64) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock_agents().insert(agent_id, (generation, tx));
        (rx, generation)
    }

    /// Forgets the stream of `agent_id` if it is still `generation` (a newer
    /// stream of the same agent stays). Returns whether it was removed.
    pub fn detach(&self, agent_id: Uuid, generation: u64) -> bool {
        let mut agents = self.lock_agents();
        if agents.get(&agent_id).is_some_and(|(g, _)| *g == generation) {
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

    fn lock_agents(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, (u64, mpsc::Sender<MasterPayload>)>> {
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
        let tx = self
            .lock_agents()
            .get(&agent_id)
            .map(|(_, tx)| tx.clone())
            .ok_or(TransportError::NotConnected(agent_id))?;
        tx.send(payload)
            .await
            .map_err(|_| TransportError::NotConnected(agent_id))
    }

    fn is_connected(&self, agent_id: Uuid) -> bool {
        self.lock_agents()
            .get(&agent_id)
            .is_some_and(|(_, tx)| !tx.is_closed())
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
            let Some(MasterPayload::Command(c)) = rx.recv().await else {
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
}
