//! Machines (each under its agent's lease) and the metadata overrides set through the API.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::kv::{MAX_TXN_OPS, json};
use super::{
    DrainRecord, Keys, Lease, MachineRecord, MetadataOverride, Registry, RegistryError, TypedWatch,
};
use crate::machine::MachineId;

impl Registry {
    /// Registers (or refreshes) a machine under its agent's lease.
    pub async fn register_machine(
        &self,
        record: &MachineRecord,
        lease: &Lease,
    ) -> Result<(), RegistryError> {
        self.put_json(self.keys.machine(&record.id), record, Some(lease.id()))
            .await
    }

    pub async fn machines(&self) -> Result<Vec<MachineRecord>, RegistryError> {
        let (items, _) = self
            .list::<MachineId, MachineRecord>(self.keys.machines(), Keys::parse_machine)
            .await?;
        Ok(items.into_iter().map(|(_, m)| m).collect())
    }

    /// One machine, if it is registered.
    pub async fn machine(&self, id: &MachineId) -> Result<Option<MachineRecord>, RegistryError> {
        Ok(self
            .get_json::<MachineRecord>(self.keys.machine(id))
            .await?
            .map(|(m, _)| m))
    }

    pub fn watch_machines(&self) -> TypedWatch<MachineId, MachineRecord> {
        self.watch(self.keys.machines(), Keys::parse_machine)
    }

    pub async fn metadata_overrides(
        &self,
    ) -> Result<Vec<((MachineId, String), MetadataOverride)>, RegistryError> {
        Ok(self
            .list(self.keys.metadata(), Keys::parse_metadata)
            .await?
            .0)
    }

    pub fn watch_metadata_overrides(&self) -> TypedWatch<(MachineId, String), MetadataOverride> {
        self.watch(self.keys.metadata(), Keys::parse_metadata)
    }

    pub async fn set_metadata_override(
        &self,
        id: &MachineId,
        key: &str,
        value: &MetadataOverride,
    ) -> Result<(), RegistryError> {
        self.put_json(self.keys.metadata_key(id, key), value, None)
            .await
    }

    /// Writes metadata overrides, one per machine and key, in transactions of at most
    /// `MAX_TXN_OPS` writes (a transaction cannot write one key twice, hence the map).
    pub async fn set_metadata_overrides(
        &self,
        overrides: &BTreeMap<(MachineId, String), MetadataOverride>,
    ) -> Result<(), RegistryError> {
        let ops: Vec<TxnOp> = overrides
            .iter()
            .map(|((id, key), value)| {
                TxnOp::put(self.keys.metadata_key(id, key), json(value), None)
            })
            .collect();
        for batch in ops.chunks(MAX_TXN_OPS) {
            let txn = Txn::new().and_then(batch.to_vec());
            self.txn("writing metadata overrides", txn).await?;
        }
        Ok(())
    }

    /// Marks a machine drained; false when it already was (the first mark is kept).
    pub async fn drain(&self, id: &MachineId, record: &DrainRecord) -> Result<bool, RegistryError> {
        let key = self.keys.drain(id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), json(record), None)]);
        self.txn(&format!("draining machine {id}"), txn).await
    }

    /// Lifts a drain; false when the machine was not drained.
    pub async fn undrain(&self, id: &MachineId) -> Result<bool, RegistryError> {
        self.delete(self.keys.drain(id)).await
    }

    pub async fn drains(&self) -> Result<Vec<(MachineId, DrainRecord)>, RegistryError> {
        Ok(self.list(self.keys.drains(), Keys::parse_drain).await?.0)
    }

    pub fn watch_drains(&self) -> TypedWatch<MachineId, DrainRecord> {
        self.watch(self.keys.drains(), Keys::parse_drain)
    }
}
