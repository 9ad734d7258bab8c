//! The registry: flotte's state in etcd. The only module that knows etcd keys and value
//! encodings; everything else reads and writes typed records through it. One file per concern,
//! each with its own `impl Registry`.

mod announce;
mod changes;
mod connect;
mod election;
mod events;
mod keys;
mod kv;
mod lease;
mod machines;
mod model;
mod schedule;
mod states;
mod units;
mod watch;

use std::time::Duration;

use etcd_client::Client;

use crate::unit::OptionError;

pub use announce::{AnnouncerRecord, ServiceEntry, ServiceKey, ServiceKeyError};
pub use connect::EtcdSettings;
pub use election::{Fence, Leadership};
pub use events::{Change, Deriver, EventBatch, EventStream, events_of};
pub use keys::{Keys, PrefixError};
pub use kv::MAX_TXN_OPS;
pub use lease::{KeepAlive, Lease, LossPolicy};
pub use model::{
    ContentRecord, MachineRecord, MetadataOverride, PlacementRecord, ReasonRecord, ScheduleEntry,
    UnitRecord, UnitStateRecord, effective_metadata,
};
pub use schedule::EngineWrite;
pub use watch::{Phase, TypedWatch, Update};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("cannot read {what}: {source}")]
    File {
        what: String,
        source: std::io::Error,
    },
    #[error("etcd_certfile and etcd_keyfile must be given together")]
    HalfIdentity,
    #[error("etcd at {endpoints} is unreachable: {cause}")]
    Unreachable { endpoints: String, cause: String },
    #[error("etcd at {endpoints} refused to let flotte read {prefix}: {cause}")]
    Refused {
        endpoints: String,
        prefix: String,
        cause: String,
    },
    #[error("etcd request timed out after {0:?}: {1}")]
    Timeout(Duration, String),
    #[error("{what}: {source}")]
    Etcd {
        what: String,
        source: etcd_client::Error,
    },
    /// A watch etcd did not create, canceled or ended.
    #[error("{0}")]
    Watch(String),
    /// Stored unit content that is no valid unit file (written to etcd by something else).
    #[error("the unit content at {key} is invalid: {source}")]
    InvalidContent { key: String, source: OptionError },
    #[error("etcd answered the campaign for engine without a leader key")]
    NoLeaderKey,
    #[error("the value at {key} cannot be read: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    /// A fenced write was refused: this engine is no longer the leader.
    #[error("not the leader any more: the engine's write was fenced off")]
    Fenced,
    /// A compare-and-swap lost against a concurrent writer.
    #[error("{0} changed concurrently")]
    Conflict(String),
    #[error("lease {0:x} is gone")]
    LeaseGone(i64),
    /// etcd no longer keeps the history after this revision.
    #[error(
        "etcd revision {revision} is compacted: the history after it is gone; resume from a later revision, or follow from now"
    )]
    Compacted { revision: i64 },
    #[error("etcd revision {revision} is ahead of etcd's current revision")]
    FutureRevision { revision: i64 },
}

impl RegistryError {
    fn etcd(what: impl Into<String>, source: etcd_client::Error) -> Self {
        RegistryError::Etcd {
            what: what.into(),
            source,
        }
    }
}

/// A connection to etcd plus the key layout. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    keys: Keys,
}

impl Registry {
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}
