//! The order `apply` makes its changes in, and when a changed unit counts as done, as pure
//! functions. New units are submitted together, then changed units are replaced: those that
//! run (stored and desired `launched`) in batches of at most `--max-parallel`, each batch
//! waited for before the next (a rolling update), the others together; then desired-state
//! changes, then destroys. A replace is a PUT of the new options: the unit keeps its machine
//! and its agent restarts it under the new file, so only the batch's instances are down.

use serde::Serialize;

use crate::systemd::ActiveState;
use crate::unit::{DesiredState, UnitName};

use super::diff::{Change, UnitChange};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", content = "units", rename_all = "kebab-case")]
pub enum Step {
    Submit(Vec<UnitName>),
    /// One batch of a rolling update, or every changed unit that does not run.
    Replace(Vec<UnitName>),
    State(Vec<UnitName>),
    Destroy(Vec<UnitName>),
}

impl Step {
    pub fn units(&self) -> &[UnitName] {
        match self {
            Step::Submit(u) | Step::Replace(u) | Step::State(u) | Step::Destroy(u) => u,
        }
    }

    pub fn verb(&self) -> &'static str {
        match self {
            Step::Submit(_) => "submit",
            Step::Replace(_) => "replace",
            Step::State(_) => "set the desired state of",
            Step::Destroy(_) => "destroy",
        }
    }
}

/// The steps for `changes` (in name order within each kind); `max_parallel` is at least 1.
pub fn steps(changes: &[UnitChange], max_parallel: usize) -> Vec<Step> {
    let max_parallel = max_parallel.max(1);
    let of = |keep: &dyn Fn(&Change) -> bool| -> Vec<UnitName> {
        changes
            .iter()
            .filter(|c| keep(&c.change))
            .map(|c| c.name.clone())
            .collect()
    };
    fn rolled(c: &Change) -> bool {
        matches!(
            c,
            Change::Replace {
                from: DesiredState::Launched,
                desired: DesiredState::Launched,
                ..
            }
        )
    }
    let mut steps = Vec::new();
    let submit = of(&|c| matches!(c, Change::Submit { .. }));
    if !submit.is_empty() {
        steps.push(Step::Submit(submit));
    }
    let others = of(&|c| matches!(c, Change::Replace { .. }) && !rolled(c));
    if !others.is_empty() {
        steps.push(Step::Replace(others));
    }
    for batch in of(&rolled).chunks(max_parallel) {
        steps.push(Step::Replace(batch.to_vec()));
    }
    let state = of(&|c| matches!(c, Change::State { .. }));
    if !state.is_empty() {
        steps.push(Step::State(state));
    }
    let destroy = of(&|c| matches!(c, Change::Destroy));
    if !destroy.is_empty() {
        steps.push(Step::Destroy(destroy));
    }
    steps
}

/// One machine's report of a unit, as far as a wait cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub machine: String,
    /// The content its agent wrote.
    pub hash: String,
    pub active: ActiveState,
    pub message: String,
    /// The declared service's health there (`passing`, `unknown`, `critical`), when the unit
    /// declares a checked service; `None` when it declares none or has no instance yet.
    pub health: Option<String>,
    /// systemd there entered `active` after the unit was replaced (or it did not run there
    /// before): an agent reports the new content before it restarted the old process.
    pub restarted: bool,
}

/// What a changed unit should reach, and what the cluster reports of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed<'a> {
    pub desired: DesiredState,
    /// The content it was given.
    pub hash: &'a str,
    pub placed: &'a [String],
    /// The engine's reason when it is placed nowhere.
    pub reason: &'a str,
    pub reports: &'a [Report],
    /// It declares a service with a check: it must be `passing` too.
    pub checked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet: what is awaited, as a sentence's end.
    Waiting(String),
    Done,
    Failed(String),
}

/// Whether a changed unit reached its desired state with its new content: running on each
/// machine it is placed on (systemd's `active`, and healthy when checked) for `launched`, loaded there for
/// `loaded`; at once for `inactive`. An unplaceable unit or a failed one has failed; a
/// critical check is waited out (until the step's deadline).
pub fn progress(o: &Observed) -> Progress {
    if o.desired == DesiredState::Inactive {
        return Progress::Done;
    }
    if o.placed.is_empty() {
        return if o.reason.is_empty() {
            Progress::Waiting("waiting to be placed".into())
        } else {
            Progress::Failed(format!("cannot be placed: {}", o.reason))
        };
    }
    for machine in o.placed {
        let Some(r) = o.reports.iter().find(|r| &r.machine == machine) else {
            return Progress::Waiting(format!("waiting for a report from machine {machine}"));
        };
        if r.hash != o.hash {
            return Progress::Waiting(format!("waiting for the new content on machine {machine}"));
        }
        if r.active == ActiveState::Failed {
            let why = if r.message.is_empty() {
                String::new()
            } else {
                format!(": {}", r.message)
            };
            return Progress::Failed(format!("failed on machine {machine}{why}"));
        }
        if o.desired == DesiredState::Launched && !r.restarted {
            return Progress::Waiting(format!(
                "waiting for the restart under the new content on machine {machine}"
            ));
        }
        if o.desired == DesiredState::Launched {
            // Activating is not up yet: a rolling update waits until the unit is.
            if r.active != ActiveState::Active {
                return Progress::Waiting(format!(
                    "{} on machine {machine}, waiting until active",
                    r.active.as_str()
                ));
            }
            if o.checked {
                match r.health.as_deref() {
                    Some("passing") => {}
                    // A server still starting fails its first checks: only the step's
                    // deadline (`--step-timeout`) ends the wait, as Nomad's healthy_deadline.
                    Some("critical") => {
                        return Progress::Waiting(format!(
                            "running on machine {machine}, its service check is critical: waiting for it to pass"
                        ));
                    }
                    _ => {
                        return Progress::Waiting(format!(
                            "running on machine {machine}, waiting for its service check to pass"
                        ));
                    }
                }
            }
        }
    }
    Progress::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use DesiredState::{Inactive, Launched, Loaded};

    fn name(n: &str) -> UnitName {
        UnitName::new(n).unwrap()
    }

    fn change(n: &str, change: Change) -> UnitChange {
        UnitChange {
            name: name(n),
            change,
        }
    }

    fn replace(from: DesiredState, desired: DesiredState) -> Change {
        Change::Replace {
            from,
            desired,
            diff: vec![],
        }
    }

    fn names(units: &[UnitName]) -> Vec<&str> {
        units.iter().map(|u| u.as_str()).collect()
    }

    #[test]
    fn running_units_are_replaced_in_batches_after_new_ones_and_before_states_and_destroys() {
        let changes = [
            change("a.service", Change::Destroy),
            change("db.service", Change::Submit { desired: Launched }),
            change("idle.service", replace(Loaded, Loaded)),
            change("up.service", replace(Loaded, Launched)),
            change("web@1.service", replace(Launched, Launched)),
            change("web@2.service", replace(Launched, Launched)),
            change("web@3.service", replace(Launched, Launched)),
            change(
                "x.service",
                Change::State {
                    from: Launched,
                    desired: Inactive,
                },
            ),
            change("y.service", Change::InSync),
        ];
        let shown = |max| -> Vec<(&'static str, Vec<String>)> {
            steps(&changes, max)
                .iter()
                .map(|s| {
                    (
                        s.verb(),
                        names(s.units()).iter().map(|n| n.to_string()).collect(),
                    )
                })
                .collect()
        };
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shown(1),
            vec![
                ("submit", v(&["db.service"])),
                ("replace", v(&["idle.service", "up.service"])),
                ("replace", v(&["web@1.service"])),
                ("replace", v(&["web@2.service"])),
                ("replace", v(&["web@3.service"])),
                ("set the desired state of", v(&["x.service"])),
                ("destroy", v(&["a.service"])),
            ]
        );
        assert_eq!(
            shown(2)[2..4],
            [
                ("replace", v(&["web@1.service", "web@2.service"])),
                ("replace", v(&["web@3.service"])),
            ]
        );
        // 0 is taken as 1: a rollout always makes progress.
        assert_eq!(shown(0), shown(1));
        assert!(steps(&[change("y.service", Change::InSync)], 1).is_empty());
    }

    fn report(machine: &str, hash: &str, active: ActiveState, health: Option<&str>) -> Report {
        Report {
            machine: machine.into(),
            hash: hash.into(),
            active,
            message: String::new(),
            health: health.map(str::to_owned),
            restarted: true,
        }
    }

    #[test]
    fn a_unit_is_done_when_it_runs_its_new_content_where_placed_and_passes_its_check() {
        use ActiveState::{Activating, Active, Failed};
        type Case = (
            &'static str,
            DesiredState,
            &'static [&'static str],
            &'static str,
            Vec<Report>,
            bool,
            Progress,
        );
        let waiting = |s: &str| Progress::Waiting(s.into());
        let failed = |s: &str| Progress::Failed(s.into());
        let cases: Vec<Case> = vec![
            (
                "inactive needs nothing",
                Inactive,
                &[],
                "",
                vec![],
                false,
                Progress::Done,
            ),
            (
                "not placed yet",
                Launched,
                &[],
                "",
                vec![],
                false,
                waiting("waiting to be placed"),
            ),
            (
                "unplaceable",
                Launched,
                &[],
                "no machine has disk=ssd",
                vec![],
                false,
                failed("cannot be placed: no machine has disk=ssd"),
            ),
            (
                "still the old content",
                Launched,
                &["m1"],
                "",
                vec![report("m1", "old", Active, None)],
                false,
                waiting("waiting for the new content on machine m1"),
            ),
            (
                "starting",
                Launched,
                &["m1"],
                "",
                vec![report("m1", "new", Activating, None)],
                false,
                waiting("activating on machine m1, waiting until active"),
            ),
            (
                "running",
                Launched,
                &["m1"],
                "",
                vec![report("m1", "new", Active, None)],
                false,
                Progress::Done,
            ),
            (
                "failed",
                Launched,
                &["m1"],
                "",
                vec![report("m1", "new", Failed, None)],
                false,
                failed("failed on machine m1"),
            ),
            (
                "running, check not passed yet",
                Launched,
                &["m1"],
                "",
                vec![report("m1", "new", Active, Some("unknown"))],
                true,
                waiting("running on machine m1, waiting for its service check to pass"),
            ),
            (
                "running, check critical",
                Launched,
                &["m1"],
                "",
                vec![report("m1", "new", Active, Some("critical"))],
                true,
                waiting(
                    "running on machine m1, its service check is critical: waiting for it to pass",
                ),
            ),
            (
                "running and passing",
                Launched,
                &["m1"],
                "",
                vec![report("m1", "new", Active, Some("passing"))],
                true,
                Progress::Done,
            ),
            (
                "a global unit waits for every machine",
                Launched,
                &["m1", "m2"],
                "",
                vec![report("m1", "new", Active, None)],
                false,
                waiting("waiting for a report from machine m2"),
            ),
            (
                "the new content reported before the old process was restarted",
                Launched,
                &["m1"],
                "",
                vec![Report {
                    restarted: false,
                    ..report("m1", "new", Active, None)
                }],
                false,
                waiting("waiting for the restart under the new content on machine m1"),
            ),
            (
                "loaded needs the new content, not a run",
                Loaded,
                &["m1"],
                "",
                vec![report("m1", "new", ActiveState::Inactive, None)],
                false,
                Progress::Done,
            ),
        ];
        for (what, desired, placed, reason, reports, checked, expected) in cases {
            let placed: Vec<String> = placed.iter().map(|m| m.to_string()).collect();
            let observed = Observed {
                desired,
                hash: "new",
                placed: &placed,
                reason,
                reports: &reports,
                checked,
            };
            assert_eq!(progress(&observed), expected, "{what}");
        }
    }
}
