//! The tokenizer, a port of nginx's `ngx_conf_read_token` plus the Lua-aware
//! reader of lua-nginx-module (`ngx_http_lua_conf_read_lua_token`).
//!
//! It works on bytes and only ever cuts the text at ASCII delimiters, so
//! every slice it hands out is valid `&str`. The scanning of runs of
//! ordinary bytes is done with `nom` byte combinators.

use nom::bytes::complete::{take_till, take_while};

use super::ast::{Arg, ArgKind, Comment, Span};

/// nginx's `NGX_CONF_BUFFER`: a token must be shorter than this.
pub(crate) const MAX_TOKEN: usize = 4096;

/// One lexical event.
#[derive(Debug)]
pub(crate) enum Tok<'a> {
    /// A word (directive name or argument).
    Word(Arg<'a>),
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

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

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

type NomErr<'a> = nom::Err<nom::error::Error<&'a [u8]>>;

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

    /// Counts the newlines of `self.text[from..to]` into the position.
    fn advance_lines(&mut self, from: usize, to: usize) {
        for (i, &b) in self.bytes()[from..to].iter().enumerate() {
            if b == b'\n' {
                self.line += 1;
                self.line_start = from + i + 1;
            }
        }
    }

    fn skip_space(&mut self) {
        let rest = &self.bytes()[self.pos..];
        let res: Result<_, NomErr<'a>> = take_while(is_space)(rest);
        let n = match res {
            Ok((_, ws)) => ws.len(),
            Err(_) => 0,
        };
        let from = self.pos;
        self.pos += n;
        self.advance_lines(from, self.pos);
    }

    fn eof_error(&self) -> LexError {
        LexError {
            message: r#"unexpected end of file, expecting ";" or "}""#.to_owned(),
            line: self.line,
        }
    }

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
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |i| start + i);
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

    fn bare(&mut self) -> Result<Tok<'a>, LexError> {
        let bytes = self.bytes();
        let start = self.pos;
        let (line, line_start) = (self.line, self.line_start);
        let mut i = start;
        let mut variable = false;
        loop {
            let res: Result<_, NomErr<'a>> = take_till(|b: u8| SPECIAL[b as usize])(&bytes[i..]);
            let run = match res {
                Ok((_, run)) => run.len(),
                Err(_) => 0,
            };
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
        Ok(Tok::Word(Arg {
            raw: &self.text[start..i],
            kind: ArgKind::Bare,
            span: self.span(start, i, line, line_start),
        }))
    }

    fn quoted(&mut self, quote: u8) -> Result<Tok<'a>, LexError> {
        let bytes = self.bytes();
        let start = self.pos;
        let (line, line_start) = (self.line, self.line_start);
        let mut i = start + 1;
        loop {
            if i - (start + 1) >= MAX_TOKEN {
                return Err(LexError {
                    message: format!(
                        "too long parameter, probably missing terminating \"{}\" character",
                        quote as char
                    ),
                    line: self.line,
                });
            }
            match bytes.get(i) {
                None => {
                    self.pos = i;
                    return Err(self.eof_error());
                }
                Some(b'\\') => {
                    if bytes.get(i + 1) == Some(&b'\n') {
                        self.line += 1;
                        self.line_start = i + 2;
                    }
                    i = (i + 2).min(bytes.len());
                }
                Some(b'\n') => {
                    self.line += 1;
                    self.line_start = i + 1;
                    i += 1;
                }
                Some(&b) if b == quote => break,
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        self.need_space = true;
        Ok(Tok::Word(Arg {
            raw: &self.text[start..i + 1],
            kind: if quote == b'"' {
                ArgKind::Double
            } else {
                ArgKind::Single
            },
            span: self.span(start, i + 1, line, line_start),
        }))
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
        Ok(Arg {
            raw: body,
            kind: ArgKind::Lua,
            span: self.span(start, i, line, line_start),
        })
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
