//! flotted's DNS under load: 1,000 queries a second for a few seconds against host-1's flotted
//! of a local cluster (the quick start's spec: three hosts, DNS on each host's own address,
//! port 53, started here on 127.0.3.x with three instances of `units/web@.service`), or
//! against a running one (`-- --server $FLOTTE_DNS`). Queries go out open-loop on a fixed
//! schedule (not one after another's answer), a mix of A for `web.service.flotte`, SRV for
//! `_web._tcp.service.flotte`, A for `host-1.node.flotte` and an unknown name (NXDOMAIN);
//! each answer is checked (its ID, its code, records present). Prints p50, p99 and the
//! slowest, and writes `target/bench/dns.json`. `-- --rate N --seconds S` resizes it.

#[path = "report/mod.rs"]
#[allow(dead_code)]
mod report;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

use flotte::isolated::Cluster;
use flotte::quickstart::{self, Links};
use flotte::unit::{DesiredState, UnitFile, UnitName};

use report::{Report, Target};

/// The bench's own cluster: not the quick start's 127.0.1.x, nor the cluster bench's 127.0.2.x.
const FIRST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 3, 1);
/// An answer later than this counts as lost.
const LOST_AFTER: Duration = Duration::from_secs(1);

struct Args {
    server: Option<SocketAddr>,
    rate: u32,
    seconds: u32,
}

fn args() -> Option<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return None;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{flag} {v}: not a number"))
            })
    };
    Some(Args {
        server: args
            .iter()
            .position(|a| a == "--server")
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("--server {v}: not ADDRESS:PORT"))
            }),
        rate: value("--rate").unwrap_or(1000),
        seconds: value("--seconds").unwrap_or(5),
    })
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs benchmarks without `--bench`: nothing to measure there.
    let Some(args) = args() else {
        println!("DNS figures: run `cargo bench --bench dns` (as root)");
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("flotte-bench-dns-")
        .tempdir()
        .unwrap();
    let (server, _cluster) = match args.server {
        Some(server) => (server, None),
        None => {
            let (server, cluster) = local_cluster(dir.path()).await;
            (server, Some(cluster))
        }
    };
    println!(
        "== DNS: {} queries/s for {} s against {server}",
        args.rate, args.seconds
    );
    let mut report = Report::default();
    load(server, &args, &mut report).await;
    report.finish("dns", &report::machine());
}

/// The quick start's cluster, in `dir`, with three instances of `units/web@.service`; host-1's
/// DNS address once it answers for all three.
async fn local_cluster(dir: &std::path::Path) -> (SocketAddr, Cluster) {
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: no other thread reads the environment yet.
        unsafe { std::env::set_var("RUST_LOG", "info") };
    }
    let flotted: std::path::PathBuf = env!("CARGO_BIN_EXE_flotted").into();
    let mut spec = quickstart::spec(&quickstart::Settings {
        state_dir: dir.to_owned(),
        flotted: flotted.clone(),
        units: concat!(env!("CARGO_MANIFEST_DIR"), "/units").into(),
        group_prefix: format!("flotte-test-{}-bench-dns", std::process::id()),
        first_ip: FIRST_IP,
        links: Links {
            dir: dir.to_owned(),
            flottectl: env!("CARGO_BIN_EXE_flottectl").into(),
            flotted,
        },
    });
    // No web page: its fixed port is the quick start's.
    for host in &mut spec.hosts {
        host.api_port = None;
    }
    let cluster = Cluster::start(spec).await.expect("cluster starts");
    let registry = cluster.registry().await.unwrap();
    let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/units/web@.service")).unwrap();
    let file = UnitFile::parse(&text).unwrap().file;
    let template = UnitName::new("web@.service").unwrap();
    registry
        .put_unit(&template, &file, DesiredState::Inactive)
        .await
        .unwrap();
    for i in ["1", "2", "3"] {
        registry
            .put_unit(
                &template.instantiate(i).unwrap(),
                &file,
                DesiredState::Launched,
            )
            .await
            .unwrap();
    }
    let server = SocketAddr::from((FIRST_IP, quickstart::DNS_PORT));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    let query = query_bytes("web.service.flotte.", RecordType::A);
    let started = Instant::now();
    loop {
        let mut buf = [0u8; 1500];
        socket.send(&query).await.unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
            && Message::from_vec(&buf[..n]).is_ok_and(|m| m.answers.len() == 3)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "DNS at {server} did not answer web.service.flotte with three instances"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "three web instances in DNS {:.1} s after submitting",
        started.elapsed().as_secs_f64()
    );
    (server, cluster)
}

fn query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

/// One kind of query in the mix and what its answer must be.
struct Kind {
    bytes: Vec<u8>,
    code: ResponseCode,
    records: bool,
}

async fn load(server: SocketAddr, args: &Args, report: &mut Report) {
    let kinds = [
        (
            "web.service.flotte.",
            RecordType::A,
            ResponseCode::NoError,
            true,
        ),
        (
            "_web._tcp.service.flotte.",
            RecordType::SRV,
            ResponseCode::NoError,
            true,
        ),
        (
            "host-1.node.flotte.",
            RecordType::A,
            ResponseCode::NoError,
            true,
        ),
        (
            "nope.service.flotte.",
            RecordType::A,
            ResponseCode::NXDomain,
            false,
        ),
    ]
    .map(|(name, rtype, code, records)| Kind {
        bytes: query_bytes(name, rtype),
        code,
        records,
    });
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    let total = (args.rate * args.seconds) as usize;
    assert!(
        total <= usize::from(u16::MAX),
        "at most 65535 queries: one ID each"
    );
    let period = Duration::from_secs(1) / args.rate;
    let mut sent: Vec<Option<Instant>> = vec![None; total];
    let mut latencies: Vec<Duration> = Vec::with_capacity(total);
    let mut wrong = 0usize;
    let mut next = 0usize;
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut buf = [0u8; 4096];
    let end = loop {
        tokio::select! {
            _ = ticks.tick(), if next < total => {
                let kind = &kinds[next % kinds.len()];
                let mut bytes = kind.bytes.clone();
                bytes[..2].copy_from_slice(&(next as u16).to_be_bytes());
                socket.send(&bytes).await.unwrap();
                sent[next] = Some(Instant::now());
                next += 1;
            }
            received = socket.recv(&mut buf) => {
                let at = Instant::now();
                let n = received.unwrap();
                let Ok(m) = Message::from_vec(&buf[..n]) else {
                    wrong += 1;
                    continue;
                };
                let id = usize::from(m.metadata.id);
                let Some(when) = sent.get_mut(id).and_then(Option::take) else {
                    wrong += 1;
                    continue;
                };
                let kind = &kinds[id % kinds.len()];
                if m.metadata.response_code != kind.code || m.answers.is_empty() == kind.records {
                    wrong += 1;
                }
                latencies.push(at - when);
                if latencies.len() + wrong >= total {
                    break tokio::time::Instant::now();
                }
            }
            _ = tokio::time::sleep(LOST_AFTER), if next >= total => break tokio::time::Instant::now(),
        }
    };
    let elapsed = end - start;
    let lost = sent.iter().filter(|s| s.is_some()).count();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let rate = next as f64 / elapsed.as_secs_f64().max(1e-9);
    let note = format!(
        "{} answered of {next} sent, {:.0} queries/s",
        latencies.len(),
        rate
    );
    report.add(
        "DNS query latency, p50",
        pct(0.50),
        "ms",
        Target::None,
        note.clone(),
    );
    report.add(
        "DNS query latency, p99",
        pct(0.99),
        "ms",
        Target::AtMost(5.0),
        note,
    );
    report.add(
        "DNS query latency, slowest",
        pct(1.0),
        "ms",
        Target::None,
        "",
    );
    report.add(
        "DNS queries lost (no answer within 1 s)",
        lost as f64,
        "",
        Target::AtMost(0.0),
        "",
    );
    report.add(
        "DNS answers wrong",
        wrong as f64,
        "",
        Target::AtMost(0.0),
        "",
    );
}
