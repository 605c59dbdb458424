//! Traffic metrics derived from access-log lines: cumulative counters the
//! master aggregates (requests, responses by status class, bytes in and
//! out, a response-time histogram) and a requests-per-second gauge.
//!
//! The names are the ones the master's metrics summary reads
//! (`nginx_http_requests_total`, `nginx_http_responses_total{status="2xx"}`,
//! `nginx_http_request_bytes_total`, `nginx_http_response_bytes_total`,
//! `nginx_connections_active`). Counters are persisted with the log
//! checkpoint, so they keep rising across agent restarts and count each
//! shipped line exactly once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nxmesh_core::protocol::{Metric, MetricType};
use serde::{Deserialize, Serialize};

use super::parse::Sample;

/// Upper bounds of the response-time histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status classes, by the first digit (`0` holds what is not 1xx to 5xx).
const CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Cumulative traffic counters. Persisted in the checkpoint: a
/// compatibility promise across agent upgrades.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Traffic {
    /// Requests (access-log lines that parsed).
    pub requests: u64,
    /// Responses by class: `other`, `1xx` … `5xx`.
    pub by_class: [u64; 6],
    /// Response body bytes (`$body_bytes_sent`).
    pub bytes_out: u64,
    /// Request bytes (`$request_length`) of the lines that log it.
    pub bytes_in: u64,
    /// Whether any line logged `$request_length`; without it, bytes in are
    /// not reported at all rather than reported as zero.
    pub bytes_in_known: bool,
    /// Requests with a `$request_time`.
    pub timed: u64,
    /// Sum of `$request_time`, seconds.
    pub duration_sum: f64,
    /// Requests at or below each of [`DURATION_BUCKETS`].
    pub duration_buckets: [u64; 11],
}

impl Traffic {
    /// Counts one request.
    pub fn record(&mut self, s: &Sample) {
        self.requests += 1;
        let class = match s.status / 100 {
            c @ 1..=5 => usize::from(c),
            _ => 0,
        };
        self.by_class[class] += 1;
        self.bytes_out += s.body_bytes_sent;
        if let Some(n) = s.request_length {
            self.bytes_in += n;
            self.bytes_in_known = true;
        }
        if let Some(t) = s.request_time {
            self.timed += 1;
            self.duration_sum += t;
            for (b, le) in self.duration_buckets.iter_mut().zip(DURATION_BUCKETS) {
                if t <= le {
                    *b += 1;
                }
            }
        }
    }

    /// The samples of these counters at `at`, plus the requests-per-second
    /// gauge when given.
    pub fn to_metrics(&self, at: DateTime<Utc>, requests_per_second: Option<f64>) -> Vec<Metric> {
        #[allow(clippy::cast_precision_loss)] // counters stay far below 2^53
        let f = |n: u64| n as f64;
        let metric = |name: &str, value: f64, kind: MetricType, labels: &[(&str, String)]| Metric {
            name: name.to_owned(),
            value,
            timestamp: at,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            kind,
        };
        let mut out = vec![metric(
            "nginx_http_requests_total",
            f(self.requests),
            MetricType::Counter,
            &[],
        )];
        for (class, n) in CLASSES.iter().zip(self.by_class) {
            if n > 0 || *class != "other" {
                out.push(metric(
                    "nginx_http_responses_total",
                    f(n),
                    MetricType::Counter,
                    &[("status", (*class).to_owned())],
                ));
            }
        }
        out.push(metric(
            "nginx_http_response_bytes_total",
            f(self.bytes_out),
            MetricType::Counter,
            &[],
        ));
        if self.bytes_in_known {
            out.push(metric(
                "nginx_http_request_bytes_total",
                f(self.bytes_in),
                MetricType::Counter,
                &[],
            ));
        }
        for (le, n) in DURATION_BUCKETS.iter().zip(self.duration_buckets) {
            out.push(metric(
                "nginx_http_request_duration_seconds_bucket",
                f(n),
                MetricType::Histogram,
                &[("le", le.to_string())],
            ));
        }
        out.push(metric(
            "nginx_http_request_duration_seconds_bucket",
            f(self.timed),
            MetricType::Histogram,
            &[("le", "+Inf".to_owned())],
        ));
        out.push(metric(
            "nginx_http_request_duration_seconds_sum",
            self.duration_sum,
            MetricType::Counter,
            &[],
        ));
        out.push(metric(
            "nginx_http_request_duration_seconds_count",
            f(self.timed),
            MetricType::Counter,
            &[],
        ));
        if let Some(rps) = requests_per_second {
            out.push(metric(
                "nginx_http_requests_per_second",
                rps,
                MetricType::Gauge,
                &[],
            ));
        }
        out
    }
}

/// Requests per second between two readings of the request counter; `None`
/// when no time passed or the counter went back.
pub fn rate(before: u64, after: u64, seconds: f64) -> Option<f64> {
    if seconds <= 0.0 || after < before {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = (after - before) as f64;
    Some(n / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: u16, bytes: u64, time: f64) -> Sample {
        Sample {
            status,
            body_bytes_sent: bytes,
            request_length: None,
            request_time: Some(time),
        }
    }

    #[test]
    fn counts_classes_bytes_and_durations() {
        let mut t = Traffic::default();
        t.record(&sample(200, 10, 0.001));
        t.record(&sample(404, 5, 0.2));
        t.record(&sample(503, 0, 3.0));
        t.record(&sample(0, 0, 0.0));
        assert_eq!(t.requests, 4);
        assert_eq!(t.by_class, [1, 0, 1, 0, 1, 1]);
        assert_eq!(t.bytes_out, 15);
        assert!(!t.bytes_in_known);
        assert_eq!(t.duration_buckets[0], 2); // <= 5 ms
        assert_eq!(t.duration_buckets[5], 3); // <= 250 ms
        assert_eq!(t.duration_buckets[10], 4); // <= 10 s
        let m = t.to_metrics(Utc::now(), rate(0, 4, 2.0));
        let get = |name: &str, label: Option<(&str, &str)>| {
            m.iter()
                .find(|x| {
                    x.name == name
                        && label.is_none_or(|(k, v)| x.labels.get(k).map(String::as_str) == Some(v))
                })
                .map(|x| x.value)
        };
        assert_eq!(get("nginx_http_requests_total", None), Some(4.0));
        assert_eq!(
            get("nginx_http_responses_total", Some(("status", "5xx"))),
            Some(1.0)
        );
        assert_eq!(
            get("nginx_http_responses_total", Some(("status", "3xx"))),
            Some(0.0)
        );
        assert_eq!(get("nginx_http_request_bytes_total", None), None);
        assert_eq!(get("nginx_http_requests_per_second", None), Some(2.0));
        assert_eq!(
            get(
                "nginx_http_request_duration_seconds_bucket",
                Some(("le", "+Inf"))
            ),
            Some(4.0)
        );
        t.record(&Sample {
            request_length: Some(300),
            ..sample(201, 1, 0.0)
        });
        assert!(t.bytes_in_known);
        assert_eq!(t.bytes_in, 300);
        assert_eq!(rate(5, 4, 1.0), None);
        assert_eq!(rate(1, 2, 0.0), None);
    }
}
