//! Import: a parsed nginx configuration back to the model, with a report of
//! everything that did not map. This is how an existing nginx joins the
//! fleet.
//!
//! Server blocks become virtual hosts, their locations become locations,
//! `upstream` blocks become upstreams, allowlisted directives become custom
//! directives. What the generator renders on its own (the main and `events`
//! settings, the `http` defaults, the status endpoint, the catch-all default
//! servers, HSTS, the proxy headers) is recognised and left out, so that
//! rendering an imported model and importing it again gives the same model.
//!
//! Ids are derived from content (SHA-256), so the same configuration always
//! imports to the same model. Certificates cannot be read here (no IO):
//! each `ssl_certificate` path gets an id, and [`Imported::certificate_files`]
//! says which files the caller must load into
//! [`crate::config::CertificateBundle`]s.
//!
//! Finally the import renders the candidate model with the generator and
//! drops (with a note) whatever the generator refuses, so an imported model
//! always renders.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{HSTS_VALUE, PROXY_HEADERS, PlannedContent, RenderOptions, plan};
use crate::config::{CertificateBundle, ConfigUpdate, UpstreamConfig, VirtualHostConfig};
use crate::lint::{Dir, expand};
use crate::model::{
    Header, LoadBalanceAlgorithm, Location, LocationModifier, RewriteFlag, RewriteRule,
    UpstreamServer, UpstreamSpec, VirtualHostSpec,
};
use crate::parser::Tree;
use crate::validate::{DirectiveContext, custom_directive_allowed};

/// Something of the configuration that is not in the imported model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportNote {
    /// The file.
    pub file: String,
    /// The line (0 when the note is about the whole configuration).
    pub line: u32,
    /// What was not mapped (`server example.com:80`, `directive gzip`, …).
    pub item: String,
    /// Why.
    pub reason: String,
}

/// The files of one certificate referenced by the imported configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFiles {
    /// `ssl_certificate` path as written.
    pub certificate: String,
    /// `ssl_certificate_key` path as written.
    pub key: String,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// The model. `certificates` is empty: see `certificate_files`.
    pub update: ConfigUpdate,
    /// Certificate ids used by `ssl_certificate_id`, with the files to load.
    pub certificate_files: BTreeMap<Uuid, CertificateFiles>,
    /// What did not map.
    pub report: Vec<ImportNote>,
}

/// Imports a parsed configuration (main file `files[0]` with its includes).
/// `opts` is the instance the model will be rendered for: whatever its
/// generator refuses is dropped with a note.
pub fn import(tree: &Tree<'_>, opts: &RenderOptions) -> Imported {
    let mut cx = Cx {
        tree,
        report: Vec::new(),
        certs: BTreeMap::new(),
    };
    let root = match tree.files.first() {
        Some(main) => expand(tree, 0, &main.nodes, 0),
        None => Vec::new(),
    };
    let generated = generated_http_names(opts);
    let mut update = ConfigUpdate {
        config_id: "imported".to_owned(),
        ..ConfigUpdate::default()
    };
    let mut upstream_names = BTreeMap::new();
    for top in &root {
        if top.name != "http" {
            if !matches!(
                top.name.as_str(),
                "events" | "worker_processes" | "pid" | "error_log" | "user"
            ) {
                cx.note(
                    top,
                    format!("directive {}", top.name),
                    "only the http block is imported",
                );
            }
            continue;
        }
        // Upstreams first: locations refer to them by name.
        for d in top.find("upstream") {
            if let Some(u) = cx.upstream(d) {
                upstream_names.insert(u.spec.name.clone(), u.id);
                update.upstreams.push(u);
            }
        }
        let http_psh = top
            .find("proxy_set_header")
            .next()
            .map(|d| d.args.join(" "));
        for d in top.children() {
            match d.name.as_str() {
                "upstream" => {}
                "server" => {
                    if let Some(vh) = cx.server(d, &upstream_names, http_psh.as_deref()) {
                        update.virtual_hosts.push(vh);
                    }
                }
                name if generated.contains(name) => {}
                name => {
                    cx.custom(
                        d,
                        DirectiveContext::Http,
                        &mut update.global_settings.nginx_directives,
                        &format!("http {name}"),
                    );
                }
            }
        }
    }
    assign_ids(&mut update);
    let mut imported = Imported {
        update,
        certificate_files: cx.certs,
        report: cx.report,
    };
    make_renderable(&mut imported, opts);
    // What the generator refused may have changed the content.
    assign_ids(&mut imported.update);
    imported
}

/// Content ids for virtual hosts; equal servers get an occurrence number.
fn assign_ids(update: &mut ConfigUpdate) {
    let mut seen: BTreeMap<Uuid, u32> = BTreeMap::new();
    for vh in &mut update.virtual_hosts {
        let json = serde_json::to_string(&vh.spec).unwrap_or_default();
        let base = content_id("vhost", &json);
        let n = seen.entry(base).or_insert(0);
        vh.id = if *n == 0 {
            base
        } else {
            content_id("vhost", &format!("{json}#{n}"))
        };
        *n += 1;
    }
}

/// A deterministic version-8 UUID from `kind` and `content`.
fn content_id(kind: &str, content: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update([0])
        .chain_update(content)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Names the generator renders itself in the `http` block.
fn generated_http_names(opts: &RenderOptions) -> BTreeSet<&'static str> {
    let empty = ConfigUpdate::default();
    let mut names = BTreeSet::new();
    if let Ok(p) = plan(&empty, opts)
        && let Some(PlannedContent::Config(main)) = p.files.first().map(|f| &f.content)
    {
        for s in main.iter().filter(|s| s.name == "http") {
            names.extend(s.block.iter().flatten().map(|s| s.name));
        }
    }
    names.insert("include");
    names
}

struct Cx<'t, 'a> {
    tree: &'t Tree<'a>,
    report: Vec<ImportNote>,
    certs: BTreeMap<Uuid, CertificateFiles>,
}

/// An argument that a custom directive value can carry: the model joins
/// arguments with spaces and refuses quotes and nginx syntax.
fn plain_arg(a: &str) -> bool {
    !a.is_empty()
        && !a.contains(|c: char| c.is_whitespace() || c.is_control() || "\"';{}#\\".contains(c))
}

impl Cx<'_, '_> {
    fn note(&mut self, d: &Dir, item: String, reason: &str) {
        self.report.push(ImportNote {
            file: self
                .tree
                .files
                .get(d.file)
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            line: d.line,
            item,
            reason: reason.to_owned(),
        });
    }

    fn custom(
        &mut self,
        d: &Dir,
        ctx: DirectiveContext,
        map: &mut BTreeMap<String, String>,
        item: &str,
    ) -> bool {
        if !custom_directive_allowed(&d.name, ctx) {
            self.note(
                d,
                item.to_owned(),
                "not in the custom directive allowlist for this context",
            );
        } else if d.block.is_some() || !d.args.iter().all(|a| plain_arg(a)) {
            self.note(
                d,
                item.to_owned(),
                "arguments need quoting, which custom directives cannot carry",
            );
        } else if map.contains_key(&d.name) {
            self.note(
                d,
                item.to_owned(),
                "a custom directive can be given once per block",
            );
        } else {
            map.insert(d.name.clone(), d.args.join(" "));
            return true;
        }
        false
    }

    fn upstream(&mut self, d: &Dir) -> Option<UpstreamConfig> {
        let name = d.arg(0).to_owned();
        let mut algorithm = LoadBalanceAlgorithm::RoundRobin;
        let mut servers = Vec::new();
        let mut all_weighted = true;
        let mut keepalive = 0;
        for c in d.children() {
            match c.name.as_str() {
                "least_conn" => algorithm = LoadBalanceAlgorithm::LeastConnections,
                "ip_hash" => algorithm = LoadBalanceAlgorithm::IpHash,
                "keepalive" => match c.arg(0).parse() {
                    Ok(n) => keepalive = n,
                    Err(_) => self.note(c, format!("upstream {name} keepalive"), "not a number"),
                },
                "server" => {
                    let mut s = UpstreamServer {
                        address: c.arg(0).to_owned(),
                        weight: 1,
                        backup: false,
                        down: false,
                        max_fails: crate::model::DEFAULT_MAX_FAILS,
                        fail_timeout: crate::model::DEFAULT_FAIL_TIMEOUT,
                    };
                    let mut weighted = false;
                    for p in c.args.iter().skip(1) {
                        let (k, v) = p.split_once('=').unwrap_or((p.as_str(), ""));
                        let ok = match k {
                            "weight" => v
                                .parse()
                                .map(|w| {
                                    s.weight = w;
                                    weighted = true;
                                })
                                .is_ok(),
                            "max_fails" => v.parse().map(|n| s.max_fails = n).is_ok(),
                            "fail_timeout" => seconds(v).map(|n| s.fail_timeout = n).is_some(),
                            "backup" if v.is_empty() => {
                                s.backup = true;
                                true
                            }
                            "down" if v.is_empty() => {
                                s.down = true;
                                true
                            }
                            _ => false,
                        };
                        if !ok {
                            self.note(
                                c,
                                format!("upstream {name} server parameter {p}"),
                                "not supported by the model",
                            );
                        }
                    }
                    all_weighted &= weighted;
                    servers.push(s);
                }
                other => self.note(
                    c,
                    format!("upstream {name} {other}"),
                    "not supported by the model",
                ),
            }
        }
        if algorithm == LoadBalanceAlgorithm::RoundRobin && all_weighted && !servers.is_empty() {
            algorithm = LoadBalanceAlgorithm::WeightedRoundRobin;
        }
        Some(UpstreamConfig {
            id: content_id("upstream", &name),
            spec: UpstreamSpec {
                name,
                algorithm,
                servers,
                health_check: None,
                keepalive_connections: keepalive,
            },
        })
    }

    fn cert_id(&mut self, certificate: &str, key: &str) -> Uuid {
        let stem = certificate.rsplit('/').next().unwrap_or(certificate);
        let stem = stem.split('.').next().unwrap_or(stem);
        let id = stem
            .parse::<Uuid>()
            .unwrap_or_else(|_| content_id("certificate", certificate));
        self.certs.entry(id).or_insert_with(|| CertificateFiles {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
        });
        id
    }

    #[allow(clippy::too_many_lines)]
    fn server(
        &mut self,
        d: &Dir,
        upstreams: &BTreeMap<String, Uuid>,
        http_psh: Option<&str>,
    ) -> Option<VirtualHostConfig> {
        let names: Vec<&str> = d
            .find("server_name")
            .flat_map(|s| s.args.iter())
            .map(String::as_str)
            .filter(|n| !n.is_empty())
            .collect();
        let is_status = d
            .find("location")
            .any(|l| l.find("stub_status").next().is_some());
        let only_returns = d.children().iter().all(|c| {
            matches!(
                c.name.as_str(),
                "listen"
                    | "ssl_reject_handshake"
                    | "add_header"
                    | "http2"
                    | "return"
                    | "server_name"
            ) || (c.name == "location" && c.children().iter().all(|x| x.name == "return"))
        });
        let label = format!(
            "server {}",
            if names.is_empty() {
                "(no name)".to_owned()
            } else {
                names.join(" ")
            }
        );
        if is_status {
            self.note(d, label, "status endpoint: the generator renders its own");
            return None;
        }
        if names.is_empty() && only_returns {
            self.note(
                d,
                label,
                "catch-all default server: the generator renders one per port",
            );
            return None;
        }
        let listens: Vec<&Dir> = d.find("listen").collect();
        let tcp: Vec<&Dir> = listens
            .iter()
            .copied()
            .filter(|l| !l.args.iter().any(|a| a == "quic"))
            .collect();
        let chosen = tcp
            .iter()
            .copied()
            .find(|l| l.args.iter().any(|a| a == "ssl"))
            .or_else(|| tcp.first().copied());
        let (port, ssl, mut http2) = match chosen {
            None => (80, false, false),
            Some(l) => {
                let addr = l.arg(0);
                let port_str = if addr.bytes().all(|b| b.is_ascii_digit()) {
                    addr
                } else {
                    addr.rsplit_once(':').map_or("80", |(_, p)| p)
                };
                let Ok(port) = port_str.parse::<u16>() else {
                    self.note(
                        l,
                        format!("{label} listen {addr}"),
                        "only TCP ports can be imported",
                    );
                    return None;
                };
                if !(addr.bytes().all(|b| b.is_ascii_digit())
                    || addr.starts_with("*:")
                    || addr.starts_with("0.0.0.0:"))
                {
                    self.note(
                        l,
                        format!("{label} listen {addr}"),
                        "the address is dropped: NxMesh listens on the agent's configured address",
                    );
                }
                for p in l.args.iter().skip(1) {
                    if !matches!(p.as_str(), "ssl" | "http2" | "default_server" | "default") {
                        self.note(
                            l,
                            format!("{label} listen parameter {p}"),
                            "not supported by the model",
                        );
                    }
                }
                (
                    port,
                    l.args.iter().any(|a| a == "ssl"),
                    l.args.iter().any(|a| a == "http2"),
                )
            }
        };
        for l in &tcp {
            if chosen.is_some_and(|c| !std::ptr::eq(c, *l)) {
                self.note(
                    l,
                    format!("{label} listen {}", l.arg(0)),
                    "a virtual host has one port; only one listen is kept",
                );
            }
        }
        let http3 = listens.iter().any(|l| l.args.iter().any(|a| a == "quic"));
        http2 |= d.find("http2").any(|h| h.arg(0) == "on");

        let mut spec = VirtualHostSpec {
            // The display name is not rendered: the first server name is what
            // a re-import sees, so it is the imported name.
            name: names
                .first()
                .map_or_else(|| "_".to_owned(), |n| (*n).to_owned()),
            server_name: if names.is_empty() {
                "_".to_owned()
            } else {
                names.join(" ")
            },
            listen_port: port,
            ssl_enabled: ssl,
            ssl_certificate_id: None,
            http2_enabled: http2,
            http3_enabled: http3,
            locations: Vec::new(),
            custom_directives: BTreeMap::new(),
        };
        if names.is_empty() {
            self.note(
                d,
                format!("{label} server_name"),
                "imported as _ (the model needs a name)",
            );
        }
        let alt_svc = format!("h3=\":{port}\"; ma=86400");
        let is_generated_header = |h: &Dir| {
            let always = h.arg(2) == "always" && h.args.len() == 3;
            always
                && ((ssl && h.arg(0) == "Strict-Transport-Security" && h.arg(1) == HSTS_VALUE)
                    || (http3 && h.arg(0) == "Alt-Svc" && h.arg(1) == alt_svc))
        };
        let mut server_headers = Vec::new();
        let mut server_root = None;
        let mut server_index = None;
        let mut certificate = None;
        let mut key = None;
        for c in d.children() {
            match c.name.as_str() {
                "listen" | "server_name" | "http2" | "location" => {}
                "ssl_certificate" => certificate = Some(c.arg(0).to_owned()),
                "ssl_certificate_key" => key = Some(c.arg(0).to_owned()),
                "add_header" => {
                    if !is_generated_header(c) {
                        server_headers.push(header(c));
                    }
                }
                "root" => server_root = Some(c.arg(0).to_owned()),
                "index" => server_index = Some(c.args.join(" ")),
                name => {
                    let item = format!("{label} {name}");
                    self.custom(
                        c,
                        DirectiveContext::Server,
                        &mut spec.custom_directives,
                        &item,
                    );
                }
            }
        }
        if ssl {
            match (certificate, key) {
                (Some(cert), Some(key)) => {
                    spec.ssl_certificate_id = Some(self.cert_id(&cert, &key))
                }
                _ => self.note(
                    d,
                    format!("{label} ssl"),
                    "TLS without ssl_certificate and ssl_certificate_key",
                ),
            }
        }
        let inherited_psh = spec
            .custom_directives
            .get("proxy_set_header")
            .cloned()
            .or(http_psh.map(str::to_owned));
        for l in d.find("location") {
            if let Some(loc) = self.location(
                l,
                &label,
                upstreams,
                inherited_psh.as_deref(),
                &is_generated_header,
            ) {
                spec.locations.push(loc);
            }
        }
        // Inheritance, made explicit: the model has no server-level root,
        // index or headers.
        for loc in &mut spec.locations {
            if loc.root.is_none() && loc.proxy_pass.is_none() && loc.upstream_id.is_none() {
                loc.root.clone_from(&server_root);
            }
            if loc.index.is_none() {
                loc.index.clone_from(&server_index);
            }
            if loc.custom_headers.is_empty() {
                loc.custom_headers.clone_from(&server_headers);
            }
        }
        if spec.locations.is_empty() && (server_root.is_some() || !server_headers.is_empty()) {
            self.note(
                d,
                format!("{label} root/add_header"),
                "server-level root, index and headers are kept only through locations",
            );
        }
        Some(VirtualHostConfig {
            id: Uuid::nil(),
            spec,
        })
    }

    fn location(
        &mut self,
        d: &Dir,
        server: &str,
        upstreams: &BTreeMap<String, Uuid>,
        inherited_psh: Option<&str>,
        is_generated_header: &dyn Fn(&Dir) -> bool,
    ) -> Option<Location> {
        let (modifier, path) = match d.args.as_slice() {
            [p] => (None, p.clone()),
            [m, p] => {
                let m = match m.as_str() {
                    "=" => LocationModifier::Exact,
                    "^~" => LocationModifier::PreferentialPrefix,
                    "~" => LocationModifier::Regex,
                    "~*" => LocationModifier::RegexCaseInsensitive,
                    _ => {
                        self.note(
                            d,
                            format!("{server} location {}", d.args.join(" ")),
                            "unknown modifier",
                        );
                        return None;
                    }
                };
                (Some(m), p.clone())
            }
            _ => {
                self.note(d, format!("{server} location"), "unexpected arguments");
                return None;
            }
        };
        let label = format!("{server} location {path}");
        let mut loc = Location {
            path,
            modifier,
            upstream_id: None,
            proxy_pass: None,
            root: None,
            index: None,
            custom_headers: Vec::new(),
            rewrite_rules: Vec::new(),
            custom_directives: BTreeMap::new(),
        };
        let proxied = d.find("proxy_pass").next().is_some();
        let mut complete = true;
        for c in d.children() {
            match c.name.as_str() {
                "proxy_pass" => {
                    let url = c.arg(0);
                    match url.strip_prefix("http://").and_then(|n| upstreams.get(n)) {
                        Some(id) => loc.upstream_id = Some(*id),
                        None => loc.proxy_pass = Some(url.to_owned()),
                    }
                }
                "root" => loc.root = Some(c.arg(0).to_owned()),
                "index" => loc.index = Some(c.args.join(" ")),
                "add_header" => {
                    if !is_generated_header(c) {
                        loc.custom_headers.push(header(c));
                    }
                }
                "rewrite" => {
                    let flag = match c.arg(2) {
                        "" => None,
                        "last" => Some(RewriteFlag::Last),
                        "break" => Some(RewriteFlag::Break),
                        "redirect" => Some(RewriteFlag::Redirect),
                        "permanent" => Some(RewriteFlag::Permanent),
                        other => {
                            self.note(c, format!("{label} rewrite flag {other}"), "unknown flag");
                            complete = false;
                            continue;
                        }
                    };
                    loc.rewrite_rules.push(RewriteRule {
                        pattern: c.arg(0).to_owned(),
                        replacement: c.arg(1).to_owned(),
                        flag,
                    });
                }
                "proxy_http_version" if proxied && c.arg(0) == "1.1" => {}
                "proxy_set_header"
                    if proxied
                        && (PROXY_HEADERS.iter().any(|(n, v)| {
                            c.args.len() == 2 && c.arg(0) == *n && c.arg(1) == *v
                        }) || inherited_psh.is_some_and(|p| p == c.args.join(" "))) => {}
                "location" => {
                    self.note(
                        c,
                        format!("{label} nested location"),
                        "nested locations are not supported by the model",
                    );
                    complete = false;
                }
                name => {
                    let item = format!("{label} {name}");
                    complete &= self.custom(
                        c,
                        DirectiveContext::Location,
                        &mut loc.custom_directives,
                        &item,
                    );
                }
            }
        }
        if !complete {
            // A location without its handler or access rules would serve
            // something else (PHP sources instead of FastCGI, files without
            // authentication): leave it out rather than import it changed.
            self.note(
                d,
                label,
                "not imported: it has directives the model cannot express (see above)",
            );
            return None;
        }
        Some(loc)
    }
}

fn header(d: &Dir) -> Header {
    Header {
        name: d.arg(0).to_owned(),
        value: d.arg(1).to_owned(),
        always: d.arg(2) == "always",
    }
}

/// nginx time (`30`, `30s`, `2m`, `1h`) in seconds.
fn seconds(v: &str) -> Option<u32> {
    let (num, mult) = match v.as_bytes().last()? {
        b's' => (&v[..v.len() - 1], 1),
        b'm' => (&v[..v.len() - 1], 60),
        b'h' => (&v[..v.len() - 1], 3600),
        _ => (v, 1),
    };
    num.parse::<u32>().ok()?.checked_mul(mult)
}

/// Placeholder bundles so that the generator's check can run without the
/// certificate files.
fn placeholder_certs(update: &mut ConfigUpdate, ids: impl Iterator<Item = Uuid>) {
    for id in ids {
        update.certificates.insert(
            id.to_string(),
            CertificateBundle {
                id,
                domain: "import.invalid".to_owned(),
                certificate_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
                    .to_owned(),
                private_key_pem: "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"
                    .to_owned(),
                expires_at: chrono::DateTime::UNIX_EPOCH,
            },
        );
    }
}

/// Index `i` of a field path starting with `prefix[i]`.
fn index_after<'f>(field: &'f str, prefix: &str) -> Option<(usize, &'f str)> {
    let rest = field.strip_prefix(prefix)?.strip_prefix('[')?;
    let (n, rest) = rest.split_once(']')?;
    Some((n.parse().ok()?, rest.strip_prefix('.').unwrap_or(rest)))
}

/// Drops what the generator refuses until the model renders.
fn make_renderable(imp: &mut Imported, opts: &RenderOptions) {
    const ROUNDS: usize = 8;
    for round in 0..=ROUNDS {
        let mut check = imp.update.clone();
        placeholder_certs(&mut check, imp.certificate_files.keys().copied());
        let errors = match plan(&check, opts) {
            Ok(_) => return,
            Err(e) => e.errors,
        };
        let note = |item: String, reason: String| ImportNote {
            file: String::new(),
            line: 0,
            item,
            reason,
        };
        if round == ROUNDS {
            imp.report.push(note(
                "configuration".to_owned(),
                "could not be made renderable; nothing imported".to_owned(),
            ));
            imp.update.virtual_hosts.clear();
            imp.update.upstreams.clear();
            imp.update.global_settings = Default::default();
            return;
        }
        let mut drop_vhosts = BTreeSet::new();
        let mut drop_upstreams = BTreeSet::new();
        let mut drop_locations = BTreeSet::new();
        for e in errors {
            let reason = e.message.clone();
            let u = &mut imp.update;
            if let Some(name) = e.field.strip_prefix("global_settings.nginx_directives.") {
                let key = name.split('.').next().unwrap_or(name).to_owned();
                u.global_settings.nginx_directives.remove(&key);
                imp.report.push(note(format!("http {key}"), reason));
            } else if let Some((i, rest)) = index_after(&e.field, "upstreams") {
                drop_upstreams.insert(i);
                imp.report.push(note(
                    format!(
                        "upstream {}",
                        u.upstreams.get(i).map_or("", |x| x.spec.name.as_str())
                    ),
                    format!("{rest}: {reason}"),
                ));
            } else if let Some((i, rest)) = index_after(&e.field, "virtual_hosts") {
                let Some(vh) = u.virtual_hosts.get_mut(i) else {
                    continue;
                };
                let label = format!("server {}", vh.spec.server_name);
                if let Some(key) = rest.strip_prefix("custom_directives.") {
                    vh.spec
                        .custom_directives
                        .remove(key.split('.').next().unwrap_or(key));
                } else if rest == "http3_enabled" {
                    vh.spec.http3_enabled = false;
                } else if rest == "http2_enabled" {
                    vh.spec.http2_enabled = false;
                } else if let Some((j, lrest)) = index_after(rest, "locations") {
                    match (
                        lrest.strip_prefix("custom_directives."),
                        vh.spec.locations.get_mut(j),
                    ) {
                        (Some(key), Some(loc)) => {
                            loc.custom_directives
                                .remove(key.split('.').next().unwrap_or(key));
                        }
                        _ => {
                            drop_locations.insert((i, j));
                        }
                    }
                } else {
                    drop_vhosts.insert(i);
                }
                imp.report.push(note(format!("{label} {rest}"), reason));
            } else {
                imp.report.push(note(e.field.clone(), reason));
                drop_vhosts.extend(0..u.virtual_hosts.len());
            }
        }
        let u = &mut imp.update;
        for &(i, j) in drop_locations.iter().rev() {
            if let Some(vh) = u.virtual_hosts.get_mut(i)
                && j < vh.spec.locations.len()
            {
                vh.spec.locations.remove(j);
            }
        }
        for &i in drop_upstreams.iter().rev() {
            if i < u.upstreams.len() {
                let gone = u.upstreams.remove(i).id;
                for vh in &mut u.virtual_hosts {
                    for l in &mut vh.spec.locations {
                        if l.upstream_id == Some(gone) {
                            l.upstream_id = None;
                        }
                    }
                }
            }
        }
        for &i in drop_vhosts.iter().rev() {
            if i < u.virtual_hosts.len() {
                u.virtual_hosts.remove(i);
            }
        }
        let used: BTreeSet<Uuid> = u
            .virtual_hosts
            .iter()
            .filter_map(|v| v.spec.ssl_certificate_id)
            .collect();
        imp.certificate_files.retain(|id, _| used.contains(id));
    }
}
