//! Apply latency against a real nginx: render, stage, `nginx -t`, switch,
//! reload and confirm, for configurations of N server blocks.
//!
//! `cargo run -p nxmesh-agent-lib --example apply_latency -- 10 100 1000`
//! (nginx from `NXMESH_NGINX` or `/usr/sbin/nginx`; listens on 127.0.0.1;
//! `NXMESH_BENCH_RUNS` applies per size, 30 by default).

// A measurement tool: its report is its output.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nxmesh_agent_lib::nginx::NginxMode;
use nxmesh_agent_lib::pipeline::{ApplyHook, ApplyStep, HookAbort};
use nxmesh_agent_lib::{ConfigApplier, NginxRuntime, RuntimeConfig};
use nxmesh_core::config::{ConfigApplyStatus, ConfigUpdate, VirtualHostConfig};
use nxmesh_core::model::{Location, VirtualHostSpec};

/// Applies per size unless `NXMESH_BENCH_RUNS` says otherwise.
const DEFAULT_RUNS: usize = 30;

fn update(version: i64, blocks: usize, port: u16) -> ConfigUpdate {
    let virtual_hosts = (0..blocks)
        .map(|j| {
            let mut custom = BTreeMap::new();
            custom.insert("return".to_owned(), format!("200 v{version}"));
            VirtualHostConfig {
                id: uuid::Uuid::from_u128(j as u128 + 1),
                spec: VirtualHostSpec {
                    name: format!("h{j}"),
                    server_name: format!("h{j}.test"),
                    listen_port: port,
                    ssl_enabled: false,
                    ssl_certificate_id: None,
                    http2_enabled: false,
                    http3_enabled: false,
                    locations: vec![Location {
                        path: "/".to_owned(),
                        modifier: None,
                        upstream_id: None,
                        proxy_pass: None,
                        root: None,
                        index: None,
                        custom_headers: Vec::new(),
                        rewrite_rules: Vec::new(),
                        custom_directives: custom,
                    }],
                    custom_directives: BTreeMap::new(),
                },
            }
        })
        .collect();
    ConfigUpdate {
        config_id: format!("bench-{version}"),
        version,
        virtual_hosts,
        ..ConfigUpdate::default()
    }
}

/// Records when each step of an apply is reached, for the breakdown.
#[derive(Debug, Default)]
struct Steps(Mutex<Vec<(ApplyStep, Instant)>>);

impl ApplyHook for Steps {
    fn at(&self, step: ApplyStep, _tree: &Path) -> Result<(), HookAbort> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((step, Instant::now()));
        Ok(())
    }
}

/// The phases reported, each ending at a step (`None`: the apply's end).
const PHASES: &[(&str, Option<ApplyStep>)] = &[
    ("render+stage", Some(ApplyStep::Staged)),
    ("nginx -t", Some(ApplyStep::Validated)),
    ("commit+switch", Some(ApplyStep::Switched)),
    ("reload+confirm", Some(ApplyStep::Reloaded)),
    ("record", Some(ApplyStep::Recorded)),
    ("gc", None),
];

/// Nearest-rank percentile of sorted `times`.
fn pick(times: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
    times[i]
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let nginx = std::env::var("NXMESH_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".to_owned());
    let runs: usize = match std::env::var("NXMESH_BENCH_RUNS") {
        Ok(n) => n.parse()?,
        Err(_) => DEFAULT_RUNS,
    };
    if runs == 0 {
        return Err("NXMESH_BENCH_RUNS must be positive".into());
    }
    for blocks in sizes {
        let dir = tempfile::tempdir()?;
        let mut config = RuntimeConfig::new(
            nginx.clone().into(),
            dir.path().join("prefix"),
            dir.path().join("data"),
            NginxMode::Standalone,
        );
        config.listen_address = Some("127.0.0.1".parse()?);
        config.status_port = free_port()?;
        config.worker_shutdown_timeout_secs = 2;
        let steps = Arc::new(Steps::default());
        let rt = NginxRuntime::open_with_hook(config, Some(steps.clone())).await?;
        rt.ensure_started().await?;
        let port = free_port()?;
        let mut times = Vec::with_capacity(runs);
        let mut phases: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); PHASES.len()];
        for v in 1..=runs {
            let u = update(i64::try_from(v)?, blocks, port);
            steps
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            let t = Instant::now();
            let out = rt.apply(u).await;
            let end = Instant::now();
            times.push(end - t);
            if out.status != ConfigApplyStatus::Success {
                return Err(format!("apply failed: {out:?}").into());
            }
            let seen = steps
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut from = t;
            for (i, (_, until)) in PHASES.iter().enumerate() {
                let to = match until {
                    Some(step) => seen
                        .iter()
                        .find(|(s, _)| s == step)
                        .map(|(_, at)| *at)
                        .ok_or("a step was not reached")?,
                    None => end,
                };
                phases[i].push(to - from);
                from = to;
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{blocks} server blocks, {runs} applies: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(pick(&times, 0.5)),
            ms(pick(&times, 0.99)),
            ms(times[times.len() - 1])
        );
        let mut parts = Vec::new();
        for ((name, _), mut p) in PHASES.iter().zip(phases) {
            p.sort();
            parts.push(format!("{name} {:.1}", ms(pick(&p, 0.5))));
        }
        println!("  p50 by phase (ms): {}", parts.join(", "));
        rt.nginx().stop(true, Duration::from_secs(5)).await?;
    }
    Ok(())
}
