//! The crossplane-compatible JSON payload (crossplane 0.5.8, README
//! "Schema"): `status`, `errors`, `config[]` of `file`, `status`, `errors`,
//! `parsed`. Arguments are given as crossplane gives them (quotes removed,
//! escapes kept; see [`Arg::crossplane`](super::Arg::crossplane)).

use std::borrow::Cow;

use serde::Serialize;

use super::ast::{Directive, Node};
use super::grammar::{ParseError, Tree};

/// Output options, as crossplane's `parse()` keywords.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonOptions {
    /// Emit comments as `{"directive": "#", ..., "comment": text}`.
    pub include_comments: bool,
    /// One config with the included statements in place of each `include`;
    /// every statement gets a `file` key.
    pub combine: bool,
    /// The tree was parsed without following includes: no `includes` keys.
    pub single_file: bool,
}

/// `"ok"` or `"failed"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No error.
    Ok,
    /// At least one error.
    Failed,
}

/// The whole payload.
#[derive(Clone, Debug, Serialize)]
pub struct Payload<'a> {
    /// `failed` if any file has an error.
    pub status: Status,
    /// Every error, with its file.
    pub errors: Vec<PayloadError>,
    /// One entry per file, main file first.
    pub config: Vec<Config<'a>>,
}

/// A payload-level error.
#[derive(Clone, Debug, Serialize)]
pub struct PayloadError {
    /// The file.
    pub file: String,
    /// The message with its ` in FILE:LINE` suffix.
    pub error: String,
    /// The line, if any.
    pub line: Option<u32>,
}

/// A file-level error.
#[derive(Clone, Debug, Serialize)]
pub struct FileError {
    /// The message with its ` in FILE:LINE` suffix.
    pub error: String,
    /// The line, if any.
    pub line: Option<u32>,
}

/// One file.
#[derive(Clone, Debug, Serialize)]
pub struct Config<'a> {
    /// Its path.
    pub file: String,
    /// `failed` if it has an error.
    pub status: Status,
    /// Its errors.
    pub errors: Vec<FileError>,
    /// Its statements.
    pub parsed: Vec<Statement<'a>>,
}

/// One statement (or comment, with `directive` `#`).
#[derive(Clone, Debug, Serialize)]
pub struct Statement<'a> {
    /// The directive name, `#` for a comment.
    pub directive: Cow<'a, str>,
    /// Its line.
    pub line: u32,
    /// Its arguments.
    pub args: Vec<Cow<'a, str>>,
    /// For `include`: indices into `config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub includes: Option<Vec<usize>>,
    /// The block, iff the statement ended with `{`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<Vec<Statement<'a>>>,
    /// For a comment: the text after `#`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<&'a str>,
    /// With `combine`: the file the statement comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<&'a str>,
}

impl Payload<'_> {
    /// The payload as pretty JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn status(failed: bool) -> Status {
    if failed { Status::Failed } else { Status::Ok }
}

fn comment<'a>(text: &'a str, line: u32, file: Option<&'a str>) -> Statement<'a> {
    Statement {
        directive: Cow::Borrowed("#"),
        line,
        args: Vec::new(),
        includes: None,
        block: None,
        comment: Some(text.strip_suffix('\r').unwrap_or(text)),
        file,
    }
}

/// crossplane's `_prepare_if_args`: strips the parentheses of `if`.
fn prepare_if_args(args: &mut Vec<Cow<'_, str>>) {
    let (Some(first), Some(last)) = (args.first(), args.last()) else {
        return;
    };
    if !(first.starts_with('(') && last.ends_with(')')) {
        return;
    }
    let first = args[0][1..].trim_start().to_owned();
    args[0] = Cow::Owned(first);
    let n = args.len() - 1;
    let last = &args[n];
    let last = last[..last.len() - 1].trim_end().to_owned();
    args[n] = Cow::Owned(last);
    if args[n].is_empty() {
        args.pop();
    }
    if args.first().is_some_and(|a| a.is_empty()) {
        args.remove(0);
    }
}

struct Builder<'a> {
    tree: &'a Tree<'a>,
    opts: JsonOptions,
}

impl<'a> Builder<'a> {
    fn nodes(&self, nodes: &'a [Node<'a>], file: &'a str, out: &mut Vec<Statement<'a>>) {
        for node in nodes {
            match node {
                Node::Comment(c) => {
                    if self.opts.include_comments {
                        let file = self.opts.combine.then_some(file);
                        out.push(comment(c.text, c.span.line, file));
                    }
                }
                Node::Directive(d) => self.directive(d, file, out),
            }
        }
    }

    fn directive(&self, d: &'a Directive<'a>, file: &'a str, out: &mut Vec<Statement<'a>>) {
        let name = d.name.crossplane();
        let is_include = name == "include" && !self.opts.single_file;
        if is_include && self.opts.combine {
            for &index in &d.includes {
                if let Some(included) = self.tree.files.get(index) {
                    self.nodes(&included.nodes, &included.path, out);
                }
            }
            return;
        }
        let mut args: Vec<Cow<'a, str>> = d.args.iter().map(|a| a.crossplane()).collect();
        if name == "if" {
            prepare_if_args(&mut args);
        }
        let block = d.block.as_ref().map(|nodes| {
            let mut block = Vec::new();
            self.nodes(nodes, file, &mut block);
            block
        });
        out.push(Statement {
            directive: name,
            line: d.line(),
            args,
            includes: is_include.then(|| d.includes.to_vec()),
            block,
            comment: None,
            file: self.opts.combine.then_some(file),
        });
        if self.opts.include_comments {
            for c in &d.comments {
                out.push(comment(c.text, d.line(), self.opts.combine.then_some(file)));
            }
        }
    }
}

fn errors(list: &[ParseError]) -> Vec<FileError> {
    list.iter()
        .map(|e| FileError {
            error: e.to_string(),
            line: e.line,
        })
        .collect()
}

/// Builds the crossplane payload of a parsed tree; it borrows the tree.
pub fn payload<'a>(tree: &'a Tree<'a>, opts: JsonOptions) -> Payload<'a> {
    let builder = Builder { tree, opts };
    let payload_errors: Vec<PayloadError> = tree
        .errors()
        .map(|e| PayloadError {
            file: e.file.clone(),
            error: e.to_string(),
            line: e.line,
        })
        .collect();
    let failed = !payload_errors.is_empty();
    let config = if opts.combine {
        let mut parsed = Vec::new();
        if let Some(main) = tree.files.first() {
            builder.nodes(&main.nodes, &main.path, &mut parsed);
        }
        vec![Config {
            file: tree
                .files
                .first()
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            status: status(failed),
            errors: tree.files.iter().flat_map(|f| errors(&f.errors)).collect(),
            parsed,
        }]
    } else {
        tree.files
            .iter()
            .map(|f| {
                let mut parsed = Vec::new();
                builder.nodes(&f.nodes, &f.path, &mut parsed);
                Config {
                    file: f.path.clone(),
                    status: status(!f.errors.is_empty()),
                    errors: errors(&f.errors),
                    parsed,
                }
            })
            .collect()
    };
    Payload {
        status: status(failed),
        errors: payload_errors,
        config,
    }
}
