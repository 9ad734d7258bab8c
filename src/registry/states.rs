//! Unit states: what each agent reports about the units on its machine, under its lease.

use super::{Keys, Lease, Registry, RegistryError, TypedWatch, UnitStateRecord};
use crate::machine::MachineId;
use crate::unit::UnitName;

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

    pub async fn delete_state(
        &self,
        unit: &UnitName,
        machine: &MachineId,
    ) -> Result<(), RegistryError> {
        self.delete(self.keys.state(unit, machine)).await.map(drop)
    }

    pub async fn states(
        &self,
    ) -> Result<Vec<((UnitName, MachineId), UnitStateRecord)>, RegistryError> {
        Ok(self.list(self.keys.states(), Keys::parse_state).await?.0)
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
