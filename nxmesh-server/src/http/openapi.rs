//! The OpenAPI document of the REST API and a browsable page of it.
//!
//! The document is not written by hand: every handler carries a
//! `#[utoipa::path]` annotation and every feature module builds its router
//! with `utoipa_axum`'s `OpenApiRouter`, so the routes that are served and
//! the paths that are documented come from the same annotations (see
//! [`super::openapi()`]). This module adds what the annotations do not say:
//! the root (title, tags, the bearer security scheme) and the error
//! responses that the middleware can give on any route. The docs page is
//! rendered here, on the server, from the document itself: it loads nothing
//! from a CDN, so it works on an offline machine.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The name of the security scheme handlers refer to in `security(...)`.
pub(crate) const BEARER: &str = "bearer";

/// The root of the document; the paths come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "NxMesh API",
        description = "The REST API of the NxMesh master: organizations, workspaces, agents, \
            virtual hosts, upstreams, certificates, metrics and access logs. Every route but \
            the health checks, login, refresh, logout and this documentation needs \
            `Authorization: Bearer <token>`, with a JWT access token from `/v1/auth/login` or \
            an API token (`nxm_...`). Every error has the body `ErrorBody`."
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Login, refresh, logout and API tokens."),
        (name = "users", description = "Server users."),
        (name = "organizations", description = "Organizations, their members and audit log."),
        (name = "workspaces", description = "Workspaces of an organization."),
        (name = "agents", description = "Agents, their registration tokens and commands."),
        (name = "virtual-hosts", description = "Virtual hosts of a workspace."),
        (name = "upstreams", description = "Upstreams of a workspace."),
        (name = "certificates", description = "TLS certificates of a workspace."),
        (name = "telemetry", description = "Metrics summaries and access logs."),
        (name = "events", description = "The WebSocket event feed."),
        (name = "health", description = "Liveness and readiness."),
        (name = "meta", description = "This documentation."),
    )
)]
pub(crate) struct ApiDoc;

/// Adds the HTTP bearer security scheme.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or API token")
                    .description(Some(
                        "A JWT access token from `POST /v1/auth/login`, or an API token \
                         (`nxm_...`) from `POST /v1/auth/tokens`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Errors the layers around every handler can answer, whatever the route:
/// invalid credentials are refused before the handler runs (even on public
/// routes), the rate limit applies to everyone, and storage may fail.
const COMMON_ERRORS: [(&str, &str); 4] = [
    (
        "401",
        "The `Authorization` header is present but its credentials are invalid or expired.",
    ),
    (
        "429",
        "Too many requests; `Retry-After` says when to try again.",
    ),
    ("500", "Internal error; the cause is in the server's log."),
    ("503", "Storage is unavailable for the moment; retry later."),
];

/// Adds [`COMMON_ERRORS`] to every operation that does not already
/// describe the status itself.
pub(crate) fn add_common_errors(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            for (status, description) in COMMON_ERRORS {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(error_response(description)));
            }
        }
    }
}

/// A response whose body is the specification's error body.
fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// `/openapi.json` and `/docs`.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(document))
        .routes(routes!(docs))
}

/// The document as JSON and the docs page, built once.
static RENDERED: LazyLock<(String, String)> = LazyLock::new(|| {
    let doc = super::openapi();
    let value = serde_json::to_value(&doc).unwrap_or_default();
    let json = serde_json::to_string_pretty(&value).unwrap_or_default();
    (json, docs_page(&value))
});

/// The OpenAPI document of this API.
///
/// Generated from the code that serves the routes, so it lists exactly the
/// routes that are served. Public: no credentials needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "get_openapi_document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = Object),
    )
)]
async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        RENDERED.0.clone(),
    )
}

/// A browsable page of the API documentation.
///
/// Rendered on the server from the OpenAPI document; self-contained (no
/// scripts, no assets from elsewhere). Public: no credentials needed.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "meta",
    operation_id = "get_docs_page",
    responses(
        (status = 200, description = "An HTML page.", content_type = "text/html", body = String),
    )
)]
async fn docs() -> Html<String> {
    Html(RENDERED.1.clone())
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A string field of a JSON object, or "".
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Text with `code` spans: the descriptions use Markdown backticks.
fn prose(s: &str) -> String {
    let mut out = String::new();
    // Rustdoc links (`[`Name`]`) read as plain code here.
    let s = s.replace("[`", "`").replace("`]", "`");
    for (i, part) in esc(&s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out.replace("\n\n", "<br><br>")
}

/// The type of a schema, in words, with links to named schemas.
fn type_html(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{}\">{}</a>", esc(name), esc(name));
    }
    for (key, sep) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " &amp; ")] {
        if let Some(list) = s.get(key).and_then(Value::as_array) {
            return list.iter().map(type_html).collect::<Vec<_>>().join(sep);
        }
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let kinds: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut parts = Vec::new();
    for k in &kinds {
        let part = match *k {
            "array" => format!(
                "array of {}",
                s.get("items").map_or_else(|| "any".to_owned(), type_html)
            ),
            "object" => match s.get("additionalProperties") {
                Some(v) if v.is_object() => format!("map of string to {}", type_html(v)),
                _ => "object".to_owned(),
            },
            other => {
                let format = text(s, "format");
                if format.is_empty() || other == "null" {
                    esc(other)
                } else {
                    format!("{} ({})", esc(other), esc(format))
                }
            }
        };
        parts.push(part);
    }
    if parts.is_empty() {
        "any".to_owned()
    } else {
        parts.join(" | ")
    }
}

/// The schema of the first content type of a request body or response.
fn content_html(v: &Value) -> String {
    let Some(content) = v.get("content").and_then(Value::as_object) else {
        return String::new();
    };
    content
        .iter()
        .map(|(ct, c)| {
            format!(
                "<code>{}</code> {}",
                esc(ct),
                c.get("schema").map(type_html).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// One operation.
fn operation_html(out: &mut String, method: &str, path: &str, op: &Value) {
    let id = text(op, "operationId");
    let _ = write!(
        out,
        "<section class=\"op\" id=\"op-{}\"><h3><span class=\"m {}\">{}</span> <code>{}</code></h3>",
        esc(id),
        esc(method),
        esc(&method.to_uppercase()),
        esc(path)
    );
    let summary = text(op, "summary");
    if !summary.is_empty() {
        let _ = write!(out, "<p class=\"summary\">{}</p>", prose(summary));
    }
    let description = text(op, "description");
    if !description.is_empty() {
        let _ = write!(out, "<p>{}</p>", prose(description));
    }
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|r| r.as_object().is_some_and(|o| !o.is_empty()))
        });
    out.push_str(if secured {
        "<p class=\"auth\">Needs <code>Authorization: Bearer &lt;token&gt;</code>.</p>"
    } else {
        "<p class=\"auth\">Public: no credentials needed.</p>"
    });
    if let Some(params) = op.get("parameters").and_then(Value::as_array) {
        out.push_str("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
        for p in params {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(text(p, "name")),
                esc(text(p, "in")),
                p.get("schema").map(type_html).unwrap_or_default(),
                if p.get("required").and_then(Value::as_bool) == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                prose(text(p, "description"))
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let _ = write!(out, "<h4>Request body</h4><p>{}</p>", content_html(body));
    }
    if let Some(responses) = op.get("responses").and_then(Value::as_object) {
        out.push_str(
            "<h4>Responses</h4><table><tr><th>status</th><th>description</th><th>body</th></tr>",
        );
        for (status, r) in responses {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                prose(text(r, "description")),
                content_html(r)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

/// The description of a property; a nullable reference carries it on the
/// reference, inside `oneOf`.
fn description_of(p: &Value) -> &str {
    let own = text(p, "description");
    if !own.is_empty() {
        return own;
    }
    ["oneOf", "anyOf", "allOf"]
        .iter()
        .filter_map(|k| p.get(*k).and_then(Value::as_array))
        .flatten()
        .map(|v| text(v, "description"))
        .find(|d| !d.is_empty())
        .unwrap_or("")
}

/// One named schema.
fn schema_html(out: &mut String, name: &str, s: &Value) {
    let _ = write!(
        out,
        "<section class=\"schema\" id=\"schema-{}\"><h3>{}</h3>",
        esc(name),
        esc(name)
    );
    let description = text(s, "description");
    if !description.is_empty() {
        let _ = write!(out, "<p>{}</p>", prose(description));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(
            "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
        );
        for (field, p) in props {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(field),
                type_html(p),
                if required.contains(&field.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                prose(description_of(p))
            );
        }
        out.push_str("</table>");
    } else {
        let _ = write!(out, "<p>{}</p>", type_html(s));
    }
    let pretty = serde_json::to_string_pretty(s).unwrap_or_default();
    let _ = write!(
        out,
        "<details><summary>JSON Schema</summary><pre>{}</pre></details></section>",
        esc(&pretty)
    );
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:70em;margin:0 auto;padding:1em 2em;color:#222}\
code,pre{font-family:ui-monospace,monospace;font-size:.92em}pre{background:#f6f6f6;padding:.6em;overflow:auto}\
table{border-collapse:collapse;margin:.4em 0 1em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}section.op,section.schema{border-top:1px solid #ccc;padding:.4em 0}\
.m{display:inline-block;min-width:4.2em;text-align:center;color:#fff;border-radius:3px;padding:0 .3em;font-size:.85em}\
.get{background:#2f7d32}.post{background:#1565c0}.patch{background:#ef6c00}.put{background:#6a1b9a}.delete{background:#c62828}\
.auth{color:#555;font-size:.9em}nav ul{columns:2}";

/// The docs page: every operation grouped by tag, then every schema.
fn docs_page(doc: &Value) -> String {
    let info = doc.get("info").cloned().unwrap_or(Value::Null);
    let title = text(&info, "title");
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\
         <h1>{t} <small>{v}</small></h1><p>{d}</p>\
         <p>The machine-readable document: <a href=\"openapi.json\">openapi.json</a> (OpenAPI {o}).</p>",
        t = esc(title),
        v = esc(text(&info, "version")),
        d = prose(text(&info, "description")),
        o = esc(text(doc, "openapi")),
    );
    // Operations by tag, in the document's tag order.
    let mut ops: Vec<(String, String, String, &Value)> = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in [
                "get", "post", "put", "patch", "delete", "head", "options", "trace",
            ] {
                if let Some(op) = item.get(method) {
                    let tag = op
                        .get("tags")
                        .and_then(|t| t.get(0))
                        .and_then(Value::as_str)
                        .unwrap_or("other")
                        .to_owned();
                    ops.push((tag, path.clone(), method.to_owned(), op));
                }
            }
        }
    }
    let mut tags: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        text(t, "name").to_owned(),
                        text(t, "description").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for (tag, ..) in &ops {
        if !tags.iter().any(|(t, _)| t == tag) {
            tags.push((tag.clone(), String::new()));
        }
    }
    out.push_str("<nav><h2>Contents</h2><ul>");
    for (tag, description) in &tags {
        let _ = write!(
            out,
            "<li><a href=\"#tag-{}\">{}</a> — {}</li>",
            esc(tag),
            esc(tag),
            prose(description)
        );
    }
    out.push_str("<li><a href=\"#schemas\">Schemas</a></li></ul></nav>");
    for (tag, description) in &tags {
        let _ = write!(
            out,
            "<h2 id=\"tag-{}\">{}</h2><p>{}</p>",
            esc(tag),
            esc(tag),
            prose(description)
        );
        for (_, path, method, op) in ops.iter().filter(|(t, ..)| t == tag) {
            operation_html(&mut out, method, path, op);
        }
    }
    out.push_str("<h2 id=\"schemas\">Schemas</h2>");
    if let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, s) in schemas {
            schema_html(&mut out, name, s);
        }
    }
    out.push_str("</body></html>");
    out
}

/// The root document, before the routers add their paths.
pub(crate) fn root() -> OpenApi {
    ApiDoc::openapi()
}
