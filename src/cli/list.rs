//! `list-units`, `list-unit-files` and `list-machines`: read the cluster, then print it with the
//! pure formatting of `fields`.

use super::client::Client;
use super::fields::{self, Listing, Machines};
use super::{
    CliError, Console, ListArgs, ListMachinesArgs, ListUnitFilesArgs, ListUnitsArgs, OutputFormat,
};

pub(super) async fn units(
    client: &Client,
    console: &mut Console<'_>,
    args: &ListUnitsArgs,
) -> Result<(), CliError> {
    let states = client.unit_states(None).await?;
    let machines = client.machines().await?;
    let listing = fields::unit_states(
        &args.fields,
        &states,
        &Machines::new(&machines),
        args.list.detail(),
    );
    print(console, &args.list, &listing)
}

pub(super) async fn unit_files(
    client: &Client,
    console: &mut Console<'_>,
    args: &ListUnitFilesArgs,
) -> Result<(), CliError> {
    let units = client.units().await?;
    let machines = client.machines().await?;
    let listing = fields::unit_files(
        &args.fields,
        &units,
        &Machines::new(&machines),
        args.list.detail(),
    );
    print(console, &args.list, &listing)
}

pub(super) async fn machines(
    client: &Client,
    console: &mut Console<'_>,
    args: &ListMachinesArgs,
) -> Result<(), CliError> {
    let machines = client.machines().await?;
    let listing = fields::machines(&args.fields, &machines, args.list.detail());
    print(console, &args.list, &listing)
}

fn print(console: &mut Console<'_>, args: &ListArgs, listing: &Listing) -> Result<(), CliError> {
    let text = match args.output {
        OutputFormat::Text => listing.to_text(args.legend()),
        OutputFormat::Json => listing.to_json(),
    };
    console.out.write_all(text.as_bytes())?;
    Ok(())
}
