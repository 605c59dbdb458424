//! Drift detection against a real nginx: a live file edited by hand (and
//! nginx reloaded on it, as an operator would) is reported on the stream
//! and in the health report; under `revert` the file comes back byte for
//! byte and nginx serves the applied configuration again, under `report`
//! the edit stays. While the active health checks hold a server down, the
//! tree they serve is the one drift compares with and restores.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use nxmesh_agent_lib::drift::{
    CheckOutcome, DriftConfig, DriftDetector, DriftHealth, DriftPolicy, EVENT_DETECTED,
    EVENT_REVERTED,
};
use nxmesh_agent_lib::telemetry::{AgentTelemetry, EventQueue};
use nxmesh_agent_lib::upstream_health::{UpstreamHealth, UpstreamHealthConfig};
use nxmesh_agent_lib::{
    CancellationToken, ConfigApplier, HealthSource, NginxRuntime, Telemetry, TelemetrySource,
};
use nxmesh_core::config::ConfigApplyStatus;
use nxmesh_core::event::AlertSeverity;
use nxmesh_core::protocol::{AgentEvent, HealthReport};

use crate::nginx_support::{Env, http_get, read_tree, update};
use crate::upstream_health::{Backend, TwoBackends, bodies, key, serving_two_backends, until};

/// The health report before drift alerts are added.
struct NoAlerts;

#[async_trait]
impl HealthSource for NoAlerts {
    async fn health(&self) -> HealthReport {
        HealthReport::default()
    }
}

struct Setup {
    env: Env,
    _snapshots: tempfile::TempDir,
    rt: NginxRuntime,
    detector: DriftDetector,
    telemetry: AgentTelemetry,
    /// The virtual host's file, relative to the tree.
    vhost_file: String,
}

async fn setup(policy: DriftPolicy) -> Option<Setup> {
    let env = Env::new()?;
    let rt = NginxRuntime::open(env.config.clone()).await.unwrap();
    rt.ensure_started().await.unwrap();
    let out = rt.apply(update(1, env.port, "applied")).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(
        http_get(env.port, "app.test"),
        Some((200, "applied".to_owned()))
    );
    let snapshots = tempfile::tempdir().unwrap();
    let events = EventQueue::new(16);
    let detector = DriftDetector::new(
        rt.clone(),
        DriftConfig {
            interval: Duration::from_secs(3600),
            policy,
            snapshot_dir: snapshots.path().join("drift"),
        },
        events.clone(),
    );
    let telemetry = AgentTelemetry::new(events, None, CancellationToken::new());
    let vhost_file = read_tree(&rt.store().live())
        .into_keys()
        .find(|p| p.contains("servers/"))
        .unwrap();
    Some(Setup {
        env,
        _snapshots: snapshots,
        rt,
        detector,
        telemetry,
        vhost_file,
    })
}

/// The events queued for the stream so far.
async fn events(t: &AgentTelemetry) -> Vec<AgentEvent> {
    let mut out = Vec::new();
    while let Ok(Some(Telemetry::Event(e))) =
        tokio::time::timeout(Duration::from_millis(100), t.next()).await
    {
        out.push(e);
    }
    out
}

/// Edits the live virtual-host file by hand (so that it answers `edited`),
/// adds a stray file, and reloads nginx on it.
async fn edit_by_hand(s: &Setup) -> Vec<u8> {
    let live = s.rt.store().live();
    let path = live.join(&s.vhost_file);
    let before = std::fs::read(&path).unwrap();
    let text = String::from_utf8(before.clone()).unwrap();
    assert!(text.contains("applied"), "{text}");
    std::fs::write(&path, text.replace("applied", "edited")).unwrap();
    std::fs::write(live.join("conf.d/stray.conf"), "# not the agent's\n").unwrap();
    s.rt.nginx().reload().await.unwrap();
    assert_eq!(
        http_get(s.env.port, "app.test"),
        Some((200, "edited".to_owned()))
    );
    before
}

fn assert_detected(e: &AgentEvent, s: &Setup, policy: &str) {
    assert_eq!(e.event_type, EVENT_DETECTED);
    assert_eq!(e.data["modified"], s.vhost_file);
    assert_eq!(e.data["added"], "conf.d/stray.conf");
    assert_eq!(e.data["removed"], "");
    assert_eq!(e.data["policy"], policy);
    assert_eq!(
        e.data["expected_checksum"],
        s.rt.last_known_good().unwrap().checksum
    );
}

#[tokio::test]
async fn a_hand_edit_is_reported_and_reverted_under_revert() {
    let Some(s) = setup(DriftPolicy::Revert).await else {
        return;
    };
    let health = DriftHealth::new(NoAlerts, s.detector.clone());
    assert_eq!(s.detector.check().await.unwrap(), CheckOutcome::Clean);
    let good = read_tree(&s.rt.store().live());
    let master = s.env.master_pid();

    let before = edit_by_hand(&s).await;
    let outcome = s.detector.check().await.unwrap();
    let CheckOutcome::Reverted(drift) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(drift.modified, std::slice::from_ref(&s.vhost_file));
    assert_eq!(drift.added, ["conf.d/stray.conf"]);

    // Byte for byte the applied tree again, and nginx serves it.
    let live = s.rt.store().live();
    assert_eq!(std::fs::read(live.join(&s.vhost_file)).unwrap(), before);
    assert_eq!(read_tree(&live), good);
    assert_eq!(
        s.rt.store().live_checksum(),
        Some(s.rt.last_known_good().unwrap().checksum)
    );
    assert_eq!(
        http_get(s.env.port, "app.test"),
        Some((200, "applied".to_owned()))
    );
    assert_eq!(s.env.master_pid(), master, "reverted with a reload");
    // No staging leftovers: only the live tree (old trees of earlier
    // applies may still be in the pipeline's background removal).
    let trees: Vec<String> = std::fs::read_dir(s.rt.store().root().join("trees"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".trash-"))
        .collect();
    assert_eq!(
        trees,
        [s.rt.last_known_good().unwrap().checksum],
        "{trees:?}"
    );

    let ev = events(&s.telemetry).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_detected(&ev[0], &s, "revert");
    assert_eq!(ev[1].event_type, EVENT_REVERTED);
    let alerts = health.health().await.alerts;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].id, "config_drift_reverted");
    assert_eq!(alerts[0].severity, AlertSeverity::Info);

    assert_eq!(s.detector.check().await.unwrap(), CheckOutcome::Clean);
    assert!(events(&s.telemetry).await.is_empty());
}

#[tokio::test]
async fn a_hand_edit_is_kept_but_reported_under_report() {
    let Some(s) = setup(DriftPolicy::Report).await else {
        return;
    };
    let health = DriftHealth::new(NoAlerts, s.detector.clone());
    assert_eq!(s.detector.check().await.unwrap(), CheckOutcome::Clean);
    assert!(health.health().await.alerts.is_empty());

    edit_by_hand(&s).await;
    let edited = read_tree(&s.rt.store().live());
    let outcome = s.detector.check().await.unwrap();
    assert!(
        matches!(&outcome, CheckOutcome::Reported(d) if d.modified == [s.vhost_file.clone()]),
        "{outcome:?}"
    );
    assert_eq!(read_tree(&s.rt.store().live()), edited, "the edit stays");
    assert_eq!(
        http_get(s.env.port, "app.test"),
        Some((200, "edited".to_owned()))
    );

    let ev = events(&s.telemetry).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_detected(&ev[0], &s, "report");
    let alerts = health.health().await.alerts;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].id, "config_drift");
    assert_eq!(alerts[0].severity, AlertSeverity::Warning);
    assert!(
        alerts[0].message.contains(&s.vhost_file),
        "{}",
        alerts[0].message
    );

    // Still drifted: still reported in health, but the event is not repeated.
    assert!(matches!(
        s.detector.check().await.unwrap(),
        CheckOutcome::Reported(_)
    ));
    assert!(events(&s.telemetry).await.is_empty());
    assert_eq!(health.health().await.alerts.len(), 1);

    // A new apply replaces the drifted tree; the drift is gone.
    let out = s.rt.apply(update(2, s.env.port, "second")).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(s.detector.check().await.unwrap(), CheckOutcome::Clean);
    assert!(health.health().await.alerts.is_empty());
    assert!(!Path::new(&s.rt.store().live().join("conf.d/stray.conf")).exists());
}

/// The file of `tree` that holds `needle`.
fn file_with(tree: &std::collections::BTreeMap<String, Vec<u8>>, needle: &str) -> String {
    tree.iter()
        .find(|(_, b)| String::from_utf8_lossy(b).contains(needle))
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| panic!("no file holds {needle:?}"))
}

/// Puts a held-down server back by hand (`server X down;` becomes
/// `server X;` in the live tree) and reloads nginx on it.
async fn put_back_by_hand(rt: &NginxRuntime, address: &str) -> String {
    let live = rt.store().live();
    let held = format!("server {address} down;");
    let file = file_with(&read_tree(&live), &held);
    let text = std::fs::read_to_string(live.join(&file)).unwrap();
    std::fs::write(
        live.join(&file),
        text.replace(&held, &format!("server {address};")),
    )
    .unwrap();
    rt.nginx().reload().await.unwrap();
    file
}

/// While the active health checks hold a server down, `live` is their
/// re-render (`trees/<served_checksum>`), not the applied tree: that is
/// not drift, nothing is reverted and nginx is not reloaded. A hand edit
/// that puts the server back is drift, and the revert restores the served
/// tree, so the server stays out of rotation; the same holds for an edit
/// made right after a re-render, before any check took a copy of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_override_is_not_drift_and_edits_revert_to_it() {
    let Some(env) = Env::new() else { return };
    let TwoBackends {
        rt,
        a: _a,
        b,
        applied,
    } = serving_two_backends(&env).await;
    let addr_b = b.address();

    let snapshots = tempfile::tempdir().unwrap();
    let queue = EventQueue::new(16);
    let detector = DriftDetector::new(
        rt.clone(),
        DriftConfig {
            interval: Duration::from_secs(3600),
            policy: DriftPolicy::Revert,
            snapshot_dir: snapshots.path().join("drift"),
        },
        queue.clone(),
    );
    let telemetry = AgentTelemetry::new(queue, None, CancellationToken::new());
    let health = DriftHealth::new(NoAlerts, detector.clone());
    assert_eq!(detector.check().await.unwrap(), CheckOutcome::Clean);

    // The health checker takes the stopped b out of rotation.
    let checker = UpstreamHealth::new(
        rt.clone(),
        UpstreamHealthConfig {
            coalesce: Duration::from_millis(100),
            min_reload_interval: Duration::from_secs(1),
        },
    );
    let stop_checker = CancellationToken::new();
    let task = {
        let (c, s) = (checker.clone(), stop_checker.clone());
        tokio::spawn(async move { c.run(s).await })
    };
    until("both servers probed healthy", async || {
        let s = checker.servers();
        s.len() == 2 && s.iter().all(|s| s.healthy && s.probes >= 1)
    })
    .await;
    let port_b = b.stop().await;
    until("b marked down", async || {
        rt.down_servers().contains(&key(&addr_b))
    })
    .await;
    until("the re-render is counted", async || checker.reloads() >= 1).await;
    // The verdict stays in the last known good; with the checker stopped,
    // b can answer again without being let back in.
    stop_checker.cancel();
    task.await.unwrap();
    let lkg = rt.last_known_good().unwrap();
    let served = lkg.served_checksum.clone().unwrap();
    assert_ne!(served, applied.checksum);
    assert_eq!(rt.store().live_checksum(), Some(served.clone()));
    let held = read_tree(&rt.store().live());
    let upstream_file = file_with(&held, &format!("server {addr_b} down;"));
    let _b = Backend::start(port_b, "b").await;

    // Untouched: clean, no event, no alert, no reload.
    let master = env.master_pid().unwrap();
    let workers = nxmesh_agent_lib::nginx::worker_pids(master);
    assert_eq!(detector.check().await.unwrap(), CheckOutcome::Clean);
    assert_eq!(read_tree(&rt.store().live()), held);
    assert_eq!(rt.store().live_checksum(), Some(served.clone()));
    assert_eq!(rt.last_known_good(), Some(lkg.clone()));
    assert_eq!(
        nxmesh_agent_lib::nginx::worker_pids(master),
        workers,
        "nginx was not reloaded"
    );
    assert!(events(&telemetry).await.is_empty());
    assert!(health.health().await.alerts.is_empty());
    let seen = bodies(env.port, 20).await.unwrap();
    assert!(seen.iter().all(|x| x == "a"), "{seen:?}");

    // b put back by hand: drift against the served tree, reverted to it.
    let edited = put_back_by_hand(&rt, &addr_b).await;
    assert_eq!(edited, upstream_file);
    let seen = bodies(env.port, 20).await.unwrap();
    assert!(seen.iter().any(|x| x == "b"), "the edit is live: {seen:?}");
    let outcome = detector.check().await.unwrap();
    let CheckOutcome::Reverted(drift) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(drift.expected, served);
    assert_eq!(drift.modified, std::slice::from_ref(&upstream_file));
    assert!(drift.added.is_empty() && drift.removed.is_empty() && !drift.relinked);
    assert_eq!(
        read_tree(&rt.store().live()),
        held,
        "the served tree, byte for byte"
    );
    assert_eq!(rt.store().live_checksum(), Some(served.clone()));
    assert_eq!(rt.last_known_good(), Some(lkg.clone()));
    assert_eq!(rt.down_servers(), [key(&addr_b)].into());
    assert_eq!(rt.applied(), Some(applied.clone()));
    let seen = bodies(env.port, 30).await.unwrap();
    assert!(seen.iter().all(|x| x == "a"), "b stays down: {seen:?}");
    let ev = events(&telemetry).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[0].event_type, EVENT_DETECTED);
    assert_eq!(ev[0].data["expected_checksum"], served);
    assert_eq!(ev[0].data["modified"], upstream_file);
    assert_eq!(ev[1].event_type, EVENT_REVERTED);
    assert_eq!(detector.check().await.unwrap(), CheckOutcome::Clean);

    // The verdict cleared, then given again (as the checker does), with no
    // check in between: the only pristine copy is of the applied tree, so
    // the served one is rendered again for the revert.
    let out = rt.set_down_servers(&Default::default()).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(rt.store().live_checksum(), Some(applied.checksum.clone()));
    assert_eq!(detector.check().await.unwrap(), CheckOutcome::Clean);
    let out = rt.set_down_servers(&[key(&addr_b)].into()).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");
    assert_eq!(rt.store().live_checksum(), Some(served.clone()));
    put_back_by_hand(&rt, &addr_b).await;
    let outcome = detector.check().await.unwrap();
    assert!(
        matches!(&outcome, CheckOutcome::Reverted(d) if d.modified == [upstream_file.clone()]),
        "{outcome:?}"
    );
    assert_eq!(read_tree(&rt.store().live()), held);
    assert_eq!(rt.store().live_checksum(), Some(served.clone()));
    let seen = bodies(env.port, 30).await.unwrap();
    assert!(seen.iter().all(|x| x == "a"), "b stays down: {seen:?}");
    assert_eq!(detector.check().await.unwrap(), CheckOutcome::Clean);
}
