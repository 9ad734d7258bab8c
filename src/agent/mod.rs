//! The agent, one per machine: registers the machine under a lease, watches the units the
//! engine placed here, brings systemd in line through `plan` and the executor, and publishes
//! each unit's state.

mod files;
mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use files::UnitsDir;
pub use plan::{Action, Desired, Observed, adopted, plan};

use crate::backoff::Backoff;
use crate::machine::{MachineId, Metadata};
use crate::registry::{
    KeepAlive, Lease, LossPolicy, MachineRecord, Registry, RegistryError, ScheduleEntry,
    UnitStateRecord,
};
use crate::systemd::{ActiveState, LoadState, Systemd, SystemdError, UnitStatus};
use crate::unit::{Target, UnitFile, UnitHash, UnitName};

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

/// Runs the agent until `shutdown` is cancelled. Shutting down leaves units running and the
/// lease alive until it expires, so a restart within the TTL changes nothing. `registered` is
/// true while the machine is registered under a live lease (the API answers 503 otherwise).
pub async fn run(
    registry: Registry,
    systemd: Systemd,
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
    write_machine_env(&config).map_err(|source| AgentError::UnitsDir {
        path: config.units_directory.with_file_name("machine.env"),
        source,
    })?;
    let Some((lease, keep)) = register(&registry, &config, &shutdown).await? else {
        return Ok(());
    };
    registered.send_replace(true);
    let mut agent = Agent::new(registry, systemd, config, units, lease, keep);
    agent.adopt().await?;
    let mut schedule = agent
        .registry
        .watch_schedule_of(&agent.config.machine_id)
        .spawn("schedule");
    let mut resync = tokio::time::interval(agent.config.resync);
    resync.tick().await;
    let mut fenced = false;
    loop {
        let retry_at = agent.next_retry();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            update = schedule.recv() => {
                let Some(update) = update else { return Ok(()) };
                update.apply_to(&mut agent.desired);
                if fenced {
                    // The first update after a new registration is a fresh list.
                    fenced = false;
                }
            }
            batch = changes.next_batch() => {
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
            _ = agent.keep.lost() => {
                registered.send_replace(false);
                agent.self_fence().await;
                let Some((lease, keep)) = register(&agent.registry, &agent.config, &shutdown).await? else {
                    return Ok(());
                };
                registered.send_replace(true);
                agent.lease = lease;
                agent.keep = keep;
                agent.published.clear();
                // Start over from a fresh list of what is placed here now.
                schedule = agent.registry.watch_schedule_of(&agent.config.machine_id).spawn("schedule");
                fenced = true;
            }
        }
        if !fenced {
            agent.reconcile().await;
        }
    }
}

/// Finds the lease of a previous run (still alive if it restarted within the TTL) or grants a
/// new one, remembers it on disk, registers the machine under it and keeps it alive. Retries
/// until it succeeds; `None` when shut down first.
async fn register(
    registry: &Registry,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> Result<Option<(Lease, KeepAlive)>, AgentError> {
    let lease_file = lease_file(config);
    let previous = std::fs::read_to_string(&lease_file)
        .ok()
        .and_then(|s| i64::from_str_radix(s.trim(), 16).ok());
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = async {
            let lease = match previous {
                Some(id) => registry.existing_lease(id, config.ttl).await?,
                None => None,
            };
            let lease = match lease {
                Some(lease) => {
                    tracing::info!(
                        lease = format_args!("{:x}", lease.id()),
                        "kept the lease of the previous run"
                    );
                    lease
                }
                None => registry.grant_lease(config.ttl).await?,
            };
            let keep = registry.keep_alive(&lease, LossPolicy::AfterTtl);
            registry
                .register_machine(&machine_record(config), &lease)
                .await?;
            Ok::<_, RegistryError>((lease, keep))
        };
        match attempt.await {
            Ok((lease, keep)) => {
                std::fs::write(&lease_file, format!("{:x}\n", lease.id())).map_err(|source| {
                    AgentError::LeaseFile {
                        path: lease_file.clone(),
                        source,
                    }
                })?;
                tracing::info!(machine = %config.machine_id, "machine registered");
                return Ok(Some((lease, keep)));
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot register the machine");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// `machine.env` beside the units directory: this machine's ID, address, hostname and
/// metadata for units to read with `EnvironmentFile=` (as CoreOS units read
/// `/etc/environment`), e.g. to bind a server to `${FLOTTE_HOST_IP}`. The `FLOTTE_HOST_`
/// prefix keeps these apart from flotted's `FLOTTE_<SETTING>` variables. `ETCDCTL_API` and
/// `ETCDCTL_ENDPOINTS` point a unit's plain `etcdctl` at the cluster's etcd (a sidekick that
/// announces its service without flottectl); etcd's TLS files and credentials are not passed
/// on, as they are flotted's secrets, not every unit's.
fn machine_env(config: &AgentConfig) -> String {
    let mut text = format!(
        "FLOTTE_HOST_ID={}\nFLOTTE_HOST_IP={}\nFLOTTE_HOST_NAME={}\nFLOTTE_HOST_METADATA={}\n",
        config.machine_id, config.public_ip, config.hostname, config.metadata
    );
    for (key, value) in config.metadata.iter() {
        // Metadata keys may hold `.` and `-`, which environment variable names may not.
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        text.push_str(&format!("FLOTTE_HOST_METADATA_{name}={value}\n"));
    }
    text.push_str(&format!(
        "ETCDCTL_API=3\nETCDCTL_ENDPOINTS={}\n",
        config.etcd_endpoints.join(",")
    ));
    text
}

fn write_machine_env(config: &AgentConfig) -> std::io::Result<()> {
    let path = config.units_directory.with_file_name("machine.env");
    let text = machine_env(config);
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

/// Next to the units directory, so that it lives exactly as long as the unit files.
fn lease_file(config: &AgentConfig) -> PathBuf {
    let mut name = config
        .units_directory
        .file_name()
        .unwrap_or_default()
        .to_owned();
    name.push(".lease");
    config.units_directory.with_file_name(name)
}

fn machine_record(config: &AgentConfig) -> MachineRecord {
    MachineRecord {
        id: config.machine_id.clone(),
        ip: config.public_ip.clone(),
        metadata: config.metadata.clone(),
        version: config.version.clone(),
        api: config.api.clone(),
        hostname: config.hostname.clone(),
    }
}

/// Retry state of a unit whose last action failed.
struct Retry {
    not_before: Instant,
    backoff: Backoff,
}

struct Agent {
    registry: Registry,
    systemd: Systemd,
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
}

impl Agent {
    fn new(
        registry: Registry,
        systemd: Systemd,
        config: AgentConfig,
        units: UnitsDir,
        lease: Lease,
        keep: KeepAlive,
    ) -> Self {
        Self {
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
            let done = match (reported.get(&name), &status) {
                (Some(r), _) if r.hash == hash => Some(r.current),
                (_, Some(s)) if s.load != LoadState::NotFound => Some(adopted(s)),
                _ => None,
            };
            self.observed.insert(
                name,
                Observed {
                    file: Some(hash),
                    done,
                    status,
                },
            );
        }
        // Reports of units no longer on disk are stale.
        for (name, record) in reported {
            if self.observed.contains_key(&name) {
                self.published.insert(name, record);
            } else {
                self.registry.delete_state(&name, me).await?;
            }
        }
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
        self.publish().await;
    }

    /// Plans, acts (units in backoff wait their turn) and reads the touched units back.
    async fn converge(&mut self) {
        let desired: BTreeMap<UnitName, Desired> = self
            .desired
            .iter()
            .map(|(n, e)| {
                (
                    n.clone(),
                    Desired {
                        hash: e.hash,
                        target: e.target,
                    },
                )
            })
            .collect();
        let now = Instant::now();
        let actions: Vec<Action> = plan(&desired, &self.observed)
            .into_iter()
            .filter(|a| {
                a.unit()
                    .is_none_or(|u| self.retries.get(u).is_none_or(|r| r.not_before <= now))
            })
            .collect();
        let touched = self.execute(actions).await;
        self.refresh(touched).await;
    }

    /// Carries out the actions in order. A failure affects only its unit: it is recorded,
    /// retried later with backoff, and the other units go on.
    async fn execute(&mut self, actions: Vec<Action>) -> Vec<UnitName> {
        let mut touched = Vec::new();
        let mut failed: BTreeSet<UnitName> = BTreeSet::new();
        let mut unloaded = Vec::new();
        for action in actions {
            if action.unit().is_some_and(|u| failed.contains(u)) {
                continue;
            }
            let result = self.act(&action).await;
            match (&action, result) {
                (Action::Reload, Ok(())) => {}
                (Action::Reload, Err(e)) => {
                    // Without a reload, starts would use stale files: stop this pass here.
                    tracing::warn!(error = %e, "daemon reload failed");
                    for u in self.managed() {
                        self.fail(&u, format!("daemon reload failed: {e}"));
                    }
                    break;
                }
                (a, Ok(())) => {
                    let u = a.unit().expect("unit action").clone();
                    self.retries.remove(&u);
                    self.messages.remove(&u);
                    if matches!(a, Action::Unload(_)) {
                        unloaded.push(u.clone());
                    }
                    touched.push(u);
                }
                (a, Err(e)) => {
                    let u = a.unit().expect("unit action").clone();
                    tracing::warn!(unit = %u, error = %e, "action failed");
                    self.fail(&u, e);
                    failed.insert(u.clone());
                    touched.push(u);
                }
            }
        }
        for u in unloaded {
            // After the reload: a failed unit would otherwise linger in systemd as `failed`.
            if let Err(e) = self.systemd.reset_failed(&u).await {
                tracing::debug!(unit = %u, error = %e, "reset-failed");
            }
        }
        touched
    }

    fn fail(&mut self, unit: &UnitName, message: String) {
        let retry = self.retries.entry(unit.clone()).or_insert_with(|| Retry {
            not_before: Instant::now(),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
        });
        retry.not_before = Instant::now() + retry.backoff.next_delay();
        self.messages.insert(unit.clone(), message);
    }

    async fn act(&mut self, action: &Action) -> Result<(), String> {
        match action {
            Action::Stop(u) => {
                self.systemd.stop(u).await.map_err(|e| e.to_string())?;
                self.observed.entry(u.clone()).or_default().done = Some(Target::Loaded);
            }
            Action::Unload(u) => {
                self.systemd.stop(u).await.map_err(|e| e.to_string())?;
                self.systemd
                    .unlink_runtime(std::slice::from_ref(u))
                    .await
                    .map_err(|e| e.to_string())?;
                self.units
                    .remove(u)
                    .map_err(|e| format!("removing {}: {e}", self.units.path(u).display()))?;
                self.observed.remove(u);
            }
            Action::Load(u, hash) => {
                let file = self.content(hash).await?;
                let path = self
                    .units
                    .write(u, &file)
                    .map_err(|e| format!("writing {}: {e}", self.units.path(u).display()))?;
                self.systemd
                    .link_runtime(&[path])
                    .await
                    .map_err(|e| e.to_string())?;
                let o = self.observed.entry(u.clone()).or_default();
                o.file = Some(*hash);
                o.done = o.done.or(Some(Target::Loaded));
            }
            Action::Reload => self.systemd.reload().await.map_err(|e| e.to_string())?,
            Action::Start(u) => {
                self.systemd.start(u).await.map_err(|e| e.to_string())?;
                self.observed.entry(u.clone()).or_default().done = Some(Target::Launched);
            }
            Action::Restart(u) => {
                self.systemd.restart(u).await.map_err(|e| e.to_string())?;
                self.observed.entry(u.clone()).or_default().done = Some(Target::Launched);
            }
        }
        Ok(())
    }

    async fn content(&mut self, hash: &UnitHash) -> Result<UnitFile, String> {
        if let Some(file) = self.contents.get(hash) {
            return Ok(file.clone());
        }
        match self.registry.content(hash).await {
            Ok(Some(file)) => {
                self.contents.insert(*hash, file.clone());
                Ok(file)
            }
            Ok(None) => Err(format!("content {hash} is missing from the registry")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes the state records that changed, deletes those of units gone from here.
    async fn publish(&mut self) {
        let mut records = BTreeMap::new();
        for (name, o) in &self.observed {
            let (Some(hash), Some(current)) = (o.file, o.done) else {
                continue;
            };
            let status = o.status.clone().unwrap_or(UnitStatus {
                load: LoadState::NotFound,
                active: ActiveState::Inactive,
                sub: "dead".into(),
            });
            let message = self.messages.get(name).cloned();
            // systemd reports a unit it refused to start as merely inactive; say it failed.
            let active = if message.is_some()
                && current == Target::Loaded
                && self
                    .desired
                    .get(name)
                    .is_some_and(|d| d.target == Target::Launched)
            {
                ActiveState::Failed
            } else {
                status.active
            };
            records.insert(
                name.clone(),
                UnitStateRecord {
                    hash,
                    current,
                    load: status.load,
                    active,
                    sub: status.sub,
                    message,
                },
            );
        }
        let me = self.config.machine_id.clone();
        let gone: Vec<UnitName> = self
            .published
            .keys()
            .filter(|n| !records.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            match self.registry.delete_state(&name, &me).await {
                Ok(()) => {
                    self.published.remove(&name);
                }
                Err(e) => tracing::warn!(unit = %name, error = %e, "cannot delete unit state"),
            }
        }
        for (name, record) in records {
            if self.published.get(&name) == Some(&record) {
                continue;
            }
            match self
                .registry
                .put_state(&name, &me, &record, &self.lease)
                .await
            {
                Ok(()) => {
                    self.published.insert(name, record);
                }
                Err(e) => tracing::warn!(unit = %name, error = %e, "cannot publish unit state"),
            }
        }
    }

    /// The lease is gone: etcd deleted this machine and the engine may already be moving its
    /// units elsewhere. Non-global units stop here, so that no unit runs twice.
    async fn self_fence(&mut self) {
        tracing::warn!("lease lost: stopping this machine's non-global units");
        self.desired.retain(|_, e| e.global);
        self.retries.clear();
        // No publishing: the lease the states lived under is gone, and so are they.
        self.converge().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_env_names_the_machine_its_metadata_and_the_clusters_etcd_for_etcdctl() {
        let config = AgentConfig {
            machine_id: MachineId::new("0123456789abcdef0123456789abcdef").unwrap(),
            public_ip: "10.0.0.2".into(),
            metadata: Metadata::parse_list("region=eu,rack.no=7").unwrap(),
            hostname: "node-2".into(),
            version: "0.1.0".into(),
            api: None,
            ttl: Duration::from_secs(10),
            units_directory: "/run/flotte/units".into(),
            etcd_endpoints: vec!["http://10.0.0.1:2379".into(), "http://10.0.0.3:2379".into()],
            resync: Duration::from_secs(300),
        };
        assert_eq!(
            machine_env(&config),
            "FLOTTE_HOST_ID=0123456789abcdef0123456789abcdef\n\
             FLOTTE_HOST_IP=10.0.0.2\n\
             FLOTTE_HOST_NAME=node-2\n\
             FLOTTE_HOST_METADATA=rack.no=7,region=eu\n\
             FLOTTE_HOST_METADATA_RACK_NO=7\n\
             FLOTTE_HOST_METADATA_REGION=eu\n\
             ETCDCTL_API=3\n\
             ETCDCTL_ENDPOINTS=http://10.0.0.1:2379,http://10.0.0.3:2379\n"
        );
    }
}
