//! The syntax tree: statements, blocks and comments of one configuration
//! file. Arguments borrow the input text; the unescaped value is computed on
//! demand, so parsing allocates only the tree itself.
//!
//! The tree is kept small because it is most of a parse's memory (a large
//! configuration has tens of thousands of statements and about three words
//! per statement): an [`Arg`] is 32 bytes (its end offset is not stored but
//! computed from its text), and a [`Directive`] holds boxed slices, which
//! are two words and allocate nothing when empty.

use std::borrow::Cow;

/// Where a piece of text is in its file. `line` and `column` are 1-based;
/// `column` counts bytes. `start..end` are byte offsets into the file text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: u32,
    /// Byte offset one past the last byte.
    pub end: u32,
    /// Line of the first byte.
    pub line: u32,
    /// Column of the first byte.
    pub column: u32,
}

/// How an argument was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgKind {
    /// A bare word.
    Bare,
    /// A `"double-quoted"` string.
    Double,
    /// A `'single-quoted'` string.
    Single,
    /// The Lua code of a `*_by_lua_block { ... }`, without the braces.
    Lua,
}

/// One word of a statement: the directive name or an argument.
#[derive(Clone)]
pub struct Arg<'a> {
    /// The text as written, quotes included (for [`ArgKind::Lua`]: the code
    /// between the braces).
    pub raw: &'a str,
    /// How it was written.
    pub kind: ArgKind,
    /// [`Span::start`], [`Span::line`] and [`Span::column`] of `raw`; the
    /// end is `start + raw.len()`.
    start: u32,
    line: u32,
    column: u32,
}

impl std::fmt::Debug for Arg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arg")
            .field("raw", &self.raw)
            .field("kind", &self.kind)
            .field("span", &self.span())
            .finish()
    }
}

impl<'a> Arg<'a> {
    /// A word whose text `raw` is at `span` (`span.end` is implied by
    /// `raw`).
    pub(crate) fn new(raw: &'a str, kind: ArgKind, span: Span) -> Self {
        debug_assert_eq!(span.end.wrapping_sub(span.start) as usize, raw.len());
        Self {
            raw,
            kind,
            start: span.start,
            line: span.line,
            column: span.column,
        }
    }

    /// Where `raw` is.
    pub fn span(&self) -> Span {
        Span {
            start: self.start,
            end: self.start.wrapping_add(self.raw.len() as u32),
            line: self.line,
            column: self.column,
        }
    }

    /// The line `raw` starts on ([`Span::line`] without building the span).
    pub fn line(&self) -> u32 {
        self.line
    }

    /// Whether the argument was quoted.
    pub fn quoted(&self) -> bool {
        matches!(self.kind, ArgKind::Double | ArgKind::Single)
    }

    /// The text between the quotes (the whole text when bare).
    pub fn inner(&self) -> &'a str {
        if self.quoted() && self.raw.len() >= 2 {
            &self.raw[1..self.raw.len() - 1]
        } else {
            self.raw
        }
    }

    /// The value nginx sees: quotes removed and `\"`, `\'`, `\\`, `\t`,
    /// `\r`, `\n` unescaped; other backslash pairs are kept as written
    /// (`ngx_conf_read_token`). Borrowed unless an escape changes the text.
    pub fn value(&self) -> Cow<'a, str> {
        if self.kind == ArgKind::Lua {
            return Cow::Borrowed(self.raw);
        }
        unescape(self.inner())
    }

    /// The argument as crossplane 0.5.8 reports it: quotes removed, and in
    /// quoted strings only the escaped quote character unescaped.
    pub fn crossplane(&self) -> Cow<'a, str> {
        let inner = self.inner();
        let quote = match self.kind {
            ArgKind::Double => "\\\"",
            ArgKind::Single => "\\'",
            ArgKind::Bare | ArgKind::Lua => return Cow::Borrowed(inner),
        };
        if inner.contains(quote) {
            Cow::Owned(inner.replace(quote, &quote[1..]))
        } else {
            Cow::Borrowed(inner)
        }
    }
}

/// Unescapes `text` with nginx's rules (see [`Arg::value`]).
pub fn unescape(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let Some(first) = memchr::memchr(b'\\', bytes) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut rest = &text[first..];
    while let Some(i) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (replacement, skip) = match after.as_bytes().first() {
            Some(b'"') => ("\"", 2),
            Some(b'\'') => ("'", 2),
            Some(b'\\') => ("\\", 2),
            Some(b't') => ("\t", 2),
            Some(b'r') => ("\r", 2),
            Some(b'n') => ("\n", 2),
            _ => ("\\", 1),
        };
        out.push_str(replacement);
        rest = &rest[i + skip..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A `# comment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment<'a> {
    /// The text after `#`, up to the end of the line.
    pub text: &'a str,
    /// Where the comment is, `#` included.
    pub span: Span,
}

/// A simple (`name args;`) or block (`name args { ... }`) directive.
#[derive(Clone, Debug)]
pub struct Directive<'a> {
    /// The directive name (a word like any other; it may even be quoted).
    pub name: Arg<'a>,
    /// The arguments; a Lua block's code is the last one.
    pub args: Box<[Arg<'a>]>,
    /// The block, if the statement ended with `{`.
    pub block: Option<Box<[Node<'a>]>>,
    /// Comments written between the words of the statement.
    pub comments: Box<[Comment<'a>]>,
    /// For an `include`: indices of the included files in the
    /// [`Tree`](super::Tree), in glob order. Empty for a single file parse.
    pub includes: Box<[usize]>,
}

impl<'a> Directive<'a> {
    /// The directive name as nginx sees it.
    pub fn name(&self) -> Cow<'a, str> {
        self.name.value()
    }

    /// The line of the directive name.
    pub fn line(&self) -> u32 {
        self.name.line
    }

    /// Whether this directive's block is Lua code (a `*_by_lua_block`).
    pub fn is_lua_block(&self) -> bool {
        self.args.last().is_some_and(|a| a.kind == ArgKind::Lua)
    }
}

/// One entry of a block or file.
#[derive(Clone, Debug)]
pub enum Node<'a> {
    /// A directive.
    Directive(Directive<'a>),
    /// A comment on its own (not inside a statement).
    Comment(Comment<'a>),
}

// The sizes the memory figures of BENCHMARKS.md rely on.
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<Arg<'static>>() == 32);
    assert!(std::mem::size_of::<Node<'static>>() == 96);
};
