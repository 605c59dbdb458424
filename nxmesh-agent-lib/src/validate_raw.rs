//! `ValidateConfig` on raw nginx text: the core parser and a directive
//! allowlist first, `nginx -t` in an isolated temporary prefix after.
//!
//! `nginx -t` is not a harmless syntax check: it loads modules
//! (`load_module`), runs embedded code at configuration time (`perl`,
//! `js_*`, `*_by_lua*`), reads included files from anywhere (`include`),
//! opens or creates log files and temporary directories, and reads
//! certificate files. Text from the wire is therefore parsed with the core
//! parser (strict: unknown directives, misplaced directives and wrong
//! argument counts are refused with nginx's own words) and every directive
//! must be one the generator itself emits or one of the custom-directive
//! allowlist ([`nxmesh_core::validate::CUSTOM_DIRECTIVE_ALLOWLIST`]).
//! Directives that name a file (`pid`, `error_log`, `access_log`,
//! `ssl_certificate`, the temporary paths, …) are allowed only with a
//! relative path without `..`, which nginx resolves inside the temporary
//! prefix. `include` is refused everywhere. Only then does `nginx -t` run,
//! with `-p` and `-e` in a fresh temporary directory that is removed
//! afterwards.
//!
//! The text is a complete main configuration file (`events`, `http`, …),
//! as `nginx -c` reads it.

use std::path::Path;

use nxmesh_core::generator::RenderOptions;
use nxmesh_core::parser::{self, DirectiveTable, Node, ParseOptions};
use nxmesh_core::validate::CUSTOM_DIRECTIVE_ALLOWLIST;

use crate::nginx::{self, NginxError, NginxPaths};

/// The directives the generator emits that are safe under `nginx -t` with
/// any arguments: they neither load code nor touch files at configuration
/// time. Sorted, for binary search.
const CORE_DIRECTIVES: &[&str] = &[
    "add_header",
    "allow",
    "default_type",
    "deny",
    "events",
    "http",
    "http2",
    "index",
    "ip_hash",
    "keepalive",
    "keepalive_requests",
    "keepalive_timeout",
    "least_conn",
    "listen",
    "location",
    "log_format",
    "proxy_http_version",
    "proxy_pass",
    "proxy_set_header",
    "return",
    "rewrite",
    "root",
    "sendfile",
    "server",
    "server_name",
    "server_tokens",
    "ssl_ciphers",
    "ssl_prefer_server_ciphers",
    "ssl_protocols",
    "ssl_reject_handshake",
    "ssl_session_cache",
    "ssl_session_tickets",
    "ssl_session_timeout",
    "stub_status",
    "tcp_nopush",
    "types",
    "upstream",
    "worker_connections",
    "worker_processes",
    "worker_rlimit_nofile",
    "worker_shutdown_timeout",
];

/// The directives the generator emits whose first argument is a file or
/// directory that `nginx -t` opens, creates or reads. Sorted.
const PATH_DIRECTIVES: &[&str] = &[
    "access_log",
    "client_body_temp_path",
    "error_log",
    "fastcgi_temp_path",
    "pid",
    "proxy_temp_path",
    "scgi_temp_path",
    "ssl_certificate",
    "ssl_certificate_key",
    "uwsgi_temp_path",
];

/// Blocks whose entries are data (`mime/type ext ...;`), not directives.
const DATA_BLOCKS: &[&str] = &["types"];

/// One reason the text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct Refusal {
    /// The line of the offending directive, when there is one.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// Why [`validate`] did not accept the text.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The parser or the allowlist refused it; `nginx -t` did not run.
    #[error("refused before nginx -t: {}", join(.0))]
    Refused(Vec<Refusal>),
    /// `nginx -t` refused it (nginx's own text) or could not be run.
    #[error(transparent)]
    Nginx(NginxError),
    /// The temporary prefix could not be prepared.
    #[error("cannot prepare a temporary nginx prefix")]
    Io(#[source] std::io::Error),
}

fn join(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks raw text without running anything: the core parser for the
/// nginx version of `opts`, strict, then the allowlist. Every problem
/// found is returned, each with its line.
pub fn check(text: &str, opts: &RenderOptions) -> Result<(), Vec<Refusal>> {
    let parse_opts = ParseOptions {
        table: opts
            .directive_table()
            .unwrap_or_else(DirectiveTable::latest),
        strict: true,
        check: true,
        recover: true,
        single_file: true,
        ignore: Vec::new(),
    };
    let file = match parser::parse_str("nginx.conf", text, &parse_opts) {
        Ok(f) => f,
        Err(e) => {
            return Err(vec![Refusal {
                line: e.line,
                message: e.message,
            }]);
        }
    };
    let mut refusals: Vec<Refusal> = file
        .errors
        .iter()
        .map(|e| Refusal {
            line: e.line,
            message: e.message.clone(),
        })
        .collect();
    walk(&file.nodes, false, &mut refusals);
    refusals.sort_by_key(|r| r.line);
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals)
    }
}

fn walk(nodes: &[Node<'_>], data: bool, out: &mut Vec<Refusal>) {
    for node in nodes {
        let Node::Directive(d) = node else {
            continue;
        };
        let name = d.name();
        let line = Some(d.line());
        let refuse = |out: &mut Vec<Refusal>, message: String| out.push(Refusal { line, message });
        if name == "include" {
            refuse(
                out,
                "\"include\" is not allowed: it reads files from outside the text".to_owned(),
            );
            continue;
        }
        if data {
            // A data entry (`text/html html;`); its name is a value.
            continue;
        }
        if PATH_DIRECTIVES.binary_search(&&*name).is_ok() {
            if let Some(path) = d.args.first().map(|a| a.value()) {
                let off = matches!(&*name, "access_log") && path == "off";
                if !off && !relative_path(&path) {
                    refuse(
                        out,
                        format!(
                            "\"{name}\" must name a relative path without \"..\" (it is \
                             resolved in the validation's temporary prefix), not {path:?}"
                        ),
                    );
                }
            }
        } else if CORE_DIRECTIVES.binary_search(&&*name).is_err()
            && CUSTOM_DIRECTIVE_ALLOWLIST
                .binary_search_by(|(n, _)| (*n).cmp(&name))
                .is_err()
        {
            refuse(
                out,
                format!(
                    "directive \"{name}\" is not allowed (only the directives NxMesh \
                     generates and its custom-directive allowlist are)"
                ),
            );
            continue;
        }
        if let Some(block) = &d.block {
            walk(block, DATA_BLOCKS.contains(&&*name), out);
        }
    }
}

/// A relative path of plain characters, without `..` or a scheme
/// (`syslog:`, `memory:`, `data:`).
fn relative_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        && !p.split('/').any(|c| c == "..")
}

/// Validates raw text: [`check`], then `nginx -t` with `binary` in a fresh
/// temporary prefix (removed afterwards). Returns nginx's output.
pub async fn validate(
    text: &str,
    binary: &Path,
    opts: &RenderOptions,
) -> Result<String, ValidateError> {
    check(text, opts).map_err(ValidateError::Refused)?;
    let dir = tempfile_dir().map_err(ValidateError::Io)?;
    let prefix = dir.path().to_owned();
    let conf = prefix.join("nginx.conf");
    let t = text.to_owned();
    let c = conf.clone();
    let p = prefix.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        // The directories a generated configuration's relative paths use.
        std::fs::create_dir(p.join("logs"))?;
        std::fs::create_dir(p.join("temp"))?;
        std::fs::write(&c, t)
    })
    .await
    .map_err(|e| ValidateError::Io(std::io::Error::other(e)))?
    .map_err(ValidateError::Io)?;
    let paths = NginxPaths {
        binary: binary.to_owned(),
        prefix: prefix.clone(),
        conf: conf.clone(),
        pid_file: prefix.join("logs/nginx.pid"),
        error_log: prefix.join("logs/error.log"),
    };
    let result = nginx::test_config(&paths, &conf)
        .await
        .map_err(ValidateError::Nginx);
    drop(dir);
    result
}

/// A private temporary directory (0700), removed on drop.
fn tempfile_dir() -> std::io::Result<TempDir> {
    use std::os::unix::fs::DirBuilderExt as _;
    let path =
        std::env::temp_dir().join(format!("nxmesh-validate-{}", uuid::Uuid::new_v4().simple()));
    std::fs::DirBuilder::new().mode(0o700).create(&path)?;
    Ok(TempDir(path))
}

/// Removes its directory on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a validation prefix");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Vec<String> {
        match check(text, &RenderOptions::default()) {
            Ok(()) => Vec::new(),
            Err(r) => r.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn lists_are_sorted_and_disjoint() {
        assert!(CORE_DIRECTIVES.windows(2).all(|w| w[0] < w[1]));
        assert!(PATH_DIRECTIVES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            PATH_DIRECTIVES
                .iter()
                .all(|p| CORE_DIRECTIVES.binary_search(p).is_err())
        );
    }

    #[test]
    fn code_loading_and_unknown_directives_are_refused_with_their_line() {
        let r = refused("load_module modules/x.so;\nevents {}\nhttp {}\n");
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("line 1: directive \"load_module\" is not allowed"),
            "{r:?}"
        );
        let r = refused("events {}\nhttp {\n    frobnicate on;\n}\n");
        assert_eq!(r, ["line 3: unknown directive \"frobnicate\""]);
        let r = refused("events {}\nhttp {\n  include /etc/passwd;\n}\n");
        assert!(
            r[0].starts_with("line 3: \"include\" is not allowed"),
            "{r:?}"
        );
        let r = refused("events {}\nhttp { types { include /etc/x; } }\n");
        assert!(r[0].contains("\"include\" is not allowed"), "{r:?}");
        let r = refused("env SECRET;\nuser root;\nevents {}\nhttp {}\n");
        assert_eq!(r.len(), 2, "{r:?}");
        let r = refused("events {}\nhttp {\nerror_log /etc/cron.d/x;\n}\n");
        assert!(
            r[0].starts_with("line 3: \"error_log\" must name a relative path"),
            "{r:?}"
        );
        let r = refused("events {}\nhttp { access_log syslog:server=1.2.3.4; }\n");
        assert!(r[0].contains("relative path"), "{r:?}");
        let r = refused("events {}\nhttp { server { listen 80 }\n");
        assert!(!r.is_empty());
    }

    #[test]
    fn generated_style_text_with_relative_paths_passes() {
        let text = "worker_processes 1;\npid logs/nginx.pid;\nerror_log logs/error.log warn;\n\
                    events { worker_connections 64; }\n\
                    http {\n  types { text/html html; }\n  access_log off;\n\
                    proxy_temp_path temp/proxy;\n\
                    upstream app { least_conn; server 127.0.0.1:9000 down; keepalive 4; }\n\
                    server { listen 127.0.0.1:8080; server_name a.test;\n\
                    location / { proxy_pass http://app; gzip on; } }\n}\n";
        assert_eq!(refused(text), Vec::<String>::new());
    }

    /// Every directive of the generator's golden outputs is known here:
    /// allowed outright, allowed with a relative path, or `include`.
    #[test]
    fn every_generated_directive_is_known() {
        fn names(nodes: &[Node<'_>], data: bool, out: &mut Vec<String>) {
            for n in nodes {
                if let Node::Directive(d) = n {
                    if !data {
                        out.push(d.name().into_owned());
                    }
                    if let Some(b) = &d.block {
                        names(b, DATA_BLOCKS.contains(&&*d.name()), out);
                    }
                }
            }
        }
        let goldens = [
            include_str!("../../nxmesh-core/tests/it/golden/custom_directives.conf"),
            include_str!("../../nxmesh-core/tests/it/golden/headers_levels.conf"),
            include_str!("../../nxmesh-core/tests/it/golden/many_locations.conf"),
            include_str!("../../nxmesh-core/tests/it/golden/plain_http.conf"),
            include_str!("../../nxmesh-core/tests/it/golden/rewrites.conf"),
            include_str!("../../nxmesh-core/tests/it/golden/tls_http2_1_22.conf"),
            include_str!("../../nxmesh-core/tests/it/golden/upstream_algorithms.conf"),
        ];
        let mut all = Vec::new();
        for g in goldens {
            // Sections are `=== path ===` followed by the file.
            for section in g.split("\n=== ").skip(1) {
                let Some((path, body)) = section.split_once(" ===\n") else {
                    continue;
                };
                if !path.ends_with(".conf") {
                    continue;
                }
                let opts = ParseOptions {
                    check: false,
                    ..ParseOptions::default()
                };
                let f = parser::parse_str(path, body, &opts).unwrap();
                names(&f.nodes, false, &mut all);
            }
        }
        assert!(all.len() > 50, "{}", all.len());
        for n in all {
            let known = n == "include"
                || CORE_DIRECTIVES.binary_search(&n.as_str()).is_ok()
                || PATH_DIRECTIVES.binary_search(&n.as_str()).is_ok()
                || CUSTOM_DIRECTIVE_ALLOWLIST
                    .binary_search_by(|(x, _)| (*x).cmp(&n))
                    .is_ok();
            assert!(
                known,
                "the generator emits {n:?}, unknown to the raw-text check"
            );
        }
    }
}
