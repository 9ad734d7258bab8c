//! Resumable prefix watches: list, then watch from the next revision; after a broken stream,
//! resume from the last revision seen; after compaction lost that history, list again.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use crate::backoff::Backoff;

use super::RegistryError;
use super::keys::Keys;

/// Where a watch stands. Changes only through `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Read the whole prefix (at the start, and when history was compacted away).
    List,
    /// Open a watch stream starting at revision `from`.
    Open { from: i64 },
    /// The stream is open; the next event has revision `from` or later.
    Watching { from: i64 },
}

/// What happened to a watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Listed {
        revision: i64,
    },
    Opened,
    Events {
        revision: i64,
    },
    /// The server no longer has the history we asked for.
    Compacted,
    /// The stream failed or ended; nothing is known to be lost.
    Broken,
}

pub fn step(phase: Phase, input: Input) -> Phase {
    match (phase, input) {
        (_, Input::Compacted) => Phase::List,
        (_, Input::Listed { revision }) => Phase::Open { from: revision + 1 },
        (Phase::Open { from }, Input::Opened) => Phase::Watching { from },
        (Phase::Watching { from }, Input::Events { revision }) => Phase::Watching {
            from: from.max(revision + 1),
        },
        (Phase::List, _) => Phase::List,
        (Phase::Open { from } | Phase::Watching { from }, Input::Broken) => Phase::Open { from },
        // Events or an open confirmation out of turn: reopen where we stand.
        (Phase::Open { from } | Phase::Watching { from }, _) => Phase::Open { from },
    }
}

/// Raw changes under a prefix.
#[derive(Debug)]
pub enum RawUpdate {
    /// The complete contents of the prefix at `revision`; replaces everything known before.
    Reset {
        kvs: Vec<(Vec<u8>, Vec<u8>)>,
        revision: i64,
    },
    /// Changes at `revision`, in order; `None` is a deletion.
    Changes {
        changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        revision: i64,
    },
}

pub struct PrefixWatch {
    client: Client,
    prefix: String,
    phase: Phase,
    stream: Option<WatchStream>,
}

impl PrefixWatch {
    pub fn new(client: Client, prefix: String) -> Self {
        Self {
            client,
            prefix,
            phase: Phase::List,
            stream: None,
        }
    }

    fn advance(&mut self, input: Input) {
        self.phase = step(self.phase.clone(), input);
        if matches!(self.phase, Phase::List | Phase::Open { .. }) {
            self.stream = None;
        }
    }

    /// The next update. An error leaves the watch resumable: call `next` again (after a
    /// backoff) and it continues from where it stood.
    pub async fn next(&mut self) -> Result<RawUpdate, RegistryError> {
        loop {
            match self.phase.clone() {
                Phase::List => {
                    let resp = super::kv::timed(
                        "range",
                        format!("listing {}", self.prefix),
                        self.client
                            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix())),
                    )
                    .await?
                    .map_err(|e| RegistryError::etcd(format!("listing {}", self.prefix), e))?;
                    let revision = resp.header().map_or(0, |h| h.revision());
                    let kvs = resp
                        .kvs()
                        .iter()
                        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                        .collect();
                    self.advance(Input::Listed { revision });
                    return Ok(RawUpdate::Reset { kvs, revision });
                }
                Phase::Open { from } => {
                    let options = WatchOptions::new().with_prefix().with_start_revision(from);
                    let opened = async {
                        let mut stream = self
                            .client
                            .watch(self.prefix.as_str(), Some(options))
                            .await?;
                        let first = stream.message().await?;
                        Ok::<_, etcd_client::Error>((stream, first))
                    };
                    // Bounded: a member that cannot serve it now (frozen, electing) must
                    // not hold the watch; reopening may find another.
                    let opened = tokio::time::timeout(super::kv::REQUEST_TIMEOUT, opened);
                    match opened.await.unwrap_or_else(|_| {
                        Err(etcd_client::Error::WatchError(format!(
                            "no answer within {:?}",
                            super::kv::REQUEST_TIMEOUT
                        )))
                    }) {
                        Ok((stream, Some(resp))) if resp.created() && !resp.canceled() => {
                            self.stream = Some(stream);
                            self.advance(Input::Opened);
                        }
                        Ok((_, Some(resp))) if resp.compact_revision() > 0 => {
                            self.advance(Input::Compacted);
                        }
                        Ok((_, resp)) => {
                            self.advance(Input::Broken);
                            let why = resp.map_or("stream closed".to_owned(), |r| {
                                r.cancel_reason().to_owned()
                            });
                            return Err(RegistryError::Watch(format!(
                                "watch on {} not created: {why}",
                                self.prefix
                            )));
                        }
                        Err(e) => {
                            self.advance(Input::Broken);
                            return Err(RegistryError::etcd(
                                format!("watching {}", self.prefix),
                                e,
                            ));
                        }
                    }
                }
                Phase::Watching { .. } => {
                    let stream = self.stream.as_mut().expect("a watching phase has a stream");
                    match stream.message().await {
                        Ok(Some(resp)) if resp.canceled() || resp.compact_revision() > 0 => {
                            if resp.compact_revision() > 0 {
                                self.advance(Input::Compacted);
                            } else {
                                self.advance(Input::Broken);
                                return Err(RegistryError::Watch(format!(
                                    "watch on {} canceled: {}",
                                    self.prefix,
                                    resp.cancel_reason()
                                )));
                            }
                        }
                        Ok(Some(resp)) => {
                            if resp.events().is_empty() {
                                continue; // progress notification
                            }
                            let revision = resp
                                .events()
                                .iter()
                                .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
                                .max()
                                .unwrap_or(0);
                            let changes = resp
                                .events()
                                .iter()
                                .filter_map(|e| {
                                    let kv = e.kv()?;
                                    let value = match e.event_type() {
                                        EventType::Put => Some(kv.value().to_vec()),
                                        EventType::Delete => None,
                                    };
                                    Some((kv.key().to_vec(), value))
                                })
                                .collect();
                            self.advance(Input::Events { revision });
                            return Ok(RawUpdate::Changes { changes, revision });
                        }
                        Ok(None) => {
                            self.advance(Input::Broken);
                            return Err(RegistryError::Watch(format!(
                                "watch on {} ended",
                                self.prefix
                            )));
                        }
                        Err(e) => {
                            self.advance(Input::Broken);
                            return Err(RegistryError::etcd(
                                format!("watching {}", self.prefix),
                                e,
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// Typed changes under a prefix.
#[derive(Debug)]
pub enum Update<K, V> {
    /// Everything under the prefix; replaces what was known.
    Reset(Vec<(K, V)>),
    /// Changes in order; `None` is a deletion.
    Changes(Vec<(K, Option<V>)>),
}

impl<K: Ord, V> Update<K, V> {
    /// Brings `map`, a copy of the prefix, up to date with this update.
    pub fn apply_to(self, map: &mut std::collections::BTreeMap<K, V>) {
        match self {
            Update::Reset(items) => *map = items.into_iter().collect(),
            Update::Changes(changes) => {
                for (k, v) in changes {
                    match v {
                        Some(v) => map.insert(k, v),
                        None => map.remove(&k),
                    };
                }
            }
        }
    }
}

/// A `PrefixWatch` whose keys and values are decoded. An entry that does not decode is logged
/// and skipped: one bad value never hides the others.
pub struct TypedWatch<K, V> {
    raw: PrefixWatch,
    keys: Keys,
    key: fn(&Keys, &[u8]) -> Option<K>,
    value: fn(&[u8], &[u8]) -> Option<V>,
    revision: i64,
}

impl<K, V: DeserializeOwned> TypedWatch<K, V> {
    /// A watch of JSON records.
    pub(super) fn new(raw: PrefixWatch, keys: Keys, key: fn(&Keys, &[u8]) -> Option<K>) -> Self {
        Self::decoded_by(raw, keys, key, decode_value::<V>)
    }
}

impl<K, V> TypedWatch<K, V> {
    /// A watch whose values `value` decodes (given the raw key, for messages).
    pub(super) fn decoded_by(
        raw: PrefixWatch,
        keys: Keys,
        key: fn(&Keys, &[u8]) -> Option<K>,
        value: fn(&[u8], &[u8]) -> Option<V>,
    ) -> Self {
        Self {
            raw,
            keys,
            key,
            value,
            revision: 0,
        }
    }

    /// The revision of the last update returned.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub async fn next(&mut self) -> Result<Update<K, V>, RegistryError> {
        let update = self.raw.next().await?;
        Ok(match update {
            RawUpdate::Reset { kvs, revision } => {
                self.revision = revision;
                Update::Reset(
                    kvs.iter()
                        .filter_map(|(k, v)| Some((self.decode_key(k)?, (self.value)(k, v)?)))
                        .collect(),
                )
            }
            RawUpdate::Changes { changes, revision } => {
                self.revision = revision;
                Update::Changes(
                    changes
                        .iter()
                        .filter_map(|(k, v)| {
                            let key = self.decode_key(k)?;
                            match v {
                                Some(v) => Some((key, Some((self.value)(k, v)?))),
                                None => Some((key, None)),
                            }
                        })
                        .collect(),
                )
            }
        })
    }

    /// Follows the watch, keeping a copy of the prefix in `map`, until `done` returns a value
    /// for it. Errors are retried (the watch resumes where it stood); bound the wait with a
    /// timeout.
    pub async fn until<T>(
        &mut self,
        map: &mut std::collections::BTreeMap<K, V>,
        mut done: impl FnMut(&std::collections::BTreeMap<K, V>) -> Option<T>,
    ) -> T
    where
        K: Ord,
    {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            match self.next().await {
                Ok(update) => {
                    backoff.reset();
                    update.apply_to(map);
                    if let Some(t) = done(map) {
                        return t;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watch failed; resuming");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    fn decode_key(&self, raw: &[u8]) -> Option<K> {
        let key = (self.key)(&self.keys, raw);
        if key.is_none() {
            tracing::warn!(key = %String::from_utf8_lossy(raw), "ignoring a key flotte cannot read");
        }
        key
    }
}

impl<K: Send + 'static, V: Send + 'static> TypedWatch<K, V> {
    /// Runs the watch in a task of its own and hands its updates over a channel, so that the
    /// consumer's loop only ever waits on channels. Failures are logged and retried with
    /// backoff; the watch resumes where it stood. The task ends when the receiver is dropped.
    pub fn spawn(self, what: &'static str) -> mpsc::Receiver<Update<K, V>> {
        self.spawn_as(what, |update, _| update)
    }

    /// `spawn`, handing over each update with its revision (`revision`): once a consumer
    /// applied it, its copy holds every change of the prefix up to that revision.
    pub fn spawn_with_revisions(self, what: &'static str) -> mpsc::Receiver<(Update<K, V>, i64)> {
        self.spawn_as(what, |update, revision| (update, revision))
    }

    fn spawn_as<T: Send + 'static>(
        mut self,
        what: &'static str,
        hand: fn(Update<K, V>, i64) -> T,
    ) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    update = self.next() => match update {
                        Ok(update) => {
                            backoff.reset();
                            if tx.send(hand(update, self.revision)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(watch = what, error = %e, retry_in = ?delay, "watch failed");
                            tokio::time::sleep(delay).await;
                        }
                    },
                }
            }
        });
        rx
    }
}

/// Follows `watches` in a task each and publishes the highest revision any of them reached
/// (listed at or saw a change at). Failures are logged and retried with backoff. The tasks
/// end when the last receiver is dropped.
pub(super) fn latest_revision(watches: Vec<PrefixWatch>) -> watch::Receiver<i64> {
    let (tx, rx) = watch::channel(0);
    let tx = Arc::new(tx);
    for mut raw in watches {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            loop {
                let update = tokio::select! {
                    _ = tx.closed() => return,
                    update = raw.next() => update,
                };
                match update {
                    Ok(RawUpdate::Reset { revision, .. } | RawUpdate::Changes { revision, .. }) => {
                        backoff.reset();
                        tx.send_if_modified(|latest| {
                            let newer = revision > *latest;
                            if newer {
                                *latest = revision;
                            }
                            newer
                        });
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(prefix = %raw.prefix, error = %e, retry_in = ?delay, "watch failed");
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        });
    }
    rx
}

pub(super) fn decode_value<V: DeserializeOwned>(key: &[u8], value: &[u8]) -> Option<V> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "ignoring a value flotte cannot read");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_lists_then_opens_after_the_listed_revision() {
        let p = step(Phase::List, Input::Listed { revision: 10 });
        assert_eq!(p, Phase::Open { from: 11 });
        assert_eq!(step(p, Input::Opened), Phase::Watching { from: 11 });
    }

    #[test]
    fn events_advance_the_resume_point_and_never_move_it_back() {
        let p = step(Phase::Watching { from: 11 }, Input::Events { revision: 15 });
        assert_eq!(p, Phase::Watching { from: 16 });
        assert_eq!(
            step(p, Input::Events { revision: 12 }),
            Phase::Watching { from: 16 }
        );
    }

    #[test]
    fn a_broken_stream_resumes_where_it_stood() {
        assert_eq!(
            step(Phase::Watching { from: 16 }, Input::Broken),
            Phase::Open { from: 16 }
        );
        assert_eq!(
            step(Phase::Open { from: 16 }, Input::Broken),
            Phase::Open { from: 16 }
        );
        assert_eq!(step(Phase::List, Input::Broken), Phase::List);
    }

    #[test]
    fn compaction_forces_a_new_list_from_any_phase() {
        for p in [
            Phase::List,
            Phase::Open { from: 3 },
            Phase::Watching { from: 3 },
        ] {
            assert_eq!(step(p, Input::Compacted), Phase::List);
        }
    }

    #[test]
    fn inputs_out_of_turn_reopen_the_stream() {
        assert_eq!(
            step(Phase::Open { from: 5 }, Input::Events { revision: 9 }),
            Phase::Open { from: 5 }
        );
        assert_eq!(
            step(Phase::Watching { from: 5 }, Input::Opened),
            Phase::Open { from: 5 }
        );
        assert_eq!(step(Phase::List, Input::Opened), Phase::List);
    }
}
