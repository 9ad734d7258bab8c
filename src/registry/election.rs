//! The engine election, through etcd's election API, and the fence every engine write carries.

use etcd_client::{Compare, CompareOp};

use super::{Lease, Registry, RegistryError};
use crate::machine::MachineId;

/// Proof of leadership: the election key this engine created and its creation revision. A
/// transaction comparing them fails once the key is gone (lease expired or revoked), so a
/// deposed leader's late write cannot land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    key: Vec<u8>,
    revision: i64,
}

impl Fence {
    pub(super) fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.revision)
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }
}

/// An engine's term: its fence and the lease that carries it.
#[derive(Debug, Clone)]
pub struct Leadership {
    pub fence: Fence,
    pub lease: Lease,
}

impl Registry {
    /// Waits until this machine is elected engine under `lease`.
    pub async fn campaign(
        &self,
        lease: &Lease,
        machine: &MachineId,
    ) -> Result<Leadership, RegistryError> {
        let resp = self
            .client()
            .campaign(self.keys.election(), machine.as_str(), lease.id())
            .await
            .map_err(|e| RegistryError::etcd("campaigning for engine", e))?;
        let leader = resp.leader().ok_or(RegistryError::NoLeaderKey)?;
        Ok(Leadership {
            fence: Fence {
                key: leader.key().to_vec(),
                revision: leader.rev(),
            },
            lease: *lease,
        })
    }

    /// The machine currently leading, if any.
    pub async fn leader(&self) -> Result<Option<MachineId>, RegistryError> {
        match self.client().leader(self.keys.election()).await {
            Ok(resp) => Ok(resp
                .kv()
                .and_then(|kv| std::str::from_utf8(kv.value()).ok())
                .and_then(|v| MachineId::new(v).ok())),
            // etcd answers "election: no leader" as an error.
            Err(e) if e.to_string().contains("no leader") => Ok(None),
            Err(e) => Err(RegistryError::etcd("reading the engine leader", e)),
        }
    }
}
