//! Active upstream health checks: open-source nginx has none, so the agent
//! probes every server itself and takes failing ones out of rotation by
//! re-rendering the configuration with them marked `down`.
//!
//! For each upstream of the configuration last applied whose
//! `health_check` is enabled, every server not already `down` in the model
//! gets an HTTP/1.0 `GET` of the check's `path` every `interval` seconds,
//! failing after `timeout` seconds; a `2xx` or `3xx` answer passes, anything
//! else (refused, reset, timeout, another status) fails. After
//! `unhealthy_threshold` consecutive failures (default 1) a server is
//! unhealthy, after `healthy_threshold` consecutive passes (default 1) it is
//! healthy again; thresholds are counted per server, so one probe never
//! flips a verdict by itself unless the threshold is 1.
//!
//! Changes of verdict are coalesced: the checker waits
//! [`UpstreamHealthConfig::coalesce`] after the first change, and at least
//! [`UpstreamHealthConfig::min_reload_interval`] after its previous reload,
//! then asks the runtime for one re-render with the whole set
//! ([`NginxRuntime::set_down_servers`]), which goes through the apply
//! pipeline (`nginx -t`, atomic switch, reload, confirm, roll back).
//!
//! An upstream never loses its last server: when every eligible server of
//! an upstream fails, the first of them in the model's order stays in
//! rotation (nginx would answer 502 to every request otherwise) and a
//! critical alert says so. Verdicts and alerts appear in the health report
//! (see [`crate::health::RuntimeHealth::with_upstream_health`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::event::AlertSeverity;
use nxmesh_core::protocol::Alert;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::pipeline::NginxRuntime;
use crate::runtime::ApplyOutcome;
use crate::store::DownServer;

/// The most bytes of a probe's answer that are read (the status line is
/// all that matters).
const MAX_ANSWER: u64 = 8 * 1024;

/// How often the checker looks for a new configuration when nothing is
/// due sooner.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Applies the health checks' verdict to a copy of `update`: every server
/// of `down` that is in `update` and not already `down` there is marked
/// `down`, except that an upstream always keeps one server up (the first,
/// in the model's order, of those the set would take down). Returns the
/// copy and the servers actually marked, sorted.
pub fn apply_overrides(
    update: &ConfigUpdate,
    down: &BTreeSet<DownServer>,
) -> (ConfigUpdate, Vec<DownServer>) {
    let mut out = update.clone();
    let mut marked = Vec::new();
    for u in &mut out.upstreams {
        let key = |address: &str| DownServer {
            upstream_id: u.id,
            address: address.to_owned(),
        };
        let eligible = u.spec.servers.iter().filter(|s| !s.down).count();
        let requested: Vec<usize> = u
            .spec
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.down && down.contains(&key(&s.address)))
            .map(|(i, _)| i)
            .collect();
        let spared = if requested.len() == eligible {
            requested.first().copied()
        } else {
            None
        };
        for i in requested {
            if Some(i) == spared {
                continue;
            }
            let server = &mut u.spec.servers[i];
            server.down = true;
            marked.push(DownServer {
                upstream_id: u.id,
                address: server.address.clone(),
            });
        }
    }
    marked.sort();
    marked.dedup();
    (out, marked)
}

/// Settings of the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamHealthConfig {
    /// How long to wait after a verdict changes before reloading, so that
    /// changes close together cost one reload.
    pub coalesce: Duration,
    /// The least time between two health-driven reloads.
    pub min_reload_interval: Duration,
}

impl Default for UpstreamHealthConfig {
    fn default() -> Self {
        UpstreamHealthConfig {
            coalesce: Duration::from_millis(500),
            min_reload_interval: Duration::from_secs(5),
        }
    }
}

/// The health of one upstream server, as the checker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    /// The upstream's id.
    pub upstream_id: Uuid,
    /// The upstream's name.
    pub upstream: String,
    /// The server's address.
    pub address: String,
    /// The verdict.
    pub healthy: bool,
    /// Consecutive passed probes.
    pub consecutive_passes: u32,
    /// Consecutive failed probes.
    pub consecutive_failures: u32,
    /// Probes finished since the server was first seen.
    pub probes: u64,
    /// Why the last failed probe failed.
    pub last_error: Option<String>,
    /// Unhealthy, but kept in rotation as its upstream's last server.
    pub kept_up: bool,
}

/// One probe target: a server and its upstream's check.
#[derive(Debug, Clone)]
struct Target {
    key: DownServer,
    upstream: String,
    path: String,
    interval: Duration,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

/// The servers to probe in `update`, grouped by upstream.
fn targets(update: &ConfigUpdate) -> BTreeMap<Uuid, Vec<Target>> {
    let mut out = BTreeMap::new();
    for u in &update.upstreams {
        let Some(hc) = u.spec.health_check.as_ref().filter(|hc| hc.enabled) else {
            continue;
        };
        let servers: Vec<Target> = u
            .spec
            .servers
            .iter()
            .filter(|s| !s.down)
            .map(|s| Target {
                key: DownServer {
                    upstream_id: u.id,
                    address: s.address.clone(),
                },
                upstream: u.spec.name.clone(),
                path: hc.path.clone(),
                interval: Duration::from_secs(u64::from(hc.interval.max(1))),
                timeout: Duration::from_secs(u64::from(hc.timeout.max(1))),
                healthy_threshold: hc.healthy_threshold.unwrap_or(1).max(1),
                unhealthy_threshold: hc.unhealthy_threshold.unwrap_or(1).max(1),
            })
            .collect();
        if !servers.is_empty() {
            out.insert(u.id, servers);
        }
    }
    out
}

#[derive(Debug)]
struct ServerState {
    target: Target,
    healthy: bool,
    passes: u32,
    failures: u32,
    probes: u64,
    last_error: Option<String>,
    in_flight: bool,
}

#[derive(Debug, Default)]
struct State {
    servers: BTreeMap<DownServer, ServerState>,
    /// Upstreams whose every eligible server fails: the one kept up.
    kept: BTreeMap<Uuid, DownServer>,
    /// Why the last health-driven reload failed, until one succeeds.
    reload_error: Option<String>,
    /// Health-driven re-renders attempted.
    reloads: u64,
}

/// The active health checker of one [`NginxRuntime`]. Cheap to clone;
/// [`UpstreamHealth::run`] is its loop.
#[derive(Debug, Clone)]
pub struct UpstreamHealth {
    runtime: NginxRuntime,
    config: UpstreamHealthConfig,
    state: Arc<Mutex<State>>,
}

impl UpstreamHealth {
    /// A checker for `runtime`'s configuration; nothing runs before
    /// [`UpstreamHealth::run`].
    pub fn new(runtime: NginxRuntime, config: UpstreamHealthConfig) -> Self {
        UpstreamHealth {
            runtime,
            config,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many health-driven re-renders were attempted (each is one
    /// `nginx -t` and one reload at most): changes are coalesced, so this
    /// counts verdict changes that reached nginx, not probes.
    pub fn reloads(&self) -> u64 {
        self.state().reloads
    }

    /// Every probed server, by upstream id and address.
    pub fn servers(&self) -> Vec<ServerHealth> {
        let s = self.state();
        s.servers
            .iter()
            .map(|(k, v)| ServerHealth {
                upstream_id: k.upstream_id,
                upstream: v.target.upstream.clone(),
                address: k.address.clone(),
                healthy: v.healthy,
                consecutive_passes: v.passes,
                consecutive_failures: v.failures,
                probes: v.probes,
                last_error: v.last_error.clone(),
                kept_up: s.kept.get(&k.upstream_id) == Some(k),
            })
            .collect()
    }

    /// The alerts of the health checks: one warning per unhealthy server,
    /// a critical one per upstream whose every server fails, an error
    /// while health-driven reloads fail.
    pub fn alerts(&self) -> Vec<Alert> {
        let now = Utc::now();
        let mut out = Vec::new();
        let servers = self.servers();
        for s in servers.iter().filter(|s| !s.healthy) {
            let why = s.last_error.as_deref().unwrap_or("failed");
            let what = if s.kept_up {
                "kept in rotation as the upstream's last server"
            } else {
                "out of rotation"
            };
            out.push(Alert {
                id: format!("upstream_server_unhealthy:{}/{}", s.upstream, s.address),
                severity: AlertSeverity::Warning,
                message: format!(
                    "upstream {} server {} fails its health check ({why}); {what}",
                    s.upstream, s.address
                ),
                timestamp: now,
            });
        }
        for s in servers.iter().filter(|s| s.kept_up) {
            out.push(Alert {
                id: format!("upstream_down:{}", s.upstream),
                severity: AlertSeverity::Critical,
                message: format!(
                    "every server of upstream {} fails its health check; {} stays in rotation \
                     because nginx would otherwise refuse every request",
                    s.upstream, s.address
                ),
                timestamp: now,
            });
        }
        if let Some(e) = &self.state().reload_error {
            out.push(Alert {
                id: "upstream_health_reload_failed".to_owned(),
                severity: AlertSeverity::Error,
                message: format!("applying the upstream health checks' verdict failed: {e}"),
                timestamp: now,
            });
        }
        out
    }

    /// Follows the configuration's servers: new ones start healthy unless
    /// the served tree already marks them down (a restarted agent keeps
    /// its verdict until the healthy threshold passes); gone ones are
    /// forgotten.
    fn sync(&self, targets: &BTreeMap<Uuid, Vec<Target>>) {
        let marked = self.runtime.down_servers();
        let mut s = self.state();
        let wanted: BTreeSet<&DownServer> = targets.values().flatten().map(|t| &t.key).collect();
        s.servers.retain(|k, _| wanted.contains(k));
        for t in targets.values().flatten() {
            match s.servers.get_mut(&t.key) {
                Some(st) => st.target = t.clone(),
                None => {
                    s.servers.insert(
                        t.key.clone(),
                        ServerState {
                            target: t.clone(),
                            healthy: !marked.contains(&t.key),
                            passes: 0,
                            failures: 0,
                            probes: 0,
                            last_error: None,
                            in_flight: false,
                        },
                    );
                }
            }
        }
    }

    /// The servers to mark down, and which server each all-failing
    /// upstream keeps.
    fn desired(&self, targets: &BTreeMap<Uuid, Vec<Target>>) -> BTreeSet<DownServer> {
        let mut s = self.state();
        let mut down = BTreeSet::new();
        let mut kept = BTreeMap::new();
        for (id, servers) in targets {
            let failing: Vec<&Target> = servers
                .iter()
                .filter(|t| s.servers.get(&t.key).is_some_and(|st| !st.healthy))
                .collect();
            // `targets` holds exactly the upstream's eligible servers, in
            // the model's order: the same rule as `apply_overrides`.
            let all = failing.len() == servers.len();
            for (i, t) in failing.iter().enumerate() {
                if all && i == 0 {
                    kept.insert(*id, t.key.clone());
                } else {
                    down.insert(t.key.clone());
                }
            }
        }
        s.kept = kept;
        down
    }

    fn record(&self, key: &DownServer, result: Result<u16, String>) {
        let mut s = self.state();
        let Some(st) = s.servers.get_mut(key) else {
            return;
        };
        st.in_flight = false;
        st.probes += 1;
        match result {
            Ok(_) => {
                st.passes = st.passes.saturating_add(1);
                st.failures = 0;
                if !st.healthy && st.passes >= st.target.healthy_threshold {
                    st.healthy = true;
                    tracing::info!(upstream = %st.target.upstream, server = %key.address,
                        "upstream server healthy again");
                }
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                st.passes = 0;
                if st.healthy && st.failures >= st.target.unhealthy_threshold {
                    st.healthy = false;
                    tracing::warn!(upstream = %st.target.upstream, server = %key.address,
                        error = %e, "upstream server unhealthy");
                }
                st.last_error = Some(e);
            }
        }
    }

    /// Probes, decides and reloads until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut due: BTreeMap<Uuid, Instant> = BTreeMap::new();
        let mut probes: JoinSet<(DownServer, Result<u16, String>)> = JoinSet::new();
        let mut last_reload: Option<Instant> = None;
        let mut reload_at: Option<Instant> = None;
        loop {
            let update = self.runtime.current_update();
            let targets = update.as_deref().map(targets).unwrap_or_default();
            self.sync(&targets);
            due.retain(|id, _| targets.contains_key(id));
            let now = Instant::now();
            for (id, servers) in &targets {
                if due.get(id).is_some_and(|t| *t > now) {
                    continue;
                }
                due.insert(*id, now + servers[0].interval);
                let mut s = self.state();
                for t in servers {
                    let Some(st) = s.servers.get_mut(&t.key) else {
                        continue;
                    };
                    if st.in_flight {
                        continue;
                    }
                    st.in_flight = true;
                    let t = t.clone();
                    probes.spawn(async move {
                        let r = probe(&t.key.address, &t.path, t.timeout).await;
                        (t.key, r)
                    });
                }
            }

            let desired = self.desired(&targets);
            if update.is_some() && desired != self.runtime.down_servers() {
                if reload_at.is_none() {
                    let mut at = now + self.config.coalesce;
                    if let Some(last) = last_reload {
                        at = at.max(last + self.config.min_reload_interval);
                    }
                    reload_at = Some(at);
                }
            } else {
                reload_at = None;
            }
            if reload_at.is_some_and(|t| t <= now) {
                reload_at = None;
                let outcome = self.runtime.set_down_servers(&desired).await;
                last_reload = Some(Instant::now());
                self.reloaded(&desired, &outcome);
                continue;
            }

            let mut wake = now + IDLE_TICK;
            for t in due.values().chain(reload_at.iter()) {
                wake = wake.min(*t);
            }
            tokio::select! {
                () = shutdown.cancelled() => {
                    probes.abort_all();
                    return;
                }
                () = tokio::time::sleep_until(wake) => {}
                Some(done) = probes.join_next(), if !probes.is_empty() => {
                    if let Ok((key, result)) = done {
                        self.record(&key, result);
                    }
                }
            }
        }
    }

    fn reloaded(&self, desired: &BTreeSet<DownServer>, outcome: &ApplyOutcome) {
        let mut s = self.state();
        s.reloads += 1;
        if outcome.status == nxmesh_core::config::ConfigApplyStatus::Success {
            tracing::info!(down = desired.len(), "upstream health verdict applied");
            s.reload_error = None;
        } else {
            let e = outcome
                .error_message
                .clone()
                .unwrap_or_else(|| format!("{:?}", outcome.status));
            tracing::error!(error = %e, "cannot apply the upstream health verdict");
            s.reload_error = Some(e);
        }
    }
}

/// One probe: `GET path` on `address` (`host:port` or `unix:/path`); the
/// status when it is `2xx` or `3xx`, otherwise why it failed.
pub async fn probe(address: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    let run = async {
        let host = host_header(address);
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: nxmesh-agent\r\n\
             Connection: close\r\n\r\n"
        );
        let answer = if let Some(socket) = address.strip_prefix("unix:") {
            let s = tokio::net::UnixStream::connect(socket)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            exchange(s, request.as_bytes()).await?
        } else {
            let s = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            exchange(s, request.as_bytes()).await?
        };
        let status = status_of(&answer).ok_or_else(|| "no HTTP status line".to_owned())?;
        if (200..400).contains(&status) {
            Ok(status)
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// The `Host` header for a probe of `address`: the host part as written
/// (`[v6]` keeps its brackets), `localhost` for a unix socket.
fn host_header(address: &str) -> &str {
    if address.starts_with("unix:") {
        return "localhost";
    }
    if address.starts_with('[') {
        return address.find(']').map_or(address, |i| &address[..=i]);
    }
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

async fn exchange<S>(mut s: S, request: &[u8]) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut limited = (&mut s).take(MAX_ANSWER);
    loop {
        let mut chunk = [0_u8; 512];
        let n = limited
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    Ok(buf)
}

/// The status of an HTTP answer's first line (`HTTP/1.x NNN ...`).
fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.split(|b| *b == b'\n').next()?).ok()?;
    let mut words = text.split_whitespace();
    if !words.next()?.starts_with("HTTP/") {
        return None;
    }
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nxmesh_core::config::UpstreamConfig;
    use nxmesh_core::model::{HealthCheck, LoadBalanceAlgorithm, UpstreamServer, UpstreamSpec};

    fn server(address: &str, down: bool) -> UpstreamServer {
        UpstreamServer {
            address: address.to_owned(),
            weight: 1,
            backup: false,
            down,
            max_fails: 1,
            fail_timeout: 10,
        }
    }

    fn update(servers: Vec<UpstreamServer>) -> ConfigUpdate {
        ConfigUpdate {
            upstreams: vec![UpstreamConfig {
                id: Uuid::from_u128(9),
                spec: UpstreamSpec {
                    name: "app".to_owned(),
                    algorithm: LoadBalanceAlgorithm::RoundRobin,
                    servers,
                    health_check: Some(HealthCheck {
                        enabled: true,
                        path: "/health".to_owned(),
                        interval: 2,
                        timeout: 1,
                        healthy_threshold: Some(3),
                        unhealthy_threshold: None,
                    }),
                    keepalive_connections: 0,
                },
            }],
            ..ConfigUpdate::default()
        }
    }

    fn key(address: &str) -> DownServer {
        DownServer {
            upstream_id: Uuid::from_u128(9),
            address: address.to_owned(),
        }
    }

    #[test]
    fn overrides_mark_down_but_never_the_last_server() {
        let u = update(vec![
            server("10.0.0.1:80", false),
            server("10.0.0.2:80", false),
            server("10.0.0.3:80", true),
        ]);
        let (out, marked) = apply_overrides(&u, &BTreeSet::from([key("10.0.0.2:80")]));
        assert_eq!(marked, [key("10.0.0.2:80")]);
        let down: Vec<bool> = out.upstreams[0]
            .spec
            .servers
            .iter()
            .map(|s| s.down)
            .collect();
        assert_eq!(down, [false, true, true]);

        // Both eligible servers requested: the first stays up.
        let both = BTreeSet::from([key("10.0.0.1:80"), key("10.0.0.2:80")]);
        let (out, marked) = apply_overrides(&u, &both);
        assert_eq!(marked, [key("10.0.0.2:80")]);
        assert!(!out.upstreams[0].spec.servers[0].down);

        // Unknown servers and servers the model already marks down are
        // ignored.
        let (out, marked) = apply_overrides(
            &u,
            &BTreeSet::from([key("10.9.9.9:80"), key("10.0.0.3:80")]),
        );
        assert!(marked.is_empty());
        assert_eq!(out, u);
    }

    #[test]
    fn targets_skip_down_servers_and_disabled_checks() {
        let mut u = update(vec![server("a:1", false), server("b:1", true)]);
        let t = targets(&u);
        let servers = &t[&Uuid::from_u128(9)];
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].key, key("a:1"));
        assert_eq!(
            (servers[0].healthy_threshold, servers[0].unhealthy_threshold),
            (3, 1)
        );
        u.upstreams[0].spec.health_check.as_mut().unwrap().enabled = false;
        assert!(targets(&u).is_empty());
    }

    #[test]
    fn host_headers() {
        assert_eq!(host_header("10.0.0.1:8080"), "10.0.0.1");
        assert_eq!(host_header("api.internal:80"), "api.internal");
        assert_eq!(host_header("[::1]:8080"), "[::1]");
        assert_eq!(host_header("unix:/run/app.sock"), "localhost");
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_of(b"HTTP/1.0 503 x\r\n\r\n"), Some(503));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
