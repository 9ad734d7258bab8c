//! Golden tests of every list command and flag: the sample cluster below, rendered, compared
//! with `tests/data/golden/*`. `FLOTTECTL_BLESS=1 cargo test --lib cli::fields` rewrites the files;
//! review the diff before committing it.

use crate::resources::Resources;
use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::unit::UnitName;

const M1: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f801";
const M2: &str = "2b3c4d5e6f708192a3b4c5d6e7f80112";
const M3: &str = "3c4d5e6f708192a3b4c5d6e7f8011223";

fn machine(id: &str, ip: &str, metadata: &[(&str, &str)], hostname: &str) -> wire::Machine {
    wire::Machine {
        id: id.into(),
        primary_ip: ip.into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        version: "0.1.0".into(),
        hostname: hostname.into(),
        ..wire::Machine::default()
    }
}

fn sample_machines() -> Vec<wire::Machine> {
    vec![
        machine(
            M1,
            "127.0.1.1",
            &[("region", "eu"), ("disk", "ssd")],
            "host-1",
        ),
        // Drained (`flottectl drain`), with capacity and units placed, one overcommitted.
        wire::Machine {
            drained: true,
            capacity: Some(Resources {
                memory: 8 << 30,
                millicpus: 4000,
            }),
            requested: Resources {
                memory: 9 << 30,
                millicpus: 1500,
            },
            free: Some(Resources {
                memory: 0,
                millicpus: 2500,
            }),
            units: 3,
            ..machine(
                M2,
                "127.0.1.2",
                &[("region", "eu"), ("disk", "hdd")],
                "host-2",
            )
        },
        // A machine without metadata nor IP shows `-` for both.
        wire::Machine {
            id: M3.into(),
            ..wire::Machine::default()
        },
    ]
}

fn options(text: &str) -> Vec<wire::UnitOption> {
    UnitFile::parse(text.as_bytes())
        .unwrap()
        .file
        .into_options()
        .into_iter()
        .map(Into::into)
        .collect()
}

const HELLO: &str =
    "[Unit]\nDescription=Hello from every host\n\n[Service]\nExecStart=/bin/sleep infinity\n";
const WEB: &str =
    "[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nConflicts=web@*.service\n";
const BEACON: &str = "[Unit]\nDescription=A beacon\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nGlobal=true\n";
const ASIA: &str =
    "[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nMachineMetadata=region=asia\n";

/// A unit as the API sends it: `global` is its `[X-Fleet]` section's.
fn unit(name: &str, text: &str, desired: &str, current: &str, machine: &str) -> view::Unit {
    wire::Unit {
        name: name.into(),
        options: options(text),
        desired_state: desired.into(),
        current_state: current.into(),
        machine_id: machine.into(),
        global: text.contains("Global=true"),
        ..wire::Unit::default()
    }
    .try_into()
    .unwrap()
}

fn sample_units() -> Vec<view::Unit> {
    vec![
        view::Unit {
            reason: "no machine matches MachineMetadata=region=asia".into(),
            ..unit("asia.service", ASIA, "launched", "inactive", "")
        },
        view::Unit {
            machine_ids: vec![M1.into(), M2.into(), M3.into()],
            ..unit("beacon.service", BEACON, "launched", "", M1)
        },
        unit("hello.service", HELLO, "launched", "launched", M2),
        unit("web@.service", WEB, "inactive", "inactive", ""),
        unit("web@1.service", WEB, "loaded", "loaded", M1),
        // Placed on a machine that has left the cluster: the ID alone, without an IP.
        unit(
            "web@2.service",
            WEB,
            "launched",
            "launched",
            "9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f",
        ),
    ]
}

fn state(name: &str, machine: &str, text: &str, active: &str, sub: &str) -> view::UnitState {
    wire::UnitState {
        name: name.into(),
        hash: UnitFile::parse(text.as_bytes())
            .unwrap()
            .file
            .hash()
            .to_string(),
        machine_id: machine.into(),
        systemd_load_state: "loaded".into(),
        systemd_active_state: active.into(),
        systemd_sub_state: sub.into(),
        ..wire::UnitState::default()
    }
    .try_into()
    .unwrap()
}

fn sample_states() -> Vec<view::UnitState> {
    vec![
        state("beacon.service", M1, BEACON, "active", "running"),
        state("beacon.service", M2, BEACON, "active", "running"),
        state("beacon.service", M3, BEACON, "failed", "failed"),
        state("hello.service", M2, HELLO, "active", "running"),
        state("web@1.service", M1, WEB, "inactive", "dead"),
        // A state the agent could not fill in completely.
        wire::UnitState {
            name: "web@2.service".into(),
            machine_id: "9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f".into(),
            ..wire::UnitState::default()
        }
        .try_into()
        .unwrap(),
    ]
}

/// Compares `actual` with the golden file `name`, or rewrites it under `FLOTTECTL_BLESS`.
fn check(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name);
    if std::env::var_os("FLOTTECTL_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (FLOTTECTL_BLESS=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from the golden file; after review, FLOTTECTL_BLESS=1 rewrites it"
    );
}

fn fields<F: Field>(text: &str) -> Fields<F> {
    parse_fields(text).unwrap()
}

#[test]
fn list_units_renders_every_flag_as_the_golden_files_show() {
    let machines = sample_machines();
    let directory = Machines::new(&machines);
    let states = sample_states();
    let listing = |f: &str, detail| unit_states(&fields(f), &states, &directory, detail);
    let default = listing(DEFAULT_UNIT_FIELDS, Detail::Short);
    check("list-units.txt", &default.to_text(Legend::Show));
    check(
        "list-units-full.txt",
        &listing(DEFAULT_UNIT_FIELDS, Detail::Full).to_text(Legend::Show),
    );
    check(
        "list-units-no-legend.txt",
        &listing("unit,sub", Detail::Short).to_text(Legend::Hide),
    );
    check(
        "list-units-all-fields.txt",
        &listing("unit,load,active,sub,machine,hash", Detail::Short).to_text(Legend::Show),
    );
    check(
        "list-units-all-fields-full.txt",
        &listing("unit,load,active,sub,machine,hash", Detail::Full).to_text(Legend::Show),
    );
    check("list-units.json", &default.to_json());
}

#[test]
fn list_unit_files_renders_every_flag_as_the_golden_files_show() {
    let machines = sample_machines();
    let directory = Machines::new(&machines);
    let units = sample_units();
    let listing = |f: &str, detail| unit_files(&fields(f), &units, &directory, detail);
    let default = listing(DEFAULT_UNIT_FILE_FIELDS, Detail::Short);
    check("list-unit-files.txt", &default.to_text(Legend::Show));
    check(
        "list-unit-files-full.txt",
        &listing(DEFAULT_UNIT_FILE_FIELDS, Detail::Full).to_text(Legend::Show),
    );
    check(
        "list-unit-files-no-legend.txt",
        &default.to_text(Legend::Hide),
    );
    check(
        "list-unit-files-extra-fields.txt",
        &listing("unit,desc,global,reason", Detail::Short).to_text(Legend::Show),
    );
    check(
        "list-unit-files.json",
        &listing(
            "unit,hash,dstate,state,target,desc,global,reason",
            Detail::Short,
        )
        .to_json(),
    );
}

#[test]
fn list_machines_renders_every_flag_as_the_golden_files_show() {
    let machines = sample_machines();
    let listing = |f: &str, detail| super::machines(&fields(f), &machines, detail);
    let default = listing(DEFAULT_MACHINE_FIELDS, Detail::Short);
    check("list-machines.txt", &default.to_text(Legend::Show));
    check(
        "list-machines-full.txt",
        &listing(DEFAULT_MACHINE_FIELDS, Detail::Full).to_text(Legend::Show),
    );
    check(
        "list-machines-no-legend.txt",
        &default.to_text(Legend::Hide),
    );
    check(
        "list-machines-extra-fields.txt",
        &listing("machine,hostname,version", Detail::Short).to_text(Legend::Show),
    );
    check(
        "list-machines-capacity.txt",
        &listing("machine,cpu,memory,units", Detail::Short).to_text(Legend::Show),
    );
    check(
        "list-machines.json",
        &listing(
            "machine,ip,metadata,hostname,version,drained,cpu,memory,units",
            Detail::Full,
        )
        .to_json(),
    );
}

#[test]
fn machine_ids_are_shortened_as_fleetctl_does_unless_full() {
    assert_eq!(machine_id(M1, Detail::Short), "1a2b3c4d...");
    assert_eq!(machine_id(M1, Detail::Full), M1);
    // Nothing to shorten: the ID as it is, without a misleading ellipsis.
    assert_eq!(machine_id("1a2b3c4d", Detail::Short), "1a2b3c4d");
    let machines = sample_machines();
    let directory = Machines::new(&machines);
    assert_eq!(directory.legend(M2, Detail::Short), "2b3c4d5e.../127.0.1.2");
    assert_eq!(directory.legend(M3, Detail::Short), "3c4d5e6f...");
}

#[test]
fn unknown_or_missing_fields_are_refused_with_the_valid_ones() {
    assert_eq!(
        parse_fields::<UnitField>("unit,state").unwrap_err(),
        "unknown field `state`: valid fields are unit,machine,active,sub,load,hash"
    );
    assert_eq!(
        parse_fields::<MachineField>("").unwrap_err(),
        "no fields given: choose from machine,ip,metadata,drained,hostname,version,cpu,memory,units"
    );
    assert_eq!(
        parse_fields::<UnitFileField>("unit, reason").unwrap(),
        Fields(vec![UnitFileField::Unit, UnitFileField::Reason])
    );
}

#[test]
fn a_unit_with_options_the_server_should_have_refused_still_lists() {
    let units = vec![
        wire::Unit {
            name: "odd.service".into(),
            options: vec![wire::UnitOption {
                section: "Service".into(),
                name: "Bad Name".into(),
                value: "x".into(),
            }],
            desired_state: "inactive".into(),
            current_state: "inactive".into(),
            ..wire::Unit::default()
        }
        .try_into()
        .unwrap(),
    ];
    let listing = unit_files(
        &fields(DEFAULT_UNIT_FILE_FIELDS),
        &units,
        &Machines::new(&[]),
        Detail::Short,
    );
    assert_eq!(
        listing.to_text(Legend::Hide),
        "odd.service\t-\tinactive\tinactive\t-\n"
    );
}

fn sample_services() -> Vec<Service> {
    use crate::machine::MachineId;
    use crate::registry::AnnouncerRecord;
    use std::time::Duration;
    let announcer = |key: &str, machine: &str, unit: &str, hostname: &str| AnnouncerRecord {
        key: key.into(),
        machine: Some(MachineId::new(machine).unwrap()),
        unit: Some(UnitName::new(unit).unwrap()),
        hostname: hostname.into(),
    };
    vec![
        Service {
            key: "/services/web/1".into(),
            value: r#"{"host": "host-2", "port": 8001}"#.into(),
            ttl: Some(Duration::from_secs(57)),
            announcer: Some(announcer(
                "/services/web/1",
                M2,
                "web-sidekick@1.service",
                "host-2",
            )),
        },
        Service {
            key: "/services/website/apache".into(),
            value: r#"{"host": "host-1", "port": 8080}"#.into(),
            ttl: Some(Duration::from_secs(60)),
            announcer: Some(announcer(
                "/services/website/apache",
                M1,
                "apache-sidekick.service",
                "host-1",
            )),
        },
        // Announced from a shell: no unit, no machine ID.
        Service {
            key: "/services/website/by-hand".into(),
            value: "10.0.0.9:80".into(),
            ttl: Some(Duration::from_secs(5)),
            announcer: Some(AnnouncerRecord {
                key: "/services/website/by-hand".into(),
                machine: None,
                unit: None,
                hostname: "laptop".into(),
            }),
        },
        // Written by plain etcdctl under a lease flotte knows nothing about, and without one;
        // a value with a line break stays on its row.
        Service {
            key: "/services/website/etcdctl".into(),
            value: "{\"host\": \"host-3\",\n \"port\": 8080}".into(),
            ttl: Some(Duration::from_secs(28)),
            announcer: None,
        },
        Service {
            key: "/services/static".into(),
            value: String::new(),
            ttl: None,
            announcer: None,
        },
    ]
}

#[test]
fn services_renders_every_flag_as_the_golden_files_show() {
    let services = sample_services();
    let listing = |f: &str, detail| super::services(&fields(f), &services, detail);
    let default = listing(DEFAULT_SERVICE_FIELDS, Detail::Short);
    check("services.txt", &default.to_text(Legend::Show));
    check(
        "services-full.txt",
        &listing(DEFAULT_SERVICE_FIELDS, Detail::Full).to_text(Legend::Show),
    );
    check("services-no-legend.txt", &default.to_text(Legend::Hide));
    check(
        "services-extra-fields.txt",
        &listing("key,hostname,unit", Detail::Short).to_text(Legend::Show),
    );
    check(
        "services.json",
        &listing("key,value,ttl,machine,unit,hostname", Detail::Full).to_json(),
    );
}

#[test]
fn control_characters_in_a_cell_are_escaped_so_rows_stay_rows() {
    assert_eq!(one_line("plain: \"text\""), "plain: \"text\"");
    assert_eq!(one_line("a\tb\nc\u{1b}"), "a\\tb\\nc\\u{1b}");
}
