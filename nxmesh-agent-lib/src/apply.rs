//! The serialized apply queue: one apply at a time, newest version wins.
//!
//! The connection manager decides what to enqueue (see
//! [`ApplyQueue::offer`]); one long-lived worker task applies it and sends
//! each `ConfigStatus` to the manager, which forwards it on the current
//! stream (or on the next one, if the connection dropped meanwhile). The
//! worker outlives connections: a lost stream never cancels an apply.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::Utc;
use nxmesh_core::config::{ConfigApplyStatus, ConfigStatus, ConfigUpdate};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::runtime::ConfigApplier;

#[derive(Debug, Default)]
struct Slots {
    /// The version being applied right now.
    in_flight: Option<i64>,
    /// The newest update waiting; a newer one replaces it.
    pending: Option<ConfigUpdate>,
}

/// What [`ApplyQueue::offer`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Queued (possibly replacing an older pending update).
    Queued {
        /// The version it replaced, if any.
        superseded: Option<i64>,
    },
    /// The same or a newer version is already being applied or waiting.
    AlreadyQueued,
}

/// Shared between the connection manager and the worker.
#[derive(Debug, Default)]
pub(crate) struct ApplyQueue {
    slots: Mutex<Slots>,
    wake: Notify,
}

impl ApplyQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The lock only guards two plain fields, so a panic elsewhere
        // cannot leave them inconsistent.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `version` is already being applied or waiting (or an even
    /// newer one is).
    pub(crate) fn covers(&self, version: i64) -> bool {
        let s = self.lock();
        s.in_flight.is_some_and(|v| v >= version)
            || s.pending.as_ref().is_some_and(|p| p.version >= version)
    }

    /// Queues `update` unless the same or a newer version is queued or
    /// being applied. The caller has already filtered versions at or below
    /// the applied one.
    pub(crate) fn offer(&self, update: ConfigUpdate) -> Offer {
        let mut s = self.lock();
        let version = update.version;
        if s.in_flight.is_some_and(|v| v >= version)
            || s.pending.as_ref().is_some_and(|p| p.version >= version)
        {
            return Offer::AlreadyQueued;
        }
        let superseded = s.pending.replace(update).map(|p| p.version);
        drop(s);
        self.wake.notify_one();
        Offer::Queued { superseded }
    }

    fn take(&self) -> Option<ConfigUpdate> {
        let mut s = self.lock();
        let next = s.pending.take();
        s.in_flight = next.as_ref().map(|u| u.version);
        next
    }

    fn done(&self) {
        self.lock().in_flight = None;
    }
}

/// Runs applies until `stop` is cancelled; a running apply is finished
/// first.
pub(crate) async fn worker(
    queue: Arc<ApplyQueue>,
    applier: Arc<dyn ConfigApplier>,
    statuses: mpsc::Sender<ConfigStatus>,
    stop: CancellationToken,
) {
    loop {
        let Some(update) = queue.take() else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = queue.wake.notified() => continue,
            }
        };
        let version = update.version;
        let config_id = update.config_id.clone();
        let span = tracing::info_span!("apply", version, config_id = %config_id);
        let status = async {
            // Guard against an applier whose state moved on by itself (for
            // example a last-known-good restore): never go backwards.
            if applier.applied().is_some_and(|a| a.version >= version) {
                tracing::debug!("already applied; skipped");
                return None;
            }
            let outcome = applier.apply(update).await;
            match outcome.status {
                ConfigApplyStatus::Success => tracing::info!("applied"),
                status => tracing::warn!(
                    ?status,
                    error = outcome.error_message.as_deref().unwrap_or(""),
                    "apply did not succeed"
                ),
            }
            Some(ConfigStatus {
                config_id,
                version,
                status: outcome.status,
                error_message: outcome.error_message,
                applied_at: Some(Utc::now()),
                config_checksum: outcome.checksum,
            })
        }
        .instrument(span)
        .await;
        queue.done();
        if let Some(status) = status
            && statuses.send(status).await.is_err()
        {
            // The manager is gone (shutdown); nobody can report it anymore,
            // and the next registration carries the applied version anyway.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(version: i64) -> ConfigUpdate {
        ConfigUpdate {
            config_id: format!("c{version}"),
            version,
            ..ConfigUpdate::default()
        }
    }

    #[test]
    fn newer_pending_supersedes_older_and_duplicates_are_refused() {
        let q = ApplyQueue::default();
        assert_eq!(q.offer(update(1)), Offer::Queued { superseded: None });
        assert_eq!(q.take().map(|u| u.version), Some(1));
        assert!(q.covers(1));
        assert_eq!(q.offer(update(1)), Offer::AlreadyQueued);
        assert_eq!(q.offer(update(2)), Offer::Queued { superseded: None });
        assert_eq!(
            q.offer(update(3)),
            Offer::Queued {
                superseded: Some(2)
            }
        );
        assert_eq!(q.offer(update(2)), Offer::AlreadyQueued);
        q.done();
        assert_eq!(q.take().map(|u| u.version), Some(3));
        q.done();
        assert!(q.take().is_none());
        assert!(!q.covers(3));
    }
}
