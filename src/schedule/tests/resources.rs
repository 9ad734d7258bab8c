//! Placement by `Memory=` and `CPU=` requests against machine capacities, one table per rule.

use super::{check_sized, unit};
use crate::schedule::Strategy::{Pack, Spread};

#[test]
fn units_go_where_they_fit_spread_by_least_requested_share() {
    let machines = &[("m1", "", "memory=1G"), ("m2", "", "memory=2G")];
    check_sized(
        Spread,
        machines,
        &[
            unit("a.service").requests("memory=512M"),
            unit("b.service").requests("memory=512M"),
            // m1 has half its memory requested, m2 a quarter; 1 GiB fits only on m2 anyway
            unit("c.service").requests("memory=1G"),
        ],
        &["+a.service m1", "+b.service m2", "+c.service m2"],
    );
}

#[test]
fn a_unit_that_fits_nowhere_names_the_shortfall() {
    let machines = &[("m1", "", "memory=1G"), ("m2", "", "memory=300M")];
    check_sized(
        Spread,
        machines,
        &[unit("huge.service").requests("memory=2G")],
        &["huge.service: needs 2 GiB of memory, most free is 1 GiB on 00000001"],
    );
    check_sized(
        Spread,
        machines,
        &[
            unit("x.service").requests("memory=700M").on("m1"),
            unit("big.service").requests("memory=512M"),
        ],
        &["big.service: needs 512 MiB of memory, most free is 324 MiB on 00000001"],
    );
    // CPU the same way, and both dimensions when both are short
    check_sized(
        Spread,
        &[
            ("m1", "", "memory=1G,cpu=1"),
            ("m2", "", "memory=2G,cpu=0.5"),
        ],
        &[
            unit("cpu.service").requests("cpu=1.5"),
            unit("both.service").requests("memory=4G,cpu=2"),
        ],
        &[
            "cpu.service: needs 1.5 CPUs, most free is 1 CPU on 00000001",
            "both.service: needs 4 GiB of memory, most free is 2 GiB on 00000002; needs 2 CPUs, most free is 1 CPU on 00000001",
        ],
    );
    // each dimension fits somewhere, never both on one machine
    check_sized(
        Spread,
        &[
            ("m1", "", "memory=1G,cpu=1"),
            ("m2", "", "memory=512M,cpu=2"),
        ],
        &[unit("wide.service").requests("memory=1G,cpu=2")],
        &["wide.service: needs 1 GiB, 2 CPUs, and no machine it may run on has both free"],
    );
}

#[test]
fn a_machine_without_capacity_takes_only_units_without_requests() {
    let machines = &[("m1", "", "")];
    check_sized(
        Spread,
        machines,
        &[unit("a.service"), unit("b.service").requests("cpu=0.1")],
        &[
            "+a.service m1",
            "b.service: needs 0.1 CPU, most free is 0 CPU on 00000001",
        ],
    );
}

#[test]
fn pack_fills_the_most_requested_machine_that_still_fits() {
    let machines = &[("m1", "", "memory=4G"), ("m2", "", "memory=4G")];
    let units = [
        unit("a.service").requests("memory=1G"),
        unit("b.service").requests("memory=1G"),
        unit("c.service").requests("memory=1G"),
        unit("d.service").requests("memory=2G"),
    ];
    check_sized(
        Spread,
        machines,
        &units,
        &[
            "+a.service m1",
            "+b.service m2",
            "+c.service m1",
            "+d.service m2",
        ],
    );
    check_sized(
        Pack,
        machines,
        &units,
        &[
            "+a.service m1",
            "+b.service m1",
            "+c.service m1",
            "+d.service m2",
        ],
    );
    // units without requests are placed by count in either strategy
    check_sized(
        Pack,
        machines,
        &[unit("x.service"), unit("y.service")],
        &["+x.service m1", "+y.service m2"],
    );
}

#[test]
fn global_units_consume_capacity_on_every_machine() {
    let machines = &[("m1", "", "memory=1G"), ("m2", "", "memory=1G")];
    check_sized(
        Spread,
        machines,
        &[
            unit("g.service").global().requests("memory=768M"),
            unit("a.service").requests("memory=512M"),
        ],
        &[
            "+g.service m1",
            "+g.service m2",
            "a.service: needs 512 MiB of memory, most free is 256 MiB on 00000001",
        ],
    );
    // a global unit never pushes a placed unit away: it skips the machine it does not fit on
    check_sized(
        Spread,
        machines,
        &[
            unit("x.service").requests("memory=768M").on("m1"),
            unit("g.service").global().requests("memory=512M"),
        ],
        &["+g.service m2"],
    );
}

#[test]
fn followers_count_on_their_targets_machine() {
    let machines = &[("m1", "", "memory=1G"), ("m2", "", "memory=2G")];
    check_sized(
        Spread,
        machines,
        &[
            unit("t.service").requests("memory=512M"),
            unit("f.service")
                .machine_of("t.service")
                .requests("memory=256M"),
            unit("n.service").machine_of("t.service"),
            // m1 is now three quarters requested, m2 not at all
            unit("z.service").requests("memory=256M"),
        ],
        &[
            "+t.service m1",
            "+f.service m1",
            "+n.service m1",
            "+z.service m2",
        ],
    );
    // the target stays where it went; the follower that does not fit beside it waits
    check_sized(
        Spread,
        machines,
        &[
            unit("t.service").requests("memory=512M"),
            unit("f.service")
                .machine_of("t.service")
                .requests("memory=768M"),
        ],
        &[
            "+t.service m1",
            "f.service: needs 768 MiB of memory, most free is 512 MiB on 00000001",
        ],
    );
}

#[test]
fn placed_units_stay_when_capacity_shrinks_and_nothing_short_joins_them() {
    let machines = &[("m1", "", "memory=512M,cpu=1")];
    check_sized(
        Spread,
        machines,
        &[
            unit("x.service").requests("memory=768M").on("m1"),
            unit("y.service").requests("memory=1M"),
            unit("z.service").requests("cpu=0.5"),
            unit("w.service"),
        ],
        &[
            "+z.service m1",
            "+w.service m1",
            "y.service: needs 1 MiB of memory, most free is 0 B on 00000001",
        ],
    );
}

#[test]
fn replaces_and_conflicts_still_hold_with_requests() {
    // the replaced unit's requests leave with it, so the replacer fits
    check_sized(
        Spread,
        &[("m1", "", "memory=1G")],
        &[
            unit("old.service").requests("memory=768M").on("m1"),
            unit("new.service")
                .replaces("old.service")
                .requests("memory=512M"),
        ],
        &[
            "-old.service m1",
            "+new.service m1",
            "old.service: needs 768 MiB of memory, most free is 512 MiB on 00000001",
        ],
    );
    // pack would put b beside a, but they conflict
    check_sized(
        Pack,
        &[("m1", "", "memory=4G"), ("m2", "", "memory=4G")],
        &[
            unit("a.service")
                .conflicts("b.service")
                .requests("memory=1G"),
            unit("b.service").requests("memory=1G"),
        ],
        &["+a.service m1", "+b.service m2"],
    );
    // where it fits a conflict is in the way, elsewhere room is short
    check_sized(
        Spread,
        &[("m1", "", "memory=2G"), ("m2", "", "memory=256M")],
        &[
            unit("x.service").conflicts("y.service").on("m1"),
            unit("y.service").requests("memory=512M"),
        ],
        &[
            "y.service: conflicts with x.service on every eligible machine it has room on; too little free on the other",
        ],
    );
}
