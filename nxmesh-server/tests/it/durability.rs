//! A write the master acknowledged survives `SIGKILL` (SQLite, WAL with
//! `synchronous=FULL`): the real binary is started, written to, killed, and
//! started again.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "durability test password";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nxmesh-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--http-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--grpc-addr")
        .arg("127.0.0.1:0")
        .env("NXMESH_ADMIN_EMAIL", "admin@example.com")
        .env("NXMESH_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nxmesh-server")
}

/// One HTTP/1.1 request over a fresh connection; returns status and JSON.
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = out
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if matches!(request(port, "GET", "/readyz", None, None), Ok((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nxmesh-server did not become ready on port {port}");
}

fn login(port: u16) -> String {
    let (status, body) = request(
        port,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({"email": "admin@example.com", "password": PASSWORD})),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = std::env::temp_dir().join(format!("nxmesh-kill-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let mut server = start(&dir, port);
    wait_ready(port);
    let token = login(port);
    let mut written = Vec::new();
    for i in 0..20 {
        let (status, org) = request(
            port,
            "POST",
            "/v1/organizations",
            Some(&token),
            Some(&json!({"name": format!("Org {i}"), "slug": format!("org-{i}")})),
        )
        .unwrap();
        assert_eq!(status, 201, "{org}");
        written.push(org["id"].as_str().unwrap().to_owned());
    }
    // Kill right after the last acknowledged write: no graceful shutdown.
    server.kill().unwrap();
    server.wait().unwrap();

    let port = free_port();
    let mut server = start(&dir, port);
    wait_ready(port);
    let token = login(port);
    for id in &written {
        let (status, org) = request(
            port,
            "GET",
            &format!("/v1/organizations/{id}"),
            Some(&token),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "organization {id} lost after SIGKILL: {org}");
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Started with no arguments in an empty directory, the master creates its
/// data directory, keys and first administrator, with the generated
/// password in an owner-only file.
#[test]
fn first_start_just_works() {
    use std::os::unix::fs::PermissionsExt as _;
    let cwd = std::env::temp_dir().join(format!("nxmesh-first-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&cwd).unwrap();
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_nxmesh-server"))
        .current_dir(&cwd)
        .env("NXMESH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("NXMESH_GRPC_ADDR", "127.0.0.1:0")
        .env_remove("NXMESH_ADMIN_PASSWORD")
        .env_remove("NXMESH_ADMIN_EMAIL")
        .env_remove("DATABASE_URL")
        .env_remove("NXMESH_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port);
    let data = cwd.join("nxmesh-data");
    let mode = |p: &str| {
        std::fs::metadata(data.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    for secret in [
        "initial-admin-password",
        "jwt-ed25519.pem",
        "secret.keys",
        "agent-ca.key",
        "agent-server.key",
    ] {
        assert_eq!(mode(secret), 0o600, "{secret}");
    }
    let password = std::fs::read_to_string(data.join("initial-admin-password")).unwrap();
    let (status, body) = request(
        port,
        "POST",
        "/v1/auth/login",
        None,
        Some(&json!({"email": "admin@nxmesh.local", "password": password.trim()})),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    server.kill().unwrap();
    server.wait().unwrap();

    // Bad configuration is refused before anything is bound.
    let out = Command::new(env!("CARGO_BIN_EXE_nxmesh-server"))
        .current_dir(&cwd)
        .env("DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL must start with"));
    let _ = std::fs::remove_dir_all(&cwd);
}
