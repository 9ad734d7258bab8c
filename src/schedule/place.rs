//! The placement passes: keep what is still valid, then place global units, then pending units
//! on the least-loaded eligible machine, moving units that a `Replaces=` displaces.

use std::collections::VecDeque;

use super::hash::FxHashSet;
use super::index::{Index, Kind, MachineIx, UnitIx};
use super::occupancy::State;

/// The placements the plan ends with.
pub(super) fn run<'i, 'v>(ix: &'i Index<'v>) -> State<'i, 'v> {
    let mut state = State::new(ix);
    keep_valid(&mut state);
    // Within a pass placements only add to the state, and every unit comes after what it
    // depends on (globals first, targets before followers), so a unit that fails stays failed
    // for the rest of the pass, and a pass without displacements ends at a fixpoint: planning
    // again finds nothing to do. A displacement takes a placement back and may leave room for a
    // unit that failed before it, hence another pass; displacements per plan are bounded, so
    // this ends.
    loop {
        let displacements_left = state.displacements_left();
        for &u in &ix.order.order {
            if decided_first(ix, u) {
                settle(&mut state, u);
            }
        }
        // Lookalikes of a normal unit that found no machine find none either while the state
        // only grows, so a thousand hopeless instances cost one search.
        let mut hopeless = FxHashSet::default();
        for &u in &ix.order.order {
            if decided_first(ix, u) || !ix.runs(u) || ix.cycle(u).is_some() {
                continue;
            }
            let lookalike = ix.lookalike(u).filter(|l| l.0 == Kind::Normal);
            if lookalike.is_some_and(|l| hopeless.contains(&l)) {
                continue;
            }
            let before = state.displacements_left();
            settle(&mut state, u);
            if state.displacements_left() != before {
                hopeless.clear();
            } else if let Some(l) = lookalike
                && state.on(u).is_empty()
            {
                hopeless.insert(l);
            }
        }
        if state.displacements_left() == displacements_left {
            return state;
        }
    }
}

/// Global units are decided before pending normal units, so these avoid machines where they
/// conflict with one; a global unit with MachineOf targets waits for them in name order.
fn decided_first(ix: &Index, u: UnitIx) -> bool {
    let info = &ix.info[u];
    info.kind == Kind::Global
        && info.targets.is_empty()
        && !info.unknown_target
        && ix.runs(u)
        && ix.cycle(u).is_none()
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

/// Places `u` where it may go, then re-places whatever that displaced.
fn settle(state: &mut State, u: UnitIx) {
    let mut queue = VecDeque::from([u]);
    while let Some(w) = queue.pop_front() {
        for m in choose(state, w) {
            place_displacing(state, w, m, &mut queue);
        }
    }
}

/// Where `u` goes now: for a normal unit not yet placed, the least-loaded eligible machine
/// (ties by ID), or with requests the first by the strategy among those it fits on; for a
/// global unit, every eligible machine it is not on yet and fits on.
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
            let by_share = !ix.requests(u).is_zero();
            let best = if has_targets {
                least_loaded(state, u, state.target_holders(u), by_share)
            } else if ix.requirements(u).machine_id.is_some() {
                least_loaded(state, u, ix.id_candidates(u), by_share)
            } else if by_share {
                state.first_by_share(u)
            } else {
                state.by_load().find(|&m| state.can_place(u, m))
            };
            best.into_iter().collect()
        }
    }
}

/// The first of `machines` where `u` may go: the least loaded, or for a unit with requests
/// the first in the strategy's share order.
fn least_loaded(
    state: &State,
    u: UnitIx,
    machines: impl IntoIterator<Item = MachineIx>,
    by_share: bool,
) -> Option<MachineIx> {
    let candidates = machines.into_iter().filter(|&m| state.can_place(u, m));
    if by_share {
        candidates.min_by_key(|&m| state.share_order(m))
    } else {
        candidates.min_by_key(|&m| (state.load(m), m))
    }
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
