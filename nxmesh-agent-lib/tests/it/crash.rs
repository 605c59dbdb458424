//! Crash safety with a real SIGKILL: the `nxmesh-agent` binary (built with
//! the `failpoints` feature through this crate's dev-dependency on itself)
//! applies a local model file in standalone mode, stops at a failpoint, is
//! killed with SIGKILL there, and is started again. After the kill the
//! live tree is entirely the old or entirely the new version and passes
//! `nginx -t`; after the restart the agent has recovered to the recorded
//! version, whose tree is live, and nginx serves it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nxmesh_agent_lib::RuntimeConfig;
use nxmesh_agent_lib::nginx::{self, NginxMode, NginxPaths};
use nxmesh_agent_lib::store::TreeStore;
use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::generator::{self, RenderOptions};

use crate::nginx_support::{Env, free_port, http_get, read_tree};

/// Every failpoint of an apply, in the order an apply reaches them; the
/// last two are on the rollback path (a reload that fails).
const FAILPOINTS: &[&str] = &[
    "stage.file",
    "apply.staged",
    "apply.validated",
    "apply.committed",
    "switch.linked",
    "switch.renamed",
    "apply.switched",
    "reload.signalled",
    "apply.reloaded",
    "update.written",
    "state.written",
    "state.renamed",
    "apply.recorded",
    "gc.removed",
    "rollback.switched",
    "rollback.reloaded",
];

struct Agent {
    dir: PathBuf,
    data: PathBuf,
    prefix: PathBuf,
    nginx: PathBuf,
    status_port: u16,
    opts: RenderOptions,
}

impl Agent {
    /// The `nxmesh-agent` command applying `model` once.
    fn command(&self, model: &Path, log: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_nxmesh-agent"));
        c.arg("--config-file")
            .arg(model)
            .arg("--once")
            .arg("--mode")
            .arg("standalone")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--prefix")
            .arg(&self.prefix)
            .arg("--nginx-binary")
            .arg(&self.nginx)
            .arg("--status-port")
            .arg(self.status_port.to_string())
            .arg("--listen-address")
            .arg("127.0.0.1")
            .env_remove("NXMESH_MASTER")
            .env_remove("NXMESH_FAILPOINT")
            .env_remove("NXMESH_FAILPOINT_FILE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        c
    }

    fn model(&self, update: &ConfigUpdate) -> PathBuf {
        let path = self.dir.join(format!("model-{}.json", update.version));
        std::fs::write(&path, serde_json::to_vec(update).unwrap()).unwrap();
        path
    }

    /// Runs the agent to completion on `update`; panics unless it exits 0.
    fn apply(&self, update: &ConfigUpdate) {
        let log = self.dir.join("agent.log");
        let status = self.command(&self.model(update), &log).status().unwrap();
        assert!(
            status.success(),
            "agent failed on version {}: {}",
            update.version,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Starts the agent on `update`, armed to stop at `failpoint`, and
    /// waits until it is there.
    fn stop_at(&self, update: &ConfigUpdate, failpoint: &str) -> Child {
        let log = self.dir.join("agent-failpoint.log");
        let marker = self.dir.join("failpoint-reached");
        let _ = std::fs::remove_file(&marker);
        let mut child = self
            .command(&self.model(update), &log)
            .env("NXMESH_FAILPOINT", failpoint)
            .env("NXMESH_FAILPOINT_FILE", &marker)
            .spawn()
            .unwrap();
        // A deadline against a hung test, not a timing assertion.
        for _ in 0..3000 {
            if std::fs::read_to_string(&marker).is_ok_and(|m| m == failpoint) {
                return child;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "the agent exited ({status}) without reaching {failpoint}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        panic!("the agent never reached {failpoint}");
    }

    fn store(&self) -> TreeStore {
        TreeStore::open(self.data.join("nginx")).unwrap()
    }

    fn rendered(&self, update: &ConfigUpdate) -> (String, BTreeMap<String, Vec<u8>>) {
        let r = generator::render(update, &self.opts).unwrap();
        let files = r.files.into_iter().map(|f| (f.path, f.bytes)).collect();
        (r.checksum, files)
    }

    async fn nginx_t(&self) -> Result<String, nginx::NginxError> {
        let live = self.store().live().join("nginx.conf");
        let paths = NginxPaths {
            binary: self.nginx.clone(),
            prefix: self.prefix.clone(),
            conf: live.clone(),
            pid_file: self.prefix.join("logs/nginx.pid"),
            error_log: self.prefix.join("logs/error.log"),
        };
        nginx::test_config(&paths, &live).await
    }
}

fn model(version: i64, port: u16, taken: Option<u16>) -> ConfigUpdate {
    let mut u = crate::nginx_support::update(version, port, &format!("body-{version}"));
    if let Some(taken) = taken {
        // Passes `nginx -t` (which does not bind) and fails the reload.
        let mut second = u.virtual_hosts[0].clone();
        second.id = uuid::Uuid::from_u128(2);
        second.spec.name = "taken".to_owned();
        second.spec.server_name = "taken.test".to_owned();
        second.spec.listen_port = taken;
        u.virtual_hosts.push(second);
    }
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_failpoint_leaves_a_whole_tree() {
    let Some(env) = Env::new() else { return };
    let dir = env.config.prefix.parent().unwrap().to_owned();
    let nginx_binary = env.config.nginx_binary.clone();
    let status_port = free_port();
    let data = dir.join("agent");
    let mut rc = RuntimeConfig::new(
        nginx_binary.clone(),
        env.config.prefix.clone(),
        data.join("nginx"),
        NginxMode::Standalone,
    );
    rc.listen_address = Some("127.0.0.1".parse().unwrap());
    rc.status_port = status_port;
    let opts = RenderOptions {
        nginx_version: nginx::detect_version(&nginx_binary).await.unwrap(),
        layout: rc.layout.clone(),
        listen_address: rc.listen_address,
        status_port,
        worker_shutdown_timeout_secs: rc.worker_shutdown_timeout_secs,
    };
    let agent = Agent {
        dir: dir.clone(),
        data,
        prefix: env.config.prefix.clone(),
        nginx: nginx_binary,
        status_port,
        opts,
    };
    let port = env.port;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();

    let mut current = model(1, port, None);
    agent.apply(&current);
    assert_eq!(http_get(port, "app.test"), Some((200, "body-1".to_owned())));
    let master = env.master_pid().unwrap();

    let mut version = 1;
    let mut runs = 0;
    let mut outcomes: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for round in 0..4 {
        for &fp in FAILPOINTS {
            let old = current.clone();
            let (old_sum, old_tree) = agent.rendered(&old);
            version += 1;
            let rollback = fp.starts_with("rollback.");
            let new = model(version, port, rollback.then_some(taken_port));
            let (new_sum, new_tree) = agent.rendered(&new);
            let ctx = format!("round {round}, failpoint {fp}");

            let mut child = agent.stop_at(&new, fp);
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();

            // Right after the kill: a whole tree, old or new, that passes
            // `nginx -t`.
            let store = agent.store();
            let live = store.live_checksum().unwrap();
            let tree = read_tree(&store.live());
            if live == new_sum {
                assert_eq!(tree, new_tree, "{ctx}: the new tree is not whole");
            } else {
                assert_eq!(live, old_sum, "{ctx}");
                assert_eq!(tree, old_tree, "{ctx}: the old tree is not whole");
            }
            agent
                .nginx_t()
                .await
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));

            // Restart the agent with the version it recorded: it recovers
            // and has nothing to apply.
            let state = store.read_state().unwrap().unwrap();
            let recorded = if state.version == new.version {
                new.clone()
            } else {
                assert_eq!(state.version, old.version, "{ctx}");
                old.clone()
            };
            agent.apply(&recorded);
            let (sum, files) = agent.rendered(&recorded);
            let store = agent.store();
            assert_eq!(store.live_checksum(), Some(sum.clone()), "{ctx}");
            assert_eq!(read_tree(&store.live()), files, "{ctx}");
            assert_eq!(store.read_state().unwrap().unwrap().checksum, sum, "{ctx}");
            agent
                .nginx_t()
                .await
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(
                http_get(port, "app.test"),
                Some((200, format!("body-{}", recorded.version))),
                "{ctx}"
            );
            assert_eq!(env.master_pid(), Some(master), "{ctx}: nginx kept running");
            // Only a kill after the record keeps the new version.
            let kept_new = recorded.version == new.version;
            let after_record = matches!(fp, "state.renamed" | "apply.recorded" | "gc.removed");
            assert_eq!(kept_new, after_record, "{ctx}");
            let e = outcomes.entry(fp).or_default();
            if kept_new {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
            current = recorded;
            runs += 1;
        }
    }
    assert_eq!(runs, FAILPOINTS.len() * 4);
    assert!(runs >= 50);
    // Every failpoint was reached in every round.
    assert!(outcomes.values().all(|(o, n)| o + n == 4), "{outcomes:?}");
    drop(taken);
}
