//! The apply pipeline, commands and health against a real nginx on
//! 127.0.0.1 in a temporary prefix.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nxmesh_agent_lib::health::RuntimeHealth;
use nxmesh_agent_lib::nginx::{self, worker_pids};
use nxmesh_agent_lib::pipeline::{ApplyHook, ApplyStep};
use nxmesh_agent_lib::{CommandHandler, ConfigApplier, HealthSource, NginxRuntime};
use nxmesh_core::config::ConfigApplyStatus;
use nxmesh_core::protocol::{AppliedConfig, Command, CommandKind};

use crate::nginx_support::{
    Env, Fault, Inject, free_port, http_get, read_tree, rendered, update,
    update_with_bad_certificate,
};

async fn started(env: &Env, hook: Option<Arc<dyn ApplyHook>>) -> NginxRuntime {
    let rt = NginxRuntime::open_with_hook(env.config.clone(), hook)
        .await
        .unwrap();
    rt.ensure_started().await.unwrap();
    rt
}

#[tokio::test]
async fn a_valid_apply_is_served_with_the_generators_checksum() {
    let Some(env) = Env::new() else { return };
    let rt = started(&env, None).await;
    assert_eq!(rt.applied(), None);
    let master = env.master_pid().unwrap();

    let u1 = update(1, env.port, "v1");
    let out = rt.apply(u1.clone()).await;
    let expected = nxmesh_core::generator::render(&u1, rt.render_options()).unwrap();
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(out.checksum.as_deref(), Some(expected.checksum.as_str()));
    assert_eq!(http_get(env.port, "app.test"), Some((200, "v1".to_owned())));
    assert_eq!(read_tree(&rt.store().live()), rendered(&rt, &u1));

    let workers = worker_pids(master);
    let u2 = update(2, env.port, "v2");
    let out = rt.apply(u2.clone()).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(http_get(env.port, "app.test"), Some((200, "v2".to_owned())));
    assert_eq!(env.master_pid(), Some(master), "a reload keeps the master");
    assert!(
        !worker_pids(master).is_subset(&workers),
        "a new worker generation"
    );
    assert_eq!(
        rt.applied(),
        Some(AppliedConfig {
            version: 2,
            checksum: out.checksum.unwrap()
        })
    );
    // Only the live tree is kept (old ones are renamed to `.trash-*` at
    // once and removed in the background).
    let trees = std::fs::read_dir(rt.store().root().join("trees"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(trees, 1);
}

/// A client that keeps requesting `/` and counts what it gets.
struct Client {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Client {
    fn start(port: u16, body: &'static str) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, o, f) = (stop.clone(), ok.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match http_get(port, "app.test") {
                    Some((200, b)) if b == body => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    other => f.lock().unwrap().push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Client {
            stop,
            ok,
            failures,
            thread,
        }
    }

    /// Stops the client; (successful requests, failures).
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_invalid_configurations_never_serve() {
    let Some(env) = Env::new() else { return };
    let hook = Arc::new(Inject(Mutex::new(Fault::None)));
    let rt = started(&env, Some(hook.clone())).await;
    let out = rt.apply(update(1, env.port, "good")).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    let good = out.checksum.unwrap();
    let master = env.master_pid().unwrap();
    let workers = worker_pids(master);
    let live_before = read_tree(&rt.store().live());
    let client = Client::start(env.port, "good");

    let tls_port = free_port();
    for i in 0..100_i64 {
        let version = 2 + i;
        let (u, fault, expect) = match i % 7 {
            0 => (
                update(version, env.port, "bad"),
                Fault::Append("nginx.conf", "frobnicate on;\n".into()),
                "unknown directive \"frobnicate\"",
            ),
            1 => (
                update(version, env.port, "bad"),
                Fault::TruncateLastBrace("nginx.conf"),
                "unexpected end of file, expecting \"}\"",
            ),
            2 => (
                update(version, env.port, "bad"),
                Fault::Append("nginx.conf", "worker_processes;\n".into()),
                "invalid number of arguments",
            ),
            3 => (
                update(version, env.port, "bad"),
                Fault::Append("nginx.conf", format!("worker_connections {i};\n")),
                "directive is not allowed here",
            ),
            4 => (
                update_with_bad_certificate(version, env.port, tls_port),
                Fault::None,
                "cannot load certificate",
            ),
            5 => (
                update_with_bad_certificate(version, env.port, tls_port),
                Fault::DeleteSuffix(".crt"),
                "No such file or directory",
            ),
            _ => (
                update(version, env.port, "bad"),
                Fault::Append("nginx.conf", "http { }\n".into()),
                "\"http\" directive is duplicate",
            ),
        };
        hook.set(fault);
        let out = rt.apply(u).await;
        assert_eq!(
            out.status,
            ConfigApplyStatus::Failed,
            "attempt {i}: {out:?}"
        );
        let msg = out.error_message.unwrap();
        assert!(
            msg.contains("[emerg]") && msg.contains(expect),
            "attempt {i}: {msg}"
        );
        assert_eq!(out.checksum.as_deref(), Some(good.as_str()));
        assert_eq!(env.master_pid(), Some(master), "attempt {i}");
        assert_eq!(
            worker_pids(master),
            workers,
            "attempt {i}: nginx was not signalled"
        );
        assert_eq!(read_tree(&rt.store().live()), live_before, "attempt {i}");
        assert_eq!(rt.applied().unwrap().version, 1);
    }
    let trees = std::fs::read_dir(rt.store().root().join("trees"))
        .unwrap()
        .count();
    assert_eq!(trees, 1, "every refused tree was removed");
    let (ok, failures) = client.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_fails_is_rolled_back() {
    let Some(env) = Env::new() else { return };
    let rt = started(&env, None).await;
    let out = rt.apply(update(1, env.port, "v1")).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    let good = out.checksum.unwrap();
    let master = env.master_pid().unwrap();
    let live_before = read_tree(&rt.store().live());

    // nginx -t does not bind, so this passes the test and fails the reload.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut u2 = update(2, env.port, "v2");
    let mut second = u2.virtual_hosts[0].clone();
    second.id = uuid::Uuid::from_u128(3);
    second.spec.server_name = "other.test".to_owned();
    second.spec.listen_port = port;
    u2.virtual_hosts.push(second);
    let out = rt.apply(u2).await;
    assert_eq!(out.status, ConfigApplyStatus::RolledBack, "{out:?}");
    let msg = out.error_message.unwrap();
    assert!(
        msg.contains("[emerg]") && msg.contains("Address already in use"),
        "{msg}"
    );
    assert_eq!(out.checksum.as_deref(), Some(good.as_str()));
    assert_eq!(rt.store().live_checksum().as_deref(), Some(good.as_str()));
    assert_eq!(read_tree(&rt.store().live()), live_before);
    assert_eq!(env.master_pid(), Some(master));
    assert_eq!(rt.applied().unwrap().version, 1);
    assert_eq!(http_get(env.port, "app.test"), Some((200, "v1".to_owned())));

    // Once the port is free again, a newer version applies.
    drop(taken);
    let mut u3 = update(3, env.port, "v3");
    u3.virtual_hosts[0].spec.listen_port = env.port;
    let out = rt.apply(u3).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(http_get(env.port, "app.test"), Some((200, "v3".to_owned())));
}

#[tokio::test]
async fn older_and_duplicate_versions_are_no_ops() {
    let Some(env) = Env::new() else { return };
    let rt = started(&env, None).await;
    let out = rt.apply(update(5, env.port, "v5")).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    let checksum = out.checksum.unwrap();
    let master = env.master_pid().unwrap();
    let workers = worker_pids(master);
    let live = read_tree(&rt.store().live());

    let dup = rt.apply(update(5, env.port, "other")).await;
    assert_eq!(dup.status, ConfigApplyStatus::Success);
    assert_eq!(dup.checksum.as_deref(), Some(checksum.as_str()));
    let old = rt.apply(update(3, env.port, "older")).await;
    assert_eq!(old.status, ConfigApplyStatus::Failed);
    assert_eq!(worker_pids(master), workers, "nginx was not reloaded");
    assert_eq!(read_tree(&rt.store().live()), live);
    assert_eq!(rt.applied().unwrap().version, 5);
    assert_eq!(http_get(env.port, "app.test"), Some((200, "v5".to_owned())));
}

#[tokio::test]
async fn a_restarted_runtime_reads_the_last_known_good_and_leaves_nginx_alone() {
    let Some(env) = Env::new() else { return };
    let rt = started(&env, None).await;
    let out = rt.apply(update(4, env.port, "v4")).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    let applied = rt.applied();
    let master = env.master_pid().unwrap();
    let workers = worker_pids(master);
    drop(rt);

    let rt = NginxRuntime::open(env.config.clone()).await.unwrap();
    assert_eq!(rt.applied(), applied);
    let m = rt.ensure_started().await.unwrap();
    assert_eq!(m.pid, master);
    assert_eq!(worker_pids(master), workers, "nginx untouched");
    assert_eq!(http_get(env.port, "app.test"), Some((200, "v4".to_owned())));
}

/// Emulates a kill at each step of an apply (the hook stops the pipeline
/// with no cleanup), reopens the runtime as a restarted agent would, and
/// checks that the live tree is entirely the old or entirely the new one,
/// that `nginx -t` passes on it, and that nginx serves the recorded version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_interrupted_at_any_step_leaves_a_whole_tree() {
    let Some(env) = Env::new() else { return };
    let hook = Arc::new(Inject(Mutex::new(Fault::None)));
    let mut rt = started(&env, Some(hook.clone())).await;
    let mut version = 1;
    let first = update(version, env.port, "body-1");
    assert_eq!(rt.apply(first).await.status, ConfigApplyStatus::Success);
    let steps = [
        ApplyStep::Staged,
        ApplyStep::Validated,
        ApplyStep::Committed,
        ApplyStep::Switched,
        ApplyStep::Reloaded,
        ApplyStep::Recorded,
    ];
    let mut runs = 0;
    for round in 0..9 {
        for step in steps {
            let old = rt.last_known_good().unwrap();
            let old_update = update(old.version, env.port, &format!("body-{}", old.version));
            version += 1;
            let new_update = update(version, env.port, &format!("body-{version}"));
            hook.set(Fault::AbortAt(step));
            let out = rt.apply(new_update.clone()).await;
            assert_eq!(out.status, ConfigApplyStatus::Failed, "{step:?}: {out:?}");
            hook.set(Fault::None);
            drop(rt);

            rt = NginxRuntime::open_with_hook(env.config.clone(), Some(hook.clone()))
                .await
                .unwrap();
            let live = read_tree(&rt.store().live());
            let applied = rt.last_known_good().unwrap();
            let (expected_version, expected_tree) = if live == rendered(&rt, &new_update) {
                (version, new_update)
            } else {
                assert_eq!(live, rendered(&rt, &old_update), "round {round} {step:?}");
                (old.version, old_update)
            };
            assert_eq!(applied.version, expected_version, "round {round} {step:?}");
            assert_eq!(step == ApplyStep::Recorded, expected_version == version);
            let paths = rt.nginx().paths().clone();
            nginx::test_config(&paths, &paths.conf).await.unwrap();
            assert_eq!(
                http_get(env.port, "app.test"),
                Some((200, format!("body-{}", expected_tree.version))),
                "round {round} {step:?}"
            );
            runs += 1;
        }
    }
    assert_eq!(runs, 54);
}

#[tokio::test]
async fn commands_and_health_report_the_real_nginx() {
    let Some(env) = Env::new() else { return };
    let rt = started(&env, None).await;
    assert_eq!(
        rt.apply(update(1, env.port, "v1")).await.status,
        ConfigApplyStatus::Success
    );
    let master = env.master_pid().unwrap();
    let cmd = |kind| Command {
        command_id: "c1".to_owned(),
        kind,
    };

    let status = rt.handle(cmd(CommandKind::GetStatus)).await;
    assert!(status.success, "{status:?}");
    assert_eq!(status.details["pid"], master.to_string());
    assert_eq!(status.details["config_version"], "1");

    let workers = worker_pids(master);
    let reload = rt.handle(cmd(CommandKind::Reload { graceful: true })).await;
    assert!(reload.success, "{reload:?}");
    assert!(!worker_pids(master).is_subset(&workers));

    assert_eq!(http_get(env.port, "app.test"), Some((200, "v1".to_owned())));
    let health = RuntimeHealth::new(rt.clone());
    let report = health.health().await;
    assert!(report.nginx.is_running);
    assert_eq!(report.nginx.pid, u32::try_from(master).unwrap());
    assert!(report.nginx.total_requests >= 1, "{report:?}");
    assert!(
        report.nginx.active_connections >= 1,
        "the status request itself"
    );
    assert!(report.system.memory_total_bytes > 0 && report.system.disk_total_bytes > 0);
    assert_eq!(report.config_version, 1);
    assert!(report.alerts.iter().all(|a| a.id != "nginx_down"));

    let restart = rt.handle(cmd(CommandKind::Restart { force: false })).await;
    assert!(restart.success, "{restart:?}");
    let new_master = env.master_pid().unwrap();
    assert_ne!(new_master, master);
    assert_eq!(http_get(env.port, "app.test"), Some((200, "v1".to_owned())));

    let stop = rt
        .handle(cmd(CommandKind::Stop {
            graceful: true,
            timeout_seconds: 5,
        }))
        .await;
    assert!(stop.success, "{stop:?}");
    assert!(rt.nginx().status().await.is_none());
    assert_eq!(http_get(env.port, "app.test"), None);
    let report = health.health().await;
    assert!(!report.nginx.is_running);
    assert!(report.alerts.iter().any(|a| a.id == "nginx_down"));

    let validate = rt
        .handle(cmd(CommandKind::ValidateConfig {
            config_content: "load_module x.so;".to_owned(),
        }))
        .await;
    assert!(!validate.success, "raw text is refused, never run");
}
