//! `nxmesh`, the NxMesh command line. Subcommands are grouped by noun
//! (`nxmesh config ...`); each group lives in its own module.

mod config;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// NxMesh command line.
#[derive(Debug, Parser)]
#[command(name = "nxmesh", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with nginx configuration files.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config(cmd) => config::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("nxmesh: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
