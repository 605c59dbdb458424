//! The event bus of this master: events published by the gRPC service and
//! the rollout reach every WebSocket subscriber. In-process broadcast; a
//! subscriber that falls behind loses events and is told so (`Lagged`),
//! which the WebSocket handler answers by dropping the connection rather
//! than slowing the master down.

use async_trait::async_trait;
use nxmesh_core::transport::{
    EventEnvelope, EventPublisher, EventSubscriber, EventSubscription, TransportError,
};
use tokio::sync::broadcast;

/// Events buffered per subscriber before it counts as lagging.
const CAPACITY: usize = 1024;

/// A broadcast event bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<EventEnvelope>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

#[async_trait]
impl EventPublisher for EventBus {
    async fn publish(&self, envelope: EventEnvelope) -> Result<(), TransportError> {
        // No subscribers is not an error: nobody is watching.
        let _ = self.tx.send(envelope);
        Ok(())
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
