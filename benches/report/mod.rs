//! The benchmarks' report: each figure with its target, printed as a table and written as JSON
//! under `target/bench/`. Shared by the benchmarks through `#[path]`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// What a figure must stay within.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost(f64),
    /// Reported only.
    None,
}

#[derive(Debug, Clone)]
pub struct Figure {
    pub scenario: String,
    pub value: f64,
    pub unit: &'static str,
    pub target: Target,
    /// How it was measured, when the scenario name does not say it all.
    pub note: String,
}

impl Figure {
    pub fn passes(&self) -> Option<bool> {
        match self.target {
            Target::AtMost(t) => Some(self.value <= t),
            Target::None => None,
        }
    }
}

#[derive(Default)]
pub struct Report {
    pub figures: Vec<Figure>,
}

impl Report {
    pub fn add(
        &mut self,
        scenario: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: Target,
        note: impl Into<String>,
    ) {
        let figure = Figure {
            scenario: scenario.into(),
            value,
            unit,
            target,
            note: note.into(),
        };
        println!("  {}", row(&figure));
        self.figures.push(figure);
    }

    pub fn seconds(&mut self, scenario: impl Into<String>, d: Duration, at_most: Option<f64>) {
        self.add(
            scenario,
            d.as_secs_f64(),
            "s",
            at_most.map_or(Target::None, Target::AtMost),
            "",
        );
    }

    /// Prints the table and writes `target/bench/<name>.json`.
    pub fn finish(&self, name: &str, machine: &str) {
        println!("\n{name}: {machine}");
        println!(
            "{:<58} {:>12} {:>10}  result",
            "scenario", "figure", "target"
        );
        for f in &self.figures {
            println!("{}", row(f));
        }
        let dir = target_dir().join("bench");
        std::fs::create_dir_all(&dir).expect("create target/bench");
        let path = dir.join(format!("{name}.json"));
        let figures: Vec<serde_json::Value> = self
            .figures
            .iter()
            .map(|f| {
                let (kind, bound) = match f.target {
                    Target::AtMost(t) => ("at_most", Some(t)),
                    Target::None => ("none", None),
                };
                serde_json::json!({
                    "scenario": f.scenario,
                    "value": f.value,
                    "unit": f.unit,
                    "target": {"kind": kind, "value": bound},
                    "pass": f.passes(),
                    "note": f.note,
                })
            })
            .collect();
        let doc = serde_json::json!({"benchmark": name, "machine": machine, "figures": figures});
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).expect("write JSON");
        println!("written: {}", path.display());
    }
}

fn row(f: &Figure) -> String {
    let mut target = String::new();
    match f.target {
        Target::AtMost(t) => write!(target, "≤ {}", short(t)).unwrap(),
        Target::None => {}
    }
    let result = match f.passes() {
        Some(true) => "pass",
        Some(false) => "MISS",
        None => "-",
    };
    let note = if f.note.is_empty() {
        String::new()
    } else {
        format!("  ({})", f.note)
    };
    format!(
        "{:<58} {:>10} {:<2}{:>9}  {result}{note}",
        f.scenario,
        short(f.value),
        f.unit,
        target
    )
}

fn short(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// One line naming the machine: cores, memory, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {mem:.0} GiB, Linux {}", kernel.trim())
}

pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_of(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz)
}

/// Resident memory of a process now, in MiB.
pub fn rss_mib(pid: i32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// Resident memory of a process now, in MiB: its heap and stacks (`RssAnon`) and the pages
/// of its files, mostly its own code (`RssFile`).
pub fn rss_split_mib(pid: i32) -> (f64, f64) {
    (status_mib(pid, "RssAnon:"), status_mib(pid, "RssFile:"))
}

/// Peak resident memory of a process, in MiB.
pub fn peak_rss_mib(pid: i32) -> f64 {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: i32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
