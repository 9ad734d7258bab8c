//! `GET /flotte/v1/units/NAME/journal?machine=ID&lines=N&follow=true&output=short|cat|json`:
//! a unit's journal on one machine, streamed. This API runs journalctl when the machine is its
//! own (`crate::journal`), else relays the stream of the machine's flotted. Either way a task
//! of its own moves lines into a bounded channel the body reads from: it ends, and journalctl
//! is killed, when the client goes away; a followed journal ends with a `wire::JournalNote`
//! line saying why (flotted shutting down, the machine gone, journalctl ended).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, stream};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::client::{ClientError, Journal};
use crate::journal::{self, JournalError, Read};
use crate::machine::MachineId;
use crate::registry::{PlacementRecord, ReasonRecord, Registry};
use crate::unit::UnitName;
use crate::wire::{self, JournalNote, JournalOutput, JournalQuery, NoteKind, param};

use super::ApiError;
use super::backend::{LocalMachine, peer_error};
use super::request::Params;
use super::routes::Api;
use super::status::{UnitInPath, check_forwarded, machine_param};

/// Lines held for one client: journalctl waits (its pipe fills) while the client reads slowly.
const BUFFER: usize = 256;

/// The query's `lines`, `follow` and `output`, each at most once; `machine` is read apart.
pub fn parse_query(params: &Params) -> Result<JournalQuery, ApiError> {
    let lines = match params.only(param::LINES)? {
        None => wire::JOURNAL_DEFAULT_LINES,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| *n <= wire::JOURNAL_MAX_LINES)
            .ok_or_else(|| ApiError::BadParameter {
                name: param::LINES,
                value: v.to_owned(),
                why: format!(
                    "not a number of lines from 0 to {}",
                    wire::JOURNAL_MAX_LINES
                ),
            })?,
    };
    let follow = match params.only(param::FOLLOW)? {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::BadParameter {
                name: param::FOLLOW,
                value: v.to_owned(),
                why: "give true or false".into(),
            });
        }
    };
    let output = match params.only(param::OUTPUT)? {
        None => JournalOutput::Short,
        Some(v) => JournalOutput::parse(v).ok_or_else(|| ApiError::BadParameter {
            name: param::OUTPUT,
            value: v.to_owned(),
            why: "give short, cat or json".into(),
        })?,
    };
    Ok(JournalQuery {
        machine: None,
        lines,
        follow,
        output,
    })
}

/// Whose journal to read when the request names no machine: the unit's only machine.
pub fn only_machine(
    unit: &UnitName,
    placement: Option<&PlacementRecord>,
    reason: Option<&ReasonRecord>,
) -> Result<MachineId, ApiError> {
    let machines = placement.map(|p| p.machines.as_slice()).unwrap_or_default();
    match machines {
        [one] => Ok(one.clone()),
        [] => Err(ApiError::NotPlaced {
            unit: unit.clone(),
            reason: reason.map(|r| r.reason.clone()).unwrap_or_default(),
        }),
        many => {
            let mut machines = many.to_vec();
            machines.sort();
            Err(ApiError::AmbiguousMachine {
                unit: unit.clone(),
                machines,
            })
        }
    }
}

pub async fn get(
    State(api): State<Api>,
    UnitInPath(name): UnitInPath,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let asked = machine_param(&params)?;
    let mut query = parse_query(&params)?;
    check_forwarded(&headers, asked.as_ref(), api.local.as_ref())?;
    if api.registry.unit(&name).await?.is_none() {
        return Err(ApiError::UnitNotFound(name));
    }
    let machine = match asked {
        Some(m) => m,
        None => {
            let (placement, reason) =
                tokio::try_join!(api.registry.placement(&name), api.registry.reason(&name))?;
            only_machine(&name, placement.as_ref(), reason.as_ref())?
        }
    };
    let read = Read {
        unit: name,
        lines: query.lines,
        follow: query.follow,
        output: query.output,
    };
    let body = match api.local.as_ref().filter(|l| l.id == machine) {
        Some(local) => local_journal(local, &read, api.shutdown.clone()).await?,
        None => {
            let Some(record) = api.registry.machine(&machine).await? else {
                return Err(ApiError::MachineNotFound(machine));
            };
            query.machine = Some(machine.to_string());
            let client = api.peers.client(&record)?;
            let journal = client
                .journal(&read.unit, &query)
                .await
                .map_err(|e| peer_error(&record, e))?;
            let (tx, rx) = mpsc::channel(BUFFER);
            tokio::spawn(relay(
                journal,
                Sink::new(tx, read.output),
                Relayed {
                    registry: api.registry.clone(),
                    machine,
                    hostname: record.hostname.clone(),
                },
                api.shutdown.clone(),
            ));
            body_of(rx)
        }
    };
    Ok(([(CONTENT_TYPE, read.output.content_type())], body).into_response())
}

/// This machine's journal of the unit: refused at once (503) when there is no journal to
/// read, so that a client never gets an empty answer for it.
async fn local_journal(
    local: &LocalMachine,
    read: &Read,
    shutdown: CancellationToken,
) -> Result<Body, ApiError> {
    let no_journal = |e: JournalError| ApiError::NoJournal {
        hostname: local.hostname.clone(),
        why: e.to_string(),
    };
    // journalctl says so on its standard error only, and keeps waiting when following.
    journal::tail(local.journal, &read.unit, 0)
        .await
        .map_err(no_journal)?;
    let child = journal::spawn(local.journal, read).map_err(no_journal)?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(pump(
        child,
        Sink::new(tx, read.output),
        read.follow,
        local.hostname.clone(),
        shutdown,
    ));
    Ok(body_of(rx))
}

fn body_of(rx: mpsc::Receiver<Bytes>) -> Body {
    let lines: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>> =
        Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|l| (Ok(l), rx))
        }));
    Body::from_stream(lines)
}

/// Where a journal's lines go: the client's buffer, notes written in its output format, and
/// a note always on a line of its own.
struct Sink {
    tx: mpsc::Sender<Bytes>,
    output: JournalOutput,
    /// The last byte sent ended a line (or nothing was sent).
    at_line_start: bool,
    /// Journal lines sent, notes aside.
    lines: usize,
}

/// The client went away.
struct Gone;

impl Sink {
    fn new(tx: mpsc::Sender<Bytes>, output: JournalOutput) -> Sink {
        Sink {
            tx,
            output,
            at_line_start: true,
            lines: 0,
        }
    }

    async fn send(&mut self, bytes: Bytes) -> Result<(), Gone> {
        if let Some(last) = bytes.last() {
            self.at_line_start = *last == b'\n';
            self.lines += bytes.iter().filter(|b| **b == b'\n').count();
        }
        self.tx.send(bytes).await.map_err(|_| Gone)
    }

    async fn note(&mut self, flotte: NoteKind, message: String) -> Result<(), Gone> {
        let mut text = String::new();
        if !self.at_line_start {
            text.push('\n');
        }
        text.push_str(&JournalNote { flotte, message }.line(self.output));
        self.at_line_start = true;
        self.tx.send(Bytes::from(text)).await.map_err(|_| Gone)
    }

    async fn closed(&self) {
        self.tx.closed().await
    }
}

/// Moves journalctl's lines to the client, its standard error as notes, until journalctl
/// ends, the client goes away (journalctl is then killed with the child), or shutdown.
async fn pump(
    mut child: Child,
    mut sink: Sink,
    follow: bool,
    hostname: String,
    shutdown: CancellationToken,
) {
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return;
    };
    let mut out = BufReader::new(stdout);
    let mut err = BufReader::new(stderr);
    let (mut line, mut err_line) = (Vec::new(), Vec::new());
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        // `read_until` is cancel-safe: a partly read line stays in its buffer for the next.
        let sent = tokio::select! {
            _ = sink.closed() => return,
            _ = shutdown.cancelled() => {
                let _ = sink
                    .note(NoteKind::Ended, format!("flotted on {hostname} is shutting down; the journal ends here"))
                    .await;
                return;
            }
            read = out.read_until(b'\n', &mut line), if out_open => match read {
                Ok(n) if n > 0 => sink.send(Bytes::from(std::mem::take(&mut line))).await,
                _ => {
                    out_open = false;
                    Ok(())
                }
            },
            read = err.read_until(b'\n', &mut err_line), if err_open => match read {
                Ok(n) if n > 0 => {
                    let text = String::from_utf8_lossy(&err_line).trim().to_owned();
                    err_line.clear();
                    sink.note(NoteKind::Note, format!("journalctl on {hostname}: {text}")).await
                }
                _ => {
                    err_open = false;
                    Ok(())
                }
            },
        };
        if sent.is_err() {
            return;
        }
    }
    let status = child.wait().await;
    let failed = status.as_ref().map_or(true, |s| !s.success());
    let shown = status.map_or_else(|e| e.to_string(), |s| s.to_string());
    let _ = if follow {
        sink.note(
            NoteKind::Ended,
            format!("journalctl on {hostname} ended ({shown}); the journal ends here"),
        )
        .await
    } else if failed {
        sink.note(
            NoteKind::Note,
            format!("journalctl on {hostname} failed ({shown})"),
        )
        .await
    } else if sink.lines == 0 {
        // journalctl says `-- No entries --` in text but nothing at all in JSON.
        sink.note(NoteKind::Note, "No entries".into()).await
    } else {
        Ok(())
    };
}

/// The machine whose journal is relayed.
struct Relayed {
    registry: Registry,
    machine: MachineId,
    hostname: String,
}

/// Moves the peer's journal to the client until it ends, the client goes away, the machine
/// leaves the cluster or its flotted goes away (each said in a last note), or shutdown.
async fn relay(mut journal: Journal, mut sink: Sink, from: Relayed, shutdown: CancellationToken) {
    let Relayed {
        registry,
        machine,
        hostname,
    } = from;
    let mut machines = registry.watch_machines();
    let mut known = std::collections::BTreeMap::new();
    let gone = machines.until(&mut known, |m| (!m.contains_key(&machine)).then_some(()));
    let mut gone = std::pin::pin!(gone);
    loop {
        let next = tokio::select! {
            _ = sink.closed() => return,
            _ = shutdown.cancelled() => {
                let _ = sink.note(NoteKind::Ended, "flotted is shutting down; the journal ends here".into()).await;
                return;
            }
            _ = &mut gone => {
                let _ = sink.note(NoteKind::Ended, format!("machine {machine} ({hostname}) left the cluster; the journal ends here")).await;
                return;
            }
            next = journal.next() => next,
        };
        match next {
            // The peer ended it, with its own note if it had to say why.
            Ok(None) => return,
            Ok(Some(bytes)) => {
                if sink.send(bytes).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let why = match e {
                    ClientError::Http { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                let _ = sink
                    .note(
                        NoteKind::Ended,
                        format!("flotted on {hostname} went away ({why}); the journal ends here"),
                    )
                    .await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Uri;

    fn query(q: &str) -> Result<JournalQuery, String> {
        let uri: Uri = format!("/x?{q}").parse().unwrap();
        parse_query(&Params::from_uri(&uri).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn journal_queries_default_to_ten_short_lines_and_refuse_bad_values_by_name() {
        let q = |lines, follow, output| {
            Ok(JournalQuery {
                machine: None,
                lines,
                follow,
                output,
            })
        };
        for (text, expected) in [
            ("", q(10, false, JournalOutput::Short)),
            (
                "lines=0&follow=true&output=json",
                q(0, true, JournalOutput::Json),
            ),
            ("follow=false&output=cat", q(10, false, JournalOutput::Cat)),
            ("lines=1000000", q(1_000_000, false, JournalOutput::Short)),
        ] {
            assert_eq!(query(text), expected, "{text}");
        }
        for (text, named) in [
            ("lines=-1", "`-1` of query parameter `lines`"),
            ("lines=1000001", "`1000001` of query parameter `lines`"),
            ("follow=yes", "`yes` of query parameter `follow`"),
            ("output=verbose", "`verbose` of query parameter `output`"),
            ("lines=1&lines=2", "`lines` is given more than once"),
        ] {
            let e = query(text).unwrap_err();
            assert!(e.contains(named), "{text}: {e}");
        }
    }

    #[test]
    fn a_journal_without_machine_is_the_units_only_machines() {
        let unit = UnitName::new("web.service").unwrap();
        let id = |c: char| MachineId::new(&c.to_string().repeat(32)).unwrap();
        let placed = |ids: Vec<MachineId>| PlacementRecord { machines: ids };
        let reason = ReasonRecord {
            reason: "no machine has metadata disk=ssd".into(),
        };
        assert_eq!(
            only_machine(&unit, Some(&placed(vec![id('a')])), None).unwrap(),
            id('a')
        );
        let e = only_machine(&unit, Some(&placed(vec![id('b'), id('a')])), None).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            e.to_string(),
            format!(
                "unit `web.service` runs on 2 machines: give machine=ID, one of {}, {}",
                id('a'),
                id('b')
            )
        );
        let e = only_machine(&unit, None, Some(&reason)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unit `web.service` is placed on no machine (no machine has metadata disk=ssd): give machine=ID to read a machine's journal of it"
        );
        let e = only_machine(&unit, Some(&placed(vec![])), None).unwrap_err();
        assert!(e.to_string().contains("is placed on no machine: "), "{e}");
    }

    #[tokio::test]
    async fn notes_start_a_line_of_their_own_in_the_clients_format() {
        for (output, expected) in [
            (
                JournalOutput::Short,
                "partial\n-- gone --\n-- again --\n".to_owned(),
            ),
            (
                JournalOutput::Json,
                "partial\n{\"flotte\":\"ended\",\"message\":\"gone\"}\n{\"flotte\":\"ended\",\"message\":\"again\"}\n"
                    .to_owned(),
            ),
        ] {
            let (tx, mut rx) = mpsc::channel(8);
            let mut sink = Sink::new(tx, output);
            assert!(sink.send(Bytes::from_static(b"partial")).await.is_ok());
            assert!(sink.note(NoteKind::Ended, "gone".into()).await.is_ok());
            assert!(sink.note(NoteKind::Ended, "again".into()).await.is_ok());
            drop(sink);
            let mut got = Vec::new();
            while let Some(b) = rx.recv().await {
                got.extend_from_slice(&b);
            }
            assert_eq!(String::from_utf8(got).unwrap(), expected, "{output:?}");
        }
    }
}
