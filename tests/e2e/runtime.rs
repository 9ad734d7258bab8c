//! flotted's runtime (issue "flotted: machines in etcd, an elected engine, agents..."):
//! placement with every X-Fleet option, machine loss, agent restarts, states (leader failover:
//! `faults`).

use std::time::Duration;

use flotte::systemd::{LoadState, Systemd};
use flotte::unit::DesiredState::{Inactive, Launched, Loaded};
use nix::sys::signal::Signal;

use crate::support::*;

const SLEEPER: &str = "[Service]\nExecStart=/bin/sleep 100000\n";
/// Short leases so that losses show quickly.
const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];
const DEADLINE: Duration = Duration::from_secs(30);

fn sleeper(x_fleet: &str) -> String {
    format!("{SLEEPER}[X-Fleet]\n{x_fleet}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_x_fleet_option_places_units_as_asked() {
    let t = cluster(
        "xfleet",
        &[
            ("host-1", "region=eu,disk=ssd"),
            ("host-2", "region=eu,disk=hdd"),
            ("host-3", "region=us,disk=ssd"),
        ],
        FAST,
    )
    .await;
    let r = &t.registry;
    let (h1, h2, h3) = (
        t.cluster.machine_id(0).clone(),
        t.cluster.machine_id(1).clone(),
        t.cluster.machine_id(2).clone(),
    );

    submit(
        r,
        "db.service",
        &sleeper("MachineMetadata=region=us\nMachineMetadata=disk=ssd"),
        Launched,
    )
    .await;
    submit(
        r,
        "db-sidekick.service",
        &sleeper("MachineOf=db.service"),
        Launched,
    )
    .await;
    submit(
        r,
        "pinned.service",
        &sleeper(&format!("MachineID={}", &h2.as_str()[..8])),
        Launched,
    )
    .await;
    submit(
        r,
        "log.service",
        &sleeper("Global=true\nMachineMetadata=region=eu"),
        Launched,
    )
    .await;
    submit(
        r,
        "asia.service",
        &sleeper("MachineMetadata=region=asia"),
        Launched,
    )
    .await;
    // Instances of templates: the template's content, X-Fleet specifiers expanded with each
    // instance's name (%p = web, %i = 1..3).
    let web = sleeper("Conflicts=%p@*.service");
    let side = sleeper("MachineOf=web@%i.service");
    submit(r, "web@.service", &web, Inactive).await;
    submit(r, "side@.service", &side, Inactive).await;
    for i in 1..=3 {
        submit(r, &format!("web@{i}.service"), &web, Launched).await;
        submit(r, &format!("side@{i}.service"), &side, Launched).await;
    }

    let placed = await_active(
        r,
        &[
            "db.service",
            "db-sidekick.service",
            "pinned.service",
            "web@1.service",
            "web@2.service",
            "web@3.service",
            "side@1.service",
            "side@2.service",
            "side@3.service",
        ],
        DEADLINE,
    )
    .await;
    assert_eq!(
        placed["db.service"], h3,
        "region=us and disk=ssd is host-3 only"
    );
    assert_eq!(
        placed["db-sidekick.service"], h3,
        "MachineOf follows db.service"
    );
    assert_eq!(
        placed["pinned.service"], h2,
        "MachineID with the 8-character prefix"
    );
    let webs: std::collections::BTreeSet<_> = (1..=3)
        .map(|i| placed[&format!("web@{i}.service")].clone())
        .collect();
    assert_eq!(
        webs.len(),
        3,
        "Conflicts=%p@*.service spreads the instances: {placed:?}"
    );
    for i in 1..=3 {
        assert_eq!(
            placed[&format!("side@{i}.service")],
            placed[&format!("web@{i}.service")],
            "MachineOf=web@%i.service"
        );
    }

    let log_on = await_states(r, DEADLINE, "log.service active on both eu hosts", |s| {
        let mut on = active_on(s, "log.service");
        on.sort();
        (on.len() == 2).then_some(on)
    })
    .await;
    let mut eu = vec![h1.clone(), h2.clone()];
    eu.sort();
    assert_eq!(log_on, eu, "Global with MachineMetadata=region=eu");

    let reason = r
        .reason(&unit("asia.service"))
        .await
        .unwrap()
        .expect("a reason is stored");
    assert_eq!(reason.reason, "no machine has region=asia");
    assert!(
        r.placement(&unit("web@.service")).await.unwrap().is_none(),
        "templates are never placed"
    );

    // Replaces: a unit that can only run where old.service is takes its place; old.service
    // moves to a machine that satisfies its own requirement (region=eu), not to host-3.
    submit(
        r,
        "old.service",
        &sleeper("MachineMetadata=region=eu"),
        Launched,
    )
    .await;
    let old_on = await_active(r, &["old.service"], DEADLINE).await["old.service"].clone();
    let (other_eu, disk) = if old_on == h1 {
        (h2.clone(), "ssd")
    } else {
        (h1.clone(), "hdd")
    };
    let new =
        format!("MachineMetadata=region=eu\nMachineMetadata=disk={disk}\nReplaces=old.service");
    submit(r, "new.service", &sleeper(&new), Launched).await;
    await_states(
        r,
        DEADLINE,
        "new.service on old's machine and old.service on the other eu host",
        |s| {
            (active_on(s, "new.service") == [old_on.clone()]
                && active_on(s, "old.service") == [other_eu.clone()])
            .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn units_move_when_their_machine_dies() {
    let mut t = cluster(
        "machineloss",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        FAST,
    )
    .await;
    let names = ["a.service", "b.service", "c.service"];
    for n in names {
        submit(&t.registry, n, SLEEPER, Launched).await;
    }
    let placed = await_active(&t.registry, &names, DEADLINE).await;
    let victim = placed["a.service"].clone();
    let on_victim: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| placed[*n] == victim)
        .collect();
    let victim_index = t.cluster.index_of(&victim).unwrap();

    let ((), took) = timed(async {
        t.cluster.kill_host(victim_index).unwrap();
        await_states(
            &t.registry,
            DEADLINE,
            "every unit of the dead machine active elsewhere",
            |s| {
                on_victim
                    .iter()
                    .all(|n| matches!(active_on(s, n).as_slice(), [m] if *m != victim))
                    .then_some(())
            },
        )
        .await;
    })
    .await;
    eprintln!("units of a killed machine active elsewhere after {took:?} (agent_ttl 3s)");
    let machines = t.registry.machines().await.unwrap();
    assert!(
        machines.iter().all(|m| m.id != victim),
        "the dead machine is gone from the registry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_adopts_running_units_without_restarting_them() {
    let mut t = cluster("adopt", &[("host-1", "")], FAST).await;
    let me = t.cluster.machine_id(0).clone();
    submit(&t.registry, "keep.service", SLEEPER, Launched).await;
    await_active(&t.registry, &["keep.service"], DEADLINE).await;
    let systemd = Systemd::connect(&t.cluster.host(0).bus()).await.unwrap();
    let pid = systemd.main_pid(&unit("keep.service")).await.unwrap();
    assert!(pid > 0);

    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        t.cluster.stop_flotted(0, signal);
        t.cluster.start_flotted(0).unwrap();
        // A unit started after the restart proves the new agent has reconciled.
        let probe = format!("probe-{}.service", signal.as_str().to_lowercase());
        submit(&t.registry, &probe, SLEEPER, Launched).await;
        await_active(&t.registry, &[probe.as_str()], DEADLINE).await;
        assert_eq!(
            systemd.main_pid(&unit("keep.service")).await.unwrap(),
            pid,
            "keep.service was restarted after {signal}"
        );
        let state = t.registry.states_of(&unit("keep.service")).await.unwrap();
        assert_eq!(state.len(), 1);
        assert_eq!(state[0].0.1, me);
        assert_eq!(state[0].1.active.as_str(), "active");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn desired_state_changes_show_in_the_unit_state_within_a_deadline() {
    let t = cluster("states", &[("host-1", "")], FAST).await;
    let r = &t.registry;
    let me = t.cluster.machine_id(0).clone();
    let deadline = Duration::from_secs(5);
    submit(r, "s.service", SLEEPER, Loaded).await;
    let s = await_unit_state(r, "s.service", &me, deadline, "loaded", |s| {
        s.current.to_string() == "loaded"
    })
    .await;
    assert_eq!((s.load.as_str(), s.active.as_str()), ("loaded", "inactive"));
    set_desired(r, "s.service", Launched).await;
    await_unit_state(r, "s.service", &me, deadline, "launched and running", |s| {
        s.current.to_string() == "launched" && s.sub == "running"
    })
    .await;
    set_desired(r, "s.service", Loaded).await;
    await_unit_state(r, "s.service", &me, deadline, "stopped", |s| {
        s.current.to_string() == "loaded" && s.active.as_str() == "inactive"
    })
    .await;
    set_desired(r, "s.service", Inactive).await;
    await_states(r, deadline, "s.service unloaded", |s| {
        s.keys()
            .all(|(u, _)| u.as_str() != "s.service")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unit_whose_process_exits_with_an_error_is_failed() {
    let t = cluster("exits", &[("host-1", "")], FAST).await;
    let me = t.cluster.machine_id(0).clone();
    submit(
        &t.registry,
        "crash.service",
        "[Service]\nExecStart=/bin/sh -c 'exit 3'\n",
        Launched,
    )
    .await;
    let s = await_unit_state(&t.registry, "crash.service", &me, DEADLINE, "failed", |s| {
        s.active.as_str() == "failed"
    })
    .await;
    assert_eq!(s.current.to_string(), "launched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unit_systemd_refuses_is_failed_with_its_message_and_the_others_run() {
    let t = cluster("refused", &[("host-1", "")], FAST).await;
    let me = t.cluster.machine_id(0).clone();
    submit(
        &t.registry,
        "bad.service",
        "[Service]\nExecStart=relative/path\n",
        Launched,
    )
    .await;
    submit(&t.registry, "good.service", SLEEPER, Launched).await;
    let s = await_unit_state(
        &t.registry,
        "bad.service",
        &me,
        DEADLINE,
        "failed with a message",
        |s| s.active.as_str() == "failed" && s.message.is_some(),
    )
    .await;
    assert_eq!(s.load, LoadState::BadSetting);
    let message = s.message.unwrap();
    assert!(message.contains("bad.service"), "{message}");
    await_active(&t.registry, &["good.service"], DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn destroying_a_unit_removes_its_file_and_systemd_unit_from_the_host() {
    let t = cluster("destroy", &[("host-1", "")], FAST).await;
    submit(&t.registry, "gone.service", SLEEPER, Launched).await;
    await_active(&t.registry, &["gone.service"], DEADLINE).await;
    let file = t
        .cluster
        .host(0)
        .record()
        .path("/run/flotte/units/gone.service");
    assert!(
        file.exists(),
        "{} exists while the unit runs",
        file.display()
    );

    assert!(t.registry.delete_unit(&unit("gone.service")).await.unwrap());
    await_states(&t.registry, DEADLINE, "gone.service's state removed", |s| {
        s.keys()
            .all(|(u, _)| u.as_str() != "gone.service")
            .then_some(())
    })
    .await;
    assert!(!file.exists(), "{} is removed", file.display());
    let systemd = Systemd::connect(&t.cluster.host(0).bus()).await.unwrap();
    let status = systemd
        .list_by_names(&[unit("gone.service")])
        .await
        .unwrap();
    assert_eq!(
        status[0].1.load,
        LoadState::NotFound,
        "systemd forgot the unit"
    );
    assert!(
        t.registry
            .placement(&unit("gone.service"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_units_launched_at_once_all_become_active() {
    let t = cluster(
        "twenty",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        FAST,
    )
    .await;
    let names: Vec<String> = (1..=20).map(|i| format!("batch{i}.service")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (placed, took) = timed(async {
        for n in &refs {
            submit(&t.registry, n, SLEEPER, Launched).await;
        }
        await_active(&t.registry, &refs, DEADLINE).await
    })
    .await;
    eprintln!("20 units from submission to all active: {took:?}");
    let mut per_machine = std::collections::BTreeMap::new();
    for m in placed.values() {
        *per_machine.entry(m.clone()).or_insert(0) += 1;
    }
    assert_eq!(
        per_machine.len(),
        3,
        "spread over all machines: {per_machine:?}"
    );
    assert!(
        per_machine.values().all(|n| (6..=7).contains(n)),
        "least-loaded spreads evenly: {per_machine:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_cut_off_from_etcd_stops_its_units_once_its_lease_is_gone() {
    let t = partitionable_cluster("partition", &[("host-1", ""), ("host-2", "")], FAST).await;
    submit(&t.registry, "solo.service", SLEEPER, Launched).await;
    submit(
        &t.registry,
        "everywhere.service",
        &sleeper("Global=true"),
        Launched,
    )
    .await;
    let first =
        await_active(&t.registry, &["solo.service"], DEADLINE).await["solo.service"].clone();
    // The global unit must run on the machine to be cut before the cut, or "keeps running"
    // below would test nothing (and fail when the cut comes first).
    await_states(
        &t.registry,
        DEADLINE,
        "everywhere.service active on both machines",
        |s| (active_on(s, "everywhere.service").len() == 2).then_some(()),
    )
    .await;
    let cut = t.cluster.index_of(&first).unwrap();
    let systemd = Systemd::connect(&t.cluster.host(cut).bus()).await.unwrap();
    let mut changes = systemd.changes().await.unwrap();

    t.cluster.link(cut).unwrap().cut();
    // The engine moves the unit once the machine's lease expires ...
    let other = await_states(
        &t.registry,
        DEADLINE,
        "solo.service active on the other machine",
        |s| match active_on(s, "solo.service").as_slice() {
            [m] if *m != first => Some(m.clone()),
            _ => None,
        },
    )
    .await;
    // ... and the cut-off agent, unable to renew for a whole TTL, stops it on its side, so it
    // never runs twice for long. Its global unit keeps running.
    let solo = unit("solo.service");
    let stopped = async {
        loop {
            let status = systemd
                .list_by_names(std::slice::from_ref(&solo))
                .await
                .unwrap();
            if !matches!(
                status[0].1.active.as_str(),
                "active" | "activating" | "deactivating"
            ) {
                return;
            }
            changes.next().await.expect("signals keep coming");
        }
    };
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("the cut-off machine stopped solo.service");
    let everywhere = systemd
        .list_by_names(&[unit("everywhere.service")])
        .await
        .unwrap();
    assert_eq!(
        everywhere[0].1.active.as_str(),
        "active",
        "global units keep running through a partition"
    );

    // Back in touch, the machine registers again and solo.service stays where it moved.
    t.cluster.link(cut).unwrap().restore();
    t.cluster
        .wait_for_machines(std::slice::from_ref(&first), DEADLINE)
        .await
        .unwrap();
    let states = t.registry.states_of(&solo).await.unwrap();
    assert_eq!(
        states
            .iter()
            .filter(|(_, s)| s.active.as_str() == "active")
            .map(|((_, m), _)| m.clone())
            .collect::<Vec<_>>(),
        vec![other]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn flotted_says_when_etcd_is_unreachable_and_connects_once_it_is_there() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    flotte::isolated::sweep_stale_test_hosts();
    let dir = tempfile::Builder::new()
        .prefix("flotte-noetcd-")
        .tempdir()
        .unwrap();
    let group = format!("flotte-test-{}-noetcd", std::process::id());
    let host = flotte::isolated::Host::start("noetcd", &dir.path().join("host"), &group)
        .await
        .unwrap();
    let etcd = flotte::isolated::Etcd::start(&dir.path().join("etcd"))
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");

    let mut flotted = host
        .command(env!("CARGO_BIN_EXE_flotted"))
        .args([
            "--etcd-servers",
            &url,
            "--machine-id",
            host.machine_id().as_str(),
        ])
        .arg("--systemd-bus")
        .arg(format!("unix:path={}", host.dir().join("bus").display()))
        .arg("--listen")
        .arg(host.dir().join("flotte.sock"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(flotted.stderr.take().unwrap()).lines();
    let expected = format!("etcd at {url} is unreachable");
    let said = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(&expected) && line.contains("retrying in") {
                return line;
            }
        }
        panic!("flotted exited without saying that etcd is unreachable");
    })
    .await
    .expect("flotted reports the unreachable etcd");
    eprintln!("{said}");

    // Meanwhile its API answers at once, with a 503 saying why.
    let socket = host.dir().join("flotte.sock");
    let answer = tokio::process::Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .arg("list-machines")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&answer.stderr);
    assert_eq!(answer.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has not registered in the cluster yet"),
        "{stderr}"
    );

    // etcd appears at that address: flotted connects on its next attempt and registers.
    let _link = flotte::isolated::Link::start_at(
        format!("127.0.0.1:{port}").parse().unwrap(),
        etcd.client_addr(),
    )
    .await
    .unwrap();
    let settings = flotte::registry::EtcdSettings {
        endpoints: vec![etcd.client_url().to_owned()],
        ..Default::default()
    };
    let registry = flotte::registry::Registry::connect(&settings)
        .await
        .unwrap();
    let me = host.machine_id().clone();
    await_map(
        registry.watch_machines(),
        DEADLINE,
        "the machine registered once etcd was there",
        |m| m.contains_key(&me).then_some(()),
    )
    .await;
    let _ = flotted.kill().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_no_unit_refers_to_any_more_is_collected() {
    // The default resync (5 min): collection follows the replacement itself.
    let t = cluster("gc", &[("host-1", "")], &[]).await;
    let r = &t.registry;
    submit(r, "a.service", SLEEPER, Launched).await;
    await_active(r, &["a.service"], DEADLINE).await;
    let old = r.unit(&unit("a.service")).await.unwrap().unwrap().0.hash;
    submit(
        r,
        "a.service",
        "[Service]\nExecStart=/bin/sleep 99999\n",
        Launched,
    )
    .await;
    let new = r.unit(&unit("a.service")).await.unwrap().unwrap().0.hash;
    let me = t.cluster.machine_id(0).clone();
    await_unit_state(
        r,
        "a.service",
        &me,
        DEADLINE,
        "running the new content",
        |s| s.hash == new && s.active.as_str() == "active",
    )
    .await;
    // The engine collects a few seconds after the replacement (`COLLECT_AFTER`), a deletion
    // with no event of its own here: poll its outcome under a deadline.
    flotte::isolated::wait_for(
        DEADLINE,
        || format!("content {old} was not collected"),
        || async {
            let stored = r.content_revisions().await.unwrap();
            (!stored.iter().any(|(h, _)| *h == old)).then_some(stored)
        },
    )
    .await
    .map(|stored| {
        assert!(
            stored.iter().any(|(h, _)| *h == new),
            "the content in use stays"
        )
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn units_can_read_their_machines_address_and_flotteds_configuration() {
    let t = cluster("machineenv", &[("host-1", "region=eu,rack.no=7")], FAST).await;
    let unit_text = "[Service]\nType=oneshot\nRemainAfterExit=yes\nEnvironmentFile=/run/flotte/machine.env\n\
                     ExecStart=/bin/sh -c 'echo \"$FLOTTE_HOST_IP $FLOTTE_HOST_METADATA_REGION $FLOTTE_HOST_METADATA_RACK_NO $FLOTTE_CONFIG\" > /run/env-out'\n";
    submit(&t.registry, "env.service", unit_text, Launched).await;
    await_active(&t.registry, &["env.service"], DEADLINE).await;
    let out = std::fs::read_to_string(t.cluster.host(0).record().path("/run/env-out")).unwrap();
    let config = t.cluster.host(0).dir().join("flotted.conf");
    assert_eq!(
        out.trim(),
        format!("{} eu 7 {}", t.cluster.host_ip(0), config.display())
    );
    let env = std::fs::read_to_string(t.cluster.host(0).record().path("/run/flotte/machine.env"))
        .unwrap();
    assert!(
        env.contains(&format!("FLOTTE_HOST_ID={}\n", t.cluster.machine_id(0))),
        "{env}"
    );
}
