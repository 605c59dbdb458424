//! Active upstream health checks against a real nginx and real backends on
//! 127.0.0.1: a stopped backend leaves rotation through a re-render with
//! `down` (the applied version and checksum unchanged), comes back when it
//! answers again, and an upstream never loses its last server.

use std::time::Duration;

use nxmesh_agent_lib::health::RuntimeHealth;
use nxmesh_agent_lib::store::DownServer;
use nxmesh_agent_lib::upstream_health::{ServerHealth, UpstreamHealth, UpstreamHealthConfig};
use nxmesh_agent_lib::{CancellationToken, ConfigApplier, HealthSource, NginxRuntime};
use nxmesh_core::config::{ConfigApplyStatus, ConfigUpdate, UpstreamConfig};
use nxmesh_core::event::AlertSeverity;
use nxmesh_core::model::{HealthCheck, LoadBalanceAlgorithm, UpstreamServer, UpstreamSpec};
use nxmesh_core::protocol::AppliedConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

use crate::nginx_support::{Env, http_get, read_tree, update};

const UPSTREAM: Uuid = Uuid::from_u128(0x55);

/// A backend answering every request with `200 body`, on a fixed port so
/// that it can be stopped and started again.
pub(crate) struct Backend {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub(crate) async fn start(port: u16, body: &'static str) -> Backend {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 4096];
                    let mut n = 0;
                    // Read the request head, then answer.
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match s.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => n += k,
                        }
                    }
                    let answer = format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                });
            }
        });
        Backend { port, task }
    }

    /// Stops listening: new connections are refused.
    pub(crate) async fn stop(self) -> u16 {
        self.task.abort();
        let _ = self.task.await;
        self.port
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A started runtime that applied version 1: one upstream of two fresh
/// backends, `a` and `b`.
pub(crate) struct TwoBackends {
    pub(crate) rt: NginxRuntime,
    pub(crate) a: Backend,
    pub(crate) b: Backend,
    pub(crate) applied: AppliedConfig,
}

pub(crate) async fn serving_two_backends(env: &Env) -> TwoBackends {
    let rt = NginxRuntime::open(env.config.clone()).await.unwrap();
    rt.ensure_started().await.unwrap();
    let a = Backend::start(0, "a").await;
    let b = Backend::start(0, "b").await;
    let out = rt
        .apply(with_upstream(1, env.port, &[a.address(), b.address()]))
        .await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    let applied = rt.applied().unwrap();
    TwoBackends { rt, a, b, applied }
}

pub(crate) fn with_upstream(version: i64, port: u16, servers: &[String]) -> ConfigUpdate {
    let mut u = update(version, port, "unused");
    let location = &mut u.virtual_hosts[0].spec.locations[0];
    location.custom_directives.clear();
    location.upstream_id = Some(UPSTREAM);
    u.upstreams.push(UpstreamConfig {
        id: UPSTREAM,
        spec: UpstreamSpec {
            name: "app".to_owned(),
            algorithm: LoadBalanceAlgorithm::RoundRobin,
            servers: servers
                .iter()
                .map(|a| UpstreamServer {
                    address: a.clone(),
                    weight: 1,
                    backup: false,
                    down: false,
                    max_fails: 1,
                    fail_timeout: 10,
                })
                .collect(),
            health_check: Some(HealthCheck {
                enabled: true,
                path: "/health".to_owned(),
                interval: 1,
                timeout: 1,
                healthy_threshold: Some(2),
                unhealthy_threshold: Some(2),
            }),
            keepalive_connections: 0,
        },
    });
    u
}

pub(crate) fn key(address: &str) -> DownServer {
    DownServer {
        upstream_id: UPSTREAM,
        address: address.to_owned(),
    }
}

fn server(checker: &UpstreamHealth, address: &str) -> ServerHealth {
    checker
        .servers()
        .into_iter()
        .find(|s| s.address == address)
        .unwrap()
}

/// Polls `cond` every 100 ms, for at most 60 s (a deadline against a hung
/// test, not a timing assertion).
pub(crate) async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

/// Bodies of `n` requests through nginx, or the first failure.
pub(crate) async fn bodies(port: u16, n: usize) -> Result<Vec<String>, String> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|i| match http_get(port, "app.test") {
                Some((200, body)) => Ok(body),
                other => Err(format!("request {i}: {other:?}")),
            })
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_leaves_rotation_and_comes_back() {
    let Some(env) = Env::new() else { return };
    let TwoBackends { rt, a, b, applied } = serving_two_backends(&env).await;
    let (addr_a, addr_b) = (a.address(), b.address());

    let checker = UpstreamHealth::new(
        rt.clone(),
        UpstreamHealthConfig {
            coalesce: Duration::from_millis(100),
            min_reload_interval: Duration::from_secs(1),
        },
    );
    let health = RuntimeHealth::new(rt.clone()).with_upstream_health(checker.clone());
    let shutdown = CancellationToken::new();
    let task = {
        let (c, s) = (checker.clone(), shutdown.clone());
        tokio::spawn(async move { c.run(s).await })
    };
    until("both servers probed healthy", async || {
        let s = checker.servers();
        s.len() == 2 && s.iter().all(|s| s.healthy && s.probes >= 1)
    })
    .await;
    let seen = bodies(env.port, 20).await.unwrap();
    assert!(
        seen.iter().any(|b| b == "a") && seen.iter().any(|b| b == "b"),
        "{seen:?}"
    );

    // Stop b: after `unhealthy_threshold` failed probes it is marked down.
    let port_b = b.stop().await;
    until("b marked down", async || {
        rt.down_servers().contains(&key(&addr_b))
    })
    .await;
    // One re-render for one verdict change (counted once it returned).
    until("the re-render is counted", async || checker.reloads() >= 1).await;
    assert_eq!(checker.reloads(), 1);
    let sb = server(&checker, &addr_b);
    assert!(!sb.healthy && !sb.kept_up, "{sb:?}");
    assert!(sb.consecutive_failures >= 2, "{sb:?}");
    assert!(
        sb.last_error.as_deref().unwrap().contains("connect"),
        "{sb:?}"
    );
    // The served tree marks b down; the master-facing state is unchanged.
    let lkg = rt.last_known_good().unwrap();
    assert_eq!(rt.applied(), Some(applied.clone()));
    let served = lkg.served_checksum.clone().unwrap();
    assert_ne!(served, applied.checksum);
    assert_eq!(rt.store().live_checksum().as_deref(), Some(served.as_str()));
    let live = read_tree(&rt.store().live());
    let text: String = live
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(text.contains(&format!("server {addr_b} down;")), "{text}");
    assert!(text.contains(&format!("server {addr_a};")), "{text}");
    let report = health.health().await;
    assert_eq!(report.config_checksum, applied.checksum);
    let alert = report
        .alerts
        .iter()
        .find(|x| x.id == format!("upstream_server_unhealthy:app/{addr_b}"))
        .unwrap_or_else(|| panic!("{:?}", report.alerts));
    assert_eq!(alert.severity, AlertSeverity::Warning);

    // No failed request once b is out of rotation; all go to a.
    let after = bodies(env.port, 100).await.unwrap();
    assert!(after.iter().all(|x| x == "a"), "{after:?}");

    // Start b again: after `healthy_threshold` passes it is back.
    let b = Backend::start(port_b, "b").await;
    until("b restored", async || rt.down_servers().is_empty()).await;
    until("the re-render is counted", async || checker.reloads() >= 2).await;
    assert_eq!(checker.reloads(), 2);
    let sb = server(&checker, &addr_b);
    assert!(sb.healthy && sb.consecutive_passes >= 2, "{sb:?}");
    let lkg = rt.last_known_good().unwrap();
    assert_eq!(lkg.served_checksum, None);
    assert_eq!(rt.store().live_checksum(), Some(applied.checksum.clone()));
    assert_eq!(rt.applied(), Some(applied.clone()));
    let seen = bodies(env.port, 20).await.unwrap();
    assert!(seen.iter().any(|x| x == "b"), "{seen:?}");
    assert!(
        health
            .health()
            .await
            .alerts
            .iter()
            .all(|x| !x.id.starts_with("upstream"))
    );

    // Both stopped: the first stays in rotation and a critical alert says
    // why; the other is marked down.
    let _ = a.stop().await;
    let _ = b.stop().await;
    until("both unhealthy", async || {
        checker.servers().iter().all(|s| !s.healthy)
    })
    .await;
    until("b marked down again", async || {
        rt.down_servers() == [key(&addr_b)].into()
    })
    .await;
    assert!(server(&checker, &addr_a).kept_up);
    let report = health.health().await;
    let critical = report
        .alerts
        .iter()
        .find(|x| x.id == "upstream_down:app")
        .unwrap_or_else(|| panic!("{:?}", report.alerts));
    assert_eq!(critical.severity, AlertSeverity::Critical);
    assert!(critical.message.contains(&addr_a), "{}", critical.message);
    let text: String = read_tree(&rt.store().live())
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(text.contains(&format!("server {addr_a};")), "{text}");

    shutdown.cancel();
    task.await.unwrap();
}

/// The verdict is part of the last known good: a restarted agent keeps
/// serving the re-rendered tree untouched, knows the configuration to
/// re-render, and a new version keeps the server down while reporting the
/// generator's checksum of the version itself.
#[tokio::test]
async fn the_verdict_survives_a_restart_and_a_new_version() {
    let Some(env) = Env::new() else { return };
    let rt = NginxRuntime::open(env.config.clone()).await.unwrap();
    rt.ensure_started().await.unwrap();
    // Nothing listens on these; no probe runs in this test.
    let (a, b) = ("127.0.0.1:9".to_owned(), "127.0.0.1:11".to_owned());
    let v1 = with_upstream(1, env.port, &[a.clone(), b.clone()]);
    assert_eq!(
        rt.apply(v1.clone()).await.status,
        ConfigApplyStatus::Success
    );
    let applied = rt.applied().unwrap();

    // Asking for both: the upstream keeps its first server.
    let out = rt
        .set_down_servers(&[key(&a), key(&b)].into_iter().collect())
        .await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(out.checksum.as_deref(), Some(applied.checksum.as_str()));
    assert_eq!(rt.down_servers(), [key(&b)].into());
    assert_eq!(rt.applied(), Some(applied.clone()));
    let served = rt.last_known_good().unwrap().served_checksum.unwrap();
    let live = read_tree(&rt.store().live());
    let mut with_b_down = v1.clone();
    with_b_down.upstreams[0].spec.servers[1].down = true;
    assert_eq!(live, crate::nginx_support::rendered(&rt, &with_b_down));
    let master = env.master_pid().unwrap();
    let workers = nxmesh_agent_lib::nginx::worker_pids(master);
    drop(rt);

    let rt = NginxRuntime::open(env.config.clone()).await.unwrap();
    assert_eq!(rt.store().live_checksum(), Some(served.clone()));
    assert_eq!(
        nxmesh_agent_lib::nginx::worker_pids(master),
        workers,
        "nginx untouched"
    );
    assert_eq!(rt.applied(), Some(applied.clone()));
    assert_eq!(rt.down_servers(), [key(&b)].into());
    assert_eq!(rt.current_update().as_deref(), Some(&v1));

    // A new version: b stays down in what is served; the outcome carries
    // the checksum of the version as the master renders it.
    let mut v2 = with_upstream(2, env.port, &[a.clone(), b.clone()]);
    v2.upstreams[0].spec.keepalive_connections = 4;
    let out = rt.apply(v2.clone()).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    let expected = nxmesh_core::generator::render(&v2, rt.render_options()).unwrap();
    assert_eq!(out.checksum.as_deref(), Some(expected.checksum.as_str()));
    assert_eq!(rt.applied().unwrap().version, 2);
    assert_eq!(rt.down_servers(), [key(&b)].into());
    let text: String = read_tree(&rt.store().live())
        .values()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(text.contains(&format!("server {b} down;")), "{text}");
    assert!(text.contains("keepalive 4;"), "{text}");

    // Clearing the verdict serves the version's own tree.
    let out = rt.set_down_servers(&Default::default()).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(rt.store().live_checksum(), Some(expected.checksum.clone()));
    assert_eq!(rt.last_known_good().unwrap().served_checksum, None);
}

/// What a probe counts as passing: `2xx`/`3xx` over TCP or a unix socket;
/// another status, a refused connection or no answer within the timeout
/// fail, each with its reason.
#[tokio::test]
async fn probes_pass_on_2xx_and_3xx_only() {
    use nxmesh_agent_lib::upstream_health::probe;

    async fn answer_once(listener: tokio::net::UnixListener, status: &'static str) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0_u8; 1024];
        let _ = s.read(&mut buf).await.unwrap();
        s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(2);
    for (status, pass) in [
        ("204 No Content", true),
        ("302 Found", true),
        ("503 Busy", false),
    ] {
        let sock = dir.path().join(format!("{}.sock", &status[..3]));
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(answer_once(listener, status));
        let r = probe(&format!("unix:{}", sock.display()), "/health", timeout).await;
        server.await.unwrap();
        assert_eq!(r.is_ok(), pass, "{status}: {r:?}");
        if !pass {
            assert_eq!(r.unwrap_err(), "status 503");
        }
    }

    // Refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let r = probe(&addr, "/health", timeout).await;
    assert!(r.as_ref().is_err_and(|e| e.starts_with("connect")), "{r:?}");

    // Accepts, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let (s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let r = probe(&addr, "/health", Duration::from_millis(300)).await;
    assert!(
        r.as_ref().is_err_and(|e| e.starts_with("no answer within")),
        "{r:?}"
    );
    hold.abort();
}
