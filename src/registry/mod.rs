//! The registry: flotte's state in etcd. The only module that knows etcd keys and value
//! encodings; everything else reads and writes typed records through it. One file per concern,
//! each with its own `impl Registry`.

mod announce;
mod changes;
mod channel;
mod connect;
mod election;
mod events;
mod instances;
mod keys;
mod kv;
mod lease;
mod machines;
mod model;
mod schedule;
mod sets;
mod states;
mod units;
mod watch;

use std::time::Duration;

use etcd_client::Client;

pub use announce::{AnnouncerRecord, ServiceEntry, ServiceKey, ServiceKeyError};
pub use connect::EtcdSettings;
pub use election::{Fence, Leadership};
pub use events::{Change, Deriver, EventBatch, EventStream, events_of};
pub use instances::{Health, InstanceId, InstanceRecord, InstancesAt};
pub use keys::{Keys, PrefixError};
pub use kv::MAX_TXN_OPS;
pub use lease::{Contact, KeepAlive, KeepAliveOptions, Lease, LossPolicy};
pub use model::{
    ContentRecord, DrainRecord, MachineRecord, MetadataOverride, PlacementRecord, ReasonRecord,
    ScheduleEntry, UnitRecord, UnitStateRecord, effective_metadata,
};
pub use schedule::{EngineWrite, StatesSeen};
pub use sets::{SetName, SetNameError, SetRecord, StoredUnit};
pub use units::ETCD_MAX_REQUEST_BYTES;
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
    #[error("the unit content at {key} is invalid: {why}")]
    InvalidContent { key: String, why: String },
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
    /// etcd refused a request as larger than it takes (its `--max-request-bytes`).
    #[error(
        "etcd refused {what} as too large ({cause}); it takes requests up to its \
         --max-request-bytes, {} KiB by default", ETCD_MAX_REQUEST_BYTES / 1024
    )]
    TooLarge { what: String, cause: String },
}

impl RegistryError {
    fn etcd(what: impl Into<String>, source: etcd_client::Error) -> Self {
        let what = what.into();
        match &source {
            etcd_client::Error::GRpcStatus(status) if is_too_large(status) => {
                RegistryError::TooLarge {
                    what,
                    cause: status.message().to_owned(),
                }
            }
            _ => RegistryError::Etcd { what, source },
        }
    }
}

/// etcd's two answers to a request over its size limit: "etcdserver: request is too large"
/// past `--max-request-bytes`, and gRPC's "received message larger than max" past that plus
/// its 512 KiB allowance.
fn is_too_large(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::InvalidArgument => status.message().contains("request is too large"),
        tonic::Code::ResourceExhausted => status.message().contains("larger than max"),
        _ => false,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_etcds_size_refusals_read_as_too_large() {
        let cases = [
            (
                tonic::Code::InvalidArgument,
                "etcdserver: request is too large",
                true,
            ),
            (
                tonic::Code::ResourceExhausted,
                "grpc: received message larger than max (2926234 vs. 2097152)",
                true,
            ),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: key is not provided",
                false,
            ),
            (
                tonic::Code::ResourceExhausted,
                "etcdserver: too many requests",
                false,
            ),
            (tonic::Code::Unavailable, "request is too large", false),
        ];
        for (code, message, too_large) in cases {
            let e = RegistryError::etcd(
                "storing unit a.service",
                etcd_client::Error::GRpcStatus(tonic::Status::new(code, message)),
            );
            assert_eq!(
                matches!(e, RegistryError::TooLarge { .. }),
                too_large,
                "{code:?} {message}"
            );
        }
        let e = RegistryError::etcd(
            "storing unit a.service",
            etcd_client::Error::GRpcStatus(tonic::Status::invalid_argument(
                "etcdserver: request is too large",
            )),
        );
        assert_eq!(
            e.to_string(),
            "etcd refused storing unit a.service as too large (etcdserver: request is too \
             large); it takes requests up to its --max-request-bytes, 1536 KiB by default"
        );
    }
}
