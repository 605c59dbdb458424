//! Tests of the nginx configuration parser: tokenizer and error snapshots,
//! the corpus in `testdata/corpus` (expected crossplane JSON, formatting
//! round trip, differential run against crossplane 0.5.8), property tests.

mod corpus;
mod crossplane;
mod lexing;
mod props;

use std::path::{Path, PathBuf};

use nxmesh_core::parser::{self, ArgKind, MemorySource, Node, ParseOptions};

/// `testdata/corpus` of the repository.
pub(crate) fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/corpus")
}

/// Every file under `dir`, as paths relative to it, sorted.
pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let rel = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(rel);
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The files of `dir` in memory, under `prefix/`.
pub(crate) fn load(dir: &Path, prefix: &str) -> MemorySource {
    let mut source = MemorySource::new();
    for rel in walk(dir) {
        let content = std::fs::read(dir.join(&rel)).unwrap();
        source.insert(format!("{prefix}/{}", rel.to_str().unwrap()), content);
    }
    source
}

/// The configuration files of the corpus (not expected outputs, licences or
/// the directive table), relative to `corpus_dir()`.
pub(crate) fn corpus_configs() -> Vec<PathBuf> {
    walk(&corpus_dir())
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            p.components().count() > 2
                && !name.ends_with(".json")
                && name != "LICENSE"
                && name != "README.md"
        })
        .collect()
}

/// A structural rendering of a tree: names, argument values and kinds,
/// blocks and comments, without positions.
pub(crate) fn shape(nodes: &[Node<'_>]) -> String {
    let mut out = String::new();
    shape_into(nodes, 0, &mut out);
    out
}

fn shape_into(nodes: &[Node<'_>], depth: usize, out: &mut String) {
    for node in nodes {
        out.push_str(&"  ".repeat(depth));
        match node {
            Node::Comment(c) => out.push_str(&format!("#{:?}\n", c.text)),
            Node::Directive(d) => {
                out.push_str(&format!("{:?}", d.name.value()));
                for a in &d.args {
                    let tag = match a.kind {
                        ArgKind::Bare => "",
                        ArgKind::Double => "d",
                        ArgKind::Single => "s",
                        ArgKind::Lua => "lua",
                    };
                    out.push_str(&format!(" {tag}{:?}", a.value()));
                }
                for c in &d.comments {
                    out.push_str(&format!(" #{:?}", c.text));
                }
                match &d.block {
                    Some(block) => {
                        out.push_str(" {\n");
                        shape_into(block, depth + 1, out);
                        out.push_str(&"  ".repeat(depth));
                        out.push_str("}\n");
                    }
                    None => out.push_str(";\n"),
                }
            }
        }
    }
}

/// Syntax-only options: nothing is dropped.
pub(crate) fn syntax_only() -> ParseOptions {
    ParseOptions {
        check: false,
        single_file: true,
        ..ParseOptions::default()
    }
}

/// Parses `text` syntax-only and, if it parses, checks that formatting and
/// re-parsing gives the same shape. Returns the shape or the error.
pub(crate) fn roundtrip(text: &str) -> Result<String, String> {
    let opts = ParseOptions {
        recover: false,
        ..syntax_only()
    };
    let file = parser::parse_str("t.conf", text, &opts).map_err(|e| e.to_string())?;
    let before = shape(&file.nodes);
    let formatted = parser::format(&file.nodes);
    let again = parser::parse_str("t.conf", &formatted, &opts)
        .map_err(|e| format!("formatted text does not parse: {e}\n{formatted}"))?;
    let after = shape(&again.nodes);
    if before != after {
        return Err(format!(
            "round trip changed the tree:\n{before}\n---\n{after}\n{formatted}"
        ));
    }
    // Formatting is idempotent.
    assert_eq!(parser::format(&again.nodes), formatted);
    Ok(before)
}
