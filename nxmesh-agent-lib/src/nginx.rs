//! Control of one nginx instance: version detection, `nginx -t`, start,
//! reload, stop and status.
//!
//! nginx is always run with a fixed argument vector (never through a
//! shell). The master's pid comes from the pid file, so an nginx this agent
//! did not start (external mode: a sidecar sharing the process namespace
//! and the configuration volume) is controlled the same way as one it
//! started (standalone mode), except that only standalone mode starts it.
//! Signals go through `nix`; worker processes are found in `/proc`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nxmesh_core::generator::NginxVersion;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How long the error log must stay quiet before a failed reload is over
/// (nginx retries a failed `bind()` every 500 ms).
const RELOAD_QUIET: Duration = Duration::from_millis(700);

/// How the agent runs beside nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NginxMode {
    /// The agent starts nginx and supervises its master process.
    Standalone,
    /// nginx is started by someone else (a container's entry point, a
    /// service manager); the agent only signals the pid in the pid file.
    External,
}

/// A failure to run or signal nginx.
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    /// The nginx binary could not be executed.
    #[error("cannot run {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `nginx -v` printed something that is not a version.
    #[error("cannot read the nginx version from {0:?}")]
    Version(String),
    /// nginx refused the configuration; the text is nginx's own.
    #[error("nginx refused the configuration: {0}")]
    Refused(String),
    /// The master process is not running.
    #[error("nginx is not running")]
    NotRunning,
    /// The operation needs standalone mode.
    #[error("nginx is managed outside the agent (external mode)")]
    External,
    /// Sending a signal failed.
    #[error("cannot send {signal} to nginx master {pid}")]
    Signal {
        /// The signal.
        signal: Signal,
        /// The master's pid.
        pid: i32,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The agent does not support this operation.
    #[error("{0}")]
    Unsupported(&'static str),
    /// nginx did not reach the expected state in time; the text says what
    /// was seen (including nginx's error-log lines, if any).
    #[error("{0}")]
    Unconfirmed(String),
}

/// Where one nginx instance lives and how it is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxPaths {
    /// The nginx binary.
    pub binary: PathBuf,
    /// nginx's prefix (`-p`).
    pub prefix: PathBuf,
    /// The live `nginx.conf` (`-c`).
    pub conf: PathBuf,
    /// The pid file the configuration names.
    pub pid_file: PathBuf,
    /// The error log the configuration names (also `-e`, so that even
    /// errors before the configuration is read land there).
    pub error_log: PathBuf,
}

/// The running master process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterInfo {
    /// Its pid.
    pub pid: i32,
    /// Seconds since it started.
    pub uptime_seconds: u64,
}

/// How long reload and start confirmation wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmTimeouts {
    /// The longest wait for a new worker generation (or for a started
    /// master's workers).
    pub timeout: Duration,
    /// After new workers appear, the error log must stay free of
    /// `[emerg]`/`[alert]` for this long.
    pub settle: Duration,
}

impl Default for ConfirmTimeouts {
    fn default() -> Self {
        ConfirmTimeouts {
            timeout: Duration::from_secs(5),
            settle: Duration::from_millis(100),
        }
    }
}

/// One nginx instance.
#[derive(Debug)]
pub struct Nginx {
    paths: NginxPaths,
    mode: NginxMode,
    confirm: ConfirmTimeouts,
    /// The master process when this agent started it (standalone mode), so
    /// that it is reaped when it exits.
    child: Mutex<Option<Child>>,
}

/// Runs `binary -v` and parses `nginx version: nginx/X.Y.Z`.
pub async fn detect_version(binary: &Path) -> Result<NginxVersion, NginxError> {
    let out = Command::new(binary)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| NginxError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
    // nginx prints its version on stderr.
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or(NginxError::Version(text))
}

fn parse_version(text: &str) -> Option<NginxVersion> {
    let rest = &text[text.find("nginx/")? + "nginx/".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Runs `nginx -t` on `conf` with `prefix`, returning nginx's output when
/// the configuration is valid and [`NginxError::Refused`] with nginx's own
/// error text when it is not.
pub async fn test_config(paths: &NginxPaths, conf: &Path) -> Result<String, NginxError> {
    let out = Command::new(&paths.binary)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(&paths.prefix)
        .arg("-e")
        .arg(&paths.error_log)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| NginxError::Spawn {
            binary: paths.binary.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if out.status.success() {
        Ok(text)
    } else if text.is_empty() {
        Err(NginxError::Refused(format!(
            "nginx -t exited with {}",
            out.status
        )))
    } else {
        Err(NginxError::Refused(text))
    }
}

impl Nginx {
    /// An instance; nothing is started or signalled.
    pub fn new(paths: NginxPaths, mode: NginxMode, confirm: ConfirmTimeouts) -> Self {
        Nginx {
            paths,
            mode,
            confirm,
            child: Mutex::new(None),
        }
    }

    /// Where it lives.
    pub fn paths(&self) -> &NginxPaths {
        &self.paths
    }

    /// The mode it runs in.
    pub fn mode(&self) -> NginxMode {
        self.mode
    }

    /// The running master, from the pid file, or `None`.
    pub async fn status(&self) -> Option<MasterInfo> {
        self.reap().await;
        let pid = read_pid(&self.paths.pid_file)?;
        let stat = ProcStat::read(pid)?;
        if stat.state == 'Z' {
            return None;
        }
        Some(MasterInfo {
            pid,
            uptime_seconds: stat.uptime_seconds(),
        })
    }

    /// Reaps a started master that exited, so that it is not mistaken for
    /// a running one.
    async fn reap(&self) {
        let mut child = self.child.lock().await;
        if let Some(c) = child.as_mut()
            && !matches!(c.try_wait(), Ok(None))
        {
            *child = None;
        }
    }

    /// Starts nginx (standalone mode) and waits until its workers run.
    pub async fn start(&self) -> Result<MasterInfo, NginxError> {
        if self.mode == NginxMode::External {
            return Err(NginxError::External);
        }
        if let Some(m) = self.status().await {
            return Ok(m);
        }
        let offset = log_len(&self.paths.error_log);
        let mut child = Command::new(&self.paths.binary)
            .arg("-p")
            .arg(&self.paths.prefix)
            .arg("-e")
            .arg(&self.paths.error_log)
            .arg("-c")
            .arg(&self.paths.conf)
            .arg("-g")
            .arg("daemon off;")
            // Its own process group: a Ctrl-C or SIGINT to the agent's
            // group must not stop nginx, which outlives the agent.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| NginxError::Spawn {
                binary: self.paths.binary.clone(),
                source,
            })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        let deadline = Instant::now() + self.confirm.timeout;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(Some(status)) = child.try_wait() {
                let errors = new_error_lines(&self.paths.error_log, offset);
                return Err(NginxError::Unconfirmed(format!(
                    "nginx exited at start ({status}): {}",
                    or_nothing(&errors)
                )));
            }
            if let Some(pid) = pid
                && read_pid(&self.paths.pid_file) == Some(pid)
                && !worker_pids(pid).is_empty()
            {
                *self.child.lock().await = Some(child);
                let uptime_seconds = ProcStat::read(pid).map_or(0, |s| s.uptime_seconds());
                return Ok(MasterInfo {
                    pid,
                    uptime_seconds,
                });
            }
            if Instant::now() > deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let errors = new_error_lines(&self.paths.error_log, offset);
                return Err(NginxError::Unconfirmed(format!(
                    "nginx did not start within {:?}: {}",
                    self.confirm.timeout,
                    or_nothing(&errors)
                )));
            }
        }
    }

    /// Sends SIGHUP to the master and confirms the reload: a new worker
    /// generation started, and the error log showed no `[emerg]` or
    /// `[alert]` since the signal, for [`ConfirmTimeouts::settle`] after the
    /// new workers appeared. The error carries nginx's lines.
    pub async fn reload(&self) -> Result<MasterInfo, NginxError> {
        let master = self.status().await.ok_or(NginxError::NotRunning)?;
        let old = worker_pids(master.pid);
        let offset = log_len(&self.paths.error_log);
        // Workers of a reload already in flight (say, one a killed agent
        // sent just before) are not this reload's: only workers started
        // after this signal confirm it.
        let since = boot_ticks_now();
        signal(master.pid, Signal::SIGHUP)?;
        crate::failpoint::hit("reload.signalled");
        let deadline = Instant::now() + self.confirm.timeout;
        let mut new_seen: Option<Instant> = None;
        // (log length, when it last changed) once an error was seen.
        let mut failing: Option<(u64, Instant)> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let errors = new_error_lines(&self.paths.error_log, offset);
            if !errors.is_empty() {
                // A failed reload is not over at the first error: nginx
                // retries bind() five times, 500 ms apart, and a port freed
                // meanwhile would still bring the refused configuration up.
                // Wait until the log has been quiet for longer than that.
                let len = log_len(&self.paths.error_log);
                match failing {
                    Some((l, since)) if l == len => {
                        if since.elapsed() >= RELOAD_QUIET || Instant::now() > deadline {
                            return Err(NginxError::Unconfirmed(errors.join("\n")));
                        }
                    }
                    _ => failing = Some((len, Instant::now())),
                }
                continue;
            }
            if ProcStat::read(master.pid).is_none_or(|s| s.state == 'Z') {
                return Err(NginxError::Unconfirmed(
                    "the nginx master exited during the reload".to_owned(),
                ));
            }
            if new_seen.is_none() && started_since(master.pid, &old, since) {
                new_seen = Some(Instant::now());
            }
            if new_seen.is_some_and(|t| t.elapsed() >= self.confirm.settle) {
                return Ok(master);
            }
            if Instant::now() > deadline {
                return Err(NginxError::Unconfirmed(format!(
                    "no new nginx worker generation within {:?} of the reload",
                    self.confirm.timeout
                )));
            }
        }
    }

    /// Stops nginx: SIGQUIT (graceful) and up to `timeout` for connections
    /// to finish, then SIGTERM, then SIGKILL; SIGTERM right away when not
    /// graceful. Succeeds when nginx was not running.
    pub async fn stop(&self, graceful: bool, timeout: Duration) -> Result<(), NginxError> {
        let Some(master) = self.status().await else {
            return Ok(());
        };
        let steps: &[(Signal, Duration)] = if graceful {
            &[
                (Signal::SIGQUIT, timeout),
                (Signal::SIGTERM, Duration::from_secs(5)),
                (Signal::SIGKILL, Duration::from_secs(5)),
            ]
        } else {
            &[
                (Signal::SIGTERM, timeout),
                (Signal::SIGKILL, Duration::from_secs(5)),
            ]
        };
        for (sig, wait) in steps {
            match signal(master.pid, *sig) {
                Ok(()) => {}
                Err(NginxError::Signal {
                    source: nix::Error::ESRCH,
                    ..
                }) => return Ok(()),
                Err(e) => return Err(e),
            }
            let deadline = Instant::now() + *wait;
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if self.status().await.is_none_or(|m| m.pid != master.pid) {
                    return Ok(());
                }
            }
            tracing::warn!(pid = master.pid, signal = %sig, "nginx did not stop in time");
        }
        Err(NginxError::Unconfirmed(format!(
            "nginx master {} did not exit",
            master.pid
        )))
    }
}

fn or_nothing(lines: &[String]) -> String {
    if lines.is_empty() {
        "no error-log lines".to_owned()
    } else {
        lines.join("\n")
    }
}

/// Sends `sig` to `pid`.
fn signal(pid: i32, sig: Signal) -> Result<(), NginxError> {
    kill(Pid::from_raw(pid), sig).map_err(|source| NginxError::Signal {
        signal: sig,
        pid,
        source,
    })
}

/// The pid in a pid file, if it names a positive pid.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    text.trim().parse().ok().filter(|p: &i32| *p > 0)
}

/// The live children of `master` (its workers, and the cache manager if
/// any), from `/proc`.
pub fn worker_pids(master: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(stat) = ProcStat::read(pid)
            && stat.ppid == master
            && stat.state != 'Z'
        {
            out.insert(pid);
        }
    }
    out
}

/// The fields of `/proc/<pid>/stat` the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) state: char,
    pub(crate) ppid: i32,
    /// Clock ticks after boot.
    pub(crate) start_ticks: u64,
}

impl ProcStat {
    pub(crate) fn read(pid: i32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Option<ProcStat> {
        // The command name is in parentheses and may contain spaces or
        // parentheses itself: the fields start after the last ')'.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            start_ticks: fields.get(19)?.parse().ok()?,
        })
    }

    pub(crate) fn uptime_seconds(&self) -> u64 {
        let Some(boot_uptime) = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        else {
            return 0;
        };
        let started = self.start_ticks as f64 / clock_ticks() as f64;
        // Truncation to whole seconds is intended.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let up = (boot_uptime - started).max(0.0) as u64;
        up
    }
}

/// Whether `master` has a worker that is not in `old` and (when `since` is
/// known) started at or after clock tick `since`.
fn started_since(master: i32, old: &BTreeSet<i32>, since: Option<u64>) -> bool {
    worker_pids(master).iter().any(|pid| {
        !old.contains(pid)
            && since.is_none_or(|t| ProcStat::read(*pid).is_some_and(|s| s.start_ticks >= t))
    })
}

/// Now, in clock ticks after boot (the unit of `ProcStat::start_ticks`).
fn boot_ticks_now() -> Option<u64> {
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // Whole ticks; /proc/uptime has the same 10 ms resolution.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let ticks = (up * clock_ticks() as f64) as u64;
    Some(ticks)
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// The current length of the error log (0 when it does not exist).
pub(crate) fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The `[emerg]` and `[alert]` lines written to the error log after
/// `offset` (from the start if the log was truncated or rotated).
pub(crate) fn new_error_lines(path: &Path, offset: u64) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = if len < offset { 0 } else { offset };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.contains("[emerg]") || l.contains("[alert]"))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_stat_parse() {
        assert_eq!(
            parse_version("nginx version: nginx/1.22.1\n"),
            Some(NginxVersion::new(1, 22, 1))
        );
        assert_eq!(
            parse_version("nginx version: nginx/1.25.3 (Ubuntu)\n"),
            Some(NginxVersion::new(1, 25, 3))
        );
        assert_eq!(parse_version("command not found"), None);
        let s = ProcStat::parse(
            "42 (nginx: worker (x)) S 41 41 41 0 -1 4194624 0 0 0 0 0 0 0 0 20 0 1 0 12345 0",
        )
        .unwrap();
        assert_eq!((s.state, s.ppid, s.start_ticks), ('S', 41, 12345));
    }

    #[test]
    fn error_lines_after_offset_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("error.log");
        std::fs::write(&log, "x [emerg] old\n").unwrap();
        let off = log_len(&log);
        std::fs::write(
            &log,
            "x [emerg] old\ny [notice] fine\nz [alert] new\nw [emerg] newer\n",
        )
        .unwrap();
        assert_eq!(
            new_error_lines(&log, off),
            vec!["z [alert] new".to_owned(), "w [emerg] newer".to_owned()]
        );
        // A truncated log is read from the start.
        std::fs::write(&log, "q [emerg]\n").unwrap();
        assert_eq!(new_error_lines(&log, off), vec!["q [emerg]".to_owned()]);
    }
}
