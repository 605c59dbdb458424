//! The agent's managed directory: rendered trees, the `live` link nginx
//! reads through, and the last-known-good record.
//!
//! ```text
//! DATA/trees/<checksum>/…        complete trees, each one passed `nginx -t`
//! DATA/trees/.staging-<uuid>/    a tree being written (garbage after a crash)
//! DATA/trees/.trash-<uuid>/      an old tree being removed
//! DATA/live -> trees/<checksum>  what nginx is configured from (`-c DATA/live/nginx.conf`)
//! DATA/state.json                the last known good: version, config id, checksum
//!                                (and the served tree when health checks marked servers down)
//! DATA/applied-update.json       the configuration last applied (0600), re-rendered by the health checks
//! ```
//!
//! Crash safety comes from the order of operations: a tree is written and
//! fsynced in a staging directory, tested, renamed to its checksum, and only
//! then does `live` move, by renaming a new symlink over it (atomic). At any
//! instant `live` names a complete tree that passed `nginx -t`. The state
//! file is written (write, fsync, rename, fsync the directory) only after
//! nginx confirmed the new tree, so after a crash between the switch and the
//! record [`TreeStore::recover`] points `live` back at the recorded tree.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::generator::RenderedFile;
use serde::{Deserialize, Serialize};

const STAGING_PREFIX: &str = ".staging-";
/// Old trees renamed out of the way, to be removed off the apply's path.
const TRASH_PREFIX: &str = ".trash-";

/// The last configuration nginx was confirmed to serve. Persisted in
/// `state.json`: a compatibility promise across agent upgrades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastKnownGood {
    /// The applied version.
    pub version: i64,
    /// The configuration's id.
    pub config_id: String,
    /// Checksum of the tree (the generator's), also its directory name.
    /// This is what the agent reports to the master: health-check overrides
    /// never change it.
    pub checksum: String,
    /// The tree `live` points to when it is not `checksum`'s: the same
    /// configuration re-rendered with the servers of [`Self::down`] marked
    /// `down` by the active health checks. Absent: `checksum` is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_checksum: Option<String>,
    /// The upstream servers the active health checks marked `down` in the
    /// served tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<DownServer>,
}

impl LastKnownGood {
    /// The checksum of the tree nginx serves: [`Self::served_checksum`],
    /// else [`Self::checksum`].
    pub fn served(&self) -> &str {
        self.served_checksum.as_deref().unwrap_or(&self.checksum)
    }
}

/// One upstream server marked `down` by the active health checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DownServer {
    /// The upstream's id.
    pub upstream_id: uuid::Uuid,
    /// The server's address, as in the model.
    pub address: String,
}

/// The managed directory of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeStore {
    root: PathBuf,
}

/// Whether `s` can name a tree directory: a lowercase hex checksum.
fn is_checksum(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// How many threads fsync a staged tree's files.
const SYNC_THREADS: usize = 8;

/// fsyncs every file of `paths`, several at a time: concurrent fsyncs share
/// the file system's journal commits, so a tree of a thousand files becomes
/// durable several times faster than with one fsync after another (about
/// 6× on this project's machine). Returns the first error.
fn sync_files(paths: &[PathBuf]) -> io::Result<()> {
    if paths.len() <= 1 {
        return paths.iter().try_for_each(|p| File::open(p)?.sync_all());
    }
    let per_thread = paths.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || chunk.iter().try_for_each(|p| File::open(p)?.sync_all()))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("an fsync thread panicked")))
        })
    })
}

/// fsyncs a directory, so that a rename or creation inside it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl TreeStore {
    /// The store at `root`, creating its directories.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<TreeStore> {
        let root = root.into();
        fs::create_dir_all(root.join("trees"))?;
        Ok(TreeStore { root })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `live` link; nginx reads `live/nginx.conf`.
    pub fn live(&self) -> PathBuf {
        self.root.join("live")
    }

    /// The directory of the tree with `checksum`.
    pub fn tree(&self, checksum: &str) -> PathBuf {
        self.root.join("trees").join(checksum)
    }

    /// The checksum of the tree `live` points to, if any.
    pub fn live_checksum(&self) -> Option<String> {
        let target = fs::read_link(self.live()).ok()?;
        let name = target.file_name()?.to_str()?;
        is_checksum(name).then(|| name.to_owned())
    }

    /// Writes `files` into a fresh staging directory, every file and
    /// directory fsynced; private keys (`*.key`) get mode 0600.
    pub fn stage(&self, files: &[RenderedFile]) -> io::Result<PathBuf> {
        let dir = self
            .root
            .join("trees")
            .join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir(&dir)?;
        let mut dirs = vec![dir.clone()];
        let mut written = Vec::with_capacity(files.len());
        for f in files {
            let rel = Path::new(&f.path);
            // The generator only emits relative paths without `..`; check
            // anyway, since this is the one place that writes them.
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(invalid(format!("refusing to write {:?}", f.path)));
            }
            let path = dir.join(rel);
            if let Some(parent) = path.parent()
                && !parent.exists()
            {
                fs::create_dir_all(parent)?;
                let mut p = parent;
                while p != dir {
                    if !dirs.iter().any(|d| d == p) {
                        dirs.push(p.to_owned());
                    }
                    match p.parent() {
                        Some(up) => p = up,
                        None => break,
                    }
                }
            }
            let mode = if f.path.ends_with(".key") {
                0o600
            } else {
                0o644
            };
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)?;
            file.write_all(&f.bytes)?;
            written.push(path);
            crate::failpoint::hit("stage.file");
        }
        sync_files(&written)?;
        // Deepest first, so that each directory's entry is durable in its
        // parent.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &dirs {
            sync_dir(d)?;
        }
        sync_dir(&self.root.join("trees"))?;
        Ok(dir)
    }

    /// Renames a staged tree to `trees/<checksum>`. An existing directory
    /// of that name is a leftover (never the live tree: the caller checks)
    /// and is replaced.
    pub fn commit(&self, staging: &Path, checksum: &str) -> io::Result<PathBuf> {
        if !is_checksum(checksum) {
            return Err(invalid(format!("not a checksum: {checksum:?}")));
        }
        let target = self.tree(checksum);
        if target.exists() {
            fs::remove_dir_all(&target)?;
        }
        fs::rename(staging, &target)?;
        sync_dir(&self.root.join("trees"))?;
        Ok(target)
    }

    /// Points `live` at `trees/<checksum>` atomically: a new symlink under
    /// a temporary name, renamed over `live`, then the directory fsynced.
    pub fn switch(&self, checksum: &str) -> io::Result<()> {
        if !is_checksum(checksum) || !self.tree(checksum).is_dir() {
            return Err(invalid(format!("no tree {checksum:?} to switch to")));
        }
        let tmp = self.root.join("live.tmp");
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::os::unix::fs::symlink(Path::new("trees").join(checksum), &tmp)?;
        crate::failpoint::hit("switch.linked");
        fs::rename(&tmp, self.live())?;
        crate::failpoint::hit("switch.renamed");
        sync_dir(&self.root)
    }

    /// Removes a tree that is not live.
    pub fn remove(&self, path: &Path) -> io::Result<()> {
        if self.live_checksum().is_some_and(|c| self.tree(&c) == path) {
            return Err(invalid(format!("{} is live", path.display())));
        }
        fs::remove_dir_all(path)
    }

    /// The last known good, if one was recorded.
    pub fn read_state(&self) -> io::Result<Option<LastKnownGood>> {
        let bytes = match fs::read(self.root.join("state.json")) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let state: LastKnownGood = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("state.json is not valid: {e}")))?;
        if !is_checksum(&state.checksum) || !is_checksum(state.served()) {
            return Err(invalid("state.json names no valid checksum".to_owned()));
        }
        Ok(Some(state))
    }

    /// Records the last known good durably (write, fsync, rename, fsync).
    pub fn write_state(&self, state: &LastKnownGood) -> io::Result<()> {
        let tmp = self.root.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        crate::failpoint::hit("state.written");
        fs::rename(&tmp, self.root.join("state.json"))?;
        crate::failpoint::hit("state.renamed");
        sync_dir(&self.root)
    }

    /// Keeps the configuration last applied (`applied-update.json`, mode
    /// 0600: it holds the certificates' private keys, like the trees), so
    /// that a restarted agent can re-render it for the health checks
    /// without waiting for the master. Written before `state.json`; it is
    /// used only when its version and id match the recorded state.
    pub fn write_update(&self, update: &ConfigUpdate) -> io::Result<()> {
        let tmp = self.root.join("applied-update.json.tmp");
        let bytes = serde_json::to_vec(update).map_err(io::Error::other)?;
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, self.root.join("applied-update.json"))?;
        sync_dir(&self.root)
    }

    /// The configuration recorded by [`TreeStore::write_update`], if it is
    /// the one `state` names.
    pub fn read_update(&self, state: &LastKnownGood) -> io::Result<Option<ConfigUpdate>> {
        let bytes = match fs::read(self.root.join("applied-update.json")) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let update: ConfigUpdate = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("applied-update.json is not valid: {e}")))?;
        Ok(
            (update.version == state.version && update.config_id == state.config_id)
                .then_some(update),
        )
    }

    /// Cleans up after a crash: removes staging directories and a
    /// half-made link, and points `live` back at the recorded tree when a
    /// crash left it on an unconfirmed one. Returns whether `live` moved
    /// (nginx then needs a reload if it runs).
    pub fn recover(&self, state: Option<&LastKnownGood>) -> io::Result<bool> {
        for e in fs::read_dir(self.root.join("trees"))? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX) {
                fs::remove_dir_all(e.path())?;
            }
        }
        match fs::remove_file(self.root.join("live.tmp")) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let Some(state) = state else {
            return Ok(false);
        };
        let live = self.live_checksum();
        let served = state.served();
        if live.as_deref() == Some(served) {
            return Ok(false);
        }
        if !self.tree(served).is_dir() {
            return Err(invalid(format!("the recorded tree {served} is missing")));
        }
        self.switch(served)?;
        Ok(true)
    }

    /// Removes every tree except the live one.
    pub fn collect_garbage(&self) -> io::Result<()> {
        for dir in self.retire_old_trees()? {
            fs::remove_dir_all(dir)?;
        }
        Ok(())
    }

    /// Renames every tree except the live one out of the way
    /// (`trees/.trash-<uuid>`, one rename each, so no checksum names a
    /// half-removed tree) and returns them, for the caller to remove when
    /// it suits it; [`TreeStore::recover`] removes what a crash left.
    pub fn retire_old_trees(&self) -> io::Result<Vec<PathBuf>> {
        let live = self.live_checksum();
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("trees"))? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if is_checksum(&name) && live.as_deref() != Some(&*name) {
                let trash = self
                    .root
                    .join("trees")
                    .join(format!("{TRASH_PREFIX}{}", uuid::Uuid::new_v4().simple()));
                fs::rename(e.path(), &trash)?;
                out.push(trash);
                crate::failpoint::hit("gc.removed");
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, bytes: &str) -> RenderedFile {
        RenderedFile {
            path: path.to_owned(),
            bytes: bytes.as_bytes().to_vec(),
        }
    }

    #[test]
    fn stage_commit_switch_recover() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(dir.path()).unwrap();
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let s = store
            .stage(&[file("nginx.conf", "A"), file("conf.d/x/y.key", "K")])
            .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(s.join("conf.d/x/y.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store.commit(&s, &a).unwrap();
        store.switch(&a).unwrap();
        assert_eq!(fs::read(store.live().join("nginx.conf")).unwrap(), b"A");
        let lkg = LastKnownGood {
            version: 3,
            config_id: "c".into(),
            checksum: a.clone(),
            served_checksum: None,
            down: Vec::new(),
        };
        store.write_state(&lkg).unwrap();
        assert_eq!(store.read_state().unwrap(), Some(lkg.clone()));

        // A crash after switching to b but before recording it.
        let s = store.stage(&[file("nginx.conf", "B")]).unwrap();
        store.commit(&s, &b).unwrap();
        store.switch(&b).unwrap();
        let leftover = store.stage(&[file("nginx.conf", "half")]).unwrap();
        assert!(store.recover(Some(&lkg)).unwrap());
        assert!(!leftover.exists());
        assert_eq!(store.live_checksum(), Some(a.clone()));
        assert!(!store.recover(Some(&lkg)).unwrap());
        store.collect_garbage().unwrap();
        assert!(!store.tree(&b).exists());
        assert!(store.tree(&a).exists());
        assert!(store.remove(&store.tree(&a)).is_err());
    }

    #[test]
    fn refuses_paths_outside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = TreeStore::open(dir.path()).unwrap();
        assert!(store.stage(&[file("../evil", "x")]).is_err());
        assert!(store.stage(&[file("/etc/evil", "x")]).is_err());
        assert!(store.commit(dir.path(), "../x").is_err());
    }
}
