//! `[X-Fleet]` requirements: matching rules and the reader, through one `check` per case.

use super::*;
use crate::unit::UnitFile;

fn md(list: &str) -> Metadata {
    Metadata::parse_list(list).unwrap()
}

fn one_of(key: &str, values: &[&str]) -> MetadataCondition {
    MetadataCondition::OneOf {
        key: key.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn cmp(key: &str, op: CompareOp, value: &str) -> MetadataCondition {
    MetadataCondition::Compare {
        key: key.into(),
        op,
        value: value.into(),
    }
}

#[test]
fn metadata_conditions_match_as_documented() {
    use CompareOp::*;
    let cases = [
        (one_of("region", &["eu"]), "region=eu", true),
        (one_of("region", &["eu", "us"]), "region=us", true),
        (one_of("region", &["eu"]), "region=asia", false),
        (one_of("region", &["eu"]), "", false),
        (cmp("region", Ne, "asia"), "region=eu", true),
        (cmp("region", Ne, "asia"), "region=asia", false),
        (cmp("region", Ne, "asia"), "", true),
        (cmp("ram", Ge, "2048"), "ram=4096", true),
        (cmp("ram", Ge, "2048"), "ram=2048", true),
        (cmp("ram", Ge, "2048"), "ram=512", false),
        // numeric, not string, order: "512" > "2048" as strings
        (cmp("ram", Gt, "2048"), "ram=512", false),
        (cmp("ram", Lt, "2048"), "ram=512", true),
        (cmp("ram", Le, "2048.0"), "ram=2048", true),
        (cmp("ram", Ne, "2048.0"), "ram=2048", false),
        (cmp("ram", Ge, "2048"), "", false),
        (cmp("ram", Lt, "2048"), "", false),
        // strings when one side is not a number
        (cmp("zone", Gt, "b"), "zone=c", true),
        (cmp("zone", Gt, "b"), "zone=a", false),
        (cmp("ram", Gt, "10"), "ram=lots", true),
    ];
    for (cond, machine, expected) in cases {
        assert_eq!(
            cond.matches(&md(machine)),
            expected,
            "{cond} on `{machine}`"
        );
    }
}

#[test]
fn conditions_display_as_written() {
    assert_eq!(one_of("region", &["eu"]).to_string(), "region=eu");
    assert_eq!(one_of("region", &["eu", "us"]).to_string(), "region=eu|us");
    assert_eq!(cmp("ram", CompareOp::Ge, "2048").to_string(), "ram>=2048");
}

#[test]
fn machine_id_patterns_match_full_ids_and_prefixes() {
    let id = MachineId::new("0123456789abcdef0123456789abcdef").unwrap();
    let other = MachineId::new("fedcba9876543210fedcba9876543210").unwrap();
    let full = MachineIdPattern::Full(id.clone());
    let prefix = MachineIdPattern::Prefix("01234567".into());
    assert!(full.matches(&id) && !full.matches(&other));
    assert!(prefix.matches(&id) && !prefix.matches(&other));
}

#[test]
fn conflicts_are_symmetric() {
    let a = UnitName::new("web@1.service").unwrap();
    let b = UnitName::new("web@2.service").unwrap();
    let c = UnitName::new("db.service").unwrap();
    let web = Requirements {
        conflicts: vec![ConflictPattern::new("web@*.service").unwrap()],
        ..Requirements::default()
    };
    let none = Requirements::default();
    assert!(conflict_between((&a, &web), (&b, &none)));
    assert!(conflict_between((&b, &none), (&a, &web)));
    assert!(!conflict_between((&a, &web), (&c, &none)));
    assert!(
        !conflict_between((&a, &web), (&a, &web)),
        "a unit never conflicts with itself"
    );
}

#[test]
fn warnings_are_kept_when_the_section_is_rejected() {
    let text = "[X-Fleet]\nFrobnicate=1\nGlobal=maybe\n";
    let file = UnitFile::parse(text.as_bytes()).unwrap().file;
    let rejected =
        Requirements::from_unit(&UnitName::new("a.service").unwrap(), &file).unwrap_err();
    assert_eq!(rejected.errors.len(), 1, "{rejected:?}");
    assert_eq!(rejected.warnings.len(), 1, "{rejected:?}");
    assert_eq!(rejected.warnings[0].option, 0);
}

/// Reads `[X-Fleet]` from `body` (the lines after the section header) as unit `name`.
fn from_fleet(name: &str, body: &str) -> Result<Checked, Vec<RequirementError>> {
    let text = format!("[Unit]\nDescription=test\n\n[X-Fleet]\n{body}");
    let file = UnitFile::parse(text.as_bytes()).unwrap().file;
    Requirements::from_unit(&UnitName::new(name).unwrap(), &file).map_err(|r| r.errors)
}

/// The requirements as JSON, with only the fields a case sets.
fn json_of(requirements: &Requirements) -> serde_json::Value {
    let mut json = serde_json::to_value(requirements).unwrap();
    let defaults = serde_json::to_value(Requirements::default()).unwrap();
    if let (Some(json), Some(defaults)) = (json.as_object_mut(), defaults.as_object()) {
        json.retain(|k, v| defaults.get(k) != Some(v));
    }
    json
}

/// Option indices count from 0 at `Description=`, so the first `[X-Fleet]` line is option 1.
fn check(name: &str, body: &str, expected: serde_json::Value) {
    match from_fleet(name, body) {
        Ok(checked) => {
            assert_eq!(json_of(&checked.requirements), expected, "{name}: {body}");
            assert_eq!(checked.warnings, [], "{name}: {body}");
        }
        Err(errors) => panic!("{name}: {body}: {errors:?}"),
    }
}

fn check_errors(name: &str, body: &str, expected: &[(usize, &str)]) {
    let errors = from_fleet(name, body).expect_err(body);
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.option, e.message.as_str()))
        .collect();
    let expected: Vec<_> = expected.iter().map(|&(i, m)| (Some(i), m)).collect();
    assert_eq!(got, expected, "{name}: {body}");
}

fn check_warnings(name: &str, body: &str, expected: &[(usize, &str)]) {
    let checked = from_fleet(name, body).unwrap();
    let got: Vec<_> = checked
        .warnings
        .iter()
        .map(|w| (w.option, w.message.as_str()))
        .collect();
    assert_eq!(got, expected, "{name}: {body}");
}

const ID: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn x_fleet_options_become_requirements() {
    use serde_json::json;
    let cases = [
        ("", json!({})),
        (
            &format!("MachineID={ID}\n") as &str,
            json!({"machineID": ID}),
        ),
        ("MachineID=01234567\n", json!({"machineID": "01234567"})),
        (
            &format!("X-ConditionMachineID={ID}\n"),
            json!({"machineID": ID}),
        ),
        (
            "X-ConditionMachineBootID=01234567\n",
            json!({"machineID": "01234567"}),
        ),
        (
            "MachineOf=db.service  cache.service\nX-ConditionMachineOf=db.service log@1.service\n",
            json!({"machineOf": ["db.service", "cache.service", "log@1.service"]}),
        ),
        (
            "MachineMetadata=region=eu\n",
            json!({"machineMetadata": ["region=eu"]}),
        ),
        // values of one key are alternatives wherever they appear; different keys are ANDed
        (
            "MachineMetadata=region=eu\nMachineMetadata=disk=ssd\nX-ConditionMachineMetadata=region=us\nMachineMetadata=region=eu\n",
            json!({"machineMetadata": ["region=eu|us", "disk=ssd"]}),
        ),
        // fleet's quoted form holds several items
        (
            "MachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n",
            json!({"machineMetadata": ["region=us-east-1", "diskType=SSD"]}),
        ),
        (
            "MachineMetadata=\"region=us-east-1\"  \"region=us-west-1\" \"name=a b\"\n",
            json!({"machineMetadata": ["region=us-east-1|us-west-1", "name=a b"]}),
        ),
        // flotte's comparisons, each on its own
        (
            "MachineMetadata=ram>=2048\nMachineMetadata=\"ram<65536\" \"region!=asia\" \"cpus>2\" \"disk<=9\"\n",
            json!({"machineMetadata": ["ram>=2048", "ram<65536", "region!=asia", "cpus>2", "disk<=9"]}),
        ),
        (
            "MachineMetadata=region != asia\n",
            json!({"machineMetadata": ["region!=asia"]}),
        ),
        (
            "MachineMetadata=region=\n",
            json!({"machineMetadata": ["region="]}),
        ),
        (
            "MachineMetadata=region=\"eu\"\n",
            json!({"machineMetadata": ["region=\"eu\""]}),
        ),
        (
            "Conflicts=web@*.service  db?.service\nX-Conflicts=[ab].service\n",
            json!({"conflicts": ["web@*.service", "db?.service", "[ab].service"]}),
        ),
        ("Global=true\n", json!({"global": true})),
        ("Global=false\n", json!({})),
        (
            "Replaces=old.service older.service\n",
            json!({"replaces": ["old.service", "older.service"]}),
        ),
        // MachineID and metadata may be combined, and so may Global and Conflicts
        (
            &format!("MachineID={ID}\nMachineMetadata=region=eu\n"),
            json!({"machineID": ID, "machineMetadata": ["region=eu"]}),
        ),
        (
            "Global=yes\nConflicts=other.service\nMachineMetadata=role=edge\n",
            json!({"global": true, "conflicts": ["other.service"], "machineMetadata": ["role=edge"]}),
        ),
    ];
    for (body, expected) in cases {
        check("web.service", body, expected);
    }
}

#[test]
fn global_takes_systemd_booleans() {
    for yes in ["1", "yes", "YES", "true", "True", "on", "y", "t"] {
        check(
            "web.service",
            &format!("Global={yes}\n"),
            serde_json::json!({"global": true}),
        );
    }
    for no in ["0", "no", "false", "OFF", "n", "f"] {
        check(
            "web.service",
            &format!("Global={no}\n"),
            serde_json::json!({}),
        );
    }
    check_errors(
        "web.service",
        "Global=maybe\n",
        &[(
            1,
            "Global: `maybe` is not a boolean (use yes/no, true/false, on/off or 1/0)",
        )],
    );
}

#[test]
fn only_the_x_fleet_section_is_read() {
    let file = UnitFile::parse(
        b"[Unit]\nMachineOf=%bad\nConflicts=x\n[x-fleet]\nGlobal=maybe\n[Service]\nGlobal=true\n",
    )
    .unwrap()
    .file;
    let name = UnitName::new("web.service").unwrap();
    let checked = Requirements::from_unit(&name, &file).unwrap();
    assert_eq!(checked.requirements, Requirements::default());
    assert_eq!(checked.warnings, []);
}

#[test]
fn specifiers_expand_in_x_fleet_values() {
    use serde_json::json;
    check(
        "web@3.service",
        "MachineOf=db@%i.service\nConflicts=%p@*.service\nMachineMetadata=shard=%i\n",
        json!({
            "machineOf": ["db@3.service"],
            "conflicts": ["web@*.service"],
            "machineMetadata": ["shard=3"],
        }),
    );
    check(
        "web.service",
        "MachineMetadata=pct<100%%\nMachineOf=%n-db.service\nReplaces=%N-old.service\n",
        json!({
            "machineMetadata": ["pct<100%"],
            "machineOf": ["web.service-db.service"],
            "replaces": ["web-old.service"],
        }),
    );
    check_errors(
        "web.service",
        "MachineOf=%H.service\n",
        &[(
            1,
            "MachineOf: unknown specifier `%H` in `%H.service`: use %n, %N, %p, %i or %%",
        )],
    );
}

#[test]
fn an_instance_reads_its_templates_file_with_its_own_instance() {
    let template = UnitFile::parse(
        b"[Service]\nExecStart=/bin/web %i\n\n[X-Fleet]\nMachineOf=db@%i.service\nConflicts=web@*.service\n",
    )
    .unwrap()
    .file;
    let instance = UnitName::new("web@3.service").unwrap();
    let checked = Requirements::from_unit(&instance, &template).unwrap();
    assert_eq!(
        checked.requirements.machine_of,
        [UnitName::new("db@3.service").unwrap()]
    );
    assert_eq!(checked.requirements.conflicts[0].as_str(), "web@*.service");
    assert_eq!(checked.warnings, []);
    // other sections stay as written: systemd expands them on the host
    assert_eq!(
        template.values("Service", "ExecStart").collect::<Vec<_>>(),
        ["/bin/web %i"]
    );
    // the template itself checks with an empty `%i`, and its own Conflicts do not hit
    // the MachineOf target
    let name = UnitName::new("web@.service").unwrap();
    let checked = Requirements::from_unit(&name, &template).unwrap();
    assert_eq!(
        checked.requirements.machine_of,
        [UnitName::new("db@.service").unwrap()]
    );
    assert_eq!(checked.warnings, []);
}

#[test]
fn bad_values_are_errors_naming_them() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        (
            "MachineID=xyz\n",
            &[(
                1,
                "MachineID: `xyz` is neither a machine ID (32 lowercase hexadecimal characters) nor its 8-character prefix",
            )],
        ),
        (
            "MachineID=0123456\n",
            &[(
                1,
                "MachineID: `0123456` is neither a machine ID (32 lowercase hexadecimal characters) nor its 8-character prefix",
            )],
        ),
        (
            "MachineID=0123456789ABCDEF0123456789abcdef\n",
            &[(
                1,
                "MachineID: `0123456789ABCDEF0123456789abcdef` is neither a machine ID (32 lowercase hexadecimal characters) nor its 8-character prefix",
            )],
        ),
        ("MachineID=\n", &[(1, "MachineID: the value is empty")]),
        (
            "MachineID=01234567\nX-ConditionMachineID=01234567\n",
            &[(
                2,
                "X-ConditionMachineID: given more than once; a unit can name only one machine",
            )],
        ),
        (
            "MachineOf=db\n",
            &[(
                1,
                "MachineOf: unit name `db` is not a valid systemd unit name: it has no type suffix such as `.service`",
            )],
        ),
        (
            "MachineOf=db.service web.service\n",
            &[(1, "MachineOf: `web.service` is this unit itself")],
        ),
        (
            "Replaces=../x.service\n",
            &[(
                1,
                "Replaces: unit name `../x.service` is not a valid systemd unit name: it contains a character outside A-Z a-z 0-9 : _ . - @ \\",
            )],
        ),
        (
            "Replaces=%n\n",
            &[(1, "Replaces: `web.service` is this unit itself")],
        ),
        (
            "Conflicts=a.service [x.service\n",
            &[(
                1,
                "Conflicts: `[x.service` is not a valid glob pattern: invalid range pattern",
            )],
        ),
        ("Global=\n", &[(1, "Global: the value is empty")]),
        (
            "MachineMetadata=region\n",
            &[(
                1,
                "MachineMetadata: item `region` has no operator: write key=value, or compare with !=, <, <=, >, >=",
            )],
        ),
        (
            "MachineMetadata==eu\n",
            &[(
                1,
                "MachineMetadata: item `=eu`: metadata key `` is invalid: use letters, digits, `_`, `.` and `-`",
            )],
        ),
        (
            "MachineMetadata=re/gion=eu\n",
            &[(
                1,
                "MachineMetadata: item `re/gion=eu`: metadata key `re/gion` is invalid: use letters, digits, `_`, `.` and `-`",
            )],
        ),
        (
            "MachineMetadata=ram>=\n",
            &[(
                1,
                "MachineMetadata: item `ram>=` compares with `>=` but has no value",
            )],
        ),
        (
            "MachineMetadata=ram<\n",
            &[(
                1,
                "MachineMetadata: item `ram<` compares with `<` but has no value",
            )],
        ),
        (
            "MachineMetadata=ram!2\n",
            &[(1, "MachineMetadata: item `ram!2` has `!` without `=`")],
        ),
        (
            "MachineMetadata=ram=>2048\n",
            &[(
                1,
                "MachineMetadata: item `ram=>2048` has more than one operator",
            )],
        ),
        (
            "MachineMetadata=a==b\n",
            &[(1, "MachineMetadata: item `a==b` has more than one operator")],
        ),
        // in the quoted form every item counts: a bad one is reported, not skipped
        (
            "MachineMetadata=\"region=eu\" \"disk\" \"ram>\"\n",
            &[
                (
                    1,
                    "MachineMetadata: item `disk` has no operator: write key=value, or compare with !=, <, <=, >, >=",
                ),
                (
                    1,
                    "MachineMetadata: item `ram>` compares with `>` but has no value",
                ),
            ],
        ),
        (
            "MachineMetadata=\"region=eu\" \"\"\n",
            &[(
                1,
                "MachineMetadata: item `` has no operator: write key=value, or compare with !=, <, <=, >, >=",
            )],
        ),
        (
            "MachineMetadata=\"region=eu\" \"a=b\" \"\n",
            &[(
                1,
                "MachineMetadata: `\"region=eu\" \"a=b\" \"` has a quote that is never closed",
            )],
        ),
        (
            "MachineMetadata=\"\"\n",
            &[(
                1,
                "MachineMetadata: item `` has no operator: write key=value, or compare with !=, <, <=, >, >=",
            )],
        ),
    ];
    for (body, expected) in cases {
        check_errors("web.service", body, expected);
    }
}

#[test]
fn fleets_invalid_combinations_are_rejected() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        (
            "MachineID=01234567\nMachineOf=db.service\n",
            &[(2, "MachineID cannot be combined with MachineOf")],
        ),
        (
            "Conflicts=db.service\nMachineID=01234567\n",
            &[(2, "MachineID cannot be combined with Conflicts")],
        ),
        (
            "MachineID=01234567\nGlobal=true\n",
            &[(2, "MachineID cannot be combined with Global")],
        ),
        (
            "MachineID=01234567\nReplaces=old.service\n",
            &[(2, "MachineID cannot be combined with Replaces")],
        ),
        (
            "Global=on\nX-ConditionMachineOf=db.service\n",
            &[(2, "Global cannot be combined with X-ConditionMachineOf")],
        ),
        (
            "Global=1\nReplaces=old.service\n",
            &[(2, "Global cannot be combined with Replaces")],
        ),
        (
            "X-Conflicts=x.service\nReplaces=old.service\n",
            &[(2, "X-Conflicts cannot be combined with Replaces")],
        ),
        (
            "MachineOf=db.service\nConflicts=d*.service\n",
            &[(
                1,
                "MachineOf target `db.service` matches this unit's Conflicts pattern `d*.service`, so they can never share a machine",
            )],
        ),
        (
            "MachineOf=db.service\nReplaces=db.service\n",
            &[(
                1,
                "MachineOf target `db.service` is also replaced by this unit (Replaces)",
            )],
        ),
        // several problems are all reported
        (
            "MachineID=01234567\nGlobal=yes\nMachineOf=db.service\nMachineMetadata=bad\n",
            &[
                (
                    4,
                    "MachineMetadata: item `bad` has no operator: write key=value, or compare with !=, <, <=, >, >=",
                ),
                (3, "MachineID cannot be combined with MachineOf"),
                (2, "MachineID cannot be combined with Global"),
                (3, "Global cannot be combined with MachineOf"),
            ],
        ),
    ];
    for (body, expected) in cases {
        check_errors("web.service", body, expected);
    }
    // Global=false asks for nothing, so it combines with anything
    check(
        "web.service",
        "Global=false\nMachineOf=db.service\n",
        serde_json::json!({"machineOf": ["db.service"]}),
    );
}

#[test]
fn odd_but_harmless_options_give_warnings() {
    check_warnings(
        "web.service",
        "Foo=bar\nMachineOf=\nConflicts=%i\n",
        &[
            (
                1,
                "unknown [X-Fleet] option `Foo` is ignored (known: MachineID, MachineOf, MachineMetadata, Conflicts, Global, Replaces, Memory, CPU)",
            ),
            (
                2,
                "MachineOf: the value is empty, so this option has no effect",
            ),
            (
                3,
                "Conflicts: the value is empty, so this option has no effect",
            ),
        ],
    );
    check_warnings(
        "web.service",
        "Global=true\nGlobal=false\n",
        &[(2, "Global: given more than once; the last value counts")],
    );
    check_warnings(
        "web.service",
        "MachineOf=db@.service\n",
        &[(
            1,
            "MachineOf: `db@.service` is a template, which is never placed, so this unit never will be",
        )],
    );
}

#[test]
fn memory_and_cpu_become_requests() {
    use serde_json::json;
    let cases = [
        (
            "Memory=512M\n",
            json!({"requests": {"memory": 536870912, "millicpus": 0}}),
        ),
        (
            "CPU=0.5\n",
            json!({"requests": {"memory": 0, "millicpus": 500}}),
        ),
        (
            "Memory=1.5G\nCPU=2\n",
            json!({"requests": {"memory": 1610612736u64, "millicpus": 2000}}),
        ),
        // zero asks for nothing, like no option at all
        ("Memory=0\nCPU=0\n", json!({})),
        // requests combine with every other option, Global included
        (
            "Global=true\nMemory=64M\n",
            json!({"global": true, "requests": {"memory": 67108864, "millicpus": 0}}),
        ),
    ];
    for (body, expected) in cases {
        check("web.service", body, expected);
    }
}

#[test]
fn bad_requests_are_errors_naming_them() {
    let cases: &[(&str, &[(usize, &str)])] = &[
        (
            "Memory=lots\n",
            &[(
                1,
                "Memory: `lots` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
            )],
        ),
        (
            "Memory=512MB\n",
            &[(
                1,
                "Memory: `512MB` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
            )],
        ),
        ("Memory=\n", &[(1, "Memory: the value is empty")]),
        (
            "CPU=half\n",
            &[(
                1,
                "CPU: `half` is not a number of CPUs: write a decimal number such as 0.5 or 2",
            )],
        ),
        (
            "Description=x\nCPU=0.0005\n",
            &[(
                2,
                "CPU: `0.0005` is finer than a thousandth of a CPU: write at most three decimals",
            )],
        ),
        ("CPU=\n", &[(1, "CPU: the value is empty")]),
    ];
    for (body, expected) in cases {
        check_errors("web.service", body, expected);
    }
}

#[test]
fn a_repeated_request_warns_and_the_last_counts() {
    check_warnings(
        "web.service",
        "Memory=1G\nMemory=2G\n",
        &[(2, "Memory: given more than once; the last value counts")],
    );
    let checked = from_fleet("web.service", "Memory=1G\nMemory=2G\n").unwrap();
    assert_eq!(checked.requirements.requests.memory, 2 << 30);
}

#[test]
fn instances_inherit_their_templates_requests() {
    let template =
        UnitFile::parse(b"[Service]\nExecStart=/bin/db\n\n[X-Fleet]\nMemory=256M\nCPU=0.25\n")
            .unwrap()
            .file;
    for name in ["db@.service", "db@1.service", "db@two.service"] {
        let checked = Requirements::from_unit(&UnitName::new(name).unwrap(), &template).unwrap();
        assert_eq!(
            checked.requirements.requests,
            crate::resources::Resources {
                memory: 256 << 20,
                millicpus: 250
            },
            "{name}"
        );
    }
}
