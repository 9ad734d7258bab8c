//! What the churn run has asked of the cluster: its units (name, constraints, content version,
//! desired state) and its machines (configured metadata, the overrides set through the API,
//! whether the host and its flotted run). Pure: the generator reads it, the driver and the
//! invariant checks compare the cluster with it.

use std::collections::BTreeMap;

use flotte::machine::MachineId;
use flotte::unit::{DesiredState, UnitFile, UnitHash};

/// Normal units are named `churn-00.service` to `churn-NN.service`, global ones
/// `churn-g0.service`...: the `Conflicts=` patterns (`churn-0*.service`) only ever match
/// normal units, so a normal unit never has to win over a global one.
pub const NORMAL: usize = 16;
pub const GLOBAL: usize = 3;

pub fn normal_name(i: usize) -> String {
    format!("churn-{i:02}.service")
}

pub fn global_name(i: usize) -> String {
    format!("churn-g{i}.service")
}

/// Every name the run may use: what the sampler and the host snapshots ask systemd about.
pub fn all_names() -> Vec<String> {
    (0..NORMAL)
        .map(normal_name)
        .chain((0..GLOBAL).map(global_name))
        .collect()
}

pub fn is_global_name(name: &str) -> bool {
    name.starts_with("churn-g")
}

/// The metadata keys and values the run uses; every host is configured with one of each.
pub const META: &[(&str, &[&str])] = &[("zone", &["a", "b", "c"]), ("disk", &["ssd", "hdd"])];

/// The one placement rule a unit has besides its metadata (fleet refuses most combinations,
/// and one rule each keeps the expected placement decidable by the checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    None,
    /// `MachineID=` of host `i`.
    Pinned(usize),
    MachineOf(String),
    /// `Conflicts=` with a name or a pattern with `*`.
    Conflicts(String),
    Replaces(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub global: bool,
    pub rule: Rule,
    /// `MachineMetadata=key=value`.
    pub metadata: Option<(String, String)>,
    /// Bumped by every content replacement; the unit's process runs `sleep 100000.<version>`,
    /// so a host's running process shows which content it was started from.
    pub version: u32,
}

impl Spec {
    /// The unit file, with host IDs for `MachineID=`.
    pub fn text(&self, ids: &[MachineId]) -> String {
        let mut t = format!(
            "[Unit]\nDescription=churn v{v}\n[Service]\nExecStart=/bin/sleep {}\n",
            self.sleep_arg(),
            v = self.version
        );
        let mut fleet = Vec::new();
        if self.global {
            fleet.push("Global=true".to_owned());
        }
        match &self.rule {
            Rule::None => {}
            Rule::Pinned(h) => fleet.push(format!("MachineID={}", ids[*h])),
            Rule::MachineOf(u) => fleet.push(format!("MachineOf={u}")),
            Rule::Conflicts(p) => fleet.push(format!("Conflicts={p}")),
            Rule::Replaces(u) => fleet.push(format!("Replaces={u}")),
        }
        if let Some((k, v)) = &self.metadata {
            fleet.push(format!("MachineMetadata={k}={v}"));
        }
        if !fleet.is_empty() {
            t.push_str("[X-Fleet]\n");
            for line in fleet {
                t.push_str(&line);
                t.push('\n');
            }
        }
        t
    }

    pub fn hash(&self, ids: &[MachineId]) -> UnitHash {
        UnitFile::parse(self.text(ids).as_bytes())
            .expect("the churn unit files parse")
            .file
            .hash()
    }

    /// `sleep`'s argument: a distinct number per version (GNU sleep takes fractions).
    pub fn sleep_arg(&self) -> String {
        format!("100000.{:04}", self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitModel {
    pub spec: Spec,
    pub desired: DesiredState,
}

/// Whether a host and its flotted run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Up,
    /// Killed with the whole host (its units died with it) when the model had applied
    /// `since` operations.
    HostDown {
        since: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostModel {
    pub id: MachineId,
    pub configured: BTreeMap<String, String>,
    /// Set through the API: `Some(value)`, or `None` for a removed key.
    pub overrides: BTreeMap<String, Option<String>>,
    pub life: Life,
}

impl HostModel {
    /// Configured metadata with the overrides applied: what units are placed by.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let mut m = self.configured.clone();
        for (k, v) in &self.overrides {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub units: BTreeMap<String, UnitModel>,
    pub hosts: Vec<HostModel>,
    /// Content versions are never reused, so that two contents never hash alike.
    pub next_version: u32,
    /// Operations applied so far.
    pub applied: u64,
}

impl Model {
    /// `hosts` as (machine ID, configured metadata `k=v,...`).
    pub fn new(hosts: &[(MachineId, &str)]) -> Model {
        Model {
            units: BTreeMap::new(),
            hosts: hosts
                .iter()
                .map(|(id, meta)| HostModel {
                    id: id.clone(),
                    configured: meta
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("k=v metadata");
                            (k.to_owned(), v.to_owned())
                        })
                        .collect(),
                    overrides: BTreeMap::new(),
                    life: Life::Up,
                })
                .collect(),
            next_version: 1,
            applied: 0,
        }
    }

    pub fn ids(&self) -> Vec<MachineId> {
        self.hosts.iter().map(|h| h.id.clone()).collect()
    }
}
