//! The quick start's local cluster (`packaging/local-cluster`): etcd and three isolated systemd
//! hosts with a flotted each, started with `isolated`, left running and remembered in a state
//! directory, with the example units of `units/` started on them through flottectl.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::endpoint::Endpoint;
use super::fields;
use super::resolve::UnitArg;
use super::{
    BlockArgs, Cli, CliError, Command, Console, GlobalArgs, ListArgs, ListMachinesArgs,
    ListUnitsArgs, OutputFormat, ScheduleArgs, SubmitArgs, table,
};
use crate::isolated::{
    Cluster, ClusterRecord, ClusterSpec, EtcdAccess, HostSpec, IsolatedError, wait_for,
};
use crate::unit::UnitName;

/// Where the state lives unless `FLOTTE_LOCAL_CLUSTER_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flotte-local-cluster";

/// The hosts, with metadata that lets `[X-Fleet]` examples choose between them.
pub const HOSTS: &[(&str, &str)] = &[
    ("host-1", "region=eu,disk=ssd"),
    ("host-2", "region=eu,disk=hdd"),
    ("host-3", "region=us,disk=ssd"),
];

/// The instances started of each template in `units/`.
const INSTANCES: &[&str] = &["1", "2"];

/// How long `up` waits for the example units: fleetctl's half-second attempts, so 2 minutes.
const START_ATTEMPTS: u32 = 240;

/// How long `up` lets systemd take to run the started examples before listing them.
const SETTLE: Duration = Duration::from_secs(30);

const STATE_FILE: &str = "cluster.json";

/// What `up` needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub flotted: PathBuf,
    /// The directory of example units to submit and start.
    pub units: PathBuf,
    /// Prefix of the hosts' cgroup names; unique per cluster on this machine.
    pub group_prefix: String,
    /// host-1's address; the others follow (`FIRST_IP` but in tests, which run several
    /// clusters at once).
    pub first_ip: Ipv4Addr,
    /// Where the example units find flottectl: links made before they start.
    pub links: Links,
}

/// The directory the example units run flottectl from (`/usr/local/bin/flottectl announce` in
/// the sidekicks), and the binaries to link there.
#[derive(Debug, Clone)]
pub struct Links {
    pub dir: PathBuf,
    pub flottectl: PathBuf,
    pub flotted: PathBuf,
}

/// Where `Links::dir` is but in tests: where the example units look.
pub const LINK_DIR: &str = "/usr/local/bin";

/// host-1's address in the quick start: 127.0.1.1, then 127.0.1.2 and 127.0.1.3.
pub const FIRST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);

/// The state file: the cluster, and the boot it was started in (after a reboot its PIDs
/// belong to other processes, which must not be killed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub boot_id: String,
    pub cluster: ClusterRecord,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error(transparent)]
    Isolated(#[from] IsolatedError),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{} is not a state file of the local cluster: {source}", path.display())]
    StateFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Cli(#[from] CliError),
    #[error("example unit {name}: {source}")]
    UnitName {
        name: String,
        source: super::resolve::ArgError,
    },
    #[error(
        "the cluster is up, but its example units are not: {source}\n(`packaging/local-cluster down` stops the cluster)"
    )]
    Examples { source: Box<LocalClusterError> },
}

impl LocalClusterError {
    /// True when the error is the reader closing the output (`status | head`): the reader's
    /// choice, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            LocalClusterError::Cli(e) => e.is_broken_pipe(),
            LocalClusterError::Examples { source } => source.is_broken_pipe(),
            _ => false,
        }
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> LocalClusterError {
    let what = what.into();
    move |source| LocalClusterError::Io { what, source }
}

/// Whether a cluster is recorded, and whether all of it runs.
#[derive(Debug)]
pub enum Health {
    Down,
    Up(State),
    /// Recorded, but some of it is gone: what is.
    Stale(State, Vec<String>),
}

/// The spec `up` starts: the three hosts, each flotted listening on its host's directory.
pub fn spec(settings: &Settings) -> ClusterSpec {
    ClusterSpec {
        root: settings.state_dir.join("run"),
        group_prefix: settings.group_prefix.clone(),
        hosts: HOSTS
            .iter()
            .map(|(name, metadata)| HostSpec {
                name: name.to_string(),
                metadata: metadata.to_string(),
            })
            .collect(),
        flotted: settings.flotted.clone(),
        settings: Vec::new(),
        etcd_access: EtcdAccess::Direct,
        first_ip: settings.first_ip,
    }
}

/// flottectl's endpoint for the cluster: host-1's API socket.
pub fn endpoint(cluster: &ClusterRecord) -> Endpoint {
    Endpoint::Unix(cluster.members[0].socket.clone())
}

/// The shell lines of `env`: flottectl and etcdctl pointed at the cluster, the first through
/// host-1 (its API, and its flotted's configuration for the commands that read etcd); with
/// `bin_dir`, also a PATH that finds flottectl there.
pub fn env(cluster: &ClusterRecord, bin_dir: Option<&Path>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut lines = vec![
        format!(
            "export FLOTTECTL_ENDPOINT={}",
            quote(&endpoint(cluster).to_string())
        ),
        "export ETCDCTL_API=3".to_owned(),
        format!(
            "export ETCDCTL_ENDPOINTS={}",
            quote(&cluster.etcd.client_url)
        ),
        // `flottectl services` and `announce` read etcd's address as flotted does.
        format!(
            "export FLOTTE_CONFIG={}",
            quote(&cluster.members[0].config.display().to_string())
        ),
    ];
    if let Some(dir) = bin_dir {
        lines.push(format!(
            "export PATH={}:\"$PATH\"",
            quote(&dir.display().to_string())
        ));
    }
    lines.join("\n") + "\n"
}

/// What `up` submits (every unit file) and starts (every unit but templates, and instances 1
/// and 2 of each template), from the file names of the units directory.
pub fn examples(file_names: &[String]) -> (Vec<String>, Vec<String>) {
    let mut units: Vec<&String> = file_names
        .iter()
        .filter(|n| UnitName::new(n).is_ok())
        .collect();
    units.sort();
    let mut start = Vec::new();
    for name in &units {
        match UnitName::new(name) {
            Ok(unit) if unit.is_template() => start.extend(
                INSTANCES
                    .iter()
                    .filter_map(|i| unit.instantiate(i).ok())
                    .map(|u| u.to_string()),
            ),
            _ => start.push(name.to_string()),
        }
    }
    (units.into_iter().cloned().collect(), start)
}

fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

fn boot_id() -> Result<String, LocalClusterError> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .map_err(io_error("reading the boot ID"))
}

/// The recorded cluster, if any.
pub fn load(state_dir: &Path) -> Result<Option<State>, LocalClusterError> {
    let path = state_file(state_dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("reading {}", path.display()))(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| LocalClusterError::StateFile { path, source })
}

fn save(state_dir: &Path, state: &State) -> Result<(), LocalClusterError> {
    let path = state_file(state_dir);
    let text = serde_json::to_string_pretty(state).expect("the state always serializes");
    // Written aside and renamed, so a crash never leaves half a state file.
    let partial = path.with_extension("json.partial");
    fs::write(&partial, text + "\n")
        .and_then(|()| fs::rename(&partial, &path))
        .map_err(io_error(format!("writing {}", path.display())))
}

/// True when `pid` runs `program` (compared by file name). A PID alone could be another
/// process's since the cluster's died.
fn runs(pid: i32, program: &str) -> bool {
    fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == program))
}

/// The parts of a recorded cluster that are gone.
fn dead_parts(state: &State, boot_id: &str) -> Vec<String> {
    if state.boot_id != boot_id {
        return vec!["everything: the machine rebooted since it started".to_owned()];
    }
    let cluster = &state.cluster;
    let mut dead = Vec::new();
    if !runs(cluster.etcd.pid, "etcd") {
        dead.push(format!("etcd (pid {})", cluster.etcd.pid));
    }
    for m in &cluster.members {
        if !runs(m.host.pid, "systemd") {
            dead.push(format!("{}'s systemd (pid {})", m.host.name, m.host.pid));
        }
        match m.flotted_pid {
            Some(pid) if runs(pid, "flotted") => {}
            Some(pid) => dead.push(format!("{}'s flotted (pid {pid})", m.host.name)),
            None => dead.push(format!("{}'s flotted", m.host.name)),
        }
    }
    dead
}

pub fn health(state_dir: &Path) -> Result<Health, LocalClusterError> {
    let Some(state) = load(state_dir)? else {
        return Ok(Health::Down);
    };
    let dead = dead_parts(&state, &boot_id()?);
    Ok(if dead.is_empty() {
        Health::Up(state)
    } else {
        Health::Stale(state, dead)
    })
}

/// Starts the cluster and the example units, unless it is up already; a stale one is cleaned
/// up first.
pub async fn up(
    settings: &Settings,
    console: &mut Console<'_>,
) -> Result<State, LocalClusterError> {
    let dir = &settings.state_dir;
    match health(dir)? {
        Health::Up(state) => {
            writeln!(
                console.out,
                "The local cluster in {} is already up.",
                dir.display()
            )
            .map_err(CliError::from)?;
            show(&state, console).await?;
            return Ok(state);
        }
        Health::Stale(state, dead) => {
            writeln!(
                console.out,
                "Cleaning up the stale local cluster in {} (gone: {}).",
                dir.display(),
                dead.join(", ")
            )
            .map_err(CliError::from)?;
            stop(dir, &state)?;
        }
        Health::Down => {}
    }
    let spec = spec(settings);
    // Left by an `up` that failed before recording anything: what it started died with it.
    match fs::remove_dir_all(&spec.root) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(format!("removing {}", spec.root.display()))(e));
        }
        _ => {}
    }
    fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    writeln!(
        console.out,
        "Starting etcd and {} hosts ({}) in {}...",
        HOSTS.len(),
        HOSTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        dir.display()
    )
    .map_err(CliError::from)?;
    let cluster = Cluster::start(spec).await?;
    let state = State {
        boot_id: boot_id()?,
        cluster: cluster.detach(),
    };
    // Recorded before anything else can fail, so that `down` finds what to stop.
    save(dir, &state)?;
    link(&settings.links, console)?;
    start_examples(&state, &settings.units, console)
        .await
        .map_err(|e| LocalClusterError::Examples {
            source: Box::new(e),
        })?;
    show(&state, console).await?;
    writeln!(
        console.out,
        "\nThe local cluster is up: etcd at {}, state in {}.\n\
         Point flottectl and etcdctl at it with:\n\n    \
         eval \"$(packaging/local-cluster env)\"\n\n\
         then try `flottectl list-unit-files` or `etcdctl get --prefix /flotte/ --keys-only`.\n\
         `packaging/local-cluster down` stops it.",
        state.cluster.etcd.client_url,
        dir.display()
    )
    .map_err(CliError::from)?;
    Ok(state)
}

/// Links `dir/flottectl` and `dir/flotted` to the binaries, replacing older links (another
/// checkout's, a debug build's) but never a file: an installed flottectl is left alone, with
/// a warning, and the sidekicks run that one.
fn link(links: &Links, console: &mut Console<'_>) -> Result<(), LocalClusterError> {
    for (name, target) in [("flottectl", &links.flottectl), ("flotted", &links.flotted)] {
        let path = links.dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if !meta.file_type().is_symlink() => {
                writeln!(
                    console.err,
                    "local-cluster: warning: {} is no link; leaving it (the example units run it)",
                    path.display()
                )
                .map_err(CliError::from)?;
                continue;
            }
            _ if fs::read_link(&path).is_ok_and(|t| &t == target) => continue,
            _ => {}
        }
        // Made aside and renamed over the old one: at no moment is there no flottectl.
        let partial = links.dir.join(format!(".{name}.flotte-link"));
        let _ = fs::remove_file(&partial);
        std::os::unix::fs::symlink(target, &partial)
            .and_then(|()| fs::rename(&partial, &path))
            .map_err(io_error(format!(
                "linking {} to {}",
                path.display(),
                target.display()
            )))?;
        writeln!(
            console.out,
            "Linked {} to {}.",
            path.display(),
            target.display()
        )
        .map_err(CliError::from)?;
    }
    Ok(())
}

fn flottectl(cluster: &ClusterRecord, command: Command) -> Cli {
    Cli {
        global: GlobalArgs {
            endpoint: endpoint(cluster),
            request_timeout: Duration::from_secs(10),
            ca_file: None,
            cert_file: None,
            key_file: None,
        },
        command,
    }
}

async fn start_examples(
    state: &State,
    units: &Path,
    console: &mut Console<'_>,
) -> Result<(), LocalClusterError> {
    wait_for_api(&state.cluster).await?;
    let names: Vec<String> = fs::read_dir(units)
        .map_err(io_error(format!("reading {}", units.display())))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let (submit, start) = examples(&names);
    // Paths as typed on a command line, which the output shows.
    let paths = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .map(|n| units.join(n).to_string_lossy().into_owned())
            .collect()
    };
    let args = |paths: &[String]| {
        paths
            .iter()
            .map(|p| {
                p.parse::<UnitArg>()
                    .map_err(|source| LocalClusterError::UnitName {
                        name: p.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let (submit, start) = (paths(&submit), paths(&start));
    let cluster = &state.cluster;
    writeln!(console.out, "\n$ flottectl submit {}", submit.join(" ")).map_err(CliError::from)?;
    let submit = Command::Submit(SubmitArgs {
        units: args(&submit)?,
        replace: false,
    });
    super::run_async(flottectl(cluster, submit), console).await?;
    writeln!(console.out, "\n$ flottectl start {}", start.join(" ")).map_err(CliError::from)?;
    let start = Command::Start(ScheduleArgs {
        units: args(&start)?,
        replace: false,
        block: BlockArgs {
            no_block: false,
            block_attempts: START_ATTEMPTS,
        },
    });
    super::run_async(flottectl(cluster, start), console).await?;
    let client = Client::new(
        &flottectl(cluster, Command::Version)
            .global
            .client_settings(),
    )
    .map_err(CliError::from)?;
    settle(&client, SETTLE).await.map_err(CliError::from)?;
    Ok(())
}

/// Waits, at most `deadline`, until systemd runs every unit placed: flottectl's "launched" is
/// fleet's, the agent started the unit, and systemd may take a moment more to run it. The
/// examples are long-running services, and what `up` lists after should show them running; if
/// one does not, it shows as it is.
async fn settle(client: &Client, deadline: Duration) -> Result<(), super::client::ClientError> {
    let end = tokio::time::Instant::now() + deadline;
    let mut revision = client.changes(0, Duration::ZERO).await?;
    loop {
        let states = client.states(None).await?;
        if states.iter().all(|s| s.systemd_active_state == "active") {
            return Ok(());
        }
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        revision = client.changes(revision, left).await?;
    }
}

/// Waits until host-1's API answers with every machine: flotted answers 503 until its agent
/// registered, and the others may register a moment later.
async fn wait_for_api(cluster: &ClusterRecord) -> Result<(), LocalClusterError> {
    let client = Client::new(
        &flottectl(cluster, Command::Version)
            .global
            .client_settings(),
    )
    .map_err(CliError::from)?;
    let endpoint = client.endpoint().to_owned();
    wait_for(
        Duration::from_secs(30),
        || {
            format!(
                "flotted's API at {endpoint} did not list all {} machines",
                HOSTS.len()
            )
        },
        || async {
            let machines = client.machines().await.ok()?;
            (machines.len() == HOSTS.len()).then_some(())
        },
    )
    .await?;
    Ok(())
}

/// `list-machines` and `list-units`, as flottectl prints them.
async fn show(state: &State, console: &mut Console<'_>) -> Result<(), LocalClusterError> {
    let list = ListArgs {
        full: false,
        no_legend: false,
        output: OutputFormat::Text,
    };
    let machines = Command::ListMachines(ListMachinesArgs {
        list: list.clone(),
        fields: fields::parse_fields(fields::DEFAULT_MACHINE_FIELDS)
            .expect("the default fields parse"),
    });
    let units = Command::ListUnits(ListUnitsArgs {
        list,
        fields: fields::parse_fields(fields::DEFAULT_UNIT_FIELDS)
            .expect("the default fields parse"),
    });
    for (text, command) in [("list-machines", machines), ("list-units", units)] {
        writeln!(console.out, "\n$ flottectl {text}").map_err(CliError::from)?;
        super::run_async(flottectl(&state.cluster, command), console).await?;
    }
    Ok(())
}

/// Stops what a state records, without trusting PIDs of another boot or of other programs,
/// and removes the state.
fn stop(state_dir: &Path, state: &State) -> Result<(), LocalClusterError> {
    let same_boot = state.boot_id == boot_id()?;
    let cluster = &state.cluster;
    for m in &cluster.members {
        if let Some(pid) = m
            .flotted_pid
            .filter(|pid| same_boot && runs(*pid, "flotted"))
        {
            // Gone meanwhile is as good as stopped.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        // By cgroup, not by PID: safe whatever happened since.
        m.host.kill()?;
    }
    if same_boot && runs(cluster.etcd.pid, "etcd") {
        cluster.etcd.kill()?;
    }
    for dir in [&cluster.etcd.data_dir, &cluster.root] {
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(format!("removing {}", dir.display()))(e));
            }
            _ => {}
        }
    }
    fs::remove_file(state_file(state_dir))
        .or_else(|e| match e.kind() {
            io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .map_err(io_error("removing the state file"))?;
    // The directory goes too when nothing else is in it; a user's own files stay.
    let _ = fs::remove_dir(state_dir);
    Ok(())
}

/// Stops the recorded cluster; `None` when there was none.
pub fn down(state_dir: &Path) -> Result<Option<State>, LocalClusterError> {
    let Some(state) = load(state_dir)? else {
        return Ok(None);
    };
    stop(state_dir, &state)?;
    Ok(Some(state))
}

/// What runs, as a table: etcd and each host with their PIDs, and what is gone.
pub fn describe(state: &State, dead: &[String]) -> String {
    let cluster = &state.cluster;
    let mut rows = vec![
        vec!["PART".to_owned(), "PID".to_owned(), "ADDRESS".to_owned()],
        vec![
            "etcd".to_owned(),
            cluster.etcd.pid.to_string(),
            cluster.etcd.client_url.clone(),
        ],
    ];
    for m in &cluster.members {
        rows.push(vec![
            format!("{} systemd", m.host.name),
            m.host.pid.to_string(),
            fields::machine_id(m.host.machine_id.as_str(), fields::Detail::Short),
        ]);
        rows.push(vec![
            format!("{} flotted", m.host.name),
            m.flotted_pid.map_or("-".to_owned(), |p| p.to_string()),
            format!("unix://{}", m.socket.display()),
        ]);
    }
    let mut text = table::render(&rows);
    for part in dead {
        text.push_str(&format!("gone: {part}\n"));
    }
    text
}

/// Prints what runs; returns the health so the caller can set its exit status.
pub async fn status(
    state_dir: &Path,
    console: &mut Console<'_>,
) -> Result<Health, LocalClusterError> {
    let health = health(state_dir)?;
    let out = |console: &mut Console<'_>, text: &str| {
        console
            .out
            .write_all(text.as_bytes())
            .map_err(CliError::from)
    };
    match &health {
        Health::Down => out(
            console,
            &format!(
                "No local cluster runs (no state in {}).\n",
                state_dir.display()
            ),
        )?,
        Health::Up(state) => {
            out(
                console,
                &format!("The local cluster in {} is up.\n", state_dir.display()),
            )?;
            out(console, &describe(state, &[]))?;
            show(state, console).await?;
        }
        Health::Stale(state, dead) => {
            out(
                console,
                &format!(
                    "The local cluster in {} is only partly up: `packaging/local-cluster down` cleans up, `up` starts it anew.\n",
                    state_dir.display()
                ),
            )?;
            out(console, &describe(state, dead))?;
        }
    }
    Ok(health)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolated::{EtcdRecord, HostRecord, MemberRecord};
    use crate::machine::MachineId;

    fn record() -> ClusterRecord {
        ClusterRecord {
            root: "/var/lib/flotte-local-cluster/run".into(),
            etcd: EtcdRecord {
                pid: 100,
                client_url: "http://127.0.0.1:40123".into(),
                data_dir: "/var/lib/flotte-local-cluster/run/etcd/data".into(),
            },
            prefix: "/flotte/".into(),
            members: HOSTS
                .iter()
                .enumerate()
                .map(|(i, (name, _))| {
                    let dir = PathBuf::from("/var/lib/flotte-local-cluster/run").join(name);
                    MemberRecord {
                        host: HostRecord {
                            name: name.to_string(),
                            dir: dir.clone(),
                            machine_id: MachineId::new(&format!("{:032x}", i + 0xabc)).unwrap(),
                            pid: 200 + i as i32,
                            cgroup_dirs: Vec::new(),
                        },
                        flotted_pid: Some(300 + i as i32),
                        config: dir.join("flotted.conf"),
                        socket: dir.join("flotte.sock"),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn env_points_flottectl_at_host_1_and_etcdctl_at_etcd() {
        assert_eq!(
            env(&record(), Some(Path::new("/src/flotte/target/release"))),
            "export FLOTTECTL_ENDPOINT='unix:///var/lib/flotte-local-cluster/run/host-1/flotte.sock'\n\
             export ETCDCTL_API=3\n\
             export ETCDCTL_ENDPOINTS='http://127.0.0.1:40123'\n\
             export FLOTTE_CONFIG='/var/lib/flotte-local-cluster/run/host-1/flotted.conf'\n\
             export PATH='/src/flotte/target/release':\"$PATH\"\n"
        );
    }

    #[test]
    fn examples_submit_every_unit_and_start_two_instances_of_each_template() {
        let names: Vec<String> = [
            "hello@.service",
            "README.md",
            "beacon.service",
            "hello.service",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (submit, start) = examples(&names);
        assert_eq!(
            submit,
            ["beacon.service", "hello.service", "hello@.service"]
        );
        assert_eq!(
            start,
            [
                "beacon.service",
                "hello.service",
                "hello@1.service",
                "hello@2.service"
            ]
        );
    }

    #[test]
    fn the_description_lists_every_part_and_what_is_gone() {
        let state = State {
            boot_id: "b".into(),
            cluster: record(),
        };
        let text = describe(&state, &["host-2's flotted (pid 301)".into()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + 2 * HOSTS.len() + 1, "{text}");
        assert_eq!(lines[1], "etcd\t\t100\thttp://127.0.0.1:40123");
        assert_eq!(lines[2], "host-1 systemd\t200\t00000000...");
        assert_eq!(lines.last(), Some(&"gone: host-2's flotted (pid 301)"));
    }

    #[test]
    fn a_state_of_another_boot_is_all_dead_without_looking_at_pids() {
        let state = State {
            boot_id: "an earlier boot".into(),
            cluster: record(),
        };
        assert_eq!(
            dead_parts(&state, "this boot"),
            ["everything: the machine rebooted since it started"]
        );
    }

    #[test]
    fn a_pid_counts_only_when_it_runs_the_expected_program() {
        let me = std::process::id() as i32;
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_str().unwrap();
        assert!(runs(me, name));
        assert!(!runs(me, "etcd"));
    }
}
