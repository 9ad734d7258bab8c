//! The engine: one flotted at a time, elected through etcd, turns the registry's units and
//! machines into placements with the pure scheduler and writes them in fenced transactions.
//!
//! While leading, the engine keeps a `View` fed by watches (machines, metadata overrides,
//! drains, units). It owns the schedule, placements and reasons (it is their only writer), so it reads
//! them once when it takes office and then follows its own writes. A burst of changes is
//! coalesced into one reconcile; a slow periodic re-read is only a safety net.

mod reconcile;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use reconcile::{View, reconcile};

use crate::backoff::Backoff;
use crate::machine::MachineId;
use crate::registry::{
    EngineWrite, KeepAlive, Leadership, LossPolicy, Registry, RegistryError, Update,
};
use crate::unit::{DesiredState, Requirements, UnitFile, UnitHash, UnitName};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub machine_id: MachineId,
    /// TTL of the leadership lease: how long a dead leader blocks its successor.
    pub lease_ttl: Duration,
    /// How long a burst of changes may gather before one reconcile handles them all.
    pub debounce: Duration,
    /// Period of the safety-net re-read of everything.
    pub resync: Duration,
    /// Set to true while this engine leads, false otherwise (flotted's status line).
    pub leading: Arc<tokio::sync::watch::Sender<bool>>,
    /// Where units with requests go among the machines they fit on.
    pub strategy: crate::schedule::Strategy,
}

/// Campaigns for leadership and leads while elected, until `shutdown`.
pub async fn run(registry: Registry, config: EngineConfig, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    while !shutdown.is_cancelled() {
        let term = async {
            let lease = registry.grant_lease(config.lease_ttl).await?;
            let keep = registry.keep_alive(&lease, LossPolicy::FirstFailure);
            let leadership = tokio::select! {
                elected = registry.campaign(&lease, &config.machine_id) => elected?,
                _ = keep.lost() => return Err(RegistryError::LeaseGone(lease.id())),
                _ = shutdown.cancelled() => return Ok(()),
            };
            tracing::info!(machine = %config.machine_id, "elected engine");
            crate::metrics::get().leader.set(1);
            config.leading.send_replace(true);
            let outcome = lead(&registry, &config, &leadership, &keep, &shutdown).await;
            config.leading.send_replace(false);
            stepped_down();
            // Step down at once so another engine can be elected without waiting for the TTL.
            drop(keep);
            let _ = registry.revoke_lease(&leadership.lease).await;
            outcome
        };
        match term.await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "engine stepped down");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// Which watched parts of the view have been listed at least once: reconciling before all
/// have would, for instance, see no machines and move every unit.
#[derive(Default)]
struct Listed {
    machines: bool,
    overrides: bool,
    drains: bool,
    units: bool,
}

impl Listed {
    fn all(&self) -> bool {
        self.machines && self.overrides && self.drains && self.units
    }
}

async fn lead(
    registry: &Registry,
    config: &EngineConfig,
    leadership: &Leadership,
    keep: &KeepAlive,
    shutdown: &CancellationToken,
) -> Result<(), RegistryError> {
    let mut machines = registry.watch_machines().spawn("machines");
    let mut overrides = registry.watch_metadata_overrides().spawn("metadata");
    let mut drains = registry.watch_drains().spawn("drains");
    let mut units = registry.watch_units().spawn("units");
    let mut view = View {
        strategy: config.strategy,
        ..View::default()
    };
    read_own_output(registry, &mut view).await?;
    let mut contents: HashMap<UnitHash, UnitFile> = HashMap::new();
    let mut listed = Listed::default();
    let mut due: Option<Instant> = None;
    let mut resync = tokio::time::interval(config.resync);
    resync.tick().await;
    let mut failures = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    // Until the first reconcile of the term is complete (its writes applied): then how long
    // taking office took is logged.
    let mut taking_office = Some(std::time::Instant::now());
    loop {
        tokio::select! {
            _ = keep.lost() => return Err(RegistryError::LeaseGone(leadership.lease.id())),
            _ = shutdown.cancelled() => return Ok(()),
            Some(update) = machines.recv() => {
                listed.machines |= matches!(update, Update::Reset(_));
                update.apply_to(&mut view.machines);
            }
            Some(update) = overrides.recv() => {
                listed.overrides |= matches!(update, Update::Reset(_));
                update.apply_to(&mut view.overrides);
            }
            Some(update) = drains.recv() => {
                listed.drains |= matches!(update, Update::Reset(_));
                update.apply_to(&mut view.drained);
            }
            Some(update) = units.recv() => {
                listed.units |= matches!(update, Update::Reset(_));
                update.apply_to(&mut view.units);
            }
            _ = crate::backoff::sleep_until(due) => {
                due = None;
                let pass = std::time::Instant::now();
                read_requirements(registry, &mut view, &mut contents).await;
                let writes = reconcile(&view);
                if writes.is_empty() {
                    record_pass(&view, &[], pass);
                    if let Some(since) = taking_office.take() {
                        log_first_reconcile(since, &view, 0);
                    }
                    continue;
                }
                let started = std::time::Instant::now();
                match registry.apply(&leadership.fence, &writes).await {
                    Ok(()) => {
                        failures.reset();
                        view.apply(&writes);
                        record_pass(&view, &writes, pass);
                        let n: usize = writes.iter().map(Vec::len).sum();
                        tracing::info!(writes = n, units = writes.len(), took = ?started.elapsed(), "reconciled");
                        if let Some(since) = taking_office.take() {
                            log_first_reconcile(since, &view, n);
                        }
                    }
                    Err(RegistryError::Fenced) => return Err(RegistryError::Fenced),
                    Err(e) => {
                        // The outcome is unknown: read back what is there and try again.
                        let delay = failures.next_delay();
                        tracing::warn!(error = %e, retry_in = ?delay, "applying the plan failed");
                        read_own_output(registry, &mut view).await?;
                        due = Some(Instant::now() + delay);
                    }
                }
                continue;
            }
            _ = resync.tick() => {
                read_own_output(registry, &mut view).await?;
                collect_contents(registry, leadership, &view).await;
            }
        }
        if listed.all() && due.is_none() {
            due = Some(Instant::now() + config.debounce);
        }
    }
}

/// The first complete reconcile of a term: everything listed, placed and written.
fn log_first_reconcile(since: std::time::Instant, view: &View, writes: usize) {
    tracing::info!(
        took_ms = since.elapsed().as_millis() as u64,
        units = view.units.len(),
        machines = view.machines.len(),
        writes,
        "first reconcile as leader complete"
    );
}

/// Counts a reconcile pass that started at `started` and wrote `writes`, and publishes what
/// the view holds now: units by desired state, and how many are placed nowhere.
fn record_pass(view: &View, writes: &[Vec<EngineWrite>], started: std::time::Instant) {
    let m = crate::metrics::get();
    m.reconciles.inc();
    m.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    let placements = writes
        .iter()
        .flatten()
        .filter(|w| matches!(w, EngineWrite::PutPlacement(..)))
        .count();
    m.placements.inc_by(placements as u64);
    m.unplaceable.set(view.reasons.len() as i64);
    for desired in [
        DesiredState::Inactive,
        DesiredState::Loaded,
        DesiredState::Launched,
    ] {
        let n = view.units.values().filter(|r| r.desired == desired).count();
        m.units
            .get_or_create(&crate::metrics::StateLabels {
                state: desired.as_str(),
            })
            .set(n as i64);
    }
}

/// Only the leader publishes the cluster's figures: a follower's would be stale.
fn stepped_down() {
    let m = crate::metrics::get();
    m.leader.set(0);
    m.unplaceable.set(0);
    m.units.clear();
}

/// Reads the schedule, placements and reasons: at the start of a term, after a failed write
/// and as the periodic safety net.
pub async fn read_own_output(registry: &Registry, view: &mut View) -> Result<(), RegistryError> {
    view.schedule = registry.schedule().await?.0.into_iter().collect();
    view.placements = registry
        .placements()
        .await?
        .into_iter()
        .map(|(u, p)| (u, p.machines))
        .collect();
    view.reasons = registry
        .reasons()
        .await?
        .into_iter()
        .map(|(u, r)| (u, r.reason))
        .collect();
    Ok(())
}

/// Reads the requirements of every unit whose content changed. A content that cannot be read
/// from etcd now is tried again at the next reconcile; one that is missing or invalid becomes
/// the unit's reason.
pub async fn read_requirements(
    registry: &Registry,
    view: &mut View,
    contents: &mut HashMap<UnitHash, UnitFile>,
) {
    view.requirements.retain(|u, _| view.units.contains_key(u));
    let stale: Vec<(UnitName, UnitHash)> = view
        .units
        .iter()
        .filter(|(u, r)| view.requirements.get(*u).is_none_or(|(h, _)| *h != r.hash))
        .map(|(u, r)| (u.clone(), r.hash))
        .collect();
    // Contents not cached yet are read in batches: a new leader reads thousands.
    let mut missing: Vec<UnitHash> = stale
        .iter()
        .map(|(_, h)| *h)
        .filter(|h| !contents.contains_key(h))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let read = registry.contents(&missing).await;
    let mut unreadable = std::collections::HashSet::new();
    for (hash, result) in read {
        match result {
            Ok(Some(f)) => {
                contents.insert(hash, f);
            }
            // Missing: the units' reason, below.
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%hash, error = %e, "cannot read unit content");
                unreadable.insert(hash);
            }
        }
    }
    for (name, hash) in stale {
        if unreadable.contains(&hash) {
            // Tried again at the next reconcile.
            continue;
        }
        let Some(file) = contents.get(&hash) else {
            view.requirements.insert(
                name,
                (
                    hash,
                    Err(format!("its content {hash} is missing from the registry")),
                ),
            );
            continue;
        };
        let requirements = Requirements::from_unit(&name, file)
            .map(|c| Arc::new(c.requirements))
            .map_err(|errors| {
                let messages: Vec<String> = errors.errors.into_iter().map(|e| e.message).collect();
                format!("invalid [X-Fleet] section: {}", messages.join("; "))
            });
        view.requirements.insert(name, (hash, requirements));
    }
    let used: std::collections::HashSet<UnitHash> = view.units.values().map(|r| r.hash).collect();
    contents.retain(|h, _| used.contains(h));
}

/// Deletes contents no unit and no schedule entry refers to. Units are listed afresh (the
/// watched view may lag), and only contents written before that listing are candidates: a
/// content stored with a unit after it is not. A content written again between the listing
/// and the deletion (a unit submitted with it right now) is left alone by the revision compare.
async fn collect_contents(registry: &Registry, leadership: &Leadership, view: &View) {
    let listed = async {
        let (units, revision) = registry.units().await?;
        let stored = registry.content_revisions().await?;
        Ok::<_, RegistryError>((units, revision, stored))
    };
    let (units, listed_at, stored) = match listed.await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list contents");
            return;
        }
    };
    let used: std::collections::HashSet<UnitHash> = units
        .iter()
        .map(|(_, r)| r.hash)
        .chain(view.schedule.values().map(|e| e.hash))
        .collect();
    for (hash, revision) in stored {
        if used.contains(&hash) || revision > listed_at {
            continue;
        }
        match registry
            .delete_content_if_unchanged(&leadership.fence, &hash, revision)
            .await
        {
            Ok(true) => tracing::debug!(%hash, "collected unused content"),
            Ok(false) => {}
            Err(e) => tracing::warn!(%hash, error = %e, "cannot collect content"),
        }
    }
}
