//! The generic requests every concern builds on: typed reads, listings, writes, deletes,
//! transactions and watches, each unary request under a timeout.

use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions, Txn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::watch::{self, TypedWatch};
use super::{Keys, Registry, RegistryError};

/// Unary requests that take longer than this have failed: etcd answers in milliseconds, but
/// holds a request sent to a member whose leader just died for its own 7 s (5 s and two
/// election timeouts) before answering "request timed out"; by then a new leader has long been
/// elected, and a retry succeeds.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// For the small lease requests (grant, revoke, time-to-live): a new engine term or a
/// registration waits no longer than this behind a request lost with a dead leader.
pub(super) const LEASE_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

impl Registry {
    pub(super) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(super) async fn get_json<V: DeserializeOwned>(
        &self,
        key: String,
    ) -> Result<Option<(V, i64)>, RegistryError> {
        let resp = timed(
            "range",
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
    /// etcd's current revision, from one read of a single key that holds nothing (flotte's
    /// prefix itself): whether anything changed since a revision seen before.
    pub async fn revision(&self) -> Result<i64, RegistryError> {
        let prefix = self.keys.prefix();
        let resp = timed(
            "range",
            "reading the revision".to_owned(),
            self.client().get(prefix, None),
        )
        .await?
        .map_err(|e| RegistryError::etcd("reading the revision".to_owned(), e))?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Every key under `prefix`, in one range request.
    pub(super) async fn range_prefix(
        &self,
        prefix: &str,
    ) -> Result<etcd_client::GetResponse, RegistryError> {
        timed(
            "range",
            format!("listing {prefix}"),
            self.client()
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("listing {prefix}"), e))
    }

    pub(super) async fn list<K, V: DeserializeOwned>(
        &self,
        prefix: String,
        key: impl Fn(&Keys, &[u8]) -> Option<K>,
    ) -> Result<(Vec<(K, V)>, i64), RegistryError> {
        let resp = self.range_prefix(&prefix).await?;
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

    pub(super) async fn put_json(
        &self,
        key: String,
        value: &impl Serialize,
        lease: Option<i64>,
    ) -> Result<(), RegistryError> {
        let options = lease.map(|l| PutOptions::new().with_lease(l));
        timed(
            "put",
            format!("writing {key}"),
            self.client().put(key.as_str(), json(value), options),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("writing {key}"), e))?;
        Ok(())
    }

    pub(super) async fn delete(&self, key: String) -> Result<bool, RegistryError> {
        let resp = timed(
            "delete_range",
            format!("deleting {key}"),
            self.client().delete(key.as_str(), None),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("deleting {key}"), e))?;
        Ok(resp.deleted() > 0)
    }

    pub(super) async fn txn(&self, what: &str, txn: Txn) -> Result<bool, RegistryError> {
        Ok(self.txn_response(what, txn).await?.succeeded())
    }

    /// `txn`, with etcd's whole answer (the responses of its operations).
    pub(super) async fn txn_response(
        &self,
        what: &str,
        txn: Txn,
    ) -> Result<etcd_client::TxnResponse, RegistryError> {
        timed("txn", what.to_owned(), self.client().txn(txn))
            .await?
            .map_err(|e| RegistryError::etcd(what.to_owned(), e))
    }

    pub(super) fn watch<K, V: DeserializeOwned>(
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
}

pub(super) fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("registry records always serialize")
}

/// Runs one unary etcd request of kind `op` (etcd's RPC, for the metrics: `range`, `put`,
/// `txn`, ...) under the request timeout, and records its latency and whether it failed.
pub(super) async fn timed<T, E>(
    op: &'static str,
    what: String,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, RegistryError> {
    timed_within(REQUEST_TIMEOUT, op, what, fut).await
}

/// `timed` with a timeout of its own.
pub(super) async fn timed_within<T, E>(
    timeout: Duration,
    op: &'static str,
    what: String,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, RegistryError> {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(timeout, fut).await;
    crate::metrics::etcd_request(op, started, matches!(outcome, Ok(Ok(_))));
    outcome.map_err(|_| RegistryError::Timeout(timeout, what))
}
