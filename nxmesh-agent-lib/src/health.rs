//! Health reports (the heartbeat): nginx from `/proc` and the local
//! `stub_status` endpoint the generator renders, the host from `/proc` and
//! `statvfs`, and alerts for what is wrong.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use nxmesh_core::event::AlertSeverity;
use nxmesh_core::generator::STATUS_PATH;
use nxmesh_core::protocol::{Alert, HealthReport, NginxStatus, SystemMetrics};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::pipeline::NginxRuntime;
use crate::runtime::HealthSource;
use crate::upstream_health::UpstreamHealth;

/// Percent of CPU, memory or disk above which an alert is raised.
const HIGH_USE_PERCENT: f32 = 90.0;

/// What `stub_status` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StubStatus {
    /// Open client connections.
    pub active_connections: u32,
    /// Requests served since the master started.
    pub requests: u64,
}

/// Parses the `stub_status` body.
pub fn parse_stub_status(body: &str) -> Option<StubStatus> {
    let active = body
        .lines()
        .find_map(|l| l.strip_prefix("Active connections:"))?
        .trim()
        .parse()
        .ok()?;
    let mut lines = body.lines();
    lines.find(|l| l.trim_start().starts_with("server accepts"))?;
    let counts: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    Some(StubStatus {
        active_connections: active,
        requests: *counts.get(2)?,
    })
}

/// Fetches `stub_status` from `127.0.0.1:port` (HTTP/1.0, one request).
pub async fn fetch_stub_status(port: u16) -> Option<StubStatus> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = format!("GET {STATUS_PATH} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::with_capacity(512);
        // The answer is a few hundred bytes; bound it anyway.
        (&mut s).take(64 * 1024).read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return None;
        }
        parse_stub_status(body)
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()
        .flatten()
}

#[derive(Debug, Default)]
struct Previous {
    /// Total and idle CPU jiffies.
    cpu: Option<(u64, u64)>,
    /// Requests and when they were counted, with the master's pid.
    requests: Option<(i32, u64, Instant)>,
}

/// The [`HealthSource`] of an [`NginxRuntime`]; keeps the previous sample
/// for rates (CPU, requests per second).
#[derive(Debug)]
pub struct RuntimeHealth {
    runtime: NginxRuntime,
    disk_path: PathBuf,
    previous: Mutex<Previous>,
    upstreams: Option<UpstreamHealth>,
}

impl RuntimeHealth {
    /// Health of `runtime`; disk use is that of its data directory.
    pub fn new(runtime: NginxRuntime) -> Self {
        let disk_path = runtime.config().data_dir.clone();
        RuntimeHealth {
            runtime,
            disk_path,
            previous: Mutex::new(Previous::default()),
            upstreams: None,
        }
    }

    /// Adds the active upstream health checks' alerts to every report
    /// (unhealthy servers, upstreams with no healthy server, failed
    /// health-driven reloads).
    #[must_use]
    pub fn with_upstream_health(mut self, upstreams: UpstreamHealth) -> Self {
        self.upstreams = Some(upstreams);
        self
    }

    fn previous(&self) -> std::sync::MutexGuard<'_, Previous> {
        self.previous.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn nginx_status(&self) -> NginxStatus {
        let Some(master) = self.runtime.nginx().status().await else {
            return NginxStatus::default();
        };
        let mut status = NginxStatus {
            is_running: true,
            pid: u32::try_from(master.pid).unwrap_or(0),
            uptime_seconds: master.uptime_seconds,
            ..NginxStatus::default()
        };
        if let Some(stub) = fetch_stub_status(self.runtime.config().status_port).await {
            status.active_connections = stub.active_connections;
            status.total_requests = stub.requests;
            let now = Instant::now();
            let mut prev = self.previous();
            if let Some((pid, n, t)) = prev.requests
                && pid == master.pid
                && stub.requests >= n
            {
                let secs = now.duration_since(t).as_secs_f64();
                if secs > 0.0 {
                    // Rates fit easily in an f32.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                    let rps = ((stub.requests - n) as f64 / secs) as f32;
                    status.requests_per_second = rps;
                }
            }
            prev.requests = Some((master.pid, stub.requests, now));
        }
        status
    }

    fn system(&self) -> SystemMetrics {
        let mut m = SystemMetrics::default();
        if let Some((total, idle)) = read_cpu() {
            let mut prev = self.previous();
            if let Some((t0, i0)) = prev.cpu
                && total > t0
            {
                let busy = (total - t0).saturating_sub(idle.saturating_sub(i0));
                #[allow(clippy::cast_precision_loss)]
                let pct = busy as f32 * 100.0 / (total - t0) as f32;
                m.cpu_percent = pct;
            }
            prev.cpu = Some((total, idle));
        }
        if let Some((total, available)) = read_meminfo() {
            m.memory_total_bytes = total;
            m.memory_used_bytes = total.saturating_sub(available);
        }
        if let Ok(st) = nix::sys::statvfs::statvfs(&self.disk_path) {
            let frag = st.fragment_size();
            m.disk_total_bytes = st.blocks().saturating_mul(frag);
            m.disk_used_bytes = st
                .blocks()
                .saturating_sub(st.blocks_free())
                .saturating_mul(frag);
        }
        m.load_average_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        m
    }
}

fn read_cpu() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let total = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total, idle))
}

fn read_meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    Some((kib("MemTotal:")?, kib("MemAvailable:")?))
}

fn percent(used: u64, total: u64) -> f32 {
    if total == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let p = used as f32 * 100.0 / total as f32;
    p
}

/// The alerts for a report.
pub fn alerts(nginx: &NginxStatus, system: &SystemMetrics) -> Vec<Alert> {
    let now = Utc::now();
    let mut out = Vec::new();
    let mut raise = |id: &str, severity, message: String| {
        out.push(Alert {
            id: id.to_owned(),
            severity,
            message,
            timestamp: now,
        });
    };
    if !nginx.is_running {
        raise(
            "nginx_down",
            AlertSeverity::Critical,
            "nginx is not running".to_owned(),
        );
    }
    if system.cpu_percent > HIGH_USE_PERCENT {
        raise(
            "high_cpu",
            AlertSeverity::Warning,
            format!("CPU use is {:.0}%", system.cpu_percent),
        );
    }
    let mem = percent(system.memory_used_bytes, system.memory_total_bytes);
    if mem > HIGH_USE_PERCENT {
        raise(
            "high_memory",
            AlertSeverity::Warning,
            format!("memory use is {mem:.0}%"),
        );
    }
    let disk = percent(system.disk_used_bytes, system.disk_total_bytes);
    if disk > HIGH_USE_PERCENT {
        raise(
            "disk_nearly_full",
            AlertSeverity::Warning,
            format!("disk use is {disk:.0}%"),
        );
    }
    out
}

#[async_trait]
impl HealthSource for RuntimeHealth {
    async fn health(&self) -> HealthReport {
        let nginx = self.nginx_status().await;
        let system = self.system();
        let applied = self.runtime.last_known_good();
        HealthReport {
            alerts: {
                let mut a = alerts(&nginx, &system);
                if let Some(u) = &self.upstreams {
                    a.extend(u.alerts());
                }
                a
            },
            nginx,
            system,
            config_checksum: applied
                .as_ref()
                .map(|a| a.checksum.clone())
                .unwrap_or_default(),
            config_version: applied.map_or(0, |a| a.version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_status_and_alerts() {
        let body = "Active connections: 3 \nserver accepts handled requests\n 10 10 42 \n\
                    Reading: 0 Writing: 1 Waiting: 2 \n";
        assert_eq!(
            parse_stub_status(body),
            Some(StubStatus {
                active_connections: 3,
                requests: 42
            })
        );
        assert_eq!(parse_stub_status("nope"), None);
        let down = alerts(
            &NginxStatus::default(),
            &SystemMetrics {
                disk_used_bytes: 95,
                disk_total_bytes: 100,
                ..SystemMetrics::default()
            },
        );
        let ids: Vec<&str> = down.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["nginx_down", "disk_nearly_full"]);
    }
}
