//! Wall-clock and peak-heap figures for `schedule::plan` on 10,000 units and 1,000 machines.
//!
//! `cargo bench --bench schedule` prints the median of several runs for a plan from scratch, for
//! a steady state with one changed unit, for a crowded cluster where a thousand units fit
//! nowhere and each needs a reason, and with `Memory=`/`CPU=` requests in both strategies;
//! then the table of medians with their targets, also written to `target/bench/schedule.json`.
//! Run without `--bench` (as `cargo test --all-targets` does), it plans a small cluster once,
//! so the test suite stays quick, and writes nothing.

#[path = "report/mod.rs"]
#[allow(dead_code)]
mod report;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotte::machine::{MachineId, Metadata};
use flotte::resources::Resources;
use flotte::schedule::{ClusterView, Machine, Plan, Strategy, Unit, plan};
use flotte::unit::{
    CompareOp, ConflictPattern, DesiredState, MetadataCondition, Requirements, UnitName,
};

/// The system allocator, counting live bytes and their high-water mark: the cheapest way to
/// know the peak heap of one `plan` call without outside tools.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The cluster size and how many timed runs to take the median of.
struct Size {
    machines: usize,
    units: usize,
    runs: usize,
}

const FULL: Size = Size {
    machines: 1_000,
    units: 10_000,
    runs: 21,
};
const SMOKE: Size = Size {
    machines: 10,
    units: 100,
    runs: 1,
};

/// The median a plan with requests may take: twice the 30 ms a plan from scratch took before
/// requests existed (issue 15).
const WITH_REQUESTS_AT_MOST_MS: f64 = 60.0;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full { FULL } else { SMOKE };
    let mut figures = report::Report::default();
    let mut report = |what: &str, time: Timing, plan: &Plan, at_most: Option<f64>| {
        print_timing(what, &time, plan);
        figures
            .figures
            .push(figure(what, &time, plan, at_most.filter(|_| full)));
    };
    let scratch = cluster(&size);
    println!(
        "schedule::plan, {} units on {} machines ({} runs each)",
        size.units, size.machines, size.runs
    );

    let (time, first) = median(&size, || plan(&scratch));
    report("from scratch", time, &first, None);

    let settled = apply(&scratch, &first);
    let (time, again) = median(&size, || plan(&settled));
    assert!(again.place.is_empty() && again.unplace.is_empty());
    report("steady, nothing changed", time, &again, None);

    let changed = change_one(&settled);
    let (time, moved) = median(&size, || plan(&changed));
    report("steady, one unit changed", time, &moved, None);

    let crowded = crowd(&scratch, size.machines * 2);
    let (time, hopeless) = median(&size, || plan(&crowded));
    report("scratch, +2 per machine", time, &hopeless, None);

    let requests = with_requests(&scratch, Strategy::Spread);
    let (time, spread) = median(&size, || plan(&requests));
    assert!(spread.reasons.contains_key(&name("huge.service")));
    report(
        "from scratch, with requests (spread)",
        time,
        &spread,
        Some(WITH_REQUESTS_AT_MOST_MS),
    );

    let packed = with_requests(&scratch, Strategy::Pack);
    let (time, pack) = median(&size, || plan(&packed));
    report(
        "from scratch, with requests (pack)",
        time,
        &pack,
        Some(WITH_REQUESTS_AT_MOST_MS),
    );

    let settled = apply(&requests, &spread);
    let (time, again) = median(&size, || plan(&settled));
    assert!(again.place.is_empty() && again.unplace.is_empty());
    report("steady with requests, nothing changed", time, &again, None);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    black_box(plan(&scratch));
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let peak_mib = peak as f64 / (1 << 20) as f64;
    println!("  peak heap of one plan from scratch: {peak_mib:.1} MiB");
    if full {
        figures.add(
            "peak heap of one plan from scratch",
            peak_mib,
            "MiB",
            report::Target::None,
            "",
        );
        figures.finish("schedule", &report::machine());
    }
}

/// The median and fastest of `size.runs` runs: the machine may be shared, so the fastest shows
/// what the code costs and the median what to expect.
fn median(size: &Size, mut run: impl FnMut() -> Plan) -> (Timing, Plan) {
    let mut times = Vec::with_capacity(size.runs);
    let mut last = Plan::default();
    for _ in 0..size.runs {
        let start = Instant::now();
        last = black_box(run());
        times.push(start.elapsed());
    }
    times.sort();
    let timing = Timing {
        median: times[times.len() / 2],
        fastest: times[0],
    };
    (timing, last)
}

struct Timing {
    median: Duration,
    fastest: Duration,
}

fn print_timing(what: &str, time: &Timing, plan: &Plan) {
    println!(
        "  {what:<26} median {:>7.2} ms, fastest {:>7.2} ms   ({} placed, {} removed, {} with a reason)",
        time.median.as_secs_f64() * 1e3,
        time.fastest.as_secs_f64() * 1e3,
        plan.place.len(),
        plan.unplace.len(),
        plan.reasons.len()
    );
}

/// The median as a figure of the report, the fastest and the plan's size as its note.
fn figure(what: &str, time: &Timing, plan: &Plan, at_most: Option<f64>) -> report::Figure {
    report::Figure {
        scenario: format!("plan: {what}"),
        value: time.median.as_secs_f64() * 1e3,
        unit: "ms",
        target: at_most.map_or(report::Target::None, report::Target::AtMost),
        note: format!(
            "fastest {:.2} ms; {} placed, {} removed, {} with a reason",
            time.fastest.as_secs_f64() * 1e3,
            plan.place.len(),
            plan.unplace.len(),
            plan.reasons.len()
        ),
    }
}

/// Machines in three regions, a quarter with SSDs, 1 to 8 GiB of RAM. Units: 70% without
/// constraints, 15% with metadata, 10% in ten groups of mutually conflicting instances, 5%
/// MachineOf followers, and a few globals. IDs and names are shuffled by a fixed multiplier so
/// the input is not already sorted.
fn cluster(size: &Size) -> ClusterView {
    let machines = (0..size.machines)
        .map(|i| {
            let scrambled = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            let region = ["eu", "us", "asia"][i % 3];
            let disk = if i % 4 == 0 { "ssd" } else { "hdd" };
            let ram = 1024 * (1 + i % 8);
            Machine {
                id: MachineId::new(&format!("{scrambled:032x}")).expect("32 hex digits"),
                metadata: Metadata::parse_list(&format!("region={region},disk={disk},ram={ram}"))
                    .expect("valid metadata"),
                drained: false,
                // As much memory as the `ram` metadata says, and 2 to 8 CPUs.
                capacity: Resources {
                    memory: (ram as u64) << 20,
                    millicpus: 2000 * (1 + i as u64 % 4),
                },
            }
        })
        .collect();
    let plain = size.units * 70 / 100;
    let constrained = size.units * 15 / 100;
    let conflicting = size.units * 10 / 100;
    let globals = 5;
    let followers = size.units - plain - constrained - conflicting - globals;
    let mut units = Vec::with_capacity(size.units);
    for i in 0..plain {
        units.push(unit(&format!("app-{i}.service"), Requirements::default()));
    }
    for i in 0..constrained {
        let metadata = match i % 4 {
            0 => vec![one_of("region", "eu")],
            1 => vec![one_of("region", "us"), one_of("disk", "ssd")],
            2 => vec![compare("ram", CompareOp::Ge, "4096")],
            _ => vec![compare("region", CompareOp::Ne, "asia")],
        };
        let req = Requirements {
            metadata,
            ..Requirements::default()
        };
        units.push(unit(&format!("data-{i}.service"), req));
    }
    for i in 0..conflicting {
        let group = i % 10;
        let req = Requirements {
            conflicts: vec![
                ConflictPattern::new(&format!("web{group}@*.service")).expect("valid glob"),
            ],
            ..Requirements::default()
        };
        units.push(unit(&format!("web{group}@{i}.service"), req));
    }
    for i in 0..followers {
        let req = Requirements {
            machine_of: vec![name(&format!("app-{}.service", i * 7 % plain))],
            ..Requirements::default()
        };
        units.push(unit(&format!("side-{i}.service"), req));
    }
    for i in 0..globals {
        let req = Requirements {
            global: true,
            metadata: if i == 0 {
                vec![one_of("region", "eu")]
            } else {
                Vec::new()
            },
            ..Requirements::default()
        };
        units.push(unit(&format!("global-{i}.service"), req));
    }
    // A fixed interleaving so units do not arrive grouped by kind or sorted by name.
    units.sort_by_key(|u| fnv1a(u.name.as_str()));
    ClusterView {
        machines,
        units,
        strategy: Strategy::Spread,
    }
}

/// The same cluster with requests on every unit: 64 to 512 MiB and 0.1 to 0.5 CPU (about 60%
/// of the cluster's memory and CPUs in all), and one unit too big for any machine.
fn with_requests(view: &ClusterView, strategy: Strategy) -> ClusterView {
    let mut view = view.clone();
    view.strategy = strategy;
    for unit in &mut view.units {
        let h = fnv1a(unit.name.as_str());
        let mut req = (*unit.requirements).clone();
        req.requests = Resources {
            memory: (64 << 20) * (1 + h % 8),
            millicpus: 100 * (1 + (h >> 8) % 5),
        };
        unit.requirements = Arc::new(req);
    }
    let huge = Requirements {
        requests: Resources {
            memory: 64 << 30,
            millicpus: 0,
        },
        ..Requirements::default()
    };
    view.units.push(unit("huge.service", huge));
    view
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The engine's view after it wrote `plan` out.
fn apply(view: &ClusterView, plan: &Plan) -> ClusterView {
    let mut view = view.clone();
    let mut placed: std::collections::HashMap<&UnitName, Vec<MachineId>> = Default::default();
    for (unit, machine) in &plan.place {
        placed.entry(unit).or_default().push(machine.clone());
    }
    for unit in &mut view.units {
        unit.placed
            .retain(|m| !plan.unplace.contains(&(unit.name.clone(), m.clone())));
        unit.placed
            .extend(placed.get(&unit.name).into_iter().flatten().cloned());
    }
    view
}

/// One placed unit, a MachineOf target, now wants another region than its machine's, so it
/// moves and its follower with it; and one new unit arrives.
fn change_one(view: &ClusterView) -> ClusterView {
    let mut view = view.clone();
    let machines = view.machines.clone();
    if let Some(unit) = view
        .units
        .iter_mut()
        .find(|u| u.name.as_str() == "app-7.service")
    {
        let region = unit
            .placed
            .first()
            .and_then(|id| machines.iter().find(|m| m.id == *id))
            .and_then(|m| m.metadata.get("region"));
        let elsewhere = if region == Some("eu") { "us" } else { "eu" };
        unit.requirements = Arc::new(Requirements {
            metadata: vec![one_of("region", elsewhere)],
            ..Requirements::default()
        });
    }
    view.units
        .push(unit("late-arrival.service", Requirements::default()));
    view
}

/// `count` more units that all conflict with one another, so only one per machine fits and the
/// rest each get a reason: the costly case for reasons.
fn crowd(view: &ClusterView, count: usize) -> ClusterView {
    let mut view = view.clone();
    for i in 0..count {
        let req = Requirements {
            conflicts: vec![ConflictPattern::new("solo@*.service").expect("valid glob")],
            ..Requirements::default()
        };
        view.units.push(unit(&format!("solo@{i}.service"), req));
    }
    view
}

fn unit(n: &str, requirements: Requirements) -> Unit {
    Unit {
        name: name(n),
        requirements: Arc::new(requirements),
        desired: DesiredState::Launched,
        placed: Vec::new(),
    }
}

fn name(n: &str) -> UnitName {
    UnitName::new(n).expect("valid unit name")
}

fn one_of(key: &str, value: &str) -> MetadataCondition {
    MetadataCondition::OneOf {
        key: key.to_owned(),
        values: vec![value.to_owned()],
    }
}

fn compare(key: &str, op: CompareOp, value: &str) -> MetadataCondition {
    MetadataCondition::Compare {
        key: key.to_owned(),
        op,
        value: value.to_owned(),
    }
}
