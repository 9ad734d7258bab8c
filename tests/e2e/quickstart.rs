//! The quick start (issue "flottectl and the HTTP API"): the local cluster that
//! `packaging/local-cluster up` starts, driven with the real flottectl binary through
//! submit → start → list → restart → stop → destroy, and the script itself up, status, env, down.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use flotte::cli::Console;
use flotte::isolated::wait_for;
use flotte::quickstart::{self, Health, Links, Settings, State};
use tokio::process::Command;

const SLEEPER: &str = "[Unit]\nDescription=Sleeps\n\n[Service]\nExecStart=/bin/sleep 100000\n";
const SLEEPER_2: &str =
    "[Unit]\nDescription=Sleeps longer\n\n[Service]\nExecStart=/bin/sleep 200000\n";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The links the example sidekicks find flottectl by, to the binaries under test (as
/// `packaging/local-cluster up` makes them to the release binaries).
fn links() -> Links {
    Links {
        dir: quickstart::LINK_DIR.into(),
        flottectl: env!("CARGO_BIN_EXE_flottectl").into(),
        flotted: env!("CARGO_BIN_EXE_flotted").into(),
    }
}

/// A local cluster started by the library code of `local-cluster up`, stopped when dropped.
struct QuickStart {
    state_dir: PathBuf,
    state: State,
    up_output: String,
    _dir: tempfile::TempDir,
}

impl QuickStart {
    async fn up(test: &str) -> QuickStart {
        let dir = tempfile::Builder::new()
            .prefix(&format!("flotte-{test}-"))
            .tempdir()
            .unwrap();
        let settings = Settings {
            state_dir: dir.path().join("state"),
            flotted: env!("CARGO_BIN_EXE_flotted").into(),
            units: repository().join("units"),
            group_prefix: format!("flotte-test-{}-{test}", std::process::id()),
            first_ip: crate::support::unique_first_ip(),
            links: links(),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = quickstart::up(
            &settings,
            &mut Console {
                out: &mut out,
                err: &mut err,
            },
        )
        .await;
        let up_output = String::from_utf8_lossy(&out).into_owned();
        let state = result.unwrap_or_else(|e| {
            let _ = quickstart::down(&settings.state_dir);
            panic!(
                "local-cluster up failed: {e}\nstdout:\n{up_output}\nstderr:\n{}",
                String::from_utf8_lossy(&err)
            )
        });
        QuickStart {
            state_dir: settings.state_dir,
            state,
            up_output,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        quickstart::endpoint(&self.state.cluster).to_string()
    }
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        if let Err(e) = quickstart::down(&self.state_dir) {
            eprintln!("local-cluster down: {e}");
        }
    }
}

/// Runs the flottectl binary against `endpoint`.
async fn flottectl(endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flottectl"))
        .args(args)
        .env("FLOTTECTL_ENDPOINT", endpoint)
        .output()
        .await
        .expect("flottectl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stdout of a run that must succeed.
fn ok(args: &[&str], output: Output) -> String {
    assert!(
        output.status.success(),
        "flottectl {args:?} failed with {}:\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// stderr of a run that must fail with `code`.
fn fails(args: &[&str], output: Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "flottectl {args:?}:\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

/// The rows of a table, each split on its tabs (empty padding cells dropped).
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split('\t')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// Runs a list command until its rows satisfy `done`, failing after a deadline with the last
/// output.
async fn listed_until(endpoint: &str, args: &[&str], done: impl Fn(&[Vec<String>]) -> bool) {
    let last = std::cell::RefCell::new(String::new());
    let result = wait_for(
        Duration::from_secs(20),
        || format!("flottectl {args:?} never showed what was expected"),
        || async {
            let output = ok(args, flottectl(endpoint, args).await);
            let reached = done(&rows(&output));
            *last.borrow_mut() = output;
            reached.then_some(())
        },
    )
    .await;
    if let Err(e) = result {
        panic!("{e}; last output:\n{}", last.borrow());
    }
}

/// `Unit NAME launched on 1a2b3c4d.../127.0.1.N` → the index of host N.
fn host_of(message: &str) -> usize {
    let ip = message
        .trim()
        .rsplit('/')
        .next()
        .unwrap_or_else(|| panic!("no machine in `{message}`"));
    let last: usize = ip
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no IP in `{message}`"));
    last - 1
}

/// systemd's MainPID of `unit` on host `i`, once it has one.
async fn main_pid(q: &QuickStart, i: usize, unit: &str) -> u32 {
    let host = &q.state.cluster.members[i].host;
    wait_for(
        Duration::from_secs(20),
        || format!("{unit} got no MainPID on {}", host.name),
        || async {
            let out = host
                .command("systemctl")
                .args(["--user", "show", "-p", "MainPID", "--value", unit])
                .output()
                .await
                .ok()?;
            text(&out.stdout)
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|p| *p != 0)
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn flottectl_drives_the_quick_start_cluster_from_submit_to_destroy() {
    let q = QuickStart::up("quickstart").await;
    let ep = q.endpoint();
    let run = |args: &'static [&'static str]| {
        let ep = ep.clone();
        async move { (args, flottectl(&ep, args).await) }
    };

    // `up` started every example, as its output shows.
    for unit in [
        "apache.service",
        "apache-sidekick.service",
        "apache-sidekick-etcdctl.service",
        "hello.service",
        "hello@1.service",
        "hello@2.service",
        "hello@3.service",
        "ssd-cache.service",
        "db.service",
        "web@1.service",
        "web@2.service",
        "web@3.service",
        "web-sidekick@1.service",
        "web-sidekick@2.service",
        "web-sidekick@3.service",
    ] {
        assert!(
            q.up_output.contains(&format!("Unit {unit} launched on ")),
            "{unit} in:\n{}",
            q.up_output
        );
    }
    assert!(
        q.up_output
            .contains("Triggered global unit beacon.service start")
    );

    let (args, out) = run(&["list-machines", "--no-legend"]).await;
    let machines = rows(&ok(args, out));
    assert_eq!(machines.len(), 3, "{machines:?}");
    let metadata: Vec<&str> = machines.iter().map(|r| r[2].as_str()).collect();
    for expected in [
        "disk=ssd,region=eu",
        "disk=hdd,region=eu",
        "disk=ssd,region=us",
    ] {
        assert!(metadata.contains(&expected), "{metadata:?}");
    }
    // ssd-cache.service may only run on host-1 (disk=ssd, region=eu).
    let (args, out) = run(&["list-units", "--no-legend", "--fields", "unit,machine"]).await;
    let units = ok(args, out);
    let ssd = rows(&units)
        .into_iter()
        .find(|r| r[0] == "ssd-cache.service")
        .unwrap_or_else(|| panic!("ssd-cache.service in:\n{units}"));
    assert_eq!(host_of(&ssd[1]), 0, "{ssd:?}");
    // db.service asks for 3 GiB and a CPU: only host-1 (4 GiB) has room.
    let db = rows(&units)
        .into_iter()
        .find(|r| r[0] == "db.service")
        .unwrap_or_else(|| panic!("db.service in:\n{units}"));
    assert_eq!(host_of(&db[1]), 0, "{db:?}");
    // batch.service asks for 6 GiB, which no host has: it is not placed, and says why.
    assert!(!units.contains("batch.service"), "{units}");
    let (args, out) = run(&[
        "list-unit-files",
        "--no-legend",
        "--fields",
        "unit,dstate,reason",
    ])
    .await;
    let files = ok(args, out);
    let batch = files
        .lines()
        .find(|l| l.starts_with("batch.service"))
        .unwrap_or_else(|| panic!("batch.service in:\n{files}"));
    assert!(
        batch.contains("launched")
            && batch.contains("needs 6 GiB of memory, most free is 2 GiB on "),
        "{batch}"
    );
    // Each host's declared capacity, with db's requests on host-1.
    let (args, out) = run(&[
        "list-machines",
        "--no-legend",
        "--fields",
        "machine,cpu,memory",
    ])
    .await;
    let sizes = ok(args, out);
    for expected in [
        "1/2 (1 free)\t3 GiB/4 GiB (1 GiB free)",
        "0/2 (2 free)\t0 B/2 GiB (2 GiB free)",
        "0/1 (1 free)\t0 B/1 GiB (1 GiB free)",
    ] {
        assert!(sizes.contains(expected), "{expected:?} in:\n{sizes}");
    }

    // The sidekicks announced their services (the etcdctl one maybe a moment after systemd
    // counted it started), as `flottectl services` shows with host-1's flotted settings.
    let config = &q.state.cluster.members[0].config;
    let expected = [
        "/services/web/1",
        "/services/web/2",
        "/services/web/3",
        "/services/website/apache",
        "/services/website/apache-etcdctl",
    ];
    let args = ["services", "--no-legend", "--fields", "key"];
    let listed = wait_for(
        Duration::from_secs(20),
        || format!("flottectl services never listed {expected:?}"),
        || async {
            let out = Command::new(env!("CARGO_BIN_EXE_flottectl"))
                .args(args)
                .env("FLOTTE_CONFIG", config)
                .output()
                .await
                .ok()?;
            let keys = ok(&args, out);
            (keys.lines().collect::<Vec<_>>() == expected).then_some(keys)
        },
    )
    .await;
    listed.unwrap();

    // submit → start → list-units
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sleeper.service");
    std::fs::write(&file, SLEEPER).unwrap();
    let path = file.to_str().unwrap();
    let out = flottectl(&ep, &["submit", path]).await;
    assert_eq!(ok(&["submit"], out), "Unit sleeper.service inactive\n");
    let out = flottectl(&ep, &["start", path]).await;
    let started = ok(&["start"], out);
    assert!(
        started.starts_with("Unit sleeper.service launched on ") && started.lines().count() == 1,
        "{started}"
    );
    let host = host_of(&started);
    // "launched" is fleet's: the agent started the unit; systemd reports it running a moment
    // later, which list-units then shows.
    let running = vec![
        "sleeper.service".to_owned(),
        "active".to_owned(),
        "running".to_owned(),
    ];
    listed_until(
        &ep,
        &["list-units", "--no-legend", "--fields", "unit,active,sub"],
        |rows| rows.contains(&running),
    )
    .await;
    let (args, out) = run(&["cat", "sleeper"]).await;
    assert_eq!(ok(args, out), SLEEPER);

    // restart really restarts: a new main process.
    let before = main_pid(&q, host, "sleeper.service").await;
    let (args, out) = run(&["restart", "sleeper"]).await;
    let restarted = ok(args, out);
    let lines: Vec<&str> = restarted.lines().collect();
    assert_eq!(lines.len(), 2, "{restarted}");
    assert!(
        lines[0].starts_with("Unit sleeper.service loaded on "),
        "{restarted}"
    );
    assert!(
        lines[1].starts_with("Unit sleeper.service launched on "),
        "{restarted}"
    );
    let after = main_pid(&q, host_of(lines[1]), "sleeper.service").await;
    assert_ne!(before, after, "restart kept main PID {before}");

    // A changed file is refused without --replace, and replaces the unit with it.
    std::fs::write(&file, SLEEPER_2).unwrap();
    let out = flottectl(&ep, &["start", path]).await;
    let refused = fails(&["start"], out, 1);
    assert!(
        refused.contains("unit sleeper.service in the registry differs from the local unit file")
            && refused.contains("--replace"),
        "{refused}"
    );
    let out = flottectl(&ep, &["start", "--replace", path]).await;
    let replaced = ok(&["start", "--replace"], out);
    assert!(
        replaced.starts_with("Unit sleeper.service launched on "),
        "{replaced}"
    );
    let (args, out) = run(&["cat", "sleeper.service"]).await;
    assert_eq!(ok(args, out), SLEEPER_2);

    // stop
    let (args, out) = run(&["stop", "sleeper"]).await;
    let stopped = ok(args, out);
    assert!(
        stopped.starts_with("Unit sleeper.service loaded on "),
        "{stopped}"
    );
    let (args, out) = run(&[
        "list-unit-files",
        "--no-legend",
        "--fields",
        "unit,dstate,state",
    ])
    .await;
    let files = ok(args, out);
    assert!(
        rows(&files).contains(&vec![
            "sleeper.service".to_owned(),
            "loaded".to_owned(),
            "loaded".to_owned()
        ]),
        "{files}"
    );

    // An instance from the template in the registry, on the one host left by its conflicts:
    // `up` started hello@3 too, so it goes first.
    let (args, out) = run(&["destroy", "hello@3"]).await;
    assert_eq!(ok(args, out), "Destroyed hello@3.service\n");
    let (args, out) = run(&["start", "hello@3"]).await;
    let third = ok(args, out);
    assert!(
        third.starts_with("Unit hello@3.service inactive\nUnit hello@3.service launched on "),
        "{third}"
    );

    // destroy waits until no machine has the unit; afterwards no list shows it.
    // Each is reported as it is gone, in whichever order that happens.
    let (args, out) = run(&["destroy", "sleeper", "hello@3"]).await;
    let destroyed = ok(args, out);
    let mut lines: Vec<&str> = destroyed.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["Destroyed hello@3.service", "Destroyed sleeper.service"],
        "{destroyed}"
    );
    for args in [&["list-units"][..], &["list-unit-files"]] {
        let listed = ok(args, flottectl(&ep, args).await);
        assert!(!listed.contains("sleeper.service"), "{listed}");
        assert!(!listed.contains("hello@3.service"), "{listed}");
    }

    // Errors: an unknown unit (1), an unknown field (2); nothing is half done.
    let (args, out) = run(&["stop", "hello", "nonexistent"]).await;
    assert_eq!(
        fails(args, out, 1),
        "flottectl: unit nonexistent.service not found\n"
    );
    let (args, out) = run(&["list-units", "--fields", "unit,bogus"]).await;
    assert!(fails(args, out, 2).contains("unknown field `bogus`"));

    // JSON for scripts.
    let (args, out) = run(&["list-machines", "--output", "json", "--full"]).await;
    let json: serde_json::Value = serde_json::from_str(&ok(args, out)).unwrap();
    let ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["machine"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| id.len() == 32), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn flottectl_names_the_endpoint_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("unix://{}/none.sock", dir.path().display());
    let out = flottectl(&endpoint, &["list-units"]).await;
    let e = fails(&["list-units"], out, 1);
    assert!(
        e.starts_with(&format!("flottectl: cannot connect to {endpoint}: ")),
        "{e}"
    );
}

/// Runs `packaging/local-cluster COMMAND` on the binaries the tests were built with.
async fn script(state_dir: &Path, command: &str) -> Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_flotte-local-cluster"))
        .parent()
        .unwrap();
    Command::new(repository().join("packaging/local-cluster"))
        .arg(command)
        .env("FLOTTE_SKIP_BUILD", "1")
        .env("FLOTTE_BIN_DIR", bin_dir)
        .env("FLOTTE_LOCAL_CLUSTER_DIR", state_dir)
        .env(
            "FLOTTE_LOCAL_CLUSTER_GROUP_PREFIX",
            format!("flotte-test-{}-script", std::process::id()),
        )
        .env(
            "FLOTTE_LOCAL_CLUSTER_FIRST_IP",
            crate::support::unique_first_ip().to_string(),
        )
        .output()
        .await
        .expect("packaging/local-cluster runs")
}

/// Stops a script-started cluster even when an assertion fails.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if let Err(e) = quickstart::down(self.0) {
            eprintln!("local-cluster down: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_cluster_script_brings_a_cluster_up_and_down_again() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let _down = Down(&state_dir);

    let up = ok(&["local-cluster up"], script(&state_dir, "up").await);
    assert!(up.contains("$ flottectl list-units\n"), "{up}");
    assert!(up.contains("The local cluster is up"), "{up}");
    let again = ok(&["local-cluster up"], script(&state_dir, "up").await);
    assert!(again.starts_with("The local cluster in "), "{again}");
    assert!(again.contains("is already up"), "{again}");

    let status = ok(
        &["local-cluster status"],
        script(&state_dir, "status").await,
    );
    assert!(status.contains("host-3 flotted"), "{status}");

    // `env` is for eval: its FLOTTECTL_ENDPOINT reaches the cluster.
    let env = ok(&["local-cluster env"], script(&state_dir, "env").await);
    let endpoint = env
        .lines()
        .find_map(|l| l.strip_prefix("export FLOTTECTL_ENDPOINT="))
        .unwrap_or_else(|| panic!("no FLOTTECTL_ENDPOINT in:\n{env}"))
        .trim_matches('\'');
    assert!(env.contains("export ETCDCTL_API=3\n"), "{env}");
    assert!(env.contains("export FLOTTE_CONFIG='"), "{env}");
    assert!(
        env.contains("export ETCDCTL_ENDPOINTS='http://127.0.0.1:"),
        "{env}"
    );
    // FLOTTE_UI is the web page, on host-1's own address.
    let ui = env
        .lines()
        .find_map(|l| l.strip_prefix("FLOTTE_UI="))
        .unwrap_or_else(|| panic!("no FLOTTE_UI in:\n{env}"))
        .trim_matches('\'');
    let addr = ui
        .strip_prefix("http://")
        .and_then(|a| a.strip_suffix("/ui/"))
        .unwrap_or_else(|| panic!("FLOTTE_UI `{ui}` is no http://ADDRESS:PORT/ui/"));
    let page = page_at(addr).await;
    assert!(page.starts_with("HTTP/1.1 200"), "GET {ui}: {page}");
    assert!(page.contains("/ui/assets/app.js"), "GET {ui}: {page}");
    let listed = ok(
        &["list-machines"],
        flottectl(endpoint, &["list-machines", "--no-legend"]).await,
    );
    assert_eq!(listed.lines().count(), 3, "{listed}");

    let down = ok(&["local-cluster down"], script(&state_dir, "down").await);
    assert!(down.starts_with("Stopped the local cluster"), "{down}");
    assert!(matches!(quickstart::health(&state_dir), Ok(Health::Down)));
    let status = script(&state_dir, "status").await;
    assert_eq!(status.status.code(), Some(1), "status of no cluster");
    assert!(text(&status.stdout).starts_with("No local cluster runs"));
}

/// The answer to `GET /ui/` at `addr`, as text.
async fn page_at(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /ui/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// A CA and what it signs, made for one test.
struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Pki {
            ca: rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap(),
        }
    }

    /// Writes a certificate for `name` and its key as `<file>.pem` and `<file>.key` in `dir`.
    fn issue(&self, dir: &Path, file: &str, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flottectl_reaches_an_https_endpoint_with_its_ca_and_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    // The API listens on a loopback address of its own; the cluster's hosts have others.
    let ip = crate::support::unique_first_ip().to_string();
    let (server_cert, server_key) = pki.issue(dir.path(), "server", &ip);
    let (client_cert, client_key) = pki.issue(dir.path(), "client", "flottectl");
    let port = std::net::TcpListener::bind((ip.as_str(), 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let address = format!("{ip}:{port}");
    let t = crate::support::cluster(
        "tls",
        &[("host-1", "region=eu")],
        &[
            ("listen_tcp", address.as_str()),
            ("api_certfile", server_cert.to_str().unwrap()),
            ("api_keyfile", server_key.to_str().unwrap()),
            ("api_client_cafile", ca.to_str().unwrap()),
        ],
    )
    .await;
    let endpoint = format!("https://{address}");
    let tls = [
        "--ca-file",
        ca.to_str().unwrap(),
        "--cert-file",
        client_cert.to_str().unwrap(),
        "--key-file",
        client_key.to_str().unwrap(),
    ];
    let args: Vec<&str> = tls
        .iter()
        .copied()
        .chain(["list-machines", "--no-legend", "--full"])
        .collect();
    let listed = ok(&args, flottectl(&endpoint, &args).await);
    assert_eq!(
        listed,
        format!(
            "{}\t{}\tregion=eu\tfalse\n",
            t.cluster.machine_id(0),
            t.cluster.host_ip(0)
        )
    );

    // Without a client certificate the server refuses the handshake; flottectl says where.
    let args = ["--ca-file", ca.to_str().unwrap(), "list-machines"];
    let e = fails(&args, flottectl(&endpoint, &args).await, 1);
    assert!(e.contains(&endpoint), "{e}");
    // A certificate from another CA is not trusted.
    let stranger = Pki::new();
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, stranger.ca.pem()).unwrap();
    let args: Vec<&str> = ["--ca-file", other_ca.to_str().unwrap()]
        .into_iter()
        .chain(tls[2..].iter().copied())
        .chain(["list-machines"])
        .collect();
    let e = fails(&args, flottectl(&endpoint, &args).await, 1);
    assert!(
        e.starts_with(&format!(
            "flottectl: TLS handshake with {endpoint} failed: "
        )),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_unit_files_follows_every_page_of_the_api() {
    let t = crate::support::cluster("pages", &[("host-1", "")], &[]).await;
    let endpoint = format!("unix://{}", t.cluster.socket(0).display());
    let dir = tempfile::tempdir().unwrap();
    // fleet's pages hold 100 units: 250 take three.
    let names: Vec<String> = (0..250).map(|i| format!("u{i:03}.service")).collect();
    for name in &names {
        std::fs::write(dir.path().join(name), SLEEPER).unwrap();
    }
    let mut args = vec!["submit".to_owned()];
    args.extend(
        names
            .iter()
            .map(|n| dir.path().join(n).display().to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let submitted = ok(&["submit"], flottectl(&endpoint, &args).await);
    assert_eq!(submitted.lines().count(), 250);
    let args = ["list-unit-files", "--no-legend", "--fields", "unit"];
    let listed = ok(&args, flottectl(&endpoint, &args).await);
    assert_eq!(listed.lines().collect::<Vec<_>>(), names);
}

#[tokio::test(flavor = "multi_thread")]
async fn up_on_a_half_dead_cluster_cleans_it_up_and_starts_anew() {
    let q = QuickStart::up("stale").await;
    let victim = q.state.cluster.members[1].flotted_pid.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Our own child: reaped here, or /proc keeps a zombie that still looks alive.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(victim), None);
    match quickstart::health(&q.state_dir).unwrap() {
        Health::Stale(_, dead) => {
            assert_eq!(dead, [format!("host-2's flotted (pid {victim})")])
        }
        other => panic!("a cluster without host-2's flotted is stale, not {other:?}"),
    }

    let settings = Settings {
        state_dir: q.state_dir.clone(),
        flotted: env!("CARGO_BIN_EXE_flotted").into(),
        units: repository().join("units"),
        group_prefix: format!("flotte-test-{}-stale2", std::process::id()),
        first_ip: crate::support::unique_first_ip(),
        links: links(),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let again = quickstart::up(
        &settings,
        &mut Console {
            out: &mut out,
            err: &mut err,
        },
    )
    .await
    .unwrap();
    let out = text(&out);
    assert!(
        out.starts_with(&format!(
            "Cleaning up the stale local cluster in {} (gone: host-2's flotted (pid {victim})).\n",
            q.state_dir.display()
        )),
        "{out}"
    );
    assert!(out.contains("The local cluster is up"), "{out}");
    assert_ne!(again.cluster.etcd.pid, q.state.cluster.etcd.pid);
    assert!(matches!(
        quickstart::health(&q.state_dir).unwrap(),
        Health::Up(_)
    ));
}
