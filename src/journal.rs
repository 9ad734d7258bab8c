//! A unit's journal on this machine, read by running `journalctl` (Debian's systemd package):
//! the only code that runs it. Which of journalctl's matches finds a unit's lines depends on
//! the manager that runs it (`Scope`, from flotted's `systemd_bus`); the arguments are a pure
//! function of the request (`args`).

use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::systemd::Bus;
use crate::unit::UnitName;
use crate::wire::JournalOutput;

/// journalctl as Debian installs it.
pub const JOURNALCTL: &str = "journalctl";

/// How journalctl finds a unit's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A unit of the system manager: `--unit`.
    System,
    /// A unit of a user manager: `--user-unit` (the calling user's manager).
    User,
    /// A manager at a D-Bus address of its own (an isolated host's): whichever of the two
    /// matches, since such a manager may run units as either (a user manager running as
    /// root at the root of its cgroup namespace, as `isolated` hosts do, files its units'
    /// lines as system units).
    Either,
}

impl Scope {
    pub fn of(bus: &Bus) -> Scope {
        match bus {
            Bus::System => Scope::System,
            Bus::User => Scope::User,
            Bus::Address(_) => Scope::Either,
        }
    }
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub unit: UnitName,
    /// How many past lines.
    pub lines: u32,
    /// Then wait for new ones, until stopped.
    pub follow: bool,
    pub output: JournalOutput,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("this machine has no journalctl (Debian package systemd), so no journal to read")]
    NoJournalctl,
    #[error("cannot run journalctl: {0}")]
    Spawn(std::io::Error),
    #[error(
        "this machine has no journal: journalctl found no journal files (is systemd-journald running?)"
    )]
    NoJournal,
    #[error("journalctl failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
}

/// What journalctl on this machine says on its standard error when there is no journal at
/// all (no journald ever ran, or its files are elsewhere).
pub const NO_JOURNAL_FILES: &str = "No journal files were found";

/// journalctl's arguments for `read` (after the program name). Values are joined to their
/// options (`--unit=NAME`), so that no unit name is ever read as an option.
pub fn args(scope: Scope, read: &Read) -> Vec<String> {
    let mut args = vec!["--no-pager".to_owned()];
    let unit = read.unit.as_str();
    match scope {
        Scope::System => args.push(format!("--unit={unit}")),
        Scope::User => args.push(format!("--user-unit={unit}")),
        // Two matches of different kinds: journalctl shows the lines of either.
        Scope::Either => {
            args.push(format!("--unit={unit}"));
            args.push(format!("--user-unit={unit}"));
        }
    }
    args.push(format!("--lines={}", read.lines));
    args.push(format!("--output={}", read.output.as_str()));
    if read.follow {
        args.push("--follow".to_owned());
    }
    args
}

/// Starts journalctl for `read`, its standard output and error piped; it is killed when the
/// child is dropped (the client went away).
pub fn spawn(scope: Scope, read: &Read) -> Result<Child, JournalError> {
    Command::new(JOURNALCTL)
        .args(args(scope, read))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => JournalError::NoJournalctl,
            _ => JournalError::Spawn(e),
        })
}

/// The unit's last `lines` lines in `short` output, oldest first: what a status shows.
pub async fn tail(scope: Scope, unit: &UnitName, lines: u32) -> Result<Vec<String>, JournalError> {
    let read = Read {
        unit: unit.clone(),
        lines,
        follow: false,
        output: JournalOutput::Short,
    };
    let out = spawn(scope, &read)?
        .wait_with_output()
        .await
        .map_err(JournalError::Spawn)?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.contains(NO_JOURNAL_FILES) {
        return Err(JournalError::NoJournal);
    }
    if !out.status.success() {
        return Err(JournalError::Failed {
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(tail_lines(&String::from_utf8_lossy(&out.stdout)))
}

/// journalctl's output as lines, without its own notes (`-- No entries --`, `-- Boot ... --`):
/// a status shows entries only.
fn tail_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !(l.starts_with("-- ") && l.ends_with(" --")))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_matches_the_unit_its_manager_runs() {
        let read = |lines, follow, output| Read {
            unit: UnitName::new("-web@a.service").unwrap(),
            lines,
            follow,
            output,
        };
        for (scope, read, expected) in [
            (
                Scope::System,
                read(10, false, JournalOutput::Short),
                "--no-pager --unit=-web@a.service --lines=10 --output=short",
            ),
            (
                Scope::User,
                read(0, true, JournalOutput::Json),
                "--no-pager --user-unit=-web@a.service --lines=0 --output=json --follow",
            ),
            (
                Scope::Either,
                read(5, false, JournalOutput::Cat),
                "--no-pager --unit=-web@a.service --user-unit=-web@a.service --lines=5 --output=cat",
            ),
        ] {
            assert_eq!(args(scope, &read).join(" "), expected);
        }
        assert_eq!(Scope::of(&Bus::System), Scope::System);
        assert_eq!(Scope::of(&Bus::User), Scope::User);
        assert_eq!(
            Scope::of(&Bus::Address("unix:path=/h/bus".into())),
            Scope::Either
        );
    }

    #[test]
    fn a_status_shows_entries_without_journalctls_notes() {
        let out = "-- Boot 1a2b --\nDec 01 10:00:00 h sh[1]: -- not a note\nDec 01 10:00:01 h sh[1]: b\n-- No entries --\n";
        assert_eq!(
            tail_lines(out),
            [
                "Dec 01 10:00:00 h sh[1]: -- not a note",
                "Dec 01 10:00:01 h sh[1]: b"
            ]
        );
    }
}
