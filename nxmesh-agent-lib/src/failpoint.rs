//! Failpoints for the crash tests: named places in an apply where a test
//! stops the agent, to kill it there with SIGKILL.
//!
//! They exist only with the cargo feature `failpoints` (off by default);
//! without it [`hit`] is an empty function the compiler removes. With the
//! feature, the environment variable `NXMESH_FAILPOINT` names the failpoint
//! to stop at; when the agent reaches it, it creates the file named by
//! `NXMESH_FAILPOINT_FILE` (if set), holding the failpoint's name, and
//! blocks the thread forever, so that the test can kill the process at
//! exactly that step. Every other failpoint passes through.
//!
//! The names, in the order an apply reaches them: `stage.file` (each file
//! of a staging tree written), `apply.staged`, `apply.validated` (`nginx -t`
//! passed), `apply.committed` (renamed to its checksum), `switch.linked`
//! (the new `live.tmp` link exists, `live` not yet replaced),
//! `switch.renamed`, `apply.switched` (nginx not yet signalled),
//! `reload.signalled` (SIGHUP sent, not yet confirmed), `apply.reloaded`,
//! `update.written`, `state.written` (`state.json.tmp` written, not yet
//! renamed), `state.renamed`, `apply.recorded`, `gc.removed` (one old tree
//! removed); and on the rollback path `rollback.switched` (`live` back on
//! the old tree, nginx not yet reloaded) and `rollback.reloaded`.

/// The failpoint to stop at, read once from the environment.
#[cfg(feature = "failpoints")]
fn armed() -> Option<&'static (String, Option<std::path::PathBuf>)> {
    static ARMED: std::sync::OnceLock<Option<(String, Option<std::path::PathBuf>)>> =
        std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| {
            let name = std::env::var("NXMESH_FAILPOINT")
                .ok()
                .filter(|n| !n.is_empty())?;
            let file = std::env::var_os("NXMESH_FAILPOINT_FILE").map(std::path::PathBuf::from);
            Some((name, file))
        })
        .as_ref()
}

/// Stops the process's progress for good if `name` is the armed failpoint.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) {
    let Some((armed, file)) = armed() else {
        return;
    };
    if armed != name {
        return;
    }
    tracing::warn!(failpoint = name, "failpoint reached; waiting to be killed");
    if let Some(file) = file
        && let Err(e) = std::fs::write(file, name)
    {
        tracing::error!(error = %e, "cannot write the failpoint marker");
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Without the `failpoints` feature a failpoint is nothing at all.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) {}
