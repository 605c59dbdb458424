//! Fixtures and assertion helpers shared by the suites.

use std::fmt::Debug;

use chrono::{Duration, SubsecRound, Utc};
use nxmesh_core::model::{
    CreateOrganization, CreateWorkspace, Labels, LoadBalanceAlgorithm, Location, Organization,
    Timestamp, UpstreamServer, UpstreamSpec, User, VirtualHostSpec, Workspace,
};
use nxmesh_core::pagination::PageParams;
use nxmesh_core::storage::{NewAgent, NewUser, Storage, StorageError, StorageResult};
use uuid::Uuid;

/// The metric names [`MetricsSummary`](nxmesh_core::model::MetricsSummary)
/// is computed from: what the agent reports, as Prometheus-style counters
/// (cumulative) and one gauge.
pub mod metric_names {
    /// Counter: requests served.
    pub const REQUESTS: &str = "nginx_http_requests_total";
    /// Gauge: open client connections.
    pub const ACTIVE: &str = "nginx_connections_active";
    /// Counter: bytes received from clients.
    pub const BYTES_IN: &str = "nginx_http_request_bytes_total";
    /// Counter: bytes sent to clients.
    pub const BYTES_OUT: &str = "nginx_http_response_bytes_total";
    /// Counter: responses, with a `status` label holding the class (`2xx`).
    pub const RESPONSES: &str = "nginx_http_responses_total";
}

/// The value of `r`, or a panic naming the call and the error chain.
#[track_caller]
pub(crate) fn ok<T>(r: StorageResult<T>, call: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{call} failed: {}", chain(&e)),
    }
}

/// The error and its sources, for panic messages.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = format!("{e:?}");
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// Asserts that `r` is `NotFound`.
#[track_caller]
pub(crate) fn not_found<T: Debug>(r: StorageResult<T>, call: &str) {
    match r {
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => panic!("{call}: expected NotFound, got {}", chain(&e)),
        Ok(v) => panic!("{call}: expected NotFound, got Ok({v:?})"),
    }
}

/// Asserts that `r` is `Conflict`.
#[track_caller]
pub(crate) fn conflict<T: Debug>(r: StorageResult<T>, call: &str) {
    match r {
        Err(StorageError::Conflict { .. }) => {}
        Err(e) => panic!("{call}: expected Conflict, got {}", chain(&e)),
        Ok(v) => panic!("{call}: expected Conflict, got Ok({v:?})"),
    }
}

/// Asserts that `r` is an error (any kind: the traits leave it open).
#[track_caller]
pub(crate) fn fails<T: Debug>(r: StorageResult<T>, call: &str) {
    if let Ok(v) = r {
        panic!("{call}: expected an error, got Ok({v:?})");
    }
}

/// A short unique suffix, so that suites sharing a store never collide.
pub(crate) fn unique() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Now, truncated to milliseconds: every backend keeps at least that, so
/// timestamps the suites pass in come back equal.
pub(crate) fn now() -> Timestamp {
    Utc::now().trunc_subsecs(3)
}

/// `now()` shifted by `secs` seconds.
pub(crate) fn at(base: Timestamp, secs: i64) -> Timestamp {
    base + Duration::seconds(secs)
}

/// Page `page` of `per_page` items.
pub(crate) fn page(page: u32, per_page: u32) -> PageParams {
    PageParams { page, per_page }
}

/// A new organization with a unique slug.
pub(crate) async fn org(store: &dyn Storage) -> Organization {
    let slug = format!("org-{}", unique());
    ok(
        store
            .create_organization(&CreateOrganization {
                name: format!("Org {slug}"),
                slug,
            })
            .await,
        "create_organization",
    )
}

/// A new workspace of `org` with a unique slug.
pub(crate) async fn workspace(store: &dyn Storage, org: Uuid) -> Workspace {
    let slug = format!("ws-{}", unique());
    ok(
        store
            .create_workspace(
                org,
                &CreateWorkspace {
                    name: format!("Workspace {slug}"),
                    slug,
                },
            )
            .await,
        "create_workspace",
    )
}

/// A fresh organization with one workspace.
pub(crate) async fn org_and_workspace(store: &dyn Storage) -> (Organization, Workspace) {
    let o = org(store).await;
    let w = workspace(store, o.id).await;
    (o, w)
}

/// Labels from pairs.
pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A new agent request with a unique token hash, expiring in an hour.
pub(crate) fn new_agent(workspace_id: Uuid, name: &str, l: &[(&str, &str)]) -> NewAgent {
    NewAgent {
        workspace_id,
        name: name.to_owned(),
        labels: labels(l),
        token_hash: format!("token-{}", unique()),
        token_expires_at: at(now(), 3600),
    }
}

/// A virtual host spec named `name`, with a plain proxy location.
pub(crate) fn vhost_spec(name: &str) -> VirtualHostSpec {
    VirtualHostSpec {
        name: name.to_owned(),
        server_name: format!("{name}.example.com"),
        listen_port: 80,
        ssl_enabled: false,
        ssl_certificate_id: None,
        http2_enabled: false,
        http3_enabled: false,
        locations: vec![Location {
            path: "/".to_owned(),
            modifier: None,
            upstream_id: None,
            proxy_pass: Some("http://127.0.0.1:8080".to_owned()),
            root: None,
            index: None,
            custom_headers: vec![],
            rewrite_rules: vec![],
            custom_directives: Default::default(),
        }],
        custom_directives: Default::default(),
    }
}

/// A virtual host spec whose only location proxies to `upstream`.
pub(crate) fn vhost_using_upstream(name: &str, upstream: Uuid) -> VirtualHostSpec {
    let mut spec = vhost_spec(name);
    spec.locations[0].proxy_pass = None;
    spec.locations[0].upstream_id = Some(upstream);
    spec
}

/// An upstream spec named `name` with two servers.
pub(crate) fn upstream_spec(name: &str) -> UpstreamSpec {
    let server = |address: &str| UpstreamServer {
        address: address.to_owned(),
        weight: 1,
        backup: false,
        down: false,
        max_fails: 1,
        fail_timeout: 10,
    };
    UpstreamSpec {
        name: name.to_owned(),
        algorithm: LoadBalanceAlgorithm::RoundRobin,
        servers: vec![server("10.0.0.1:8080"), server("10.0.0.2:8080")],
        health_check: None,
        keepalive_connections: 0,
    }
}

/// A new user with a unique email.
pub(crate) async fn user(store: &dyn Storage) -> User {
    let email = format!("user-{}@example.com", unique());
    ok(
        store
            .create_user(&NewUser {
                email,
                name: "A User".to_owned(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
                is_admin: false,
            })
            .await,
        "create_user",
    )
}
