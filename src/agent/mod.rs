//! The agent, one per machine: registers the machine under a lease, watches the units the
//! engine placed here, brings systemd in line through `plan` and the executor, and publishes
//! each unit's state.

mod error;
mod executor;
mod fence;
mod files;
mod intent;
mod machine_env;
mod plan;
mod register;
mod report;
mod services;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use error::{ActionError, retry_policy};
pub use fence::{FencePolicy, PeerAnswer, Verdict, ask_peer, decide, fence_after, renew_interval};
pub use files::UnitsDir;
pub use intent::{START_PENDING, intents};
pub use plan::{
    Action, Desired, Observed, adopted, found_after_restart, note_requests, plan, state_record,
};

use crate::backoff::Backoff;
use crate::machine::{MachineId, Metadata};
use crate::registry::{
    Contact, KeepAlive, Lease, Registry, RegistryError, ScheduleEntry, UnitStateRecord, Update,
};
use crate::systemd::{SystemdError, UnitChanges, UnitManager, UnitStatus};
use crate::unit::{UnitFile, UnitHash, UnitName};

/// How this machine presents itself and where it keeps its files.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub machine_id: MachineId,
    pub public_ip: String,
    pub metadata: Metadata,
    pub hostname: String,
    pub version: String,
    /// The API's TCP address, published so that users can find every machine's API.
    pub api: Option<String>,
    pub ttl: Duration,
    pub units_directory: PathBuf,
    /// etcd's client URLs, for units' `etcdctl` (see `machine_env`).
    pub etcd_endpoints: Vec<String>,
    /// The period of the full state re-read: a safety net, not how changes are noticed.
    pub resync: Duration,
    /// How many units run here (systemd's view), for flotted's status line.
    pub running: Arc<watch::Sender<usize>>,
    /// What it does with its units when cut off from etcd (`fence`).
    pub fence_policy: FencePolicy,
    /// The agent's contact with etcd, as its lease keep-alive sees it (for the API and
    /// `fence`); one sender across registrations.
    pub contact: Arc<watch::Sender<Contact>>,
    /// The capacity published in the machine record (`register`).
    pub capacity: crate::resources::Resources,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    #[error("units directory {path}: {source}")]
    UnitsDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lease file {path}: {source}")]
    LeaseFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How long the agent gathers systemd's signals before it reads the changed units back and
/// publishes them: short beside a unit's start, long beside the signals of a batch.
const SIGNAL_WINDOW: Duration = Duration::from_millis(10);

/// Where the agent stands with its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Registered, but the schedule watch has not delivered its first full list: what is
    /// desired here is not known yet, so nothing is acted on (acting on an empty or partial
    /// schedule would stop units that are meant to run).
    Listing,
    /// Following the schedule: every pass converges and publishes.
    Following,
}

/// Runs the agent until `shutdown` is cancelled. Shutting down leaves units running and the
/// lease alive until it expires, so a restart within the TTL changes nothing. `registered` is
/// true while the machine is registered under a live lease (the API answers 503 otherwise).
/// `systemd` is the machine's manager (`systemd::Systemd`; simulated only in the scale
/// benchmark).
pub async fn run<M: UnitManager>(
    registry: Registry,
    systemd: M,
    config: AgentConfig,
    registered: watch::Sender<bool>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let units =
        UnitsDir::create(&config.units_directory).map_err(|source| AgentError::UnitsDir {
            path: config.units_directory.clone(),
            source,
        })?;
    let mut changes = systemd.changes().await?;
    machine_env::write_machine_env(&config).map_err(|source| AgentError::UnitsDir {
        path: config.units_directory.with_file_name("machine.env"),
        source,
    })?;
    let Some((lease, keep)) = register::register(&registry, &config, &shutdown).await? else {
        return Ok(());
    };
    registered.send_replace(true);
    // Only `peers` asks the other machines (one watch of the machine records, which change
    // only when a machine registers or leaves).
    let peers = match config.fence_policy {
        FencePolicy::Peers => fence::follow_peers(&registry, &config.machine_id),
        FencePolicy::Always | FencePolicy::Never => watch::channel(fence::Peers::new()).1,
    };
    let mut agent = Agent::new(registry, systemd, config, units, lease, keep);
    agent.adopt().await?;
    let mut guard = agent.guard(&peers);
    let mut schedule = agent.watch_schedule();
    let mut phase = Phase::Listing;
    let mut resync = tokio::time::interval(agent.config.resync);
    resync.tick().await;
    loop {
        let fenced = guard.token();
        let lost = agent.keep.lost_token();
        // The pass in progress is raced against the fence and the lease's loss: neither waits
        // behind a D-Bus call or an etcd request (a pass cut short is safe to drop, see
        // `fence_stop`).
        let step = {
            let pass = step(
                &mut agent,
                &mut schedule,
                &mut changes,
                &mut phase,
                &mut resync,
                &shutdown,
            );
            tokio::select! {
                biased;
                _ = fenced.cancelled() => Step::Fence,
                _ = lost.cancelled() => Step::LeaseLost,
                step = pass => step?,
            }
        };
        match step {
            Step::Continue => continue,
            Step::Shutdown => return Ok(()),
            Step::Fence => {
                registered.send_replace(false);
                let at = Instant::now();
                agent.fence_stop().await;
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = lost.cancelled() => {}
                    _ = agent.contact_back(at) => {
                        // Back in touch before etcd expired the lease: nothing moved, and the
                        // units placed here start again.
                        tracing::info!("etcd reachable again with the lease alive: resuming");
                        registered.send_replace(true);
                        agent.published.clear();
                        schedule = agent.watch_schedule();
                        phase = Phase::Listing;
                        guard = agent.guard(&peers);
                        continue;
                    }
                }
            }
            Step::LeaseLost => {
                registered.send_replace(false);
                if guard.kept() {
                    // Expired by an etcd back from an outage every machine shared: no engine
                    // could move anything meanwhile, and one that regains etcd after such a
                    // silence waits an agent TTL for vanished machines to register again
                    // (`engine::suspect_losses`). Register again at once under a new lease,
                    // same machine, and keep the units; those placed elsewhere meanwhile stop
                    // when the schedule is listed again.
                    tracing::warn!(
                        "lease expired while etcd was down for every machine: registering again, units keep running"
                    );
                } else if agent.config.fence_policy != FencePolicy::Never {
                    // etcd deleted this machine: the engine may be moving its units. Unless told
                    // never to, stop them now; those still placed here start again below.
                    tracing::warn!("lease lost: stopping this machine's non-global units");
                    agent.fence_stop().await;
                }
            }
        }
        let Some((lease, keep)) =
            register::register(&agent.registry, &agent.config, &shutdown).await?
        else {
            return Ok(());
        };
        registered.send_replace(true);
        agent.lease = lease;
        agent.keep = keep;
        agent.published.clear();
        // Start over from a fresh list of what is placed here now.
        schedule = agent.watch_schedule();
        phase = Phase::Listing;
        guard = agent.guard(&peers);
    }
}

/// How a step of the agent's loop ended.
enum Step {
    Continue,
    Shutdown,
    /// The guard says: fence now.
    Fence,
    /// etcd says the lease is gone.
    LeaseLost,
}

/// One wake-up of the agent: a schedule change, systemd's signals, a retry or the resync, then
/// a pass once the schedule is listed.
async fn step<M: UnitManager>(
    agent: &mut Agent<M>,
    schedule: &mut mpsc::Receiver<Update<UnitName, ScheduleEntry>>,
    changes: &mut UnitChanges,
    phase: &mut Phase,
    resync: &mut tokio::time::Interval,
    shutdown: &CancellationToken,
) -> Result<Step, AgentError> {
    let retry_at = agent.next_retry();
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(Step::Shutdown),
        update = schedule.recv() => {
            let Some(update) = update else { return Ok(Step::Shutdown) };
            update.apply_to(&mut agent.desired);
            // A burst of schedule changes (a batch the engine placed) is one pass.
            while let Ok(update) = schedule.try_recv() {
                update.apply_to(&mut agent.desired);
            }
            // The watch's first update is its full list.
            *phase = Phase::Following;
        }
        batch = changes.next_batch(SIGNAL_WINDOW) => {
            let Some(batch) = batch else {
                return Err(AgentError::Systemd(SystemdError::Call {
                    call: "signal subscription".into(),
                    message: "the connection to systemd was closed".into(),
                }));
            };
            agent.refresh(batch.into_iter().collect()).await;
        }
        _ = crate::backoff::sleep_until(retry_at) => {}
        _ = resync.tick() => {
            let managed = agent.managed();
            agent.refresh(managed).await;
        }
    }
    if *phase == Phase::Following {
        agent.reconcile().await;
    }
    let running = agent.running();
    agent
        .config
        .running
        .send_if_modified(|n| std::mem::replace(n, running) != running);
    Ok(Step::Continue)
}

/// Retry state of a unit whose last action failed.
struct Retry {
    not_before: Instant,
    backoff: Backoff,
}

struct Agent<M> {
    registry: Registry,
    systemd: M,
    config: AgentConfig,
    units: UnitsDir,
    lease: Lease,
    keep: KeepAlive,
    /// What the engine placed here.
    desired: BTreeMap<UnitName, ScheduleEntry>,
    /// What this machine has.
    observed: BTreeMap<UnitName, Observed>,
    /// systemd's message for the last failed action on a unit.
    messages: BTreeMap<UnitName, String>,
    retries: BTreeMap<UnitName, Retry>,
    /// The state records as last written to etcd.
    published: BTreeMap<UnitName, UnitStateRecord>,
    contents: HashMap<UnitHash, UnitFile>,
    /// Registers the declared services of the units published running (`services`).
    services: services::Services,
}

impl<M: UnitManager> Agent<M> {
    fn new(
        registry: Registry,
        systemd: M,
        config: AgentConfig,
        units: UnitsDir,
        lease: Lease,
        keep: KeepAlive,
    ) -> Self {
        let host = services::Host {
            machine: config.machine_id.clone(),
            hostname: config.hostname.clone(),
            address: config.public_ip.clone(),
        };
        Self {
            services: services::Services::spawn(registry.clone(), host),
            registry,
            systemd,
            config,
            units,
            lease,
            keep,
            desired: BTreeMap::new(),
            observed: BTreeMap::new(),
            messages: BTreeMap::new(),
            retries: BTreeMap::new(),
            published: BTreeMap::new(),
            contents: HashMap::new(),
        }
    }

    /// Units systemd runs here, of those the agent knows.
    fn running(&self) -> usize {
        self.observed
            .values()
            .filter(|o| o.status.as_ref().is_some_and(|s| s.active.is_running()))
            .count()
    }

    fn guard(&self, peers: &watch::Receiver<fence::Peers>) -> fence::Guard {
        fence::Guard::spawn(
            self.registry.clone(),
            self.lease,
            self.config.contact.clone(),
            peers.clone(),
            self.config.fence_policy,
        )
    }

    fn watch_schedule(&self) -> mpsc::Receiver<Update<UnitName, ScheduleEntry>> {
        self.registry
            .watch_schedule_of(&self.config.machine_id)
            .spawn("schedule")
    }

    /// Takes over what a previous run left: unit files on disk, its published states (what it
    /// had done), and systemd's view. A unit that still runs is adopted, not restarted.
    async fn adopt(&mut self) -> Result<(), AgentError> {
        let on_disk = self.units.scan().map_err(|source| AgentError::UnitsDir {
            path: self.config.units_directory.clone(),
            source,
        })?;
        let me = &self.config.machine_id;
        let reported: BTreeMap<UnitName, UnitStateRecord> = self
            .registry
            .states()
            .await?
            .into_iter()
            .filter(|((_, m), _)| m == me)
            .map(|((u, _), r)| (u, r))
            .collect();
        let names: Vec<UnitName> = on_disk.keys().cloned().collect();
        let statuses: BTreeMap<UnitName, UnitStatus> = self
            .systemd
            .list_by_names(&names)
            .await?
            .into_iter()
            .collect();
        for (name, hash) in on_disk {
            let status = statuses.get(&name).cloned();
            let found = plan::found_after_restart(hash, reported.get(&name), status);
            self.observed.insert(name, found);
        }
        // Reports of units no longer on disk are stale.
        let mut stale = Vec::new();
        for (name, record) in reported {
            if self.observed.contains_key(&name) {
                self.published.insert(name, record);
            } else {
                stale.push((name, None));
            }
        }
        self.registry.write_states(me, &stale, &self.lease).await?;
        Ok(())
    }

    fn managed(&self) -> Vec<UnitName> {
        let names: BTreeSet<&UnitName> = self.desired.keys().chain(self.observed.keys()).collect();
        names.into_iter().cloned().collect()
    }

    fn next_retry(&self) -> Option<Instant> {
        self.retries.values().map(|r| r.not_before).min()
    }

    /// Re-reads systemd's view of the named units this agent manages.
    async fn refresh(&mut self, names: Vec<UnitName>) {
        let names: Vec<UnitName> = names
            .into_iter()
            .filter(|n| self.observed.contains_key(n) || self.desired.contains_key(n))
            .collect();
        if names.is_empty() {
            return;
        }
        match self.systemd.list_by_names(&names).await {
            Ok(statuses) => {
                for (name, status) in statuses {
                    if let Some(o) = self.observed.get_mut(&name) {
                        o.status = Some(status);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read unit states"),
        }
    }

    /// One pass: converge, then publish the states.
    async fn reconcile(&mut self) {
        self.converge().await;
        let t = std::time::Instant::now();
        self.publish().await;
        self.services
            .offer(self.lease, &self.published, &self.contents);
        tracing::trace!(took = ?t.elapsed(), "published");
    }

    /// Plans, acts (units in backoff wait their turn) and reads the touched units back. A
    /// unit no longer placed here that this stopped, and that systemd already reports
    /// stopped when read back, is unloaded at once, in a second round; one still stopping
    /// is unloaded by the pass its signal brings.
    async fn converge(&mut self) {
        if self.converge_once().await {
            self.converge_once().await;
        }
    }

    /// One round of `converge`; whether it stopped units no longer placed here.
    async fn converge_once(&mut self) -> bool {
        let t = std::time::Instant::now();
        self.look_up_new().await;
        tracing::trace!(took = ?t.elapsed(), "looked up new units");
        let desired: BTreeMap<UnitName, Desired> = self
            .desired
            .iter()
            .map(|(n, e)| {
                (
                    n.clone(),
                    Desired {
                        hash: e.hash,
                        target: e.target,
                        start: e.start,
                    },
                )
            })
            .collect();
        note_requests(&desired, &mut self.observed);
        let now = Instant::now();
        let actions: Vec<Action> = plan(&desired, &self.observed)
            .into_iter()
            .filter(|a| {
                a.unit()
                    .is_none_or(|u| self.retries.get(u).is_none_or(|r| r.not_before <= now))
            })
            .collect();
        if actions.is_empty() {
            return false;
        }
        // Say in etcd that the units about to start are held here, before systemd runs them.
        let actions = self.announce(actions).await;
        tracing::debug!(?actions, "acting");
        let leaving = actions
            .iter()
            .any(|a| matches!(a, Action::Stop(u) if !self.desired.contains_key(u)));
        let started = std::time::Instant::now();
        let count = actions.len();
        let touched = self.execute(actions).await;
        self.refresh(touched).await;
        tracing::debug!(actions = count, took = ?started.elapsed(), "converged");
        leaving
    }

    /// Reads systemd's view of units placed here that this agent has nothing of yet, in one
    /// call: the plan needs to know whether systemd holds a definition of that name already
    /// (only then does linking the new file need a reload). Entries of units neither placed
    /// nor written here any more are dropped.
    async fn look_up_new(&mut self) {
        self.observed.retain(|name, o| {
            o.file.is_some() || o.done.is_some() || self.desired.contains_key(name)
        });
        let new: Vec<UnitName> = self
            .desired
            .keys()
            .filter(|n| self.observed.get(*n).is_none_or(|o| o.status.is_none()))
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        match self.systemd.list_by_names(&new).await {
            Ok(statuses) => {
                for (name, status) in statuses {
                    self.observed.entry(name).or_default().status = Some(status);
                }
            }
            // The plan then counts them as loaded: one reload more, nothing wrong.
            Err(e) => tracing::warn!(error = %e, "cannot read the states of new units"),
        }
    }

    /// Records a unit's failure: its message is published, and it is retried on the schedule
    /// the retry policy gives this kind of error.
    fn fail(&mut self, unit: &UnitName, error: ActionError) {
        tracing::warn!(unit = %unit, error = %error, "action failed");
        let retry = self.retries.entry(unit.clone()).or_insert_with(|| Retry {
            not_before: Instant::now(),
            backoff: retry_policy(&error),
        });
        retry.not_before = Instant::now() + retry.backoff.next_delay();
        self.messages.insert(unit.clone(), error.to_string());
    }

    fn succeed(&mut self, unit: &UnitName) {
        self.retries.remove(unit);
        self.messages.remove(unit);
    }

    /// Converges on the global units alone (after `fence_stop`'s stops): the others are
    /// unloaded.
    async fn self_fence(&mut self) {
        self.desired.retain(|_, e| e.global);
        self.retries.clear();
        // No publishing: the lease the states lived under is gone, and so are they.
        self.converge().await;
    }
}
