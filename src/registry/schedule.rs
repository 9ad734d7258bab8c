//! The engine's output: schedule entries per machine, placements and reasons per unit, read
//! back and written in transactions fenced on leadership.

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::kv::{MAX_TXN_OPS, json};
use super::{
    Fence, Keys, PlacementRecord, ReasonRecord, Registry, RegistryError, ScheduleEntry, TypedWatch,
};
use crate::machine::MachineId;
use crate::unit::UnitName;

impl Registry {
    pub async fn schedule(
        &self,
    ) -> Result<(Vec<((MachineId, UnitName), ScheduleEntry)>, i64), RegistryError> {
        self.list(self.keys.schedules(), Keys::parse_schedule).await
    }

    /// The units placed on one machine, as its agent sees them.
    pub fn watch_schedule_of(&self, machine: &MachineId) -> TypedWatch<UnitName, ScheduleEntry> {
        self.watch(self.keys.schedule_of(machine), |keys, raw| {
            keys.parse_schedule(raw).map(|(_, u)| u)
        })
    }

    pub async fn placements(&self) -> Result<Vec<(UnitName, PlacementRecord)>, RegistryError> {
        Ok(self
            .list(self.keys.placements(), Keys::parse_placement)
            .await?
            .0)
    }

    pub async fn placement(
        &self,
        unit: &UnitName,
    ) -> Result<Option<PlacementRecord>, RegistryError> {
        Ok(self
            .get_json(self.keys.placement(unit))
            .await?
            .map(|(v, _)| v))
    }

    pub async fn reasons(&self) -> Result<Vec<(UnitName, ReasonRecord)>, RegistryError> {
        Ok(self.list(self.keys.reasons(), Keys::parse_reason).await?.0)
    }

    pub async fn reason(&self, unit: &UnitName) -> Result<Option<ReasonRecord>, RegistryError> {
        Ok(self.get_json(self.keys.reason(unit)).await?.map(|(v, _)| v))
    }

    /// Applies engine writes in transactions fenced on leadership. Each group (the writes of
    /// one unit) lands in one transaction unless it alone exceeds `MAX_TXN_OPS` (etcd's default
    /// limit per transaction), as a global unit on many machines can.
    pub async fn apply(
        &self,
        fence: &Fence,
        groups: &[Vec<EngineWrite>],
    ) -> Result<(), RegistryError> {
        self.apply_guarded(fence, groups, &[]).await.map(|_| ())
    }

    /// `apply`, where a group may also carry a guard (`guards[i]` for `groups[i]`; missing
    /// ones are `None`): such a group is written only if no state of its unit changed after
    /// the guard's revision (a nested transaction in the fenced one, so a refused group
    /// costs no other group). Returns, for each group, whether it was written.
    pub async fn apply_guarded(
        &self,
        fence: &Fence,
        groups: &[Vec<EngineWrite>],
        guards: &[Option<StatesSeen>],
    ) -> Result<Vec<bool>, RegistryError> {
        let guard = |i: usize| guards.get(i).and_then(Option::as_ref);
        let mut written = vec![true; groups.len()];
        for batch in pack(groups, |i| guard(i).is_some(), MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = batch
                .iter()
                .flat_map(|&(i, writes)| match guard(i) {
                    Some(seen) => vec![TxnOp::txn(
                        Txn::new()
                            .when([self.states_unchanged(seen)])
                            .and_then(writes.iter().map(|w| self.op(w)).collect::<Vec<_>>()),
                    )],
                    None => writes.iter().map(|w| self.op(w)).collect(),
                })
                .collect();
            let txn = Txn::new().when([fence.compare()]).and_then(ops);
            let resp = self.txn_response("applying the engine's plan", txn).await?;
            if !resp.succeeded() {
                return Err(RegistryError::Fenced);
            }
            let nested = resp.op_responses().into_iter().filter_map(|r| match r {
                TxnOpResponse::Txn(t) => Some(t.succeeded()),
                _ => None,
            });
            let guarded = batch.iter().filter(|(i, _)| guard(*i).is_some());
            for ((i, _), ok) in guarded.zip(nested) {
                written[*i] = ok;
            }
        }
        Ok(written)
    }

    /// Compares that every state key of the guard's unit was last written at its revision or
    /// before (a key that does not exist passes).
    fn states_unchanged(&self, seen: &StatesSeen) -> Compare {
        Compare::mod_revision(
            self.keys.states_of(&seen.unit),
            CompareOp::Less,
            seen.revision + 1,
        )
        .with_prefix()
    }

    fn op(&self, write: &EngineWrite) -> TxnOp {
        let k = &self.keys;
        match write {
            EngineWrite::PutSchedule(m, u, e) => TxnOp::put(k.schedule(m, u), json(e), None),
            EngineWrite::DeleteSchedule(m, u) => TxnOp::delete(k.schedule(m, u), None),
            EngineWrite::PutPlacement(u, p) => TxnOp::put(k.placement(u), json(p), None),
            EngineWrite::DeletePlacement(u) => TxnOp::delete(k.placement(u), None),
            EngineWrite::PutReason(u, r) => TxnOp::put(k.reason(u), json(r), None),
            EngineWrite::DeleteReason(u) => TxnOp::delete(k.reason(u), None),
        }
    }
}

/// One write of the engine's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineWrite {
    PutSchedule(MachineId, UnitName, ScheduleEntry),
    DeleteSchedule(MachineId, UnitName),
    PutPlacement(UnitName, PlacementRecord),
    DeletePlacement(UnitName),
    PutReason(UnitName, ReasonRecord),
    DeleteReason(UnitName),
}

/// A condition of one group of engine writes besides the fence: no agent's state of `unit`
/// was written after `revision`, the revision the engine's view of the states stands at.
/// The engine guards a group that places a non-global unit on a machine it is not scheduled
/// on (`reconcile::guard`): an intent record an agent committed just before, that the view
/// has not caught up with, then refuses the placement instead of letting the unit run twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatesSeen {
    pub unit: UnitName,
    pub revision: i64,
}

/// A batch's piece: a group's index and writes of it.
type Piece<'a> = (usize, &'a [EngineWrite]);

/// Packs groups into batches that etcd takes without splitting a group that fits, counting
/// `max` operations to a transaction. A group larger than that is split, unless `nested`
/// says it is sent as a nested transaction: then it stays whole and costs one operation more.
/// (etcd 3.4 takes a nested transaction of at most `max` less the operations of the level
/// above; counting both against `max` keeps every level within it.)
fn pack(
    groups: &[Vec<EngineWrite>],
    nested: impl Fn(usize) -> bool,
    max: usize,
) -> Vec<Vec<Piece<'_>>> {
    let mut batches: Vec<Vec<Piece<'_>>> = Vec::new();
    let mut current: Vec<Piece<'_>> = Vec::new();
    let mut size = 0;
    for (i, group) in groups.iter().enumerate().filter(|(_, g)| !g.is_empty()) {
        let (chunk, extra) = if nested(i) {
            (group.len(), 1)
        } else {
            (max, 0)
        };
        if size + group.len() + extra > max && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            size = 0;
        }
        for writes in group.chunks(chunk) {
            if size + writes.len() + extra > max && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                size = 0;
            }
            current.push((i, writes));
            size += writes.len() + extra;
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(unit: &str, n: usize) -> Vec<EngineWrite> {
        let u = UnitName::new(unit).unwrap();
        (0..n)
            .map(|_| EngineWrite::DeleteReason(u.clone()))
            .collect()
    }

    fn sizes(groups: &[Vec<EngineWrite>], max: usize) -> Vec<usize> {
        pack(groups, |_| false, max)
            .iter()
            .map(|b| b.iter().map(|(_, w)| w.len()).sum())
            .collect()
    }

    #[test]
    fn writes_of_one_unit_stay_in_one_transaction_when_they_fit() {
        let groups = vec![
            group("a.service", 3),
            group("b.service", 3),
            group("c.service", 2),
        ];
        assert_eq!(sizes(&groups, 5), vec![3, 5]);
        assert_eq!(sizes(&groups, 8), vec![8]);
        assert_eq!(sizes(&[], 8), Vec::<usize>::new());
    }

    #[test]
    fn a_group_larger_than_a_transaction_is_split() {
        let groups = vec![
            group("a.service", 2),
            group("global.service", 12),
            group("c.service", 1),
        ];
        assert_eq!(sizes(&groups, 5), vec![2, 5, 5, 3]);
    }

    #[test]
    fn a_group_kept_whole_is_one_piece_and_pieces_name_their_group() {
        let groups = vec![
            group("a.service", 2),
            group("moved.service", 7),
            group("c.service", 1),
        ];
        let pieces: Vec<Vec<(usize, usize)>> = pack(&groups, |i| i == 1, 5)
            .iter()
            .map(|b| b.iter().map(|(i, w)| (*i, w.len())).collect())
            .collect();
        assert_eq!(pieces, vec![vec![(0, 2)], vec![(1, 7)], vec![(2, 1)]]);
        // A nested group costs one more: 2 + (2 + 1) fits in 5, 2 + (3 + 1) does not.
        let small = vec![group("a.service", 2), group("b.service", 2)];
        assert_eq!(pack(&small, |i| i == 1, 5).len(), 1);
        let small = vec![group("a.service", 2), group("b.service", 3)];
        assert_eq!(pack(&small, |i| i == 1, 5).len(), 2);
        let pieces: Vec<Vec<(usize, usize)>> = pack(&groups, |_| false, 5)
            .iter()
            .map(|b| b.iter().map(|(i, w)| (*i, w.len())).collect())
            .collect();
        assert_eq!(
            pieces,
            vec![vec![(0, 2)], vec![(1, 5)], vec![(1, 2), (2, 1)]]
        );
    }
}
