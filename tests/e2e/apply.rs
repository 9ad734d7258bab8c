//! `flottectl plan` and `apply` on a real cluster (issue 14): a plan of a new directory shows
//! changes pending with the scheduler's placements, apply makes them, a plan again is in
//! sync; a changed template's three running instances are replaced one at a time (sampled
//! every 100 ms: never two down at once), a broken change stops after the first instance with
//! the others left on the old version; `--prune` removes only the set's own units; a saved
//! plan is refused after a concurrent change; bad files are refused with file and line before
//! anything changes. Clusters take their addresses from `support::unique_first_ip`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use flotte::unit::DesiredState::Launched;
use flotte::unit::UnitHash;
use tokio::process::Command;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// A template whose start takes a second (`ExecStartPre=`), so that a restart is seen.
fn web(version: u32) -> String {
    format!(
        "[Unit]\nDescription=web %i\n[Service]\nEnvironment=VERSION={version}\nExecStartPre=/bin/sleep 1\nExecStart=/bin/sleep 100000\n"
    )
}

const BROKEN: &str = "[Unit]\nDescription=web %i\n[Service]\nExecStart=/bin/sh -c 'exit 3'\n";

fn flottectl_command(t: &TestCluster, args: &[&str]) -> Command {
    let mut command = crate::support::flottectl_command(t, 0, &["--request-timeout", "10"]);
    command.args(args);
    command
}

async fn flottectl(t: &TestCluster, args: &[&str]) -> Output {
    flottectl_command(t, args)
        .output()
        .await
        .expect("flottectl runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn expect_code(out: &Output, code: i32, what: &str) -> String {
    let all = text(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {all}");
    println!("$ {what}\n{all}");
    all
}

/// `dir` with the template `web@.service` and its instances 1 to 3 as symlinks to it.
fn write_web(dir: &Path, template: &str) {
    std::fs::write(dir.join("web@.service"), template).unwrap();
    for i in 1..=3 {
        let link = dir.join(format!("web@{i}.service"));
        if !link.exists() {
            std::os::unix::fs::symlink("web@.service", link).unwrap();
        }
    }
}

/// The content hash of a unit submitted from `text` (an instance's is its template's).
fn hash_of(text: &str) -> UnitHash {
    file(text).hash()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_in_sync_then_a_rolling_update_and_a_broken_change_that_stops_it() {
    let t = cluster(
        "apply-roll",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        &[],
    )
    .await;
    let r = t.registry.clone();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("web");
    std::fs::create_dir(&dir).unwrap();
    write_web(&dir, &web(1));
    let d = dir.to_str().unwrap();

    // A new directory: changes pending, each instance with the machine the scheduler picks.
    let out = flottectl(&t, &["plan", d]).await;
    let shown = expect_code(&out, 2, "flottectl plan web");
    for i in 1..=3 {
        assert!(
            shown.contains(&format!("+ web@{i}.service: submit, launched  -> ")),
            "{shown}"
        );
    }
    let out = flottectl(&t, &["plan", d, "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["inSync"], false);
    let planned: BTreeMap<String, String> = plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["name"] != "web@.service")
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["machineIDs"][0].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(planned.len(), 3, "{plan}");

    let out = flottectl(&t, &["apply", d, "--healthy-for", "0.5"]).await;
    expect_code(&out, 0, "flottectl apply web");
    let placed = await_active(
        &r,
        &["web@1.service", "web@2.service", "web@3.service"],
        DEADLINE,
    )
    .await;
    // The plan's placements are the engine's: the dry run ran the same scheduler.
    for (unit, machine) in &placed {
        assert_eq!(
            &planned[unit],
            machine.as_str(),
            "{unit}: plan said otherwise"
        );
    }

    let out = flottectl(&t, &["plan", d]).await;
    let shown = expect_code(&out, 0, "flottectl plan web (again)");
    assert!(
        shown.contains("Nothing to do: the cluster is in sync."),
        "{shown}"
    );

    // A changed template: its three instances replaced one at a time, sampled every 100 ms.
    write_web(&dir, &web(2));
    let new = hash_of(&web(2));
    let child = flottectl_command(&t, &["apply", d, "--healthy-for", "0.5"]).output();
    tokio::pin!(child);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut max_down = 0;
    let mut seen_down: BTreeMap<String, usize> = BTreeMap::new();
    let mut samples = 0;
    let out = loop {
        tokio::select! {
            out = &mut child => break out.unwrap(),
            _ = tick.tick() => {
                let states = r.states().await.unwrap();
                let down: Vec<String> = states
                    .iter()
                    .filter(|((u, _), s)| u.as_str() != "web@.service" && s.active.as_str() != "active")
                    .map(|((u, _), _)| u.to_string())
                    .collect();
                samples += 1;
                max_down = max_down.max(down.len());
                for u in down {
                    *seen_down.entry(u).or_default() += 1;
                }
            }
        }
    };
    let shown = expect_code(&out, 0, "flottectl apply web (rolling update)");
    println!("{samples} samples; seen down: {seen_down:?}; at most {max_down} down at once");
    assert!(shown.contains("replace (rolling update)"), "{shown}");
    assert_eq!(
        max_down, 1,
        "never more than one instance down: {seen_down:?}"
    );
    assert_eq!(
        seen_down.keys().map(String::as_str).collect::<Vec<_>>(),
        ["web@1.service", "web@2.service", "web@3.service"],
        "each instance was restarted under its new file"
    );
    await_states(&r, DEADLINE, "every instance runs version 2", |s| {
        let on_new = s
            .iter()
            .filter(|((u, _), st)| {
                u.as_str().starts_with("web@") && st.hash == new && st.active.as_str() == "active"
            })
            .count();
        (on_new == 3).then_some(())
    })
    .await;

    // A broken change stops after the first instance; the others stay on version 2.
    write_web(&dir, BROKEN);
    let out = flottectl(&t, &["apply", d, "--healthy-for", "0.5"]).await;
    let shown = expect_code(&out, 1, "flottectl apply web (broken change)");
    assert!(
        shown.contains("STOPPED at step 2 of 4: web@1.service failed"),
        "{shown}"
    );
    assert!(
        shown.contains("Still on their old version: web@2.service, web@3.service."),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("resume with: flottectl apply {d} --set web")),
        "{shown}"
    );
    let states = r.states().await.unwrap();
    let broken = hash_of(BROKEN);
    for ((u, _), s) in &states {
        match u.as_str() {
            "web@1.service" => assert_eq!(s.hash, broken, "{u} has the broken content"),
            "web@2.service" | "web@3.service" => {
                assert_eq!(
                    (s.hash, s.active.as_str()),
                    (new, "active"),
                    "{u} untouched"
                )
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_only_the_sets_own_units() {
    let t = cluster("apply-prune", &[("host-1", "")], &[]).await;
    let r = t.registry.clone();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let sleeper = "[Service]\nExecStart=/bin/sleep 100000\n";
    for n in ["one", "two"] {
        std::fs::write(a.join(format!("{n}.service")), sleeper).unwrap();
    }
    std::fs::write(b.join("other.service"), sleeper).unwrap();
    // A unit no apply created, and one that set `a` adopts but did not create.
    submit(&r, "foreign.service", sleeper, Launched).await;
    submit(&r, "adopted.service", sleeper, Launched).await;
    std::fs::write(a.join("adopted.service"), sleeper).unwrap();
    let (ad, bd) = (a.to_str().unwrap(), b.to_str().unwrap());
    expect_code(&flottectl(&t, &["apply", ad]).await, 0, "flottectl apply a");
    expect_code(&flottectl(&t, &["apply", bd]).await, 0, "flottectl apply b");

    std::fs::remove_file(a.join("two.service")).unwrap();
    std::fs::remove_file(a.join("adopted.service")).unwrap();
    // Without --prune nothing is destroyed.
    let shown = expect_code(&flottectl(&t, &["plan", ad]).await, 0, "flottectl plan a");
    assert!(!shown.contains(": destroy"), "{shown}");
    assert!(
        shown.contains("= two.service: kept, in set a but not in the directories"),
        "{shown}"
    );
    let shown = expect_code(
        &flottectl(&t, &["plan", ad, "--prune"]).await,
        2,
        "flottectl plan a --prune",
    );
    assert!(shown.contains("- two.service: destroy"), "{shown}");
    expect_code(
        &flottectl(&t, &["apply", ad, "--prune"]).await,
        0,
        "flottectl apply a --prune",
    );
    let (units, _) = r.units().await.unwrap();
    let mut names: Vec<String> = units.iter().map(|(u, _)| u.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "adopted.service",
            "foreign.service",
            "one.service",
            "other.service"
        ]
    );
    // Pruned once: the set no longer lists it, so a second prune has nothing to do.
    expect_code(
        &flottectl(&t, &["plan", ad, "--prune"]).await,
        0,
        "flottectl plan a --prune (again)",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_applies_exactly_and_is_refused_after_a_concurrent_change() {
    let t = cluster("apply-plan-file", &[("host-1", "")], &[]).await;
    let r = t.registry.clone();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("site");
    std::fs::create_dir(&dir).unwrap();
    let sleeper = "[Service]\nExecStart=/bin/sleep 100000\n";
    std::fs::write(dir.join("a.service"), sleeper).unwrap();
    std::fs::write(
        dir.join("b.service"),
        format!("{sleeper}[X-Flotte]\nState=loaded\n"),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let saved = root.path().join("plan.json");
    let s = saved.to_str().unwrap();
    expect_code(
        &flottectl(&t, &["plan", d, "--out", s]).await,
        2,
        "flottectl plan site --out plan.json",
    );
    // The directory changes after the plan: the saved plan is what is applied.
    std::fs::write(dir.join("c.service"), sleeper).unwrap();
    expect_code(
        &flottectl(&t, &["apply", "--plan", s]).await,
        0,
        "flottectl apply --plan plan.json",
    );
    let (units, _) = r.units().await.unwrap();
    let got: BTreeMap<String, String> = units
        .iter()
        .map(|(u, rec)| (u.to_string(), rec.desired.to_string()))
        .collect();
    assert_eq!(
        got,
        BTreeMap::from([
            ("a.service".to_string(), "launched".to_string()),
            ("b.service".to_string(), "loaded".to_string()),
        ])
    );

    // A plan, then someone else changes a unit it covers: the plan is refused, nothing done.
    std::fs::write(
        dir.join("a.service"),
        "[Service]\nExecStart=/bin/sleep 200000\n",
    )
    .unwrap();
    expect_code(
        &flottectl(&t, &["plan", d, "--out", s]).await,
        2,
        "flottectl plan site --out plan.json",
    );
    set_desired(&r, "b.service", Launched).await;
    let before = r.units().await.unwrap().0;
    let shown = expect_code(
        &flottectl(&t, &["apply", "--plan", s]).await,
        1,
        "flottectl apply --plan plan.json (after a concurrent change)",
    );
    assert!(
        shown.contains("the cluster changed since the plan was made at revision"),
        "{shown}"
    );
    assert!(shown.contains("unit b.service changed"), "{shown}");
    assert_eq!(r.units().await.unwrap().0, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_are_refused_with_file_and_line_before_anything_changes() {
    let t = cluster("apply-bad", &[("host-1", "")], &[]).await;
    let r = t.registry.clone();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bad");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("good.service"),
        "[Service]\nExecStart=/bin/sleep 100000\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.service"),
        "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineOf=../x\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("state.service"),
        "[Service]\nExecStart=/bin/true\n[X-Flotte]\nState=up\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    for command in ["plan", "apply"] {
        let shown = expect_code(&flottectl(&t, &[command, d]).await, 1, command);
        assert!(
            shown.contains(&format!("{}:4: ", dir.join("bad.service").display())),
            "{shown}"
        );
        assert!(
            shown.contains(&format!(
                "{}:4: State: `up` is not inactive, loaded or launched",
                dir.join("state.service").display()
            )),
            "{shown}"
        );
    }
    assert!(r.units().await.unwrap().0.is_empty(), "nothing submitted");
}

/// A web server instance declaring a checked service on port 8000+%i of its host's address.
fn checked_web(version: u32) -> String {
    format!(
        "[Unit]\nDescription=web %i\n[Service]\nEnvironmentFile=/run/flotte/machine.env\n\
         Environment=VERSION={version}\nExecStartPre=/bin/sleep 1\n\
         ExecStart=/bin/sh -c 'exec /usr/bin/python3 -m http.server --bind \"$$FLOTTE_HOST_IP\" --directory /tmp $$((8000 + %i))'\n\
         [X-Flotte-Service]\nName=web\nPort=800%i\nCheck=http /\nCheckInterval=500ms\n"
    )
}

/// Starts `flottectl apply DIR` and reads its output until it starts replacing web@1: the
/// running child, the rest of its output, and what it printed so far.
async fn apply_until_web1_is_replaced(
    t: &TestCluster,
    d: &str,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    String,
) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = flottectl_command(t, &["apply", d, "--healthy-for", "0.5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    within("apply to start replacing web@1", DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("[2/3] replace web@1.service") {
                return;
            }
        }
        panic!("apply ended before replacing web@1: {seen}");
    })
    .await;
    (child, lines, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_waits_for_each_checked_instance_to_pass_and_ctrl_c_stops_it_between_steps()
 {
    let t = cluster("apply-health", &[("host-1", ""), ("host-2", "")], &[]).await;
    let r = t.registry.clone();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("web");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("web@.service"), checked_web(1)).unwrap();
    for i in 1..=2 {
        std::os::unix::fs::symlink("web@.service", dir.join(format!("web@{i}.service"))).unwrap();
    }
    let d = dir.to_str().unwrap();
    expect_code(
        &flottectl(&t, &["apply", d, "--healthy-for", "0.5"]).await,
        0,
        "flottectl apply web (checked)",
    );

    // Each instance is passing its check before the next is replaced.
    std::fs::write(dir.join("web@.service"), checked_web(2)).unwrap();
    let shown = expect_code(
        &flottectl(&t, &["apply", d, "--healthy-for", "0.5"]).await,
        0,
        "flottectl apply web (checked, rolling update)",
    );
    let at = |needle: &str| {
        shown
            .find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not in: {shown}"))
    };
    assert!(
        at("web@1.service: running and healthy on") < at("[3/3] replace web@2.service"),
        "web@1 was healthy before web@2 was replaced: {shown}"
    );
    at("web@2.service: running and healthy on");

    // Ctrl-C once the first instance's step is under way: that step finishes its writes, the
    // next never starts.
    std::fs::write(dir.join("web@.service"), checked_web(3)).unwrap();
    let (mut child, mut lines, mut seen) = apply_until_web1_is_replaced(&t, d).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().await.unwrap();
    println!("$ flottectl apply web (Ctrl-C during step 2)\n{seen}");
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(
        seen.contains("STOPPED at step 2 of 3: interrupted (Ctrl-C)"),
        "{seen}"
    );
    assert!(
        seen.contains("3. replace web@2.service: not started (unchanged)"),
        "{seen}"
    );
    let (units, _) = r.units().await.unwrap();
    let hashes: BTreeMap<String, UnitHash> = units
        .iter()
        .map(|(u, rec)| (u.to_string(), rec.hash))
        .collect();
    assert_eq!(
        hashes["web@1.service"],
        hash_of(&checked_web(3)),
        "step 2 was made"
    );
    assert_eq!(
        hashes["web@2.service"],
        hash_of(&checked_web(2)),
        "step 3 was not"
    );

    // Someone changes web@2 while web@1 is being replaced: apply refuses to overwrite it.
    // (web@1 first finishes the restart the interrupted apply asked for.)
    let v3 = hash_of(&checked_web(3));
    await_states(&r, DEADLINE, "web@1 active on version 3", |s| {
        s.iter()
            .any(|((u, _), st)| {
                u.as_str() == "web@1.service" && st.hash == v3 && st.active.as_str() == "active"
            })
            .then_some(())
    })
    .await;
    std::fs::write(dir.join("web@.service"), checked_web(4)).unwrap();
    let (mut child, mut lines, mut seen) = apply_until_web1_is_replaced(&t, d).await;
    set_desired(&r, "web@2.service", flotte::unit::DesiredState::Loaded).await;
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().await.unwrap();
    println!("$ flottectl apply web (web@2 changed meanwhile)\n{seen}");
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(seen.contains("STOPPED at step 3 of 3"), "{seen}");
    assert!(seen.contains("changed concurrently"), "{seen}");
    assert!(
        seen.contains("3. replace web@2.service: not started (unchanged)"),
        "{seen}"
    );
    let (record, _) = r.unit(&unit("web@2.service")).await.unwrap().unwrap();
    assert_eq!(
        (record.hash, record.desired),
        (hash_of(&checked_web(2)), flotte::unit::DesiredState::Loaded),
        "the concurrent change is kept"
    );
}

/// A global unit whose start takes a second, so that a restart is seen.
fn beacon(version: u32) -> String {
    format!(
        "[Service]\nEnvironment=VERSION={version}\nExecStartPre=/bin/sleep 1\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\nGlobal=true\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_global_unit_is_replaced_one_machine_at_a_time() {
    let t = cluster(
        "apply-global",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        &[],
    )
    .await;
    let r = t.registry.clone();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("beacon");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("beacon.service"), beacon(1)).unwrap();
    let d = dir.to_str().unwrap();
    let out = flottectl(&t, &["apply", d, "--healthy-for", "0.5"]).await;
    expect_code(&out, 0, "flottectl apply beacon");
    await_states(&r, DEADLINE, "beacon.service active on all three", |s| {
        (active_on(s, "beacon.service").len() == 3).then_some(())
    })
    .await;
    let mut hosts = Vec::new();
    for i in 0..3 {
        hosts.push(
            flotte::systemd::Systemd::connect(&t.cluster.host(i).bus())
                .await
                .unwrap(),
        );
    }
    let beacon_unit = [unit("beacon.service")];

    // New content: each host's systemd sampled every 100 ms through the whole apply.
    std::fs::write(dir.join("beacon.service"), beacon(2)).unwrap();
    let child = flottectl_command(&t, &["apply", d, "--healthy-for", "0.5"]).output();
    tokio::pin!(child);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut max_down = 0;
    let mut seen_down = [0usize; 3];
    let mut samples = 0;
    let out = loop {
        tokio::select! {
            out = &mut child => break out.unwrap(),
            _ = tick.tick() => {
                let mut down = 0;
                for (i, systemd) in hosts.iter().enumerate() {
                    let statuses = systemd.list_by_names(&beacon_unit).await.unwrap();
                    let active = statuses
                        .iter()
                        .any(|(_, s)| s.active == flotte::systemd::ActiveState::Active);
                    if !active {
                        down += 1;
                        seen_down[i] += 1;
                    }
                }
                samples += 1;
                max_down = max_down.max(down);
            }
        }
    };
    expect_code(&out, 0, "flottectl apply beacon (new content)");
    println!("{samples} samples; down per host: {seen_down:?}; at most {max_down} down at once");
    assert!(
        seen_down.iter().all(|&n| n > 0),
        "every host restarted beacon.service: {seen_down:?}"
    );
    assert_eq!(max_down, 1, "one host at a time: {seen_down:?}");
    let new = hash_of(&beacon(2));
    let states = r.states_of(&unit("beacon.service")).await.unwrap();
    assert_eq!(states.len(), 3, "{states:?}");
    for ((_, m), s) in &states {
        assert_eq!(s.hash, new, "{m} runs the new content");
        assert_eq!(s.active.as_str(), "active", "{m}");
    }
}

/// A global unit serving HTTP on port 8071 of its machine's address, checked every 500 ms;
/// `serving: false` runs but serves nothing, so its check fails.
fn checked_global(serving: bool) -> String {
    let start = if serving {
        "/bin/sh -c 'exec /usr/bin/python3 -m http.server --bind \"$$FLOTTE_HOST_IP\" --directory /tmp 8071'"
    } else {
        "/bin/sleep 100000"
    };
    format!(
        "[Service]\nEnvironmentFile=/run/flotte/machine.env\nExecStart={start}\n\n\
         [X-Fleet]\nGlobal=true\n\n\
         [X-Flotte-Service]\nName=gw\nPort=8071\nCheck=http /\nCheckInterval=500ms\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_global_units_rollout_stops_on_a_machine_whose_check_fails() {
    use flotte::registry::Health;
    let t = cluster(
        "apply-global-check",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        &[],
    )
    .await;
    let r = t.registry.clone();
    let name = "gw.service";
    submit(&r, name, &checked_global(true), Launched).await;
    let old = hash_of(&checked_global(true));
    await_map(
        r.watch_instances(),
        DEADLINE,
        "gw passing on all three machines",
        |m| {
            (m.values()
                .filter(|i| i.unit.as_str() == name && i.health == Health::Passing)
                .count()
                == 3)
                .then_some(())
        },
    )
    .await;

    // New content whose check fails: the first machine gets it, and the others keep the old
    // one while its instance is not passing.
    submit(&r, name, &checked_global(false), Launched).await;
    let new = hash_of(&checked_global(false));
    let first = await_states(&r, DEADLINE, "one machine active on the new content", |s| {
        s.iter()
            .find(|((u, _), st)| {
                u.as_str() == name && st.hash == new && st.active.as_str() == "active"
            })
            .map(|((_, m), _)| m.clone())
    })
    .await;
    await_map(
        r.watch_instances(),
        DEADLINE,
        format!("gw critical on {first}"),
        |m| {
            m.values()
                .any(|i| {
                    i.unit.as_str() == name && i.machine == first && i.health == Health::Critical
                })
                .then_some(())
        },
    )
    .await;
    let states = r.states_of(&unit(name)).await.unwrap();
    for ((_, m), s) in &states {
        if *m != first {
            assert_eq!(s.hash, old, "{m} kept the old content: {states:?}");
            assert_eq!(s.active.as_str(), "active", "{m}: {states:?}");
        }
    }
    assert_eq!(states.len(), 3, "{states:?}");
}
