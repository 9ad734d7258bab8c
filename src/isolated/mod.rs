//! Real etcd servers and isolated systemd hosts on this machine, for integration tests,
//! benchmarks and `packaging/local-cluster` (the quick start). Needs root (cgroups, namespaces,
//! mounts). Behind the `isolated` feature: flotted and flottectl never start hosts of their own.

mod cgroup;
mod cluster;
mod container;
mod etcd;
mod host;
mod link;
mod simulated;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

pub use cgroup::{Layout, Subtree};
pub use cluster::{Cluster, ClusterRecord, ClusterSpec, EtcdAccess, HostSpec, MemberRecord};
pub use container::{Container, SHARE, sweep_stale_mounts};
pub use etcd::{Etcd, EtcdCluster, EtcdRecord, EtcdTls};
pub use host::{Host, HostRecord};
pub use link::{Link, LinkState};
pub use simulated::{SimulatedCalls, SimulatedSystemd};

#[derive(Debug, thiserror::Error)]
pub enum IsolatedError {
    #[error("missing prerequisite: {0}")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("timed out after {after:?}: {what}")]
    Timeout { after: Duration, what: String },
}

impl IsolatedError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        IsolatedError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Polls `check` until it yields a value or `deadline` passes; the error then says, through
/// `what`, which condition never came true. For waiting on things that have no event to await
/// (a process coming up); never for asserting on flotte's own behaviour where a watch exists.
pub async fn wait_for<T, F, Fut, W>(
    deadline: Duration,
    what: W,
    mut check: F,
) -> Result<T, IsolatedError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    W: FnOnce() -> String,
{
    let start = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() >= deadline {
            return Err(IsolatedError::Timeout {
                after: deadline,
                what: what(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Fails unless running as root with every named program on the PATH.
fn require_root_tools(programs: &[&str]) -> Result<(), IsolatedError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(IsolatedError::Missing(
            "root privileges (isolated systemd hosts need cgroups, namespaces and mounts)".into(),
        ));
    }
    for program in programs {
        if which(program).is_none() {
            return Err(IsolatedError::Missing(format!("`{program}` on the PATH")));
        }
    }
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Kills hosts left behind by test processes that died without cleaning up: cgroup subtrees
/// named `flotte-test-<pid>-...` whose PID is no longer alive.
pub fn sweep_stale_test_hosts() {
    let Ok(layout) = Layout::detect() else { return };
    for hierarchy in layout.hierarchies() {
        let Ok(entries) = std::fs::read_dir(&hierarchy) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = name
                .strip_prefix("flotte-test-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{owner}")).exists() {
                let dirs: Vec<_> = layout.hierarchies().iter().map(|h| h.join(&name)).collect();
                if let Err(e) = Subtree::from_dirs(dirs).kill_and_remove() {
                    eprintln!("isolated: removing stale {name}: {e}");
                }
            }
        }
    }
}
