//! Intent records: before the agent starts a non-global unit that it has not published as
//! running, it says so in etcd (`activating` on this machine), so that the engine's two-phase
//! move (`engine::held_back`) sees the unit held here from before systemd runs it, not only
//! from the end of the pass. The write is a transaction that also checks that the unit is
//! still scheduled here (`Registry::write_intents`): if the engine removed the entry first, the
//! agent neither writes nor starts. See ARCHITECTURE.md, "Agent".

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Agent};
use crate::backoff::Backoff;
use crate::registry::{MAX_TXN_OPS, ScheduleEntry, UnitStateRecord};
use crate::systemd::{ActiveState, LoadState, UnitManager};
use crate::unit::{Target, UnitName};

/// The sub-state of an intent record: the agent is about to start the unit, systemd has not
/// been asked yet.
pub const START_PENDING: &str = "start-pending";

/// The intent records a pass must write before it acts: one for each non-global unit it starts
/// or restarts that its last published record does not show running. The record keeps what the
/// published one says was done (content, current state, start request acted on), so that
/// `flottectl start`'s wait and the API still see the start as not done; a unit never
/// published here gets `loaded` with the content it is placed with.
pub fn intents(
    actions: &[Action],
    schedule: &BTreeMap<UnitName, ScheduleEntry>,
    published: &BTreeMap<UnitName, UnitStateRecord>,
) -> Vec<(UnitName, UnitStateRecord)> {
    let starting: BTreeSet<&UnitName> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Start(u) | Action::Restart(u) => Some(u),
            _ => None,
        })
        .collect();
    starting
        .into_iter()
        .filter_map(|name| {
            let entry = schedule.get(name).filter(|e| !e.global)?;
            let record = match published.get(name) {
                Some(r) if r.active.is_running() => return None,
                Some(r) => UnitStateRecord {
                    active: ActiveState::Activating,
                    sub: START_PENDING.into(),
                    message: None,
                    ..r.clone()
                },
                None => UnitStateRecord {
                    hash: entry.hash,
                    current: Target::Loaded,
                    load: LoadState::Loaded,
                    active: ActiveState::Activating,
                    sub: START_PENDING.into(),
                    message: None,
                    started: 0,
                },
            };
            Some((name.clone(), record))
        })
        .collect()
}

impl<M: UnitManager> Agent<M> {
    /// Writes the pass's intent records and returns the actions that may go ahead: the starts
    /// of units whose intent could not be written (etcd failed, or the engine removed their
    /// schedule entry first) are dropped from this pass. A failed write is retried after a
    /// short backoff; a removed entry comes with the schedule watch's next update, which
    /// brings another pass.
    pub(super) async fn announce(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let intents = intents(&actions, &self.desired, &self.published);
        if intents.is_empty() {
            return actions;
        }
        let me = self.config.machine_id.clone();
        let mut held: BTreeSet<UnitName> = BTreeSet::new();
        for chunk in intents.chunks(MAX_TXN_OPS) {
            match self.registry.write_intents(&me, chunk, &self.lease).await {
                Ok(true) => {
                    tracing::debug!(units = ?chunk.iter().map(|(n, _)| n).collect::<Vec<_>>(), "intent records written");
                    for (name, record) in chunk {
                        self.published.insert(name.clone(), record.clone());
                    }
                }
                Ok(false) => {
                    tracing::info!(
                        units = chunk.len(),
                        "a unit to start is no longer scheduled here: not starting these yet"
                    );
                    held.extend(chunk.iter().map(|(n, _)| n.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, units = chunk.len(), "cannot write intent records: not starting these yet");
                    for (name, record) in chunk {
                        // It may have been written nonetheless: taking it as published makes
                        // the next publish correct it.
                        self.published.insert(name.clone(), record.clone());
                        let retry =
                            self.retries
                                .entry(name.clone())
                                .or_insert_with(|| super::Retry {
                                    not_before: tokio::time::Instant::now(),
                                    backoff: Backoff::new(
                                        std::time::Duration::from_millis(200),
                                        std::time::Duration::from_secs(10),
                                    ),
                                });
                        retry.not_before = tokio::time::Instant::now() + retry.backoff.next_delay();
                        held.insert(name.clone());
                    }
                }
            }
        }
        actions
            .into_iter()
            .filter(|a| match a {
                Action::Start(u) | Action::Restart(u) => !held.contains(u),
                _ => true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::UnitHash;

    fn name(n: &str) -> UnitName {
        n.parse().unwrap()
    }

    fn hash(c: char) -> UnitHash {
        c.to_string().repeat(40).parse().unwrap()
    }

    fn entry(global: bool) -> ScheduleEntry {
        ScheduleEntry {
            hash: hash('b'),
            target: Target::Launched,
            global,
            start: 3,
        }
    }

    fn published(active: ActiveState, current: Target) -> UnitStateRecord {
        UnitStateRecord {
            hash: hash('a'),
            current,
            load: LoadState::Loaded,
            active,
            sub: "dead".into(),
            message: Some("exited".into()),
            started: 2,
        }
    }

    fn intent(hash: UnitHash, current: Target, started: u64) -> UnitStateRecord {
        UnitStateRecord {
            hash,
            current,
            load: LoadState::Loaded,
            active: ActiveState::Activating,
            sub: START_PENDING.into(),
            message: None,
            started,
        }
    }

    #[test]
    fn only_starts_of_non_global_units_not_published_running_need_an_intent() {
        let u = || name("a.service");
        type Case = (
            &'static str,
            Vec<Action>,
            ScheduleEntry,
            Option<UnitStateRecord>,
            Option<UnitStateRecord>,
        );
        let cases: Vec<Case> = vec![
            (
                "a first start: loaded, with the content placed",
                vec![
                    Action::Load(u(), hash('b')),
                    Action::Reload,
                    Action::Start(u()),
                ],
                entry(false),
                None,
                Some(intent(hash('b'), Target::Loaded, 0)),
            ),
            (
                "a start of a unit published stopped keeps what was done",
                vec![Action::Start(u())],
                entry(false),
                Some(published(ActiveState::Inactive, Target::Launched)),
                Some(intent(hash('a'), Target::Launched, 2)),
            ),
            (
                "a failed unit started again",
                vec![Action::Start(u())],
                entry(false),
                Some(published(ActiveState::Failed, Target::Loaded)),
                Some(intent(hash('a'), Target::Loaded, 2)),
            ),
            (
                "a restart of a unit published stopped",
                vec![Action::Load(u(), hash('b')), Action::Restart(u())],
                entry(false),
                Some(published(ActiveState::Inactive, Target::Launched)),
                Some(intent(hash('a'), Target::Launched, 2)),
            ),
            (
                "a restart of a unit published running: the engine holds it already",
                vec![Action::Restart(u())],
                entry(false),
                Some(published(ActiveState::Active, Target::Launched)),
                None,
            ),
            (
                "published activating counts as running",
                vec![Action::Start(u())],
                entry(false),
                Some(published(ActiveState::Activating, Target::Launched)),
                None,
            ),
            (
                "a global unit is never moved",
                vec![Action::Start(u())],
                entry(true),
                None,
                None,
            ),
            (
                "a load alone starts nothing",
                vec![Action::Load(u(), hash('b'))],
                entry(false),
                None,
                None,
            ),
            (
                "a stop starts nothing",
                vec![Action::Stop(u())],
                entry(false),
                Some(published(ActiveState::Active, Target::Launched)),
                None,
            ),
        ];
        for (what, actions, entry, before, expected) in cases {
            let schedule = BTreeMap::from([(u(), entry)]);
            let published: BTreeMap<UnitName, UnitStateRecord> =
                before.into_iter().map(|r| (u(), r)).collect();
            let got = intents(&actions, &schedule, &published);
            let expected: Vec<(UnitName, UnitStateRecord)> =
                expected.into_iter().map(|r| (u(), r)).collect();
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn a_unit_not_scheduled_here_gets_no_intent_and_each_unit_one() {
        let actions = vec![
            Action::Start(name("a.service")),
            Action::Start(name("gone.service")),
            Action::Start(name("b.service")),
        ];
        let schedule = BTreeMap::from([
            (name("a.service"), entry(false)),
            (name("b.service"), entry(false)),
        ]);
        let got: Vec<UnitName> = intents(&actions, &schedule, &BTreeMap::new())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(got, vec![name("a.service"), name("b.service")]);
    }
}
