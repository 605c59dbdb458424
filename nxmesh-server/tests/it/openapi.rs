//! The OpenAPI document at `/v1/openapi.json` and the docs page at
//! `/v1/docs`: the document lists every route of the API with the methods
//! the router serves (checked both ways against the router itself), has
//! the schemas of the model, and passes a real validator.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use nxmesh_server::http;
use serde_json::Value;
use uuid::Uuid;

use crate::support::{App, on_every_backend};

on_every_backend!(
    document_is_served_publicly,
    every_documented_operation_is_routed,
    docs_page_is_html
);

/// Every route of the API, with its methods: the list a reader checks.
const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/v1/openapi.json", &["get"]),
    ("/v1/docs", &["get"]),
    ("/v1/auth/login", &["post"]),
    ("/v1/auth/refresh", &["post"]),
    ("/v1/auth/logout", &["post"]),
    ("/v1/auth/tokens", &["get", "post"]),
    ("/v1/auth/tokens/{token_id}", &["delete"]),
    ("/v1/users", &["post"]),
    ("/v1/users/me", &["get"]),
    ("/v1/users/{user_id}", &["delete"]),
    ("/v1/organizations", &["get", "post"]),
    (
        "/v1/organizations/{organization_id}",
        &["get", "patch", "delete"],
    ),
    (
        "/v1/organizations/{organization_id}/members",
        &["get", "post"],
    ),
    (
        "/v1/organizations/{organization_id}/members/{user_id}",
        &["patch", "delete"],
    ),
    ("/v1/organizations/{organization_id}/audit-log", &["get"]),
    (
        "/v1/organizations/{organization_id}/workspaces",
        &["get", "post"],
    ),
    ("/v1/workspaces/{workspace_id}", &["get", "patch", "delete"]),
    ("/v1/workspaces/{workspace_id}/agents", &["get"]),
    ("/v1/workspaces/{workspace_id}/agents/tokens", &["post"]),
    ("/v1/agents/{agent_id}", &["get", "patch", "delete"]),
    ("/v1/agents/{agent_id}/reload", &["post"]),
    ("/v1/agents/{agent_id}/commands", &["post"]),
    ("/v1/agents/{agent_id}/config", &["get"]),
    ("/v1/workspaces/{workspace_id}/rollout", &["get"]),
    ("/v1/virtual-hosts/{virtual_host_id}/config", &["get"]),
    ("/v1/events", &["get"]),
    (
        "/v1/workspaces/{workspace_id}/virtual-hosts",
        &["get", "post"],
    ),
    (
        "/v1/virtual-hosts/{virtual_host_id}",
        &["get", "patch", "delete"],
    ),
    ("/v1/workspaces/{workspace_id}/upstreams", &["get", "post"]),
    ("/v1/upstreams/{upstream_id}", &["get", "patch", "delete"]),
    (
        "/v1/workspaces/{workspace_id}/certificates",
        &["get", "post"],
    ),
    ("/v1/certificates/{certificate_id}", &["get", "delete"]),
    ("/v1/certificates/{certificate_id}/renew", &["post"]),
    ("/v1/workspaces/{workspace_id}/metrics", &["get"]),
    ("/v1/agents/{agent_id}/metrics", &["get"]),
    ("/v1/workspaces/{workspace_id}/access-logs", &["get"]),
];

/// Routes anyone may call; every other operation declares bearer security.
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/v1/openapi.json",
    "/v1/docs",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/logout",
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::to_value(http::openapi()).unwrap()
}

/// `path -> methods` of a document.
fn operations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths is an object")
        .iter()
        .map(|(path, item)| {
            let methods = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (*m).to_owned())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// A concrete path for a templated one: every parameter a fresh id.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closed parameter") + start;
        out.push_str(&rest[..start]);
        out.push_str(&Uuid::new_v4().to_string());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn document_lists_every_route_with_its_methods() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "openapi: {}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "NxMesh API");
    let expected: BTreeMap<String, BTreeSet<String>> = ROUTES
        .iter()
        .map(|(p, ms)| {
            (
                (*p).to_owned(),
                ms.iter().map(|m| (*m).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(operations(&doc), expected);
}

#[test]
fn operations_are_well_formed() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, methods) in operations(&doc) {
        for method in methods {
            let op = &doc["paths"][&path][&method];
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} is not unique");
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has a tag"
            );
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has a summary"
            );
            // Every path parameter is declared.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, templated, "{method} {path} path parameters");
            // Security: bearer everywhere but the public routes.
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            assert_eq!(
                secured,
                !PUBLIC.contains(&path.as_str()),
                "{method} {path} security: {}",
                op["security"]
            );
            // Errors: the spec's body; 401 where credentials are needed.
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2') || s == "101"),
                "{method} {path} has a success response"
            );
            for status in ["401", "429", "500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} documents {status}"
                );
            }
            // (A WebSocket layer's plain-text rejection has no JSON body to
            // describe; every JSON error body is the spec's.)
            for (status, r) in responses {
                if (status.starts_with('4') || status.starts_with('5'))
                    && r.get("content").is_some()
                {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status} has the error body"
                    );
                }
            }
            if let Some(body) = op.get("requestBody") {
                assert!(
                    body["content"]["application/json"]["schema"].is_object(),
                    "{method} {path} request body"
                );
            }
        }
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
}

#[test]
fn document_has_the_model_schemas() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Organization",
        "VirtualHost",
        "ErrorBody",
        "ApiErrorDetail",
        "FieldError",
        "Workspace",
        "Agent",
        "Upstream",
        "Certificate",
        "MetricsSummary",
        "AccessLogPage",
    ] {
        assert!(schemas.contains_key(name), "schema {name} is missing");
    }
    let org = &schemas["Organization"];
    for field in ["id", "name", "slug", "created_at"] {
        assert!(
            org["properties"].get(field).is_some(),
            "Organization.{field}: {org}"
        );
    }
    assert_eq!(
        org["properties"]["created_at"]["format"], "date-time",
        "timestamps are RFC 3339"
    );
    let error = &schemas["ErrorBody"];
    assert_eq!(
        error["properties"]["error"]["$ref"],
        "#/components/schemas/ApiErrorDetail"
    );
    // Every reference resolves.
    let text = doc.to_string();
    for (i, _) in text.match_indices("\"#/components/schemas/") {
        let rest = &text[i + 22..];
        let name = &rest[..rest.find('"').unwrap()];
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
}

/// Validates the document with `openapi-spec-validator` from the
/// workspace's `.venv` (installed by `scripts/test.sh` from
/// `scripts/requirements-test.txt`). Missing, it fails under `CI=true` and
/// is skipped with a notice otherwise.
#[test]
fn document_passes_a_validator() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let available = python.exists()
        && Command::new(&python)
            .args(["-c", "import openapi_spec_validator"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !available {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openapi-spec-validator is not installed in {} (scripts/test.sh installs it)",
            python.display()
        );
        // The notice is the point: a skipped check should be visible.
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "openapi-spec-validator not found in {}; skipping the validation outside CI",
                python.display()
            );
        }
        return;
    }
    let script = "import json, sys\n\
                  from openapi_spec_validator import validate\n\
                  validate(json.load(sys.stdin))\n";
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(document().to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // The validator's message ends with the whole document; its start says
    // what is wrong.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .lines()
        .filter(|l| !l.starts_with("  "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.status.success(),
        "the OpenAPI document is invalid:\n{}",
        tail.chars().take(3000).collect::<String>()
    );
}

async fn document_is_served_publicly(app: App) {
    let r = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.body,
        document(),
        "the served document is `http::openapi()`"
    );
}

/// Both ways: every documented (method, path) reaches a handler, and on a
/// documented path every other method is the router's fallback. Together
/// with `document_lists_every_route_with_its_methods` this pins the router
/// to the document.
async fn every_documented_operation_is_routed(app: App) {
    let doc = document();
    let all = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    for (path, methods) in operations(&doc) {
        let uri = concrete(&path);
        for method in &all {
            let r = app.call(method.clone(), &uri, Some(&app.admin), None).await;
            let fallback = r.body["error"]["message"] == "route not found";
            let documented = methods.contains(&method.as_str().to_lowercase());
            assert_eq!(
                !fallback, documented,
                "{method} {path} ({uri}): documented {documented}, routed {}: {}",
                !fallback, r.body
            );
        }
    }
}

async fn docs_page_is_html(app: App) {
    let r = app.call(Method::GET, "/v1/docs", None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        r.headers["content-type"]
    );
    let html = r.body.as_str().expect("an HTML body");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("href=\"openapi.json\""));
    // Every operation and the main schemas are on the page.
    for (path, _) in operations(&document()) {
        assert!(
            html.contains(&format!("<code>{path}</code>")),
            "{path} is on the page"
        );
    }
    for name in ["Organization", "VirtualHost", "ErrorBody"] {
        assert!(html.contains(&format!("id=\"schema-{name}\"")), "{name}");
    }
    // Self-contained: nothing is loaded from elsewhere.
    assert!(!html.contains("<script"), "no scripts");
    assert!(!html.contains("src=\"http"), "no remote assets");
    assert!(!html.contains("<link"), "no stylesheets from elsewhere");
}
