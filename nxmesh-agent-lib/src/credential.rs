//! The durable agent credential on disk.
//!
//! The master returns the credential once, at first registration, after
//! consuming the single-use token; losing it means asking an operator for a
//! new token. So it is written atomically and privately: a temporary file
//! created with mode 0600 in the same directory, written, fsynced, renamed
//! over the old file, and the directory fsynced, so a crash leaves either
//! the old or the new credential and never a partial one.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::CredentialError;

/// Reads and writes the agent credential file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// A store at `path`; nothing is touched until [`load`](Self::load) or
    /// [`save`](Self::save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CredentialStore { path: path.into() }
    }

    /// The credential file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored credential, or `None` when there is no file (or it is
    /// empty).
    pub async fn load(&self) -> Result<Option<String>, CredentialError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || load_sync(&path))
            .await
            .map_err(CredentialError::Task)?
    }

    /// Replaces the stored credential atomically, with mode 0600.
    pub async fn save(&self, credential: &str) -> Result<(), CredentialError> {
        let path = self.path.clone();
        let credential = credential.to_owned();
        tokio::task::spawn_blocking(move || save_sync(&path, &credential))
            .await
            .map_err(CredentialError::Task)?
    }
}

fn load_sync(path: &Path) -> Result<Option<String>, CredentialError> {
    let read_err = |source| CredentialError::Read {
        path: path.to_owned(),
        source,
    };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let mode = fs::metadata(path).map_err(read_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the agent credential file is readable by others; it should be 0600"
        );
    }
    let credential = text.trim();
    Ok((!credential.is_empty()).then(|| credential.to_owned()))
}

fn save_sync(path: &Path, credential: &str) -> Result<(), CredentialError> {
    let write_err = |source| CredentialError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(write_err)?;
    let name = path
        .file_name()
        .map_or_else(|| "credential".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        getrandom::u32().unwrap_or(0)
    ));
    let result = write_new(&tmp, credential).and_then(|()| {
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory entry is.
        File::open(&dir)?.sync_all()
    });
    if result.is_err() {
        // Best effort: the temporary file holds the secret too.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

fn write_new(tmp: &Path, credential: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(credential.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_is_private_and_replaces_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("sub/credential"));
        assert_eq!(store.load().await.unwrap(), None);

        store.save("first").await.unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.load().await.unwrap().as_deref(), Some("first"));

        store.save("second").await.unwrap();
        assert_eq!(store.load().await.unwrap().as_deref(), Some("second"));
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["credential"], "no temporary file is left");
    }

    #[tokio::test]
    async fn empty_file_is_no_credential_and_unreadable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credential");
        fs::write(&path, "\n").unwrap();
        assert_eq!(CredentialStore::new(&path).load().await.unwrap(), None);

        // A directory where the file should be cannot be read as one.
        let store = CredentialStore::new(dir.path());
        assert!(matches!(
            store.load().await,
            Err(CredentialError::Read { .. })
        ));
    }
}
