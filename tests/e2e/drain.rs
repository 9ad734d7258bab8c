//! `flottectl drain` and `undrain` on a real cluster (issue 12, item 5): a drained machine's
//! normal units move elsewhere, what cannot move is listed with its reason, global units stay
//! (not restarted), no new unit goes there, the mark survives an agent restart and
//! list-machines shows it; `undrain` lets units back.

use std::process::Output;
use std::time::Duration;

use flotte::machine::MachineId;
use flotte::systemd::Systemd;
use flotte::unit::DesiredState::Launched;
use nix::sys::signal::Signal;

use crate::support::*;

const SLEEPER: &str = "[Service]\nExecStart=/bin/sleep 100000\n";
const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];
const DEADLINE: Duration = Duration::from_secs(30);

fn stdout_of(out: &Output, what: &str) -> String {
    succeeded(&[what], out)
}

/// `list-machines`' DRAINED column for `machine`.
async fn drained_shown(t: &TestCluster, machine: &MachineId) -> String {
    let out = flottectl_on(
        t,
        1,
        &[
            "list-machines",
            "--full",
            "--no-legend",
            "--fields",
            "machine,drained",
        ],
    )
    .await;
    let listing = stdout_of(&out, "list-machines");
    listing
        .lines()
        .find_map(|line| line.strip_prefix(machine.as_str()))
        .unwrap_or_else(|| panic!("{machine} not listed: {listing}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_moves_normal_units_off_keeps_new_ones_away_until_undrain() {
    let mut t = cluster(
        "drain",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        FAST,
    )
    .await;
    let r = t.registry.clone();
    let names = ["a.service", "b.service", "c.service", "d.service"];
    for n in names {
        submit(&r, n, SLEEPER, Launched).await;
    }
    submit(
        &r,
        "g.service",
        &format!("{SLEEPER}[X-Fleet]\nGlobal=true\n"),
        Launched,
    )
    .await;
    let placed = await_active(&r, &names, DEADLINE).await;
    let victim = placed["a.service"].clone();
    let v = t.cluster.index_of(&victim).unwrap();
    let short = &victim.as_str()[..8];
    let pinned = format!("{SLEEPER}[X-Fleet]\nMachineID={victim}\n");
    submit(&r, "pinned.service", &pinned, Launched).await;
    let on_victim: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| placed[*n] == victim)
        .chain(["pinned.service"])
        .collect();
    await_states(
        &r,
        DEADLINE,
        "g everywhere and pinned on its machine",
        |s| {
            (active_on(s, "g.service").len() == 3
                && active_on(s, "pinned.service") == [victim.clone()])
            .then_some(())
        },
    )
    .await;
    let systemd = Systemd::connect(&t.cluster.host(v).bus()).await.unwrap();
    let global_pid = systemd.main_pid(&unit("g.service")).await.unwrap();
    assert_eq!(drained_shown(&t, &victim).await, "false");

    // Drain by the ID's first 8 characters, through another host's API.
    let other = (v + 1) % 3;
    let (out, took) = timed(flottectl_on(&t, other, &["drain", short])).await;
    let said = stdout_of(&out, "drain");
    eprintln!("drain of {short} returned after {took:?}:\n{said}");
    assert!(
        said.starts_with(&format!("Machine {short}... drained\n")),
        "{said}"
    );
    for n in &on_victim {
        let line = said
            .lines()
            .find(|l| l.starts_with(&format!("Unit {n} ")))
            .unwrap_or_else(|| panic!("{n} not reported: {said}"));
        if *n == "pinned.service" {
            assert_eq!(
                line,
                format!(
                    "Unit pinned.service cannot move: the only machine it may run on, \
                     {short}, is drained"
                )
            );
        } else {
            assert!(line.starts_with(&format!("Unit {n} moved to ")), "{line}");
            assert!(!line.contains(short), "{line}");
        }
    }
    assert!(
        !said.contains("g.service"),
        "global units are not moved: {said}"
    );
    let moved: Vec<&str> = on_victim
        .iter()
        .copied()
        .filter(|n| *n != "pinned.service")
        .collect();
    await_states(
        &r,
        DEADLINE,
        "moved units active elsewhere, pinned stopped",
        |s| {
            let moved_ok = moved
                .iter()
                .all(|n| matches!(active_on(s, n).as_slice(), [m] if *m != victim));
            (moved_ok && active_on(s, "pinned.service").is_empty()).then_some(())
        },
    )
    .await;
    assert_eq!(
        systemd.main_pid(&unit("g.service")).await.unwrap(),
        global_pid,
        "the global unit on the drained machine kept running"
    );
    let reason = r.reason(&unit("pinned.service")).await.unwrap().unwrap();
    assert_eq!(
        reason.reason,
        format!("the only machine it may run on, {short}, is drained")
    );
    assert_eq!(drained_shown(&t, &victim).await, "true");

    // The mark outlives the agent: restart it, then new units still go elsewhere, though
    // the drained machine is now the emptiest.
    t.cluster.stop_flotted(v, Signal::SIGTERM);
    t.cluster.start_flotted(v).unwrap();
    t.cluster
        .wait_for_machines(std::slice::from_ref(&victim), DEADLINE)
        .await
        .expect("the restarted machine registers again");
    let fresh = ["e.service", "f.service", "h.service"];
    for n in fresh {
        submit(&r, n, SLEEPER, Launched).await;
    }
    let placed = await_active(&r, &fresh, DEADLINE).await;
    assert!(
        placed.values().all(|m| *m != victim),
        "a new unit went to the drained machine: {placed:?}"
    );
    assert_eq!(drained_shown(&t, &victim).await, "true");
    let out = flottectl_on(&t, other, &["drain", victim.as_str(), "--no-block"]).await;
    assert_eq!(
        stdout_of(&out, "drain again"),
        format!("Machine {short}... was already drained\n")
    );

    // Undrain: the pinned unit comes back to its machine.
    let out = flottectl_on(&t, other, &["undrain", short]).await;
    assert_eq!(
        stdout_of(&out, "undrain"),
        format!("Machine {short}... undrained\n")
    );
    await_states(&r, DEADLINE, "pinned active on its machine again", |s| {
        (active_on(s, "pinned.service") == [victim.clone()]).then_some(())
    })
    .await;
    assert_eq!(drained_shown(&t, &victim).await, "false");
    submit(&r, "back.service", SLEEPER, Launched).await;
    let placed = await_active(&r, &["back.service"], DEADLINE).await;
    assert_eq!(
        placed["back.service"], victim,
        "the undrained machine, the emptiest, gets the next unit"
    );
    let out = flottectl_on(&t, other, &["undrain", short]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("flottectl: machine {short}... is not drained\n")
    );
    let out = flottectl_on(&t, other, &["drain", "nosuchhost"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no machine `nosuchhost` in the cluster"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A unit slow to stop (its `ExecStop=` takes seconds) keeps its old machine's state
/// published as stopping, and its new machine gets it only once systemd there reports it
/// stopped: never two copies while a move waits for a graceful stop.
#[tokio::test(flavor = "multi_thread")]
async fn a_unit_slow_to_stop_reaches_its_new_machine_only_once_it_stopped_on_the_old() {
    let t = cluster("slowstop", &[("host-1", ""), ("host-2", "")], FAST).await;
    let r = t.registry.clone();
    let slow = "[Service]\nExecStart=/bin/sleep 100000\nExecStop=/bin/sleep 3\n";
    submit(&r, "slow.service", slow, Launched).await;
    let placed = await_active(&r, &["slow.service"], DEADLINE).await;
    let old = placed["slow.service"].clone();
    let v = t.cluster.index_of(&old).unwrap();
    let new = t.cluster.machine_id(1 - v).clone();
    let systemd = Systemd::connect(&t.cluster.host(v).bus()).await.unwrap();
    let on_old = || async {
        systemd
            .list_by_names(&[unit("slow.service")])
            .await
            .unwrap()
            .into_iter()
            .next()
            .map(|(_, s)| s.active)
    };

    r.drain(&old, &flotte::registry::DrainRecord { since: 1 })
        .await
        .unwrap();
    // The old machine reports it stopping while its ExecStop runs.
    await_unit_state(
        &r,
        "slow.service",
        &old,
        DEADLINE,
        "reported deactivating on its old machine",
        |s| s.active.as_str() == "deactivating",
    )
    .await;
    // While systemd there still stops it, the new machine has no entry of it: the schedule
    // is read first, the old machine's systemd after.
    let mut checked = 0;
    loop {
        let (entries, _) = r.schedule().await.unwrap();
        let placed_new = entries
            .iter()
            .any(|((m, u), _)| *m == new && u.as_str() == "slow.service");
        match on_old().await {
            Some(a) if a.is_running() => {
                assert!(
                    !placed_new,
                    "slow.service was placed on {new} while {old} still ran it ({a:?})"
                );
                checked += 1;
            }
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        checked > 5,
        "the stop was hardly seen ({checked} checks); ExecStop takes 3 s"
    );
    let moved = await_active(&r, &["slow.service"], DEADLINE).await;
    assert_eq!(moved["slow.service"], new);
}
