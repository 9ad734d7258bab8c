//! `/flotte/v1/events`: the cluster's events (`wire::Event`) as newline-delimited JSON, from
//! one etcd watch per client (`Registry::events`). Each client has a bounded buffer: one that
//! reads too slowly for `SLOW_CLIENT_GRACE` while it is full gets an `ended` line (reason
//! `lagged`) with the revision to resume from, and the stream ends; the server never holds
//! more than `BUFFER` events for it.

use std::convert::Infallible;
use std::future::ready;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::registry::{EventBatch, RegistryError};
use crate::wire::{EndReason, Event, EventKind, param};

use super::ApiError;
use super::request::Params;
use super::routes::Api;

/// Events held for one client at most.
const BUFFER: usize = 1024;
/// How long a full buffer may stay full before the client counts as lagging.
const SLOW_CLIENT_GRACE: Duration = Duration::from_secs(5);

pub async fn stream(State(api): State<Api>, params: Params) -> Result<Response, ApiError> {
    let since = params.revision(param::SINCE)?;
    // Read before answering, so that a compacted or future `since` is the request's status.
    let events = api.registry.events(since).await?;
    let started = Event {
        revision: events.revision(),
        kind: EventKind::Started,
    };
    let source = stream::unfold(events, |mut events| async move {
        Some((events.next().await, events))
    });
    let limits = Limits {
        buffer: BUFFER,
        grace: SLOW_CLIENT_GRACE,
    };
    let body = follow(started, source, api.shutdown.clone(), limits);
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    buffer: usize,
    grace: Duration,
}

/// The body's lines: `started`, the events `source` gives, then `ended` if the server ends
/// the stream. A task of its own moves events from `source` into the client's bounded buffer;
/// it ends when the client goes away.
fn follow<S>(
    started: Event,
    source: S,
    shutdown: CancellationToken,
    limits: Limits,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static
where
    S: Stream<Item = Result<EventBatch, RegistryError>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(limits.buffer);
    let (end_tx, end_rx) = oneshot::channel();
    tokio::spawn(forward(
        started.revision,
        source,
        tx,
        end_tx,
        shutdown,
        limits.grace,
    ));
    let events = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|l| (l, rx)) });
    // The end line is sent once the task dropped its sender, so it comes after every event.
    let end = stream::once(end_rx).filter_map(|end| ready(end.ok()));
    stream::once(ready(line(&started)))
        .chain(events)
        .chain(end)
        .map(Ok)
}

async fn forward<S>(
    from: i64,
    source: S,
    tx: mpsc::Sender<Bytes>,
    end_tx: oneshot::Sender<Bytes>,
    shutdown: CancellationToken,
    grace: Duration,
) where
    S: Stream<Item = Result<EventBatch, RegistryError>>,
{
    let metrics = crate::metrics::get();
    metrics.event_streams.inc();
    // Dropped when the task ends, however it ends.
    let _open = Open;
    let mut source = std::pin::pin!(source);
    // Every event up to this revision is in the client's buffer.
    let mut delivered = from;
    let (revision, reason, message) = 'stream: loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break (
                delivered,
                EndReason::Shutdown,
                "flotted is shutting down; resume from this revision on another machine".to_owned(),
            ),
            _ = tx.closed() => return,
            next = source.next() => next,
        };
        let batch = match next {
            Some(Ok(batch)) => batch,
            Some(Err(e @ RegistryError::Compacted { .. })) => {
                break (delivered, EndReason::Compacted, e.to_string());
            }
            Some(Err(e)) => break (delivered, EndReason::Failed, e.to_string()),
            None => break (delivered, EndReason::Failed, "the watch ended".to_owned()),
        };
        for event in batch.events {
            match tx.send_timeout(line(&event), grace).await {
                Ok(()) => {}
                Err(SendTimeoutError::Timeout(_)) => {
                    metrics.event_streams_lagged.inc();
                    // Events of this revision may be in the buffer already; resuming before
                    // it repeats them rather than losing the rest.
                    let resume = (event.revision - 1).max(delivered);
                    break 'stream (
                        resume,
                        EndReason::Lagged,
                        format!(
                            "this client read too slowly: {} events waited over {grace:?}; resume from this revision",
                            tx.max_capacity()
                        ),
                    );
                }
                Err(SendTimeoutError::Closed(_)) => return,
            }
        }
        delivered = batch.revision;
    };
    tracing::debug!(revision, ?reason, %message, "ending an event stream");
    let _ = end_tx.send(line(&Event {
        revision,
        kind: EventKind::Ended { reason, message },
    }));
}

/// An open stream, for the gauge of open streams.
struct Open;

impl Drop for Open {
    fn drop(&mut self) {
        crate::metrics::get().event_streams.dec();
    }
}

fn line(event: &Event) -> Bytes {
    let mut bytes = serde_json::to_vec(event).expect("events always serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::UnitName;

    fn destroyed(revision: i64, unit: &str) -> Event {
        Event {
            revision,
            kind: EventKind::Destroyed {
                unit: UnitName::new(unit).unwrap(),
            },
        }
    }

    fn batch(events: Vec<Event>) -> Result<EventBatch, RegistryError> {
        let revision = events.last().unwrap().revision;
        Ok(EventBatch { events, revision })
    }

    fn started(revision: i64) -> Event {
        Event {
            revision,
            kind: EventKind::Started,
        }
    }

    /// The body's lines, parsed back.
    async fn lines(body: impl Stream<Item = Result<Bytes, Infallible>>) -> Vec<Event> {
        body.map(|l| serde_json::from_slice(&l.unwrap()).unwrap())
            .collect()
            .await
    }

    const LIMITS: Limits = Limits {
        buffer: 2,
        grace: Duration::from_secs(1),
    };

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_is_ended_with_the_revision_to_resume_from() {
        let source = stream::iter([
            batch(vec![destroyed(5, "a.service"), destroyed(6, "b.service")]),
            batch(vec![destroyed(7, "c.service"), destroyed(7, "d.service")]),
        ])
        .chain(stream::pending());
        let body = follow(started(4), source, CancellationToken::new(), LIMITS);
        // The client reads nothing while the grace passes (paused time jumps ahead).
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = lines(body).await;
        assert_eq!(
            got[..3],
            [
                started(4),
                destroyed(5, "a.service"),
                destroyed(6, "b.service")
            ]
        );
        assert!(
            matches!(
                &got[3],
                Event { revision: 6, kind: EventKind::Ended { reason: EndReason::Lagged, message } }
                    if message.contains("read too slowly")
            ),
            "{:?}",
            got[3]
        );
        assert_eq!(got.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_cut_inside_a_revision_resumes_before_it() {
        let source = stream::iter([batch(vec![
            destroyed(5, "a.service"),
            destroyed(5, "b.service"),
            destroyed(5, "c.service"),
        ])])
        .chain(stream::pending());
        let body = follow(started(4), source, CancellationToken::new(), LIMITS);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let got = lines(body).await;
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(matches!(
            got[3],
            Event {
                revision: 4,
                kind: EventKind::Ended {
                    reason: EndReason::Lagged,
                    ..
                }
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_along_gets_every_event_however_many() {
        let many: Vec<_> = (5..105)
            .map(|r| batch(vec![destroyed(r, "a.service")]))
            .collect();
        let body = follow(
            started(4),
            stream::iter(many).chain(stream::pending()),
            CancellationToken::new(),
            LIMITS,
        );
        let got = lines(body.take(101)).await;
        let expected: Vec<Event> = std::iter::once(started(4))
            .chain((5..105).map(|r| destroyed(r, "a.service")))
            .collect();
        assert_eq!(got, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_and_compaction_end_the_stream_saying_so() {
        let shutdown = CancellationToken::new();
        let body = follow(
            started(4),
            stream::iter([batch(vec![destroyed(5, "a.service")])]).chain(stream::pending()),
            shutdown.clone(),
            LIMITS,
        );
        let mut body = std::pin::pin!(body);
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Event>(&first).unwrap(), started(4));
        let second = body.next().await.unwrap().unwrap();
        assert_eq!(
            serde_json::from_slice::<Event>(&second).unwrap(),
            destroyed(5, "a.service")
        );
        shutdown.cancel();
        let got = lines(body).await;
        assert!(
            matches!(
                got[..],
                [Event {
                    revision: 5,
                    kind: EventKind::Ended {
                        reason: EndReason::Shutdown,
                        ..
                    }
                }]
            ),
            "{got:?}"
        );

        let body = follow(
            started(4),
            stream::iter([Err(RegistryError::Compacted { revision: 4 })]),
            CancellationToken::new(),
            LIMITS,
        );
        let got = lines(body).await;
        assert_eq!(got.len(), 2);
        assert!(matches!(
            &got[1],
            Event { revision: 4, kind: EventKind::Ended { reason: EndReason::Compacted, message } }
                if message.starts_with("etcd revision 4 is compacted")
        ));
    }
}
