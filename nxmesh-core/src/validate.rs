//! Validation of every user-supplied string and number, before anything is
//! stored.
//!
//! Each check appends [`FieldError`](crate::error::FieldError)s naming the
//! field, so that one request reports all of its problems at once. The rules
//! are deliberately strict about anything that could break or inject nginx
//! syntax (control characters, `;`, `{`, `}`, quotes, `#`, stray `$`,
//! `..` in paths, over-long tokens): such input is refused here, and the
//! generator additionally quotes and escapes whatever it emits.

use std::collections::BTreeMap;

use crate::error::{FieldErrorCode as Code, ValidationErrors};
use crate::model::{Labels, LocationModifier};

/// Something that can check itself.
pub trait Validate {
    /// `Ok(())`, or every problem found.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

/// Longest display name, in characters.
pub const MAX_NAME_LEN: usize = 255;
/// Longest free-form value (header values, directive arguments), in bytes.
/// nginx refuses tokens of 4096 bytes or more; quoting adds a few.
pub const MAX_VALUE_LEN: usize = 4000;
/// Longest path or regular expression, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Most locations per virtual host.
pub const MAX_LOCATIONS: usize = 1000;
/// Most names in one `server_name`.
pub const MAX_SERVER_NAMES: usize = 64;
/// Most labels per agent.
pub const MAX_LABELS: usize = 64;

/// Bytes that are nginx syntax and never belong in an unquoted value.
const NGINX_SYNTAX: &[char] = &[';', '{', '}', '"', '\'', '#', '\\'];

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A display name: not blank, at most [`MAX_NAME_LEN`] characters, no
/// control characters.
pub fn name(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.trim().is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if s.chars().count() > MAX_NAME_LEN {
        errors.push(
            field,
            Code::TooLong,
            format!("at most {MAX_NAME_LEN} characters"),
        );
    } else if has_control(s) {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain control characters",
        );
    }
}

/// A password field: present (strength is the server's policy).
pub fn password_present(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if s.len() > 1024 {
        errors.push(field, Code::TooLong, "at most 1024 bytes");
    }
}

/// Free text with a length limit and no control characters.
pub fn plain_text(errors: &mut ValidationErrors, field: &str, s: &str, max: usize) {
    if s.len() > max {
        errors.push(field, Code::TooLong, format!("at most {max} bytes"));
    } else if has_control(s) {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain control characters",
        );
    }
}

/// A slug: 1 to 63 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub fn slug(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if s.len() > 63 {
        errors.push(field, Code::TooLong, "at most 63 characters");
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || s.starts_with('-')
        || s.ends_with('-')
    {
        errors.push(
            field,
            Code::InvalidFormat,
            "lowercase letters, digits and '-', not starting or ending with '-'",
        );
    }
}

/// An email address (a pragmatic subset of RFC 5321: `local@host.domain`).
pub fn email(errors: &mut ValidationErrors, field: &str, s: &str) {
    let ok = s.len() <= 254
        && match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && local
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b))
                    && !local.starts_with('.')
                    && !local.ends_with('.')
                    && !local.contains("..")
                    && domain.contains('.')
                    && is_hostname(domain)
            }
            None => false,
        };
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if !ok {
        errors.push(field, Code::InvalidFormat, "not a valid email address");
    }
}

/// A number within `lo..=hi`.
pub fn range(errors: &mut ValidationErrors, field: &str, v: u64, lo: u64, hi: u64) {
    if v < lo || v > hi {
        errors.push(
            field,
            Code::OutOfRange,
            format!("must be between {lo} and {hi}"),
        );
    }
}

/// A TCP port, 1 to 65535.
pub fn port(errors: &mut ValidationErrors, field: &str, p: u16) {
    if p == 0 {
        errors.push(field, Code::OutOfRange, "must be between 1 and 65535");
    }
}

/// Whether `s` is a DNS host name: dot-separated labels of letters, digits
/// and `-` (not at either end), each 1 to 63 bytes, 253 bytes in all.
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Labels: Kubernetes syntax for keys (`[prefix/]name`) and values.
pub fn labels(errors: &mut ValidationErrors, field: &str, labels: &Labels) {
    if labels.len() > MAX_LABELS {
        errors.push(field, Code::TooLong, format!("at most {MAX_LABELS} labels"));
    }
    for (k, v) in labels {
        if !is_label_key(k) {
            errors.push(
                format!("{field}.{}", printable(k)),
                Code::InvalidFormat,
                "a label key is an optional DNS prefix and '/', then 1 to 63 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            );
        }
        if !is_label_value(v) {
            errors.push(
                format!("{field}.{}", printable(k)),
                Code::InvalidFormat,
                "a label value is empty or up to 63 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            );
        }
    }
}

/// Escapes control characters so a hostile key can be named in a message.
fn printable(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

/// Whether `s` is a Kubernetes label key.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(|p| p.len() <= 253 && is_hostname(p))
        && !name.is_empty()
        && is_label_value(name)
}

/// Whether `s` is a Kubernetes label value (empty allowed).
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

/// The names of a `server_name`: host names, `*.example.com`,
/// `.example.com`, `example.*`, `~regex`, and `_`.
pub fn server_names(errors: &mut ValidationErrors, field: &str, s: &str) {
    if has_control(s) {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain control characters",
        );
        return;
    }
    let names: Vec<&str> = s.split([' ', '\t']).filter(|n| !n.is_empty()).collect();
    if names.is_empty() {
        errors.push(field, Code::Required, "needs at least one name");
        return;
    }
    if names.len() > MAX_SERVER_NAMES {
        errors.push(
            field,
            Code::TooLong,
            format!("at most {MAX_SERVER_NAMES} names"),
        );
    }
    // One error for the field, naming every bad name.
    let mut bad = Vec::new();
    for n in names {
        if let Some(re) = n.strip_prefix('~') {
            let mut e = ValidationErrors::default();
            regex(&mut e, field, re);
            if let Some(first) = e.errors.into_iter().next() {
                errors.errors.push(first);
                return;
            }
        } else if !is_server_name(n) {
            bad.push(format!("{:?}", printable(n)));
        }
    }
    if !bad.is_empty() {
        errors.push(
            field,
            Code::InvalidFormat,
            if bad.len() == 1 {
                format!(
                    "{} is not a host name, a wildcard name (*.example.com, .example.com, example.*) or a ~regex",
                    bad[0]
                )
            } else {
                format!(
                    "{} are not host names, wildcard names (*.example.com, .example.com, example.*) or ~regexes",
                    bad.join(", ")
                )
            },
        );
    }
}

fn is_server_name(n: &str) -> bool {
    if n == "_" {
        return true;
    }
    if let Some(rest) = n.strip_prefix("*.").or_else(|| n.strip_prefix('.')) {
        return is_hostname(rest);
    }
    if let Some(rest) = n.strip_suffix(".*") {
        return is_hostname(rest);
    }
    is_hostname(n)
}

/// A certificate domain: a host name, or `*.` and a host name.
pub fn certificate_domain(errors: &mut ValidationErrors, field: &str, s: &str) {
    let host = s.strip_prefix("*.").unwrap_or(s);
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if !is_hostname(host) || !host.contains('.') {
        errors.push(
            field,
            Code::InvalidFormat,
            "not a valid domain (example.com or *.example.com)",
        );
    }
}

/// A regular expression (nginx uses PCRE; we accept what parses as a
/// regular expression and has no control characters).
pub fn regex(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.is_empty() {
        errors.push(field, Code::Required, "the regular expression is empty");
    } else if s.len() > MAX_PATH_LEN {
        errors.push(
            field,
            Code::TooLong,
            format!("at most {MAX_PATH_LEN} bytes"),
        );
    } else if has_control(s) {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain control characters",
        );
    } else if let Err(e) = regex_syntax::ParserBuilder::new().build().parse(s) {
        let msg = e.to_string();
        let first = msg.lines().last().unwrap_or("invalid").trim();
        errors.push(
            field,
            Code::InvalidFormat,
            format!("not a valid regular expression: {first}"),
        );
    }
}

/// A location path with its modifier: a regular expression for `~`/`~*`;
/// otherwise an absolute URI path (or `@name` for a plain named location)
/// without whitespace or nginx syntax.
pub fn location_path(
    errors: &mut ValidationErrors,
    field: &str,
    path: &str,
    modifier: Option<LocationModifier>,
) {
    if modifier.is_some_and(LocationModifier::is_regex) {
        regex(errors, field, path);
        return;
    }
    if path.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if path.len() > MAX_PATH_LEN {
        errors.push(
            field,
            Code::TooLong,
            format!("at most {MAX_PATH_LEN} bytes"),
        );
    } else if has_control(path) || path.contains(char::is_whitespace) || path.contains(NGINX_SYNTAX)
    {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain whitespace, control characters, quotes, '\\', '#', ';', '{' or '}'",
        );
    } else if let Some(named) = path.strip_prefix('@') {
        if modifier.is_some()
            || named.is_empty()
            || !named
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
        {
            errors.push(
                field,
                Code::InvalidFormat,
                "a named location is '@' and letters, digits, '_' or '-', without modifier",
            );
        }
    } else if !path.starts_with('/') {
        errors.push(
            field,
            Code::InvalidFormat,
            "a location path starts with '/'",
        );
    }
}

/// An HTTP header name: letters, digits, `-`, `_` and `.`, at most 128.
pub fn header_name(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if s.len() > 128 {
        errors.push(field, Code::TooLong, "at most 128 bytes");
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errors.push(
            field,
            Code::InvalidCharacter,
            "letters, digits, '-', '_' and '.' only",
        );
    }
}

/// An HTTP header value: no control characters (so no CR/LF/NUL), at most
/// [`MAX_VALUE_LEN`] bytes, and `$` only as a reference to a known nginx
/// variable that cannot carry CR/LF (nginx would expand a literal `$`).
pub fn header_value(errors: &mut ValidationErrors, field: &str, s: &str) {
    value_with_variables(errors, field, s, false);
}

fn value_with_variables(errors: &mut ValidationErrors, field: &str, s: &str, captures: bool) {
    if s.len() > MAX_VALUE_LEN {
        errors.push(
            field,
            Code::TooLong,
            format!("at most {MAX_VALUE_LEN} bytes"),
        );
    } else if has_control(s) {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain control characters (CR, LF, NUL, …)",
        );
    } else if let Err(why) = crate::generator::vars::check(s, captures) {
        errors.push(field, Code::InvalidCharacter, why);
    }
}

/// A rewrite replacement: like a header value, and not empty.
pub fn rewrite_replacement(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if s.contains(char::is_whitespace) {
        errors.push(field, Code::InvalidCharacter, "must not contain whitespace");
    } else {
        value_with_variables(errors, field, s, true);
    }
}

/// An absolute filesystem path without `..`, whitespace or nginx syntax.
pub fn abs_path(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if s.len() > MAX_PATH_LEN {
        errors.push(
            field,
            Code::TooLong,
            format!("at most {MAX_PATH_LEN} bytes"),
        );
    } else if !s.starts_with('/') {
        errors.push(field, Code::InvalidFormat, "must be an absolute path");
    } else if s.split('/').any(|c| c == "..") {
        errors.push(field, Code::NotAllowed, "must not contain '..'");
    } else if has_control(s)
        || s.contains(char::is_whitespace)
        || s.contains(NGINX_SYNTAX)
        || s.contains('$')
    {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain whitespace, control characters, quotes, '\\', '#', '$', ';', '{' or '}'",
        );
    }
}

/// Index file names separated by spaces.
pub fn index_files(errors: &mut ValidationErrors, field: &str, s: &str) {
    let files: Vec<&str> = s.split(' ').filter(|f| !f.is_empty()).collect();
    if files.is_empty() {
        errors.push(field, Code::Required, "needs at least one file name");
    } else if files.len() > 16 {
        errors.push(field, Code::TooLong, "at most 16 file names");
    }
    for f in files {
        if f.len() > 255
            || f.split('/').any(|c| c == "..")
            || !f
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            errors.push(
                field,
                Code::InvalidFormat,
                format!("{:?} is not a plain file name", printable(f)),
            );
        }
    }
}

/// A `proxy_pass` URL: `http://` or `https://`, a host name or address, an
/// optional port and path, from a conservative set of URL characters.
pub fn proxy_url(errors: &mut ValidationErrors, field: &str, s: &str) {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    let Some(rest) = rest else {
        errors.push(
            field,
            Code::InvalidFormat,
            "must start with http:// or https://",
        );
        return;
    };
    if s.len() > MAX_PATH_LEN {
        errors.push(
            field,
            Code::TooLong,
            format!("at most {MAX_PATH_LEN} bytes"),
        );
        return;
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?[]@!&()*+,=%".contains(&b))
    {
        errors.push(
            field,
            Code::InvalidCharacter,
            "URL characters only: no whitespace, quotes, '$', '#', ';', '{', '}' or '\\'",
        );
        return;
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if !is_host_port(authority, false) {
        errors.push(
            field,
            Code::InvalidFormat,
            "needs a valid host and optional port",
        );
    }
}

/// Whether `s` is `host`, `host:port`, `ipv4:port` or `[ipv6]:port` (the
/// port required when `need_port`).
fn is_host_port(s: &str, need_port: bool) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None if after.is_empty() => (None, None),
            None => return false,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    let port_ok = match port {
        Some(p) => p.parse::<u16>().is_ok_and(|p| p > 0) && p.bytes().all(|b| b.is_ascii_digit()),
        None => !need_port,
    };
    let host_ok = host.is_none_or(|h| is_hostname(h) || h.parse::<std::net::Ipv4Addr>().is_ok());
    port_ok && host_ok
}

/// An upstream server address: `host:port`, `ipv4:port`, `[ipv6]:port`
/// (port optional, default 80) or `unix:/absolute/path`.
pub fn upstream_address(errors: &mut ValidationErrors, field: &str, s: &str) {
    if let Some(path) = s.strip_prefix("unix:") {
        abs_path(errors, field, path);
    } else if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if !is_host_port(s, false) {
        errors.push(
            field,
            Code::InvalidFormat,
            "expected host:port, ipv4:port, [ipv6]:port or unix:/path",
        );
    }
}

/// An upstream name: 1 to 128 of letters, digits, `-`, `_` and `.`.
pub fn upstream_name(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.is_empty() {
        errors.push(field, Code::Required, "must not be empty");
    } else if s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        errors.push(
            field,
            Code::InvalidFormat,
            "1 to 128 of letters, digits, '-', '_' and '.'",
        );
    }
}

/// A PEM document: BEGIN and END markers, no control characters other than
/// line breaks and tabs, at most 64 KiB.
pub fn pem(errors: &mut ValidationErrors, field: &str, s: &str) {
    if s.len() > 64 * 1024 {
        errors.push(field, Code::TooLong, "at most 64 KiB");
    } else if !s.contains("-----BEGIN ") || !s.contains("-----END ") {
        errors.push(field, Code::InvalidFormat, "not a PEM document");
    } else if s
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        errors.push(
            field,
            Code::InvalidCharacter,
            "must not contain control characters",
        );
    }
}

/// The nginx context a custom directive is placed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveContext {
    /// The `http` block (global settings).
    Http,
    /// A `server` block (virtual host).
    Server,
    /// A `location` block.
    Location,
}

impl DirectiveContext {
    fn bit(self) -> u8 {
        match self {
            DirectiveContext::Http => HTTP,
            DirectiveContext::Server => SRV,
            DirectiveContext::Location => LOC,
        }
    }
}

const HTTP: u8 = 1;
const SRV: u8 = 2;
const LOC: u8 = 4;
const ALL: u8 = HTTP | SRV | LOC;

/// The directives `custom_directives` may use, with the contexts where each
/// is allowed. This is an allowlist on purpose: directives that load code,
/// run commands, read or write arbitrary files or change the process
/// (`include`, `load_module`, `perl*`, `js_*`, `*_by_lua*`, `env`, `user`,
/// `pid`, `ssl_engine`, `access_log`, `error_log`, `alias`, …) are absent.
pub const CUSTOM_DIRECTIVE_ALLOWLIST: &[(&str, u8)] = &[
    ("add_trailer", ALL),
    ("allow", ALL),
    ("autoindex", ALL),
    ("charset", ALL),
    ("chunked_transfer_encoding", ALL),
    ("client_body_buffer_size", ALL),
    ("client_body_timeout", ALL),
    ("client_header_buffer_size", HTTP | SRV),
    ("client_header_timeout", HTTP | SRV),
    ("client_max_body_size", ALL),
    ("default_type", ALL),
    ("deny", ALL),
    ("etag", ALL),
    ("expires", ALL),
    ("gzip", ALL),
    ("gzip_comp_level", ALL),
    ("gzip_min_length", ALL),
    ("gzip_proxied", ALL),
    ("gzip_types", ALL),
    ("gzip_vary", ALL),
    ("if_modified_since", ALL),
    ("keepalive_requests", ALL),
    ("keepalive_timeout", ALL),
    ("large_client_header_buffers", HTTP | SRV),
    ("limit_rate", ALL),
    ("limit_rate_after", ALL),
    ("merge_slashes", HTTP | SRV),
    ("proxy_buffer_size", ALL),
    ("proxy_buffering", ALL),
    ("proxy_buffers", ALL),
    ("proxy_busy_buffers_size", ALL),
    ("proxy_connect_timeout", ALL),
    ("proxy_http_version", ALL),
    ("proxy_ignore_client_abort", ALL),
    ("proxy_intercept_errors", ALL),
    ("proxy_next_upstream", ALL),
    ("proxy_next_upstream_timeout", ALL),
    ("proxy_next_upstream_tries", ALL),
    ("proxy_read_timeout", ALL),
    ("proxy_redirect", ALL),
    ("proxy_request_buffering", ALL),
    ("proxy_send_timeout", ALL),
    ("proxy_set_header", ALL),
    ("proxy_ssl_server_name", ALL),
    ("proxy_ssl_verify", ALL),
    ("return", SRV | LOC),
    ("satisfy", ALL),
    ("send_timeout", ALL),
    ("sendfile", ALL),
    ("server_names_hash_bucket_size", HTTP),
    ("server_names_hash_max_size", HTTP),
    ("server_tokens", ALL),
    ("ssl_ciphers", HTTP | SRV),
    ("ssl_prefer_server_ciphers", HTTP | SRV),
    ("ssl_protocols", HTTP | SRV),
    ("ssl_session_tickets", HTTP | SRV),
    ("ssl_session_timeout", HTTP | SRV),
    ("tcp_nodelay", ALL),
    ("tcp_nopush", ALL),
    ("try_files", SRV | LOC),
    ("types_hash_max_size", HTTP),
    ("underscores_in_headers", HTTP | SRV),
];

/// Whether `name` may be used as a custom directive in `ctx`.
pub fn custom_directive_allowed(name: &str, ctx: DirectiveContext) -> bool {
    CUSTOM_DIRECTIVE_ALLOWLIST
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .is_ok_and(|i| CUSTOM_DIRECTIVE_ALLOWLIST[i].1 & ctx.bit() != 0)
}

/// Custom directives: names from [`CUSTOM_DIRECTIVE_ALLOWLIST`] for the
/// context; arguments separated by spaces, free of nginx syntax and control
/// characters, with `$` only as a variable reference.
pub fn custom_directives(
    errors: &mut ValidationErrors,
    field: &str,
    directives: &BTreeMap<String, String>,
    ctx: DirectiveContext,
) {
    for (name, value) in directives {
        let f = format!("{field}.{}", printable(name));
        if !custom_directive_allowed(name, ctx) {
            errors.push(
                f,
                Code::NotAllowed,
                format!(
                    "directive {:?} is not allowed here (custom directives come from an allowlist)",
                    printable(name)
                ),
            );
            continue;
        }
        if value.trim().is_empty() {
            errors.push(f, Code::Required, "needs arguments");
        } else if value.len() > MAX_VALUE_LEN {
            errors.push(f, Code::TooLong, format!("at most {MAX_VALUE_LEN} bytes"));
        } else if has_control(value) || value.contains(NGINX_SYNTAX) {
            errors.push(
                f,
                Code::InvalidCharacter,
                "arguments must not contain control characters, quotes, '\\', '#', ';', '{' or '}'",
            );
        } else if let Err(why) = crate::generator::vars::check(value, false) {
            errors.push(f, Code::InvalidCharacter, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_is_sorted_for_binary_search() {
        assert!(
            CUSTOM_DIRECTIVE_ALLOWLIST
                .windows(2)
                .all(|w| w[0].0 < w[1].0)
        );
    }

    #[test]
    fn dollars() {
        let ok = |s: &str, captures| {
            let mut e = ValidationErrors::default();
            value_with_variables(&mut e, "f", s, captures);
            e.is_empty()
        };
        assert!(ok("$scheme://$host${request_uri}x", false));
        assert!(ok("/new/$1", true));
        assert!(!ok("/new/$1", false), "no capture without a regex");
        assert!(!ok("costs $5", false));
        assert!(!ok("cost $", false));
        assert!(!ok("${}", false));
        assert!(!ok("${x", false));
        assert!(!ok("$foo", false), "unknown variable");
        assert!(!ok("$uri", false), "may carry CR/LF");
    }
}
