//! flottectl as the quick start runs it: each command line is printed as `$ flottectl ...`,
//! then parsed by flottectl's own parser (`cli::Cli`) and run, so the transcript is what ran
//! and a new flag of flottectl needs nothing here. The connection flags come first and are
//! not printed: host-1's API, which `packaging/local-cluster env` gives a user's flottectl,
//! and a request timeout for a machine busy starting a cluster.

use std::borrow::Cow;

use clap::Parser;

use super::{QuickstartError, endpoint};
use crate::cli::client::Client;
use crate::cli::{self, Cli, CliError, Console, GlobalArgs};
use crate::isolated::ClusterRecord;

/// Seconds each request may take (flottectl's default is 3).
const REQUEST_TIMEOUT: &str = "10";

/// flottectl pointed at one cluster.
pub(super) struct Flottectl {
    connection: Vec<String>,
}

/// flottectl's connection flags alone, parsed as flottectl parses them: for the API client the
/// quick start waits with between commands.
#[derive(Debug, Parser)]
#[command(name = "flottectl")]
struct Connection {
    #[command(flatten)]
    global: GlobalArgs,
}

impl Flottectl {
    pub(super) fn new(cluster: &ClusterRecord) -> Flottectl {
        Flottectl {
            connection: vec![
                "--endpoint".to_owned(),
                endpoint(cluster).to_string(),
                "--request-timeout".to_owned(),
                REQUEST_TIMEOUT.to_owned(),
            ],
        }
    }

    /// `flottectl`, the connection flags, then `args`.
    fn argv<'a>(&'a self, args: &'a [String]) -> impl Iterator<Item = &'a str> + Clone {
        std::iter::once("flottectl")
            .chain(self.connection.iter().map(String::as_str))
            .chain(args.iter().map(String::as_str))
    }

    /// Prints `$ flottectl ARGS`, then runs exactly that command line.
    pub(super) async fn run(
        &self,
        args: &[String],
        console: &mut Console<'_>,
    ) -> Result<(), QuickstartError> {
        writeln!(console.out, "\n$ flottectl {}", line(args))?;
        cli::run_async(self.parse(args)?, console).await?;
        Ok(())
    }

    /// `args` after the connection flags, as flottectl parses its command line.
    pub(super) fn parse(&self, args: &[String]) -> Result<Cli, QuickstartError> {
        Cli::try_parse_from(self.argv(args)).map_err(|source| QuickstartError::Flottectl {
            line: line(args),
            source: Box::new(source),
        })
    }

    /// A client of the API with the commands' connection flags.
    pub(super) fn client(&self) -> Result<Client, QuickstartError> {
        let connection = Connection::try_parse_from(self.argv(&[])).map_err(|source| {
            QuickstartError::Flottectl {
                line: line(&self.connection),
                source: Box::new(source),
            }
        })?;
        Ok(Client::new(&connection.global.client_settings()).map_err(CliError::from)?)
    }
}

/// `list-machines` and `list-units`, as flottectl prints them.
pub(super) async fn show(
    flottectl: &Flottectl,
    console: &mut Console<'_>,
) -> Result<(), QuickstartError> {
    for command in ["list-machines", "list-units"] {
        flottectl.run(&[command.to_owned()], console).await?;
    }
    Ok(())
}

/// A command line as a shell reads it.
pub(super) fn line(args: &[String]) -> String {
    args.iter().map(|a| word(a)).collect::<Vec<_>>().join(" ")
}

/// One word of a command line: as it is, or quoted when a shell would read it otherwise.
fn word(text: &str) -> Cow<'_, str> {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(quoted(text))
    }
}

/// `text` in single quotes, for a shell.
pub(super) fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
