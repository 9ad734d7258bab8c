//! Service instances: one key per running unit that declares a service
//! (`[X-Flotte-Service]`), written by the agent of the machine running it under its lease, so
//! that a dead machine's instances vanish with it.

use etcd_client::{PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::kv::{MAX_TXN_OPS, json};
use super::{Keys, Lease, Registry, RegistryError, TypedWatch};
use crate::machine::MachineId;
use crate::unit::{ServiceName, UnitName};

/// Whether an instance passes its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// It passed its last check, or it has none (running is all that is known).
    Passing,
    /// Registered, not checked yet: not listed as healthy until its first check passes.
    Unknown,
    /// It failed its check twice in a row.
    Critical,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Unknown => "unknown",
            Health::Critical => "critical",
        }
    }

    pub fn is_healthy(self) -> bool {
        self == Health::Passing
    }
}

/// Identifies an instance: one unit on one machine serving one service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId {
    pub service: ServiceName,
    pub machine: MachineId,
    pub unit: UnitName,
}

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub service: ServiceName,
    pub machine: MachineId,
    pub hostname: String,
    /// The machine's address (`public_ip`), where the service is reached.
    pub address: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<ServiceName>,
    pub unit: UnitName,
    pub health: Health,
}

impl InstanceRecord {
    pub fn id(&self) -> InstanceId {
        InstanceId {
            service: self.service.clone(),
            machine: self.machine.clone(),
            unit: self.unit.clone(),
        }
    }
}

/// Every instance, and the revision it was read at.
pub type InstancesAt = (Vec<(InstanceId, InstanceRecord)>, i64);

impl Registry {
    /// Writes (`Some`, under `lease`) and deletes (`None`) instances, in as few transactions
    /// as it takes.
    pub async fn write_instances(
        &self,
        changes: &[(InstanceId, Option<InstanceRecord>)],
        lease: &Lease,
    ) -> Result<(), RegistryError> {
        for chunk in changes.chunks(MAX_TXN_OPS) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(id, record)| {
                    let key = self.keys.instance(id);
                    match record {
                        Some(r) => {
                            TxnOp::put(key, json(r), Some(PutOptions::new().with_lease(lease.id())))
                        }
                        None => TxnOp::delete(key, None),
                    }
                })
                .collect();
            self.txn("writing service instances", Txn::new().and_then(ops))
                .await?;
        }
        Ok(())
    }

    pub async fn instances_at(&self) -> Result<InstancesAt, RegistryError> {
        self.list(self.keys.instances(), Keys::parse_instance).await
    }

    pub fn watch_instances(&self) -> TypedWatch<InstanceId, InstanceRecord> {
        self.watch(self.keys.instances(), Keys::parse_instance)
    }
}
