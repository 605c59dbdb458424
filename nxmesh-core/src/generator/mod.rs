//! The nginx configuration generator: the only path from the model to nginx
//! text.
//!
//! [`render`] takes what an agent receives ([`ConfigUpdate`]) and the
//! [`RenderOptions`] of the instance (target nginx version, directory layout)
//! and returns the complete configuration tree as `(relative path, bytes)`
//! plus a SHA-256 checksum. It does no IO: writing the files, `nginx -t` and
//! the reload are the agent's job.
//!
//! Safety is by construction:
//! - the model's own validation runs first; the generator then adds its own
//!   checks (directive availability in the target version and context,
//!   argument counts, `$` references, control characters, token length,
//!   policy on custom directives) and refuses with
//!   [`ValidationErrors`] rather than emit anything doubtful;
//! - text is produced only from a tree of [`Stmt`]s whose names are
//!   generator constants or allowlisted directives, and every argument is
//!   quoted by [`crate::parser::quote`]; [`Plan::verify`] parses the text
//!   back and requires exactly that tree.
//!
//! Output is deterministic: upstreams and virtual hosts are ordered by id,
//! maps are `BTreeMap`s, and nothing depends on hashing or time.
//!
//! Open-source nginx has no active health checks (`health_check` is NGINX
//! Plus): the rendering configures passive checks through each server's
//! `max_fails`/`fail_timeout`, and the NxMesh agent runs the model's active
//! probe (`health_check.path` every `interval` seconds) itself.
//!
//! ```
//! use nxmesh_core::config::ConfigUpdate;
//! use nxmesh_core::generator::{self, RenderOptions};
//!
//! let rendered = generator::render(&ConfigUpdate::default(), &RenderOptions::default())?;
//! assert_eq!(rendered.files[0].path, "nginx.conf");
//! assert_eq!(rendered.checksum.len(), 64);
//! # Ok::<(), nxmesh_core::error::ValidationErrors>(())
//! ```

pub mod import;
mod options;
mod tree;
pub(crate) mod vars;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::config::{AcmeChallenge, ConfigUpdate, UpstreamConfig, VirtualHostConfig};
use crate::error::{FieldErrorCode as Code, ValidationErrors};
use crate::model::{Header, LoadBalanceAlgorithm, Location};
use crate::parser::table::{self, DirectiveTable};
use crate::validate::{self, CUSTOM_DIRECTIVE_ALLOWLIST, DirectiveContext, Validate};

pub use options::{DEFAULT_NGINX_VERSION, InvalidVersion, Layout, NginxVersion, RenderOptions};
pub use tree::{Mismatch, Stmt, verify_file, verify_nodes, write};

use tree::c;

/// nginx refuses a token of this many bytes or more (`NGX_CONF_BUFFER`).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// HSTS value the generator sends on TLS virtual hosts (one year).
pub const HSTS_VALUE: &str = "max-age=31536000";

/// The `log_format` name of the JSON access log.
pub const ACCESS_LOG_FORMAT: &str = "nxmesh_json";

/// The location of the status endpoint on `127.0.0.1:status_port`.
pub const STATUS_PATH: &str = "/nginx_status";

/// The JSON access-log line, one object per request (`escape=json`).
/// `request_time` is in seconds with millisecond resolution;
/// `request_length` is the bytes received for the request (request line,
/// headers and body), the agent's bytes-in counter.
pub const ACCESS_LOG_JSON: &str = concat!(
    r#"{"timestamp":"$time_iso8601","remote_addr":"$remote_addr","#,
    r#""method":"$request_method","uri":"$request_uri","protocol":"$server_protocol","#,
    r#""host":"$host","status":$status,"body_bytes_sent":$body_bytes_sent,"#,
    r#""request_length":$request_length,"#,
    r#""request_time":$request_time,"user_agent":"$http_user_agent","#,
    r#""referer":"$http_referer","request_id":"$request_id","#,
    r#""upstream_addr":"$upstream_addr","upstream_status":"$upstream_status","#,
    r#""upstream_response_time":"$upstream_response_time"}"#
);

/// TLS 1.2 AEAD suites with forward secrecy (TLS 1.3 suites are fixed by
/// OpenSSL).
const SSL_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// Request headers set on every proxied request; custom `proxy_set_header`
/// directives may not redefine them.
const PROXY_HEADERS: &[(&str, &str)] = &[
    ("Host", "$host"),
    ("X-Real-IP", "$remote_addr"),
    ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
    ("X-Forwarded-Proto", "$scheme"),
    ("Connection", ""),
];

/// [`PROXY_HEADERS`] as constant statement arguments.
const PROXY_HEADER_ARGS: [&[Cow<'static, str>]; 5] = [
    &[
        Cow::Borrowed(PROXY_HEADERS[0].0),
        Cow::Borrowed(PROXY_HEADERS[0].1),
    ],
    &[
        Cow::Borrowed(PROXY_HEADERS[1].0),
        Cow::Borrowed(PROXY_HEADERS[1].1),
    ],
    &[
        Cow::Borrowed(PROXY_HEADERS[2].0),
        Cow::Borrowed(PROXY_HEADERS[2].1),
    ],
    &[
        Cow::Borrowed(PROXY_HEADERS[3].0),
        Cow::Borrowed(PROXY_HEADERS[3].1),
    ],
    &[
        Cow::Borrowed(PROXY_HEADERS[4].0),
        Cow::Borrowed(PROXY_HEADERS[4].1),
    ],
];

/// Custom directives that may appear next to a generated directive of the
/// same name in one block (nginx allows them several times).
const REPEATABLE: &[&str] = &["add_trailer", "allow", "deny", "proxy_set_header"];

const FILE_HEADER: &str = "# Generated by NxMesh; the agent overwrites this file.\n";

/// One file of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile<'a> {
    /// Path relative to the configuration directory.
    pub path: String,
    /// What the file holds.
    pub content: PlannedContent<'a>,
}

/// The content of a planned file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedContent<'a> {
    /// nginx configuration text, from this tree.
    Config(Vec<Stmt<'a>>),
    /// A PEM certificate chain or private key, written as is.
    Pem(&'a str),
}

/// The rendered tree before it becomes text: what [`Plan::verify`] checks
/// the text against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// The files, `nginx.conf` first, then the rest by path.
    pub files: Vec<PlannedFile<'a>>,
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Path relative to the configuration directory (`nginx.conf`,
    /// `conf.d/nxmesh/servers/<id>.conf`, …).
    pub path: String,
    /// The content. Private keys are among the files: the caller writes
    /// them with mode 0600.
    pub bytes: Vec<u8>,
}

/// The rendered configuration tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The files, `nginx.conf` first, then the rest by path.
    pub files: Vec<RenderedFile>,
    /// Lowercase hex SHA-256 over every file's path and bytes.
    pub checksum: String,
}

impl Plan<'_> {
    /// The text of every file and the checksum.
    pub fn render(&self) -> Rendered {
        let files: Vec<RenderedFile> = self
            .files
            .iter()
            .map(|f| RenderedFile {
                path: f.path.clone(),
                bytes: file_text(&f.content).into_bytes(),
            })
            .collect();
        let checksum = checksum(&files);
        Rendered { files, checksum }
    }

    /// Renders every configuration file and parses it back with the core
    /// parser: the parsed tree must be exactly the planned one.
    pub fn verify(&self) -> Result<(), Mismatch> {
        for f in &self.files {
            if let PlannedContent::Config(stmts) = &f.content {
                tree::verify_file(&f.path, &file_text(&f.content), stmts)?;
            }
        }
        Ok(())
    }
}

fn file_text(content: &PlannedContent<'_>) -> String {
    match content {
        PlannedContent::Config(stmts) => {
            let mut out = String::with_capacity(64 * stmts.iter().map(Stmt::count).sum::<usize>());
            out.push_str(FILE_HEADER);
            tree::write(stmts, &mut out);
            out
        }
        PlannedContent::Pem(pem) => {
            let mut s = (*pem).to_owned();
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
    }
}

/// The checksum of a set of files: SHA-256 over, for each file in order,
/// its path, a NUL byte, its length as 8 little-endian bytes and its bytes.
pub fn checksum(files: &[RenderedFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update((f.bytes.len() as u64).to_le_bytes());
        h.update(&f.bytes);
    }
    let mut out = String::with_capacity(64);
    for b in h.finalize() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Renders `update` for the instance described by `opts`: validation, the
/// generator's own checks, then the text. Refuses with every field error
/// found; never emits part of a configuration.
pub fn render(update: &ConfigUpdate, opts: &RenderOptions) -> Result<Rendered, ValidationErrors> {
    // Each file's tree becomes text as soon as it is built, so the trees of
    // thousands of virtual hosts are never all alive at once.
    let mut files = Vec::with_capacity(file_count(update));
    build(update, opts, &mut |f: PlannedFile<'_>| {
        files.push(RenderedFile {
            bytes: file_text(&f.content).into_bytes(),
            path: f.path,
        });
    })?;
    files.sort_by(|a, b| file_order(&a.path, &b.path));
    let checksum = checksum(&files);
    Ok(Rendered { files, checksum })
}

/// Builds the plan of `update` (see [`render`]).
pub fn plan<'a>(
    update: &'a ConfigUpdate,
    opts: &RenderOptions,
) -> Result<Plan<'a>, ValidationErrors> {
    let mut files = Vec::with_capacity(file_count(update));
    build(update, opts, &mut |f| files.push(f))?;
    files.sort_by(|a, b| file_order(&a.path, &b.path));
    Ok(Plan { files })
}

fn file_count(update: &ConfigUpdate) -> usize {
    1 + update.upstreams.len() + update.virtual_hosts.len() + 2 * update.certificates.len()
}

/// `nginx.conf` first, then by path.
fn file_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a != "nginx.conf", a).cmp(&(b != "nginx.conf", b))
}

/// Validates and builds every file, handing each to `emit` as soon as it is
/// complete (in no particular order). Any error refuses the whole tree.
fn build<'a>(
    update: &'a ConfigUpdate,
    opts: &RenderOptions,
    emit: &mut dyn FnMut(PlannedFile<'a>),
) -> Result<(), ValidationErrors> {
    let mut errors = match update.validate() {
        Ok(()) => ValidationErrors::default(),
        Err(e) => e,
    };
    opts.check(&mut errors);
    let table = opts.directive_table();
    let mut g = Gen {
        opts,
        table,
        errors,
        cert_dir: opts.layout.cert_dir.trim_end_matches('/'),
        upstream_targets: update
            .upstreams
            .iter()
            .map(|u| (u.id, format!("http://{}", u.spec.name)))
            .collect(),
    };

    let mut upstreams: Vec<(usize, &UpstreamConfig)> =
        update.upstreams.iter().enumerate().collect();
    upstreams.sort_by_key(|(_, u)| u.id);
    let mut vhosts: Vec<(usize, &VirtualHostConfig)> =
        update.virtual_hosts.iter().enumerate().collect();
    vhosts.sort_by_key(|(_, v)| v.id);

    let managed = opts.layout.managed_dir.trim_end_matches('/');
    let mut includes = Vec::with_capacity(upstreams.len() + vhosts.len());

    let mut names = BTreeMap::new();
    for (i, u) in &upstreams {
        if let Some(first) = names.insert(u.spec.name.as_str(), *i) {
            g.errors.push(
                format!("upstreams[{i}].name"),
                Code::NotAllowed,
                format!("upstream name is also used by upstreams[{first}]"),
            );
        }
        let path = format!("{managed}/upstreams/{}.conf", u.id);
        includes.push(Stmt::simple("include", vec![Cow::Owned(path.clone())]));
        emit(PlannedFile {
            path,
            content: PlannedContent::Config(vec![g.upstream(*i, u)]),
        });
    }

    let http_custom = &update.global_settings.nginx_directives;
    let ports = g.ports(&vhosts);
    for (i, vh) in &vhosts {
        let server = g.server(*i, vh, update, http_custom, &ports);
        let path = format!("{managed}/servers/{}.conf", vh.id);
        includes.push(Stmt::simple("include", vec![Cow::Owned(path.clone())]));
        emit(PlannedFile {
            path,
            content: PlannedContent::Config(vec![server]),
        });
    }

    for cert in update.certificates.values() {
        emit(PlannedFile {
            path: format!("{}/{}.crt", g.cert_dir, cert.id),
            content: PlannedContent::Pem(&cert.certificate_pem),
        });
        emit(PlannedFile {
            path: format!("{}/{}.key", g.cert_dir, cert.id),
            content: PlannedContent::Pem(&cert.private_key_pem),
        });
    }

    let main = g.main_conf(
        http_custom,
        &update.global_settings.acme_challenges,
        &ports,
        includes,
    );
    emit(PlannedFile {
        path: "nginx.conf".to_owned(),
        content: PlannedContent::Config(main),
    });
    g.errors.into_result()
}

/// What the virtual hosts on one port share.
#[derive(Debug, Default)]
struct Port {
    ssl: bool,
    http2: bool,
    http3: bool,
}

struct Gen<'o> {
    opts: &'o RenderOptions,
    table: Option<DirectiveTable>,
    errors: ValidationErrors,
    cert_dir: &'o str,
    /// `http://name` of each upstream by id, for `proxy_pass`.
    upstream_targets: BTreeMap<uuid::Uuid, String>,
}

/// How `$` is treated in an argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dollar {
    /// Not compiled by the script engine: `$` is literal (server names,
    /// location paths, regular expressions, addresses).
    Literal,
    /// Compiled, and no variable is wanted: `$` is refused.
    Refused,
    /// Compiled: `$` must start a known variable; regex captures (`$1`)
    /// only where a regular expression provides them.
    Variables { captures: bool },
}

impl<'o> Gen<'o> {
    /// Checks one user value that becomes one argument.
    fn arg<'a>(&mut self, field: &dyn Fn() -> String, v: &'a str, dollar: Dollar) -> Cow<'a, str> {
        if v.chars().any(char::is_control) {
            self.errors.push(
                field(),
                Code::InvalidCharacter,
                "must not contain control characters (CR, LF, NUL, …)",
            );
        } else if v.len() * 2 + 2 >= MAX_TOKEN_BYTES
            && crate::parser::quote(v).len() >= MAX_TOKEN_BYTES
        {
            // Quoting at most doubles a value (plus two quotes), so only
            // long values need the exact length.
            self.errors.push(
                field(),
                Code::TooLong,
                format!("nginx refuses words of {MAX_TOKEN_BYTES} bytes or more"),
            );
        } else {
            match dollar {
                Dollar::Literal => {}
                Dollar::Refused if v.contains('$') => {
                    self.errors.push(
                        field(),
                        Code::InvalidCharacter,
                        "nginx would expand '$' here; it cannot be written literally",
                    );
                }
                Dollar::Refused => {}
                Dollar::Variables { captures } => {
                    if v.contains('$')
                        && let Err(msg) = vars::check(v, captures)
                    {
                        self.errors.push(field(), Code::InvalidCharacter, msg);
                    }
                }
            }
        }
        Cow::Borrowed(v)
    }

    fn listen_addr(&self, port: u16) -> String {
        match self.opts.listen_address {
            None => itoa_u16(port),
            Some(std::net::IpAddr::V4(a)) => format!("{a}:{port}"),
            Some(std::net::IpAddr::V6(a)) => format!("[{a}]:{port}"),
        }
    }

    fn http2_directive(&self) -> bool {
        self.opts.nginx_version >= NginxVersion::HTTP2_DIRECTIVE
    }

    /// Groups the virtual hosts by port and refuses combinations nginx
    /// cannot express: TLS and plain HTTP on one port, and (before 1.25.1,
    /// where `http2` is a per-port `listen` parameter) HTTP/2 on some
    /// virtual hosts of a port only.
    fn ports(&mut self, vhosts: &[(usize, &VirtualHostConfig)]) -> BTreeMap<u16, Port> {
        let mut ports: BTreeMap<u16, (usize, Port)> = BTreeMap::new();
        for (i, vh) in vhosts {
            let s = &vh.spec;
            if s.listen_port == self.opts.status_port {
                self.errors.push(
                    format!("virtual_hosts[{i}].listen_port"),
                    Code::NotAllowed,
                    format!("port {} is the agent's status endpoint", s.listen_port),
                );
            }
            if s.http3_enabled && self.opts.nginx_version < NginxVersion::HTTP3 {
                self.errors.push(
                    format!("virtual_hosts[{i}].http3_enabled"),
                    Code::NotAllowed,
                    format!(
                        "nginx {} has no HTTP/3 (QUIC needs 1.25.0 or later)",
                        self.opts.nginx_version
                    ),
                );
            }
            if s.http2_enabled && !s.ssl_enabled && !self.http2_directive() {
                self.errors.push(
                    format!("virtual_hosts[{i}].http2_enabled"),
                    Code::NotAllowed,
                    format!(
                        "before nginx 1.25.1, HTTP/2 without TLS would stop HTTP/1.1 on the port (target {})",
                        self.opts.nginx_version
                    ),
                );
            }
            let h2 = s.http2_enabled && s.ssl_enabled;
            match ports.get_mut(&s.listen_port) {
                None => {
                    ports.insert(
                        s.listen_port,
                        (
                            *i,
                            Port {
                                ssl: s.ssl_enabled,
                                http2: h2,
                                http3: s.http3_enabled,
                            },
                        ),
                    );
                }
                Some((first, p)) => {
                    if p.ssl != s.ssl_enabled {
                        self.errors.push(
                            format!("virtual_hosts[{i}].ssl_enabled"),
                            Code::NotAllowed,
                            format!(
                                "port {} is shared with virtual_hosts[{first}], which {} TLS",
                                s.listen_port,
                                if p.ssl { "serves" } else { "does not serve" }
                            ),
                        );
                    }
                    if p.http2 != h2 && !self.http2_directive() {
                        self.errors.push(
                            format!("virtual_hosts[{i}].http2_enabled"),
                            Code::NotAllowed,
                            format!(
                                "before nginx 1.25.1 HTTP/2 is set per port: port {} is shared with virtual_hosts[{first}]",
                                s.listen_port
                            ),
                        );
                    }
                    p.http2 |= h2;
                    p.http3 |= s.http3_enabled;
                }
            }
        }
        ports.into_iter().map(|(k, (_, p))| (k, p)).collect()
    }

    fn listen_args(&self, port: u16, p: &Port, default: bool) -> Vec<Cow<'static, str>> {
        let mut args = vec![Cow::Owned(self.listen_addr(port))];
        if default {
            args.push(c("default_server"));
        }
        if p.ssl {
            args.push(c("ssl"));
            if p.http2 && !self.http2_directive() {
                args.push(c("http2"));
            }
        }
        args
    }

    fn main_conf<'a>(
        &mut self,
        custom: &'a BTreeMap<String, String>,
        acme: &'a [AcmeChallenge],
        ports: &BTreeMap<u16, Port>,
        includes: Vec<Stmt<'a>>,
    ) -> Vec<Stmt<'a>> {
        let l = &self.opts.layout;
        let own = |s: &str| Cow::Owned(s.to_owned());
        let temp = l.temp_dir.trim_end_matches('/');
        let mut http = vec![
            Stmt::simple("default_type", vec![c("application/octet-stream")]),
            Stmt::block("types", vec![], mime_types()),
            Stmt::simple("sendfile", vec![c("on")]),
            Stmt::simple("tcp_nopush", vec![c("on")]),
            Stmt::simple("server_tokens", vec![c("off")]),
            Stmt::simple("keepalive_timeout", vec![c("65s")]),
            Stmt::simple(
                "client_body_temp_path",
                vec![Cow::Owned(format!("{temp}/client_body"))],
            ),
            Stmt::simple("proxy_temp_path", vec![Cow::Owned(format!("{temp}/proxy"))]),
            Stmt::simple(
                "fastcgi_temp_path",
                vec![Cow::Owned(format!("{temp}/fastcgi"))],
            ),
            Stmt::simple("uwsgi_temp_path", vec![Cow::Owned(format!("{temp}/uwsgi"))]),
            Stmt::simple("scgi_temp_path", vec![Cow::Owned(format!("{temp}/scgi"))]),
            Stmt::simple(
                "log_format",
                vec![c(ACCESS_LOG_FORMAT), c("escape=json"), c(ACCESS_LOG_JSON)],
            ),
            Stmt::simple("access_log", vec![own(&l.access_log), c(ACCESS_LOG_FORMAT)]),
            Stmt::simple("ssl_protocols", vec![c("TLSv1.2"), c("TLSv1.3")]),
            Stmt::simple("ssl_ciphers", vec![c(SSL_CIPHERS)]),
            Stmt::simple("ssl_prefer_server_ciphers", vec![c("off")]),
            Stmt::simple("ssl_session_cache", vec![c("shared:nxmesh_tls:10m")]),
            Stmt::simple("ssl_session_timeout", vec![c("1d")]),
            Stmt::simple("ssl_session_tickets", vec![c("off")]),
        ];
        let generated =
            |n: &str| http.iter().any(|s| s.name == n) || ["server", "include"].contains(&n);
        let mut extra = self.custom(custom, DirectiveContext::Http, &generated, false, &|k| {
            format!("global_settings.nginx_directives.{k}")
        });
        http.append(&mut extra);
        http.push(Stmt::block(
            "server",
            vec![],
            vec![
                Stmt::simple(
                    "listen",
                    vec![Cow::Owned(format!("127.0.0.1:{}", self.opts.status_port))],
                ),
                Stmt::simple("access_log", vec![c("off")]),
                Stmt::block(
                    "location",
                    vec![c("="), c(STATUS_PATH)],
                    vec![
                        Stmt::simple("stub_status", vec![]),
                        Stmt::simple("allow", vec![c("127.0.0.1")]),
                        Stmt::simple("deny", vec![c("all")]),
                    ],
                ),
                Stmt::block(
                    "location",
                    vec![c("/")],
                    vec![Stmt::simple("return", vec![c("404")])],
                ),
            ],
        ));
        // One catch-all default server per port, so that a request for an
        // unknown host never reaches a tenant's virtual host and every
        // listen socket has exactly one `default_server`.
        for (port, p) in ports {
            let mut body = vec![Stmt::simple("listen", self.listen_args(*port, p, true))];
            if p.http3 {
                // `reuseport` is a socket option: once per address:port.
                body.push(Stmt::simple(
                    "listen",
                    vec![
                        Cow::Owned(self.listen_addr(*port)),
                        c("quic"),
                        c("reuseport"),
                        c("default_server"),
                    ],
                ));
            }
            if p.ssl {
                if p.http2 && self.http2_directive() {
                    body.push(Stmt::simple("http2", vec![c("on")]));
                }
                body.push(Stmt::simple("ssl_reject_handshake", vec![c("on")]));
                body.push(Stmt::simple(
                    "add_header",
                    vec![c("Strict-Transport-Security"), c(HSTS_VALUE), c("always")],
                ));
                body.push(Stmt::block(
                    "location",
                    vec![c("/")],
                    vec![Stmt::simple("return", vec![c("421")])],
                ));
            } else {
                // ACME HTTP-01 validation requests may name a host no
                // virtual host serves yet; the catch-all answers them.
                body.extend(self.acme_locations(acme, &|_| true));
                body.push(Stmt::block(
                    "location",
                    vec![c("/")],
                    vec![Stmt::simple("return", vec![c("444")])],
                ));
            }
            http.push(Stmt::block("server", vec![], body));
        }
        http.extend(includes);
        vec![
            Stmt::simple("worker_processes", vec![c("auto")]),
            Stmt::simple("pid", vec![own(&l.pid_file)]),
            Stmt::simple("error_log", vec![own(&l.error_log), c("warn")]),
            Stmt::simple("worker_rlimit_nofile", vec![c("8192")]),
            Stmt::simple(
                "worker_shutdown_timeout",
                vec![Cow::Owned(format!(
                    "{}s",
                    self.opts.worker_shutdown_timeout_secs
                ))],
            ),
            Stmt::block(
                "events",
                vec![],
                vec![Stmt::simple("worker_connections", vec![c("4096")])],
            ),
            Stmt::block("http", vec![], http),
        ]
    }

    /// `location = /.well-known/acme-challenge/<token>` answering the key
    /// authorization, for each challenge `served` selects.
    fn acme_locations<'a>(
        &mut self,
        challenges: &'a [AcmeChallenge],
        served: &dyn Fn(&AcmeChallenge) -> bool,
    ) -> Vec<Stmt<'a>> {
        let mut out = Vec::new();
        for (k, ch) in challenges.iter().enumerate() {
            if !served(ch) {
                continue;
            }
            let f = |suffix: &str| format!("global_settings.acme_challenges[{k}].{suffix}");
            let path = self.arg(&|| f("token"), &ch.token, Dollar::Literal);
            let answer = self.arg(
                &|| f("key_authorization"),
                &ch.key_authorization,
                Dollar::Refused,
            );
            out.push(Stmt::block(
                "location",
                vec![
                    c("="),
                    Cow::Owned(format!("{}{path}", crate::config::ACME_CHALLENGE_PREFIX)),
                ],
                vec![
                    Stmt::simple("default_type", vec![c("text/plain")]),
                    Stmt::simple("return", vec![c("200"), answer]),
                ],
            ));
        }
        out
    }

    fn upstream<'a>(&mut self, i: usize, u: &'a UpstreamConfig) -> Stmt<'a> {
        let s = &u.spec;
        let f = |suffix: &str| format!("upstreams[{i}].{suffix}");
        let name = self.arg(&|| f("name"), &s.name, Dollar::Refused);
        let mut body = Vec::new();
        match s.algorithm {
            LoadBalanceAlgorithm::RoundRobin | LoadBalanceAlgorithm::WeightedRoundRobin => {}
            LoadBalanceAlgorithm::LeastConnections => body.push(Stmt::simple("least_conn", vec![])),
            LoadBalanceAlgorithm::IpHash => body.push(Stmt::simple("ip_hash", vec![])),
        }
        let weighted = s.algorithm == LoadBalanceAlgorithm::WeightedRoundRobin;
        for (j, srv) in s.servers.iter().enumerate() {
            let mut args = vec![self.arg(
                &|| f(&format!("servers[{j}].address")),
                &srv.address,
                Dollar::Refused,
            )];
            if weighted || srv.weight != 1 {
                args.push(Cow::Owned(format!("weight={}", srv.weight)));
            }
            if srv.max_fails != crate::model::DEFAULT_MAX_FAILS {
                args.push(Cow::Owned(format!("max_fails={}", srv.max_fails)));
            }
            if srv.fail_timeout != crate::model::DEFAULT_FAIL_TIMEOUT {
                args.push(Cow::Owned(format!("fail_timeout={}s", srv.fail_timeout)));
            }
            if srv.backup {
                args.push(c("backup"));
            }
            if srv.down {
                args.push(c("down"));
            }
            body.push(Stmt::simple("server", args));
        }
        if s.keepalive_connections > 0 {
            body.push(Stmt::simple(
                "keepalive",
                vec![Cow::Owned(s.keepalive_connections.to_string())],
            ));
        }
        Stmt::block("upstream", vec![name], body)
    }

    #[allow(clippy::too_many_lines)]
    fn server<'a>(
        &mut self,
        i: usize,
        vh: &'a VirtualHostConfig,
        update: &'a ConfigUpdate,
        http_custom: &'a BTreeMap<String, String>,
        ports: &BTreeMap<u16, Port>,
    ) -> Stmt<'a> {
        let s = &vh.spec;
        let f = |suffix: &str| format!("virtual_hosts[{i}].{suffix}");
        let port_h2 = ports.get(&s.listen_port).is_some_and(|p| p.http2);
        let port_info = Port {
            ssl: s.ssl_enabled,
            http2: port_h2,
            http3: false,
        };
        let mut body = vec![Stmt::simple(
            "listen",
            self.listen_args(s.listen_port, &port_info, false),
        )];
        if s.http3_enabled {
            body.push(Stmt::simple(
                "listen",
                vec![Cow::Owned(self.listen_addr(s.listen_port)), c("quic")],
            ));
        }
        let names: Vec<Cow<'a, str>> = s
            .server_name
            .split([' ', '\t'])
            .filter(|n| !n.is_empty())
            .map(|n| self.arg(&|| f("server_name"), n, Dollar::Literal))
            .collect();
        body.push(Stmt::simple("server_name", names));
        if s.http2_enabled && self.http2_directive() {
            body.push(Stmt::simple("http2", vec![c("on")]));
        }
        // Headers of the server level; a location with headers of its own
        // repeats them, because nginx inherits `add_header` only into
        // levels that define none.
        let mut server_headers: Vec<(&'static str, Cow<'a, str>)> = Vec::new();
        if s.ssl_enabled {
            if let Some(cert) = s.ssl_certificate_id
                && update.certificates.contains_key(&cert.to_string())
            {
                body.push(Stmt::simple(
                    "ssl_certificate",
                    vec![Cow::Owned(format!("{}/{cert}.crt", self.cert_dir))],
                ));
                body.push(Stmt::simple(
                    "ssl_certificate_key",
                    vec![Cow::Owned(format!("{}/{cert}.key", self.cert_dir))],
                ));
            }
            server_headers.push(("Strict-Transport-Security", c(HSTS_VALUE)));
        }
        if s.http3_enabled {
            server_headers.push((
                "Alt-Svc",
                Cow::Owned(format!("h3=\":{}\"; ma=86400", s.listen_port)),
            ));
        }
        for (name, value) in &server_headers {
            body.push(Stmt::simple(
                "add_header",
                vec![c(name), value.clone(), c("always")],
            ));
        }
        let generated =
            |n: &str| body.iter().any(|s| s.name == n) || ["location", "add_header"].contains(&n);
        let mut extra = self.custom(
            &s.custom_directives,
            DirectiveContext::Server,
            &generated,
            false,
            &|k| f(&format!("custom_directives.{k}")),
        );
        body.append(&mut extra);

        // `proxy_set_header` of the enclosing levels: a proxying location
        // sets its own, which would drop these (same inheritance rule).
        let inherited_psh = match s.custom_directives.get("proxy_set_header") {
            Some(v) => Some(v.as_str()),
            None => http_custom.get("proxy_set_header").map(String::as_str),
        };
        if !s.ssl_enabled {
            let served = |ch: &AcmeChallenge| {
                s.server_name
                    .split([' ', '\t'])
                    .any(|n| !n.is_empty() && ch.is_served_by(n))
            };
            body.extend(self.acme_locations(&update.global_settings.acme_challenges, &served));
        }
        for (j, l) in s.locations.iter().enumerate() {
            let loc = self.location(i, j, l, &server_headers, inherited_psh);
            body.push(loc);
        }
        Stmt::block("server", vec![], body)
    }

    fn location<'a>(
        &mut self,
        i: usize,
        j: usize,
        l: &'a Location,
        server_headers: &[(&'static str, Cow<'a, str>)],
        inherited_psh: Option<&'a str>,
    ) -> Stmt<'a> {
        let f = |suffix: &str| format!("virtual_hosts[{i}].locations[{j}].{suffix}");
        let mut args = Vec::new();
        if let Some(m) = l.modifier {
            args.push(c(m.as_nginx()));
        }
        args.push(self.arg(&|| f("path"), &l.path, Dollar::Literal));
        let uri_allowed = l.modifier.is_none_or(|m| !m.is_regex()) && !l.path.starts_with('@');
        // Captures exist after a regex location matched or a rewrite ran.
        let captures = l.modifier.is_some_and(|m| m.is_regex()) || !l.rewrite_rules.is_empty();

        let mut body = Vec::with_capacity(16);
        for (k, r) in l.rewrite_rules.iter().enumerate() {
            let mut a = vec![
                self.arg(
                    &|| f(&format!("rewrite_rules[{k}].pattern")),
                    &r.pattern,
                    Dollar::Literal,
                ),
                self.arg(
                    &|| f(&format!("rewrite_rules[{k}].replacement")),
                    &r.replacement,
                    Dollar::Variables { captures: true },
                ),
            ];
            if let Some(flag) = r.flag {
                a.push(c(flag.as_nginx()));
            }
            body.push(Stmt::simple("rewrite", a));
        }
        let mut proxied = false;
        if let Some(up) = l.upstream_id {
            if let Some(target) = self.upstream_targets.get(&up) {
                body.push(Stmt::simple("proxy_pass", vec![Cow::Owned(target.clone())]));
                proxied = true;
            }
        } else if let Some(url) = &l.proxy_pass {
            let authority_end = url.find("://").map_or(0, |p| p + 3);
            let has_uri = url[authority_end..].contains(['/', '?']);
            if has_uri && !uri_allowed {
                self.errors.push(
                    f("proxy_pass"),
                    Code::NotAllowed,
                    "a URL with a path cannot be used in a regular-expression or named location",
                );
            } else if has_uri && l.modifier != Some(crate::model::LocationModifier::Exact) {
                // NGINX-NOTES §4 `proxy_pass_normalized`: nginx decodes and
                // normalizes the URI before it replaces the location prefix,
                // so `%2F..%2F` reaches the backend as `/../`.
                self.errors.push(
                    f("proxy_pass"),
                    Code::NotAllowed,
                    "a URL with a path is only rendered for exact (=) locations: nginx would send the \
                     decoded, normalized URI; proxy to the URL without a path",
                );
            }
            body.push(Stmt::simple(
                "proxy_pass",
                vec![self.arg(&|| f("proxy_pass"), url, Dollar::Refused)],
            ));
            proxied = true;
        } else if let Some(root) = &l.root {
            body.push(Stmt::simple(
                "root",
                vec![self.arg(&|| f("root"), root, Dollar::Refused)],
            ));
        }
        if proxied {
            body.push(Stmt::fixed("proxy_http_version", &[Cow::Borrowed("1.1")]));
            for args in PROXY_HEADER_ARGS {
                body.push(Stmt::fixed("proxy_set_header", args));
            }
            if let Some(v) = inherited_psh
                && !l.custom_directives.contains_key("proxy_set_header")
            {
                // Already checked where it was defined.
                body.push(Stmt::simple("proxy_set_header", split_args(v)));
            }
        }
        if let Some(index) = &l.index {
            let files: Vec<Cow<'a, str>> = index
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(|x| self.arg(&|| f("index"), x, Dollar::Refused))
                .collect();
            body.push(Stmt::simple("index", files));
        }
        if !l.custom_headers.is_empty() {
            for (name, value) in server_headers {
                if !l
                    .custom_headers
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(name))
                {
                    body.push(Stmt::simple(
                        "add_header",
                        vec![c(name), value.clone(), c("always")],
                    ));
                }
            }
            for (k, h) in l.custom_headers.iter().enumerate() {
                body.push(self.header(&|| f(&format!("custom_headers[{k}]")), h, captures));
            }
        }
        let generated =
            |n: &str| body.iter().any(|s| s.name == n) || ["location", "add_header"].contains(&n);
        let mut extra = self.custom(
            &l.custom_directives,
            DirectiveContext::Location,
            &generated,
            captures,
            &|k| f(&format!("custom_directives.{k}")),
        );
        body.append(&mut extra);
        Stmt::block("location", args, body)
    }

    fn header<'a>(
        &mut self,
        field: &dyn Fn() -> String,
        h: &'a Header,
        captures: bool,
    ) -> Stmt<'a> {
        let name = self.arg(&|| format!("{}.name", field()), &h.name, Dollar::Refused);
        let value = self.arg(
            &|| format!("{}.value", field()),
            &h.value,
            Dollar::Variables { captures },
        );
        let mut args = vec![name, value];
        if h.always {
            args.push(c("always"));
        }
        Stmt::simple("add_header", args)
    }

    /// Custom directives: allowlisted names (the model's validation),
    /// known to the target version in this context with a valid argument
    /// count (the directive table), not clashing with what the generator
    /// emits in the block, and within the security policy.
    fn custom<'a>(
        &mut self,
        directives: &'a BTreeMap<String, String>,
        ctx: DirectiveContext,
        generated: &dyn Fn(&str) -> bool,
        captures: bool,
        field: &dyn Fn(&str) -> String,
    ) -> Vec<Stmt<'a>> {
        let mut out = Vec::new();
        if directives.is_empty() {
            return out;
        }
        let ctx_bit = match ctx {
            DirectiveContext::Http => table::CTX_HTTP_MAIN,
            DirectiveContext::Server => table::CTX_HTTP_SRV,
            DirectiveContext::Location => table::CTX_HTTP_LOC,
        };
        for (name, value) in directives {
            // The static name from the allowlist: user text never becomes a
            // directive name.
            let Some(&(static_name, _)) =
                CUSTOM_DIRECTIVE_ALLOWLIST.iter().find(|(n, _)| n == name)
            else {
                continue; // refused by the model's validation
            };
            if !validate::custom_directive_allowed(name, ctx) {
                continue;
            }
            let fname = || field(name);
            let args: Vec<Cow<'a, str>> = value
                .split([' ', '\t'])
                .filter(|a| !a.is_empty())
                .map(|a| self.arg(&fname, a, Dollar::Variables { captures }))
                .collect();
            if generated(static_name) && !REPEATABLE.contains(&static_name) {
                self.errors.push(
                    fname(),
                    Code::NotAllowed,
                    format!("{static_name} is set by the generator in this block"),
                );
                continue;
            }
            if let Some(table) = &self.table {
                match table.get(static_name) {
                    None => self.errors.push(
                        fname(),
                        Code::NotAllowed,
                        format!(
                            "nginx {} has no directive {static_name}",
                            self.opts.nginx_version
                        ),
                    ),
                    Some(usages) => {
                        // A FLAG directive takes `on` or `off` (nginx compares
                        // case-insensitively).
                        let flag_ok = args
                            .iter()
                            .all(|a| a.eq_ignore_ascii_case("on") || a.eq_ignore_ascii_case("off"));
                        let fits = usages.iter().any(|u| {
                            u.allowed_in(ctx_bit)
                                && u.check(args.len(), false).is_ok()
                                && (u.args & table::FLAG == 0 || flag_ok)
                        });
                        if !fits {
                            self.errors.push(
                                fname(),
                                Code::InvalidFormat,
                                format!("nginx {} does not accept {static_name} with these {} argument(s) here (count, or on/off for a flag)", self.opts.nginx_version, args.len()),
                            );
                        }
                    }
                }
            }
            if let Some(msg) = policy(static_name, &args, directives) {
                self.errors.push(fname(), Code::NotAllowed, msg);
            }
            out.push(Stmt::simple(static_name, args));
        }
        out
    }
}

/// Splits a custom directive's value into arguments (the model's validation
/// already refused quotes and other syntax, so spaces separate words).
fn split_args(v: &str) -> Vec<Cow<'_, str>> {
    v.split([' ', '\t'])
        .filter(|a| !a.is_empty())
        .map(Cow::Borrowed)
        .collect()
}

/// Security policy of custom directives beyond the allowlist: what the
/// linter would flag is refused here (NGINX-NOTES §4).
fn policy(name: &str, args: &[Cow<'_, str>], all: &BTreeMap<String, String>) -> Option<String> {
    let lower: Vec<String> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
    match name {
        "server_tokens" if lower.iter().any(|a| a != "off") => {
            Some("server_tokens other than off discloses the nginx version".to_owned())
        }
        "ssl_protocols" if lower.iter().any(|a| a != "tlsv1.2" && a != "tlsv1.3") => {
            Some("only TLSv1.2 and TLSv1.3 are allowed".to_owned())
        }
        "ssl_ciphers" => {
            let weak = [
                "rc4", "des", "md5", "null", "export", "sslv3", "psk", "srp", "cbc",
            ];
            let bad = lower.iter().flat_map(|a| a.split(':')).any(|suite| {
                !suite.starts_with(['!', '-']) && weak.iter().any(|w| suite.contains(w))
            });
            bad.then(|| "weak cipher suites are not allowed".to_owned())
        }
        "proxy_set_header" => {
            let header = lower.first().map(String::as_str).unwrap_or("");
            if PROXY_HEADERS
                .iter()
                .any(|(h, _)| h.eq_ignore_ascii_case(header))
            {
                Some(format!("{header} is set by the generator"))
            } else if lower.iter().any(|a| a.contains("$http_host")) {
                Some("$http_host is client-controlled (host spoofing); use $host".to_owned())
            } else {
                None
            }
        }
        "allow" if !all.contains_key("deny") => {
            Some("allow needs a deny in the same block (deny all)".to_owned())
        }
        "keepalive_requests"
            if lower
                .first()
                .and_then(|a| a.parse::<u64>().ok())
                .is_some_and(|n| n < 1000) =>
        {
            Some("keepalive_requests below 1000 hurts performance".to_owned())
        }
        _ => None,
    }
}

/// `port.to_string()` without the formatting machinery (hot when
/// rendering many virtual hosts).
fn itoa_u16(mut n: u16) -> String {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|&d| char::from(d)).collect()
}

fn mime_types<'a>() -> Vec<Stmt<'a>> {
    const TYPES: &[(&str, &[&str])] = &[
        ("text/html", &["html", "htm"]),
        ("text/css", &["css"]),
        ("text/plain", &["txt"]),
        ("text/xml", &["xml"]),
        ("application/javascript", &["js", "mjs"]),
        ("application/json", &["json"]),
        ("application/wasm", &["wasm"]),
        ("application/pdf", &["pdf"]),
        ("image/png", &["png"]),
        ("image/jpeg", &["jpg", "jpeg"]),
        ("image/gif", &["gif"]),
        ("image/svg+xml", &["svg"]),
        ("image/webp", &["webp"]),
        ("image/x-icon", &["ico"]),
        ("font/woff2", &["woff2"]),
    ];
    TYPES
        .iter()
        .map(|(t, exts)| Stmt::simple(t, exts.iter().map(|e| c(e)).collect()))
        .collect()
}
