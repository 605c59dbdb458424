//! The intended directive tree, its text, and the check that the text parses
//! back to exactly that tree.
//!
//! The generator never writes text directly: it builds [`Stmt`]s whose
//! arguments are plain values, and [`write`] turns every argument into one
//! nginx word with [`crate::parser::quote`]. [`verify_file`] parses the text
//! with the core parser and compares the result, statement by statement and
//! value by value, with the intended tree.

use std::borrow::Cow;

use crate::parser::{self, Node, quote};

/// One statement the generator emits: a directive name, its argument values
/// (unquoted, as nginx will see them) and, for block directives, the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt<'a> {
    /// The directive name; always a generator constant or an allowlisted
    /// custom directive name, never free user text.
    pub name: &'static str,
    /// The argument values (borrowed for the generator's constant
    /// statements, so that rendering thousands of virtual hosts does not
    /// allocate them again and again).
    pub args: Cow<'a, [Cow<'a, str>]>,
    /// The block, for block directives.
    pub block: Option<Vec<Stmt<'a>>>,
}

impl<'a> Stmt<'a> {
    /// A simple directive.
    pub fn simple(name: &'static str, args: Vec<Cow<'a, str>>) -> Self {
        Stmt {
            name,
            args: Cow::Owned(args),
            block: None,
        }
    }

    /// A block directive.
    pub fn block(name: &'static str, args: Vec<Cow<'a, str>>, block: Vec<Stmt<'a>>) -> Self {
        Stmt {
            name,
            args: Cow::Owned(args),
            block: Some(block),
        }
    }

    /// A simple directive with constant arguments.
    pub const fn fixed(name: &'static str, args: &'a [Cow<'a, str>]) -> Self {
        Stmt {
            name,
            args: Cow::Borrowed(args),
            block: None,
        }
    }

    /// Counts this statement and every statement inside it.
    pub fn count(&self) -> usize {
        1 + self
            .block
            .as_ref()
            .map_or(0, |b| b.iter().map(Stmt::count).sum())
    }
}

/// Shorthand for a constant argument.
pub(crate) fn c(s: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(s)
}

const INDENT: &str = "    ";

/// Writes statements as nginx text, four spaces per level.
pub fn write(stmts: &[Stmt<'_>], out: &mut String) {
    write_level(stmts, 0, out);
}

fn write_level(stmts: &[Stmt<'_>], depth: usize, out: &mut String) {
    for s in stmts {
        for _ in 0..depth {
            out.push_str(INDENT);
        }
        out.push_str(s.name);
        for a in s.args.iter() {
            out.push(' ');
            if is_plain(a) {
                out.push_str(a);
            } else {
                out.push_str(&quote(a));
            }
        }
        match &s.block {
            None => out.push_str(";\n"),
            Some(b) => {
                out.push_str(" {\n");
                write_level(b, depth + 1, out);
                for _ in 0..depth {
                    out.push_str(INDENT);
                }
                out.push_str("}\n");
            }
        }
    }
}

/// Whether `a` is written bare by [`quote`] anyway: a fast path for the
/// common words (host names, paths, numbers, variables), which never need
/// quoting. Anything else goes through `quote`.
fn is_plain(a: &str) -> bool {
    !a.is_empty() && a.bytes().all(|b| PLAIN[usize::from(b)])
}

/// The bytes of [`is_plain`] words, as a lookup table.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'.' | b'_' | b'/' | b':' | b'-' | b'=' | b'$' | b'*' | b'@'
            );
        b += 1;
    }
    t
};

/// Where the parsed text differs from the intended tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct Mismatch {
    /// The file.
    pub file: String,
    /// What differs, with the path of the statement.
    pub message: String,
}

/// Compares parsed nodes (comments ignored) with the intended statements.
/// Includes are not followed: the `include` statement itself is compared.
pub fn verify_nodes(file: &str, nodes: &[Node<'_>], intended: &[Stmt<'_>]) -> Result<(), Mismatch> {
    compare(nodes, intended, "").map_err(|message| Mismatch {
        file: file.to_owned(),
        message,
    })
}

fn compare(nodes: &[Node<'_>], intended: &[Stmt<'_>], path: &str) -> Result<(), String> {
    let parsed: Vec<&parser::Directive<'_>> = nodes
        .iter()
        .filter_map(|n| match n {
            Node::Directive(d) => Some(d),
            Node::Comment(_) => None,
        })
        .collect();
    if parsed.len() != intended.len() {
        return Err(format!(
            "{path}: {} statements parsed, {} intended",
            parsed.len(),
            intended.len()
        ));
    }
    for (i, (d, s)) in parsed.iter().zip(intended).enumerate() {
        let here = format!("{path}/{}[{i}]", s.name);
        if d.name() != s.name {
            return Err(format!("{here}: parsed directive {:?}", d.name()));
        }
        let args: Vec<Cow<'_, str>> = d.args.iter().map(parser::Arg::value).collect();
        if args.len() != s.args.len() || args.iter().zip(s.args.iter()).any(|(a, b)| a != b) {
            return Err(format!(
                "{here}: parsed arguments {args:?}, intended {:?}",
                s.args
            ));
        }
        match (&d.block, &s.block) {
            (None, None) => {}
            (Some(pb), Some(ib)) => compare(pb, ib, &here)?,
            _ => return Err(format!("{here}: block presence differs")),
        }
    }
    Ok(())
}

/// Parses `text` (syntax only, no context checks) and compares it with the
/// intended statements.
pub fn verify_file(file: &str, text: &str, intended: &[Stmt<'_>]) -> Result<(), Mismatch> {
    let opts = parser::ParseOptions {
        check: false,
        recover: false,
        single_file: true,
        ..Default::default()
    };
    let parsed = parser::parse_str(file, text, &opts).map_err(|e| Mismatch {
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    if let Some(e) = parsed.errors.first() {
        return Err(Mismatch {
            file: file.to_owned(),
            message: e.to_string(),
        });
    }
    verify_nodes(file, &parsed.nodes, intended)
}
