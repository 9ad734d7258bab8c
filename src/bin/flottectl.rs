//! flottectl: the command-line client. Everything but stdout and exit codes is in `flotte::cli`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use flotte::cli::{self, Cli, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `flottectl check ... | head` closing the pipe is the reader's choice, not a failure.
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            exit::SUCCESS
        }
        Err(e) => {
            eprintln!("flottectl: {e:#}");
            exit::error()
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    let code = cli::run(cli, &mut out).context("cannot write the output")?;
    out.flush().context("cannot write the output")?;
    Ok(code)
}
