//! Transport traits: how events reach subscribers and how the master
//! reaches a connected agent. The reference master implements them with
//! in-process channels (and PostgreSQL notifications across masters).

use async_trait::async_trait;
use uuid::Uuid;

use crate::event::Event;
use crate::protocol::MasterPayload;

/// Why a message could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The agent has no open stream on any master.
    #[error("agent {0} is not connected")]
    NotConnected(Uuid),
    /// The receiver fell behind and `n` messages were dropped for it.
    #[error("subscriber lagged; {0} events dropped")]
    Lagged(u64),
    /// The channel is closed for good.
    #[error("transport closed")]
    Closed,
    /// The underlying transport failed.
    #[error("transport failure")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An event with the scope it belongs to, so that it is delivered only to
/// users who may read that workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// The organization of the workspace.
    pub organization_id: Uuid,
    /// The workspace the event is about.
    pub workspace_id: Uuid,
    /// The event as the feed shows it.
    pub event: Event,
}

/// Publishes events to every subscriber (on every master).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes one event; it is not an error that nobody listens.
    async fn publish(&self, envelope: EventEnvelope) -> Result<(), TransportError>;
}

/// One subscriber's view of the event feed.
#[async_trait]
pub trait EventSubscription: Send {
    /// The next event; `Err(Lagged)` when events were dropped because this
    /// subscriber was too slow, `Err(Closed)` when the feed ended.
    async fn next_event(&mut self) -> Result<EventEnvelope, TransportError>;
}

/// Opens subscriptions to the event feed.
pub trait EventSubscriber: Send + Sync {
    /// A new subscription that sees every event published from now on.
    fn subscribe(&self) -> Box<dyn EventSubscription>;
}

/// Sends messages down connected agents' streams.
#[async_trait]
pub trait AgentSender: Send + Sync {
    /// Queues `payload` on the agent's stream. `NotConnected` when it has
    /// none.
    async fn send(&self, agent_id: Uuid, payload: MasterPayload) -> Result<(), TransportError>;
    /// Whether the agent has an open stream.
    fn is_connected(&self, agent_id: Uuid) -> bool;
}
