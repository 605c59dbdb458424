//! `nxmesh config ...`: parse and format nginx configurations.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use nxmesh_core::parser::{
    self, FsSource, JsonOptions, MemorySource, ParseOptions, Source, SourceArena, Status,
};

/// Subcommands of `nxmesh config`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Parse a configuration (and the files it includes) and print the
    /// crossplane-compatible JSON payload. Exits non-zero if it failed.
    Parse(ParseArgs),
    /// Print a configuration file formatted.
    Fmt(FmtArgs),
}

/// Arguments of `nxmesh config parse`.
#[derive(Debug, Args)]
pub(crate) struct ParseArgs {
    /// The main configuration file, or an `nginx -T` dump.
    file: PathBuf,
    /// Print the payload as JSON (the default and only format for now).
    #[arg(long)]
    json: bool,
    /// Do not follow `include` directives.
    #[arg(long)]
    single_file: bool,
    /// Put the included statements in place of each `include`, in one config.
    #[arg(long)]
    combine: bool,
    /// Include comments in the payload.
    #[arg(long)]
    include_comments: bool,
    /// Unknown directives are errors.
    #[arg(long)]
    strict: bool,
}

/// Arguments of `nxmesh config fmt`.
#[derive(Debug, Args)]
pub(crate) struct FmtArgs {
    /// The configuration file.
    file: PathBuf,
}

pub(crate) fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Parse(args) => parse(&args),
        ConfigCommand::Fmt(args) => fmt(&args),
    }
}

fn path_str(path: &std::path::Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{}: path is not valid UTF-8", path.display()))
}

fn parse(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    let main = path_str(&args.file)?;
    let opts = ParseOptions {
        strict: args.strict,
        single_file: args.single_file,
        ..ParseOptions::default()
    };
    // An `nginx -T` dump is served from memory; anything else from disk.
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {main}"))?;
    let dump = MemorySource::from_dump(&parser::decode(&bytes));
    let (source, main): (Box<dyn Source>, String) = match dump {
        Some((memory, first)) => (Box::new(memory), first),
        None => (Box::new(FsSource), main.to_owned()),
    };
    let arena = SourceArena::new();
    let tree = parser::parse_tree(&arena, source.as_ref(), &main, &opts)?;
    let json_opts = JsonOptions {
        include_comments: args.include_comments,
        combine: args.combine,
        single_file: args.single_file,
    };
    let payload = parser::payload(&tree, json_opts);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", payload.to_json())?;
    Ok(if payload.status == Status::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn fmt(args: &FmtArgs) -> anyhow::Result<ExitCode> {
    let path = path_str(&args.file)?;
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {path}"))?;
    let text = parser::decode(&bytes);
    let opts = ParseOptions {
        recover: false,
        check: false,
        single_file: true,
        ..ParseOptions::default()
    };
    let file = parser::parse_str(path, &text, &opts)?;
    let mut out = std::io::stdout().lock();
    out.write_all(parser::format(&file.nodes).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
