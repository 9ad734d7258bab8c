//! `flottectl status` and `journal` on a real 3-host cluster (issue 11, items 1 and 2), always
//! through host-1's socket: a unit running on host-3 (its systemd's main PID, its journal's
//! lines), a global unit on every machine and on one (`MACHINE:UNIT`), a unit placed nowhere
//! with its reason, `journal --follow` seeing a line the unit writes after it started, the
//! journalctl behind it gone once the client is, and the stream ending with a message when
//! the unit's machine goes away.

use std::process::{Output, Stdio};
use std::time::Duration;

use flotte::systemd::Systemd;
use flotte::unit::DesiredState::Launched;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(30);
const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];

/// Says hello, then a line each time it gets SIGUSR1 (`wait` lets the trap run at once).
const TICK: &str = "[Unit]\nDescription=Tick\n[Service]\nExecStart=/bin/sh -c 'echo hello; trap \"echo got USR1\" USR1; while :; do sleep 1 & wait $$!; done'\n[X-Fleet]\nMachineMetadata=role=three\n";
const GLOBAL: &str = "[Unit]\nDescription=Everywhere\n[Service]\nExecStart=/bin/sh -c 'echo global up; exec sleep 100000'\n[X-Fleet]\nGlobal=true\n";
const NOWHERE: &str =
    "[Service]\nExecStart=/bin/sleep 100000\n[X-Fleet]\nMachineMetadata=disk=ssd\n";

const HOSTS: &[(&str, &str)] = &[("host-1", ""), ("host-2", ""), ("host-3", "role=three")];

/// flottectl against host `i`, with a request timeout long enough for a loaded machine.
fn flottectl_command(t: &TestCluster, i: usize, args: &[&str]) -> Command {
    let mut command = crate::support::flottectl_command(t, i, &["--request-timeout", "15"]);
    command.args(args);
    command
}

async fn flottectl(t: &TestCluster, args: &[&str]) -> Output {
    flottectl_command(t, 0, args)
        .output()
        .await
        .expect("flottectl runs")
}

fn ok(args: &[&str], out: Output) -> String {
    succeeded(args, &out)
}

/// Runs `args` through host-1 until `done` holds for its output, failing after the deadline
/// with the last output.
async fn until_output(
    t: &TestCluster,
    args: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let out = ok(args, flottectl(t, args).await);
        if done(&out) {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {DEADLINE:?}; flottectl {args:?} said:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_journal_from_host_1_of_units_on_other_machines() {
    let t = cluster("status", HOSTS, &[]).await;
    let r = t.registry.clone();
    submit(&r, "tick.service", TICK, Launched).await;
    submit(&r, "global.service", GLOBAL, Launched).await;
    submit(&r, "nowhere.service", NOWHERE, Launched).await;
    let host3 = t.cluster.machine_id(2).clone();
    await_states(&r, DEADLINE, "tick on host-3 and global everywhere", |s| {
        (active_on(s, "tick.service") == [host3.clone()]
            && active_on(s, "global.service").len() == 3)
            .then_some(())
    })
    .await;

    // A unit on host-3, seen from host-1: host-3's systemd and journal.
    let status = until_output(&t, &["status", "tick"], "tick's hello in its status", |o| {
        o.contains("hello")
    })
    .await;
    eprintln!("$ flottectl status tick\n{status}");
    let pid = Systemd::connect(&t.cluster.host(2).bus())
        .await
        .unwrap()
        .main_pid(&unit("tick.service"))
        .await
        .unwrap();
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines[0], "● tick.service - Tick", "{status}");
    assert_eq!(
        lines[1],
        format!("    Machine: {}.../host-3", &host3.as_str()[..8])
    );
    assert!(lines[2].starts_with("     Loaded: loaded (/"), "{status}");
    assert!(
        lines[3].starts_with("     Active: active (running) since ") && lines[3].ends_with(" ago"),
        "{status}"
    );
    assert_eq!(lines[4], format!("   Main PID: {pid} (sh)"));
    for label in ["      Tasks: ", "     Memory: "] {
        assert!(status.contains(label), "no {label:?}: {status}");
    }
    assert!(
        status.contains(&format!(" host-3 sh[{pid}]: hello\n")),
        "{status}"
    );

    let args = ["journal", "tick", "--lines", "5"];
    let journal = ok(&args, flottectl(&t, &args).await);
    eprintln!("$ flottectl journal tick --lines 5\n{journal}");
    assert!(
        journal.contains(&format!(" host-3 sh[{pid}]: hello\n")),
        "{journal}"
    );
    let args = ["journal", "tick", "--output", "cat"];
    assert_eq!(ok(&args, flottectl(&t, &args).await), "hello\n");
    let args = ["journal", "tick", "-o", "json"];
    let json = ok(&args, flottectl(&t, &args).await);
    let entries: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        entries
            .iter()
            .any(|e| e["MESSAGE"] == "hello" && e["_HOSTNAME"] == "host-3"),
        "{json}"
    );

    // A global unit: every machine, in ID order, each from its own systemd; or one machine.
    let status = until_output(
        &t,
        &["status", "global"],
        "global's line in every machine's status",
        |o| o.matches("global up").count() == 3,
    )
    .await;
    eprintln!("$ flottectl status global\n{status}");
    let mut ids: Vec<_> = (0..3).map(|i| t.cluster.machine_id(i).clone()).collect();
    ids.sort();
    let blocks: Vec<&str> = status.split("\n● ").collect();
    assert_eq!(blocks.len(), 3, "{status}");
    for (block, id) in blocks.iter().zip(&ids) {
        let host = t.cluster.host(t.cluster.index_of(id).unwrap()).name();
        assert!(
            block.contains(&format!("Machine: {}.../{host}\n", &id.as_str()[..8])),
            "{block}"
        );
        assert!(block.contains(&format!(" {host} sh[")), "{block}");
    }
    let status = ok(&[], flottectl(&t, &["status", "host-2:global"]).await);
    assert_eq!(
        status.matches("● global.service - Everywhere").count(),
        1,
        "{status}"
    );
    assert!(
        status.contains("/host-2\n") && !status.contains("/host-1\n"),
        "{status}"
    );
    let by_id = format!("{}:global.service", &t.cluster.machine_id(1).as_str()[..12]);
    // The same block, but for how long ago it started.
    let without_ago = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split("; ").next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        without_ago(&ok(&[], flottectl(&t, &["status", &by_id]).await)),
        without_ago(&status)
    );

    let out = flottectl(&t, &["journal", "global"]).await;
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("global.service runs on 3 machines: give one as MACHINE:global.service"),
        "{e}"
    );
    let args = ["journal", "host-2:global"];
    let journal = ok(&args, flottectl(&t, &args).await);
    assert!(journal.contains(" host-2 sh["), "{journal}");
    assert!(
        !journal.contains(" host-1 ") && !journal.contains(" host-3 "),
        "{journal}"
    );

    // Placed nowhere: says so, with the engine's reason.
    let status = until_output(&t, &["status", "nowhere"], "nowhere's reason", |o| {
        o.contains("Reason:")
    })
    .await;
    eprintln!("$ flottectl status nowhere\n{status}");
    assert!(
        status.starts_with("○ nowhere.service\n     Placed: on no machine\n     Reason: "),
        "{status}"
    );
    assert!(status.contains("disk=ssd"), "{status}");
    let out = flottectl(&t, &["journal", "nowhere"]).await;
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("is placed on no machine (") && e.contains("disk=ssd"),
        "{e}"
    );

    let out = flottectl(&t, &["status", "nope"]).await;
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(e.contains("unit `nope.service` does not exist"), "{e}");
}

/// A follower: `flottectl journal --follow` through host-1, its output read line by line.
struct Follower {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Follower {
    fn start(t: &TestCluster, args: &[&str]) -> Follower {
        let mut child = flottectl_command(t, 0, args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("flottectl runs");
        let stdout = child.stdout.take().unwrap();
        Follower {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `text`.
    async fn until(&mut self, text: &str) -> String {
        let read = async {
            while let Some(line) = self.lines.next_line().await.expect("flottectl's output") {
                self.seen.push(line.clone());
                if line.contains(text) {
                    return line;
                }
            }
            panic!("the journal ended without {text:?}: {:#?}", self.seen)
        };
        match tokio::time::timeout(DEADLINE, read).await {
            Ok(line) => line,
            Err(_) => panic!(
                "no line with {text:?} within {DEADLINE:?}: {:#?}",
                self.seen
            ),
        }
    }
}

/// journalctl processes that host `i`'s flotted runs.
fn journalctls_of(t: &TestCluster, i: usize) -> usize {
    let flotted = t.cluster.flotted_pid(i).expect("flotted runs");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.ok()?.path().join("stat")).ok()?;
            // pid (comm) state ppid ...
            let (comm, rest) = stat.split_once(") ")?;
            let ppid: i32 = rest.split(' ').nth(1)?.parse().ok()?;
            (comm.ends_with("(journalctl") && ppid == flotted).then_some(())
        })
        .count()
}

async fn await_journalctls(t: &TestCluster, i: usize, n: usize, what: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while journalctls_of(t, i) != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: host {i}'s flotted runs {} journalctl, not {n}",
            journalctls_of(t, i)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_follow_sees_new_lines_and_ends_when_the_machine_goes_away() {
    let mut t = cluster("journal-follow", HOSTS, FAST).await;
    let r = t.registry.clone();
    submit(&r, "tick.service", TICK, Launched).await;
    let host3 = t.cluster.machine_id(2).clone();
    await_states(&r, DEADLINE, "tick active on host-3", |s| {
        (active_on(s, "tick.service") == [host3.clone()]).then_some(())
    })
    .await;
    until_output(
        &t,
        &["journal", "tick"],
        "tick's hello in its journal",
        |o| o.contains("hello"),
    )
    .await;

    // A client that goes away takes journalctl on host-3 with it.
    let mut leaving = Follower::start(&t, &["journal", "--follow", "tick"]);
    leaving.until("hello").await;
    assert_eq!(
        journalctls_of(&t, 2),
        1,
        "host-3 runs journalctl for the follower"
    );
    leaving.child.kill().await.unwrap();
    await_journalctls(&t, 2, 0, "the follower went away").await;

    let mut follower = Follower::start(&t, &["journal", "-f", "-n", "1", "tick"]);
    follower.until("hello").await;
    let signalled = t
        .cluster
        .host(2)
        .command("systemctl")
        .args([
            "--user",
            "kill",
            "--kill-whom=main",
            "--signal=USR1",
            "tick.service",
        ])
        .status()
        .await
        .unwrap();
    assert!(signalled.success(), "systemctl kill: {signalled}");
    let line = follower.until("got USR1").await;
    eprintln!(
        "$ flottectl journal -f -n 1 tick\n{}",
        follower.seen.join("\n")
    );
    assert!(line.contains(" host-3 sh["), "{line}");

    // host-3 dies: the journal ends with a line saying so, and flottectl exits by itself.
    t.cluster.kill_host(2).unwrap();
    let end = follower.until("the journal ends here").await;
    eprintln!("{end}");
    assert!(end.starts_with("-- flotted on host-3 went away"), "{end}");
    let status = within("flottectl's exit", DEADLINE, follower.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn machines_forward_to_each_other_over_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let first_ip = unique_first_ip();
    let ips: Vec<String> = (0..2)
        .map(|i| std::net::Ipv4Addr::from(u32::from(first_ip) + i).to_string())
        .collect();
    // One certificate for every host, as server and as client; peers must present one.
    let pki = Pki::new();
    let (cert, key) = pki.issue(&ips.iter().map(String::as_str).collect::<Vec<_>>());
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca.pem()),
        write("api.pem", &cert),
        write("api.key", &key),
    );
    let t = cluster_at(
        "status-tls",
        &[("host-1", ""), ("host-2", "role=three")],
        &[
            ("api_certfile", &cert),
            ("api_keyfile", &key),
            ("api_client_cafile", &ca),
        ],
        flotte::isolated::EtcdAccess::Direct,
        first_ip,
    )
    .await;
    submit(&t.registry, "tick.service", TICK, Launched).await;
    let host2 = t.cluster.machine_id(1).clone();
    await_states(&t.registry, DEADLINE, "tick on host-2", |s| {
        (active_on(s, "tick.service") == [host2.clone()]).then_some(())
    })
    .await;
    let status = until_output(&t, &["status", "tick"], "tick's status from host-2", |o| {
        o.contains(" host-2 sh[") && o.contains("hello")
    })
    .await;
    assert!(status.contains("/host-2\n     Loaded: loaded"), "{status}");
    assert!(!status.contains("Warning"), "{status}");
    let args = ["journal", "tick", "-o", "cat"];
    assert_eq!(ok(&args, flottectl(&t, &args).await), "hello\n");
}
