//! The engine: one flotted at a time, elected through etcd, turns the registry's units and
//! machines into placements with the pure scheduler and writes them in fenced transactions.
//!
//! While leading, the engine keeps a `View` fed by watches (machines, metadata overrides,
//! drains, units, unit states). It owns the schedule, placements and reasons (it is their only writer), so it reads
//! them once when it takes office and then follows its own writes. A burst of changes is
//! coalesced into one reconcile; a slow periodic re-read is only a safety net. A non-global
//! unit moves in two phases (`held_back`): off its old machine first, onto the new one once the
//! old one's agent reports it stopped; only then does a unit state change call for a pass.

mod reconcile;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use reconcile::{HeldMove, View, held_back, reconcile, reconcile_holding, vanished};

use crate::backoff::Backoff;
use crate::machine::MachineId;
use crate::registry::{
    Contact, EngineWrite, KeepAlive, KeepAliveOptions, Leadership, LossPolicy, Registry,
    RegistryError, StatesSeen, UnitRecord, Update,
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
    /// The agents' lease TTL (`agent_ttl`): how long, after a silence of etcd, machines that
    /// vanished have to register again before their units move (`suspect_losses`).
    pub agent_ttl: Duration,
}

/// Whether machines that vanish right after this engine regained etcd, following `silence`
/// without an answered renewal, are suspect: an etcd that was unreachable or frozen for every
/// machine for that long may have expired the agents' leases at once when it came back (a
/// single etcd thawed does; a new etcd leader extends every lease instead). Half the agents'
/// TTL: no agent's lease can expire in a silence of etcd shorter than that, shared by the
/// engine.
pub fn suspect_losses(silence: Duration, agent_ttl: Duration) -> bool {
    silence >= agent_ttl / 2
}

/// Campaigns for leadership and leads while elected, until `shutdown`.
pub async fn run(registry: Registry, config: EngineConfig, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    // When etcd last answered this engine, across its terms.
    let contact = Arc::new(tokio::sync::watch::channel(Contact::now()).0);
    while !shutdown.is_cancelled() {
        let term = async {
            let last_contact = contact.borrow().renewed;
            let lease = registry.grant_lease(config.lease_ttl).await?;
            let silence = last_contact.elapsed();
            // Machines that vanish in the next agent TTL are waited for (see `lead`).
            let hold = suspect_losses(silence, config.agent_ttl)
                .then(|| Instant::now() + config.agent_ttl);
            let keep = registry.keep_alive_with(
                &lease,
                KeepAliveOptions {
                    policy: LossPolicy::FirstFailure,
                    interval: (lease.ttl() / 3).max(Duration::from_millis(300)),
                    contact: contact.clone(),
                },
            );
            let outcome = async {
                let leadership = tokio::select! {
                    elected = registry.campaign(&lease, &config.machine_id) => elected?,
                    _ = keep.lost() => return Err(RegistryError::LeaseGone(lease.id())),
                    _ = shutdown.cancelled() => return Ok(()),
                };
                tracing::info!(machine = %config.machine_id, "elected engine");
                crate::metrics::get().leader.set(1);
                config.leading.send_replace(true);
                if let Some(until) = hold {
                    tracing::warn!(silence = ?silence, wait = ?until.saturating_duration_since(Instant::now()), "etcd was silent for this engine: machines that vanished wait for their agents to register again before their units move");
                }
                let outcome = lead(&registry, &config, &leadership, &keep, hold, &shutdown).await;
                config.leading.send_replace(false);
                stepped_down();
                outcome
            }
            .await;
            // Step down (or leave the candidates) at once: every candidate's key is older than
            // the next campaign's, and etcd elects no one while one lives. In a task of its
            // own: a revoke sent while etcd elects a leader is held until it times out, and
            // campaigning again (here or elsewhere) must not wait behind it. At shutdown it is
            // awaited: the process may end right after.
            drop(keep);
            let revoke = revoke_until_gone(registry.clone(), lease);
            if shutdown.is_cancelled() {
                revoke.await;
            } else {
                tokio::spawn(revoke);
            }
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

/// Revokes a lost term's lease, retrying until etcd answers or the lease must have expired
/// anyway: while its election key lives, no engine is elected. A new etcd leader extends every
/// lease by its TTL when elected, so a lease may outlive its TTL by about one more.
async fn revoke_until_gone(registry: Registry, lease: crate::registry::Lease) {
    let started = Instant::now();
    while registry.revoke_lease(&lease).await.is_err() && started.elapsed() < lease.ttl() * 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    states: bool,
}

impl Listed {
    fn all(&self) -> bool {
        self.machines && self.overrides && self.drains && self.units && self.states
    }
}

async fn lead(
    registry: &Registry,
    config: &EngineConfig,
    leadership: &Leadership,
    keep: &KeepAlive,
    hold: Option<Instant>,
    shutdown: &CancellationToken,
) -> Result<(), RegistryError> {
    let mut machines = registry.watch_machines().spawn("machines");
    let mut overrides = registry.watch_metadata_overrides().spawn("metadata");
    let mut drains = registry.watch_drains().spawn("drains");
    let mut units = registry.watch_units().spawn("units");
    let mut states = registry.watch_states().spawn_with_revisions("states");
    // Instances' health, for a global unit's rollout that waits for its check.
    let mut instances = registry.watch_instances().spawn("instances");
    let mut view = View {
        strategy: config.strategy,
        ..View::default()
    };
    read_own_output(registry, &mut view).await?;
    let mut contents: HashMap<UnitHash, UnitFile> = HashMap::new();
    let mut listed = Listed::default();
    let mut due: Option<Instant> = None;
    // Contents are collected soon after a unit leaves one unused, not only at the resync.
    let mut collect: Option<Instant> = None;
    let mut resync = tokio::time::interval(config.resync);
    resync.tick().await;
    let mut failures = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    // Until the first reconcile of the term is complete (its writes applied): then how long
    // taking office took is logged.
    let mut taking_office = Some(std::time::Instant::now());
    // The moves the last pass held back (`held_back`): only a state change of one of these
    // units calls for a pass.
    let mut held: BTreeSet<UnitName> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = keep.lost() => return Err(RegistryError::LeaseGone(leadership.lease.id())),
            _ = shutdown.cancelled() => return Ok(()),
            Some(update) = machines.recv() => {
                listed.machines |= matches!(update, Update::Reset(_));
                update.apply_to(&mut view.machines);
                if hold.is_some_and(|until| Instant::now() < until) {
                    // A machine came back (or left) while holding: look again soon, not at
                    // the hold's end.
                    due = None;
                }
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
                if collect.is_none() && drops_content(&update, &view.units) {
                    collect = Some(Instant::now() + COLLECT_AFTER);
                }
                update.apply_to(&mut view.units);
            }
            Some((update, revision)) = states.recv() => {
                let first = !listed.states;
                listed.states |= matches!(update, Update::Reset(_));
                let releases = first || releases_a_move(&update, &held);
                update.apply_to(&mut view.states);
                view.states_revision = revision;
                if !releases {
                    continue;
                }
            }
            Some(update) = instances.recv() => {
                let releases = releases_a_rollout(&update, &held);
                update.apply_to(&mut view.instances);
                if !releases {
                    continue;
                }
            }
            _ = crate::backoff::sleep_until(collect) => {
                collect = None;
                collect_contents(registry, leadership, &view).await;
                continue;
            }
            _ = crate::backoff::sleep_until(due) => {
                if let Some((until, missing)) = holding(hold, &view) {
                    tracing::info!(machines = ?missing, wait = ?until.saturating_duration_since(Instant::now()), "waiting for vanished machines to register again");
                    due = Some(until);
                    continue;
                }
                // Raced against the lease: a request held by a member whose leader died must
                // not keep a deposed engine acting, nor its successor waiting.
                let pass = pass(registry, leadership, &mut view, &mut contents, &mut failures, &mut taking_office, &mut held);
                due = tokio::select! {
                    biased;
                    _ = keep.lost() => return Err(RegistryError::LeaseGone(leadership.lease.id())),
                    due = pass => due?,
                };
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

/// While `hold` lasts, the machines whose units reconciling would move (`vanished`), and
/// the hold's end.
fn holding(hold: Option<Instant>, view: &View) -> Option<(Instant, Vec<MachineId>)> {
    let until = hold.filter(|until| Instant::now() < *until)?;
    let missing: Vec<MachineId> = vanished(view).into_iter().collect();
    (!missing.is_empty()).then_some((until, missing))
}

/// Whether an `update` of a watch whose keys name a unit (`unit_of`) may release a change
/// held back: a listing, or a change of a key of a unit in `held`. Any other report costs no
/// pass.
fn concerns_held<K, V>(
    update: &Update<K, V>,
    held: &BTreeSet<UnitName>,
    unit_of: impl Fn(&K) -> &UnitName,
) -> bool {
    if held.is_empty() {
        return false;
    }
    match update {
        Update::Reset(_) => true,
        Update::Changes(changes) => changes.iter().any(|(k, _)| held.contains(unit_of(k))),
    }
}

/// Whether a state `update` may release a move or a rollout held back.
fn releases_a_move(
    update: &Update<(UnitName, MachineId), crate::registry::UnitStateRecord>,
    held: &BTreeSet<UnitName>,
) -> bool {
    concerns_held(update, held, |(u, _)| u)
}

/// Whether an instance `update` may let a rollout held back for a check go on.
fn releases_a_rollout(
    update: &Update<crate::registry::InstanceId, crate::registry::InstanceRecord>,
    held: &BTreeSet<UnitName>,
) -> bool {
    concerns_held(update, held, |id| &id.unit)
}

/// One reconcile: reads the requirements, plans, and applies the writes. Returns when the next
/// pass is due (after a failed write), or `None`. `held` becomes the units whose move it held
/// back.
async fn pass(
    registry: &Registry,
    leadership: &Leadership,
    view: &mut View,
    contents: &mut HashMap<UnitHash, UnitFile>,
    failures: &mut Backoff,
    taking_office: &mut Option<std::time::Instant>,
    held: &mut BTreeSet<UnitName>,
) -> Result<Option<Instant>, RegistryError> {
    let pass = std::time::Instant::now();
    read_requirements(registry, view, contents).await;
    let (writes, moves) = reconcile_holding(view);
    if !moves.is_empty() {
        tracing::info!(
            units = moves.len(),
            "moves wait for their old machines to stop the units"
        );
        tracing::debug!(held = ?moves, "held moves");
    }
    *held = moves.into_keys().collect();
    if writes.is_empty() {
        record_pass(view, &[], pass);
        if let Some(since) = taking_office.take() {
            log_first_reconcile(since, view, 0);
        }
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let guards: Vec<_> = writes.iter().map(|g| reconcile::guard(view, g)).collect();
    match registry
        .apply_guarded(&leadership.fence, &writes, &guards)
        .await
    {
        Ok(written) => {
            failures.reset();
            let (writes, refused) = refused_groups(writes, &guards, &written);
            if !refused.is_empty() {
                // A state of these units changed after the view's: the view catches up
                // through the states watch, whose next update of them calls for a pass.
                tracing::info!(units = ?refused, "placements wait for the view to catch up with unit states");
                held.extend(refused);
            }
            view.apply(&writes);
            record_pass(view, &writes, pass);
            let n: usize = writes.iter().map(Vec::len).sum();
            tracing::info!(writes = n, units = writes.len(), took = ?started.elapsed(), "reconciled");
            if let Some(since) = taking_office.take() {
                log_first_reconcile(since, view, n);
            }
            Ok(None)
        }
        Err(RegistryError::Fenced) => Err(RegistryError::Fenced),
        Err(e) => {
            // The outcome is unknown: read back what is there and try again.
            let delay = failures.next_delay();
            tracing::warn!(error = %e, retry_in = ?delay, "applying the plan failed");
            read_own_output(registry, view).await?;
            Ok(Some(Instant::now() + delay))
        }
    }
}

/// Splits the groups a guarded apply returned `written` for into those written and the
/// units of the guarded ones it refused.
fn refused_groups(
    groups: Vec<Vec<EngineWrite>>,
    guards: &[Option<StatesSeen>],
    written: &[bool],
) -> (Vec<Vec<EngineWrite>>, Vec<UnitName>) {
    let mut refused = Vec::new();
    let mut kept = Vec::new();
    for ((group, guard), &ok) in groups.into_iter().zip(guards).zip(written) {
        match (ok, guard) {
            (true, _) => kept.push(group),
            (false, Some(g)) => refused.push(g.unit.clone()),
            (false, None) => unreachable!("only a guarded group is refused"),
        }
    }
    (kept, refused)
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
        let checked = matches!(
            crate::unit::ServiceDeclaration::from_unit(&name, file),
            Ok(Some(d)) if d.check.is_some()
        );
        view.checked.insert(name.clone(), (hash, checked));
        view.requirements.insert(name, (hash, requirements));
    }
    view.checked.retain(|u, _| view.units.contains_key(u));
    let used: std::collections::HashSet<UnitHash> = view.units.values().map(|r| r.hash).collect();
    contents.retain(|h, _| used.contains(h));
}

/// How long after a unit was deleted or given new content the contents are collected: one
/// collection per burst of changes, after the engine has moved its schedule entries on.
const COLLECT_AFTER: Duration = Duration::from_secs(5);

/// Whether `update` may leave a content unused: a unit deleted or given other content, or a
/// listing (a new term, a relisted watch), after which the previous collections are unknown.
fn drops_content(
    update: &Update<UnitName, UnitRecord>,
    units: &std::collections::BTreeMap<UnitName, UnitRecord>,
) -> bool {
    match update {
        Update::Reset(_) => true,
        Update::Changes(changes) => {
            changes
                .iter()
                .any(|(name, new)| match (units.get(name), new) {
                    (Some(old), Some(new)) => old.hash != new.hash,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
        }
    }
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
    let unused: Vec<(UnitHash, i64)> = stored
        .into_iter()
        .filter(|(hash, revision)| !used.contains(hash) && *revision <= listed_at)
        .collect();
    if unused.is_empty() {
        return;
    }
    match registry
        .delete_contents_if_unchanged(&leadership.fence, &unused)
        .await
    {
        Ok(n) => tracing::debug!(
            collected = n,
            unused = unused.len(),
            "collected unused contents"
        ),
        Err(e) => tracing::warn!(error = %e, unused = unused.len(), "cannot collect contents"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::unit::DesiredState::Launched;

    #[test]
    fn the_engine_holds_only_within_the_window_and_while_a_machine_is_missing() {
        let m = |n: u8| MachineId::new(&format!("{n:02x}").repeat(16)).unwrap();
        let u = UnitName::new("web.service").unwrap();
        let entry = crate::registry::ScheduleEntry {
            hash: "a".repeat(40).parse().unwrap(),
            target: crate::unit::Target::Launched,
            global: false,
            start: 0,
        };
        let mut missing = View::default();
        missing.schedule.insert((m(1), u.clone()), entry.clone());
        let mut present = missing.clone();
        present.machines.insert(
            m(1),
            crate::registry::MachineRecord {
                id: m(1),
                ip: "10.0.0.1".into(),
                metadata: Default::default(),
                version: "test".into(),
                api: None,
                hostname: "host-1".into(),
                capacity: None,
            },
        );
        let soon = Instant::now() + Duration::from_secs(60);
        let past = Instant::now() - Duration::from_millis(1);
        for (hold, view, holds) in [
            (None, &missing, false),
            (Some(past), &missing, false),
            (Some(soon), &present, false),
            (Some(soon), &missing, true),
        ] {
            let held = holding(hold, view);
            assert_eq!(held.is_some(), holds, "{hold:?} {:?}", view.machines.keys());
            if let Some((until, machines)) = held {
                assert_eq!((until, machines), (soon, vec![m(1)]));
            }
        }
    }

    #[test]
    fn a_state_report_calls_for_a_pass_only_for_a_unit_whose_move_is_held() {
        let m = MachineId::new(&"01".repeat(16)).unwrap();
        let (a, b) = (
            UnitName::new("a.service").unwrap(),
            UnitName::new("b.service").unwrap(),
        );
        let change = |u: &UnitName| Update::Changes(vec![((u.clone(), m.clone()), None)]);
        let none = BTreeSet::new();
        let held_a = BTreeSet::from([a.clone()]);
        for (what, update, held, expected) in [
            ("nothing held", change(&a), &none, false),
            (
                "nothing held, a listing",
                Update::Reset(vec![]),
                &none,
                false,
            ),
            ("another unit", change(&b), &held_a, false),
            ("the held unit", change(&a), &held_a, true),
            (
                "a listing while holding",
                Update::Reset(vec![]),
                &held_a,
                true,
            ),
        ] {
            assert_eq!(releases_a_move(&update, held), expected, "{what}");
        }
    }

    #[test]
    fn losses_are_suspect_after_a_silence_of_half_the_agents_ttl() {
        let s = Duration::from_millis;
        for (silence, ttl, suspect) in [
            (s(0), s(3000), false),
            (s(700), s(3000), false),
            (s(1499), s(3000), false),
            (s(1500), s(3000), true),
            (s(5000), s(3000), true),
            (s(4000), s(10000), false),
            (s(5000), s(10000), true),
        ] {
            assert_eq!(
                suspect_losses(silence, ttl),
                suspect,
                "{silence:?} of {ttl:?}"
            );
        }
    }

    #[test]
    fn only_a_deleted_or_replaced_unit_or_a_listing_calls_for_a_collection() {
        let record = |h: char| UnitRecord {
            hash: h.to_string().repeat(40).parse().unwrap(),
            desired: Launched,
            start: 0,
        };
        let (a, b) = (
            UnitName::new("a.service").unwrap(),
            UnitName::new("b.service").unwrap(),
        );
        let units = BTreeMap::from([(a.clone(), record('1'))]);
        let cases = [
            ("a new unit", vec![(b.clone(), Some(record('2')))], false),
            (
                "a new desired state",
                vec![(
                    a.clone(),
                    Some(UnitRecord {
                        desired: DesiredState::Loaded,
                        ..record('1')
                    }),
                )],
                false,
            ),
            ("new content", vec![(a.clone(), Some(record('2')))], true),
            ("a deleted unit", vec![(a.clone(), None)], true),
            ("an unknown unit deleted", vec![(b.clone(), None)], false),
        ];
        for (what, changes, expected) in cases {
            assert_eq!(
                drops_content(&Update::Changes(changes), &units),
                expected,
                "{what}"
            );
        }
        assert!(drops_content(&Update::Reset(vec![]), &units), "a listing");
    }
}
