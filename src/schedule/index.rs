//! The read-only, indexed form of a `ClusterView`: machines sorted by ID, units sorted by name,
//! and everything about them that does not change while a plan is made.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use crate::machine::MachineId;
use crate::resources::Resources;
use crate::unit::{DesiredState, MachineIdPattern, MetadataCondition, Requirements, UnitName};

use super::conflicts::{ConflictIndex, PatternIx};
use super::hash::FxHashMap;
use super::order::{MachineOfOrder, components, machine_of_order};
use super::{ClusterView, Machine, Strategy, Unit};

/// Position of a machine in `Index::machines` (so machine ID order).
pub(super) type MachineIx = usize;
/// Position of a unit in `Index::units` (so name order).
pub(super) type UnitIx = usize;

/// What a plan does with a unit, from its name and desired state alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Desired `inactive`: stored only, placed nowhere.
    Stored,
    /// Should run but is a template, which systemd cannot start.
    Template,
    /// Should run: placed if the rules allow it.
    Run,
}

/// Global units go to every machine; in one machine's tie-breaks, normal units come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Kind {
    Normal,
    Global,
}

/// See `Index::lookalike`.
pub(super) type Lookalike<'i> = (Kind, usize, &'i [PatternIx], &'i [PatternIx], Resources);

pub(super) struct UnitInfo {
    pub(super) role: Role,
    pub(super) kind: Kind,
    /// Index into `Index::classes`: units with equal MachineID and metadata share one.
    class: usize,
    /// MachineOf targets present in the view, sorted and deduplicated.
    pub(super) targets: Vec<UnitIx>,
    /// A MachineOf target is not in the view at all, so the unit can never be placed.
    pub(super) unknown_target: bool,
    /// Units whose MachineOf names this one.
    pub(super) followers: Vec<UnitIx>,
    /// Units this one `Replaces` (itself aside), sorted.
    pub(super) replaces: Vec<UnitIx>,
    /// Units that `Replaces` this one, sorted.
    pub(super) replaced_by: Vec<UnitIx>,
}

pub(super) struct Index<'v> {
    pub(super) machines: Vec<&'v Machine>,
    pub(super) units: Vec<&'v Unit>,
    pub(super) info: Vec<UnitInfo>,
    pub(super) conflicts: ConflictIndex,
    pub(super) order: MachineOfOrder,
    /// Per class, a bit per machine: does `allows_machine` hold.
    classes: Vec<Vec<u64>>,
    /// Strongly connected components of the Replaces relation.
    replace_component: Vec<usize>,
    /// Strongly connected components of "displacing this unit moves that one": Replaces, and
    /// from each MachineOf target to its followers.
    displace_component: Vec<usize>,
    /// Machine IDs to positions: current placements name machines by ID, thousands of times.
    machine_ix: FxHashMap<&'v str, MachineIx>,
    pub(super) strategy: Strategy,
    /// Whether any unit requests resources: without, machines need no share order.
    pub(super) any_requests: bool,
    /// Per unit its requests, per machine its capacity and drain mark: copied out of the view
    /// into dense arrays, since placement reads them for many machines per unit.
    requests: Vec<Resources>,
    capacities: Vec<Resources>,
    drained: Vec<bool>,
}

impl<'v> Index<'v> {
    pub(super) fn new(view: &'v ClusterView) -> Self {
        let mut machines: Vec<&Machine> = view.machines.iter().collect();
        // Metadata breaks ties so that duplicate IDs resolve the same way in any input order.
        machines.sort_by(|a, b| {
            (&a.id, a.metadata.as_map(), a.drained, a.capacity).cmp(&(
                &b.id,
                b.metadata.as_map(),
                b.drained,
                b.capacity,
            ))
        });
        machines.dedup_by(|b, a| a.id == b.id);
        let mut units: Vec<(usize, &Unit)> = view.units.iter().enumerate().collect();
        // Names are keys; if one repeats anyway, the first in input order wins.
        units.sort_unstable_by(|(i, a), (j, b)| a.name.cmp(&b.name).then(i.cmp(j)));
        units.dedup_by(|(_, b), (_, a)| a.name == b.name);
        let units: Vec<&Unit> = units.into_iter().map(|(_, u)| u).collect();

        let (class_of, classes) = classes(&machines, &units);
        let lookup = |name: &UnitName| units.binary_search_by(|u| u.name.cmp(name)).ok();
        let mut info: Vec<UnitInfo> = units
            .iter()
            .zip(class_of)
            .enumerate()
            .map(|(u, (unit, class))| {
                let req = &unit.requirements;
                let targets = sorted(req.machine_of.iter().filter_map(lookup));
                UnitInfo {
                    role: role(unit),
                    kind: if req.global {
                        Kind::Global
                    } else {
                        Kind::Normal
                    },
                    class,
                    unknown_target: targets.len() < distinct(&req.machine_of),
                    targets,
                    followers: Vec::new(),
                    replaces: sorted(req.replaces.iter().filter_map(lookup).filter(|&r| r != u)),
                    replaced_by: Vec::new(),
                }
            })
            .collect();
        for u in 0..info.len() {
            for t in info[u].targets.clone() {
                info[t].followers.push(u);
            }
            for r in info[u].replaces.clone() {
                info[r].replaced_by.push(u);
            }
        }
        let targets: Vec<Vec<UnitIx>> = info.iter().map(|i| i.targets.clone()).collect();
        let replaces: Vec<Vec<UnitIx>> = info.iter().map(|i| i.replaces.clone()).collect();
        let moves: Vec<Vec<UnitIx>> = info
            .iter()
            .map(|i| i.replaces.iter().chain(&i.followers).copied().collect())
            .collect();
        let requests: Vec<Resources> = units.iter().map(|u| u.requirements.requests).collect();
        Self {
            strategy: view.strategy,
            any_requests: requests.iter().any(|r| !r.is_zero()),
            requests,
            capacities: machines.iter().map(|m| m.capacity).collect(),
            drained: machines.iter().map(|m| m.drained).collect(),
            replace_component: components(&replaces),
            displace_component: components(&moves),
            machine_ix: machines
                .iter()
                .enumerate()
                .map(|(m, machine)| (machine.id.as_str(), m))
                .collect(),
            conflicts: ConflictIndex::new(&units),
            order: machine_of_order(&targets),
            machines,
            units,
            info,
            classes,
        }
    }

    /// Whether `u` may be on `m`: its MachineID and metadata allow it, and `m` is not drained
    /// unless `u` is global.
    pub(super) fn allows(&self, u: UnitIx, m: MachineIx) -> bool {
        self.meets_constraints(u, m) && !self.drained_for(u, m)
    }

    /// `allows_machine`, from the precomputed bits.
    pub(super) fn meets_constraints(&self, u: UnitIx, m: MachineIx) -> bool {
        self.classes[self.info[u].class][m / 64] & (1 << (m % 64)) != 0
    }

    /// `m` is drained and `u` is a normal unit, which a drain keeps away.
    pub(super) fn drained_for(&self, u: UnitIx, m: MachineIx) -> bool {
        self.drained[m] && self.info[u].kind == Kind::Normal
    }

    pub(super) fn name(&self, u: UnitIx) -> &'v UnitName {
        &self.units[u].name
    }

    pub(super) fn requirements(&self, u: UnitIx) -> &'v Requirements {
        &self.units[u].requirements
    }

    pub(super) fn requests(&self, u: UnitIx) -> Resources {
        self.requests[u]
    }

    pub(super) fn capacity(&self, m: MachineIx) -> Resources {
        self.capacities[m]
    }

    pub(super) fn unit(&self, name: &UnitName) -> Option<UnitIx> {
        self.units.binary_search_by(|u| u.name.cmp(name)).ok()
    }

    pub(super) fn machine(&self, id: &MachineId) -> Option<MachineIx> {
        self.machine_ix.get(id.as_str()).copied()
    }

    /// The machines a `MachineID=` pattern names: a contiguous run, since machines are sorted.
    pub(super) fn machines_matching(&self, pattern: &MachineIdPattern) -> Range<MachineIx> {
        let prefix = pattern.to_string();
        let start = self
            .machines
            .partition_point(|m| m.id.as_str() < prefix.as_str());
        let len = self.machines[start..]
            .iter()
            .take_while(|m| pattern.matches(&m.id))
            .count();
        start..start + len
    }

    /// The machines a unit's `MachineID=` leaves open: all of them without one.
    pub(super) fn id_candidates(&self, u: UnitIx) -> Range<MachineIx> {
        match &self.requirements(u).machine_id {
            Some(pattern) => self.machines_matching(pattern),
            None => 0..self.machines.len(),
        }
    }

    /// Whether `a` and `b` replace each other, directly or through other units.
    pub(super) fn in_replace_cycle(&self, a: UnitIx, b: UnitIx) -> bool {
        self.replace_component[a] == self.replace_component[b]
    }

    /// Whether displacing `b` from `a` could, through Replaces and followers moving with their
    /// targets, come back to displace `a`: then neither displaces the other, or placements
    /// would go round for ever (rock, paper, scissors), and no plan would be the last.
    pub(super) fn in_displacement_cycle(&self, a: UnitIx, b: UnitIx) -> bool {
        self.displace_component[a] == self.displace_component[b]
    }

    /// For a unit with no MachineOf and no Replaces either way, what decides where it may go:
    /// its kind, its MachineID and metadata, its conflicts. Units with the same key fare the
    /// same on the same state, which lets many hopeless units share one search and one reason.
    pub(super) fn lookalike(&self, u: UnitIx) -> Option<Lookalike<'_>> {
        let info = &self.info[u];
        let plain = info.targets.is_empty()
            && !info.unknown_target
            && info.replaces.is_empty()
            && info.replaced_by.is_empty()
            && self.order.cycle_of[u].is_none();
        plain.then(|| {
            (
                info.kind,
                info.class,
                self.conflicts.owns(u),
                self.conflicts.matched_by(u),
                self.requests(u),
            )
        })
    }

    pub(super) fn runs(&self, u: UnitIx) -> bool {
        self.info[u].role == Role::Run
    }

    pub(super) fn cycle(&self, u: UnitIx) -> Option<&[UnitIx]> {
        let id = self.order.cycle_of[u]?;
        Some(&self.order.cycles[id])
    }
}

fn role(unit: &Unit) -> Role {
    match unit.desired {
        DesiredState::Inactive => Role::Stored,
        DesiredState::Loaded | DesiredState::Launched if unit.name.is_template() => Role::Template,
        DesiredState::Loaded | DesiredState::Launched => Role::Run,
    }
}

fn sorted(items: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut v: Vec<usize> = items.collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn distinct(names: &[UnitName]) -> usize {
    let mut names: Vec<&UnitName> = names.iter().collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// Groups units by their MachineID and metadata conditions and evaluates `allows_machine` once
/// per group and machine: thousands of units usually share a handful of constraint sets.
fn classes(machines: &[&Machine], units: &[&Unit]) -> (Vec<usize>, Vec<Vec<u64>>) {
    let words = machines.len().div_ceil(64);
    let mut everywhere = vec![u64::MAX; words];
    if let Some(last) = everywhere.last_mut()
        && !machines.len().is_multiple_of(64)
    {
        *last = (1 << (machines.len() % 64)) - 1;
    }
    let mut classes = vec![everywhere];
    // By hash of the constraints, the classes (with a unit that has them) sharing that hash.
    let mut by_hash: HashMap<u64, Vec<(usize, &Requirements)>> = HashMap::new();
    let class_of = units
        .iter()
        .map(|unit| {
            let req: &Requirements = &unit.requirements;
            if req.machine_id.is_none() && req.metadata.is_empty() {
                return 0;
            }
            let same = by_hash.entry(constraint_hash(req)).or_default();
            let found = same.iter().find(|(_, other)| {
                other.machine_id == req.machine_id && other.metadata == req.metadata
            });
            if let Some(&(class, _)) = found {
                return class;
            }
            let mut bits = vec![0u64; words];
            for (m, machine) in machines.iter().enumerate() {
                if req.allows_machine(&machine.id, &machine.metadata) {
                    bits[m / 64] |= 1 << (m % 64);
                }
            }
            classes.push(bits);
            same.push((classes.len() - 1, req));
            classes.len() - 1
        })
        .collect();
    (class_of, classes)
}

/// A hash of MachineID and the metadata conditions (the shared types do not derive `Hash`).
fn constraint_hash(req: &Requirements) -> u64 {
    let mut h = DefaultHasher::new();
    match &req.machine_id {
        Some(MachineIdPattern::Full(id)) => id.as_str().hash(&mut h),
        Some(MachineIdPattern::Prefix(prefix)) => prefix.hash(&mut h),
        None => 0u8.hash(&mut h),
    }
    for condition in &req.metadata {
        match condition {
            MetadataCondition::OneOf { key, values } => (0u8, key, values).hash(&mut h),
            MetadataCondition::Compare { key, op, value } => {
                (1u8, key, op.as_str(), value).hash(&mut h)
            }
        }
    }
    h.finish()
}
