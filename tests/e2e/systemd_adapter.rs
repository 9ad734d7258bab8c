//! The systemd adapter against a real systemd manager in an isolated test host.

use std::path::PathBuf;
use std::time::Duration;

use flotte::isolated::Host;
use flotte::systemd::{ActiveState, LoadState, Systemd, UnitChanges, UnitStatus};
use flotte::unit::UnitName;

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flotte-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start_host(name: &str) -> Host {
    flotte::isolated::sweep_stale_test_hosts();
    let dir = test_dir(name);
    let group = format!("flotte-test-{}-{name}", std::process::id());
    Host::start(name, &dir, &group)
        .await
        .expect("test host starts")
}

/// Waits until the named unit's status satisfies `done` (`what` names the condition),
/// checking with ListUnitsByNames after each signal about it.
async fn await_status(
    systemd: &Systemd,
    changes: &mut UnitChanges,
    name: &UnitName,
    what: &str,
    done: impl Fn(&UnitStatus) -> bool,
) {
    let wait = async {
        loop {
            let state = systemd
                .list_by_names(std::slice::from_ref(name))
                .await
                .unwrap();
            if done(&state[0].1) {
                return;
            }
            // Next signal about this unit.
            loop {
                let changed = changes.next().await.expect("signal stream stays open");
                if &changed == name {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("{name} was not {what} within 10 s"));
}

/// Waits for the named unit to reach the active state `wanted`.
async fn await_state(
    systemd: &Systemd,
    changes: &mut UnitChanges,
    name: &UnitName,
    wanted: ActiveState,
) {
    let what = wanted.to_string();
    await_status(systemd, changes, name, &what, |s| s.active == wanted).await;
}

#[tokio::test]
async fn units_are_linked_started_watched_and_unloaded_through_dbus() {
    let host = start_host("adapter").await;
    let systemd = Systemd::connect(&host.bus()).await.unwrap();
    let mut changes = systemd.changes().await.unwrap();

    let name = UnitName::new("hello.service").unwrap();
    let file = host.dir().join("units").join(name.as_str());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "[Service]\nExecStart=/bin/sleep 1000\n").unwrap();

    let started = std::time::Instant::now();
    systemd
        .link_runtime(std::slice::from_ref(&file))
        .await
        .unwrap();
    systemd.reload().await.unwrap();
    systemd.start(&name).await.unwrap();
    await_state(&systemd, &mut changes, &name, ActiveState::Active).await;
    eprintln!(
        "link + reload + start until active: {:?}",
        started.elapsed()
    );

    let state = systemd
        .list_by_names(std::slice::from_ref(&name))
        .await
        .unwrap();
    assert_eq!(state[0].1.load, LoadState::Loaded);
    assert_eq!(state[0].1.sub, "running");
    let pid = systemd.main_pid(&name).await.unwrap();
    assert!(pid > 0, "a running service has a main PID");

    systemd.restart(&name).await.unwrap();
    await_state(&systemd, &mut changes, &name, ActiveState::Active).await;
    let new_pid = systemd.main_pid(&name).await.unwrap();
    assert_ne!(pid, new_pid, "restart starts a new main process");

    systemd.stop(&name).await.unwrap();
    await_state(&systemd, &mut changes, &name, ActiveState::Inactive).await;
    systemd
        .unlink_runtime(std::slice::from_ref(&name))
        .await
        .unwrap();
    systemd.reload().await.unwrap();
    let state = systemd
        .list_by_names(std::slice::from_ref(&name))
        .await
        .unwrap();
    assert_eq!(
        state[0].1.load,
        LoadState::NotFound,
        "unlinked unit is gone after reload"
    );

    // Tolerated: stopping and unlinking what systemd no longer knows.
    systemd.stop(&name).await.unwrap();
    systemd
        .unlink_runtime(std::slice::from_ref(&name))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_unit_whose_process_exits_with_an_error_is_failed() {
    let host = start_host("failing").await;
    let systemd = Systemd::connect(&host.bus()).await.unwrap();
    let mut changes = systemd.changes().await.unwrap();
    let name = UnitName::new("crash.service").unwrap();
    let file = host.dir().join(name.as_str());
    std::fs::write(&file, "[Service]\nExecStart=/bin/sh -c 'exit 3'\n").unwrap();
    systemd
        .link_runtime(std::slice::from_ref(&file))
        .await
        .unwrap();
    systemd.reload().await.unwrap();
    systemd.start(&name).await.unwrap();
    await_state(&systemd, &mut changes, &name, ActiveState::Failed).await;
}

#[tokio::test]
async fn a_unit_systemd_rejects_gives_systemds_message() {
    let host = start_host("rejects").await;
    let systemd = Systemd::connect(&host.bus()).await.unwrap();
    let name = UnitName::new("bad.service").unwrap();
    let file = host.dir().join(name.as_str());
    std::fs::write(&file, "[Service]\nExecStart=relative/path\n").unwrap();
    systemd
        .link_runtime(std::slice::from_ref(&file))
        .await
        .unwrap();
    systemd.reload().await.unwrap();
    let err = systemd.start(&name).await.unwrap_err().to_string();
    assert!(err.contains("bad.service"), "{err}");
    let state = systemd
        .list_by_names(std::slice::from_ref(&name))
        .await
        .unwrap();
    assert_eq!(state[0].1.load, LoadState::BadSetting);
}

/// The agent reloads systemd only when a file systemd has loaded changes: the manager finds a
/// newly linked unit by itself (its unit-file cache notices the changed runtime directory),
/// also one it had already looked up as not-found, and forgets a stopped, unlinked unit by
/// itself (garbage collection), so that it can be linked anew with other content.
#[tokio::test]
async fn new_units_start_and_stopped_units_go_without_a_daemon_reload() {
    let host = start_host("noreload").await;
    let systemd = Systemd::connect(&host.bus()).await.unwrap();
    let mut changes = systemd.changes().await.unwrap();
    let name = UnitName::new("fresh.service").unwrap();
    let dir = host.dir().join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name.as_str());

    // Looked up before it exists: systemd now holds it as not-found.
    let state = systemd
        .list_by_names(std::slice::from_ref(&name))
        .await
        .unwrap();
    assert_eq!(state[0].1.load, LoadState::NotFound);

    for (round, seconds) in [(1, "1001"), (2, "1002")] {
        std::fs::write(
            &file,
            format!("[Service]\nExecStart=/bin/sleep {seconds}\n"),
        )
        .unwrap();
        systemd
            .link_runtime(std::slice::from_ref(&file))
            .await
            .unwrap();
        systemd
            .start(&name)
            .await
            .unwrap_or_else(|e| panic!("round {round}: start without reload: {e}"));
        await_state(&systemd, &mut changes, &name, ActiveState::Active).await;
        let pid = systemd.main_pid(&name).await.unwrap();
        // A simple service is active from its fork; until its exec, its command line is
        // systemd's placeholder `(sleep)`, and while the exec replaces it, empty.
        let cmdline = flotte::isolated::wait_for(
            std::time::Duration::from_secs(10),
            || format!("round {round}: main PID {pid} never exec'd its command"),
            || async {
                let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
                (!cmdline.is_empty() && !cmdline.starts_with('(')).then_some(cmdline)
            },
        )
        .await
        .unwrap();
        assert!(
            cmdline.contains(seconds),
            "round {round}: runs the file as written now: {cmdline:?}"
        );

        systemd.stop(&name).await.unwrap();
        systemd
            .unlink_runtime(std::slice::from_ref(&name))
            .await
            .unwrap();
        std::fs::remove_file(&file).unwrap();
        await_status(&systemd, &mut changes, &name, "not-found", |s| {
            s.load == LoadState::NotFound
        })
        .await;
    }
}
