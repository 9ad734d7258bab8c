//! The churn run's invariants, as pure functions of snapshots: every key under the registry's
//! prefix (with its lease, and the leases alive), and what each host has (unit files, what
//! its systemd knows and runs). Each check returns what it found wrong, in words; none means
//! the invariant holds.

use std::collections::{BTreeMap, BTreeSet};

use flotte::machine::MachineId;
use flotte::registry::{
    Keys, MachineRecord, MetadataOverride, PlacementRecord, ScheduleEntry, UnitRecord,
    UnitStateRecord,
};
use flotte::unit::{DesiredState, Target, UnitFile};

use super::model::{Model, Rule, is_global_name};

/// One etcd key as read: its value and its lease (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub lease: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RegistrySnapshot {
    pub kvs: Vec<Kv>,
    /// The leases etcd has (read just after the keys).
    pub live_leases: BTreeSet<i64>,
}

/// One unit as a host's systemd reports it (only units it knows: not `not-found`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSeen {
    pub load: String,
    pub active: String,
    /// The main process's command line, while it has one.
    pub cmdline: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HostSnapshot {
    pub id: MachineId,
    /// The agent's units directory: file name → content.
    pub files: BTreeMap<String, String>,
    pub units: BTreeMap<String, UnitSeen>,
}

/// The registry's keys, decoded; a key that is not flotte's, or does not decode, is in `bad`.
#[derive(Debug, Default)]
pub struct Decoded {
    pub machines: BTreeMap<MachineId, (MachineRecord, i64)>,
    pub overrides: BTreeMap<(MachineId, String), MetadataOverride>,
    pub drains: BTreeSet<MachineId>,
    pub units: BTreeMap<String, UnitRecord>,
    pub contents: BTreeSet<String>,
    pub schedule: BTreeMap<(MachineId, String), ScheduleEntry>,
    pub placements: BTreeMap<String, Vec<MachineId>>,
    pub reasons: BTreeSet<String>,
    pub states: BTreeMap<(String, MachineId), (UnitStateRecord, i64)>,
    /// Engine candidates: (lease in the key, lease of the key, machine in the value).
    pub candidates: Vec<(String, i64, String)>,
    /// Keys owned by a lease of their own (announcers, service instances).
    pub leased: Vec<(String, i64)>,
    pub bad: Vec<String>,
}

fn json<T: serde::de::DeserializeOwned>(kv: &Kv, bad: &mut Vec<String>) -> Option<T> {
    match serde_json::from_slice(&kv.value) {
        Ok(v) => Some(v),
        Err(e) => {
            bad.push(format!("key {} does not decode: {e}", kv.key));
            None
        }
    }
}

pub fn decode(keys: &Keys, registry: &RegistrySnapshot) -> Decoded {
    let mut d = Decoded::default();
    for kv in &registry.kvs {
        let k = kv.key.as_bytes();
        let bad = &mut d.bad;
        if let Some(m) = keys.parse_machine(k) {
            if let Some(r) = json::<MachineRecord>(kv, bad) {
                d.machines.insert(m, (r, kv.lease));
            }
        } else if let Some((m, key)) = keys.parse_metadata(k) {
            if let Some(o) = json(kv, bad) {
                d.overrides.insert((m, key), o);
            }
        } else if let Some(m) = keys.parse_drain(k) {
            d.drains.insert(m);
        } else if let Some(u) = keys.parse_unit(k) {
            if let Some(r) = json(kv, bad) {
                d.units.insert(u.to_string(), r);
            }
        } else if let Some(h) = keys.parse_content(k) {
            d.contents.insert(h.to_string());
        } else if let Some((m, u)) = keys.parse_schedule(k) {
            if let Some(e) = json(kv, bad) {
                d.schedule.insert((m, u.to_string()), e);
            }
        } else if let Some(u) = keys.parse_placement(k) {
            if let Some(p) = json::<PlacementRecord>(kv, bad) {
                d.placements.insert(u.to_string(), p.machines);
            }
        } else if let Some(u) = keys.parse_reason(k) {
            d.reasons.insert(u.to_string());
        } else if let Some((u, m)) = keys.parse_state(k) {
            if let Some(s) = json(kv, bad) {
                d.states.insert((u.to_string(), m), (s, kv.lease));
            }
        } else if keys.is_election_candidate(k) {
            let lease = kv.key.rsplit('/').next().unwrap_or_default().to_owned();
            let value = String::from_utf8_lossy(&kv.value).into_owned();
            d.candidates.push((lease, kv.lease, value));
        } else if keys.parse_instance(k).is_some()
            || kv.key.starts_with(&format!("{}announcers/", keys.prefix()))
        {
            d.leased.push((kv.key.clone(), kv.lease));
        } else {
            d.bad.push(format!("key {} is none of flotte's", kv.key));
        }
    }
    d
}

/// Every key has an owner: a live lease for what lives under one (the machine's own for its
/// unit states), a unit for schedule, placement, reason and state keys, a known machine for
/// metadata and drains, and every content blob a unit or a schedule entry that refers to it.
pub fn check_owners(d: &Decoded, registry: &RegistrySnapshot, known: &[MachineId]) -> Vec<String> {
    let mut v = d.bad.clone();
    let live = |lease: i64| lease != 0 && registry.live_leases.contains(&lease);
    for (m, (r, lease)) in &d.machines {
        if !live(*lease) {
            v.push(format!(
                "machine {m} is registered under no live lease ({lease:x})"
            ));
        }
        if &r.id != m {
            v.push(format!("machine key {m} holds the record of {}", r.id));
        }
    }
    for (m, k) in d.overrides.keys() {
        if !known.contains(m) {
            v.push(format!(
                "metadata override {m}/{k} of a machine that never was"
            ));
        }
    }
    for m in &d.drains {
        if !known.contains(m) {
            v.push(format!("drain mark of {m}, a machine that never was"));
        }
    }
    for (u, r) in &d.units {
        if !d.contents.contains(&r.hash.to_string()) {
            v.push(format!(
                "unit {u} refers to content {} that is not stored",
                r.hash
            ));
        }
    }
    let referenced: BTreeSet<String> = d
        .units
        .values()
        .map(|r| r.hash.to_string())
        .chain(d.schedule.values().map(|e| e.hash.to_string()))
        .collect();
    for h in &d.contents {
        if !referenced.contains(h) {
            v.push(format!(
                "content {h} is referred to by no unit and no schedule entry"
            ));
        }
    }
    let mut scheduled: BTreeMap<&str, BTreeSet<&MachineId>> = BTreeMap::new();
    for (m, u) in d.schedule.keys() {
        scheduled.entry(u).or_default().insert(m);
        if !d.units.contains_key(u) {
            v.push(format!(
                "schedule entry {m}/{u} of a unit that is not submitted"
            ));
        }
        if !d.machines.contains_key(m) {
            v.push(format!(
                "schedule entry {m}/{u} on a machine that is not registered"
            ));
        }
    }
    for (u, machines) in &d.placements {
        if !d.units.contains_key(u) {
            v.push(format!("placement of {u}, a unit that is not submitted"));
        }
        let placed: BTreeSet<&MachineId> = machines.iter().collect();
        let entries = scheduled.get(u.as_str()).cloned().unwrap_or_default();
        if placed != entries {
            v.push(format!(
                "placement of {u} says {placed:?}, its schedule entries {entries:?}"
            ));
        }
    }
    for u in scheduled.keys() {
        if !d.placements.contains_key(*u) {
            v.push(format!("{u} has schedule entries and no placement"));
        }
    }
    for u in &d.reasons {
        if !d.units.contains_key(u) {
            v.push(format!("reason for {u}, a unit that is not submitted"));
        }
        if d.placements.contains_key(u) {
            v.push(format!("{u} is placed and has a reason not to be"));
        }
    }
    for ((u, m), (_, lease)) in &d.states {
        match d.machines.get(m) {
            Some((_, owner)) if owner == lease => {}
            Some((_, owner)) => v.push(format!(
                "state of {u} on {m} under lease {lease:x}, not the machine's {owner:x}"
            )),
            None => v.push(format!(
                "state of {u} on {m}, a machine that is not registered"
            )),
        }
        if !d.schedule.contains_key(&(m.clone(), u.clone())) {
            v.push(format!("state of {u} on {m}, where it is not scheduled"));
        }
    }
    let mut by_machine: BTreeMap<&str, usize> = BTreeMap::new();
    for (key_lease, lease, machine) in &d.candidates {
        if !live(*lease) || i64::from_str_radix(key_lease, 16).ok() != Some(*lease) {
            v.push(format!(
                "engine candidate {key_lease} of {machine} under lease {lease:x}, not live"
            ));
        }
        *by_machine.entry(machine).or_default() += 1;
    }
    for (machine, n) in by_machine {
        if n > 1 {
            v.push(format!("{n} engine candidates of machine {machine}"));
        }
    }
    for (key, lease) in &d.leased {
        if !live(*lease) {
            v.push(format!("key {key} under no live lease"));
        }
    }
    v
}

/// The registry holds what the run asked for: its units with their content and desired
/// state, its metadata overrides, every host that runs registered, and schedule entries that
/// carry each unit's current content and desired state.
pub fn check_registry(model: &Model, d: &Decoded) -> Vec<String> {
    let mut v = Vec::new();
    let ids = model.ids();
    for (u, want) in &model.units {
        match d.units.get(u) {
            None => v.push(format!("unit {u} was lost: not in the registry")),
            Some(r) => {
                if r.desired != want.desired {
                    v.push(format!(
                        "unit {u} desired {} in the registry, {} asked",
                        r.desired, want.desired
                    ));
                }
                if r.hash != want.spec.hash(&ids) {
                    v.push(format!(
                        "unit {u} holds content {}, not version {}'s",
                        r.hash, want.spec.version
                    ));
                }
            }
        }
    }
    for u in d.units.keys() {
        if !model.units.contains_key(u) {
            v.push(format!(
                "unit {u} is in the registry, destroyed or never submitted"
            ));
        }
    }
    for ((m, u), e) in &d.schedule {
        let Some(want) = model.units.get(u) else {
            continue;
        };
        match Target::for_desired(want.desired) {
            None => v.push(format!("{u} is desired inactive and scheduled on {m}")),
            Some(t) if t != e.target => v.push(format!(
                "{u} scheduled on {m} as {t:?}, desired {}",
                want.desired
            )),
            Some(_) => {}
        }
        if e.hash != want.spec.hash(&ids) {
            v.push(format!("{u} scheduled on {m} with old content {}", e.hash));
        }
        if e.global != want.spec.global {
            v.push(format!("{u} scheduled on {m} with global={}", e.global));
        }
    }
    for h in &model.hosts {
        let have: BTreeMap<&String, Option<&String>> = d
            .overrides
            .iter()
            .filter(|((m, _), _)| m == &h.id)
            .map(|((_, k), o)| {
                (
                    k,
                    match o {
                        MetadataOverride::Set(v) => Some(v),
                        MetadataOverride::Removed => None,
                    },
                )
            })
            .collect();
        let want: BTreeMap<&String, Option<&String>> =
            h.overrides.iter().map(|(k, o)| (k, o.as_ref())).collect();
        if have != want {
            v.push(format!(
                "metadata overrides of {}: {have:?}, set {want:?}",
                h.id
            ));
        }
        let up = h.life == super::model::Life::Up;
        if up != d.machines.contains_key(&h.id) {
            v.push(format!(
                "machine {} is {}registered, and its host {}",
                h.id,
                if up { "not " } else { "" },
                if up { "runs" } else { "is down" }
            ));
        }
    }
    v
}

/// Each host has exactly what the registry schedules on it: a file with the scheduled
/// content and a unit its systemd knows, running or not as scheduled, its state reported
/// under the machine's lease as seen; and nothing else of the run's units.
pub fn check_hosts(d: &Decoded, hosts: &[HostSnapshot]) -> Vec<String> {
    let mut v = Vec::new();
    for h in hosts {
        let m = &h.id;
        for (name, text) in &h.files {
            if !d.units.contains_key(name) {
                v.push(format!("{m} has a file {name} of no unit in the registry"));
            }
            match d.schedule.get(&(m.clone(), name.clone())) {
                None => v.push(format!("{m} has a file {name} not scheduled there")),
                Some(e) => match UnitFile::parse(text.as_bytes()) {
                    Ok(p) if p.file.hash() == e.hash => {}
                    Ok(p) => v.push(format!(
                        "{m}'s file {name} has content {}, scheduled {}",
                        p.file.hash(),
                        e.hash
                    )),
                    Err(err) => v.push(format!("{m}'s file {name} does not parse: {err}")),
                },
            }
        }
        for name in h.units.keys() {
            if !d.units.contains_key(name) {
                v.push(format!("{m}'s systemd has {name}, no unit in the registry"));
            } else if !d.schedule.contains_key(&(m.clone(), name.clone())) {
                v.push(format!("{m}'s systemd has {name}, not scheduled there"));
            }
        }
        for ((sm, name), e) in &d.schedule {
            if sm != m {
                continue;
            }
            if !h.files.contains_key(name) {
                v.push(format!(
                    "{name} is scheduled on {m}, which has no file of it"
                ));
            }
            let want = match e.target {
                Target::Launched => "active",
                Target::Loaded => "inactive",
            };
            match h.units.get(name) {
                None => v.push(format!(
                    "{name} is scheduled on {m}, whose systemd lacks it"
                )),
                Some(seen) => {
                    if seen.load != "loaded" || seen.active != want {
                        v.push(format!(
                            "{name} is scheduled {:?} on {m}, systemd has it {}/{}",
                            e.target, seen.load, seen.active
                        ));
                    }
                }
            }
            match d.states.get(&(name.clone(), m.clone())) {
                None => v.push(format!("{name} on {m} has no state reported")),
                Some((s, _)) => {
                    let seen = h.units.get(name).map(|u| u.active.as_str());
                    if Some(s.active.as_str()) != seen || s.hash != e.hash {
                        v.push(format!(
                            "{name} on {m} reported {} with {}, systemd has {seen:?}, scheduled {}",
                            s.active, s.hash, e.hash
                        ));
                    }
                }
            }
        }
    }
    v
}

/// `Conflicts=`'s patterns: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// Non-global units running (per `running`, host by host) on more than one host.
pub fn running_twice<'a>(
    running: impl IntoIterator<Item = (usize, &'a [String])>,
) -> BTreeMap<String, Vec<usize>> {
    let mut on: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (host, names) in running {
        for n in names {
            if !is_global_name(n) {
                on.entry(n.clone()).or_default().push(host);
            }
        }
    }
    on.retain(|_, hosts| hosts.len() > 1);
    on
}

/// What a non-global unit running on several hosts at once means, given the hosts the
/// registry schedules it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Twice {
    /// Scheduled on more than one of them: the engine placed a non-global unit twice.
    Placed(Vec<usize>),
    /// Scheduled on at most one of them: the others run copies their agents have yet to
    /// stop (a move or a destroy under way whose new copy did not wait for the old one).
    Leftover(Vec<usize>),
}

pub fn judge_twice(running_on: &[usize], scheduled_on: &BTreeSet<usize>) -> Twice {
    let placed: Vec<usize> = running_on
        .iter()
        .copied()
        .filter(|h| scheduled_on.contains(h))
        .collect();
    if placed.len() > 1 {
        Twice::Placed(placed)
    } else {
        Twice::Leftover(
            running_on
                .iter()
                .copied()
                .filter(|h| !scheduled_on.contains(h))
                .collect(),
        )
    }
}

/// How long each leftover copy (unit, host) has been seen running in a row.
#[derive(Debug, Default)]
pub struct Leftovers {
    since: BTreeMap<(String, usize), std::time::Duration>,
}

impl Leftovers {
    /// Records the leftover copies of one sample taken at `now`, forgets those it lacks, and
    /// returns those seen for longer than `limit`, with how long.
    pub fn observe(
        &mut self,
        now: std::time::Duration,
        seen: &[(String, usize)],
        limit: std::time::Duration,
    ) -> Vec<(String, usize, std::time::Duration)> {
        self.since.retain(|k, _| seen.contains(k));
        let mut over = Vec::new();
        for k in seen {
            let first = *self.since.entry(k.clone()).or_insert(now);
            if now - first > limit {
                over.push((k.0.clone(), k.1, now - first));
            }
        }
        over
    }
}

/// Every unit runs as asked and where its rules allow, judged from the hosts alone (a unit
/// is on a host when its systemd knows it): inactive units nowhere; a global unit on every
/// host whose metadata it matches; a normal unit on at most one host that satisfies its
/// MachineID, metadata, MachineOf, Conflicts (both ways) and Replaces (both ways), or — with
/// a reason in the registry — nowhere, and then no host could take it as the others are
/// placed (the scheduler's plan is a fixed point). Launched units are active and run their
/// current content's process, loaded ones are inactive.
pub fn check_placement(
    model: &Model,
    hosts: &[HostSnapshot],
    reasons: &BTreeSet<String>,
) -> Vec<String> {
    let mut v = Vec::new();
    let index: BTreeMap<&MachineId, usize> = model
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (&h.id, i))
        .collect();
    let mut on: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let mut seen: BTreeMap<(&str, usize), &UnitSeen> = BTreeMap::new();
    for h in hosts {
        let Some(&i) = index.get(&h.id) else {
            v.push(format!("a host {} the run does not know", h.id));
            continue;
        };
        for (name, s) in &h.units {
            on.entry(name).or_default().insert(i);
            seen.insert((name, i), s);
        }
    }
    let up: Vec<usize> = hosts
        .iter()
        .filter_map(|h| index.get(&h.id).copied())
        .collect();
    let placed = |u: &str| on.get(u).cloned().unwrap_or_default();
    let metadata_ok = |u: &super::model::UnitModel, i: usize| match &u.spec.metadata {
        None => true,
        Some((k, val)) => model.hosts[i].metadata().get(k) == Some(val),
    };
    // Whether `name` may be on host `i` beside what else is there.
    let fits = |name: &str, i: usize| -> Result<(), String> {
        let u = &model.units[name];
        if !metadata_ok(u, i) {
            return Err(format!("metadata {:?}", u.spec.metadata));
        }
        let others: Vec<&str> = on
            .iter()
            .filter(|(n, hs)| **n != name && hs.contains(&i))
            .map(|(n, _)| *n)
            .collect();
        match &u.spec.rule {
            Rule::Pinned(h) if *h != i => return Err(format!("MachineID of host {h}")),
            Rule::MachineOf(t) if !placed(t).contains(&i) => {
                return Err(format!("MachineOf={t}, not there"));
            }
            Rule::Conflicts(p) => {
                if let Some(o) = others.iter().find(|o| glob(p, o)) {
                    return Err(format!("Conflicts={p}, and {o} is there"));
                }
            }
            _ => {}
        }
        for o in &others {
            match model.units.get(*o).map(|x| &x.spec.rule) {
                Some(Rule::Conflicts(p)) if glob(p, name) => {
                    return Err(format!("{o} is there with Conflicts={p}"));
                }
                Some(Rule::Replaces(r)) if r == name => {
                    return Err(format!("{o} is there with Replaces={name}"));
                }
                _ => {}
            }
        }
        Ok(())
    };
    for (name, u) in &model.units {
        let hs = placed(name);
        if u.desired == DesiredState::Inactive {
            if !hs.is_empty() {
                v.push(format!("{name} is desired inactive and on hosts {hs:?}"));
            }
            continue;
        }
        if u.spec.global {
            let want: BTreeSet<usize> = up.iter().copied().filter(|i| metadata_ok(u, *i)).collect();
            if hs != want {
                v.push(format!(
                    "global {name} (metadata {:?}) is on hosts {hs:?}, its hosts are {want:?}",
                    u.spec.metadata
                ));
            }
        } else if hs.len() > 1 {
            v.push(format!("{name} is on hosts {hs:?} at once"));
        } else if let Some(&i) = hs.iter().next() {
            if let Err(why) = fits(name, i) {
                v.push(format!("{name} is on host {i} against its rules: {why}"));
            }
            if let Rule::Replaces(r) = &u.spec.rule
                && placed(r).contains(&i)
            {
                v.push(format!("{name} replaces {r}, and both are on host {i}"));
            }
        } else {
            if !reasons.contains(name) {
                v.push(format!(
                    "{name} is desired {} and placed nowhere, with no reason",
                    u.desired
                ));
            }
            for &i in &up {
                if fits(name, i).is_ok() {
                    v.push(format!(
                        "{name} is placed nowhere though host {i} could take it"
                    ));
                }
            }
        }
        for i in hs {
            let Some(s) = seen.get(&(name.as_str(), i)) else {
                continue;
            };
            match u.desired {
                DesiredState::Launched => {
                    if s.active != "active" {
                        v.push(format!("{name} is launched and {} on host {i}", s.active));
                    } else if !s
                        .cmdline
                        .as_deref()
                        .is_some_and(|c| c.contains(&u.spec.sleep_arg()))
                    {
                        v.push(format!(
                            "{name} on host {i} runs {:?}, not version {}",
                            s.cmdline, u.spec.version
                        ));
                    }
                }
                DesiredState::Loaded if s.active != "inactive" => {
                    v.push(format!("{name} is loaded and {} on host {i}", s.active));
                }
                _ => {}
            }
        }
    }
    v
}

/// Every invariant at once, each violation in words.
pub fn check_all(
    model: &Model,
    keys: &Keys,
    registry: &RegistrySnapshot,
    hosts: &[HostSnapshot],
) -> Vec<String> {
    let d = decode(keys, registry);
    let mut v = check_owners(&d, registry, &model.ids());
    v.extend(check_registry(model, &d));
    v.extend(check_hosts(&d, hosts));
    v.extend(check_placement(model, hosts, &d.reasons));
    let running: Vec<(usize, Vec<String>)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let names = h
                .units
                .iter()
                .filter(|(_, s)| s.active == "active")
                .map(|(n, _)| n.clone())
                .collect();
            (i, names)
        })
        .collect();
    for (name, on) in running_twice(running.iter().map(|(i, n)| (*i, n.as_slice()))) {
        v.push(format!("{name} runs on hosts {on:?} at once"));
    }
    v
}

#[cfg(test)]
mod tests {
    use flotte::machine::Metadata;
    use flotte::registry::ReasonRecord;
    use flotte::unit::UnitName;

    use super::super::model::{Spec, UnitModel};
    use super::*;

    const A: &str = "churn-00.service";
    const B: &str = "churn-01.service";
    const G: &str = "churn-g0.service";

    fn id(i: usize) -> MachineId {
        MachineId::new(&["a", "b", "c"][i].repeat(32)).unwrap()
    }

    fn spec(global: bool, rule: Rule, version: u32) -> Spec {
        Spec {
            global,
            rule,
            metadata: None,
            version,
        }
    }

    /// A consistent world: A launched on host 0, B loaded beside it (MachineOf=A), the
    /// global G launched on all three hosts.
    struct World {
        model: Model,
        keys: Keys,
        registry: RegistrySnapshot,
        hosts: Vec<HostSnapshot>,
    }

    impl World {
        fn put(&mut self, key: String, value: impl serde::Serialize, lease: i64) {
            self.registry.kvs.retain(|kv| kv.key != key);
            self.registry.kvs.push(Kv {
                key,
                value: serde_json::to_vec(&value).unwrap(),
                lease,
            });
        }

        fn delete(&mut self, key: &str) {
            let before = self.registry.kvs.len();
            self.registry.kvs.retain(|kv| kv.key != key);
            assert_eq!(before, self.registry.kvs.len() + 1, "no key {key}");
        }

        /// `name` scheduled, running (or not) and reported on host `h`.
        fn place(&mut self, name: &str, h: usize) {
            let u = UnitName::new(name).unwrap();
            let want = self.model.units[name].clone();
            let hash = want.spec.hash(&self.model.ids());
            let target = Target::for_desired(want.desired).unwrap();
            let entry = ScheduleEntry {
                hash,
                target,
                global: want.spec.global,
                start: 0,
            };
            self.put(self.keys.schedule(&id(h), &u), entry, 0);
            let active = match target {
                Target::Launched => "active",
                Target::Loaded => "inactive",
            };
            let state = UnitStateRecord {
                hash,
                current: target,
                load: "loaded".into(),
                active: active.into(),
                sub: "running".into(),
                message: None,
                started: 0,
            };
            self.put(self.keys.state(&u, &id(h)), state, 10 + h as i64);
            let host = &mut self.hosts[h];
            host.files
                .insert(name.into(), want.spec.text(&self.model.ids()));
            host.units.insert(
                name.into(),
                UnitSeen {
                    load: "loaded".into(),
                    active: active.into(),
                    cmdline: (target == Target::Launched)
                        .then(|| format!("/bin/sleep {}", want.spec.sleep_arg())),
                },
            );
        }

        fn placement(&mut self, name: &str, hosts: &[usize]) {
            let u = UnitName::new(name).unwrap();
            let machines = hosts.iter().map(|h| id(*h)).collect();
            self.put(self.keys.placement(&u), PlacementRecord { machines }, 0);
        }

        fn submit(&mut self, name: &str, spec: Spec, desired: DesiredState) {
            let u = UnitName::new(name).unwrap();
            let hash = spec.hash(&self.model.ids());
            self.put(
                self.keys.unit(&u),
                UnitRecord {
                    hash,
                    desired,
                    start: 0,
                },
                0,
            );
            self.put(
                self.keys.content(&hash),
                serde_json::json!({"options": []}),
                0,
            );
            self.model
                .units
                .insert(name.into(), UnitModel { spec, desired });
        }

        fn check(&self) -> Vec<String> {
            check_all(&self.model, &self.keys, &self.registry, &self.hosts)
        }

        /// Fails unless the world has a violation containing `expected`.
        fn expect(&self, expected: &str) {
            let found = self.check();
            assert!(
                found.iter().any(|v| v.contains(expected)),
                "expected a violation with {expected:?}, found {found:#?}"
            );
        }
    }

    fn world() -> World {
        let model = Model::new(&[
            (id(0), "zone=a,disk=ssd"),
            (id(1), "zone=b,disk=hdd"),
            (id(2), "zone=c,disk=ssd"),
        ]);
        let mut w = World {
            model,
            keys: Keys::new("/flotte/").unwrap(),
            registry: RegistrySnapshot::default(),
            hosts: (0..3)
                .map(|h| HostSnapshot {
                    id: id(h),
                    files: BTreeMap::new(),
                    units: BTreeMap::new(),
                })
                .collect(),
        };
        for h in 0..3 {
            let meta = ["zone=a,disk=ssd", "zone=b,disk=hdd", "zone=c,disk=ssd"][h];
            let record = MachineRecord {
                id: id(h),
                ip: format!("127.0.3.{}", h + 1),
                metadata: Metadata::parse_list(meta).unwrap(),
                version: "0".into(),
                api: None,
                hostname: format!("host-{}", h + 1),
                capacity: None,
            };
            let lease = 10 + h as i64;
            w.put(w.keys.machine(&id(h)), record, lease);
            w.registry.live_leases.insert(lease);
        }
        w.registry.live_leases.insert(99);
        w.registry.kvs.push(Kv {
            key: format!("{}{:x}", w.keys.election_candidates(), 99),
            value: id(1).to_string().into_bytes(),
            lease: 99,
        });
        w.submit(A, spec(false, Rule::None, 1), DesiredState::Launched);
        w.submit(
            B,
            spec(false, Rule::MachineOf(A.into()), 2),
            DesiredState::Loaded,
        );
        w.submit(G, spec(true, Rule::None, 3), DesiredState::Launched);
        w.place(A, 0);
        w.placement(A, &[0]);
        w.place(B, 0);
        w.placement(B, &[0]);
        for h in 0..3 {
            w.place(G, h);
        }
        w.placement(G, &[0, 1, 2]);
        w
    }

    #[test]
    fn a_consistent_world_passes_every_check() {
        assert_eq!(world().check(), Vec::<String>::new());
    }

    #[test]
    fn a_unit_running_on_two_hosts_is_reported() {
        let mut w = world();
        w.place(A, 1);
        w.placement(A, &[0, 1]);
        w.expect("churn-00.service runs on hosts [0, 1] at once");
        w.expect("churn-00.service is on hosts {0, 1} at once");
        // And by the sampler's check, from systemd's view alone.
        let running = [
            (0, vec![A.to_owned(), G.to_owned()]),
            (1, vec![G.to_owned()]),
            (2, vec![A.to_owned(), G.to_owned()]),
        ];
        let twice = running_twice(running.iter().map(|(i, n)| (*i, n.as_slice())));
        assert_eq!(twice, BTreeMap::from([(A.to_owned(), vec![0, 2])]));
    }

    #[test]
    fn a_unit_placed_against_its_rules_is_reported() {
        type Case<'a> = (Rule, Option<(&'a str, &'a str)>, &'a str);
        let cases: &[Case] = &[
            (
                Rule::Pinned(1),
                None,
                "against its rules: MachineID of host 1",
            ),
            (
                Rule::None,
                Some(("zone", "b")),
                "against its rules: metadata Some((\"zone\", \"b\"))",
            ),
            (
                Rule::Conflicts("churn-0*.service".into()),
                None,
                "Conflicts=churn-0*.service, and churn-00.service is there",
            ),
        ];
        for (rule, metadata, expected) in cases {
            let mut w = world();
            w.model.units.get_mut(B).unwrap().spec = Spec {
                metadata: metadata.map(|(k, v)| (k.to_owned(), v.to_owned())),
                ..spec(false, rule.clone(), 2)
            };
            w.expect(expected);
        }
        // Conflicts from the other side, and Replaces both ways.
        let mut w = world();
        w.model.units.get_mut(A).unwrap().spec.rule = Rule::Conflicts("churn-01.service".into());
        w.expect("churn-01.service is on host 0 against its rules: churn-00.service is there with Conflicts=churn-01.service");
        let mut w = world();
        w.model.units.get_mut(B).unwrap().spec.rule = Rule::Replaces(A.into());
        w.expect("churn-01.service replaces churn-00.service, and both are on host 0");
        w.expect("churn-00.service is on host 0 against its rules: churn-01.service is there with Replaces=churn-00.service");
        // A follower away from its target.
        let mut w = world();
        w.hosts[0].units.remove(B);
        w.place(B, 2);
        w.expect("churn-01.service is on host 2 against its rules: MachineOf=churn-00.service, not there");
    }

    #[test]
    fn a_unit_placed_nowhere_is_reported_unless_no_host_could_take_it() {
        let mut w = world();
        for h in &mut w.hosts {
            h.units.remove(A);
        }
        w.expect("churn-00.service is desired launched and placed nowhere, with no reason");
        w.expect("churn-00.service is placed nowhere though host 0 could take it");
        // Pinned to a host whose metadata it does not match: nowhere is right.
        let mut w = world();
        for h in &mut w.hosts {
            h.units.remove(A);
        }
        w.model.units.get_mut(A).unwrap().spec = Spec {
            metadata: Some(("zone".into(), "b".into())),
            ..spec(false, Rule::Pinned(0), 1)
        };
        w.put(
            w.keys.reason(&UnitName::new(A).unwrap()),
            ReasonRecord { reason: "x".into() },
            0,
        );
        let found = check_placement(&w.model, &w.hosts, &decode(&w.keys, &w.registry).reasons);
        assert!(
            !found.iter().any(|v| v.contains("churn-00.service is")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_global_unit_missing_from_a_host_or_on_a_wrong_one_is_reported() {
        let mut w = world();
        w.hosts[1].units.remove(G);
        w.expect(
            "global churn-g0.service (metadata None) is on hosts {0, 2}, its hosts are {0, 1, 2}",
        );
        let mut w = world();
        w.model.units.get_mut(G).unwrap().spec.metadata = Some(("disk".into(), "ssd".into()));
        w.expect("is on hosts {0, 1, 2}, its hosts are {0, 2}");
    }

    #[test]
    fn wrong_states_and_old_processes_are_reported() {
        let mut w = world();
        w.hosts[0].units.get_mut(A).unwrap().active = "failed".into();
        w.expect("churn-00.service is launched and failed on host 0");
        w.expect("churn-00.service on aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa reported active");
        let mut w = world();
        w.hosts[0].units.get_mut(A).unwrap().cmdline = Some("/bin/sleep 100000.0000".into());
        w.expect("churn-00.service on host 0 runs Some(\"/bin/sleep 100000.0000\"), not version 1");
        let mut w = world();
        w.hosts[0].units.get_mut(B).unwrap().active = "active".into();
        w.expect("churn-01.service is loaded and active on host 0");
        let mut w = world();
        w.model.units.get_mut(B).unwrap().desired = DesiredState::Inactive;
        w.expect("churn-01.service is desired inactive and on hosts {0}");
        w.expect("unit churn-01.service desired loaded in the registry, inactive asked");
    }

    #[test]
    fn files_and_units_on_a_host_without_a_unit_in_the_registry_are_reported() {
        let mut w = world();
        w.hosts[2].files.insert(
            "churn-07.service".into(),
            "[Service]\nExecStart=/bin/true\n".into(),
        );
        w.expect("cccccccccccccccccccccccccccccccc has a file churn-07.service of no unit in the registry");
        let mut w = world();
        w.hosts[2].units.insert(
            "churn-07.service".into(),
            UnitSeen {
                load: "loaded".into(),
                active: "inactive".into(),
                cmdline: None,
            },
        );
        w.expect("cccccccccccccccccccccccccccccccc's systemd has churn-07.service, no unit in the registry");
        // A unit of the registry, on a host it is not scheduled on.
        let mut w = world();
        w.hosts[1].files.insert(A.into(), String::new());
        w.expect(
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb has a file churn-00.service not scheduled there",
        );
        // Old content in a file.
        let mut w = world();
        w.hosts[0]
            .files
            .insert(A.into(), spec(false, Rule::None, 7).text(&w.model.ids()));
        w.expect("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa's file churn-00.service has content");
        // Scheduled, and the host has nothing.
        let mut w = world();
        w.hosts[0].files.remove(A);
        w.hosts[0].units.remove(A);
        w.expect("churn-00.service is scheduled on aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, which has no file of it");
    }

    #[test]
    fn keys_without_an_owner_are_reported() {
        let a = UnitName::new(A).unwrap();
        let gone = UnitName::new("churn-09.service").unwrap();
        let orphan = spec(false, Rule::None, 9).hash(&world().model.ids());
        type Break = Box<dyn Fn(&mut World)>;
        let cases: Vec<(Break, &str)> = vec![
            (
                Box::new(move |w| w.put(w.keys.content(&orphan), "x", 0)),
                "is referred to by no unit and no schedule entry",
            ),
            (
                Box::new(|w| {
                    let k = w.keys.unit(&UnitName::new(A).unwrap());
                    w.delete(&k)
                }),
                "unit churn-00.service was lost: not in the registry",
            ),
            (
                Box::new(|w| {
                    let k = w.keys.content(&w.model.units[A].spec.hash(&w.model.ids()));
                    w.delete(&k)
                }),
                "unit churn-00.service refers to content",
            ),
            (
                Box::new({
                    let gone = gone.clone();
                    move |w| {
                        let k = w.keys.state(&gone, &id(1));
                        w.put(k, "x", 11)
                    }
                }),
                "key /flotte/states/churn-09.service/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb does not decode",
            ),
            (
                Box::new({
                    let a = a.clone();
                    move |w| {
                        let k = w.keys.state(&a, &id(1));
                        let v = serde_json::from_slice::<serde_json::Value>(
                            &w.registry
                                .kvs
                                .iter()
                                .find(|kv| kv.key == w.keys.state(&a, &id(0)))
                                .unwrap()
                                .value,
                        )
                        .unwrap();
                        w.put(k, v, 12)
                    }
                }),
                "state of churn-00.service on bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb under lease c, not the machine's b",
            ),
            (
                Box::new(|w| {
                    w.registry.live_leases.remove(&11);
                }),
                "machine bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb is registered under no live lease (b)",
            ),
            (
                Box::new(|w| {
                    w.registry.live_leases.remove(&99);
                }),
                "engine candidate 63 of bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb under lease 63, not live",
            ),
            (
                Box::new({
                    let a = a.clone();
                    move |w| {
                        let k = w.keys.placement(&a);
                        w.delete(&k)
                    }
                }),
                "churn-00.service has schedule entries and no placement",
            ),
            (
                Box::new(move |w| {
                    let k = w.keys.reason(&a);
                    w.put(k, ReasonRecord { reason: "x".into() }, 0)
                }),
                "churn-00.service is placed and has a reason not to be",
            ),
            (
                Box::new(|w| w.put("/flotte/stray".into(), "x", 0)),
                "key /flotte/stray is none of flotte's",
            ),
            (
                Box::new(|w| {
                    let k = w
                        .keys
                        .metadata_key(&MachineId::new(&"d".repeat(32)).unwrap(), "zone");
                    w.put(k, MetadataOverride::Set("a".into()), 0)
                }),
                "metadata override dddddddddddddddddddddddddddddddd/zone of a machine that never was",
            ),
            (
                Box::new(|w| {
                    let k = w.keys.metadata_key(&id(0), "zone");
                    w.put(k, MetadataOverride::Set("b".into()), 0)
                }),
                "metadata overrides of aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: {\"zone\": Some(\"b\")}, set {}",
            ),
            (
                Box::new(|w| {
                    w.model.hosts[2].life = super::super::model::Life::HostDown { since: 0 }
                }),
                "machine cccccccccccccccccccccccccccccccc is registered, and its host is down",
            ),
        ];
        for (break_it, expected) in cases {
            let mut w = world();
            break_it(&mut w);
            w.expect(expected);
        }
    }

    #[test]
    fn two_running_copies_are_told_apart_by_where_the_unit_is_scheduled() {
        let on = |hs: &[usize]| hs.iter().copied().collect::<BTreeSet<usize>>();
        assert_eq!(
            judge_twice(&[0, 1], &on(&[0, 1])),
            Twice::Placed(vec![0, 1])
        );
        assert_eq!(
            judge_twice(&[0, 1, 2], &on(&[1, 2])),
            Twice::Placed(vec![1, 2])
        );
        assert_eq!(judge_twice(&[0, 1], &on(&[1])), Twice::Leftover(vec![0]));
        assert_eq!(judge_twice(&[0, 2], &on(&[])), Twice::Leftover(vec![0, 2]));
    }

    #[test]
    fn a_leftover_copy_is_reported_once_it_ran_longer_than_the_limit_in_a_row() {
        let s = std::time::Duration::from_secs;
        let limit = s(10);
        let mut l = Leftovers::default();
        let a = (A.to_owned(), 0);
        let b = (B.to_owned(), 2);
        assert!(l.observe(s(0), std::slice::from_ref(&a), limit).is_empty());
        assert!(l.observe(s(5), &[a.clone(), b.clone()], limit).is_empty());
        assert_eq!(
            l.observe(s(11), &[a.clone(), b.clone()], limit),
            vec![(A.to_owned(), 0, s(11))]
        );
        // Gone for one sample: counted afresh.
        assert!(l.observe(s(12), std::slice::from_ref(&b), limit).is_empty());
        assert!(l.observe(s(13), &[a.clone(), b.clone()], limit).is_empty());
        assert_eq!(
            l.observe(s(16), std::slice::from_ref(&b), limit),
            vec![(B.to_owned(), 2, s(11))]
        );
    }

    #[test]
    fn globs_match_as_conflicts_patterns_do() {
        for (p, n, m) in [
            ("churn-0*.service", "churn-07.service", true),
            ("churn-0*.service", "churn-17.service", false),
            ("churn-0*.service", "churn-g0.service", false),
            ("churn-1?.service", "churn-12.service", true),
            ("churn-1?.service", "churn-123.service", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ] {
            assert_eq!(glob(p, n), m, "{p} {n}");
        }
    }
}
