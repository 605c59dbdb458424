//! Metrics summaries and access-log entries as the REST API serves them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Timestamp;
use crate::error::{FieldErrorCode, ValidationErrors};
use crate::validate::Validate;

/// The `from`/`to` window of the metrics endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct MetricsQuery {
    /// Start of the window, inclusive.
    #[cfg_attr(feature = "openapi", param(value_type = String, format = DateTime))]
    pub from: Timestamp,
    /// End of the window, exclusive.
    #[cfg_attr(feature = "openapi", param(value_type = String, format = DateTime))]
    pub to: Timestamp,
}

impl Validate for MetricsQuery {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.to <= self.from {
            errors.push("to", FieldErrorCode::OutOfRange, "to must be after from");
        }
        errors.into_result()
    }
}

/// Bytes received and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bandwidth {
    /// Bytes received from clients.
    pub in_bytes: u64,
    /// Bytes sent to clients.
    pub out_bytes: u64,
}

/// Responses by status class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusCodeCounts {
    /// 200-299.
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    /// 300-399.
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    /// 400-499.
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    /// 500-599.
    #[serde(rename = "5xx")]
    pub s5xx: u64,
}

impl StatusCodeCounts {
    /// Counts one response with `status`; codes outside 200-599 are ignored.
    pub fn record(&mut self, status: u16, n: u64) {
        match status {
            200..=299 => self.s2xx += n,
            300..=399 => self.s3xx += n,
            400..=499 => self.s4xx += n,
            500..=599 => self.s5xx += n,
            _ => {}
        }
    }
}

/// The answer of `GET /workspaces/{id}/metrics` and `GET /agents/{id}/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsSummary {
    /// Requests in the window.
    pub requests_total: u64,
    /// Mean requests per second over the window.
    pub requests_per_second: f64,
    /// Share of responses with status 5xx, 0 to 1.
    pub error_rate: f64,
    /// Open client connections at the end of the window.
    pub active_connections: u64,
    /// Bytes in and out.
    pub bandwidth: Bandwidth,
    /// Responses by status class.
    pub status_codes: StatusCodeCounts,
}

/// The query of `GET /workspaces/{id}/access-logs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct AccessLogQuery {
    /// Entries at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, format = DateTime))]
    pub from: Option<Timestamp>,
    /// Entries before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, format = DateTime))]
    pub to: Option<Timestamp>,
    /// Only entries with this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// At most this many entries (1 to 1000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The largest `limit` of an access-log query.
pub const MAX_ACCESS_LOG_LIMIT: u32 = 1000;

impl Validate for AccessLogQuery {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let (Some(from), Some(to)) = (self.from, self.to)
            && to <= from
        {
            errors.push("to", FieldErrorCode::OutOfRange, "to must be after from");
        }
        if let Some(code) = self.status_code
            && !(100..=599).contains(&code)
        {
            errors.push(
                "status_code",
                FieldErrorCode::OutOfRange,
                "status_code must be 100 to 599",
            );
        }
        if let Some(limit) = self.limit
            && (limit == 0 || limit > MAX_ACCESS_LOG_LIMIT)
        {
            errors.push(
                "limit",
                FieldErrorCode::OutOfRange,
                format!("limit must be 1 to {MAX_ACCESS_LOG_LIMIT}"),
            );
        }
        errors.into_result()
    }
}

/// One request nginx served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessLogEntry {
    /// Its id.
    pub id: Uuid,
    /// The agent whose nginx served it.
    pub agent_id: Uuid,
    /// When the request completed.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub timestamp: Timestamp,
    /// Client address.
    pub remote_addr: String,
    /// HTTP method.
    pub method: String,
    /// Request URI.
    pub uri: String,
    /// HTTP version, for example `HTTP/1.1`.
    pub protocol: String,
    /// `Host` of the request.
    pub host: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes.
    pub body_bytes_sent: u64,
    /// Request time in milliseconds.
    pub response_time_ms: f64,
    /// `User-Agent`, when sent.
    pub user_agent: Option<String>,
    /// `Referer`, when sent.
    pub referer: Option<String>,
    /// The request id nginx assigned.
    pub request_id: Option<String>,
}

impl AccessLogEntry {
    /// Reads an access-log line as the agent ships it (the fields of the
    /// generator's JSON log format; `-` and empty values are absent), as
    /// entry `id` of `agent_id`. `None` when it lacks the address, method,
    /// URI or a numeric status.
    pub fn from_log_entry(
        id: Uuid,
        agent_id: Uuid,
        entry: &crate::protocol::LogEntry,
    ) -> Option<AccessLogEntry> {
        let f = |k: &str| {
            entry
                .fields
                .get(k)
                .filter(|v| !v.is_empty() && *v != "-")
                .cloned()
        };
        Some(AccessLogEntry {
            id,
            agent_id,
            timestamp: entry.timestamp,
            remote_addr: f("remote_addr")?,
            method: f("method")?,
            uri: f("uri")?,
            protocol: f("protocol").unwrap_or_default(),
            host: f("host").unwrap_or_default(),
            status: f("status")?.parse().ok()?,
            body_bytes_sent: f("body_bytes_sent")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            response_time_ms: f("request_time")
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0.0, |s| s * 1000.0),
            user_agent: f("user_agent"),
            referer: f("referer"),
            request_id: f("request_id"),
        })
    }
}

/// The `meta` block of an access-log page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessLogMeta {
    /// Entries matching the query.
    pub total: u64,
    /// The limit applied.
    pub limit: u32,
}

/// The answer of `GET /workspaces/{id}/access-logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessLogPage {
    /// The newest matching entries, newest first.
    pub data: Vec<AccessLogEntry>,
    /// Totals.
    pub meta: AccessLogMeta,
}
