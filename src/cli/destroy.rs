//! `flottectl destroy`: removes units from the cluster and, unless `--no-block`, waits until no
//! machine has them any more (fleetctl's destroy waited only with `--no-block`, the wrong way
//! round).

use super::client::Client;
use super::wait::{self, Goal};
use super::{Blocking, CliError, Console, UnitsArgs, names};

pub(super) async fn run(
    client: &Client,
    console: &mut Console<'_>,
    args: &UnitsArgs,
) -> Result<(), CliError> {
    let names = names(&args.units);
    // Every unit must exist before any is destroyed: a typo destroys nothing.
    for name in &names {
        if client.unit(name).await?.is_none() {
            return Err(CliError::NotFound(name.clone()));
        }
    }
    for name in &names {
        // Gone meanwhile (someone else destroyed it) is what was asked for.
        client.delete_unit(name).await?;
    }
    match args.block.blocking() {
        Blocking::No => {
            for name in &names {
                writeln!(console.out, "Destroyed {name}")?;
            }
        }
        Blocking::Wait(budget) => {
            wait::wait(client, console.out, &names, Goal::Destroyed, budget).await?
        }
    }
    Ok(())
}
