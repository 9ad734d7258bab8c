//! An isolated systemd "host" on this machine: a systemd user manager with its own cgroup
//! subtree, mount and UTS namespaces (own hostname, own `/run`, own journald, own machine ID),
//! reachable over its own D-Bus socket. Several run side by side without clashing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cgroup::{Layout, Subtree};
use super::{IsolatedError, wait_for};
use crate::machine::MachineId;
use crate::systemd::{Bus, Systemd};

/// What is needed to find and stop a host, also after the process that started it is gone
/// (`packaging/local-cluster` keeps it in its state directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRecord {
    pub name: String,
    pub dir: PathBuf,
    pub machine_id: MachineId,
    /// PID of the host's systemd manager (also the process whose namespaces it owns).
    pub pid: i32,
    pub cgroup_dirs: Vec<PathBuf>,
}

impl HostRecord {
    pub fn bus(&self) -> Bus {
        Bus::Address(format!("unix:path={}", self.dir.join("bus").display()))
    }

    pub fn is_running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// A path as the host sees it (its `/run` is its own), reached from outside through its
    /// manager's root: `/proc/<pid>/root/<path>`.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(path.trim_start_matches('/'))
    }

    /// Kills everything in the host's cgroups and removes them.
    pub fn kill(&self) -> Result<(), IsolatedError> {
        Subtree::from_dirs(self.cgroup_dirs.clone())
            .kill_and_remove()
            .map_err(|e| IsolatedError::io(format!("stopping host {}", self.name), e))
    }

    /// A command that runs `program` inside the host's mount and UTS namespaces, with the
    /// host's runtime directory as `XDG_RUNTIME_DIR` (so `systemctl --user` and `journalctl`
    /// talk to this host).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid.to_string())
            .args(["-m", "-u", "--"])
            .arg(program)
            .env("XDG_RUNTIME_DIR", &self.dir);
        cmd
    }
}

/// A running host, stopped when dropped (unless detached).
pub struct Host {
    record: HostRecord,
    detached: bool,
}

impl Host {
    /// Starts host `name` (also its hostname) with state under `dir`, which must not be in use.
    /// `group` names its cgroup subtree; tests include their PID in it so leftovers of a killed
    /// test run can be recognised (see `isolated::sweep_stale_test_hosts`).
    pub async fn start(name: &str, dir: &Path, group: &str) -> Result<Host, IsolatedError> {
        let machine_id = MachineId::new(&format!("{:032x}", rand::random::<u128>()))
            .expect("32 hex digits are a machine ID");
        Self::start_as(name, dir, group, machine_id).await
    }

    /// Like `start`, with the machine ID given: a host that was killed, started again in its
    /// directory, is a machine that rebooted (its `/run` and units are gone, its ID stays).
    pub async fn start_as(
        name: &str,
        dir: &Path,
        group: &str,
        machine_id: MachineId,
    ) -> Result<Host, IsolatedError> {
        super::require_root_tools(&["unshare", "nsenter", "mount", "hostname"])?;
        for bin in [SYSTEMD, JOURNALD] {
            if !Path::new(bin).exists() {
                return Err(IsolatedError::Missing(format!(
                    "{bin} (Debian package systemd)"
                )));
            }
        }
        let layout = Layout::detect().map_err(|e| IsolatedError::io("detecting cgroups", e))?;
        fs::create_dir_all(dir)
            .map_err(|e| IsolatedError::io(format!("creating {}", dir.display()), e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| IsolatedError::io(format!("chmod {}", dir.display()), e))?;
        // A killed host's bus socket stays behind; readiness is its new one answering.
        let _ = fs::remove_file(dir.join("bus"));
        fs::write(dir.join("machine-id"), format!("{machine_id}\n"))
            .map_err(|e| IsolatedError::io("writing machine-id", e))?;
        let subtree = Subtree::create(&layout, group)
            .map_err(|e| IsolatedError::io(format!("creating cgroup {group}"), e))?;

        let script = start_script(name, dir, &layout, group, subtree.dirs());
        let log = fs::File::create(dir.join("host.log"))
            .map_err(|e| IsolatedError::io("creating host.log", e))?;
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("XDG_RUNTIME_DIR", dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| IsolatedError::io("host.log", e))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|e| IsolatedError::io("spawning the host's shell", e))?;
        let record = HostRecord {
            name: name.to_owned(),
            dir: dir.to_owned(),
            machine_id,
            pid: child.id() as i32,
            cgroup_dirs: subtree.dirs().to_vec(),
        };
        // The child is reaped by whoever kills the cgroup; we do not wait on it here.
        drop(child);
        let host = Host {
            record,
            detached: false,
        };
        host.wait_ready().await?;
        Ok(host)
    }

    async fn wait_ready(&self) -> Result<(), IsolatedError> {
        let bus = self.record.bus();
        let socket = self.record.dir.join("bus");
        let log = self.record.dir.join("host.log");
        wait_for(
            Duration::from_secs(20),
            || {
                format!(
                    "host {}: systemd did not answer on {} (log: {})",
                    self.record.name,
                    socket.display(),
                    fs::read_to_string(&log).unwrap_or_default().trim()
                )
            },
            || async {
                if !socket.exists() || !self.record.is_running() {
                    return None;
                }
                let systemd = Systemd::connect(&bus).await.ok()?;
                systemd.version().await.ok()
            },
        )
        .await
        .map(drop)
    }

    pub fn record(&self) -> &HostRecord {
        &self.record
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn machine_id(&self) -> &MachineId {
        &self.record.machine_id
    }

    pub fn bus(&self) -> Bus {
        self.record.bus()
    }

    pub fn dir(&self) -> &Path {
        &self.record.dir
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        self.record.command(program)
    }

    /// Stops the host now: every process in its cgroups is killed.
    pub fn kill(&mut self) -> Result<(), IsolatedError> {
        self.detached = true;
        self.record.kill()
    }

    /// Leaves the host running after this value is dropped; the record is how to stop it.
    pub fn detach(mut self) -> HostRecord {
        self.detached = true;
        self.record.clone()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.detached
            && let Err(e) = self.record.kill()
        {
            eprintln!("isolated: {e}");
        }
    }
}

const SYSTEMD: &str = "/lib/systemd/systemd";
const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// The shell that becomes the host: it moves itself into the host's cgroups, enters new mount,
/// cgroup and UTS namespaces, makes the cgroup subtree the namespace's cgroup root, gives the
/// host a private `/run` (where `/run/systemd/system` must exist, inside the namespace only),
/// a tmpfs for the manager's runtime state, journal and machine ID, starts journald and
/// becomes the systemd user manager.
fn start_script(
    name: &str,
    dir: &Path,
    layout: &Layout,
    group: &str,
    cgroup_dirs: &[PathBuf],
) -> String {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let join_cgroups: String = cgroup_dirs
        .iter()
        .map(|d| format!("echo $$ > {}/cgroup.procs\n", q(d)))
        .collect();
    let bind_cgroups: String = layout
        .hierarchies()
        .iter()
        .map(|h| format!("mount --bind {} {}\n", q(&h.join(group)), q(h)))
        .collect();
    let inner = format!(
        "set -e
hostname {name}
{bind_cgroups}mount -t tmpfs none /run
mkdir -p /run/systemd/system /run/systemd/journal {runtime}
mount -t tmpfs none {runtime}
if [ -d /var/log/journal ]; then mount -t tmpfs none /var/log/journal; fi
mount --bind {machine_id} /etc/machine-id
{JOURNALD} &
i=0; while [ ! -S /run/systemd/journal/stdout ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done
exec {SYSTEMD} --user
",
        name = shell_quote(name),
        machine_id = q(&dir.join("machine-id")),
        // The user manager's runtime state ($XDG_RUNTIME_DIR/systemd: runtime unit links,
        // transient units, its private socket) on a tmpfs, as /run/user/UID is on a real
        // machine; the host directory itself is on whatever disk holds the test's files.
        runtime = q(&dir.join("systemd")),
    );
    format!(
        "set -e\n{join_cgroups}exec unshare -m -C -u sh -c {}\n",
        shell_quote(&inner)
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
