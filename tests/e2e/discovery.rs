//! Sidekicks and service discovery (issue "Sidekick units and service discovery"): the example
//! units of `units/` on a cluster, announcing where their service runs through
//! `flottectl announce` (or plain etcdctl), and `flottectl services` reading it back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use flotte::isolated::wait_for;
use flotte::machine::MachineId;
use flotte::registry::{Registry, TypedWatch, Update};
use flotte::unit::DesiredState::{Inactive, Launched, Loaded};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::support::*;

/// Short leases so that a dead host's units move quickly.
const FAST: &[(&str, &str)] = &[("agent_ttl", "3s"), ("engine_lease_ttl", "2s")];
const DEADLINE: Duration = Duration::from_secs(30);
/// The sidekicks' `--ttl` in the tests (the examples have the default, 60 s).
const TTL: u64 = 5;
/// The sidekick's `--ttl` when its host dies: shorter than it takes the cluster to notice the
/// death (agent_ttl) and start the pair elsewhere, so that the key expires rather than being
/// replaced.
const LOSS_TTL: u64 = 2;
const HOSTS: &[(&str, &str)] = &[("host-1", ""), ("host-2", ""), ("host-3", "")];
const APACHE_KEY: &str = "/services/website/apache";

/// An example unit of `units/` as the tests run it: flottectl is the binary under test rather
/// than `/usr/local/bin/flottectl`, and its announcements live `TTL` seconds.
fn example(name: &str) -> String {
    example_with_ttl(name, TTL)
}

fn example_with_ttl(name: &str, ttl: u64) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("units")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace(
            "/usr/local/bin/flottectl announce ",
            &format!("{} announce --ttl {ttl} ", env!("CARGO_BIN_EXE_flottectl")),
        )
}

async fn submit_example(t: &TestCluster, name: &str, desired: flotte::unit::DesiredState) {
    submit(&t.registry, name, &example(name), desired).await;
}

/// The announced keys under `/services/`, followed through `Registry::watch_services`.
struct Services {
    watch: TypedWatch<String, String>,
    keys: BTreeMap<String, String>,
}

impl Services {
    /// Follows the keys from their current state on.
    async fn follow(registry: &Registry) -> Services {
        let mut services = Services {
            watch: registry.watch_services("/services/"),
            keys: BTreeMap::new(),
        };
        services
            .next(DEADLINE, "the first list of /services/")
            .await;
        services
    }

    async fn next(&mut self, deadline: Duration, what: &str) {
        let update = tokio::time::timeout(deadline, self.watch.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{what}: nothing within {deadline:?}; keys: {:#?}",
                    self.keys
                )
            })
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match update {
            Update::Reset(items) => self.keys = items.into_iter().collect(),
            Update::Changes(changes) => {
                for (k, v) in changes {
                    match v {
                        Some(v) => self.keys.insert(k, v),
                        None => self.keys.remove(&k),
                    };
                }
            }
        }
    }

    /// Waits until `done` holds for the keys, or fails after `deadline` saying `what`.
    async fn until<T>(
        &mut self,
        deadline: Duration,
        what: &str,
        mut done: impl FnMut(&BTreeMap<String, String>) -> Option<T>,
    ) -> T {
        let end = Instant::now() + deadline;
        loop {
            if let Some(t) = done(&self.keys) {
                return t;
            }
            let left = end.saturating_duration_since(Instant::now());
            self.next(left, what).await;
        }
    }
}

/// The host named in an announced `{"host": ..., "port": ...}` value, and the port.
fn host_and_port(value: &str) -> (String, u64) {
    let json: serde_json::Value =
        serde_json::from_str(value).unwrap_or_else(|e| panic!("`{value}` is no JSON: {e}"));
    (
        json["host"].as_str().expect("a host").to_owned(),
        json["port"].as_u64().expect("a port"),
    )
}

/// The name of the host with this machine ID (what `%H` is on it).
fn hostname(t: &TestCluster, machine: &MachineId) -> String {
    let i = t
        .cluster
        .index_of(machine)
        .expect("a machine of the cluster");
    t.cluster.host(i).name().to_owned()
}

/// Runs the flottectl binary with the settings of host `i`'s flotted.
async fn flottectl(t: &TestCluster, i: usize, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .args(args)
        .env("FLOTTE_CONFIG", config(t, i))
        .output()
        .await
        .expect("flottectl runs")
}

fn config(t: &TestCluster, i: usize) -> PathBuf {
    t.cluster.host(i).dir().join("flotted.conf")
}

fn stdout_of(args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "flottectl {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// What an HTTP server at `address` answers to `GET /`, once it listens.
async fn http_get(address: &str) -> String {
    wait_for(
        DEADLINE,
        || format!("nothing answered HTTP at {address}"),
        || async {
            let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await.ok()?;
            Some(response)
        },
    )
    .await
    .unwrap()
}

/// Starts apache and its sidekick; returns the machine both run on, once the key is there.
async fn start_apache(
    t: &TestCluster,
    sidekick: &str,
    keys: &mut Services,
    key: &str,
) -> MachineId {
    submit_example(t, "apache.service", Launched).await;
    submit_example(t, sidekick, Launched).await;
    let placed = await_active(&t.registry, &["apache.service", sidekick], DEADLINE).await;
    let machine = placed["apache.service"].clone();
    assert_eq!(placed[sidekick], machine, "MachineOf=apache.service");
    let value = keys
        .until(DEADLINE, "the key announced", |k| k.get(key).cloned())
        .await;
    assert_eq!(
        host_and_port(&value),
        (hostname(t, &machine), 8080),
        "the key names the sidekick's host"
    );
    machine
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidekick_runs_beside_apache_and_announces_its_host_for_services_to_list() {
    let t = cluster("sidekick", HOSTS, FAST).await;
    let mut keys = Services::follow(&t.registry).await;
    let machine = start_apache(&t, "apache-sidekick.service", &mut keys, APACHE_KEY).await;
    let i = t.cluster.index_of(&machine).unwrap();

    // The announced host serves at the address its machine has in the cluster.
    let response = http_get(&format!("{}:8080", t.cluster.host_ip(i))).await;
    assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    assert!(
        response.ends_with(&format!(
            "Hello from apache on {}\n",
            hostname(&t, &machine)
        )),
        "{response}"
    );

    // flottectl services, with the settings of another host's flotted.
    let other = (i + 1) % t.cluster.len();
    let args = ["services", "--no-legend"];
    let listed = stdout_of(&args, flottectl(&t, other, &args).await);
    let row: Vec<&str> = listed
        .trim_end()
        .split('\t')
        .filter(|c| !c.is_empty())
        .collect();
    let ttl: u64 = row[2].trim_end_matches('s').parse().unwrap();
    assert!((1..=TTL).contains(&ttl), "{listed}");
    assert_eq!(
        [row[0], row[1], row[3], row[4]],
        [
            APACHE_KEY,
            &format!(r#"{{"host": "{}", "port": 8080}}"#, hostname(&t, &machine)),
            &format!("{}...", machine.short()),
            "apache-sidekick.service",
        ],
        "{listed}"
    );
    let args = [
        "services",
        "/services/website/",
        "--output",
        "json",
        "--full",
    ];
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&args, flottectl(&t, other, &args).await)).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json[0]["key"], APACHE_KEY);
    assert_eq!(json[0]["machine"], machine.as_str());
    assert_eq!(json[0]["unit"], "apache-sidekick.service");
    assert!(json[0]["ttl"].as_u64().is_some_and(|s| s <= TTL), "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_apache_stops_its_sidekick_and_the_key_is_gone_within_a_second() {
    let t = cluster("sidekickstop", HOSTS, FAST).await;
    let mut keys = Services::follow(&t.registry).await;
    let machine = start_apache(&t, "apache-sidekick.service", &mut keys, APACHE_KEY).await;

    // `services --watch` sees the key go too.
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .args(["services", "--watch"])
        .env("FLOTTE_CONFIG", config(&t, 0))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("a line from services --watch")
            .unwrap()
            .expect("services --watch goes on")
    };
    let first = next_line().await;
    assert!(
        first.starts_with(&format!("put\t{APACHE_KEY}\t")),
        "{first}"
    );

    let stop = Instant::now();
    set_desired(&t.registry, "apache.service", Loaded).await;
    keys.until(DEADLINE, "the key gone", |k| {
        (!k.contains_key(APACHE_KEY)).then_some(())
    })
    .await;
    let key_gone = stop.elapsed();
    await_states(
        &t.registry,
        DEADLINE,
        "apache and its sidekick stopped",
        |s| {
            ["apache.service", "apache-sidekick.service"]
                .iter()
                .all(|n| {
                    s.get(&(unit(n), machine.clone()))
                        .is_some_and(|r| r.active.as_str() == "inactive")
                })
                .then_some(())
        },
    )
    .await;
    let units_stopped = stop.elapsed();
    eprintln!(
        "stopping apache: key gone after {key_gone:?}; both units reported inactive after {units_stopped:?}"
    );
    assert!(
        key_gone <= Duration::from_secs(1),
        "the key went {key_gone:?} after apache was stopped"
    );
    assert_eq!(next_line().await, format!("delete\t{APACHE_KEY}"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watcher.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::time::timeout(DEADLINE, watcher.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "services --watch ends with 0 on SIGINT: {status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_host_dies_the_pair_moves_together_and_the_stale_key_never_outlives_its_ttl() {
    let mut t = cluster("sidekickloss", HOSTS, FAST).await;
    let mut keys = Services::follow(&t.registry).await;
    submit(
        &t.registry,
        "apache-sidekick.service",
        &example_with_ttl("apache-sidekick.service", LOSS_TTL),
        Launched,
    )
    .await;
    submit_example(&t, "apache.service", Launched).await;
    let placed = await_active(
        &t.registry,
        &["apache.service", "apache-sidekick.service"],
        DEADLINE,
    )
    .await;
    let victim = placed["apache.service"].clone();
    assert_eq!(placed["apache-sidekick.service"], victim);
    let victim_name = hostname(&t, &victim);
    let stale = keys
        .until(DEADLINE, "the key announced", |k| {
            k.get(APACHE_KEY)
                .filter(|v| host_and_port(v).0 == victim_name)
                .cloned()
        })
        .await;

    let killed = Instant::now();
    t.cluster
        .kill_host(t.cluster.index_of(&victim).unwrap())
        .unwrap();
    let after = keys
        .until(DEADLINE, "the dead host's entry gone", |k| {
            let now = k.get(APACHE_KEY);
            (now != Some(&stale)).then(|| now.cloned())
        })
        .await;
    let stale_for = killed.elapsed();
    let moved_to = await_states(
        &t.registry,
        DEADLINE,
        "the pair active on another host",
        |s| match (
            active_on(s, "apache.service").as_slice(),
            active_on(s, "apache-sidekick.service").as_slice(),
        ) {
            ([a], [b]) if a == b && *a != victim => Some(a.clone()),
            _ => None,
        },
    )
    .await;
    let moved = hostname(&t, &moved_to);
    let value = keys
        .until(DEADLINE, "the key naming the new host", |k| {
            k.get(APACHE_KEY)
                .filter(|v| host_and_port(v).0 == moved)
                .cloned()
        })
        .await;
    let announced_again = killed.elapsed();
    eprintln!(
        "host {victim_name} killed: its entry {} after {stale_for:?} (TTL {LOSS_TTL} s); \
         announced from {moved} after {announced_again:?}",
        if after.is_none() {
            "expired"
        } else {
            "replaced"
        }
    );
    assert_eq!(host_and_port(&value), (moved, 8080));
    // etcd expires leases in rounds of half a second, and the last renewal came up to a third
    // of the TTL before the kill.
    assert!(
        stale_for <= Duration::from_secs(LOSS_TTL) + Duration::from_millis(1500),
        "the dead host's entry lived {stale_for:?}, TTL {LOSS_TTL} s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_template_instances_each_announce_the_host_they_run_on() {
    let t = cluster("sidekicks", HOSTS, FAST).await;
    let mut keys = Services::follow(&t.registry).await;
    submit_example(&t, "web@.service", Inactive).await;
    submit_example(&t, "web-sidekick@.service", Inactive).await;
    let instances: Vec<(String, String)> = (1..=5)
        .map(|i| {
            (
                format!("web@{i}.service"),
                format!("web-sidekick@{i}.service"),
            )
        })
        .collect();
    for (web, sidekick) in &instances {
        submit(&t.registry, web, &example("web@.service"), Launched).await;
        submit(
            &t.registry,
            sidekick,
            &example("web-sidekick@.service"),
            Launched,
        )
        .await;
    }
    let names: Vec<&str> = instances
        .iter()
        .flat_map(|(w, s)| [w.as_str(), s.as_str()])
        .collect();
    let placed = await_active(&t.registry, &names, DEADLINE).await;
    let announced = keys
        .until(DEADLINE, "five keys", |k| {
            let web: BTreeMap<&String, &String> = k
                .iter()
                .filter(|(k, _)| k.starts_with("/services/web/"))
                .collect();
            (web.len() == 5).then(|| k.clone())
        })
        .await;
    for (i, (web, sidekick)) in instances.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(placed[sidekick], placed[web], "MachineOf=web@{n}.service");
        let value = &announced[&format!("/services/web/{n}")];
        assert_eq!(
            host_and_port(value),
            (hostname(&t, &placed[web]), 8000 + n),
            "{value}"
        );
    }
    let host = t.cluster.index_of(&placed["web@3.service"]).unwrap();
    let response = http_get(&format!("{}:8003", t.cluster.host_ip(host))).await;
    assert!(response.contains("Hello from web@3 on "), "{response}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_etcdctl_sidekick_announces_its_key_and_deletes_it_when_apache_stops() {
    let t = cluster("sidekicketcdctl", HOSTS, FAST).await;
    let mut keys = Services::follow(&t.registry).await;
    let key = "/services/website/apache-etcdctl";
    let machine = start_apache(&t, "apache-sidekick-etcdctl.service", &mut keys, key).await;
    let listed = flotte::discovery::services(&t.registry, "/services/")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0]
            .ttl
            .is_some_and(|ttl| ttl <= Duration::from_secs(30)),
        "under etcdctl's lease: {listed:?}"
    );
    assert_eq!(listed[0].announcer, None, "etcdctl records no announcer");

    let stop = Instant::now();
    set_desired(&t.registry, "apache.service", Loaded).await;
    keys.until(DEADLINE, "the key deleted by ExecStop", |k| {
        (!k.contains_key(key)).then_some(())
    })
    .await;
    eprintln!(
        "etcdctl sidekick: key gone {:?} after stopping apache",
        stop.elapsed()
    );
    await_unit_state(
        &t.registry,
        "apache-sidekick-etcdctl.service",
        &machine,
        DEADLINE,
        "stopped with apache",
        |r| r.active.as_str() == "inactive",
    )
    .await;
}

/// A flotted configuration naming an etcd that does not listen.
fn unreachable_etcd(dir: &Path) -> (PathBuf, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let file = dir.join("flotted.conf");
    std::fs::write(&file, format!("etcd_servers={url}\n")).unwrap();
    (file, url)
}

#[tokio::test]
async fn announce_refuses_an_invalid_key_or_an_unreachable_etcd_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (file, url) = unreachable_etcd(dir.path());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flottectl"))
            .args(args)
            .arg("--config")
            .arg(&file)
            .env_remove("NOTIFY_SOCKET")
            .output()
    };
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["announce", "services/web", "x"],
            2,
            "flottectl: service key `services/web` is invalid: it must start with `/`\n",
        ),
        (
            &["announce", "/flotte/units/x.service", "x"],
            2,
            "flottectl: service key `/flotte/units/x.service` is invalid: it is under flotte's own prefix `/flotte/`\n",
        ),
        (
            &["announce", "/services/web", "x"],
            1,
            &format!("flottectl: etcd at {url} is unreachable: "),
        ),
        (
            &["services"],
            1,
            &format!("flottectl: etcd at {url} is unreachable: "),
        ),
        (
            &["announce", "--ttl", "1", "/services/web", "x"],
            2,
            "error: invalid value '1' for '--ttl <SECONDS>'",
        ),
    ];
    for (args, code, message) in cases {
        let out = run(args).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.starts_with(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn announce_withdraws_its_key_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = flotte::isolated::Etcd::start(dir.path()).await.unwrap();
    let file = dir.path().join("flotted.conf");
    std::fs::write(
        &file,
        format!(
            "etcd_servers={}\nmachine_id={}\n",
            etcd.client_url(),
            "ab".repeat(16)
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .args(["announce", "/services/by-hand", "10.0.0.9:80", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        line.as_deref(),
        Some("Announced /services/by-hand with a TTL of 60 s")
    );
    let registry = Registry::connect(&flotte::registry::EtcdSettings {
        endpoints: vec![etcd.client_url().to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    let listed = flotte::discovery::services(&registry, "/services/")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let announcer = listed[0]
        .announcer
        .as_ref()
        .expect("flottectl says who it is");
    assert_eq!(
        announcer.machine.as_ref().map(|m| m.as_str()),
        Some("ab".repeat(16).as_str())
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("Stopped announcing /services/by-hand")
    );
    assert!(
        flotte::discovery::services(&registry, "/services/")
            .await
            .unwrap()
            .is_empty(),
        "the lease was revoked before exiting"
    );
}
