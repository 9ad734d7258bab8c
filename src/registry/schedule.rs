//! The engine's output: schedule entries per machine, placements and reasons per unit, read
//! back and written in transactions fenced on leadership.

use etcd_client::{Txn, TxnOp};

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
        for batch in pack(groups, MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = batch.iter().map(|w| self.op(w)).collect();
            let txn = Txn::new().when([fence.compare()]).and_then(ops);
            if !self.txn("applying the engine's plan", txn).await? {
                return Err(RegistryError::Fenced);
            }
        }
        Ok(())
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

/// Packs groups into batches of at most `max` writes without splitting a group that fits.
fn pack(groups: &[Vec<EngineWrite>], max: usize) -> Vec<Vec<&EngineWrite>> {
    let mut batches: Vec<Vec<&EngineWrite>> = Vec::new();
    let mut current: Vec<&EngineWrite> = Vec::new();
    for group in groups.iter().filter(|g| !g.is_empty()) {
        if current.len() + group.len() > max && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
        }
        for chunk in group.chunks(max) {
            if current.len() + chunk.len() > max {
                batches.push(std::mem::take(&mut current));
            }
            current.extend(chunk);
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
        pack(groups, max).iter().map(Vec::len).collect()
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
}
