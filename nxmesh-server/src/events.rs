//! The event bus of this master: events published by the gRPC service and
//! the rollout reach every WebSocket subscriber. In-process broadcast; a
//! subscriber that falls behind loses events and is told so (`Lagged`),
//! which the WebSocket handler answers by dropping the connection rather
//! than slowing the master down.
//!
//! With several masters ([`EventBus::clustered`]) every event published
//! here also goes to the cluster log, in batches, and the log's follower
//! hands the other masters' events to [`EventBus::publish_local`].

use std::time::Duration;

use async_trait::async_trait;
use nxmesh_core::transport::{
    EventEnvelope, EventPublisher, EventSubscriber, EventSubscription, TransportError,
};
use tokio::sync::{broadcast, mpsc};

use crate::cluster::Cluster;

/// Events buffered per subscriber before it counts as lagging.
const CAPACITY: usize = 1024;
/// Events waiting for the cluster log before new ones are dropped (and
/// counted): the database being slow must not slow the master.
const OUTBOX: usize = 16 * 1024;
/// How long the cluster writer gathers events into one row.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// A broadcast event bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<EventEnvelope>,
    outbox: Option<mpsc::Sender<EventEnvelope>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
            outbox: None,
        }
    }
}

impl EventBus {
    /// A bus whose events also reach the other masters of `cluster`.
    /// Starts the writer task, so it must be called inside a Tokio runtime.
    pub fn clustered(cluster: Cluster) -> EventBus {
        let (outbox, rx) = mpsc::channel(OUTBOX);
        tokio::spawn(write_to_cluster(cluster, rx));
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
            outbox: Some(outbox),
        }
    }

    /// Delivers `envelope` to this master's subscribers only (an event
    /// another master published).
    pub fn publish_local(&self, envelope: EventEnvelope) {
        // No subscribers is not an error: nobody is watching.
        let _ = self.tx.send(envelope);
    }
}

#[async_trait]
impl EventPublisher for EventBus {
    async fn publish(&self, envelope: EventEnvelope) -> Result<(), TransportError> {
        if let Some(outbox) = &self.outbox
            && let Err(e) = outbox.try_send(envelope.clone())
        {
            tracing::warn!(error = %e, "the cluster log is behind; an event reaches this master's subscribers only");
        }
        self.publish_local(envelope);
        Ok(())
    }
}

/// Writes this master's events to the cluster log, many per row.
async fn write_to_cluster(cluster: Cluster, mut rx: mpsc::Receiver<EventEnvelope>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < 1000 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = cluster.announce_events(&batch).await {
            tracing::error!(error = %e, events = batch.len(), "events did not reach the other masters");
        }
        batch.clear();
    }
}

impl EventSubscriber for EventBus {
    fn subscribe(&self) -> Box<dyn EventSubscription> {
        Box::new(Subscription {
            rx: self.tx.subscribe(),
        })
    }
}

struct Subscription {
    rx: broadcast::Receiver<EventEnvelope>,
}

#[async_trait]
impl EventSubscription for Subscription {
    async fn next_event(&mut self) -> Result<EventEnvelope, TransportError> {
        match self.rx.recv().await {
            Ok(e) => Ok(e),
            Err(broadcast::error::RecvError::Lagged(n)) => Err(TransportError::Lagged(n)),
            Err(broadcast::error::RecvError::Closed) => Err(TransportError::Closed),
        }
    }
}
