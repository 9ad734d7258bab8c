//! The event stream (`GET /flotte/v1/events`) on a real 3-host cluster, through the real
//! `flottectl events`: a unit submitted, placed and started, a machine killed (the engine's
//! leader), the new leader, the unit unloaded and destroyed; the same events again from a revision; the text lines; the
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

    // Stopped and destroyed, through flottectl as a user would.
    let stop = flottectl(&socket, &["unload", "--no-block", "web.service"])
        .output()
        .await
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    live.until("web.service's desired state changed", |e| {
        matches!(&e.kind, EventKind::DesiredStateChanged { unit, from: Launched, to: flotte::unit::DesiredState::Inactive } if is_web(unit))
    })
    .await;
    let destroy = flottectl(&socket, &["destroy", "--no-block", "web.service"])
        .output()
        .await
        .unwrap();
    assert!(destroy.status.success(), "{destroy:?}");
    live.until(
        "web.service destroyed",
        |e| matches!(&e.kind, EventKind::Destroyed { unit } if is_web(unit)),
    )
    .await;

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

/// Reads a streamed body line by line.
struct BodyLines {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

impl BodyLines {
    async fn next(&mut self) -> Option<Event> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let frame = self.body.frame().await?.unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }
}

async fn open_events(socket: &Path, since: Option<i64>) -> BodyLines {
    let response = http_get(
        tokio::net::UnixStream::connect(socket).await.unwrap(),
        "flotte",
        &flotte::wire::events_path(since),
    )
    .await;
    assert_eq!(response.status(), 200);
    BodyLines {
        body: response.into_body(),
        buffer: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_is_ended_with_where_to_resume_and_misses_nothing() {
    use flotte::registry::{EtcdSettings, Registry, UnitRecord};
    use flotte::unit::{DesiredState, UnitName};

    let dir = tempfile::Builder::new()
        .prefix("flotte-events-")
        .tempdir()
        .unwrap();
    let etcd = flotte::isolated::Etcd::start(&dir.path().join("etcd"))
        .await
        .expect("etcd starts");
    let registry = Registry::connect(&EtcdSettings {
        endpoints: vec![etcd.client_url().to_owned()],
        ..EtcdSettings::default()
    })
    .await
    .unwrap();
    let socket = dir.path().join("flotte.sock");
    let listeners = flotte::api::Listeners::bind(&flotte::api::ApiSettings {
        socket: socket.clone(),
        tcp: vec![],
        tls: None,
    })
    .await
    .unwrap();
    let (_registered, ready) = tokio::sync::watch::channel(true);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(flotte::api::serve(
        listeners,
        std::future::ready(Some(registry.clone())),
        ready,
        shutdown.clone(),
    ));

    let mut slow = open_events(&socket, None).await;
    let started = slow.next().await.unwrap();
    assert_eq!(started.kind, EventKind::Started);

    // Far more events than the client's buffer (1024) and the socket's hold, in transactions
    // of 128 units.
    let names: Vec<UnitName> = (0..20_480)
        .map(|i| UnitName::new(&format!("u{i:05}.service")).unwrap())
        .collect();
    let record = serde_json::to_vec(&UnitRecord {
        hash: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
        desired: DesiredState::Inactive,
        start: 0,
    })
    .unwrap();
    let mut etcd_client = etcd_client::Client::connect([etcd.client_url()], None)
        .await
        .unwrap();
    for chunk in names.chunks(128) {
        let puts: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|n| etcd_client::TxnOp::put(registry.keys().unit(n), record.clone(), None))
            .collect();
        etcd_client
            .txn(etcd_client::Txn::new().and_then(puts))
            .await
            .unwrap();
    }
    // The client reads nothing while the server's grace for a full buffer (5 s) runs out:
    // what is under test is that the server then gives up on it.
    tokio::time::sleep(Duration::from_secs(7)).await;

    let mut got = std::collections::BTreeSet::new();
    let ended = within("the slow stream's end", DEADLINE, async {
        while let Some(event) = slow.next().await {
            match event.kind {
                EventKind::Submitted { unit, .. } => {
                    got.insert(unit);
                }
                EventKind::Ended { reason, message } => return (event.revision, reason, message),
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("the stream ended without an ended line");
    })
    .await;
    let (resume, reason, message) = ended;
    assert_eq!(reason, flotte::wire::EndReason::Lagged, "{message}");
    let held = got.len();
    assert!(
        held < names.len() / 2,
        "the server held back only {held} of {} events",
        names.len()
    );
    eprintln!(
        "a client that stopped reading got {held} of {} events, then `{message}` at revision {resume}",
        names.len()
    );

    // From the revision it gave, the rest follows: nothing is missed.
    let mut rest = open_events(&socket, Some(resume)).await;
    assert_eq!(rest.next().await.unwrap().revision, resume);
    within("every unit's event after resuming", DEADLINE, async {
        while got.len() < names.len() {
            match rest.next().await.expect("the resumed stream goes on").kind {
                EventKind::Submitted { unit, .. } => {
                    got.insert(unit);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(got.into_iter().collect::<Vec<_>>(), names);
    shutdown.cancel();
    // The open stream ends at shutdown, so the server's drain does not wait for it.
    let end = within(
        "the resumed stream's end at shutdown",
        DEADLINE,
        rest.next(),
    )
    .await;
    assert!(
        matches!(
            end,
            Some(Event {
                kind: EventKind::Ended {
                    reason: flotte::wire::EndReason::Shutdown,
                    ..
                },
                ..
            })
        ),
        "{end:?}"
    );
    within("the server's shutdown", DEADLINE, served)
        .await
        .unwrap();
}
