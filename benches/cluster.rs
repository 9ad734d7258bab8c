//! Figures of a 3-host local cluster (real etcd, real systemd hosts, one flotted each), the
//! ones fleet was measured on: 20 units from `launched` to all active, leader failover after a
//! SIGKILL, and how long a killed machine's units take to run elsewhere; plus etcd writes on
//! an idle cluster. `cargo bench --bench cluster` (as root) prints them, for flotted's default
//! leases and for short ones.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotte::isolated::{Cluster, ClusterSpec, EtcdAccess, HostSpec};
use flotte::machine::MachineId;
use flotte::registry::{Registry, UnitStateRecord};
use flotte::unit::{DesiredState, UnitFile, UnitName};
use nix::sys::signal::Signal;

const SLEEPER: &str = "[Service]\nExecStart=/bin/sleep 100000\n";
const DEADLINE: Duration = Duration::from_secs(120);

type States = BTreeMap<(UnitName, MachineId), UnitStateRecord>;

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs benchmarks too, without `--bench`: minutes of clusters
    // there would measure nothing the end-to-end tests do not already check.
    if !std::env::args().any(|a| a == "--bench") {
        println!("cluster figures: run `cargo bench --bench cluster` (as root)");
        return;
    }
    for (label, settings) in [
        ("defaults: agent_ttl 10s, engine_lease_ttl 5s", vec![]),
        (
            "short leases: agent_ttl 3s, engine_lease_ttl 2s",
            vec![("agent_ttl", "3s"), ("engine_lease_ttl", "2s")],
        ),
    ] {
        println!("== {label}");
        measure(&settings).await;
    }
}

async fn measure(settings: &[(&str, &str)]) {
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
            })
            .collect(),
        flotted: env!("CARGO_BIN_EXE_flotted").into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        etcd_access: EtcdAccess::Direct,
        first_ip: std::net::Ipv4Addr::new(127, 0, 2, 1),
    };
    let mut cluster = Cluster::start(spec).await.expect("cluster starts");
    let registry = cluster.registry().await.unwrap();
    let file = UnitFile::parse(SLEEPER.as_bytes()).unwrap().file;

    // 20 units set to launched until all active, three rounds.
    let mut rounds = Vec::new();
    for round in 0..3 {
        let names: Vec<UnitName> = (1..=20)
            .map(|i| UnitName::new(&format!("r{round}-u{i}.service")).unwrap())
            .collect();
        let start = Instant::now();
        for n in &names {
            registry
                .put_unit(n, &file, DesiredState::Launched)
                .await
                .unwrap();
        }
        wait(&registry, |s| {
            names.iter().all(|n| active_on(s, n).len() == 1)
        })
        .await;
        rounds.push(start.elapsed());
    }
    println!("20 units launched -> all active: {}", list(&rounds));

    // Idle: etcd's revision over 10 s (lease keep-alives do not change it).
    let before = revision(&registry).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let writes = revision(&registry).await - before;
    println!("etcd writes on the idle cluster in 10 s: {writes}");

    // Leader failover after SIGKILL.
    let leader = registry.leader().await.unwrap().expect("a leader");
    let index = cluster.index_of(&leader).unwrap();
    let probe = UnitName::new("failover-probe.service").unwrap();
    // Killing the leader's flotted kills that machine's agent too, so the probe is pinned to
    // another machine: the figure is the engine's failover, not the dead agent's lease.
    let survivor = cluster.machine_id((index + 1) % cluster.len()).clone();
    let pinned = format!("{SLEEPER}[X-Fleet]\nMachineID={survivor}\n");
    let pinned = UnitFile::parse(pinned.as_bytes()).unwrap().file;
    let start = Instant::now();
    cluster.stop_flotted(index, Signal::SIGKILL);
    registry
        .put_unit(&probe, &pinned, DesiredState::Launched)
        .await
        .unwrap();
    let elected = loop {
        match registry.leader().await.unwrap() {
            Some(l) if l != leader => break start.elapsed(),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    wait(&registry, |s| active_on(s, &probe).len() == 1).await;
    println!(
        "leader SIGKILLed: new leader after {:.2} s; a unit submitted right after the kill active after {:.2} s",
        elected.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    // Pinned, the probe could not move off a killed machine below.
    registry.delete_unit(&probe).await.unwrap();
    wait(&registry, |s| s.keys().all(|(u, _)| *u != probe)).await;
    cluster.start_flotted(index).unwrap();
    cluster
        .wait_for_machines(std::slice::from_ref(&leader), DEADLINE)
        .await
        .unwrap();

    // A killed machine's units running elsewhere.
    let states = snapshot(&registry).await;
    let (victim, count) = busiest(&states);
    let victim_units: Vec<UnitName> = states
        .iter()
        .filter(|((_, m), s)| *m == victim && s.active.as_str() == "active")
        .map(|((u, _), _)| u.clone())
        .collect();
    let start = Instant::now();
    cluster
        .kill_host(cluster.index_of(&victim).unwrap())
        .unwrap();
    wait(&registry, |s| {
        victim_units
            .iter()
            .all(|u| matches!(active_on(s, u).as_slice(), [m] if *m != victim))
    })
    .await;
    println!(
        "machine killed: its {count} units all active elsewhere after {:.2} s",
        start.elapsed().as_secs_f64()
    );
}

fn list(durations: &[Duration]) -> String {
    durations
        .iter()
        .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn active_on(states: &States, unit: &UnitName) -> Vec<MachineId> {
    states
        .iter()
        .filter(|((u, _), s)| u == unit && s.active.as_str() == "active")
        .map(|((_, m), _)| m.clone())
        .collect()
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
