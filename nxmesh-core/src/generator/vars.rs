//! nginx variables the generator lets user values reference.
//!
//! A value compiled by nginx's script engine (`add_header` values, rewrite
//! replacements, custom directive arguments) treats every `$` as the start of
//! a variable; there is no escape for a literal `$`. An unknown variable
//! makes `nginx -t` fail, and `$uri`/`$document_uri` are decoded and can hold
//! CR/LF (HTTP response splitting, NGINX-NOTES §4 `http_splitting`), so both
//! are refused before anything is emitted.

/// Variables of the core and standard modules that user values may use.
const KNOWN: &[&str] = &[
    "args",
    "binary_remote_addr",
    "body_bytes_sent",
    "bytes_sent",
    "connection",
    "connection_requests",
    "content_length",
    "content_type",
    "document_root",
    "host",
    "hostname",
    "http2",
    "https",
    "is_args",
    "limit_rate",
    "msec",
    "nginx_version",
    "pid",
    "proxy_add_x_forwarded_for",
    "proxy_host",
    "proxy_port",
    "query_string",
    "realpath_root",
    "remote_addr",
    "remote_port",
    "remote_user",
    "request",
    "request_id",
    "request_length",
    "request_method",
    "request_time",
    "request_uri",
    "scheme",
    "server_addr",
    "server_name",
    "server_port",
    "server_protocol",
    "ssl_cipher",
    "ssl_protocol",
    "ssl_server_name",
    "ssl_session_reused",
    "status",
    "time_iso8601",
    "time_local",
    "upstream_addr",
    "upstream_connect_time",
    "upstream_header_time",
    "upstream_response_time",
    "upstream_status",
];

/// Prefixes of nginx's variable families (`$http_user_agent`, …).
const PREFIXES: &[&str] = &[
    "arg_",
    "cookie_",
    "http_",
    "sent_http_",
    "sent_trailer_",
    "upstream_cookie_",
    "upstream_http_",
    "upstream_trailer_",
];

/// Variables refused because they may carry CR/LF into headers or
/// redirects.
const SPLITTING: &[&str] = &["uri", "document_uri", "request_filename"];

/// Checks every `$` reference of `s`; `Err` says why the value is refused.
pub(crate) fn check(s: &str, captures: bool) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        let (name, used) = if let Some(braced) = rest.strip_prefix('{') {
            let Some(close) = braced.find('}') else {
                return Err("'${' without a closing '}'".to_owned());
            };
            (&braced[..close], close + 2)
        } else {
            let n = rest
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
                .count();
            (&rest[..n], n)
        };
        if name.is_empty() {
            return Err(
                "'$' must start a variable ($name or ${name}); nginx has no literal '$'".to_owned(),
            );
        }
        if !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err("a variable name has letters, digits and '_' only".to_owned());
        }
        // `$1`..`$9` are regex captures; nginx reads one digit, so `$10` is
        // `$1` followed by `0`.
        let is_capture = name.as_bytes()[0].is_ascii_digit();
        if is_capture && !captures {
            return Err(format!(
                "${name} is a regex capture, and there is no regular expression here; nginx has no literal '$'"
            ));
        }
        if !is_capture {
            let lower = name.to_ascii_lowercase();
            if SPLITTING.contains(&lower.as_str()) {
                return Err(format!(
                    "${name} may contain CR/LF (HTTP response splitting); use $request_uri"
                ));
            }
            let known = KNOWN.binary_search(&lower.as_str()).is_ok()
                || PREFIXES
                    .iter()
                    .any(|p| lower.len() > p.len() && lower.starts_with(p));
            if !known {
                return Err(format!(
                    "${name} is not a known nginx variable (use ${{name}} to end a name)"
                ));
            }
        }
        i += 1 + used;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_is_sorted() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn references() {
        assert!(check("$scheme://${host}x$1 $http_x_y", true).is_ok());
        assert!(check("costs $5", false).is_err());
        assert!(check("cost $", true).is_err());
        assert!(check("$uri", true).is_err());
        assert!(check("$hostx", true).is_err());
        assert!(check("${host", true).is_err());
        assert!(check("$http_", true).is_err());
    }
}
