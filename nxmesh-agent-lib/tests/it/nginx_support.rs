//! Support for the tests that run a real nginx: a temporary prefix and
//! data directory, a guard that stops nginx on drop, a loopback HTTP
//! client and a fault-injection hook.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nxmesh_agent_lib::nginx::{NginxMode, read_pid};
use nxmesh_agent_lib::pipeline::{ApplyHook, ApplyStep, HookAbort};
use nxmesh_agent_lib::{NginxRuntime, RuntimeConfig};
use nxmesh_core::config::{CertificateBundle, ConfigUpdate, VirtualHostConfig};
use nxmesh_core::model::{Location, VirtualHostSpec};
use uuid::Uuid;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Debian's nginx (`NXMESH_NGINX` overrides). Under `CI=true` its absence
/// fails the test; otherwise the test prints a notice and returns.
// Outside CI a missing nginx skips the test with a notice on stderr.
#[allow(clippy::print_stderr)]
pub(crate) fn nginx_binary() -> Option<PathBuf> {
    let path =
        std::env::var("NXMESH_NGINX").map_or_else(|_| "/usr/sbin/nginx".into(), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !ci(),
        "nginx is required under CI=true (looked at {path:?})"
    );
    eprintln!("notice: nginx not found at {path:?}; skipping");
    None
}

/// A free port on 127.0.0.1 (bound and released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temporary nginx prefix and agent data directory; stops nginx on drop
/// (SIGQUIT, then SIGKILL after 3 s).
pub(crate) struct Env {
    /// Holds the temporary directory until the end of the test.
    _dir: tempfile::TempDir,
    pub(crate) config: RuntimeConfig,
    /// The port the test's virtual hosts listen on.
    pub(crate) port: u16,
}

impl Env {
    pub(crate) fn new() -> Option<Env> {
        let binary = nginx_binary()?;
        let dir = tempfile::tempdir().unwrap();
        let mut config = RuntimeConfig::new(
            binary,
            dir.path().join("prefix"),
            dir.path().join("data"),
            NginxMode::Standalone,
        );
        config.listen_address = Some("127.0.0.1".parse().unwrap());
        config.status_port = free_port();
        config.worker_shutdown_timeout_secs = 5;
        config.stop_timeout = Duration::from_secs(5);
        Some(Env {
            _dir: dir,
            config,
            port: free_port(),
        })
    }

    pub(crate) fn master_pid(&self) -> Option<i32> {
        read_pid(Path::new(&self.config.layout.pid_file))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let Some(pid) = self.master_pid() else {
            return;
        };
        let pid = Pid::from_raw(pid);
        if kill(pid, Signal::SIGQUIT).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if kill(pid, None).is_err() || is_zombie(pid.as_raw()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// A configuration with one virtual host on `port` answering `200 body`.
pub(crate) fn update(version: i64, port: u16, body: &str) -> ConfigUpdate {
    let mut custom = BTreeMap::new();
    custom.insert("return".to_owned(), format!("200 {body}"));
    ConfigUpdate {
        config_id: format!("cfg-{version}"),
        version,
        virtual_hosts: vec![VirtualHostConfig {
            id: Uuid::from_u128(1),
            spec: VirtualHostSpec {
                name: "app".to_owned(),
                server_name: "app.test".to_owned(),
                listen_port: port,
                ssl_enabled: false,
                ssl_certificate_id: None,
                http2_enabled: false,
                http3_enabled: false,
                locations: vec![Location {
                    path: "/".to_owned(),
                    modifier: None,
                    upstream_id: None,
                    proxy_pass: None,
                    root: None,
                    index: None,
                    custom_headers: Vec::new(),
                    rewrite_rules: Vec::new(),
                    custom_directives: custom,
                }],
                custom_directives: BTreeMap::new(),
            },
        }],
        ..ConfigUpdate::default()
    }
}

/// `update` plus a TLS virtual host whose certificate is not a valid
/// certificate (the generator accepts the PEM markers; nginx refuses it).
pub(crate) fn update_with_bad_certificate(version: i64, port: u16, tls_port: u16) -> ConfigUpdate {
    let mut u = update(version, port, "ok");
    let cert_id = Uuid::from_u128(7);
    let mut tls = u.virtual_hosts[0].clone();
    tls.id = Uuid::from_u128(2);
    tls.spec.name = "tls".to_owned();
    tls.spec.server_name = "tls.test".to_owned();
    tls.spec.listen_port = tls_port;
    tls.spec.ssl_enabled = true;
    tls.spec.ssl_certificate_id = Some(cert_id);
    u.virtual_hosts.push(tls);
    u.certificates.insert(
        cert_id.to_string(),
        CertificateBundle {
            id: cert_id,
            domain: "tls.test".to_owned(),
            certificate_pem:
                "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
                    .to_owned(),
            private_key_pem:
                "-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5\n-----END PRIVATE KEY-----\n".to_owned(),
            expires_at: chrono::Utc::now() + chrono::Duration::days(30),
        },
    );
    u
}

/// One HTTP/1.0 GET on 127.0.0.1:`port` with `Host: host`; the status and
/// body, or `None` on any transport error.
pub(crate) fn http_get(port: u16, host: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Every file under `dir` (following the `live` link), by relative path.
pub(crate) fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The rendered files of `update` for `runtime`, by path.
pub(crate) fn rendered(runtime: &NginxRuntime, update: &ConfigUpdate) -> BTreeMap<String, Vec<u8>> {
    nxmesh_core::generator::render(update, runtime.render_options())
        .unwrap()
        .files
        .into_iter()
        .map(|f| (f.path, f.bytes))
        .collect()
}

/// What the [`Inject`] hook does on the next apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Nothing.
    None,
    /// Append text to a file of the staged tree.
    Append(&'static str, String),
    /// Cut a file of the staged tree before its last `}`.
    TruncateLastBrace(&'static str),
    /// Delete the staged files whose path ends with this suffix.
    DeleteSuffix(&'static str),
    /// Stop the apply at this step, as if the agent were killed there.
    AbortAt(ApplyStep),
}

/// A fault-injection hook driven by the test.
#[derive(Debug)]
pub(crate) struct Inject(pub(crate) Mutex<Fault>);

impl Inject {
    pub(crate) fn set(&self, f: Fault) {
        *self.0.lock().unwrap() = f;
    }
}

impl ApplyHook for Inject {
    fn at(&self, step: ApplyStep, tree: &Path) -> Result<(), HookAbort> {
        match &*self.0.lock().unwrap() {
            Fault::Append(file, text) if step == ApplyStep::Staged => {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(tree.join(file))
                    .unwrap();
                f.write_all(text.as_bytes()).unwrap();
                Ok(())
            }
            Fault::TruncateLastBrace(file) if step == ApplyStep::Staged => {
                let path = tree.join(file);
                let text = std::fs::read_to_string(&path).unwrap();
                let cut = text.rfind('}').unwrap();
                std::fs::write(&path, &text[..cut]).unwrap();
                Ok(())
            }
            Fault::DeleteSuffix(suffix) if step == ApplyStep::Staged => {
                for (rel, _) in read_tree(tree) {
                    if rel.ends_with(suffix) {
                        std::fs::remove_file(tree.join(rel)).unwrap();
                    }
                }
                Ok(())
            }
            Fault::AbortAt(s) if *s == step => Err(HookAbort),
            _ => Ok(()),
        }
    }
}
