//! The churn run's operations: what they are, how a seeded generator draws the next one from
//! the model's state, and what each does to the model. Pure: the same seed and the same model
//! give the same operations, which is what makes a failing run replayable.

use flotte::unit::DesiredState;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::model::{
    GLOBAL, Life, META, Model, NORMAL, Rule, Spec, UnitModel, global_name, is_global_name,
    normal_name,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A unit the registry does not have.
    Submit {
        unit: String,
        spec: Spec,
        desired: DesiredState,
    },
    /// New content for a unit the registry has (a new version, maybe new rules), its desired
    /// state kept.
    Replace {
        unit: String,
        spec: Spec,
    },
    /// `start`, `stop`, `unload`: the desired state.
    Desire {
        unit: String,
        desired: DesiredState,
    },
    Destroy {
        unit: String,
    },
    SetMetadata {
        host: usize,
        key: String,
        value: String,
    },
    RemoveMetadata {
        host: usize,
        key: String,
    },
    /// Host `host`'s flotted stopped (SIGKILL, or SIGTERM when `graceful`) and started again.
    RestartAgent {
        host: usize,
        graceful: bool,
    },
    /// The engine leader's flotted SIGKILLed; started again once another engine leads.
    KillLeader,
    /// A host killed with every process on it.
    KillHost {
        host: usize,
    },
    /// A killed host started again (same machine ID, a fresh `/run`).
    ReviveHost {
        host: usize,
    },
}

/// Which registry object an operation writes, so that a batch of operations that write
/// different ones may be sent at once and still mean what they meant in sequence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Touches {
    Unit(String),
    Metadata(usize, String),
}

impl Op {
    /// What a fast operation (an API request) writes; `None` for the slow ones (processes
    /// killed and started), which run alone.
    pub fn touches(&self) -> Option<Touches> {
        match self {
            Op::Submit { unit, .. }
            | Op::Replace { unit, .. }
            | Op::Desire { unit, .. }
            | Op::Destroy { unit } => Some(Touches::Unit(unit.clone())),
            Op::SetMetadata { host, key, .. } | Op::RemoveMetadata { host, key } => {
                Some(Touches::Metadata(*host, key.clone()))
            }
            Op::RestartAgent { .. }
            | Op::KillLeader
            | Op::KillHost { .. }
            | Op::ReviveHost { .. } => None,
        }
    }

    /// A short name for the run's tally.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Submit { .. } => "submit",
            Op::Replace { .. } => "replace",
            Op::Desire {
                desired: DesiredState::Launched,
                ..
            } => "start",
            Op::Desire {
                desired: DesiredState::Loaded,
                ..
            } => "stop",
            Op::Desire {
                desired: DesiredState::Inactive,
                ..
            } => "unload",
            Op::Destroy { .. } => "destroy",
            Op::SetMetadata { .. } => "set-metadata",
            Op::RemoveMetadata { .. } => "remove-metadata",
            Op::RestartAgent { .. } => "restart-agent",
            Op::KillLeader => "kill-leader",
            Op::KillHost { .. } => "kill-host",
            Op::ReviveHost { .. } => "revive-host",
        }
    }
}

/// A killed host is brought back after at most this many operations.
pub const MAX_DOWN_OPS: u64 = 150;

/// Draws operations from a seed, each valid for the model it is given.
pub struct Generator {
    rng: StdRng,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The next operation for `model` (then `apply` it to the model).
    pub fn next(&mut self, model: &Model) -> Op {
        let down = model
            .hosts
            .iter()
            .enumerate()
            .find_map(|(i, h)| match h.life {
                Life::HostDown { since } => Some((i, since)),
                Life::Up => None,
            });
        if let Some((host, since)) = down
            && (model.applied - since >= MAX_DOWN_OPS || self.rng.random_bool(0.02))
        {
            return Op::ReviveHost { host };
        }
        let up: Vec<usize> = (0..model.hosts.len())
            .filter(|i| model.hosts[*i].life == Life::Up)
            .collect();
        let roll = self.rng.random_range(0..1000);
        match roll {
            // Rare and slow: a host killed (one at a time, never the last two), a leader
            // killed, an agent restarted.
            0..3 if down.is_none() && up.len() > 2 => {
                return Op::KillHost {
                    host: self.rng.random_range(0..model.hosts.len()),
                };
            }
            3..8 if up.len() > 1 => return Op::KillLeader,
            8..23 => {
                return Op::RestartAgent {
                    host: up[self.rng.random_range(0..up.len())],
                    graceful: self.rng.random_bool(0.5),
                };
            }
            23..73 => return self.metadata(model),
            _ => {}
        }
        let unit = if self.rng.random_bool(0.85) {
            normal_name(self.rng.random_range(0..NORMAL))
        } else {
            global_name(self.rng.random_range(0..GLOBAL))
        };
        let Some(existing) = model.units.get(&unit) else {
            let desired = match self.rng.random_range(0..20) {
                0..2 => DesiredState::Inactive,
                2..7 => DesiredState::Loaded,
                _ => DesiredState::Launched,
            };
            let spec = self.spec(model, &unit);
            return Op::Submit {
                unit,
                spec,
                desired,
            };
        };
        match self.rng.random_range(0..100) {
            0..20 => {
                let spec = if self.rng.random_bool(0.3) {
                    Spec {
                        version: model.next_version,
                        ..existing.spec.clone()
                    }
                } else {
                    self.spec(model, &unit)
                };
                Op::Replace { unit, spec }
            }
            20..45 => Op::Desire {
                unit,
                desired: DesiredState::Launched,
            },
            45..65 => Op::Desire {
                unit,
                desired: DesiredState::Loaded,
            },
            65..75 => Op::Desire {
                unit,
                desired: DesiredState::Inactive,
            },
            _ => Op::Destroy { unit },
        }
    }

    fn metadata(&mut self, model: &Model) -> Op {
        let host = self.rng.random_range(0..model.hosts.len());
        let (key, values) = META[self.rng.random_range(0..META.len())];
        if self.rng.random_bool(0.2) {
            return Op::RemoveMetadata {
                host,
                key: key.to_owned(),
            };
        }
        Op::SetMetadata {
            host,
            key: key.to_owned(),
            value: values[self.rng.random_range(0..values.len())].to_owned(),
        }
    }

    /// New content for `unit`: its rule (none for a global unit), maybe a metadata
    /// requirement, the model's next version.
    fn spec(&mut self, model: &Model, unit: &str) -> Spec {
        let metadata = self.rng.random_bool(0.3).then(|| {
            let (key, values) = META[self.rng.random_range(0..META.len())];
            (
                key.to_owned(),
                values[self.rng.random_range(0..values.len())].to_owned(),
            )
        });
        let global = is_global_name(unit);
        let rule = if global {
            Rule::None
        } else {
            let other = self.other_than(unit);
            match self.rng.random_range(0..100) {
                0..40 => Rule::None,
                40..50 => Rule::Pinned(self.rng.random_range(0..model.hosts.len())),
                50..62 => Rule::MachineOf(other),
                62..80 => {
                    let pattern = ["churn-0*.service", "churn-1*.service"]
                        [self.rng.random_range(0..2)]
                    .to_owned();
                    if self.rng.random_bool(0.3) && !super::check::glob(&pattern, unit) {
                        Rule::Conflicts(pattern)
                    } else {
                        Rule::Conflicts(other)
                    }
                }
                80..92 if !replaces_back(model, &other, unit) => Rule::Replaces(other),
                _ => Rule::None,
            }
        };
        Spec {
            global,
            rule,
            metadata,
            version: model.next_version,
        }
    }

    fn other_than(&mut self, unit: &str) -> String {
        loop {
            let other = normal_name(self.rng.random_range(0..NORMAL));
            if other != unit {
                return other;
            }
        }
    }
}

/// Whether following `Replaces=` from `from` leads back to `to`: the scheduler displaces
/// nothing around such a cycle, a case the checks do not model.
pub fn replaces_back(model: &Model, from: &str, to: &str) -> bool {
    let mut at = from.to_owned();
    for _ in 0..=model.units.len() {
        if at == to {
            return true;
        }
        match model.units.get(&at).map(|u| &u.spec.rule) {
            Some(Rule::Replaces(next)) => at = next.clone(),
            _ => return false,
        }
    }
    true
}

/// What `op` does to the model.
pub fn apply(model: &mut Model, op: &Op) {
    match op {
        Op::Submit {
            unit,
            spec,
            desired,
        } => {
            model.units.insert(
                unit.clone(),
                UnitModel {
                    spec: spec.clone(),
                    desired: *desired,
                },
            );
            model.next_version = model.next_version.max(spec.version + 1);
        }
        Op::Replace { unit, spec } => {
            let u = model.units.get_mut(unit).expect("replacing a known unit");
            u.spec = spec.clone();
            model.next_version = model.next_version.max(spec.version + 1);
        }
        Op::Desire { unit, desired } => {
            model
                .units
                .get_mut(unit)
                .expect("a known unit's state")
                .desired = *desired;
        }
        Op::Destroy { unit } => {
            model.units.remove(unit);
        }
        Op::SetMetadata { host, key, value } => {
            model.hosts[*host]
                .overrides
                .insert(key.clone(), Some(value.clone()));
        }
        Op::RemoveMetadata { host, key } => {
            model.hosts[*host].overrides.insert(key.clone(), None);
        }
        Op::RestartAgent { .. } | Op::KillLeader => {}
        Op::KillHost { host } => {
            model.hosts[*host].life = Life::HostDown {
                since: model.applied,
            }
        }
        Op::ReviveHost { host } => model.hosts[*host].life = Life::Up,
    }
    model.applied += 1;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flotte::machine::MachineId;

    use super::*;

    fn model() -> Model {
        let id = |c: char| MachineId::new(&c.to_string().repeat(32)).unwrap();
        Model::new(&[
            (id('a'), "zone=a,disk=ssd"),
            (id('b'), "zone=b,disk=hdd"),
            (id('c'), "zone=c,disk=ssd"),
        ])
    }

    fn run(seed: u64, n: usize) -> (Vec<Op>, Model) {
        let mut m = model();
        let mut g = Generator::new(seed);
        let mut ops = Vec::new();
        for _ in 0..n {
            let op = g.next(&m);
            apply(&mut m, &op);
            ops.push(op);
        }
        (ops, m)
    }

    #[test]
    fn the_same_seed_draws_the_same_operations_and_another_seed_others() {
        let (a, ma) = run(7, 3000);
        let (b, mb) = run(7, 3000);
        assert_eq!(a, b);
        assert_eq!(ma, mb);
        let (c, _) = run(8, 3000);
        assert_ne!(a, c);
    }

    #[test]
    fn a_run_of_two_thousand_has_every_kind_and_few_slow_operations() {
        for seed in 0..20 {
            let (ops, _) = run(seed, 2000);
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for op in &ops {
                *kinds.entry(op.kind()).or_default() += 1;
            }
            for kind in [
                "submit",
                "replace",
                "start",
                "stop",
                "unload",
                "destroy",
                "set-metadata",
                "remove-metadata",
                "restart-agent",
                "kill-leader",
            ] {
                assert!(
                    kinds.contains_key(kind),
                    "seed {seed}: no {kind}: {kinds:?}"
                );
            }
            let slow = ops.iter().filter(|op| op.touches().is_none()).count();
            assert!(
                slow * 100 < ops.len() * 5,
                "seed {seed}: {slow} slow: {kinds:?}"
            );
        }
    }

    #[test]
    fn hosts_go_down_one_at_a_time_and_come_back_in_time() {
        let mut seen_kill = false;
        for seed in 0..20 {
            let mut m = model();
            let mut g = Generator::new(seed);
            for _ in 0..5000 {
                let op = g.next(&m);
                match &op {
                    Op::KillHost { host } => {
                        seen_kill = true;
                        assert!(
                            m.hosts.iter().all(|h| h.life == Life::Up),
                            "seed {seed}: a second host killed"
                        );
                        assert!(*host < m.hosts.len());
                    }
                    Op::ReviveHost { host } => {
                        assert_ne!(
                            m.hosts[*host].life,
                            Life::Up,
                            "seed {seed}: revived a live host"
                        )
                    }
                    Op::RestartAgent { host, .. } => {
                        assert_eq!(
                            m.hosts[*host].life,
                            Life::Up,
                            "seed {seed}: restarted a dead agent"
                        )
                    }
                    _ => {}
                }
                apply(&mut m, &op);
                for h in &m.hosts {
                    if let Life::HostDown { since } = h.life {
                        assert!(
                            m.applied - since <= MAX_DOWN_OPS,
                            "seed {seed}: down too long"
                        );
                    }
                }
            }
        }
        assert!(seen_kill, "no seed killed a host");
    }

    #[test]
    fn generated_units_keep_to_the_rules_the_checks_model() {
        for seed in 0..20 {
            let mut m = model();
            let mut g = Generator::new(seed);
            for _ in 0..3000 {
                let op = g.next(&m);
                if let Op::Submit { unit, spec, .. } | Op::Replace { unit, spec } = &op {
                    match &spec.rule {
                        Rule::MachineOf(t) | Rule::Replaces(t) => assert_ne!(t, unit),
                        Rule::Conflicts(p) => assert!(!super::super::check::glob(p, unit)),
                        Rule::Pinned(h) => assert!(*h < m.hosts.len()),
                        Rule::None => {}
                    }
                    assert!(spec.global == is_global_name(unit));
                    assert!(!spec.global || spec.rule == Rule::None);
                    assert!(spec.version >= m.next_version, "a version reused");
                    // The file parses with the rules flotte reads (no refused combination).
                    let text = spec.text(&m.ids());
                    let file = flotte::unit::UnitFile::parse(text.as_bytes()).unwrap().file;
                    let name = flotte::unit::UnitName::new(unit).unwrap();
                    flotte::unit::Requirements::from_unit(&name, &file)
                        .unwrap_or_else(|e| panic!("seed {seed}: {text}: {e:?}"));
                }
                apply(&mut m, &op);
                for name in m.units.keys() {
                    if let Rule::Replaces(t) = &m.units[name].spec.rule {
                        assert!(!replaces_back(&m, t, name), "seed {seed}: a Replaces cycle");
                    }
                }
            }
        }
    }

    #[test]
    fn operations_change_the_model_as_the_api_would() {
        let mut m = model();
        let spec = Spec {
            global: false,
            rule: Rule::None,
            metadata: None,
            version: 1,
        };
        let u = "churn-01.service".to_owned();
        let steps: Vec<(Op, Option<DesiredState>)> = vec![
            (
                Op::Submit {
                    unit: u.clone(),
                    spec: spec.clone(),
                    desired: DesiredState::Loaded,
                },
                Some(DesiredState::Loaded),
            ),
            (
                Op::Desire {
                    unit: u.clone(),
                    desired: DesiredState::Launched,
                },
                Some(DesiredState::Launched),
            ),
            (
                Op::Replace {
                    unit: u.clone(),
                    spec: Spec {
                        version: 2,
                        ..spec.clone()
                    },
                },
                Some(DesiredState::Launched),
            ),
            (
                Op::RestartAgent {
                    host: 0,
                    graceful: true,
                },
                Some(DesiredState::Launched),
            ),
            (Op::Destroy { unit: u.clone() }, None),
        ];
        for (op, desired) in steps {
            apply(&mut m, &op);
            assert_eq!(m.units.get(&u).map(|x| x.desired), desired, "after {op:?}");
        }
        assert_eq!(m.next_version, 3);
        apply(
            &mut m,
            &Op::SetMetadata {
                host: 1,
                key: "zone".into(),
                value: "c".into(),
            },
        );
        apply(
            &mut m,
            &Op::RemoveMetadata {
                host: 1,
                key: "disk".into(),
            },
        );
        assert_eq!(
            m.hosts[1].metadata(),
            BTreeMap::from([("zone".to_owned(), "c".to_owned())])
        );
        apply(&mut m, &Op::KillHost { host: 2 });
        assert_eq!(m.hosts[2].life, Life::HostDown { since: 7 });
        apply(&mut m, &Op::ReviveHost { host: 2 });
        assert_eq!(m.hosts[2].life, Life::Up);
    }
}
