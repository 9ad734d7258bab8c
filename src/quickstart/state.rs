//! The state directory: the recorded cluster (`cluster.json`), whether all of it still runs,
//! and stopping what it records without trusting PIDs that may belong to other processes now.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{QuickstartError, io_error};
use crate::isolated::ClusterRecord;

const STATE_FILE: &str = "cluster.json";

/// The state file: the cluster, and the boot it was started in (after a reboot its PIDs
/// belong to other processes, which must not be killed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub boot_id: String,
    pub cluster: ClusterRecord,
}

/// Whether a cluster is recorded, and whether all of it runs.
#[derive(Debug)]
pub enum Health {
    Down,
    Up(State),
    /// Recorded, but some of it is gone: what is.
    Stale(State, Vec<String>),
}

fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

pub(super) fn boot_id() -> Result<String, QuickstartError> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .map_err(io_error("reading the boot ID"))
}

/// The recorded cluster, if any.
pub fn load(state_dir: &Path) -> Result<Option<State>, QuickstartError> {
    let path = state_file(state_dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("reading {}", path.display()))(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| QuickstartError::StateFile { path, source })
}

pub(super) fn save(state_dir: &Path, state: &State) -> Result<(), QuickstartError> {
    let path = state_file(state_dir);
    let text = serde_json::to_string_pretty(state).expect("the state always serializes");
    // Written aside and renamed, so a crash never leaves half a state file.
    let partial = path.with_extension("json.partial");
    fs::write(&partial, text + "\n")
        .and_then(|()| fs::rename(&partial, &path))
        .map_err(io_error(format!("writing {}", path.display())))
}

/// True when `pid` runs `program` (compared by file name). A PID alone could be another
/// process's since the cluster's died.
pub(super) fn runs(pid: i32, program: &str) -> bool {
    fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| is_program(&exe, program))
}

/// Whether `exe`, what a `/proc/PID/exe` link points to, is a file named `program`. The kernel
/// appends " (deleted)" once the file is gone: a package upgrade replaces `systemd` (and may
/// replace `etcd`), a rebuild replaces `flotted`, while the processes go on running them.
pub(super) fn is_program(exe: &Path, program: &str) -> bool {
    exe.file_name().is_some_and(|name| {
        let name = name.as_bytes();
        let name = name.strip_suffix(b" (deleted)").unwrap_or(name);
        OsStr::from_bytes(name) == program
    })
}

/// The parts of a recorded cluster that are gone.
pub(super) fn dead_parts(state: &State, boot_id: &str) -> Vec<String> {
    if state.boot_id != boot_id {
        return vec!["everything: the machine rebooted since it started".to_owned()];
    }
    let cluster = &state.cluster;
    let mut dead = Vec::new();
    if !runs(cluster.etcd.pid, "etcd") {
        dead.push(format!("etcd (pid {})", cluster.etcd.pid));
    }
    for m in &cluster.members {
        if !runs(m.host.pid, "systemd") {
            dead.push(format!("{}'s systemd (pid {})", m.host.name, m.host.pid));
        }
        match m.flotted_pid {
            Some(pid) if runs(pid, "flotted") => {}
            Some(pid) => dead.push(format!("{}'s flotted (pid {pid})", m.host.name)),
            None => dead.push(format!("{}'s flotted", m.host.name)),
        }
    }
    dead
}

pub fn health(state_dir: &Path) -> Result<Health, QuickstartError> {
    let Some(state) = load(state_dir)? else {
        return Ok(Health::Down);
    };
    let dead = dead_parts(&state, &boot_id()?);
    Ok(if dead.is_empty() {
        Health::Up(state)
    } else {
        Health::Stale(state, dead)
    })
}

/// Stops what a state records, without trusting PIDs of another boot or of other programs,
/// and removes the state.
pub(super) fn stop(state_dir: &Path, state: &State) -> Result<(), QuickstartError> {
    let same_boot = state.boot_id == boot_id()?;
    let cluster = &state.cluster;
    for m in &cluster.members {
        if let Some(pid) = m
            .flotted_pid
            .filter(|pid| same_boot && runs(*pid, "flotted"))
        {
            // Gone meanwhile is as good as stopped.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        // By cgroup, not by PID: safe whatever happened since.
        m.host.kill()?;
    }
    if same_boot && runs(cluster.etcd.pid, "etcd") {
        cluster.etcd.kill()?;
    }
    for dir in [&cluster.etcd.data_dir, &cluster.root] {
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(format!("removing {}", dir.display()))(e));
            }
            _ => {}
        }
    }
    fs::remove_file(state_file(state_dir))
        .or_else(|e| match e.kind() {
            io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .map_err(io_error("removing the state file"))?;
    // The directory goes too when nothing else is in it; a user's own files stay.
    let _ = fs::remove_dir(state_dir);
    Ok(())
}

/// Stops the recorded cluster; `None` when there was none.
pub fn down(state_dir: &Path) -> Result<Option<State>, QuickstartError> {
    let Some(state) = load(state_dir)? else {
        return Ok(None);
    };
    stop(state_dir, &state)?;
    Ok(Some(state))
}
