//! A whole cluster on this machine: one etcd and N isolated systemd hosts, each running its
//! own flotted inside the host's namespaces. Used by integration tests, benchmarks and
//! `packaging/local-cluster`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{Etcd, EtcdCluster, EtcdRecord, Host, HostRecord, IsolatedError, Link};
use crate::machine::MachineId;
use crate::registry::{EtcdSettings, Registry};

/// One host of the cluster to be.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    /// `key=value,...`, as flotted's `metadata` setting.
    pub metadata: String,
    /// A TCP port to serve the API on as well (`listen_tcp`), on the host's own address: the
    /// web page (`/ui/`) for a browser, which reaches no unix socket.
    pub api_port: Option<u16>,
    /// Extra `key=value` settings for this host's flotted alone (e.g. `capacity=…`), written
    /// after the cluster's own.
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Where every host's and etcd's state lives.
    pub root: PathBuf,
    /// Prefix of the hosts' cgroup names (tests put their PID in it, see `sweep_stale_test_hosts`).
    pub group_prefix: String,
    pub hosts: Vec<HostSpec>,
    pub flotted: PathBuf,
    /// Extra `key=value` settings for every flotted (e.g. `agent_ttl=3s`).
    pub settings: Vec<(String, String)>,
    pub etcd_access: EtcdAccess,
    /// The first host's public IP; host `i` gets the `i`-th address after it. Hosts share this
    /// machine's network, so units that serve on their host's address (the example web
    /// servers) only stay apart across clusters running at once if each has its own range.
    pub first_ip: std::net::Ipv4Addr,
}

impl ClusterSpec {
    /// The loopback address host `i` presents as its public IP.
    pub fn host_ip(&self, i: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(u32::from(self.first_ip) + i as u32)
    }
}

/// How each flotted reaches etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdAccess {
    Direct,
    /// Through a `Link` per host, which a test can cut to partition that host from etcd.
    ThroughLinks,
    /// An etcd cluster of this many members (`EtcdCluster`), every flotted given all of their
    /// endpoints.
    Members(usize),
}

/// What is needed to reach and stop a host's flotted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRecord {
    pub host: HostRecord,
    pub flotted_pid: Option<i32>,
    pub config: PathBuf,
    /// The API socket of this host's flotted.
    pub socket: PathBuf,
    /// Its TCP listener, if it has one (`HostSpec::api_port`); absent in older state files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<std::net::SocketAddr>,
}

/// Everything a running cluster is made of; `packaging/local-cluster` keeps it as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub root: PathBuf,
    pub etcd: EtcdRecord,
    pub prefix: String,
    pub members: Vec<MemberRecord>,
}

pub struct Cluster {
    etcd: Option<Etcd>,
    /// With `EtcdAccess::Members`, instead of `etcd`.
    etcd_members: Option<EtcdCluster>,
    members: Vec<Member>,
    spec: ClusterSpec,
    prefix: String,
}

struct Member {
    host: Host,
    link: Option<Link>,
    flotted: Option<std::process::Child>,
    config: PathBuf,
    socket: PathBuf,
    tcp: Option<std::net::SocketAddr>,
}

impl Cluster {
    /// Starts etcd, the hosts and their flotted, and waits until every machine registered.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, IsolatedError> {
        super::sweep_stale_test_hosts();
        fs::create_dir_all(&spec.root)
            .map_err(|e| IsolatedError::io(format!("creating {}", spec.root.display()), e))?;
        let (etcd, etcd_members) = match spec.etcd_access {
            EtcdAccess::Members(n) => (None, Some(EtcdCluster::start(&spec.root, n).await?)),
            EtcdAccess::Direct | EtcdAccess::ThroughLinks => {
                (Some(Etcd::start(&spec.root.join("etcd")).await?), None)
            }
        };
        let prefix = "/flotte/".to_owned();
        let mut cluster = Cluster {
            etcd,
            etcd_members,
            members: Vec::new(),
            spec: spec.clone(),
            prefix,
        };
        for (i, h) in spec.hosts.iter().enumerate() {
            let dir = spec.root.join(&h.name);
            let group = format!("{}-{}", spec.group_prefix, h.name);
            let host = Host::start(&h.name, &dir, &group).await?;
            let config = dir.join("flotted.conf");
            let socket = dir.join("flotte.sock");
            let link = match spec.etcd_access {
                EtcdAccess::Direct | EtcdAccess::Members(_) => None,
                EtcdAccess::ThroughLinks => {
                    let upstream = cluster
                        .etcd
                        .as_ref()
                        .expect("etcd runs while the cluster does")
                        .client_addr();
                    Some(Link::start(upstream).await?)
                }
            };
            let etcd_url = match &link {
                Some(l) => format!("http://{}", l.addr()),
                None => cluster.etcd_endpoints().join(","),
            };
            set_config_env(&host, &config).await?;
            let mut lines = vec![
                format!("etcd_servers={etcd_url}"),
                format!("etcd_key_prefix={}", cluster.prefix),
                format!("machine_id={}", host.machine_id()),
                format!("metadata={}", h.metadata),
                // Hosts share this machine's network; distinct loopback addresses keep them
                // apart in listings and let a unit bind to its own host's address.
                format!("public_ip={}", spec.host_ip(i)),
                format!("systemd_bus=unix:path={}", dir.join("bus").display()),
                "units_directory=/run/flotte/units".to_owned(),
                format!("listen={}", socket.display()),
            ];
            // Each API on its host's own address too (the given port, or any), published in
            // the machine record, so that one flotted reaches another's (status and journal of
            // a unit running there, the fence's questions to its peers).
            // Only a fixed port is known before flotted binds it (the record's `tcp`).
            let tcp = h
                .api_port
                .map(|port| std::net::SocketAddr::from((spec.host_ip(i), port)));
            match tcp {
                Some(addr) => lines.push(format!("listen_tcp={addr}")),
                None if !spec.settings.iter().any(|(k, _)| k == "listen_tcp") => {
                    lines.push(format!("listen_tcp={}:0", spec.host_ip(i)));
                }
                None => {}
            }
            lines.extend(spec.settings.iter().map(|(k, v)| format!("{k}={v}")));
            lines.extend(h.settings.iter().map(|(k, v)| format!("{k}={v}")));
            fs::write(&config, lines.join("\n") + "\n")
                .map_err(|e| IsolatedError::io("writing flotted.conf", e))?;
            cluster.members.push(Member {
                host,
                link,
                flotted: None,
                config,
                socket,
                tcp,
            });
        }
        for i in 0..cluster.members.len() {
            cluster.start_flotted(i)?;
        }
        let ids: Vec<MachineId> = cluster
            .members
            .iter()
            .map(|m| m.host.machine_id().clone())
            .collect();
        cluster
            .wait_for_machines(&ids, Duration::from_secs(30))
            .await?;
        Ok(cluster)
    }

    /// The address host `i` presents as its public IP.
    pub fn host_ip(&self, i: usize) -> std::net::Ipv4Addr {
        self.spec.host_ip(i)
    }

    /// etcd's client URL (the first member's, with `EtcdAccess::Members`).
    pub fn etcd_url(&self) -> String {
        self.etcd_endpoints().remove(0)
    }

    /// Every etcd member's client URL.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        match (&self.etcd, &self.etcd_members) {
            (Some(etcd), _) => vec![etcd.client_url().to_owned()],
            (None, Some(members)) => members.endpoints(),
            (None, None) => unreachable!("etcd runs while the cluster does"),
        }
    }

    /// The single etcd's PID (not with `EtcdAccess::Members`).
    pub fn etcd_pid(&self) -> Option<i32> {
        self.etcd.as_ref().map(|e| e.record().pid)
    }

    /// The etcd members, with `EtcdAccess::Members`.
    pub fn etcd_members(&mut self) -> Option<&mut EtcdCluster> {
        self.etcd_members.as_mut()
    }

    pub fn etcd_settings(&self) -> EtcdSettings {
        EtcdSettings {
            endpoints: self.etcd_endpoints(),
            prefix: self.prefix.clone(),
            ..EtcdSettings::default()
        }
    }

    pub async fn registry(&self) -> Result<Registry, IsolatedError> {
        Registry::connect(&self.etcd_settings())
            .await
            .map_err(|e| IsolatedError::Missing(format!("connecting to the cluster's etcd: {e}")))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.members[i].host
    }

    pub fn machine_id(&self, i: usize) -> &MachineId {
        self.members[i].host.machine_id()
    }

    /// The index of the host with this machine ID.
    pub fn index_of(&self, id: &MachineId) -> Option<usize> {
        self.members.iter().position(|m| m.host.machine_id() == id)
    }

    pub fn socket(&self, i: usize) -> &Path {
        &self.members[i].socket
    }

    /// Host `i`'s TCP API listener, if its spec gave it one.
    pub fn tcp(&self, i: usize) -> Option<std::net::SocketAddr> {
        self.members[i].tcp
    }

    /// The PID of host `i`'s flotted, while it runs.
    pub fn flotted_pid(&self, i: usize) -> Option<i32> {
        self.members[i].flotted.as_ref().map(|c| c.id() as i32)
    }

    /// Starts host `i`'s flotted (inside the host's mount and UTS namespaces).
    pub fn start_flotted(&mut self, i: usize) -> Result<(), IsolatedError> {
        let member = &mut self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.host.dir().join("flotted.log"))
            .map_err(|e| IsolatedError::io("opening flotted.log", e))?;
        let record = member.host.record();
        let mut command = std::process::Command::new("nsenter");
        // Each flotted follows its flotted.conf alone: FLOTTE_* settings in the environment of
        // whoever started the cluster (a test, `local-cluster`) would override it.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FLOTTE_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("-t")
            .arg(record.pid.to_string())
            .args(["-m", "-u", "--"])
            .arg(&self.spec.flotted)
            .arg("--config")
            .arg(&member.config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,flotte=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| IsolatedError::io("flotted.log", e))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|e| IsolatedError::io("starting flotted", e))?;
        member.flotted = Some(child);
        Ok(())
    }

    /// Stops host `i`'s flotted with `signal` (SIGKILL: a crash; SIGTERM: a clean stop).
    pub fn stop_flotted(&mut self, i: usize, signal: Signal) {
        if let Some(mut child) = self.members[i].flotted.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
            let _ = child.wait();
        }
    }

    /// Kills host `i` entirely, as if the machine died: its flotted and every process of it.
    pub fn kill_host(&mut self, i: usize) -> Result<(), IsolatedError> {
        self.stop_flotted(i, Signal::SIGKILL);
        self.members[i].host.kill()
    }

    /// Starts host `i` again (killing it first if `kill_host` did not), as a machine that
    /// rebooted: the same directory, machine ID and flotted configuration, a fresh `/run`
    /// (no units, no lease file), then its flotted.
    pub async fn restart_host(&mut self, i: usize) -> Result<(), IsolatedError> {
        self.kill_host(i)?;
        let spec = &self.spec.hosts[i];
        let group = format!("{}-{}", self.spec.group_prefix, spec.name);
        let member = &mut self.members[i];
        let dir = member.host.dir().to_owned();
        let id = member.host.machine_id().clone();
        member.host = Host::start_as(&spec.name, &dir, &group, id).await?;
        set_config_env(&member.host, &member.config).await?;
        self.start_flotted(i)
    }

    /// The link between host `i`'s flotted and etcd (with `EtcdAccess::ThroughLinks`).
    pub fn link(&self, i: usize) -> Option<&Link> {
        self.members[i].link.as_ref()
    }

    /// Waits until every one of `ids` is registered, following the machines watch.
    pub async fn wait_for_machines(
        &self,
        ids: &[MachineId],
        deadline: Duration,
    ) -> Result<(), IsolatedError> {
        let registry = self.registry().await?;
        let mut watch = registry.watch_machines();
        let mut present = BTreeMap::new();
        let wait = watch.until(&mut present, |present| {
            ids.iter().all(|id| present.contains_key(id)).then_some(())
        });
        tokio::time::timeout(deadline, wait)
            .await
            .map_err(|_| IsolatedError::Timeout {
                after: deadline,
                what: format!(
                    "machines did not all register (logs: {})",
                    self.members
                        .iter()
                        .map(|m| m.host.dir().join("flotted.log").display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Leaves everything running and returns what is needed to stop it later (a cluster with
    /// a single etcd only).
    pub fn detach(mut self) -> ClusterRecord {
        let members = std::mem::take(&mut self.members)
            .into_iter()
            .map(|m| MemberRecord {
                flotted_pid: m.flotted.map(|c| c.id() as i32),
                host: m.host.detach(),
                config: m.config,
                socket: m.socket,
                tcp: m.tcp,
            })
            .collect();
        ClusterRecord {
            root: self.spec.root.clone(),
            etcd: self
                .etcd
                .take()
                .expect("etcd runs while the cluster does")
                .detach(),
            prefix: self.prefix.clone(),
            members,
        }
    }
}

/// Units on the host (a sidekick's `flottectl announce`) find this flotted's configuration,
/// as they would find /etc/flotte/flotted.conf on a real machine.
async fn set_config_env(host: &Host, config: &Path) -> Result<(), IsolatedError> {
    let set_env = async {
        let systemd = crate::systemd::Systemd::connect(&host.bus()).await?;
        systemd
            .set_environment(&[format!("FLOTTE_CONFIG={}", config.display())])
            .await
    };
    set_env.await.map_err(|e| {
        IsolatedError::Missing(format!("setting FLOTTE_CONFIG on {}: {e}", host.name()))
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_flotted(i, Signal::SIGKILL);
        }
        // Hosts and etcd stop in their own Drop.
    }
}

impl ClusterRecord {
    /// Stops everything the cluster started and removes its state.
    pub fn stop(&self) -> Result<(), IsolatedError> {
        for m in &self.members {
            if let Some(pid) = m.flotted_pid {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            m.host.kill()?;
        }
        self.etcd.kill()?;
        match fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IsolatedError::io(
                format!("removing {}", self.root.display()),
                e,
            )),
            _ => Ok(()),
        }
    }
}
