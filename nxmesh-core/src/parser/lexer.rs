//! The tokenizer, a port of nginx's `ngx_conf_read_token` plus the Lua-aware
//! reader of lua-nginx-module (`ngx_http_lua_conf_read_lua_token`).
//!
//! It works on bytes and only ever cuts the text at ASCII delimiters, so
//! every slice it hands out is valid `&str`. It is the parser's hot loop:
//! runs of ordinary bytes are skipped with a byte table (bare words, which
//! are short) or `memchr` (comments and quoted strings, which can be long),
//! and lines are counted as the text is scanned, so each byte is looked at
//! once.

use super::ast::{Arg, ArgKind, Comment, Span};

/// nginx's `NGX_CONF_BUFFER`: a token must be shorter than this.
pub(crate) const MAX_TOKEN: usize = 4096;

/// One lexical event.
#[derive(Debug)]
pub(crate) enum Tok<'a> {
    /// A word (directive name or argument), and whether it has a
    /// backslash (if not, its value is its text between the quotes).
    Word(Arg<'a>, bool),
    /// `;`, at this line.
    Semi(u32),
    /// `{`, at this line.
    Open(u32),
    /// `}`, at this line.
    Close(u32),
    /// A comment.
    Comment(Comment<'a>),
    /// End of input, at this line.
    Eof(u32),
}

/// A tokenizer error: nginx's message and the line it reports.
#[derive(Debug)]
pub(crate) struct LexError {
    pub(crate) message: String,
    pub(crate) line: u32,
}

/// Bytes that interrupt a bare word: whitespace, `;`, `{`, `\`, `$`.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'\r' as usize] = true;
    t[b'\n' as usize] = true;
    t[b';' as usize] = true;
    t[b'{' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'$' as usize] = true;
    t
};

/// Renders one byte for an `unexpected "x"` message.
fn show(text: &str, at: usize) -> String {
    text[at..]
        .chars()
        .next()
        .map(String::from)
        .unwrap_or_default()
}

pub(crate) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    line: u32,
    line_start: usize,
    /// Set after a closing quote: the next byte must be a separator.
    need_space: bool,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
            line_start: 0,
            need_space: false,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn span(&self, start: usize, end: usize, line: u32, line_start: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
            line,
            column: (start - line_start + 1) as u32,
        }
    }

    /// Skips whitespace, counting lines.
    #[inline(always)]
    fn skip_space(&mut self) {
        let bytes = self.bytes();
        let mut i = self.pos;
        while let Some(&b) = bytes.get(i) {
            match b {
                b' ' | b'\t' | b'\r' => i += 1,
                b'\n' => {
                    i += 1;
                    self.line += 1;
                    self.line_start = i;
                }
                _ => break,
            }
        }
        self.pos = i;
    }

    fn eof_error(&self) -> LexError {
        LexError {
            message: r#"unexpected end of file, expecting ";" or "}""#.to_owned(),
            line: self.line,
        }
    }

    // Inlined into the grammar's loop, its only caller: the token is then
    // built in place instead of being returned through memory.
    #[inline(always)]
    pub(crate) fn next_tok(&mut self) -> Result<Tok<'a>, LexError> {
        let bytes = self.bytes();
        if self.need_space {
            self.need_space = false;
            match bytes.get(self.pos) {
                None | Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b')') => {}
                Some(_) => {
                    return Err(LexError {
                        message: format!("unexpected \"{}\"", show(self.text, self.pos)),
                        line: self.line,
                    });
                }
            }
        }
        self.skip_space();
        let start = self.pos;
        match bytes.get(start) {
            None => Ok(Tok::Eof(self.line)),
            Some(b';') => {
                self.pos += 1;
                Ok(Tok::Semi(self.line))
            }
            Some(b'{') => {
                self.pos += 1;
                Ok(Tok::Open(self.line))
            }
            Some(b'}') => {
                self.pos += 1;
                Ok(Tok::Close(self.line))
            }
            Some(b'#') => {
                let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
                self.pos = end;
                Ok(Tok::Comment(Comment {
                    text: &self.text[start + 1..end],
                    span: self.span(start, end, self.line, self.line_start),
                }))
            }
            Some(&q @ (b'"' | b'\'')) => self.quoted(q),
            Some(_) => self.bare(),
        }
    }

    fn too_long_bare(&self, start: usize) -> LexError {
        let mut end = (start + 10).min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        LexError {
            message: format!(
                "too long parameter \"{}...\" started",
                &self.text[start..end]
            ),
            line: self.line,
        }
    }

    #[inline(always)]
    fn bare(&mut self) -> Result<Tok<'a>, LexError> {
        let bytes = self.bytes();
        let start = self.pos;
        let (line, line_start) = (self.line, self.line_start);
        let mut i = start;
        let mut variable = false;
        let mut escaped = false;
        loop {
            let run = bytes[i..]
                .iter()
                .position(|&b| SPECIAL[b as usize])
                .unwrap_or(bytes.len() - i);
            if run > 0 {
                variable = false;
                i += run;
            }
            if i - start >= MAX_TOKEN {
                return Err(self.too_long_bare(start));
            }
            match bytes.get(i) {
                None => {
                    self.pos = i;
                    return Err(self.eof_error());
                }
                Some(b'\\') => {
                    variable = false;
                    escaped = true;
                    if bytes.get(i + 1) == Some(&b'\n') {
                        self.line += 1;
                        self.line_start = i + 2;
                    }
                    i = (i + 2).min(bytes.len());
                }
                Some(b'$') => {
                    variable = true;
                    i += 1;
                }
                Some(b'{') if variable => {
                    variable = false;
                    i += 1;
                }
                Some(_) => break,
            }
        }
        if i - start >= MAX_TOKEN {
            return Err(self.too_long_bare(start));
        }
        self.pos = i;
        Ok(Tok::Word(
            Arg::new(
                &self.text[start..i],
                ArgKind::Bare,
                self.span(start, i, line, line_start),
            ),
            escaped,
        ))
    }

    fn quoted(&mut self, quote: u8) -> Result<Tok<'a>, LexError> {
        let bytes = self.bytes();
        let start = self.pos;
        let (line, line_start) = (self.line, self.line_start);
        let first = start + 1;
        let too_long = |line| LexError {
            message: format!(
                "too long parameter, probably missing terminating \"{}\" character",
                quote as char
            ),
            line,
        };
        let mut i = first;
        let mut escaped = false;
        // nginx checks the length before each byte it reads; the bytes
        // `memchr3` skips are ordinary, so checking at each stop (and at the
        // end of the text) reports the same error on the same line.
        loop {
            if i - first >= MAX_TOKEN {
                return Err(too_long(self.line));
            }
            let Some(k) = memchr::memchr3(quote, b'\\', b'\n', &bytes[i..]) else {
                self.pos = bytes.len();
                if bytes.len() - first >= MAX_TOKEN {
                    return Err(too_long(self.line));
                }
                return Err(self.eof_error());
            };
            let j = i + k;
            if j - first >= MAX_TOKEN {
                return Err(too_long(self.line));
            }
            match bytes[j] {
                b'\\' => {
                    escaped = true;
                    if bytes.get(j + 1) == Some(&b'\n') {
                        self.line += 1;
                        self.line_start = j + 2;
                    }
                    i = (j + 2).min(bytes.len());
                }
                b'\n' => {
                    self.line += 1;
                    self.line_start = j + 1;
                    i = j + 1;
                }
                _ => {
                    i = j;
                    break;
                }
            }
        }
        self.pos = i + 1;
        self.need_space = true;
        Ok(Tok::Word(
            Arg::new(
                &self.text[start..i + 1],
                if quote == b'"' {
                    ArgKind::Double
                } else {
                    ArgKind::Single
                },
                self.span(start, i + 1, line, line_start),
            ),
            escaped,
        ))
    }

    /// Reads the Lua code of a `*_by_lua_block` up to its matching `}`;
    /// the lexer stands just after the opening `{`.
    pub(crate) fn lua_block(&mut self) -> Result<Arg<'a>, LexError> {
        let bytes = self.bytes();
        let start = self.pos;
        let (line, line_start) = (self.line, self.line_start);
        let mut depth = 1usize;
        let mut i = start;
        loop {
            match bytes.get(i) {
                None => {
                    self.pos = i;
                    return Err(LexError {
                        message: r#"unexpected end of file, expecting "}""#.to_owned(),
                        line: self.line,
                    });
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.line_start = i + 1;
                    i += 1;
                }
                Some(b'{') => {
                    depth += 1;
                    i += 1;
                }
                Some(b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    i += 1;
                }
                Some(&q @ (b'"' | b'\'')) => {
                    i += 1;
                    while let Some(&b) = bytes.get(i) {
                        if b == b'\\' {
                            i += 1;
                        } else if b == q || b == b'\n' {
                            break;
                        }
                        i += 1;
                    }
                    if bytes.get(i) == Some(&q) {
                        i += 1;
                    }
                }
                Some(b'-') if bytes.get(i + 1) == Some(&b'-') => {
                    i += 2;
                    if let Some(level) = long_bracket(&bytes[i..]) {
                        i = self.skip_long(i, level)?;
                    } else {
                        while bytes.get(i).is_some_and(|&b| b != b'\n') {
                            i += 1;
                        }
                    }
                }
                Some(b'[') => match long_bracket(&bytes[i..]) {
                    Some(level) => i = self.skip_long(i, level)?,
                    None => i += 1,
                },
                Some(_) => i += 1,
            }
        }
        let body = &self.text[start..i];
        self.pos = i + 1;
        Ok(Arg::new(
            body,
            ArgKind::Lua,
            self.span(start, i, line, line_start),
        ))
    }

    /// Skips a Lua long bracket `[==[ ... ]==]` starting at `i`.
    fn skip_long(&mut self, i: usize, level: usize) -> Result<usize, LexError> {
        let bytes = self.bytes();
        let mut j = i + level + 2;
        loop {
            match bytes.get(j) {
                None => {
                    return Err(LexError {
                        message: "unexpected end of file, expecting \"]]\" in Lua code".to_owned(),
                        line: self.line,
                    });
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.line_start = j + 1;
                    j += 1;
                }
                Some(b']') => {
                    let eq = bytes[j + 1..].iter().take_while(|&&b| b == b'=').count();
                    if eq == level && bytes.get(j + 1 + eq) == Some(&b']') {
                        return Ok(j + eq + 2);
                    }
                    j += 1;
                }
                Some(_) => j += 1,
            }
        }
    }
}

/// If `s` opens a Lua long bracket (`[`, any number of `=`, `[`), its level.
fn long_bracket(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'[') {
        return None;
    }
    let eq = s[1..].iter().take_while(|&&b| b == b'=').count();
    (s.get(1 + eq) == Some(&b'[')).then_some(eq)
}
