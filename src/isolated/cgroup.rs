//! The cgroup hierarchies an isolated systemd host gets a subtree of: both the named `systemd`
//! hierarchy and the unified one on a hybrid machine, the single cgroup2 tree on a unified one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ROOT: &str = "/sys/fs/cgroup";

/// How cgroups are mounted on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1 controllers, `name=systemd` at `/sys/fs/cgroup/systemd`, cgroup2 at
    /// `/sys/fs/cgroup/unified` (what this project's build machines have).
    Hybrid,
    /// cgroup2 only, mounted at `/sys/fs/cgroup` (systemd as PID 1 on a modern distribution).
    Unified,
}

impl Layout {
    pub fn detect() -> io::Result<Layout> {
        Self::detect_at(Path::new(ROOT))
    }

    fn detect_at(root: &Path) -> io::Result<Layout> {
        if root.join("cgroup.controllers").exists() {
            Ok(Layout::Unified)
        } else if root.join("systemd/cgroup.procs").exists()
            && root.join("unified/cgroup.procs").exists()
        {
            Ok(Layout::Hybrid)
        } else {
            Err(io::Error::other(format!(
                "no usable cgroup layout under {}: need cgroup2 there, or the named `systemd` \
                 hierarchy plus cgroup2 at `unified`",
                root.display()
            )))
        }
    }

    /// Mount points of the hierarchies a host needs, relative names used inside its namespace.
    pub fn hierarchies(&self) -> Vec<PathBuf> {
        match self {
            Layout::Hybrid => vec![
                Path::new(ROOT).join("systemd"),
                Path::new(ROOT).join("unified"),
            ],
            Layout::Unified => vec![PathBuf::from(ROOT)],
        }
    }
}

/// A cgroup subtree named `group` in every hierarchy of the layout.
#[derive(Debug, Clone)]
pub struct Subtree {
    dirs: Vec<PathBuf>,
}

impl Subtree {
    pub fn create(layout: &Layout, group: &str) -> io::Result<Subtree> {
        let dirs: Vec<PathBuf> = layout.hierarchies().iter().map(|h| h.join(group)).collect();
        for dir in &dirs {
            fs::create_dir_all(dir)?;
        }
        Ok(Subtree { dirs })
    }

    pub fn from_dirs(dirs: Vec<PathBuf>) -> Subtree {
        Subtree { dirs }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every process in the subtree, in any hierarchy.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            collect_pids(dir, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills every process in the subtree until none is left (processes may fork while being
    /// killed), then removes the cgroup directories, deepest first.
    pub fn kill_and_remove(&self) -> io::Result<()> {
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // A process that exited meanwhile gives ESRCH, which is what we want anyway.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for dir in &self.dirs {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<i32>) {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&entry.path(), pids);
            }
        }
    }
}

/// Cgroup directories can only be removed empty of children, so depth first; a directory that
/// is already gone is fine.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    // A cgroup whose last process was just killed can stay busy for a moment.
    let mut last = Ok(());
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Err(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    last.map_err(|e| io::Error::new(e.kind(), format!("removing {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_detected_from_the_files_under_the_root() {
        let root = tempfile::tempdir().unwrap();
        assert!(Layout::detect_at(root.path()).is_err());
        for h in ["systemd", "unified"] {
            fs::create_dir_all(root.path().join(h)).unwrap();
            fs::write(root.path().join(h).join("cgroup.procs"), "").unwrap();
        }
        assert_eq!(Layout::detect_at(root.path()).unwrap(), Layout::Hybrid);
        fs::write(root.path().join("cgroup.controllers"), "cpu memory").unwrap();
        assert_eq!(Layout::detect_at(root.path()).unwrap(), Layout::Unified);
    }
}
