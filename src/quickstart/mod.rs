//! The quick start's local cluster (`packaging/local-cluster`, `src/bin/flotte-local-cluster.rs`):
//! etcd and three isolated systemd hosts with a flotted each, started with `isolated::Cluster`,
//! left running and remembered in a state directory (`state`), flottectl and flotted linked
//! where the example sidekicks run them (`links`), and the example units of `units/` started
//! through flottectl's own command line (`flottectl`, `examples`); `status` shows what runs.

mod examples;
mod flottectl;
mod links;
mod state;
mod status;
#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use examples::{Examples, FITS_NOWHERE, examples};
pub use links::{LINK_DIR, Links};
pub use state::{Health, State, down, health, load};
pub use status::{describe, status};

use crate::cli::endpoint::Endpoint;
use crate::cli::{CliError, Console};
use crate::isolated::{Cluster, ClusterRecord, ClusterSpec, EtcdAccess, HostSpec, IsolatedError};
use flottectl::Flottectl;

/// Where the state lives unless `FLOTTE_LOCAL_CLUSTER_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flotte-local-cluster";

/// The hosts: a name, metadata that lets `[X-Fleet]` examples choose between them, and a
/// capacity (flotted's `capacity`) that lets the examples' `Memory=`/`CPU=` requests choose by
/// size. The hosts share this machine, so the capacities are declared, not detected.
pub const HOSTS: &[(&str, &str, &str)] = &[
    ("host-1", "region=eu,disk=ssd", "memory=4G,cpu=2"),
    ("host-2", "region=eu,disk=hdd", "memory=2G,cpu=2"),
    ("host-3", "region=us,disk=ssd", "memory=1G,cpu=1"),
];

/// host-1's address in the quick start: 127.0.1.1, then 127.0.1.2 and 127.0.1.3.
pub const FIRST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);

/// The TCP port host-1's API listens on as well, on host-1's own address (the cluster's own
/// loopback address, so no other cluster's listener is in the way): the web page for a
/// browser, `FLOTTE_UI` in `env`.
pub const UI_PORT: u16 = 8470;

/// The port each host's flotted answers DNS on, on the host's own address (`dns_listen`):
/// DNS's own, which `dig @ADDRESS` asks without `-p`. Nothing else listens on these
/// addresses: systemd-resolved's stub is on 127.0.0.53 and 127.0.0.54.
pub const DNS_PORT: u16 = 53;

/// What `up` needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub flotted: PathBuf,
    /// The directory of example units to submit and start.
    pub units: PathBuf,
    /// Prefix of the hosts' cgroup names; unique per cluster on this machine.
    pub group_prefix: String,
    /// host-1's address; the others follow (`FIRST_IP` but in tests, which run several
    /// clusters at once).
    pub first_ip: Ipv4Addr,
    /// Where the example units find flottectl: links made before they start.
    pub links: Links,
}

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error(transparent)]
    Isolated(#[from] IsolatedError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    #[error("{} is not a state file of the local cluster: {source}", path.display())]
    StateFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Cli(#[from] CliError),
    /// A command line the quick start built that flottectl's parser refuses (an example file
    /// whose path is no unit argument).
    #[error("`flottectl {line}`: {source}")]
    Flottectl {
        line: String,
        source: Box<clap::Error>,
    },
    #[error(
        "the cluster is up, but its example units are not: {source}\n(`packaging/local-cluster down` stops the cluster)"
    )]
    Examples { source: Box<QuickstartError> },
}

impl QuickstartError {
    /// True when the error is the reader closing the output (`status | head`): the reader's
    /// choice, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            QuickstartError::Output(e) => e.kind() == io::ErrorKind::BrokenPipe,
            QuickstartError::Cli(e) => e.is_broken_pipe(),
            QuickstartError::Examples { source } => source.is_broken_pipe(),
            _ => false,
        }
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> QuickstartError {
    let what = what.into();
    move |source| QuickstartError::Io { what, source }
}

/// The spec `up` starts: the three hosts, each flotted listening on its host's directory.
pub fn spec(settings: &Settings) -> ClusterSpec {
    ClusterSpec {
        root: settings.state_dir.join("run"),
        group_prefix: settings.group_prefix.clone(),
        hosts: HOSTS
            .iter()
            .enumerate()
            .map(|(i, (name, metadata, capacity))| HostSpec {
                name: name.to_string(),
                metadata: metadata.to_string(),
                api_port: (i == 0).then_some(UI_PORT),
                settings: vec![
                    ("capacity".to_owned(), capacity.to_string()),
                    (
                        "dns_listen".to_owned(),
                        std::net::SocketAddr::from((host_ip(settings.first_ip, i), DNS_PORT))
                            .to_string(),
                    ),
                ],
            })
            .collect(),
        flotted: settings.flotted.clone(),
        settings: Vec::new(),
        etcd_access: EtcdAccess::Direct,
        first_ip: settings.first_ip,
    }
}

/// Host `i`'s address (from 0): the `i`-th after host-1's, as `isolated::Cluster` gives them.
fn host_ip(first: Ipv4Addr, i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(first) + i as u32)
}

/// flottectl's endpoint for the cluster: host-1's API socket.
pub fn endpoint(cluster: &ClusterRecord) -> Endpoint {
    Endpoint::Unix(cluster.members[0].socket.clone())
}

/// The shell lines of `env`: flottectl and etcdctl pointed at the cluster, the first through
/// host-1 (its API, and its flotted's configuration for the commands that read etcd); with
/// `bin_dir`, also a PATH that finds flottectl there. `FLOTTE_UI`, the web page's address on
/// host-1's TCP listener, and `FLOTTE_DNS`, host-1's DNS address for `dig @` (port 53), are shell
/// variables, not exported: flotted and `flottectl announce` read every exported `FLOTTE_*`
/// variable as a setting.
pub fn env(cluster: &ClusterRecord, bin_dir: Option<&Path>) -> String {
    let quote = flottectl::quoted;
    let mut lines = vec![
        format!(
            "export FLOTTECTL_ENDPOINT={}",
            quote(&endpoint(cluster).to_string())
        ),
        "export ETCDCTL_API=3".to_owned(),
        format!(
            "export ETCDCTL_ENDPOINTS={}",
            quote(&cluster.etcd.client_url)
        ),
        // `flottectl services` and `announce` read etcd's address as flotted does.
        format!(
            "export FLOTTE_CONFIG={}",
            quote(&cluster.members[0].config.display().to_string())
        ),
    ];
    if let Some(tcp) = cluster.members[0].tcp {
        lines.push(format!("FLOTTE_UI={}", quote(&ui_url(tcp))));
        // The TCP listener is on host-1's own address, where its DNS is too. The address
        // alone, since DNS_PORT is DNS's own: `dig @$FLOTTE_DNS` takes no `:PORT`.
        lines.push(format!("FLOTTE_DNS={}", tcp.ip()));
    }
    if let Some(dir) = bin_dir {
        lines.push(format!(
            "export PATH={}:\"$PATH\"",
            quote(&dir.display().to_string())
        ));
    }
    lines.join("\n") + "\n"
}

/// The web page on a TCP listener.
pub fn ui_url(tcp: std::net::SocketAddr) -> String {
    format!("http://{tcp}{}/", crate::wire::UI)
}

/// Starts the cluster and the example units, unless it is up already; a stale one is cleaned
/// up first.
pub async fn up(settings: &Settings, console: &mut Console<'_>) -> Result<State, QuickstartError> {
    let dir = &settings.state_dir;
    match health(dir)? {
        Health::Up(state) => {
            writeln!(
                console.out,
                "The local cluster in {} is already up.",
                dir.display()
            )?;
            flottectl::show(&Flottectl::new(&state.cluster), console).await?;
            return Ok(state);
        }
        Health::Stale(state, dead) => {
            writeln!(
                console.out,
                "Cleaning up the stale local cluster in {} (gone: {}).",
                dir.display(),
                dead.join(", ")
            )?;
            state::stop(dir, &state)?;
        }
        Health::Down => {}
    }
    let spec = spec(settings);
    // Left by an `up` that failed before recording anything: what it started died with it.
    match fs::remove_dir_all(&spec.root) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(format!("removing {}", spec.root.display()))(e));
        }
        _ => {}
    }
    fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    writeln!(
        console.out,
        "Starting etcd and {} hosts ({}) in {}...",
        HOSTS.len(),
        HOSTS
            .iter()
            .map(|(n, _, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    )?;
    let cluster = Cluster::start(spec).await?;
    let state = State {
        boot_id: state::boot_id()?,
        cluster: cluster.detach(),
    };
    // Recorded before anything else can fail, so that `down` finds what to stop.
    state::save(dir, &state)?;
    links::link(&settings.links, console)?;
    let flottectl = Flottectl::new(&state.cluster);
    examples::start(&flottectl, &settings.units, console)
        .await
        .map_err(|e| QuickstartError::Examples {
            source: Box::new(e),
        })?;
    flottectl::show(&flottectl, console).await?;
    writeln!(
        console.out,
        "\nThe local cluster is up: etcd at {}, state in {}.\n\
         Point flottectl and etcdctl at it with:\n\n    \
         eval \"$(packaging/local-cluster env)\"\n\n\
         then try `flottectl list-unit-files` or `etcdctl get --prefix /flotte/ --keys-only`.\n\
         `packaging/local-cluster down` stops it.",
        state.cluster.etcd.client_url,
        dir.display()
    )?;
    Ok(state)
}
