//! The nginx runtime: the safe apply pipeline ([`ConfigApplier`]) and the
//! master's commands ([`CommandHandler`]) against one real nginx.
//!
//! An apply renders the update with the core generator for the nginx
//! version detected at start, writes the complete tree into a fresh staging
//! directory (fsynced), runs `nginx -t` on it with the live prefix, renames
//! it to its checksum, switches `live` to it atomically, signals the master
//! and confirms that a new worker generation started with a clean error
//! log. A failure before the switch leaves the live tree and nginx
//! untouched (`FAILED`); a failure after it switches back to the last known
//! good tree and reloads (`ROLLED_BACK`). Only a confirmed tree is recorded
//! as the last known good (see [`crate::store`]).
//!
//! The active health checks ([`crate::upstream_health`]) go through the
//! same steps with [`NginxRuntime::set_down_servers`]: the last applied
//! update re-rendered with failing servers marked `down`. That changes the
//! served tree, never the applied version or the checksum reported to the
//! master (see `ARCHITECTURE.md`).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::generator::{self, Layout, NginxVersion, RenderOptions, Rendered};
use nxmesh_core::protocol::{AppliedConfig, Command, CommandKind, CommandResult};

use crate::nginx::{self, ConfirmTimeouts, MasterInfo, Nginx, NginxError, NginxMode, NginxPaths};
use crate::runtime::{ApplyOutcome, CommandHandler, ConfigApplier};
use crate::store::{DownServer, LastKnownGood, TreeStore};

/// Configuration of an [`NginxRuntime`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The nginx binary.
    pub nginx_binary: PathBuf,
    /// nginx's prefix (`-p`).
    pub prefix: PathBuf,
    /// The agent's managed directory (trees, `live`, `state.json`). nginx
    /// reads `DATA/live/nginx.conf`; in external mode it must be started
    /// with `-c` pointing there.
    pub data_dir: PathBuf,
    /// Standalone (the agent starts nginx) or external.
    pub mode: NginxMode,
    /// Where the rendered configuration puts the pid file, logs and
    /// temporary files (absolute paths).
    pub layout: Layout,
    /// Address the virtual hosts listen on; `None` is every address.
    pub listen_address: Option<IpAddr>,
    /// Port of the local `stub_status` endpoint (127.0.0.1 only).
    pub status_port: u16,
    /// Seconds old workers get after a reload (bounds old generations).
    pub worker_shutdown_timeout_secs: u32,
    /// Reload and start confirmation.
    pub confirm: ConfirmTimeouts,
    /// How long a graceful stop waits before stopping hard.
    pub stop_timeout: Duration,
}

impl RuntimeConfig {
    /// A configuration with the pid file, logs and temporary files under
    /// `prefix` (`logs/nginx.pid`, `logs/error.log`, `logs/access.log`,
    /// `temp/`) and the generator's other defaults.
    pub fn new(nginx_binary: PathBuf, prefix: PathBuf, data_dir: PathBuf, mode: NginxMode) -> Self {
        let under = |p: &str| prefix.join(p).to_string_lossy().into_owned();
        let defaults = RenderOptions::default();
        RuntimeConfig {
            layout: Layout {
                pid_file: under("logs/nginx.pid"),
                error_log: under("logs/error.log"),
                access_log: under("logs/access.log"),
                temp_dir: under("temp"),
                ..Layout::default()
            },
            nginx_binary,
            prefix,
            data_dir,
            mode,
            listen_address: defaults.listen_address,
            status_port: defaults.status_port,
            worker_shutdown_timeout_secs: defaults.worker_shutdown_timeout_secs,
            confirm: ConfirmTimeouts::default(),
            stop_timeout: Duration::from_secs(30),
        }
    }
}

/// Why an [`NginxRuntime`] could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// nginx could not be run or signalled.
    #[error("nginx")]
    Nginx(#[source] NginxError),
    /// The managed directory could not be prepared or read.
    #[error("managed directory {path}")]
    Store {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The generator refused the options (for example a bad layout path).
    #[error("the generator refused the render options")]
    Render(#[source] nxmesh_core::error::ValidationErrors),
}

/// A step of an apply, for [`ApplyHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplyStep {
    /// The tree is written in its staging directory (not yet fsynced
    /// checks aside, not yet tested); the hook gets the staging directory.
    Staged,
    /// `nginx -t` passed on the staged tree.
    Validated,
    /// The staged tree was renamed to `trees/<checksum>`.
    Committed,
    /// `live` points to the new tree; nginx not yet signalled.
    Switched,
    /// nginx confirmed the new tree; the last known good not yet recorded.
    Reloaded,
    /// The last known good is recorded.
    Recorded,
}

/// Marks where an [`ApplyHook`] stopped an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookAbort;

/// Fault injection for tests: called at every [`ApplyStep`] with the
/// directory of the new tree. It may change the tree (to inject errors
/// below the generator), or return [`HookAbort`] to stop the apply right
/// there with no cleanup at all, as if the agent had been killed at that
/// step (the runtime must then be reopened, like after a crash).
pub trait ApplyHook: Send + Sync + 'static {
    /// Called at `step`.
    fn at(&self, step: ApplyStep, tree: &Path) -> Result<(), HookAbort>;
}

struct Inner {
    config: RuntimeConfig,
    nginx: Nginx,
    store: TreeStore,
    opts: RenderOptions,
    /// Applies and commands that change nginx run one at a time.
    serial: tokio::sync::Mutex<()>,
    lkg: Mutex<Option<LastKnownGood>>,
    /// The configuration last applied, without health-check overrides.
    current: Mutex<Option<Arc<ConfigUpdate>>>,
    hook: Option<Arc<dyn ApplyHook>>,
}

/// The nginx runtime: implements [`ConfigApplier`] and [`CommandHandler`]
/// (and, in [`crate::health`], `HealthSource`). Cheap to clone.
#[derive(Clone)]
pub struct NginxRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NginxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NginxRuntime")
            .field("config", &self.inner.config)
            .field("nginx_version", &self.inner.opts.nginx_version)
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

impl NginxRuntime {
    /// Opens the runtime: detects the nginx version, prepares the managed
    /// directory, reads the last known good and repairs what a crash left
    /// (staging leftovers, `live` on an unconfirmed tree, then reloaded if
    /// nginx runs). When nothing was ever applied, an empty tree (the
    /// status endpoint only) is made live so that nginx can start.
    ///
    /// A running nginx serving the last known good is not touched; nginx
    /// is not started here (see [`NginxRuntime::ensure_started`]).
    pub async fn open(config: RuntimeConfig) -> Result<NginxRuntime, RuntimeError> {
        Self::open_with_hook(config, None).await
    }

    /// [`NginxRuntime::open`] with a fault-injection hook.
    pub async fn open_with_hook(
        config: RuntimeConfig,
        hook: Option<Arc<dyn ApplyHook>>,
    ) -> Result<NginxRuntime, RuntimeError> {
        let version = nginx::detect_version(&config.nginx_binary)
            .await
            .map_err(RuntimeError::Nginx)?;
        let opts = RenderOptions {
            nginx_version: version,
            layout: config.layout.clone(),
            listen_address: config.listen_address,
            status_port: config.status_port,
            worker_shutdown_timeout_secs: config.worker_shutdown_timeout_secs,
        };
        let store_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RuntimeError::Store { path, source }
        };
        let data_dir = config.data_dir.clone();
        let (store, (lkg, current)) = {
            let dirs = [
                Path::new(&config.layout.pid_file)
                    .parent()
                    .map(Path::to_owned),
                Path::new(&config.layout.error_log)
                    .parent()
                    .map(Path::to_owned),
                Path::new(&config.layout.access_log)
                    .parent()
                    .map(Path::to_owned),
                Some(PathBuf::from(&config.layout.temp_dir)),
            ];
            let data = data_dir.clone();
            blocking(move || {
                for d in dirs.into_iter().flatten() {
                    std::fs::create_dir_all(d)?;
                }
                let store = TreeStore::open(data)?;
                let lkg = store.read_state()?;
                let current = match &lkg {
                    // Only the health checks need it: a damaged file costs
                    // them until the next push, never the agent's start.
                    Some(l) => store.read_update(l).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "ignoring the recorded configuration");
                        None
                    }),
                    None => None,
                };
                Ok((store, (lkg, current.map(Arc::new))))
            })
            .await
            .map_err(store_err(&data_dir))?
        };
        let paths = NginxPaths {
            binary: config.nginx_binary.clone(),
            prefix: config.prefix.clone(),
            conf: store.live().join("nginx.conf"),
            pid_file: PathBuf::from(&config.layout.pid_file),
            error_log: PathBuf::from(&config.layout.error_log),
        };
        let runtime = NginxRuntime {
            inner: Arc::new(Inner {
                nginx: Nginx::new(paths, config.mode, config.confirm),
                config,
                store: store.clone(),
                opts,
                serial: tokio::sync::Mutex::new(()),
                lkg: Mutex::new(lkg.clone()),
                current: Mutex::new(current),
                hook,
            }),
        };
        let moved = {
            let (store, lkg) = (store.clone(), lkg.clone());
            blocking(move || store.recover(lkg.as_ref()))
                .await
                .map_err(store_err(&data_dir))?
        };
        if moved {
            tracing::warn!("an interrupted apply left live on an unconfirmed tree; restored");
            if runtime.inner.nginx.status().await.is_some() {
                runtime
                    .inner
                    .nginx
                    .reload()
                    .await
                    .map_err(RuntimeError::Nginx)?;
            }
        }
        if store.live_checksum().is_none() {
            runtime.bootstrap().await?;
        }
        Ok(runtime)
    }

    /// Makes an empty configuration live (first start only).
    async fn bootstrap(&self) -> Result<(), RuntimeError> {
        let rendered = generator::render(&ConfigUpdate::default(), &self.inner.opts)
            .map_err(RuntimeError::Render)?;
        let store = self.inner.store.clone();
        let checksum = rendered.checksum.clone();
        let staging = {
            let store = store.clone();
            blocking(move || store.stage(&rendered.files))
                .await
                .map_err(|source| RuntimeError::Store {
                    path: self.inner.config.data_dir.clone(),
                    source,
                })?
        };
        nginx::test_config(self.inner.nginx.paths(), &staging.join("nginx.conf"))
            .await
            .map_err(RuntimeError::Nginx)?;
        blocking(move || {
            store.commit(&staging, &checksum)?;
            store.switch(&checksum)
        })
        .await
        .map_err(|source| RuntimeError::Store {
            path: self.inner.config.data_dir.clone(),
            source,
        })
    }

    /// Starts nginx in standalone mode unless it already runs (an agent
    /// restarted beside a running nginx adopts it untouched).
    pub async fn ensure_started(&self) -> Result<MasterInfo, NginxError> {
        let _serial = self.inner.serial.lock().await;
        if let Some(m) = self.inner.nginx.status().await {
            return Ok(m);
        }
        self.inner.nginx.start().await
    }

    /// Keeps nginx running in standalone mode: checks every `interval`
    /// and restarts a master that died, until `shutdown`.
    pub async fn supervise(&self, interval: Duration, shutdown: crate::CancellationToken) {
        if self.inner.config.mode == NginxMode::External {
            return;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if self.inner.nginx.status().await.is_none() {
                tracing::warn!("nginx is not running; starting it");
                if let Err(e) = self.ensure_started().await {
                    tracing::error!(error = %e, "cannot start nginx");
                }
            }
        }
    }

    /// The nginx instance.
    pub fn nginx(&self) -> &Nginx {
        &self.inner.nginx
    }

    /// The managed directory.
    pub fn store(&self) -> &TreeStore {
        &self.inner.store
    }

    /// The options every update is rendered with.
    pub fn render_options(&self) -> &RenderOptions {
        &self.inner.opts
    }

    /// The nginx version detected at open.
    pub fn nginx_version(&self) -> NginxVersion {
        self.inner.opts.nginx_version
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The last known good, if any.
    pub fn last_known_good(&self) -> Option<LastKnownGood> {
        self.inner
            .lkg
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Holds off applies and the commands that change nginx while the
    /// guard lives, for work that must not interleave with them (the drift
    /// detector's revert, see [`crate::drift`]).
    pub async fn lock_applies(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.serial.lock().await
    }

    fn hook(&self, step: ApplyStep, tree: &Path) -> Result<(), HookAbort> {
        match &self.inner.hook {
            Some(h) => h.at(step, tree),
            None => Ok(()),
        }
    }

    /// Records `state` as the last known good, and `update` (when it is a
    /// new configuration) as the one health checks re-render.
    async fn record(
        &self,
        state: &LastKnownGood,
        update: Option<Arc<ConfigUpdate>>,
    ) -> io::Result<()> {
        let store = self.inner.store.clone();
        let (s, u) = (state.clone(), update.clone());
        blocking(move || {
            if let Some(u) = &u {
                store.write_update(u)?;
                crate::failpoint::hit("update.written");
            }
            store.write_state(&s)
        })
        .await?;
        *self
            .inner
            .lkg
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(state.clone());
        if let Some(u) = update {
            *self
                .inner
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(u);
        }
        Ok(())
    }

    /// The configuration last applied (as the master sent it, without
    /// health-check overrides), if known: it survives restarts through
    /// `applied-update.json`.
    pub fn current_update(&self) -> Option<Arc<ConfigUpdate>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The upstream servers the health checks marked `down` in the tree
    /// nginx serves.
    pub fn down_servers(&self) -> BTreeSet<DownServer> {
        self.last_known_good()
            .map(|l| l.down.into_iter().collect())
            .unwrap_or_default()
    }

    /// Reloads nginx, or starts it (standalone) when it is not running.
    async fn reload_or_start(&self) -> Result<MasterInfo, NginxError> {
        if self.inner.nginx.status().await.is_some() {
            self.inner.nginx.reload().await
        } else {
            self.inner.nginx.start().await
        }
    }

    async fn apply_serialized(&self, update: ConfigUpdate) -> ApplyOutcome {
        let inner = &self.inner;
        let current = self.last_known_good();
        // What the master is told nginx serves after a failure: the last
        // known good's checksum, never the health-check re-render's.
        let reported = current.as_ref().map(|c| c.checksum.clone());
        if let Some(c) = &current {
            if update.version == c.version {
                self.adopt_if_unknown(update, c).await;
                return ApplyOutcome::success(c.checksum.clone());
            }
            if update.version < c.version {
                return ApplyOutcome::failed(
                    format!(
                        "version {} is older than the applied version {}; nothing done",
                        update.version, c.version
                    ),
                    reported,
                );
            }
        }
        let rendered = match generator::render(&update, &inner.opts) {
            Ok(r) => r,
            Err(e) => {
                return ApplyOutcome::failed(
                    format!("the generator refused the configuration: {e}"),
                    reported,
                );
            }
        };
        let checksum = rendered.checksum.clone();
        // Servers the health checks hold down stay down in the new version
        // (those that still exist in it).
        let wanted: BTreeSet<DownServer> = current
            .map(|c| c.down.into_iter().collect())
            .unwrap_or_default();
        let (served, down) = if wanted.is_empty() {
            (rendered, Vec::new())
        } else {
            let (with_down, down) = crate::upstream_health::apply_overrides(&update, &wanted);
            if down.is_empty() {
                (rendered, down)
            } else {
                match generator::render(&with_down, &inner.opts) {
                    Ok(r) => (r, down),
                    Err(e) => {
                        return ApplyOutcome::failed(
                            format!("the generator refused the configuration: {e}"),
                            reported,
                        );
                    }
                }
            }
        };
        let state = LastKnownGood {
            version: update.version,
            config_id: update.config_id.clone(),
            served_checksum: (served.checksum != checksum).then(|| served.checksum.clone()),
            checksum,
            down,
        };
        self.deploy(served, state, Some(Arc::new(update)), reported)
            .await
    }

    /// The same version again: nothing to apply, but a restarted agent that
    /// lost `applied-update.json` learns the configuration back from it.
    async fn adopt_if_unknown(&self, update: ConfigUpdate, current: &LastKnownGood) {
        if self.current_update().is_some() {
            return;
        }
        let Ok(rendered) = generator::render(&update, &self.inner.opts) else {
            return;
        };
        if rendered.checksum != current.checksum || update.config_id != current.config_id {
            return;
        }
        let update = Arc::new(update);
        let store = self.inner.store.clone();
        let u = update.clone();
        match blocking(move || store.write_update(&u)).await {
            Ok(()) => {
                *self
                    .inner
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(update);
            }
            Err(e) => tracing::warn!(error = %e, "cannot record the applied configuration"),
        }
    }

    /// Re-renders the configuration last applied with `down` marked `down`
    /// (the active health checks' verdict) and makes nginx serve it through
    /// the same pipeline as an apply (`nginx -t`, switch, reload, confirm,
    /// roll back on failure). The applied version and the checksum reported
    /// to the master do not change; `state.json` records the served tree.
    ///
    /// Servers that are not in the configuration are ignored, and an
    /// upstream always keeps at least one server up (see
    /// [`crate::upstream_health::apply_overrides`]). A success outcome
    /// carries the reported (unchanged) checksum.
    pub async fn set_down_servers(&self, down: &BTreeSet<DownServer>) -> ApplyOutcome {
        let _serial = self.inner.serial.lock().await;
        let Some(lkg) = self.last_known_good() else {
            return ApplyOutcome::failed("no configuration was applied yet", None);
        };
        let reported = Some(lkg.checksum.clone());
        let Some(update) = self
            .current_update()
            .filter(|u| u.version == lkg.version && u.config_id == lkg.config_id)
        else {
            return ApplyOutcome::failed(
                "the applied configuration is not known (it comes back with the next push)",
                reported,
            );
        };
        let (with_down, applied) = crate::upstream_health::apply_overrides(&update, down);
        if applied == lkg.down {
            return ApplyOutcome::success(lkg.checksum);
        }
        let rendered = match generator::render(&with_down, &self.inner.opts) {
            Ok(r) => r,
            Err(e) => {
                return ApplyOutcome::failed(
                    format!("the generator refused the re-rendered configuration: {e}"),
                    reported,
                );
            }
        };
        let state = LastKnownGood {
            served_checksum: (rendered.checksum != lkg.checksum).then(|| rendered.checksum.clone()),
            down: applied,
            ..lkg
        };
        self.deploy(rendered, state, None, reported).await
    }

    /// Makes nginx serve `rendered` and records `state`: stage, `nginx -t`,
    /// commit, switch, reload and confirm, record; a failure before the
    /// switch leaves everything untouched (`FAILED`), one after it switches
    /// back and reloads (`ROLLED_BACK`). Outcomes carry `state.checksum` on
    /// success and `reported` otherwise.
    async fn deploy(
        &self,
        rendered: Rendered,
        state: LastKnownGood,
        update: Option<Arc<ConfigUpdate>>,
        reported: Option<String>,
    ) -> ApplyOutcome {
        let inner = &self.inner;
        let live = inner.store.live_checksum();
        let running = inner.nginx.status().await.is_some();
        if !running && inner.config.mode == NginxMode::External {
            return ApplyOutcome::failed("nginx is not running (external mode)", reported);
        }
        let served = rendered.checksum.clone();
        if running && live.as_deref() == Some(served.as_str()) {
            // nginx already serves exactly this tree.
            return match self.record(&state, update).await {
                Ok(()) => ApplyOutcome::success(state.checksum),
                Err(e) => ApplyOutcome::failed(format!("cannot record the state: {e}"), reported),
            };
        }

        // Before the switch: any failure leaves live and nginx untouched.
        let store = inner.store.clone();
        let staging = match blocking(move || store.stage(&rendered.files)).await {
            Ok(s) => s,
            Err(e) => {
                return ApplyOutcome::failed(format!("cannot write the tree: {e}"), reported);
            }
        };
        let discard = |dir: PathBuf| {
            let store = inner.store.clone();
            async move {
                if let Err(e) = blocking(move || store.remove(&dir)).await {
                    tracing::warn!(error = %e, "cannot remove a discarded tree");
                }
            }
        };
        crate::failpoint::hit("apply.staged");
        if self.hook(ApplyStep::Staged, &staging).is_err() {
            return aborted(ApplyStep::Staged, reported);
        }
        if let Err(e) = nginx::test_config(inner.nginx.paths(), &staging.join("nginx.conf")).await {
            discard(staging).await;
            let msg = match e {
                NginxError::Refused(text) => text,
                other => other.to_string(),
            };
            return ApplyOutcome::failed(msg, reported);
        }
        crate::failpoint::hit("apply.validated");
        if self.hook(ApplyStep::Validated, &staging).is_err() {
            return aborted(ApplyStep::Validated, reported);
        }
        let store = inner.store.clone();
        let c = served.clone();
        let tree = match blocking(move || store.commit(&staging, &c)).await {
            Ok(t) => t,
            Err(e) => {
                return ApplyOutcome::failed(format!("cannot commit the tree: {e}"), reported);
            }
        };
        crate::failpoint::hit("apply.committed");
        if self.hook(ApplyStep::Committed, &tree).is_err() {
            return aborted(ApplyStep::Committed, reported);
        }
        let store = inner.store.clone();
        let c = served.clone();
        if let Err(e) = blocking(move || store.switch(&c)).await {
            discard(tree).await;
            return ApplyOutcome::failed(format!("cannot switch the live tree: {e}"), reported);
        }
        crate::failpoint::hit("apply.switched");
        if self.hook(ApplyStep::Switched, &tree).is_err() {
            return aborted(ApplyStep::Switched, reported);
        }

        // After the switch: a failure switches back and reloads.
        match self.reload_or_start().await {
            Ok(_) => {}
            Err(e) => {
                let why = match e {
                    NginxError::Unconfirmed(text) | NginxError::Refused(text) => text,
                    other => other.to_string(),
                };
                return self.roll_back(why, live, tree, reported).await;
            }
        }
        crate::failpoint::hit("apply.reloaded");
        if self.hook(ApplyStep::Reloaded, &tree).is_err() {
            return aborted(ApplyStep::Reloaded, reported);
        }
        if let Err(e) = self.record(&state, update).await {
            // nginx serves the new tree, but it could not be recorded: go
            // back to the recorded one so that disk and nginx agree.
            return self
                .roll_back(
                    format!("cannot record the state: {e}"),
                    live,
                    tree,
                    reported,
                )
                .await;
        }
        crate::failpoint::hit("apply.recorded");
        if self.hook(ApplyStep::Recorded, &tree).is_err() {
            return aborted(ApplyStep::Recorded, Some(state.checksum));
        }
        let store = inner.store.clone();
        match blocking(move || store.retire_old_trees()).await {
            // Removing a thousand files takes a while on a busy disk and
            // nothing waits for it: it runs after the outcome.
            Ok(trash) if !trash.is_empty() => {
                tokio::task::spawn_blocking(move || {
                    for dir in trash {
                        if let Err(e) = std::fs::remove_dir_all(&dir) {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an old tree");
                        }
                    }
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot remove old trees"),
        }
        ApplyOutcome::success(state.checksum)
    }

    async fn roll_back(
        &self,
        why: String,
        previous: Option<String>,
        tree: PathBuf,
        reported: Option<String>,
    ) -> ApplyOutcome {
        let Some(prev) = previous else {
            return ApplyOutcome::rolled_back(
                format!("{why}; there is no previous tree to restore"),
                None,
            );
        };
        let store = self.inner.store.clone();
        if let Err(e) = blocking(move || store.switch(&prev)).await {
            return ApplyOutcome::rolled_back(
                format!("{why}; switching back to the last good tree failed: {e}"),
                None,
            );
        }
        crate::failpoint::hit("rollback.switched");
        let restored = self.reload_or_start().await;
        crate::failpoint::hit("rollback.reloaded");
        let store = self.inner.store.clone();
        if let Err(e) = blocking(move || store.remove(&tree)).await {
            tracing::warn!(error = %e, "cannot remove the rolled-back tree");
        }
        match restored {
            Ok(_) => ApplyOutcome::rolled_back(why, reported),
            Err(e) => ApplyOutcome::rolled_back(
                format!("{why}; reloading the last good tree failed too: {e}"),
                reported,
            ),
        }
    }

    async fn command(&self, kind: CommandKind) -> Result<BTreeMap<String, String>, CommandError> {
        let nginx = &self.inner.nginx;
        let mut details = BTreeMap::new();
        match kind {
            CommandKind::Reload { graceful: true } => {
                let _serial = self.inner.serial.lock().await;
                let m = nginx.reload().await?;
                details.insert("pid".to_owned(), m.pid.to_string());
            }
            CommandKind::Reload { graceful: false } | CommandKind::Restart { .. } => {
                let force = matches!(kind, CommandKind::Restart { force: true });
                if nginx.mode() == NginxMode::External {
                    return Err(NginxError::External.into());
                }
                let _serial = self.inner.serial.lock().await;
                nginx.stop(!force, self.inner.config.stop_timeout).await?;
                let m = nginx.start().await?;
                details.insert("pid".to_owned(), m.pid.to_string());
            }
            CommandKind::Stop {
                graceful,
                timeout_seconds,
            } => {
                let _serial = self.inner.serial.lock().await;
                let timeout = if timeout_seconds == 0 {
                    self.inner.config.stop_timeout
                } else {
                    Duration::from_secs(u64::from(timeout_seconds))
                };
                nginx.stop(graceful, timeout).await?;
            }
            CommandKind::GetStatus => {
                let m = nginx.status().await;
                details.insert("running".to_owned(), m.is_some().to_string());
                if let Some(m) = m {
                    details.insert("pid".to_owned(), m.pid.to_string());
                    details.insert("uptime_seconds".to_owned(), m.uptime_seconds.to_string());
                    let workers = nginx::worker_pids(m.pid);
                    details.insert("workers".to_owned(), workers.len().to_string());
                }
                details.insert(
                    "nginx_version".to_owned(),
                    self.inner.opts.nginx_version.to_string(),
                );
                if let Some(l) = self.last_known_good() {
                    details.insert("config_version".to_owned(), l.version.to_string());
                    if let Some(served) = &l.served_checksum {
                        details.insert("served_checksum".to_owned(), served.clone());
                    }
                    details.insert("config_checksum".to_owned(), l.checksum);
                }
            }
            CommandKind::ValidateConfig { config_content } => {
                // `nginx -t` on untrusted text can load code; the text
                // passes the core parser and the allowlist first.
                let output = crate::validate_raw::validate(
                    &config_content,
                    &self.inner.config.nginx_binary,
                    &self.inner.opts,
                )
                .await?;
                details.insert("valid".to_owned(), "true".to_owned());
                if !output.is_empty() {
                    details.insert("nginx_output".to_owned(), output);
                }
            }
        }
        Ok(details)
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    /// nginx could not be run, signalled or confirmed.
    #[error(transparent)]
    Nginx(#[from] NginxError),
    /// `ValidateConfig` refused the text.
    #[error(transparent)]
    Validate(#[from] crate::validate_raw::ValidateError),
}

fn aborted(step: ApplyStep, checksum: Option<String>) -> ApplyOutcome {
    ApplyOutcome::failed(format!("apply aborted by the hook at {step:?}"), checksum)
}

#[async_trait]
impl ConfigApplier for NginxRuntime {
    async fn apply(&self, update: ConfigUpdate) -> ApplyOutcome {
        let _serial = self.inner.serial.lock().await;
        self.apply_serialized(update).await
    }

    fn applied(&self) -> Option<AppliedConfig> {
        self.last_known_good().map(|l| AppliedConfig {
            version: l.version,
            checksum: l.checksum,
        })
    }
}

#[async_trait]
impl CommandHandler for NginxRuntime {
    async fn handle(&self, cmd: Command) -> CommandResult {
        let what = format!("{:?}", cmd.kind);
        match self.command(cmd.kind).await {
            Ok(details) => CommandResult {
                command_id: cmd.command_id,
                success: true,
                message: "done".to_owned(),
                details,
            },
            Err(e) => {
                tracing::warn!(command = %what, error = %e, "command failed");
                CommandResult {
                    command_id: cmd.command_id,
                    success: false,
                    message: e.to_string(),
                    details: BTreeMap::new(),
                }
            }
        }
    }
}
