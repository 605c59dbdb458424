//! Certificates end to end: a master (REST app, agent service, certificate
//! service) in process, the real agent library with the real nginx runtime,
//! and for ACME Debian's Pebble and a BIND 9 (`named`) started by the test.
//!
//! - self-signed and uploaded certificates are served by nginx after apply,
//!   their keys written with mode 0600; an upload whose key does not match
//!   is refused with a field error;
//! - an ACME certificate is issued through HTTP-01 answered by the fleet,
//!   and nginx serves it with a chain that verifies against Pebble's root;
//!   a forced renewal replaces it while a client keeps requesting over
//!   HTTPS, without a failed request; a challenge that cannot be reached
//!   ends `failed` with the CA's reason while the previous certificate is
//!   still served; the database holds no plaintext private key;
//! - a wildcard certificate is issued through DNS-01 (RFC 2136 + TSIG into
//!   BIND, which Pebble queries).
//!
//! Under `CI=true` a missing nginx, pebble or named fails these tests;
//! elsewhere they print a notice and return.

#![allow(clippy::print_stderr)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::Method;
use base64::Engine as _;
use nxmesh_agent_lib::health::RuntimeHealth;
use nxmesh_agent_lib::nginx::NginxMode;
use nxmesh_agent_lib::{
    AgentConfig, AgentIdentity, BackoffConfig, CancellationToken, Handlers, NginxRuntime,
    RuntimeConfig,
};
use nxmesh_core::event::EventPayload;
use nxmesh_core::model::DeploymentMode;
use nxmesh_core::transport::EventSubscriber as _;
use nxmesh_server::acme::dns::{Rfc2136, TsigKey};
use nxmesh_server::acme::schedule::RenewalPolicy;
use nxmesh_server::acme::{AcmeConfig, CertificateService};
use nxmesh_server::auth::TokenKeys;
use nxmesh_server::db::SeaStore;
use nxmesh_server::grpc::{AgentService, AgentServiceSettings};
use nxmesh_server::secrets::SecretBox;
use nxmesh_server::{ApiSettings, AppState, agent_tls, bootstrap, http};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use uuid::Uuid;

mod common;
use common::{Rest, id};

const ADMIN_EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery staple";
/// The test zone; BIND answers 127.0.0.1 for every name in it.
const ZONE: &str = "nxmesh.test";
const DEADLINE: Duration = Duration::from_secs(60);

// ---- Components ----

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A binary the test needs: `$var`, else `default`. Under `CI=true` its
/// absence fails the test; otherwise the test prints a notice and returns.
fn binary(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var(var).map_or_else(|_| PathBuf::from(default), PathBuf::from);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !ci(),
        "{default} is required under CI=true (looked at {path:?}; set {var})"
    );
    eprintln!("notice: {path:?} not found; skipping (set {var})");
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process the test started, stopped (by its pid) on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    /// Waits until `port` on 127.0.0.1 accepts connections.
    async fn wait_for(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{:?} exited ({status}): {}",
                    self.log,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nothing listens on port {port}; log: {:?}", self.log);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BIND 9 on a loopback port, authoritative for [`ZONE`] (every name
/// 127.0.0.1) and accepting updates signed with its TSIG key.
struct Bind {
    _proc: Proc,
    port: u16,
    key: TsigKey,
}

async fn start_bind(named: &Path, dir: &Path) -> Bind {
    let dir = dir.join("bind");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let secret: Vec<u8> = Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
    let zone_file = dir.join("zone.db");
    std::fs::write(
        &zone_file,
        format!(
            "$ORIGIN {ZONE}.\n$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n\
             @ IN NS ns\nns IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n"
        ),
    )
    .unwrap();
    let d = dir.display();
    let conf = dir.join("named.conf");
    std::fs::write(
        &conf,
        format!(
            "options {{ directory \"{d}\"; listen-on port {port} {{ 127.0.0.1; }}; \
             listen-on-v6 {{ none; }}; pid-file \"{d}/named.pid\"; \
             session-keyfile \"{d}/session.key\"; recursion no; \
             dnssec-validation no; allow-query {{ any; }}; }};\n\
             controls {{ }};\n\
             key \"nxmesh-acme\" {{ algorithm hmac-sha256; secret \"{b64}\"; }};\n\
             zone \"{ZONE}\" {{ type primary; file \"{}\"; \
             allow-update {{ key \"nxmesh-acme\"; }}; }};\n",
            zone_file.display()
        ),
    )
    .unwrap();
    let mut proc = Proc::spawn(
        Command::new(named).arg("-g").arg("-c").arg(&conf),
        dir.join("named.log"),
    );
    proc.wait_for(port).await;
    Bind {
        _proc: proc,
        port,
        key: TsigKey {
            name: "nxmesh-acme".into(),
            algorithm: "hmac-sha256".into(),
            secret,
        },
    }
}

/// Pebble with a TLS certificate made by the test, validating HTTP-01 on
/// `http_port` and resolving names with the test's BIND.
struct Pebble {
    _proc: Proc,
    directory: String,
    management: u16,
    /// The CA of Pebble's own HTTPS (not of what it issues).
    tls_ca: PathBuf,
}

async fn start_pebble(pebble: &Path, dir: &Path, http_port: u16, dns_port: u16) -> Pebble {
    let dir = dir.join("pebble");
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pebble test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    let tls_ca = dir.join("tls-ca.pem");
    std::fs::write(&tls_ca, ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let (api, management) = (free_port(), free_port());
    let config = json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{api}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("cert.pem"),
        "privateKey": dir.join("key.pem"),
        "httpPort": http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let mut proc = Proc::spawn(
        Command::new(pebble)
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            // Every order validates afresh, and no nonce is refused at
            // random: the test is about the fleet, not retries.
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0"),
        dir.join("pebble.log"),
    );
    proc.wait_for(api).await;
    proc.wait_for(management).await;
    Pebble {
        _proc: proc,
        directory: format!("https://127.0.0.1:{api}/dir"),
        management,
        tls_ca,
    }
}

impl Pebble {
    /// The root of the chains Pebble issues, from its management port.
    async fn root(&self) -> String {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&self.tls_ca).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .build()
            .unwrap();
        client
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The master in process over a fresh SQLite database, with its agent
/// service on a TLS socket and, when `acme` is given, the ACME scheduler.
struct Master {
    rest: Rest,
    state: AppState,
    grpc_addr: SocketAddr,
    ca_file: PathBuf,
    db_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where a master keeps its data when it shares a database with others:
/// the PostgreSQL URL and the directory of the keys they share.
struct Shared {
    url: String,
    keys: PathBuf,
}

impl Master {
    async fn start(acme: Option<AcmeConfig>) -> Master {
        Master::start_on(acme, None).await
    }

    /// A master over `shared`'s database and keys (one of several masters),
    /// or over a fresh SQLite database of its own.
    async fn start_on(acme: Option<AcmeConfig>, shared: Option<&Shared>) -> Master {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().unwrap();
        let db_file = dir.path().join("db.sqlite");
        let url = match shared {
            Some(s) => s.url.clone(),
            None => format!("sqlite://{}?mode=rwc", db_file.display()),
        };
        let keys_dir = shared.map_or_else(|| dir.path().to_owned(), |s| s.keys.clone());
        let store = Arc::new(SeaStore::connect(&url).await.unwrap());
        bootstrap::ensure_first_admin(
            store.as_ref(),
            dir.path(),
            Some(ADMIN_EMAIL),
            Some(PASSWORD),
        )
        .await
        .unwrap();
        let keys = TokenKeys::load_or_create(&keys_dir.join("jwt.pem"), 900).unwrap();
        let secrets = SecretBox::load_or_create(&keys_dir.join("secret.keys")).unwrap();
        let settings = ApiSettings {
            rate_limit_per_minute: 100_000,
            ..ApiSettings::default()
        };
        let state = AppState::new(store.clone(), keys, secrets, settings);
        // On PostgreSQL the masters of one database share events and
        // rollouts, as the binary does.
        let state = match store.cluster(Duration::from_secs(6)) {
            Some(cluster) => state.in_cluster(cluster),
            None => state,
        };
        let service = match acme {
            Some(config) => {
                CertificateService::spawn(state.clone(), store, config, std::future::pending()).0
            }
            None => CertificateService::without_acme(store),
        };
        let state = state.with_certificates(service);

        let identity =
            agent_tls::load_or_create(dir.path(), None, &["127.0.0.1".into(), "localhost".into()])
                .unwrap();
        let ca_file = identity.ca_path.clone().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = listener.local_addr().unwrap();
        let service = AgentService::new(
            state.clone(),
            AgentServiceSettings {
                heartbeat_interval: Duration::from_secs(2),
                admissions_per_second: 1000,
            },
        );
        let tls = ServerTlsConfig::new().identity(Identity::from_pem(
            &identity.certificate_pem,
            &identity.key_pem,
        ));
        tokio::spawn(
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(service.into_server())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let rest = Rest::login(http::app(state.clone()), ADMIN_EMAIL, PASSWORD).await;
        Master {
            rest,
            state,
            grpc_addr,
            ca_file,
            db_file,
            _dir: dir,
        }
    }

    async fn vhost(&self, ws: Uuid, body: Value) -> Uuid {
        let v = self
            .ok(
                Method::POST,
                &format!("/v1/workspaces/{ws}/virtual-hosts"),
                Some(body),
                201,
            )
            .await;
        id(&v)
    }

    async fn certificate(&self, cert: Uuid) -> Value {
        self.get(&format!("/v1/certificates/{cert}")).await
    }

    /// The agent's desired version now.
    async fn desired(&self, agent: Uuid) -> i64 {
        self.get(&format!("/v1/agents/{agent}/config")).await["config"]["desired_version"]
            .as_i64()
            .unwrap_or(0)
    }

    /// Waits until the agent's desired version moved past `since` and the
    /// agent reports it applied.
    async fn converged(&self, agent: Uuid, since: i64) {
        let path = format!("/v1/agents/{agent}/config");
        eventually("the agent applied its newest configuration", || async {
            let c = self.get(&path).await["config"].clone();
            let desired = c["desired_version"].as_i64().unwrap_or(0);
            desired > since && c["applied_version"].as_i64() == Some(desired)
        })
        .await;
    }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An agent with the real nginx runtime (standalone nginx on loopback).
struct Agent {
    id: Uuid,
    runtime: NginxRuntime,
    data_dir: PathBuf,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
        // The nginx this test started stops with it (the tests run on the
        // multi-threaded runtime, where blocking here is allowed).
        let nginx = self.runtime.nginx();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async { nginx.stop(false, Duration::from_secs(3)).await })
        })
        .ok();
    }
}

impl Agent {
    /// Every configuration file nginx serves now, concatenated.
    fn live_text(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self.runtime.store().live()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "conf") {
                    out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
        }
        out
    }
}

async fn start_agent(master: &Master, ws: Uuid, nginx: PathBuf) -> Agent {
    let t = master
        .ok(
            Method::POST,
            &format!("/v1/workspaces/{ws}/agents/tokens"),
            Some(json!({"name": "edge-01", "labels": {}})),
            201,
        )
        .await;
    let agent_id: Uuid = t["agent_id"].as_str().unwrap().parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut rc = RuntimeConfig::new(
        nginx,
        dir.path().join("prefix"),
        data_dir.clone(),
        NginxMode::Standalone,
    );
    rc.listen_address = Some("127.0.0.1".parse().unwrap());
    rc.status_port = free_port();
    rc.worker_shutdown_timeout_secs = 5;
    let runtime = NginxRuntime::open(rc).await.unwrap();
    runtime.ensure_started().await.unwrap();
    let identity = AgentIdentity::new("edge-01", "127.0.0.1", DeploymentMode::Standalone);
    let mut config = AgentConfig::new(
        vec![format!("https://{}", master.grpc_addr)],
        dir.path().join("credential"),
        identity,
    );
    config.ca_file = Some(master.ca_file.clone());
    config.tls_server_name = Some("localhost".into());
    config.registration_token = Some(t["token"].as_str().unwrap().to_owned());
    config.backoff = BackoffConfig {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
        reset_after: Duration::from_secs(60),
    };
    let handlers = Handlers {
        applier: Arc::new(runtime.clone()),
        commands: Arc::new(runtime.clone()),
        health: Arc::new(RuntimeHealth::new(runtime.clone())),
        telemetry: None,
    };
    let stop = CancellationToken::new();
    tokio::spawn(nxmesh_agent_lib::run(config, handlers, stop.clone()));
    eventually("the agent is online", || async {
        master.get(&format!("/v1/agents/{agent_id}")).await["state"] == "online"
    })
    .await;
    Agent {
        id: agent_id,
        runtime,
        data_dir,
        stop,
        _dir: dir,
    }
}

/// An HTTPS client for `host` at 127.0.0.1:`port`: trusts only `root`
/// (PEM) or, with `None`, anything (the test then compares what it got).
fn https_client(host: &str, port: u16, root: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .resolve(host, SocketAddr::from(([127, 0, 0, 1], port)))
        .tls_built_in_root_certs(false)
        .tls_info(true)
        // A new connection per request: every request sees the
        // certificate nginx serves at that moment.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5));
    b = match root {
        Some(pem) => {
            b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        }
        None => b.danger_accept_invalid_certs(true),
    };
    b.build().unwrap()
}

/// One HTTPS GET: the body and the DER of the certificate served.
async fn fetch(client: &reqwest::Client, host: &str) -> Result<(String, Vec<u8>), reqwest::Error> {
    let res = client
        .get(format!("https://{host}/"))
        .send()
        .await?
        .error_for_status()?;
    let der = res
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
        .unwrap_or_default();
    Ok((res.text().await?, der))
}

fn serial(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.raw_serial_as_string()
}

fn first_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

/// Every `.key` file under `dir`, with its mode.
fn key_files(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "key") {
                out.push((p, meta.permissions().mode() & 0o777));
            }
        }
    }
    out
}

fn tls_vhost(name: &str, server_name: &str, port: u16, cert: Uuid, body: &str) -> Value {
    json!({
        "name": name, "server_name": server_name, "listen_port": port,
        "ssl_enabled": true, "ssl_certificate_id": cert,
        "locations": [{"path": "/", "custom_directives": {"return": format!("200 {body}")}}]
    })
}

fn plain_vhost(name: &str, server_name: &str, port: u16) -> Value {
    json!({
        "name": name, "server_name": server_name, "listen_port": port,
        "locations": [{"path": "/", "custom_directives": {"return": "200 plain"}}]
    })
}

/// Whether the SQLite files (database and write-ahead log) contain `needle`.
fn database_contains(db_file: &Path, needle: &[u8]) -> bool {
    let mut wal = db_file.as_os_str().to_owned();
    wal.push("-wal");
    [db_file.to_owned(), PathBuf::from(wal)]
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

// ---- Tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_and_uploaded_certificates_are_served_by_nginx() {
    let Some(nginx) = binary("NXMESH_NGINX", "/usr/sbin/nginx") else {
        return;
    };
    let master = Master::start(None).await;
    let ws = master.workspace().await;
    let agent = start_agent(&master, ws, nginx).await;
    let port = free_port();

    // Self-signed: issued by the master, served by nginx.
    let ss = master
        .ok(
            Method::POST,
            &format!("/v1/workspaces/{ws}/certificates"),
            Some(json!({"domain": "self.nxmesh.test", "provider": "self_signed"})),
            201,
        )
        .await;
    assert_eq!(ss["status"], "active");
    assert!(ss.get("private_key_pem").is_none() && ss.get("certificate_pem").is_none());
    let v = master.desired(agent.id).await;
    master
        .vhost(
            ws,
            tls_vhost("self", "self.nxmesh.test", port, id(&ss), "self"),
        )
        .await;
    master.converged(agent.id, v).await;
    let client = https_client("self.nxmesh.test", port, None);
    let (body, served) = fetch(&client, "self.nxmesh.test").await.unwrap();
    assert_eq!(body, "self");
    let (_, cert) = x509_parser::parse_x509_certificate(&served).unwrap();
    assert!(
        cert.subject().to_string().contains("self.nxmesh.test"),
        "{}",
        cert.subject()
    );

    // Uploaded: a chain from a CA of the test's; the client trusts only it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "upload test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["up.nxmesh.test".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();

    // A key that is not the certificate's is refused with a field error.
    let (status, body) = master
        .call(
            Method::POST,
            &format!("/v1/workspaces/{ws}/certificates"),
            Some(json!({
                "domain": "up.nxmesh.test", "provider": "custom",
                "certificate_pem": leaf.pem(), "private_key_pem": other_key.serialize_pem()
            })),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["error"]["details"][0]["field"], "private_key_pem",
        "{body}"
    );

    let up = master
        .ok(
            Method::POST,
            &format!("/v1/workspaces/{ws}/certificates"),
            Some(json!({
                "domain": "up.nxmesh.test", "provider": "custom",
                "certificate_pem": leaf.pem(), "private_key_pem": leaf_key.serialize_pem()
            })),
            201,
        )
        .await;
    let v = master.desired(agent.id).await;
    master
        .vhost(
            ws,
            tls_vhost("up", "up.nxmesh.test", port, id(&up), "uploaded"),
        )
        .await;
    master.converged(agent.id, v).await;
    let client = https_client("up.nxmesh.test", port, Some(&ca_cert.pem()));
    let (body, served) = fetch(&client, "up.nxmesh.test").await.unwrap();
    assert_eq!(body, "uploaded");
    assert_eq!(served, first_der(&leaf.pem()));

    // A forced renewal of the self-signed certificate reaches nginx.
    let before = serial(
        &fetch(
            &https_client("self.nxmesh.test", port, None),
            "self.nxmesh.test",
        )
        .await
        .unwrap()
        .1,
    );
    master
        .ok(
            Method::POST,
            &format!("/v1/certificates/{}/renew", id(&ss)),
            None,
            200,
        )
        .await;
    let (code, _) = master
        .call(
            Method::POST,
            &format!("/v1/certificates/{}/renew", id(&up)),
            None,
        )
        .await;
    assert_eq!(code, 409, "an upload is renewed by uploading");
    eventually(
        "nginx serves the renewed self-signed certificate",
        || async {
            let c = https_client("self.nxmesh.test", port, None);
            matches!(fetch(&c, "self.nxmesh.test").await, Ok((_, der)) if serial(&der) != before)
        },
    )
    .await;

    // Private keys on the agent: mode 0600, every one of them.
    let keys = key_files(&agent.data_dir);
    assert!(keys.len() >= 2, "{keys:?}");
    for (path, mode) in &keys {
        assert_eq!(*mode, 0o600, "{path:?}");
    }
    // And in the database: sealed, never plaintext.
    assert!(database_contains(&master.db_file, b"BEGIN CERTIFICATE"));
    assert!(!database_contains(&master.db_file, b"PRIVATE KEY"));
}

/// Pebble, BIND, a master with ACME and an agent with nginx serving a
/// plain-HTTP virtual host on Pebble's validation port.
struct AcmeWorld {
    // Dropped in this order: agent (nginx), master, CA, DNS.
    agent: Agent,
    master: Master,
    /// The master's ACME settings, for another master of the same world.
    config: AcmeConfig,
    pebble: Pebble,
    _bind: Bind,
    ws: Uuid,
    http_port: u16,
    _dir: tempfile::TempDir,
}

async fn acme_world() -> Option<AcmeWorld> {
    acme_world_on(None).await
}

/// [`acme_world`] with its master over `shared` (see [`Master::start_on`]).
async fn acme_world_on(shared: Option<&Shared>) -> Option<AcmeWorld> {
    let nginx = binary("NXMESH_NGINX", "/usr/sbin/nginx")?;
    let pebble_bin = binary("NXMESH_PEBBLE", "/usr/bin/pebble")?;
    let named = binary("NXMESH_NAMED", "/usr/sbin/named")?;
    let dir = tempfile::tempdir().unwrap();
    let bind = start_bind(&named, dir.path()).await;
    let http_port = free_port();
    let pebble = start_pebble(&pebble_bin, dir.path(), http_port, bind.port).await;
    let mut config = AcmeConfig::new(pebble.directory.clone());
    config.ca_root = Some(pebble.tls_ca.clone());
    config.contact = vec!["mailto:ops@nxmesh.test".into()];
    config.dns = Some(Arc::new(
        Rfc2136::new(
            SocketAddr::from(([127, 0, 0, 1], bind.port)),
            ZONE,
            bind.key.clone(),
        )
        .unwrap(),
    ));
    config.scan_interval = Duration::from_millis(500);
    config.challenge_apply_timeout = Duration::from_secs(20);
    config.order_timeout = Duration::from_secs(30);
    // A failure is retried much later: the test decides when to retry.
    // The first failure already raises the expiry alert.
    config.policy = RenewalPolicy {
        retry_base: Duration::from_secs(3600),
        alert_after_failures: 1,
        ..RenewalPolicy::default()
    };
    let master = Master::start_on(Some(config.clone()), shared).await;
    let ws = master.workspace().await;
    let agent = start_agent(&master, ws, nginx).await;
    Some(AcmeWorld {
        agent,
        master,
        config,
        pebble,
        _bind: bind,
        ws,
        http_port,
        _dir: dir,
    })
}

impl AcmeWorld {
    /// Requests an ACME certificate and waits until it is `active`.
    async fn issue(&self, domain: &str) -> Uuid {
        let c = self
            .master
            .ok(
                Method::POST,
                &format!("/v1/workspaces/{}/certificates", self.ws),
                Some(json!({"domain": domain, "provider": "letsencrypt"})),
                201,
            )
            .await;
        assert_eq!(c["status"], "pending");
        let cert = id(&c);
        eventually("the ACME certificate is active", || async {
            let c = self.master.certificate(cert).await;
            assert_ne!(c["status"], "failed", "{c}");
            c["status"] == "active"
        })
        .await;
        cert
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_http01_issues_renews_without_failed_requests_and_keeps_serving_after_a_failure() {
    let Some(w) = acme_world().await else {
        return;
    };
    let m = &w.master;
    let host = format!("app.{ZONE}");
    let tls_port = free_port();
    let mut events = m.state.events.subscribe();

    // The name is served over plain HTTP on Pebble's validation port: the
    // challenge goes into that server block (and the port's catch-all).
    let v = m.desired(w.agent.id).await;
    let plain = m
        .vhost(w.ws, plain_vhost("app-http", &host, w.http_port))
        .await;
    m.converged(w.agent.id, v).await;
    let cert = w.issue(&host).await;
    let c = m.certificate(cert).await;
    assert!(
        c["expires_at"].is_string() && c["issued_at"].is_string(),
        "{c}"
    );
    assert!(c.get("private_key_pem").is_none());

    // nginx serves it, with a chain that verifies against Pebble's root.
    let v = m.desired(w.agent.id).await;
    m.vhost(w.ws, tls_vhost("app", &host, tls_port, cert, "hello"))
        .await;
    m.converged(w.agent.id, v).await;
    let root = w.pebble.root().await;
    let client = https_client(&host, tls_port, Some(&root));
    let (body, first) = fetch(&client, &host).await.unwrap();
    assert_eq!(body, "hello");
    let first_serial = serial(&first);
    // The challenges are withdrawn once the order is done.
    let live = w.agent.live_text();
    assert!(live.contains(&format!("server_name {host};")), "{live}");
    assert!(!live.contains("acme-challenge"), "{live}");

    // Forced renewal while a client keeps requesting: no failed request,
    // and the new certificate is served.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let serials = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let load = {
        let (stop, failures, requests, serials) = (
            stop.clone(),
            failures.clone(),
            requests.clone(),
            serials.clone(),
        );
        let (root, host) = (root.clone(), host.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new client per request: a resumed TLS session would
                // report the certificate of the session's first handshake.
                let client = https_client(&host, tls_port, Some(&root));
                match fetch(&client, &host).await {
                    Ok((body, der)) if body == "hello" => {
                        serials.lock().unwrap().insert(serial(&der));
                    }
                    Ok((body, _)) => {
                        eprintln!("unexpected body {body:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("{} request failed: {e:?}", chrono::Utc::now());
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                requests.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    eventually("the client is requesting", || async {
        requests.load(Ordering::Relaxed) > 5
    })
    .await;
    let renewed = m
        .ok(
            Method::POST,
            &format!("/v1/certificates/{cert}/renew"),
            None,
            202,
        )
        .await;
    assert_eq!(id(&renewed), cert);
    eventually("the renewed certificate is served", || async {
        serials.lock().unwrap().iter().any(|s| *s != first_serial)
    })
    .await;
    // Some more requests on the new certificate, then stop.
    let seen = requests.load(Ordering::Relaxed);
    eventually("more requests after the switch", || async {
        requests.load(Ordering::Relaxed) > seen + 5
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests during the renewal"
    );
    let (_, now) = fetch(&https_client(&host, tls_port, Some(&root)), &host)
        .await
        .unwrap();
    let renewed_serial = serial(&now);
    assert_ne!(renewed_serial, first_serial);

    // The events of the feed.
    let mut kinds = Vec::new();
    while let Ok(Ok(e)) =
        tokio::time::timeout(Duration::from_millis(200), events.next_event()).await
    {
        kinds.push(e.event.event_type());
    }
    assert!(kinds.contains(&"certificate.issued"), "{kinds:?}");
    assert!(kinds.contains(&"certificate.renewed"), "{kinds:?}");

    // A challenge that cannot be reached: nothing serves plain HTTP any
    // more. The renewal fails with the CA's reason; the previous
    // certificate is still served.
    let v = m.desired(w.agent.id).await;
    m.ok(
        Method::DELETE,
        &format!("/v1/virtual-hosts/{plain}"),
        None,
        204,
    )
    .await;
    m.converged(w.agent.id, v).await;
    let v = m.desired(w.agent.id).await;
    m.ok(
        Method::POST,
        &format!("/v1/certificates/{cert}/renew"),
        None,
        202,
    )
    .await;
    eventually("the renewal failed", || async {
        m.certificate(cert).await["status"] == "failed"
    })
    .await;
    let c = m.certificate(cert).await;
    let reason = c["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("urn:ietf:params:acme:error:connection")
            && reason.contains("acme-challenge"),
        "the CA's reason: {c}"
    );
    let (mut failed_event, mut expiring) = (None, None);
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(2), events.next_event()).await {
        match e.event.payload {
            EventPayload::CertificateFailed(f) => failed_event = Some(f),
            EventPayload::CertificateExpiring(x) => expiring = Some(x),
            _ => {}
        }
        if failed_event.is_some() && expiring.is_some() {
            break;
        }
    }
    let failed_event = failed_event.expect("a certificate.failed event");
    assert_eq!(failed_event.certificate_id, cert);
    assert_eq!(failed_event.error, reason);
    assert_eq!(failed_event.failures, 1);
    let expiring = expiring.expect("a certificate.expiring alert");
    assert_eq!(expiring.certificate_id, cert);
    assert_eq!(expiring.error, reason);
    m.converged(w.agent.id, v).await;
    let (body, still) = fetch(&https_client(&host, tls_port, Some(&root)), &host)
        .await
        .unwrap();
    assert_eq!(body, "hello");
    assert_eq!(
        serial(&still),
        renewed_serial,
        "the previous certificate keeps being served"
    );

    // Private keys: 0600 on the agent, sealed in the database.
    for (path, mode) in key_files(&w.agent.data_dir) {
        assert_eq!(mode, 0o600, "{path:?}");
    }
    assert!(database_contains(&m.db_file, b"BEGIN CERTIFICATE"));
    assert!(!database_contains(&m.db_file, b"PRIVATE KEY"));
    // The ACME account's credentials are sealed too (their JSON would name
    // `key_pkcs8`).
    assert!(!database_contains(&m.db_file, b"key_pkcs8"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_dns01_issues_a_wildcard_through_rfc2136() {
    let Some(w) = acme_world().await else {
        return;
    };
    let m = &w.master;
    let tls_port = free_port();
    let cert = w.issue(&format!("*.wild.{ZONE}")).await;
    let c = m.certificate(cert).await;
    assert_eq!(c["is_wildcard"], true, "{c}");
    assert_eq!(c["domain"], format!("wild.{ZONE}"));

    let host = format!("a.wild.{ZONE}");
    let v = m.desired(w.agent.id).await;
    m.vhost(w.ws, tls_vhost("wild", &host, tls_port, cert, "wildcard"))
        .await;
    m.converged(w.agent.id, v).await;
    let root = w.pebble.root().await;
    let (body, der) = fetch(&https_client(&host, tls_port, Some(&root)), &host)
        .await
        .unwrap();
    assert_eq!(body, "wildcard");
    let (_, served) = x509_parser::parse_x509_certificate(&der).unwrap();
    let names: Vec<String> = served
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        names.iter().any(|n| n.contains(&format!("*.wild.{ZONE}"))),
        "{names:?}"
    );
}

/// A fresh database on the test PostgreSQL server (`NXMESH_TEST_DATABASE_URL`,
/// which `scripts/test.sh` starts); `None` outside CI when there is none.
async fn postgres_database() -> Option<String> {
    use sea_orm::ConnectionTrait as _;
    let Ok(server) = std::env::var("NXMESH_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "NXMESH_TEST_DATABASE_URL is not set: this test needs PostgreSQL (scripts/test.sh starts one)"
        );
        eprintln!("NXMESH_TEST_DATABASE_URL not set; skipping outside CI");
        return None;
    };
    let admin = sea_orm::Database::connect(&server).await.unwrap();
    let name = format!("certs_{}", Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let base = server.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    Some(format!("{base}/{name}"))
}

/// Two masters on one PostgreSQL, both asked at once to renew the same
/// certificate: the lease lets exactly one of them renew it (issue 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_asked_at_once_renew_a_certificate_once() {
    let Some(url) = postgres_database().await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let shared = Shared {
        url,
        keys: keys.path().to_owned(),
    };
    let Some(w) = acme_world_on(Some(&shared)).await else {
        return;
    };
    let m = &w.master;
    let other = Master::start_on(Some(w.config.clone()), Some(&shared)).await;
    let host = format!("twice.{ZONE}");
    let v = m.desired(w.agent.id).await;
    m.vhost(w.ws, plain_vhost("twice-http", &host, w.http_port))
        .await;
    m.converged(w.agent.id, v).await;
    let cert = w.issue(&host).await;
    let issued = m.certificate(cert).await;

    // The feed of the first master sees the other's events too.
    let mut events = m.state.events.subscribe();
    let path = format!("/v1/certificates/{cert}/renew");
    let (a, b) = tokio::join!(
        m.call(Method::POST, &path, None),
        other.call(Method::POST, &path, None)
    );
    assert_eq!(a.0, 202, "{}", a.1);
    assert_eq!(b.0, 202, "{}", b.1);

    // One renewal, then long enough for a second one (an order takes a
    // few seconds against Pebble) to have shown up if it ran.
    let mut renewed = 0;
    let mut deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(Ok(e)) = tokio::time::timeout_at(deadline, events.next_event()).await {
        let about_cert = serde_json::to_value(&e.event)
            .ok()
            .and_then(|v| v["data"]["certificate_id"].as_str().map(str::to_owned))
            == Some(cert.to_string());
        if about_cert && e.event.event_type() == "certificate.renewed" {
            renewed += 1;
            if renewed == 1 {
                deadline = Instant::now() + Duration::from_secs(15);
            }
        }
    }
    assert_eq!(renewed, 1, "the certificate was renewed {renewed} times");
    let now = m.certificate(cert).await;
    assert_eq!(now["status"], "active", "{now}");
    assert_ne!(now["issued_at"], issued["issued_at"], "{now}");
    drop(other);
}

impl std::ops::Deref for Master {
    type Target = Rest;

    fn deref(&self) -> &Rest {
        &self.rest
    }
}
