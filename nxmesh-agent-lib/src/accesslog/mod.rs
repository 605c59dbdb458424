//! Access-log shipping: tail the JSON access log the generator configures,
//! parse every line into the specification's access-log fields, ship the
//! entries in [`LogBatch`]es (by size and by time), and derive traffic
//! metrics from them into [`MetricsBatch`]es.
//!
//! [`AccessLogShipper`] is a [`TelemetrySource`]. A reader task follows the
//! log with a [`tail::Tailer`] (rotation, truncation and partial lines are
//! its business) on tokio's blocking pool and fills a bounded buffer; the
//! connection manager takes batches from it with
//! [`TelemetrySource::next`] while it is connected. When the master is
//! away the buffer fills and the reader stops reading: the backlog stays
//! on disk, in the log and the rotated files the tailer keeps open (at
//! most [`AccessLogConfig::max_rotated_files`]); what has to be given up
//! (a rotated file beyond that limit, a truncated file's unread tail, an
//! overlong line) is counted and reported as metrics.
//!
//! **Exactly once.** Each buffered entry carries the position right after
//! its line. When a batch is handed to the manager, the positions of its
//! lines become the shipped positions and are written to the checkpoint
//! file (inode, offset and a fingerprint per followed file, with the
//! cumulative counters), so a restarted agent resumes right after the last
//! shipped line: what was read but not shipped is read again, nothing
//! shipped is read twice. The checkpoint is replaced atomically (write,
//! rename) but not fsynced on every batch: a process crash loses nothing,
//! a power loss can make the agent ship the last batches again. As the
//! [`TelemetrySource`] contract says, a batch taken by the manager when its
//! connection drops is lost (at most one).
//!
//! Metrics are counted when a line is shipped, so they match the shipped
//! entries one for one and, persisted with the checkpoint, keep rising
//! across restarts.

pub mod metrics;
pub mod parse;
pub mod tail;

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use nxmesh_core::protocol::{LogBatch, LogEntry, Metric, MetricType, MetricsBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Telemetry, TelemetrySource};
use metrics::Traffic;
use parse::Sample;
use tail::{FileCursor, FileId, Flow, Loss, TailConfig, Tailed, Tailer};

/// How an [`AccessLogShipper`] reads and ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// The JSON access log (the generator's `Layout::access_log`).
    pub path: PathBuf,
    /// Where the read position and counters are persisted.
    pub checkpoint_file: PathBuf,
    /// How often the log is checked for new lines when there were none.
    pub poll_interval: Duration,
    /// How long a rotated log must stay quiet, once the new one has data,
    /// before it is closed (nginx writes to the old file until every worker
    /// has reopened its logs after `USR1`).
    pub rotate_wait: Duration,
    /// Rotated files kept open at most while their backlog is shipped.
    pub max_rotated_files: usize,
    /// Longer lines are dropped and counted.
    pub max_line_bytes: usize,
    /// A log batch holds at most this many entries…
    pub batch_max_lines: usize,
    /// …and about this many bytes (gRPC messages are limited to 4 MiB).
    pub batch_max_bytes: usize,
    /// A batch is sent when its oldest entry has waited this long, full or
    /// not.
    pub flush_interval: Duration,
    /// Entries buffered at most (the reader waits beyond).
    pub buffer_max_lines: usize,
    /// Bytes of entries buffered at most.
    pub buffer_max_bytes: usize,
    /// How often traffic metrics are sent (when they changed).
    pub metrics_interval: Duration,
    /// Port of nginx's local status endpoint, for the active-connections
    /// gauge.
    pub status_port: Option<u16>,
}

impl AccessLogConfig {
    /// Defaults for the log at `path`, with the checkpoint in `checkpoint_file`.
    pub fn new(path: PathBuf, checkpoint_file: PathBuf) -> Self {
        AccessLogConfig {
            path,
            checkpoint_file,
            poll_interval: Duration::from_millis(250),
            rotate_wait: Duration::from_secs(5),
            max_rotated_files: 4,
            max_line_bytes: 64 * 1024,
            batch_max_lines: 1000,
            batch_max_bytes: 512 * 1024,
            flush_interval: Duration::from_secs(1),
            buffer_max_lines: 10_000,
            buffer_max_bytes: 8 * 1024 * 1024,
            metrics_interval: Duration::from_secs(10),
            status_port: None,
        }
    }
}

/// Counters of the shipper. Persisted in the checkpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ShipperCounters {
    /// Entries handed to the manager.
    pub lines_shipped: u64,
    /// Of those, lines that were not access-log objects (shipped raw).
    pub invalid_lines: u64,
    /// Bytes of the log given up (truncation, overlong lines, too many
    /// rotated files).
    pub lost_bytes: u64,
    /// Times something was given up (including files of the checkpoint
    /// that were gone at start).
    pub losses: u64,
    /// Derived traffic counters.
    pub traffic: Traffic,
}

/// The persisted state: where each followed file was shipped up to, oldest
/// file first, and the counters. A compatibility promise across agent
/// upgrades.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    /// The shipped position in each followed file.
    pub files: Vec<FileCursor>,
    /// The counters.
    pub counters: ShipperCounters,
}

impl Checkpoint {
    /// Reads the checkpoint; `None` when there is none.
    pub fn read(path: &Path) -> io::Result<Option<Checkpoint>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Replaces the checkpoint atomically (write a temporary file, rename).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}

/// One entry waiting to be shipped.
#[derive(Debug)]
struct Buffered {
    entry: LogEntry,
    sample: Option<Sample>,
    cursor: FileCursor,
    size: usize,
    at: Instant,
}

fn entry_size(e: &LogEntry) -> usize {
    64 + e.message.len()
        + e.fields
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
}

/// A file the tailer follows or followed, with its shipped position.
#[derive(Debug, Clone)]
struct Tracked {
    cursor: FileCursor,
    /// Buffered entries from this file.
    pending: usize,
    /// The tailer closed it.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    buffer: VecDeque<Buffered>,
    buffered_bytes: usize,
    files: Vec<Tracked>,
    counters: ShipperCounters,
    metrics_due: Instant,
    /// Request counter and time of the last metrics batch.
    last_metrics: Option<(Instant, u64)>,
    last_rate_nonzero: bool,
    /// The loss count in the last metrics batch.
    last_losses: u64,
}

impl Shared {
    fn tracked(&mut self, id: FileId) -> Option<&mut Tracked> {
        self.files.iter_mut().find(|t| t.cursor.file == id)
    }

    fn prune(&mut self) {
        self.files.retain(|t| !(t.closed && t.pending == 0));
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            files: self.files.iter().map(|t| t.cursor).collect(),
            counters: self.counters.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: AccessLogConfig,
    shared: Mutex<Shared>,
    /// Entries were buffered.
    data: Notify,
    /// Entries were taken.
    space: Notify,
    shutdown: CancellationToken,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ships the access log; see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessLogShipper {
    inner: Arc<Inner>,
}

/// What the shipper holds and has done, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ShipperStatus {
    /// Entries waiting in the buffer.
    pub buffered_lines: usize,
    /// The counters.
    pub counters: ShipperCounters,
    /// The files followed, with their shipped position.
    pub files: Vec<FileCursor>,
}

/// What the reader hands over to the buffer.
enum Item {
    Opened(FileCursor),
    Line(Buffered),
    Lost { bytes: u64, why: Loss },
    Closed(FileId),
}

impl AccessLogShipper {
    /// Reads the checkpoint and starts the reader task (on the current
    /// tokio runtime), which stops with `shutdown`. An unreadable
    /// checkpoint is logged and replaced: the log is then read from the
    /// start of the current file.
    pub fn start(config: AccessLogConfig, shutdown: CancellationToken) -> AccessLogShipper {
        let checkpoint = match Checkpoint::read(&config.checkpoint_file) {
            Ok(c) => c.unwrap_or_default(),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    file = %config.checkpoint_file.display(),
                    "cannot read the access-log checkpoint; starting from the current log"
                );
                Checkpoint::default()
            }
        };
        let tailer = Tailer::new(
            TailConfig {
                path: config.path.clone(),
                rotate_wait: config.rotate_wait,
                max_line_bytes: config.max_line_bytes,
                max_rotated: config.max_rotated_files,
            },
            checkpoint.files,
        );
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                buffer: VecDeque::new(),
                buffered_bytes: 0,
                files: Vec::new(),
                counters: checkpoint.counters,
                metrics_due: Instant::now() + config.metrics_interval,
                last_metrics: None,
                last_rate_nonzero: false,
                last_losses: 0,
            }),
            config,
            data: Notify::new(),
            space: Notify::new(),
            shutdown,
        });
        tokio::spawn(read_loop(Arc::clone(&inner), tailer));
        AccessLogShipper { inner }
    }

    /// What the shipper holds and has done.
    pub fn status(&self) -> ShipperStatus {
        let s = self.inner.lock();
        ShipperStatus {
            buffered_lines: s.buffer.len(),
            counters: s.counters.clone(),
            files: s.files.iter().map(|t| t.cursor).collect(),
        }
    }

    /// Takes the next log batch if one is due, and records it as shipped.
    fn take_logs(&self, s: &mut Shared, now: Instant) -> Option<LogBatch> {
        let c = &self.inner.config;
        let oldest = s.buffer.front()?.at;
        let due = s.buffer.len() >= c.batch_max_lines
            || s.buffered_bytes >= c.batch_max_bytes
            || now.duration_since(oldest) >= c.flush_interval;
        if !due {
            return None;
        }
        let mut entries = Vec::with_capacity(s.buffer.len().min(c.batch_max_lines));
        let mut bytes = 0;
        while entries.len() < c.batch_max_lines
            && (entries.is_empty() || bytes < c.batch_max_bytes)
            && let Some(b) = s.buffer.pop_front()
        {
            bytes += b.size;
            s.buffered_bytes -= b.size;
            if let Some(t) = s.tracked(b.cursor.file) {
                t.pending -= 1;
                t.cursor = b.cursor;
            }
            match &b.sample {
                Some(sample) => s.counters.traffic.record(sample),
                None => s.counters.invalid_lines += 1,
            }
            s.counters.lines_shipped += 1;
            entries.push(b.entry);
        }
        s.prune();
        // A small synchronous write (no fsync), done before the batch is
        // handed out and with no await in between, so that `next` stays
        // cancel-safe: a batch is either returned and recorded, or neither.
        if let Err(e) = s.checkpoint().write(&c.checkpoint_file) {
            tracing::warn!(error = %e, "cannot write the access-log checkpoint");
        }
        self.inner.space.notify_one();
        Some(LogBatch { entries })
    }

    /// The traffic metrics if they are due and changed.
    fn take_metrics(
        &self,
        s: &mut Shared,
        now: Instant,
        active: Option<u32>,
    ) -> Option<MetricsBatch> {
        s.metrics_due = now + self.inner.config.metrics_interval;
        let requests = s.counters.traffic.requests;
        let rate = s
            .last_metrics
            .and_then(|(t, n)| metrics::rate(n, requests, now.duration_since(t).as_secs_f64()));
        let changed = s.last_metrics.is_none_or(|(_, n)| n != requests)
            || s.last_rate_nonzero
            || s.last_losses != s.counters.losses;
        s.last_metrics = Some((now, requests));
        s.last_losses = s.counters.losses;
        s.last_rate_nonzero = rate.is_some_and(|r| r > 0.0);
        if !changed {
            return None;
        }
        let at = Utc::now();
        let mut metrics = s.counters.traffic.to_metrics(at, rate);
        #[allow(clippy::cast_precision_loss)] // counters stay far below 2^53
        let counter = |name: &str, v: u64| Metric {
            name: name.to_owned(),
            value: v as f64,
            timestamp: at,
            labels: Default::default(),
            kind: MetricType::Counter,
        };
        metrics.push(counter(
            "nxmesh_agent_access_log_lines_total",
            s.counters.lines_shipped,
        ));
        metrics.push(counter(
            "nxmesh_agent_access_log_invalid_lines_total",
            s.counters.invalid_lines,
        ));
        metrics.push(counter(
            "nxmesh_agent_access_log_lost_bytes_total",
            s.counters.lost_bytes,
        ));
        metrics.push(counter(
            "nxmesh_agent_access_log_losses_total",
            s.counters.losses,
        ));
        if let Some(a) = active {
            metrics.push(Metric {
                kind: MetricType::Gauge,
                ..counter("nginx_connections_active", u64::from(a))
            });
        }
        Some(MetricsBatch {
            timestamp: at,
            metrics,
        })
    }
}

#[async_trait]
impl TelemetrySource for AccessLogShipper {
    /// The next log batch or metrics batch. Cancel-safe: nothing is taken
    /// before the future completes.
    async fn next(&self) -> Option<Telemetry> {
        let inner = &self.inner;
        loop {
            let data = inner.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            let now = Instant::now();
            let (metrics_due, wake) = {
                // After shutdown nothing more is handed out: what is still
                // buffered is read again from the checkpoint at restart.
                if inner.shutdown.is_cancelled() {
                    return None;
                }
                let mut s = inner.lock();
                if let Some(batch) = self.take_logs(&mut s, now) {
                    return Some(Telemetry::Logs(batch));
                }
                let flush = s.buffer.front().map(|b| b.at + inner.config.flush_interval);
                let wake = flush.map_or(s.metrics_due, |f| f.min(s.metrics_due));
                (now >= s.metrics_due, wake)
            };
            if metrics_due {
                let active = match inner.config.status_port {
                    Some(port) => crate::health::fetch_stub_status(port)
                        .await
                        .map(|s| s.active_connections),
                    None => None,
                };
                let mut s = inner.lock();
                if let Some(m) = self.take_metrics(&mut s, Instant::now(), active) {
                    return Some(Telemetry::Metrics(m));
                }
                continue;
            }
            tokio::select! {
                () = inner.shutdown.cancelled() => {}
                () = &mut data => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// Reads the log into the buffer until shutdown.
async fn read_loop(inner: Arc<Inner>, tailer: Tailer) {
    let mut tailer = Some(tailer);
    let config = inner.config.clone();
    let mut failing = false;
    loop {
        let (free_lines, free_bytes) = {
            let s = inner.lock();
            (
                config.buffer_max_lines.saturating_sub(s.buffer.len()),
                config.buffer_max_bytes.saturating_sub(s.buffered_bytes),
            )
        };
        if free_lines == 0 || free_bytes == 0 {
            // The master is away or slow: leave the rest on disk, but keep
            // noticing rotations, so that a backlog spanning several is
            // kept (up to the limit) or counted when given up.
            tokio::select! {
                () = inner.shutdown.cancelled() => break,
                () = inner.space.notified() => continue,
                () = tokio::time::sleep(config.poll_interval) => {}
            }
            let Some(mut t) = tailer.take() else { break };
            let watched = tokio::task::spawn_blocking(move || {
                let mut items = Vec::new();
                let r = t.watch(&mut |x| {
                    match x {
                        Tailed::Opened(c) => items.push(Item::Opened(c)),
                        Tailed::Closed(id) => items.push(Item::Closed(id)),
                        Tailed::Lost { bytes, why, .. } => items.push(Item::Lost { bytes, why }),
                        // `watch` reads no lines.
                        Tailed::Line { .. } => {}
                    }
                    Flow::Continue
                });
                (t, items, r)
            })
            .await;
            match watched {
                Ok((t, items, r)) => {
                    tailer = Some(t);
                    apply_items(&inner, items);
                    if let Err(e) = r {
                        tracing::warn!(error = %e, path = %config.path.display(), "cannot watch the access log");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the access-log reader failed");
                    break;
                }
            }
            continue;
        }
        let Some(mut t) = tailer.take() else { break };
        let polled = tokio::task::spawn_blocking(move || {
            let mut items = Vec::new();
            let mut lines = 0;
            let mut bytes = 0;
            let now = Utc::now();
            let at = Instant::now();
            let r = t.poll(&mut |x| {
                match x {
                    Tailed::Opened(c) => items.push(Item::Opened(c)),
                    Tailed::Closed(id) => items.push(Item::Closed(id)),
                    Tailed::Lost { bytes: n, why, .. } => items.push(Item::Lost { bytes: n, why }),
                    Tailed::Line { line, cursor } => {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if line.trim_ascii().is_empty() {
                            return Flow::Continue;
                        }
                        let (entry, sample) = match parse::parse_line(line) {
                            Ok(l) => (l.to_log_entry(now), Some(l.sample())),
                            Err(e) => (parse::invalid_entry(line, e, now), None),
                        };
                        let size = entry_size(&entry);
                        lines += 1;
                        bytes += size;
                        items.push(Item::Line(Buffered {
                            entry,
                            sample,
                            cursor,
                            size,
                            at,
                        }));
                        if lines >= free_lines || bytes >= free_bytes {
                            return Flow::Stop;
                        }
                    }
                }
                Flow::Continue
            });
            (t, items, r)
        })
        .await;
        let (t, items, result) = match polled {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "the access-log reader failed");
                break;
            }
        };
        tailer = Some(t);
        let got_lines = items.iter().any(|i| matches!(i, Item::Line(_)));
        apply_items(&inner, items);
        if got_lines {
            inner.data.notify_one();
        }
        let idle = match result {
            Ok(p) => {
                failing = false;
                !p.stopped && p.bytes_read == 0
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, path = %config.path.display(), "cannot read the access log");
                }
                failing = true;
                true
            }
        };
        if idle {
            tokio::select! {
                () = inner.shutdown.cancelled() => break,
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        }
    }
}

/// Moves what the reader handed over into the shared state.
fn apply_items(inner: &Inner, items: Vec<Item>) {
    let mut closed = false;
    {
        let mut s = inner.lock();
        for item in items {
            match item {
                Item::Opened(c) => match s.tracked(c.file) {
                    Some(t) if t.pending == 0 => {
                        t.cursor = c;
                        t.closed = false;
                    }
                    Some(t) => t.closed = false,
                    None => s.files.push(Tracked {
                        cursor: c,
                        pending: 0,
                        closed: false,
                    }),
                },
                Item::Line(b) => {
                    if let Some(t) = s.tracked(b.cursor.file) {
                        t.pending += 1;
                    }
                    s.buffered_bytes += b.size;
                    s.buffer.push_back(b);
                }
                Item::Lost { bytes, why } => {
                    tracing::warn!(bytes, reason = ?why, "access-log bytes given up");
                    s.counters.lost_bytes += bytes;
                    s.counters.losses += 1;
                }
                Item::Closed(id) => {
                    if let Some(t) = s.tracked(id) {
                        t.closed = true;
                    }
                    s.prune();
                    closed = true;
                }
            }
        }
        if closed && !inner.shutdown.is_cancelled() {
            // Forget a finished file now rather than at the next batch,
            // so that a restart does not look for it.
            if let Err(e) = s.checkpoint().write(&inner.config.checkpoint_file) {
                tracing::warn!(error = %e, "cannot write the access-log checkpoint");
            }
        }
    }
}
