//! `list-units`, `list-unit-files` and `list-machines`: read the cluster, then print it with the
//! pure formatting of `fields`; with `--watch`, again whenever an event concerns the listing
//! (`events::watch`).

use super::client::Client;
use super::events::{self, Topic};
use super::fields::{self, Listing, Machines};
use super::{
    CliError, Console, ListArgs, ListMachinesArgs, ListUnitFilesArgs, ListUnitsArgs, OutputFormat,
};

pub(super) async fn units(
    client: &Client,
    console: &mut Console<'_>,
    args: &ListUnitsArgs,
) -> Result<(), CliError> {
    let render = || async {
        let states = client.unit_states(None).await?;
        let machines = client.machines().await?;
        let listing = fields::unit_states(
            &args.fields,
            &states,
            &Machines::new(&machines),
            args.list.detail(),
        );
        Ok(text(&args.list, &listing))
    };
    show(client, console, args.watch, Topic::UnitStates, render).await
}

pub(super) async fn unit_files(
    client: &Client,
    console: &mut Console<'_>,
    args: &ListUnitFilesArgs,
) -> Result<(), CliError> {
    let render = || async {
        let units = client.units().await?;
        let machines = client.machines().await?;
        let listing = fields::unit_files(
            &args.fields,
            &units,
            &Machines::new(&machines),
            args.list.detail(),
        );
        Ok(text(&args.list, &listing))
    };
    show(client, console, args.watch, Topic::UnitFiles, render).await
}

pub(super) async fn machines(
    client: &Client,
    console: &mut Console<'_>,
    args: &ListMachinesArgs,
) -> Result<(), CliError> {
    let render = || async {
        let machines = client.machines().await?;
        let listing = fields::machines(&args.fields, &machines, args.list.detail());
        Ok(text(&args.list, &listing))
    };
    show(client, console, args.watch, Topic::Machines, render).await
}

async fn show<F, Fut>(
    client: &Client,
    console: &mut Console<'_>,
    watch: bool,
    topic: Topic,
    render: F,
) -> Result<(), CliError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, CliError>>,
{
    if watch {
        return events::watch(client, console, topic, render).await;
    }
    let listing = render().await?;
    console.out.write_all(listing.as_bytes())?;
    Ok(())
}

fn text(args: &ListArgs, listing: &Listing) -> String {
    match args.output {
        OutputFormat::Text => listing.to_text(args.legend()),
        OutputFormat::Json => listing.to_json(),
    }
}
