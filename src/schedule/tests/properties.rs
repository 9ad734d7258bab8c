//! Properties over generated small clusters: any input order gives the same plan, the applied
//! plan leaves nothing to do, and the placements it leads to obey every rule (checked here with
//! `Requirements`' own methods, not the scheduler's indexes).

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::unit::{DesiredState, conflict_between};

use super::{Spec, apply, assert_stable, unit, view};
use crate::schedule::{ClusterView, Plan, plan};

const NAMES: [&str; 8] = [
    "a.service",
    "b.service",
    "db.service",
    "g.service",
    "web@1.service",
    "web@2.service",
    "web@3.service",
    "web@.service",
];
/// `m5` is never in the cluster: placements on it are stale.
const MACHINES: [&str; 5] = ["m1", "m2", "m3", "m4", "m5"];
/// The same machines, drained (see `view`).
const DRAINED: [&str; 5] = ["m1!", "m2!", "m3!", "m4!", "m5!"];
const REGIONS: [&str; 3] = ["", "region=eu", "region=us"];
const DISKS: [&str; 3] = ["", "disk=ssd", "disk=hdd"];

/// (desired, metadata, conflicts, MachineOf, global, Replaces, placement bits)
type UnitDraw = (u8, u8, u8, u8, u8, u8, u8);

fn spec(name: &'static str, draw: UnitDraw) -> Spec {
    let (desired, metadata, conflicts, machine_of, global, replaces, placed) = draw;
    let mut s = unit(name).desired(match desired {
        0 => DesiredState::Inactive,
        1 => DesiredState::Loaded,
        _ => DesiredState::Launched,
    });
    s = match metadata {
        1 => s.metadata("region=eu"),
        2 => s.metadata("disk=ssd"),
        3 => s.metadata("region!=eu"),
        4 => s.metadata("region=eu").metadata("disk=ssd"),
        _ => s,
    };
    s = match conflicts {
        1 => s.conflicts("web@*.service"),
        2 => s.conflicts("a.service"),
        3 => s.conflicts("db.service"),
        _ => s,
    };
    if let Some(target) = NAMES.get(usize::from(machine_of)) {
        s = s.machine_of(target);
    }
    if global == 0 {
        s = s.global();
    }
    if let Some(replaced) = NAMES.get(usize::from(replaces)) {
        s = s.replaces(replaced);
    }
    for (bit, machine) in MACHINES.iter().enumerate() {
        if placed & (1 << bit) != 0 {
            s = s.on(machine);
        }
    }
    s
}

fn cluster() -> impl Strategy<Value = (Vec<(&'static str, String)>, Vec<Spec>)> {
    let machine = proptest::option::of((0..3usize, 0..3usize, 0..4u8));
    let draw = (0..3u8, 0..6u8, 0..5u8, 0..20u8, 0..8u8, 0..24u8, 0..32u8);
    (
        proptest::collection::vec(machine, 4),
        proptest::collection::vec(proptest::option::of(draw), NAMES.len()),
    )
        .prop_map(|(machines, units)| {
            let machines = machines
                .into_iter()
                .zip(MACHINES.iter().zip(DRAINED))
                .filter_map(|(m, (id, drained_id))| {
                    let (region, disk, drain) = m?;
                    // One machine in four is drained.
                    let id = if drain == 0 { drained_id } else { *id };
                    let metadata = [REGIONS[region], DISKS[disk]]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(",");
                    Some((id, metadata))
                })
                .collect();
            let units = units
                .into_iter()
                .zip(NAMES)
                .filter_map(|(draw, name)| Some(spec(name, draw?)))
                .collect();
            (machines, units)
        })
}

/// Every rule a settled cluster must obey, with the reasons the plan gave.
fn assert_valid(view: &ClusterView, plan: &Plan) {
    for unit in &view.units {
        let placed: BTreeSet<_> = unit.placed.iter().collect();
        let req = &unit.requirements;
        let wanted = unit.desired != DesiredState::Inactive;
        let runs = wanted && !unit.name.is_template();
        assert!(runs || placed.is_empty(), "{} placed", unit.name);
        assert!(
            req.global || placed.len() <= 1,
            "{} placed twice",
            unit.name
        );
        assert_eq!(
            plan.reasons.contains_key(&unit.name),
            wanted && placed.is_empty(),
            "reason for {}",
            unit.name
        );
        for id in placed {
            let machine = view.machines.iter().find(|m| m.id == *id);
            let machine = machine.unwrap_or_else(|| panic!("{} on a gone machine", unit.name));
            assert!(req.allows_machine(&machine.id, &machine.metadata));
            assert!(
                req.global || !machine.drained,
                "{} on a drained machine",
                unit.name
            );
            let neighbours = view
                .units
                .iter()
                .filter(|o| o.name != unit.name && o.placed.contains(id));
            for other in neighbours {
                let pair = ((&unit.name, &**req), (&other.name, &*other.requirements));
                assert!(
                    !conflict_between(pair.0, pair.1),
                    "{} with {}",
                    unit.name,
                    other.name
                );
                assert!(!other.requirements.replaces.contains(&unit.name));
            }
            for target in &req.machine_of {
                let with_target = view
                    .units
                    .iter()
                    .any(|o| o.name == *target && o.placed.contains(id));
                assert!(with_target, "{} without {target}", unit.name);
            }
        }
    }
}

proptest! {
    // Failures found here become cases in `cases.rs`, so nothing is written next to the crate.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn plans_are_deterministic_settle_and_obey_every_rule((machines, units) in cluster()) {
        let machines: Vec<(&str, &str)> =
            machines.iter().map(|(id, md)| (*id, md.as_str())).collect();
        let view = view(&machines, &units);
        let got = plan(&view);
        assert_stable(&view, &got);
        assert_valid(&apply(&view, &got), &got);
    }
}
