//! Shared helpers of the integration tests: a cluster per test, and waits that follow etcd
//! watches until a condition holds or a deadline passes, saying what did not happen.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flotte::isolated::{Cluster, ClusterSpec, EtcdAccess, HostSpec};
use flotte::machine::MachineId;
use flotte::registry::{Registry, TypedWatch, UnitStateRecord};
use flotte::unit::{DesiredState, UnitFile, UnitName};

pub struct TestCluster {
    pub cluster: Cluster,
    pub registry: Registry,
    _dir: tempfile::TempDir,
}

/// Starts `hosts` (name, metadata) with extra flotted `settings`.
pub async fn cluster(test: &str, hosts: &[(&str, &str)], settings: &[(&str, &str)]) -> TestCluster {
    cluster_with(test, hosts, settings, EtcdAccess::Direct).await
}

/// A range of loopback addresses for one test cluster's hosts, unlike any other cluster's of
/// this process (a counter) and, most likely, of another test process (the PID): 127.A.B.1,
/// .2, ... The quick start's own cluster uses 127.0.1.x, which this never gives.
pub fn unique_first_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(
        127,
        (2 + std::process::id() % 250) as u8,
        (n % 256) as u8,
        1,
    )
}

/// Like `cluster`, but every flotted reaches etcd through a link the test can cut.
pub async fn partitionable_cluster(
    test: &str,
    hosts: &[(&str, &str)],
    settings: &[(&str, &str)],
) -> TestCluster {
    cluster_with(test, hosts, settings, EtcdAccess::ThroughLinks).await
}

pub async fn cluster_with(
    test: &str,
    hosts: &[(&str, &str)],
    settings: &[(&str, &str)],
    etcd_access: EtcdAccess,
) -> TestCluster {
    cluster_at(test, hosts, settings, etcd_access, unique_first_ip()).await
}

/// Like `cluster`, with host-1's address given (`unique_first_ip`), for settings that name
/// the hosts' addresses (certificates).
pub async fn cluster_at(
    test: &str,
    hosts: &[(&str, &str)],
    settings: &[(&str, &str)],
    etcd_access: EtcdAccess,
    first_ip: Ipv4Addr,
) -> TestCluster {
    let hosts = hosts
        .iter()
        .map(|(n, m)| HostSpec {
            name: n.to_string(),
            metadata: m.to_string(),
            api_port: None,
            settings: Vec::new(),
        })
        .collect();
    cluster_of_at(test, hosts, settings, etcd_access, first_ip).await
}

/// Starts a cluster of these hosts.
pub async fn cluster_of(
    test: &str,
    hosts: Vec<HostSpec>,
    settings: &[(&str, &str)],
    etcd_access: EtcdAccess,
) -> TestCluster {
    cluster_of_at(test, hosts, settings, etcd_access, unique_first_ip()).await
}

pub async fn cluster_of_at(
    test: &str,
    hosts: Vec<HostSpec>,
    settings: &[(&str, &str)],
    etcd_access: EtcdAccess,
    first_ip: Ipv4Addr,
) -> TestCluster {
    let dir = tempfile::Builder::new()
        .prefix(&format!("flotte-{test}-"))
        .tempdir()
        .unwrap();
    let spec = ClusterSpec {
        root: dir.path().to_owned(),
        group_prefix: format!("flotte-test-{}-{test}", std::process::id()),
        hosts,
        flotted: env!("CARGO_BIN_EXE_flotted").into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        etcd_access,
        first_ip,
    };
    let cluster = Cluster::start(spec).await.expect("test cluster starts");
    let registry = cluster.registry().await.unwrap();
    TestCluster {
        cluster,
        registry,
        _dir: dir,
    }
}

pub fn unit(name: &str) -> UnitName {
    UnitName::new(name).unwrap()
}

pub fn file(text: &str) -> UnitFile {
    UnitFile::parse(text.as_bytes()).unwrap().file
}

pub async fn submit(registry: &Registry, name: &str, text: &str, desired: DesiredState) {
    registry
        .put_unit(&unit(name), &file(text), desired)
        .await
        .unwrap();
}

pub async fn set_desired(registry: &Registry, name: &str, desired: DesiredState) {
    let u = unit(name);
    let (mut record, rev) = registry.unit(&u).await.unwrap().expect("unit exists");
    record.desired = desired;
    registry.set_desired(&u, &record, rev).await.unwrap();
}

/// Follows `watch` until `done` holds for the whole map, or fails after `deadline` saying
/// `what` and showing the last map seen.
pub async fn await_map<K: Ord + std::fmt::Debug, V: std::fmt::Debug, T>(
    mut watch: TypedWatch<K, V>,
    deadline: Duration,
    what: impl std::fmt::Display,
    mut done: impl FnMut(&BTreeMap<K, V>) -> Option<T>,
) -> T {
    let mut map = BTreeMap::new();
    let follow = watch.until(&mut map, &mut done);
    match tokio::time::timeout(deadline, follow).await {
        Ok(t) => t,
        Err(_) => panic!("{what} did not happen within {deadline:?}; last seen: {map:#?}"),
    }
}

pub type States = BTreeMap<(UnitName, MachineId), UnitStateRecord>;

/// Waits until the unit states satisfy `done`.
pub async fn await_states<T>(
    registry: &Registry,
    deadline: Duration,
    what: impl std::fmt::Display,
    done: impl FnMut(&States) -> Option<T>,
) -> T {
    await_map(registry.watch_states(), deadline, what, done).await
}

/// The machines where `name` is reported with systemd ActiveState `active`.
pub fn active_on(states: &States, name: &str) -> Vec<MachineId> {
    states
        .iter()
        .filter(|((u, _), s)| u.as_str() == name && s.active.as_str() == "active")
        .map(|((_, m), _)| m.clone())
        .collect()
}

/// Waits until each named unit is active on exactly one machine; returns where.
pub async fn await_active(
    registry: &Registry,
    names: &[&str],
    deadline: Duration,
) -> BTreeMap<String, MachineId> {
    await_states(registry, deadline, format!("{names:?} all active"), |s| {
        let mut found = BTreeMap::new();
        for n in names {
            match active_on(s, n).as_slice() {
                [m] => found.insert(n.to_string(), m.clone()),
                _ => return None,
            };
        }
        Some(found)
    })
    .await
}

/// The state record of `name` on `machine`, once `done` holds for it.
pub async fn await_unit_state(
    registry: &Registry,
    name: &str,
    machine: &MachineId,
    deadline: Duration,
    what: &str,
    done: impl Fn(&UnitStateRecord) -> bool,
) -> UnitStateRecord {
    let key = (unit(name), machine.clone());
    await_states(
        registry,
        deadline,
        format!("{name} on {machine}: {what}"),
        |s| s.get(&key).filter(|r| done(r)).cloned(),
    )
    .await
}

/// Awaits `fut`, failing the test with `what` did not happen if it takes over `deadline`.
pub async fn within<T>(what: &str, deadline: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(deadline, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {deadline:?}"))
}

/// Runs `f` and returns its value with how long it took.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = std::time::Instant::now();
    let t = f.await;
    (t, start.elapsed())
}

/// A certificate authority made at test time, issuing certificates for TLS tests.
pub struct Pki {
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Pki {
            ca: rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap(),
        }
    }

    /// A certificate for `names` signed by the CA, as (certificate PEM, key PEM).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The flottectl binary pointed at host `i`'s API socket, `args` after.
pub fn flottectl_command(t: &TestCluster, i: usize, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flottectl"));
    command
        .arg("--endpoint")
        .arg(format!("unix://{}", t.cluster.socket(i).display()))
        .args(args);
    command
}

/// Runs flottectl against host `i`'s API.
pub async fn flottectl_on(t: &TestCluster, i: usize, args: &[&str]) -> Output {
    flottectl_command(t, i, args)
        .output()
        .await
        .expect("flottectl runs")
}

/// flottectl's standard output, failing the test with its status, output and errors unless it
/// succeeded.
pub fn succeeded(args: &[&str], out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "flottectl {args:?} failed ({:?}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `GET path` over `io` (a connection to a flotted's API socket or TCP listener) with this
/// `Host:` header, as any HTTP/1.1 client sends it: the response, its body unread.
pub async fn http_get<S>(io: S, host: &str, path: &str) -> hyper::Response<hyper::body::Incoming>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", host)
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    sender.send_request(request).await.unwrap()
}
