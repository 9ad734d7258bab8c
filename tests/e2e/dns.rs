//! flotted's DNS (`dns_listen`) asked with `dig`, Debian's `bind9-dnsutils` (packaging/run-tests
//! installs it; in CI a missing dig is a failure): a 3-host cluster, each flotted answering on
//! its host's own address, port 53, in a loopback range of this module's own (127.0.53.x and
//! up; the quick start has 127.0.1.x, the cluster benchmark 127.0.2.x, other tests 127.A.B.x
//! with A of 2 and more). Declared services' instances in A and SRV answers, following their
//! units, their checks and their machines; `flottectl announce --service`; NXDOMAIN; packets
//! that are no DNS.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use flotte::isolated::{EtcdAccess, HostSpec};
use flotte::unit::DesiredState::{Inactive, Launched, Loaded};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::*;

const AGENT_TTL: Duration = Duration::from_secs(3);
const FAST: &[(&str, &str)] = &[
    ("agent_ttl", "3s"),
    ("engine_lease_ttl", "2s"),
    ("dns_ttl", "0"),
];
const DEADLINE: Duration = Duration::from_secs(30);
/// The test service's `CheckInterval`.
const INTERVAL: Duration = Duration::from_millis(500);

/// A web server per instance on port 910%i of its machine's address, healthy while
/// `/run/dnsweb-%i/health` exists; never two on one machine.
const WEB: &str = r#"[Unit]
Description=DNS test web server %i

[Service]
EnvironmentFile=/run/flotte/machine.env
ExecStartPre=/bin/sh -c 'mkdir -p /run/dnsweb-%i && echo ok > /run/dnsweb-%i/health'
ExecStart=/bin/sh -c 'exec /usr/bin/python3 -m http.server --bind "$$FLOTTE_HOST_IP" --directory /run/dnsweb-%i 910%i'

[X-Fleet]
Conflicts=dnsweb@*.service

[X-Flotte-Service]
Name=dnsweb
Port=910%i
Tags=v2
Check=http /health
CheckInterval=500ms
"#;

/// A sidekick announcing the service `db` on its machine, port 5432, with the binary under
/// test.
fn announcer() -> String {
    format!(
        "[Unit]\nDescription=announces db\n\n[Service]\nExecStart={} announce --service db --port 5432 --tag primary --ttl 5\n",
        env!("CARGO_BIN_EXE_flottectl")
    )
}

/// host-1's address of a cluster of this module: 127.0.53.1, then 127.0.54.1, ...
fn first_ip() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(53);
    Ipv4Addr::new(127, 0, NEXT.fetch_add(1, Ordering::Relaxed), 1)
}

/// Whether dig is installed; outside CI, a missing one skips the test (said on stderr).
fn dig_installed() -> bool {
    let found = std::process::Command::new("dig").arg("-v").output().is_ok();
    if !found {
        if std::env::var_os("CI").is_some_and(|v| v == "true") {
            panic!("dig is missing: Debian's `bind9-dnsutils` (packaging/run-tests installs it)");
        }
        eprintln!("SKIPPED: dig is not installed (apt-get install bind9-dnsutils)");
    }
    found
}

/// One answer as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dig {
    status: String,
    /// The answer section's records' data (`127.0.53.1`, `1 1 9101 host-1.node.flotte.`).
    answers: BTreeSet<String>,
    /// The authority section's record types (`SOA`).
    authority: Vec<String>,
    additional: BTreeSet<String>,
    flags: String,
}

/// `dig @server NAME TYPE` (with `+tcp` over TCP), parsed.
async fn dig(server: Ipv4Addr, name: &str, rtype: &str, tcp: bool) -> Dig {
    let mut cmd = Command::new("dig");
    cmd.args([
        &format!("@{server}"),
        "-p",
        "53",
        "+tries=1",
        "+time=2",
        name,
        rtype,
    ]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd.output().await.expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig {name} {rtype}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&text)
}

fn parse(text: &str) -> Dig {
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in {text}"))
        .to_owned();
    let flags = text
        .split("flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let section = |title: &str| -> Vec<Vec<String>> {
        let Some(start) = text.find(&format!(";; {title} SECTION:")) else {
            return Vec::new();
        };
        text[start..]
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| !l.starts_with(';'))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    let data = |fields: &Vec<String>| fields[4..].join(" ");
    Dig {
        status,
        answers: section("ANSWER").iter().map(data).collect(),
        authority: section("AUTHORITY").iter().map(|f| f[3].clone()).collect(),
        additional: section("ADDITIONAL")
            .iter()
            .filter(|f| f[3] != "OPT")
            .map(|f| format!("{} {}", f[0], data(f)))
            .collect(),
        flags,
    }
}

/// Asks until the answer satisfies `done`, at most `deadline`; the time it took.
async fn dig_until(
    server: Ipv4Addr,
    name: &str,
    rtype: &str,
    deadline: Duration,
    what: &str,
    mut done: impl FnMut(&Dig) -> bool,
) -> (Dig, Duration) {
    let start = Instant::now();
    loop {
        let d = dig(server, name, rtype, false).await;
        if done(&d) {
            return (d, start.elapsed());
        }
        if start.elapsed() >= deadline {
            panic!("{what}: not within {deadline:?}; dig {name} {rtype} last said {d:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

async fn dns_cluster(test: &str) -> (TestCluster, Vec<Ipv4Addr>) {
    let first = first_ip();
    let ips: Vec<Ipv4Addr> = (0..3)
        .map(|i| Ipv4Addr::from(u32::from(first) + i))
        .collect();
    let hosts = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| HostSpec {
            name: format!("host-{}", i + 1),
            metadata: String::new(),
            api_port: None,
            settings: vec![("dns_listen".into(), SocketAddr::from((*ip, 53)).to_string())],
        })
        .collect();
    let t = cluster_of_at(test, hosts, FAST, EtcdAccess::Direct, first).await;
    (t, ips)
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_answers_with_the_healthy_instances_and_follows_units_checks_and_machines() {
    if !dig_installed() {
        return;
    }
    let (mut t, ips) = dns_cluster("dns").await;
    let server = ips[0];
    let addresses =
        |hosts: &[usize]| -> Vec<String> { hosts.iter().map(|&i| ips[i].to_string()).collect() };

    // Machines by hostname, from the start.
    let (node, _) = dig_until(
        server,
        "host-2.node.flotte",
        "A",
        DEADLINE,
        "host-2's address",
        |d| d.status == "NOERROR" && !d.answers.is_empty(),
    )
    .await;
    assert_eq!(node.answers, set(&addresses(&[1])), "{node:#?}");
    assert!(node.flags.contains("aa"), "authoritative: {node:#?}");

    // An unknown name: NXDOMAIN with the zone's SOA.
    let unknown = dig(server, "nope.service.flotte", "A", false).await;
    assert_eq!(unknown.status, "NXDOMAIN", "{unknown:#?}");
    assert_eq!(unknown.authority, ["SOA"], "{unknown:#?}");

    // Three instances on three machines.
    submit(&t.registry, "dnsweb@.service", WEB, Inactive).await;
    for n in 1..=3 {
        submit(&t.registry, &format!("dnsweb@{n}.service"), WEB, Launched).await;
    }
    let all = set(&addresses(&[0, 1, 2]));
    let (a, took) = dig_until(
        server,
        "dnsweb.service.flotte",
        "A",
        DEADLINE,
        "three addresses",
        |d| d.answers == all,
    )
    .await;
    println!("three instances in DNS {took:?} after submitting");
    assert_eq!(a.status, "NOERROR");
    // Every flotted answers the same, over UDP and TCP.
    for &ip in &ips {
        for tcp in [false, true] {
            let d = dig(ip, "dnsweb.service.flotte", "A", tcp).await;
            assert_eq!(d.answers, all, "from {ip}, tcp {tcp}: {d:#?}");
        }
    }
    let tagged = dig(server, "v2.dnsweb.service.flotte", "A", false).await;
    assert_eq!(tagged.answers, all, "{tagged:#?}");

    // SRV: each instance's port on its machine's node name, with the targets' addresses.
    let placement = t.registry.instances_at().await.unwrap().0;
    let mut srv = BTreeSet::new();
    let mut additional = BTreeSet::new();
    for (_, r) in &placement {
        let host = t.cluster.index_of(&r.machine).unwrap();
        let name = t.cluster.host(host).name().to_owned();
        srv.insert(format!("1 1 {} {name}.node.flotte.", r.port));
        additional.insert(format!("{name}.node.flotte. {}", ips[host]));
    }
    let answer = dig(server, "_dnsweb._tcp.service.flotte", "SRV", false).await;
    assert_eq!(answer.answers, srv, "{answer:#?}");
    assert_eq!(answer.additional, additional, "{answer:#?}");
    let ports: BTreeSet<u16> = placement.iter().map(|(_, r)| r.port).collect();
    assert_eq!(ports, BTreeSet::from([9101, 9102, 9103]));

    let unit_host = |unit: &str| {
        let r = &placement
            .iter()
            .find(|(_, r)| r.unit.as_str() == unit)
            .unwrap()
            .1;
        t.cluster.index_of(&r.machine).unwrap()
    };

    // dnsweb@1 fails its check: gone within two intervals, back after one success.
    let one = unit_host("dnsweb@1.service");
    let health = t.cluster.host(one).record().path("/run/dnsweb-1/health");
    std::fs::remove_file(&health).unwrap_or_else(|e| panic!("{}: {e}", health.display()));
    let others: BTreeSet<String> = all
        .iter()
        .filter(|a| **a != ips[one].to_string())
        .cloned()
        .collect();
    let (_, gone) = dig_until(
        server,
        "dnsweb.service.flotte",
        "A",
        DEADLINE,
        "dnsweb@1 gone",
        |d| d.answers == others,
    )
    .await;
    println!(
        "a failing instance gone from DNS {gone:?} after its check began failing (interval {INTERVAL:?})"
    );
    assert!(gone < INTERVAL * 2 + Duration::from_millis(500), "{gone:?}");
    std::fs::write(&health, "ok\n").unwrap();
    let (_, back) = dig_until(
        server,
        "dnsweb.service.flotte",
        "A",
        DEADLINE,
        "dnsweb@1 back",
        |d| d.answers == all,
    )
    .await;
    println!("back in DNS {back:?} after its check passed again");
    assert!(back < INTERVAL + Duration::from_millis(500), "{back:?}");

    // A stopped unit: gone within a second.
    let two = unit_host("dnsweb@2.service");
    set_desired(&t.registry, "dnsweb@2.service", Loaded).await;
    let (_, stopped) = dig_until(
        server,
        "dnsweb.service.flotte",
        "A",
        DEADLINE,
        "dnsweb@2 gone",
        |d| !d.answers.contains(&ips[two].to_string()),
    )
    .await;
    println!("a stopped unit gone from DNS {stopped:?} after it was told to stop");
    assert!(stopped < Duration::from_secs(1), "{stopped:?}");

    // `flottectl announce --service`: in DNS and the catalog while it runs.
    submit(&t.registry, "db-announcer.service", &announcer(), Launched).await;
    let (db, took) = dig_until(
        server,
        "db.service.flotte",
        "A",
        DEADLINE,
        "the announced db",
        |d| d.answers.len() == 1,
    )
    .await;
    println!("an announced service in DNS {took:?} after submitting its announcer");
    let tagged = dig(server, "primary.db.service.flotte", "A", false).await;
    assert_eq!(tagged.answers, db.answers, "{tagged:#?}");
    let srv = dig(server, "_db._tcp.service.flotte", "SRV", false).await;
    assert_eq!(srv.answers.len(), 1, "{srv:#?}");
    assert!(
        srv.answers
            .iter()
            .next()
            .unwrap()
            .starts_with("1 1 5432 host-"),
        "{srv:#?}"
    );
    let instances = t.registry.instances_at().await.unwrap().0;
    let (_, announced) = instances
        .iter()
        .find(|(id, _)| id.service.as_str() == "db")
        .expect("db's instance in etcd");
    assert_eq!(announced.unit.as_str(), "db-announcer.service");
    assert_eq!(
        db.answers,
        set(std::slice::from_ref(&announced.address)),
        "the announcer's machine's address"
    );
    let declared = flottectl_services_catalog(&t).await;
    assert!(
        declared.lines().any(|l| l.starts_with("db")
            && l.contains(&format!("{}:5432", announced.address))
            && l.contains("passing")
            && l.contains("db-announcer.service")),
        "{declared}"
    );
    let db_catalog = catalog(&t, "db").await;
    let listed = db_catalog["instances"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{db_catalog}");
    assert_eq!(listed[0]["port"], 5432, "{db_catalog}");
    assert_eq!(listed[0]["health"], "passing", "{db_catalog}");
    assert_eq!(listed[0]["unit"], "db-announcer.service", "{db_catalog}");
    set_desired(&t.registry, "db-announcer.service", Loaded).await;
    let (gone, took) = dig_until(
        server,
        "db.service.flotte",
        "A",
        DEADLINE,
        "db withdrawn",
        |d| d.status == "NXDOMAIN",
    )
    .await;
    println!("an announcer's service gone from DNS {took:?} after it was told to stop");
    assert_eq!(gone.authority, ["SOA"]);

    // Packets that are no DNS: flotted stays up and answers the next query, over UDP and TCP.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for garbage in [
        &b""[..],
        b"\x00",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0x42; 600],
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc",
    ] {
        udp.send_to(garbage, (server, 53)).await.unwrap();
    }
    for garbage in [
        &b"\x00\x05hello"[..],
        b"\xff\xff",
        &[0x13; 100],
        b"\x00\x0c\x12\x34\x01\x00\x00\x09\x00\x00\x00\x00\x00\x00",
    ] {
        let mut tcp = tokio::net::TcpStream::connect((server, 53)).await.unwrap();
        let _ = tcp.write_all(garbage).await;
        let _ = tcp.shutdown().await;
    }
    for tcp in [false, true] {
        let d = dig(server, "host-1.node.flotte", "A", tcp).await;
        assert_eq!(
            d.answers,
            set(&addresses(&[0])),
            "after garbage, tcp {tcp}: {d:#?}"
        );
    }

    // A killed machine's instances: gone within agent_ttl.
    let three = unit_host("dnsweb@3.service");
    // Asked of a machine that stays.
    let server = ips[(three + 1) % ips.len()];
    let dead = ips[three].to_string();
    t.cluster.kill_host(three).unwrap();
    let (_, took) = dig_until(
        server,
        "dnsweb.service.flotte",
        "A",
        DEADLINE,
        "the killed machine's instance gone",
        |d| !d.answers.contains(&dead),
    )
    .await;
    println!(
        "a killed machine's instance gone from DNS {took:?} after the kill (agent_ttl {AGENT_TTL:?})"
    );
    // etcd checks lease expiry every 500 ms: a second of margin on a loaded machine.
    assert!(took < AGENT_TTL + Duration::from_secs(1), "{took:?}");
    let (node, _) = dig_until(
        server,
        &format!("{}.node.flotte", t.cluster.host(three).name()),
        "A",
        DEADLINE,
        "the killed machine gone",
        |d| d.status == "NXDOMAIN",
    )
    .await;
    assert_eq!(node.authority, ["SOA"]);
}

/// `flottectl services --declared` with host-1's flotted settings: the declared services'
/// instances.
async fn flottectl_services_catalog(t: &TestCluster) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .args(["services", "--declared"])
        .env(
            "FLOTTE_CONFIG",
            t.cluster.host(0).dir().join("flotted.conf"),
        )
        .output()
        .await
        .expect("flottectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET /flotte/v1/catalog/NAME` over host-1's API socket, as JSON.
async fn catalog(t: &TestCluster, name: &str) -> serde_json::Value {
    use http_body_util::BodyExt;
    let response = http_get(
        tokio::net::UnixStream::connect(t.cluster.socket(0))
            .await
            .unwrap(),
        "flotte",
        &flotte::wire::catalog_path(name),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn announce_service_refuses_bad_names_and_ports_before_reaching_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flotted.conf");
    // Nothing listens there: a refusal must come before etcd is asked.
    std::fs::write(&config, "etcd_servers=http://127.0.0.1:9\n").unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--service", "Web", "--port", "80"],
            2,
            "flottectl: `Web` is not a valid service name or tag: use lowercase letters, digits and `-` (it is a DNS label)",
        ),
        (
            &["--service", "web", "--port", "80", "--tag", "a_b"],
            2,
            "flottectl: `a_b` is not a valid service name or tag",
        ),
        (
            &["--service", "web", "--port", "0"],
            2,
            "error: invalid value '0' for '--port <N>'",
        ),
        (
            &["--service", "web"],
            2,
            "error: the following required arguments were not provided",
        ),
        (
            &["--service", "web", "--port", "80", "/services/web"],
            2,
            "error: the argument '--service <NAME>' cannot be used with '[KEY]'",
        ),
        (
            &["--service", "web", "--port", "80"],
            1,
            "flottectl: etcd at http://127.0.0.1:9 is unreachable: ",
        ),
    ];
    for (args, code, message) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_flottectl"))
            .arg("announce")
            .args(*args)
            .env("FLOTTE_CONFIG", &config)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.starts_with(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
