//! `status [MACHINE:]UNIT...`: what `systemctl status` shows, from the machines the unit runs
//! on (`/flotte/v1/units/NAME/status`; the API asks each machine's flotted, no SSH). A block per
//! unit and machine: `● unit - description`, its machine, Loaded, Active (since when), Main
//! PID, Tasks, Memory and CPU, then its last journal lines; a unit placed nowhere says so and
//! why. Which unit and machine an argument names (`UnitTarget`, `resolve`) and the text
//! (`render`) are pure functions.

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use super::client::Client;
use super::drain::resolve_machine;
use super::fields::{Detail, machine_id};
use super::{CliError, Console};
use crate::unit::{NameError, UnitName};
use crate::wire;

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Units (`.service` implied); MACHINE:UNIT shows one machine's, MACHINE being its ID, a
    /// unique ID prefix or its hostname
    #[arg(required = true, value_name = "[MACHINE:]UNIT")]
    pub units: Vec<UnitTarget>,
    /// Do not shorten machine IDs
    #[arg(short = 'l', long)]
    pub full: bool,
}

/// A `[MACHINE:]UNIT` argument as written. Unit names may hold `:` themselves, so `a:b` is
/// kept both ways until the machines are known: machine `a`'s `b.service`, or the unit
/// `a:b.service` when no machine is called `a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitTarget {
    machine: Option<String>,
    unit: UnitName,
    /// The whole argument as a unit name, when it has a machine part and is one.
    whole: Option<UnitName>,
}

impl FromStr for UnitTarget {
    type Err = NameError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let whole = UnitName::from_argument(arg);
        match arg.split_once(':') {
            Some((machine, unit)) if !machine.is_empty() => match UnitName::from_argument(unit) {
                Ok(unit) => Ok(UnitTarget {
                    machine: Some(machine.to_owned()),
                    unit,
                    whole: whole.ok(),
                }),
                Err(e) => whole.map_err(|_| e).map(|unit| UnitTarget {
                    machine: None,
                    unit,
                    whole: None,
                }),
            },
            _ => whole.map(|unit| UnitTarget {
                machine: None,
                unit,
                whole: None,
            }),
        }
    }
}

impl UnitTarget {
    pub fn has_machine(&self) -> bool {
        self.machine.is_some()
    }
}

/// The machine (a full ID) and unit an argument names, given the cluster's machines.
pub fn resolve(
    target: &UnitTarget,
    machines: &[wire::Machine],
) -> Result<(Option<String>, UnitName), CliError> {
    let Some(machine) = &target.machine else {
        return Ok((None, target.unit.clone()));
    };
    match (resolve_machine(machine, machines), &target.whole) {
        (Ok(id), _) => Ok((Some(id), target.unit.clone())),
        (Err(CliError::MachineNotFound(_)), Some(whole)) => Ok((None, whole.clone())),
        (Err(e), _) => Err(e),
    }
}

pub(super) async fn run(
    client: &Client,
    console: &mut Console<'_>,
    args: &StatusArgs,
) -> Result<(), CliError> {
    let machines = if args.units.iter().any(UnitTarget::has_machine) {
        client.machines().await?
    } else {
        Vec::new()
    };
    let detail = if args.full {
        Detail::Full
    } else {
        Detail::Short
    };
    for (i, target) in args.units.iter().enumerate() {
        let (machine, unit) = resolve(target, &machines)?;
        let status = client.unit_status(&unit, machine.as_deref()).await?;
        if i > 0 {
            writeln!(console.out)?;
        }
        write!(console.out, "{}", render(&status, now_usec(), detail))?;
        console.out.flush()?;
    }
    Ok(())
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A unit's status as text: a block per machine, blank lines between them.
pub fn render(status: &wire::UnitStatus, now_usec: u64, detail: Detail) -> String {
    if status.machines.is_empty() {
        return unplaced(status);
    }
    status
        .machines
        .iter()
        .map(|m| machine_block(status, m, now_usec, detail))
        .collect::<Vec<_>>()
        .join("\n")
}

/// systemctl's labels, right-aligned before the colon.
fn field(out: &mut String, label: &str, value: &str) {
    out.push_str(&format!("{label:>11}: {value}\n"));
}

fn header(name: &str, dot: &str, description: &str) -> String {
    if description.is_empty() || description == name {
        format!("{dot} {name}\n")
    } else {
        format!("{dot} {name} - {description}\n")
    }
}

fn unplaced(status: &wire::UnitStatus) -> String {
    let mut out = header(&status.name, "○", &status.description);
    field(&mut out, "Placed", "on no machine");
    if !status.reason.is_empty() {
        field(&mut out, "Reason", &status.reason);
    }
    field(&mut out, "Desired", &status.desired_state);
    out
}

/// systemctl's dot: full while the unit runs, a cross when it failed, empty otherwise.
fn dot(active: &str) -> &'static str {
    match active {
        "active" | "reloading" | "refreshing" | "activating" | "deactivating" => "●",
        "failed" => "×",
        _ => "○",
    }
}

fn machine_block(
    status: &wire::UnitStatus,
    m: &wire::MachineStatus,
    now_usec: u64,
    detail: Detail,
) -> String {
    let description = if m.description.is_empty() {
        &status.description
    } else {
        &m.description
    };
    let mut out = header(&status.name, dot(&m.active_state), description);
    let id = machine_id(&m.machine_id, detail);
    if m.hostname.is_empty() {
        field(&mut out, "Machine", &id);
    } else {
        field(&mut out, "Machine", &format!("{id}/{}", m.hostname));
    }
    if !m.load_state.is_empty() {
        if m.fragment_path.is_empty() {
            field(&mut out, "Loaded", &m.load_state);
        } else {
            field(
                &mut out,
                "Loaded",
                &format!("{} ({})", m.load_state, m.fragment_path),
            );
        }
    }
    if !m.active_state.is_empty() {
        let mut active = if m.active_state == "failed" && !m.result.is_empty() {
            format!("failed (Result: {})", m.result)
        } else if m.sub_state.is_empty() {
            m.active_state.clone()
        } else {
            format!("{} ({})", m.active_state, m.sub_state)
        };
        if m.since > 0 {
            active.push_str(&format!(
                " since {}; {}",
                timestamp(m.since),
                ago(now_usec.saturating_sub(m.since))
            ));
        }
        field(&mut out, "Active", &active);
    }
    if m.main_pid > 0 {
        let pid = if m.main_process.is_empty() {
            m.main_pid.to_string()
        } else {
            format!("{} ({})", m.main_pid, m.main_process)
        };
        field(&mut out, "Main PID", &pid);
    }
    if let Some(tasks) = m.tasks {
        let tasks = match m.tasks_max {
            Some(max) => format!("{tasks} (limit: {max})"),
            None => tasks.to_string(),
        };
        field(&mut out, "Tasks", &tasks);
    }
    if let Some(memory) = m.memory_bytes {
        field(&mut out, "Memory", &bytes(memory));
    }
    if let Some(cpu) = m.cpu_nsec {
        field(&mut out, "CPU", &cpu_time(cpu));
    }
    if !m.unreachable.is_empty() {
        let shown = if m.active_state.is_empty() {
            m.unreachable.clone()
        } else {
            format!(
                "{}; the states above are its agent's last report",
                m.unreachable
            )
        };
        field(&mut out, "Warning", &shown);
    }
    if !m.journal.is_empty() || !m.journal_error.is_empty() {
        out.push('\n');
    }
    for line in &m.journal {
        out.push_str(line);
        out.push('\n');
    }
    if !m.journal_error.is_empty() {
        let on = if m.hostname.is_empty() {
            id
        } else {
            m.hostname.clone()
        };
        out.push_str(&format!("-- {on}: {} --\n", m.journal_error));
    }
    out
}

/// systemd's microseconds since the epoch as `systemctl status` writes them, in UTC:
/// `Tue 2026-12-01 10:00:00 UTC`.
pub fn timestamp(usec: u64) -> String {
    let format = time::format_description::parse_borrowed::<2>(
        "[weekday repr:short] [year]-[month]-[day] [hour]:[minute]:[second] UTC",
    )
    .expect("a valid format description");
    time::OffsetDateTime::from_unix_timestamp((usec / 1_000_000) as i64)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{usec} µs after the epoch"))
}

const USEC_PER_SEC: u64 = 1_000_000;
const USEC_PER_MINUTE: u64 = 60 * USEC_PER_SEC;
const USEC_PER_HOUR: u64 = 60 * USEC_PER_MINUTE;
const USEC_PER_DAY: u64 = 24 * USEC_PER_HOUR;
const USEC_PER_WEEK: u64 = 7 * USEC_PER_DAY;
const USEC_PER_MONTH: u64 = 2_629_800 * USEC_PER_SEC;
const USEC_PER_YEAR: u64 = 31_557_600 * USEC_PER_SEC;

/// How long ago, as systemd's `format_timestamp_relative` says it: the two largest units
/// where they matter (`1h 5min ago`, `3 days ago`).
pub fn ago(d: u64) -> String {
    let text = if d >= USEC_PER_YEAR {
        format!(
            "{} years {} months",
            d / USEC_PER_YEAR,
            d % USEC_PER_YEAR / USEC_PER_MONTH
        )
    } else if d >= USEC_PER_MONTH {
        format!(
            "{} months {} days",
            d / USEC_PER_MONTH,
            d % USEC_PER_MONTH / USEC_PER_DAY
        )
    } else if d >= USEC_PER_WEEK {
        format!(
            "{} weeks {} days",
            d / USEC_PER_WEEK,
            d % USEC_PER_WEEK / USEC_PER_DAY
        )
    } else if d >= 2 * USEC_PER_DAY {
        format!("{} days", d / USEC_PER_DAY)
    } else if d >= 25 * USEC_PER_HOUR {
        format!("1 day {}h", (d - USEC_PER_DAY) / USEC_PER_HOUR)
    } else if d >= 6 * USEC_PER_HOUR {
        format!("{}h", d / USEC_PER_HOUR)
    } else if d >= USEC_PER_HOUR {
        format!(
            "{}h {}min",
            d / USEC_PER_HOUR,
            d % USEC_PER_HOUR / USEC_PER_MINUTE
        )
    } else if d >= 5 * USEC_PER_MINUTE {
        format!("{}min", d / USEC_PER_MINUTE)
    } else if d >= USEC_PER_MINUTE {
        format!(
            "{}min {}s",
            d / USEC_PER_MINUTE,
            d % USEC_PER_MINUTE / USEC_PER_SEC
        )
    } else if d >= USEC_PER_SEC {
        format!("{}s", d / USEC_PER_SEC)
    } else if d >= 1000 {
        format!("{}ms", d / 1000)
    } else if d > 0 {
        format!("{d}us")
    } else {
        return "now".to_owned();
    };
    format!("{text} ago")
}

/// A size as systemd writes it: base 1024, one decimal truncated, `B` below a KiB (`1.2M`).
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("E", 1 << 60),
        ("P", 1 << 50),
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (suffix, factor) in UNITS {
        if n >= factor {
            let tenths = (u128::from(n) * 10 / u128::from(factor)) % 10;
            return format!("{}.{tenths}{suffix}", n / factor);
        }
    }
    format!("{n}B")
}

/// CPU time as systemctl writes it, to the millisecond: `12ms`, `1.5s`, `2min 3.004s`.
pub fn cpu_time(nsec: u64) -> String {
    let ms = nsec / 1_000_000;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, ms) = (ms / 60_000, ms % 60_000);
    let seconds = if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let fraction = format!("{:03}", ms % 1000);
        format!("{}.{}s", ms / 1000, fraction.trim_end_matches('0'))
    };
    match minutes {
        0 => seconds,
        m if ms == 0 => format!("{m}min"),
        m => format!("{m}min {seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(arg: &str) -> Result<UnitTarget, String> {
        arg.parse::<UnitTarget>().map_err(|e| e.to_string())
    }

    fn machine(id: char, hostname: &str) -> wire::Machine {
        wire::Machine {
            id: id.to_string().repeat(32),
            hostname: hostname.into(),
            ..wire::Machine::default()
        }
    }

    #[test]
    fn machine_unit_arguments_name_a_machine_and_a_unit() {
        let machines = [machine('a', "host-1"), machine('b', "host-2")];
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        for (arg, expected) in [
            ("web", Ok((None, "web.service"))),
            ("web.socket", Ok((None, "web.socket"))),
            ("host-2:web", Ok((Some(b.as_str()), "web.service"))),
            (
                "aaaa:web@1.service",
                Ok((Some(a.as_str()), "web@1.service")),
            ),
            (
                &format!("{b}:web.service") as &str,
                Ok((Some(b.as_str()), "web.service")),
            ),
            // No machine `db`: the unit's own name has a colon.
            ("db:main.service", Ok((None, "db:main.service"))),
            ("nowhere:web", Ok((None, "nowhere:web.service"))),
            ("host!9:web", Err("no machine `host!9`")),
            ("", Err("")),
        ] {
            let got = target(arg).and_then(|t| {
                resolve(&t, &machines)
                    .map(|(m, u)| (m, u.to_string()))
                    .map_err(|e| e.to_string())
            });
            match expected {
                Ok((m, u)) => assert_eq!(got, Ok((m.map(str::to_owned), u.to_owned())), "{arg}"),
                Err(why) => assert!(
                    got.as_ref().is_err_and(|e| e.contains(why)),
                    "{arg}: {got:?}"
                ),
            }
        }
        let ambiguous = [machine('a', "x"), machine('b', "x")];
        let e = resolve(&target("x:web").unwrap(), &ambiguous).unwrap_err();
        assert!(e.to_string().contains("ambiguous"), "{e}");
    }

    #[test]
    fn durations_sizes_and_times_read_as_systemd_writes_them() {
        let s = USEC_PER_SEC;
        for (d, text) in [
            (0, "now"),
            (500, "500us ago"),
            (2_500, "2ms ago"),
            (59 * s, "59s ago"),
            (61 * s, "1min 1s ago"),
            (5 * 60 * s, "5min ago"),
            (3_900 * s, "1h 5min ago"),
            (7 * 3_600 * s, "7h ago"),
            (26 * 3_600 * s, "1 day 2h ago"),
            (3 * USEC_PER_DAY, "3 days ago"),
            (9 * USEC_PER_DAY, "1 weeks 2 days ago"),
            (40 * USEC_PER_DAY, "1 months 9 days ago"),
            (400 * USEC_PER_DAY, "1 years 1 months ago"),
        ] {
            assert_eq!(ago(d), text, "{d}");
        }
        for (n, text) in [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0K"),
            (1_258_292, "1.2M"),
            (5 << 30, "5.0G"),
            (u64::MAX - 1, "15.9E"),
        ] {
            assert_eq!(bytes(n), text, "{n}");
        }
        for (nsec, text) in [
            (999_999, "0ms"),
            (12_000_000, "12ms"),
            (1_500_000_000, "1.5s"),
            (2_000_000_000, "2s"),
            (123_004_000_000, "2min 3.004s"),
            (120_000_000_000, "2min"),
        ] {
            assert_eq!(cpu_time(nsec), text, "{nsec}");
        }
        assert_eq!(
            timestamp(1_796_126_784_753_989),
            "Tue 2026-12-01 12:06:24 UTC"
        );
    }

    fn running() -> wire::MachineStatus {
        wire::MachineStatus {
            machine_id: "c".repeat(32),
            hostname: "host-3".into(),
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            description: "Tick".into(),
            fragment_path: "/run/user/0/systemd/transient/tick.service".into(),
            since: 1_796_126_784_000_000,
            main_pid: 4242,
            main_process: "sh".into(),
            memory_bytes: Some(1_258_292),
            tasks: Some(2),
            tasks_max: Some(4915),
            cpu_nsec: Some(12_000_000),
            journal: vec!["Dec 01 12:06:24 host-3 sh[4242]: hello".into()],
            ..wire::MachineStatus::default()
        }
    }

    #[test]
    fn a_status_reads_like_systemctls() {
        let now = 1_796_126_784_000_000 + 300 * USEC_PER_SEC;
        let unit = |machines| wire::UnitStatus {
            name: "tick.service".into(),
            description: "Tick from the file".into(),
            desired_state: "launched".into(),
            machines,
            ..wire::UnitStatus::default()
        };
        let failed = wire::MachineStatus {
            machine_id: "d".repeat(32),
            hostname: String::new(),
            active_state: "failed".into(),
            sub_state: "failed".into(),
            result: "exit-code".into(),
            journal_error: "this machine has no journal".into(),
            ..wire::MachineStatus::default()
        };
        let unreachable = wire::MachineStatus {
            machine_id: "e".repeat(32),
            hostname: "host-5".into(),
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            unreachable: "cannot reach flotted on machine eeee (host-5): refused".into(),
            ..wire::MachineStatus::default()
        };
        let unplaced = wire::UnitStatus {
            name: "db.service".into(),
            desired_state: "launched".into(),
            reason: "no machine has metadata disk=ssd".into(),
            ..wire::UnitStatus::default()
        };
        for (status, detail, expected) in [
            (
                unit(vec![running()]),
                Detail::Short,
                "\
● tick.service - Tick
    Machine: cccccccc.../host-3
     Loaded: loaded (/run/user/0/systemd/transient/tick.service)
     Active: active (running) since Tue 2026-12-01 12:06:24 UTC; 5min ago
   Main PID: 4242 (sh)
      Tasks: 2 (limit: 4915)
     Memory: 1.2M
        CPU: 12ms

Dec 01 12:06:24 host-3 sh[4242]: hello
",
            ),
            (
                unit(vec![failed, unreachable]),
                Detail::Full,
                "\
× tick.service - Tick from the file
    Machine: dddddddddddddddddddddddddddddddd
     Active: failed (Result: exit-code)

-- dddddddddddddddddddddddddddddddd: this machine has no journal --

● tick.service - Tick from the file
    Machine: eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee/host-5
     Loaded: loaded
     Active: active (running)
    Warning: cannot reach flotted on machine eeee (host-5): refused; the states above are its agent's last report
",
            ),
            (
                unplaced,
                Detail::Short,
                "\
○ db.service
     Placed: on no machine
     Reason: no machine has metadata disk=ssd
    Desired: launched
",
            ),
        ] {
            assert_eq!(render(&status, now, detail), expected);
        }
    }
}
