//! flottectl: the command-line client. Everything but the process's stdout, stderr and exit
//! code is in `flotte::cli`.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use flotte::cli::{self, Cli, Console, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut out, mut err) = (io::stdout().lock(), io::stderr());
    let mut console = Console {
        out: &mut out,
        err: &mut err,
    };
    match cli::run(cli, &mut console) {
        Ok(code) => code,
        // `flottectl list-units | head` closing the pipe is the reader's choice, not a failure.
        Err(e) if e.is_broken_pipe() => exit::SUCCESS,
        Err(e) => {
            eprintln!("flottectl: {e}");
            e.exit_code()
        }
    }
}
