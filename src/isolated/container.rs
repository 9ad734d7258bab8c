//! A container with systemd as PID 1 on this machine (`systemd-nspawn -b`): a real system
//! manager with its own system bus, journald, `/run/systemd/system` and `system.slice`, for
//! testing what runs on real hosts (the Debian package, flotted.service). Its root is an
//! overlay of `/` with its upper layer on a tmpfs of its own, so that what it installs or
//! changes vanishes with it; it shares the machine's network (each container takes its own
//! 127.x address). See ../shared/notes/system-containers.md for what was tried.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cgroup::{Layout, Subtree};
use super::{IsolatedError, wait_for};
use crate::systemd::Bus;

/// Services of this machine's image that a test container must not start (they would bind
/// the machine's ports, fight over its disks or wait at a console), masked in the overlay.
const MASKED: &[&str] = &[
    "etcd.service",
    "etcd2.service",
    "postgresql.service",
    "getty@tty1.service",
    "console-getty.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "systemd-timesyncd.service",
];

/// Where the machine's share directory appears inside each container.
pub const SHARE: &str = "/mnt/share";

/// A booted container, powered off and removed when dropped.
pub struct Container {
    name: String,
    dir: PathBuf,
    group: Subtree,
    nspawn: Option<std::process::Child>,
    leader: i32,
    /// Mounts and cgroups are gone.
    removed: bool,
}

impl Container {
    /// Boots container `name` (also its hostname and machine name) with its state under `dir`
    /// and the machine's `share` directory at `SHARE`, and waits until its systemd reports the
    /// boot finished. `group` names its cgroup subtree (see `Host::start`).
    pub async fn boot(
        name: &str,
        dir: &Path,
        group: &str,
        share: &Path,
    ) -> Result<Container, IsolatedError> {
        super::require_root_tools(&["systemd-nspawn", "nsenter", "mount", "umount", "mountpoint"])
            .map_err(|e| match e {
                IsolatedError::Missing(what) if what.contains("systemd-nspawn") => {
                    IsolatedError::Missing(format!("{what} (Debian package systemd-container)"))
                }
                e => e,
            })?;
        let layout = Layout::detect().map_err(|e| IsolatedError::io("detecting cgroups", e))?;
        let io = |what: String| move |e| IsolatedError::io(what, e);
        let upper = dir.join("tmpfs");
        let root = dir.join("root");
        for d in [&upper, &root] {
            fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let group =
            Subtree::create(&layout, group).map_err(io(format!("creating cgroup {group}")))?;
        let mut container = Container {
            name: name.to_owned(),
            dir: dir.to_owned(),
            group,
            nspawn: None,
            leader: 0,
            removed: false,
        };
        // The upper layer must be on another filesystem than `/`, the lower one.
        run(
            "mount",
            &["-t", "tmpfs", "-o", "mode=0755", "none"],
            &[&upper],
        )
        .await?;
        for d in ["upper", "work"] {
            fs::create_dir_all(upper.join(d)).map_err(io(format!("creating {d}")))?;
        }
        let options = format!(
            "lowerdir=/,upperdir={},workdir={}",
            upper.join("upper").display(),
            upper.join("work").display()
        );
        run(
            "mount",
            &["-t", "overlay", "overlay", "-o", &options],
            &[&root],
        )
        .await?;
        // Written into the overlay only once it surely is one: never into the machine's `/`.
        run("mountpoint", &["-q"], &[&root]).await?;
        container.prepare_root(&root)?;

        let log = fs::File::create(dir.join("nspawn.log")).map_err(io("nspawn.log".into()))?;
        let join_cgroups: String = container
            .group
            .dirs()
            .iter()
            .map(|d| format!("echo $$ > '{}/cgroup.procs'\n", d.display()))
            .collect();
        // nspawn is started from a process already in the container's own cgroups: it creates
        // its `payload/` and `supervisor/` where it runs. `--keep-unit`: there is no systemd
        // on the machine to make a scope; `--register=no`: nor a machined.
        let script = format!(
            "set -e\n{join_cgroups}exec systemd-nspawn -D '{}' -b -M '{name}' --register=no \
             --keep-unit --console=passive --tmpfs=/tmp --bind='{}:{SHARE}'\n",
            root.display(),
            share.display()
        );
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("nspawn.log".into()))?)
            .stderr(log)
            .spawn()
            .map_err(io("spawning systemd-nspawn".into()))?;
        container.nspawn = Some(child);
        container.leader = wait_for(
            Duration::from_secs(20),
            || container.failure("systemd did not start as the container's PID 1"),
            || async { container.find_leader() },
        )
        .await?;
        container.wait_booted().await?;
        Ok(container)
    }

    /// The container's own identity, and no service of the machine's image that would clash.
    fn prepare_root(&self, root: &Path) -> Result<(), IsolatedError> {
        let io = |what: &str| {
            let what = format!("{}: {what}", self.name);
            move |e| IsolatedError::io(what, e)
        };
        let machine_id = format!("{:032x}\n", rand::random::<u128>());
        fs::write(root.join("etc/machine-id"), machine_id).map_err(io("writing machine-id"))?;
        fs::write(root.join("etc/hostname"), format!("{}\n", self.name))
            .map_err(io("writing hostname"))?;
        // The image forbids maintainer scripts to start services; a real host does not.
        match fs::remove_file(root.join("usr/sbin/policy-rc.d")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("removing policy-rc.d")(e));
            }
            _ => {}
        }
        // dpkg's man-db trigger rebuilds the whole index on every install: seconds.
        let _ = fs::remove_file(root.join("var/lib/man-db/auto-update"));
        let units = root.join("etc/systemd/system");
        for unit in MASKED {
            let link = units.join(unit);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink("/dev/null", &link).map_err(io("masking a unit"))?;
        }
        Ok(())
    }

    /// The container's PID 1: the process of its cgroups that is PID 1 of its own namespace.
    fn find_leader(&self) -> Option<i32> {
        self.group.pids().into_iter().find(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .is_some_and(|ids| {
                        let ids: Vec<&str> = ids.split_whitespace().collect();
                        ids.len() > 1 && ids.last() == Some(&"1")
                    })
            })
        })
    }

    /// Until `systemctl is-system-running --wait` says the boot finished; before the manager
    /// answers it says `offline` at once.
    async fn wait_booted(&self) -> Result<(), IsolatedError> {
        let last = std::cell::RefCell::new(String::new());
        wait_for(
            Duration::from_secs(60),
            || self.failure(&format!("the boot did not finish: `{}`", last.borrow())),
            || async {
                let out = self
                    .command("systemctl")
                    .args(["is-system-running", "--wait"])
                    .output()
                    .await
                    .ok()?;
                let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                *last.borrow_mut() = state.clone();
                // `degraded`: booted with a failed unit, which tests look at themselves.
                (state == "running" || state == "degraded").then_some(())
            },
        )
        .await
    }

    fn failure(&self, what: &str) -> String {
        let log = fs::read_to_string(self.dir.join("nspawn.log")).unwrap_or_default();
        format!(
            "container {}: {what}; nspawn said: {}",
            self.name,
            log.trim()
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// PID (on the machine) of the container's systemd.
    pub fn leader(&self) -> i32 {
        self.leader
    }

    /// A path of the container as it sees it, reached through its PID 1's root.
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader)).join(path.trim_start_matches('/'))
    }

    /// The container's system bus, from the machine.
    pub fn system_bus(&self) -> Bus {
        Bus::Address(format!(
            "unix:path={}",
            self.path("/run/dbus/system_bus_socket").display()
        ))
    }

    /// A command running `program` in every namespace of the container (as its root).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.leader.to_string())
            .args(["-a", "--"])
            .arg(program);
        cmd
    }

    /// A command running `args` as a transient service of the container's systemd (in its
    /// cgroups, as a unit there is), waiting for it and passing its output through.
    pub fn service_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.command("systemd-run");
        cmd.args(["--wait", "--pipe", "--quiet", "--collect", "--"])
            .args(args);
        cmd
    }

    /// Whether the container still runs.
    pub fn is_running(&self) -> bool {
        !self.removed && self.leader != 0 && Path::new(&format!("/proc/{}", self.leader)).exists()
    }

    /// Shuts the container down as `systemctl poweroff` does (its services stopped in order)
    /// and waits until nspawn exited; then its mounts and cgroups are removed.
    pub async fn power_off(&mut self) -> Result<(), IsolatedError> {
        self.stop_nspawn(Duration::from_secs(30)).await;
        self.remove()
    }

    /// SIGTERM to nspawn (the container's systemd shuts down), SIGKILL of its PID 1 after
    /// `grace`.
    async fn stop_nspawn(&mut self, grace: Duration) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        // The shell became nspawn (exec), so the child is nspawn itself.
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let start = Instant::now();
        // A std child (Drop stops containers too, outside any runtime): its exit is polled.
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if start.elapsed() > grace {
                if self.leader != 0 {
                    let _ = kill(Pid::from_raw(self.leader), Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Unmounts the overlay and its tmpfs and removes the cgroups (killing what is left) and
    /// what nspawn leaves in the machine's `/run`.
    fn remove(&mut self) -> Result<(), IsolatedError> {
        let mut first_error = None;
        if let Err(e) = self.group.kill_and_remove() {
            first_error.get_or_insert(IsolatedError::io(format!("removing {}", self.name), e));
        }
        for mount in [self.dir.join("root"), self.dir.join("tmpfs")] {
            let _ = std::process::Command::new("umount")
                .arg(&mount)
                .stderr(Stdio::null())
                .status();
            let mounted = std::process::Command::new("mountpoint")
                .arg("-q")
                .arg(&mount)
                .status()
                .is_ok_and(|s| s.success());
            if mounted {
                // Busy: detach it, so that no overlay outlives the test.
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&mount)
                    .status();
            }
        }
        let _ = fs::remove_dir_all(format!("/run/systemd/nspawn/propagate/{}", self.name));
        self.removed = true;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.nspawn.is_some() {
            let grace = Duration::from_secs(10);
            // Drop cannot await: a short runtime of its own for the shutdown.
            let stopped = std::thread::scope(|s| {
                s.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .map(|rt| rt.block_on(self.stop_nspawn(grace)))
                })
                .join()
            });
            if stopped.is_err() {
                eprintln!("isolated: stopping container {} panicked", self.name);
            }
        }
        if !self.removed
            && let Err(e) = self.remove()
        {
            eprintln!("isolated: {e}");
        }
    }
}

/// Unmounts what containers of test processes that died without cleaning up left mounted:
/// the overlays and tmpfs under a directory whose name holds `marker` followed by the dead
/// process's PID (`flotte-system-containers-<pid>-...`). Their processes went with their cgroups
/// (`sweep_stale_test_hosts`).
pub fn sweep_stale_mounts(marker: &str) {
    let Ok(mounts) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    // Deepest first: the overlay lies beside its tmpfs, both under the test's directory.
    let mut stale: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|point| {
            point
                .split_once(marker)
                .and_then(|(_, rest)| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect();
    stale.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in stale {
        let _ = std::process::Command::new("umount")
            .args(["-l", point])
            .status();
    }
}

/// Runs `program args paths`, failing with its stderr unless it succeeds.
async fn run(program: &str, args: &[&str], paths: &[&Path]) -> Result<(), IsolatedError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .args(paths)
        .output()
        .await
        .map_err(|e| IsolatedError::io(format!("running {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(IsolatedError::io(
            format!("{program} {} {paths:?}", args.join(" ")),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        ))
    }
}
