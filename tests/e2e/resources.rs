//! Resource-aware placement on a real cluster (issue 15): hosts of different declared
//! capacities, units that go only where their `Memory=`/`CPU=` requests fit, global units
//! counted on every machine, a unit that fits nowhere waiting with its shortfall as reason, and
//! placed once a destroy frees the room; list-machines shows capacity, requested and free.

use std::time::Duration;

use flotte::isolated::{EtcdAccess, HostSpec, wait_for};
use flotte::unit::DesiredState::Launched;

use crate::support::*;

const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];
const DEADLINE: Duration = Duration::from_secs(30);

fn sleeper(x_fleet: &str) -> String {
    format!("[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\n{x_fleet}\n")
}

async fn flottectl(t: &TestCluster, args: &[&str]) -> String {
    succeeded(args, &flottectl_on(t, 0, args).await)
}

/// The `list-machines --fields machine,cpu,memory,units` row of host `i`, its columns after the
/// machine ID.
async fn sizes_of(t: &TestCluster, i: usize) -> Vec<String> {
    let listing = flottectl(
        t,
        &[
            "list-machines",
            "--full",
            "--no-legend",
            "--fields",
            "machine,cpu,memory,units",
        ],
    )
    .await;
    let id = t.cluster.machine_id(i).as_str();
    listing
        .lines()
        .find_map(|l| l.strip_prefix(id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{listing}"))
        .split('\t')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn units_go_where_their_requests_fit_and_one_that_fits_nowhere_waits_for_room() {
    let hosts = [
        ("host-1", "memory=2G,cpu=2"),
        ("host-2", "memory=1G,cpu=1"),
        ("host-3", "memory=1G,cpu=1"),
    ]
    .iter()
    .map(|(name, capacity)| HostSpec {
        name: name.to_string(),
        metadata: String::new(),
        api_port: None,
        settings: vec![("capacity".to_owned(), capacity.to_string())],
    })
    .collect();
    let t = cluster_of("resources", hosts, FAST, EtcdAccess::Direct).await;
    let r = t.registry.clone();
    let host_1 = t.cluster.machine_id(0).clone();

    // 1.5 GiB fits only on host-1; the global unit's 256 MiB count on every machine.
    submit(&r, "big.service", &sleeper("Memory=1536M"), Launched).await;
    submit(
        &r,
        "g.service",
        &sleeper("Memory=256M\nGlobal=true"),
        Launched,
    )
    .await;
    let placed = await_active(&r, &["big.service"], DEADLINE).await;
    assert_eq!(
        placed["big.service"], host_1,
        "big.service needs host-1's 2 GiB"
    );
    await_states(&r, DEADLINE, "g.service active on all three", |s| {
        (active_on(s, "g.service").len() == 3).then_some(())
    })
    .await;

    // 512 MiB and half a CPU: not on host-1 (256 MiB free), so on host-2 or host-3.
    submit(
        &r,
        "more.service",
        &sleeper("Memory=512M\nCPU=0.5"),
        Launched,
    )
    .await;
    let placed = await_active(&r, &["more.service"], DEADLINE).await;
    let more_on = t.cluster.index_of(&placed["more.service"]).unwrap();
    assert_ne!(more_on, 0, "more.service cannot fit on host-1");
    let other = 3 - more_on; // the host of the two small ones that more.service is not on

    // 900 MiB fits nowhere: the most free is 768 MiB, on the small host without more.service.
    submit(&r, "huge.service", &sleeper("Memory=900M"), Launched).await;
    let short = &t.cluster.machine_id(other).as_str()[..8];
    let expected = format!("needs 900 MiB of memory, most free is 768 MiB on {short}");
    let listed = wait_for(
        DEADLINE,
        || format!("list-unit-files never gave huge.service the reason `{expected}`"),
        || async {
            let files = flottectl(
                &t,
                &["list-unit-files", "--no-legend", "--fields", "unit,reason"],
            )
            .await;
            files
                .lines()
                .any(|l| l.starts_with("huge.service") && l.contains(&expected))
                .then_some(files)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{listed}");
    let states = r.states_of(&unit("huge.service")).await.unwrap();
    assert!(
        states.is_empty(),
        "huge.service has a state, so it was placed: {states:?}"
    );

    // What list-machines shows: requested/capacity (free), and the units placed.
    assert_eq!(
        sizes_of(&t, 0).await,
        ["0/2 (2 free)", "1.75 GiB/2 GiB (256 MiB free)", "2"]
    );
    assert_eq!(
        sizes_of(&t, more_on).await,
        ["0.5/1 (0.5 free)", "768 MiB/1 GiB (256 MiB free)", "2"]
    );
    assert_eq!(
        sizes_of(&t, other).await,
        ["0/1 (1 free)", "256 MiB/1 GiB (768 MiB free)", "1"]
    );

    // Destroying big.service frees host-1: huge.service is placed there.
    flottectl(&t, &["destroy", "big.service"]).await;
    let placed = await_active(&r, &["huge.service"], DEADLINE).await;
    assert_eq!(
        placed["huge.service"], host_1,
        "huge.service on the room big left"
    );
}
