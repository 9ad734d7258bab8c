//! Scheduler cases as small data tables, all through `check`, and properties over generated
//! clusters.

mod cases;
mod properties;
mod resources;

use std::sync::Arc;

use crate::machine::{MachineId, Metadata};
use crate::unit::{
    CompareOp, ConflictPattern, DesiredState, MachineIdPattern, MetadataCondition, Requirements,
    UnitName,
};

use super::{ClusterView, Machine, Plan, Strategy, Unit, plan};
use crate::resources::Resources;

/// `m1` is machine `00000001000000000000000000000000` (short form `00000001`).
fn machine_id(short: &str) -> MachineId {
    let digits = short.trim_start_matches('m');
    MachineId::new(&format!("{digits:0>8}{}", "0".repeat(24))).expect("test machine IDs are hex")
}

fn name(name: &str) -> UnitName {
    UnitName::new(name).expect("test unit names are valid")
}

/// A unit under test, built with the methods below: desired `launched`, no requirements, placed
/// nowhere.
#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    desired: DesiredState,
    requirements: Requirements,
    placed: Vec<&'static str>,
}

fn unit(name: &'static str) -> Spec {
    Spec {
        name,
        desired: DesiredState::Launched,
        requirements: Requirements::default(),
        placed: Vec::new(),
    }
}

impl Spec {
    fn on(mut self, machine: &'static str) -> Self {
        self.placed.push(machine);
        self
    }

    fn desired(mut self, desired: DesiredState) -> Self {
        self.desired = desired;
        self
    }

    /// `region=eu`, `region=eu|us`, `ram>=2048`, `region!=eu`.
    fn metadata(mut self, condition: &str) -> Self {
        self.requirements.metadata.push(condition_from(condition));
        self
    }

    fn conflicts(mut self, pattern: &str) -> Self {
        let pattern = ConflictPattern::new(pattern).expect("test patterns are valid");
        self.requirements.conflicts.push(pattern);
        self
    }

    fn machine_of(mut self, target: &str) -> Self {
        self.requirements.machine_of.push(name(target));
        self
    }

    fn global(mut self) -> Self {
        self.requirements.global = true;
        self
    }

    fn replaces(mut self, replaced: &str) -> Self {
        self.requirements.replaces.push(name(replaced));
        self
    }

    /// `MachineID=` with the 8-character form of a test machine.
    fn machine_id(mut self, machine: &str) -> Self {
        let short = machine_id(machine).short().to_owned();
        self.requirements.machine_id = Some(MachineIdPattern::Prefix(short));
        self
    }

    /// `MachineID=` with the full 32-character ID.
    fn full_machine_id(mut self, machine: &str) -> Self {
        self.requirements.machine_id = Some(MachineIdPattern::Full(machine_id(machine)));
        self
    }

    /// `Memory=` and `CPU=` as `memory=512M,cpu=0.5`.
    fn requests(mut self, amounts: &str) -> Self {
        self.requirements.requests = resources_of(amounts);
        self
    }

    fn build(&self) -> Unit {
        Unit {
            name: name(self.name),
            requirements: Arc::new(self.requirements.clone()),
            desired: self.desired,
            placed: self.placed.iter().map(|m| machine_id(m)).collect(),
        }
    }
}

fn condition_from(text: &str) -> MetadataCondition {
    let ops = [
        ("!=", Some(CompareOp::Ne)),
        ("<=", Some(CompareOp::Le)),
        (">=", Some(CompareOp::Ge)),
        ("<", Some(CompareOp::Lt)),
        (">", Some(CompareOp::Gt)),
        ("=", None),
    ];
    for (token, op) in ops {
        if let Some((key, value)) = text.split_once(token) {
            let key = key.to_owned();
            return match op {
                Some(op) => MetadataCondition::Compare {
                    key,
                    op,
                    value: value.to_owned(),
                },
                None => MetadataCondition::OneOf {
                    key,
                    values: value.split('|').map(str::to_owned).collect(),
                },
            };
        }
    }
    panic!("test condition `{text}` has no operator")
}

fn view(machines: &[(&str, &str)], units: &[Spec]) -> ClusterView {
    ClusterView {
        machines: machines
            .iter()
            .map(|(id, metadata)| {
                // `m1!` is machine m1, drained.
                let (id, drained) = match id.strip_suffix('!') {
                    Some(id) => (id, true),
                    None => (*id, false),
                };
                Machine {
                    id: machine_id(id),
                    metadata: Metadata::parse_list(metadata).expect("test metadata is valid"),
                    drained,
                    capacity: Resources::ZERO,
                }
            })
            .collect(),
        units: units.iter().map(Spec::build).collect(),
        strategy: Strategy::Spread,
    }
}

/// Like `view`, each machine with a capacity (`memory=1G,cpu=2`), planned with `strategy`.
fn sized_view(strategy: Strategy, machines: &[(&str, &str, &str)], units: &[Spec]) -> ClusterView {
    let pairs: Vec<(&str, &str)> = machines.iter().map(|(id, md, _)| (*id, *md)).collect();
    let mut view = view(&pairs, units);
    view.strategy = strategy;
    for (machine, (_, _, capacity)) in view.machines.iter_mut().zip(machines) {
        machine.capacity = resources_of(capacity);
    }
    view
}

/// `memory=512M,cpu=0.5`.
fn resources_of(text: &str) -> Resources {
    let (memory, cpu) = crate::resources::parse_amounts(text).expect("test amounts are valid");
    Resources {
        memory: memory.unwrap_or(0),
        millicpus: cpu.unwrap_or(0),
    }
}

/// `check` on machines with capacities.
fn check_sized(
    strategy: Strategy,
    machines: &[(&str, &str, &str)],
    units: &[Spec],
    expected: &[&str],
) {
    let view = sized_view(strategy, machines, units);
    let got = plan(&view);
    assert_eq!(
        got,
        expected_plan(expected),
        "plan for {units_names:?}",
        units_names = names(units)
    );
    assert_stable(&view, &got);
}

/// Expected lines: `+unit machine` (placed), `-unit machine` (removed), `unit: reason`.
fn expected_plan(lines: &[&str]) -> Plan {
    let mut plan = Plan::default();
    for line in lines {
        let change = |rest: &str| {
            let (unit, machine) = rest.split_once(' ').expect("`unit machine`");
            (name(unit), machine_id(machine))
        };
        if let Some(rest) = line.strip_prefix('+') {
            plan.place.push(change(rest));
        } else if let Some(rest) = line.strip_prefix('-') {
            plan.unplace.push(change(rest));
        } else {
            let (unit, reason) = line.split_once(": ").expect("`unit: reason`");
            plan.reasons.insert(name(unit), reason.to_owned());
        }
    }
    plan.place.sort();
    plan.unplace.sort();
    plan
}

/// Runs one case, and checks on the way that input order does not matter and that the plan,
/// once applied, leaves nothing to do.
fn check(machines: &[(&str, &str)], units: &[Spec], expected: &[&str]) {
    let view = view(machines, units);
    let got = plan(&view);
    assert_eq!(
        got,
        expected_plan(expected),
        "plan for {units_names:?}",
        units_names = names(units)
    );
    assert_stable(&view, &got);
}

fn names(units: &[Spec]) -> Vec<&str> {
    units.iter().map(|u| u.name).collect()
}

/// The same plan from the view in other orders, and an empty plan once it is applied.
fn assert_stable(view: &ClusterView, got: &Plan) {
    let mut reversed = view.clone();
    reversed.machines.reverse();
    reversed.units.reverse();
    assert_eq!(&plan(&reversed), got, "reversed input");
    let mut rotated = view.clone();
    if !rotated.units.is_empty() {
        rotated.units.rotate_left(1);
    }
    assert_eq!(&plan(&rotated), got, "rotated input");

    let applied = apply(view, got);
    let again = plan(&applied);
    assert!(again.is_settled(), "planning again changes more: {again:?}");
    assert_eq!(
        again.reasons, got.reasons,
        "planning again gives other reasons"
    );
}

fn apply(view: &ClusterView, plan: &Plan) -> ClusterView {
    let mut view = view.clone();
    for unit in &mut view.units {
        unit.placed
            .retain(|m| !plan.unplace.contains(&(unit.name.clone(), m.clone())));
        for (name, m) in &plan.place {
            if *name == unit.name {
                unit.placed.push(m.clone());
            }
        }
    }
    view
}
