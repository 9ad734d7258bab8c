//! "start starts" (issue 12, item 7): `flottectl stop apache` stops its sidekick too, through
//! `BindsTo=`, while the sidekick's desired state stays `launched`; `flottectl start apache
//! apache-sidekick` then starts both again and says so for the sidekick. A unit that stopped
//! by itself stays stopped, also across an agent restart, until someone asks.

use std::path::Path;
use std::time::Duration;

use flotte::systemd::Systemd;
use flotte::unit::DesiredState::Launched;
use nix::sys::signal::Signal;

use crate::support::*;

const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];
const DEADLINE: Duration = Duration::from_secs(30);
const APACHE: &str = "[Service]\nExecStart=/bin/sleep 100000\n";
/// As `units/apache-sidekick.service`: started with apache and stopped with it.
const SIDEKICK: &str = "[Unit]\nBindsTo=apache.service\nAfter=apache.service\n\n\
                        [Service]\nExecStart=/bin/sleep 100000\n\n\
                        [X-Fleet]\nMachineOf=apache.service\n";

async fn flottectl(t: &TestCluster, dir: &Path, args: &[&str]) -> String {
    let out = flottectl_command(t, 0, args)
        .current_dir(dir)
        .output()
        .await
        .expect("flottectl runs");
    succeeded(args, &out)
}

/// Awaits `name`'s state on its machine until systemd reports it `active`, or not (`false`).
async fn await_running(t: &TestCluster, name: &str, running: bool) {
    let what = format!("{name} {}", if running { "active" } else { "stopped" });
    await_states(&t.registry, DEADLINE, what, |s| {
        s.iter()
            .find(|((u, _), _)| u.as_str() == name)
            .filter(|(_, r)| (r.active.as_str() == "active") == running)
            .map(|_| ())
    })
    .await;
}

/// A unit started on the host and seen active proves its agent made a pass since.
async fn probe(t: &TestCluster, name: &str) {
    submit(&t.registry, name, APACHE, Launched).await;
    await_active(&t.registry, &[name], DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn start_starts_a_launched_unit_that_stopped_and_only_when_asked() {
    let mut t = cluster("startagain", &[("host-1", "")], FAST).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("apache.service"), APACHE).unwrap();
    std::fs::write(dir.path().join("apache-sidekick.service"), SIDEKICK).unwrap();
    flottectl(
        &t,
        dir.path(),
        &["start", "apache.service", "apache-sidekick.service"],
    )
    .await;
    await_active(
        &t.registry,
        &["apache.service", "apache-sidekick.service"],
        DEADLINE,
    )
    .await;

    // Stopping apache stops the sidekick too; its desired state stays launched.
    flottectl(&t, dir.path(), &["stop", "apache"]).await;
    await_running(&t, "apache-sidekick.service", false).await;
    let (record, _) = t
        .registry
        .unit(&unit("apache-sidekick.service"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.desired, Launched);

    let said = flottectl(&t, dir.path(), &["start", "apache", "apache-sidekick"]).await;
    eprintln!("{said}");
    let machine = &t.cluster.machine_id(0).as_str()[..8];
    assert!(
        said.contains(&format!(
            "Unit apache-sidekick.service is launched but not running on {machine}..."
        )),
        "{said}"
    );
    assert!(said.contains(": starting it again\n"), "{said}");
    assert!(
        said.contains("Unit apache-sidekick.service launched on "),
        "{said}"
    );
    assert!(
        !said.contains("Unit apache.service is launched but"),
        "{said}"
    );
    await_active(
        &t.registry,
        &["apache.service", "apache-sidekick.service"],
        DEADLINE,
    )
    .await;

    // Stopped by itself (here: behind flotte's back, through systemd): it stays stopped, also
    // after passes of its agent and an agent restart, until someone asks.
    let systemd = Systemd::connect(&t.cluster.host(0).bus()).await.unwrap();
    systemd
        .stop(&unit("apache-sidekick.service"))
        .await
        .unwrap();
    await_running(&t, "apache-sidekick.service", false).await;
    probe(&t, "probe-1.service").await;
    t.cluster.stop_flotted(0, Signal::SIGTERM);
    t.cluster.start_flotted(0).unwrap();
    probe(&t, "probe-2.service").await;
    let states = t
        .registry
        .states_of(&unit("apache-sidekick.service"))
        .await
        .unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(
        states[0].1.active.as_str(),
        "inactive",
        "a unit that stopped by itself was started without being asked"
    );

    // Asked: started again, once.
    let said = flottectl(&t, dir.path(), &["start", "apache-sidekick"]).await;
    assert!(said.contains("starting it again"), "{said}");
    await_running(&t, "apache-sidekick.service", true).await;
    let pid = systemd
        .main_pid(&unit("apache-sidekick.service"))
        .await
        .unwrap();
    let said = flottectl(&t, dir.path(), &["start", "apache-sidekick"]).await;
    assert!(!said.contains("starting it again"), "it runs: {said}");
    probe(&t, "probe-3.service").await;
    assert_eq!(
        systemd
            .main_pid(&unit("apache-sidekick.service"))
            .await
            .unwrap(),
        pid,
        "a start of a running unit restarts nothing"
    );
}
