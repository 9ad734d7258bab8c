//! The pure scheduler: where each unit should run, and why a unit cannot be placed. No I/O.
//!
//! `plan` is a function of its input only (no clock, no randomness, no I/O): the same view, in
//! any order, gives the same plan. The rules, in the order they are applied:
//!
//! 1. Units desired `inactive` are placed nowhere; templates are never placed (with a reason).
//! 2. Current placements that are still valid stay (no rebalancing). A placement goes when its
//!    machine left, was drained (normal units only) or no longer satisfies MachineID/metadata,
//!    when a unit on that machine
//!    replaces it, when it conflicts with a unit that stays there (a normal unit stays over a
//!    global one, then the first name over later ones), or when a MachineOf target is not on
//!    that machine any more. A MachineOf cycle is never placed.
//! 3. Global units go to every machine that allows them and holds nothing they conflict with;
//!    they never push a placed normal unit away. (A global unit with MachineOf, which the
//!    parser rejects, waits for its targets like a follower.)
//! 4. Pending normal units, in name order but MachineOf targets before their followers, go to
//!    the eligible (and not drained) machine with the fewest units (placements of this plan counted), ties by ID.
//!    A follower goes only to the machine of its targets. A unit with requests (`Memory=`,
//!    `CPU=`) goes instead, among the eligible machines where it fits (see "Resources"), to
//!    the one with the least requested share (`Strategy::Spread`, the default) or the most
//!    (`Strategy::Pack`), ties by fewer units, then ID.
//! 5. A unit with `Replaces=Y` ignores Y when choosing; if it lands where Y is, Y (and Y's
//!    followers there) are taken off and placed again by Y's own rules, never next to a unit
//!    that replaces Y. Where displacing would come back round (Replaces cycles, or a chain of
//!    Replaces that takes away a unit's own MachineOf target), nothing is displaced: the
//!    units just never share a machine.
//! 6. Steps 3 to 5 repeat while a displacement may have left room for a unit that failed
//!    before it, so planning again over the result gives an empty plan.
//!
//! Every unit that should run and ends up nowhere gets a reason, computed from the final
//! placements.
//!
//! Resources: a unit is placed (or, for a global unit, added to a machine) only where each
//! dimension it requests fits in what is free there: the machine's capacity minus the
//! requests of every unit on it, global units and this plan's placements included (and minus
//! nothing for the units it would displace through `Replaces=`, which leave). A MachineOf
//! follower counts on its targets' machine like any unit there; if it does not fit beside them
//! it is not placed (the targets do not move for it). Placements are never taken away for
//! lack of room: when a machine's capacity shrinks, or a placed unit's requests grow, what is
//! there stays and nothing new that needs the short dimension goes there until it is free
//! again. A machine that reports no capacity counts as having none: only units without
//! requests go there. A unit without requests fits anywhere and is placed as without
//! resources. The requested share of a machine is the larger of its memory and CPU shares
//! (requests over capacity), before the unit is added.

mod conflicts;
mod fit;
mod hash;
mod index;
mod occupancy;
mod order;
mod place;
mod reason;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::machine::{MachineId, Metadata};
use crate::resources::Resources;
use crate::unit::{DesiredState, Requirements, UnitName};

use index::{Index, Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub id: MachineId,
    pub metadata: Metadata,
    /// Drained (`flottectl drain`): no normal unit may be placed or stay there; global units
    /// are not affected.
    pub drained: bool,
    /// What units' requests may add up to there (`Resources::ZERO`: nothing reported).
    pub capacity: Resources,
}

/// Where units with requests go among the machines they fit on: the cluster's
/// `placement_strategy` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// The least requested share: load spread evenly, room kept on every machine.
    #[default]
    Spread,
    /// The most requested share that still fits: machines filled one after another, whole
    /// machines kept free for big units.
    Pack,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Spread => "spread",
            Strategy::Pack => "pack",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spread" => Ok(Strategy::Spread),
            "pack" => Ok(Strategy::Pack),
            other => Err(format!(
                "`{other}` is not a placement strategy (spread or pack)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: UnitName,
    pub requirements: Arc<Requirements>,
    pub desired: DesiredState,
    /// Where it is placed now: at most one machine for a normal unit, any number for a global one.
    pub placed: Vec<MachineId>,
}

/// Everything the scheduler looks at. Machine IDs and unit names are keys: if one repeats, the
/// machine with the smallest metadata and the unit that comes first are used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub machines: Vec<Machine>,
    pub units: Vec<Unit>,
    pub strategy: Strategy,
}

/// What to change so that placements follow the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New placements, sorted.
    pub place: Vec<(UnitName, MachineId)>,
    /// Removals, sorted (a move is one removal and one placement).
    pub unplace: Vec<(UnitName, MachineId)>,
    /// Every unit that should run but ends up placed nowhere, with why.
    pub reasons: BTreeMap<UnitName, String>,
}

impl Plan {
    /// True when nothing is to be placed or removed (reasons may remain).
    pub fn is_settled(&self) -> bool {
        self.place.is_empty() && self.unplace.is_empty()
    }
}

pub fn plan(view: &ClusterView) -> Plan {
    let ix = Index::new(view);
    let state = place::run(&ix);
    let mut plan = Plan::default();
    let mut reasons = reason::Reasons::new(&state);
    for (u, unit) in ix.units.iter().enumerate() {
        let mut before: Vec<&MachineId> = unit.placed.iter().collect();
        before.sort_unstable();
        before.dedup();
        let after: Vec<&MachineId> = state.on(u).iter().map(|&m| &ix.machines[m].id).collect();
        for id in &before {
            if after.binary_search(id).is_err() {
                plan.unplace.push((unit.name.clone(), (*id).clone()));
            }
        }
        for id in &after {
            if before.binary_search(id).is_err() {
                plan.place.push((unit.name.clone(), (*id).clone()));
            }
        }
        let reason = match ix.info[u].role {
            Role::Stored => None,
            Role::Template => Some(reason::template(&unit.name)),
            Role::Run if after.is_empty() => Some(reasons.unplaced(u)),
            Role::Run => None,
        };
        if let Some(reason) = reason {
            plan.reasons.insert(unit.name.clone(), reason);
        }
    }
    plan
}
