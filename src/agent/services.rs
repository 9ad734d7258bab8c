//! Declared services: while a unit with a `[X-Flotte-Service]` section runs here, an instance
//! of its service is registered under the agent's lease, with the health its check finds.
//!
//! The agent offers what it published (`Services::offer`, after each pass); a task of its own
//! reads the declarations of the running units (from the unit contents, once per hash), keeps
//! one check task per checked instance, and writes what changed: an instance appears when its
//! unit is published running and is deleted in the same way when it stops. A check only
//! changes health (two failures in a row: critical; one success: passing); it never touches
//! the unit, whose restarts are systemd's business (`Restart=`).
//!
//! Which instances should exist is the pure `wanted`; how a check result moves health is the
//! pure `HealthState::after`; what to write is the pure `diff`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::machine::MachineId;
use crate::registry::{Health, InstanceId, InstanceRecord, Lease, Registry, UnitStateRecord};
use crate::systemd::ActiveState;
use crate::unit::{Check, ServiceDeclaration, Target, UnitFile, UnitHash, UnitName};

/// A failed write is tried again after this long.
const RETRY: Duration = Duration::from_secs(1);
/// A check that takes longer than this (or than its interval) has failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures in a row that make an instance critical.
const FAILURES_TO_CRITICAL: u32 = 2;

/// This machine as its instances name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub machine: MachineId,
    pub hostname: String,
    pub address: String,
}

/// What the agent last published: the units running here (by content), under which lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Running {
    lease: Option<Lease>,
    units: BTreeMap<UnitName, UnitHash>,
    /// The declarations of running units whose content the agent had at hand, so that the
    /// task need not read those contents from etcd again.
    known: BTreeMap<(UnitName, UnitHash), Option<ServiceDeclaration>>,
}

/// The agent's handle on the services task; the task ends when this is dropped.
pub(super) struct Services {
    offered: watch::Sender<Running>,
}

impl Services {
    pub(super) fn spawn(registry: Registry, host: Host) -> Self {
        let (offered, rx) = watch::channel(Running::default());
        tokio::spawn(Task::new(registry, host).run(rx));
        Self { offered }
    }

    /// Offers the states as published under `lease`: the task registers the instances of the
    /// running units and removes the others.
    /// `contents` are the unit files the agent has at hand.
    pub(super) fn offer(
        &self,
        lease: Lease,
        published: &BTreeMap<UnitName, UnitStateRecord>,
        contents: &HashMap<UnitHash, UnitFile>,
    ) {
        let units = running_units(published);
        let known = units
            .iter()
            .filter_map(|(name, hash)| {
                let file = contents.get(hash)?;
                Some(((name.clone(), *hash), declaration_of(name, file)))
            })
            .collect();
        let running = Running {
            lease: Some(lease),
            units,
            known,
        };
        self.offered.send_if_modified(|old| {
            let changed = *old != running;
            *old = running;
            changed
        });
    }
}

/// A unit's declared service; an invalid section (the API refuses those, an older flotted
/// may not have) is ignored with a warning.
fn declaration_of(unit: &UnitName, file: &UnitFile) -> Option<ServiceDeclaration> {
    ServiceDeclaration::from_unit(unit, file)
        .inspect_err(|errors| {
            let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
            tracing::warn!(unit = %unit, errors = ?messages, "ignoring an invalid [X-Flotte-Service] section");
        })
        .ok()
        .flatten()
}

/// The units a published state shows started and active: only those serve. A unit still
/// activating has not started serving, and one deactivating is stopping: neither is listed.
fn running_units(published: &BTreeMap<UnitName, UnitStateRecord>) -> BTreeMap<UnitName, UnitHash> {
    published
        .iter()
        .filter(|(_, r)| {
            r.current == Target::Launched
                && matches!(
                    r.active,
                    ActiveState::Active | ActiveState::Reloading | ActiveState::Refreshing
                )
        })
        .map(|(n, r)| (n.clone(), r.hash))
        .collect()
}

/// An instance's health and its failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub health: Health,
    pub failures: u32,
}

impl HealthState {
    /// Before the first check: not yet known to be healthy.
    pub const UNCHECKED: HealthState = HealthState {
        health: Health::Unknown,
        failures: 0,
    };

    /// One success makes it passing; `FAILURES_TO_CRITICAL` failures in a row make it
    /// critical; fewer leave it as it was.
    pub fn after(self, passed: bool) -> HealthState {
        if passed {
            return HealthState {
                health: Health::Passing,
                failures: 0,
            };
        }
        let failures = self.failures.saturating_add(1);
        HealthState {
            health: if failures >= FAILURES_TO_CRITICAL {
                Health::Critical
            } else {
                self.health
            },
            failures,
        }
    }
}

/// The instances that should exist: one per running unit that declares a service, with its
/// health as known (`Passing` for a service without a check, `Unknown` before its first).
pub fn wanted(
    running: &BTreeMap<UnitName, UnitHash>,
    declarations: &HashMap<(UnitName, UnitHash), Option<ServiceDeclaration>>,
    health: &BTreeMap<InstanceId, HealthState>,
    host: &Host,
) -> BTreeMap<InstanceId, (InstanceRecord, ServiceDeclaration)> {
    let mut out = BTreeMap::new();
    for (unit, hash) in running {
        let Some(Some(d)) = declarations.get(&(unit.clone(), *hash)) else {
            continue;
        };
        let id = InstanceId {
            service: d.name.clone(),
            machine: host.machine.clone(),
            unit: unit.clone(),
        };
        let health = match d.check {
            None => Health::Passing,
            Some(_) => health.get(&id).unwrap_or(&HealthState::UNCHECKED).health,
        };
        let record = InstanceRecord {
            service: d.name.clone(),
            machine: host.machine.clone(),
            hostname: host.hostname.clone(),
            address: host.address.clone(),
            port: d.port,
            tags: d.tags.clone(),
            unit: unit.clone(),
            health,
        };
        out.insert(id, (record, d.clone()));
    }
    out
}

/// What to write to bring etcd from `written` to `wanted`: puts of new or changed records,
/// deletions of the others. Under a new lease, every wanted record is written again.
pub fn diff(
    written: &BTreeMap<InstanceId, InstanceRecord>,
    wanted: &BTreeMap<InstanceId, InstanceRecord>,
    new_lease: bool,
) -> Vec<(InstanceId, Option<InstanceRecord>)> {
    let mut changes: Vec<(InstanceId, Option<InstanceRecord>)> = written
        .keys()
        .filter(|id| !wanted.contains_key(*id))
        .map(|id| (id.clone(), None))
        .collect();
    changes.extend(
        wanted
            .iter()
            .filter(|(id, r)| new_lease || written.get(*id) != Some(*r))
            .map(|(id, r)| (id.clone(), Some(r.clone()))),
    );
    changes
}

/// One check's outcome: which instance, and whether it passed.
type CheckResult = (InstanceId, bool);

/// A running check: what it checks, so that a changed declaration restarts it.
struct Checker {
    what: (Check, u16, Duration),
    task: AbortHandle,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Task {
    registry: Registry,
    host: Host,
    running: Running,
    declarations: HashMap<(UnitName, UnitHash), Option<ServiceDeclaration>>,
    health: BTreeMap<InstanceId, HealthState>,
    checkers: BTreeMap<InstanceId, Checker>,
    /// Check results, as (instance, passed): senders go to the check tasks.
    results: (
        mpsc::UnboundedSender<CheckResult>,
        mpsc::UnboundedReceiver<CheckResult>,
    ),
    written: BTreeMap<InstanceId, InstanceRecord>,
    written_lease: Option<Lease>,
    /// A write failed: try again at this instant.
    retry_at: Option<tokio::time::Instant>,
}

impl Task {
    fn new(registry: Registry, host: Host) -> Self {
        Self {
            registry,
            host,
            running: Running::default(),
            declarations: HashMap::new(),
            health: BTreeMap::new(),
            checkers: BTreeMap::new(),
            results: mpsc::unbounded_channel(),
            written: BTreeMap::new(),
            written_lease: None,
            retry_at: None,
        }
    }

    async fn run(mut self, mut offered: watch::Receiver<Running>) {
        loop {
            tokio::select! {
                changed = offered.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.running = offered.borrow_and_update().clone();
                    self.read_declarations().await;
                }
                Some((id, passed)) = self.results.1.recv() => {
                    if self.checkers.contains_key(&id) {
                        let state = self.health.get(&id).copied().unwrap_or(HealthState::UNCHECKED);
                        self.health.insert(id, state.after(passed));
                    }
                }
                _ = crate::backoff::sleep_until(self.retry_at) => {}
            }
            self.sync().await;
        }
    }

    /// Reads the declarations of running units not seen yet: from the agent's files when it
    /// had them, else from their contents in etcd.
    async fn read_declarations(&mut self) {
        for (key, declared) in &self.running.known {
            if !self.declarations.contains_key(key) {
                self.declarations.insert(key.clone(), declared.clone());
            }
        }
        let missing: Vec<(UnitName, UnitHash)> = self
            .running
            .units
            .iter()
            .map(|(n, h)| (n.clone(), *h))
            .filter(|k| !self.declarations.contains_key(k))
            .collect();
        if missing.is_empty() {
            return;
        }
        let hashes: Vec<UnitHash> = missing.iter().map(|(_, h)| *h).collect();
        let files: HashMap<UnitHash, _> =
            self.registry.contents(&hashes).await.into_iter().collect();
        for (unit, hash) in missing {
            match files.get(&hash) {
                Some(Ok(Some(file))) => {
                    let declared = declaration_of(&unit, file);
                    self.declarations.insert((unit, hash), declared);
                }
                Some(Ok(None)) => {
                    self.declarations.insert((unit, hash), None);
                }
                // Read again at the next offer or retry.
                Some(Err(e)) => {
                    tracing::warn!(unit = %unit, error = %e, "cannot read a unit's service declaration");
                    self.retry_at = Some(tokio::time::Instant::now() + RETRY);
                }
                None => {}
            }
        }
        // Forget declarations of contents no unit runs any more.
        let running = &self.running.units;
        self.declarations
            .retain(|(u, h), _| running.get(u) == Some(h));
    }

    /// Starts and stops checks to match what is wanted, then writes what changed.
    async fn sync(&mut self) {
        if self
            .retry_at
            .is_some_and(|at| at <= tokio::time::Instant::now())
        {
            self.retry_at = None;
            self.read_declarations().await;
        }
        let Some(lease) = self.running.lease else {
            return;
        };
        let wanted = wanted(
            &self.running.units,
            &self.declarations,
            &self.health,
            &self.host,
        );
        self.checkers.retain(|id, c| {
            wanted
                .get(id)
                .and_then(|(r, d)| {
                    d.check
                        .clone()
                        .map(|check| (check, r.port, d.check_interval))
                })
                .is_some_and(|what| what == c.what)
        });
        self.health.retain(|id, _| self.checkers.contains_key(id));
        for (id, (record, declared)) in &wanted {
            let Some(check) = &declared.check else {
                continue;
            };
            if self.checkers.contains_key(id) {
                continue;
            }
            let what = (check.clone(), record.port, declared.check_interval);
            let task = tokio::spawn(check_loop(
                id.clone(),
                format!("{}:{}", self.host.address, record.port),
                what.clone(),
                self.results.0.clone(),
            ))
            .abort_handle();
            self.checkers.insert(id.clone(), Checker { what, task });
        }
        let wanted: BTreeMap<InstanceId, InstanceRecord> =
            wanted.into_iter().map(|(id, (r, _))| (id, r)).collect();
        let new_lease = self.written_lease != Some(lease);
        if new_lease {
            // What was written under another lease is gone with it, or will be.
            self.written.clear();
        }
        let changes = diff(&self.written, &wanted, new_lease);
        if changes.is_empty() {
            self.written_lease = Some(lease);
            return;
        }
        match self.registry.write_instances(&changes, &lease).await {
            Ok(()) => {
                for (id, record) in changes {
                    match record {
                        Some(r) => self.written.insert(id, r),
                        None => self.written.remove(&id),
                    };
                }
                self.written_lease = Some(lease);
            }
            Err(e) => {
                tracing::warn!(error = %e, instances = changes.len(), "cannot write service instances");
                self.retry_at = Some(tokio::time::Instant::now() + RETRY);
            }
        }
    }
}

/// Checks one instance every interval, the first time at once, until aborted.
async fn check_loop(
    id: InstanceId,
    address: String,
    (check, _, interval): (Check, u16, Duration),
    results: mpsc::UnboundedSender<CheckResult>,
) {
    let timeout = interval.min(CHECK_TIMEOUT);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = tokio::time::timeout(timeout, probe(&address, &check)).await;
        let passed = match outcome {
            Ok(Ok(())) => true,
            Ok(Err(why)) => {
                tracing::debug!(service = %id.service, unit = %id.unit, %address, why, "check failed");
                false
            }
            Err(_) => {
                tracing::debug!(service = %id.service, unit = %id.unit, %address, ?timeout, "check timed out");
                false
            }
        };
        if results.send((id.clone(), passed)).is_err() {
            return;
        }
    }
}

/// One check: a TCP connection accepted, or `GET PATH` answered 2xx.
pub async fn probe(address: &str, check: &Check) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let Check::Http { path } = check else {
        return Ok(());
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, address)
        .header(hyper::header::USER_AGENT, "flotted-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    connection.abort();
    let status = response?.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET {path} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::LoadState;
    use crate::unit::ServiceName;

    fn name(n: &str) -> UnitName {
        UnitName::new(n).unwrap()
    }

    fn hash(c: char) -> UnitHash {
        c.to_string().repeat(40).parse().unwrap()
    }

    fn host() -> Host {
        Host {
            machine: MachineId::new(&"a".repeat(32)).unwrap(),
            hostname: "host-1".into(),
            address: "10.0.0.1".into(),
        }
    }

    fn declared(service: &str, port: u16, check: Option<Check>) -> ServiceDeclaration {
        ServiceDeclaration {
            name: ServiceName::new(service).unwrap(),
            port,
            tags: vec![ServiceName::new("v2").unwrap()],
            check,
            check_interval: Duration::from_secs(5),
        }
    }

    fn id(service: &str, unit: &str) -> InstanceId {
        InstanceId {
            service: ServiceName::new(service).unwrap(),
            machine: host().machine,
            unit: name(unit),
        }
    }

    fn state(current: Target, active: ActiveState) -> UnitStateRecord {
        UnitStateRecord {
            hash: hash('1'),
            current,
            load: LoadState::Loaded,
            active,
            sub: String::new(),
            message: None,
            started: 0,
        }
    }

    #[test]
    fn only_units_published_started_and_running_serve() {
        let published = BTreeMap::from([
            (
                name("a.service"),
                state(Target::Launched, ActiveState::Active),
            ),
            (
                name("b.service"),
                state(Target::Launched, ActiveState::Reloading),
            ),
            (
                name("c.service"),
                state(Target::Launched, ActiveState::Failed),
            ),
            (
                name("d.service"),
                state(Target::Launched, ActiveState::Inactive),
            ),
            (
                name("e.service"),
                state(Target::Loaded, ActiveState::Active),
            ),
            (
                name("f.service"),
                state(Target::Launched, ActiveState::Deactivating),
            ),
        ]);
        let got: Vec<String> = running_units(&published)
            .keys()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(got, ["a.service", "b.service"]);
    }

    #[test]
    fn wanted_instances_follow_running_units_and_their_declarations() {
        let http = Some(Check::Http {
            path: "/health".into(),
        });
        let declarations = HashMap::from([
            (
                (name("web@1.service"), hash('1')),
                Some(declared("web", 8001, http.clone())),
            ),
            (
                (name("web@2.service"), hash('2')),
                Some(declared("web", 8002, http.clone())),
            ),
            (
                (name("db.service"), hash('3')),
                Some(declared("db", 5432, None)),
            ),
            ((name("plain.service"), hash('4')), None),
        ]);
        let health = BTreeMap::from([(
            id("web", "web@2.service"),
            HealthState {
                health: Health::Critical,
                failures: 2,
            },
        )]);
        struct Case {
            running: &'static [(&'static str, char)],
            expected: &'static [(&'static str, &'static str, u16, Health)],
        }
        let cases = [
            Case {
                running: &[],
                expected: &[],
            },
            Case {
                running: &[
                    ("web@1.service", '1'),
                    ("web@2.service", '2'),
                    ("db.service", '3'),
                    ("plain.service", '4'),
                ],
                expected: &[
                    ("db", "db.service", 5432, Health::Passing),
                    ("web", "web@1.service", 8001, Health::Unknown),
                    ("web", "web@2.service", 8002, Health::Critical),
                ],
            },
            // A unit running other content than the declaration was read from serves nothing
            // until its own declaration is read.
            Case {
                running: &[("web@1.service", '9'), ("db.service", '3')],
                expected: &[("db", "db.service", 5432, Health::Passing)],
            },
            Case {
                running: &[("unknown.service", '1')],
                expected: &[],
            },
        ];
        for case in cases {
            let running: BTreeMap<UnitName, UnitHash> = case
                .running
                .iter()
                .map(|(n, h)| (name(n), hash(*h)))
                .collect();
            let got: Vec<(String, String, u16, Health)> =
                wanted(&running, &declarations, &health, &host())
                    .into_values()
                    .map(|(r, _)| {
                        assert_eq!(r.address, "10.0.0.1");
                        assert_eq!(r.hostname, "host-1");
                        assert_eq!(r.tags, vec![ServiceName::new("v2").unwrap()]);
                        (r.service.to_string(), r.unit.to_string(), r.port, r.health)
                    })
                    .collect();
            let expected: Vec<(String, String, u16, Health)> = case
                .expected
                .iter()
                .map(|(s, u, p, h)| (s.to_string(), u.to_string(), *p, *h))
                .collect();
            assert_eq!(got, expected, "running {:?}", case.running);
        }
    }

    #[test]
    fn two_failures_in_a_row_make_critical_and_one_success_passing() {
        use Health::*;
        let cases: &[(&[bool], Health)] = &[
            (&[], Unknown),
            (&[true], Passing),
            (&[false], Unknown),
            (&[false, false], Critical),
            (&[true, false], Passing),
            (&[true, false, false], Critical),
            (&[true, false, true, false], Passing),
            (&[false, false, false, true], Passing),
            (&[true, false, false, false, false], Critical),
        ];
        for (results, expected) in cases {
            let end = results
                .iter()
                .fold(HealthState::UNCHECKED, |s, passed| s.after(*passed));
            assert_eq!(end.health, *expected, "{results:?}");
        }
    }

    #[test]
    fn the_diff_puts_what_changed_and_deletes_what_is_gone() {
        let record = |unit: &str, health| InstanceRecord {
            service: ServiceName::new("web").unwrap(),
            machine: host().machine,
            hostname: "host-1".into(),
            address: "10.0.0.1".into(),
            port: 80,
            tags: vec![],
            unit: name(unit),
            health,
        };
        let entry = |unit: &str, health| (id("web", unit), record(unit, health));
        let written = BTreeMap::from([
            entry("a.service", Health::Passing),
            entry("b.service", Health::Passing),
            entry("c.service", Health::Passing),
        ]);
        let wanted = BTreeMap::from([
            entry("a.service", Health::Passing),
            entry("b.service", Health::Critical),
            entry("d.service", Health::Unknown),
        ]);
        let short =
            |changes: Vec<(InstanceId, Option<InstanceRecord>)>| -> Vec<(String, Option<Health>)> {
                changes
                    .into_iter()
                    .map(|(id, r)| (id.unit.to_string(), r.map(|r| r.health)))
                    .collect()
            };
        assert_eq!(
            short(diff(&written, &wanted, false)),
            vec![
                ("c.service".into(), None),
                ("b.service".into(), Some(Health::Critical)),
                ("d.service".into(), Some(Health::Unknown)),
            ]
        );
        assert_eq!(
            short(diff(&written, &wanted, true)),
            vec![
                ("c.service".into(), None),
                ("a.service".into(), Some(Health::Passing)),
                ("b.service".into(), Some(Health::Critical)),
                ("d.service".into(), Some(Health::Unknown)),
            ]
        );
        assert!(diff(&written, &written, false).is_empty());
    }

    #[tokio::test]
    async fn probes_tell_a_listening_port_from_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().to_string();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert_eq!(probe(&open, &Check::Tcp).await, Ok(()));
        let e = probe(&closed, &Check::Tcp).await.unwrap_err();
        assert!(e.starts_with("cannot connect"), "{e}");
    }
}
