//! The wait conditions as pure cases: given a unit and its states, is the goal reached, and
//! what does flottectl print?

use super::*;
use crate::unit::UnitFile;

const M1: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f801";
const M2: &str = "2b3c4d5e6f708192a3b4c5d6e7f80112";
const HELLO: &str = "[Service]\nExecStart=/bin/sleep infinity\n";
const OTHER: &str = "[Service]\nExecStart=/bin/sleep 1000\n";
const GLOBAL: &str = "[Service]\nExecStart=/bin/sleep infinity\n\n[X-Fleet]\nGlobal=true\n";

fn machines() -> Vec<wire::Machine> {
    vec![
        wire::Machine {
            id: M1.into(),
            primary_ip: "127.0.1.1".into(),
            ..wire::Machine::default()
        },
        wire::Machine {
            id: M2.into(),
            primary_ip: "127.0.1.2".into(),
            ..wire::Machine::default()
        },
    ]
}

fn hash(text: &str) -> String {
    UnitFile::parse(text.as_bytes())
        .unwrap()
        .file
        .hash()
        .to_string()
}

/// A unit as the API sends it: `global` is its `[X-Fleet]` section's.
fn unit(text: &str, desired: &str, current: &str, machine: &str) -> view::Unit {
    wire::Unit {
        name: "hello.service".into(),
        options: UnitFile::parse(text.as_bytes())
            .unwrap()
            .file
            .into_options()
            .into_iter()
            .map(Into::into)
            .collect(),
        desired_state: desired.into(),
        current_state: current.into(),
        machine_id: machine.into(),
        global: text.contains("Global=true"),
        ..wire::Unit::default()
    }
    .try_into()
    .unwrap()
}

fn state(machine: &str, text: &str, active: &str) -> view::UnitState {
    wire::UnitState {
        name: "hello.service".into(),
        hash: hash(text),
        machine_id: machine.into(),
        systemd_load_state: "loaded".into(),
        systemd_active_state: active.into(),
        systemd_sub_state: "whatever".into(),
        ..wire::UnitState::default()
    }
    .try_into()
    .unwrap()
}

/// One case: the goal, the unit as the registry has it, its states, and the expected progress.
fn check(goal: Goal, unit: Option<view::Unit>, states: &[view::UnitState], expected: Progress) {
    let machines = machines();
    let name = UnitName::new("hello.service").unwrap();
    assert_eq!(
        progress(
            &name,
            goal,
            unit.as_ref(),
            states,
            &Machines::new(&machines)
        ),
        expected,
        "{goal:?} with {unit:?} and {states:?}"
    );
}

fn reached(s: &str) -> Progress {
    Progress::Reached(s.into())
}

fn waiting(s: &str) -> Progress {
    Progress::Waiting(s.into())
}

fn impossible(s: &str) -> Progress {
    Progress::Impossible(s.into())
}

#[test]
fn launched_is_reached_when_its_machine_reports_the_units_content() {
    let launched = || Some(unit(HELLO, "launched", "launched", M2));
    check(
        Goal::Launched,
        launched(),
        &[state(M2, HELLO, "active")],
        reached("Unit hello.service launched on 2b3c4d5e.../127.0.1.2"),
    );
    // fleet calls a unit that systemd failed to start launched too: flotte started it.
    check(
        Goal::Launched,
        launched(),
        &[state(M2, HELLO, "failed")],
        reached("Unit hello.service launched on 2b3c4d5e.../127.0.1.2"),
    );
    check(
        Goal::Launched,
        launched(),
        &[],
        waiting("current state launched, no state reported by its machine yet"),
    );
    check(
        Goal::Launched,
        launched(),
        &[state(M2, OTHER, "active")],
        waiting("current state launched, its machine still runs other content"),
    );
}

#[test]
fn launched_waits_while_the_unit_is_not_placed_and_says_why() {
    let unplaced = view::Unit {
        reason: "no machine matches MachineMetadata=region=asia".into(),
        ..unit(HELLO, "launched", "", "")
    };
    check(
        Goal::Launched,
        Some(unplaced),
        &[],
        waiting(
            "current state inactive; not placed: no machine matches MachineMetadata=region=asia",
        ),
    );
    check(
        Goal::Launched,
        Some(unit(HELLO, "launched", "loaded", M1)),
        &[state(M1, HELLO, "inactive")],
        waiting("current state loaded"),
    );
}

#[test]
fn a_waiting_unit_shows_what_systemd_said_about_it() {
    let refused = view::UnitState {
        message: "Unit hello.service has a bad unit file setting.".into(),
        ..state(M1, HELLO, "inactive")
    };
    check(
        Goal::Launched,
        Some(unit(HELLO, "launched", "loaded", M1)),
        &[refused],
        waiting("current state loaded; systemd: Unit hello.service has a bad unit file setting."),
    );
}

#[test]
fn loaded_is_reached_only_once_systemd_stopped_the_unit() {
    let loaded = || Some(unit(HELLO, "loaded", "loaded", M1));
    check(
        Goal::Loaded,
        loaded(),
        &[state(M1, HELLO, "deactivating")],
        waiting("current state loaded, systemd still deactivating"),
    );
    check(
        Goal::Loaded,
        loaded(),
        &[state(M1, HELLO, "inactive")],
        reached("Unit hello.service loaded on 1a2b3c4d.../127.0.1.1"),
    );
    // Stopping: the agent has not acted on the new desired state yet.
    check(
        Goal::Loaded,
        Some(unit(HELLO, "loaded", "launched", M1)),
        &[state(M1, HELLO, "active")],
        waiting("current state launched"),
    );
}

#[test]
fn inactive_is_reached_once_no_machine_has_the_unit() {
    check(
        Goal::Inactive,
        Some(unit(HELLO, "inactive", "loaded", M1)),
        &[state(M1, HELLO, "inactive")],
        waiting("current state loaded, still on 1 machine(s)"),
    );
    check(
        Goal::Inactive,
        Some(unit(HELLO, "inactive", "inactive", "")),
        &[],
        reached("Unit hello.service inactive"),
    );
}

#[test]
fn destroyed_is_reached_once_the_unit_and_its_states_are_gone() {
    check(
        Goal::Destroyed,
        None,
        &[state(M1, HELLO, "deactivating")],
        waiting("still on 1a2b3c4d.../127.0.1.1"),
    );
    check(
        Goal::Destroyed,
        None,
        &[],
        reached("Destroyed hello.service"),
    );
    check(
        Goal::Destroyed,
        Some(unit(HELLO, "inactive", "inactive", "")),
        &[],
        impossible("unit hello.service was submitted again meanwhile"),
    );
}

#[test]
fn a_unit_changed_by_someone_else_ends_the_wait_with_an_error() {
    check(
        Goal::Launched,
        None,
        &[],
        impossible("unit hello.service was destroyed meanwhile"),
    );
    check(
        Goal::Launched,
        Some(unit(HELLO, "inactive", "launched", M1)),
        &[state(M1, HELLO, "active")],
        impossible("the desired state of unit hello.service changed to inactive meanwhile"),
    );
}

#[test]
fn a_global_unit_is_loaded_once_it_stopped_on_every_machine() {
    let global = || Some(unit(GLOBAL, "loaded", "", M1));
    check(
        Goal::Loaded,
        global(),
        &[state(M1, GLOBAL, "inactive"), state(M2, GLOBAL, "active")],
        waiting("still running on 2b3c4d5e.../127.0.1.2"),
    );
    check(
        Goal::Loaded,
        global(),
        &[state(M1, GLOBAL, "inactive"), state(M2, GLOBAL, "failed")],
        reached("Unit hello.service loaded on 2 machine(s)"),
    );
}

#[test]
fn block_attempts_are_fleetctls_half_seconds() {
    let start = Instant::now();
    assert_eq!(Budget::from_attempts(0), Budget::Unlimited);
    assert_eq!(Budget::Unlimited.deadline(start), None);
    assert_eq!(
        Budget::from_attempts(10).deadline(start),
        Some(start + Duration::from_secs(5))
    );
}

#[test]
fn launched_waits_until_the_machine_acted_on_the_latest_start_request() {
    let asked = view::Unit {
        start_request: 2,
        ..unit(HELLO, "launched", "launched", M2)
    };
    let acted = |n| view::UnitState {
        start_request: n,
        ..state(M2, HELLO, "active")
    };
    check(
        Goal::Launched,
        Some(asked.clone()),
        &[acted(1)],
        waiting("current state launched, its machine has not started it again yet"),
    );
    check(
        Goal::Launched,
        Some(asked),
        &[acted(2)],
        reached("Unit hello.service launched on 2b3c4d5e.../127.0.1.2"),
    );
}
