//! flottectl: the command-line interface. clap parses the arguments into `Cli`; each command
//! lives in its own module and writes to the output it is given, so `src/bin/flottectl.rs` only
//! wires up stdout and turns errors into exit codes.

mod check;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

pub use check::CheckArgs;

#[derive(Debug, Parser)]
#[command(
    name = "flottectl",
    version,
    about = "Control a flotte cluster of systemd units"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check unit files and their [X-Fleet] requirements, without a cluster
    Check(CheckArgs),
}

/// How a command prints its results: for people, or for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// flottectl's exit codes are part of its interface: scripts and CI act on them.
pub mod exit {
    use std::process::ExitCode;

    /// Everything asked for was done, and every file checked is valid.
    pub const SUCCESS: ExitCode = ExitCode::SUCCESS;
    /// The command ran, and its answer is "no": a file is invalid.
    pub const FAILURE: ExitCode = ExitCode::FAILURE;
    /// The command could not run: bad arguments (clap exits with 2 too) or an output error.
    pub fn error() -> ExitCode {
        ExitCode::from(2)
    }
}

/// Runs a parsed command line, writing its results to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> io::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&args, out),
    }
}
