//! Open-loop load generator for the REST API: single-object reads and
//! writes at a fixed request rate against a running master, reporting
//! latency percentiles. Latency is measured from each request's scheduled
//! start, so a stalled server cannot hide its queueing (no coordinated
//! omission).
//!
//! `scripts/bench-rest.sh` starts a release master on a fresh SQLite
//! database and runs this against it; see BENCHMARKS.md.
//!
//! ```text
//! rest_load --addr 127.0.0.1:8080 --email admin@example.com --password … \
//!           --rate 500 --seconds 30 --write-percent 50
//! ```

// A benchmark reports on stdout.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
struct Args {
    /// The master's REST address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Administrator email.
    #[arg(long)]
    email: String,
    /// Administrator password.
    #[arg(long)]
    password: String,
    /// Requests per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Duration of the measured run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Share of writes (PATCH of one upstream), percent; the rest are GETs.
    #[arg(long, default_value_t = 50)]
    write_percent: u32,
    /// Upstreams created beforehand and spread over.
    #[arg(long, default_value_t = 200)]
    objects: usize,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn call(
    client: &HttpClient,
    addr: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let res = client
        .request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let addr = args.addr.clone();

    let (s, login) = call(
        &client,
        &addr,
        Method::POST,
        "/v1/auth/login",
        None,
        Some(json!({"email": args.email, "password": args.password})),
    )
    .await?;
    if s != 200 {
        bail!("login failed: {s} {login}");
    }
    let token = login["access_token"]
        .as_str()
        .context("no access token")?
        .to_owned();
    let slug = format!("load-{}", std::process::id());
    let (_, org) = call(
        &client,
        &addr,
        Method::POST,
        "/v1/organizations",
        Some(&token),
        Some(json!({"name": slug, "slug": slug})),
    )
    .await?;
    let org_id = org["id"].as_str().context("no organization")?.to_owned();
    let (_, ws) = call(
        &client,
        &addr,
        Method::POST,
        &format!("/v1/organizations/{org_id}/workspaces"),
        Some(&token),
        Some(json!({"name": "load", "slug": "load"})),
    )
    .await?;
    let ws_id = ws["id"].as_str().context("no workspace")?.to_owned();
    let mut ids = Vec::with_capacity(args.objects);
    for i in 0..args.objects {
        let body = json!({"name": format!("up-{i}"), "servers": [{"address": format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)}]});
        let (s, up) = call(
            &client,
            &addr,
            Method::POST,
            &format!("/v1/workspaces/{ws_id}/upstreams"),
            Some(&token),
            Some(body),
        )
        .await?;
        if s != 201 {
            bail!("setup failed: {s} {up}");
        }
        ids.push(up["id"].as_str().context("no id")?.to_owned());
    }

    let total = u64::from(args.rate) * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let reads = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let writes = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let scheduled = start + interval * n as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let write = (n % 100) < u64::from(args.write_percent);
        let id = ids[(n as usize * 7919) % ids.len()].clone();
        let (client, addr, token) = (client.clone(), addr.clone(), token.clone());
        let (reads, writes, errors) = (reads.clone(), writes.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let path = format!("/v1/upstreams/{id}");
            let r = if write {
                let body = json!({"keepalive_connections": n % 64});
                call(
                    &client,
                    &addr,
                    Method::PATCH,
                    &path,
                    Some(&token),
                    Some(body),
                )
                .await
            } else {
                call(&client, &addr, Method::GET, &path, Some(&token), None).await
            };
            let took = scheduled.elapsed();
            match r {
                Ok((200, _)) => {
                    if write {
                        writes.lock().await.push(took)
                    } else {
                        reads.lock().await.push(took)
                    }
                }
                _ => *errors.lock().await += 1,
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let wall = start.elapsed();
    let mut reads = reads.lock().await.clone();
    let mut writes = writes.lock().await.clone();
    let mut all: Vec<Duration> = reads.iter().chain(writes.iter()).copied().collect();
    reads.sort();
    writes.sort();
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "requests: {} in {:.1}s ({:.0}/s achieved), errors: {}",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64(),
        errors.lock().await
    );
    for (name, v) in [("reads", &reads), ("writes", &writes), ("all", &all)] {
        println!(
            "{name:>6}: n={:<6} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
            v.len(),
            ms(percentile(v, 0.50)),
            ms(percentile(v, 0.90)),
            ms(percentile(v, 0.99)),
            ms(v.last().copied().unwrap_or_default())
        );
    }
    let _ = call(
        &client,
        &addr,
        Method::DELETE,
        &format!("/v1/organizations/{org_id}"),
        Some(&token),
        None,
    )
    .await;
    Ok(())
}
