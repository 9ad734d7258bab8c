//! Properties over generated small clusters: any input order gives the same plan, the applied
//! plan leaves nothing to do, and the placements it leads to obey every rule (checked here with
//! `Requirements`' own methods, not the scheduler's indexes).

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::unit::{DesiredState, conflict_between};

use super::{Spec, apply, assert_stable, sized_view, unit};
use crate::resources::Resources;
use crate::schedule::Strategy::{Pack, Spread};
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

/// Machine capacities, and unit requests: small enough that machines fill up.
const CAPACITIES: [&str; 4] = ["", "memory=1G,cpu=1", "memory=2G,cpu=2", "memory=512M"];
const REQUESTS: [&str; 5] = [
    "",
    "memory=512M",
    "memory=1G",
    "cpu=0.5",
    "memory=256M,cpu=1",
];

/// (desired, metadata, conflicts, MachineOf, global, Replaces, placement bits, requests)
type UnitDraw = (u8, u8, u8, u8, u8, u8, u8, u8);

fn spec(name: &'static str, draw: UnitDraw) -> Spec {
    let (desired, metadata, conflicts, machine_of, global, replaces, placed, requests) = draw;
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
    s = s.requests(REQUESTS[usize::from(requests)]);
    for (bit, machine) in MACHINES.iter().enumerate() {
        if placed & (1 << bit) != 0 {
            s = s.on(machine);
        }
    }
    s
}

type Machines = Vec<(&'static str, String, &'static str)>;

fn cluster() -> impl Strategy<Value = (Machines, Vec<Spec>, bool)> {
    let machine = proptest::option::of((0..3usize, 0..3usize, 0..4u8, 0..4usize));
    let draw = (
        0..3u8,
        0..6u8,
        0..5u8,
        0..20u8,
        0..8u8,
        0..24u8,
        0..32u8,
        0..5u8,
    );
    (
        proptest::collection::vec(machine, 4),
        proptest::collection::vec(proptest::option::of(draw), NAMES.len()),
        any::<bool>(),
    )
        .prop_map(|(machines, units, pack)| {
            let machines = machines
                .into_iter()
                .zip(MACHINES.iter().zip(DRAINED))
                .filter_map(|(m, (id, drained_id))| {
                    let (region, disk, drain, capacity) = m?;
                    // One machine in four is drained.
                    let id = if drain == 0 { drained_id } else { *id };
                    let metadata = [REGIONS[region], DISKS[disk]]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(",");
                    Some((id, metadata, CAPACITIES[capacity]))
                })
                .collect();
            let units = units
                .into_iter()
                .zip(NAMES)
                .filter_map(|(draw, name)| Some(spec(name, draw?)))
                .collect();
            (machines, units, pack)
        })
}

/// No machine is overcommitted by the plan: in each dimension that a unit the plan added to a
/// machine requests, the requests of all units there fit its capacity. (Placements the plan
/// kept may overcommit it: generated placements ignore capacity, and placed units stay.)
fn assert_not_overcommitted(view: &ClusterView, plan: &Plan) {
    for machine in &view.machines {
        let on: Vec<_> = view
            .units
            .iter()
            .filter(|u| u.placed.contains(&machine.id))
            .collect();
        let total = on.iter().fold(Resources::ZERO, |sum, u| {
            sum.saturating_add(u.requirements.requests)
        });
        for (name, m) in &plan.place {
            if *m != machine.id {
                continue;
            }
            let unit = on.iter().find(|u| u.name == *name).expect("placed unit");
            let asked = unit.requirements.requests;
            assert!(
                asked.memory == 0 || total.memory <= machine.capacity.memory,
                "{name} overcommits memory on {}: {total:?} of {:?}",
                machine.id.short(),
                machine.capacity
            );
            assert!(
                asked.millicpus == 0 || total.millicpus <= machine.capacity.millicpus,
                "{name} overcommits CPU on {}: {total:?} of {:?}",
                machine.id.short(),
                machine.capacity
            );
        }
    }
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
    fn plans_are_deterministic_settle_and_obey_every_rule((machines, units, pack) in cluster()) {
        let machines: Vec<(&str, &str, &str)> =
            machines.iter().map(|(id, md, c)| (*id, md.as_str(), *c)).collect();
        let strategy = if pack { Pack } else { Spread };
        let view = sized_view(strategy, &machines, &units);
        let got = plan(&view);
        assert_stable(&view, &got);
        let applied = apply(&view, &got);
        assert_valid(&applied, &got);
        assert_not_overcommitted(&applied, &got);
    }

    /// From nothing placed, no machine is ever over its capacity after a plan.
    #[test]
    fn plans_from_scratch_never_overcommit((machines, units, pack) in cluster()) {
        let machines: Vec<(&str, &str, &str)> =
            machines.iter().map(|(id, md, c)| (*id, md.as_str(), *c)).collect();
        let strategy = if pack { Pack } else { Spread };
        let units: Vec<Spec> = units.into_iter().map(|mut u| { u.placed.clear(); u }).collect();
        let view = sized_view(strategy, &machines, &units);
        let applied = apply(&view, &plan(&view));
        for machine in &applied.machines {
            let total = applied
                .units
                .iter()
                .filter(|u| u.placed.contains(&machine.id))
                .fold(Resources::ZERO, |sum, u| sum.saturating_add(u.requirements.requests));
            prop_assert!(
                total.saturating_sub(machine.capacity).is_zero(),
                "{} holds {total:?} of {:?}", machine.id.short(), machine.capacity
            );
        }
    }
}
