//! `flottectl submit`, and the submitting that `load` and `start` do first: every argument is
//! resolved and its file checked before anything is sent, then the units that are new or
//! changed are put into the registry.

use std::collections::HashMap;

use futures_util::StreamExt;

use super::client::Client;
use super::resolve::{self, Facts, Plan, Replace, UnitArg};
use super::view;
use super::{CliError, Console, SubmitArgs};
use super::{many, unit_files};
use crate::unit::{DesiredState, UnitFile, UnitName};
use crate::wire;

/// `submit --replace` replaces only units that are not scheduled, as fleetctl.
const SUBMIT_REPLACES: &[DesiredState] = &[DesiredState::Inactive];

pub(super) async fn run(
    client: &Client,
    console: &mut Console<'_>,
    args: &SubmitArgs,
) -> Result<(), CliError> {
    let replace = match args.replace {
        true => Replace::Yes {
            command: "submit",
            allowed: SUBMIT_REPLACES,
        },
        false => Replace::No,
    };
    submit(client, console, &args.units, replace).await?;
    Ok(())
}

/// Makes sure every argument's unit is in the registry with the content it should have, and
/// returns the units as the registry now has them, one per unit name, in argument order.
pub(super) async fn submit(
    client: &Client,
    console: &mut Console<'_>,
    args: &[UnitArg],
    replace: Replace,
) -> Result<Vec<view::Unit>, CliError> {
    let mut unique: Vec<&UnitArg> = Vec::new();
    for arg in args {
        if !unique.iter().any(|a| a.name == arg.name) {
            unique.push(arg);
        }
    }
    // Every argument is read and decided before anything is written.
    let facts = gather(client, &unique).await?;
    let mut decided: Vec<(&UnitArg, Plan)> = Vec::new();
    for (arg, facts) in unique.iter().zip(facts) {
        let (plan, warnings) = resolve::decide(facts, replace)?;
        for warning in warnings {
            writeln!(console.err, "{warning}")?;
        }
        decided.push((arg, plan));
    }
    // Written in argument order as far as the first failure; then read back: what the
    // registry made of each unit (whether it is global, say) is the server's to tell.
    let mut kept: Vec<(UnitName, Option<view::Unit>)> = Vec::new();
    let mut puts = futures_util::stream::iter(decided)
        .map(|(arg, plan)| async move {
            match plan {
                Plan::Keep(registered) => {
                    Ok::<_, CliError>((registered.name.clone(), Some(registered), false))
                }
                Plan::Create { file } => {
                    put(client, &arg.name, file, DesiredState::Inactive).await?;
                    // fleetctl waits for a new unit to be inactive, which it is as soon as it
                    // exists.
                    Ok((arg.name.clone(), None, true))
                }
                Plan::Replace { file, desired } => {
                    put(client, &arg.name, file, desired).await?;
                    Ok((arg.name.clone(), None, desired == DesiredState::Inactive))
                }
            }
        })
        .buffered(many::IN_FLIGHT);
    while let Some(result) = puts.next().await {
        let (name, registered, inactive) = result?;
        if inactive {
            writeln!(console.out, "Unit {name} inactive")?;
        }
        kept.push((name, registered));
    }
    drop(puts);
    let written: Vec<&UnitName> = kept
        .iter()
        .filter(|(_, r)| r.is_none())
        .map(|(n, _)| n)
        .collect();
    let mut read_back = many::units_named(client, &written).await?.into_iter();
    kept.into_iter()
        .map(|(name, registered)| match registered {
            Some(unit) => Ok(unit),
            None => read_back.next().flatten().ok_or(CliError::NotFound(name)),
        })
        .collect()
}

async fn put(
    client: &Client,
    name: &UnitName,
    file: UnitFile,
    desired: DesiredState,
) -> Result<(), CliError> {
    let unit = wire::Unit {
        name: name.to_string(),
        options: file.into_options().into_iter().map(Into::into).collect(),
        desired_state: desired.to_string(),
        ..wire::Unit::default()
    };
    client.put_unit(&unit).await?;
    Ok(())
}

/// What the registry and the disk have for each argument. An instance that must be created
/// needs its template from the registry: each template is read once, however many of its
/// instances are given.
async fn gather(client: &Client, args: &[&UnitArg]) -> Result<Vec<Facts>, CliError> {
    let names: Vec<&UnitName> = args.iter().map(|a| &a.name).collect();
    let found: Vec<_> = many::units_named(client, &names)
        .await?
        .into_iter()
        .zip(args)
        .map(|(registered, arg)| (registered, unit_files::load(&arg.path, &arg.name)))
        .collect();
    let mut templates: Vec<UnitName> = Vec::new();
    for (arg, (registered, local)) in args.iter().zip(&found) {
        if let (Some((template, _)), None, Ok(None)) =
            (resolve::template_path(arg), registered, local)
            && !templates.contains(&template)
        {
            templates.push(template);
        }
    }
    let registered_templates: HashMap<UnitName, view::Unit> =
        many::in_order(&templates, |t| client.unit(t))
            .await?
            .into_iter()
            .flatten()
            .map(|u| (u.name.clone(), u))
            .collect();
    Ok(args
        .iter()
        .zip(found)
        .map(|(arg, (registered, local))| {
            let (template_registered, template_local) = match resolve::template_path(arg) {
                Some((template, path)) => {
                    let template_registered = match (&registered, &local) {
                        (None, Ok(None)) => registered_templates.get(&template).cloned(),
                        _ => None,
                    };
                    // Checked under the instance's name: that is what its specifiers will
                    // expand to.
                    (template_registered, unit_files::load(&path, &arg.name))
                }
                None => (None, Ok(None)),
            };
            Facts {
                arg: (*arg).clone(),
                registered,
                local,
                template_registered,
                template_local,
            }
        })
        .collect())
}
