//! flotte on real hosts (issue 10): three containers with systemd as PID 1
//! (`isolated::Container`), the Debian package of `packaging/build-deb` installed in each with
//! dpkg, `flotted.service` started by each container's systemd against an etcd on the machine
//! (each container with its own 127.x address), and the mission run with flottectl from the
//! machine over each container's API socket: the apache + sidekick pair of `units/`, a global
//! unit, `list-units` from every socket, a package upgrade that restarts no unit, and a
//! container powered off whose units come up on the others within `agent_ttl` + 2 s.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use flotte::isolated::{Container, Etcd, SHARE, wait_for};
use flotte::machine::MachineId;
use flotte::registry::{EtcdSettings, Registry};
use tokio::process::Command;

use crate::support::*;

const AGENT_TTL: u64 = 3;
const DEADLINE: Duration = Duration::from_secs(30);
const APACHE_KEY: &str = "/services/website/apache";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The test's directory, followed by its PID: what `sweep_stale_mounts` looks for.
const CONTAINERS_DIR: &str = "flotte-system-containers-";

/// One container running flotted.service.
struct Machine {
    container: Container,
    id: MachineId,
    ip: Ipv4Addr,
}

impl Machine {
    fn socket(&self) -> String {
        format!(
            "unix://{}",
            self.container.path("/run/flotte/flotte.sock").display()
        )
    }

    /// systemd's properties of `unit` in this container (`systemctl show`).
    async fn show(&self, unit: &str) -> BTreeMap<String, String> {
        let out = ok(
            &format!("systemctl show {unit} in {}", self.container.name()),
            self.container
                .command("systemctl")
                .args(["show", "--no-pager", unit])
                .output()
                .await,
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// flotted.service's properties once it is active (it sent READY=1) in an invocation
    /// other than `not`.
    async fn await_flotted_ready(&self, not: Option<&str>) -> BTreeMap<String, String> {
        let last = std::cell::RefCell::new(BTreeMap::new());
        let found = wait_for(DEADLINE, String::new, || async {
            let props = self.show("flotted.service").await;
            let ready = props.get("ActiveState").map(String::as_str) == Some("active")
                && props.get("InvocationID").map(String::as_str) != not;
            *last.borrow_mut() = props.clone();
            ready.then_some(props)
        })
        .await;
        let last = last.into_inner();
        match found {
            Ok(props) => props,
            Err(e) => panic!(
                "flotted.service in {} did not become ready ({e}); last: {last:#?}; journal:\n{}",
                self.container.name(),
                self.journal().await
            ),
        }
    }

    async fn journal(&self) -> String {
        let out = self
            .container
            .command("journalctl")
            .args(["-u", "flotted.service", "-o", "cat", "--no-pager"])
            .output()
            .await
            .expect("journalctl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs (or upgrades to) the package `deb` of the share directory with dpkg, run by
    /// the container's systemd as an administrator's shell would.
    async fn dpkg_install(&self, deb: &str) -> String {
        let path = format!("{SHARE}/{deb}");
        let out = ok(
            &format!("dpkg -i {deb} in {}", self.container.name()),
            self.container
                .service_command(&["dpkg", "--force-confold", "-i", &path])
                .output()
                .await,
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// (MainPID, InvocationID) of `unit`.
    async fn process_of(&self, unit: &str) -> (String, String) {
        let props = self.show(unit).await;
        (props["MainPID"].clone(), props["InvocationID"].clone())
    }
}

/// The output of a command that must have succeeded.
fn ok(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn flottectl(machine: &Machine, args: &[&str]) -> String {
    let out = ok(
        &format!("flottectl {args:?} on {}", machine.container.name()),
        Command::new(env!("CARGO_BIN_EXE_flottectl"))
            .arg("--endpoint")
            .arg(machine.socket())
            .args(args)
            .output()
            .await,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package with packaging/build-deb from the binaries under test, into `share`.
async fn build_deb(share: &Path, version: &str) -> String {
    // Naming flotte-packaging makes cargo build it for the tests (it needs the `packaging`
    // feature, which the crate's dev-dependency on itself turns on).
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_flotte-packaging"))
        .parent()
        .unwrap();
    assert_eq!(
        Path::new(env!("CARGO_BIN_EXE_flotted")).parent(),
        Some(bin_dir)
    );
    let out = ok(
        "packaging/build-deb",
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/build-deb"))
            .env("FLOTTE_SKIP_BUILD", "1")
            .env("FLOTTE_BIN_DIR", bin_dir)
            .env("FLOTTE_DEB_DIR", share)
            .env("FLOTTE_DEB_VERSION", version)
            .output()
            .await,
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(deb.is_file(), "build-deb printed {}", deb.display());
    deb.file_name().unwrap().to_string_lossy().into_owned()
}

/// The example unit `name` of `units/`, its sidekick running the packaged flottectl with a
/// short `--ttl`, written where flottectl on the machine submits it from.
fn example(units: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("units")
            .join(name),
    )
    .unwrap()
    .replace(
        "/usr/local/bin/flottectl announce ",
        "/usr/bin/flottectl announce --ttl 5 ",
    );
    let path = units.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn unit_file(units: &Path, name: &str, text: &str) -> PathBuf {
    let path = units.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the announcement `key` is there (`present`) or gone.
async fn await_announcement(registry: &Registry, present: bool, what: &str) {
    await_map(
        registry.watch_services("/services/"),
        DEADLINE,
        what,
        |keys| (keys.contains_key(APACHE_KEY) == present).then_some(()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_debian_package_runs_the_mission_on_three_system_managers() {
    flotte::isolated::sweep_stale_test_hosts();
    flotte::isolated::sweep_stale_mounts(CONTAINERS_DIR);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{CONTAINERS_DIR}{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let share = dir.path().join("share");
    let units = dir.path().join("units");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::create_dir_all(&units).unwrap();
    // The share is bind-mounted into every container; dpkg there reads the packages.
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o755)).unwrap();
    let etcd = Etcd::start(&dir.path().join("etcd"))
        .await
        .expect("etcd starts");
    let settings = EtcdSettings {
        endpoints: vec![etcd.client_url().to_owned()],
        ..EtcdSettings::default()
    };
    let registry = Registry::connect(&settings).await.unwrap();
    let deb = build_deb(&share, VERSION).await;
    let newer = build_deb(&share, &format!("{VERSION}+upgrade1")).await;

    // Three containers booted at once, each given its configuration before the package, as
    // an administrator's provisioning would (dpkg keeps it: --force-confold).
    let first_ip = unique_first_ip();
    let boots = (0..3).map(|i| {
        let name = format!("flotte-sc-{}-{}", std::process::id(), i + 1);
        let cdir = dir.path().join(&name);
        let group = format!("flotte-test-{}-sc-{}", std::process::id(), i + 1);
        let share = share.clone();
        async move {
            Container::boot(&name, &cdir, &group, &share)
                .await
                .unwrap_or_else(|e| panic!("container {name} boots: {e}"))
        }
    });
    let (containers, boot_time) = timed(futures_util::future::join_all(boots)).await;
    println!("three containers booted in {boot_time:?}");
    let mut machines = Vec::new();
    for (i, container) in containers.into_iter().enumerate() {
        let o = first_ip.octets();
        let ip = Ipv4Addr::new(o[0], o[1], o[2], o[3] + i as u8);
        std::fs::create_dir_all(container.path("/etc/flotte")).unwrap();
        std::fs::write(
            container.path("/etc/flotte/flotted.conf"),
            format!(
                "# provisioned by the test\netcd_servers={}\npublic_ip={ip}\nagent_ttl={AGENT_TTL}s\n\
                 engine_lease_ttl=2s\n",
                etcd.client_url()
            ),
        )
        .unwrap();
        let dropin = container.path("/etc/systemd/system/flotted.service.d");
        std::fs::create_dir_all(&dropin).unwrap();
        std::fs::write(
            dropin.join("debug.conf"),
            "[Service]\nEnvironment=RUST_LOG=info,flotte=debug\n",
        )
        .unwrap();
        let id = MachineId::new(
            std::fs::read_to_string(container.path("/etc/machine-id"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        machines.push(Machine { container, id, ip });
    }

    // Install: postinst enables and starts flotted.service; READY=1 follows registration.
    let installs = machines.iter().map(|m| m.dpkg_install(&deb));
    let (_, install_time) = timed(futures_util::future::join_all(installs)).await;
    println!("dpkg -i {deb} in three containers took {install_time:?}");
    let mut flotted = Vec::new();
    for m in &machines {
        let props = m.await_flotted_ready(None).await;
        let start: u64 = props["ExecMainStartTimestampMonotonic"].parse().unwrap();
        let active: u64 = props["ActiveEnterTimestampMonotonic"].parse().unwrap();
        println!(
            "{}: flotted.service start to READY=1: {:.0} ms",
            m.container.name(),
            (active - start) as f64 / 1000.0
        );
        assert_eq!(props["Type"], "notify");
        assert_eq!(props["KillMode"], "control-group");
        assert_eq!(props["Restart"], "on-failure");
        assert_eq!(props["WatchdogUSec"], "30s");
        assert_ne!(
            props["WatchdogTimestampMonotonic"], "0",
            "systemd got flotted's WATCHDOG=1"
        );
        assert_eq!(props["UnitFileState"], "enabled");
        check_host_files(m).await;
        flotted.push(props["InvocationID"].clone());
    }
    within(
        "three machines registered",
        DEADLINE,
        await_machines(&registry, &machines),
    )
    .await;
    check_status_lines(&machines).await;
    check_flotte_group(&machines[0]).await;
    for m in &machines {
        let journal = m.journal().await;
        assert!(journal.contains("machine registered"), "{journal}");
        // journald stamps each line; flotted under systemd adds no timestamp of its own.
        assert!(
            !journal.lines().any(|l| l.starts_with("20")),
            "a timestamp in the journal's messages:\n{journal}"
        );
    }

    // The mission, with flottectl on the machine and each container's socket.
    let first = &machines[0];
    let apache = example(&units, "apache.service");
    let sidekick = example(&units, "apache-sidekick.service");
    let beacon = example(&units, "beacon.service");
    flottectl(
        first,
        &[
            "start",
            apache.to_str().unwrap(),
            sidekick.to_str().unwrap(),
            beacon.to_str().unwrap(),
        ],
    )
    .await;
    let placed = await_pair(&registry).await;
    await_states(
        &registry,
        DEADLINE,
        "beacon.service active on all three",
        |s| (active_on(s, "beacon.service").len() == 3).then_some(()),
    )
    .await;
    await_announcement(&registry, true, "apache's announcement appears").await;
    for m in &machines {
        let listing = flottectl(m, &["list-units", "--no-legend"]).await;
        let beacons = listing
            .lines()
            .filter(|l| l.starts_with("beacon.service"))
            .count();
        assert_eq!(
            beacons,
            3,
            "list-units on {}:\n{listing}",
            m.container.name()
        );
        for unit in ["apache.service", "apache-sidekick.service"] {
            let line = listing
                .lines()
                .find(|l| l.starts_with(unit))
                .unwrap_or_else(|| panic!("{unit} missing:\n{listing}"));
            assert!(line.contains("active"), "{line}");
        }
        let machines_listing = flottectl(m, &["list-machines", "--no-legend"]).await;
        for other in &machines {
            assert!(
                machines_listing.contains(&other.ip.to_string()),
                "{} missing:\n{machines_listing}",
                other.ip
            );
        }
    }
    flottectl(first, &["stop", "apache.service"]).await;
    await_announcement(&registry, false, "stopping apache removes its announcement").await;
    await_states(
        &registry,
        DEADLINE,
        "the sidekick stopped with apache (BindsTo=)",
        |s| {
            active_on(s, "apache-sidekick.service")
                .is_empty()
                .then_some(())
        },
    )
    .await;
    // The sidekick is still desired launched; as with fleet, it is stopped and started again
    // with apache.
    flottectl(first, &["stop", "apache-sidekick.service"]).await;
    flottectl(
        first,
        &["start", "apache.service", "apache-sidekick.service"],
    )
    .await;
    let again = await_pair(&registry).await;
    assert_eq!(again, placed, "the pair starts again where it was placed");
    await_announcement(&registry, true, "apache's announcement is back").await;

    // The upgrade: the newer package over the running one, in every container.
    let mut before = BTreeMap::new();
    for m in &machines {
        let mut here = vec!["beacon.service"];
        if m.id == placed {
            here.extend(["apache.service", "apache-sidekick.service"]);
        }
        for unit in here {
            before.insert(
                (m.container.name().to_owned(), unit),
                m.process_of(unit).await,
            );
        }
    }
    let upgrades = machines.iter().map(|m| m.dpkg_install(&newer));
    futures_util::future::join_all(upgrades).await;
    for (m, old) in machines.iter().zip(&flotted) {
        let props = m.await_flotted_ready(Some(old)).await;
        assert_ne!(&props["InvocationID"], old, "flotted restarted");
        let version = ok(
            "dpkg-query",
            m.container
                .command("dpkg-query")
                .args(["-W", "-f", "${Version}", "flotte"])
                .output()
                .await,
        );
        assert_eq!(
            String::from_utf8_lossy(&version.stdout),
            format!("{VERSION}+upgrade1")
        );
        let conf = std::fs::read_to_string(m.container.path("/etc/flotte/flotted.conf")).unwrap();
        assert!(
            conf.starts_with("# provisioned by the test"),
            "the upgrade kept the configuration: {conf}"
        );
    }
    // Every agent has acted since its restart once a new global unit runs on all three.
    let probe = unit_file(
        &units,
        "probe.service",
        "[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nGlobal=true\n",
    );
    flottectl(first, &["start", probe.to_str().unwrap()]).await;
    await_states(
        &registry,
        DEADLINE,
        "probe.service active on all three after the upgrade",
        |s| (active_on(s, "probe.service").len() == 3).then_some(()),
    )
    .await;
    // STATUS= counts the units running: the pair, the beacon and the probe on apache's
    // machine, the beacon and the probe on the others.
    for m in &machines {
        let expected = if m.id == placed { 4 } else { 2 };
        let suffix = format!(", {expected} units running");
        let last = std::cell::RefCell::new(String::new());
        wait_for(
            DEADLINE,
            || format!("{}: status `{}`", m.container.name(), last.borrow()),
            || async {
                let line = m.show("flotted.service").await["StatusText"].clone();
                *last.borrow_mut() = line.clone();
                line.ends_with(&suffix).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    for ((name, unit), old) in &before {
        let m = machines
            .iter()
            .find(|m| m.container.name() == name)
            .unwrap();
        let now = m.process_of(unit).await;
        assert_eq!(
            &now, old,
            "{unit} on {name}: (MainPID, InvocationID) across the upgrade"
        );
    }
    println!(
        "upgrade {deb} -> {newer}: flotted restarted in all three, {} units kept their MainPID and InvocationID",
        before.len()
    );

    // Power off apache's container: the pair comes up on another within agent_ttl + 2 s.
    let victim = machines.iter().position(|m| m.id == placed).unwrap();
    let mut victim = machines.remove(victim);
    let started = Instant::now();
    let bound = Duration::from_secs(AGENT_TTL + 2);
    let moved = async {
        await_states(
            &registry,
            bound,
            "apache and its sidekick active on another machine",
            |s| match (
                active_on(s, "apache.service").as_slice(),
                active_on(s, "apache-sidekick.service").as_slice(),
            ) {
                ([a], [b]) if a == b && *a != placed => Some(a.clone()),
                _ => None,
            },
        )
        .await
    };
    let (power_off, now_on) = tokio::join!(victim.container.power_off(), moved);
    let took = started.elapsed();
    power_off.expect("the container powers off");
    println!(
        "apache's container powered off: the pair active on another machine after {took:?} (bound {bound:?})"
    );
    assert!(machines.iter().any(|m| m.id == now_on));
    await_announcement(&registry, true, "apache announced from its new machine").await;
    for m in &machines {
        let listing = flottectl(m, &["list-units", "--no-legend"]).await;
        let beacons = listing
            .lines()
            .filter(|l| l.starts_with("beacon.service"))
            .count();
        assert_eq!(
            beacons,
            2,
            "list-units on {} after the power-off:\n{listing}",
            m.container.name()
        );
    }
}

/// Waits until apache and its sidekick are active on one machine, the same; returns it.
async fn await_pair(registry: &Registry) -> MachineId {
    let found = await_active(
        registry,
        &["apache.service", "apache-sidekick.service"],
        DEADLINE,
    )
    .await;
    assert_eq!(
        found["apache.service"], found["apache-sidekick.service"],
        "MachineOf= keeps the sidekick with apache"
    );
    found["apache.service"].clone()
}

async fn await_machines(registry: &Registry, machines: &[Machine]) {
    await_map(
        registry.watch_machines(),
        DEADLINE,
        "three machines registered",
        |m| machines.iter().all(|x| m.contains_key(&x.id)).then_some(()),
    )
    .await
}

/// The API socket belongs to the group flotte with mode 0660, and so does the configuration
/// (0640): what members of flotte need for flottectl.
async fn check_host_files(m: &Machine) {
    let group = std::fs::read_to_string(m.container.path("/etc/group")).unwrap();
    let gid: u32 = group
        .lines()
        .find_map(|l| l.strip_prefix("flotte:"))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no group flotte in {}", m.container.name()));
    for (path, mode) in [
        ("/run/flotte/flotte.sock", 0o660),
        ("/etc/flotte/flotted.conf", 0o640),
    ] {
        let meta = std::fs::metadata(m.container.path(path)).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (mode, 0, gid),
            "{path} in {}",
            m.container.name()
        );
    }
}

/// `systemctl status` tells each flotted's registration and role: exactly one engine leads.
async fn check_status_lines(machines: &[Machine]) {
    let last = std::cell::RefCell::new(Vec::new());
    let leaders = wait_for(
        DEADLINE,
        || String::from("exactly one flotted's status says leader"),
        || async {
            let mut lines = Vec::new();
            for m in machines {
                lines.push(m.show("flotted.service").await["StatusText"].clone());
            }
            *last.borrow_mut() = lines.clone();
            let leaders = lines
                .iter()
                .filter(|l| l.contains(", engine leader, "))
                .count();
            (leaders == 1).then_some(lines)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", last.borrow()));
    for (m, line) in machines.iter().zip(&leaders) {
        assert!(
            line.starts_with(&format!("registered as {}", m.id)),
            "{}: {line}",
            m.container.name()
        );
    }
}

/// `--log-format json`: one JSON object per line (here the warning about a stray variable,
/// before the configuration error that stops flotted).
#[tokio::test]
async fn flotted_logs_json_lines_with_log_format_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_flotted"))
        .args(["--log-format", "json", "--listen", "relative.sock"])
        .env("FLOTTE_NO_SUCH_SETTING", "1")
        .env("FLOTTE_CONFIG", "/dev/null")
        .env_remove("JOURNAL_STREAM")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("FLOTTE_NO_SUCH_SETTING"))
        .unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    let json: serde_json::Value =
        serde_json::from_str(warning).unwrap_or_else(|e| panic!("`{warning}`: {e}"));
    assert_eq!(json["level"], "WARN", "{json}");
    assert!(json["timestamp"].is_string(), "{json}");
    assert!(
        json["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("ignoring environment variable FLOTTE_NO_SUCH_SETTING")),
        "{json}"
    );
}

/// A member of the group flotte may use flottectl on the host; another user may not.
async fn check_flotte_group(m: &Machine) {
    for (user, groups) in [("alice", "flotte"), ("bob", "users")] {
        ok(
            &format!("useradd {user}"),
            m.container
                .command("useradd")
                .args(["--groups", groups, user])
                .output()
                .await,
        );
    }
    let as_user = |user: &'static str| {
        let mut cmd = m.container.command("runuser");
        cmd.args(["-u", user, "--", "/usr/bin/flottectl", "list-machines"]);
        cmd
    };
    let alice = ok("flottectl as alice", as_user("alice").output().await);
    assert!(
        String::from_utf8_lossy(&alice.stdout).contains(&m.ip.to_string()),
        "{alice:?}"
    );
    let bob = as_user("bob").output().await.unwrap();
    let stderr = String::from_utf8_lossy(&bob.stderr);
    assert!(
        !bob.status.success() && stderr.contains("ermission denied"),
        "bob, not in flotte, reached the API: {bob:?}"
    );
}
