//! Access-log lines parsed per second on one core (target: at least
//! 200,000), against `serde_json::from_slice` into a `serde_json::Value` on
//! the same lines as the reference.
//!
//! The lines are written in the generator's exact `log_format` with varied
//! values (addresses, URIs with query strings, user agents with escaped
//! quotes, upstream fields). Groups:
//!
//! - `parse`: [`parse_line`] alone (borrowed fields);
//! - `parse+entry`: what the shipper does for each line: parse, build the
//!   `LogEntry` (owned fields) and the metrics sample;
//! - `serde_json_value`: the reference;
//! - `tail+parse+entry`: a 100,000-line file read through the `Tailer`
//!   (page cache) and converted, end to end.
//!
//! Each is measured in wall time and, in the `-cpu` groups, in on-CPU time
//! of the thread (`/proc/thread-self/schedstat`), which leaves out the time
//! spent waiting for a core on a shared machine.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use chrono::Utc;
use criterion::measurement::Measurement;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nxmesh_agent_lib::accesslog::parse::parse_line;
use nxmesh_agent_lib::accesslog::tail::{Flow, TailConfig, Tailed, Tailer};
use nxmesh_core::generator::ACCESS_LOG_JSON;

const LINES: usize = 10_000;
const FILE_LINES: usize = 100_000;

/// One line per request in the generator's format.
fn lines(n: usize) -> Vec<String> {
    const AGENTS: [&str; 4] = [
        r#"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"#,
        r#"curl/8.5.0"#,
        r#"Mozilla/5.0 (compatible; \"bot\"; +https://example.com/bot)"#,
        "-",
    ];
    (0..n)
        .map(|i| {
            let mut out = String::with_capacity(512);
            let mut rest = ACCESS_LOG_JSON;
            while let Some(at) = rest.find('$') {
                out.push_str(&rest[..at]);
                let len = rest[at + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len() - at - 1);
                let var = &rest[at + 1..at + 1 + len];
                rest = &rest[at + 1 + len..];
                let _ = match var {
                    "time_iso8601" => {
                        write!(out, "2026-11-27T21:{:02}:{:02}+00:00", i / 60 % 60, i % 60)
                    }
                    "remote_addr" => write!(out, "10.{}.{}.{}", i % 7, i % 251, i % 13),
                    "request_method" => out.write_str(["GET", "POST", "GET", "HEAD"][i % 4]),
                    "request_uri" => write!(out, "/api/v1/items/{i}?page={}&sort=name", i % 17),
                    "server_protocol" => out.write_str("HTTP/1.1"),
                    "host" => write!(out, "site{}.example.com", i % 50),
                    "status" => write!(out, "{}", [200, 200, 200, 304, 404, 502][i % 6]),
                    "body_bytes_sent" => write!(out, "{}", (i * 37) % 50_000),
                    "request_length" => write!(out, "{}", 120 + (i * 13) % 4_000),
                    "request_time" => write!(out, "{}.{:03}", i % 3, i % 1000),
                    "http_user_agent" => out.write_str(AGENTS[i % 4]),
                    "http_referer" => write!(out, "https://site{}.example.com/", i % 50),
                    "request_id" => write!(out, "{:032x}", i * 7919),
                    "upstream_addr" => write!(out, "10.0.0.{}:8080", i % 8),
                    "upstream_status" => out.write_str("200"),
                    "upstream_response_time" => write!(out, "0.{:03}", i % 1000),
                    _ => Ok(()),
                };
            }
            out.push_str(rest);
            out
        })
        .collect()
}

fn bench<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str) {
    let lines = lines(LINES);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for l in lines.iter().cycle().take(FILE_LINES) {
            f.write_all(l.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
        }
        f.flush().unwrap();
    }
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("parse", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                n += parse_line(l.as_bytes()).unwrap().fields().len();
            }
            n
        });
    });
    g.bench_function("parse+entry", |b| {
        let now = Utc::now();
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                let p = parse_line(l.as_bytes()).unwrap();
                let e = p.to_log_entry(now);
                n += e.fields.len() + usize::from(p.sample().status);
            }
            n
        });
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                let v: serde_json::Value = serde_json::from_slice(l.as_bytes()).unwrap();
                n += v.as_object().unwrap().len();
            }
            n
        });
    });
    g.throughput(Throughput::Elements(FILE_LINES as u64));
    g.sample_size(20);
    g.bench_function("tail+parse+entry", |b| {
        let now = Utc::now();
        b.iter(|| {
            let mut t = Tailer::new(
                TailConfig {
                    path: path.clone(),
                    rotate_wait: Duration::from_secs(5),
                    max_line_bytes: 64 * 1024,
                    max_rotated: 4,
                },
                Vec::new(),
            );
            let mut n = 0;
            t.poll(&mut |x| {
                if let Tailed::Line { line, .. } = x {
                    let p = parse_line(line).unwrap();
                    let e = p.to_log_entry(now);
                    n += e.fields.len();
                }
                Flow::Continue
            })
            .unwrap();
            assert_eq!(n, FILE_LINES * 16);
            n
        });
    });
    g.finish();
}

fn bench_wall(c: &mut Criterion) {
    bench(c, "access-log");
}

// The same measurement as the core benchmarks, one file for both crates.
#[path = "../../nxmesh-core/benches/common/cpu_time.rs"]
mod cpu_time;
use cpu_time::CpuTime;

fn bench_cpu(c: &mut Criterion<CpuTime>) {
    bench(c, "access-log-cpu");
}

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench_cpu
}
criterion_main!(wall, cpu);
