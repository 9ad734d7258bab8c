use super::*;
use crate::machine::Metadata;
use crate::systemd::{ActiveState, LoadState};
use crate::unit::{DesiredState, UnitFile};

fn id(n: u8) -> MachineId {
    MachineId::new(&format!("{n:02x}").repeat(16)).unwrap()
}

fn name(n: &str) -> UnitName {
    UnitName::new(n).unwrap()
}

fn hash(c: char) -> UnitHash {
    c.to_string().repeat(40).parse().unwrap()
}

/// Builds views in a few lines: machines, units with their X-Fleet section, placements.
#[derive(Default)]
struct V(View);

impl V {
    fn machine(mut self, n: u8, metadata: &str) -> Self {
        self.0.machines.insert(
            id(n),
            MachineRecord {
                id: id(n),
                ip: format!("10.0.0.{n}"),
                metadata: Metadata::parse_list(metadata).unwrap(),
                version: "test".into(),
                api: None,
                hostname: format!("host-{n}"),
                capacity: None,
            },
        );
        self
    }

    fn unit(mut self, unit: &str, h: char, desired: DesiredState, x_fleet: &str) -> Self {
        let u = name(unit);
        self.0.units.insert(
            u.clone(),
            UnitRecord {
                hash: hash(h),
                desired,
                start: 0,
            },
        );
        let text = format!("[Service]\nExecStart=/bin/true\n[X-Fleet]\n{x_fleet}\n");
        let file = UnitFile::parse(text.as_bytes()).unwrap().file;
        let requirements = Requirements::from_unit(&u, &file)
            .map(|c| Arc::new(c.requirements))
            .map_err(|e| format!("{e:?}"));
        self.0.requirements.insert(u, (hash(h), requirements));
        self
    }

    fn unread(mut self, unit: &str, h: char, desired: DesiredState) -> Self {
        self.0.units.insert(
            name(unit),
            UnitRecord {
                hash: hash(h),
                desired,
                start: 0,
            },
        );
        self
    }

    fn broken(mut self, unit: &str, h: char, why: &str) -> Self {
        self.0.units.insert(
            name(unit),
            UnitRecord {
                hash: hash(h),
                desired: DesiredState::Launched,
                start: 0,
            },
        );
        self.0
            .requirements
            .insert(name(unit), (hash(h), Err(why.into())));
        self
    }

    fn placed(mut self, unit: &str, machine: u8, h: char, target: Target) -> Self {
        let entry = ScheduleEntry {
            hash: hash(h),
            target,
            global: false,
            start: 0,
        };
        self.0.schedule.insert((id(machine), name(unit)), entry);
        self.0
            .placements
            .entry(name(unit))
            .or_default()
            .push(id(machine));
        self
    }

    fn reason(mut self, unit: &str, reason: &str) -> Self {
        self.0.reasons.insert(name(unit), reason.into());
        self
    }

    fn drained(mut self, machine: u8) -> Self {
        self.0.drained.insert(id(machine), DrainRecord { since: 1 });
        self
    }

    /// The agent of `machine` reports `unit` in systemd's `active` state.
    fn state(mut self, unit: &str, machine: u8, active: ActiveState) -> Self {
        self.0
            .states
            .insert((name(unit), id(machine)), state_record(active));
        self
    }

    fn metadata_override(mut self, machine: u8, key: &str, o: MetadataOverride) -> Self {
        self.0.overrides.insert((id(machine), key.into()), o);
        self
    }
}

fn state_record(active: ActiveState) -> UnitStateRecord {
    UnitStateRecord {
        hash: hash('a'),
        current: Target::Launched,
        load: LoadState::Loaded,
        active,
        sub: "running".into(),
        message: None,
        started: 0,
    }
}

fn put(unit: &str, machine: u8, h: char, target: Target) -> EngineWrite {
    EngineWrite::PutSchedule(
        id(machine),
        name(unit),
        ScheduleEntry {
            hash: hash(h),
            target,
            global: false,
            start: 0,
        },
    )
}

fn put_global(unit: &str, machine: u8, h: char) -> EngineWrite {
    EngineWrite::PutSchedule(
        id(machine),
        name(unit),
        ScheduleEntry {
            hash: hash(h),
            target: Target::Launched,
            global: true,
            start: 0,
        },
    )
}

fn del(unit: &str, machine: u8) -> EngineWrite {
    EngineWrite::DeleteSchedule(id(machine), name(unit))
}

fn placement(unit: &str, machines: &[u8]) -> EngineWrite {
    EngineWrite::PutPlacement(
        name(unit),
        PlacementRecord {
            machines: machines.iter().map(|m| id(*m)).collect(),
        },
    )
}

fn reason(unit: &str, r: &str) -> EngineWrite {
    EngineWrite::PutReason(name(unit), ReasonRecord { reason: r.into() })
}

/// Reconciles, compares with the expected writes, then checks that applying them settles the
/// view: a second pass writes nothing.
fn check(view: V, expected: Vec<Vec<EngineWrite>>) {
    let mut view = view.0;
    let writes = reconcile(&view);
    assert_eq!(writes, expected);
    view.apply(&writes);
    assert_eq!(
        reconcile(&view),
        Vec::<Vec<EngineWrite>>::new(),
        "a second pass must write nothing"
    );
}

use DesiredState::*;
use Target::Launched as L;
use Target::Loaded as Ld;

#[test]
fn a_new_unit_goes_to_the_least_loaded_machine_with_its_placement() {
    let view = V::default()
        .machine(1, "")
        .machine(2, "")
        .placed("other.service", 1, 'b', L)
        .unit("other.service", 'b', Launched, "")
        .unit("web.service", 'a', Launched, "");
    check(
        view,
        vec![vec![
            put("web.service", 2, 'a', L),
            placement("web.service", &[2]),
        ]],
    );
}

#[test]
fn desired_state_and_content_changes_rewrite_the_entry_in_place() {
    let view = V::default()
        .machine(1, "")
        .unit("web.service", 'a', Loaded, "")
        .placed("web.service", 1, 'a', L);
    check(view, vec![vec![put("web.service", 1, 'a', Ld)]]);
    let view = V::default()
        .machine(1, "")
        .unit("web.service", 'b', Launched, "")
        .placed("web.service", 1, 'a', L);
    check(view, vec![vec![put("web.service", 1, 'b', L)]]);
}

#[test]
fn inactive_and_destroyed_units_are_taken_off_their_machine() {
    let view = V::default()
        .machine(1, "")
        .unit("web.service", 'a', Inactive, "")
        .placed("web.service", 1, 'a', L);
    check(
        view,
        vec![vec![
            del("web.service", 1),
            EngineWrite::DeletePlacement(name("web.service")),
        ]],
    );
    let view = V::default()
        .machine(1, "")
        .placed("gone.service", 1, 'a', L)
        .reason("gone.service", "x");
    check(
        view,
        vec![vec![
            del("gone.service", 1),
            EngineWrite::DeletePlacement(name("gone.service")),
            EngineWrite::DeleteReason(name("gone.service")),
        ]],
    );
}

#[test]
fn units_on_a_machine_that_left_move_elsewhere() {
    let view = V::default()
        .machine(2, "")
        .unit("web.service", 'a', Launched, "")
        .placed("web.service", 1, 'a', L);
    check(
        view,
        vec![vec![
            put("web.service", 2, 'a', L),
            del("web.service", 1),
            placement("web.service", &[2]),
        ]],
    );
}

#[test]
fn a_drained_machine_loses_its_normal_units_and_a_pinned_one_says_why() {
    let view = V::default()
        .machine(1, "")
        .machine(2, "")
        .drained(1)
        .unit("web.service", 'a', Launched, "")
        .placed("web.service", 1, 'a', L)
        .unit(
            "pinned.service",
            'b',
            Launched,
            &format!("MachineID={}", id(1)),
        )
        .placed("pinned.service", 1, 'b', L);
    check(
        view,
        vec![
            vec![
                del("pinned.service", 1),
                EngineWrite::DeletePlacement(name("pinned.service")),
                reason(
                    "pinned.service",
                    "the only machine it may run on, 01010101, is drained",
                ),
            ],
            vec![
                put("web.service", 2, 'a', L),
                del("web.service", 1),
                placement("web.service", &[2]),
            ],
        ],
    );
}

#[test]
fn unplaceable_units_get_a_reason_which_goes_once_they_are_placed() {
    let view = V::default().machine(1, "region=eu").unit(
        "web.service",
        'a',
        Launched,
        "MachineMetadata=region=asia",
    );
    check(
        view,
        vec![vec![reason("web.service", "no machine has region=asia")]],
    );
    let view = V::default()
        .machine(1, "region=eu")
        .unit("web.service", 'a', Launched, "MachineMetadata=region=asia")
        .reason("web.service", "no machine has region=asia")
        .metadata_override(1, "region", MetadataOverride::Set("asia".into()));
    check(
        view,
        vec![vec![
            put("web.service", 1, 'a', L),
            placement("web.service", &[1]),
            EngineWrite::DeleteReason(name("web.service")),
        ]],
    );
}

#[test]
fn a_removed_metadata_key_makes_a_machine_ineligible() {
    let view = V::default()
        .machine(1, "disk=ssd")
        .unit("db.service", 'a', Launched, "MachineMetadata=disk=ssd")
        .placed("db.service", 1, 'a', L)
        .metadata_override(1, "disk", MetadataOverride::Removed);
    check(
        view,
        vec![vec![
            del("db.service", 1),
            EngineWrite::DeletePlacement(name("db.service")),
            reason("db.service", "no machine has disk=ssd"),
        ]],
    );
}

#[test]
fn units_with_unreadable_requirements_are_unplaced_with_why() {
    let view = V::default()
        .machine(1, "")
        .broken("bad.service", 'a', "content missing")
        .placed("bad.service", 1, 'a', L);
    check(
        view,
        vec![vec![
            del("bad.service", 1),
            EngineWrite::DeletePlacement(name("bad.service")),
            reason("bad.service", "content missing"),
        ]],
    );
}

#[test]
fn units_whose_requirements_are_not_read_yet_are_left_alone() {
    let view = V::default()
        .machine(1, "")
        .machine(2, "")
        .unread("web.service", 'b', Launched)
        .placed("web.service", 1, 'a', L);
    check(view, vec![]);
    let view = V::default()
        .machine(1, "")
        .unread("new.service", 'b', Launched);
    check(view, vec![]);
}

#[test]
fn global_units_get_an_entry_on_every_matching_machine() {
    let view = V::default()
        .machine(1, "")
        .machine(2, "")
        .machine(3, "role=edge")
        .unit(
            "log.service",
            'a',
            Launched,
            "Global=true\nMachineMetadata=role!=edge",
        );
    check(
        view,
        vec![vec![
            put_global("log.service", 1, 'a'),
            put_global("log.service", 2, 'a'),
            placement("log.service", &[1, 2]),
        ]],
    );
}

fn placed_global(mut view: V, unit: &str, machine: u8, h: char) -> V {
    view.0.schedule.insert(
        (id(machine), name(unit)),
        ScheduleEntry {
            hash: hash(h),
            target: Target::Launched,
            global: true,
            start: 0,
        },
    );
    view.0
        .placements
        .entry(name(unit))
        .or_default()
        .push(id(machine));
    view
}

#[test]
fn a_global_units_entry_on_a_vanished_machine_stays_while_the_unit_is_wanted() {
    // Machine 2 vanished (its lease expired): its entry of the global unit stays, so that the
    // machine keeps the unit running when it rejoins.
    let view = V::default()
        .machine(1, "")
        .unit("log.service", 'a', Launched, "Global=true");
    let view = placed_global(
        placed_global(view, "log.service", 1, 'a'),
        "log.service",
        2,
        'a',
    );
    check(view, vec![]);

    // Stopped, destroyed, or no longer global: the entry goes.
    let view = V::default()
        .machine(1, "")
        .unit("log.service", 'a', Loaded, "Global=true");
    let view = placed_global(
        placed_global(view, "log.service", 1, 'a'),
        "log.service",
        2,
        'a',
    );
    check(
        view,
        vec![vec![
            EngineWrite::PutSchedule(
                id(1),
                name("log.service"),
                ScheduleEntry {
                    hash: hash('a'),
                    target: Ld,
                    global: true,
                    start: 0,
                },
            ),
            del("log.service", 2),
            placement("log.service", &[1]),
        ]],
    );
    let view = placed_global(V::default().machine(1, ""), "log.service", 2, 'a');
    check(
        view,
        vec![vec![
            del("log.service", 2),
            EngineWrite::DeletePlacement(name("log.service")),
        ]],
    );
    let view = V::default()
        .machine(1, "")
        .unit("log.service", 'b', Launched, "");
    let view = placed_global(view, "log.service", 2, 'a');
    check(
        view,
        vec![vec![
            put("log.service", 1, 'b', L),
            del("log.service", 2),
            placement("log.service", &[1]),
        ]],
    );
}

#[test]
fn vanished_machines_are_those_holding_non_global_entries_without_a_record() {
    let view = V::default()
        .machine(1, "")
        .unit("web.service", 'a', Launched, "")
        .placed("web.service", 1, 'a', L)
        .placed("api.service", 2, 'a', L);
    let view = placed_global(view, "log.service", 3, 'a');
    assert_eq!(vanished(&view.0), [id(2)].into_iter().collect());
    assert!(vanished(&V::default().machine(1, "").0).is_empty());
}

/// A unit whose metadata requirement 1 no longer meets, on the way to 2.
fn moving(from_registered: bool) -> V {
    let view = V::default().machine(2, "disk=ssd");
    let view = if from_registered {
        view.machine(1, "disk=hdd")
    } else {
        view
    };
    view.unit("web.service", 'a', Launched, "MachineMetadata=disk=ssd")
        .placed("web.service", 1, 'a', L)
}

#[test]
fn a_move_leaves_the_old_machine_first_and_reaches_the_new_one_once_it_stopped_there() {
    use ActiveState::*;
    let moved_at_once = vec![vec![
        put("web.service", 2, 'a', L),
        del("web.service", 1),
        placement("web.service", &[2]),
    ]];
    // While the old machine runs it, only its entry goes (the placement still says where it
    // runs); once it no longer does, the new entry and placement are written.
    for running in [Active, Activating, Deactivating, Reloading, Refreshing] {
        check(
            moving(true).state("web.service", 1, running.clone()),
            vec![vec![del("web.service", 1)]],
        );
        let mut view = moving(true).state("web.service", 1, running.clone()).0;
        let (writes, held) = reconcile_holding(&view);
        assert_eq!(
            held,
            BTreeMap::from([(
                name("web.service"),
                HeldMove {
                    to: BTreeSet::from([id(2)]),
                    running_on: vec![id(1)],
                }
            )]),
            "{running:?}"
        );
        view.apply(&writes);
        for stopped in [Some(Inactive), Some(Failed), Some(Maintenance), None] {
            let mut after = view.clone();
            match &stopped {
                Some(a) => after
                    .states
                    .insert((name("web.service"), id(1)), state_record(a.clone())),
                None => after.states.remove(&(name("web.service"), id(1))),
            };
            let (writes, held) = reconcile_holding(&after);
            assert_eq!(
                writes,
                vec![vec![
                    put("web.service", 2, 'a', L),
                    placement("web.service", &[2])
                ]],
                "{running:?} then {stopped:?}"
            );
            assert!(held.is_empty(), "{running:?} then {stopped:?}");
        }
        // The old machine gone (its lease expired: its agent fenced itself) releases it too.
        let mut gone = view.clone();
        gone.machines.remove(&id(1));
        assert_eq!(
            reconcile_holding(&gone).0,
            vec![vec![
                put("web.service", 2, 'a', L),
                placement("web.service", &[2])
            ]],
            "{running:?} then machine 1 gone"
        );
    }
    // Stopped there, or no state at all: moved at once.
    for stopped in [Inactive, Failed] {
        check(
            moving(true).state("web.service", 1, stopped),
            moved_at_once.clone(),
        );
    }
    check(moving(true), moved_at_once.clone());
    // The old machine no longer registered: at once, whatever its last state said.
    check(
        moving(false).state("web.service", 1, Active),
        moved_at_once.clone(),
    );
}

#[test]
fn a_drained_machine_keeps_a_unit_it_still_runs_until_it_stopped_there() {
    let view = V::default()
        .machine(1, "")
        .machine(2, "")
        .drained(1)
        .unit("web.service", 'a', Launched, "")
        .placed("web.service", 1, 'a', L)
        .state("web.service", 1, ActiveState::Active);
    check(view, vec![vec![del("web.service", 1)]]);
}

#[test]
fn a_new_placement_waits_for_a_copy_left_running_elsewhere_but_not_for_its_own_machine() {
    use ActiveState::*;
    // A unit placed for the first time goes at once.
    check(
        V::default()
            .machine(1, "")
            .unit("web.service", 'a', Launched, ""),
        vec![vec![
            put("web.service", 1, 'a', L),
            placement("web.service", &[1]),
        ]],
    );
    // Scheduled nowhere but still running on 1 (destroyed and submitted again, planned onto
    // 2 because 1 no longer fits): nothing until 1 stops it, and no reason meanwhile.
    let view = V::default()
        .machine(1, "disk=hdd")
        .machine(2, "disk=ssd")
        .unit("web.service", 'a', Launched, "MachineMetadata=disk=ssd")
        .state("web.service", 1, Deactivating);
    check(view, vec![vec![placement("web.service", &[1])]]);
    // Running on the machine the plan keeps it on, or wants it on: no hold.
    check(
        V::default()
            .machine(1, "")
            .unit("web.service", 'a', Launched, "")
            .placed("web.service", 1, 'a', L)
            .state("web.service", 1, Active),
        vec![],
    );
    check(
        V::default()
            .machine(1, "")
            .unit("web.service", 'a', Launched, "")
            .state("web.service", 1, Active),
        vec![vec![
            put("web.service", 1, 'a', L),
            placement("web.service", &[1]),
        ]],
    );
    // A stopped unit (inactive) is only taken off, and a global unit never waits.
    check(
        V::default()
            .machine(1, "")
            .unit("web.service", 'a', DesiredState::Inactive, "")
            .placed("web.service", 1, 'a', L)
            .state("web.service", 1, Active),
        vec![vec![
            del("web.service", 1),
            EngineWrite::DeletePlacement(name("web.service")),
        ]],
    );
    check(
        V::default()
            .machine(1, "")
            .machine(2, "")
            .unit("agent.service", 'a', Launched, "Global=true")
            .state("agent.service", 1, Active),
        vec![vec![
            put_global("agent.service", 1, 'a'),
            put_global("agent.service", 2, 'a'),
            placement("agent.service", &[1, 2]),
        ]],
    );
}

/// The agent of `machine` reports `unit` of content `h` in systemd's state `active`.
fn state_of(mut view: V, unit: &str, machine: u8, h: char, active: ActiveState) -> V {
    let record = UnitStateRecord {
        hash: hash(h),
        ..state_record(active)
    };
    view.0.states.insert((name(unit), id(machine)), record);
    view
}

/// Machines 1 to 3 run `g.service` on content `a` (active there unless `states` says
/// otherwise), and its content is now `b`.
fn rolling_view(entries: &[(u8, char)], states: &[(u8, char, ActiveState)]) -> V {
    let mut view = V::default()
        .machine(1, "")
        .machine(2, "")
        .machine(3, "")
        .unit("g.service", 'b', Launched, "Global=true");
    for &(m, h) in entries {
        view = placed_global(view, "g.service", m, h);
        view = state_of(view, "g.service", m, h, ActiveState::Active);
    }
    for (m, h, active) in states {
        view = state_of(view, "g.service", *m, *h, active.clone());
    }
    view
}

#[test]
fn a_global_units_new_content_rolls_out_one_machine_at_a_time() {
    use ActiveState::{Activating, Active, Failed};
    let on_a = [(1, 'a'), (2, 'a'), (3, 'a')];
    // (what, entries, states over the defaults, machines given `b` now, held on `a`, waited for)
    type Case<'a> = (
        &'a str,
        Vec<(u8, char)>,
        Vec<(u8, char, ActiveState)>,
        Vec<u8>,
        Vec<u8>,
        Vec<u8>,
    );
    let cases: Vec<Case> = vec![
        (
            "the first machine by ID",
            on_a.to_vec(),
            vec![],
            vec![1],
            vec![2, 3],
            vec![],
        ),
        (
            "a machine not active on the old content goes first",
            on_a.to_vec(),
            vec![(2, 'a', Failed)],
            vec![2],
            vec![1, 3],
            vec![],
        ),
        (
            "the next once the first is active on the new content",
            vec![(1, 'b'), (2, 'a'), (3, 'a')],
            vec![],
            vec![2],
            vec![3],
            vec![],
        ),
        (
            "none while the first has not reported the new content",
            vec![(1, 'b'), (2, 'a'), (3, 'a')],
            vec![(1, 'a', Active)],
            vec![],
            vec![2, 3],
            vec![1],
        ),
        (
            "none while the first is starting it",
            vec![(1, 'b'), (2, 'a'), (3, 'a')],
            vec![(1, 'b', Activating)],
            vec![],
            vec![2, 3],
            vec![1],
        ),
        (
            "a failure stops the rollout there",
            vec![(1, 'b'), (2, 'a'), (3, 'a')],
            vec![(1, 'b', Failed)],
            vec![],
            vec![2, 3],
            vec![1],
        ),
        (
            "a machine without the unit gets the new content at once",
            vec![(1, 'a'), (2, 'a')],
            vec![],
            vec![1, 3],
            vec![2],
            vec![],
        ),
        (
            "the last machine",
            vec![(1, 'b'), (2, 'b'), (3, 'a')],
            vec![],
            vec![3],
            vec![],
            vec![],
        ),
    ];
    for (what, entries, states, given, held, waited) in cases {
        let view = rolling_view(&entries, &states);
        let (writes, holds) = reconcile_holding(&view.0);
        let mut got: Vec<u8> = writes
            .iter()
            .flatten()
            .filter_map(|w| match w {
                EngineWrite::PutSchedule(m, _, e) => {
                    assert_eq!(e.hash, hash('b'), "{what}: {w:?}");
                    (1..=3).find(|n| id(*n) == *m)
                }
                _ => None,
            })
            .collect();
        got.sort();
        assert_eq!(got, given, "{what}: machines given the new content");
        let hold = holds.get(&name("g.service"));
        let ids = |ns: &[u8]| ns.iter().map(|n| id(*n)).collect::<Vec<_>>();
        assert_eq!(
            hold.map(|h| h.to.iter().cloned().collect::<Vec<_>>())
                .unwrap_or_default(),
            ids(&held),
            "{what}: held on the old content"
        );
        assert_eq!(
            hold.map(|h| h.running_on.clone()).unwrap_or_default(),
            if held.is_empty() {
                vec![]
            } else {
                ids(&waited)
            },
            "{what}: waited for"
        );
    }
}

#[test]
fn a_global_unit_not_launched_takes_its_new_content_everywhere_at_once() {
    let mut view =
        V::default()
            .machine(1, "")
            .machine(2, "")
            .unit("g.service", 'b', Loaded, "Global=true");
    for m in [1, 2] {
        view.0.schedule.insert(
            (id(m), name("g.service")),
            ScheduleEntry {
                hash: hash('a'),
                target: Target::Loaded,
                global: true,
                start: 0,
            },
        );
        view.0
            .placements
            .entry(name("g.service"))
            .or_default()
            .push(id(m));
    }
    let (writes, holds) = reconcile_holding(&view.0);
    assert!(holds.is_empty(), "{holds:?}");
    let puts = writes
        .iter()
        .flatten()
        .filter(|w| matches!(w, EngineWrite::PutSchedule(_, _, e) if e.hash == hash('b')))
        .count();
    assert_eq!(puts, 2, "{writes:?}");
}

#[test]
fn a_global_unit_with_a_check_rolls_on_once_its_instance_passes() {
    use crate::registry::{Health, InstanceId, InstanceRecord};
    use crate::unit::ServiceName;
    let with = |health: Option<Health>, checked: bool| {
        let mut view = rolling_view(&[(1, 'b'), (2, 'a'), (3, 'a')], &[]);
        view.0
            .checked
            .insert(name("g.service"), (hash('b'), checked));
        if let Some(health) = health {
            let service = ServiceName::new("g").unwrap();
            view.0.instances.insert(
                InstanceId {
                    service: service.clone(),
                    machine: id(1),
                    unit: name("g.service"),
                },
                InstanceRecord {
                    service,
                    machine: id(1),
                    hostname: "host-1".into(),
                    address: "10.0.0.1".into(),
                    port: 80,
                    tags: vec![],
                    unit: name("g.service"),
                    health,
                },
            );
        }
        let (writes, holds) = reconcile_holding(&view.0);
        let given: Vec<MachineId> = writes
            .iter()
            .flatten()
            .filter_map(|w| match w {
                EngineWrite::PutSchedule(m, _, _) => Some(m.clone()),
                _ => None,
            })
            .collect();
        (given, holds.get(&name("g.service")).cloned())
    };
    // (instance health on machine 1, content declares a check, machines given `b` now)
    for (health, checked, expected) in [
        (None, true, vec![]),
        (Some(Health::Unknown), true, vec![]),
        (Some(Health::Critical), true, vec![]),
        (Some(Health::Passing), true, vec![id(2)]),
        (None, false, vec![id(2)]),
    ] {
        let (given, hold) = with(health, checked);
        assert_eq!(given, expected, "{health:?}, checked {checked}");
        let waited = hold.map(|h| h.running_on).unwrap_or_default();
        if expected.is_empty() {
            assert_eq!(waited, vec![id(1)], "{health:?}: machine 1 waited for");
        }
    }
}

#[test]
fn a_group_placing_a_non_global_unit_on_a_new_machine_is_guarded_by_the_states_seen() {
    let mut view = moving(true).0;
    view.states_revision = 41;
    let guarded = Some(StatesSeen {
        unit: name("web.service"),
        revision: 41,
    });
    let rewritten = EngineWrite::PutSchedule(
        id(1),
        name("web.service"),
        ScheduleEntry {
            hash: hash('b'),
            target: L,
            global: false,
            start: 0,
        },
    );
    let cases: Vec<(&str, Vec<EngineWrite>, Option<StatesSeen>)> = vec![
        (
            "a move in one transaction",
            vec![
                put("web.service", 2, 'a', L),
                del("web.service", 1),
                placement("web.service", &[2]),
            ],
            guarded.clone(),
        ),
        (
            "the second phase of a move",
            vec![
                put("web.service", 2, 'a', L),
                placement("web.service", &[2]),
            ],
            guarded.clone(),
        ),
        (
            "a first placement",
            vec![
                put("new.service", 2, 'a', L),
                placement("new.service", &[2]),
            ],
            Some(StatesSeen {
                unit: name("new.service"),
                revision: 41,
            }),
        ),
        (
            "the first phase of a move",
            vec![del("web.service", 1)],
            None,
        ),
        ("an entry rewritten where it is", vec![rewritten], None),
        (
            "a global unit's entry on a new machine",
            vec![put_global("g.service", 2, 'a')],
            None,
        ),
        ("a reason", vec![reason("web.service", "no machine")], None),
    ];
    for (what, group, expected) in cases {
        assert_eq!(guard(&view, &group), expected, "{what}");
    }
}
