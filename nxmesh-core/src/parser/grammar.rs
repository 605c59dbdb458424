//! The grammar: statements and blocks built from the token stream, context
//! and argument checks against the directive table (as `ngx_conf_handler`
//! does), include resolution through a [`Source`], and error recovery.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::ast::{Arg, Comment, Directive, Node};
use super::lexer::{LexError, Lexer, Tok};
use super::source::{Source, has_magic};
use super::table::{self, DirectiveTable, FLAG, Mismatch, Usage};

/// How to parse.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// The directives known (nginx version, lua-nginx-module or not).
    pub table: DirectiveTable,
    /// Unknown directives are errors (`unknown directive "x"`); entries of
    /// map-like blocks (`map`, `geo`, `types`, ...) are never unknown.
    pub strict: bool,
    /// Check contexts and argument counts (crossplane's `check_ctx` and
    /// `check_args`); when false only the syntax is checked, so no
    /// statement is ever dropped (what the formatter wants).
    pub check: bool,
    /// Record errors and go on (crossplane's `catch_errors`, the default);
    /// when false the first error ends the parse.
    pub recover: bool,
    /// Do not follow `include` (crossplane's `single`).
    pub single_file: bool,
    /// Directives to leave out of the tree, with their blocks (crossplane's
    /// `ignore`).
    pub ignore: Vec<String>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            table: DirectiveTable::latest(),
            strict: false,
            check: true,
            recover: true,
            single_file: false,
            ignore: Vec::new(),
        }
    }
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text cannot be tokenized or its braces do not balance; the rest
    /// of the file is not parsed.
    Syntax,
    /// A directive is unknown (strict), misplaced or has the wrong
    /// arguments; it is left out of the tree.
    Directive,
    /// An included file cannot be read, or includes itself.
    Include,
}

/// A parse error, worded as nginx words it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} in {file}{}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ParseError {
    /// The kind of error.
    pub kind: ErrorKind,
    /// nginx's message, without the ` in FILE:LINE` suffix.
    pub message: String,
    /// The file the error is in.
    pub file: String,
    /// The line, when there is one.
    pub line: Option<u32>,
}

/// One parsed configuration file.
#[derive(Clone, Debug)]
pub struct ConfigFile<'a> {
    /// Its path.
    pub path: String,
    /// Its text.
    pub text: &'a str,
    /// Its top-level statements and comments.
    pub nodes: Vec<Node<'a>>,
    /// Errors recorded in it (recovery mode).
    pub errors: Vec<ParseError>,
}

/// A configuration with its included files: `files[0]` is the main file,
/// included files follow in discovery order (the order of crossplane's
/// `config` list).
#[derive(Clone, Debug)]
pub struct Tree<'a> {
    /// The files.
    pub files: Vec<ConfigFile<'a>>,
}

impl Tree<'_> {
    /// All errors, file by file.
    pub fn errors(&self) -> impl Iterator<Item = &ParseError> {
        self.files.iter().flat_map(|f| &f.errors)
    }
}

/// Owns the text of the files that a [`Tree`] borrows.
#[derive(Default)]
pub struct SourceArena(typed_arena::Arena<String>);

impl SourceArena {
    /// An empty arena.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for SourceArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceArena")
    }
}

/// Decodes file content as UTF-8, replacing invalid bytes with U+FFFD as
/// crossplane does (nginx itself is byte-oriented; such bytes only ever
/// appear in comments and arguments, so no structure is lost). Borrows when
/// the content is valid.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The context a block's statements are checked in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctx {
    /// A context of the directive table (`table::CTX_*`).
    Known(u32),
    /// The body of `map`, `geo`, `types`, `split_clients`, `charset_map`:
    /// entries are key/value pairs, not directives.
    MapLike,
    /// The block of a directive unknown to the table: nothing is checked.
    Other,
}

fn child_ctx(parent: Ctx, name: &str) -> Ctx {
    use table::*;
    let Ctx::Known(bit) = parent else {
        return Ctx::Other;
    };
    let bit = match (bit, name) {
        (CTX_MAIN, "events") => CTX_EVENT,
        (CTX_MAIN, "http") => CTX_HTTP_MAIN,
        (CTX_MAIN, "mail") => CTX_MAIL_MAIN,
        (CTX_MAIN, "stream") => CTX_STREAM_MAIN,
        (CTX_HTTP_MAIN, "server") => CTX_HTTP_SRV,
        (CTX_HTTP_MAIN, "upstream") => CTX_HTTP_UPS,
        (CTX_HTTP_SRV | CTX_HTTP_LOC, "location") => CTX_HTTP_LOC,
        (CTX_HTTP_SRV, "if") => CTX_HTTP_SIF,
        (CTX_HTTP_LOC, "if") => CTX_HTTP_LIF,
        (CTX_HTTP_LOC, "limit_except") => CTX_HTTP_LMT,
        (CTX_MAIL_MAIN, "server") => CTX_MAIL_SRV,
        (CTX_STREAM_MAIN, "server") => CTX_STREAM_SRV,
        (CTX_STREAM_MAIN, "upstream") => CTX_STREAM_UPS,
        (_, "map" | "geo" | "types" | "split_clients" | "charset_map") => return Ctx::MapLike,
        _ => return Ctx::Other,
    };
    Ctx::Known(bit)
}

/// Files discovered through `include`, in discovery order.
struct Registry<'s> {
    source: &'s dyn Source,
    prefix: String,
    paths: Vec<String>,
    ctx: Vec<Ctx>,
    /// For each file, the files that include it, main file first.
    chain: Vec<Vec<usize>>,
    content: Vec<Option<Vec<u8>>>,
    index: HashMap<String, usize>,
}

/// FxHash (rustc's hasher) for the directive-name cache: a multiply and a
/// rotate per 8 bytes, where SipHash costs more than the table's binary
/// search it replaces. It is not collision-resistant, so the cache is
/// bounded by [`NAME_CACHE_MAX`].
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// At most this many distinct names are cached: real configurations use a
/// few hundred, and the bound keeps crafted input (many colliding names)
/// from making lookups slow.
const NAME_CACHE_MAX: usize = 1024;

type NameCache<'a> = HashMap<&'a str, Option<&'static [Usage]>, BuildHasherDefault<FxHasher>>;

struct FileParser<'a, 'c, 's> {
    lx: Lexer<'a>,
    opts: &'c ParseOptions,
    path: &'c str,
    me: usize,
    errors: Vec<ParseError>,
    registry: Option<&'c mut Registry<'s>>,
    /// The entries of the open blocks, innermost last: a block's entries
    /// are moved into a slice of exactly their number when it closes, so
    /// the tree holds no spare capacity and no vector grows per block.
    nodes: Vec<Node<'a>>,
    /// The arguments of the statement being read (likewise moved into an
    /// exact slice when it ends).
    args: Vec<Arg<'a>>,
    /// The comments inside the statement being read.
    comments: Vec<Comment<'a>>,
    /// Directive table lookups by name.
    names: NameCache<'a>,
}

impl<'a> FileParser<'a, '_, '_> {
    fn error(&mut self, kind: ErrorKind, message: String, line: u32) -> Result<(), ParseError> {
        let error = ParseError {
            kind,
            message,
            file: self.path.to_owned(),
            line: Some(line),
        };
        if self.opts.recover {
            self.errors.push(error);
            Ok(())
        } else {
            Err(error)
        }
    }

    fn syntax(&self, e: LexError) -> ParseError {
        ParseError {
            kind: ErrorKind::Syntax,
            message: e.message,
            file: self.path.to_owned(),
            line: Some(e.line),
        }
    }

    fn fatal(&self, message: &str, line: u32) -> ParseError {
        self.syntax(LexError {
            message: message.to_owned(),
            line,
        })
    }

    fn block(&mut self, ctx: Ctx, nested: bool) -> Result<Box<[Node<'a>]>, ParseError> {
        let base = self.nodes.len();
        // The statement's name, and whether it has a backslash.
        let mut name: Option<(Arg<'a>, bool)> = None;
        loop {
            let tok = self.lx.next_tok().map_err(|e| self.syntax(e))?;
            match tok {
                Tok::Word(word, escaped) => {
                    if name.is_none() {
                        name = Some((word, escaped));
                    } else {
                        self.args.push(word);
                    }
                }
                Tok::Comment(c) => {
                    if name.is_none() {
                        self.nodes.push(Node::Comment(c));
                    } else {
                        self.comments.push(c);
                    }
                }
                Tok::Semi(line) | Tok::Open(line) => {
                    let open = matches!(tok, Tok::Open(_));
                    let Some((n, escaped)) = name.take() else {
                        let c = if open { "{" } else { ";" };
                        return Err(self.fatal(&format!("unexpected \"{c}\""), line));
                    };
                    // Most names have no backslash: skip `unescape`'s scan.
                    let value = if escaped {
                        n.value()
                    } else {
                        Cow::Borrowed(n.inner())
                    };
                    self.statement(n, value, open, ctx)?;
                }
                Tok::Close(line) => {
                    if !nested {
                        return Err(self.fatal("unexpected \"}\"", line));
                    }
                    if name.is_some() {
                        // nginx stops here; recovery drops the unterminated
                        // statement and closes the block.
                        if !self.opts.recover {
                            return Err(self.fatal("unexpected \"}\"", line));
                        }
                        self.args.clear();
                        self.comments.clear();
                        self.error(ErrorKind::Syntax, "unexpected \"}\"".to_owned(), line)?;
                    }
                    return Ok(take_from(&mut self.nodes, base));
                }
                Tok::Eof(line) => {
                    if name.is_some() {
                        return Err(
                            self.fatal(r#"unexpected end of file, expecting ";" or "}""#, line)
                        );
                    }
                    if nested {
                        return Err(self.fatal(r#"unexpected end of file, expecting "}""#, line));
                    }
                    return Ok(take_from(&mut self.nodes, base));
                }
            }
        }
    }

    /// Skips the block of a dropped statement.
    fn skip_block(&mut self) -> Result<(), ParseError> {
        let base = self.nodes.len();
        self.block(Ctx::Other, true)?;
        debug_assert_eq!(self.nodes.len(), base);
        Ok(())
    }

    /// Handles a statement whose name is `name` (`value` as nginx sees it),
    /// whose arguments and comments are in `self.args` and `self.comments`,
    /// and which ended with `{` (`open`) or `;`.
    fn statement(
        &mut self,
        name: Arg<'a>,
        value: Cow<'a, str>,
        open: bool,
        ctx: Ctx,
    ) -> Result<(), ParseError> {
        let line = name.line();
        let lua = open && table::is_lua_block(&value);
        if lua {
            let body = self.lx.lua_block().map_err(|e| self.syntax(e))?;
            self.args.push(body);
        }
        let has_block = open && !lua;
        if !self.opts.ignore.is_empty() && self.opts.ignore.iter().any(|i| *i == value) {
            self.args.clear();
            self.comments.clear();
            if has_block {
                self.skip_block()?;
            }
            return Ok(());
        }
        let nargs = self.args.len() - usize::from(lua);
        if let Err(message) = self.analyze(&value, nargs, open, ctx) {
            self.args.clear();
            self.comments.clear();
            self.error(ErrorKind::Directive, message, line)?;
            if has_block {
                self.skip_block()?;
            }
            return Ok(());
        }
        let includes = if value == "include" && self.args.len() == 1 {
            let pattern = self.args[0].value();
            self.include(&pattern, line, ctx)?.into_boxed_slice()
        } else {
            Box::default()
        };
        // Exact-size copies; the scratch vectors keep their capacity for the
        // next statement.
        let args = take_from(&mut self.args, 0);
        let comments = take_from(&mut self.comments, 0);
        let block = if has_block {
            Some(self.block(child_ctx(ctx, &value), true)?)
        } else {
            None
        };
        self.nodes.push(Node::Directive(Directive {
            name,
            args,
            block,
            comments,
            includes,
        }));
        Ok(())
    }

    /// The table's registrations of directive `name`, cached by name when
    /// `name` is a slice of the file (not unescaped).
    // `&Cow` rather than `&str`: only a borrowed name lives as long as the
    // cache's keys.
    #[allow(clippy::ptr_arg)]
    fn lookup(&mut self, name: &Cow<'a, str>) -> Option<&'static [Usage]> {
        let key: &'a str = match name {
            Cow::Borrowed(key) => key,
            Cow::Owned(owned) => return self.opts.table.get(owned),
        };
        if let Some(&usages) = self.names.get(key) {
            return usages;
        }
        let usages = self.opts.table.get(key);
        if self.names.len() < NAME_CACHE_MAX {
            self.names.insert(key, usages);
        }
        usages
    }

    /// Checks the statement `name` with the first `nargs` of `self.args`.
    #[allow(clippy::ptr_arg)] // `&Cow` for `lookup`.
    fn analyze(
        &mut self,
        name: &Cow<'a, str>,
        nargs: usize,
        open: bool,
        ctx: Ctx,
    ) -> Result<(), String> {
        if !self.opts.check {
            return Ok(());
        }
        if ctx == Ctx::MapLike {
            return if open {
                Err("unexpected \"{\"".to_owned())
            } else {
                Ok(())
            };
        }
        let Some(usages) = self.lookup(name) else {
            return if self.opts.strict {
                Err(format!("unknown directive \"{name}\""))
            } else {
                Ok(())
            };
        };
        let Ctx::Known(bit) = ctx else {
            return Ok(());
        };
        let args = &self.args[..nargs];
        let mut first = None;
        for usage in usages.iter().filter(|u| u.allowed_in(bit)) {
            let reason = match usage.check(args.len(), open) {
                Ok(()) if usage.args & FLAG != 0 => {
                    let v = args[0].value();
                    if v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("off") {
                        return Ok(());
                    }
                    format!(
                        "invalid value \"{v}\" in \"{name}\" directive, it must be \"on\" or \"off\""
                    )
                }
                Ok(()) => return Ok(()),
                Err(Mismatch::NotTerminated) => {
                    format!("directive \"{name}\" is not terminated by \";\"")
                }
                Err(Mismatch::NoOpeningBrace) => {
                    format!("directive \"{name}\" has no opening \"{{\"")
                }
                Err(Mismatch::ArgCount) => {
                    format!("invalid number of arguments in \"{name}\" directive")
                }
            };
            first.get_or_insert(reason);
        }
        Err(first.unwrap_or_else(|| format!("\"{name}\" directive is not allowed here")))
    }

    fn include(&mut self, pattern: &str, line: u32, ctx: Ctx) -> Result<Vec<usize>, ParseError> {
        if self.opts.single_file {
            return Ok(Vec::new());
        }
        let me = self.me;
        let Some(reg) = self.registry.as_deref_mut() else {
            return Ok(Vec::new());
        };
        let path = if pattern.starts_with('/') || reg.prefix.is_empty() {
            pattern.to_owned()
        } else if reg.prefix.ends_with('/') {
            format!("{}{pattern}", reg.prefix)
        } else {
            format!("{}/{pattern}", reg.prefix)
        };
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let targets = if has_magic(&path) {
            match reg.source.glob(&path) {
                Ok(paths) => paths.into_iter().map(|p| (p, None)).collect(),
                Err(e) => {
                    problems.push((
                        ErrorKind::Include,
                        format!("glob() \"{path}\" failed ({e})"),
                    ));
                    Vec::new()
                }
            }
        } else if reg.index.contains_key(&path) {
            vec![(path, None)]
        } else {
            match reg.source.read(&path) {
                Ok(content) => vec![(path, Some(content))],
                Err(e) => {
                    problems.push((
                        ErrorKind::Include,
                        format!("open() \"{path}\" failed ({e})"),
                    ));
                    Vec::new()
                }
            }
        };
        for (target, content) in targets {
            if let Some(&index) = reg.index.get(&target) {
                if index == me || reg.chain[me].contains(&index) {
                    let mut cycle: Vec<&str> = reg.chain[me]
                        .iter()
                        .skip_while(|&&i| i != index)
                        .map(|&i| reg.paths[i].as_str())
                        .collect();
                    cycle.push(&reg.paths[me]);
                    cycle.push(&target);
                    problems.push((
                        ErrorKind::Include,
                        format!("include cycle: \"{}\"", cycle.join("\" -> \"")),
                    ));
                } else {
                    found.push(index);
                }
                continue;
            }
            let index = reg.paths.len();
            let mut chain = reg.chain[me].clone();
            chain.push(me);
            reg.index.insert(target.clone(), index);
            reg.paths.push(target);
            reg.ctx.push(ctx);
            reg.chain.push(chain);
            reg.content.push(content);
            found.push(index);
        }
        for (kind, message) in problems {
            self.error(kind, message, line)?;
        }
        Ok(found)
    }
}

/// Moves `v[base..]` into a new slice; `v` keeps its capacity.
fn take_from<T>(v: &mut Vec<T>, base: usize) -> Box<[T]> {
    if v.len() == base {
        return Box::default();
    }
    if base > 0 {
        return v.split_off(base).into_boxed_slice();
    }
    // `split_off(0)` would hand over `v`'s whole buffer, spare capacity
    // included.
    let mut out = Vec::with_capacity(v.len());
    out.append(v);
    out.into_boxed_slice()
}

fn run<'a>(
    text: &'a str,
    path: &str,
    me: usize,
    ctx: Ctx,
    opts: &ParseOptions,
    registry: Option<&mut Registry<'_>>,
) -> Result<ConfigFile<'a>, ParseError> {
    let mut parser = FileParser {
        lx: Lexer::new(text),
        opts,
        path,
        me,
        errors: Vec::new(),
        registry,
        nodes: Vec::new(),
        args: Vec::new(),
        comments: Vec::new(),
        names: NameCache::default(),
    };
    let nodes = match parser.block(ctx, false) {
        Ok(nodes) => nodes.into_vec(),
        Err(e) if opts.recover => {
            // As crossplane: a syntax error voids the file's tree.
            parser.errors.push(e);
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    Ok(ConfigFile {
        path: path.to_owned(),
        text,
        nodes,
        errors: parser.errors,
    })
}

/// Parses one file's text in the main context, without following includes.
/// `path` is only used in error messages.
pub fn parse_str<'a>(
    path: &str,
    text: &'a str,
    opts: &ParseOptions,
) -> Result<ConfigFile<'a>, ParseError> {
    run(text, path, 0, Ctx::Known(table::CTX_MAIN), opts, None)
}

/// Parses the main configuration file `main` and, unless
/// `opts.single_file`, every file it includes, reading them through
/// `source`. Relative include paths are resolved against the main file's
/// directory, as nginx does; each file is parsed once, in the context of the
/// first `include` that names it.
pub fn parse_tree<'a>(
    arena: &'a SourceArena,
    source: &dyn Source,
    main: &str,
    opts: &ParseOptions,
) -> Result<Tree<'a>, ParseError> {
    let content = source.read(main).map_err(|e| ParseError {
        kind: ErrorKind::Include,
        message: format!("open() \"{main}\" failed ({e})"),
        file: main.to_owned(),
        line: None,
    })?;
    let prefix = match main.rfind('/') {
        Some(0) => "/".to_owned(),
        Some(i) => main[..i].to_owned(),
        None => String::new(),
    };
    let mut reg = Registry {
        source,
        prefix,
        paths: vec![main.to_owned()],
        ctx: vec![Ctx::Known(table::CTX_MAIN)],
        chain: vec![Vec::new()],
        content: vec![Some(content)],
        index: HashMap::from([(main.to_owned(), 0)]),
    };
    let mut files = Vec::new();
    let mut next = 0;
    while next < reg.paths.len() {
        let path = reg.paths[next].clone();
        let bytes = match reg.content[next].take() {
            Some(bytes) => Ok(bytes),
            None => source.read(&path),
        };
        let file = match bytes {
            Ok(bytes) => {
                let text = match String::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => decode(e.as_bytes()).into_owned(),
                };
                let text: &'a str = arena.0.alloc(text);
                let ctx = reg.ctx[next];
                run(text, &path, next, ctx, opts, Some(&mut reg))?
            }
            Err(e) => {
                let error = ParseError {
                    kind: ErrorKind::Include,
                    message: format!("open() \"{path}\" failed ({e})"),
                    file: path.clone(),
                    line: None,
                };
                if !opts.recover {
                    return Err(error);
                }
                ConfigFile {
                    path,
                    text: "",
                    nodes: Vec::new(),
                    errors: vec![error],
                }
            }
        };
        files.push(file);
        next += 1;
    }
    Ok(Tree { files })
}
