//! One test per rule, each a table of machines, units and the expected plan.

use crate::unit::DesiredState::{Inactive, Loaded};

use super::{check, unit};

const THREE: &[(&str, &str)] = &[("m1", ""), ("m2", ""), ("m3", "")];
const TWO: &[(&str, &str)] = &[("m1", ""), ("m2", "")];

#[test]
fn pending_units_go_to_the_least_loaded_machine_ties_by_id() {
    check(
        THREE,
        &[
            unit("a.service"),
            unit("b.service"),
            unit("c.service"),
            unit("d.service"),
        ],
        &[
            "+a.service m1",
            "+b.service m2",
            "+c.service m3",
            "+d.service m1",
        ],
    );
    check(
        TWO,
        &[unit("x.service").on("m1"), unit("a.service")],
        &["+a.service m2"],
    );
}

#[test]
fn global_units_and_this_plans_placements_count_in_the_load() {
    let machines = &[("m1", "role=edge"), ("m2", "")];
    check(
        machines,
        &[
            unit("g.service").global().metadata("role=edge").on("m1"),
            unit("a.service"),
        ],
        &["+a.service m2"],
    );
    check(
        machines,
        &[
            unit("g.service").global().metadata("role=edge"),
            unit("a.service"),
        ],
        &["+g.service m1", "+a.service m2"],
    );
}

#[test]
fn placements_that_still_hold_stay_put() {
    check(
        TWO,
        &[
            unit("a.service").on("m2"),
            unit("b.service").on("m2"),
            unit("c.service"),
        ],
        &["+c.service m1"],
    );
}

#[test]
fn only_loaded_and_launched_units_are_placed() {
    check(
        TWO,
        &[
            unit("a.service").desired(Inactive).on("m1"),
            unit("b.service").desired(Inactive),
            unit("c.service").desired(Loaded),
        ],
        &["-a.service m1", "+c.service m1"],
    );
}

#[test]
fn templates_are_never_placed() {
    check(
        TWO,
        &[
            unit("web@.service"),
            unit("db@.service").on("m1"),
            unit("idle@.service").desired(Inactive),
        ],
        &[
            "-db@.service m1",
            "db@.service: a template unit is never placed: start an instance such as db@1.service",
            "web@.service: a template unit is never placed: start an instance such as web@1.service",
        ],
    );
}

#[test]
fn without_machines_nothing_is_placed() {
    check(
        &[],
        &[unit("a.service"), unit("b.service").on("m1").global()],
        &[
            "-b.service m1",
            "a.service: no machines in the cluster",
            "b.service: no machines in the cluster",
        ],
    );
}

#[test]
fn metadata_reasons_name_the_conditions_no_machine_meets() {
    check(
        &[
            ("m1", "region=eu,disk=hdd"),
            ("m2", "region=us,disk=ssd,ram=1024"),
        ],
        &[
            unit("a.service").metadata("region=asia"),
            unit("b.service").metadata("region=eu").metadata("disk=ssd"),
            unit("c.service")
                .metadata("region=asia")
                .metadata("disk=nvme"),
            unit("d.service")
                .metadata("region=eu")
                .metadata("disk=nvme"),
            unit("e.service").metadata("region=asia|mars"),
            unit("f.service").metadata("ram>=2048"),
            unit("g.service").metadata("region=us|asia"),
            unit("h.service")
                .metadata("region!=eu")
                .metadata("ram<=1024"),
        ],
        &[
            "a.service: no machine has region=asia",
            "b.service: no machine has region=eu and disk=ssd",
            "c.service: no machine has region=asia or disk=nvme",
            "d.service: no machine has disk=nvme",
            "e.service: no machine has region=asia|mars",
            "f.service: no machine has ram>=2048",
            "+g.service m2",
            "+h.service m2",
        ],
    );
}

#[test]
fn machine_id_pins_a_unit_to_one_machine() {
    check(
        &[("m1", ""), ("m2", "region=eu")],
        &[
            unit("a.service").machine_id("m3"),
            unit("b.service").full_machine_id("m3"),
            unit("c.service").machine_id("m2"),
            unit("d.service").machine_id("m1").metadata("region=eu"),
            unit("e.service").full_machine_id("m2"),
        ],
        &[
            "a.service: machine 00000003 is not in the cluster",
            "b.service: machine 00000003 is not in the cluster",
            "+c.service m2",
            "d.service: machine 00000001 does not have region=eu",
            "+e.service m2",
        ],
    );
}

#[test]
fn a_unit_moves_when_its_machine_leaves_or_stops_matching() {
    check(
        &[("m1", "region=us"), ("m2", "region=eu")],
        &[
            unit("a.service").on("m9"),
            unit("b.service").metadata("region=eu").on("m1"),
            unit("c.service").machine_id("m2").on("m1"),
        ],
        &[
            "-a.service m9",
            "+a.service m1",
            "-b.service m1",
            "+b.service m2",
            "-c.service m1",
            "+c.service m2",
        ],
    );
}

#[test]
fn a_normal_unit_on_several_machines_keeps_the_first() {
    check(
        TWO,
        &[unit("a.service").on("m2").on("m1").on("m1")],
        &["-a.service m2"],
    );
}

#[test]
fn of_two_conflicting_units_the_first_name_stays() {
    for units in [
        [
            unit("a.service").conflicts("b.service").on("m1"),
            unit("b.service").on("m1"),
        ],
        [
            unit("a.service").on("m1"),
            unit("b.service").conflicts("a.service").on("m1"),
        ],
    ] {
        check(TWO, &units, &["-b.service m1", "+b.service m2"]);
    }
    // b leaves, so c no longer conflicts with anything on m1.
    check(
        TWO,
        &[
            unit("a.service").conflicts("b.service").on("m1"),
            unit("b.service").conflicts("c.service").on("m1"),
            unit("c.service").on("m1"),
        ],
        &["-b.service m1", "+b.service m2"],
    );
}

#[test]
fn pending_units_avoid_conflicts_before_load() {
    check(
        TWO,
        &[
            unit("web@1.service").on("m1"),
            unit("x.service").on("m2"),
            unit("y.service").on("m2"),
            unit("web@2.service").conflicts("web@*.service"),
        ],
        &["+web@2.service m2"],
    );
}

#[test]
fn conflict_reasons_list_at_most_three_units() {
    let web = |name| unit(name).conflicts("web@*.service");
    check(
        TWO,
        &[
            web("web@1.service"),
            web("web@2.service"),
            web("web@3.service"),
        ],
        &[
            "+web@1.service m1",
            "+web@2.service m2",
            "web@3.service: conflicts with web@1.service, web@2.service on every eligible machine",
        ],
    );
    check(
        &[("m1", ""), ("m2", ""), ("m3", ""), ("m4", ""), ("m5", "")],
        &[
            unit("web@1.service").on("m1"),
            unit("web@2.service").on("m2"),
            unit("web@3.service").on("m3"),
            unit("web@4.service").on("m4"),
            unit("web@5.service").on("m5"),
            unit("x.service").conflicts("web@*.service"),
        ],
        &[
            "x.service: conflicts with web@1.service, web@2.service, web@3.service and 2 more on every eligible machine",
        ],
    );
}

#[test]
fn machine_of_targets_are_decided_before_their_followers() {
    check(
        TWO,
        &[
            unit("app.service").machine_of("db.service"),
            unit("b.service"),
            unit("db.service"),
        ],
        &["+app.service m1", "+b.service m2", "+db.service m1"],
    );
    check(
        TWO,
        &[
            unit("db.service").on("m2"),
            unit("x.service").on("m2"),
            unit("app.service").machine_of("db.service"),
        ],
        &["+app.service m2"],
    );
}

#[test]
fn followers_wait_for_targets_that_are_not_placed() {
    check(
        TWO,
        &[
            unit("app.service").machine_of("db.service"),
            unit("db.service").desired(Inactive),
            unit("lost.service").machine_of("nowhere.service").on("m1"),
            unit("pair.service")
                .machine_of("db.service")
                .machine_of("far.service"),
            unit("far.service").metadata("region=asia"),
        ],
        &[
            "-lost.service m1",
            "app.service: waits for MachineOf target db.service to be placed",
            "far.service: no machine has region=asia",
            "lost.service: waits for MachineOf target nowhere.service to be placed",
            "pair.service: waits for MachineOf targets db.service, far.service to be placed",
        ],
    );
}

#[test]
fn followers_move_with_their_target() {
    check(
        &[("m1", "region=us"), ("m2", "region=eu"), ("m3", "")],
        &[
            unit("db.service").on("m9"),
            unit("app.service").machine_of("db.service").on("m9"),
            unit("x.service").on("m1"),
            unit("y.service").on("m2"),
            unit("store.service").metadata("region=eu").on("m1"),
            unit("cache.service").machine_of("store.service").on("m1"),
            unit("stray.service").machine_of("x.service").on("m3"),
        ],
        &[
            "-db.service m9",
            "+db.service m3",
            "-app.service m9",
            "+app.service m3",
            "-store.service m1",
            "+store.service m2",
            "-cache.service m1",
            "+cache.service m2",
            "-stray.service m3",
            "+stray.service m1",
        ],
    );
}

#[test]
fn followers_keep_their_own_constraints() {
    check(
        &[("m1", "region=us"), ("m2", "region=eu")],
        &[
            unit("db.service").on("m1"),
            unit("x.service").on("m1"),
            unit("a.service")
                .machine_of("db.service")
                .metadata("region=eu"),
            unit("b.service").machine_of("db.service").machine_id("m2"),
            unit("c.service")
                .machine_of("db.service")
                .conflicts("x.service"),
            unit("d.service")
                .machine_of("db.service")
                .machine_of("y.service"),
            unit("y.service").on("m2"),
        ],
        &[
            "a.service: MachineOf target db.service is on machine 00000001, which does not have region=eu",
            "b.service: MachineOf target db.service is on machine 00000001, which is not machine 00000002",
            "c.service: conflicts with x.service on every machine holding its MachineOf targets",
            "d.service: MachineOf targets db.service, y.service are on different machines",
        ],
    );
}

#[test]
fn machine_of_cycles_are_never_placed() {
    check(
        TWO,
        &[
            unit("b.service").machine_of("a.service"),
            unit("a.service").machine_of("b.service").on("m1"),
            unit("c.service").machine_of("a.service"),
            unit("s.service").machine_of("s.service"),
        ],
        &[
            "-a.service m1",
            "a.service: MachineOf cycle: a.service -> b.service -> a.service",
            "b.service: MachineOf cycle: a.service -> b.service -> a.service",
            "c.service: waits for MachineOf target a.service to be placed",
            "s.service: MachineOf cycle: s.service -> s.service",
        ],
    );
}

#[test]
fn global_units_go_to_every_matching_machine() {
    let machines = &[("m1", "role=edge"), ("m2", "role=edge"), ("m3", "")];
    check(
        machines,
        &[unit("g.service").global().metadata("role=edge")],
        &["+g.service m1", "+g.service m2"],
    );
    check(
        machines,
        &[unit("g.service")
            .global()
            .metadata("role=edge")
            .on("m1")
            .on("m3")
            .on("m9")],
        &["-g.service m3", "-g.service m9", "+g.service m2"],
    );
    check(
        machines,
        &[unit("g.service").global().metadata("role=core").on("m1")],
        &["-g.service m1", "g.service: no machine has role=core"],
    );
}

#[test]
fn global_units_never_push_a_placed_unit_away() {
    check(
        TWO,
        &[
            unit("a.service").on("m1"),
            unit("g.service").global().conflicts("a.service"),
        ],
        &["+g.service m2"],
    );
    check(
        TWO,
        &[
            unit("a.service").on("m1"),
            unit("g.service")
                .global()
                .conflicts("a.service")
                .on("m1")
                .on("m2"),
        ],
        &["-g.service m1"],
    );
    check(
        &[("m1", "")],
        &[
            unit("a.service").on("m1"),
            unit("g.service").global().conflicts("a.service"),
        ],
        &["g.service: conflicts with a.service on every eligible machine"],
    );
    check(
        TWO,
        &[
            unit("g1.service").global(),
            unit("g2.service").global().conflicts("g1.service"),
        ],
        &[
            "+g1.service m1",
            "+g1.service m2",
            "g2.service: conflicts with g1.service on every eligible machine",
        ],
    );
}

#[test]
fn global_units_are_decided_before_pending_normal_units() {
    check(
        &[("m1", "role=edge"), ("m2", "")],
        &[
            unit("web@1.service"),
            unit("z.service").on("m2"),
            unit("g.service")
                .global()
                .metadata("role=edge")
                .conflicts("web@*.service"),
        ],
        &["+g.service m1", "+web@1.service m2"],
    );
    check(
        TWO,
        &[
            unit("web@1.service"),
            unit("x.service"),
            unit("g.service")
                .global()
                .conflicts("web@*.service")
                .on("m1")
                .on("m2"),
        ],
        &[
            "+x.service m1",
            "web@1.service: conflicts with g.service on every eligible machine",
        ],
    );
}

#[test]
fn a_replaced_unit_moves_to_a_machine_that_satisfies_it() {
    let machines = &[
        ("m1", "region=eu"),
        ("m2", "region=us"),
        ("m3", "region=eu"),
    ];
    check(
        machines,
        &[
            unit("y.service").metadata("region=eu").on("m1"),
            unit("z.service").on("m2"),
            unit("w.service").on("m3"),
            unit("x.service").replaces("y.service"),
        ],
        &["+x.service m1", "-y.service m1", "+y.service m3"],
    );
    check(
        &machines[..2],
        &[
            unit("y.service").metadata("region=eu").on("m1"),
            unit("z.service").on("m2"),
            unit("x.service").replaces("y.service"),
        ],
        &[
            "+x.service m1",
            "-y.service m1",
            "y.service: replaced by x.service on every eligible machine",
        ],
    );
}

#[test]
fn a_replaced_unit_is_never_placed_next_to_its_replacer() {
    check(
        TWO,
        &[
            unit("x.service").replaces("y.service").on("m1"),
            unit("z.service").on("m2"),
            unit("y.service"),
        ],
        &["+y.service m2"],
    );
    check(
        TWO,
        &[
            unit("x.service").replaces("y.service").on("m1"),
            unit("y.service").on("m1"),
        ],
        &["-y.service m1", "+y.service m2"],
    );
    check(
        TWO,
        &[
            unit("x.service").replaces("y.service").on("m1"),
            unit("y.service").conflicts("z.service"),
            unit("z.service").on("m2"),
        ],
        &["y.service: replaced by x.service; conflicts with z.service on every eligible machine"],
    );
}

#[test]
fn a_replaced_unit_takes_its_followers_along() {
    check(
        THREE,
        &[
            unit("y.service").on("m1"),
            unit("f.service").machine_of("y.service").on("m1"),
            unit("z1.service").on("m2"),
            unit("z2.service").on("m2"),
            unit("w1.service").on("m3"),
            unit("w2.service").on("m3"),
            unit("x.service").replaces("y.service"),
        ],
        &[
            "+x.service m1",
            "-y.service m1",
            "+y.service m2",
            "-f.service m1",
            "+f.service m2",
        ],
    );
}

#[test]
fn units_that_replace_each_other_in_a_cycle_never_share_a_machine() {
    let ring = [
        unit("a.service").replaces("b.service").on("m1"),
        unit("b.service").replaces("c.service").on("m2"),
        unit("c.service").replaces("a.service"),
    ];
    check(THREE, &ring, &["+c.service m3"]);
    check(
        TWO,
        &ring,
        &[
            "c.service: replaced by b.service; in a Replaces cycle with a.service on every eligible machine",
        ],
    );
    check(
        TWO,
        &[
            unit("x.service").replaces("y.service"),
            unit("y.service").replaces("x.service"),
        ],
        &["+x.service m1", "+y.service m2"],
    );
}

#[test]
fn a_unit_never_displaces_its_own_machine_of_target() {
    // Displacing b would take g's (or h's) own target away: a cycle that would never settle.
    check(
        TWO,
        &[
            unit("b.service"),
            unit("g.service")
                .machine_of("b.service")
                .replaces("b.service"),
            unit("f.service").machine_of("b.service"),
            unit("h.service")
                .machine_of("f.service")
                .replaces("b.service")
                .on("m1"),
        ],
        &[
            "+b.service m1",
            "+f.service m1",
            "-h.service m1",
            "g.service: in a cycle of Replaces and MachineOf with b.service on every machine holding its MachineOf targets",
            "h.service: in a cycle of Replaces and MachineOf with b.service on every machine holding its MachineOf targets",
        ],
    );
}

#[test]
fn replaces_and_machine_of_going_round_settle_at_once() {
    // b displaces web@3 (and so its follower web@1), db displaces b, web@1 displaces db, and
    // web@3 comes back: no one displaces another within such a cycle.
    check(
        &[("m4", "")],
        &[
            unit("b.service").global().replaces("web@3.service"),
            unit("db.service").global().replaces("b.service"),
            unit("web@1.service")
                .global()
                .machine_of("web@3.service")
                .replaces("db.service"),
            unit("web@3.service").global(),
        ],
        &[
            "+b.service m4",
            "db.service: in a cycle of Replaces and MachineOf with b.service on every eligible machine",
            "web@1.service: waits for MachineOf target web@3.service to be placed",
            "web@3.service: replaced by b.service on every eligible machine",
        ],
    );
}

#[test]
fn followers_of_a_global_unit_pick_among_its_machines() {
    check(
        &[
            ("m1", "region=us"),
            ("m2", "region=us"),
            ("m3", "region=eu"),
        ],
        &[
            unit("g.service")
                .global()
                .metadata("region=us")
                .on("m1")
                .on("m2"),
            unit("x.service").on("m1"),
            unit("f.service").machine_of("g.service"),
            unit("h.service")
                .machine_of("g.service")
                .metadata("region=eu"),
        ],
        &[
            "+f.service m2",
            "h.service: no machine holding MachineOf target g.service meets its MachineID and metadata",
        ],
    );
}

#[test]
fn a_drained_machine_loses_its_normal_units_keeps_its_global_ones_and_gets_no_new_ones() {
    // `m1!` is m1, drained.
    let drained_m1 = &[("m1!", ""), ("m2", ""), ("m3", "")];
    check(
        drained_m1,
        &[
            unit("a.service").on("m1"),
            unit("b.service").on("m2"),
            unit("g.service").global().on("m1").on("m2").on("m3"),
            unit("new.service"),
        ],
        &["-a.service m1", "+a.service m3", "+new.service m2"],
    );
    // A global unit not yet on the drained machine still goes there.
    check(
        drained_m1,
        &[unit("g.service").global()],
        &["+g.service m1", "+g.service m2", "+g.service m3"],
    );
    // Followers move with their MachineOf target.
    check(
        drained_m1,
        &[
            unit("app.service").on("m1"),
            unit("side.service").machine_of("app.service").on("m1"),
            unit("b.service").on("m2"),
        ],
        &[
            "-app.service m1",
            "-side.service m1",
            "+app.service m3",
            "+side.service m3",
        ],
    );
}

#[test]
fn a_unit_that_may_run_only_on_drained_machines_is_unplaced_and_says_so() {
    check(
        &[("m1!", ""), ("m2", "")],
        &[
            unit("pinned.service").machine_id("m1").on("m1"),
            unit("fullid.service").full_machine_id("m1"),
        ],
        &[
            "-pinned.service m1",
            "pinned.service: the only machine it may run on, 00000001, is drained",
            "fullid.service: the only machine it may run on, 00000001, is drained",
        ],
    );
    check(
        &[("m1!", "disk=ssd"), ("m2!", "disk=ssd"), ("m3", "disk=hdd")],
        &[unit("ssd.service").metadata("disk=ssd")],
        &["ssd.service: every machine it may run on is drained: 00000001, 00000002"],
    );
    check(
        &[("m1!", ""), ("m2!", ""), ("m3!", ""), ("m4!", "")],
        &[unit("a.service")],
        &[
            "a.service: every machine it may run on is drained: 00000001, 00000002, 00000003 and 1 more",
        ],
    );
    // Metadata no machine has is still the reason when it is one.
    check(
        &[("m1!", "disk=ssd"), ("m2", "")],
        &[unit("hdd.service").metadata("disk=hdd")],
        &["hdd.service: no machine has disk=hdd"],
    );
    // A follower whose target is global on a drained machine only.
    check(
        &[("m1!", "role=edge"), ("m2", "")],
        &[
            unit("edge.service").global().metadata("role=edge").on("m1"),
            unit("side.service").machine_of("edge.service"),
        ],
        &["side.service: MachineOf target edge.service is on machine 00000001, which is drained"],
    );
}
