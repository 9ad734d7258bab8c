//! The values stored in etcd, as JSON. Only the registry encodes and decodes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::machine::{MachineId, Metadata};
use crate::resources::Resources;
use crate::systemd::{ActiveState, LoadState};
use crate::unit::{DesiredState, Target, UnitHash, UnitOption};

/// A machine as its agent registers it, under the agent's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub id: MachineId,
    /// The address other machines and users reach it at (`public_ip`).
    pub ip: String,
    /// The metadata from the agent's configuration; API overrides are stored apart.
    pub metadata: Metadata,
    /// The flotted version that registered it.
    pub version: String,
    /// Where its API listens over TCP, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    pub hostname: String,
    /// What units' requests may add up to here: detected or configured (`capacity`), minus
    /// `reserved`. Absent from records of flotted versions before it, which count as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Resources>,
}

/// A metadata change made through the API, applied over the machine's configured metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataOverride {
    Set(String),
    Removed,
}

/// A machine's metadata as the scheduler and the API see it: its configured metadata with the
/// API's overrides applied. The engine and the API share this function so that what
/// `GET /machines` shows is what units are placed by.
pub fn effective_metadata(
    machine: &MachineRecord,
    overrides: &BTreeMap<(MachineId, String), MetadataOverride>,
) -> Metadata {
    let mut metadata = machine.metadata.clone();
    let from = (machine.id.clone(), String::new());
    for ((id, key), o) in overrides.range(from..) {
        if id != &machine.id {
            break;
        }
        match o {
            MetadataOverride::Set(v) => {
                // Overrides were validated when written; a bad one is ignored, not fatal.
                let _ = metadata.insert(key, v);
            }
            MetadataOverride::Removed => {
                metadata.remove(key);
            }
        }
    }
    metadata
}

/// A machine drained through the API: no normal unit is placed on it until it is undrained.
/// Kept apart from the machine's record (under no lease), so that it outlives agent restarts
/// and may be set before the machine registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRecord {
    /// When, in seconds since the Unix epoch, as the API's clock read it.
    pub since: u64,
}

/// A submitted unit: which content, and what the user wants of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub hash: UnitHash,
    pub desired: DesiredState,
    /// Start requests: bumped when `start` is asked of a unit already launched that is not
    /// running on its machine (stopped through a dependency, say), so that its agent starts
    /// it again. 0, and left out, until the first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A unit's content, stored once per hash: its options list (`{"options":[...]}`), or, for a
/// unit whose options list would not fit in one etcd request, the unit file's canonical text
/// (`{"text":"..."}`), which `UnitFile::from_options` keeps under `MAX_FILE_SIZE`. A list of
/// many tiny options is several times larger than its text (`{"section":"Service","name":"A",
/// "value":""}` against `A=`), so the text is the form every accepted unit fits in; the list
/// stays the usual form so that flotted versions that know only it read every unit they could
/// have stored themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ContentRecord {
    Options { options: Vec<UnitOption> },
    Text { text: String },
}

/// One unit assigned to one machine: everything its agent needs to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleEntry {
    pub hash: UnitHash,
    pub target: Target,
    /// Global units keep running when the agent loses its lease (they are not moved).
    pub global: bool,
    /// The unit's start requests (`UnitRecord::start`): the agent starts a launched unit that
    /// is not running when this differs from the one it last acted on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start: u64,
}

/// Where a unit is placed: one machine, or every machine of a global unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRecord {
    pub machines: Vec<MachineId>,
}

/// Why a unit that should run is placed nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonRecord {
    pub reason: String,
}

/// A unit's state on one machine, as that machine's agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStateRecord {
    /// The content the agent wrote for this unit.
    pub hash: UnitHash,
    /// What the agent did: linked it (`loaded`) or also started it (`launched`).
    pub current: Target,
    pub load: LoadState,
    pub active: ActiveState,
    pub sub: String,
    /// systemd's message when it refused the unit or an action on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The start request (`ScheduleEntry::start`) the agent last acted on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub started: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_and_remove_keys_of_their_machine_only() {
        let id = |c: char| MachineId::new(&c.to_string().repeat(32)).unwrap();
        let machine = MachineRecord {
            id: id('b'),
            ip: "10.0.0.2".into(),
            metadata: Metadata::parse_list("disk=hdd,region=eu").unwrap(),
            version: "0.1.0".into(),
            api: None,
            hostname: "b".into(),
            capacity: None,
        };
        let overrides = BTreeMap::from([
            (
                (id('a'), "disk".into()),
                MetadataOverride::Set("nvme".into()),
            ),
            (
                (id('b'), "disk".into()),
                MetadataOverride::Set("ssd".into()),
            ),
            ((id('b'), "region".into()), MetadataOverride::Removed),
            ((id('b'), "rack".into()), MetadataOverride::Set("r1".into())),
            (
                (id('c'), "role".into()),
                MetadataOverride::Set("edge".into()),
            ),
        ]);
        assert_eq!(
            effective_metadata(&machine, &overrides).to_string(),
            "disk=ssd,rack=r1"
        );
        assert_eq!(
            effective_metadata(&machine, &BTreeMap::new()),
            machine.metadata
        );
    }

    #[test]
    fn records_encode_as_stable_json() {
        let hash: UnitHash = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
        let entry = ScheduleEntry {
            hash,
            target: Target::Launched,
            global: false,
            start: 0,
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"hash":"0123456789abcdef0123456789abcdef01234567","target":"launched","global":false}"#
        );
        let o = MetadataOverride::Set("ssd".into());
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"set":"ssd"}"#);
        assert_eq!(
            serde_json::to_string(&MetadataOverride::Removed).unwrap(),
            r#""removed""#
        );
        let state = UnitStateRecord {
            hash,
            current: Target::Loaded,
            load: LoadState::Loaded,
            active: ActiveState::Inactive,
            sub: "dead".into(),
            message: None,
            started: 0,
        };
        let back: UnitStateRecord =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }
}
