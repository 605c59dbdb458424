//! The agent's one [`TelemetrySource`]: events raised anywhere in the
//! agent (an [`EventQueue`] that any component can push to, such as drift
//! detection) and, when enabled, the access-log shipper's log and metrics
//! batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use nxmesh_core::protocol::AgentEvent;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::accesslog::AccessLogShipper;
use crate::runtime::{Telemetry, TelemetrySource};

#[derive(Debug)]
struct Queue {
    events: Mutex<VecDeque<AgentEvent>>,
    notify: Notify,
    capacity: usize,
    dropped: AtomicU64,
}

/// A bounded queue of events for the stream. Cheap to clone. When it is
/// full (the master is away for long), the oldest event is dropped and
/// counted.
#[derive(Debug, Clone)]
pub struct EventQueue {
    inner: Arc<Queue>,
}

impl EventQueue {
    /// A queue of at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        EventQueue {
            inner: Arc::new(Queue {
                events: Mutex::new(VecDeque::new()),
                notify: Notify::new(),
                capacity: capacity.max(1),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Queues `event` for the stream.
    pub fn push(&self, event: AgentEvent) {
        {
            let mut q = self
                .inner
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if q.len() >= self.inner.capacity {
                q.pop_front();
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("the event queue is full; dropped the oldest event");
            }
            q.push_back(event);
        }
        self.inner.notify.notify_one();
    }

    /// Takes the oldest queued event.
    pub fn pop(&self) -> Option<AgentEvent> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// Events first, then the access-log shipper's batches.
#[derive(Debug, Clone)]
pub struct AgentTelemetry {
    events: EventQueue,
    logs: Option<AccessLogShipper>,
    shutdown: CancellationToken,
}

impl AgentTelemetry {
    /// A source of `events` and, if given, `logs`; it ends with `shutdown`.
    pub fn new(
        events: EventQueue,
        logs: Option<AccessLogShipper>,
        shutdown: CancellationToken,
    ) -> Self {
        AgentTelemetry {
            events,
            logs,
            shutdown,
        }
    }
}

#[async_trait]
impl TelemetrySource for AgentTelemetry {
    /// Cancel-safe: an event or a batch is taken only when it is returned.
    async fn next(&self) -> Option<Telemetry> {
        loop {
            let notified = self.events.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.events.pop() {
                return Some(Telemetry::Event(e));
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            match &self.logs {
                Some(logs) => tokio::select! {
                    biased;
                    () = self.shutdown.cancelled() => return None,
                    () = &mut notified => {}
                    t = logs.next() => return t,
                },
                None => tokio::select! {
                    () = self.shutdown.cancelled() => return None,
                    () = &mut notified => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(n: usize) -> AgentEvent {
        AgentEvent {
            event_id: n.to_string(),
            event_type: "t".into(),
            timestamp: Utc::now(),
            data: Default::default(),
        }
    }

    #[tokio::test]
    async fn events_are_bounded_and_delivered_in_order() {
        let q = EventQueue::new(2);
        let shutdown = CancellationToken::new();
        let t = AgentTelemetry::new(q.clone(), None, shutdown.clone());
        for n in 0..3 {
            q.push(event(n));
        }
        assert_eq!(q.dropped(), 1);
        for want in ["1", "2"] {
            match t.next().await {
                Some(Telemetry::Event(e)) => assert_eq!(e.event_id, want),
                other => panic!("{other:?}"),
            }
        }
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.next().await }
        });
        q.push(event(9));
        assert!(matches!(waiter.await.unwrap(), Some(Telemetry::Event(e)) if e.event_id == "9"));
        shutdown.cancel();
        assert_eq!(t.next().await, None);
    }
}
