//! 10,000 units on 1,000 machines: real etcd, the real engine and API (two engine candidates,
//! each a process of its own serving the API), and 1,000 real agents in this process, each
//! with its own etcd lease, keep-alive and schedule watch, whose systemd is SIMULATED in memory
//! (`flotte::isolated::SimulatedSystemd`: no process runs, a start is active at once). It
//! measures what the scheduler, the registry and the agents' etcd traffic cost at fleet's
//! ten-fold scale, not systemd (the cluster benchmark measures real systemd).
//!
//! `cargo bench --bench scale` prints a table of figures and targets and writes
//! `target/bench/scale.json`; `-- --machines N --units M --idle SECS` changes the size and
//! the idle period (default 1,000, 10,000 and 60).

#[path = "../report/mod.rs"]
#[allow(dead_code)]
mod report;

#[path = "../cluster/http.rs"]
#[allow(dead_code)]
mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotte::agent::{self, AgentConfig};
use flotte::api::{self, ApiSettings, Listeners};
use flotte::engine::{self, EngineConfig};
use flotte::isolated::{Etcd, SimulatedCalls, SimulatedSystemd};
use flotte::machine::{MachineId, Metadata};
use flotte::registry::{EtcdSettings, Registry, Update};
use flotte::unit::{Target as UnitTarget, UnitName};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use http::Api;
use report::{Report, Target, peak_rss_mib};

const DEADLINE: Duration = Duration::from_secs(300);
/// Requests in flight at once from the load generator.
const IN_FLIGHT: usize = 64;
/// Agents per etcd connection.
const AGENTS_PER_CONNECTION: usize = 50;
const ENGINE_LEASE_TTL: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--engine-child") {
        return engine_child(&args[i + 1..]);
    }
    // `cargo test --all-targets` runs benchmarks too, without `--bench`.
    if !args.iter().any(|a| a == "--bench") {
        println!("scale figures: run `cargo bench --bench scale`");
        return;
    }
    let number = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .map_or(default, |i| args[i + 1].parse().expect("a number"))
    };
    let machines = number("--machines", 1000);
    let units = number("--units", 10_000);
    let idle = Duration::from_secs(number("--idle", 60) as u64);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bench(machines, units, idle));
}

/// An engine candidate serving the API on a unix socket, as a process of its own so that its
/// memory is its own: `--engine-child ETCD_URL SOCKET ID`.
fn engine_child(args: &[String]) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let [etcd, socket, id] = args else {
        panic!("--engine-child ETCD_URL SOCKET ID")
    };
    let settings = settings(etcd);
    let machine_id = MachineId::new(id).unwrap();
    let socket = PathBuf::from(socket);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let shutdown = CancellationToken::new();
        let registry = Registry::connect(&settings).await.expect("etcd");
        let listeners = Listeners::bind(&ApiSettings {
            socket,
            tcp: vec![],
            tls: None,
        })
        .await
        .expect("API socket");
        let (_registered, ready) = tokio::sync::watch::channel(true);
        let api = {
            let registry = registry.clone();
            tokio::spawn(api::serve(
                listeners,
                async { Some(registry) },
                ready,
                shutdown.clone(),
            ))
        };
        let config = EngineConfig {
            machine_id,
            lease_ttl: ENGINE_LEASE_TTL,
            debounce: Duration::from_millis(20),
            resync: Duration::from_secs(300),
            leading: Arc::new(tokio::sync::watch::channel(false).0),
            strategy: Default::default(),
            agent_ttl: Duration::from_secs(10),
        };
        engine::run(registry, config, shutdown).await;
        let _ = api.await;
    });
}

fn settings(etcd: &str) -> EtcdSettings {
    EtcdSettings {
        endpoints: vec![etcd.to_owned()],
        prefix: "/flotte/".into(),
        ca_file: None,
        cert_file: None,
        key_file: None,
        username: None,
        password: None,
    }
}

struct EngineProcess {
    child: std::process::Child,
    log: PathBuf,
    socket: PathBuf,
}

impl EngineProcess {
    fn spawn(dir: &Path, etcd: &str, n: usize) -> EngineProcess {
        let log = dir.join(format!("engine-{n}.log"));
        let socket = dir.join(format!("engine-{n}.sock"));
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--engine-child")
            .arg(etcd)
            .arg(&socket)
            .arg(machine_id(1_000_000 + n).as_str())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("engine process");
        EngineProcess { child, log, socket }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn is_leader(&self) -> bool {
        self.log().contains("elected engine")
    }

    /// The `took_ms` of the engine's "first reconcile as leader complete" line, once there.
    fn first_reconcile(&self) -> Option<(u64, String)> {
        let log = self.log();
        let line = log
            .lines()
            .find(|l| l.contains("first reconcile as leader complete"))?;
        let took = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("took_ms="))?
            .parse()
            .ok()?;
        Some((took, line.to_owned()))
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn machine_id(i: usize) -> MachineId {
    MachineId::new(&format!("{i:032x}")).unwrap()
}

async fn bench(machines: usize, units: usize, idle: Duration) {
    // Unit files go on a tmpfs: ten thousand fsyncs on a disk would measure the disk.
    let dir = tempfile::Builder::new()
        .prefix("flotte-scale-")
        .tempdir_in("/dev/shm")
        .expect("a directory on /dev/shm");
    let etcd = Etcd::start(&dir.path().join("etcd")).await.expect("etcd");
    let url = etcd.client_url().to_owned();
    println!(
        "== {machines} machines with SIMULATED systemd (in-process agents, real etcd leases and \
         watches), {units} units, real etcd, real engine + API in their own processes"
    );
    let mut report = Report::default();

    let mut engines = vec![
        EngineProcess::spawn(dir.path(), &url, 1),
        EngineProcess::spawn(dir.path(), &url, 2),
    ];
    let calls = Arc::new(SimulatedCalls::default());
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut connections = Vec::new();
    for _ in 0..machines.div_ceil(AGENTS_PER_CONNECTION) {
        connections.push(Registry::connect(&settings(&url)).await.expect("etcd"));
    }
    let mut agents = Vec::new();
    for i in 0..machines {
        let systemd = SimulatedSystemd::new(calls.clone());
        let config = AgentConfig {
            machine_id: machine_id(i + 1),
            public_ip: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            metadata: Metadata::default(),
            hostname: format!("sim-{}", i + 1),
            version: "simulated".into(),
            api: None,
            ttl: Duration::from_secs(10),
            units_directory: dir.path().join(format!("m{}/units", i + 1)),
            etcd_endpoints: vec![url.clone()],
            resync: Duration::from_secs(300),
            running: Arc::new(tokio::sync::watch::channel(0).0),
            // Not `peers`: a thousand agents each following every machine record would
            // measure that fan-out at start-up, not the agents' work.
            fence_policy: agent::FencePolicy::Always,
            contact: Arc::new(tokio::sync::watch::channel(flotte::registry::Contact::now()).0),
            capacity: Default::default(),
        };
        let registry = connections[i / AGENTS_PER_CONNECTION].clone();
        let (registered, _) = tokio::sync::watch::channel(false);
        let shutdown = shutdown.clone();
        let handle = tokio::spawn(agent::run(
            registry,
            systemd.clone(),
            config,
            registered,
            shutdown,
        ));
        agents.push((systemd, handle));
    }
    let registry = Registry::connect(&settings(&url)).await.unwrap();
    let mut watch = registry.watch_machines();
    let mut seen = BTreeMap::new();
    tokio::time::timeout(
        DEADLINE,
        watch.until(&mut seen, |m| (m.len() >= machines).then_some(())),
    )
    .await
    .expect("every simulated machine registered");
    report.seconds(
        format!("{machines} agents registered"),
        started.elapsed(),
        None,
    );
    let leader = wait_until(|| engines.iter().position(EngineProcess::is_leader)).await;
    let api = Api::new(&engines[leader].socket);
    api.await_ready(Duration::from_secs(30)).await;

    // Submit and start everything.
    let names: Vec<UnitName> = (1..=units)
        .map(|i| UnitName::new(&format!("scale-{i}.service")).unwrap())
        .collect();
    let requests_before = etcd_requests(&url).await;
    let methods_before = etcd_requests_by_method(&url).await;
    let calls_before = calls.total();
    let start = Instant::now();
    let states = tokio::spawn(await_launched(
        registry.clone(),
        names.iter().cloned().collect(),
    ));
    futures_util::stream::iter(&names)
        .enumerate()
        .map(|(i, n)| {
            let api = &api;
            // Each unit a content of its own: the worst case for content reads.
            async move {
                api.put_launched(n.as_str(), &format!("/bin/sleep {}", 100_000 + i))
                    .await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    let submitted = start.elapsed();
    let placed_on = tokio::time::timeout(DEADLINE, states)
        .await
        .expect("every unit reported launched within the deadline")
        .unwrap();
    let all = start.elapsed();
    println!(
        "    all PUTs answered after {:.2} s, all launched after {:.2} s, on {} machines",
        submitted.as_secs_f64(),
        all.as_secs_f64(),
        placed_on
    );
    report.seconds(
        format!("submit + start {units} units until all report launched"),
        all,
        Some(10.0),
    );
    let requests = etcd_requests(&url).await - requests_before;
    let by_method: Vec<String> = etcd_requests_by_method(&url)
        .await
        .into_iter()
        .map(|(method, n)| {
            let before = methods_before.get(&method).copied().unwrap_or(0);
            format!("{method} {}", n - before)
        })
        .collect();
    println!("    etcd requests by method: {}", by_method.join(", "));
    report.add(
        "etcd requests per placed unit (API + engine + agents)",
        requests as f64 / units as f64,
        "req",
        Target::AtMost(4.0),
        format!("{requests} unary requests and watch messages; keep-alives not counted"),
    );
    report.add(
        "simulated systemd calls per placed unit",
        (calls.total() - calls_before) as f64 / units as f64,
        "calls",
        Target::None,
        "",
    );
    let active: usize = agents.iter().map(|(s, _)| s.active().len()).sum();
    assert_eq!(active, units, "every unit active on a simulated machine");
    report.add(
        "engine (leader, with its API) peak RSS",
        peak_rss_mib(engines[leader].pid()),
        "MiB",
        Target::AtMost(200.0),
        "",
    );

    // Idle: nothing but keep-alives.
    let revision = registry.revision().await.unwrap();
    let keep_alives = etcd_keep_alives(&url).await;
    tokio::time::sleep(idle).await;
    let writes = registry.revision().await.unwrap() - revision;
    let keep_alives = etcd_keep_alives(&url).await - keep_alives;
    report.add(
        format!(
            "etcd writes by {machines} idle machines in {} s",
            idle.as_secs()
        ),
        writes as f64,
        "writes",
        Target::AtMost(0.0),
        format!("etcd revision unchanged; {keep_alives} lease keep-alives meanwhile"),
    );

    // A leader killed at full size.
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(engines[leader].pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let other = 1 - leader;
    let (took, line) = wait_until(|| engines[other].first_reconcile()).await;
    println!("    new leader: {line}");
    report.add(
        format!("new leader's first complete reconcile at {units} units"),
        took as f64 / 1000.0,
        "s",
        Target::AtMost(2.0),
        "from its election to its first reconcile complete",
    );
    report.seconds(
        "leader SIGKILLed → new leader's reconcile complete",
        killed.elapsed(),
        Some(ENGINE_LEASE_TTL.as_secs_f64() + 2.0),
    );
    let restarted: usize = agents.iter().map(|(s, _)| s.active().len()).sum();
    assert_eq!(restarted, units, "no unit stopped across the leader change");

    // Destroy everything through the new leader's API.
    let api = Api::new(&engines[other].socket);
    api.await_ready(Duration::from_secs(30)).await;
    let start = Instant::now();
    futures_util::stream::iter(&names)
        .map(|n| api.delete(n.as_str()))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>()
        .await;
    wait_until_async(|| async {
        let left: usize = registry.states().await.ok()?.len();
        (left == 0).then_some(())
    })
    .await;
    report.seconds(
        format!("destroy {units} units until no state is left"),
        start.elapsed(),
        None,
    );

    shutdown.cancel();
    for (_, handle) in agents {
        let _ = handle.await;
    }
    engines.clear();
    drop(etcd);
    report.finish("scale", &report::machine());
}

/// Follows the states watch until every unit of `names` reports launched on one machine;
/// returns on how many machines they run.
async fn await_launched(registry: Registry, names: BTreeSet<UnitName>) -> usize {
    let mut watch = registry.watch_states();
    let mut launched: BTreeMap<UnitName, MachineId> = BTreeMap::new();
    loop {
        let update = match watch.next().await {
            Ok(u) => u,
            Err(e) => panic!("states watch: {e}"),
        };
        let changes = match update {
            Update::Reset(items) => {
                launched.clear();
                items.into_iter().map(|(k, v)| (k, Some(v))).collect()
            }
            Update::Changes(changes) => changes,
        };
        for ((unit, machine), record) in changes {
            if !names.contains(&unit) {
                continue;
            }
            match record {
                Some(r) if r.current == UnitTarget::Launched && r.active.is_running() => {
                    launched.insert(unit, machine);
                }
                _ => {
                    if launched.get(&unit) == Some(&machine) {
                        launched.remove(&unit);
                    }
                }
            }
        }
        if launched.len() == names.len() {
            let on: BTreeSet<&MachineId> = launched.values().collect();
            return on.len();
        }
    }
}

/// Polls `check` (a log file, a process) every 20 ms until it holds, for what has no event.
async fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> T {
    wait_until_async(|| std::future::ready(check())).await
}

async fn wait_until_async<T, F: std::future::Future<Output = Option<T>>>(
    mut check: impl FnMut() -> F,
) -> T {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// etcd's gRPC metrics.
async fn etcd_metrics(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

fn sum(metrics: &str, wanted: impl Fn(&str) -> bool) -> u64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && wanted(l))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Unary requests etcd handled plus the messages clients sent on watch streams (creating
/// and cancelling watches).
async fn etcd_requests(url: &str) -> u64 {
    let m = etcd_metrics(url).await;
    sum(&m, |l| {
        l.starts_with("grpc_server_handled_total{") && l.contains("grpc_type=\"unary\"")
    }) + sum(&m, |l| {
        l.starts_with("grpc_server_msg_received_total{") && l.contains("grpc_method=\"Watch\"")
    })
}

/// The same, by gRPC method.
async fn etcd_requests_by_method(url: &str) -> BTreeMap<String, u64> {
    let m = etcd_metrics(url).await;
    let mut out = BTreeMap::new();
    for line in m.lines().filter(|l| {
        (l.starts_with("grpc_server_handled_total{") && l.contains("grpc_type=\"unary\""))
            || (l.starts_with("grpc_server_msg_received_total{")
                && l.contains("grpc_method=\"Watch\""))
    }) {
        let method = line
            .split("grpc_method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("?");
        let n = sum(line, |_| true);
        *out.entry(method.to_owned()).or_default() += n;
    }
    out
}

async fn etcd_keep_alives(url: &str) -> u64 {
    let m = etcd_metrics(url).await;
    sum(&m, |l| {
        l.starts_with("grpc_server_msg_received_total{")
            && l.contains("grpc_method=\"LeaseKeepAlive\"")
    })
}
