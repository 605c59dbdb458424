//! `nxmesh config ...`: parse, format, render, lint and import nginx
//! configurations.

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
    /// Render a model (a `ConfigUpdate` as JSON or YAML) into an nginx
    /// configuration tree, with the same generator the agent uses.
    Render(RenderArgs),
    /// Check a configuration (and its includes) for security problems.
    /// Exits non-zero when a finding is of medium or high severity.
    Lint(LintArgs),
    /// Map a configuration's servers, locations and upstreams back to the
    /// model; prints the model and a report of what did not map.
    Import(ImportArgs),
}

/// Arguments of `nxmesh config render`.
#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    /// The model: a JSON or YAML `ConfigUpdate` (by extension `.json`,
    /// `.yaml`, `.yml`).
    #[arg(long)]
    model: PathBuf,
    /// Directory to write the tree into (created; must be empty or absent).
    #[arg(long)]
    out: PathBuf,
    /// The nginx version to render for.
    #[arg(long)]
    nginx_version: Option<String>,
}

/// Arguments of `nxmesh config lint`.
#[derive(Debug, Args)]
pub(crate) struct LintArgs {
    /// The main configuration file.
    file: PathBuf,
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `nxmesh config import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The main configuration file.
    file: PathBuf,
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
        ConfigCommand::Render(args) => render(&args),
        ConfigCommand::Lint(args) => lint(&args),
        ConfigCommand::Import(args) => import(&args),
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

fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    use nxmesh_core::generator::{self, NginxVersion, RenderOptions};
    let text = std::fs::read_to_string(&args.model)
        .with_context(|| format!("reading {}", args.model.display()))?;
    let yaml = matches!(
        args.model.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let update: nxmesh_core::config::ConfigUpdate = if yaml {
        serde_yaml::from_str(&text)
            .with_context(|| format!("{}: not a valid model", args.model.display()))?
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid model", args.model.display()))?
    };
    let version = match &args.nginx_version {
        Some(v) => v
            .parse::<NginxVersion>()
            .with_context(|| format!("--nginx-version {v}"))?,
        None => generator::DEFAULT_NGINX_VERSION,
    };
    let rendered = match generator::render(&update, &RenderOptions::for_version(version)) {
        Ok(r) => r,
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "nxmesh: the model cannot be rendered:")?;
            for e in &errors.errors {
                writeln!(err, "  {}: {} ({:?})", e.field, e.message, e.code)?;
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        anyhow::bail!(
            "{} is not empty; render into a new or empty directory",
            args.out.display()
        );
    }
    for f in &rendered.files {
        let path = args.out.join(&f.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_file(&path, &f.bytes, f.path.ends_with(".key"))?;
    }
    writeln!(
        std::io::stdout().lock(),
        "{} files, checksum {}",
        rendered.files.len(),
        rendered.checksum
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Writes a file; private keys get mode 0600 from the moment they exist.
fn write_file(path: &std::path::Path, bytes: &[u8], private: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    if private {
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn parse_from_disk<'a>(
    arena: &'a SourceArena,
    file: &std::path::Path,
) -> anyhow::Result<parser::Tree<'a>> {
    let main = path_str(file)?;
    Ok(parser::parse_tree(
        arena,
        &FsSource,
        main,
        &ParseOptions::default(),
    )?)
}

fn lint(args: &LintArgs) -> anyhow::Result<ExitCode> {
    use nxmesh_core::lint::Severity;
    let arena = SourceArena::new();
    let tree = parse_from_disk(&arena, &args.file)?;
    let findings = nxmesh_core::lint::lint(&tree);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&findings)?)?;
    } else {
        for f in &findings {
            writeln!(
                out,
                "{}:{}: {:?} {}: {}",
                f.file, f.line, f.severity, f.id, f.message
            )?;
        }
    }
    Ok(if findings.iter().any(|f| f.severity >= Severity::Medium) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn import(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let arena = SourceArena::new();
    let tree = parse_from_disk(&arena, &args.file)?;
    let imported = nxmesh_core::generator::import::import(
        &tree,
        &nxmesh_core::generator::RenderOptions::default(),
    );
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&imported)?
    )?;
    Ok(ExitCode::SUCCESS)
}
