//! Figures of a 3-host local cluster (real etcd, real isolated systemd hosts, one flotted each,
//! release build), the scenarios fleet was measured on: batches of units started and destroyed
//! through fleet's v1 API, one unit's start latency, flottectl starting and destroying 1,000
//! template instances, flotted's memory and idle CPU beside 350 units, leader failover and a
//! killed machine's units moving. `cargo bench --bench cluster` (as root) prints a table of
//! figures and targets and writes `target/bench/cluster.json`; arguments after `--` pick
//! scenario groups by name (`batches`, `single`, `flottectl`, `steady`, `failover`, `kill`).

#[path = "../report/mod.rs"]
mod report;

mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use flotte::isolated::{Cluster, ClusterSpec, EtcdAccess, HostRecord, HostSpec};
use flotte::machine::MachineId;
use flotte::registry::{Registry, UnitStateRecord};
use flotte::systemd::{ActiveState, Systemd, UnitChanges};
use flotte::unit::{DesiredState, UnitFile, UnitName};
use futures_util::StreamExt;
use nix::sys::signal::Signal;

use http::Api;
use report::{Report, Target, cpu_of, median, peak_rss_mib, rss_mib};

const SLEEP: &str = "/bin/sleep 100000";
const DEADLINE: Duration = Duration::from_secs(300);
/// Requests in flight at once from the load generator.
const IN_FLIGHT: usize = 16;
const AGENT_TTL: f64 = 10.0;

type States = BTreeMap<(UnitName, MachineId), UnitStateRecord>;

const GROUPS: [&str; 7] = [
    "floor",
    "batches",
    "single",
    "flottectl",
    "steady",
    "failover",
    "kill",
];

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs benchmarks too, without `--bench`: minutes of clusters
    // there would measure nothing the end-to-end tests do not already check.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("cluster figures: run `cargo bench --bench cluster` (as root)");
        return;
    }
    let chosen: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    for c in &chosen {
        assert!(
            GROUPS.contains(c),
            "unknown scenario group `{c}`: {GROUPS:?}"
        );
    }
    let wanted = |g: &str| chosen.is_empty() || chosen.contains(&g);

    let dir = tempfile::Builder::new()
        .prefix("flotte-bench-")
        .tempdir()
        .unwrap();
    let spec = ClusterSpec {
        root: dir.path().to_owned(),
        group_prefix: format!("flotte-test-{}-bench", std::process::id()),
        hosts: (1..=3)
            .map(|i| HostSpec {
                name: format!("host-{i}"),
                metadata: String::new(),
                api_port: None,
                settings: Vec::new(),
            })
            .collect(),
        flotted: env!("CARGO_BIN_EXE_flotted").into(),
        settings: vec![],
        etcd_access: EtcdAccess::Direct,
        first_ip: std::net::Ipv4Addr::new(127, 0, 2, 1),
    };
    // flotted's own debug lines would be part of what is measured.
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: no other thread reads the environment yet.
        unsafe { std::env::set_var("RUST_LOG", "info") };
    }
    let mut cluster = Cluster::start(spec).await.expect("cluster starts");
    // The hosts' flotted.log and the rest, to look at after the run.
    let dir = if std::env::var_os("BENCH_KEEP_DIR").is_some() {
        println!("keeping {}", dir.path().display());
        Err(dir.keep())
    } else {
        Ok(dir)
    };
    let registry = cluster.registry().await.unwrap();
    let mut b = Bench {
        api: Api::new(cluster.socket(0)),
        registry,
        report: Report::default(),
        dir: dir
            .as_ref()
            .map_or_else(|kept| kept.clone(), |d| d.path().to_owned()),
    };
    println!("== 3-host cluster, default leases (agent_ttl 10 s), release build");
    if wanted("floor") {
        b.floor(&mut cluster).await;
    }
    if wanted("batches") {
        b.batches(&cluster).await;
    }
    if wanted("single") {
        b.single().await;
    }
    if wanted("flottectl") {
        b.flottectl(&cluster).await;
    }
    if wanted("steady") {
        b.steady(&cluster).await;
    }
    if wanted("failover") {
        b.failover(&mut cluster).await;
    }
    if wanted("kill") {
        b.kill(&mut cluster).await;
    }
    b.report.finish("cluster", &report::machine());
}

struct Bench {
    api: Api,
    registry: Registry,
    report: Report,
    dir: std::path::PathBuf,
}

impl Bench {
    /// PUT N units as launched until every one is active, then DELETE them all until no state
    /// is left; three rounds of each size.
    async fn batches(&mut self, cluster: &Cluster) {
        let mut starts: BTreeMap<usize, Vec<Duration>> = BTreeMap::new();
        let mut cpu_1000 = Vec::new();
        for (n, target_start, target_destroy) in [
            (20, Some(0.2), None),
            (100, None, None),
            (1000, Some(3.0), Some(3.0)),
        ] {
            let mut start = Vec::new();
            let mut destroy = Vec::new();
            for round in 0..3 {
                let names = names(&format!("b{n}r{round}-"), n);
                let before: Vec<Duration> = systemd_pids(cluster).map(cpu_of).collect();
                start.push(self.start_all(&names).await);
                destroy.push(self.destroy_all(&names).await);
                if n == 1000 {
                    let most = systemd_pids(cluster)
                        .zip(before)
                        .map(|(pid, b)| cpu_of(pid).saturating_sub(b))
                        .max()
                        .unwrap();
                    cpu_1000.push(most);
                }
            }
            self.report.seconds(
                format!("start-{n} through the API (median of 3)"),
                median(&mut start),
                target_start,
            );
            self.report.seconds(
                format!("destroy-{n} through the API (median of 3)"),
                median(&mut destroy),
                target_destroy,
            );
            starts.insert(n, start);
        }
        let ratio = median(&mut starts[&1000].clone()).as_secs_f64()
            / median(&mut starts[&100].clone()).as_secs_f64();
        self.report.add(
            "start-1000 / start-100",
            ratio,
            "x",
            Target::AtMost(12.0),
            "linear growth",
        );
        self.report.seconds(
            "systemd CPU of the busiest host, start + destroy of 1000 (median)",
            median(&mut cpu_1000),
            Some(3.0),
        );
    }

    /// start-1000's floor on this machine: the same units started straight on the three
    /// hosts' systemd managers, flotte stopped, with nothing between them and the caller. On
    /// each host at once, its third of the unit files is written into the host's runtime
    /// directory and linked in one call, every start job queued at once, and completion
    /// followed through systemd's signals (subscribed, as an agent is); then all stopped.
    async fn floor(&mut self, cluster: &mut Cluster) {
        for i in 0..cluster.len() {
            cluster.stop_flotted(i, Signal::SIGTERM);
        }
        for subscribed in [true, false] {
            self.floor_rounds(cluster, subscribed).await;
        }
        let ids: Vec<MachineId> = (0..cluster.len())
            .map(|i| cluster.machine_id(i).clone())
            .collect();
        for i in 0..cluster.len() {
            cluster.start_flotted(i).unwrap();
        }
        cluster.wait_for_machines(&ids, DEADLINE).await.unwrap();
        for i in 0..cluster.len() {
            Api::new(cluster.socket(i)).await_ready(DEADLINE).await;
        }
    }

    /// Three rounds of the floor, with systemd's signals subscribed (as an agent is) or not
    /// (completion then read every 50 ms, for this measurement only).
    async fn floor_rounds(&mut self, cluster: &Cluster, subscribed: bool) {
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        for round in 0..3 {
            let names = names(&format!("floor{round}{subscribed}-"), 1000);
            let shares: Vec<Vec<UnitName>> = (0..cluster.len())
                .map(|i| {
                    let mine = names.iter().skip(i).step_by(cluster.len());
                    mine.cloned().collect()
                })
                .collect();
            let runs = (0..cluster.len())
                .map(|i| direct(cluster.host(i).record(), &shares[i], subscribed));
            let (start, stop) = join_all(runs)
                .await
                .into_iter()
                .fold((Duration::ZERO, Duration::ZERO), |(a, b), (c, d)| {
                    (a.max(c), b.max(d))
                });
            starts.push(start);
            stops.push(stop);
        }
        let how = if subscribed {
            "signals subscribed"
        } else {
            "nobody subscribed"
        };
        self.report.seconds(
            format!("floor: start-1000 on the 3 systemds directly, {how} (median of 3)"),
            median(&mut starts),
            None,
        );
        self.report.seconds(
            format!("floor: stop-1000 on the 3 systemds directly, {how} (median of 3)"),
            median(&mut stops),
            None,
        );
    }

    /// One unit at a time, 100 times: PUT as launched until systemd reports it active.
    async fn single(&mut self) {
        let names = names("single-", 100);
        let mut latencies = Vec::new();
        let mut answered = Vec::new();
        // One watch throughout, as a long-lived observer has: etcd delivers a new watch's
        // first events only at its next sync of lagging watchers (every 100 ms).
        let mut watch = self.registry.watch_states();
        let mut states = States::new();
        watch.until(&mut states, |_| Some(())).await;
        for n in &names {
            let start = Instant::now();
            self.api.put_launched(n.as_str(), SLEEP).await;
            answered.push(start.elapsed());
            let unit = n.clone();
            let follow = watch.until(&mut states, |s| {
                s.iter()
                    .any(|((u, _), r)| *u == unit && r.active.as_str() == "active")
                    .then_some(())
            });
            tokio::time::timeout(DEADLINE, follow)
                .await
                .expect("the unit became active");
            latencies.push(start.elapsed());
        }
        latencies.sort();
        let p = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize - 1).min(99)];
        self.report.add(
            "one unit start -> active, p50 of 100",
            p(0.50).as_secs_f64(),
            "s",
            Target::AtMost(0.05),
            format!(
                "the PUT itself answered after {:.1} ms (median)",
                median(&mut answered).as_secs_f64() * 1000.0
            ),
        );
        self.report
            .seconds("one unit start -> active, p99 of 100", p(0.99), Some(0.2));
        self.destroy_all(&names).await;
    }

    /// `flottectl start` and `flottectl destroy` of 1,000 template instances on one command
    /// line, each until flottectl returns (it waits for the units itself).
    async fn flottectl(&mut self, cluster: &Cluster) {
        let units = self.dir.join("template");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(
            units.join("sleeper@.service"),
            format!("[Service]\nExecStart={SLEEP}\n"),
        )
        .unwrap();
        let instances: Vec<String> = (1..=1000)
            .map(|i| {
                units
                    .join(format!("sleeper@{i}.service"))
                    .display()
                    .to_string()
            })
            .collect();
        let endpoint = format!("unix://{}", cluster.socket(0).display());
        let run = |command: &str| {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_flottectl"));
            cmd.arg("--endpoint").arg(&endpoint).arg(command);
            if command == "destroy" {
                cmd.args((1..=1000).map(|i| format!("sleeper@{i}.service")));
            } else {
                cmd.args(&instances);
            }
            cmd.stdout(std::process::Stdio::null());
            cmd
        };
        for command in ["start", "destroy"] {
            let start = Instant::now();
            let status = run(command).status().await.expect("flottectl runs");
            let took = start.elapsed();
            assert!(status.success(), "flottectl {command} failed: {status}");
            self.report.seconds(
                format!("flottectl {command} of 1000 template instances"),
                took,
                Some(5.0),
            );
        }
        let template = UnitName::new("sleeper@.service").unwrap();
        self.registry.delete_unit(&template).await.unwrap();
    }

    /// 1,050 units running (350 a host), nothing changing: flotted's memory and CPU, and etcd's
    /// writes; then flottectl's lists with 10,000 units submitted.
    async fn steady(&mut self, cluster: &Cluster) {
        let names = names("steady-", 1050);
        self.start_all(&names).await;
        let flotteds: Vec<i32> = (0..cluster.len())
            .map(|i| cluster.flotted_pid(i).expect("flotted runs"))
            .collect();
        let rss = flotteds.iter().map(|p| rss_mib(*p)).fold(0.0, f64::max);
        let largest = flotteds
            .iter()
            .copied()
            .max_by(|a, b| rss_mib(*a).total_cmp(&rss_mib(*b)))
            .unwrap();
        let (anon, file) = report::rss_split_mib(largest);
        let peak = flotteds
            .iter()
            .map(|p| peak_rss_mib(*p))
            .fold(0.0, f64::max);
        // Let the last state writes and watch events settle before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before_rev = revision(&self.registry).await;
        let before: Vec<Duration> = flotteds.iter().map(|p| cpu_of(*p)).collect();
        let window = Duration::from_secs(10);
        tokio::time::sleep(window).await;
        let cpu = flotteds
            .iter()
            .zip(before)
            .map(|(p, b)| cpu_of(*p).saturating_sub(b))
            .max()
            .unwrap();
        let writes = revision(&self.registry).await - before_rev;
        self.report.add(
            "flotted RSS on a host running 350 units",
            rss,
            "MiB",
            Target::AtMost(20.0),
            format!("largest of 3: {anon:.1} MiB heap and stacks, {file:.1} MiB of its binary and files; peak {peak:.1} MiB"),
        );
        self.report.add(
            "flotted idle CPU with 350 units, 10 s",
            cpu.as_secs_f64() / window.as_secs_f64() * 100.0,
            "%",
            Target::AtMost(0.5),
            "busiest of 3",
        );
        self.report.add(
            "etcd writes on the idle cluster in 10 s",
            writes as f64,
            "",
            Target::AtMost(0.0),
            "lease keep-alives do not count",
        );
        self.listings(cluster, names.len()).await;
        self.destroy_all(&names).await;
    }

    /// flottectl's list-unit-files and list-units with 10,000 units submitted: the ones
    /// running now, the rest inactive (submitted, placed nowhere). Median of 3, end to end:
    /// the process started, its requests, its table printed.
    async fn listings(&mut self, cluster: &Cluster, running: usize) {
        let idle = names("listed-", 10_000 - running);
        let file = UnitFile::parse(format!("[Service]\nExecStart={SLEEP}\n").as_bytes())
            .unwrap()
            .file;
        let registry = &self.registry;
        futures_util::stream::iter(&idle)
            .map(|n| registry.put_unit(n, &file, DesiredState::Inactive))
            .buffer_unordered(IN_FLIGHT)
            .for_each(|r| async move {
                r.expect("unit submitted");
            })
            .await;
        let endpoint = format!("unix://{}", cluster.socket(0).display());
        for command in ["list-unit-files", "list-units"] {
            let mut took = Vec::new();
            for _ in 0..3 {
                let start = Instant::now();
                let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flottectl"))
                    .arg("--endpoint")
                    .arg(&endpoint)
                    .arg(command)
                    .output()
                    .await
                    .expect("flottectl runs");
                took.push(start.elapsed());
                assert!(out.status.success(), "flottectl {command}: {out:?}");
                let lines = out.stdout.iter().filter(|b| **b == b'\n').count();
                let expected = if command == "list-units" {
                    running
                } else {
                    10_000
                };
                assert_eq!(lines, expected + 1, "flottectl {command} lists every unit");
            }
            self.report.add(
                format!("flottectl {command} over 10,000 units"),
                median(&mut took).as_secs_f64(),
                "s",
                Target::AtMost(0.3),
                format!("{running} running, median of 3"),
            );
        }
        futures_util::stream::iter(&idle)
            .map(|n| registry.delete_unit(n))
            .buffer_unordered(IN_FLIGHT)
            .for_each(|r| async move {
                r.expect("unit deleted");
            })
            .await;
    }

    /// Leader killed: how long until another leads, and a unit submitted right after runs.
    async fn failover(&mut self, cluster: &mut Cluster) {
        let leader = self.registry.leader().await.unwrap().expect("a leader");
        let index = cluster.index_of(&leader).unwrap();
        let probe = UnitName::new("failover-probe.service").unwrap();
        // Killing the leader's flotted kills that machine's agent too, so the probe is pinned
        // to another machine: the figure is the engine's failover, not the dead agent's lease.
        let survivor = cluster.machine_id((index + 1) % cluster.len()).clone();
        let pinned = format!("[Service]\nExecStart={SLEEP}\n[X-Fleet]\nMachineID={survivor}\n");
        let pinned = UnitFile::parse(pinned.as_bytes()).unwrap().file;
        let start = Instant::now();
        cluster.stop_flotted(index, Signal::SIGKILL);
        self.registry
            .put_unit(&probe, &pinned, DesiredState::Launched)
            .await
            .unwrap();
        let elected = loop {
            match self.registry.leader().await.unwrap() {
                Some(l) if l != leader => break start.elapsed(),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let probe_set = BTreeSet::from([probe.clone()]);
        wait(&self.registry, |s| all_active(s, &probe_set)).await;
        self.report
            .seconds("leader SIGKILLed -> new leader", elected, None);
        self.report.seconds(
            "leader SIGKILLed -> a unit submitted right after is active",
            start.elapsed(),
            None,
        );
        self.registry.delete_unit(&probe).await.unwrap();
        wait(&self.registry, |s| s.keys().all(|(u, _)| *u != probe)).await;
        cluster.start_flotted(index).unwrap();
        cluster
            .wait_for_machines(std::slice::from_ref(&leader), DEADLINE)
            .await
            .unwrap();
        // Registered in etcd is not yet answering: its API says 503 until its agent says so.
        Api::new(cluster.socket(index)).await_ready(DEADLINE).await;
    }

    /// A machine running its third of 1,000 units killed: all of them active elsewhere.
    async fn kill(&mut self, cluster: &mut Cluster) {
        let names = names("kill-", 1000);
        self.start_all(&names).await;
        let states = snapshot(&self.registry).await;
        let (victim, count) = busiest(&states);
        let victim_units: BTreeSet<UnitName> = states
            .iter()
            .filter(|((_, m), s)| *m == victim && s.active.as_str() == "active")
            .map(|((u, _), _)| u.clone())
            .collect();
        let start = Instant::now();
        cluster
            .kill_host(cluster.index_of(&victim).unwrap())
            .unwrap();
        wait(&self.registry, |s| {
            let mut on: BTreeMap<&UnitName, Vec<&MachineId>> = BTreeMap::new();
            for ((u, m), r) in s {
                if victim_units.contains(u) && r.active.as_str() == "active" {
                    on.entry(u).or_default().push(m);
                }
            }
            on.len() == victim_units.len()
                && on
                    .values()
                    .all(|ms| matches!(ms.as_slice(), [m] if **m != victim))
        })
        .await;
        self.report.add(
            format!("machine with {count} of 1000 units killed -> all active elsewhere"),
            start.elapsed().as_secs_f64(),
            "s",
            Target::AtMost(AGENT_TTL + 2.0),
            "agent_ttl + 2 s",
        );
    }

    /// PUTs every unit as launched, IN_FLIGHT at a time, and waits until all are active.
    async fn start_all(&self, names: &[UnitName]) -> Duration {
        let set: BTreeSet<UnitName> = names.iter().cloned().collect();
        let start = Instant::now();
        let api = &self.api;
        futures_util::stream::iter(names)
            .map(|n| api.put_launched(n.as_str(), SLEEP))
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
        let submitted = start.elapsed();
        wait(&self.registry, |s| all_active(s, &set)).await;
        if names.len() >= 1000 {
            println!(
                "    {} units: all PUTs answered after {:.2} s, all active after {:.2} s",
                names.len(),
                submitted.as_secs_f64(),
                start.elapsed().as_secs_f64()
            );
        }
        start.elapsed()
    }

    /// DELETEs every unit, IN_FLIGHT at a time, and waits until no state of them is left.
    async fn destroy_all(&self, names: &[UnitName]) -> Duration {
        let set: BTreeSet<UnitName> = names.iter().cloned().collect();
        let start = Instant::now();
        let api = &self.api;
        futures_util::stream::iter(names)
            .map(|n| api.delete(n.as_str()))
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<()>>()
            .await;
        wait(&self.registry, |s| s.keys().all(|(u, _)| !set.contains(u))).await;
        start.elapsed()
    }
}

/// Starts `names` on one host's systemd directly (see `Bench::floor`) until all are active,
/// then stops them until none is; how long each took. The files are removed afterwards.
async fn direct(host: &HostRecord, names: &[UnitName], subscribed: bool) -> (Duration, Duration) {
    let systemd = Systemd::connect(&host.bus()).await.unwrap();
    let mut changes = if subscribed {
        Some(systemd.changes().await.unwrap())
    } else {
        None
    };
    let dir = "/run/flotte/floor";
    std::fs::create_dir_all(host.path(dir)).unwrap();
    let body = format!("[Service]\nExecStart={SLEEP}\n");
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| {
            std::fs::write(host.path(&format!("{dir}/{n}")), &body).unwrap();
            PathBuf::from(format!("{dir}/{n}"))
        })
        .collect();
    let until = |want_active: bool| {
        let systemd = systemd.clone();
        async move |changes: &mut Option<UnitChanges>| {
            let mut pending: BTreeSet<UnitName> = names.iter().cloned().collect();
            while !pending.is_empty() {
                let asked: Vec<UnitName> = match changes {
                    Some(changes) => {
                        let batch = changes.next_batch(Duration::from_millis(10)).await.unwrap();
                        batch.into_iter().filter(|n| pending.contains(n)).collect()
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        pending.iter().cloned().collect()
                    }
                };
                for (name, status) in systemd.list_by_names(&asked).await.unwrap() {
                    let done = if want_active {
                        status.active == ActiveState::Active
                    } else {
                        status.active == ActiveState::Inactive
                    };
                    if done {
                        pending.remove(&name);
                    }
                }
            }
        }
    };
    let started = Instant::now();
    systemd.link_runtime(&paths).await.unwrap();
    for result in join_all(names.iter().map(|n| systemd.start(n))).await {
        result.unwrap();
    }
    tokio::time::timeout(DEADLINE, until(true)(&mut changes))
        .await
        .expect("all active directly");
    let start = started.elapsed();
    let stopping = Instant::now();
    for result in join_all(names.iter().map(|n| systemd.stop(n))).await {
        result.unwrap();
    }
    tokio::time::timeout(DEADLINE, until(false)(&mut changes))
        .await
        .expect("all stopped directly");
    let stop = stopping.elapsed();
    systemd.unlink_runtime(names).await.unwrap();
    let _ = std::fs::remove_dir_all(host.path(dir));
    (start, stop)
}

fn names(prefix: &str, n: usize) -> Vec<UnitName> {
    (1..=n)
        .map(|i| UnitName::new(&format!("{prefix}{i}.service")).unwrap())
        .collect()
}

fn systemd_pids(cluster: &Cluster) -> impl Iterator<Item = i32> + '_ {
    (0..cluster.len()).map(|i| cluster.host(i).record().pid)
}

/// Every unit of `set` active, each on exactly one machine.
fn all_active(states: &States, set: &BTreeSet<UnitName>) -> bool {
    let mut seen: BTreeMap<&UnitName, usize> = BTreeMap::new();
    for ((u, _), r) in states {
        if set.contains(u) && r.active.as_str() == "active" {
            *seen.entry(u).or_default() += 1;
        }
    }
    seen.len() == set.len() && seen.values().all(|n| *n == 1)
}

fn busiest(states: &States) -> (MachineId, usize) {
    let mut per: BTreeMap<MachineId, usize> = BTreeMap::new();
    for ((_, m), s) in states {
        if s.active.as_str() == "active" {
            *per.entry(m.clone()).or_default() += 1;
        }
    }
    per.into_iter().max_by_key(|(_, n)| *n).expect("units run")
}

async fn revision(registry: &Registry) -> i64 {
    registry.units().await.unwrap().1
}

async fn snapshot(registry: &Registry) -> States {
    registry.states().await.unwrap().into_iter().collect()
}

/// Follows the states watch until `done` holds.
async fn wait(registry: &Registry, mut done: impl FnMut(&States) -> bool) {
    let mut watch = registry.watch_states();
    let mut states = States::new();
    let follow = watch.until(&mut states, |s| done(s).then_some(()));
    tokio::time::timeout(DEADLINE, follow)
        .await
        .expect("the cluster got there within the deadline");
}
