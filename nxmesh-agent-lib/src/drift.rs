//! Drift detection: the agent checksums its managed live tree periodically
//! and compares it with the last known good. An out-of-band edit (a file
//! changed, added or removed under `live`, or `live` pointed elsewhere) is
//! reported as an `AgentEvent` on the stream and as an alert in the health
//! report, and the [`DriftPolicy`] decides whether the agent restores the
//! last known good tree or only reports.
//!
//! The checksum is the generator's ([`nxmesh_core::generator::checksum`])
//! over the files on disk. The tree that should be live is the last known
//! good's served tree ([`LastKnownGood::served`]): the applied
//! configuration itself, whose checksum the agent reports to the master,
//! or, while the active health checks ([`crate::upstream_health`]) hold
//! servers down, its re-render with those servers marked `down`. That
//! re-render is not drift, and a revert restores it, never the applied
//! tree (which would put the failing servers back into rotation).
//!
//! Since trees are named by checksum and an edit happens in place, no copy
//! of the good tree is left once it is edited: the detector keeps a
//! pristine copy of the last verified tree under its snapshot directory
//! (mode 0700, files 0600, since the tree holds private keys), taken
//! whenever the live tree verifies. When there is none yet for the served
//! tree (an edit right after a health-check re-render, before the next
//! check), the pristine tree is rendered again from the applied
//! configuration and the recorded verdict, and used only if it has the
//! served checksum.
//!
//! A revert goes through the same steps as an apply, under the runtime's
//! apply lock: the pristine copy is staged, verified against the checksum,
//! tested with `nginx -t`, and swapped with the edited tree in one atomic
//! `renameat2(RENAME_EXCHANGE)` (so `live` always names a complete tree),
//! then nginx is reloaded and the reload confirmed.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use nxmesh_core::config::{ConfigApplyStatus, ConfigUpdate};
use nxmesh_core::event::AlertSeverity;
use nxmesh_core::generator::{self, RenderedFile};
use nxmesh_core::model::Timestamp;
use nxmesh_core::protocol::{AgentEvent, Alert, AppliedConfig, HealthReport};
use tokio_util::sync::CancellationToken;

use crate::nginx::{self, NginxError};
use crate::pipeline::NginxRuntime;
use crate::runtime::{ApplyOutcome, ConfigApplier, HealthSource};
use crate::store::LastKnownGood;
use crate::telemetry::EventQueue;

/// Event type of a detected drift.
pub const EVENT_DETECTED: &str = "config.drift_detected";
/// Event type of a drift the agent reverted.
pub const EVENT_REVERTED: &str = "config.drift_reverted";
/// Event type of a revert that failed (the drift stays).
pub const EVENT_REVERT_FAILED: &str = "config.drift_revert_failed";

/// How long the health report keeps an `Info` alert after a revert.
const REVERTED_ALERT_FOR: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// What the agent does about drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriftPolicy {
    /// Restore the last known good's served tree (and reload nginx).
    #[default]
    Revert,
    /// Only report it.
    Report,
}

impl fmt::Display for DriftPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriftPolicy::Revert => "revert",
            DriftPolicy::Report => "report",
        })
    }
}

/// A policy name other than `revert` or `report`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown drift policy {0:?} (expected revert or report)")]
pub struct UnknownPolicy(pub String);

impl FromStr for DriftPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "revert" => Ok(DriftPolicy::Revert),
            "report" => Ok(DriftPolicy::Report),
            other => Err(UnknownPolicy(other.to_owned())),
        }
    }
}

/// Configuration of a [`DriftDetector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftConfig {
    /// Time between two checks.
    pub interval: Duration,
    /// Revert or only report.
    pub policy: DriftPolicy,
    /// Where the pristine copy of the last verified tree is kept (outside
    /// the tree store).
    pub snapshot_dir: PathBuf,
}

/// A drift: how the live tree differs from the last known good's served
/// tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The checksum of the tree that should be live: the last known good's
    /// served tree ([`LastKnownGood::served`]).
    pub expected: String,
    /// The checksum of the live tree as found.
    pub found: String,
    /// Files whose content differs (relative paths).
    pub modified: Vec<String>,
    /// Files in the live tree that the good tree does not have.
    pub added: Vec<String>,
    /// Files of the good tree missing from the live tree.
    pub removed: Vec<String>,
    /// Whether `live` points somewhere else than the good tree.
    pub relinked: bool,
    /// When it was first seen.
    pub detected_at: Timestamp,
}

impl Drift {
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (what, files) in [
            ("modified", &self.modified),
            ("added", &self.added),
            ("removed", &self.removed),
        ] {
            if !files.is_empty() {
                parts.push(format!("{what}: {}", files.join(", ")));
            }
        }
        if self.relinked {
            parts.push("live points to another tree".to_owned());
        }
        if parts.is_empty() {
            parts.push("no pristine copy to compare with".to_owned());
        }
        parts.join("; ")
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Nothing is applied yet: nothing to check.
    NothingApplied,
    /// The live tree is the last known good's served tree.
    Clean,
    /// Drift was found and left in place (policy `report`).
    Reported(Drift),
    /// Drift was found and the served tree restored.
    Reverted(Drift),
    /// Drift was found and restoring failed; the text says why.
    RevertFailed(Drift, String),
}

/// What the health report shows about drift.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftStatus {
    /// When the live tree was last checked.
    pub checked_at: Option<Timestamp>,
    /// The drift in place now, if any.
    pub drift: Option<Drift>,
    /// Why the last revert failed, while the drift stays.
    pub revert_error: Option<String>,
    /// When a drift was last reverted.
    pub reverted_at: Option<Timestamp>,
}

#[derive(Debug)]
struct Inner {
    runtime: NginxRuntime,
    config: DriftConfig,
    events: EventQueue,
    status: Mutex<DriftStatus>,
}

/// Checks the live tree; see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DriftDetector {
    inner: Arc<Inner>,
}

/// Every file under `dir`, by relative path with `/` separators. Anything
/// that is not a regular file or a directory (a symbolic link planted in
/// the tree) is read as a marker naming its kind, so that it counts as a
/// difference.
fn read_tree(dir: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .map_err(io::Error::other)?
                .to_string_lossy()
                .into_owned();
            let kind = e.file_type()?;
            if kind.is_dir() {
                walk(base, &path, out)?;
            } else if kind.is_file() {
                out.insert(rel, fs::read(&path)?);
            } else {
                let target = fs::read_link(&path).unwrap_or_default();
                out.insert(
                    rel,
                    format!("<not a regular file: {}>", target.display()).into_bytes(),
                );
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// The files in the generator's order (`nginx.conf` first, then by path).
fn ordered(tree: &BTreeMap<String, Vec<u8>>) -> Vec<RenderedFile> {
    let mut files: Vec<RenderedFile> = tree
        .iter()
        .map(|(p, b)| RenderedFile {
            path: p.clone(),
            bytes: b.clone(),
        })
        .collect();
    files.sort_by(|a, b| (a.path != "nginx.conf", &a.path).cmp(&(b.path != "nginx.conf", &b.path)));
    files
}

/// The generator's checksum of a tree read from disk.
pub fn tree_checksum(tree: &BTreeMap<String, Vec<u8>>) -> String {
    generator::checksum(&ordered(tree))
}

fn diff(good: &BTreeMap<String, Vec<u8>>, live: &BTreeMap<String, Vec<u8>>) -> [Vec<String>; 3] {
    let modified = good
        .iter()
        .filter(|(p, b)| live.get(*p).is_some_and(|l| l != *b))
        .map(|(p, _)| p.clone())
        .collect();
    let added = live
        .keys()
        .filter(|p| !good.contains_key(*p))
        .cloned()
        .collect();
    let removed = good
        .keys()
        .filter(|p| !live.contains_key(*p))
        .cloned()
        .collect();
    [modified, added, removed]
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

impl DriftDetector {
    /// A detector for `runtime`'s live tree that reports to `events`.
    pub fn new(runtime: NginxRuntime, config: DriftConfig, events: EventQueue) -> Self {
        DriftDetector {
            inner: Arc::new(Inner {
                runtime,
                config,
                events,
                status: Mutex::new(DriftStatus::default()),
            }),
        }
    }

    /// What the health report shows.
    pub fn status(&self) -> DriftStatus {
        self.inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_status(&self, f: impl FnOnce(&mut DriftStatus)) {
        f(&mut self
            .inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner));
    }

    /// The directory of the pristine copy of tree `checksum`.
    fn snapshot(&self, checksum: &str) -> PathBuf {
        self.inner.config.snapshot_dir.join(checksum)
    }

    /// Checks every `interval` until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.check().await {
                Ok(CheckOutcome::RevertFailed(_, why)) => {
                    tracing::error!(error = %why, "cannot revert the drifted configuration");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the live tree for drift"),
            }
        }
    }

    /// Checks the live tree once, and reverts or reports a drift.
    ///
    /// The whole check holds the runtime's apply lock, so that a tree an
    /// apply is switching to is never mistaken for drift, and a revert
    /// never races an apply.
    pub async fn check(&self) -> io::Result<CheckOutcome> {
        let rt = &self.inner.runtime;
        let _serial = rt.lock_applies().await;
        let Some(lkg) = rt.last_known_good() else {
            return Ok(CheckOutcome::NothingApplied);
        };
        // What should be live: the health checks' re-render, if any.
        let served = lkg.served().to_owned();
        let store = rt.store().clone();
        let live = {
            let store = store.clone();
            blocking(move || read_tree(&store.live())).await?
        };
        let found = tree_checksum(&live);
        let linked = store.live_checksum();
        let now = Utc::now();
        self.set_status(|s| s.checked_at = Some(now));
        if found == served && linked.as_deref() == Some(served.as_str()) {
            self.keep_snapshot(&served, live).await?;
            self.set_status(|s| {
                s.drift = None;
                s.revert_error = None;
            });
            return Ok(CheckOutcome::Clean);
        }

        let pristine = self.pristine(&lkg).await;
        let [modified, added, removed] = match &pristine {
            Some(good) => diff(good, &live),
            None => [Vec::new(), Vec::new(), Vec::new()],
        };
        let previous = self.status().drift;
        let drift = Drift {
            expected: served.clone(),
            found: found.clone(),
            modified,
            added,
            removed,
            relinked: linked.as_deref() != Some(served.as_str()),
            detected_at: previous
                .as_ref()
                .filter(|p| p.found == found && p.expected == served)
                .map_or(now, |p| p.detected_at),
        };
        let new = previous
            .as_ref()
            .is_none_or(|p| p.found != drift.found || p.expected != drift.expected);
        if new {
            tracing::warn!(expected = %drift.expected, found = %drift.found, what = %drift.summary(), "the live configuration was changed outside the agent");
            self.event(EVENT_DETECTED, &drift, None);
        }
        self.set_status(|s| s.drift = Some(drift.clone()));
        if self.inner.config.policy == DriftPolicy::Report {
            return Ok(CheckOutcome::Reported(drift));
        }
        match self.revert(&served, pristine).await {
            Ok(()) => {
                tracing::info!(checksum = %served, "reverted the drifted configuration");
                self.event(EVENT_REVERTED, &drift, None);
                self.set_status(|s| {
                    s.drift = None;
                    s.revert_error = None;
                    s.reverted_at = Some(Utc::now());
                });
                Ok(CheckOutcome::Reverted(drift))
            }
            Err(why) => {
                // Report each distinct failure once.
                if new || self.status().revert_error.as_deref() != Some(why.as_str()) {
                    self.event(EVENT_REVERT_FAILED, &drift, Some(&why));
                }
                self.set_status(|s| s.revert_error = Some(why.clone()));
                Ok(CheckOutcome::RevertFailed(drift, why))
            }
        }
    }

    fn event(&self, kind: &str, drift: &Drift, error: Option<&str>) {
        let mut data = BTreeMap::new();
        data.insert("expected_checksum".to_owned(), drift.expected.clone());
        data.insert("found_checksum".to_owned(), drift.found.clone());
        data.insert("modified".to_owned(), drift.modified.join(","));
        data.insert("added".to_owned(), drift.added.join(","));
        data.insert("removed".to_owned(), drift.removed.join(","));
        data.insert("relinked".to_owned(), drift.relinked.to_string());
        data.insert("policy".to_owned(), self.inner.config.policy.to_string());
        if let Some(e) = error {
            data.insert("error".to_owned(), e.to_owned());
        }
        self.inner.events.push(AgentEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: kind.to_owned(),
            timestamp: Utc::now(),
            data,
        });
    }

    /// Keeps a pristine copy of the verified tree `checksum` (once).
    async fn keep_snapshot(
        &self,
        checksum: &str,
        tree: BTreeMap<String, Vec<u8>>,
    ) -> io::Result<()> {
        let target = self.snapshot(checksum);
        if target.is_dir() {
            return Ok(());
        }
        let root = self.inner.config.snapshot_dir.clone();
        blocking(move || {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)?;
            let tmp = root.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
            for (rel, bytes) in &tree {
                let path = tmp.join(rel);
                if let Some(parent) = path.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)?;
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                io::Write::write_all(&mut f, bytes)?;
                f.sync_all()?;
            }
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&tmp)?;
            fs::rename(&tmp, &target)?;
            // Only the copy of the last known good is kept.
            for e in fs::read_dir(&root)? {
                let p = e?.path();
                if p != target {
                    fs::remove_dir_all(&p)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The pristine copy of `checksum`, if there is one and it verifies.
    async fn read_snapshot(&self, checksum: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let dir = self.snapshot(checksum);
        let tree = blocking(move || read_tree(&dir)).await.ok()?;
        (tree_checksum(&tree) == checksum).then_some(tree)
    }

    /// The tree `lkg` serves, as it should be: the pristine copy, else the
    /// applied configuration rendered again with the recorded verdict of
    /// the health checks, if that has the served checksum.
    async fn pristine(&self, lkg: &LastKnownGood) -> Option<BTreeMap<String, Vec<u8>>> {
        let served = lkg.served();
        if let Some(tree) = self.read_snapshot(served).await {
            return Some(tree);
        }
        let rt = &self.inner.runtime;
        let update = rt
            .current_update()
            .filter(|u| u.version == lkg.version && u.config_id == lkg.config_id)?;
        let down = lkg.down.iter().cloned().collect();
        let opts = rt.render_options().clone();
        let served = served.to_owned();
        blocking(move || {
            let (with_down, _) = crate::upstream_health::apply_overrides(&update, &down);
            let tree: BTreeMap<String, Vec<u8>> = generator::render(&with_down, &opts)
                .map_err(io::Error::other)?
                .files
                .into_iter()
                .map(|f| (f.path, f.bytes))
                .collect();
            Ok((tree_checksum(&tree) == served).then_some(tree))
        })
        .await
        .ok()
        .flatten()
    }

    /// Restores tree `checksum` from `good`, its verified pristine files;
    /// the caller holds the apply lock. The error is the reason, for the
    /// event and the health report.
    async fn revert(
        &self,
        checksum: &str,
        good: Option<BTreeMap<String, Vec<u8>>>,
    ) -> Result<(), String> {
        let rt = &self.inner.runtime;
        let Some(good) = good else {
            return Err(
                "there is no verified pristine copy of the last known good tree".to_owned(),
            );
        };
        let store = rt.store().clone();
        let files = ordered(&good);
        let staging = {
            let store = store.clone();
            blocking(move || store.stage(&files))
                .await
                .map_err(|e| format!("cannot stage the last known good tree: {e}"))?
        };
        let discard = |dir: PathBuf| {
            let store = store.clone();
            async move {
                if let Err(e) = blocking(move || store.remove(&dir)).await {
                    tracing::warn!(error = %e, "cannot remove a staged tree");
                }
            }
        };
        if let Err(e) = nginx::test_config(rt.nginx().paths(), &staging.join("nginx.conf")).await {
            discard(staging).await;
            let msg = match e {
                NginxError::Refused(text) => text,
                other => other.to_string(),
            };
            return Err(format!("nginx -t refused the last known good tree: {msg}"));
        }
        let exchanged = {
            let store = store.clone();
            let staging = staging.clone();
            let checksum = checksum.to_owned();
            blocking(move || {
                let tree = store.tree(&checksum);
                if tree.is_dir() {
                    // One atomic step: `trees/<checksum>` becomes the
                    // pristine tree and the staging name the edited one.
                    nix::fcntl::renameat2(
                        nix::fcntl::AT_FDCWD,
                        &staging,
                        nix::fcntl::AT_FDCWD,
                        &tree,
                        nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                    )
                    .map_err(io::Error::from)?;
                } else {
                    fs::rename(&staging, &tree)?;
                }
                fs::File::open(store.root().join("trees"))?.sync_all()?;
                if store.live_checksum().as_deref() != Some(checksum.as_str()) {
                    store.switch(&checksum)?;
                }
                Ok(())
            })
            .await
        };
        if staging.exists() {
            discard(staging).await;
        }
        exchanged.map_err(|e| format!("cannot restore the last known good tree: {e}"))?;
        if rt.nginx().status().await.is_some() {
            rt.nginx()
                .reload()
                .await
                .map_err(|e| format!("restored the tree, but the reload failed: {e}"))?;
        }
        Ok(())
    }
}

/// A [`ConfigApplier`] that checks the live tree right after every
/// successful apply, so that the pristine copy of a new tree is taken at
/// once rather than at the next periodic check (an edit before that could
/// not be reverted).
#[derive(Debug, Clone)]
pub struct CheckAfterApply<A> {
    inner: A,
    drift: DriftDetector,
}

impl<A> CheckAfterApply<A> {
    /// `inner`'s applies, each followed by a check of `drift`.
    pub fn new(inner: A, drift: DriftDetector) -> Self {
        CheckAfterApply { inner, drift }
    }
}

#[async_trait]
impl<A: ConfigApplier> ConfigApplier for CheckAfterApply<A> {
    async fn apply(&self, update: ConfigUpdate) -> ApplyOutcome {
        let out = self.inner.apply(update).await;
        if out.status == ConfigApplyStatus::Success
            && let Err(e) = self.drift.check().await
        {
            tracing::warn!(error = %e, "cannot check the live tree after the apply");
        }
        out
    }

    fn applied(&self) -> Option<AppliedConfig> {
        self.inner.applied()
    }
}

/// A [`HealthSource`] that adds the drift alerts to another's report.
#[derive(Debug, Clone)]
pub struct DriftHealth<H> {
    inner: H,
    drift: DriftDetector,
}

impl<H> DriftHealth<H> {
    /// `inner`'s reports plus `drift`'s alerts.
    pub fn new(inner: H, drift: DriftDetector) -> Self {
        DriftHealth { inner, drift }
    }
}

/// The alerts for a drift status at `now`.
pub fn drift_alerts(status: &DriftStatus, now: Timestamp) -> Vec<Alert> {
    let mut out = Vec::new();
    if let Some(d) = &status.drift {
        out.push(Alert {
            id: "config_drift".to_owned(),
            severity: AlertSeverity::Warning,
            message: format!(
                "the live nginx configuration differs from the applied one ({})",
                d.summary()
            ),
            timestamp: d.detected_at,
        });
        if let Some(e) = &status.revert_error {
            out.push(Alert {
                id: "config_drift_revert_failed".to_owned(),
                severity: AlertSeverity::Error,
                message: format!("cannot revert the drift: {e}"),
                timestamp: now,
            });
        }
    } else if let Some(t) = status.reverted_at
        && now - t < REVERTED_ALERT_FOR
    {
        out.push(Alert {
            id: "config_drift_reverted".to_owned(),
            severity: AlertSeverity::Info,
            message: "an out-of-band change to the nginx configuration was reverted".to_owned(),
            timestamp: t,
        });
    }
    out
}

#[async_trait]
impl<H: HealthSource> HealthSource for DriftHealth<H> {
    async fn health(&self) -> HealthReport {
        let mut report = self.inner.health().await;
        report
            .alerts
            .extend(drift_alerts(&self.drift.status(), Utc::now()));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parses_and_alerts_follow_the_status() {
        assert_eq!("revert".parse(), Ok(DriftPolicy::Revert));
        assert_eq!("report".parse(), Ok(DriftPolicy::Report));
        assert!("ignore".parse::<DriftPolicy>().is_err());
        assert_eq!(DriftPolicy::default(), DriftPolicy::Revert);
        let now = Utc::now();
        assert!(drift_alerts(&DriftStatus::default(), now).is_empty());
        let drift = Drift {
            expected: "a".into(),
            found: "b".into(),
            modified: vec!["nginx.conf".into()],
            added: Vec::new(),
            removed: Vec::new(),
            relinked: false,
            detected_at: now,
        };
        let status = DriftStatus {
            drift: Some(drift),
            revert_error: Some("nope".into()),
            ..DriftStatus::default()
        };
        let ids: Vec<String> = drift_alerts(&status, now)
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["config_drift", "config_drift_revert_failed"]);
        let reverted = DriftStatus {
            reverted_at: Some(now - chrono::TimeDelta::minutes(1)),
            ..DriftStatus::default()
        };
        assert_eq!(drift_alerts(&reverted, now)[0].id, "config_drift_reverted");
        let old = DriftStatus {
            reverted_at: Some(now - chrono::TimeDelta::hours(1)),
            ..DriftStatus::default()
        };
        assert!(drift_alerts(&old, now).is_empty());
    }

    #[test]
    fn the_checksum_of_a_tree_on_disk_is_the_generators() {
        let rendered = generator::render(
            &nxmesh_core::config::ConfigUpdate::default(),
            &generator::RenderOptions::default(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for f in &rendered.files {
            let p = dir.path().join(&f.path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, &f.bytes).unwrap();
        }
        let tree = read_tree(dir.path()).unwrap();
        assert_eq!(tree_checksum(&tree), rendered.checksum);
        let mut edited = tree.clone();
        edited.insert("extra.conf".into(), b"x".to_vec());
        edited.get_mut("nginx.conf").unwrap().push(b'#');
        let [m, a, r] = diff(&tree, &edited);
        assert_eq!(
            (m, a, r),
            (
                vec!["nginx.conf".to_owned()],
                vec!["extra.conf".to_owned()],
                vec![]
            )
        );
    }
}
