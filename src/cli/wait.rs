//! Waiting until units reach a state: `progress` decides from a unit and its states whether the
//! goal is reached (and what fleetctl prints then), and `wait` reads, checks, and blocks on
//! flotte's change long-poll until something changed, never polling on a timer.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use super::client::{Client, ClientError};
use super::fields::{Detail, Machines};
use super::resolve::registered_file;
use super::view;
use crate::unit::{DesiredState, UnitName};
use crate::wire::{self, CHANGES_MAX_WAIT};

/// What a command waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Placed nowhere, on no machine any more (`unload`).
    Inactive,
    /// Loaded on its machine and not running (`load`, `stop`, the first half of `restart`).
    Loaded,
    /// Started on its machine (`start`, the second half of `restart`).
    Launched,
    /// Gone from the registry and from every machine (`destroy`).
    Destroyed,
}

impl Goal {
    /// The goal's name in messages: the desired state waited for, or `destroyed`.
    fn name(self) -> &'static str {
        match self.desired() {
            Some(desired) => desired.as_str(),
            None => "destroyed",
        }
    }

    /// The desired state a unit must keep while it is waited for.
    fn desired(self) -> Option<DesiredState> {
        match self {
            Goal::Inactive => Some(DesiredState::Inactive),
            Goal::Loaded => Some(DesiredState::Loaded),
            Goal::Launched => Some(DesiredState::Launched),
            Goal::Destroyed => None,
        }
    }
}

/// Where a unit is on its way to a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Done; print this (fleetctl's words).
    Reached(String),
    /// Not yet, and why (shown when flottectl gives up).
    Waiting(String),
    /// It never will be: someone else changed the unit meanwhile.
    Impossible(String),
}

/// Whether `unit` (`None`: not in the registry) with `states` (its states on every machine)
/// has reached `goal`. A global unit has no current state of its own: for it only its desired
/// state and its states count.
pub fn progress(
    name: &UnitName,
    goal: Goal,
    unit: Option<&view::Unit>,
    states: &[view::UnitState],
    machines: &Machines,
) -> Progress {
    let Some(unit) = unit else {
        return match goal {
            Goal::Destroyed if states.is_empty() => Progress::Reached(format!("Destroyed {name}")),
            Goal::Destroyed => Progress::Waiting(format!(
                "still on {}",
                states
                    .iter()
                    .map(|s| machines.legend(&s.machine_id, Detail::Short))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => Progress::Impossible(format!("unit {name} was destroyed meanwhile")),
        };
    };
    let Some(wanted) = goal.desired() else {
        return Progress::Impossible(format!("unit {name} was submitted again meanwhile"));
    };
    if unit.desired != wanted {
        return Progress::Impossible(format!(
            "the desired state of unit {name} changed to {} meanwhile",
            unit.desired
        ));
    }
    let file = match registered_file(unit) {
        Ok(file) => file,
        Err(e) => return Progress::Impossible(e.to_string()),
    };
    let hash = file.hash().to_string();
    // fleetctl does not wait for global units, and flottectl waits for them only where it must:
    // to know a restarting global unit stopped everywhere before starting it again.
    if unit.global {
        let running: Vec<String> = states
            .iter()
            .filter(|s| s.active.is_running())
            .map(|s| machines.legend(&s.machine_id, Detail::Short))
            .collect();
        return match goal {
            Goal::Loaded if running.is_empty() => {
                Progress::Reached(format!("Unit {name} loaded on {} machine(s)", states.len()))
            }
            Goal::Loaded => Progress::Waiting(format!("still running on {}", running.join(", "))),
            _ => Progress::Reached(format!("Unit {name} {wanted}")),
        };
    }
    let current = unit.current;
    // What the unit's machine says about it, and why it is placed nowhere, if it is not.
    let complaint = states
        .iter()
        .find(|s| s.machine_id == unit.machine_id && !s.message.is_empty())
        .map(|s| format!("; systemd: {}", s.message))
        .unwrap_or_default();
    let waiting = |why: String| {
        let reason = match unit.reason.as_str() {
            "" => String::new(),
            r => format!("; not placed: {r}"),
        };
        Progress::Waiting(format!("current state {current}{why}{reason}{complaint}"))
    };
    match goal {
        Goal::Inactive if current == DesiredState::Inactive && states.is_empty() => {
            Progress::Reached(format!("Unit {name} inactive"))
        }
        Goal::Inactive => waiting(match states.len() {
            0 => String::new(),
            n => format!(", still on {n} machine(s)"),
        }),
        Goal::Loaded | Goal::Launched => {
            if current != wanted || unit.machine_id.is_empty() {
                return waiting(String::new());
            }
            let Some(state) = states.iter().find(|s| s.machine_id == unit.machine_id) else {
                return waiting(", no state reported by its machine yet".into());
            };
            if state.hash != hash {
                return waiting(", its machine still runs other content".into());
            }
            if goal == Goal::Launched && state.start_request < unit.start_request {
                return waiting(", its machine has not started it again yet".into());
            }
            if goal == Goal::Loaded && state.active.is_running() {
                return waiting(format!(", systemd still {}", state.active));
            }
            Progress::Reached(format!(
                "Unit {name} {wanted} on {}",
                machines.legend(&unit.machine_id, Detail::Short)
            ))
        }
        Goal::Destroyed => {
            Progress::Impossible(format!("unit {name} was submitted again meanwhile"))
        }
    }
}

/// How long to wait: fleetctl's `--block-attempts`, where one attempt was a check every
/// 500 ms. flottectl checks on every change instead, so the attempts become a time budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Unlimited,
    Attempts(u32),
}

/// fleetctl's pause between two attempts.
const ATTEMPT: Duration = Duration::from_millis(500);

impl Budget {
    /// fleetctl's `--block-attempts`: 0 means no limit.
    pub fn from_attempts(attempts: u32) -> Budget {
        match attempts {
            0 => Budget::Unlimited,
            n => Budget::Attempts(n),
        }
    }

    pub(super) fn deadline(self, start: Instant) -> Option<Instant> {
        match self {
            Budget::Unlimited => None,
            Budget::Attempts(n) => Some(start + ATTEMPT * n),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Impossible(String),
    #[error("{}", .0.iter().map(|(unit, state, why)| format!("timed out waiting for unit {unit} to report state {state} ({why})")).collect::<Vec<_>>().join("\n"))]
    TimedOut(Vec<(UnitName, String, String)>),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Waits until every one of `units` reached `goal`, printing fleetctl's message for each as it
/// does. Reads the units, then blocks on the change long-poll until the cluster changed, then
/// reads again.
pub async fn wait(
    client: &Client,
    out: &mut dyn Write,
    units: &[UnitName],
    goal: Goal,
    budget: Budget,
) -> Result<(), WaitError> {
    let deadline = budget.deadline(Instant::now());
    // Taken before the first read: whatever changes after it wakes the long-poll below.
    let mut revision = client.changes(0, Duration::ZERO).await?;
    let mut pending: Vec<&UnitName> = units.iter().collect();
    let mut machines: Option<Vec<wire::Machine>> = None;
    let mut why: HashMap<&UnitName, String> = HashMap::new();
    loop {
        let mut still = Vec::new();
        let reads = read(client, &pending).await?;
        if machines.is_none() {
            machines = Some(client.machines().await?);
        }
        let directory = Machines::new(machines.as_deref().unwrap_or_default());
        for (name, (unit, states)) in pending.into_iter().zip(reads) {
            match progress(name, goal, unit.as_ref(), &states, &directory) {
                Progress::Reached(message) => writeln!(out, "{message}")?,
                Progress::Waiting(reason) => {
                    why.insert(name, reason);
                    still.push(name);
                }
                Progress::Impossible(reason) => return Err(WaitError::Impossible(reason)),
            }
        }
        out.flush()?;
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        let poll = match deadline {
            None => CHANGES_MAX_WAIT,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(WaitError::TimedOut(
                        pending
                            .into_iter()
                            .map(|n| {
                                let reason = why.remove(n).unwrap_or_default();
                                (n.clone(), goal.name().to_owned(), reason)
                            })
                            .collect(),
                    ));
                }
                left.min(CHANGES_MAX_WAIT)
            }
        };
        // The machines list is read again after a change: a unit may have moved to a machine
        // that joined meanwhile.
        let next = client.changes(revision, poll).await?;
        if next != revision {
            machines = None;
        }
        revision = next;
    }
}

/// Each pending unit as the registry has it, with its states.
async fn read(
    client: &Client,
    pending: &[&UnitName],
) -> Result<Vec<(Option<view::Unit>, Vec<view::UnitState>)>, WaitError> {
    if pending.len() <= super::many::READ_ALL_ABOVE {
        return super::many::in_order(pending, |name| async move {
            let unit = client.unit(name).await?;
            let states = client.unit_states(Some(name)).await?;
            Ok::<_, WaitError>((unit, states))
        })
        .await;
    }
    let (units, states) = tokio::try_join!(client.units(), client.unit_states(None))?;
    let mut units: HashMap<UnitName, view::Unit> =
        units.into_iter().map(|u| (u.name.clone(), u)).collect();
    let mut by_unit: HashMap<UnitName, Vec<view::UnitState>> = HashMap::new();
    for state in states {
        by_unit.entry(state.name.clone()).or_default().push(state);
    }
    Ok(pending
        .iter()
        .map(|name| {
            (
                units.remove(*name),
                by_unit.remove(*name).unwrap_or_default(),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests;
