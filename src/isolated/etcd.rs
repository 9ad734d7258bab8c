//! A real etcd server on free loopback ports, with its data in a directory of its own.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::{IsolatedError, wait_for};

/// What is needed to reach and stop an etcd started by `Etcd::start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdRecord {
    pub pid: i32,
    pub client_url: String,
    pub data_dir: PathBuf,
}

impl EtcdRecord {
    pub fn is_running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Kills the server and removes its data.
    pub fn kill(&self) -> Result<(), IsolatedError> {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        // Reap it if it is our child, so no zombie keeps the PID alive.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(self.pid), None);
        match fs::remove_dir_all(&self.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IsolatedError::io(
                format!("removing {}", self.data_dir.display()),
                e,
            )),
        }
    }
}

/// Client TLS of a test etcd: its certificate and key, the CA that signed them and that its
/// clients' certificates must be signed by, and a client identity `Etcd::start_with` checks it with.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

impl EtcdTls {
    fn client_options(&self) -> std::io::Result<etcd_client::ConnectOptions> {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(fs::read(&self.ca_file)?))
            .identity(etcd_client::Identity::from_pem(
                fs::read(&self.client_cert_file)?,
                fs::read(&self.client_key_file)?,
            ));
        Ok(etcd_client::ConnectOptions::new().with_tls(tls))
    }
}

/// A running etcd, killed (and its data removed) when dropped unless detached.
pub struct Etcd {
    record: EtcdRecord,
    detached: bool,
}

impl Etcd {
    /// Starts etcd with its data directory and log under `dir`.
    pub async fn start(dir: &Path) -> Result<Etcd, IsolatedError> {
        Self::start_with(dir, None).await
    }

    /// Starts etcd serving clients over TLS (with `tls`) or plain HTTP.
    pub async fn start_with(dir: &Path, tls: Option<&EtcdTls>) -> Result<Etcd, IsolatedError> {
        if super::which("etcd").is_none() {
            return Err(IsolatedError::Missing(
                "`etcd` (Debian package etcd-server)".into(),
            ));
        }
        fs::create_dir_all(dir)
            .map_err(|e| IsolatedError::io(format!("creating {}", dir.display()), e))?;
        let mut last = None;
        // Free ports are found by binding port 0; another process may take one before etcd
        // binds it, so a failed start is retried with new ports.
        for _ in 0..3 {
            match Self::try_start(dir, tls).await {
                Ok(etcd) => return Ok(etcd),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn try_start(dir: &Path, tls: Option<&EtcdTls>) -> Result<Etcd, IsolatedError> {
        let client = free_port()?;
        let peer = free_port()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data_dir = dir.join("data");
        let _ = fs::remove_dir_all(&data_dir);
        let log = fs::File::create(dir.join("etcd.log"))
            .map_err(|e| IsolatedError::io("creating etcd.log", e))?;
        let mut command = std::process::Command::new("etcd");
        if let Some(tls) = tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert_file)
                .arg("--key-file")
                .arg(&tls.key_file)
                .arg("--trusted-ca-file")
                .arg(&tls.ca_file)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", "flotte-test"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("flotte-test={peer_url}")])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| IsolatedError::io("etcd.log", e))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|e| IsolatedError::io("spawning etcd", e))?;
        let etcd = Etcd {
            record: EtcdRecord {
                pid: child.id() as i32,
                client_url: client_url.clone(),
                data_dir,
            },
            detached: false,
        };
        drop(child);
        let log_path = dir.join("etcd.log");
        wait_for(
            Duration::from_secs(20),
            || {
                format!(
                    "etcd did not serve on {client_url} (log: {})",
                    fs::read_to_string(&log_path).unwrap_or_default().trim()
                )
            },
            || async {
                if !etcd.record.is_running() {
                    // Exited (port taken?): stop waiting at once.
                    return Some(false);
                }
                let options = match tls {
                    Some(tls) => Some(tls.client_options().ok()?),
                    None => None,
                };
                let mut c = etcd_client::Client::connect([client_url.as_str()], options)
                    .await
                    .ok()?;
                c.status().await.ok().map(|_| true)
            },
        )
        .await
        .and_then(|up| {
            if up {
                Ok(etcd)
            } else {
                Err(IsolatedError::Missing(format!(
                    "etcd exited at start-up (log: {})",
                    fs::read_to_string(dir.join("etcd.log"))
                        .unwrap_or_default()
                        .trim()
                )))
            }
        })
    }

    pub fn client_url(&self) -> &str {
        &self.record.client_url
    }

    /// The address clients connect to (the client URL without its scheme).
    pub fn client_addr(&self) -> std::net::SocketAddr {
        let (_, addr) = self
            .record
            .client_url
            .split_once("://")
            .expect("a URL built here");
        addr.parse()
            .expect("etcd listens on an IP address and port")
    }

    pub fn record(&self) -> &EtcdRecord {
        &self.record
    }

    pub fn detach(mut self) -> EtcdRecord {
        self.detached = true;
        self.record.clone()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if !self.detached
            && let Err(e) = self.record.kill()
        {
            eprintln!("isolated: {e}");
        }
    }
}

fn free_port() -> Result<u16, IsolatedError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| IsolatedError::io("finding a free port", e))
}

/// A cluster of etcd members on loopback ports, each of which a test can stop (SIGKILL),
/// freeze (SIGSTOP) and start again with its data, as machines of a real etcd cluster fail.
/// Every member is killed and its data removed when dropped.
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    token: String,
}

struct EtcdMember {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
}

impl EtcdCluster {
    /// Starts `n` members under `dir` and waits until they elected a leader.
    pub async fn start(dir: &Path, n: usize) -> Result<EtcdCluster, IsolatedError> {
        if super::which("etcd").is_none() {
            return Err(IsolatedError::Missing(
                "`etcd` (Debian package etcd-server)".into(),
            ));
        }
        let mut members = Vec::new();
        for i in 0..n {
            let member_dir = dir.join(format!("etcd-{i}"));
            fs::create_dir_all(&member_dir)
                .map_err(|e| IsolatedError::io(format!("creating {}", member_dir.display()), e))?;
            let data_dir = member_dir.join("data");
            let _ = fs::remove_dir_all(&data_dir);
            members.push(EtcdMember {
                name: format!("member-{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()?),
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
                data_dir,
                log: member_dir.join("etcd.log"),
                child: None,
            });
        }
        let mut cluster = EtcdCluster {
            members,
            token: format!("flotte-{}-{}", std::process::id(), free_port()?),
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), IsolatedError> {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        let m = &mut self.members[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| IsolatedError::io("opening etcd.log", e))?;
        let child = std::process::Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| IsolatedError::io("etcd.log", e))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|e| IsolatedError::io("spawning etcd", e))?;
        m.child = Some(child);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Kills member `i` (its data stays, for `restart`).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data; it rejoins the cluster.
    pub async fn restart(&mut self, i: usize) -> Result<(), IsolatedError> {
        self.restart_all(&[i]).await
    }

    /// Starts `members` again on their data, all at once, and waits until each serves: a
    /// member serves clients only once it has a quorum, so members that make one only
    /// together (two of three, or all) must start together.
    pub async fn restart_all(&mut self, members: &[usize]) -> Result<(), IsolatedError> {
        for &i in members {
            self.stop(i);
            self.spawn(i)?;
        }
        for &i in members {
            let url = self.members[i].client_url.clone();
            let log = self.members[i].log.clone();
            wait_for(
                Duration::from_secs(20),
                || {
                    format!(
                        "etcd member {i} did not serve again on {url} (log: {})",
                        log.display()
                    )
                },
                || async {
                    let mut c = etcd_client::Client::connect([url.as_str()], None)
                        .await
                        .ok()?;
                    c.status().await.ok().map(|_| ())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) member `i`.
    pub fn freeze(&self, i: usize, frozen: bool) {
        if let Some(child) = &self.members[i].child {
            let signal = if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            };
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    /// The index of the member that leads, as the running members see it.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            let status = async {
                let mut c = etcd_client::Client::connect([m.client_url.as_str()], None)
                    .await
                    .ok()?;
                c.status().await.ok()
            };
            let status = match m.child {
                Some(_) => tokio::time::timeout(Duration::from_secs(2), status)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            ids.push(
                status
                    .as_ref()
                    .and_then(|s| s.header())
                    .map(|h| h.member_id()),
            );
            if let Some(s) = status
                && s.leader() != 0
            {
                leader = Some(s.leader());
            }
        }
        let leader = leader?;
        ids.iter().position(|id| *id == Some(leader))
    }

    /// Waits until the running members agree on a leader.
    pub async fn wait_for_leader(&self, deadline: Duration) -> Result<usize, IsolatedError> {
        wait_for(
            deadline,
            || {
                format!(
                    "etcd members elected no leader (logs: {})",
                    self.members
                        .iter()
                        .map(|m| m.log.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            || self.leader(),
        )
        .await
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
            let _ = fs::remove_dir_all(&self.members[i].data_dir);
        }
    }
}
