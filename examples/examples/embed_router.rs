//! Mount the NxMesh REST API inside another axum application.
//!
//! The host application keeps its own `/` and `/status`; NxMesh lives under
//! `/nxmesh` (so its API is `/nxmesh/v1/...`), over a SQLite database in a
//! temporary directory. The example serves both on 127.0.0.1 and drives
//! them with plain HTTP/1.1 over a `TcpStream`: it logs in as the bootstrap
//! administrator, creates an organization and reads it back.
//!
//! It nests [`nxmesh_server::http::app`], the whole application with its
//! layers (request ids, error bodies, authentication, rate limit, body
//! limit). The unlayered `api_routes()` is not enough on its own: the
//! authentication and error-rendering middleware it relies on are private
//! to `nxmesh-server`.

// An example reports what it did on standard output.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use nxmesh_server::auth::TokenKeys;
use nxmesh_server::db::SeaStore;
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, bootstrap, http};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// NxMesh's state over a SQLite database and keys in `dir`, with the first
/// administrator created.
async fn nxmesh_state(dir: &Path) -> AppState {
    let url = format!("sqlite://{}?mode=rwc", dir.join("nxmesh.sqlite").display());
    let store = Arc::new(SeaStore::connect(&url).await.expect("open the database"));
    let created = bootstrap::ensure_first_admin(store.as_ref(), dir, Some(EMAIL), Some(PASSWORD))
        .await
        .expect("create the first administrator");
    assert!(created.is_some(), "a fresh database gets its first admin");
    let keys = TokenKeys::load_or_create(&dir.join("signing.key"), 900).expect("signing key");
    let secrets = SecretBox::load_or_create(&dir.join("secret.key")).expect("encryption key");
    AppState::new(store, keys, secrets, ApiSettings::default())
}

/// The host application, with NxMesh nested under `/nxmesh`.
fn host_app(nxmesh: Router) -> Router {
    Router::new()
        .route("/", get(|| async { "the host application" }))
        .route(
            "/status",
            get(|| async { Json(json!({"status": "ok", "service": "host"})) }),
        )
        .nest("/nxmesh", nxmesh)
}

/// A response: status, body as JSON (or as a string when it is not JSON).
struct Response {
    status: u16,
    body: Value,
}

/// One HTTP/1.1 request on a new connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut payload = raw[split + 4..].to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if chunked {
        payload = dechunk(&payload);
    }
    let body = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&payload).into_owned()))
    };
    Response { status, body }
}

/// Decodes a chunked body.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .expect("a hexadecimal chunk size");
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("nxmesh-embed-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();

    let state = nxmesh_state(&dir).await;
    let app = host_app(http::app(state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("host application with NxMesh under /nxmesh on http://{addr}");

    // The host's own routes are untouched.
    let root = request(addr, "GET", "/", None, None).await;
    assert_eq!(root.status, 200);
    assert_eq!(root.body, json!("the host application"));
    let status = request(addr, "GET", "/status", None, None).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["service"], "host");
    let missing = request(addr, "GET", "/elsewhere", None, None).await;
    assert_eq!(missing.status, 404, "the host's own 404");

    // NxMesh's health check and API, under the prefix.
    let health = request(addr, "GET", "/nxmesh/healthz", None, None).await;
    assert_eq!(health.status, 200, "body: {}", health.body);

    let anonymous = request(addr, "GET", "/nxmesh/v1/organizations", None, None).await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous.body["error"]["code"].is_string(),
        "NxMesh's error body, rendered by its own layers: {}",
        anonymous.body
    );

    let login = request(
        addr,
        "POST",
        "/nxmesh/v1/auth/login",
        None,
        Some(&json!({"email": EMAIL, "password": PASSWORD})),
    )
    .await;
    assert_eq!(login.status, 200, "body: {}", login.body);
    let token = login.body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    println!("logged in as {EMAIL}");

    let created = request(
        addr,
        "POST",
        "/nxmesh/v1/organizations",
        Some(&token),
        Some(&json!({"name": "Acme", "slug": "acme"})),
    )
    .await;
    assert_eq!(created.status, 201, "body: {}", created.body);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    println!("created organization {id}");

    let read = request(
        addr,
        "GET",
        &format!("/nxmesh/v1/organizations/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(read.status, 200, "body: {}", read.body);
    assert_eq!(read.body["id"], json!(id));
    assert_eq!(read.body["name"], "Acme");
    assert_eq!(read.body["slug"], "acme");

    let listed = request(addr, "GET", "/nxmesh/v1/organizations", Some(&token), None).await;
    assert_eq!(listed.status, 200, "body: {}", listed.body);
    assert_eq!(listed.body["meta"]["total"], 1);
    assert_eq!(listed.body["data"][0]["id"], json!(id));
    println!("read it back through /nxmesh/v1/organizations/{id}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    println!("done");
}
