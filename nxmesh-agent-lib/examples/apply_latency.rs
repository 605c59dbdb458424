//! Apply latency against a real nginx: render, stage, `nginx -t`, switch,
//! reload and confirm, for configurations of N server blocks.
//!
//! `cargo run -p nxmesh-agent-lib --example apply_latency -- 10 100 1000`
//! (nginx from `NXMESH_NGINX` or `/usr/sbin/nginx`; listens on 127.0.0.1;
//! `NXMESH_BENCH_RUNS` applies per size, 30 by default).

// A measurement tool: its report is its output.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nxmesh_agent_lib::nginx::NginxMode;
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
        let rt = NginxRuntime::open(config).await?;
        rt.ensure_started().await?;
        let port = free_port()?;
        let mut times = Vec::with_capacity(runs);
        for v in 1..=runs {
            let u = update(i64::try_from(v)?, blocks, port);
            let t = Instant::now();
            let out = rt.apply(u).await;
            times.push(t.elapsed());
            if out.status != ConfigApplyStatus::Success {
                return Err(format!("apply failed: {out:?}").into());
            }
        }
        times.sort();
        let pick = |q: f64| {
            // Nearest-rank percentile.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            times[i]
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{blocks} server blocks, {runs} applies: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(pick(0.5)),
            ms(pick(0.99)),
            ms(times[times.len() - 1])
        );
        rt.nginx().stop(true, Duration::from_secs(5)).await?;
    }
    Ok(())
}
