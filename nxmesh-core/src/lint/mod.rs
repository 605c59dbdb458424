//! The security linter: checks any parsed configuration, generated or
//! hand-written, for the problems of NGINX-NOTES §4 (the checks of gixy and
//! its maintained forks that apply to NxMesh).
//!
//! Each [`Finding`] has a rule id (gixy's plugin name), a [`Severity`], a
//! message and the file and line it is about. Includes are followed in the
//! context of the `include`, as nginx does.
//!
//! ```
//! use nxmesh_core::{lint, parser};
//!
//! let file = parser::parse_str("nginx.conf",
//!     "http { server { listen 80; location / { proxy_set_header Host $http_host; } } }",
//!     &parser::ParseOptions::default())?;
//! let findings = lint::lint(&parser::single_tree(file));
//! assert!(findings.iter().any(|f| f.id == "host_spoofing"));
//! # Ok::<(), parser::ParseError>(())
//! ```

mod rules;

use serde::{Deserialize, Serialize};

use crate::parser::{Node, Tree};

/// How serious a finding is (gixy's scale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Should be fixed.
    Medium,
    /// A vulnerability.
    High,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule, named as gixy names it (`host_spoofing`, …).
    pub id: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
    /// The file.
    pub file: String,
    /// The line of the directive the finding is about.
    pub line: u32,
}

/// The rule ids this linter implements.
pub const RULES: &[&str] = &[
    "add_header_redefinition",
    "alias_traversal",
    "default_server_flag",
    "host_spoofing",
    "hsts_header",
    "http_splitting",
    "if_is_evil",
    "proxy_pass_normalized",
    "ssrf",
    "status_page_exposed",
    "version_disclosure",
    "weak_ssl_tls",
];

/// A directive with includes expanded, owning its values.
#[derive(Debug, Clone)]
pub(crate) struct Dir {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) file: usize,
    pub(crate) line: u32,
    pub(crate) block: Option<Vec<Dir>>,
}

impl Dir {
    pub(crate) fn children(&self) -> &[Dir] {
        self.block.as_deref().unwrap_or(&[])
    }

    pub(crate) fn find<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Dir> + 's {
        self.children().iter().filter(move |d| d.name == name)
    }

    pub(crate) fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }
}

/// Deepest include nesting followed (nginx has no limit, but a tree from
/// [`crate::parser::parse_tree`] has no cycles; this only bounds work).
const MAX_INCLUDE_DEPTH: usize = 16;

pub(crate) fn expand(tree: &Tree<'_>, file: usize, nodes: &[Node<'_>], depth: usize) -> Vec<Dir> {
    let mut out = Vec::new();
    for node in nodes {
        let Node::Directive(d) = node else { continue };
        let name = d.name().into_owned();
        if name == "include" && !d.includes.is_empty() {
            if depth < MAX_INCLUDE_DEPTH {
                for &i in &d.includes {
                    if let Some(f) = tree.files.get(i) {
                        out.extend(expand(tree, i, &f.nodes, depth + 1));
                    }
                }
            }
            continue;
        }
        out.push(Dir {
            name,
            args: d.args.iter().map(|a| a.value().into_owned()).collect(),
            file,
            line: d.line(),
            block: d.block.as_ref().map(|b| expand(tree, file, b, depth)),
        });
    }
    out
}

/// Lints a parsed configuration: the main file (`files[0]`) with its
/// includes. Findings are sorted by file, line and rule.
pub fn lint(tree: &Tree<'_>) -> Vec<Finding> {
    let Some(main) = tree.files.first() else {
        return Vec::new();
    };
    let root = expand(tree, 0, &main.nodes, 0);
    let mut raw = Vec::new();
    rules::run(&root, &mut raw);
    let mut findings: Vec<Finding> = raw
        .into_iter()
        .map(|(id, severity, message, file, line)| Finding {
            id,
            severity,
            message,
            file: tree
                .files
                .get(file)
                .map(|f| f.path.clone())
                .unwrap_or_default(),
            line,
        })
        .collect();
    findings.sort_by(|a, b| (&a.file, a.line, a.id).cmp(&(&b.file, b.line, b.id)));
    findings.dedup();
    findings
}
