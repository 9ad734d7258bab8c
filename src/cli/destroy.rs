//! `flottectl destroy`: removes units from the cluster and, unless `--no-block`, waits until no
//! machine has them any more (fleetctl's destroy waited only with `--no-block`, the wrong way
//! round).

use super::client::Client;
use super::wait::{self, Goal};
use super::{Blocking, CliError, Console, UnitsArgs, many, names};

pub(super) async fn run(
    client: &Client,
    console: &mut Console<'_>,
    args: &UnitsArgs,
) -> Result<(), CliError> {
    let names = names(&args.units);
    // Every unit must exist before any is destroyed: a typo destroys nothing.
    let found = many::units_named(client, &names).await?;
    if let Some((name, _)) = names.iter().zip(&found).find(|(_, u)| u.is_none()) {
        return Err(CliError::NotFound(name.clone()));
    }
    // Gone meanwhile (someone else destroyed it) is what was asked for.
    many::in_order(&names, |name| client.delete_unit(name)).await?;
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
