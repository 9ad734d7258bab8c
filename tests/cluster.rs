//! flotted end to end: real etcd, real systemd hosts, one flotted per host.

mod support;

use std::time::Duration;

use flotte::unit::DesiredState;
use support::*;

const SLEEPER: &str = "[Service]\nExecStart=/bin/sleep 100000\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_launched_unit_becomes_active_on_one_host() {
    let t = cluster(
        "launch",
        &[("host-1", "region=eu"), ("host-2", "region=us")],
        &[],
    )
    .await;
    let ((), took) = timed(async {
        submit(
            &t.registry,
            "hello.service",
            SLEEPER,
            DesiredState::Launched,
        )
        .await;
        await_states(
            &t.registry,
            Duration::from_secs(20),
            "hello.service active",
            |s| (active_on(s, "hello.service").len() == 1).then_some(()),
        )
        .await;
    })
    .await;
    eprintln!("submit to active: {took:?}");
}
