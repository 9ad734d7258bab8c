//! Churn without loss (issue 12, item 4): a seeded randomized run of thousands of operations
//! on a real 3-host cluster — units submitted, started, stopped, unloaded, destroyed and
//! replaced (new content, `Replaces=`), machine metadata changed through the API, agents
//! restarted, engine leaders killed, a host killed and brought back — sampling every host's
//! systemd meanwhile for a non-global unit running twice; then, once the cluster converged,
//! every invariant of `check` on snapshots of every etcd key and every host.
//!
//! `FLOTTE_CHURN_SEED` replays a run (the seed is printed at the start and in every failure),
//! `FLOTTE_CHURN_OPS` lengthens it (2,000 by default):
//! `FLOTTE_CHURN_OPS=20000 cargo test --test e2e churn:: -- --nocapture`.

mod check;
mod model;
mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotte::isolated::EtcdAccess;
use flotte::machine::MachineId;
use flotte::registry::Registry;
use flotte::systemd::{Bus, Systemd};
use flotte::unit::{DesiredState, UnitName};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use serde_json::json;

use self::check::{HostSnapshot, Kv, RegistrySnapshot, UnitSeen};
use self::model::{Life, Model, Spec};
use self::ops::{Generator, Op, Touches};
use crate::support::*;

/// The agents' lease outlives a flotted restart and a leader's handover on a loaded machine
/// (a flotted down longer than its lease would, rightly, have its units started elsewhere
/// while they still run); a killed host's units move after it.
const SETTINGS: &[(&str, &str)] = &[("agent_ttl", "10s"), ("engine_lease_ttl", "2s")];
/// Host-1's address: 127.0.1.x is the quick start's, 127.0.2.x the cluster benchmark's, the
/// other tests' are 127.<2..>.x.
const FIRST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);
const HOSTS: &[(&str, &str)] = &[
    ("host-1", "zone=a,disk=ssd"),
    ("host-2", "zone=b,disk=hdd"),
    ("host-3", "zone=c,disk=ssd"),
];
const DEFAULT_OPS: u64 = 2000;
/// Fast operations sent at once (each writing a different unit or metadata key).
const BATCH: usize = 8;
const SAMPLE_EVERY: Duration = Duration::from_millis(300);
/// A copy left running by a move or a destroy is stopped within this (its agent may be down
/// for a restart or a leader's handover, a few seconds here).
const LEFTOVER_LIMIT: Duration = Duration::from_secs(10);
const CONVERGE: Duration = Duration::from_secs(120);
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// The run's seed and length from `FLOTTE_CHURN_SEED` and `FLOTTE_CHURN_OPS` (a random seed
/// and `DEFAULT_OPS` when unset).
fn run_settings(seed: Option<&str>, ops: Option<&str>) -> Result<(u64, u64), String> {
    let seed = match seed {
        Some(s) => s
            .parse()
            .map_err(|e| format!("FLOTTE_CHURN_SEED `{s}` is not a u64: {e}"))?,
        None => rand::random(),
    };
    let ops = match ops {
        Some(s) => s
            .parse()
            .map_err(|e| format!("FLOTTE_CHURN_OPS `{s}` is not a count: {e}"))?,
        None => DEFAULT_OPS,
    };
    Ok((seed, ops))
}

#[test]
fn the_seed_and_length_come_from_the_environment_or_defaults() {
    assert_eq!(run_settings(Some("42"), Some("20000")), Ok((42, 20000)));
    assert_eq!(run_settings(Some("7"), None), Ok((7, DEFAULT_OPS)));
    assert_eq!(
        run_settings(Some("x"), None),
        Err("FLOTTE_CHURN_SEED `x` is not a u64: invalid digit found in string".into())
    );
    assert!(run_settings(None, Some("-1")).is_err());
    assert_eq!(run_settings(None, None).unwrap().1, DEFAULT_OPS);
}

/// A request to a flotted's API over its unix socket: status and body, or why none came.
async fn request(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(hyper::StatusCode, String), String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "flotte");
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let resp = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The API request an operation is, as fleetctl would send it: (method, path, body).
fn api_request(op: &Op, ids: &[MachineId]) -> (hyper::Method, String, Option<serde_json::Value>) {
    let unit_path = |u: &str| format!("/fleet/v1/units/{u}");
    let with_options = |spec: &Spec, desired: DesiredState| {
        let text = spec.text(ids);
        let file = flotte::unit::UnitFile::parse(text.as_bytes()).unwrap().file;
        let options: Vec<_> = file
            .options()
            .iter()
            .map(|o| json!({"section": o.section, "name": o.name, "value": o.value}))
            .collect();
        json!({"desiredState": desired.to_string(), "options": options})
    };
    match op {
        Op::Submit {
            unit,
            spec,
            desired,
        } => (
            hyper::Method::PUT,
            unit_path(unit),
            Some(with_options(spec, *desired)),
        ),
        Op::Replace { .. } => unreachable!("a replacement needs the unit's desired state"),
        Op::Desire { unit, desired } => (
            hyper::Method::PUT,
            unit_path(unit),
            Some(json!({"desiredState": desired.to_string()})),
        ),
        Op::Destroy { unit } => (hyper::Method::DELETE, unit_path(unit), None),
        Op::SetMetadata { host, key, value } => (
            hyper::Method::PATCH,
            "/fleet/v1/machines".into(),
            Some(
                json!([{"op": "add", "path": format!("/{}/metadata/{key}", ids[*host]), "value": value}]),
            ),
        ),
        Op::RemoveMetadata { host, key } => (
            hyper::Method::PATCH,
            "/fleet/v1/machines".into(),
            Some(json!([{"op": "remove", "path": format!("/{}/metadata/{key}", ids[*host])}])),
        ),
        Op::RestartAgent { .. } | Op::KillLeader | Op::KillHost { .. } | Op::ReviveHost { .. } => {
            unreachable!("not an API request")
        }
    }
}

/// A non-global unit seen running on two hosts in one sample.
#[derive(Debug, Clone)]
struct Overlap {
    at: Duration,
    /// What the run was doing then.
    during: String,
    unit: String,
    twice: check::Twice,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} running twice ({:?}), {:?} into the run, during {}",
            self.unit, self.twice, self.at, self.during
        )
    }
}

#[derive(Debug, Default)]
struct Samples {
    samples: u64,
    /// Host answers missing from samples (a host down, its systemd busy past 1 s).
    unanswered: u64,
    /// The first 50 times a non-global unit ran on two hosts, and how many there were.
    overlaps: Vec<Overlap>,
    overlap_count: u64,
    /// Leftover copies that ran longer than `LEFTOVER_LIMIT` in a row.
    stale: Vec<String>,
}

/// Asks every host's systemd every `SAMPLE_EVERY` which of the run's units run there.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Samples>,
}

impl Sampler {
    fn start(
        buses: Vec<Bus>,
        registry: Registry,
        ids: Vec<MachineId>,
        doing: Arc<Mutex<String>>,
    ) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let names: Vec<UnitName> = model::all_names().iter().map(|n| unit(n)).collect();
        let task = tokio::spawn(async move {
            let began = Instant::now();
            let mut s = Samples::default();
            let mut leftovers = check::Leftovers::default();
            let mut conns: Vec<Option<Systemd>> = buses.iter().map(|_| None).collect();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                let mut running: Vec<(usize, Vec<String>)> = Vec::new();
                for (i, bus) in buses.iter().enumerate() {
                    if conns[i].is_none() {
                        conns[i] =
                            tokio::time::timeout(Duration::from_secs(1), Systemd::connect(bus))
                                .await
                                .ok()
                                .and_then(Result::ok);
                    }
                    let Some(sd) = &conns[i] else {
                        s.unanswered += 1;
                        continue;
                    };
                    match tokio::time::timeout(Duration::from_secs(1), sd.list_by_names(&names))
                        .await
                    {
                        Ok(Ok(view)) => running.push((
                            i,
                            view.into_iter()
                                .filter(|(_, st)| st.active.is_running())
                                .map(|(n, _)| n.to_string())
                                .collect(),
                        )),
                        _ => {
                            conns[i] = None;
                            s.unanswered += 1;
                        }
                    }
                }
                s.samples += 1;
                let twice = check::running_twice(running.iter().map(|(i, n)| (*i, n.as_slice())));
                // Where the registry schedules each of them, read right after.
                let schedule = if twice.is_empty() {
                    Vec::new()
                } else {
                    registry
                        .schedule()
                        .await
                        .map(|(s, _)| s)
                        .unwrap_or_default()
                };
                let mut left = Vec::new();
                for (unit, hosts) in twice {
                    let scheduled: BTreeSet<usize> = schedule
                        .iter()
                        .filter(|((_, u), _)| u.as_str() == unit)
                        .filter_map(|((m, _), _)| ids.iter().position(|id| id == m))
                        .collect();
                    let twice = check::judge_twice(&hosts, &scheduled);
                    if let check::Twice::Leftover(old) = &twice {
                        left.extend(old.iter().map(|h| (unit.clone(), *h)));
                    }
                    s.overlap_count += 1;
                    if s.overlaps.len() < 50 {
                        s.overlaps.push(Overlap {
                            at: began.elapsed(),
                            during: doing.lock().unwrap().clone(),
                            unit,
                            twice,
                        });
                    }
                }
                for (unit, host, ran) in leftovers.observe(began.elapsed(), &left, LEFTOVER_LIMIT) {
                    if s.stale.len() < 50 {
                        s.stale.push(format!(
                            "{unit} kept running on host {host} {ran:?} after it was scheduled elsewhere \
                             or nowhere, during {}",
                            doing.lock().unwrap()
                        ));
                    }
                }
            }
            s
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Every key under the registry's prefix with its lease, then the leases etcd has.
async fn registry_snapshot(etcd: &mut etcd_client::Client, prefix: &str) -> RegistrySnapshot {
    let resp = etcd
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("reading every key");
    let kvs = resp
        .kvs()
        .iter()
        .map(|kv| Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            lease: kv.lease(),
        })
        .collect();
    let live_leases = etcd
        .leases()
        .await
        .expect("listing leases")
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    RegistrySnapshot { kvs, live_leases }
}

/// What host `i` has of the run's units: files in the agent's units directory, what its
/// systemd knows, and the command line of each running main process.
async fn host_snapshot(t: &TestCluster, i: usize) -> Result<HostSnapshot, String> {
    let host = t.cluster.host(i);
    let dir: PathBuf = host.record().path("/run/flotte/units");
    let mut files = BTreeMap::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                files.insert(name, text);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", dir.display())),
    }
    let sd = Systemd::connect(&host.bus())
        .await
        .map_err(|e| format!("host {i}'s systemd: {e}"))?;
    let names: Vec<UnitName> = model::all_names().iter().map(|n| unit(n)).collect();
    let mut units = BTreeMap::new();
    for (name, st) in sd
        .list_by_names(&names)
        .await
        .map_err(|e| format!("host {i}'s units: {e}"))?
    {
        if st.load.as_str() == "not-found" {
            continue;
        }
        let cmdline = if st.active.as_str() == "active" {
            match sd.main_pid(&name).await {
                Ok(pid) if pid > 0 => std::fs::read(format!("/proc/{pid}/cmdline"))
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " ")),
                _ => None,
            }
        } else {
            None
        };
        units.insert(
            name.to_string(),
            UnitSeen {
                load: st.load.to_string(),
                active: st.active.to_string(),
                cmdline,
            },
        );
    }
    Ok(HostSnapshot {
        id: t.cluster.machine_id(i).clone(),
        files,
        units,
    })
}

/// Sends one fast operation through the API of a running host, another one if that one
/// does not answer (restarting, or not registered yet: 503), until `REQUEST_DEADLINE`.
async fn send(
    sockets: &[PathBuf],
    up: &[usize],
    first: usize,
    op: &Op,
    request: (hyper::Method, String, Option<serde_json::Value>),
    seed: u64,
) {
    let started = Instant::now();
    let mut attempt = first;
    loop {
        let socket = &sockets[up[attempt % up.len()]];
        let failure =
            match self::request(socket, request.0.clone(), &request.1, request.2.clone()).await {
                Ok((status, _)) if status.is_success() => return,
                Ok((status, body)) if status == hyper::StatusCode::SERVICE_UNAVAILABLE => {
                    format!("503 {body}")
                }
                Ok((status, body)) => {
                    panic!(
                        "churn seed {seed}: {op:?}: {} {}: {status} {body}",
                        request.0, request.1
                    )
                }
                Err(e) => e,
            };
        assert!(
            started.elapsed() < REQUEST_DEADLINE,
            "churn seed {seed}: {op:?} got no answer within {REQUEST_DEADLINE:?}: {failure}"
        );
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a batch of fast operations at once, through the APIs of the running hosts.
async fn run_batch(
    t: &TestCluster,
    model: &Model,
    batch: &[(Op, Option<DesiredState>)],
    seed: u64,
) {
    let ids = model.ids();
    let up: Vec<usize> = (0..model.hosts.len())
        .filter(|i| model.hosts[*i].life == Life::Up)
        .collect();
    let sockets: Vec<PathBuf> = (0..t.cluster.len())
        .map(|i| t.cluster.socket(i).to_owned())
        .collect();
    let sends = batch.iter().enumerate().map(|(n, (op, desired))| {
        let req = match op {
            // A replacement keeps the unit's desired state, as the model does.
            Op::Replace { unit, spec } => api_request(
                &Op::Submit {
                    unit: unit.clone(),
                    spec: spec.clone(),
                    desired: desired.expect("a replaced unit's desired state"),
                },
                &ids,
            ),
            op => api_request(op, &ids),
        };
        let (sockets, up) = (&sockets, &up);
        async move { send(sockets, up, n, op, req, seed).await }
    });
    futures_util::future::join_all(sends).await;
}

/// The batch about to run, for the sampler's reports: the operations after the first
/// `applied`.
fn describe(applied: u64, batch: &[(Op, Option<DesiredState>)]) -> String {
    let first = applied - batch.len() as u64;
    let ops: Vec<String> = batch.iter().map(|(op, _)| format!("{op:?}")).collect();
    format!("operations {first}..{applied}: {}", ops.join("; "))
}

/// Copies every host's flotted.log where a failed run's cluster (removed when the test
/// ends) leaves them, and says where.
fn keep_logs(t: &TestCluster, seed: u64) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("churn-{seed}"));
    let _ = std::fs::create_dir_all(&dir);
    for i in 0..t.cluster.len() {
        let _ = std::fs::copy(
            t.cluster.host(i).dir().join("flotted.log"),
            dir.join(format!("host{i}-flotted.log")),
        );
    }
    format!(
        "each host's flotted log is in {} (host<i>-flotted.log, i as in the reports)",
        dir.display()
    )
}

/// Runs one slow operation: processes killed and started.
async fn run_slow(t: &mut TestCluster, model: &Model, op: &Op, seed: u64) {
    match op {
        Op::RestartAgent { host, graceful } => {
            let signal = if *graceful {
                Signal::SIGTERM
            } else {
                Signal::SIGKILL
            };
            t.cluster.stop_flotted(*host, signal);
            t.cluster.start_flotted(*host).unwrap();
        }
        Op::KillLeader => {
            let leader = t.registry.leader().await.unwrap();
            let Some(i) = leader.as_ref().and_then(|l| t.cluster.index_of(l)) else {
                // No leader at this instant (a handover under way): nothing to kill.
                return;
            };
            if model.hosts[i].life != Life::Up {
                // The leader of a host just killed, until its lease expires: a handover
                // under way already.
                return;
            }
            t.cluster.stop_flotted(i, Signal::SIGKILL);
            let registry = t.registry.clone();
            flotte::isolated::wait_for(
                Duration::from_secs(20),
                || format!("churn seed {seed}: no other engine led after the leader was killed"),
                || async {
                    let now = registry.leader().await.ok().flatten();
                    (now.is_some() && now != leader).then_some(())
                },
            )
            .await
            .unwrap();
            t.cluster.start_flotted(i).unwrap();
        }
        Op::KillHost { host } => t.cluster.kill_host(*host).unwrap(),
        Op::ReviveHost { host } => t
            .cluster
            .restart_host(*host)
            .await
            .unwrap_or_else(|e| panic!("churn seed {seed}: reviving host {host}: {e}")),
        _ => unreachable!("a fast operation"),
    }
}

/// Snapshots of the registry and every host, and what `check_all` finds wrong in them.
async fn violations(t: &TestCluster, model: &Model, etcd: &mut etcd_client::Client) -> Vec<String> {
    let registry = registry_snapshot(etcd, t.registry.keys().prefix()).await;
    let mut hosts = Vec::new();
    for i in 0..t.cluster.len() {
        match host_snapshot(t, i).await {
            Ok(h) => hosts.push(h),
            Err(e) => return vec![e],
        }
    }
    check::check_all(model, t.registry.keys(), &registry, &hosts)
}

/// Whether a copy a move left running may overlap the new one for a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moves {
    /// As long as its agent stops it within `LEFTOVER_LIMIT`.
    Overlap,
    /// Never: no non-global unit ever runs on two hosts.
    NeverOverlap,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_randomized_churn_loses_nothing_and_never_places_a_unit_twice() {
    churn(Moves::Overlap).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "not yet in CI: it found three ways a moved unit ran twice, all fixed (the engine's \
            guarded placement, an agent unloading a unit only once it stopped, a unit between a \
            restart's stop and start read as activating); with all three it passed 17 of 17 runs, \
            too few to trust a random seed in every CI run; one earlier run did not converge"]
async fn a_unit_being_moved_never_runs_on_two_machines_at_once() {
    churn(Moves::NeverOverlap).await;
}

/// The two churn runs share their hosts' addresses (`FIRST_IP`) and would each load a small
/// machine: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn churn(moves: Moves) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (seed, total) = run_settings(
        std::env::var("FLOTTE_CHURN_SEED").ok().as_deref(),
        std::env::var("FLOTTE_CHURN_OPS").ok().as_deref(),
    )
    .unwrap();
    eprintln!(
        "churn: seed {seed}, {total} operations (replay: FLOTTE_CHURN_SEED={seed} \
         FLOTTE_CHURN_OPS={total} cargo test --test e2e churn:: -- --nocapture)"
    );
    let mut t = cluster_at("churn", HOSTS, SETTINGS, EtcdAccess::Direct, FIRST_IP).await;
    let hosts: Vec<(MachineId, &str)> = HOSTS
        .iter()
        .enumerate()
        .map(|(i, (_, meta))| (t.cluster.machine_id(i).clone(), *meta))
        .collect();
    let mut model = Model::new(&hosts);
    let mut generator = Generator::new(seed);
    // What the run is doing, for the sampler's reports.
    let doing = Arc::new(Mutex::new(String::from("starting")));
    let buses: Vec<Bus> = (0..t.cluster.len())
        .map(|i| t.cluster.host(i).bus())
        .collect();
    let sampler = Sampler::start(buses, t.registry.clone(), model.ids(), doing.clone());
    let says = |what: String| *doing.lock().unwrap() = what;
    let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
    let started = Instant::now();

    // Fast operations gather into a batch until one writes what the batch already writes,
    // or a slow one comes: the batch goes first. (Fast operations change no host's life, so
    // the model when a batch is sent tells which hosts' APIs to use.)
    let mut batch: Vec<(Op, Option<DesiredState>)> = Vec::new();
    let mut touched: BTreeSet<Touches> = BTreeSet::new();
    for _ in 0..total {
        let op = generator.next(&model);
        *tally.entry(op.kind()).or_default() += 1;
        let desired = match &op {
            Op::Replace { unit, .. } => Some(model.units[unit].desired),
            _ => None,
        };
        let key = op.touches();
        let fits = key
            .as_ref()
            .is_some_and(|k| batch.len() < BATCH && !touched.contains(k));
        if !fits {
            says(describe(model.applied, &batch));
            run_batch(&t, &model, &batch, seed).await;
            batch.clear();
            touched.clear();
        }
        match key {
            Some(key) => {
                touched.insert(key);
                batch.push((op.clone(), desired));
            }
            None => {
                says(format!("operation {}: {op:?}", model.applied));
                run_slow(&mut t, &model, &op, seed).await;
                says(format!("after operation {}: {op:?}", model.applied));
            }
        }
        ops::apply(&mut model, &op);
    }
    says(describe(model.applied, &batch));
    run_batch(&t, &model, &batch, seed).await;
    for i in 0..model.hosts.len() {
        if model.hosts[i].life != Life::Up {
            let revive = Op::ReviveHost { host: i };
            says(format!("after the run: {revive:?}"));
            run_slow(&mut t, &model, &revive, seed).await;
            ops::apply(&mut model, &revive);
        }
    }
    says("converging".into());
    let ran = started.elapsed();
    eprintln!("churn seed {seed}: {total} operations in {ran:?}: {tally:?}");

    let mut etcd = etcd_client::Client::connect([t.cluster.etcd_url()], None)
        .await
        .unwrap();
    let converging = Instant::now();
    let mut last = Vec::new();
    while converging.elapsed() < CONVERGE {
        last = violations(&t, &model, &mut etcd).await;
        if last.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let samples = sampler.finish().await;
    let moved = samples
        .overlaps
        .iter()
        .filter(|o| matches!(o.twice, check::Twice::Leftover(_)))
        .count();
    eprintln!(
        "churn seed {seed}: converged {:?} after the last operation; {} samples of every \
         host's systemd (every {SAMPLE_EVERY:?}), {} host answers missing; a non-global unit \
         running twice in {} samples ({moved} of the first {} a copy left by a move)",
        converging.elapsed(),
        samples.samples,
        samples.unanswered,
        samples.overlap_count,
        samples.overlaps.len(),
    );
    let placed_twice: Vec<String> = samples
        .overlaps
        .iter()
        .filter(|o| matches!(o.twice, check::Twice::Placed(_)))
        .map(|o| o.to_string())
        .collect();
    let refused = match moves {
        Moves::Overlap => placed_twice.len() + samples.stale.len(),
        Moves::NeverOverlap => samples.overlaps.len() + samples.stale.len(),
    };
    let logs = if last.is_empty() && refused == 0 {
        String::new()
    } else {
        keep_logs(&t, seed)
    };
    assert!(
        last.is_empty(),
        "churn seed {seed}: {logs}; not converged within {CONVERGE:?} of the last operation; \
         violations:\n{}\nunits asked for: {:#?}\nmachines: {:#?}",
        last.join("\n"),
        model.units,
        model.hosts
    );
    assert!(
        samples.samples > 10,
        "churn seed {seed}: the sampler hardly ran: {samples:?}"
    );
    assert!(
        placed_twice.is_empty() && samples.stale.is_empty(),
        "churn seed {seed}: {logs}; non-global units scheduled on two hosts at once, or copies \
         left running:\n{}\n{}",
        placed_twice.join("\n"),
        samples.stale.join("\n")
    );
    if moves == Moves::NeverOverlap {
        let all: Vec<String> = samples.overlaps.iter().map(|o| o.to_string()).collect();
        assert!(
            all.is_empty(),
            "churn seed {seed}: {logs}; non-global units ran on two hosts at once:\n{}",
            all.join("\n")
        );
    }
}
