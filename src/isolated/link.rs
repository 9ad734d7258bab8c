//! A TCP relay between one flotted and etcd that a test can cut: while cut, connections are
//! accepted and held but no byte crosses, as in a network partition (nothing is refused, so
//! the client only notices through its own timeouts).

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::IsolatedError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Up,
    Cut,
}

/// The relay; it stops when dropped.
pub struct Link {
    addr: SocketAddr,
    state: watch::Sender<LinkState>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Listens on a free loopback port and relays to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Link, IsolatedError> {
        Self::start_at("127.0.0.1:0".parse().expect("an address"), upstream).await
    }

    /// Listens on `addr` and relays to `upstream`.
    pub async fn start_at(addr: SocketAddr, upstream: SocketAddr) -> Result<Link, IsolatedError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| IsolatedError::io("binding a link", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| IsolatedError::io("link address", e))?;
        let (state, _) = watch::channel(LinkState::Up);
        let states = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, states.subscribe()));
            }
        });
        Ok(Link { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cut(&self) {
        self.state.send_replace(LinkState::Cut);
    }

    pub fn restore(&self) {
        self.state.send_replace(LinkState::Up);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection while the link is up. Once it is cut, the connection is held open and
/// silent until the link comes back, then closed (the client reconnects through a new one).
async fn relay(mut client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<LinkState>) {
    if *state.borrow() == LinkState::Cut {
        let _ = state.wait_for(|s| *s == LinkState::Up).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
        _ = state.wait_for(|s| *s == LinkState::Cut) => true,
    };
    if cut {
        let _ = state.wait_for(|s| *s == LinkState::Up).await;
    }
    let _ = client.shutdown().await;
}
