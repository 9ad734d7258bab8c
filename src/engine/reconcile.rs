//! The engine's decision, as a pure function: from the registry's contents to the writes that
//! bring schedule, placements and reasons in line with `schedule::plan`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::machine::MachineId;
use crate::registry::{
    DrainRecord, EngineWrite, Health, InstanceId, InstanceRecord, MachineRecord, MetadataOverride,
    PlacementRecord, ReasonRecord, ScheduleEntry, StatesSeen, UnitRecord, UnitStateRecord,
    effective_metadata,
};
use crate::resources::Resources;
use crate::schedule::{self, ClusterView, Strategy};
use crate::systemd::ActiveState;
use crate::unit::{Requirements, Target, UnitHash, UnitName};

/// The requirements of a unit's current content, or why they cannot be known.
pub type UnitRequirements = Result<Arc<Requirements>, String>;

/// What the engine knows of the registry.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub machines: BTreeMap<MachineId, MachineRecord>,
    pub overrides: BTreeMap<(MachineId, String), MetadataOverride>,
    pub units: BTreeMap<UnitName, UnitRecord>,
    /// For each unit: the content hash the requirements were read from, and the result.
    pub requirements: BTreeMap<UnitName, (UnitHash, UnitRequirements)>,
    pub schedule: BTreeMap<(MachineId, UnitName), ScheduleEntry>,
    pub placements: BTreeMap<UnitName, Vec<MachineId>>,
    pub reasons: BTreeMap<UnitName, String>,
    /// Machines drained through the API (`flottectl drain`), registered or not.
    pub drained: BTreeMap<MachineId, DrainRecord>,
    /// This engine's `placement_strategy`.
    pub strategy: Strategy,
    /// What the agents report of the units on their machines (`held_back` reads it).
    pub states: BTreeMap<(UnitName, MachineId), UnitStateRecord>,
    /// The etcd revision `states` stands at: it holds every state written up to it (`guard`).
    pub states_revision: i64,
    /// For each unit: the content hash it was read from, and whether that content declares
    /// a service with a check (`[X-Flotte-Service] Check=`); `rolling` waits for it.
    pub checked: BTreeMap<UnitName, (UnitHash, bool)>,
    /// The declared services' instances with their health, as the agents register them.
    pub instances: BTreeMap<InstanceId, InstanceRecord>,
}

impl View {
    /// Records writes that were applied.
    pub fn apply(&mut self, groups: &[Vec<EngineWrite>]) {
        for write in groups.iter().flatten() {
            match write {
                EngineWrite::PutSchedule(m, u, e) => {
                    self.schedule.insert((m.clone(), u.clone()), e.clone());
                }
                EngineWrite::DeleteSchedule(m, u) => {
                    self.schedule.remove(&(m.clone(), u.clone()));
                }
                EngineWrite::PutPlacement(u, p) => {
                    self.placements.insert(u.clone(), p.machines.clone());
                }
                EngineWrite::DeletePlacement(u) => {
                    self.placements.remove(u);
                }
                EngineWrite::PutReason(u, r) => {
                    self.reasons.insert(u.clone(), r.reason.clone());
                }
                EngineWrite::DeleteReason(u) => {
                    self.reasons.remove(u);
                }
            }
        }
    }
}

/// A change held back until agents report: a non-global unit moving to machines it is not
/// scheduled on while it still runs on others (`held_back`), or a global unit's new content
/// waiting for the machines that have it to run it (`rolling`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMove {
    /// The machines the plan wants it on that are held back (for a rollout: held on their
    /// older content).
    pub to: BTreeSet<MachineId>,
    /// The registered machines it is taken from whose agents still report it running (for a
    /// rollout: the machines on the new content not active on it yet).
    pub running_on: Vec<MachineId>,
}

/// The two-phase move: a non-global unit is placed on a machine it is not scheduled on only
/// once no other registered machine runs it. `wanted` is where the plan puts it, `current`
/// where it is scheduled now. A machine runs it while its agent's state of it is running
/// (active, activating, deactivating, reloading, refreshing); a state that is gone or stopped,
/// or a machine no longer registered (its lease is gone, and its agent fenced itself before
/// that: see ARCHITECTURE.md "Fencing"), does not hold the move. A unit placed for the first
/// time, or whose old machine is gone, is placed at once.
pub fn held_back(
    view: &View,
    unit: &UnitName,
    wanted: &BTreeSet<MachineId>,
    current: &[MachineId],
) -> Option<HeldMove> {
    let to: BTreeSet<MachineId> = wanted
        .iter()
        .filter(|m| !current.contains(m))
        .cloned()
        .collect();
    if to.is_empty() {
        return None;
    }
    let running_on: Vec<MachineId> = view
        .machines
        .keys()
        .filter(|m| !wanted.contains(*m))
        .filter(|m| {
            view.states
                .get(&(unit.clone(), (*m).clone()))
                .is_some_and(|s| s.active.is_running())
        })
        .cloned()
        .collect();
    (!running_on.is_empty()).then_some(HeldMove { to, running_on })
}

/// A global unit's new content reaches its machines one at a time, as a Kubernetes
/// DaemonSet's rolling update (at most one machine unavailable): a machine still on an older
/// content of a launched global unit gets the new one only while no other machine of it runs
/// the new content without being `active` on it yet (its agent has not reported it, it is
/// starting, or it failed: then the rollout stops there until the content changes again) and,
/// where the new content declares a service check, without its instance there `passing`.
/// Machines not running it yet (no entry) get it at once; machines whose unit is not active
/// go first, then by ID. `machines` is where the plan wants it, `hash` its content; returns
/// the machines held on their older content and those being waited for, or None when
/// nothing is held.
pub fn rolling(
    view: &View,
    unit: &UnitName,
    hash: UnitHash,
    machines: &BTreeSet<MachineId>,
) -> Option<HeldMove> {
    let entry = |m: &MachineId| view.schedule.get(&(m.clone(), unit.clone()));
    let state = |m: &MachineId| view.states.get(&(unit.clone(), m.clone()));
    let mut older: Vec<(bool, &MachineId)> = machines
        .iter()
        .filter(|m| entry(m).is_some_and(|e| e.hash != hash && e.target == Target::Launched))
        .map(|m| (state(m).is_some_and(|s| s.active == ActiveState::Active), m))
        .collect();
    if older.is_empty() {
        return None;
    }
    let checked = view
        .checked
        .get(unit)
        .is_some_and(|&(h, checked)| h == hash && checked);
    let healthy = |m: &MachineId| {
        !checked
            || view
                .instances
                .values()
                .any(|i| i.unit == *unit && i.machine == *m && i.health == Health::Passing)
    };
    let waiting: Vec<MachineId> = machines
        .iter()
        .filter(|m| entry(m).is_some_and(|e| e.hash == hash))
        .filter(|m| {
            !(state(m).is_some_and(|s| s.hash == hash && s.active == ActiveState::Active)
                && healthy(m))
        })
        .cloned()
        .collect();
    older.sort();
    let free = 1usize.saturating_sub(waiting.len());
    let to: BTreeSet<MachineId> = older
        .into_iter()
        .skip(free)
        .map(|(_, m)| m.clone())
        .collect();
    (!to.is_empty()).then_some(HeldMove {
        to,
        running_on: waiting,
    })
}

/// The guard a group of writes needs (`Registry::apply_guarded`): a group that schedules a
/// non-global unit on a machine the view has no entry of it for (the second phase of a move,
/// a move whose old machines run nothing, or a first placement) is written only if no state
/// of that unit changed after the view's `states_revision`. `held_back` let it through on
/// the states the view holds; an agent's intent record committed just before, while its
/// schedule entry still existed, and not in the view yet, must stop it (the agent then starts
/// the unit, so the new machine must not). If the agent's write comes after the group's, its
/// own compare (the entry still there) fails instead: etcd orders the two.
pub fn guard(view: &View, group: &[EngineWrite]) -> Option<StatesSeen> {
    group.iter().find_map(|w| match w {
        EngineWrite::PutSchedule(m, u, e)
            if !e.global && !view.schedule.contains_key(&(m.clone(), u.clone())) =>
        {
            Some(StatesSeen {
                unit: u.clone(),
                revision: view.states_revision,
            })
        }
        _ => None,
    })
}

/// The writes that make the registry follow the plan, grouped by unit (each group is applied
/// in one transaction where it fits).
pub fn reconcile(view: &View) -> Vec<Vec<EngineWrite>> {
    reconcile_holding(view).0
}

/// `reconcile`, and the moves it holds back (`held_back`), by unit: while there are any, a
/// change of a unit state may release one.
pub fn reconcile_holding(view: &View) -> (Vec<Vec<EngineWrite>>, BTreeMap<UnitName, HeldMove>) {
    let mut current: BTreeMap<&UnitName, Vec<MachineId>> = BTreeMap::new();
    for (m, u) in view.schedule.keys() {
        current.entry(u).or_default().push(m.clone());
    }

    let mut reasons: BTreeMap<UnitName, String> = BTreeMap::new();
    let mut cluster = ClusterView {
        machines: view
            .machines
            .values()
            .map(|m| schedule::Machine {
                id: m.id.clone(),
                metadata: effective_metadata(m, &view.overrides),
                drained: view.drained.contains_key(&m.id),
                capacity: m.capacity.unwrap_or(Resources::ZERO),
            })
            .collect(),
        units: Vec::with_capacity(view.units.len()),
        strategy: view.strategy,
    };
    let mut global: BTreeSet<&UnitName> = BTreeSet::new();
    let mut unread: Vec<&UnitName> = Vec::new();
    for (name, record) in &view.units {
        match view.requirements.get(name) {
            Some((hash, Ok(requirements))) if *hash == record.hash => {
                if requirements.global {
                    global.insert(name);
                }
                cluster.units.push(schedule::Unit {
                    name: name.clone(),
                    requirements: requirements.clone(),
                    desired: record.desired,
                    placed: current.get(name).cloned().unwrap_or_default(),
                });
            }
            Some((hash, Err(why))) if *hash == record.hash => {
                reasons.insert(name.clone(), why.clone());
            }
            // Requirements not read yet: the unit stays where it is until they are.
            _ => {
                unread.push(name);
                if let Some(r) = view.reasons.get(name) {
                    reasons.insert(name.clone(), r.clone());
                }
            }
        }
    }
    let plan = schedule::plan(&cluster);
    reasons.extend(plan.reasons);

    // Placements after the plan, for units the scheduler saw.
    let mut wanted: BTreeMap<UnitName, BTreeSet<MachineId>> = cluster
        .units
        .iter()
        .map(|u| (u.name.clone(), u.placed.iter().cloned().collect()))
        .collect();
    for (u, m) in &plan.unplace {
        if let Some(set) = wanted.get_mut(u) {
            set.remove(m);
        }
    }
    for (u, m) in plan.place {
        wanted.entry(u).or_default().insert(m);
    }
    // Units whose requirements are not read yet keep their placements untouched.
    for name in unread {
        if let Some(ms) = current.get(name) {
            wanted.insert(name.clone(), ms.iter().cloned().collect());
        }
    }
    // Two-phase moves: a non-global unit leaves its old machines now and reaches its new ones
    // once the old ones no longer run it.
    let mut held: BTreeMap<UnitName, HeldMove> = BTreeMap::new();
    for (name, machines) in wanted.iter_mut() {
        let moving = view
            .units
            .get(name)
            .is_some_and(|r| Target::for_desired(r.desired).is_some());
        if global.contains(name) || !moving {
            continue;
        }
        let now = current.get(name).map(Vec::as_slice).unwrap_or_default();
        if let Some(hold) = held_back(view, name, machines, now) {
            machines.retain(|m| !hold.to.contains(m));
            held.insert(name.clone(), hold);
        }
    }

    // Rolling updates: a launched global unit's new content, one machine at a time.
    let mut rollouts: BTreeMap<UnitName, HeldMove> = BTreeMap::new();
    for (name, machines) in &wanted {
        let Some(record) = view.units.get(name) else {
            continue;
        };
        if global.contains(name)
            && Target::for_desired(record.desired) == Some(Target::Launched)
            && let Some(hold) = rolling(view, name, record.hash, machines)
        {
            rollouts.insert(name.clone(), hold);
        }
    }

    let mut groups: BTreeMap<UnitName, Vec<EngineWrite>> = BTreeMap::new();
    // Schedule entries: wanted ones written when new or changed, the others deleted.
    let mut wanted_entries: BTreeMap<(MachineId, UnitName), ScheduleEntry> = BTreeMap::new();
    for (name, machines) in &wanted {
        let Some(record) = view.units.get(name) else {
            continue;
        };
        let Some(target) = Target::for_desired(record.desired) else {
            continue;
        };
        let held_on_older = rollouts.get(name).map(|h| &h.to);
        for m in machines {
            if held_on_older.is_some_and(|to| to.contains(m))
                && let Some(e) = view.schedule.get(&(m.clone(), name.clone()))
            {
                wanted_entries.insert((m.clone(), name.clone()), e.clone());
                continue;
            }
            let entry = match view.requirements.get(name) {
                Some((hash, _)) if *hash == record.hash => ScheduleEntry {
                    hash: record.hash,
                    target,
                    global: global.contains(name),
                    start: record.start,
                },
                // Not read yet: leave the entry exactly as it is.
                _ => match view.schedule.get(&(m.clone(), name.clone())) {
                    Some(e) => e.clone(),
                    None => continue,
                },
            };
            wanted_entries.insert((m.clone(), name.clone()), entry);
        }
    }
    // A global unit's entry on a machine that vanished stays as it is while the unit is still
    // wanted (nothing else may run it, so it cannot run twice): a machine that was only cut
    // off finds it again when it rejoins and keeps the unit running, instead of unloading it
    // and starting it again once the engine re-places it. Destroying, stopping or unloading
    // the unit takes the entry off.
    for (key, entry) in &view.schedule {
        let (m, u) = key;
        let still_wanted = view.units.get(u).is_some_and(|r| {
            Target::for_desired(r.desired) == Some(entry.target)
                && !matches!(view.requirements.get(u), Some((h, Ok(req))) if *h == r.hash && !req.global)
        });
        if entry.global && still_wanted && !view.machines.contains_key(m) {
            wanted_entries
                .entry(key.clone())
                .or_insert_with(|| entry.clone());
        }
    }
    for (key, entry) in &wanted_entries {
        if view.schedule.get(key) != Some(entry) {
            groups
                .entry(key.1.clone())
                .or_default()
                .push(EngineWrite::PutSchedule(
                    key.0.clone(),
                    key.1.clone(),
                    entry.clone(),
                ));
        }
    }
    for key in view.schedule.keys() {
        if !wanted_entries.contains_key(key) {
            groups
                .entry(key.1.clone())
                .or_default()
                .push(EngineWrite::DeleteSchedule(key.0.clone(), key.1.clone()));
        }
    }

    // Placement records follow the entries; a unit held back in a move and scheduled nowhere
    // is shown where it still runs until it has stopped there (a drain waits for it).
    let mut placed: BTreeMap<&UnitName, Vec<MachineId>> = BTreeMap::new();
    for (m, u) in wanted_entries.keys() {
        placed.entry(u).or_default().push(m.clone());
    }
    for (u, hold) in &held {
        placed.entry(u).or_insert_with(|| hold.running_on.clone());
    }
    for (u, machines) in &placed {
        if view.placements.get(*u) != Some(machines) {
            groups
                .entry((*u).clone())
                .or_default()
                .push(EngineWrite::PutPlacement(
                    (*u).clone(),
                    PlacementRecord {
                        machines: machines.clone(),
                    },
                ));
        }
    }
    for u in view.placements.keys() {
        if !placed.contains_key(u) {
            groups
                .entry(u.clone())
                .or_default()
                .push(EngineWrite::DeletePlacement(u.clone()));
        }
    }

    // Reasons: only for units that exist and are placed nowhere.
    reasons.retain(|u, _| view.units.contains_key(u) && !placed.contains_key(u));
    for (u, reason) in &reasons {
        if view.reasons.get(u) != Some(reason) {
            groups
                .entry(u.clone())
                .or_default()
                .push(EngineWrite::PutReason(
                    u.clone(),
                    ReasonRecord {
                        reason: reason.clone(),
                    },
                ));
        }
    }
    for u in view.reasons.keys() {
        if !reasons.contains_key(u) {
            groups
                .entry(u.clone())
                .or_default()
                .push(EngineWrite::DeleteReason(u.clone()));
        }
    }
    held.extend(rollouts);
    (groups.into_values().collect(), held)
}

/// Machines that hold entries of non-global units but are not registered (their lease
/// expired, or they have not registered again yet): reconciling now would move those units.
pub fn vanished(view: &View) -> BTreeSet<MachineId> {
    view.schedule
        .iter()
        .filter(|((m, _), e)| !e.global && !view.machines.contains_key(m))
        .map(|((m, _), _)| m.clone())
        .collect()
}

#[cfg(test)]
mod tests;
