//! flotted's DNS server for the zone `flotte.` (`dns_listen`, over UDP and TCP): the healthy
//! instances of declared services and the machines, answered from an in-memory view that one
//! task keeps up to date from two etcd watches (instances and machines), never with an etcd
//! read per query.
//!
//! What a name means is the pure `answer::answer`; `handler` turns a request into its question
//! and the answer into a response; hickory-server does the wire: decoding (FORMERR for what
//! does not decode, nothing for what is not even a header), TCP's length framing and idle
//! timeout, EDNS and truncation to the client's UDP payload size.

pub mod answer;
mod handler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::machine::MachineId;
use crate::registry::{InstanceId, InstanceRecord, MachineRecord, Registry, TypedWatch, Update};

pub use answer::{Answer, View, answer};

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The bound sockets: UDP and TCP on each `dns_listen` address. Bound before flotted
/// reaches etcd, so that an address in use stops it at once.
pub struct Listeners {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Listeners {
    pub async fn bind(addrs: &[SocketAddr]) -> Result<Listeners, DnsError> {
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in addrs {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| DnsError::Bind {
                    proto: "UDP",
                    addr,
                    source,
                })?;
            // Port 0: TCP on the port UDP got, so that one address serves both.
            let addr = socket.local_addr().unwrap_or(addr);
            udp.push(socket);
            tcp.push(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| DnsError::Bind {
                        proto: "TCP",
                        addr,
                        source,
                    })?,
            );
        }
        Ok(Listeners { udp, tcp })
    }

    /// The addresses bound, UDP's (TCP's are the same).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.udp.is_empty()
    }
}

/// Answers on `listeners` from `view` until `shutdown`, each record with `ttl` seconds.
pub async fn serve_view(
    listeners: Listeners,
    view: watch::Receiver<Arc<View>>,
    ttl: u32,
    shutdown: CancellationToken,
) {
    tracing::info!(addrs = ?listeners.local_addrs(), ttl, "DNS listening");
    let mut server = hickory_server::Server::new(handler::Handler::new(view, ttl));
    for socket in listeners.udp {
        server.register_socket(socket);
    }
    for listener in listeners.tcp {
        server.register_listener(listener, TCP_IDLE, TCP_RESPONSE_BUFFER);
    }
    tokio::select! {
        _ = shutdown.cancelled() => {}
        result = server.block_until_done() => {
            // Only a socket that fails for good ends it early.
            if let Err(e) = result {
                tracing::error!(error = %e, "DNS server stopped");
            }
            return;
        }
    }
    if let Err(e) = server.shutdown_gracefully().await {
        tracing::warn!(error = %e, "DNS server shut down with an error");
    }
}

/// Answers on `listeners` from the registry's instances and machines until `shutdown`.
pub async fn serve(
    listeners: Listeners,
    registry: Registry,
    ttl: u32,
    shutdown: CancellationToken,
) {
    let view = follow(&registry);
    serve_view(listeners, view, ttl, shutdown).await;
}

/// Keeps a `View` of the instances and machines, in a task of its own while any receiver
/// lives: one watch of each prefix, each driven by a pump task of its own (so that neither's
/// request is ever cut short by the other's news), resumed after failures; the watches list
/// again after compaction. The view is `ready` once both delivered their first listing.
pub fn follow(registry: &Registry) -> watch::Receiver<Arc<View>> {
    let (tx, rx) = watch::channel(Arc::new(View::default()));
    let (updates, mut incoming) = mpsc::channel(16);
    tokio::spawn(pump(
        registry.watch_instances(),
        updates.clone(),
        Change::Instances,
    ));
    tokio::spawn(pump(registry.watch_machines(), updates, |u, _| {
        Change::Machines(u)
    }));
    tokio::spawn(async move {
        let (mut instances_listed, mut machines_listed) = (false, false);
        loop {
            let change = tokio::select! {
                _ = tx.closed() => return,
                change = incoming.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
            };
            let mut next = (**tx.borrow()).clone();
            match change {
                Change::Instances(u, revision) => {
                    instances_listed = true;
                    next.catalog = Arc::new(next.catalog.apply(u, revision));
                }
                Change::Machines(u) => {
                    machines_listed = true;
                    u.apply_to(&mut next.machines);
                }
            }
            next.ready = instances_listed && machines_listed;
            tx.send_replace(Arc::new(next));
        }
    });
    rx
}

enum Change {
    Instances(Update<InstanceId, InstanceRecord>, i64),
    Machines(Update<MachineId, MachineRecord>),
}

/// Sends each update of `watch` (with its revision) until the receiver is gone; a failed
/// watch is resumed after a backoff.
async fn pump<K, V>(
    mut watch: TypedWatch<K, V>,
    to: mpsc::Sender<Change>,
    wrap: fn(Update<K, V>, i64) -> Change,
) where
    V: serde::de::DeserializeOwned,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let update = tokio::select! {
            _ = to.closed() => return,
            update = watch.next() => update,
        };
        match update {
            Ok(update) => {
                backoff.reset();
                if to.send(wrap(update, watch.revision())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a watch of the DNS view failed; resuming");
                tokio::select! {
                    _ = to.closed() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}
