//! The API's listeners and connection loop: a unix socket and any TCP addresses (with TLS
//! when configured), every connection served by hyper until shutdown, then drained.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use futures_util::future::join_all;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::TlsFiles;
use super::backend::{Backend, Peers};
use super::routes::{Api, Gate, router, unavailable};
use super::tls;

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// The unix socket (`listen`), created with mode 0660.
    pub socket: PathBuf,
    /// TCP addresses (`listen_tcp`); port 0 picks a free port.
    pub tcp: Vec<SocketAddr>,
    /// TLS on every TCP address.
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("API socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("API socket {0} is in use by a running server")]
    SocketInUse(PathBuf),
    #[error("API socket {0} exists and is not a socket; remove it or choose another `listen`")]
    NotASocket(PathBuf),
    #[error("API address {addr}: {source}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error("API TLS file {file}: {why}")]
    Tls { file: PathBuf, why: String },
}

/// The API's bound listeners, ready to serve.
pub struct Listeners {
    socket: PathBuf,
    unix: UnixListener,
    tcp: Vec<TcpListener>,
    tls: Option<TlsAcceptor>,
    peers: Peers,
}

/// A TLS handshake that takes longer than this is dropped, so that a silent client cannot
/// hold a connection slot (or shutdown) for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may take to send a request's head (or stay idle between requests).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl Listeners {
    /// Binds every listener (and reads the TLS files) or fails naming what could not be.
    pub async fn bind(settings: &ApiSettings) -> Result<Listeners, ServeError> {
        let tls = settings.tls.as_ref().map(tls::acceptor).transpose()?;
        let unix = bind_socket(&settings.socket)?;
        let mut tcp = Vec::new();
        for addr in &settings.tcp {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Tcp {
                    addr: *addr,
                    source,
                })?;
            tcp.push(listener);
        }
        Ok(Listeners {
            socket: settings.socket.clone(),
            unix,
            tcp,
            tls,
            peers: Peers::new(settings.tls.as_ref()),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The bound TCP addresses, with the ports picked for port 0.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }
}

/// Creates the socket's directory, removes a stale socket (one nobody answers on) and binds
/// with mode 0660, so that only root and the socket's group may drive the cluster.
fn bind_socket(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::SocketInUse(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => return Err(ServeError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    Ok(listener)
}

/// Serves the API on `listeners` until `shutdown`, answering 503 until `backend` (flotted's
/// connection to etcd, and its machine's systemd; a bare `Registry` for an API that runs no
/// agent) is there and then while `registered` is false. On shutdown it stops
/// accepting, lets open connections finish their requests (long polls return at once), and
/// removes the socket.
pub async fn serve<B: Into<Backend>>(
    listeners: Listeners,
    backend: impl Future<Output = Option<B>>,
    registered: impl Into<Gate>,
    shutdown: CancellationToken,
) {
    let registered: Gate = registered.into();
    let Listeners {
        socket,
        unix,
        tcp,
        tls,
        peers,
    } = listeners;
    let (current, routes) = watch::channel(unavailable());
    // Requests arriving while etcd is still out of reach get a 503 at once, rather than
    // waiting in the listen backlog; each new connection takes the routes current then.
    let install = async {
        let backend = tokio::select! {
            backend = backend => backend,
            _ = shutdown.cancelled() => None,
        };
        if let Some(backend) = backend {
            let Backend { registry, local } = backend.into();
            let api = Api {
                changes: registry.watch_changes(),
                catalog: crate::catalog::follow(&registry),
                registry,
                shutdown: shutdown.clone(),
                unit_list: Default::default(),
                state_list: Default::default(),
                local,
                peers,
            };
            let _unavailable = current.send_replace(router(api, registered));
        }
    };
    let graceful = GracefulShutdown::new();
    tracing::info!(socket = %socket.display(), tcp = ?tcp.iter().filter_map(|l| l.local_addr().ok()).collect::<Vec<_>>(), tls = tls.is_some(), "API listening");
    // The accept loops borrow `graceful` to hand each connection a watcher; they end only
    // at shutdown.
    let tcp_loops = tcp
        .into_iter()
        .map(|listener| accept_tcp(listener, tls.clone(), &routes, &graceful, &shutdown));
    tokio::join!(
        install,
        accept_unix(unix, &routes, &graceful, &shutdown),
        join_all(tcp_loops)
    );
    if let Err(e) = std::fs::remove_file(&socket) {
        tracing::warn!(socket = %socket.display(), error = %e, "cannot remove the API socket");
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API connections still open after {DRAIN_TIMEOUT:?}; dropping them");
    }
}

/// The pause after a failed accept (out of file descriptors, say), so that the loop does
/// not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn accept_unix(
    listener: UnixListener,
    routes: &watch::Receiver<Router>,
    graceful: &GracefulShutdown,
    shutdown: &CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let router = routes.borrow().clone();
                tokio::spawn(serve_connection(stream, router, graceful.watcher()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "API socket accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn accept_tcp(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    routes: &watch::Receiver<Router>,
    graceful: &GracefulShutdown,
    shutdown: &CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "API TCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let router = routes.borrow().clone();
        let watcher = graceful.watcher();
        match tls.clone() {
            None => {
                tokio::spawn(serve_connection(stream, router, watcher));
            }
            Some(acceptor) => {
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let stream = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "API TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "API TLS handshake timed out");
                                return;
                            }
                        },
                    };
                    serve_connection(stream, router, watcher).await;
                });
            }
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection until the client closes it or shutdown asks
/// it to finish.
async fn serve_connection<I>(io: I, router: Router, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // With a timer, hyper closes a connection that sends no complete request head within
    // HEADER_TIMEOUT, so that idle or stalled clients neither pile up nor hold up the drain.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}
