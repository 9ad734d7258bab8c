//! `drain` and `undrain`: take a machine out of scheduling and back. `drain` marks it through
//! the API, then waits until the engine moved every normal unit that was on it (or left it
//! placed nowhere, with its reason), and says where each went. What to print is decided by
//! the pure `resolve_machine` and `moves`.

use std::time::Duration;

use tokio::time::Instant;

use super::client::Client;
use super::fields::{Detail, Machines, machine_id};
use super::view;
use super::{Blocking, CliError, Console, MachineArgs};
use crate::machine::MachineId;
use crate::unit::UnitName;
use crate::wire::{self, CHANGES_MAX_WAIT};

/// The machine an argument names: a whole ID, a unique ID prefix (fleetctl's 8 characters,
/// say) or a unique hostname. A whole ID that is not registered is taken as it is, so that a
/// machine that left can still be undrained (the API refuses to drain one).
pub fn resolve_machine(arg: &str, machines: &[wire::Machine]) -> Result<String, CliError> {
    if let Some(m) = machines.iter().find(|m| m.id == arg) {
        return Ok(m.id.clone());
    }
    if MachineId::new(arg).is_ok() {
        return Ok(arg.to_owned());
    }
    let by_prefix: Vec<&wire::Machine> = machines
        .iter()
        .filter(|m| !arg.is_empty() && m.id.starts_with(arg))
        .collect();
    let by_hostname: Vec<&wire::Machine> = machines.iter().filter(|m| m.hostname == arg).collect();
    let found = if by_prefix.is_empty() {
        by_hostname
    } else {
        by_prefix
    };
    match found.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(CliError::MachineNotFound(arg.to_owned())),
        many => Err(CliError::AmbiguousMachine {
            arg: arg.to_owned(),
            ids: many
                .iter()
                .map(|m| machine_id(&m.id, Detail::Short))
                .collect(),
        }),
    }
}

/// Where one unit that was on the drained machine is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Still placed on the drained machine: the engine has not moved it yet.
    Pending(UnitName),
    /// Done: print this.
    Done(String),
}

/// The units that were placed on `machine` when it was drained (`before`), as they are now
/// (`now`: every unit). Global units stay and are not listed.
pub fn moves(
    machine: &str,
    before: &[UnitName],
    now: &[view::Unit],
    machines: &Machines,
) -> Vec<Move> {
    before
        .iter()
        .map(|name| {
            let Some(unit) = now.iter().find(|u| &u.name == name) else {
                return Move::Done(format!("Unit {name} was destroyed"));
            };
            if unit.machine_ids.iter().any(|m| m == machine) {
                return Move::Pending(name.clone());
            }
            match unit.machine_ids.first() {
                Some(to) => Move::Done(format!(
                    "Unit {name} moved to {}",
                    machines.legend(to, Detail::Short)
                )),
                None if !unit.reason.is_empty() => {
                    Move::Done(format!("Unit {name} cannot move: {}", unit.reason))
                }
                None => Move::Done(format!("Unit {name} is placed nowhere")),
            }
        })
        .collect()
}

/// The normal units placed on `machine`, in name order.
fn placed_on(machine: &str, units: &[view::Unit]) -> Vec<UnitName> {
    let mut names: Vec<UnitName> = units
        .iter()
        .filter(|u| !u.global && u.machine_ids.iter().any(|m| m == machine))
        .map(|u| u.name.clone())
        .collect();
    names.sort();
    names
}

pub(super) async fn drain(
    client: &Client,
    console: &mut Console<'_>,
    args: &MachineArgs,
) -> Result<(), CliError> {
    let machines = client.machines().await?;
    let id = resolve_machine(&args.machine, &machines)?;
    let shown = machine_id(&id, Detail::Short);
    // Taken before the drain: whatever the engine does after it wakes the long poll below.
    let mut revision = client.changes(0, Duration::ZERO).await?;
    let before = placed_on(&id, &client.units().await?);
    if client.drain(&id).await? {
        writeln!(console.out, "Machine {shown} drained")?;
    } else {
        writeln!(console.out, "Machine {shown} was already drained")?;
    }
    let Blocking::Wait(budget) = args.block.blocking() else {
        return Ok(());
    };
    let deadline = budget.deadline(Instant::now());
    let mut pending = before;
    loop {
        let units = client.units().await?;
        let machines = client.machines().await?;
        let mut still = Vec::new();
        for m in moves(&id, &pending, &units, &Machines::new(&machines)) {
            match m {
                Move::Done(line) => writeln!(console.out, "{line}")?,
                Move::Pending(name) => still.push(name),
            }
        }
        console.out.flush()?;
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        let poll = match deadline {
            None => CHANGES_MAX_WAIT,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(CliError::DrainTimedOut {
                        machine: shown,
                        units: pending,
                    });
                }
                left.min(CHANGES_MAX_WAIT)
            }
        };
        revision = client.changes(revision, poll).await?;
    }
}

pub(super) async fn undrain(
    client: &Client,
    console: &mut Console<'_>,
    args: &MachineArgs,
) -> Result<(), CliError> {
    let machines = client.machines().await?;
    let id = resolve_machine(&args.machine, &machines)?;
    let shown = machine_id(&id, Detail::Short);
    if client.undrain(&id).await? {
        writeln!(console.out, "Machine {shown} undrained")?;
        Ok(())
    } else {
        Err(CliError::NotDrained(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::DesiredState;

    const A: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f801";
    const B: &str = "1a2b3c4d00000000000000000000000b";
    const C: &str = "2b3c4d5e6f708192a3b4c5d6e7f80112";

    fn machines() -> Vec<wire::Machine> {
        [
            (A, "host-a", "10.0.0.1"),
            (B, "host-b", ""),
            (C, "host-c", "10.0.0.3"),
        ]
        .iter()
        .map(|(id, hostname, ip)| wire::Machine {
            id: id.to_string(),
            hostname: hostname.to_string(),
            primary_ip: ip.to_string(),
            ..wire::Machine::default()
        })
        .collect()
    }

    #[test]
    fn a_machine_is_named_by_its_id_a_unique_prefix_or_its_hostname() {
        let ok = |arg: &str| resolve_machine(arg, &machines()).map_err(|e| e.to_string());
        let gone = "ffffffffffffffffffffffffffffffff";
        let cases: &[(&str, Result<&str, &str>)] = &[
            (A, Ok(A)),
            ("1a2b3c4d5", Ok(A)),
            ("2b", Ok(C)),
            ("host-b", Ok(B)),
            (gone, Ok(gone)),
            (
                "1a2b3c4d",
                Err("machine `1a2b3c4d` is ambiguous: it names 1a2b3c4d..., 1a2b3c4d..."),
            ),
            (
                "",
                Err("no machine `` in the cluster (give its ID, an ID prefix or its hostname)"),
            ),
            (
                "zz",
                Err("no machine `zz` in the cluster (give its ID, an ID prefix or its hostname)"),
            ),
        ];
        for (arg, expected) in cases {
            let expected = expected.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(ok(arg), expected, "{arg}");
        }
    }

    fn unit(name: &str, on: &[&str], reason: &str, global: bool) -> view::Unit {
        view::Unit {
            name: UnitName::new(name).unwrap(),
            options: Vec::new(),
            desired: DesiredState::Launched,
            current: DesiredState::Launched,
            machine_id: on.first().map(|m| m.to_string()).unwrap_or_default(),
            machine_ids: on.iter().map(|m| m.to_string()).collect(),
            reason: reason.to_owned(),
            global,
            start_request: 0,
        }
    }

    #[test]
    fn each_unit_that_was_on_the_machine_is_told_moved_stuck_pending_or_gone() {
        let machines = machines();
        let directory = Machines::new(&machines);
        let before: Vec<UnitName> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| UnitName::new(&format!("{n}.service")).unwrap())
            .collect();
        let now = [
            unit("a.service", &[C], "", false),
            unit("b.service", &[A], "", false),
            unit(
                "c.service",
                &[],
                "the only machine it may run on, 1a2b3c4d, is drained",
                false,
            ),
            unit("d.service", &[B], "", false),
            unit("g.service", &[A, C], "", true),
        ];
        assert_eq!(
            moves(A, &before, &now, &directory),
            [
                Move::Done("Unit a.service moved to 2b3c4d5e.../10.0.0.3".into()),
                Move::Pending(UnitName::new("b.service").unwrap()),
                Move::Done(
                    "Unit c.service cannot move: the only machine it may run on, 1a2b3c4d, \
                     is drained"
                        .into()
                ),
                Move::Done("Unit d.service moved to 1a2b3c4d...".into()),
                Move::Done("Unit e.service was destroyed".into()),
            ]
        );
        let placed = placed_on(A, &now);
        assert_eq!(
            placed,
            [UnitName::new("b.service").unwrap()],
            "global units stay"
        );
    }
}
