//! Argument resolution: path vs name vs instance-from-template, each rule of fleetctl's
//! `lazyCreateUnits` as one case through `decide`.

use super::*;
use crate::cli::unit_files::Finding;

const A: &str = "[Service]\nExecStart=/bin/sleep 1\n";
const B: &str = "[Service]\nExecStart=/bin/sleep 2\n";

fn arg(text: &str) -> UnitArg {
    text.parse().unwrap()
}

fn file(text: &str) -> UnitFile {
    UnitFile::parse(text.as_bytes()).unwrap().file
}

fn local(path: &str, text: &str) -> Result<Option<LocalUnit>, FileError> {
    Ok(Some(LocalUnit {
        path: path.into(),
        file: file(text),
        warnings: Vec::new(),
    }))
}

fn broken(path: &str) -> Result<Option<LocalUnit>, FileError> {
    Err(FileError {
        path: path.into(),
        problems: vec![Finding::new(Some(2), "the line has no `=`")],
    })
}

fn registered(name: &str, text: &str, desired: &str) -> Option<view::Unit> {
    let unit = crate::wire::Unit {
        name: name.into(),
        options: file(text)
            .into_options()
            .into_iter()
            .map(Into::into)
            .collect(),
        desired_state: desired.into(),
        ..crate::wire::Unit::default()
    };
    Some(unit.try_into().unwrap())
}

/// Facts for `argument` with nothing in the registry nor on disk; cases fill in the rest.
fn nothing(argument: &str) -> Facts {
    Facts {
        arg: arg(argument),
        registered: None,
        local: Ok(None),
        template_registered: None,
        template_local: Ok(None),
    }
}

const START: Replace = Replace::Yes {
    command: "start",
    allowed: &[
        DesiredState::Inactive,
        DesiredState::Loaded,
        DesiredState::Launched,
    ],
};
const SUBMIT: Replace = Replace::Yes {
    command: "submit",
    allowed: &[DesiredState::Inactive],
};

fn plan(facts: Facts, replace: Replace) -> Plan {
    decide(facts, replace).unwrap().0
}

fn error(facts: Facts, replace: Replace) -> String {
    decide(facts, replace).unwrap_err().to_string()
}

#[test]
fn arguments_are_paths_or_names_with_service_implied() {
    for (text, path, name) in [
        ("hello", "hello.service", "hello.service"),
        ("units/hello", "units/hello.service", "hello.service"),
        ("units/hello@1", "units/hello@1.service", "hello@1.service"),
        (
            "/srv/units/web.socket",
            "/srv/units/web.socket",
            "web.socket",
        ),
        ("hello.world", "hello.world.service", "hello.world.service"),
        ("web@.service", "web@.service", "web@.service"),
    ] {
        let a = arg(text);
        assert_eq!(a.path, PathBuf::from(path), "{text}");
        assert_eq!(a.name.as_str(), name, "{text}");
    }
    for bad in ["units/", ".", "..", "bad name", ""] {
        assert!(bad.parse::<UnitArg>().is_err(), "{bad}");
    }
    assert_eq!(
        "units/".parse::<UnitArg>().unwrap_err().to_string(),
        "`units/` names no unit: give a unit name or the path of a unit file"
    );
}

#[test]
fn a_registered_unit_is_kept_when_nothing_local_differs() {
    let registered = registered("a.service", A, "launched");
    let kept = Facts {
        registered: registered.clone(),
        ..nothing("a")
    };
    let keep = Plan::Keep(registered.clone().unwrap());
    assert_eq!(plan(kept, Replace::No), keep);
    let same = Facts {
        registered,
        local: local("a.service", A),
        ..nothing("a.service")
    };
    assert_eq!(plan(same, Replace::No), keep);
}

#[test]
fn a_changed_local_file_is_an_error_naming_the_unit_without_replace() {
    let facts = Facts {
        registered: registered("a.service", A, "launched"),
        local: local("units/a.service", B),
        ..nothing("units/a.service")
    };
    assert_eq!(
        error(facts, Replace::No),
        "unit a.service in the registry differs from the local unit file units/a.service: add --replace to replace it"
    );
}

#[test]
fn replace_keeps_the_desired_state_where_the_command_allows_it() {
    let facts = || Facts {
        registered: registered("a.service", A, "loaded"),
        local: local("a.service", B),
        ..nothing("a.service")
    };
    assert_eq!(
        plan(facts(), START),
        Plan::Replace {
            file: file(B),
            desired: DesiredState::Loaded
        }
    );
    assert_eq!(
        error(facts(), SUBMIT),
        "cannot replace unit a.service in state loaded with submit: use the command for that state, or destroy it first"
    );
}

#[test]
fn an_unregistered_unit_is_created_from_its_file() {
    let facts = Facts {
        local: local("a.service", A),
        ..nothing("a.service")
    };
    assert_eq!(plan(facts, Replace::No), Plan::Create { file: file(A) });
}

#[test]
fn a_broken_named_file_is_an_error_whether_or_not_the_unit_is_registered() {
    for registered in [None, registered("a.service", A, "inactive")] {
        let facts = Facts {
            registered,
            local: broken("units/a.service"),
            ..nothing("units/a.service")
        };
        assert_eq!(
            error(facts, START),
            "units/a.service:2: the line has no `=`"
        );
    }
}

#[test]
fn a_unit_nowhere_is_not_found() {
    assert_eq!(
        error(nothing("units/a"), Replace::No),
        "unit a.service is neither in the registry nor a file at units/a.service"
    );
}

#[test]
fn an_instance_is_made_from_the_registered_template_first() {
    let facts = Facts {
        template_registered: registered("web@.service", A, "inactive"),
        template_local: local("units/web@.service", B),
        ..nothing("units/web@1")
    };
    let (plan, warnings) = decide(facts, Replace::No).unwrap();
    assert_eq!(plan, Plan::Create { file: file(A) });
    assert_eq!(
        warnings,
        vec![
            "warning: template web@.service in the registry differs from units/web@.service; web@1.service is made from the registry's"
        ]
    );
}

#[test]
fn an_instance_is_made_from_the_template_beside_its_path_otherwise() {
    let facts = Facts {
        template_local: local("units/web@.service", B),
        ..nothing("units/web@1")
    };
    assert_eq!(plan(facts, Replace::No), Plan::Create { file: file(B) });
    let facts = Facts {
        template_local: broken("units/web@.service"),
        ..nothing("units/web@1")
    };
    assert_eq!(
        error(facts, Replace::No),
        "units/web@.service:2: the line has no `=`"
    );
}

#[test]
fn an_instance_without_any_template_names_where_the_template_was_looked_for() {
    assert_eq!(
        error(nothing("units/web@1"), Replace::No),
        "cannot create instance web@1.service: its template web@.service is neither in the registry nor a file at units/web@.service"
    );
}

#[test]
fn a_registered_instance_is_compared_with_the_template_beside_it() {
    let facts = || Facts {
        registered: registered("web@1.service", A, "launched"),
        template_local: local("units/web@.service", B),
        ..nothing("units/web@1")
    };
    assert_eq!(
        error(facts(), Replace::No),
        "unit web@1.service in the registry differs from the local template unit file units/web@.service: add --replace to replace it"
    );
    assert_eq!(
        plan(facts(), START),
        Plan::Replace {
            file: file(B),
            desired: DesiredState::Launched
        }
    );
    // A broken template nobody named is no reason to refuse a registered instance.
    let facts = Facts {
        registered: registered("web@1.service", A, "launched"),
        template_local: broken("units/web@.service"),
        ..nothing("units/web@1")
    };
    assert_eq!(
        plan(facts, Replace::No),
        Plan::Keep(registered("web@1.service", A, "launched").unwrap())
    );
}

#[test]
fn the_template_of_an_instance_argument_is_looked_for_beside_it() {
    assert_eq!(
        template_path(&arg("units/web@1")),
        Some((
            UnitName::new("web@.service").unwrap(),
            PathBuf::from("units/web@.service")
        ))
    );
    assert_eq!(template_path(&arg("units/web")), None);
}
