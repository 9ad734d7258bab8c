//! `journal [MACHINE:]UNIT [--lines N] [--follow] [--output short|cat|json]`: a unit's journal
//! on the machine it runs on (`/flotte/v1/units/NAME/journal`; the API relays it from that
//! machine's flotted, no SSH), written as it comes. A global unit's needs `MACHINE:UNIT`.
//! `--follow` goes on until interrupted, or until the server ends it with a line saying why
//! (the machine went away, say).

use clap::{Args, ValueEnum};

use super::client::{Client, ClientError};
use super::events::Interrupt;
use super::fields::{Detail, machine_id};
use super::status::{UnitTarget, resolve};
use super::{CliError, Console};
use crate::wire::{self, JournalOutput, JournalQuery};

#[derive(Debug, Clone, Args)]
pub struct JournalArgs {
    /// The unit (`.service` implied); MACHINE:UNIT reads one machine's (needed for a global
    /// unit), MACHINE being its ID, a unique ID prefix or its hostname
    #[arg(value_name = "[MACHINE:]UNIT")]
    pub unit: UnitTarget,
    /// How many of the last lines to show (0: none, with --follow only new ones)
    #[arg(short = 'n', long, value_name = "N", default_value_t = wire::JOURNAL_DEFAULT_LINES,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(wire::JOURNAL_MAX_LINES)))]
    pub lines: u32,
    /// Keep showing new lines until interrupted
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// journalctl's format: short (syslog-style lines), cat (messages only) or json (one
    /// entry per line)
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Short)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Short,
    Cat,
    Json,
}

impl From<Output> for JournalOutput {
    fn from(o: Output) -> JournalOutput {
        match o {
            Output::Short => JournalOutput::Short,
            Output::Cat => JournalOutput::Cat,
            Output::Json => JournalOutput::Json,
        }
    }
}

pub(super) async fn run(
    client: &Client,
    console: &mut Console<'_>,
    args: &JournalArgs,
) -> Result<(), CliError> {
    let machines = client.machines().await?;
    let (machine, unit) = resolve(&args.unit, &machines)?;
    if machine.is_none() {
        // Say which machines to choose from rather than the API's bare IDs.
        let Some(found) = client.unit(&unit).await? else {
            return Err(CliError::NotFound(unit));
        };
        if found.machine_ids.len() > 1 {
            let shown = found
                .machine_ids
                .iter()
                .map(|id| {
                    machines
                        .iter()
                        .find(|m| &m.id == id && !m.hostname.is_empty())
                        .map_or_else(|| machine_id(id, Detail::Short), |m| m.hostname.clone())
                })
                .collect();
            return Err(CliError::NeedsMachine {
                unit,
                machines: shown,
            });
        }
    }
    let query = JournalQuery {
        machine,
        lines: args.lines,
        follow: args.follow,
        output: args.output.into(),
    };
    let mut interrupt = Interrupt::new()?;
    let mut journal = client.journal(&unit, &query).await?;
    loop {
        let next = tokio::select! {
            next = journal.next() => next,
            _ = interrupt.recv() => return Ok(()),
        };
        match next {
            Ok(Some(bytes)) => {
                console.out.write_all(&bytes)?;
                console.out.flush()?;
            }
            Ok(None) => return Ok(()),
            Err(e @ ClientError::Http { .. }) => {
                return Err(CliError::JournalCut {
                    endpoint: client.endpoint().to_owned(),
                    why: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
}
