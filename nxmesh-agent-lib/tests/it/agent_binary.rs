//! The `nxmesh-agent` binary end to end with a real nginx and the scripted
//! fake master: it applies a pushed configuration, ships the access-log
//! lines of real requests and the metrics derived from them on its stream,
//! and reports and reverts a hand edit of the live tree (`AgentEvent`s).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nxmesh_agent_lib::drift::{EVENT_DETECTED, EVENT_REVERTED};
use nxmesh_proto::pb::{self, agent_message::Payload as Up, master_message::Payload as Down};
use uuid::Uuid;

use crate::nginx_support::{Env, free_port, http_get, update};
use crate::support::FakeMaster;

/// Stops the agent process when the test ends, however it ends.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_ships_access_logs_and_reverts_drift_on_its_stream() {
    let Some(env) = Env::new() else { return };
    let mut master = FakeMaster::start().await;
    let data = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_nxmesh-agent"))
        .arg("--master")
        .arg(master.url())
        .args(["--registration-token", "nxr_test_token"])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--nginx-binary")
        .arg(&env.config.nginx_binary)
        .arg("--prefix")
        .arg(&env.config.prefix)
        .args(["--status-port", &env.config.status_port.to_string()])
        .args(["--listen-address", "127.0.0.1"])
        .args(["--metrics-interval", "1", "--drift-interval", "1"])
        .env_remove("NXMESH_MASTER")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _agent = AgentProcess(child);

    let mut conn = master.conn().await;
    conn.accept(Uuid::new_v4(), 1, Some("cred-1")).await;
    let port = free_port();
    conn.push(Down::ConfigUpdate(pb::ConfigUpdate::from(update(
        1, port, "served",
    ))))
    .await;
    let status = conn.next_status().await;
    assert_eq!(
        status.status,
        pb::ConfigApplyStatus::Success as i32,
        "{status:?}"
    );
    for _ in 0..3 {
        assert_eq!(http_get(port, "app.test"), Some((200, "served".to_owned())));
    }

    // Log lines and metrics of those three requests.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut entries = Vec::new();
    let mut requests_metric = None;
    while entries.len() < 3 || requests_metric != Some(3.0) {
        assert!(
            Instant::now() < deadline,
            "entries {entries:?}, requests metric {requests_metric:?}"
        );
        match conn.next_non_health().await {
            Up::Logs(b) => entries.extend(b.entries),
            Up::Metrics(m) => {
                if let Some(v) = m
                    .metrics
                    .iter()
                    .find(|x| x.name == "nginx_http_requests_total")
                {
                    requests_metric = Some(v.value);
                }
            }
            _ => {}
        }
    }
    assert_eq!(entries.len(), 3, "{entries:?}");
    for e in &entries {
        assert_eq!(e.level, "access");
        assert_eq!(e.fields["method"], "GET");
        assert_eq!(e.fields["uri"], "/");
        assert_eq!(e.fields["host"], "app.test");
        assert_eq!(e.fields["status"], "200");
        assert_eq!(e.fields["body_bytes_sent"], "6");
    }

    // A hand edit of the live tree, reported and reverted (policy default).
    let live = data.path().join("nginx/live");
    let vhost = std::fs::read_dir(live.join("conf.d/nxmesh/servers"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let before = std::fs::read(&vhost).unwrap();
    std::fs::write(&vhost, b"# edited by hand\n").unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|t: &String| t == EVENT_REVERTED) {
        assert!(Instant::now() < deadline, "events so far: {seen:?}");
        if let Up::Event(e) = conn.next_non_health().await {
            seen.push(e.event_type);
        }
    }
    assert_eq!(seen, [EVENT_DETECTED, EVENT_REVERTED]);
    assert_eq!(std::fs::read(&vhost).unwrap(), before);
    assert_eq!(http_get(port, "app.test"), Some((200, "served".to_owned())));
}
