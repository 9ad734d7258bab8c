//! Trust under faults (issue 12): a host cut off from etcd fences before its units can start
//! elsewhere (sampled on every host's systemd), etcd member and quorum loss and a frozen etcd
//! stop nothing, and leader changes restart nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotte::isolated::EtcdAccess;
use flotte::machine::MachineId;
use flotte::systemd::Systemd;
use flotte::unit::DesiredState::Launched;
use flotte::unit::UnitName;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::*;

const SLEEPER: &str = "[Service]\nExecStart=/bin/sleep 100000\n";
const GLOBAL: &str = "[Service]\nExecStart=/bin/sleep 100000\n[X-Fleet]\nGlobal=true\n";
const AGENT_TTL: Duration = Duration::from_secs(3);
const ENGINE_LEASE_TTL: Duration = Duration::from_secs(2);
/// Short leases, and TCP APIs on which the agents ask each other whether they reach etcd.
const SETTINGS: &[(&str, &str)] = &[
    ("agent_ttl", "3s"),
    ("engine_lease_ttl", "2s"),
    ("listen_tcp", "127.0.0.1:0"),
];
/// For the leader changes: the killed leader's machine loses its agent too, and its units
/// stay only if that flotted is back before its lease expires; a loaded machine takes a few
/// seconds to elect, place, start and restart, so the agents' TTL is well beyond that.
const LEADER_SETTINGS: &[(&str, &str)] = &[
    ("agent_ttl", "10s"),
    ("engine_lease_ttl", "2s"),
    ("listen_tcp", "127.0.0.1:0"),
];
const DEADLINE: Duration = Duration::from_secs(30);
/// One etcd member of three stopped (its leader, or a follower): a unit submitted then (retried
/// while a request is lost with the dead leader) is active within this. A request held by a
/// member whose leader died times out after 3 s, etcd elects in 1–2 s, and the engine's
/// handover and the unit's start take well under a second; measured 3.3–3.6 s (leader) and
/// 0.06–0.4 s (follower) on a loaded 2-core machine, 10–20 s before the etcd channel was
/// pinned to one endpoint at a time.
const MEMBER_LOSS_LIMIT: Duration = Duration::from_secs(6);
/// Quorum back (members restarted): a unit submitted then is active within this (etcd elects a
/// leader among the restarted members, and the engine takes office).
const QUORUM_BACK_LIMIT: Duration = Duration::from_secs(8);

/// What sampling every host's systemd found.
#[derive(Debug, Default)]
struct Samples {
    samples: usize,
    /// The most hosts one non-global unit ran on (active, activating, deactivating...) in one
    /// sample.
    max_overlap: usize,
    /// The first sample where a unit ran on two hosts: unit, hosts, time since sampling began.
    first_overlap: Option<(UnitName, Vec<usize>, Duration)>,
    /// The fewest of the sampled units running anywhere in one sample.
    min_running: usize,
    /// Samples where a host's systemd did not answer.
    unanswered: usize,
}

/// Samples every 100 ms, on every host's systemd, where each of `units` runs.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Samples>,
}

impl Sampler {
    async fn start(t: &TestCluster, units: &[&str]) -> Sampler {
        let mut systemds = Vec::new();
        for i in 0..t.cluster.len() {
            systemds.push(Systemd::connect(&t.cluster.host(i).bus()).await.unwrap());
        }
        let units: Vec<UnitName> = units.iter().map(|u| unit(u)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let began = Instant::now();
            let mut s = Samples {
                min_running: usize::MAX,
                ..Samples::default()
            };
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stopped.load(Ordering::Relaxed) {
                tick.tick().await;
                let views = futures_util::future::join_all(systemds.iter().map(|sd| {
                    tokio::time::timeout(Duration::from_secs(1), sd.list_by_names(&units))
                }))
                .await;
                let mut on: BTreeMap<UnitName, Vec<usize>> = BTreeMap::new();
                for (host, view) in views.into_iter().enumerate() {
                    let Ok(Ok(view)) = view else {
                        s.unanswered += 1;
                        continue;
                    };
                    for (name, status) in view {
                        if status.active.is_running() {
                            on.entry(name).or_default().push(host);
                        }
                    }
                }
                s.samples += 1;
                s.min_running = s.min_running.min(on.len());
                for (name, hosts) in on {
                    if hosts.len() > s.max_overlap {
                        s.max_overlap = hosts.len();
                    }
                    if hosts.len() > 1 && s.first_overlap.is_none() {
                        s.first_overlap = Some((name, hosts, began.elapsed()));
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

/// Main PIDs of `units` on every host where they run.
async fn pids(t: &TestCluster, units: &[&str]) -> BTreeMap<(String, usize), u32> {
    let mut found = BTreeMap::new();
    for i in 0..t.cluster.len() {
        let sd = Systemd::connect(&t.cluster.host(i).bus()).await.unwrap();
        for u in units {
            let pid = sd.main_pid(&unit(u)).await.unwrap_or(0);
            if pid > 0 {
                found.insert((u.to_string(), i), pid);
            }
        }
    }
    found
}

/// How many times host `i`'s flotted logged `text`.
fn logged(t: &TestCluster, i: usize, text: &str) -> usize {
    let log = t.cluster.host(i).dir().join("flotted.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(text)
        .count()
}

/// Waits until every host's flotted logged `text` once more than `before` counted.
async fn await_logged(t: &TestCluster, text: &str, before: &[usize], what: &str) {
    flotte::isolated::wait_for(
        DEADLINE,
        || format!("{what}: not every flotted logged {text:?}"),
        || async {
            (0..t.cluster.len())
                .all(|i| logged(t, i, text) > before[i])
                .then_some(())
        },
    )
    .await
    .unwrap();
}

fn log_counts(t: &TestCluster, text: &str) -> Vec<usize> {
    (0..t.cluster.len()).map(|i| logged(t, i, text)).collect()
}

/// `flottectl list-machines` through host `i`'s API socket: exit code and stderr.
async fn list_machines(socket: &Path) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .arg("list-machines")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `submit`, retried while etcd elects a leader (a request may fail meanwhile).
async fn submit_retrying(t: &TestCluster, name: &str, text: &str) {
    let started = Instant::now();
    while let Err(e) = t
        .registry
        .put_unit(&unit(name), &file(text), Launched)
        .await
    {
        assert!(started.elapsed() < DEADLINE, "submitting {name}: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const KEPT: &str = "etcd unreachable; units keep running";

#[tokio::test(flavor = "multi_thread")]
async fn a_host_cut_off_from_etcd_stops_its_units_before_they_can_start_elsewhere() {
    let t = partitionable_cluster(
        "fence",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        SETTINGS,
    )
    .await;
    let names = [
        "f1.service",
        "f2.service",
        "f3.service",
        "f4.service",
        "f5.service",
        "f6.service",
    ];
    for n in names {
        submit(&t.registry, n, SLEEPER, Launched).await;
    }
    submit(&t.registry, "everywhere.service", GLOBAL, Launched).await;
    let placed = await_active(&t.registry, &names, DEADLINE).await;
    await_states(&t.registry, DEADLINE, "the global unit on all 3", |s| {
        (active_on(s, "everywhere.service").len() == 3).then_some(())
    })
    .await;
    let cut_id = placed["f1.service"].clone();
    let cut = t.cluster.index_of(&cut_id).unwrap();
    let on_cut: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| placed[*n] == cut_id)
        .collect();
    let global_pid = pids(&t, &["everywhere.service"]).await[&("everywhere.service".into(), cut)];
    let sampler = Sampler::start(&t, &names).await;

    let cut_at = Instant::now();
    t.cluster.link(cut).unwrap().cut();
    let moved: BTreeMap<String, MachineId> = await_states(
        &t.registry,
        DEADLINE,
        "every unit of the cut-off host active elsewhere",
        |s| {
            let mut moved = BTreeMap::new();
            for n in &on_cut {
                match active_on(s, n).as_slice() {
                    [m] if *m != cut_id => moved.insert(n.to_string(), m.clone()),
                    _ => return None,
                };
            }
            Some(moved)
        },
    )
    .await;
    let rescheduled = cut_at.elapsed();
    // While cut off, its API says why it cannot serve.
    let (code, stderr) = list_machines(t.cluster.socket(cut)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach etcd"), "{stderr}");
    assert!(
        logged(&t, cut, "cut off from etcd: fencing") == 1,
        "the cut-off host fenced once"
    );

    // Placed after the move, for "nothing restarts at the heal".
    let all: Vec<&str> = names.to_vec();
    let before_heal = pids(&t, &all).await;
    t.cluster.link(cut).unwrap().restore();
    let healed_at = Instant::now();
    t.cluster
        .wait_for_machines(std::slice::from_ref(&cut_id), DEADLINE)
        .await
        .unwrap();
    // A unit only the healed host may run shows that its agent reconciled again.
    let probe = format!("[Service]\nExecStart=/bin/sleep 100000\n[X-Fleet]\nMachineID={cut_id}\n");
    submit(&t.registry, "probe.service", &probe, Launched).await;
    let at = await_active(&t.registry, &["probe.service"], DEADLINE).await;
    assert_eq!(at["probe.service"], cut_id);
    let rejoined = healed_at.elapsed();
    let samples = sampler.finish().await;
    eprintln!(
        "partition: {} units on the cut host moved and active elsewhere {rescheduled:?} after the cut \
         (agent_ttl {AGENT_TTL:?}); rejoined {rejoined:?} after the heal; sampling every 100 ms on \
         3 hosts: {} samples, max overlap {} (first: {:?}), fewest units running {} of {}, \
         {} unanswered",
        on_cut.len(),
        samples.samples,
        samples.max_overlap,
        samples.first_overlap,
        samples.min_running,
        names.len(),
        samples.unanswered
    );
    assert!(samples.samples > 30, "sampled through the cut: {samples:?}");
    assert_eq!(
        samples.max_overlap, 1,
        "a unit ran on two machines at once: {samples:?}"
    );
    assert_eq!(
        before_heal,
        pids(&t, &all).await,
        "the heal restarted units"
    );
    let states: States = t.registry.states().await.unwrap().into_iter().collect();
    for (n, m) in &moved {
        assert_eq!(
            active_on(&states, n),
            vec![m.clone()],
            "{n} stayed where it moved"
        );
    }
    // Its lease expired while it was cut off, but the engine kept the global unit's entry on
    // it: the agent that registers again finds it placed and keeps it running.
    let global_after = pids(&t, &["everywhere.service"]).await[&("everywhere.service".into(), cut)];
    assert_eq!(
        global_after, global_pid,
        "the global unit on the cut host restarted after the heal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_member_loss_quorum_loss_and_a_full_restart_stop_no_unit() {
    let mut t = cluster_with(
        "members",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        SETTINGS,
        EtcdAccess::Members(3),
    )
    .await;
    let names = ["m1.service", "m2.service", "m3.service", "m4.service"];
    for n in names {
        submit(&t.registry, n, SLEEPER, Launched).await;
    }
    submit(&t.registry, "everywhere.service", GLOBAL, Launched).await;
    await_active(&t.registry, &names, DEADLINE).await;
    await_states(&t.registry, DEADLINE, "the global unit on all 3", |s| {
        (active_on(s, "everywhere.service").len() == 3).then_some(())
    })
    .await;
    let mut all: Vec<&str> = names.to_vec();
    all.push("everywhere.service");
    let before = pids(&t, &all).await;
    assert_eq!(before.len(), names.len() + 3);
    let sampler = Sampler::start(&t, &all).await;

    // One member down, the leader first, then a follower: scheduling goes on.
    for (round, probe) in ["leader", "follower"].into_iter().enumerate() {
        let members = t.cluster.etcd_members().unwrap();
        let leader = members.wait_for_leader(DEADLINE).await.unwrap();
        let victim = if round == 0 {
            leader
        } else {
            (leader + 1) % members.len()
        };
        members.stop(victim);
        let name = format!("after-{probe}.service");
        let ((), took) = timed(async {
            submit_retrying(&t, &name, SLEEPER).await;
            await_active(&t.registry, &[name.as_str()], DEADLINE).await;
        })
        .await;
        eprintln!(
            "etcd {probe} member {victim} stopped: a unit submitted then was active after {took:?} \
             (limit {MEMBER_LOSS_LIMIT:?})"
        );
        assert!(
            took <= MEMBER_LOSS_LIMIT,
            "etcd {probe} member stopped: scheduling took {took:?}, over {MEMBER_LOSS_LIMIT:?}"
        );
        t.cluster
            .etcd_members()
            .unwrap()
            .restart(victim)
            .await
            .unwrap();
    }
    assert_eq!(
        before,
        pids(&t, &all).await,
        "a member's loss restarted units"
    );

    // Two members down: no quorum, for longer than agent_ttl. Every agent finds that no other
    // machine reaches etcd either, and keeps its units.
    let kept = log_counts(&t, KEPT);
    let members = t.cluster.etcd_members().unwrap();
    let leader = members.wait_for_leader(DEADLINE).await.unwrap();
    let down = [leader, (leader + 1) % 3];
    for m in down {
        members.stop(m);
    }
    let outage = Instant::now();
    await_logged(&t, KEPT, &kept, "without quorum").await;
    let (code, stderr) = list_machines(t.cluster.socket(0)).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach etcd"), "{stderr}");
    eprintln!("without quorum: the API answers: {}", stderr.trim());
    // The fault lasts longer than a lease: that is the scenario, not a wait for a result.
    tokio::time::sleep((AGENT_TTL + Duration::from_secs(1)).saturating_sub(outage.elapsed())).await;
    t.cluster
        .etcd_members()
        .unwrap()
        .restart_all(&down)
        .await
        .unwrap();
    let ((), back) = timed(async {
        submit_retrying(&t, "after-quorum.service", SLEEPER).await;
        await_active(&t.registry, &["after-quorum.service"], DEADLINE).await;
    })
    .await;
    eprintln!(
        "quorum lost for {:?}: scheduling again {back:?} after the restart (limit {QUORUM_BACK_LIMIT:?})",
        outage.elapsed() - back
    );
    assert!(
        back <= QUORUM_BACK_LIMIT,
        "quorum back: scheduling took {back:?}, over {QUORUM_BACK_LIMIT:?}"
    );
    assert_eq!(
        before,
        pids(&t, &all).await,
        "the loss of quorum restarted units"
    );

    // All three down, then up again.
    let kept = log_counts(&t, KEPT);
    for m in 0..3 {
        t.cluster.etcd_members().unwrap().stop(m);
    }
    let outage = Instant::now();
    await_logged(&t, KEPT, &kept, "with every member down").await;
    tokio::time::sleep((AGENT_TTL + Duration::from_secs(1)).saturating_sub(outage.elapsed())).await;
    t.cluster
        .etcd_members()
        .unwrap()
        .restart_all(&[0, 1, 2])
        .await
        .unwrap();
    let ((), back) = timed(async {
        submit_retrying(&t, "after-restart.service", SLEEPER).await;
        await_active(&t.registry, &["after-restart.service"], DEADLINE).await;
    })
    .await;
    eprintln!(
        "every member down for {:?}: scheduling again {back:?} after the restart (limit {QUORUM_BACK_LIMIT:?})",
        outage.elapsed() - back
    );
    assert!(
        back <= QUORUM_BACK_LIMIT,
        "etcd restarted: scheduling took {back:?}, over {QUORUM_BACK_LIMIT:?}"
    );
    await_active(&t.registry, &names, DEADLINE).await;
    let samples = sampler.finish().await;
    assert_eq!(
        before,
        pids(&t, &all).await,
        "etcd's restart restarted units"
    );
    eprintln!("etcd member faults: sampled {samples:?}");
    assert_eq!(
        samples.min_running,
        all.len(),
        "a unit stopped: {samples:?}"
    );
    assert_eq!(
        samples.max_overlap, 3,
        "only the global unit runs on 3: {samples:?}"
    );
    for i in 0..3 {
        assert_eq!(
            logged(&t, i, "cut off from etcd: fencing"),
            0,
            "host {i} fenced"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_etcd_stops_no_unit() {
    let t = cluster(
        "frozen",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        SETTINGS,
    )
    .await;
    let names = ["z1.service", "z2.service", "z3.service"];
    for n in names {
        submit(&t.registry, n, SLEEPER, Launched).await;
    }
    await_active(&t.registry, &names, DEADLINE).await;
    let before = pids(&t, &names).await;
    let sampler = Sampler::start(&t, &names).await;
    let etcd = Pid::from_raw(t.cluster.etcd_pid().unwrap());
    let kept = log_counts(&t, KEPT);
    kill(etcd, Signal::SIGSTOP).unwrap();
    let frozen = Instant::now();
    await_logged(&t, KEPT, &kept, "etcd frozen").await;
    tokio::time::sleep((AGENT_TTL + Duration::from_secs(2)).saturating_sub(frozen.elapsed())).await;
    kill(etcd, Signal::SIGCONT).unwrap();
    let thawed = Instant::now();
    let held = frozen.elapsed();
    submit(&t.registry, "after.service", SLEEPER, Launched).await;
    await_active(&t.registry, &["after.service"], DEADLINE).await;
    await_active(&t.registry, &names, DEADLINE).await;
    let samples = sampler.finish().await;
    eprintln!(
        "etcd frozen for {held:?}: scheduling again {:?} after; sampled {samples:?}",
        thawed.elapsed()
    );
    assert_eq!(before, pids(&t, &names).await, "the freeze restarted units");
    assert_eq!(
        samples.min_running,
        names.len(),
        "a unit stopped: {samples:?}"
    );
    assert_eq!(samples.max_overlap, 1, "{samples:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_changes_hand_over_in_time_and_restart_nothing() {
    let mut t = cluster(
        "leaders",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        LEADER_SETTINGS,
    )
    .await;
    let names = ["l1.service", "l2.service", "l3.service", "l4.service"];
    for n in names {
        submit(&t.registry, n, SLEEPER, Launched).await;
    }
    await_active(&t.registry, &names, DEADLINE).await;
    let before = pids(&t, &names).await;

    for (signal, limit) in [
        (Signal::SIGKILL, ENGINE_LEASE_TTL + Duration::from_secs(1)),
        (Signal::SIGTERM, Duration::from_secs(1)),
    ] {
        let leader = t.registry.leader().await.unwrap().expect("a leader");
        let i = t.cluster.index_of(&leader).unwrap();
        let probe = format!("after-{}.service", signal.as_str().to_lowercase());
        // On a machine that stays: the figure is the engine's handover, not how long the
        // killed flotted's machine keeps its lease.
        let survivor = t.cluster.machine_id((i + 1) % t.cluster.len()).clone();
        let pinned = format!("{SLEEPER}[X-Fleet]\nMachineID={survivor}\n");
        let ((), took) = timed(async {
            t.cluster.stop_flotted(i, signal);
            submit(&t.registry, &probe, &pinned, Launched).await;
            await_active(&t.registry, &[probe.as_str()], DEADLINE).await;
        })
        .await;
        eprintln!(
            "leader {signal}: another engine placed a new unit, active after {took:?} (limit {limit:?})"
        );
        let next = t.registry.leader().await.unwrap().expect("a new leader");
        assert_ne!(next, leader);
        assert!(
            took <= limit,
            "leader {signal}: took {took:?}, over {limit:?}"
        );
        t.cluster.start_flotted(i).unwrap();
        // The restarted flotted's agent adopts its units: a unit only it may run shows it is back.
        let back =
            format!("[Service]\nExecStart=/bin/sleep 100000\n[X-Fleet]\nMachineID={leader}\n");
        let name = format!("back-{}.service", signal.as_str().to_lowercase());
        submit(&t.registry, &name, &back, Launched).await;
        await_active(&t.registry, &[name.as_str()], DEADLINE).await;
        assert_eq!(
            before,
            pids(&t, &names).await,
            "leader {signal} restarted units"
        );
    }
}
