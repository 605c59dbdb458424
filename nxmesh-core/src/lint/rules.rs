//! The rules. Each looks at one directive with its ancestors, or at one
//! block, and reports `(id, severity, message, file index, line)`.

use std::collections::BTreeMap;

use super::{Dir, Severity};

pub(crate) type Raw = (&'static str, Severity, String, usize, u32);

/// Headers whose loss through `add_header` redefinition is a security
/// problem (gixy raises these to medium).
const SECURITY_HEADERS: &[&str] = &[
    "content-security-policy",
    "cross-origin-embedder-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "permissions-policy",
    "referrer-policy",
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "x-xss-protection",
];

/// One year, the minimum HSTS max-age that is not flagged.
const HSTS_MIN_AGE: u64 = 31_536_000;

pub(crate) fn run(root: &[Dir], out: &mut Vec<Raw>) {
    let mut stack = Vec::new();
    walk(root, &mut stack, None, out);
    for http in root.iter().filter(|d| d.name == "http") {
        version_disclosure_absent(http, out);
        default_server_flag(http, out);
        for server in http.find("server") {
            hsts_header(http, server, out);
        }
    }
}

fn push(out: &mut Vec<Raw>, id: &'static str, sev: Severity, msg: String, d: &Dir) {
    out.push((id, sev, msg, d.file, d.line));
}

/// Header names of `add_header` directly in a block, lowercased.
fn own_headers(block: &[Dir]) -> Vec<String> {
    block
        .iter()
        .filter(|d| d.name == "add_header")
        .map(|d| d.arg(0).to_ascii_lowercase())
        .collect()
}

fn walk<'t>(
    dirs: &'t [Dir],
    stack: &mut Vec<&'t Dir>,
    parent_headers: Option<&[String]>,
    out: &mut Vec<Raw>,
) {
    for d in dirs {
        directive(d, stack, out);
        if let Some(block) = &d.block {
            let headers_level = matches!(
                d.name.as_str(),
                "http" | "server" | "location" | "if" | "limit_except"
            );
            let own = own_headers(block);
            let merge = block
                .iter()
                .any(|x| x.name == "add_header_inherit" && x.arg(0) == "merge");
            let mut effective = parent_headers.map(<[String]>::to_vec);
            if headers_level && !own.is_empty() {
                if let Some(parent) = parent_headers
                    && !merge
                {
                    let dropped: Vec<&String> =
                        parent.iter().filter(|h| !own.contains(h)).collect();
                    if !dropped.is_empty() {
                        let security = dropped
                            .iter()
                            .any(|h| SECURITY_HEADERS.contains(&h.as_str()));
                        let names: Vec<&str> = dropped.iter().map(|s| s.as_str()).collect();
                        push(
                            out,
                            "add_header_redefinition",
                            if security {
                                Severity::Medium
                            } else {
                                Severity::Low
                            },
                            format!(
                                "add_header here drops the parent level's headers ({}); repeat them in this block",
                                names.join(", ")
                            ),
                            d,
                        );
                    }
                }
                let mut e = if merge {
                    parent_headers.map(<[String]>::to_vec).unwrap_or_default()
                } else {
                    Vec::new()
                };
                e.extend(own);
                effective = Some(e);
            }
            stack.push(d);
            walk(block, stack, effective.as_deref(), out);
            stack.pop();
        }
    }
}

fn in_location<'t>(stack: &[&'t Dir]) -> Option<&'t Dir> {
    stack.iter().rev().find(|d| d.name == "location").copied()
}

/// The location's match: modifier (or "") and path.
fn location_match(loc: &Dir) -> (&str, &str) {
    match loc.args.len() {
        0 => ("", ""),
        1 => ("", loc.arg(0)),
        _ => (loc.arg(0), loc.arg(1)),
    }
}

fn directive(d: &Dir, stack: &[&Dir], out: &mut Vec<Raw>) {
    match d.name.as_str() {
        "server_tokens" if d.arg(0) != "off" => push(
            out,
            "version_disclosure",
            Severity::High,
            format!(
                "server_tokens {} discloses the nginx version; use server_tokens off",
                d.arg(0)
            ),
            d,
        ),
        "proxy_set_header" => {
            if d.arg(0).eq_ignore_ascii_case("host") && d.arg(1).contains("$http_host") {
                push(
                    out,
                    "host_spoofing",
                    Severity::Medium,
                    "proxy_set_header Host $http_host forwards a client-chosen Host; use $host"
                        .to_owned(),
                    d,
                );
            }
            splitting(d, d.arg(1), stack, out);
        }
        "add_header" => splitting(d, d.arg(1), stack, out),
        "return" => splitting(d, d.args.last().map_or("", String::as_str), stack, out),
        "rewrite" => splitting(d, d.arg(1), stack, out),
        "alias" => {
            if let Some(loc) = in_location(stack) {
                let (modifier, path) = location_match(loc);
                if matches!(modifier, "" | "^~") && !path.ends_with('/') && !path.starts_with('@') {
                    let high = d.arg(0).ends_with('/');
                    push(
                        out,
                        "alias_traversal",
                        if high {
                            Severity::High
                        } else {
                            Severity::Medium
                        },
                        format!(
                            "location {path} does not end with '/' but uses alias: {path}../ reaches the parent directory"
                        ),
                        d,
                    );
                }
            }
        }
        "proxy_pass" => {
            splitting(d, d.arg(0), stack, out);
            proxy_pass(d, stack, out);
        }
        "ssl_protocols" => {
            let weak: Vec<&str> = d
                .args
                .iter()
                .map(String::as_str)
                .filter(|p| {
                    matches!(
                        p.to_ascii_lowercase().as_str(),
                        "sslv2" | "sslv3" | "tlsv1" | "tlsv1.1"
                    )
                })
                .collect();
            if !weak.is_empty() {
                push(
                    out,
                    "weak_ssl_tls",
                    Severity::High,
                    format!(
                        "insecure protocols enabled ({}); use TLSv1.2 TLSv1.3",
                        weak.join(" ")
                    ),
                    d,
                );
            }
        }
        "ssl_ciphers" => {
            const WEAK: &[&str] = &[
                "rc4", "des", "md5", "null", "export", "anull", "enull", "sslv3",
            ];
            let lower = d.arg(0).to_ascii_lowercase();
            let weak: Vec<&str> = lower
                .split(':')
                .filter(|s| !s.starts_with(['!', '-']) && WEAK.iter().any(|w| s.contains(w)))
                .collect();
            if !weak.is_empty() {
                push(
                    out,
                    "weak_ssl_tls",
                    Severity::High,
                    format!("weak cipher suites enabled ({})", weak.join(":")),
                    d,
                );
            }
        }
        "stub_status" => status_page(d, stack, out),
        "if"
            // Only the rewrite module's directives are safe inside `if` in
            // a location.
            if stack.last().is_some_and(|p| p.name == "location") => {
                for child in d.children() {
                    if !matches!(child.name.as_str(), "return" | "rewrite" | "set" | "break") {
                        push(
                            out,
                            "if_is_evil",
                            Severity::High,
                            format!(
                                "{} inside if in a location behaves unexpectedly; only return, rewrite, set and break are safe",
                                child.name
                            ),
                            child,
                        );
                    }
                }
            }
        _ => {}
    }
}

/// Variables that can carry CR/LF: decoded URIs and captures of a regex
/// with a negated class that does not exclude newlines.
fn splitting(d: &Dir, value: &str, stack: &[&Dir], out: &mut Vec<Raw>) {
    let lower = value.to_ascii_lowercase();
    for var in [
        "$uri",
        "${uri}",
        "$document_uri",
        "${document_uri}",
        "$request_filename",
    ] {
        let hit = lower.match_indices(var).any(|(i, _)| {
            !lower[i + var.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
        if hit {
            push(
                out,
                "http_splitting",
                Severity::High,
                format!(
                    "{var} in {} is decoded and may contain CR/LF (response splitting); use $request_uri",
                    d.name
                ),
                d,
            );
            return;
        }
    }
    let uses_capture = value
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && w[1].is_ascii_digit());
    if !uses_capture {
        return;
    }
    let regex = if d.name == "rewrite" {
        Some(d.arg(0).to_owned())
    } else {
        in_location(stack).and_then(|loc| {
            let (m, p) = location_match(loc);
            matches!(m, "~" | "~*").then(|| p.to_owned())
        })
    };
    if let Some(re) = regex
        && negated_class_admits_newline(&re)
    {
        push(
            out,
            "http_splitting",
            Severity::High,
            format!(
                "a capture of {re:?} can contain CR/LF (negated class) and reaches {}",
                d.name
            ),
            d,
        );
    }
}

/// Whether the regex has a `[^…]` class that does not exclude `\n`.
fn negated_class_admits_newline(re: &str) -> bool {
    let mut rest = re;
    while let Some(i) = rest.find("[^") {
        let after = &rest[i + 2..];
        let end = after.find(']').unwrap_or(after.len());
        let class = &after[..end];
        if !class.contains("\\n") && !class.contains("\\s") {
            return true;
        }
        rest = &after[end..];
    }
    false
}

fn proxy_pass(d: &Dir, stack: &[&Dir], out: &mut Vec<Raw>) {
    let url = d.arg(0);
    let Some(scheme_end) = url.find("://") else {
        return;
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    if authority.contains('$') {
        push(
            out,
            "ssrf",
            Severity::High,
            format!(
                "proxy_pass host {authority:?} is built from variables; a request could choose the backend"
            ),
            d,
        );
    }
    let Some(loc) = in_location(stack) else {
        return;
    };
    let (modifier, _) = location_match(loc);
    if !path.is_empty() && modifier != "=" && !authority.starts_with("unix:") {
        push(
            out,
            "proxy_pass_normalized",
            Severity::Medium,
            format!(
                "proxy_pass with a path ({path:?}) sends the decoded, normalized URI (%2F..%2F becomes /../); proxy without a path"
            ),
            d,
        );
    }
}

fn status_page(d: &Dir, stack: &[&Dir], out: &mut Vec<Raw>) {
    let restricted = stack.iter().rev().any(|level| {
        level.find("deny").any(|x| x.arg(0) == "all")
            && level.find("allow").all(|x| x.arg(0) != "all")
    });
    if !restricted {
        push(
            out,
            "status_page_exposed",
            Severity::Medium,
            "stub_status without allow/deny all is readable by anyone; allow 127.0.0.1; deny all;"
                .to_owned(),
            d,
        );
    }
}

fn version_disclosure_absent(http: &Dir, out: &mut Vec<Raw>) {
    if http.find("server_tokens").next().is_none() {
        push(
            out,
            "version_disclosure",
            Severity::High,
            "server_tokens is not set and defaults to on; add server_tokens off to http".to_owned(),
            http,
        );
    }
}

/// Normalises a `listen` address to `addr:port`.
fn listen_key(d: &Dir) -> String {
    let a = d.arg(0);
    let proto = if d.args.iter().any(|x| x == "quic") {
        "udp"
    } else {
        "tcp"
    };
    let key = if a.starts_with("unix:") {
        a.to_owned()
    } else if a.bytes().all(|b| b.is_ascii_digit()) {
        format!("*:{a}")
    } else if let Some(port) = a.strip_prefix("0.0.0.0:").or_else(|| a.strip_prefix("*:")) {
        format!("*:{port}")
    } else if a.contains(':') || a.starts_with('[') {
        a.to_owned()
    } else {
        format!("{a}:80")
    };
    format!("{proto} {key}")
}

fn default_server_flag(http: &Dir, out: &mut Vec<Raw>) {
    let mut sockets: BTreeMap<String, (usize, bool, &Dir)> = BTreeMap::new();
    for server in http.find("server") {
        for l in server.find("listen") {
            let default = l
                .args
                .iter()
                .any(|x| x == "default_server" || x == "default");
            let e = sockets.entry(listen_key(l)).or_insert((0, false, l));
            e.0 += 1;
            e.1 |= default;
        }
    }
    for (socket, (n, default, first)) in sockets {
        if n > 1 && !default {
            push(
                out,
                "default_server_flag",
                Severity::Low,
                format!(
                    "{n} servers share {socket} and none is default_server; the first one silently catches unknown hosts"
                ),
                first,
            );
        }
    }
}

fn hsts_header(http: &Dir, server: &Dir, out: &mut Vec<Raw>) {
    let ssl = server
        .find("listen")
        .any(|l| l.args.iter().any(|x| x == "ssl"));
    let rejects = server
        .find("ssl_reject_handshake")
        .any(|x| x.arg(0) == "on");
    if !ssl || rejects {
        return;
    }
    let own: Vec<&Dir> = server.find("add_header").collect();
    let headers: Vec<&Dir> = if own.is_empty() {
        http.find("add_header").collect()
    } else {
        own
    };
    let hsts = headers
        .iter()
        .find(|h| h.arg(0).eq_ignore_ascii_case("strict-transport-security"));
    let Some(hsts) = hsts else {
        push(
            out,
            "hsts_header",
            Severity::Medium,
            "TLS server without Strict-Transport-Security; add_header Strict-Transport-Security \"max-age=31536000\" always".to_owned(),
            server,
        );
        return;
    };
    let age = hsts
        .arg(1)
        .split(';')
        .filter_map(|p| {
            p.trim()
                .to_ascii_lowercase()
                .strip_prefix("max-age=")
                .map(str::to_owned)
        })
        .find_map(|v| v.trim_matches('"').parse::<u64>().ok());
    if age.is_none_or(|a| a < HSTS_MIN_AGE) {
        push(
            out,
            "hsts_header",
            Severity::Low,
            "HSTS max-age is shorter than one year".to_owned(),
            hsts,
        );
    }
    if !hsts.args.iter().any(|x| x == "always") {
        push(
            out,
            "hsts_header",
            Severity::Low,
            "HSTS without always is not sent on error responses".to_owned(),
            hsts,
        );
    }
}
