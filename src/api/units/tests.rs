use super::*;

fn body(json: &str) -> wire::Unit {
    serde_json::from_str(json).unwrap()
}

const SLEEP: &str = r#"[{"section":"Service","name":"ExecStart","value":"/bin/sleep 100"}]"#;
const OTHER: &str = r#"[{"section":"Service","name":"ExecStart","value":"/bin/sleep 200"}]"#;

fn file(options: &str) -> UnitFile {
    let options: Vec<wire::UnitOption> = serde_json::from_str(options).unwrap();
    UnitFile::from_options(
        options
            .into_iter()
            .map(|o| UnitOption::new(&o.section, &o.name, &o.value))
            .collect(),
    )
    .unwrap()
}

/// A stored unit: its options and desired state.
type Existing = Option<(&'static str, DesiredState)>;

/// Runs a PUT of `json` to `path` against `existing` (options, desired state) and returns the
/// plan or the error's status and message.
fn check(path: &str, json: &str, existing: Existing) -> Result<PutPlan, (u16, String)> {
    let existing = existing.map(|(options, desired)| {
        (
            UnitRecord {
                hash: file(options).hash(),
                desired,
                start: 0,
            },
            7,
        )
    });
    parse_put(path, body(json))
        .and_then(|request| plan_put(request, existing, Running::AsPlaced))
        .map_err(|e| (e.status().as_u16(), e.to_string()))
}

#[test]
fn a_new_unit_is_created_from_its_options_inactive_unless_told() {
    assert_eq!(
        check(
            "a.service",
            &format!(r#"{{"desiredState":"launched","options":{SLEEP}}}"#),
            None
        ),
        Ok(PutPlan::Create {
            file: file(SLEEP),
            desired: DesiredState::Launched
        })
    );
    assert_eq!(
        check(
            "a.service",
            &format!(r#"{{"name":"a.service","options":{SLEEP}}}"#),
            None
        ),
        Ok(PutPlan::Create {
            file: file(SLEEP),
            desired: DesiredState::Inactive
        })
    );
}

#[test]
fn an_existing_unit_changes_state_or_is_replaced_by_different_options() {
    let existing = Some((SLEEP, DesiredState::Loaded));
    assert_eq!(
        check("a.service", r#"{"desiredState":"launched"}"#, existing),
        Ok(PutPlan::SetDesired {
            record: UnitRecord {
                hash: file(SLEEP).hash(),
                desired: DesiredState::Launched,
                start: 0,
            },
            revision: 7
        })
    );
    assert_eq!(
        check(
            "a.service",
            &format!(r#"{{"desiredState":"launched","options":{SLEEP}}}"#),
            existing
        )
        .map(|p| p.status()),
        Ok(StatusCode::NO_CONTENT)
    );
    assert_eq!(
        check("a.service", r#"{"desiredState":"loaded"}"#, existing),
        Ok(PutPlan::Keep)
    );
    assert_eq!(
        check("a.service", &format!(r#"{{"options":{OTHER}}}"#), existing),
        Ok(PutPlan::Replace {
            file: file(OTHER),
            desired: DesiredState::Loaded,
            revision: 7
        })
    );
    assert_eq!(
        check(
            "a.service",
            &format!(r#"{{"desiredState":"inactive","options":{OTHER}}}"#),
            existing
        )
        .map(|p| p.status()),
        Ok(StatusCode::CREATED)
    );
}

#[test]
fn bad_requests_are_refused_with_fleets_status_and_a_message_naming_the_value() {
    let existing = Some((SLEEP, DesiredState::Inactive));
    let cases: &[(&str, String, Existing, u16, &str)] = &[
        (
            "a.service",
            format!(r#"{{"name":"b.service","options":{SLEEP}}}"#),
            None,
            400,
            "unit name `a.service` in the URL differs from name `b.service` in the request body",
        ),
        (
            "a.txt",
            format!(r#"{{"options":{SLEEP}}}"#),
            None,
            400,
            "unit name `a.txt` is not a valid systemd unit name: its type suffix is unknown (service, socket, device, mount, automount, swap, target, path, timer, slice, scope)",
        ),
        (
            "a.service",
            format!(r#"{{"desiredState":"started","options":{SLEEP}}}"#),
            None,
            400,
            "invalid desiredState: state `started` is not one of inactive, loaded, launched",
        ),
        (
            "a@.service",
            format!(r#"{{"desiredState":"launched","options":{SLEEP}}}"#),
            None,
            400,
            "unit `a@.service` is a template: its desiredState can only be inactive, not launched",
        ),
        (
            "a@.service",
            r#"{"desiredState":"loaded"}"#.to_owned(),
            existing,
            400,
            "unit `a@.service` is a template: its desiredState can only be inactive, not loaded",
        ),
        (
            "a.service",
            r#"{"options":[{"section":"Service","name":"Exec Start","value":"x"}]}"#.to_owned(),
            None,
            400,
            "invalid options of unit `a.service`: option 0: option name `Exec Start` contains whitespace",
        ),
        (
            "a.service",
            r#"{"options":[{"section":"X-Fleet","name":"Global","value":"true"},{"section":"X-Fleet","name":"MachineID","value":"0123456789abcdef0123456789abcdef"}]}"#.to_owned(),
            None,
            400,
            "invalid [X-Fleet] options of unit `a.service`: MachineID cannot be combined with Global",
        ),
        (
            "a.service",
            r#"{"desiredState":"launched"}"#.to_owned(),
            None,
            409,
            "unit `a.service` does not exist and the request has no options to create it from",
        ),
        (
            "a.service",
            format!(r#"{{"options":{SLEEP}}}"#),
            existing,
            409,
            "unit `a.service` exists: give a desiredState to update it, or different options to replace it",
        ),
        (
            "a.service",
            "{}".to_owned(),
            existing,
            409,
            "unit `a.service` exists: give a desiredState to update it, or different options to replace it",
        ),
    ];
    for (path, json, existing, status, message) in cases {
        let (got_status, got) = check(path, json, *existing).unwrap_err();
        assert_eq!(got_status, *status, "{path} {json}: {got}");
        assert_eq!(got, *message, "{path} {json}");
    }
}

#[test]
fn an_instance_reads_its_requirements_under_its_own_name() {
    // `%i` is the instance: `db` for `web@db.service`, nothing for the template itself.
    let json = r#"{"options":[{"section":"X-Fleet","name":"MachineOf","value":"%i.service"}]}"#;
    assert!(matches!(
        check("web@db.service", json, None),
        Ok(PutPlan::Create { .. })
    ));
    let (status, message) = check("web@.service", json, None).unwrap_err();
    assert_eq!(status, 400);
    assert!(
        message.starts_with("invalid [X-Fleet] options of unit `web@.service`: MachineOf: "),
        "{message}"
    );
}

#[test]
fn a_global_unit_says_so_and_other_units_leave_the_field_out() {
    const GLOBAL: &str = r#"[{"section":"Service","name":"ExecStart","value":"/bin/sleep 100"},{"section":"X-Fleet","name":"Global","value":"true"}]"#;
    let json = |options: &str| {
        let name = UnitName::new("a.service").unwrap();
        let file = file(options);
        let record = UnitRecord {
            hash: file.hash(),
            desired: DesiredState::Launched,
            start: 0,
        };
        let facts = Facts {
            placement: None,
            reason: None,
            states: &BTreeMap::new(),
        };
        serde_json::to_value(to_wire(&name, &record, Some(file), facts)).unwrap()
    };
    assert_eq!(json(GLOBAL)["global"], true);
    assert!(json(SLEEP).get("global").is_none(), "{}", json(SLEEP));
}

#[test]
fn a_start_of_a_launched_unit_stopped_on_its_machine_is_a_start_request() {
    let record = |desired, start| UnitRecord {
        hash: file(SLEEP).hash(),
        desired,
        start,
    };
    let put = |json: &str, stored: UnitRecord, running| {
        plan_put(
            parse_put("a.service", body(json)).unwrap(),
            Some((stored, 7)),
            running,
        )
        .unwrap()
    };
    use DesiredState::{Launched, Loaded};
    let launch = r#"{"desiredState":"launched"}"#;
    let cases = [
        (
            "stopped: asked to start again",
            launch,
            record(Launched, 0),
            Running::Stopped,
            PutPlan::SetDesired {
                record: record(Launched, 1),
                revision: 7,
            },
        ),
        (
            "each start asks again",
            launch,
            record(Launched, 4),
            Running::Stopped,
            PutPlan::SetDesired {
                record: record(Launched, 5),
                revision: 7,
            },
        ),
        (
            "running: nothing to do, as fleet",
            launch,
            record(Launched, 4),
            Running::AsPlaced,
            PutPlan::Keep,
        ),
        (
            "loaded: launched as any start",
            launch,
            record(Loaded, 2),
            Running::Stopped,
            PutPlan::SetDesired {
                record: record(Launched, 2),
                revision: 7,
            },
        ),
        (
            "a stop of a stopped unit is no start request",
            r#"{"desiredState":"loaded"}"#,
            record(Launched, 2),
            Running::Stopped,
            PutPlan::SetDesired {
                record: record(Loaded, 2),
                revision: 7,
            },
        ),
    ];
    for (what, json, stored, running, expected) in cases {
        assert_eq!(put(json, stored, running), expected, "{what}");
    }
}

#[test]
fn a_put_with_a_revision_applies_only_to_the_unit_as_it_was_then() {
    let name = UnitName::new("a.service").unwrap();
    let cases: &[(Option<i64>, Option<i64>, bool)] = &[
        // No revision asked: as fleet, whatever is stored.
        (None, None, true),
        (Some(7), None, true),
        // 0: only if there is none.
        (None, Some(0), true),
        (Some(7), Some(0), false),
        (Some(7), Some(7), true),
        (Some(8), Some(7), false),
        (None, Some(7), false),
    ];
    for (existing, expected, ok) in cases {
        let got = check_revision(&name, *existing, *expected);
        assert_eq!(got.is_ok(), *ok, "{existing:?} {expected:?}: {got:?}");
        if let Err(e) = got {
            assert_eq!(e.status(), StatusCode::CONFLICT, "{e}");
        }
    }
}
