//! `flottectl cat`: prints a submitted unit's file as the registry has it.

use super::client::Client;
use super::resolve::registered_file;
use super::{CatArgs, CliError, Console};

pub(super) async fn run(
    client: &Client,
    console: &mut Console<'_>,
    args: &CatArgs,
) -> Result<(), CliError> {
    let name = &args.unit.name;
    let unit = client
        .unit(name)
        .await?
        .ok_or_else(|| CliError::NotFound(name.clone()))?;
    write!(console.out, "{}", registered_file(&unit)?.serialize())?;
    Ok(())
}
