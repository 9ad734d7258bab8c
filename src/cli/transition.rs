//! `load`, `start`, `stop`, `unload` and `restart`: change units' desired states, then wait
//! until the cluster reached them, printing fleetctl's messages. Every unit is checked before
//! the first change, so an unknown unit or a refused transition changes nothing.

use super::client::Client;
use super::fields::{Detail, Machines};
use super::resolve::Replace;
use super::view;
use super::wait::{self, Goal};
use super::{Blocking, CliError, Console, ScheduleArgs, UnitsArgs, many, names, submit};
use crate::unit::{DesiredState, UnitName};

/// `load --replace` replaces units not started, `start --replace` any, as fleetctl.
const LOAD_REPLACES: &[DesiredState] = &[DesiredState::Inactive, DesiredState::Loaded];
const START_REPLACES: &[DesiredState] = &[
    DesiredState::Inactive,
    DesiredState::Loaded,
    DesiredState::Launched,
];

pub(super) async fn load(
    client: &Client,
    console: &mut Console<'_>,
    args: &ScheduleArgs,
) -> Result<(), CliError> {
    schedule(client, console, args, Transition::LOAD, LOAD_REPLACES).await
}

pub(super) async fn start(
    client: &Client,
    console: &mut Console<'_>,
    args: &ScheduleArgs,
) -> Result<(), CliError> {
    schedule(client, console, args, Transition::START, START_REPLACES).await
}

/// One of fleetctl's state changes: the desired state it sets, what it waits for, and the
/// verb of its messages (`Triggered unit X start`).
#[derive(Debug, Clone, Copy)]
struct Transition {
    desired: DesiredState,
    goal: Goal,
    verb: &'static str,
}

impl Transition {
    const LOAD: Transition = Transition {
        desired: DesiredState::Loaded,
        goal: Goal::Loaded,
        verb: "load",
    };
    const START: Transition = Transition {
        desired: DesiredState::Launched,
        goal: Goal::Launched,
        verb: "start",
    };
    const STOP: Transition = Transition {
        desired: DesiredState::Loaded,
        goal: Goal::Loaded,
        verb: "stop",
    };
    const UNLOAD: Transition = Transition {
        desired: DesiredState::Inactive,
        goal: Goal::Inactive,
        verb: "unload",
    };
}

async fn schedule(
    client: &Client,
    console: &mut Console<'_>,
    args: &ScheduleArgs,
    transition: Transition,
    replaceable: &'static [DesiredState],
) -> Result<(), CliError> {
    if let Some(template) = args.units.iter().find(|a| a.name.is_template()) {
        return Err(CliError::Template {
            example: template
                .name
                .instantiate("1")
                .map_or_else(|_| "NAME@1".to_owned(), |n| n.to_string()),
            unit: template.name.clone(),
            action: transition.verb,
        });
    }
    let replace = match args.replace {
        true => Replace::Yes {
            command: transition.verb,
            allowed: replaceable,
        },
        false => Replace::No,
    };
    let units = submit::submit(client, console, &args.units, replace).await?;
    apply(client, console, &units, transition, args.block.blocking()).await
}

pub(super) async fn stop(
    client: &Client,
    console: &mut Console<'_>,
    args: &UnitsArgs,
) -> Result<(), CliError> {
    let units = registered(client, &names(&args.units)).await?;
    refuse_inactive(&units, "stop")?;
    apply(
        client,
        console,
        &units,
        Transition::STOP,
        args.block.blocking(),
    )
    .await
}

pub(super) async fn unload(
    client: &Client,
    console: &mut Console<'_>,
    args: &UnitsArgs,
) -> Result<(), CliError> {
    let units = registered(client, &names(&args.units)).await?;
    apply(
        client,
        console,
        &units,
        Transition::UNLOAD,
        args.block.blocking(),
    )
    .await
}

/// Restarts the units one after the other, so that a service of several units stays up: each
/// is stopped, seen stopped by systemd, then started again (fleetctl's restart did not wait
/// for the stop, so systemd often never stopped the unit).
pub(super) async fn restart(
    client: &Client,
    console: &mut Console<'_>,
    args: &UnitsArgs,
) -> Result<(), CliError> {
    let units = registered(client, &names(&args.units)).await?;
    refuse_inactive(&units, "restart")?;
    // Without the stop seen through, the start would find the unit still running.
    let stop_budget = match args.block.blocking() {
        Blocking::Wait(budget) => budget,
        Blocking::No => wait::Budget::Unlimited,
    };
    for unit in &units {
        let name = &unit.name;
        if unit.desired == DesiredState::Launched {
            client.set_desired(name, DesiredState::Loaded).await?;
            wait::wait(
                client,
                console.out,
                std::slice::from_ref(name),
                Goal::Loaded,
                stop_budget,
            )
            .await?;
        }
        let stopped = view::Unit {
            desired: DesiredState::Loaded,
            ..unit.clone()
        };
        apply(
            client,
            console,
            std::slice::from_ref(&stopped),
            Transition::START,
            args.block.blocking(),
        )
        .await?;
    }
    Ok(())
}

/// Sets each unit's desired state where it differs, then waits for the units fleetctl waits
/// for (global ones are only triggered) or prints that they were triggered. A start of a unit
/// launched already but stopped on a machine (it exited, or went down with a unit it is
/// bound to) asks for it to be started again, and says so.
async fn apply(
    client: &Client,
    console: &mut Console<'_>,
    units: &[view::Unit],
    transition: Transition,
    blocking: Blocking,
) -> Result<(), CliError> {
    let again = match transition.desired {
        DesiredState::Launched => {
            let launched: Vec<&view::Unit> = units
                .iter()
                .filter(|u| u.desired == DesiredState::Launched)
                .collect();
            let states =
                many::in_order(&launched, |unit| client.unit_states(Some(&unit.name))).await?;
            let machines = client.machines().await?;
            let directory = Machines::new(&machines);
            let mut again = Vec::new();
            for (unit, states) in launched.into_iter().zip(states) {
                if let Some(on) = stopped_on(unit, &states) {
                    writeln!(
                        console.out,
                        "Unit {} is launched but not running on {}: starting it again",
                        unit.name,
                        directory.legend(on, Detail::Short)
                    )?;
                    again.push(unit.name.clone());
                }
            }
            again
        }
        _ => Vec::new(),
    };
    let changing = units
        .iter()
        .filter(|u| u.desired != transition.desired || again.contains(&u.name));
    many::in_order(changing, |unit| {
        client.set_desired(&unit.name, transition.desired)
    })
    .await?;
    let mut waiting = Vec::new();
    for unit in units {
        let name = unit.name.clone();
        if unit.global {
            writeln!(
                console.out,
                "Triggered global unit {name} {}",
                transition.verb
            )?;
        } else {
            waiting.push(name);
        }
    }
    match blocking {
        Blocking::No => {
            for name in &waiting {
                writeln!(console.out, "Triggered unit {name} {}", transition.verb)?;
            }
        }
        Blocking::Wait(budget) => {
            wait::wait(client, console.out, &waiting, transition.goal, budget).await?
        }
    }
    Ok(())
}

/// The first machine where `unit`, launched, is placed and reported not running (a global
/// unit's: any that reports it), or `None` when it runs wherever it is reported.
fn stopped_on<'s>(unit: &view::Unit, states: &'s [view::UnitState]) -> Option<&'s str> {
    states
        .iter()
        .filter(|s| unit.global || unit.machine_ids.contains(&s.machine_id))
        .find(|s| !s.active.is_running())
        .map(|s| s.machine_id.as_str())
}

/// The registry's units of these names; an unknown one is an error before anything changes.
async fn registered(client: &Client, names: &[UnitName]) -> Result<Vec<view::Unit>, CliError> {
    many::units_named(client, names)
        .await?
        .into_iter()
        .zip(names)
        .map(|(unit, name)| unit.ok_or_else(|| CliError::NotFound(name.clone())))
        .collect()
}

/// fleetctl refuses to stop or restart a unit that runs nowhere: one not scheduled, or (but a
/// global unit, which has no state of its own) one no machine has yet. Waiting for it to stop
/// would never end.
fn refuse_inactive(units: &[view::Unit], action: &'static str) -> Result<(), CliError> {
    for unit in units {
        let scheduled = unit.desired != DesiredState::Inactive;
        let somewhere = unit.global || unit.current != DesiredState::Inactive;
        if scheduled && somewhere {
            continue;
        }
        let state = match unit.reason.as_str() {
            "" => DesiredState::Inactive.to_string(),
            reason => format!("inactive (not placed: {reason})"),
        };
        return Err(CliError::State {
            action,
            unit: unit.name.clone(),
            state,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire;

    /// A unit as the API sends it: `global` is its `[X-Fleet]` section's.
    fn unit(name: &str, desired: &str, current: &str, x_fleet: &str, reason: &str) -> view::Unit {
        let text = format!("[Service]\nExecStart=/bin/sleep 1\n[X-Fleet]\n{x_fleet}\n");
        wire::Unit {
            name: name.into(),
            options: crate::unit::UnitFile::parse(text.as_bytes())
                .unwrap()
                .file
                .into_options()
                .into_iter()
                .map(Into::into)
                .collect(),
            desired_state: desired.into(),
            current_state: current.into(),
            reason: reason.into(),
            global: x_fleet == "Global=true",
            ..wire::Unit::default()
        }
        .try_into()
        .unwrap()
    }

    #[test]
    fn a_launched_unit_is_stopped_where_a_machine_it_is_placed_on_reports_it_not_running() {
        let state = |machine: &str, active: &str| view::UnitState {
            name: UnitName::new("a.service").unwrap(),
            hash: String::new(),
            machine_id: machine.into(),
            load: "loaded".into(),
            active: active.into(),
            sub: String::new(),
            message: String::new(),
            start_request: 0,
        };
        let placed = |on: &[&str], x_fleet: &str| view::Unit {
            machine_ids: on.iter().map(|m| m.to_string()).collect(),
            ..unit("a.service", "launched", "launched", x_fleet, "")
        };
        let cases: Vec<(&str, view::Unit, Vec<view::UnitState>, Option<&str>)> = vec![
            (
                "running",
                placed(&["m1"], ""),
                vec![state("m1", "active")],
                None,
            ),
            (
                "activating counts as running",
                placed(&["m1"], ""),
                vec![state("m1", "activating")],
                None,
            ),
            (
                "exited",
                placed(&["m1"], ""),
                vec![state("m1", "inactive")],
                Some("m1"),
            ),
            (
                "failed",
                placed(&["m1"], ""),
                vec![state("m1", "failed")],
                Some("m1"),
            ),
            ("no state yet", placed(&["m1"], ""), vec![], None),
            (
                "a stale state of a machine it left",
                placed(&["m2"], ""),
                vec![state("m1", "inactive"), state("m2", "active")],
                None,
            ),
            (
                "a global unit stopped on one machine",
                placed(&["m1", "m2"], "Global=true"),
                vec![state("m1", "active"), state("m2", "inactive")],
                Some("m2"),
            ),
        ];
        for (what, unit, states, expected) in cases {
            assert_eq!(stopped_on(&unit, &states), expected, "{what}");
        }
    }

    fn refused(units: &[view::Unit]) -> Option<String> {
        refuse_inactive(units, "stop").err().map(|e| e.to_string())
    }

    #[test]
    fn only_units_that_run_somewhere_can_be_stopped_or_restarted() {
        let running = unit("a.service", "launched", "launched", "", "");
        let loaded = unit("b.service", "loaded", "loaded", "", "");
        let global = unit("g.service", "launched", "", "Global=true", "");
        assert_eq!(refused(&[running.clone(), loaded, global]), None);
        assert_eq!(
            refused(&[
                running.clone(),
                unit("c.service", "inactive", "inactive", "", "")
            ]),
            Some("cannot stop unit c.service in state inactive".into())
        );
        assert_eq!(
            refused(&[
                running,
                unit("d.service", "launched", "inactive", "", "no machine matches MachineMetadata=region=asia")
            ]),
            Some(
                "cannot stop unit d.service in state inactive (not placed: no machine matches MachineMetadata=region=asia)"
                    .into()
            )
        );
    }
}
