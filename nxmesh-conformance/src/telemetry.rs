//! Metrics samples and access logs.

use nxmesh_core::model::{AccessLogEntry, AccessLogQuery, MetricsQuery, Timestamp};
use nxmesh_core::protocol::{Metric, MetricType, MetricsBatch};
use nxmesh_core::storage::Storage;
use uuid::Uuid;

use crate::support::metric_names::*;
use crate::support::*;

fn sample(name: &str, kind: MetricType, value: f64, ts: Timestamp, l: &[(&str, &str)]) -> Metric {
    Metric {
        name: name.to_owned(),
        value,
        timestamp: ts,
        labels: labels(l),
        kind,
    }
}

fn counter(name: &str, value: f64, ts: Timestamp) -> Metric {
    sample(name, MetricType::Counter, value, ts, &[])
}

fn responses(class: &str, value: f64, ts: Timestamp) -> Metric {
    sample(
        RESPONSES,
        MetricType::Counter,
        value,
        ts,
        &[("status", class)],
    )
}

fn gauge(name: &str, value: f64, ts: Timestamp) -> Metric {
    sample(name, MetricType::Gauge, value, ts, &[])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// `insert_metrics` and `metrics_summary`: counters are cumulative, and the
/// window's value is their increase over `[from, to)` (a drop is a restart
/// and counts from zero); responses by status class; the active
/// connections gauge is the latest sample of each agent, summed; requests
/// per second and error rate follow; `agent_id` narrows to one agent.
pub async fn metrics(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let (_, other_w) = org_and_workspace(store).await;
    let a = ok(
        store.create_agent(&new_agent(w.id, "a", &[])).await,
        "create_agent",
    );
    let b = ok(
        store.create_agent(&new_agent(w.id, "b", &[])).await,
        "create_agent",
    );
    let x = ok(
        store.create_agent(&new_agent(other_w.id, "x", &[])).await,
        "create_agent",
    );
    let t = now();
    let from = at(t, -600);
    let to = t;
    let batch = |metrics: Vec<Metric>| MetricsBatch {
        timestamp: t,
        metrics,
    };

    // Agent a: requests 1000 -> 1600 in the window, after a sample before it.
    ok(
        store
            .insert_metrics(
                a.id,
                &batch(vec![
                    counter(REQUESTS, 500.0, at(t, -900)),  // before the window
                    counter(REQUESTS, 1000.0, at(t, -600)), // at `from`: inside
                    counter(REQUESTS, 1300.0, at(t, -300)),
                    counter(REQUESTS, 1600.0, at(t, -60)),
                    counter(REQUESTS, 9000.0, t), // at `to`: outside
                    responses("2xx", 900.0, at(t, -600)),
                    responses("2xx", 1400.0, at(t, -60)),
                    responses("4xx", 50.0, at(t, -600)),
                    responses("4xx", 70.0, at(t, -60)),
                    responses("5xx", 10.0, at(t, -600)),
                    responses("5xx", 40.0, at(t, -60)),
                    counter(BYTES_IN, 10_000.0, at(t, -600)),
                    counter(BYTES_IN, 15_000.0, at(t, -60)),
                    counter(BYTES_OUT, 100_000.0, at(t, -600)),
                    counter(BYTES_OUT, 300_000.0, at(t, -60)),
                    gauge(ACTIVE, 12.0, at(t, -300)),
                    gauge(ACTIVE, 42.0, at(t, -60)),
                    gauge(ACTIVE, 99.0, at(t, -30 * 60)), // before the window
                ]),
            )
            .await,
        "insert_metrics",
    );
    // Agent b: nginx restarted mid-window (the counter dropped): 200 -> 250,
    // then from 0 to 30 = 80 requests.
    ok(
        store
            .insert_metrics(
                b.id,
                &batch(vec![
                    counter(REQUESTS, 200.0, at(t, -500)),
                    counter(REQUESTS, 250.0, at(t, -400)),
                    counter(REQUESTS, 30.0, at(t, -100)),
                    responses("3xx", 5.0, at(t, -500)),
                    responses("3xx", 25.0, at(t, -100)),
                    gauge(ACTIVE, 8.0, at(t, -100)),
                ]),
            )
            .await,
        "insert_metrics",
    );
    // Another workspace's agent: never counted here.
    ok(
        store
            .insert_metrics(
                x.id,
                &batch(vec![
                    counter(REQUESTS, 0.0, at(t, -500)),
                    counter(REQUESTS, 1_000_000.0, at(t, -100)),
                    gauge(ACTIVE, 1000.0, at(t, -100)),
                ]),
            )
            .await,
        "insert_metrics",
    );
    ok(
        store.insert_metrics(a.id, &batch(vec![])).await,
        "insert_metrics with an empty batch",
    );

    let q = MetricsQuery { from, to };
    let s = ok(
        store.metrics_summary(w.id, None, &q).await,
        "metrics_summary",
    );
    assert_eq!(
        s.requests_total,
        600 + 80,
        "counter increase within the window"
    );
    assert!(
        close(s.requests_per_second, 680.0 / 600.0),
        "requests_per_second = requests / window seconds, got {}",
        s.requests_per_second
    );
    assert_eq!(s.status_codes.s2xx, 500);
    assert_eq!(s.status_codes.s3xx, 20);
    assert_eq!(s.status_codes.s4xx, 20);
    assert_eq!(s.status_codes.s5xx, 30);
    assert!(
        close(s.error_rate, 30.0 / 570.0),
        "error_rate = 5xx / responses, got {}",
        s.error_rate
    );
    assert_eq!(
        s.active_connections,
        42 + 8,
        "latest gauge of each agent, summed"
    );
    assert_eq!(s.bandwidth.in_bytes, 5_000);
    assert_eq!(s.bandwidth.out_bytes, 200_000);

    let sa = ok(
        store.metrics_summary(w.id, Some(a.id), &q).await,
        "metrics_summary",
    );
    assert_eq!(sa.requests_total, 600);
    assert_eq!(sa.active_connections, 42);
    assert_eq!(sa.status_codes.s3xx, 0);
    assert_eq!(sa.status_codes.s2xx, 500);
    let sb = ok(
        store.metrics_summary(w.id, Some(b.id), &q).await,
        "metrics_summary",
    );
    assert_eq!(sb.requests_total, 80, "a counter drop is a restart");
    assert_eq!(sb.active_connections, 8);
    assert_eq!(sb.status_codes.s3xx, 20);
    assert!(close(sb.error_rate, 0.0));

    let sx = ok(
        store.metrics_summary(other_w.id, None, &q).await,
        "metrics_summary",
    );
    assert_eq!(sx.requests_total, 1_000_000);
    assert_eq!(sx.active_connections, 1000);

    // An empty window.
    let empty = MetricsQuery {
        from: at(t, -7200),
        to: at(t, -3600),
    };
    let se = ok(
        store.metrics_summary(w.id, None, &empty).await,
        "metrics_summary",
    );
    assert_eq!(se.requests_total, 0);
    assert_eq!(se.active_connections, 0);
    assert!(close(se.requests_per_second, 0.0));
    assert!(close(se.error_rate, 0.0), "no responses, no error rate");

    // A narrower window sees only its part of the counter.
    let narrow = MetricsQuery {
        from: at(t, -300),
        to,
    };
    let sn = ok(
        store.metrics_summary(w.id, Some(a.id), &narrow).await,
        "metrics_summary",
    );
    assert_eq!(sn.requests_total, 300);
}

fn log(agent_id: Uuid, ts: Timestamp, status: u16, uri: &str) -> AccessLogEntry {
    AccessLogEntry {
        id: Uuid::new_v4(),
        agent_id,
        timestamp: ts,
        remote_addr: "203.0.113.9".to_owned(),
        method: "GET".to_owned(),
        uri: uri.to_owned(),
        protocol: "HTTP/1.1".to_owned(),
        host: "example.com".to_owned(),
        status,
        body_bytes_sent: 1234,
        response_time_ms: 12.5,
        user_agent: Some("curl/8".to_owned()),
        referer: None,
        request_id: Some(format!("req-{}", unique())),
    }
}

/// `insert_access_logs` and `query_access_logs`: a workspace's entries,
/// newest first, filtered by `[from, to)` and status, at most `limit`
/// (default 100) with the total of matches.
pub async fn access_logs(store: &dyn Storage) {
    let (_, w) = org_and_workspace(store).await;
    let (_, other_w) = org_and_workspace(store).await;
    let a = ok(
        store.create_agent(&new_agent(w.id, "a", &[])).await,
        "create_agent",
    );
    let b = ok(
        store.create_agent(&new_agent(w.id, "b", &[])).await,
        "create_agent",
    );
    let x = ok(
        store.create_agent(&new_agent(other_w.id, "x", &[])).await,
        "create_agent",
    );
    let t = now();
    let e1 = log(a.id, at(t, -50), 200, "/one");
    let e2 = log(b.id, at(t, -40), 404, "/two");
    let e3 = AccessLogEntry {
        user_agent: None,
        request_id: None,
        referer: Some("https://example.com/".to_owned()),
        ..log(a.id, at(t, -30), 200, "/three")
    };
    let e4 = log(b.id, at(t, -20), 500, "/four");
    let e5 = log(a.id, at(t, -10), 200, "/five");
    // Inserted out of order, in two batches.
    ok(
        store.insert_access_logs(&[e3.clone(), e1.clone()]).await,
        "insert_access_logs",
    );
    ok(
        store
            .insert_access_logs(&[
                e5.clone(),
                e2.clone(),
                e4.clone(),
                log(x.id, at(t, -15), 200, "/x"),
            ])
            .await,
        "insert_access_logs",
    );
    ok(
        store.insert_access_logs(&[]).await,
        "insert_access_logs with nothing",
    );

    let all = ok(
        store
            .query_access_logs(w.id, &AccessLogQuery::default())
            .await,
        "query_access_logs",
    );
    assert_eq!(
        all.data,
        vec![e5.clone(), e4.clone(), e3.clone(), e2.clone(), e1.clone()],
        "the workspace's entries, newest first, as inserted"
    );
    assert_eq!(all.meta.total, 5);
    assert_eq!(all.meta.limit, 100, "the default limit");

    let limited = ok(
        store
            .query_access_logs(
                w.id,
                &AccessLogQuery {
                    limit: Some(2),
                    ..AccessLogQuery::default()
                },
            )
            .await,
        "query_access_logs",
    );
    assert_eq!(limited.data, vec![e5.clone(), e4.clone()], "the newest two");
    assert_eq!(limited.meta.total, 5, "total counts every match");
    assert_eq!(limited.meta.limit, 2);

    let ok_only = ok(
        store
            .query_access_logs(
                w.id,
                &AccessLogQuery {
                    status_code: Some(200),
                    ..AccessLogQuery::default()
                },
            )
            .await,
        "query_access_logs",
    );
    assert_eq!(ok_only.data, vec![e5.clone(), e3.clone(), e1.clone()]);
    assert_eq!(ok_only.meta.total, 3);

    let window = ok(
        store
            .query_access_logs(
                w.id,
                &AccessLogQuery {
                    from: Some(at(t, -40)),
                    to: Some(at(t, -10)),
                    ..AccessLogQuery::default()
                },
            )
            .await,
        "query_access_logs",
    );
    assert_eq!(
        window.data,
        vec![e4.clone(), e3.clone(), e2.clone()],
        "from is inclusive, to exclusive"
    );
    assert_eq!(window.meta.total, 3);

    let combined = ok(
        store
            .query_access_logs(
                w.id,
                &AccessLogQuery {
                    from: Some(at(t, -45)),
                    to: None,
                    status_code: Some(200),
                    limit: Some(1),
                },
            )
            .await,
        "query_access_logs",
    );
    assert_eq!(combined.data, vec![e5]);
    assert_eq!(combined.meta.total, 2);
    assert_eq!(combined.meta.limit, 1);

    let other = ok(
        store
            .query_access_logs(other_w.id, &AccessLogQuery::default())
            .await,
        "query_access_logs",
    );
    assert_eq!(other.meta.total, 1);
    assert_eq!(other.data[0].uri, "/x");
    let nothing = ok(
        store
            .query_access_logs(
                w.id,
                &AccessLogQuery {
                    status_code: Some(418),
                    ..AccessLogQuery::default()
                },
            )
            .await,
        "query_access_logs",
    );
    assert!(nothing.data.is_empty());
    assert_eq!(nothing.meta.total, 0);
}
