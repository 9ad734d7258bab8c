//! The placements being built: which units are on which machine, machines ordered by load, and
//! per-machine conflict counters so that "may this unit go there" costs a few lookups.

use std::collections::BTreeSet;

use super::Strategy;
use super::conflicts::PatternIx;
use super::fit::{Buckets, Key};
use super::hash::FxHashMap;
use super::index::{Index, MachineIx, UnitIx};
use crate::resources::Resources;

/// On one machine, for one `Conflicts=` pattern: how many placed units match it and how many
/// carry it.
#[derive(Default, Clone, Copy)]
struct Counts {
    matched: u32,
    owned: u32,
}

/// The units a placement would push off its machine: those the placed unit replaces there, then
/// their followers there.
pub(super) struct Displacement {
    pub(super) units: Vec<UnitIx>,
    pub(super) obstacles: Vec<Obstacle>,
}

/// Why a unit may not push a unit it replaces off a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Obstacle {
    /// Displacing the replaced unit would come back to displace this one.
    Cycle(UnitIx),
    /// This plan has displaced as many units as it may.
    Limit(UnitIx),
}

#[derive(Clone, Copy)]
enum Change {
    Add,
    Remove,
}

/// Empty counters are dropped so the map only holds patterns present on a machine.
fn bump(
    counts: &mut FxHashMap<(MachineIx, PatternIx), Counts>,
    key: (MachineIx, PatternIx),
    change: Change,
    field: fn(&mut Counts) -> &mut u32,
) {
    let c = counts.entry(key).or_default();
    match change {
        Change::Add => *field(c) += 1,
        Change::Remove => *field(c) -= 1,
    }
    if c.owned == 0 && c.matched == 0 {
        counts.remove(&key);
    }
}

pub(super) struct State<'i, 'v> {
    ix: &'i Index<'v>,
    /// Per unit, sorted: the machines it is on.
    on: Vec<Vec<MachineIx>>,
    /// Per machine: the units on it, in name order.
    units_on: Vec<BTreeSet<UnitIx>>,
    /// (load, machine): the first entry is the least-loaded machine, ties broken by ID.
    by_load: BTreeSet<(usize, MachineIx)>,
    /// Per machine: the requests of the units on it, and its capacity minus those (nothing
    /// where overcommitted).
    used: Vec<Resources>,
    free: Vec<Resources>,
    /// Machines by (strategy's share key, load, machine), first the machine a unit with
    /// requests tries first; kept only when some unit has requests.
    by_share: ShareOrder,
    counts: FxHashMap<(MachineIx, PatternIx), Counts>,
    /// How many more units a `Replaces=` may displace in this plan: a safety net, so that the
    /// passes end whatever the input; displacement cycles are already kept from displacing.
    displacements_left: usize,
}

impl<'i, 'v> State<'i, 'v> {
    pub(super) fn new(ix: &'i Index<'v>) -> Self {
        let mut by_share = match ix.strategy {
            Strategy::Spread => ShareOrder::Sorted(BTreeSet::new()),
            Strategy::Pack => ShareOrder::Buckets(Buckets::new(ix.machines.len())),
        };
        if ix.any_requests {
            for m in 0..ix.machines.len() {
                let key = (share_key(ix, m, Resources::ZERO), 0, m);
                by_share.set(None, key, ix.capacity(m));
            }
        }
        Self {
            used: vec![Resources::ZERO; ix.machines.len()],
            free: (0..ix.machines.len()).map(|m| ix.capacity(m)).collect(),
            by_share,
            ix,
            on: vec![Vec::new(); ix.units.len()],
            units_on: vec![BTreeSet::new(); ix.machines.len()],
            by_load: (0..ix.machines.len()).map(|m| (0, m)).collect(),
            counts: FxHashMap::default(),
            // Every unit displaced once by each of its replacers, and as much again: well past
            // anything a cluster without a displacement cycle (which never displaces) needs.
            displacements_left: 2 * ix.info.iter().map(|i| 1 + i.replaces.len()).sum::<usize>(),
        }
    }

    pub(super) fn index(&self) -> &'i Index<'v> {
        self.ix
    }

    pub(super) fn on(&self, u: UnitIx) -> &[MachineIx] {
        &self.on[u]
    }

    pub(super) fn is_on(&self, u: UnitIx, m: MachineIx) -> bool {
        self.on[u].binary_search(&m).is_ok()
    }

    pub(super) fn units_on(&self, m: MachineIx) -> &BTreeSet<UnitIx> {
        &self.units_on[m]
    }

    pub(super) fn load(&self, m: MachineIx) -> usize {
        self.units_on[m].len()
    }

    /// Machines from least to most loaded, ties by ID.
    pub(super) fn by_load(&self) -> impl Iterator<Item = MachineIx> + '_ {
        self.by_load.iter().map(|&(_, m)| m)
    }

    pub(super) fn displacements_left(&self) -> usize {
        self.displacements_left
    }

    pub(super) fn spend_displacement(&mut self) {
        self.displacements_left = self.displacements_left.saturating_sub(1);
    }

    pub(super) fn place(&mut self, u: UnitIx, m: MachineIx) {
        let Err(at) = self.on[u].binary_search(&m) else {
            return;
        };
        let old = self.share_entry(m);
        self.on[u].insert(at, m);
        self.units_on[m].insert(u);
        self.used[m] = self.used[m].saturating_add(self.ix.requests(u));
        self.free[m] = self.ix.capacity(m).saturating_sub(self.used[m]);
        self.reload(m, self.load(m) - 1, old);
        self.count(u, m, Change::Add);
    }

    pub(super) fn remove(&mut self, u: UnitIx, m: MachineIx) {
        let Ok(at) = self.on[u].binary_search(&m) else {
            return;
        };
        let old = self.share_entry(m);
        self.on[u].remove(at);
        self.units_on[m].remove(&u);
        self.used[m] = self.used[m].saturating_sub(self.ix.requests(u));
        self.free[m] = self.ix.capacity(m).saturating_sub(self.used[m]);
        self.reload(m, self.load(m) + 1, old);
        self.count(u, m, Change::Remove);
    }

    fn reload(&mut self, m: MachineIx, old: usize, old_share: Key) {
        self.by_load.remove(&(old, m));
        self.by_load.insert((self.load(m), m));
        if self.ix.any_requests {
            let key = self.share_entry(m);
            self.by_share.set(Some(old_share), key, self.free[m]);
        }
    }

    fn share_entry(&self, m: MachineIx) -> (u64, usize, MachineIx) {
        (share_key(self.ix, m, self.used[m]), self.load(m), m)
    }

    /// The first machine, in the order a unit with requests tries them (see `Strategy`, then
    /// by load and ID), where `u` may be placed now. None when no unit has requests.
    pub(super) fn first_by_share(&self, u: UnitIx) -> Option<MachineIx> {
        match &self.by_share {
            ShareOrder::Sorted(set) => set
                .iter()
                .map(|&(_, _, m)| m)
                .find(|&m| self.can_place(u, m)),
            ShareOrder::Buckets(buckets) => {
                // What a unit would displace counts as free for it (see `fits`): the buckets
                // cannot tell, so every machine is tested.
                let need = if self.ix.info[u].replaces.is_empty() {
                    self.ix.requests(u)
                } else {
                    Resources::ZERO
                };
                buckets.first(need, |m| self.can_place(u, m))
            }
        }
    }

    /// The strategy's key of `m` with the load as tie-break, for choosing among a few
    /// machines: the smallest is the one to take.
    pub(super) fn share_order(&self, m: MachineIx) -> (u64, usize, MachineIx) {
        self.share_entry(m)
    }

    /// What is free on `m`: its capacity minus `used` (nothing where that is overcommitted).
    pub(super) fn free(&self, m: MachineIx) -> Resources {
        self.free[m]
    }

    /// Whether `u`'s requests fit in what is free on `m`, counting as free what the units it
    /// would displace there (`Replaces=`, with their followers) request.
    pub(super) fn fits(&self, u: UnitIx, m: MachineIx) -> bool {
        let requests = self.ix.requests(u);
        if requests.is_zero() {
            return true;
        }
        if self.ix.info[u].replaces.is_empty() {
            return requests.fits_in(self.free[m]);
        }
        let mut used = self.used[m];
        for v in self.displacement(u, m).units {
            used = used.saturating_sub(self.ix.requests(v));
        }
        requests.fits_in(self.ix.capacity(m).saturating_sub(used))
    }

    fn count(&mut self, u: UnitIx, m: MachineIx, change: Change) {
        let conflicts = &self.ix.conflicts;
        for &p in conflicts.owns(u) {
            bump(&mut self.counts, (m, p), change, |c| &mut c.owned);
        }
        for &p in conflicts.matched_by(u) {
            bump(&mut self.counts, (m, p), change, |c| &mut c.matched);
        }
    }

    fn counts(&self, m: MachineIx, p: PatternIx) -> Counts {
        self.counts.get(&(m, p)).copied().unwrap_or_default()
    }

    /// Whether a unit not on `m` would conflict with a unit that is.
    pub(super) fn conflicts_on(&self, u: UnitIx, m: MachineIx) -> bool {
        let conflicts = &self.ix.conflicts;
        conflicts
            .owns(u)
            .iter()
            .any(|&p| self.counts(m, p).matched > 0)
            || conflicts
                .matched_by(u)
                .iter()
                .any(|&p| self.counts(m, p).owned > 0)
    }

    /// What placing `u` on `m` would take off `m`, and what forbids it.
    pub(super) fn displacement(&self, u: UnitIx, m: MachineIx) -> Displacement {
        let info = &self.ix.info[u];
        let mut units: Vec<UnitIx> = info
            .replaces
            .iter()
            .copied()
            .filter(|&v| self.is_on(v, m))
            .collect();
        let obstacles: Vec<Obstacle> = units
            .iter()
            .filter_map(|&v| {
                if self.ix.in_displacement_cycle(u, v) {
                    Some(Obstacle::Cycle(v))
                } else if self.displacements_left == 0 {
                    Some(Obstacle::Limit(v))
                } else {
                    None
                }
            })
            .collect();
        let mut next = 0;
        while let Some(&w) = units.get(next) {
            for &f in &self.ix.info[w].followers {
                if self.is_on(f, m) && !units.contains(&f) {
                    units.push(f);
                }
            }
            next += 1;
        }
        Displacement { units, obstacles }
    }

    /// Whether `u` may join `m` given what is there (its own MachineID and metadata aside): no
    /// unit there replaces it, it may displace what it replaces there, and it conflicts with
    /// nothing that would stay.
    pub(super) fn is_blocked(&self, u: UnitIx, m: MachineIx) -> bool {
        let info = &self.ix.info[u];
        if info.replaced_by.iter().any(|&r| self.is_on(r, m)) {
            return true;
        }
        let displacement = self.displacement(u, m);
        if !displacement.obstacles.is_empty() {
            return true;
        }
        if !self.conflicts_on(u, m) {
            return false;
        }
        if displacement.units.is_empty() {
            return true;
        }
        self.units_on[m]
            .iter()
            .any(|&v| !displacement.units.contains(&v) && self.ix.conflicts.between(u, v))
    }

    /// May `u` be placed on `m` now: its own constraints, what is on `m` and what is free.
    pub(super) fn can_place(&self, u: UnitIx, m: MachineIx) -> bool {
        // What is free first: the cheapest test, and the one that turns most machines away
        // when packing, which tries the fullest first. A unit that replaces others needs the
        // displacement for it, so its constraints come first.
        if self.ix.info[u].replaces.is_empty() && !self.ix.requests(u).fits_in(self.free[m]) {
            return false;
        }
        self.ix.allows(u, m) && !self.is_on(u, m) && self.fits(u, m) && !self.is_blocked(u, m)
    }

    /// The machines holding every MachineOf target of `u`, in ID order.
    pub(super) fn target_holders(&self, u: UnitIx) -> Vec<MachineIx> {
        let targets = &self.ix.info[u].targets;
        match targets.split_first() {
            Some((&first, rest)) => self.on[first]
                .iter()
                .copied()
                .filter(|&m| rest.iter().all(|&t| self.is_on(t, m)))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// The requested share of a machine using `used`: the larger of memory and CPU, each requests
/// over capacity, in millionths; a dimension of no capacity is left out, and a machine of none
/// at all comes last.
fn share(capacity: Resources, used: Resources) -> u64 {
    let part = |used: u64, capacity: u64| {
        (capacity > 0).then(|| {
            let millionths = u128::from(used) * 1_000_000 / u128::from(capacity);
            u64::try_from(millionths)
                .unwrap_or(u64::MAX - 1)
                .min(u64::MAX - 1)
        })
    };
    match (
        part(used.memory, capacity.memory),
        part(used.millicpus, capacity.millicpus),
    ) {
        (None, None) => u64::MAX,
        (a, b) => a.unwrap_or(0).max(b.unwrap_or(0)),
    }
}

/// The key machines are tried in, smallest first: the share for `Spread`, its complement for
/// `Pack` (machines without capacity last in both).
fn share_key(ix: &Index, m: MachineIx, used: Resources) -> u64 {
    let share = share(ix.capacity(m), used);
    match ix.strategy {
        Strategy::Spread => share,
        Strategy::Pack if share == u64::MAX => u64::MAX,
        Strategy::Pack => u64::MAX - 1 - share,
    }
}

/// The machines in share order. Spreading finds room on one of the first machines it tries,
/// so a sorted set is enough; packing tries the fullest first and needs to skip the full ones.
enum ShareOrder {
    Sorted(BTreeSet<Key>),
    Buckets(Buckets),
}

impl ShareOrder {
    /// Machine `key.2` moves from `old` (None: it was not there) to `key`, with `free` free.
    fn set(&mut self, old: Option<Key>, key: Key, free: Resources) {
        match self {
            ShareOrder::Sorted(set) => {
                if let Some(old) = old {
                    set.remove(&old);
                }
                set.insert(key);
            }
            ShareOrder::Buckets(buckets) => buckets.set(key.2, key, free),
        }
    }
}
