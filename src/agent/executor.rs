//! The executor: carries out a pass's actions on systemd and the units directory, phase by
//! phase (stops, file changes, at most one reload, starts), each phase's calls sent to systemd
//! together, so that a pass over hundreds of units costs a few round trips, not hundreds.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::path::PathBuf;

use futures_util::future::join_all;

use super::{Action, ActionError, Agent};
use crate::systemd::{ActiveState, SystemdError, UnitManager};
use crate::unit::{Target, UnitFile, UnitHash, UnitName};

/// One pass's actions by phase, in the order the plan gives them.
#[derive(Default)]
struct Phases {
    /// Stop and keep (`Stop`).
    stop: Vec<UnitName>,
    /// Stop, unlink, remove (`Unload`).
    unload: Vec<UnitName>,
    load: Vec<(UnitName, UnitHash)>,
    reload: bool,
    start: Vec<UnitName>,
    restart: Vec<UnitName>,
}

impl Phases {
    fn of(actions: Vec<Action>) -> Phases {
        let mut p = Phases::default();
        for action in actions {
            match action {
                Action::Stop(u) => p.stop.push(u),
                Action::Unload(u) => p.unload.push(u),
                Action::Load(u, h) => p.load.push((u, h)),
                Action::Reload => p.reload = true,
                Action::Start(u) => p.start.push(u),
                Action::Restart(u) => p.restart.push(u),
            }
        }
        p
    }
}

impl<M: UnitManager> Agent<M> {
    /// Carries out the actions. A failure affects only its unit: it is recorded, retried later
    /// with backoff, and the other units go on. Returns the units touched.
    pub(super) async fn execute(&mut self, actions: Vec<Action>) -> Vec<UnitName> {
        let p = Phases::of(actions);
        let mut touched: BTreeSet<UnitName> = BTreeSet::new();
        let mut failed: BTreeSet<UnitName> = BTreeSet::new();

        // Stop jobs, all queued at once.
        let stopping: Vec<&UnitName> = p.stop.iter().chain(&p.unload).collect();
        let results = join_all(stopping.iter().map(|u| self.systemd.stop(u))).await;
        crate::metrics::agent_actions("stop", &results);
        for (u, result) in stopping.into_iter().zip(results) {
            touched.insert(u.clone());
            if let Err(e) = result {
                self.fail(u, e.into());
                failed.insert(u.clone());
            }
        }
        for u in p.stop.iter().filter(|u| !failed.contains(*u)) {
            self.succeed(u);
            self.observed.entry(u.clone()).or_default().done = Some(Target::Loaded);
        }

        // Unloads: one unlink call, then the files.
        let unload: Vec<UnitName> = p
            .unload
            .iter()
            .filter(|u| !failed.contains(*u))
            .cloned()
            .collect();
        // A failed unit would linger in systemd as `failed` after it is gone from here; one
        // not read yet might be failed too.
        let mut lingering: Vec<UnitName> = Vec::new();
        for (u, result) in self.unlink(&unload).await {
            let result = result.and_then(|()| {
                self.units.remove(&u).map_err(|source| ActionError::File {
                    what: "removing",
                    path: self.units.path(&u),
                    source,
                })
            });
            crate::metrics::agent_action("unload", result.is_ok());
            match result {
                Ok(()) => {
                    self.succeed(&u);
                    let seen = self.observed.remove(&u).and_then(|o| o.status);
                    if seen.is_none_or(|s| s.active == ActiveState::Failed) {
                        lingering.push(u);
                    }
                }
                Err(e) => {
                    self.fail(&u, e);
                    failed.insert(u);
                }
            }
        }

        // Loads: write the files, then one link call.
        let contents = self.contents_of(p.load.iter().map(|(_, h)| *h)).await;
        let mut written: Vec<(UnitName, UnitHash, PathBuf)> = Vec::new();
        for (u, hash) in &p.load {
            touched.insert(u.clone());
            let result = match contents.get(hash) {
                Some(Ok(file)) => self
                    .units
                    .write(u, file)
                    .map_err(|source| ActionError::File {
                        what: "writing",
                        path: self.units.path(u),
                        source,
                    }),
                Some(Err(cause)) => Err(ActionError::ContentUnreadable {
                    hash: *hash,
                    cause: cause.clone(),
                }),
                None => Err(ActionError::MissingContent(*hash)),
            };
            match result {
                Ok(path) => written.push((u.clone(), *hash, path)),
                Err(e) => {
                    crate::metrics::agent_action("load", false);
                    self.fail(u, e);
                    failed.insert(u.clone());
                }
            }
        }
        let paths: Vec<PathBuf> = written.iter().map(|(_, _, p)| p.clone()).collect();
        let t = std::time::Instant::now();
        let linked = self.link(&paths).await;
        crate::metrics::agent_actions("load", &linked);
        tracing::debug!(files = paths.len(), took = ?t.elapsed(), "linked");
        for ((u, hash, _), result) in written.into_iter().zip(linked) {
            match result {
                Ok(()) => {
                    self.succeed(&u);
                    let o = self.observed.entry(u).or_default();
                    o.file = Some(hash);
                    o.done = o.done.or(Some(Target::Loaded));
                }
                Err(e) => {
                    self.fail(&u, e);
                    failed.insert(u);
                }
            }
        }

        if p.reload
            && let Err(e) = self.systemd.reload().await
        {
            // Without a reload, starts would use stale files: stop this pass here.
            tracing::warn!(error = %e, "daemon reload failed");
            for u in self.managed() {
                self.fail(&u, ActionError::Reload(e.to_string()));
            }
            return touched.into_iter().collect();
        }

        // Start and restart jobs, all queued at once.
        let start: Vec<&UnitName> = p.start.iter().filter(|u| !failed.contains(*u)).collect();
        let restart: Vec<&UnitName> = p.restart.iter().filter(|u| !failed.contains(*u)).collect();
        let t = std::time::Instant::now();
        let (started, restarted) = tokio::join!(
            join_all(start.iter().map(|u| self.systemd.start(u))),
            join_all(restart.iter().map(|u| self.systemd.restart(u))),
        );
        tracing::debug!(jobs = started.len() + restarted.len(), took = ?t.elapsed(), "started");
        crate::metrics::agent_actions("start", &started);
        crate::metrics::agent_actions("restart", &restarted);
        let results = started.into_iter().chain(restarted);
        for (u, result) in start.into_iter().chain(restart).zip(results) {
            touched.insert(u.clone());
            match result {
                Ok(()) => {
                    self.succeed(u);
                    let observed = self.observed.entry(u.clone()).or_default();
                    observed.done = Some(Target::Launched);
                    observed.started = self.desired.get(u).map(|e| e.start);
                }
                Err(e) => self.fail(u, e.into()),
            }
        }

        // After the reload, so that systemd forgets the failed units for good.
        for (u, result) in lingering
            .iter()
            .zip(join_all(lingering.iter().map(|u| self.systemd.reset_failed(u))).await)
        {
            if let Err(e) = result {
                tracing::debug!(unit = %u, error = %e, "reset-failed");
            }
        }
        touched.into_iter().collect()
    }

    /// Links the files in one call (one by one when systemd refuses the batch), with each
    /// file's outcome.
    async fn link(&self, paths: &[PathBuf]) -> Vec<Result<(), ActionError>> {
        in_one_call(paths, |batch| self.systemd.link_runtime(batch)).await
    }

    /// Unlinks the units in one call (one by one when the batch is refused), with each unit's
    /// outcome.
    async fn unlink(&self, names: &[UnitName]) -> Vec<(UnitName, Result<(), ActionError>)> {
        let results = in_one_call(names, |batch| self.systemd.unlink_runtime(batch)).await;
        names.iter().cloned().zip(results).collect()
    }

    /// The contents of these hashes: from the cache, the rest read from etcd in batches. A
    /// content etcd does not have is absent; one that could not be read has the cause.
    async fn contents_of(
        &mut self,
        hashes: impl Iterator<Item = UnitHash>,
    ) -> BTreeMap<UnitHash, Result<UnitFile, String>> {
        let wanted: HashSet<UnitHash> = hashes.collect();
        let missing: Vec<UnitHash> = wanted
            .iter()
            .filter(|h| !self.contents.contains_key(*h))
            .copied()
            .collect();
        let read = self.registry.contents(&missing).await;
        let mut out = BTreeMap::new();
        for (hash, result) in read {
            match result {
                Ok(Some(file)) => {
                    self.contents.insert(hash, file);
                }
                // Missing: absent from the map.
                Ok(None) => {}
                Err(e) => {
                    out.insert(hash, Err(e.to_string()));
                }
            }
        }
        for hash in wanted {
            if let Some(file) = self.contents.get(&hash) {
                out.insert(hash, Ok(file.clone()));
            }
        }
        out
    }
}

/// Makes `call` on all `items` at once; when systemd refuses the batch, on each item alone
/// (concurrently), so that a refusal is charged to the item it concerns and the others go on.
/// One outcome per item, in order.
async fn in_one_call<'a, T, F, Fut>(items: &'a [T], call: F) -> Vec<Result<(), ActionError>>
where
    F: Fn(&'a [T]) -> Fut,
    Fut: Future<Output = Result<(), SystemdError>>,
{
    if items.is_empty() {
        return Vec::new();
    }
    match call(items).await {
        Ok(()) => items.iter().map(|_| Ok(())).collect(),
        Err(_) if items.len() > 1 => join_all(items.chunks(1).map(&call))
            .await
            .into_iter()
            .map(|r| r.map_err(ActionError::from))
            .collect(),
        Err(e) => vec![Err(e.into())],
    }
}
