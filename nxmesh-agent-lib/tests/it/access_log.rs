//! Access-log shipping: a million lines in nginx's exact format across a
//! rename rotation (with agent restarts) and across a copytruncate, each
//! shipped exactly once; and real requests to a real nginx shipped as
//! parsed entries with the right traffic metrics.

use std::io::{BufWriter, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nxmesh_agent_lib::accesslog::{AccessLogConfig, AccessLogShipper, Checkpoint, ShipperStatus};
use nxmesh_agent_lib::{
    CancellationToken, ConfigApplier, NginxRuntime, Telemetry, TelemetrySource,
};
use nxmesh_core::config::ConfigApplyStatus;
use nxmesh_core::generator::ACCESS_LOG_JSON;
use nxmesh_core::model::AccessLogEntry;
use nxmesh_core::protocol::{LogEntry, MetricsBatch};

use crate::nginx_support::{Env, update};

const LINES: u64 = 1_000_000;
const HALF: u64 = LINES / 2;
/// Generous bound for every wait (the machine is shared and the test
/// binary unoptimized).
const PATIENCE: Duration = Duration::from_secs(600);

/// The generator's `log_format`, split at its variables.
struct Format {
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Var(String),
}

impl Format {
    fn nginx() -> Format {
        let mut parts = Vec::new();
        let mut rest = ACCESS_LOG_JSON;
        while let Some(i) = rest.find('$') {
            parts.push(Part::Text(rest[..i].to_owned()));
            let name_len = rest[i + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - i - 1);
            parts.push(Part::Var(rest[i + 1..i + 1 + name_len].to_owned()));
            rest = &rest[i + 1 + name_len..];
        }
        parts.push(Part::Text(rest.to_owned()));
        Format { parts }
    }

    /// The line nginx writes for request `seq` (values as nginx formats
    /// them; `-` or empty where nginx has no value).
    fn line(&self, seq: u64, out: &mut String) {
        use std::fmt::Write as _;
        out.clear();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => {
                    let _ = match v.as_str() {
                        "time_iso8601" => write!(
                            out,
                            "2026-11-27T21:{:02}:{:02}+00:00",
                            (seq / 60) % 60,
                            seq % 60
                        ),
                        "remote_addr" => write!(out, "127.0.0.{}", seq % 250 + 1),
                        "request_method" => write!(out, "GET"),
                        "request_uri" => write!(out, "/seq/{seq}"),
                        "server_protocol" => write!(out, "HTTP/1.1"),
                        "host" => write!(out, "app.test"),
                        "status" => {
                            write!(out, "{}", [200, 200, 304, 404, 502][(seq % 5) as usize])
                        }
                        "body_bytes_sent" => write!(out, "{}", seq % 1000),
                        "request_length" => write!(out, "{}", 80 + seq % 500),
                        "request_time" => write!(out, "0.{:03}", seq % 1000),
                        "http_user_agent" => write!(out, "bench \\\"q\\\""),
                        "request_id" => write!(out, "{seq:032x}"),
                        _ => Ok(()),
                    };
                }
            }
        }
        out.push('\n');
    }
}

fn config(dir: &Path) -> AccessLogConfig {
    let mut c = AccessLogConfig::new(dir.join("access.log"), dir.join("checkpoint.json"));
    c.poll_interval = Duration::from_millis(20);
    c.rotate_wait = Duration::from_millis(300);
    c.flush_interval = Duration::from_millis(50);
    c.metrics_interval = Duration::from_secs(3600);
    c
}

/// Every sequence number seen, exactly once.
struct Seen {
    once: Vec<bool>,
    count: u64,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            once: vec![false; usize::try_from(LINES).unwrap()],
            count: 0,
        }
    }

    fn record(&mut self, e: &LogEntry) {
        assert!(
            !e.fields.contains_key("parse_error"),
            "unparsed line: {}",
            e.message
        );
        let uri = &e.fields["uri"];
        let seq: usize = uri.strip_prefix("/seq/").unwrap().parse().unwrap();
        assert!(!self.once[seq], "line {seq} shipped twice");
        assert_eq!(e.fields["request_id"], format!("{seq:032x}"));
        assert_eq!(e.fields["user_agent"], "bench \"q\"");
        self.once[seq] = true;
        self.count += 1;
    }
}

/// Takes batches until `until` lines were seen in all.
async fn ship(shipper: &AccessLogShipper, seen: &mut Seen, until: u64, progress: &AtomicU64) {
    let deadline = Instant::now() + PATIENCE;
    while seen.count < until {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, shipper.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {until} lines shipped in time", seen.count));
        match next {
            Some(Telemetry::Logs(b)) => {
                for e in &b.entries {
                    seen.record(e);
                }
            }
            Some(_) => {}
            None => panic!("the shipper ended"),
        }
        progress.store(seen.count, Ordering::Release);
    }
}

fn wait_for(progress: &AtomicU64, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    while progress.load(Ordering::Acquire) < n {
        assert!(Instant::now() < deadline, "the consumer did not reach {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Writes lines `from..to` through a small buffer, so that the file often
/// ends in the middle of a line.
fn write_lines(f: &mut BufWriter<std::fs::File>, format: &Format, from: u64, to: u64) {
    let mut line = String::new();
    for seq in from..to {
        format.line(seq, &mut line);
        f.write_all(line.as_bytes()).unwrap();
    }
    f.flush().unwrap();
}

/// Stops a shipper as an agent shutdown does and starts the next one on
/// the same checkpoint.
async fn restart(
    shipper: AccessLogShipper,
    shutdown: CancellationToken,
    dir: &Path,
) -> (AccessLogShipper, CancellationToken) {
    shutdown.cancel();
    // What the stopping agent still had buffered is not shipped.
    while let Some(t) = shipper.next().await {
        if let Telemetry::Logs(b) = t {
            panic!("a stopped shipper handed out {} entries", b.entries.len());
        }
    }
    drop(shipper);
    let shutdown = CancellationToken::new();
    (
        AccessLogShipper::start(config(dir), shutdown.clone()),
        shutdown,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_lines_rotated_by_rename_ship_exactly_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let progress = Arc::new(AtomicU64::new(0));
    let writer = {
        let (path, rotated, progress) = (path.clone(), rotated.clone(), progress.clone());
        std::thread::spawn(move || {
            let format = Format::nginx();
            let mut old = BufWriter::with_capacity(1000, append(&path));
            write_lines(&mut old, &format, 0, HALF);
            // logrotate renames the log; nginx keeps writing to the old
            // file until it reopens its logs on USR1.
            wait_for(&progress, HALF / 4);
            std::fs::rename(&path, &rotated).unwrap();
            write_lines(&mut old, &format, HALF, HALF + 1000);
            drop(old);
            let mut new = BufWriter::with_capacity(1000, append(&path));
            write_lines(&mut new, &format, HALF + 1000, LINES);
        })
    };
    let mut seen = Seen::new();
    let shutdown = CancellationToken::new();
    let shipper = AccessLogShipper::start(config(dir.path()), shutdown.clone());
    ship(&shipper, &mut seen, HALF / 4, &progress).await;
    // Restart in the old file, before the rotation.
    let (shipper, shutdown) = restart(shipper, shutdown, dir.path()).await;
    ship(&shipper, &mut seen, HALF + HALF / 2, &progress).await;
    writer.join().unwrap();
    // Restart after the rotation: the checkpoint may name the renamed
    // file, found again by its inode.
    let (shipper, shutdown) = restart(shipper, shutdown, dir.path()).await;
    ship(&shipper, &mut seen, LINES, &progress).await;
    assert_eq!(seen.count, LINES);
    assert!(seen.once.iter().all(|s| *s));
    let status = shipper.status();
    assert_eq!(status.counters.lines_shipped, LINES);
    assert_eq!(status.counters.traffic.requests, LINES);
    assert_eq!(status.counters.lost_bytes, 0);
    // The old file is closed once it has been quiet (bounded wait).
    let deadline = Instant::now() + PATIENCE;
    while shipper.status().files.len() != 1 {
        assert!(Instant::now() < deadline, "the rotated file stays open");
        // Idle polls close it; nothing more is shipped.
        if let Ok(Some(Telemetry::Logs(b))) =
            tokio::time::timeout(Duration::from_millis(200), shipper.next()).await
        {
            panic!("{} more entries after the last line", b.entries.len());
        }
    }
    shutdown.cancel();
    let saved = Checkpoint::read(&dir.path().join("checkpoint.json"))
        .unwrap()
        .unwrap();
    assert_eq!(saved.counters.lines_shipped, LINES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_lines_with_a_copytruncate_ship_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let progress = Arc::new(AtomicU64::new(0));
    let writer = {
        let (path, progress) = (path.clone(), progress.clone());
        std::thread::spawn(move || {
            let format = Format::nginx();
            let mut f = BufWriter::with_capacity(1000, append(&path));
            write_lines(&mut f, &format, 0, HALF);
            // copytruncate copies the log, then truncates it in place;
            // what nginx writes between the two is lost by design, so the
            // test truncates once everything was shipped. nginx's
            // O_APPEND writes then land at the new end.
            wait_for(&progress, HALF);
            std::fs::copy(&path, dir_of(&path).join("access.log.1")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            // More than was there before, at once: the file is longer than
            // the old position when the tailer looks again.
            write_lines(&mut f, &format, HALF, LINES);
        })
    };
    let mut seen = Seen::new();
    let shutdown = CancellationToken::new();
    let shipper = AccessLogShipper::start(config(dir.path()), shutdown.clone());
    ship(&shipper, &mut seen, LINES, &progress).await;
    writer.join().unwrap();
    assert!(seen.once.iter().all(|s| *s));
    let status = shipper.status();
    assert_eq!(status.counters.lines_shipped, LINES);
    assert_eq!(status.counters.losses, 1, "one truncation, noticed");
    assert_eq!(status.counters.lost_bytes, 0, "nothing unread was cut");
    shutdown.cancel();
}

fn dir_of(p: &Path) -> PathBuf {
    p.parent().unwrap().to_owned()
}

/// A backend on 127.0.0.1 for `n` requests: each is read with its whole
/// body (by `Content-Length`) and answered `200`. Returns the port and
/// the thread, which yields the body lengths received.
fn body_backend(n: usize) -> (u16, std::thread::JoinHandle<Vec<usize>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let mut lengths = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0_u8; 16 * 1024];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let k = s.read(&mut chunk).unwrap();
                assert!(k > 0, "the request head was cut");
                buf.extend_from_slice(&chunk[..k]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < head_end + length {
                let k = s.read(&mut chunk).unwrap();
                assert!(k > 0, "the request body was cut");
                buf.extend_from_slice(&chunk[..k]);
            }
            lengths.push(buf.len() - head_end);
            s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        }
        lengths
    });
    (port, thread)
}

/// One HTTP/1.0 request; the status, the body length of the answer and
/// the bytes of the request as sent.
fn request(port: u16, method: &str, host: &str, path: &str, body: &str) -> (u16, u64, u64) {
    let raw = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: it/1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let sent = raw.len() as u64;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    if text.is_empty() {
        // nginx's `return 444`: the connection is closed with no answer.
        return (0, 0, sent);
    }
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: {text:?}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, rest.len() as u64, sent)
}

fn value(m: &MetricsBatch, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    m.metrics
        .iter()
        .find(|x| {
            x.name == name
                && label.is_none_or(|(k, v)| x.labels.get(k).map(String::as_str) == Some(v))
        })
        .map(|x| x.value)
}

#[tokio::test]
async fn real_requests_are_shipped_as_entries_with_matching_metrics() {
    let Some(env) = Env::new() else { return };
    let rt = NginxRuntime::open(env.config.clone()).await.unwrap();
    rt.ensure_started().await.unwrap();
    // Requests with a body go to a backend, so that nginx reads the body
    // (a `return` discards it without counting it in `$request_length`).
    let (backend_port, backend) = body_backend(3);
    let mut u = update(1, env.port, "hello");
    for (path, ret) in [
        ("/gone", "404 gone"),
        ("/moved", "301 /ok/0"),
        ("/down", "503 down"),
    ] {
        let mut l = u.virtual_hosts[0].spec.locations[0].clone();
        l.path = path.to_owned();
        l.custom_directives
            .insert("return".to_owned(), ret.to_owned());
        u.virtual_hosts[0].spec.locations.push(l);
    }
    let mut l = u.virtual_hosts[0].spec.locations[0].clone();
    l.path = "/upload".to_owned();
    l.custom_directives.clear();
    l.proxy_pass = Some(format!("http://127.0.0.1:{backend_port}"));
    u.virtual_hosts[0].spec.locations.push(l);
    let out = rt.apply(u).await;
    assert_eq!(out.status, ConfigApplyStatus::Success, "{out:?}");

    let dir = tempfile::tempdir().unwrap();
    let mut c = AccessLogConfig::new(
        PathBuf::from(&rt.config().layout.access_log),
        dir.path().join("checkpoint.json"),
    );
    c.poll_interval = Duration::from_millis(20);
    c.flush_interval = Duration::from_millis(50);
    c.metrics_interval = Duration::from_millis(200);
    c.status_port = Some(env.config.status_port);
    let shutdown = CancellationToken::new();
    let shipper = AccessLogShipper::start(c, shutdown.clone());

    // (method, host, path, request body) and what the client saw.
    let mut sent: Vec<(&str, &str, String, String)> = Vec::new();
    for i in 0..5 {
        let path = format!("/ok/{i}?q=\"x\"");
        sent.push(("GET", "app.test", path, String::new()));
    }
    sent.push((
        "POST",
        "app.test",
        "/upload/form".to_owned(),
        "a=1&b=2".to_owned(),
    ));
    sent.push(("HEAD", "app.test", "/head".to_owned(), String::new()));
    for path in ["/gone", "/gone", "/moved", "/down"] {
        sent.push(("GET", "app.test", path.to_owned(), String::new()));
    }
    // No virtual host has this name: the catch-all server closes the
    // connection (`return 444`).
    sent.push(("GET", "nobody.test", "/missing".to_owned(), String::new()));
    // Bodies of known length, larger than nginx's header buffer (1 KiB)
    // and its in-memory body buffer (16 KiB).
    sent.push((
        "POST",
        "app.test",
        "/upload/big".to_owned(),
        "u".repeat(65_536),
    ));
    sent.push((
        "PUT",
        "app.test",
        "/upload/put".to_owned(),
        "p".repeat(1_000),
    ));
    let mut seen_by_client = Vec::new();
    for (method, host, path, body) in &sent {
        seen_by_client.push(request(env.port, method, host, path, body));
    }
    assert_eq!(
        backend.join().unwrap(),
        [7, 65_536, 1_000],
        "bodies proxied"
    );
    assert!(
        seen_by_client[..5].iter().all(|r| (r.0, r.1) == (200, 5)),
        "{seen_by_client:?}"
    );
    let statuses: Vec<u16> = seen_by_client.iter().map(|r| r.0).collect();
    assert_eq!(
        statuses,
        [
            200, 200, 200, 200, 200, 200, 200, 404, 404, 301, 503, 0, 200, 200
        ]
    );

    let mut entries = Vec::new();
    let mut last_metrics: Option<MetricsBatch> = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while entries.len() < sent.len()
        || last_metrics
            .as_ref()
            .and_then(|m| value(m, "nginx_http_requests_total", None))
            != Some(sent.len() as f64)
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, shipper.next()).await {
            Ok(Some(Telemetry::Logs(b))) => entries.extend(b.entries),
            Ok(Some(Telemetry::Metrics(m))) => last_metrics = Some(m),
            Ok(other) => panic!("{other:?}"),
            Err(_) => panic!(
                "shipped {} entries, metrics {last_metrics:?}",
                entries.len()
            ),
        }
    }
    assert_eq!(entries.len(), sent.len(), "{entries:#?}");
    let mut classes = [0u64; 6];
    let mut bytes = 0;
    let mut bytes_in = 0;
    // nginx logs a request when it finishes, and a proxied request may
    // finish after the next one began (on another worker): pair entries
    // and requests by what they are, not by their order.
    entries.sort_by_key(|e| e.message.clone());
    let mut expected: Vec<_> = sent.iter().zip(&seen_by_client).collect();
    expected.sort_by_key(|((method, _, path, _), _)| format!("{method} {path} HTTP/1.0"));
    for (entry, ((method, host, path, _), (status, len, request_len))) in
        entries.iter().zip(expected)
    {
        let r = AccessLogEntry::from_log_entry(uuid::Uuid::nil(), uuid::Uuid::nil(), entry)
            .unwrap_or_else(|| panic!("{entry:?}"));
        assert_eq!(r.method, *method);
        assert_eq!(r.uri, *path);
        assert_eq!(r.host, *host);
        assert_eq!(r.protocol, "HTTP/1.0");
        assert_eq!(r.remote_addr, "127.0.0.1");
        // A connection closed without an answer is logged as 444.
        assert_eq!(r.status, if *status == 0 { 444 } else { *status });
        assert_eq!(r.user_agent.as_deref(), Some("it/1"));
        assert!(r.request_id.as_ref().is_some_and(|id| id.len() == 32));
        assert!(r.response_time_ms >= 0.0);
        assert!((r.timestamp - chrono::Utc::now()).num_seconds().abs() < 600);
        if *method == "HEAD" {
            assert_eq!(r.body_bytes_sent, 0);
        } else {
            assert_eq!(r.body_bytes_sent, *len, "{entry:?}");
        }
        assert_eq!(entry.level, "access");
        assert_eq!(entry.message, format!("{method} {path} HTTP/1.0"));
        // `$request_length`: every byte the client sent, request line,
        // headers and body.
        let logged: u64 = entry.fields["request_length"].parse().unwrap();
        assert_eq!(logged, *request_len, "{entry:?}");
        classes[usize::from(r.status / 100)] += 1;
        bytes += r.body_bytes_sent;
        bytes_in += logged;
    }
    assert!(bytes_in > 66_536, "the bodies are counted: {bytes_in}");
    let m = last_metrics.unwrap();
    let n = sent.len() as f64;
    assert_eq!(value(&m, "nginx_http_requests_total", None), Some(n));
    for (class, label) in [(2, "2xx"), (3, "3xx"), (4, "4xx"), (5, "5xx")] {
        assert_eq!(
            value(&m, "nginx_http_responses_total", Some(("status", label))),
            Some(classes[class] as f64),
            "{label}"
        );
    }
    assert_eq!(
        value(&m, "nginx_http_response_bytes_total", None),
        Some(bytes as f64)
    );
    assert_eq!(
        value(&m, "nginx_http_request_duration_seconds_count", None),
        Some(n)
    );
    assert_eq!(
        value(
            &m,
            "nginx_http_request_duration_seconds_bucket",
            Some(("le", "+Inf"))
        ),
        Some(n)
    );
    assert_eq!(
        value(&m, "nginx_http_request_bytes_total", None),
        Some(bytes_in as f64)
    );
    assert!(value(&m, "nginx_connections_active", None).is_some_and(|a| a >= 1.0));
    shutdown.cancel();
}

/// Waits (bounded) until `f` holds for the shipper's status.
async fn until(shipper: &AccessLogShipper, what: &str, f: impl Fn(&ShipperStatus) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = shipper.status();
        if f(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_master_is_away_memory_stays_bounded_and_losses_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let format = Format::nginx();
    let mut line = String::new();
    let mut lost = 0;
    let mut f = BufWriter::new(append(&path));
    for seq in 0..1000 {
        format.line(seq, &mut line);
        if seq >= 100 {
            lost += line.len() as u64;
        }
        f.write_all(line.as_bytes()).unwrap();
    }
    drop(f);
    let mut c = config(dir.path());
    c.buffer_max_lines = 100;
    c.max_rotated_files = 1;
    let shutdown = CancellationToken::new();
    // Nobody calls `next`: the master is away.
    let shipper = AccessLogShipper::start(c, shutdown.clone());
    until(&shipper, "the buffer fills", |s| s.buffered_lines == 100).await;

    // Two rotations while the master is away: the first file's unread
    // backlog is beyond the one rotated file kept, and is counted.
    std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
    write_lines(&mut BufWriter::new(append(&path)), &format, 1000, 2000);
    until(&shipper, "the rotation is noticed", |s| s.files.len() == 2).await;
    std::fs::rename(&path, dir.path().join("access.log.2")).unwrap();
    write_lines(&mut BufWriter::new(append(&path)), &format, 2000, 3000);
    until(&shipper, "the oldest file is given up", |s| {
        s.counters.losses == 1
    })
    .await;
    let status = shipper.status();
    assert_eq!(status.buffered_lines, 100, "the buffer stays bounded");
    assert_eq!(status.counters.lost_bytes, lost);

    // The master is back: what was kept ships, exactly once.
    let mut seen = Seen::new();
    let progress = AtomicU64::new(0);
    ship(&shipper, &mut seen, 2100, &progress).await;
    assert!(seen.once[..100].iter().all(|s| *s));
    assert!(seen.once[100..1000].iter().all(|s| !*s));
    assert!(seen.once[1000..3000].iter().all(|s| *s));
    assert_eq!(shipper.status().counters.lines_shipped, 2100);
    shutdown.cancel();
}
