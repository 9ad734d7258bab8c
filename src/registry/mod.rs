//! The registry: flotte's state in etcd. The only module that knows etcd keys and value
//! encodings; everything else reads and writes typed records through it.

mod announce;
mod election;
mod keys;
mod lease;
mod model;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use announce::{AnnouncerRecord, ServiceEntry, ServiceKey, ServiceKeyError};
pub use election::{Fence, Leadership};
pub use keys::{Keys, PrefixError};
pub use lease::{KeepAlive, Lease, LossPolicy};
pub use model::{
    ContentRecord, MachineRecord, MetadataOverride, PlacementRecord, ReasonRecord, ScheduleEntry,
    UnitRecord, UnitStateRecord, effective_metadata,
};
pub use watch::{Phase, TypedWatch, Update};

use crate::machine::MachineId;
use crate::unit::{DesiredState, UnitFile, UnitHash, UnitName};

/// How to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/flotte/".into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
        }
    }
}

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
    #[error("{0}")]
    Watch(String),
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
}

impl RegistryError {
    fn etcd(what: impl Into<String>, source: etcd_client::Error) -> Self {
        RegistryError::Etcd {
            what: what.into(),
            source,
        }
    }
}

/// Unary requests that take longer than this have failed: etcd answers in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to etcd plus the key layout. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    client: Client,
    keys: Keys,
}

impl Registry {
    /// Connects and checks that etcd answers.
    pub async fn connect(settings: &EtcdSettings) -> Result<Registry, RegistryError> {
        let keys = Keys::new(&settings.prefix)?;
        // HTTP/2 pings notice a dead connection within seconds, so watches and keep-alives
        // fail over instead of hanging on a half-open TCP connection.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            options = options.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = tls_options(settings)? {
            options = options.with_tls(tls);
        }
        let endpoints = settings.endpoints.join(",");
        // etcd answers refused credentials or permissions with these codes; anything else
        // on connecting means it could not be reached (or spoke no TLS we accept).
        let failed = |e: etcd_client::Error| match &e {
            etcd_client::Error::GRpcStatus(status)
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::PermissionDenied
                        | tonic::Code::Unauthenticated
                ) =>
            {
                RegistryError::Refused {
                    endpoints: endpoints.clone(),
                    prefix: keys.prefix().to_owned(),
                    cause: status.message().to_owned(),
                }
            }
            // etcd-client's error does not expose its gRPC status as a source.
            etcd_client::Error::GRpcStatus(status) => RegistryError::Unreachable {
                endpoints: endpoints.clone(),
                cause: root_cause(status),
            },
            other => RegistryError::Unreachable {
                endpoints: endpoints.clone(),
                cause: root_cause(other),
            },
        };
        let connect = async {
            let mut client = Client::connect(&settings.endpoints, Some(options))
                .await
                .map_err(failed)?;
            client.status().await.map_err(failed)?;
            // A read under the prefix: refused credentials or permissions show here, at
            // start-up, rather than on the first real request.
            let only_one_key = GetOptions::new()
                .with_prefix()
                .with_keys_only()
                .with_limit(1);
            client
                .get(keys.prefix(), Some(only_one_key))
                .await
                .map_err(failed)?;
            Ok(Registry {
                client,
                keys: keys.clone(),
            })
        };
        timed(format!("connecting to {endpoints}"), connect).await?
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    async fn get_json<V: DeserializeOwned>(
        &self,
        key: String,
    ) -> Result<Option<(V, i64)>, RegistryError> {
        let resp = timed(
            format!("reading {key}"),
            self.client().get(key.as_str(), None),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("reading {key}"), e))?;
        match resp.kvs().first() {
            None => Ok(None),
            Some(kv) => {
                let value = serde_json::from_slice(kv.value()).map_err(|source| {
                    RegistryError::Corrupt {
                        key: key.clone(),
                        source,
                    }
                })?;
                Ok(Some((value, kv.mod_revision())))
            }
        }
    }

    /// Every decodable entry under `prefix`, with the revision read at. Entries that do not
    /// decode are logged and skipped.
    async fn list<K, V: DeserializeOwned>(
        &self,
        prefix: String,
        key: impl Fn(&Keys, &[u8]) -> Option<K>,
    ) -> Result<(Vec<(K, V)>, i64), RegistryError> {
        let resp = timed(
            format!("listing {prefix}"),
            self.client()
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("listing {prefix}"), e))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let items = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let k = key(&self.keys, kv.key());
                if k.is_none() {
                    tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "ignoring a key flotte cannot read");
                }
                Some((k?, watch::decode_value(kv.key(), kv.value())?))
            })
            .collect();
        Ok((items, revision))
    }

    async fn put_json(
        &self,
        key: String,
        value: &impl Serialize,
        lease: Option<i64>,
    ) -> Result<(), RegistryError> {
        let options = lease.map(|l| PutOptions::new().with_lease(l));
        timed(
            format!("writing {key}"),
            self.client().put(key.as_str(), json(value), options),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("writing {key}"), e))?;
        Ok(())
    }

    async fn delete(&self, key: String) -> Result<bool, RegistryError> {
        let resp = timed(
            format!("deleting {key}"),
            self.client().delete(key.as_str(), None),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("deleting {key}"), e))?;
        Ok(resp.deleted() > 0)
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<bool, RegistryError> {
        let resp = timed(what.to_owned(), self.client().txn(txn))
            .await?
            .map_err(|e| RegistryError::etcd(what.to_owned(), e))?;
        Ok(resp.succeeded())
    }

    fn watch<K, V: DeserializeOwned>(
        &self,
        prefix: String,
        key: fn(&Keys, &[u8]) -> Option<K>,
    ) -> TypedWatch<K, V> {
        TypedWatch::new(
            watch::PrefixWatch::new(self.client(), prefix),
            self.keys.clone(),
            key,
        )
    }

    // ---- machines ----

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

    // ---- units ----

    /// Stores a unit with its content in one transaction. The content is written even when
    /// that hash is already stored: the new modification revision makes a concurrent garbage
    /// collection of it fail (see `delete_content_if_unchanged`).
    pub async fn put_unit(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
    ) -> Result<UnitHash, RegistryError> {
        let (hash, ops) = self.unit_ops(name, file, desired);
        let txn = Txn::new().and_then(ops);
        self.txn(&format!("storing unit {name}"), txn).await?;
        Ok(hash)
    }

    /// Like `put_unit`, but only if the unit is still at `revision` (`None`: only if there is
    /// no such unit), so that a create or a replace never overwrites a concurrent change.
    pub async fn put_unit_at(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
        revision: Option<i64>,
    ) -> Result<UnitHash, RegistryError> {
        let (hash, ops) = self.unit_ops(name, file, desired);
        // etcd compares a missing key as if its revisions were 0.
        let expected = revision.unwrap_or(0);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                self.keys.unit(name),
                CompareOp::Equal,
                expected,
            )])
            .and_then(ops);
        if self.txn(&format!("storing unit {name}"), txn).await? {
            Ok(hash)
        } else {
            Err(RegistryError::Conflict(format!("unit {name}")))
        }
    }

    fn unit_ops(
        &self,
        name: &UnitName,
        file: &UnitFile,
        desired: DesiredState,
    ) -> (UnitHash, [TxnOp; 2]) {
        let hash = file.hash();
        let content = ContentRecord {
            options: file.options().to_vec(),
        };
        let record = UnitRecord { hash, desired };
        let ops = [
            TxnOp::put(self.keys.content(&hash), json(&content), None),
            TxnOp::put(self.keys.unit(name), json(&record), None),
        ];
        (hash, ops)
    }

    /// A unit and the revision it was last changed at.
    pub async fn unit(&self, name: &UnitName) -> Result<Option<(UnitRecord, i64)>, RegistryError> {
        self.get_json(self.keys.unit(name)).await
    }

    pub async fn units(&self) -> Result<(Vec<(UnitName, UnitRecord)>, i64), RegistryError> {
        self.list(self.keys.units(), Keys::parse_unit).await
    }

    pub fn watch_units(&self) -> TypedWatch<UnitName, UnitRecord> {
        self.watch(self.keys.units(), Keys::parse_unit)
    }

    /// Changes a unit's desired state if the unit is still at `revision`.
    pub async fn set_desired(
        &self,
        name: &UnitName,
        record: &UnitRecord,
        revision: i64,
    ) -> Result<(), RegistryError> {
        let key = self.keys.unit(name);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key.as_str(), json(record), None)]);
        if self.txn(&format!("updating unit {name}"), txn).await? {
            Ok(())
        } else {
            Err(RegistryError::Conflict(format!("unit {name}")))
        }
    }

    /// Deletes a unit; false when there was none.
    pub async fn delete_unit(&self, name: &UnitName) -> Result<bool, RegistryError> {
        self.delete(self.keys.unit(name)).await
    }

    pub async fn content(&self, hash: &UnitHash) -> Result<Option<UnitFile>, RegistryError> {
        let Some((record, _)) = self
            .get_json::<ContentRecord>(self.keys.content(hash))
            .await?
        else {
            return Ok(None);
        };
        let key = self.keys.content(hash);
        UnitFile::from_options(record.options)
            .map(Some)
            .map_err(|e| RegistryError::Watch(format!("the unit content at {key} is invalid: {e}")))
    }

    /// Hashes of every stored content and the revision each was last written at.
    pub async fn content_revisions(&self) -> Result<Vec<(UnitHash, i64)>, RegistryError> {
        let prefix = self.keys.contents();
        let resp = timed(
            format!("listing {prefix}"),
            self.client().get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("listing {prefix}"), e))?;
        Ok(resp
            .kvs()
            .iter()
            .filter_map(|kv| Some((self.keys.parse_content(kv.key())?, kv.mod_revision())))
            .collect())
    }

    /// Garbage-collects one content if nobody wrote it since `revision`.
    pub async fn delete_content_if_unchanged(
        &self,
        fence: &Fence,
        hash: &UnitHash,
        revision: i64,
    ) -> Result<bool, RegistryError> {
        let key = self.keys.content(hash);
        let txn = Txn::new()
            .when([
                fence.compare(),
                Compare::mod_revision(key.as_str(), CompareOp::Equal, revision),
            ])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.txn(&format!("collecting {key}"), txn).await
    }

    // ---- schedule, placement, reasons (the engine's output) ----

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

    // ---- unit states (the agents' reports) ----

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

    /// The revision of the latest change to units, placements, reasons or unit states: what
    /// a client waiting for units to reach a state needs to know to re-read them. One watch
    /// per subtree runs in its own task for as long as a receiver lives; the value is 0 until
    /// the first listing and never goes back.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<i64> {
        let prefixes = [
            self.keys.units(),
            self.keys.placements(),
            self.keys.reasons(),
            self.keys.states(),
        ];
        watch::latest_revision(
            prefixes
                .into_iter()
                .map(|p| watch::PrefixWatch::new(self.client(), p))
                .collect(),
        )
    }
}

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

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

/// The innermost cause of an error ("Connection refused (os error 111)"): what a user can act
/// on, without the layers of gRPC and HTTP/2 wrapping above it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records always serialize")
}

async fn timed<T>(
    what: String,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, RegistryError> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| RegistryError::Timeout(REQUEST_TIMEOUT, what))
}

fn tls_options(settings: &EtcdSettings) -> Result<Option<TlsOptions>, RegistryError> {
    let read = |what: &str, path: &PathBuf| {
        std::fs::read(path).map_err(|source| RegistryError::File {
            what: format!("{what} {}", path.display()),
            source,
        })
    };
    let uses_tls = settings.endpoints.iter().any(|e| e.starts_with("https://"));
    if !uses_tls && settings.ca_file.is_none() && settings.cert_file.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &settings.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read("etcd_cafile", ca)?));
    }
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("etcd_certfile", cert)?,
                read("etcd_keyfile", key)?,
            ));
        }
        (None, None) => {}
        _ => return Err(RegistryError::HalfIdentity),
    }
    Ok(Some(tls))
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
