//! The agent's decision, as a pure function: given the units placed on this machine and what
//! the machine has, which actions bring them in line. No I/O; the executor carries them out.

use std::collections::{BTreeMap, BTreeSet};

use crate::registry::UnitStateRecord;
use crate::systemd::{ActiveState, LoadState, UnitStatus};
use crate::unit::{Target, UnitHash, UnitName};

/// A unit the engine placed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub hash: UnitHash,
    pub target: Target,
    /// Its start requests (`ScheduleEntry::start`).
    pub start: u64,
}

/// What this machine has of a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Hash of the unit file in the units directory, if there is one.
    pub file: Option<UnitHash>,
    /// What the agent last did with it: linked (`Loaded`) or started (`Launched`).
    pub done: Option<Target>,
    /// systemd's view, if read.
    pub status: Option<UnitStatus>,
    /// The start request the agent last acted on: set when it starts the unit, kept in the
    /// published state across restarts. `None` until known; `note_requests` then takes the
    /// first one seen as acted on.
    pub started: Option<u64>,
}

/// Takes the start request of a unit whose last acted-on one is unknown (first seen after an
/// agent restart that found no state of its own) as acted on: only requests made while this
/// agent follows the unit start it again, so a unit that stopped by itself stays stopped.
pub fn note_requests(
    desired: &BTreeMap<UnitName, Desired>,
    observed: &mut BTreeMap<UnitName, Observed>,
) {
    for (name, want) in desired {
        if let Some(have) = observed.get_mut(name) {
            have.started.get_or_insert(want.start);
        }
    }
}

/// One step. `Reload` comes at most once per plan, after every file change and before any
/// start, and only when a file systemd may have loaded changes: systemd loads new units by
/// itself, and forgets stopped, unlinked ones by itself (garbage collection), so a batch of
/// new or removed units costs no reload of every unit the manager has
/// (`tests/e2e/systemd_adapter.rs` checks both on a real manager).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Stop a unit that is going away or must no longer run.
    Stop(UnitName),
    /// Stop, unlink and delete the file of a unit no longer placed here.
    Unload(UnitName),
    /// Write the unit file (atomically) and link it as a runtime unit.
    Load(UnitName, UnitHash),
    /// `daemon-reload`, once, after the Loads that replace a definition systemd has.
    Reload,
    Start(UnitName),
    /// The content of a running unit changed: restart it under the new file.
    Restart(UnitName),
}

impl Action {
    pub fn unit(&self) -> Option<&UnitName> {
        match self {
            Action::Stop(u)
            | Action::Unload(u)
            | Action::Load(u, _)
            | Action::Start(u)
            | Action::Restart(u) => Some(u),
            Action::Reload => None,
        }
    }
}

/// Actions in execution order: stops and unloads, loads, one reload, then starts and restarts.
pub fn plan(
    desired: &BTreeMap<UnitName, Desired>,
    observed: &BTreeMap<UnitName, Observed>,
) -> Vec<Action> {
    let none = Observed::default();
    let names: BTreeSet<&UnitName> = desired.keys().chain(observed.keys()).collect();
    let mut stops = Vec::new();
    let mut loads = Vec::new();
    let mut starts = Vec::new();
    let mut reload = false;
    for name in names {
        let have = observed.get(name).unwrap_or(&none);
        let Some(want) = desired.get(name) else {
            if have.file.is_some() || have.done.is_some() {
                // A unit that runs is stopped first and unloaded once systemd reports it
                // stopped (its signal brings the next pass): until then its state stays
                // published as running, so a move waits for it (a stop job only begins the
                // stop; the process may take a while to exit).
                match have.status.as_ref().map(|s| &s.active) {
                    Some(ActiveState::Deactivating) => {}
                    Some(a) if a.is_running() => stops.push(Action::Stop(name.clone())),
                    _ => stops.push(Action::Unload(name.clone())),
                }
            }
            continue;
        };
        let content_changed = have.file != Some(want.hash);
        // Also load again what the agent never finished loading, and what systemd lost (its
        // runtime links are gone after a manager restart).
        let unknown_to_systemd = have
            .status
            .as_ref()
            .is_some_and(|s| s.load == LoadState::NotFound);
        if content_changed || have.done.is_none() || unknown_to_systemd {
            loads.push(Action::Load(name.clone(), want.hash));
            // systemd finds a unit it does not hold by itself, once its link exists (its
            // unit-file cache notices the changed directory); only a definition it may have
            // loaded already needs a reload to be replaced. Unknown counts as loaded.
            reload |= !unknown_to_systemd;
        }
        let running = have.done == Some(Target::Launched);
        // Started once, but systemd has it stopped (it exited, or went down with a unit it
        // is bound to): started again only on a start request it has not acted on yet.
        let asked_again = have.started.is_some_and(|s| s != want.start)
            && have.status.as_ref().is_some_and(|s| !s.active.is_running());
        match (want.target, running) {
            (Target::Launched, false) => starts.push(Action::Start(name.clone())),
            (Target::Launched, true) if content_changed => {
                starts.push(Action::Restart(name.clone()))
            }
            (Target::Launched, true) if asked_again => starts.push(Action::Start(name.clone())),
            (Target::Loaded, true) => stops.push(Action::Stop(name.clone())),
            (Target::Launched, true) | (Target::Loaded, false) => {}
        }
    }
    let mut actions = stops;
    actions.extend(loads);
    if reload {
        actions.push(Action::Reload);
    }
    actions.extend(starts);
    actions
}

/// The state record a unit's machine publishes, or `None` while there is nothing to say (no
/// file written, nothing done yet). `message` is systemd's complaint about the last failed
/// action; `wanted` what the engine placed here. systemd reports a unit it refused to start
/// as merely inactive: the record says it failed.
pub fn state_record(
    observed: &Observed,
    wanted: Option<Target>,
    message: Option<&str>,
) -> Option<UnitStateRecord> {
    let (Some(hash), Some(current)) = (observed.file, observed.done) else {
        return None;
    };
    let status = observed.status.clone().unwrap_or(UnitStatus {
        load: LoadState::NotFound,
        active: ActiveState::Inactive,
        sub: "dead".into(),
    });
    let refused =
        message.is_some() && current == Target::Loaded && wanted == Some(Target::Launched);
    Some(UnitStateRecord {
        hash,
        current,
        load: status.load,
        active: if refused {
            ActiveState::Failed
        } else {
            status.active
        },
        sub: status.sub,
        message: message.map(str::to_owned),
        started: observed.started.unwrap_or(0),
    })
}

/// What a restarted agent has of a unit whose file it found on disk (content `file`), given
/// its previous run's published state, if any, and systemd's view. The report says what was
/// done and with which content: a file newer than it was written by a pass cut short between
/// writing the file and restarting the unit (a crash, a stop), so the unit may still run its
/// old content under an old definition; taking the reported content as what is there makes
/// the plan load the file again, reload and restart. Without a report, a unit systemd knows
/// is adopted (`adopted`).
pub fn found_after_restart(
    file: UnitHash,
    reported: Option<&UnitStateRecord>,
    status: Option<UnitStatus>,
) -> Observed {
    let (file, done) = match (reported, &status) {
        (Some(r), _) => (r.hash, Some(r.current)),
        (None, Some(s)) if s.load != LoadState::NotFound => (file, Some(adopted(s))),
        (None, _) => (file, None),
    };
    Observed {
        file: Some(file),
        done,
        status,
        started: reported.map(|r| r.started),
    }
}

/// What the agent has done with a unit it found on disk after a restart, when its own report
/// from before is gone: a unit systemd runs counts as launched, so it is adopted, not restarted.
pub fn adopted(status: &UnitStatus) -> Target {
    if ActiveState::is_running(&status.active) {
        Target::Launched
    } else {
        Target::Loaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> UnitName {
        UnitName::new(n).unwrap()
    }

    fn hash(c: char) -> UnitHash {
        c.to_string().repeat(40).parse().unwrap()
    }

    fn want(h: char, target: Target) -> Desired {
        Desired {
            hash: hash(h),
            target,
            start: 0,
        }
    }

    fn have(file: Option<char>, done: Option<Target>) -> Observed {
        Observed {
            file: file.map(hash),
            done,
            status: None,
            started: None,
        }
    }

    /// One unit `u.service`: what is wanted, what is there, what must happen.
    fn check(desired: Option<Desired>, observed: Option<Observed>, expected: &[Action]) {
        let u = name("u.service");
        let desired: BTreeMap<_, _> = desired.into_iter().map(|d| (u.clone(), d)).collect();
        let observed: BTreeMap<_, _> = observed.into_iter().map(|o| (u.clone(), o)).collect();
        assert_eq!(
            plan(&desired, &observed),
            expected,
            "desired {desired:?}, observed {observed:?}"
        );
    }

    #[test]
    fn each_unit_state_leads_to_the_right_actions() {
        use Target::*;
        let u = || name("u.service");
        let cases: Vec<(Option<Desired>, Option<Observed>, Vec<Action>)> = vec![
            // new unit
            (
                Some(want('a', Loaded)),
                None,
                vec![Action::Load(u(), hash('a')), Action::Reload],
            ),
            (
                Some(want('a', Launched)),
                None,
                vec![
                    Action::Load(u(), hash('a')),
                    Action::Reload,
                    Action::Start(u()),
                ],
            ),
            // in line already: nothing to do (an agent restart adopts running units)
            (
                Some(want('a', Launched)),
                Some(have(Some('a'), Some(Launched))),
                vec![],
            ),
            (
                Some(want('a', Loaded)),
                Some(have(Some('a'), Some(Loaded))),
                vec![],
            ),
            // desired state changes
            (
                Some(want('a', Launched)),
                Some(have(Some('a'), Some(Loaded))),
                vec![Action::Start(u())],
            ),
            (
                Some(want('a', Loaded)),
                Some(have(Some('a'), Some(Launched))),
                vec![Action::Stop(u())],
            ),
            // content changes
            (
                Some(want('b', Launched)),
                Some(have(Some('a'), Some(Launched))),
                vec![
                    Action::Load(u(), hash('b')),
                    Action::Reload,
                    Action::Restart(u()),
                ],
            ),
            (
                Some(want('b', Loaded)),
                Some(have(Some('a'), Some(Loaded))),
                vec![Action::Load(u(), hash('b')), Action::Reload],
            ),
            (
                Some(want('b', Loaded)),
                Some(have(Some('a'), Some(Launched))),
                vec![
                    Action::Stop(u()),
                    Action::Load(u(), hash('b')),
                    Action::Reload,
                ],
            ),
            // the file is there but the agent never linked it (it died in between)
            (
                Some(want('a', Launched)),
                Some(have(Some('a'), None)),
                vec![
                    Action::Load(u(), hash('a')),
                    Action::Reload,
                    Action::Start(u()),
                ],
            ),
            // no longer placed here
            (
                None,
                Some(have(Some('a'), Some(Launched))),
                vec![Action::Unload(u())],
            ),
            (
                None,
                Some(have(None, Some(Loaded))),
                vec![Action::Unload(u())],
            ),
            (None, Some(have(None, None)), vec![]),
            (None, None, vec![]),
        ];
        for (desired, observed, expected) in cases {
            check(desired, observed, &expected);
        }
    }

    fn status(load: &str) -> UnitStatus {
        UnitStatus {
            load: LoadState::from(load),
            active: ActiveState::Inactive,
            sub: "dead".into(),
        }
    }

    #[test]
    fn a_unit_no_longer_placed_here_is_unloaded_only_once_it_stopped() {
        use ActiveState::*;
        let u = || name("u.service");
        let running = |active: ActiveState| Observed {
            status: Some(UnitStatus {
                load: LoadState::Loaded,
                active,
                sub: "x".into(),
            }),
            ..have(Some('a'), Some(Target::Launched))
        };
        let cases: Vec<(ActiveState, Vec<Action>)> = vec![
            // Running: stopped, the file stays (its state stays published as running).
            (Active, vec![Action::Stop(u())]),
            (Activating, vec![Action::Stop(u())]),
            (Reloading, vec![Action::Stop(u())]),
            (Refreshing, vec![Action::Stop(u())]),
            // Stopping: nothing until systemd's signal says it stopped.
            (Deactivating, vec![]),
            // Stopped: unloaded.
            (Inactive, vec![Action::Unload(u())]),
            (Failed, vec![Action::Unload(u())]),
            (Maintenance, vec![Action::Unload(u())]),
        ];
        for (active, expected) in cases {
            check(None, Some(running(active.clone())), &expected);
        }
    }

    #[test]
    fn only_a_definition_systemd_may_hold_is_reloaded() {
        use Target::*;
        let u = || name("u.service");
        let seen = |file: Option<char>, done, load: &str| Observed {
            status: Some(status(load)),
            ..have(file, done)
        };
        let cases: Vec<(Option<Desired>, Option<Observed>, Vec<Action>)> = vec![
            // new to systemd: linked and started, no reload
            (
                Some(want('a', Launched)),
                Some(seen(None, None, "not-found")),
                vec![Action::Load(u(), hash('a')), Action::Start(u())],
            ),
            // systemd holds a unit of that name (another file, or referenced by another
            // unit): its definition is replaced with a reload
            (
                Some(want('a', Launched)),
                Some(seen(None, None, "loaded")),
                vec![
                    Action::Load(u(), hash('a')),
                    Action::Reload,
                    Action::Start(u()),
                ],
            ),
            (
                Some(want('b', Launched)),
                Some(seen(Some('a'), Some(Launched), "loaded")),
                vec![
                    Action::Load(u(), hash('b')),
                    Action::Reload,
                    Action::Restart(u()),
                ],
            ),
            // systemd lost it (its runtime link is gone): linked again, no reload
            (
                Some(want('a', Launched)),
                Some(seen(Some('a'), Some(Launched), "not-found")),
                vec![Action::Load(u(), hash('a'))],
            ),
            // going away: stopped and unlinked; systemd forgets it by itself
            (
                None,
                Some(seen(Some('a'), Some(Launched), "loaded")),
                vec![Action::Unload(u())],
            ),
            // known to systemd but never this agent's: left alone
            (None, Some(seen(None, None, "loaded")), vec![]),
        ];
        for (desired, observed, expected) in cases {
            check(desired, observed, &expected);
        }
    }

    #[test]
    fn a_unit_systemd_no_longer_knows_is_loaded_again() {
        let u = name("u.service");
        let observed = Observed {
            file: Some(hash('a')),
            done: Some(Target::Loaded),
            status: Some(UnitStatus {
                load: LoadState::NotFound,
                active: ActiveState::Inactive,
                sub: "dead".into(),
            }),
            started: None,
        };
        let desired = BTreeMap::from([(u.clone(), want('a', Target::Loaded))]);
        assert_eq!(
            plan(&desired, &BTreeMap::from([(u.clone(), observed)])),
            vec![Action::Load(u, hash('a'))]
        );
    }

    #[test]
    fn a_batch_reloads_once_after_all_file_changes_and_before_any_start() {
        let mut desired = BTreeMap::new();
        let mut observed = BTreeMap::new();
        for i in 0..3 {
            desired.insert(
                name(&format!("new{i}.service")),
                want('a', Target::Launched),
            );
        }
        observed.insert(name("old.service"), have(Some('a'), Some(Target::Launched)));
        let actions = plan(&desired, &observed);
        assert_eq!(actions.iter().filter(|a| **a == Action::Reload).count(), 1);
        let reload_at = actions.iter().position(|a| *a == Action::Reload).unwrap();
        for (i, a) in actions.iter().enumerate() {
            match a {
                Action::Load(..) | Action::Unload(_) | Action::Stop(_) => {
                    assert!(i < reload_at, "{a:?} after reload")
                }
                Action::Start(_) | Action::Restart(_) => {
                    assert!(i > reload_at, "{a:?} before reload")
                }
                Action::Reload => {}
            }
        }
        assert_eq!(actions.len(), 3 + 1 + 1 + 3);
    }

    #[test]
    fn the_published_record_says_what_was_done_and_calls_a_refused_start_failed() {
        use Target::*;
        let status = |active: &str| UnitStatus {
            load: LoadState::Loaded,
            active: ActiveState::from(active),
            sub: "x".into(),
        };
        let seen = |done: Option<Target>, s: Option<UnitStatus>| Observed {
            file: Some(hash('a')),
            done,
            status: s,
            started: None,
        };
        let record = |current, load: &str, active: &str, sub: &str, message: Option<&str>| {
            Some(UnitStateRecord {
                hash: hash('a'),
                current,
                load: LoadState::from(load),
                active: ActiveState::from(active),
                sub: sub.into(),
                message: message.map(str::to_owned),
                started: 0,
            })
        };
        let refused = Some("Unit u.service has a bad unit file setting.");
        type Case<'a> = (
            Observed,
            Option<Target>,
            Option<&'a str>,
            Option<UnitStateRecord>,
        );
        let cases: Vec<Case> = vec![
            // nothing written or done yet: nothing to publish
            (have(None, Some(Launched)), Some(Launched), None, None),
            (have(Some('a'), None), Some(Launched), None, None),
            // systemd's view as it is
            (
                seen(Some(Launched), Some(status("active"))),
                Some(Launched),
                None,
                record(Launched, "loaded", "active", "x", None),
            ),
            // not read yet: reported as systemd reports a unit it does not know
            (
                seen(Some(Loaded), None),
                Some(Loaded),
                None,
                record(Loaded, "not-found", "inactive", "dead", None),
            ),
            // a start systemd refused: failed, with its message
            (
                seen(Some(Loaded), Some(status("inactive"))),
                Some(Launched),
                refused,
                record(Loaded, "loaded", "failed", "x", refused),
            ),
            // a failure while it should only be loaded, or after it started: as systemd says
            (
                seen(Some(Loaded), Some(status("inactive"))),
                Some(Loaded),
                refused,
                record(Loaded, "loaded", "inactive", "x", refused),
            ),
            (
                seen(Some(Launched), Some(status("inactive"))),
                Some(Launched),
                refused,
                record(Launched, "loaded", "inactive", "x", refused),
            ),
            // going away (no longer placed here)
            (
                seen(Some(Loaded), Some(status("inactive"))),
                None,
                refused,
                record(Loaded, "loaded", "inactive", "x", refused),
            ),
        ];
        for (observed, wanted, message, expected) in cases {
            assert_eq!(
                state_record(&observed, wanted, message),
                expected,
                "observed {observed:?}, wanted {wanted:?}, message {message:?}"
            );
        }
    }

    #[test]
    fn a_launched_unit_that_stopped_starts_again_only_on_a_start_request_not_yet_acted_on() {
        use Target::*;
        let u = || name("u.service");
        let asked = |start: u64| Desired {
            start,
            ..want('a', Launched)
        };
        let seen = |active: &str, started: Option<u64>| Observed {
            status: Some(UnitStatus {
                load: LoadState::Loaded,
                active: ActiveState::from(active),
                sub: "x".into(),
            }),
            started,
            ..have(Some('a'), Some(Launched))
        };
        let cases: Vec<(&str, Desired, Observed, Vec<Action>)> = vec![
            (
                "stopped by itself (or by a unit it is bound to): stays stopped",
                asked(0),
                seen("inactive", Some(0)),
                vec![],
            ),
            (
                "failed by itself: stays failed",
                asked(2),
                seen("failed", Some(2)),
                vec![],
            ),
            (
                "a new start request: started again",
                asked(1),
                seen("inactive", Some(0)),
                vec![Action::Start(u())],
            ),
            (
                "a failed unit too",
                asked(3),
                seen("failed", Some(2)),
                vec![Action::Start(u())],
            ),
            (
                "a request while it runs: nothing to do",
                asked(1),
                seen("active", Some(0)),
                vec![],
            ),
            (
                "activating counts as running",
                asked(1),
                seen("activating", Some(0)),
                vec![],
            ),
            (
                "the request last acted on not known yet: nothing",
                asked(1),
                seen("inactive", None),
                vec![],
            ),
            (
                "systemd's view not read: nothing",
                asked(1),
                Observed {
                    status: None,
                    ..seen("inactive", Some(0))
                },
                vec![],
            ),
            (
                "only loaded is wanted: no start",
                Desired {
                    start: 1,
                    ..want('a', Loaded)
                },
                Observed {
                    done: Some(Loaded),
                    ..seen("inactive", Some(0))
                },
                vec![],
            ),
            (
                "new content: restarted as before",
                Desired {
                    start: 1,
                    ..want('b', Launched)
                },
                seen("inactive", Some(0)),
                vec![
                    Action::Load(u(), hash('b')),
                    Action::Reload,
                    Action::Restart(u()),
                ],
            ),
        ];
        for (what, desired, observed, expected) in cases {
            let desired = BTreeMap::from([(u(), desired)]);
            let observed = BTreeMap::from([(u(), observed)]);
            assert_eq!(plan(&desired, &observed), expected, "{what}");
        }
    }

    #[test]
    fn the_first_start_request_seen_counts_as_acted_on() {
        let (a, b, c) = (name("a.service"), name("b.service"), name("c.service"));
        let asked = |start| Desired {
            start,
            ..want('a', Target::Launched)
        };
        let desired = BTreeMap::from([(a.clone(), asked(4)), (b.clone(), asked(5))]);
        let mut observed = BTreeMap::from([
            (a.clone(), have(Some('a'), Some(Target::Launched))),
            (
                b.clone(),
                Observed {
                    started: Some(2),
                    ..have(Some('a'), Some(Target::Launched))
                },
            ),
            (c.clone(), have(Some('a'), Some(Target::Launched))),
        ]);
        note_requests(&desired, &mut observed);
        let started: Vec<Option<u64>> = [&a, &b, &c].iter().map(|n| observed[*n].started).collect();
        assert_eq!(started, [Some(4), Some(2), None]);
        let record = state_record(&observed[&b], Some(Target::Launched), None).unwrap();
        assert_eq!(record.started, 2, "the published state keeps it");
    }

    #[test]
    fn a_unit_whose_file_is_newer_than_its_report_is_restarted_after_an_agent_restart() {
        use Target::*;
        let running = || UnitStatus {
            load: LoadState::Loaded,
            active: ActiveState::Active,
            sub: "running".into(),
        };
        let report = |h: char, current| UnitStateRecord {
            hash: hash(h),
            current,
            load: LoadState::Loaded,
            active: ActiveState::Active,
            sub: "running".into(),
            message: None,
            started: 3,
        };
        let u = || name("u.service");
        // (what, file on disk, report, what the schedule wants, expected actions)
        let cases = [
            (
                "file and report agree: adopted as it runs",
                'b',
                Some(report('b', Launched)),
                want('b', Launched),
                vec![],
            ),
            (
                "a newer file than the report (cut short before the restart): restarted",
                'b',
                Some(report('a', Launched)),
                want('b', Launched),
                vec![
                    Action::Load(u(), hash('b')),
                    Action::Reload,
                    Action::Restart(u()),
                ],
            ),
            (
                "no report: adopted as systemd runs it",
                'b',
                None,
                want('b', Launched),
                vec![],
            ),
            (
                "a newer file of a loaded unit: loaded again, not started",
                'b',
                Some(report('a', Loaded)),
                want('b', Loaded),
                vec![Action::Load(u(), hash('b')), Action::Reload],
            ),
        ];
        for (what, file, reported, desired, expected) in cases {
            let found = found_after_restart(hash(file), reported.as_ref(), Some(running()));
            assert_eq!(
                found.started,
                reported.as_ref().map(|r| r.started),
                "{what}"
            );
            let observed = BTreeMap::from([(u(), found)]);
            let desired = BTreeMap::from([(u(), desired)]);
            assert_eq!(plan(&desired, &observed), expected, "{what}");
        }
        let unknown = UnitStatus {
            load: LoadState::NotFound,
            ..running()
        };
        assert_eq!(
            found_after_restart(hash('a'), None, Some(unknown)).done,
            None
        );
    }

    #[test]
    fn running_units_found_after_a_restart_are_adopted_as_launched() {
        let status = |active: &str| UnitStatus {
            load: LoadState::Loaded,
            active: ActiveState::from(active),
            sub: String::new(),
        };
        assert_eq!(adopted(&status("active")), Target::Launched);
        assert_eq!(adopted(&status("activating")), Target::Launched);
        assert_eq!(adopted(&status("failed")), Target::Loaded);
        assert_eq!(adopted(&status("inactive")), Target::Loaded);
    }
}
