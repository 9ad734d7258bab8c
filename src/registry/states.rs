//! Unit states: what each agent reports about the units on its machine, under its lease.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::kv::{MAX_TXN_OPS, json};
use super::{Keys, Lease, Registry, RegistryError, TypedWatch, UnitStateRecord};
use crate::machine::MachineId;
use crate::unit::UnitName;

/// Every unit state, and the revision it was read at.
pub type StatesAt = (Vec<((UnitName, MachineId), UnitStateRecord)>, i64);

impl Registry {
    pub async fn put_state(
        &self,
        unit: &UnitName,
        machine: &MachineId,
        record: &UnitStateRecord,
        lease: &Lease,
    ) -> Result<(), RegistryError> {
        self.put_json(self.keys.state(unit, machine), record, Some(lease.id()))
            .await
    }

    /// Writes (`Some`) and deletes (`None`) one machine's unit states, as few transactions
    /// of at most `MAX_TXN_OPS` as it takes: a pass over hundreds of units is a handful of
    /// requests, not one each. Written states live under the agent's `lease`.
    pub async fn write_states(
        &self,
        machine: &MachineId,
        changes: &[(UnitName, Option<UnitStateRecord>)],
        lease: &Lease,
    ) -> Result<(), RegistryError> {
        for chunk in changes.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(unit, record)| {
                    let key = self.keys.state(unit, machine);
                    match record {
                        Some(r) => {
                            TxnOp::put(key, json(r), Some(PutOptions::new().with_lease(lease.id())))
                        }
                        None => TxnOp::delete(key, None),
                    }
                })
                .collect();
            self.txn("writing unit states", Txn::new().and_then(ops))
                .await?;
        }
        Ok(())
    }

    /// Writes one machine's intent records (`agent::intent`) in one transaction under the
    /// agent's `lease`, only if every one of those units is still scheduled on `machine`:
    /// `Ok(false)`, and nothing written, when the engine removed one of their schedule entries
    /// first (it is moving that unit away). At most `MAX_TXN_OPS` records (etcd refuses more).
    pub async fn write_intents(
        &self,
        machine: &MachineId,
        intents: &[(UnitName, UnitStateRecord)],
        lease: &Lease,
    ) -> Result<bool, RegistryError> {
        let compares: Vec<Compare> = intents
            .iter()
            .map(|(unit, _)| {
                Compare::version(self.keys.schedule(machine, unit), CompareOp::Greater, 0)
            })
            .collect();
        let puts: Vec<TxnOp> = intents
            .iter()
            .map(|(unit, record)| {
                TxnOp::put(
                    self.keys.state(unit, machine),
                    json(record),
                    Some(PutOptions::new().with_lease(lease.id())),
                )
            })
            .collect();
        self.txn(
            "writing intent records",
            Txn::new().when(compares).and_then(puts),
        )
        .await
    }

    pub async fn states(
        &self,
    ) -> Result<Vec<((UnitName, MachineId), UnitStateRecord)>, RegistryError> {
        Ok(self.states_at().await?.0)
    }

    /// Every state, with the etcd revision they were read at.
    pub async fn states_at(&self) -> Result<StatesAt, RegistryError> {
        self.list(self.keys.states(), Keys::parse_state).await
    }

    pub async fn states_of(
        &self,
        unit: &UnitName,
    ) -> Result<Vec<((UnitName, MachineId), UnitStateRecord)>, RegistryError> {
        Ok(self
            .list(self.keys.states_of(unit), Keys::parse_state)
            .await?
            .0)
    }

    pub fn watch_states(&self) -> TypedWatch<(UnitName, MachineId), UnitStateRecord> {
        self.watch(self.keys.states(), Keys::parse_state)
    }
}
