//! The hostile-input property: every string field of the model holds
//! hostile text (quotes, `;`, braces, `#`, `$`, `\`, CR/LF, NUL, Unicode,
//! 5,000-byte strings). The generator either refuses with field errors, or
//! renders text whose parsed tree is exactly the planned tree and holds only
//! the directives the model asks for: zero injected directives.
//!
//! Cases: `PROPTEST_CASES` (default 10,000).

use std::collections::BTreeMap;

use nxmesh_core::config::{ConfigUpdate, GlobalSettings, UpstreamConfig, VirtualHostConfig};
use nxmesh_core::generator::{self, RenderOptions};
use nxmesh_core::model::{
    Header, HealthCheck, LoadBalanceAlgorithm, Location, LocationModifier, RewriteFlag,
    RewriteRule, UpstreamServer, UpstreamSpec, VirtualHostSpec,
};
use nxmesh_core::parser::{
    self, MemorySource, Node, ParseOptions, SourceArena, table::DirectiveTable,
};
use nxmesh_core::validate::CUSTOM_DIRECTIVE_ALLOWLIST;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use uuid::Uuid;

const FRAGMENTS: &[&str] = &[
    "\"",
    "'",
    ";",
    "{",
    "}",
    "#",
    "$",
    "\\",
    "\r",
    "\n",
    "\0",
    "\t",
    " ",
    "é",
    "漢",
    "🦀",
    "\u{202e}",
    "$host",
    "${host}",
    "$1",
    "$uri",
    "${",
    "a",
    "/",
    "..",
    "*.",
    ".",
    "~",
    "^",
    "(",
    ")",
    "[",
    "]",
    "include /etc/passwd;",
    "} server { listen 1; ",
    "\\\"",
    "\\n",
    "=",
    "http://",
    "unix:",
    ":80",
    "return 200 x;",
    "add_header X y;",
    "example.test",
    "on",
    "off",
    "10s",
    "$http_x",
    "'self'",
];

/// Syntax without control characters or stray `$`: what validation lets
/// through into header values and regular expressions, so quoting is what
/// keeps it in its argument.
const PRINTABLE: &[&str] = &[
    "\"",
    "'",
    ";",
    "{",
    "}",
    "#",
    "\\",
    " ",
    "é",
    "漢",
    "🦀",
    "$host",
    "${host}",
    "a",
    "/",
    "(",
    ")",
    "include /etc/passwd;",
    "} server { listen 1; ",
    "\\\"",
    "\\n",
    "=",
    "return 200 x;",
    "'self'",
    "x{2}",
];

/// A hostile string: syntax, control characters, Unicode, 5,000 bytes.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::collection::vec(proptest::sample::select(PRINTABLE), 1..12).prop_map(|v| v.concat()),
        6 => proptest::collection::vec(proptest::sample::select(FRAGMENTS), 1..12).prop_map(|v| v.concat()),
        1 => (proptest::sample::select(FRAGMENTS), 4090usize..5001).prop_map(|(f, n)| f.repeat(n / f.len().max(1))),
        1 => (0usize..4, 3990usize..4200).prop_map(|(k, n)| ["a", "\"", "\\", "é"][k].repeat(n)),
        2 => any::<String>(),
    ]
}

/// The string fields of the model that a case can make hostile.
const FIELDS: usize = 18;

fn set_field(m: &mut ConfigUpdate, field: usize, v: String, custom_name: &str) {
    let vh = &mut m.virtual_hosts[0].spec;
    let loc = &mut vh.locations[0];
    let up = &mut m.upstreams[0].spec;
    match field {
        0 => vh.name = v,
        1 => vh.server_name = v,
        2 => loc.path = v,
        3 => {
            loc.upstream_id = None;
            loc.proxy_pass = Some(v);
        }
        4 => {
            loc.upstream_id = None;
            loc.root = Some(v);
        }
        5 => loc.index = Some(v),
        6 => loc.custom_headers[0].name = v,
        7 => loc.custom_headers[0].value = v,
        8 => loc.rewrite_rules[0].pattern = v,
        9 => loc.rewrite_rules[0].replacement = v,
        10 => {
            vh.custom_directives.insert(custom_name.to_owned(), v);
        }
        11 => {
            loc.custom_directives.insert(custom_name.to_owned(), v);
        }
        12 => {
            m.global_settings
                .nginx_directives
                .insert(custom_name.to_owned(), v);
        }
        13 => {
            loc.custom_directives.insert(v, "on".to_owned());
        }
        14 => up.name = v,
        15 => up.servers[0].address = v,
        16 => {
            if let Some(hc) = &mut up.health_check {
                hc.path = v;
            }
        }
        _ => loc.custom_headers.push(Header {
            name: "X-B".to_owned(),
            value: v,
            always: true,
        }),
    }
}

const UP: Uuid = Uuid::from_u128(0x0b6d0a30_0000_4000_8000_0000000000a1);

fn benign() -> ConfigUpdate {
    ConfigUpdate {
        config_id: "hostile".to_owned(),
        version: 1,
        virtual_hosts: vec![VirtualHostConfig {
            id: Uuid::from_u128(1),
            spec: VirtualHostSpec {
                name: "Site".to_owned(),
                server_name: "example.test".to_owned(),
                listen_port: 28080,
                ssl_enabled: false,
                ssl_certificate_id: None,
                http2_enabled: false,
                http3_enabled: false,
                locations: vec![Location {
                    path: "/app/".to_owned(),
                    modifier: None,
                    upstream_id: Some(UP),
                    proxy_pass: None,
                    root: None,
                    index: None,
                    custom_headers: vec![Header {
                        name: "X-A".to_owned(),
                        value: "v".to_owned(),
                        always: false,
                    }],
                    rewrite_rules: vec![RewriteRule {
                        pattern: "^/a(.*)$".to_owned(),
                        replacement: "/b$1".to_owned(),
                        flag: Some(RewriteFlag::Last),
                    }],
                    custom_directives: BTreeMap::new(),
                }],
                custom_directives: BTreeMap::new(),
            },
        }],
        upstreams: vec![UpstreamConfig {
            id: UP,
            spec: UpstreamSpec {
                name: "app".to_owned(),
                algorithm: LoadBalanceAlgorithm::RoundRobin,
                servers: vec![UpstreamServer {
                    address: "127.0.0.1:9001".to_owned(),
                    weight: 2,
                    backup: false,
                    down: false,
                    max_fails: 3,
                    fail_timeout: 5,
                }],
                health_check: Some(HealthCheck {
                    enabled: true,
                    path: "/healthz".to_owned(),
                    interval: 10,
                    timeout: 2,
                    healthy_threshold: None,
                    unhealthy_threshold: None,
                }),
                keepalive_connections: 4,
            },
        }],
        certificates: BTreeMap::new(),
        global_settings: GlobalSettings::default(),
    }
}

/// A benign model with one to four hostile fields, a random location
/// modifier and balancing algorithm, and a random allowlisted custom
/// directive name.
fn model() -> impl Strategy<Value = ConfigUpdate> {
    (
        proptest::collection::vec((0..FIELDS, hostile()), 1..4),
        proptest::option::of(proptest::sample::select(vec![
            LocationModifier::Exact,
            LocationModifier::PreferentialPrefix,
            LocationModifier::Regex,
            LocationModifier::RegexCaseInsensitive,
        ])),
        0usize..4,
        proptest::sample::select(CUSTOM_DIRECTIVE_ALLOWLIST),
    )
        .prop_map(|(fields, modifier, algo, (custom_name, _))| {
            let mut m = benign();
            m.virtual_hosts[0].spec.locations[0].modifier = modifier;
            m.upstreams[0].spec.algorithm = [
                LoadBalanceAlgorithm::RoundRobin,
                LoadBalanceAlgorithm::LeastConnections,
                LoadBalanceAlgorithm::IpHash,
                LoadBalanceAlgorithm::WeightedRoundRobin,
            ][algo];
            for (f, v) in fields {
                set_field(&mut m, f, v, custom_name);
            }
            m
        })
}

/// Directive names the generator itself writes.
const GENERATED: &[&str] = &[
    "access_log",
    "allow",
    "client_body_temp_path",
    "default_type",
    "deny",
    "error_log",
    "events",
    "fastcgi_temp_path",
    "http",
    "include",
    "index",
    "keepalive",
    "keepalive_timeout",
    "least_conn",
    "ip_hash",
    "listen",
    "location",
    "log_format",
    "pid",
    "proxy_http_version",
    "proxy_pass",
    "proxy_set_header",
    "proxy_temp_path",
    "return",
    "rewrite",
    "root",
    "scgi_temp_path",
    "sendfile",
    "server",
    "server_name",
    "server_tokens",
    "ssl_ciphers",
    "ssl_prefer_server_ciphers",
    "ssl_protocols",
    "ssl_session_cache",
    "ssl_session_tickets",
    "ssl_session_timeout",
    "stub_status",
    "tcp_nopush",
    "types",
    "upstream",
    "uwsgi_temp_path",
    "worker_connections",
    "worker_processes",
    "worker_rlimit_nofile",
    "worker_shutdown_timeout",
    "add_header",
];

fn count(nodes: &[Node<'_>], names: &mut BTreeMap<String, usize>, in_types: bool) {
    for n in nodes {
        if let Node::Directive(d) = n {
            if !in_types {
                *names.entry(d.name().into_owned()).or_default() += 1;
            }
            if let Some(b) = &d.block {
                count(b, names, d.name() == "types");
            }
        }
    }
}

fn check(model: &ConfigUpdate, opts: &RenderOptions) -> Result<(), TestCaseError> {
    let plan = match generator::plan(model, opts) {
        Err(errors) => {
            prop_assert!(!errors.errors.is_empty());
            prop_assert!(
                errors
                    .errors
                    .iter()
                    .all(|e| !e.field.is_empty() && !e.message.is_empty())
            );
            return Ok(());
        }
        Ok(plan) => plan,
    };
    plan.verify()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let rendered = plan.render();
    let mut source = MemorySource::new();
    for f in &rendered.files {
        source.insert(format!("/nx/{}", f.path), f.bytes.clone());
    }
    let arena = SourceArena::new();
    let popts = ParseOptions {
        table: DirectiveTable::new("1.22.1", false).unwrap(),
        strict: true,
        ..ParseOptions::default()
    };
    let tree = parser::parse_tree(&arena, &source, "/nx/nginx.conf", &popts)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let errors: Vec<_> = tree.errors().collect();
    prop_assert!(errors.is_empty(), "{:?}", errors);

    // Independent of the plan: which directives, and how many.
    let mut names = BTreeMap::new();
    for f in &tree.files {
        count(&f.nodes, &mut names, false);
    }
    let vh = &model.virtual_hosts[0].spec;
    let loc = &vh.locations[0];
    let customs: Vec<&String> = vh
        .custom_directives
        .keys()
        .chain(loc.custom_directives.keys())
        .chain(model.global_settings.nginx_directives.keys())
        .collect();
    for name in names.keys() {
        prop_assert!(
            GENERATED.contains(&name.as_str()) || customs.contains(&name),
            "directive {name:?} was not asked for"
        );
    }
    let n = |k: &str| names.get(k).copied().unwrap_or(0);
    // status, catch-all, the virtual host, and the upstream's one server
    prop_assert_eq!(n("server"), 4);
    prop_assert_eq!(n("location"), 4); // 2 status, 1 catch-all, the model's
    prop_assert_eq!(n("upstream"), 1);
    prop_assert_eq!(n("rewrite"), loc.rewrite_rules.len());
    prop_assert_eq!(n("add_header"), loc.custom_headers.len());
    prop_assert_eq!(n("include"), 2);
    // Every header and rewrite is there with exactly the model's values.
    let server_file = tree
        .files
        .iter()
        .find(|f| f.path.contains("/servers/"))
        .unwrap();
    let mut found_headers = Vec::new();
    collect(&server_file.nodes, "add_header", &mut found_headers);
    let want: Vec<Vec<String>> = loc
        .custom_headers
        .iter()
        .map(|h| {
            let mut v = vec![h.name.clone(), h.value.clone()];
            if h.always {
                v.push("always".to_owned());
            }
            v
        })
        .collect();
    prop_assert_eq!(found_headers, want);
    Ok(())
}

fn collect(nodes: &[Node<'_>], name: &str, out: &mut Vec<Vec<String>>) {
    for n in nodes {
        if let Node::Directive(d) = n {
            if d.name() == name {
                out.push(d.args.iter().map(|a| a.value().into_owned()).collect());
            }
            if let Some(b) = &d.block {
                collect(b, name, out);
            }
        }
    }
}

#[test]
fn hostile_models_are_refused_or_render_exactly() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let opts = super::fixtures::options("1.22.1", "/tmp/nxmesh-hostile");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let rendered = std::cell::Cell::new(0u32);
    runner
        .run(&model(), |m| {
            let ok = generator::plan(&m, &opts).is_ok();
            check(&m, &opts)?;
            rendered.set(rendered.get() + u32::from(ok));
            Ok(())
        })
        .unwrap();
    // The property must exercise rendering of hostile text, not only
    // refusal.

    assert!(
        rendered.get() * 20 >= cases,
        "too few hostile cases rendered: {}",
        rendered.get()
    );
}
