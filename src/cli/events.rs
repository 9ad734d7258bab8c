//! `events`: the cluster's event stream (`/flotte/v1/events`), a line per event until
//! interrupted, and the `--watch` of the list commands, which reprints a listing when an event
//! concerns it. What a line says and which events concern a listing are pure functions.

use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::client::{Client, Events};
use super::fields::{Detail, machine_id};
use super::{CliError, Console, OutputFormat};
use crate::wire::{EndReason, Event, EventKind};

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Start after this etcd revision (an event's `revision`) instead of from now
    #[arg(long, value_name = "REVISION", value_parser = clap::value_parser!(i64).range(0..))]
    pub since: Option<i64>,
    /// A line per event (text), or each event's JSON object, one a line (json), the stream's
    /// `started` and `ended` lines included
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Do not shorten machine IDs
    #[arg(short = 'l', long)]
    pub full: bool,
}

/// SIGINT and SIGTERM: the user is done following.
pub(super) struct Interrupt {
    term: Signal,
    interrupt: Signal,
}

impl Interrupt {
    pub(super) fn new() -> Result<Interrupt, CliError> {
        Ok(Interrupt {
            term: signal(SignalKind::terminate()).map_err(CliError::Signals)?,
            interrupt: signal(SignalKind::interrupt()).map_err(CliError::Signals)?,
        })
    }

    pub(super) async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

pub(super) async fn run(
    client: &Client,
    console: &mut Console<'_>,
    args: &EventsArgs,
) -> Result<(), CliError> {
    let mut interrupt = Interrupt::new()?;
    let detail = if args.full {
        Detail::Full
    } else {
        Detail::Short
    };
    let mut since = args.since;
    loop {
        let Events {
            mut reader,
            revision,
        } = client.events(since).await?;
        if args.output == OutputFormat::Json {
            print_json(
                console,
                &Event {
                    revision,
                    kind: EventKind::Started,
                },
            )?;
        }
        loop {
            let event = tokio::select! {
                event = reader.next() => event?,
                _ = interrupt.recv() => return Ok(()),
            };
            let Some(event) = event else {
                return Err(CliError::EventsCut(client.endpoint().to_owned()));
            };
            match args.output {
                OutputFormat::Json => print_json(console, &event)?,
                OutputFormat::Text => {
                    if let Some(line) = text(&event, detail) {
                        writeln!(console.out, "{line}")?;
                        console.out.flush()?;
                    }
                }
            }
            if let EventKind::Ended { reason, message } = event.kind {
                if reason != EndReason::Lagged {
                    return Err(CliError::EventsEnded {
                        endpoint: client.endpoint().to_owned(),
                        revision: event.revision,
                        message,
                    });
                }
                // Too slow a reader (a paused terminal, say): go on where the server stopped.
                writeln!(
                    console.err,
                    "flottectl: {message}; resuming after revision {}",
                    event.revision
                )?;
                since = Some(event.revision);
                break;
            }
        }
    }
}

fn print_json(console: &mut Console<'_>, event: &Event) -> Result<(), CliError> {
    let json = serde_json::to_string(event).expect("events always serialize");
    writeln!(console.out, "{json}")?;
    console.out.flush()?;
    Ok(())
}

/// The type name of an event, as in its JSON.
fn type_name(kind: &EventKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::Object(o)) => o
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("unknown")
            .to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// An event's text line: revision, type, then what it says; `None` for the stream's own
/// `started` and `ended` lines (`ended` is reported as an error, or on stderr).
pub fn text(event: &Event, detail: Detail) -> Option<String> {
    let m = |id: &crate::machine::MachineId| machine_id(id.as_str(), detail);
    let what = match &event.kind {
        EventKind::Started | EventKind::Ended { .. } => return None,
        EventKind::Submitted {
            unit,
            desired,
            replaced,
        } => {
            let again = if *replaced { " with new content" } else { "" };
            format!("{unit}{again} (desired {desired})")
        }
        EventKind::DesiredStateChanged { unit, from, to } => format!("{unit} {from} -> {to}"),
        EventKind::StartRequested { unit, .. } => format!("{unit} asked to start again"),
        EventKind::Placed { unit, machines } => format!(
            "{unit} on {}",
            machines.iter().map(m).collect::<Vec<_>>().join(", ")
        ),
        EventKind::Unplaced { unit } | EventKind::Destroyed { unit } => unit.to_string(),
        EventKind::Unplaceable { unit, reason } => format!("{unit}: {reason}"),
        EventKind::StateChanged {
            unit,
            machine,
            load,
            active,
            sub,
            message,
        } => {
            let mut line = format!("{unit} on {}: {load} {active} {sub}", m(machine));
            if let Some(message) = message {
                line.push_str(&format!(" ({message})"));
            }
            line
        }
        EventKind::StateRemoved { unit, machine } => format!("{unit} on {}", m(machine)),
        EventKind::MachineJoined {
            machine,
            ip,
            hostname,
        } => format!("{} {hostname} {ip}", m(machine)),
        EventKind::MachineChanged { machine } => m(machine),
        EventKind::MachineLost { machine, hostname } => {
            format!("{} {hostname}", m(machine)).trim_end().to_owned()
        }
        EventKind::LeaderChanged { leader } => leader.as_ref().map_or("none".to_owned(), m),
        EventKind::Unknown => "(an event this flottectl does not know)".to_owned(),
    };
    Some(format!(
        "{:<8} {:<21} {what}",
        event.revision,
        type_name(&event.kind)
    ))
}

/// What a watched listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `list-units`: unit states on machines.
    UnitStates,
    /// `list-unit-files`: units, their desired and current states and placement.
    UnitFiles,
    /// `list-machines`.
    Machines,
}

/// Whether `kind` may change what a `topic` listing shows.
pub fn concerns(topic: Topic, kind: &EventKind) -> bool {
    use EventKind::*;
    match kind {
        Started | Ended { .. } | LeaderChanged { .. } => false,
        // Not knowing what it says, assume it matters.
        Unknown => true,
        MachineJoined { .. } | MachineChanged { .. } | MachineLost { .. } => true,
        StateChanged { .. } | StateRemoved { .. } => topic != Topic::Machines,
        // The listings show no start request; the start itself is a state change.
        StartRequested { .. } => false,
        Submitted { .. }
        | DesiredStateChanged { .. }
        | Placed { .. }
        | Unplaced { .. }
        | Unplaceable { .. }
        | Destroyed { .. } => topic == Topic::UnitFiles,
    }
}

/// Events that follow one another this closely make one reprint.
const COALESCE: Duration = Duration::from_millis(100);

/// Prints `render`'s listing, then again whenever an event concerns `topic`, until
/// interrupted. A stream the server ends for a slow reader is opened again and the listing
/// read afresh.
pub(super) async fn watch<F, Fut>(
    client: &Client,
    console: &mut Console<'_>,
    topic: Topic,
    render: F,
) -> Result<(), CliError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, CliError>>,
{
    let mut interrupt = Interrupt::new()?;
    let mut first = true;
    'connect: loop {
        // The stream is open before the listing is read: no change falls between them.
        let Events { mut reader, .. } = client.events(None).await?;
        let mut due: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
        loop {
            let event = tokio::select! {
                event = reader.next() => Some(event?),
                _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => None,
                _ = interrupt.recv() => return Ok(()),
            };
            match event {
                None => {
                    due = None;
                    let listing = render().await?;
                    if !first {
                        writeln!(console.out)?;
                    }
                    first = false;
                    console.out.write_all(listing.as_bytes())?;
                    console.out.flush()?;
                }
                Some(None) => return Err(CliError::EventsCut(client.endpoint().to_owned())),
                Some(Some(Event {
                    kind: EventKind::Ended { reason, message },
                    revision,
                })) => {
                    if reason == EndReason::Lagged {
                        continue 'connect;
                    }
                    return Err(CliError::EventsEnded {
                        endpoint: client.endpoint().to_owned(),
                        revision,
                        message,
                    });
                }
                Some(Some(event)) => {
                    if due.is_none() && concerns(topic, &event.kind) {
                        due = Some(tokio::time::Instant::now() + COALESCE);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineId;
    use crate::systemd::{ActiveState, LoadState};
    use crate::unit::{DesiredState, UnitName};

    fn unit() -> UnitName {
        UnitName::new("web.service").unwrap()
    }

    fn id() -> MachineId {
        MachineId::new("1a2b3c4d5e6f708192a3b4c5d6e7f809").unwrap()
    }

    fn at(revision: i64, kind: EventKind) -> Event {
        Event { revision, kind }
    }

    #[test]
    fn each_event_is_one_line_of_revision_type_and_what_changed() {
        let cases = [
            (
                EventKind::Submitted {
                    unit: unit(),
                    desired: DesiredState::Launched,
                    replaced: false,
                },
                "12       submitted             web.service (desired launched)",
            ),
            (
                EventKind::Submitted {
                    unit: unit(),
                    desired: DesiredState::Loaded,
                    replaced: true,
                },
                "12       submitted             web.service with new content (desired loaded)",
            ),
            (
                EventKind::DesiredStateChanged {
                    unit: unit(),
                    from: DesiredState::Loaded,
                    to: DesiredState::Launched,
                },
                "12       desired_state_changed web.service loaded -> launched",
            ),
            (
                EventKind::Placed {
                    unit: unit(),
                    machines: vec![id(), id()],
                },
                "12       placed                web.service on 1a2b3c4d..., 1a2b3c4d...",
            ),
            (
                EventKind::Unplaceable {
                    unit: unit(),
                    reason: "no machine has metadata region=eu".into(),
                },
                "12       unplaceable           web.service: no machine has metadata region=eu",
            ),
            (
                EventKind::StateChanged {
                    unit: unit(),
                    machine: id(),
                    load: LoadState::Loaded,
                    active: ActiveState::Failed,
                    sub: "failed".into(),
                    message: Some("exit code 1".into()),
                },
                "12       state_changed         web.service on 1a2b3c4d...: loaded failed failed (exit code 1)",
            ),
            (
                EventKind::StateRemoved {
                    unit: unit(),
                    machine: id(),
                },
                "12       state_removed         web.service on 1a2b3c4d...",
            ),
            (
                EventKind::Destroyed { unit: unit() },
                "12       destroyed             web.service",
            ),
            (
                EventKind::MachineJoined {
                    machine: id(),
                    ip: "10.0.0.1".into(),
                    hostname: "host-1".into(),
                },
                "12       machine_joined        1a2b3c4d... host-1 10.0.0.1",
            ),
            (
                EventKind::MachineLost {
                    machine: id(),
                    hostname: String::new(),
                },
                "12       machine_lost          1a2b3c4d...",
            ),
            (
                EventKind::LeaderChanged { leader: Some(id()) },
                "12       leader_changed        1a2b3c4d...",
            ),
            (
                EventKind::LeaderChanged { leader: None },
                "12       leader_changed        none",
            ),
            (
                EventKind::Unknown,
                "12       unknown               (an event this flottectl does not know)",
            ),
        ];
        for (kind, line) in cases {
            assert_eq!(text(&at(12, kind), Detail::Short).as_deref(), Some(line));
        }
        assert_eq!(
            text(
                &at(3, EventKind::LeaderChanged { leader: Some(id()) }),
                Detail::Full
            )
            .as_deref(),
            Some("3        leader_changed        1a2b3c4d5e6f708192a3b4c5d6e7f809")
        );
        assert_eq!(text(&at(3, EventKind::Started), Detail::Short), None);
    }

    #[test]
    fn since_is_a_revision_and_a_negative_one_is_a_usage_error() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            crate::cli::Cli::try_parse_from(["flottectl", "events"].iter().chain(args).copied())
        };
        let cli = parse(&["--since", "42"]).unwrap();
        let crate::cli::Command::Events(args) = cli.command else {
            panic!("events parses as events");
        };
        assert_eq!(args.since, Some(42));
        assert_eq!(parse(&["--since=-1"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["--since", "x"]).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn a_listing_is_reprinted_only_for_events_that_change_what_it_shows() {
        use Topic::*;
        let state = EventKind::StateRemoved {
            unit: unit(),
            machine: id(),
        };
        let placed = EventKind::Placed {
            unit: unit(),
            machines: vec![id()],
        };
        let lost = EventKind::MachineLost {
            machine: id(),
            hostname: String::new(),
        };
        let leader = EventKind::LeaderChanged { leader: None };
        for (kind, topic, expected) in [
            (&state, UnitStates, true),
            (&state, UnitFiles, true),
            (&state, Machines, false),
            (&placed, UnitStates, false),
            (&placed, UnitFiles, true),
            (&placed, Machines, false),
            (&lost, UnitStates, true),
            (&lost, Machines, true),
            (&leader, UnitFiles, false),
            (&leader, Machines, false),
            (&EventKind::Unknown, Machines, true),
            (&EventKind::Started, UnitStates, false),
        ] {
            assert_eq!(concerns(topic, kind), expected, "{topic:?} {kind:?}");
        }
    }
}
