//! The placement passes: keep what is still valid, then place global units, then pending units
//! on the least-loaded eligible machine, moving units that a `Replaces=` displaces.

use std::collections::VecDeque;

use super::index::{Index, Kind, MachineIx, UnitIx};
use super::state::State;

/// The placements the plan ends with.
pub(super) fn run<'i, 'v>(ix: &'i Index<'v>) -> State<'i, 'v> {
    let mut state = State::new(ix);
    keep_valid(&mut state);
    // Until nothing more can be placed: a unit displaced late in a pass may have left room for
    // one that failed earlier, and the next plan must find nothing left to do. Every pass but
    // the last places something, and only a displacement (of which there are a bounded number)
    // ever takes a placement back, so this ends.
    loop {
        let mut progress = false;
        for kind in [Kind::Global, Kind::Normal] {
            for &u in &ix.order.order {
                let info = &ix.info[u];
                if info.kind == kind && ix.runs(u) && ix.cycle(u).is_none() {
                    progress |= settle(&mut state, u);
                }
            }
        }
        if !progress {
            return state;
        }
    }
}

/// Current placements that still hold: the machine is there and allows the unit; no unit
/// there replaces it; of two conflicting units the normal one stays over a global one, then the
/// one whose name sorts first; a follower stays only with all its targets.
fn keep_valid(state: &mut State) {
    let ix = state.index();
    let mut candidates: Vec<Vec<MachineIx>> = vec![Vec::new(); ix.units.len()];
    for (u, unit) in ix.units.iter().enumerate() {
        if !ix.runs(u) || ix.cycle(u).is_some() {
            continue;
        }
        let mut machines: Vec<MachineIx> = unit
            .placed
            .iter()
            .filter_map(|id| ix.machine(id))
            .filter(|&m| ix.allows(u, m))
            .collect();
        machines.sort_unstable();
        machines.dedup();
        if ix.info[u].kind == Kind::Normal {
            machines.truncate(1);
        }
        candidates[u] = machines;
    }
    // Followers first lose the machines their targets are not on, so a follower that must move
    // anyway does not push a conflicting neighbour away.
    for &u in &ix.order.order {
        let info = &ix.info[u];
        if info.targets.is_empty() && !info.unknown_target {
            continue;
        }
        let kept: Vec<MachineIx> = candidates[u]
            .iter()
            .copied()
            .filter(|m| {
                !info.unknown_target
                    && info
                        .targets
                        .iter()
                        .all(|&t| candidates[t].binary_search(m).is_ok())
            })
            .collect();
        candidates[u] = kept;
    }
    let mut by_machine: Vec<(MachineIx, Kind, UnitIx)> = candidates
        .iter()
        .enumerate()
        .flat_map(|(u, ms)| ms.iter().map(move |&m| (m, ix.info[u].kind, u)))
        .collect();
    by_machine.sort_unstable();
    for (m, _, u) in by_machine {
        let replaced = ix.info[u]
            .replaced_by
            .iter()
            .any(|&r| candidates[r].binary_search(&m).is_ok());
        if !replaced && !state.conflicts_on(u, m) {
            state.place(u, m);
        }
    }
    // A target that lost its machine to a conflict takes its followers along.
    for &u in &ix.order.order {
        if ix.info[u].targets.is_empty() {
            continue;
        }
        for m in state.on(u).to_vec() {
            if !ix.info[u].targets.iter().all(|&t| state.is_on(t, m)) {
                state.remove(u, m);
            }
        }
    }
}

/// Places `u` where it may go, then re-places whatever that displaced. Whether anything was
/// placed.
fn settle(state: &mut State, u: UnitIx) -> bool {
    let mut queue = VecDeque::from([u]);
    let mut progress = false;
    while let Some(w) = queue.pop_front() {
        let machines = choose(state, w);
        for &m in &machines {
            place_displacing(state, w, m, &mut queue);
        }
        progress |= !machines.is_empty();
    }
    progress
}

/// Where `u` goes now: for a normal unit not yet placed, the least-loaded eligible machine
/// (ties by ID); for a global unit, every eligible machine it is not on yet.
fn choose(state: &State, u: UnitIx) -> Vec<MachineIx> {
    let ix = state.index();
    let info = &ix.info[u];
    if info.unknown_target {
        return Vec::new();
    }
    let has_targets = !info.targets.is_empty();
    match info.kind {
        Kind::Global => {
            let machines: Vec<MachineIx> = if has_targets {
                state.target_holders(u)
            } else {
                ix.id_candidates(u).collect()
            };
            machines
                .into_iter()
                .filter(|&m| state.can_place(u, m))
                .collect()
        }
        Kind::Normal if !state.on(u).is_empty() => Vec::new(),
        Kind::Normal => {
            let best = if has_targets {
                least_loaded(state, u, state.target_holders(u))
            } else if ix.requirements(u).machine_id.is_some() {
                least_loaded(state, u, ix.id_candidates(u))
            } else {
                state.by_load().find(|&m| state.can_place(u, m))
            };
            best.into_iter().collect()
        }
    }
}

fn least_loaded(
    state: &State,
    u: UnitIx,
    machines: impl IntoIterator<Item = MachineIx>,
) -> Option<MachineIx> {
    machines
        .into_iter()
        .filter(|&m| state.can_place(u, m))
        .min_by_key(|&m| (state.load(m), m))
}

/// Puts `u` on `m`, first taking off `m` the units `u` replaces (with their followers there),
/// and queues those to be placed again, targets first.
fn place_displacing(state: &mut State, u: UnitIx, m: MachineIx, queue: &mut VecDeque<UnitIx>) {
    let ix = state.index();
    let mut moved = state.displacement(u, m).units;
    for &v in &moved {
        if ix.info[u].replaces.binary_search(&v).is_ok() {
            state.spend_displacement();
        }
        state.remove(v, m);
    }
    moved.sort_unstable_by_key(|&w| ix.order.rank[w]);
    queue.extend(moved);
    state.place(u, m);
}
