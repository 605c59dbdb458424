//! Parsing one line of the JSON access log the generator configures
//! (`log_format nxmesh_json escape=json '{…}'`, see
//! [`nxmesh_core::generator::ACCESS_LOG_JSON`]).
//!
//! nginx's `escape=json` writes `"` and `\` with a backslash and control
//! bytes as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`, and every other byte as
//! it is, so a line is a flat JSON object of strings and bare numbers but
//! not necessarily valid UTF-8 (a client can send any byte in a URI or a
//! header). The parser here reads exactly that shape from bytes, borrows
//! every value that needs no unescaping, and replaces invalid UTF-8 instead
//! of refusing the line. It also accepts the rest of JSON's string escapes
//! (`\/`, `\uXXXX` with surrogate pairs) and whitespace between tokens.
//!
//! ```
//! use nxmesh_agent_lib::accesslog::parse::parse_line;
//!
//! let line = br#"{"method":"GET","uri":"/a?q=\"x\"","status":404,"body_bytes_sent":12}"#;
//! let parsed = parse_line(line).unwrap();
//! assert_eq!(parsed.get("uri"), Some("/a?q=\"x\""));
//! assert_eq!(parsed.sample().status, 404);
//! assert_eq!(parsed.sample().body_bytes_sent, 12);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use nxmesh_core::protocol::LogEntry;

/// The `level` of every shipped access-log entry.
pub const ACCESS_LEVEL: &str = "access";

/// Why a line is not an access-log object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line does not start with `{` (after whitespace).
    #[error("the line is not a JSON object")]
    NotAnObject,
    /// A key is not a string, or a `:` or `,` is missing.
    #[error("malformed object at byte {0}")]
    Syntax(usize),
    /// A string or the object is not terminated.
    #[error("the line ends inside a value")]
    Unterminated,
    /// A backslash escape is not one of JSON's.
    #[error("invalid escape at byte {0}")]
    Escape(usize),
    /// Something follows the closing `}`.
    #[error("trailing bytes after the object at byte {0}")]
    Trailing(usize),
}

/// One parsed line: its fields in the order nginx wrote them. Keys and
/// values borrow from the line unless they had to be unescaped or repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine<'a> {
    fields: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<AccessLine<'_>, ParseError> {
    let mut p = Cursor { s: line, i: 0 };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return Err(ParseError::NotAnObject);
    }
    p.i += 1;
    // The generator's format has 15 fields.
    let mut fields = Vec::with_capacity(16);
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.skip_ws();
            if p.peek() != Some(b'"') {
                return Err(ParseError::Syntax(p.i));
            }
            let key = p.string()?;
            p.skip_ws();
            if p.peek() != Some(b':') {
                return Err(ParseError::Syntax(p.i));
            }
            p.i += 1;
            p.skip_ws();
            let value = match p.peek() {
                Some(b'"') => p.string()?,
                Some(_) => p.bare(),
                None => return Err(ParseError::Unterminated),
            };
            fields.push((key, value));
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.i += 1,
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                Some(_) => return Err(ParseError::Syntax(p.i)),
                None => return Err(ParseError::Unterminated),
            }
        }
    }
    p.skip_ws();
    if p.i != line.len() {
        return Err(ParseError::Trailing(p.i));
    }
    Ok(AccessLine { fields })
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    /// A bare value (a number, or `-`/empty when nginx had no value): up to
    /// the next `,` or `}`, trimmed.
    fn bare(&mut self) -> Cow<'a, str> {
        let start = self.i;
        let len = self.s[start..]
            .iter()
            .position(|&b| b == b',' || b == b'}')
            .unwrap_or(self.s.len() - start);
        self.i = start + len;
        text(self.s[start..start + len].trim_ascii())
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let start = self.i + 1;
        let rest = &self.s[start..];
        let Some(stop) = memchr::memchr2(b'"', b'\\', rest) else {
            return Err(ParseError::Unterminated);
        };
        if rest[stop] == b'"' {
            // The common case: no escape at all.
            self.i = start + stop + 1;
            return Ok(text(&rest[..stop]));
        }
        let mut out: Vec<u8> = Vec::with_capacity(stop + 16);
        out.extend_from_slice(&rest[..stop]);
        let mut i = start + stop;
        loop {
            let Some(&b) = self.s.get(i) else {
                return Err(ParseError::Unterminated);
            };
            match b {
                b'"' => {
                    self.i = i + 1;
                    return Ok(Cow::Owned(match String::from_utf8(out) {
                        Ok(s) => s,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    }));
                }
                b'\\' => {
                    let esc = *self.s.get(i + 1).ok_or(ParseError::Unterminated)?;
                    i += 2;
                    match esc {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let (c, used) = self.unicode(i)?;
                            i += used;
                            let mut buf = [0; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(ParseError::Escape(i - 2)),
                    }
                }
                _ => {
                    let run = memchr::memchr2(b'"', b'\\', &self.s[i..])
                        .ok_or(ParseError::Unterminated)?;
                    out.extend_from_slice(&self.s[i..i + run]);
                    i += run;
                }
            }
        }
    }

    /// The character of a `\u` escape whose four hex digits start at `i`
    /// (a surrogate pair takes a second `\uXXXX`), and the bytes used.
    fn unicode(&self, i: usize) -> Result<(char, usize), ParseError> {
        let hex = |at: usize| -> Option<u32> {
            let digits = self.s.get(at..at + 4)?;
            let s = std::str::from_utf8(digits).ok()?;
            u32::from_str_radix(s, 16).ok()
        };
        let bad = ParseError::Escape(i - 2);
        let hi = hex(i).ok_or(bad)?;
        if (0xD800..0xDC00).contains(&hi) {
            if self.s.get(i + 4..i + 6) == Some(b"\\u")
                && let Some(lo) = hex(i + 6)
                && (0xDC00..0xE000).contains(&lo)
            {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Ok((char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER), 10));
            }
            return Ok((char::REPLACEMENT_CHARACTER, 4));
        }
        Ok((char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER), 4))
    }
}

/// What the metrics need from one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The response status (0 when nginx logged none).
    pub status: u16,
    /// Response body bytes (`$body_bytes_sent`).
    pub body_bytes_sent: u64,
    /// Request bytes (`$request_length`: request line, headers and body),
    /// when the line logs it (the generator's format does; a line written
    /// by an older format does not).
    pub request_length: Option<u64>,
    /// `$request_time` in seconds.
    pub request_time: Option<f64>,
}

impl<'a> AccessLine<'a> {
    /// The fields, in the order of the line.
    pub fn fields(&self) -> &[(Cow<'a, str>, Cow<'a, str>)] {
        &self.fields
    }

    /// The value of `key`, if the line has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// The line's `timestamp` (`$time_iso8601`), if it is one.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(self.get("timestamp")?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// What the metrics count.
    pub fn sample(&self) -> Sample {
        let num = |k: &str| self.get(k).and_then(|v| v.parse::<u64>().ok());
        Sample {
            status: self.get("status").and_then(|v| v.parse().ok()).unwrap_or(0),
            body_bytes_sent: num("body_bytes_sent").unwrap_or(0),
            request_length: num("request_length"),
            request_time: self
                .get("request_time")
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t >= 0.0),
        }
    }

    /// The entry shipped to the master: every field under nginx's name
    /// (what the master's access-log store reads), level `access`, the
    /// request line as the message, and the line's own time (`now` when it
    /// has none).
    pub fn to_log_entry(&self, now: DateTime<Utc>) -> LogEntry {
        let fields: BTreeMap<String, String> = self
            .fields
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let part = |k: &str| self.get(k).unwrap_or("-");
        let message = format!("{} {} {}", part("method"), part("uri"), part("protocol"));
        LogEntry {
            timestamp: self.timestamp().unwrap_or(now),
            level: ACCESS_LEVEL.to_owned(),
            message,
            fields,
        }
    }
}

/// The entry shipped for a line that is not an access-log object: the raw
/// line as the message and the reason in `fields.parse_error`, so that
/// nothing read from the log is silently left out.
pub fn invalid_entry(line: &[u8], error: ParseError, now: DateTime<Utc>) -> LogEntry {
    let mut fields = BTreeMap::new();
    fields.insert("parse_error".to_owned(), error.to_string());
    LogEntry {
        timestamp: now,
        level: ACCESS_LEVEL.to_owned(),
        message: String::from_utf8_lossy(line).into_owned(),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"timestamp":"2026-11-27T21:12:14+00:00","remote_addr":"127.0.0.1","method":"GET","uri":"/a?b=1","protocol":"HTTP/1.1","host":"app.test","status":404,"body_bytes_sent":153,"request_length":87,"request_time":0.012,"user_agent":"curl/8.0","referer":"","request_id":"0f3c","upstream_addr":"","upstream_status":"","upstream_response_time":""}"#;

    #[test]
    fn the_generators_format_parses_field_by_field() {
        let l = parse_line(LINE.as_bytes()).unwrap();
        assert_eq!(l.fields().len(), 16);
        assert!(
            l.fields()
                .iter()
                .all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_))))
        );
        assert_eq!(l.get("uri"), Some("/a?b=1"));
        assert_eq!(l.get("status"), Some("404"));
        assert_eq!(l.get("referer"), Some(""));
        assert_eq!(
            l.sample(),
            Sample {
                status: 404,
                body_bytes_sent: 153,
                request_length: Some(87),
                request_time: Some(0.012)
            }
        );
        let now = Utc::now();
        let e = l.to_log_entry(now);
        assert_eq!(e.level, "access");
        assert_eq!(e.message, "GET /a?b=1 HTTP/1.1");
        assert_eq!(e.timestamp.to_rfc3339(), "2026-11-27T21:12:14+00:00");
        // The master reads it as the specification's access-log entry.
        let nil = uuid::Uuid::nil();
        let r = nxmesh_core::model::AccessLogEntry::from_log_entry(nil, nil, &e).unwrap();
        assert_eq!((r.status, r.body_bytes_sent), (404, 153));
        assert!((r.response_time_ms - 12.0).abs() < 1e-9);
        assert_eq!(r.referer, None);
        assert_eq!(r.request_id.as_deref(), Some("0f3c"));
        // The generic JSON reading agrees with ours on every field.
        let v: serde_json::Value = serde_json::from_str(LINE).unwrap();
        for (k, val) in l.fields() {
            let want = match &v[k.as_ref()] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(val.as_ref(), want, "{k}");
        }
    }

    #[test]
    fn escapes_and_raw_bytes() {
        // What nginx writes for a user agent with a quote, a backslash, a
        // tab, a control byte and a raw Latin-1 byte.
        let mut line = br#"{"user_agent":"a\"b\\c\td\u001Fe"#.to_vec();
        line.push(0xE9);
        line.extend_from_slice(br#"","x":"\u00e9\ud83d\ude00\/"}"#);
        let l = parse_line(&line).unwrap();
        assert_eq!(l.get("user_agent"), Some("a\"b\\c\td\u{1f}e\u{FFFD}"));
        assert_eq!(l.get("x"), Some("é😀/"));
        assert_eq!(parse_line(b" { } ").unwrap().fields().len(), 0);
    }

    #[test]
    fn malformed_lines_are_refused() {
        for (line, want) in [
            (&b""[..], ParseError::NotAnObject),
            (b"GET / HTTP/1.1", ParseError::NotAnObject),
            (br#"{"a":"b"#, ParseError::Unterminated),
            (br#"{"a":"b""#, ParseError::Unterminated),
            (br#"{"a" "b"}"#, ParseError::Syntax(5)),
            (br#"{a:1}"#, ParseError::Syntax(1)),
            (br#"{"a":"\q"}"#, ParseError::Escape(6)),
            (br#"{"a":1} x"#, ParseError::Trailing(8)),
        ] {
            assert_eq!(
                parse_line(line),
                Err(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let e = invalid_entry(b"junk", ParseError::NotAnObject, Utc::now());
        assert_eq!(e.message, "junk");
        assert!(e.fields.contains_key("parse_error"));
    }
}
