//! The formatter: a tree back to nginx text, one statement per line, four
//! spaces per level. Words are written as they were written (their raw
//! text), so parsing the output gives the same tree; comments between the
//! words of a statement end their line and the statement goes on below.

use std::borrow::Cow;

use super::ast::{ArgKind, Directive, Node};

const INDENT: &str = "    ";

/// Formats a list of top-level nodes (a file) as nginx text.
pub fn format(nodes: &[Node<'_>]) -> String {
    // Sizing the output first costs a walk of the tree but saves the
    // reallocations of a growing string, whose old and new buffers would
    // both be live at the peak (the output is about the input's size).
    let len = block_len(nodes, 0);
    let mut out = String::with_capacity(len);
    block(nodes, 0, &mut out);
    debug_assert_eq!(out.len(), len, "format size estimate");
    out
}

/// The length of `block(nodes, depth)`'s output.
fn block_len(nodes: &[Node<'_>], depth: usize) -> usize {
    nodes
        .iter()
        .map(|node| {
            depth * INDENT.len()
                + match node {
                    Node::Comment(c) => c.text.len() + 2,
                    Node::Directive(d) => directive_len(d, depth),
                }
        })
        .sum()
}

/// The length of `directive(d, depth)`'s output.
fn directive_len(d: &Directive<'_>, depth: usize) -> usize {
    // Each word but the first is preceded by a space or starts a fresh
    // line; each comment is ` #text\n` plus the next line's indent.
    let words = std::iter::once(&d.name).chain(&d.args);
    let mut len: usize = words
        .filter(|w| w.kind != ArgKind::Lua)
        .map(|w| w.raw.len() + 1)
        .sum::<usize>()
        - 1;
    len += d
        .comments
        .iter()
        .map(|c| c.text.len() + 3 + (depth + 1) * INDENT.len())
        .sum::<usize>();
    // Comments before a word replace its space with the line break.
    let words = d.args.iter().filter(|w| w.kind != ArgKind::Lua);
    let mut comments = d.comments.iter().peekable();
    for word in words {
        let mut before = false;
        while comments
            .next_if(|c| c.span.start < word.span().start)
            .is_some()
        {
            before = true;
        }
        if before {
            len -= 1;
        }
    }
    if let Some(lua) = d.args.last().filter(|a| a.kind == ArgKind::Lua) {
        len + 2 + lua.raw.len() + 2
    } else if let Some(nodes) = &d.block {
        len + 3 + block_len(nodes, depth + 1) + depth * INDENT.len() + 2
    } else {
        len + 2
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str(INDENT);
    }
}

fn block(nodes: &[Node<'_>], depth: usize, out: &mut String) {
    for node in nodes {
        indent(depth, out);
        match node {
            Node::Comment(c) => {
                out.push('#');
                out.push_str(c.text);
                out.push('\n');
            }
            Node::Directive(d) => directive(d, depth, out),
        }
    }
}

fn directive(d: &Directive<'_>, depth: usize, out: &mut String) {
    // Words and comments in source order.
    let mut comments = d.comments.iter().peekable();
    let mut words = std::iter::once(&d.name).chain(&d.args).peekable();
    let mut first = true;
    let mut fresh_line = false;
    while let Some(word) = words.next_if(|w| w.kind != ArgKind::Lua) {
        while let Some(c) = comments.next_if(|c| c.span.start < word.span().start) {
            out.push_str(" #");
            out.push_str(c.text);
            out.push('\n');
            indent(depth + 1, out);
            fresh_line = true;
        }
        if !first && !fresh_line {
            out.push(' ');
        }
        out.push_str(word.raw);
        first = false;
        fresh_line = false;
    }
    let lua = words.next();
    let trailing: Vec<_> = comments.collect();
    let end = |out: &mut String| {
        for c in &trailing {
            out.push_str(" #");
            out.push_str(c.text);
            out.push('\n');
            indent(depth + 1, out);
        }
    };
    if let Some(lua) = lua {
        end(out);
        out.push_str(" {");
        out.push_str(lua.raw);
        out.push_str("}\n");
    } else if let Some(nodes) = &d.block {
        end(out);
        out.push_str(" {\n");
        block(nodes, depth + 1, out);
        indent(depth, out);
        out.push_str("}\n");
    } else {
        end(out);
        out.push_str(";\n");
    }
}

/// Writes `value` as one nginx word that reads back as exactly `value`
/// (NGINX-NOTES §6.2): bare when safe, else double-quoted with `\`, `"`,
/// TAB, CR and LF escaped.
pub fn quote(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    let safe = !value.is_empty()
        && !matches!(bytes[0], b'}' | b'#' | b'"' | b'\'')
        && !bytes
            .iter()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b'\\'));
    if safe {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}
