//! The fleet's reports written in batches.
//!
//! Thousands of agents answer a rollout within a second and heartbeat
//! every few seconds; written one by one, each report is a commit (on
//! SQLite, a sync of the journal, all behind one write lock), and the
//! queue of commits delays everything else that writes, the next rollout
//! among them. One writer task takes every report waiting when it is free
//! and writes them in one transaction, so the batch grows with the load and
//! a quiet fleet still gets each status report written at once; heartbeat
//! states alone wait up to 100 ms for others to share the transaction.

use std::sync::Arc;
use std::time::Duration;

use nxmesh_core::config::ConfigStatus;
use nxmesh_core::ledger::AgentConfigState;
use nxmesh_core::storage::{AgentStateRecord, Storage, StorageError, StorageResult};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// The most reports written in one transaction.
const MAX_BATCH: usize = 2000;
/// The longest a heartbeat's state waits for others to be written with.
const STATE_LINGER: Duration = Duration::from_millis(100);

enum Job {
    Status(
        Uuid,
        ConfigStatus,
        oneshot::Sender<StorageResult<AgentConfigState>>,
    ),
    State(AgentStateRecord, oneshot::Sender<StorageResult<()>>),
}

/// The handle the agent streams write their reports through.
#[derive(Debug, Clone)]
pub(crate) struct ReportWriter {
    tx: mpsc::UnboundedSender<Job>,
}

impl ReportWriter {
    /// Starts the writer task; it ends when every handle is dropped.
    pub(crate) fn spawn(store: Arc<dyn Storage>) -> ReportWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        ReportWriter { tx }
    }

    /// [`nxmesh_core::storage::LedgerStore::record_config_status`], batched.
    pub(crate) async fn status(
        &self,
        agent_id: Uuid,
        status: ConfigStatus,
    ) -> StorageResult<AgentConfigState> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Job::Status(agent_id, status, done))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// [`nxmesh_core::storage::AgentStore::record_agent_state`], batched.
    pub(crate) async fn state(&self, record: AgentStateRecord) -> StorageResult<()> {
        let (done, answer) = oneshot::channel();
        self.tx.send(Job::State(record, done)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> StorageError {
    StorageError::Unavailable("the report writer stopped".into())
}

async fn run(store: Arc<dyn Storage>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut jobs = Vec::new();
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        linger(&mut rx, &mut jobs).await;
        let mut statuses = Vec::new();
        let mut states = Vec::new();
        for job in jobs.drain(..) {
            match job {
                Job::Status(id, st, done) => statuses.push(((id, st), done)),
                Job::State(record, done) => states.push((record, done)),
            }
        }
        write_statuses(store.as_ref(), statuses).await;
        write_states(store.as_ref(), states).await;
    }
}

/// Lets heartbeat states wait up to [`STATE_LINGER`] for company: a fleet
/// heartbeats steadily, one agent at a time, and a transaction (a journal
/// sync) per hundred beats costs far less than one per beat or two. A
/// status report ends the wait: an agent that applied a configuration is
/// written at once, with the states waiting beside it.
async fn linger(rx: &mut mpsc::UnboundedReceiver<Job>, jobs: &mut Vec<Job>) {
    let until = tokio::time::Instant::now() + STATE_LINGER;
    let mut checked = 0;
    while jobs.len() < MAX_BATCH {
        if jobs[checked..].iter().any(|j| matches!(j, Job::Status(..))) {
            return;
        }
        checked = jobs.len();
        let more = rx.recv_many(jobs, MAX_BATCH - jobs.len());
        match tokio::time::timeout_at(until, more).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

type StatusJob = (
    (Uuid, ConfigStatus),
    oneshot::Sender<StorageResult<AgentConfigState>>,
);

async fn write_statuses(store: &dyn Storage, jobs: Vec<StatusJob>) {
    if jobs.is_empty() {
        return;
    }
    let (reports, waiters): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
    match store.record_config_statuses(&reports).await {
        Ok(rows) => {
            for (row, done) in rows.into_iter().zip(waiters) {
                // The stream may have ended meanwhile; nobody to tell then.
                let _ = done.send(Ok(row));
            }
        }
        Err(e) => {
            // One bad report (an agent deleted meanwhile) must not fail the
            // others: write them one by one, each with its own result.
            tracing::debug!(error = %e, reports = reports.len(), "batched ledger write failed; writing one by one");
            for ((id, st), done) in reports.into_iter().zip(waiters) {
                let _ = done.send(store.record_config_status(id, &st).await);
            }
        }
    }
}

async fn write_states(
    store: &dyn Storage,
    jobs: Vec<(AgentStateRecord, oneshot::Sender<StorageResult<()>>)>,
) {
    if jobs.is_empty() {
        return;
    }
    let (records, waiters): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
    match store.record_agent_states(&records).await {
        Ok(found) => {
            for (found, done) in found.into_iter().zip(waiters) {
                let _ = done.send(if found {
                    Ok(())
                } else {
                    Err(StorageError::NotFound { what: "agent" })
                });
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, records = records.len(), "batched state write failed; writing one by one");
            for (r, done) in records.into_iter().zip(waiters) {
                let _ = done.send(
                    store
                        .record_agent_state(r.agent_id, r.state, r.seen_at, r.health.as_ref())
                        .await,
                );
            }
        }
    }
}
