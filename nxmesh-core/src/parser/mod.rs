//! The nginx configuration parser: nginx-exact tokenizing (a port of
//! `ngx_conf_read_token`, with a Lua-aware reader for the 19
//! `*_by_lua_block` directives), a lossless tree that keeps comments,
//! context and argument checks against a directive table generated from
//! nginx's own sources per version, `include` resolution through a
//! [`Source`], crossplane-compatible JSON and a formatter.
//!
//! ```
//! use nxmesh_core::parser::{self, ParseOptions};
//!
//! let file = parser::parse_str("nginx.conf", "events {}\nhttp { server { listen 80; } }\n",
//!     &ParseOptions::default())?;
//! assert!(file.errors.is_empty());
//! let text = parser::format(&file.nodes);
//! assert_eq!(text, "events {\n}\nhttp {\n    server {\n        listen 80;\n    }\n}\n");
//! # Ok::<(), parser::ParseError>(())
//! ```
//!
//! Parsing a tree of files goes through a [`Source`]: [`MemorySource`]
//! (tests, `nginx -T` dumps via [`MemorySource::from_dump`]) or, with the
//! cargo feature `fs`, `FsSource`, which reads the file system:
//!
//! ```
//! use nxmesh_core::parser::{self, JsonOptions, MemorySource, ParseOptions, SourceArena};
//!
//! let mut source = MemorySource::new();
//! source.insert("/etc/nginx/nginx.conf", "http { include conf.d/*.conf; }");
//! source.insert("/etc/nginx/conf.d/a.conf", "server { listen 80; }");
//! let arena = SourceArena::new();
//! let tree = parser::parse_tree(&arena, &source, "/etc/nginx/nginx.conf",
//!     &ParseOptions::default())?;
//! assert_eq!(tree.files.len(), 2);
//! let json = parser::payload(&tree, JsonOptions::default()).to_json();
//! assert!(json.contains("\"includes\": [\n"));
//! # Ok::<(), parser::ParseError>(())
//! ```
//!
//! Text that is not valid UTF-8 is decoded with U+FFFD replacements
//! ([`decode`]), as crossplane does.

mod ast;
mod format;
mod grammar;
mod json;
mod lexer;
mod source;
pub mod table;

pub use ast::{Arg, ArgKind, Comment, Directive, Node, Span, unescape};
pub use format::{format, quote};
pub use grammar::{
    ConfigFile, ErrorKind, ParseError, ParseOptions, SourceArena, Tree, decode, parse_str,
    parse_tree,
};
pub use json::{Config, FileError, JsonOptions, Payload, PayloadError, Statement, Status, payload};
#[cfg(feature = "fs")]
pub use source::FsSource;
pub use source::{MemorySource, Source, SourceError, glob_match, has_magic};
pub use table::DirectiveTable;

/// Parses one file and wraps it as a one-file [`Tree`], for [`payload`].
pub fn single_tree<'a>(file: ConfigFile<'a>) -> Tree<'a> {
    Tree { files: vec![file] }
}
