//! The gRPC channel under etcd-client: one etcd endpoint at a time, the next one as soon as the
//! current one fails.
//!
//! etcd-client's own channel (tonic's balancer) keeps sending a share of the requests to a
//! member that stopped: a connection that worked once reports itself ready after it broke, and
//! each request sent to it then fails with "tcp connect error", so with one member of three
//! down, a random half of the reads and watch openings failed and the engine stepped down
//! again and again (~10–20 s before scheduling went on). Like etcd's own Go client, this
//! channel pins one endpoint and moves to the next on evidence from a request: a transport
//! failure (the member is unreachable or the connection broke) or etcd's "no leader" answer
//! (the member lost its cluster; flotte asks etcd to answer so, `require_leader`, rather than
//! to wait), or a request its caller gave up before the member began to answer
//! (`Unanswered`). The failed request itself still fails and its caller retries (watches and
//! keep-alives reopen), now on the next endpoint. No probing: only requests move the pin.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use tokio::sync::mpsc;
use tonic::transport::channel::Change;
use tonic::transport::{Channel as TonicChannel, Endpoint};
use tower::Service;
use tower::util::BoxCloneSyncService;

type Request = http::Request<tonic::body::Body>;
type Response = http::Response<tonic::body::Body>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the pinned channel for `etcd_client::Client::connect_with_balanced_channel`.
pub(super) struct Pinned;

impl etcd_client::BalancedChannelBuilder for Pinned {
    type Error = etcd_client::Error;

    fn balanced_channel(
        self,
        buffer_size: usize,
    ) -> Result<(etcd_client::Channel, mpsc::Sender<Change<Uri, Endpoint>>), Self::Error> {
        let (tx, rx) = mpsc::channel(buffer_size);
        let service = PinnedChannel {
            shared: Arc::new(Shared {
                changes: Mutex::new(rx),
                endpoints: Mutex::new(Vec::new()),
                pinned: AtomicUsize::new(0),
            }),
            ready: None,
        };
        Ok((
            etcd_client::Channel::Custom(BoxCloneSyncService::new(service)),
            tx,
        ))
    }
}

struct Shared {
    /// Endpoints etcd-client adds (all of them when it connects).
    changes: Mutex<mpsc::Receiver<Change<Uri, Endpoint>>>,
    endpoints: Mutex<Vec<(Uri, TonicChannel)>>,
    /// The endpoint requests go to (modulo the number of endpoints).
    pinned: AtomicUsize,
}

impl Shared {
    /// The pinned endpoint: its index and channel.
    fn pick(&self) -> Option<(usize, TonicChannel)> {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok(change) = changes.try_recv() {
            match change {
                Change::Insert(uri, endpoint) => {
                    endpoints.retain(|(u, _)| *u != uri);
                    endpoints.push((uri, endpoint.connect_lazy()));
                }
                Change::Remove(uri) => endpoints.retain(|(u, _)| *u != uri),
            }
        }
        if endpoints.is_empty() {
            return None;
        }
        let i = self.pinned.load(Ordering::Acquire) % endpoints.len();
        Some((i, endpoints[i].1.clone()))
    }

    /// A request to endpoint `i` failed: the next requests go to the next endpoint (unless a
    /// concurrent failure moved the pin already).
    fn failed(&self, i: usize, why: &dyn std::fmt::Display) {
        let endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let n = endpoints.len();
        if n < 2 {
            return;
        }
        let current = self.pinned.load(Ordering::Acquire);
        if current % n != i {
            return;
        }
        if self
            .pinned
            .compare_exchange(current, (i + 1) % n, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(
                failed = %endpoints[i].0,
                next = %endpoints[(i + 1) % n].0,
                error = %why,
                "etcd endpoint failed; using the next one"
            );
        }
    }
}

struct PinnedChannel {
    shared: Arc<Shared>,
    /// The endpoint `poll_ready` readied (tonic's channel reserves its slot per clone).
    ready: Option<(usize, TonicChannel)>,
}

impl Clone for PinnedChannel {
    fn clone(&self) -> Self {
        PinnedChannel {
            shared: self.shared.clone(),
            ready: None,
        }
    }
}

impl Service<Request> for PinnedChannel {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.ready.is_none() {
            match self.shared.pick() {
                Some(pinned) => self.ready = Some(pinned),
                None => return Poll::Ready(Err("no etcd endpoint".into())),
            }
        }
        let Some((i, channel)) = self.ready.as_mut() else {
            unreachable!("readied above")
        };
        match channel.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.shared.failed(*i, &e);
                self.ready = None;
                Poll::Ready(Err(e.into()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (i, mut channel) = self.ready.take().expect("poll_ready is called before call");
        let shared = self.shared.clone();
        let response = channel.call(request);
        Box::pin(async move {
            let mut waiting = Unanswered {
                shared: shared.clone(),
                endpoint: i,
                sent: Instant::now(),
                answered: false,
            };
            let outcome = response.await;
            waiting.answered = true;
            match outcome {
                Err(e) => {
                    shared.failed(i, &e);
                    Err(e.into())
                }
                Ok(response) => {
                    if answers_no_leader(response.headers()) {
                        shared.failed(i, &"etcd member has no leader");
                    }
                    Ok(response)
                }
            }
        })
    }
}

/// A request given up (its caller's timeout) before the endpoint began to answer, after at
/// least `SLOW`: evidence that the member cannot serve now (it accepts connections but is not
/// ready, as a restarting member before it rejoined its cluster, or it is frozen), so the
/// next requests go to the next endpoint. A request dropped early, or for another reason
/// (shutdown), moves the pin at worst to another member that serves as well.
struct Unanswered {
    shared: Arc<Shared>,
    endpoint: usize,
    sent: Instant,
    answered: bool,
}

/// Shorter than every caller's timeout (the agent's keep-alive waits a quarter of its fence
/// delay, 375 ms for a 3 s TTL), longer than etcd takes to answer.
const SLOW: Duration = Duration::from_millis(250);

impl Drop for Unanswered {
    fn drop(&mut self) {
        let waited = self.sent.elapsed();
        if !self.answered && waited >= SLOW {
            self.shared
                .failed(self.endpoint, &format_args!("no answer within {waited:?}"));
        }
    }
}

/// Whether a gRPC answer is etcd's "no leader" (UNAVAILABLE, "etcdserver: no leader"), which
/// a member without a cluster gives at once to requests that require a leader. A refused
/// unary request carries its status in the headers (a trailers-only answer).
fn answers_no_leader(headers: &http::HeaderMap) -> bool {
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    status == Some("14") && (message.contains("no leader") || message.contains("no%20leader"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(n: u16) -> Arc<Shared> {
        let (tx, rx) = mpsc::channel(8);
        for port in 1..=n {
            let uri: Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
            let endpoint = Endpoint::from_shared(uri.to_string()).unwrap();
            tx.try_send(Change::Insert(uri, endpoint)).unwrap();
        }
        Arc::new(Shared {
            changes: Mutex::new(rx),
            endpoints: Mutex::new(Vec::new()),
            pinned: AtomicUsize::new(0),
        })
    }

    fn pinned(s: &Shared) -> usize {
        s.pick().unwrap().0
    }

    #[tokio::test]
    async fn a_failure_moves_the_pin_to_the_next_endpoint_once() {
        let s = shared(3);
        assert_eq!(pinned(&s), 0);
        s.failed(0, &"down");
        assert_eq!(pinned(&s), 1);
        // A late failure of the endpoint already left does not move it again.
        s.failed(0, &"down");
        assert_eq!(pinned(&s), 1);
        s.failed(1, &"down");
        s.failed(2, &"down");
        assert_eq!(pinned(&s), 0, "round the list");
        let one = shared(1);
        assert_eq!(pinned(&one), 0);
        one.failed(0, &"down");
        assert_eq!(pinned(&one), 0);
        assert!(shared(0).pick().is_none());
    }

    #[tokio::test]
    async fn a_request_given_up_unanswered_after_a_while_moves_the_pin() {
        let s = shared(2);
        pinned(&s);
        let given_up = |sent: Instant, answered: bool| Unanswered {
            shared: s.clone(),
            endpoint: pinned(&s),
            sent,
            answered,
        };
        drop(given_up(Instant::now(), false));
        assert_eq!(pinned(&s), 0, "dropped at once: no evidence");
        drop(given_up(Instant::now() - SLOW, true));
        assert_eq!(pinned(&s), 0, "answered");
        drop(given_up(Instant::now() - SLOW, false));
        assert_eq!(pinned(&s), 1, "given up unanswered");
    }

    #[test]
    fn only_etcds_no_leader_answer_moves_the_pin() {
        for (status, message, moves) in [
            (Some("14"), Some("etcdserver:%20no%20leader"), true),
            (Some("14"), Some("etcdserver: no leader"), true),
            (
                Some("14"),
                Some("etcdserver:%20request%20timed%20out"),
                false,
            ),
            (Some("5"), Some("etcdserver:%20no%20leader"), false),
            (Some("0"), None, false),
            (None, None, false),
        ] {
            let mut headers = http::HeaderMap::new();
            if let Some(s) = status {
                headers.insert("grpc-status", s.parse().unwrap());
            }
            if let Some(m) = message {
                headers.insert("grpc-message", m.parse().unwrap());
            }
            assert_eq!(answers_no_leader(&headers), moves, "{status:?} {message:?}");
        }
    }
}
