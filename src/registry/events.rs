//! The cluster's history as typed events (`wire::Event`), from one etcd watch over flotte's
//! whole prefix that carries each change's previous value. What a change means is decided by
//! `Deriver`, a pure function of the change and the engine election's candidates;
//! `EventStream` feeds it, resumes after a broken stream where it stood, and fails with
//! `Compacted` once etcd no longer has the history it has still to send.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};
use serde::de::DeserializeOwned;

use super::kv::timed;
use super::model::{MachineRecord, PlacementRecord, ReasonRecord, UnitRecord, UnitStateRecord};
use super::{Keys, Registry, RegistryError};
use crate::backoff::Backoff;
use crate::machine::MachineId;
use crate::wire::{Event, EventKind};

/// One key's change as etcd's watch reports it: `None` values are an absent previous value
/// (the key was created) or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    pub prev: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The revision the key was created at (0 for a deletion).
    pub create_revision: i64,
}

/// Turns changes into events. Keeps what one change alone does not tell: the engine
/// election's candidates, since the leader is the oldest of them.
#[derive(Debug, Clone)]
pub struct Deriver {
    keys: Keys,
    /// Each candidate key with its creation revision and the machine campaigning.
    candidates: BTreeMap<Vec<u8>, (i64, Option<MachineId>)>,
}

impl Deriver {
    /// `candidates`: the election's keys at the revision the events follow, each with its
    /// creation revision and value.
    pub fn new(keys: Keys, candidates: impl IntoIterator<Item = (Vec<u8>, i64, Vec<u8>)>) -> Self {
        let candidates = candidates
            .into_iter()
            .map(|(key, created, value)| (key, (created, machine_of(&value))))
            .collect();
        Deriver { keys, candidates }
    }

    /// The machine of the oldest candidate: the engine that leads.
    pub fn leader(&self) -> Option<MachineId> {
        self.candidates
            .values()
            .min_by_key(|(created, _)| *created)
            .and_then(|(_, machine)| machine.clone())
    }

    pub fn derive(&mut self, change: &Change) -> Vec<EventKind> {
        if !self.keys.is_election_candidate(&change.key) {
            return events_of(
                &self.keys,
                &change.key,
                change.prev.as_deref(),
                change.value.as_deref(),
            );
        }
        let before = self.leader();
        match &change.value {
            Some(v) => {
                self.candidates
                    .insert(change.key.clone(), (change.create_revision, machine_of(v)));
            }
            None => {
                self.candidates.remove(&change.key);
            }
        }
        let after = self.leader();
        if before == after {
            Vec::new()
        } else {
            vec![EventKind::LeaderChanged { leader: after }]
        }
    }
}

fn machine_of(value: &[u8]) -> Option<MachineId> {
    MachineId::new(std::str::from_utf8(value).ok()?).ok()
}

/// What a change of any key but the election's means: `prev` is the value before (`None`
/// when the key is new), `value` after (`None` when it was deleted). A value that does not
/// decode counts as absent; keys of no event (contents, schedules, metadata, announcers) give
/// none.
pub fn events_of(
    keys: &Keys,
    key: &[u8],
    prev: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Vec<EventKind> {
    if let Some(unit) = keys.parse_unit(key) {
        let before = decoded::<UnitRecord>(key, prev);
        let Some(raw) = value else {
            return vec![EventKind::Destroyed { unit }];
        };
        let Some(after) = decoded::<UnitRecord>(key, Some(raw)) else {
            return Vec::new();
        };
        return match before {
            None => vec![EventKind::Submitted {
                unit,
                desired: after.desired,
                replaced: false,
            }],
            Some(before) => {
                let mut events = Vec::new();
                if before.hash != after.hash {
                    events.push(EventKind::Submitted {
                        unit: unit.clone(),
                        desired: after.desired,
                        replaced: true,
                    });
                }
                if before.desired != after.desired {
                    events.push(EventKind::DesiredStateChanged {
                        unit: unit.clone(),
                        from: before.desired,
                        to: after.desired,
                    });
                }
                if before.start != after.start {
                    events.push(EventKind::StartRequested {
                        unit,
                        request: after.start,
                    });
                }
                events
            }
        };
    }
    if let Some(unit) = keys.parse_placement(key) {
        if value.is_none() {
            return vec![EventKind::Unplaced { unit }];
        }
        let before = decoded::<PlacementRecord>(key, prev);
        return match decoded::<PlacementRecord>(key, value) {
            Some(after) if before.as_ref() != Some(&after) => vec![EventKind::Placed {
                unit,
                machines: after.machines,
            }],
            _ => Vec::new(),
        };
    }
    if let Some(unit) = keys.parse_reason(key) {
        let before = decoded::<ReasonRecord>(key, prev);
        return match decoded::<ReasonRecord>(key, value) {
            Some(after) if before.as_ref() != Some(&after) => vec![EventKind::Unplaceable {
                unit,
                reason: after.reason,
            }],
            // A reason withdrawn says nothing by itself: `placed` follows when it is placed.
            _ => Vec::new(),
        };
    }
    if let Some((unit, machine)) = keys.parse_state(key) {
        if value.is_none() {
            return vec![EventKind::StateRemoved { unit, machine }];
        }
        let before = decoded::<UnitStateRecord>(key, prev);
        return match decoded::<UnitStateRecord>(key, value) {
            Some(after) if before.as_ref() != Some(&after) => vec![EventKind::StateChanged {
                unit,
                machine,
                load: after.load,
                active: after.active,
                sub: after.sub,
                message: after.message,
            }],
            _ => Vec::new(),
        };
    }
    if let Some((machine, _)) = keys.parse_metadata(key) {
        return vec![EventKind::MachineChanged { machine }];
    }
    // Drained or undrained: a client showing machines reads them again.
    if let Some(machine) = keys.parse_drain(key) {
        return vec![EventKind::MachineChanged { machine }];
    }
    if let Some(machine) = keys.parse_machine(key) {
        return match (prev, value) {
            (_, None) => vec![EventKind::MachineLost {
                machine,
                hostname: decoded::<MachineRecord>(key, prev)
                    .map(|r| r.hostname)
                    .unwrap_or_default(),
            }],
            (None, Some(raw)) => match decoded::<MachineRecord>(key, Some(raw)) {
                Some(r) => vec![EventKind::MachineJoined {
                    machine,
                    ip: r.ip,
                    hostname: r.hostname,
                }],
                None => Vec::new(),
            },
            // A registration rewritten in place: the machine never left.
            (Some(before), Some(after)) => {
                match (
                    decoded::<MachineRecord>(key, Some(before)),
                    decoded::<MachineRecord>(key, Some(after)),
                ) {
                    (Some(b), Some(a)) if a == b => Vec::new(),
                    _ => vec![EventKind::MachineChanged { machine }],
                }
            }
        };
    }
    Vec::new()
}

fn decoded<V: DeserializeOwned>(key: &[u8], raw: Option<&[u8]>) -> Option<V> {
    super::watch::decode_value(key, raw?)
}

/// The events of one etcd watch response, in order; every event of a revision comes in the
/// same batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    pub events: Vec<Event>,
    /// Every change up to this revision has been turned into events.
    pub revision: i64,
}

/// Events after a revision, as they happen: one etcd watch over flotte's prefix.
pub struct EventStream {
    client: Client,
    prefix: String,
    deriver: Deriver,
    /// Every change up to this revision has been derived.
    revision: i64,
    stream: Option<WatchStream>,
    backoff: Backoff,
}

impl Registry {
    /// Follows the cluster's events after revision `since` (after etcd's current revision
    /// when `None`). Fails with `Compacted` when etcd no longer has the history after `since`,
    /// `FutureRevision` when `since` is ahead of etcd.
    pub async fn events(&self, since: Option<i64>) -> Result<EventStream, RegistryError> {
        let candidates = self.keys.election_candidates();
        let mut options = GetOptions::new().with_prefix();
        if let Some(since) = since {
            // etcd reads revision 0 as "now"; at revision 1 (its first) nothing exists yet.
            options = options.with_revision(since.max(1));
        }
        let what = format!("listing {candidates}");
        let resp = timed(
            "range",
            what.clone(),
            self.client().get(candidates.as_str(), Some(options)),
        )
        .await?
        .map_err(|e| revision_error(since, what, e))?;
        let revision = match since {
            Some(since) => since,
            None => resp.header().map_or(0, |h| h.revision()),
        };
        let deriver = Deriver::new(
            self.keys.clone(),
            resp.kvs()
                .iter()
                .map(|kv| (kv.key().to_vec(), kv.create_revision(), kv.value().to_vec())),
        );
        Ok(EventStream {
            client: self.client(),
            prefix: self.keys.prefix().to_owned(),
            deriver,
            revision,
            stream: None,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        })
    }
}

/// etcd's answers to a read at a revision it does not have.
fn revision_error(since: Option<i64>, what: String, e: etcd_client::Error) -> RegistryError {
    let message = match &e {
        etcd_client::Error::GRpcStatus(status) => status.message().to_owned(),
        _ => String::new(),
    };
    match since {
        Some(revision) if message.contains("required revision has been compacted") => {
            RegistryError::Compacted { revision }
        }
        Some(revision) if message.contains("required revision is a future revision") => {
            RegistryError::FutureRevision { revision }
        }
        _ => RegistryError::etcd(what, e),
    }
}

impl EventStream {
    /// The revision the stream follows changes after, before `next` returned anything.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The leader at `revision()`, by the election's keys.
    pub fn leader(&self) -> Option<MachineId> {
        self.deriver.leader()
    }

    /// The next changes that make events. A broken watch is reopened after a backoff where it
    /// stood, so this waits through an etcd outage; it fails only with `Compacted`, when the
    /// history still to send is gone (the stream cannot go on).
    pub async fn next(&mut self) -> Result<EventBatch, RegistryError> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.open().await?;
                continue;
            };
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.broken("the watch stream ended".to_owned()).await;
                    continue;
                }
                Err(e) => {
                    self.broken(e.to_string()).await;
                    continue;
                }
            };
            if resp.compact_revision() > 0 {
                return Err(RegistryError::Compacted {
                    revision: self.revision,
                });
            }
            if resp.canceled() {
                self.broken(format!("canceled: {}", resp.cancel_reason()))
                    .await;
                continue;
            }
            self.backoff.reset();
            let mut events = Vec::new();
            // Revisions only grow within a response, and a response holds whole revisions:
            // only those derived before it, by the watch a reopen replaced, are skipped.
            let derived = self.revision;
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                let revision = kv.mod_revision();
                if revision <= derived {
                    continue;
                }
                let change = Change {
                    key: kv.key().to_vec(),
                    prev: e.prev_kv().map(|p| p.value().to_vec()),
                    value: match e.event_type() {
                        EventType::Put => Some(kv.value().to_vec()),
                        EventType::Delete => None,
                    },
                    create_revision: kv.create_revision(),
                };
                events.extend(
                    self.deriver
                        .derive(&change)
                        .into_iter()
                        .map(|kind| Event { revision, kind }),
                );
                self.revision = revision;
            }
            if !events.is_empty() {
                return Ok(EventBatch {
                    events,
                    revision: self.revision,
                });
            }
        }
    }

    /// Opens the watch after `revision`, retrying with backoff until etcd answers.
    async fn open(&mut self) -> Result<(), RegistryError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(self.revision + 1);
        let opened = async {
            let mut stream = self
                .client
                .watch(self.prefix.as_str(), Some(options))
                .await?;
            let first = stream.message().await?;
            Ok::<_, etcd_client::Error>((stream, first))
        };
        match opened.await {
            Ok((_, Some(resp))) if resp.compact_revision() > 0 => Err(RegistryError::Compacted {
                revision: self.revision,
            }),
            Ok((stream, Some(resp))) if resp.created() && !resp.canceled() => {
                self.stream = Some(stream);
                Ok(())
            }
            Ok((_, resp)) => {
                let why = resp.map_or("stream closed".to_owned(), |r| r.cancel_reason().to_owned());
                self.broken(format!("not created: {why}")).await;
                Ok(())
            }
            Err(e) => {
                self.broken(e.to_string()).await;
                Ok(())
            }
        }
    }

    async fn broken(&mut self, why: String) {
        self.stream = None;
        let delay = self.backoff.next_delay();
        tracing::warn!(prefix = %self.prefix, error = %why, retry_in = ?delay, "event watch failed");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::ScheduleEntry;
    use crate::systemd::{ActiveState, LoadState};
    use crate::unit::{DesiredState, Target, UnitHash, UnitName};

    fn keys() -> Keys {
        Keys::new("/flotte/").unwrap()
    }

    fn id(c: char) -> MachineId {
        MachineId::new(&c.to_string().repeat(32)).unwrap()
    }

    fn name(n: &str) -> UnitName {
        UnitName::new(n).unwrap()
    }

    fn hash(c: char) -> UnitHash {
        c.to_string().repeat(40).parse().unwrap()
    }

    fn json(v: &impl serde::Serialize) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn unit(h: char, desired: DesiredState) -> Vec<u8> {
        json(&UnitRecord {
            hash: hash(h),
            desired,
            start: 0,
        })
    }

    fn state(active: &str, sub: &str, message: Option<&str>) -> Vec<u8> {
        json(&UnitStateRecord {
            hash: hash('a'),
            current: Target::Launched,
            load: LoadState::Loaded,
            active: ActiveState::from(active),
            sub: sub.into(),
            message: message.map(str::to_owned),
            started: 0,
        })
    }

    fn machine(c: char, hostname: &str) -> Vec<u8> {
        json(&MachineRecord {
            id: id(c),
            ip: "10.0.0.1".into(),
            metadata: Default::default(),
            version: "0.1.0".into(),
            api: None,
            hostname: hostname.into(),
            capacity: None,
        })
    }

    /// What happens, the key, its value before and after, and the events expected.
    type Case = (
        &'static str,
        String,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<EventKind>,
    );

    #[test]
    fn each_key_change_means_its_events() {
        use DesiredState::*;
        let k = keys();
        let web = name("web.service");
        let m = id('a');
        let placement = |ms: &[MachineId]| {
            json(&PlacementRecord {
                machines: ms.to_vec(),
            })
        };
        let reason = |r: &str| json(&ReasonRecord { reason: r.into() });
        let cases: Vec<Case> = vec![
            (
                "a new unit is submitted",
                k.unit(&web),
                None,
                Some(unit('a', Launched)),
                vec![EventKind::Submitted {
                    unit: web.clone(),
                    desired: Launched,
                    replaced: false,
                }],
            ),
            (
                "a desired state change",
                k.unit(&web),
                Some(unit('a', Loaded)),
                Some(unit('a', Launched)),
                vec![EventKind::DesiredStateChanged {
                    unit: web.clone(),
                    from: Loaded,
                    to: Launched,
                }],
            ),
            (
                "a start request for a launched unit",
                k.unit(&web),
                Some(unit('a', Launched)),
                Some(json(&UnitRecord {
                    hash: hash('a'),
                    desired: Launched,
                    start: 3,
                })),
                vec![EventKind::StartRequested {
                    unit: web.clone(),
                    request: 3,
                }],
            ),
            (
                "new content and a new state at once",
                k.unit(&web),
                Some(unit('a', Inactive)),
                Some(unit('b', Loaded)),
                vec![
                    EventKind::Submitted {
                        unit: web.clone(),
                        desired: Loaded,
                        replaced: true,
                    },
                    EventKind::DesiredStateChanged {
                        unit: web.clone(),
                        from: Inactive,
                        to: Loaded,
                    },
                ],
            ),
            (
                "the same record written again",
                k.unit(&web),
                Some(unit('a', Loaded)),
                Some(unit('a', Loaded)),
                vec![],
            ),
            (
                "a unit deleted",
                k.unit(&web),
                Some(unit('a', Loaded)),
                None,
                vec![EventKind::Destroyed { unit: web.clone() }],
            ),
            (
                "a unit deleted whose previous value is unknown",
                k.unit(&web),
                None,
                None,
                vec![EventKind::Destroyed { unit: web.clone() }],
            ),
            (
                "a unit value flotte cannot read",
                k.unit(&web),
                None,
                Some(b"{not json".to_vec()),
                vec![],
            ),
            (
                "a first placement",
                k.placement(&web),
                None,
                Some(placement(std::slice::from_ref(&m))),
                vec![EventKind::Placed {
                    unit: web.clone(),
                    machines: vec![m.clone()],
                }],
            ),
            (
                "a move",
                k.placement(&web),
                Some(placement(&[id('b')])),
                Some(placement(std::slice::from_ref(&m))),
                vec![EventKind::Placed {
                    unit: web.clone(),
                    machines: vec![m.clone()],
                }],
            ),
            (
                "a placement rewritten unchanged",
                k.placement(&web),
                Some(placement(std::slice::from_ref(&m))),
                Some(placement(std::slice::from_ref(&m))),
                vec![],
            ),
            (
                "a placement removed",
                k.placement(&web),
                Some(placement(std::slice::from_ref(&m))),
                None,
                vec![EventKind::Unplaced { unit: web.clone() }],
            ),
            (
                "a reason",
                k.reason(&web),
                None,
                Some(reason("no machine has metadata region=eu")),
                vec![EventKind::Unplaceable {
                    unit: web.clone(),
                    reason: "no machine has metadata region=eu".into(),
                }],
            ),
            (
                "a reason that changed",
                k.reason(&web),
                Some(reason("a")),
                Some(reason("b")),
                vec![EventKind::Unplaceable {
                    unit: web.clone(),
                    reason: "b".into(),
                }],
            ),
            (
                "a reason withdrawn",
                k.reason(&web),
                Some(reason("a")),
                None,
                vec![],
            ),
            (
                "a first state",
                k.state(&web, &m),
                None,
                Some(state("activating", "start", None)),
                vec![EventKind::StateChanged {
                    unit: web.clone(),
                    machine: m.clone(),
                    load: LoadState::Loaded,
                    active: ActiveState::Activating,
                    sub: "start".into(),
                    message: None,
                }],
            ),
            (
                "a failure with systemd's message",
                k.state(&web, &m),
                Some(state("active", "running", None)),
                Some(state("failed", "failed", Some("exit code 1"))),
                vec![EventKind::StateChanged {
                    unit: web.clone(),
                    machine: m.clone(),
                    load: LoadState::Loaded,
                    active: ActiveState::Failed,
                    sub: "failed".into(),
                    message: Some("exit code 1".into()),
                }],
            ),
            (
                "a state rewritten unchanged",
                k.state(&web, &m),
                Some(state("active", "running", None)),
                Some(state("active", "running", None)),
                vec![],
            ),
            (
                "a state removed",
                k.state(&web, &m),
                Some(state("active", "running", None)),
                None,
                vec![EventKind::StateRemoved {
                    unit: web.clone(),
                    machine: m.clone(),
                }],
            ),
            (
                "a machine joins",
                k.machine(&m),
                None,
                Some(machine('a', "host-1")),
                vec![EventKind::MachineJoined {
                    machine: m.clone(),
                    ip: "10.0.0.1".into(),
                    hostname: "host-1".into(),
                }],
            ),
            (
                "a registration rewritten",
                k.machine(&m),
                Some(machine('a', "host-1")),
                Some(machine('a', "host-1")),
                vec![],
            ),
            (
                "a registration rewritten with another address",
                k.machine(&m),
                Some(machine('a', "host-1")),
                Some(machine('a', "host-one")),
                vec![EventKind::MachineChanged { machine: m.clone() }],
            ),
            (
                "a metadata override",
                k.metadata_key(&m, "disk"),
                None,
                Some(b"{\"set\":\"ssd\"}".to_vec()),
                vec![EventKind::MachineChanged { machine: m.clone() }],
            ),
            (
                "a machine drained",
                k.drain(&m),
                None,
                Some(b"{}".to_vec()),
                vec![EventKind::MachineChanged { machine: m.clone() }],
            ),
            (
                "a machine undrained",
                k.drain(&m),
                Some(b"{}".to_vec()),
                None,
                vec![EventKind::MachineChanged { machine: m.clone() }],
            ),
            (
                "a machine lost",
                k.machine(&m),
                Some(machine('a', "host-1")),
                None,
                vec![EventKind::MachineLost {
                    machine: m.clone(),
                    hostname: "host-1".into(),
                }],
            ),
            (
                "a schedule entry is no event of its own",
                k.schedule(&m, &web),
                None,
                Some(json(&ScheduleEntry {
                    hash: hash('a'),
                    target: Target::Launched,
                    global: false,
                    start: 0,
                })),
                vec![],
            ),
            (
                "content is no event",
                k.content(&hash('a')),
                None,
                Some(b"{}".to_vec()),
                vec![],
            ),
            (
                "a key outside flotte's layout",
                "/flotte/units/".into(),
                None,
                Some(unit('a', Loaded)),
                vec![],
            ),
        ];
        for (what, key, prev, value, expected) in cases {
            assert_eq!(
                events_of(&k, key.as_bytes(), prev.as_deref(), value.as_deref()),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn the_oldest_candidate_leads_and_only_a_new_leader_is_an_event() {
        let k = keys();
        let candidate = |lease: &str| format!("{}{lease}", k.election_candidates()).into_bytes();
        let (a, b, c) = (id('a'), id('b'), id('c'));
        let mut deriver = Deriver::new(
            k.clone(),
            [
                (candidate("2"), 20, b.as_str().as_bytes().to_vec()),
                (candidate("1"), 10, a.as_str().as_bytes().to_vec()),
            ],
        );
        assert_eq!(deriver.leader(), Some(a.clone()));
        let put = |key: Vec<u8>, created: i64, m: &MachineId| Change {
            key,
            prev: None,
            value: Some(m.as_str().as_bytes().to_vec()),
            create_revision: created,
        };
        let delete = |key: Vec<u8>| Change {
            key,
            prev: None,
            value: None,
            create_revision: 0,
        };
        let steps: Vec<(&str, Change, Vec<EventKind>)> = vec![
            (
                "a third candidate queues",
                put(candidate("3"), 30, &c),
                vec![],
            ),
            ("a follower resigns", delete(candidate("2")), vec![]),
            (
                "the leader's lease expires: the oldest left leads",
                delete(candidate("1")),
                vec![EventKind::LeaderChanged {
                    leader: Some(c.clone()),
                }],
            ),
            (
                "the last candidate goes: nobody leads",
                delete(candidate("3")),
                vec![EventKind::LeaderChanged { leader: None }],
            ),
            (
                "a candidate alone leads at once",
                put(candidate("4"), 40, &a),
                vec![EventKind::LeaderChanged {
                    leader: Some(a.clone()),
                }],
            ),
            (
                "the election key's own prefix is no candidate",
                delete(k.election().into_bytes()),
                vec![],
            ),
        ];
        for (what, change, expected) in steps {
            assert_eq!(deriver.derive(&change), expected, "{what}");
        }
    }
}
