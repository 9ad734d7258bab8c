//! Why a unit that should run is placed nowhere, worked out from the final placements alone, so
//! that planning again over the result gives the same words.

use std::collections::BTreeSet;

use crate::machine::Metadata;
use crate::resources::{Cpu, Memory};
use crate::unit::{MachineIdPattern, MetadataCondition, Requirements, UnitName};

use super::hash::FxHashMap;
use super::index::{Index, Lookalike, MachineIx, UnitIx};
use super::occupancy::{Obstacle, State};

/// How many unit names a reason lists before `and N more`.
const LISTED: usize = 3;

pub(super) fn template(name: &UnitName) -> String {
    format!(
        "a template unit is never placed: start an instance such as {}@1.{}",
        name.prefix(),
        name.unit_type().suffix()
    )
}

/// Which machines a blocked unit was looking at, for the end of the sentence.
#[derive(Clone, Copy)]
enum Scope {
    Eligible,
    Targets,
}

/// Reasons for the units of one plan, computed once per group of lookalike units.
pub(super) struct Reasons<'s, 'i, 'v> {
    state: &'s State<'i, 'v>,
    known: FxHashMap<Lookalike<'i>, String>,
}

impl<'s, 'i, 'v> Reasons<'s, 'i, 'v> {
    pub(super) fn new(state: &'s State<'i, 'v>) -> Self {
        Self {
            state,
            known: FxHashMap::default(),
        }
    }

    /// Why `u`, which should run, is placed nowhere.
    pub(super) fn unplaced(&mut self, u: UnitIx) -> String {
        let Some(lookalike) = self.state.index().lookalike(u) else {
            return unplaced(self.state, u);
        };
        self.known
            .entry(lookalike)
            .or_insert_with(|| unplaced(self.state, u))
            .clone()
    }
}

fn unplaced(state: &State, u: UnitIx) -> String {
    let ix = state.index();
    if let Some(cycle) = ix.cycle(u) {
        let mut names: Vec<&str> = cycle.iter().map(|&c| ix.name(c).as_str()).collect();
        if let Some(&first) = names.first() {
            names.push(first);
        }
        return format!("MachineOf cycle: {}", names.join(" -> "));
    }
    if ix.machines.is_empty() {
        return "no machines in the cluster".to_owned();
    }
    let req = ix.requirements(u);
    let id_machines: Vec<MachineIx> = ix.id_candidates(u).collect();
    if let (Some(pattern), true) = (&req.machine_id, id_machines.is_empty()) {
        return format!("machine {} is not in the cluster", short(pattern));
    }
    let eligible: Vec<MachineIx> = id_machines
        .iter()
        .copied()
        .filter(|&m| ix.meets_constraints(u, m))
        .collect();
    if eligible.is_empty() {
        return missing_metadata(ix, req, &id_machines);
    }
    let allowed: Vec<MachineIx> = eligible
        .iter()
        .copied()
        .filter(|&m| ix.allows(u, m))
        .collect();
    if allowed.is_empty() {
        return drained(ix, &eligible);
    }
    if req.machine_of.is_empty() {
        return with_room(state, u, &allowed, Scope::Eligible);
    }
    let targets: BTreeSet<&UnitName> = req.machine_of.iter().collect();
    let waiting: Vec<&UnitName> = targets
        .iter()
        .copied()
        .filter(|t| ix.unit(t).is_none_or(|t| state.on(t).is_empty()))
        .collect();
    if !waiting.is_empty() {
        return format!(
            "waits for MachineOf {} {} to be placed",
            plural("target", waiting.len()),
            join(&waiting)
        );
    }
    let holders = state.target_holders(u);
    let names: Vec<&UnitName> = targets.into_iter().collect();
    let suitable: Vec<MachineIx> = holders
        .iter()
        .copied()
        .filter(|&m| ix.allows(u, m))
        .collect();
    match (holders.as_slice(), suitable.is_empty()) {
        ([], _) => format!(
            "MachineOf targets {} are on different machines",
            join(&names)
        ),
        ([m], true) => format!(
            "MachineOf {} {} {} on machine {}, which {}",
            plural("target", names.len()),
            join(&names),
            if names.len() == 1 { "is" } else { "are" },
            ix.machines[*m].id.short(),
            unmet_on(req, ix, u, *m)
        ),
        (_, true) => format!(
            "no machine holding MachineOf {} {} meets its MachineID and metadata",
            plural("target", names.len()),
            join(&names)
        ),
        (_, false) => with_room(state, u, &suitable, Scope::Targets),
    }
}

/// No machine allowed by `MachineID=` (all machines without one) meets the metadata. Names
/// the conditions no machine meets on its own; if each is met somewhere, all of them.
fn missing_metadata(ix: &Index, req: &Requirements, machines: &[MachineIx]) -> String {
    let met_somewhere = |c: &MetadataCondition| {
        machines
            .iter()
            .any(|&m| c.matches(&ix.machines[m].metadata))
    };
    let alone: Vec<&MetadataCondition> =
        req.metadata.iter().filter(|c| !met_somewhere(c)).collect();
    let subject = match &req.machine_id {
        Some(pattern) => format!("machine {} does not have", short(pattern)),
        None => "no machine has".to_owned(),
    };
    if alone.is_empty() {
        let all: Vec<&MetadataCondition> = req.metadata.iter().collect();
        format!("{subject} {}", join_with(&all, " and "))
    } else {
        format!("{subject} {}", join_with(&alone, " or "))
    }
}

/// Every machine a unit's MachineID and metadata allow is drained.
fn drained(ix: &Index, eligible: &[MachineIx]) -> String {
    let ids: Vec<&str> = eligible
        .iter()
        .take(LISTED)
        .map(|&m| ix.machines[m].id.short())
        .collect();
    match eligible.len() {
        1 => format!("the only machine it may run on, {}, is drained", ids[0]),
        n if n > LISTED => format!(
            "every machine it may run on is drained: {} and {} more",
            ids.join(", "),
            n - LISTED
        ),
        _ => format!("every machine it may run on is drained: {}", ids.join(", ")),
    }
}

/// What machine `m` lacks for `u`, as the end of "which ...".
fn unmet_on(req: &Requirements, ix: &Index, u: UnitIx, m: MachineIx) -> String {
    let machine = ix.machines[m];
    match &req.machine_id {
        Some(pattern) if !pattern.matches(&machine.id) => {
            format!("is not machine {}", short(pattern))
        }
        _ if ix.meets_constraints(u, m) && ix.drained_for(u, m) => "is drained".to_owned(),
        _ => {
            let failing = failing(req, &machine.metadata);
            format!("does not have {}", join_with(&failing, " and "))
        }
    }
}

fn failing<'r>(req: &'r Requirements, metadata: &Metadata) -> Vec<&'r MetadataCondition> {
    req.metadata
        .iter()
        .filter(|c| !c.matches(metadata))
        .collect()
}

/// `u` may go on each of `machines` by its own constraints: the shortfall when it fits on none
/// of them, else what is in the way on those it fits on.
fn with_room(state: &State, u: UnitIx, machines: &[MachineIx], scope: Scope) -> String {
    let roomy: Vec<MachineIx> = machines
        .iter()
        .copied()
        .filter(|&m| state.fits(u, m))
        .collect();
    if roomy.is_empty() {
        return shortfall(state, u, machines);
    }
    let reason = blocked(state, u, &roomy, scope);
    match machines.len() - roomy.len() {
        0 => reason,
        1 => format!("{reason} it has room on; too little free on the other"),
        n => format!("{reason} it has room on; too little free on the {n} others"),
    }
}

/// `u` fits on none of `machines`: per dimension it requests, how much it needs and the most
/// free on one of them (the first by ID among equals).
fn shortfall(state: &State, u: UnitIx, machines: &[MachineIx]) -> String {
    let ix = state.index();
    let requests = ix.requests(u);
    let most_free = |get: fn(crate::resources::Resources) -> u64| {
        machines
            .iter()
            .map(|&m| (get(state.free(m)), m))
            .min_by_key(|&(free, m)| (std::cmp::Reverse(free), m))
            .expect("a shortfall is over at least one machine")
    };
    let mut parts = Vec::new();
    if requests.memory > 0 {
        let (free, m) = most_free(|r| r.memory);
        if free < requests.memory {
            parts.push(format!(
                "needs {} of memory, most free is {} on {}",
                Memory(requests.memory),
                Memory(free),
                ix.machines[m].id.short()
            ));
        }
    }
    if requests.millicpus > 0 {
        let (free, m) = most_free(|r| r.millicpus);
        if free < requests.millicpus {
            parts.push(format!(
                "needs {}, most free is {} on {}",
                Cpu(requests.millicpus),
                Cpu(free),
                ix.machines[m].id.short()
            ));
        }
    }
    if parts.is_empty() {
        return format!("needs {requests}, and no machine it may run on has both free");
    }
    parts.join("; ")
}

/// `u` may go on each of `machines` by its own constraints, but something there is in the way.
fn blocked(state: &State, u: UnitIx, machines: &[MachineIx], scope: Scope) -> String {
    let ix = state.index();
    let info = &ix.info[u];
    let mut replacers = BTreeSet::new();
    let mut conflicting = BTreeSet::new();
    let mut cycle = BTreeSet::new();
    let mut wider_cycle = BTreeSet::new();
    let mut limit = BTreeSet::new();
    for &m in machines {
        replacers.extend(
            info.replaced_by
                .iter()
                .copied()
                .filter(|&r| state.is_on(r, m)),
        );
        let displacement = state.displacement(u, m);
        for obstacle in &displacement.obstacles {
            match *obstacle {
                Obstacle::Cycle(v) if ix.in_replace_cycle(u, v) => cycle.insert(v),
                Obstacle::Cycle(v) => wider_cycle.insert(v),
                Obstacle::Limit(v) => limit.insert(v),
            };
        }
        conflicting.extend(state.units_on(m).iter().copied().filter(|&v| {
            !displacement.units.contains(&v)
                && info.replaced_by.binary_search(&v).is_err()
                && ix.conflicts.between(u, v)
        }));
    }
    let parts: Vec<String> = [
        ("replaced by", replacers),
        ("conflicts with", conflicting),
        ("in a Replaces cycle with", cycle),
        ("in a cycle of Replaces and MachineOf with", wider_cycle),
        ("would displace, past this plan's limit of moves,", limit),
    ]
    .into_iter()
    .filter(|(_, units)| !units.is_empty())
    .map(|(what, units)| format!("{what} {}", listed(ix, &units)))
    .collect();
    if parts.is_empty() {
        // The passes place a unit whenever nothing above holds, so this is never expected;
        // it keeps the function total.
        return "no eligible machine accepted it".to_owned();
    }
    let place = match scope {
        Scope::Eligible => "on every eligible machine",
        Scope::Targets => "on every machine holding its MachineOf targets",
    };
    format!("{} {place}", parts.join("; "))
}

/// Unit names in name order, at most `LISTED` of them, then `and N more`.
fn listed(ix: &Index, units: &BTreeSet<UnitIx>) -> String {
    let names: Vec<&str> = units
        .iter()
        .take(LISTED)
        .map(|&v| ix.name(v).as_str())
        .collect();
    match units.len().checked_sub(LISTED) {
        Some(more) if more > 0 => format!("{} and {more} more", names.join(", ")),
        _ => names.join(", "),
    }
}

fn short(pattern: &MachineIdPattern) -> &str {
    match pattern {
        MachineIdPattern::Full(id) => id.short(),
        MachineIdPattern::Prefix(prefix) => prefix,
    }
}

fn plural(word: &str, n: usize) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

fn join(names: &[&UnitName]) -> String {
    join_with(names, ", ")
}

fn join_with<T: std::fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}
