//! The event stream (`GET /flotte/v1/events`) on a real 3-host cluster, through the real
//! `flottectl events`: a unit submitted, placed and started, a machine killed (the engine's
//! leader), the new leader; the same events again from a revision; the text lines; the
//! answers for a compacted and a future revision; and `list-unit-files --watch` printing the
//! listing again when a unit is submitted.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use flotte::systemd::ActiveState;
use flotte::unit::DesiredState::Launched;
use flotte::wire::{Event, EventKind};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::support::*;

const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];
const DEADLINE: Duration = Duration::from_secs(30);
const SLEEPER: &str = "[Service]\nExecStart=/bin/sleep 100000\n";

fn flottectl(socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flottectl"));
    command
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .args(args);
    command
}

/// A running `flottectl events`, its stdout read line by line.
struct Follower {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl Follower {
    fn start(socket: &Path, args: &[&str]) -> Follower {
        Follower::from(flottectl(socket, &[&["events"], args].concat()))
    }

    fn from(mut command: Command) -> Follower {
        let mut child = command
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Follower {
            _child: child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line seen or read from now on that satisfies `done`, failing after the
    /// deadline with `what` and every line seen.
    async fn line_until(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| done(l)) {
            return line.clone();
        }
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if done(&line) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(DEADLINE, read).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "flottectl events ended before {what}; it printed:\n{}",
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "{what} did not happen within {DEADLINE:?}; flottectl events printed:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// For `--output json`: reads events until one satisfies `done`.
    async fn until(&mut self, what: &str, done: impl Fn(&Event) -> bool) -> Event {
        let line = self
            .line_until(what, |l| done(&serde_json::from_str(l).unwrap()))
            .await;
        serde_json::from_str(&line).unwrap()
    }

    fn events(&self) -> Vec<Event> {
        self.seen
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_sees_a_unit_start_its_machine_die_and_a_new_leader_and_resumes() {
    let mut t = cluster(
        "events",
        &[("host-1", ""), ("host-2", ""), ("host-3", "")],
        FAST,
    )
    .await;
    let leader = t
        .registry
        .leader()
        .await
        .unwrap()
        .expect("an engine was elected");
    let leader_index = t.cluster.index_of(&leader).unwrap();
    let observer = (leader_index + 1) % 3;
    let socket = t.cluster.socket(observer).to_owned();

    let mut live = Follower::start(&socket, &["--output", "json"]);
    let started = live
        .until("the stream's started line", |e| {
            matches!(e.kind, EventKind::Started)
        })
        .await;

    // A watched listing, printed before anything is submitted, and again after.
    let mut watched = Follower::from(flottectl(
        &socket,
        &["list-unit-files", "--watch", "--fields", "unit,dstate"],
    ));
    watched
        .line_until("the first listing's header", |l| l.starts_with("UNIT"))
        .await;

    // The unit is placed on the leader's machine, so that killing it also moves the unit.
    let web = format!("[X-Fleet]\nMachineID={leader}\n");
    submit(
        &t.registry,
        "web.service",
        &format!("{SLEEPER}{web}"),
        Launched,
    )
    .await;
    let is_web = |u: &flotte::unit::UnitName| u.as_str() == "web.service";
    live.until("web.service submitted", |e| {
        matches!(&e.kind, EventKind::Submitted { unit, desired: Launched, replaced: false } if is_web(unit))
    })
    .await;
    live.until("web.service placed on the leader's machine", |e| {
        matches!(&e.kind, EventKind::Placed { unit, machines } if is_web(unit) && machines == std::slice::from_ref(&leader))
    })
    .await;
    live.until("web.service active on the leader's machine", |e| {
        matches!(&e.kind, EventKind::StateChanged { unit, machine, active: ActiveState::Active, .. } if is_web(unit) && *machine == leader)
    })
    .await;

    let row = watched
        .line_until("list-unit-files --watch showing web.service", |l| {
            l.starts_with("web.service")
        })
        .await;
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["web.service", "launched"]
    );
    assert!(
        watched
            .seen
            .iter()
            .filter(|l| l.starts_with("UNIT"))
            .count()
            >= 2,
        "the listing was printed again: {:?}",
        watched.seen
    );

    t.cluster.kill_host(leader_index).unwrap();
    live.until(
        "the killed machine lost",
        |e| matches!(&e.kind, EventKind::MachineLost { machine, .. } if *machine == leader),
    )
    .await;
    let new_leader = live
        .until(
            "a new leader",
            |e| matches!(&e.kind, EventKind::LeaderChanged { leader: Some(m) } if *m != leader),
        )
        .await;
    // web.service may run only on the dead machine: with it gone, the engine says why.
    let last = live
        .until(
            "web.service unplaceable",
            |e| matches!(&e.kind, EventKind::Unplaceable { unit, .. } if is_web(unit)),
        )
        .await;
    eprintln!(
        "events from revision {} to {}:\n{}",
        started.revision,
        last.revision,
        live.seen.join("\n")
    );
    let EventKind::LeaderChanged {
        leader: Some(new_leader),
    } = new_leader.kind
    else {
        unreachable!()
    };
    assert!(t.cluster.index_of(&new_leader).is_some());

    // The same events again, from the first stream's start (up to the last one's revision,
    // whose other events either stream may not have read yet).
    let before_last = |events: Vec<Event>| -> Vec<Event> {
        events
            .into_iter()
            .filter(|e| e.revision < last.revision && !matches!(e.kind, EventKind::Started))
            .collect()
    };
    let seen = before_last(live.events());
    assert!(seen.len() >= 6, "{seen:?}");
    let since = started.revision.to_string();
    let mut resumed = Follower::start(&socket, &["--output", "json", "--since", &since]);
    resumed
        .until("the resumed stream reaching the last event seen", |e| {
            e == &last
        })
        .await;
    assert_eq!(
        before_last(resumed.events()),
        seen,
        "a stream resumed from a revision repeats what was seen"
    );
    assert_eq!(resumed.events()[0].revision, started.revision);

    // The text lines: revision, type, what changed.
    let mut text = Follower::start(&socket, &["--since", &since]);
    let line = text
        .line_until("a text line of web.service submitted", |l| {
            l.contains("submitted")
        })
        .await;
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words[1..],
        ["submitted", "web.service", "(desired", "launched)"],
        "{line}"
    );
    assert!(
        words[0].parse::<i64>().unwrap() > started.revision,
        "{line}"
    );
    let line = text
        .line_until("a text line of the machine lost", |l| {
            l.contains("machine_lost")
        })
        .await;
    assert!(
        line.contains(&leader.as_str()[..8])
            && line.contains(&format!("host-{}", leader_index + 1)),
        "{line}"
    );

    // A compacted revision is refused with 410 and says so; a future one too, with 400.
    let etcd = etcd_client::Client::connect([t.cluster.etcd_url()], None)
        .await
        .unwrap();
    let now = t.registry.revision().await.unwrap();
    etcd.clone().compact(now, None).await.unwrap();
    let answer = flottectl(&socket, &["events", "--since", &since])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&answer.stderr);
    assert_eq!(answer.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("410 Gone") && stderr.contains(&format!("revision {since} is compacted")),
        "{stderr}"
    );
    let ahead = (now + 1000).to_string();
    let answer = flottectl(&socket, &["events", "--since", &ahead])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&answer.stderr);
    assert_eq!(answer.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("400 Bad Request")
            && stderr.contains(&format!("revision {ahead} is ahead")),
        "{stderr}"
    );
}
