//! Representative models for the golden tests.

use nxmesh_core::config::ConfigUpdate;
use nxmesh_core::generator::{Layout, NginxVersion, RenderOptions};
use serde_json::json;

/// Port of the status endpoint in the fixtures.
pub(crate) const STATUS_PORT: u16 = 28999;

/// Options for rendering into a test prefix: 127.0.0.1, high ports, every
/// path under `prefix`.
pub(crate) fn options(version: &str, prefix: &str) -> RenderOptions {
    RenderOptions {
        nginx_version: version.parse::<NginxVersion>().unwrap(),
        layout: Layout {
            managed_dir: "conf.d/nxmesh".to_owned(),
            cert_dir: "conf.d/nxmesh/certs".to_owned(),
            pid_file: format!("{prefix}/nginx.pid"),
            error_log: format!("{prefix}/logs/error.log"),
            access_log: format!("{prefix}/logs/access.log"),
            temp_dir: format!("{prefix}/temp"),
        },
        listen_address: Some("127.0.0.1".parse().unwrap()),
        status_port: STATUS_PORT,
        worker_shutdown_timeout_secs: 30,
    }
}

/// The prefix the golden snapshots are rendered for.
pub(crate) const GOLDEN_PREFIX: &str = "/tmp/nxmesh-golden";

const CERT_ID: &str = "0b6d0a30-0000-4000-8000-00000000c001";
const UP_A: &str = "0b6d0a30-0000-4000-8000-00000000a001";
const UP_B: &str = "0b6d0a30-0000-4000-8000-00000000a002";
const UP_C: &str = "0b6d0a30-0000-4000-8000-00000000a003";
const UP_D: &str = "0b6d0a30-0000-4000-8000-00000000a004";

/// A placeholder PEM pair (the nginx tests replace the files with a real
/// certificate generated at test time).
fn certificates() -> serde_json::Value {
    json!({
        CERT_ID: {
            "id": CERT_ID,
            "domain": "example.test",
            "certificate_pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "private_key_pem": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            "expires_at": "2030-01-01T00:00:00Z"
        }
    })
}

fn upstream_app() -> serde_json::Value {
    json!({
        "id": UP_A, "name": "app", "algorithm": "round_robin",
        "servers": [{"address": "127.0.0.1:9001"}, {"address": "127.0.0.1:9002"}],
        "keepalive_connections": 16
    })
}

fn model(v: serde_json::Value) -> ConfigUpdate {
    serde_json::from_value(v).unwrap()
}

/// One case: name, target version, model.
pub(crate) struct Case {
    /// Golden file stem.
    pub(crate) name: &'static str,
    /// Target nginx version.
    pub(crate) version: &'static str,
    /// The model.
    pub(crate) model: ConfigUpdate,
}

/// Every golden case.
pub(crate) fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "plain_http",
            version: "1.22.1",
            model: plain_http(),
        },
        Case {
            name: "tls_http2_1_22",
            version: "1.22.1",
            model: tls_http2(),
        },
        Case {
            name: "tls_http2_1_26",
            version: "1.26.3",
            model: tls_http2(),
        },
        Case {
            name: "http3_1_26",
            version: "1.26.3",
            model: http3(),
        },
        Case {
            name: "many_locations",
            version: "1.22.1",
            model: many_locations(),
        },
        Case {
            name: "upstream_algorithms",
            version: "1.22.1",
            model: upstream_algorithms(),
        },
        Case {
            name: "headers_levels",
            version: "1.22.1",
            model: headers_levels(),
        },
        Case {
            name: "rewrites",
            version: "1.22.1",
            model: rewrites(),
        },
        Case {
            name: "custom_directives",
            version: "1.22.1",
            model: custom_directives(),
        },
        Case {
            name: "acme_challenges",
            version: "1.22.1",
            model: acme_challenges(),
        },
    ]
}

/// ACME HTTP-01 challenges: answered by the plain virtual host that names
/// the domain (one of its names is a wildcard) and by the port's
/// catch-all, never by a virtual host of other names or by a TLS one.
pub(crate) fn acme_challenges() -> ConfigUpdate {
    model(json!({
        "config_id": "acme", "version": 1,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000001",
            "name": "App", "server_name": "app.example.test *.apps.example.test", "listen_port": 28080,
            "locations": [{"path": "/", "root": "/srv/www"}]
        }, {
            "id": "0b6d0a30-0000-4000-8000-000000000002",
            "name": "Other", "server_name": "other.example.test", "listen_port": 28080,
            "locations": [{"path": "/", "root": "/srv/other"}]
        }, {
            "id": "0b6d0a30-0000-4000-8000-000000000003",
            "name": "App TLS", "server_name": "app.example.test", "listen_port": 28443,
            "ssl_enabled": true, "ssl_certificate_id": CERT_ID,
            "locations": [{"path": "/", "root": "/srv/www"}]
        }],
        "certificates": certificates(),
        "global_settings": {"acme_challenges": [
            {"domain": "app.example.test", "token": "tok_A-1", "key_authorization": "tok_A-1.thumb_print-x"},
            {"domain": "b.apps.example.test", "token": "tokB2", "key_authorization": "tokB2.thumbprint"}
        ]}
    }))
}

/// One plain HTTP virtual host serving files.
pub(crate) fn plain_http() -> ConfigUpdate {
    model(json!({
        "config_id": "plain", "version": 1,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000001",
            "name": "Plain site", "server_name": "example.test www.example.test", "listen_port": 28080,
            "locations": [{"path": "/", "root": "/srv/www", "index": "index.html"}]
        }]
    }))
}

/// TLS with HTTP/2, proxying to an upstream.
pub(crate) fn tls_http2() -> ConfigUpdate {
    model(json!({
        "config_id": "tls", "version": 2,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000002",
            "name": "TLS site", "server_name": "secure.example.test", "listen_port": 28443,
            "ssl_enabled": true, "ssl_certificate_id": CERT_ID, "http2_enabled": true,
            "locations": [{"path": "/", "upstream_id": UP_A}]
        }],
        "upstreams": [upstream_app()],
        "certificates": certificates()
    }))
}

/// HTTP/3 over QUIC next to TLS and HTTP/2, two virtual hosts on one port.
pub(crate) fn http3() -> ConfigUpdate {
    model(json!({
        "config_id": "h3", "version": 3,
        "virtual_hosts": [
            {
                "id": "0b6d0a30-0000-4000-8000-000000000003",
                "name": "QUIC site", "server_name": "quic.example.test", "listen_port": 28443,
                "ssl_enabled": true, "ssl_certificate_id": CERT_ID, "http2_enabled": true,
                "http3_enabled": true,
                "locations": [{"path": "/", "upstream_id": UP_A}]
            },
            {
                "id": "0b6d0a30-0000-4000-8000-000000000004",
                "name": "Second QUIC site", "server_name": "quic2.example.test", "listen_port": 28443,
                "ssl_enabled": true, "ssl_certificate_id": CERT_ID, "http2_enabled": true,
                "http3_enabled": true,
                "locations": [{"path": "/", "root": "/srv/quic2"}]
            }
        ],
        "upstreams": [upstream_app()],
        "certificates": certificates()
    }))
}

/// Every location modifier and target kind.
pub(crate) fn many_locations() -> ConfigUpdate {
    model(json!({
        "config_id": "locations", "version": 4,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000005",
            "name": "Locations", "server_name": "locations.example.test *.apps.example.test ~^(?<app>[a-z]{2,8})\\.dyn\\.example\\.test$",
            "listen_port": 28080,
            "locations": [
                {"path": "/", "root": "/srv/www", "index": "index.html index.htm"},
                {"path": "/api/", "upstream_id": UP_A},
                {"path": "/healthz", "modifier": "exact", "custom_directives": {"return": "200 ok"}},
                {"path": "/static/", "modifier": "preferential_prefix", "root": "/srv/static"},
                {"path": "\\.(png|jpe?g|gif)$", "modifier": "regex_case_insensitive", "root": "/srv/images"},
                {"path": "^/v[0-9]{1,3}/", "modifier": "regex", "proxy_pass": "http://127.0.0.1:9100"},
                {"path": "/legacy", "modifier": "exact", "proxy_pass": "http://127.0.0.1:9200/old"},
                {"path": "@fallback", "proxy_pass": "http://127.0.0.1:9300"}
            ]
        }],
        "upstreams": [upstream_app()]
    }))
}

/// Every balancing algorithm and server parameter.
pub(crate) fn upstream_algorithms() -> ConfigUpdate {
    model(json!({
        "config_id": "upstreams", "version": 5,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000006",
            "name": "Upstreams", "server_name": "upstreams.example.test", "listen_port": 28080,
            "locations": [
                {"path": "/rr/", "upstream_id": UP_A},
                {"path": "/lc/", "upstream_id": UP_B},
                {"path": "/ip/", "upstream_id": UP_C},
                {"path": "/w/", "upstream_id": UP_D}
            ]
        }],
        "upstreams": [
            upstream_app(),
            {
                "id": UP_B, "name": "least", "algorithm": "least_connections",
                "servers": [
                    {"address": "127.0.0.1:9011", "max_fails": 3, "fail_timeout": 30},
                    {"address": "127.0.0.1:9012", "backup": true},
                    {"address": "unix:/run/app.sock", "down": true}
                ],
                "health_check": {"enabled": true, "path": "/healthz", "interval": 10, "timeout": 2}
            },
            {
                "id": UP_C, "name": "sticky", "algorithm": "ip_hash",
                "servers": [{"address": "127.0.0.1:9021", "weight": 2}, {"address": "[::1]:9022", "max_fails": 0}]
            },
            {
                "id": UP_D, "name": "weighted", "algorithm": "weighted_round_robin",
                "servers": [{"address": "127.0.0.1:9031", "weight": 5}, {"address": "127.0.0.1:9032", "weight": 1}],
                "keepalive_connections": 8
            }
        ]
    }))
}

/// Headers on the server level (HSTS) and on locations, with and without
/// `always`.
pub(crate) fn headers_levels() -> ConfigUpdate {
    model(json!({
        "config_id": "headers", "version": 6,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000007",
            "name": "Headers", "server_name": "headers.example.test", "listen_port": 28443,
            "ssl_enabled": true, "ssl_certificate_id": CERT_ID,
            "locations": [
                {"path": "/", "root": "/srv/www"},
                {"path": "/app/", "upstream_id": UP_A, "custom_headers": [
                    {"name": "X-Frame-Options", "value": "DENY", "always": true},
                    {"name": "Content-Security-Policy", "value": "default-src 'self'; img-src 'self' data:; script-src 'self' 'nonce-abc'", "always": true},
                    {"name": "X-Served-By", "value": "$hostname"}
                ]},
                {"path": "/strict/", "root": "/srv/strict", "custom_headers": [
                    {"name": "Strict-Transport-Security", "value": "max-age=63072000; includeSubDomains", "always": true},
                    {"name": "Cache-Control", "value": "no-store"}
                ]}
            ]
        }],
        "upstreams": [upstream_app()],
        "certificates": certificates()
    }))
}

/// Rewrite rules with every flag.
pub(crate) fn rewrites() -> ConfigUpdate {
    model(json!({
        "config_id": "rewrites", "version": 7,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000008",
            "name": "Rewrites", "server_name": "rewrites.example.test", "listen_port": 28080,
            "locations": [
                {"path": "/", "root": "/srv/www", "rewrite_rules": [
                    {"pattern": "^/old/([a-z0-9-]+)$", "replacement": "/new/$1", "flag": "last"},
                    {"pattern": "^/docs/(.*)\\.htm$", "replacement": "/docs/$1.html", "flag": "permanent"},
                    {"pattern": "^/tmp/(\\d{4})/", "replacement": "/archive/$1/", "flag": "redirect"},
                    {"pattern": "^/inline$", "replacement": "/index.html", "flag": "break"},
                    {"pattern": "^/query$", "replacement": "/search?q=all"}
                ]}
            ]
        }]
    }))
}

/// Custom directives at the http, server and location levels.
pub(crate) fn custom_directives() -> ConfigUpdate {
    model(json!({
        "config_id": "custom", "version": 8,
        "virtual_hosts": [{
            "id": "0b6d0a30-0000-4000-8000-000000000009",
            "name": "Custom", "server_name": "custom.example.test", "listen_port": 28080,
            "custom_directives": {"client_max_body_size": "10m", "proxy_set_header": "X-Tenant acme"},
            "locations": [
                {"path": "/", "upstream_id": UP_A, "custom_directives": {
                    "proxy_read_timeout": "120s", "proxy_buffering": "on", "gzip": "on",
                    "gzip_types": "text/plain application/json"
                }},
                {"path": "/internal/", "root": "/srv/internal", "custom_directives": {
                    "allow": "10.0.0.0/8", "deny": "all", "expires": "1h"
                }}
            ]
        }],
        "upstreams": [upstream_app()],
        "global_settings": {"nginx_directives": {
            "client_header_timeout": "30s", "gzip": "on", "server_names_hash_bucket_size": "128"
        }}
    }))
}
