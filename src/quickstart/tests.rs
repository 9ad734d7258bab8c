//! The quick start's pure parts: `env`'s lines, which examples run, the status table, the
//! liveness of recorded processes, and the command lines the transcript shows.

use std::path::{Path, PathBuf};

use super::flottectl::{Flottectl, line};
use super::state::{dead_parts, is_program, runs};
use super::*;
use crate::cli::Command;
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
            .map(|(i, (name, _, _))| {
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
                    tcp: (i == 0).then(|| ([127, 0, 1, 1], UI_PORT).into()),
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
         FLOTTE_UI='http://127.0.1.1:8470/ui/'\n\
         FLOTTE_DNS=127.0.1.1\n\
         export PATH='/src/flotte/target/release':\"$PATH\"\n"
    );
}

#[test]
fn examples_submit_every_unit_and_start_three_instances_of_each_template() {
    let names: Vec<String> = [
        "hello@.service",
        "README.md",
        "beacon.service",
        "batch.service",
        "hello.service",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let Examples {
        submit,
        start,
        start_no_block,
    } = examples(&names);
    assert_eq!(
        submit,
        [
            "batch.service",
            "beacon.service",
            "hello.service",
            "hello@.service"
        ]
    );
    assert_eq!(start_no_block, ["batch.service"]);
    assert_eq!(
        start,
        [
            "beacon.service",
            "hello.service",
            "hello@1.service",
            "hello@2.service",
            "hello@3.service"
        ]
    );
}

#[test]
fn every_host_declares_its_capacity_and_answers_dns_on_its_own_address_port_53() {
    let settings = Settings {
        state_dir: "/var/lib/flotte-local-cluster".into(),
        flotted: "/usr/local/bin/flotted".into(),
        units: "units".into(),
        group_prefix: "flotte-local".into(),
        first_ip: FIRST_IP,
        links: Links {
            dir: "/usr/local/bin".into(),
            flottectl: "/usr/local/bin/flottectl".into(),
            flotted: "/usr/local/bin/flotted".into(),
        },
    };
    let settings: Vec<Vec<(String, String)>> = spec(&settings)
        .hosts
        .into_iter()
        .map(|h| h.settings)
        .collect();
    let expected: Vec<Vec<(String, String)>> = [
        ("memory=4G,cpu=2", "127.0.1.1:53"),
        ("memory=2G,cpu=2", "127.0.1.2:53"),
        ("memory=1G,cpu=1", "127.0.1.3:53"),
    ]
    .iter()
    .map(|(capacity, dns)| {
        vec![
            ("capacity".to_owned(), capacity.to_string()),
            ("dns_listen".to_owned(), dns.to_string()),
        ]
    })
    .collect();
    assert_eq!(settings, expected);
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

#[test]
fn a_program_replaced_on_disk_while_it_runs_is_still_that_program() {
    // (what /proc/PID/exe points to, the program expected, whether it is that program)
    let cases = [
        ("/usr/lib/systemd/systemd", "systemd", true),
        // After a systemd package upgrade, or a rebuild of flotted under a running cluster.
        ("/usr/lib/systemd/systemd (deleted)", "systemd", true),
        (
            "/src/flotte/target/release/flotted (deleted)",
            "flotted",
            true,
        ),
        ("/usr/bin/etcd", "systemd", false),
        ("/usr/bin/etcd (deleted)", "systemd", false),
        ("/usr/bin/systemd-run", "systemd", false),
        ("/usr/bin/systemd (deleted) (deleted)", "systemd", false),
        ("/", "systemd", false),
    ];
    for (exe, program, expected) in cases {
        assert_eq!(
            is_program(Path::new(exe), program),
            expected,
            "{exe} is {program}"
        );
    }
}

#[test]
fn the_transcript_quotes_only_the_words_a_shell_would_read_otherwise() {
    let args: Vec<String> = [
        "start",
        "--block-attempts",
        "240",
        "/src/flotte/units/web@1.service",
        "/home/a user/units/it's.service",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        line(&args),
        r"start --block-attempts 240 /src/flotte/units/web@1.service '/home/a user/units/it'\''s.service'"
    );
}

#[test]
fn flottectls_own_parser_reads_the_commands_with_host_1_as_endpoint() {
    let flottectl = Flottectl::new(&record());
    let args: Vec<String> = ["start", "--block-attempts", "240", "units/hello@1.service"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let cli = flottectl.parse(&args).unwrap();
    assert_eq!(cli.global.endpoint, endpoint(&record()));
    assert_eq!(
        cli.global.request_timeout,
        std::time::Duration::from_secs(10)
    );
    let Command::Start(start) = cli.command else {
        panic!("start parses as start: {:?}", cli.command);
    };
    assert_eq!(start.block.block_attempts, 240);
    assert_eq!(start.units.len(), 1);
    // The client the quick start waits with reads the same connection flags.
    assert_eq!(
        flottectl.client().unwrap().endpoint(),
        "unix:///var/lib/flotte-local-cluster/run/host-1/flotte.sock"
    );
    let refused = flottectl.parse(&["start".to_owned(), "bad name".to_owned()]);
    assert!(
        matches!(&refused, Err(QuickstartError::Flottectl { line, .. }) if line == "start 'bad name'"),
        "{refused:?}"
    );
}
