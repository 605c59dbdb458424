//! Several masters on one PostgreSQL database.
//!
//! Everything durable is in the database already: desired versions and the
//! ledger, agent states, credentials, tokens. What one master must tell the
//! others goes through a log table, `cluster_log`: the agents a change
//! bumped (so that the master holding an agent's stream pushes it the new
//! version) and every event (so that WebSocket clients of any master see
//! it). A master appends a row and wakes the others with `NOTIFY`; each
//! follows the log with a cursor, on a notification or every [`POLL`] at
//! the latest, so a master that missed notifications (its listening
//! connection dropped) catches up from the table. Rows a master wrote
//! itself are skipped: it delivered them locally already, so nothing
//! arrives twice.
//!
//! Agent presence is a lease row per agent (`agent_presence`). The master
//! that holds an agent's stream claims the row, renews it with every
//! heartbeat and releases it when the stream ends. A newer stream on
//! another master takes the row over, and the older stream ends at its next
//! renewal, so an agent is `online` through exactly one master. A master
//! that dies stops renewing: any other master deletes the expired rows and
//! records those agents offline, without a human.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use nxmesh_core::event::{AgentDisconnected, Event, EventPayload};
use nxmesh_core::model::AgentState;
use nxmesh_core::storage::Storage;
use nxmesh_core::transport::{EventEnvelope, EventPublisher as _};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::EventBus;
use crate::rollout::Rollout;

/// The longest a master goes without reading the log, notification or not.
pub const POLL: Duration = Duration::from_secs(2);
/// The `NOTIFY` channel.
const CHANNEL: &str = "nxmesh_cluster";
/// How long log rows are kept: far longer than any master needs to catch
/// up after a dropped listening connection.
const RETENTION_MINUTES: i64 = 10;
/// A gap in the log's ids (a transaction that has not committed yet, or
/// one that rolled back) is waited for this long before it is skipped.
const GAP_WAIT: Duration = Duration::from_secs(5);
/// Rows read per query.
const BATCH: i64 = 1000;

/// This master's membership in a cluster of masters sharing a PostgreSQL
/// database. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    master_id: Uuid,
    db: DatabaseConnection,
    lease: Duration,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("master_id", &self.master_id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// What a log row carries.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// Agents whose desired version a change bumped, with the new versions.
    Rollout(Vec<(Uuid, i64)>),
    /// Events for the WebSocket feed, in the order they were published.
    Events(Vec<EventEnvelope>),
}

/// The stored form of an [`EventEnvelope`].
#[derive(Serialize, Deserialize)]
struct StoredEvent {
    organization_id: Uuid,
    workspace_id: Uuid,
    event: Event,
}

impl Cluster {
    /// Joins the cluster of masters on `db` when it is PostgreSQL (`None`
    /// for SQLite, which serves one master). `lease` is how long an agent's
    /// presence lasts without a renewal; the gRPC service renews it with
    /// every heartbeat, so it should be a few heartbeat intervals.
    pub fn new(db: DatabaseConnection, lease: Duration) -> Option<Cluster> {
        (db.get_database_backend() == DbBackend::Postgres).then(|| Cluster {
            master_id: Uuid::new_v4(),
            db,
            lease,
        })
    }

    /// This master's id (new at every start).
    pub fn master_id(&self) -> Uuid {
        self.master_id
    }

    /// Appends the versions a change gave `agents` for the other masters.
    pub async fn announce_rollout(&self, versions: &[(Uuid, i64)]) -> Result<(), DbErr> {
        if versions.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_string(versions).map_err(|e| DbErr::Custom(e.to_string()))?;
        self.append("rollout", payload).await
    }

    /// Appends events this master published for the other masters, as one
    /// row.
    pub async fn announce_events(&self, envelopes: &[EventEnvelope]) -> Result<(), DbErr> {
        if envelopes.is_empty() {
            return Ok(());
        }
        let stored: Vec<StoredEvent> = envelopes
            .iter()
            .map(|e| StoredEvent {
                organization_id: e.organization_id,
                workspace_id: e.workspace_id,
                event: e.event.clone(),
            })
            .collect();
        let payload = serde_json::to_string(&stored).map_err(|e| DbErr::Custom(e.to_string()))?;
        self.append("events", payload).await
    }

    async fn append(&self, kind: &str, payload: String) -> Result<(), DbErr> {
        // The notification is delivered when the insert commits, so a
        // follower woken by it finds the row.
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH row AS (INSERT INTO cluster_log (origin, kind, payload) VALUES ($1, $2, $3) RETURNING id) \
             SELECT pg_notify($4, id::text) FROM row",
            [
                self.master_id.into(),
                kind.into(),
                payload.into(),
                CHANNEL.into(),
            ],
        );
        self.db.query_all_raw(stmt).await.map(|_| ())
    }

    /// Makes this master's stream `session` the holder of `agent`'s
    /// presence, taking it over from any other stream or master.
    pub async fn claim(&self, agent: Uuid, session: Uuid) -> Result<(), DbErr> {
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO agent_presence (agent_id, master_id, session_id, expires_at) \
             VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond') \
             ON CONFLICT (agent_id) DO UPDATE SET master_id = $2, session_id = $3, \
             expires_at = now() + $4 * interval '1 millisecond'",
            [
                agent.into(),
                self.master_id.into(),
                session.into(),
                self.lease_ms().into(),
            ],
        );
        self.db.execute_raw(stmt).await.map(|_| ())
    }

    /// Extends the presence of `session`; `false` when another stream (on
    /// this master or another) holds it now, or it expired.
    pub async fn renew(&self, agent: Uuid, session: Uuid) -> Result<bool, DbErr> {
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE agent_presence SET expires_at = now() + $3 * interval '1 millisecond' \
             WHERE agent_id = $1 AND session_id = $2",
            [agent.into(), session.into(), self.lease_ms().into()],
        );
        Ok(self.db.execute_raw(stmt).await?.rows_affected() == 1)
    }

    /// Ends the presence of `session`; `false` when it was not the holder
    /// (another stream took over, or it expired and was reaped).
    pub async fn release(&self, agent: Uuid, session: Uuid) -> Result<bool, DbErr> {
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM agent_presence WHERE agent_id = $1 AND session_id = $2",
            [agent.into(), session.into()],
        );
        Ok(self.db.execute_raw(stmt).await?.rows_affected() == 1)
    }

    /// Deletes the presences whose lease ran out and returns their agents:
    /// each expired row goes to exactly one master.
    async fn reap(&self) -> Result<Vec<Uuid>, DbErr> {
        let stmt = Statement::from_string(
            DbBackend::Postgres,
            "DELETE FROM agent_presence WHERE expires_at < now() RETURNING agent_id",
        );
        self.db
            .query_all_raw(stmt)
            .await?
            .iter()
            .map(|r| r.try_get::<Uuid>("", "agent_id"))
            .collect()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Starts following the log (delivering other masters' rollouts and
    /// events here) and reaping expired presences, for as long as the
    /// runtime runs.
    pub fn spawn(&self, store: std::sync::Arc<dyn Storage>, events: EventBus, rollout: Rollout) {
        let follower = Follower {
            cluster: self.clone(),
            events: events.clone(),
            rollout,
        };
        tokio::spawn(follower.run());
        tokio::spawn(reap_loop(self.clone(), store, events));
    }
}

/// Reads the log after a cursor and delivers what other masters wrote.
struct Follower {
    cluster: Cluster,
    events: EventBus,
    rollout: Rollout,
}

/// The position in the log: every id up to `low` is handled (or was given
/// up as a gap); `seen` holds the handled ids above it.
#[derive(Debug, Default)]
struct Cursor {
    low: i64,
    seen: BTreeSet<i64>,
    gap_since: Option<Instant>,
}

impl Cursor {
    /// Marks `id` handled; `false` when it was already.
    fn take(&mut self, id: i64) -> bool {
        id > self.low && self.seen.insert(id)
    }

    /// Moves `low` over the handled ids; a gap below them is waited for
    /// [`GAP_WAIT`], then skipped.
    fn advance(&mut self, now: Instant) {
        while self.seen.remove(&(self.low + 1)) {
            self.low += 1;
        }
        match self.seen.first() {
            None => self.gap_since = None,
            Some(&first) => {
                let since = *self.gap_since.get_or_insert(now);
                if now.duration_since(since) >= GAP_WAIT {
                    self.low = first - 1;
                    self.gap_since = None;
                    self.advance(now);
                }
            }
        }
    }
}

impl Follower {
    async fn run(self) {
        let mut cursor = Cursor::default();
        // Start at the end: what was written before this master started is
        // in the database already (versions, states) or history (events).
        loop {
            match self.last_id().await {
                Ok(id) => {
                    cursor.low = id;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the cluster log yet");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
        let mut listener = None;
        let mut last_cleanup = Instant::now();
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            if let Err(e) = self.read(&mut cursor).await {
                tracing::warn!(error = %e, "reading the cluster log failed; retrying");
            }
            if last_cleanup.elapsed() >= Duration::from_secs(60) {
                last_cleanup = Instant::now();
                if let Err(e) = self.cleanup().await {
                    tracing::warn!(error = %e, "could not trim the cluster log");
                }
            }
            let woken = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                r = woken => if let Err(e) = r {
                    // Reconnects at the next turn; the poll covers the gap.
                    tracing::warn!(error = %e, "the cluster notification connection dropped");
                    listener = None;
                },
            }
        }
    }

    async fn listen(&self) -> Option<sea_orm::sqlx::postgres::PgListener> {
        let pool = self.cluster.db.get_postgres_connection_pool();
        let mut listener = match sea_orm::sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for cluster notifications; polling");
                return None;
            }
        };
        match listener.listen(CHANNEL).await {
            Ok(()) => Some(listener),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for cluster notifications; polling");
                None
            }
        }
    }

    async fn last_id(&self) -> Result<i64, DbErr> {
        let row = self
            .cluster
            .db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT COALESCE(MAX(id), 0) AS id FROM cluster_log",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("no answer".into()))?;
        row.try_get("", "id")
    }

    async fn read(&self, cursor: &mut Cursor) -> Result<(), DbErr> {
        loop {
            let rows = self
                .cluster
                .db
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT id, origin, kind, payload FROM cluster_log WHERE id > $1 ORDER BY id LIMIT $2",
                    [cursor.low.into(), BATCH.into()],
                ))
                .await?;
            let full = rows.len() as i64 == BATCH;
            let mut fresh = 0;
            for row in rows {
                let id: i64 = row.try_get("", "id")?;
                if !cursor.take(id) {
                    continue;
                }
                fresh += 1;
                let origin: Uuid = row.try_get("", "origin")?;
                if origin == self.cluster.master_id {
                    continue;
                }
                let kind: String = row.try_get("", "kind")?;
                let payload: String = row.try_get("", "payload")?;
                match decode(&kind, &payload) {
                    Ok(entry) => self.deliver(entry),
                    Err(e) => tracing::warn!(id, kind, error = %e, "skipping a cluster log row"),
                }
            }
            cursor.advance(Instant::now());
            if !full || fresh == 0 {
                return Ok(());
            }
        }
    }

    fn deliver(&self, entry: Entry) {
        match entry {
            Entry::Rollout(versions) => self.rollout.deliver(versions),
            Entry::Events(envelopes) => {
                for e in envelopes {
                    self.events.publish_local(e);
                }
            }
        }
    }

    async fn cleanup(&self) -> Result<(), DbErr> {
        self.cluster
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "DELETE FROM cluster_log WHERE created_at < now() - $1 * interval '1 minute'",
                [RETENTION_MINUTES.into()],
            ))
            .await
            .map(|_| ())
    }
}

fn decode(kind: &str, payload: &str) -> Result<Entry, String> {
    match kind {
        "rollout" => serde_json::from_str(payload)
            .map(Entry::Rollout)
            .map_err(|e| e.to_string()),
        "events" => serde_json::from_str::<Vec<StoredEvent>>(payload)
            .map(|all| {
                Entry::Events(
                    all.into_iter()
                        .map(|s| EventEnvelope {
                            organization_id: s.organization_id,
                            workspace_id: s.workspace_id,
                            event: s.event,
                        })
                        .collect(),
                )
            })
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown kind {other:?}")),
    }
}

/// Records offline the agents whose master stopped renewing their
/// presence, and tells the feed.
async fn reap_loop(cluster: Cluster, store: std::sync::Arc<dyn Storage>, events: EventBus) {
    let every = (cluster.lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        let agents = match cluster.reap().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "could not reap expired agent presences");
                continue;
            }
        };
        for agent in agents {
            if let Err(e) = lost(store.as_ref(), &events, agent).await {
                tracing::error!(%agent, error = %e, "could not record an agent offline");
            }
        }
    }
}

async fn lost(
    store: &dyn Storage,
    events: &EventBus,
    agent: Uuid,
) -> Result<(), nxmesh_core::storage::StorageError> {
    let Some(a) = store.get_agent(agent).await? else {
        return Ok(());
    };
    store
        .record_agent_state(agent, AgentState::Offline, Utc::now(), None)
        .await?;
    let Some(ws) = store.get_workspace(a.workspace_id).await? else {
        return Ok(());
    };
    tracing::info!(%agent, "agent offline: its master stopped renewing its presence");
    let _ = events
        .publish(EventEnvelope {
            organization_id: ws.organization_id,
            workspace_id: a.workspace_id,
            event: Event {
                timestamp: Utc::now(),
                payload: EventPayload::AgentDisconnected(AgentDisconnected {
                    agent_id: agent,
                    reason: "master_lost".to_owned(),
                }),
            },
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_handles_each_id_once_and_skips_a_lasting_gap() {
        let t0 = Instant::now();
        let mut c = Cursor {
            low: 10,
            ..Cursor::default()
        };
        assert!(!c.take(10), "at or below the cursor: handled before");
        assert!(c.take(11));
        assert!(c.take(13));
        assert!(!c.take(13), "twice is once");
        c.advance(t0);
        assert_eq!(c.low, 11, "12 is a gap: wait for it");
        // 12 commits late: still handled, and the cursor moves over both.
        assert!(c.take(12));
        c.advance(t0 + Duration::from_secs(1));
        assert_eq!((c.low, c.seen.len()), (13, 0));
        // 14 never comes (rolled back): skipped after the wait.
        assert!(c.take(15));
        c.advance(t0 + Duration::from_secs(2));
        assert_eq!(c.low, 13);
        c.advance(t0 + Duration::from_secs(2) + GAP_WAIT);
        assert_eq!((c.low, c.seen.len()), (15, 0));
    }

    #[test]
    fn log_payloads_round_trip() {
        let versions = vec![(Uuid::new_v4(), 3), (Uuid::new_v4(), 7)];
        let json = serde_json::to_string(&versions).unwrap();
        assert_eq!(decode("rollout", &json), Ok(Entry::Rollout(versions)));
        let envelope = EventEnvelope {
            organization_id: Uuid::new_v4(),
            workspace_id: Uuid::new_v4(),
            event: Event {
                timestamp: Utc::now(),
                payload: EventPayload::AgentDisconnected(AgentDisconnected {
                    agent_id: Uuid::new_v4(),
                    reason: "stream_closed".to_owned(),
                }),
            },
        };
        let stored = StoredEvent {
            organization_id: envelope.organization_id,
            workspace_id: envelope.workspace_id,
            event: envelope.event.clone(),
        };
        let json = serde_json::to_string(&[stored]).unwrap();
        assert_eq!(decode("events", &json), Ok(Entry::Events(vec![envelope])));
        assert!(decode("other", "{}").is_err());
    }
}
