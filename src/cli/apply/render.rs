//! What `plan` and `apply` print, as pure functions of the plan and the outcome: text for
//! people, JSON (`--output json`) for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::unit::DesiredState;
use crate::wire;

use super::diff::Change;
use super::rollout::Step;
use super::{PlanFile, Planned};

/// Where a unit would be placed: machine IDs shortened, with their hostnames.
fn placement(unit: Option<&wire::PlannedUnit>, hosts: &BTreeMap<String, String>) -> String {
    let Some(unit) = unit else {
        return String::new();
    };
    if !unit.reason.is_empty() {
        return format!("  ! cannot be placed: {}", unit.reason);
    }
    if unit.machine_ids.is_empty() {
        return String::new();
    }
    let machines: Vec<String> = (unit.machine_ids.iter())
        .map(|m| {
            let short: String = m.chars().take(8).collect();
            match hosts.get(m) {
                Some(h) if !h.is_empty() => format!("{short} ({h})"),
                _ => short,
            }
        })
        .collect();
    format!("  -> {}", machines.join(", "))
}

pub fn plan_text(planned: &Planned, hosts: &BTreeMap<String, String>) -> String {
    let answers: BTreeMap<&str, &wire::PlannedUnit> = (planned.file.answer.units.iter())
        .map(|u| (u.name.as_str(), u))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for set {} at etcd revision {}:",
        planned.file.set, planned.file.answer.revision
    );
    let (mut submit, mut replace, mut state, mut destroy, mut same) = (0, 0, 0, 0, 0);
    for c in &planned.changes {
        let name = c.name.as_str();
        let placed = placement(answers.get(name).copied(), hosts);
        match &c.change {
            Change::Submit { desired } => {
                submit += 1;
                let _ = writeln!(out, "  + {name}: submit, {desired}{placed}");
            }
            Change::Replace {
                from,
                desired,
                diff,
            } => {
                replace += 1;
                let how = if *from == DesiredState::Launched && *desired == DesiredState::Launched {
                    "replace (rolling update)".to_owned()
                } else if from == desired {
                    "replace".to_owned()
                } else {
                    format!("replace, {from} -> {desired}")
                };
                let _ = writeln!(out, "  ~ {name}: {how}{placed}");
                for line in diff {
                    let _ = writeln!(out, "      {line}");
                }
            }
            Change::State { from, desired } => {
                state += 1;
                let _ = writeln!(out, "  ~ {name}: {from} -> {desired}{placed}");
            }
            Change::Destroy => {
                destroy += 1;
                let _ = writeln!(
                    out,
                    "  - {name}: destroy (--prune: in set {}, not in the directories)",
                    planned.file.set
                );
            }
            Change::Kept => {
                same += 1;
                let _ = writeln!(
                    out,
                    "  = {name}: kept, in set {} but not in the directories (--prune destroys it)",
                    planned.file.set
                );
            }
            Change::InSync => {
                same += 1;
                let _ = writeln!(out, "  = {name}: in sync{placed}");
            }
        }
    }
    let _ = writeln!(
        out,
        "{submit} to submit, {replace} to replace, {state} to change state, {destroy} to destroy, {same} in sync."
    );
    if planned.steps.is_empty() {
        let _ = writeln!(out, "Nothing to do: the cluster is in sync.");
    } else {
        let _ = writeln!(out, "Rollout ({} at a time):", planned.file.max_parallel);
        for (i, step) in planned.steps.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, step_text(step));
        }
    }
    out
}

fn step_text(step: &Step) -> String {
    let names: Vec<&str> = step.units().iter().map(|u| u.as_str()).collect();
    format!("{} {}", step.verb(), names.join(", "))
}

/// `plan --output json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanJson<'a> {
    pub set: &'a str,
    pub revision: i64,
    pub in_sync: bool,
    pub units: Vec<UnitJson<'a>>,
    pub steps: &'a [Step],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitJson<'a> {
    pub name: &'a str,
    #[serde(flatten)]
    pub change: &'a Change,
    #[serde(rename = "machineIDs", skip_serializing_if = "<[String]>::is_empty")]
    pub machine_ids: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'a str,
}

pub fn plan_json(planned: &Planned) -> PlanJson<'_> {
    let answers: BTreeMap<&str, &wire::PlannedUnit> = (planned.file.answer.units.iter())
        .map(|u| (u.name.as_str(), u))
        .collect();
    PlanJson {
        set: planned.file.set.as_str(),
        revision: planned.file.answer.revision,
        in_sync: planned.steps.is_empty(),
        units: (planned.changes.iter())
            .map(|c| {
                let answer = answers.get(c.name.as_str());
                UnitJson {
                    name: c.name.as_str(),
                    change: &c.change,
                    machine_ids: answer.map_or(&[][..], |a| &a.machine_ids),
                    reason: answer.map_or("", |a| &a.reason),
                }
            })
            .collect(),
        steps: &planned.steps,
    }
}

/// The command that resumes an apply: the same directories and set, planned afresh.
pub fn resume_command(file: &PlanFile) -> String {
    let mut command = String::from("flottectl apply");
    for dir in &file.dirs {
        let _ = write!(command, " {}", shell_word(&dir.display().to_string()));
    }
    let _ = write!(command, " --set {}", file.set);
    if file.prune {
        command.push_str(" --prune");
    }
    if file.max_parallel != 1 {
        let _ = write!(command, " --max-parallel {}", file.max_parallel);
    }
    command
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-@+=:,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Why an apply stopped: at which step (0-based), whether that step's writes were made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: usize,
    pub written: bool,
    pub why: String,
}

/// What an apply did, and what it left.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub set: String,
    pub revision: i64,
    pub steps: Vec<Step>,
    /// Steps done, from the first.
    pub done: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub resume: String,
}

pub fn outcome_text(o: &Outcome) -> String {
    let mut out = String::new();
    let Some(f) = &o.failure else {
        if o.steps.is_empty() {
            let _ = writeln!(out, "In sync: nothing applied.");
        } else {
            let n = o.steps.len();
            let _ = writeln!(
                out,
                "Applied: {n} step{} done.",
                if n == 1 { "" } else { "s" }
            );
        }
        return out;
    };
    let _ = writeln!(
        out,
        "STOPPED at step {} of {}: {}",
        f.step + 1,
        o.steps.len(),
        f.why
    );
    let _ = writeln!(out, "State left:");
    for (i, step) in o.steps.iter().enumerate() {
        let what = if i < f.step {
            "done"
        } else if i == f.step && f.written {
            "made, not finished"
        } else {
            "not started (unchanged)"
        };
        let _ = writeln!(out, "  {}. {}: {what}", i + 1, step_text(step));
    }
    let left: Vec<&str> = (o.steps.iter().skip(f.step + usize::from(f.written)))
        .filter(|s| matches!(s, Step::Replace(_)))
        .flat_map(|s| s.units().iter().map(|u| u.as_str()))
        .collect();
    if !left.is_empty() {
        let _ = writeln!(out, "Still on their old version: {}.", left.join(", "));
    }
    let _ = writeln!(out, "Fix what failed, then resume with: {}", o.resume);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::UnitName;

    fn names(ns: &[&str]) -> Vec<UnitName> {
        ns.iter().map(|n| UnitName::new(n).unwrap()).collect()
    }

    #[test]
    fn a_stopped_rollout_says_what_is_done_what_is_left_and_how_to_resume() {
        let outcome = Outcome {
            set: "web".into(),
            revision: 10,
            steps: vec![
                Step::Submit(names(&["db.service"])),
                Step::Replace(names(&["web@1.service"])),
                Step::Replace(names(&["web@2.service"])),
                Step::Replace(names(&["web@3.service"])),
            ],
            done: 1,
            failure: Some(Failure {
                step: 1,
                written: true,
                why: "web@1.service failed on machine m1".into(),
            }),
            resume: "flottectl apply units --set web".into(),
        };
        assert_eq!(
            outcome_text(&outcome),
            "STOPPED at step 2 of 4: web@1.service failed on machine m1\n\
             State left:\n  \
             1. submit db.service: done\n  \
             2. replace web@1.service: made, not finished\n  \
             3. replace web@2.service: not started (unchanged)\n  \
             4. replace web@3.service: not started (unchanged)\n\
             Still on their old version: web@2.service, web@3.service.\n\
             Fix what failed, then resume with: flottectl apply units --set web\n"
        );
    }

    #[test]
    fn the_resume_command_quotes_what_the_shell_would_split() {
        let file = PlanFile {
            version: 1,
            dirs: vec!["units/web".into(), "my units".into()],
            set: crate::registry::SetName::new("web").unwrap(),
            prune: true,
            max_parallel: 2,
            request: wire::PlanRequest::default(),
            answer: wire::PlanAnswer::default(),
        };
        assert_eq!(
            resume_command(&file),
            "flottectl apply units/web 'my units' --set web --prune --max-parallel 2"
        );
    }
}
