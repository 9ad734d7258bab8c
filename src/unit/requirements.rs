//! `[X-Fleet]` requirements: where a unit may run. This file holds the model and its matching
//! rules; `reader.rs` reads them from a unit file (`Requirements::from_unit`).

use std::cmp::Ordering;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::machine::{MachineId, Metadata};
use crate::resources::Resources;
use crate::unit::UnitName;

mod reader;
#[cfg(test)]
mod tests;

/// `MachineID=`: a full machine ID or its 8-character prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineIdPattern {
    Full(MachineId),
    /// Exactly 8 lowercase hexadecimal characters.
    Prefix(String),
}

impl MachineIdPattern {
    pub fn matches(&self, id: &MachineId) -> bool {
        match self {
            MachineIdPattern::Full(full) => full == id,
            MachineIdPattern::Prefix(prefix) => id.as_str().starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for MachineIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineIdPattern::Full(id) => f.write_str(id.as_str()),
            MachineIdPattern::Prefix(p) => f.write_str(p),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    fn holds(self, ord: Ordering) -> bool {
        match self {
            CompareOp::Ne => ord != Ordering::Equal,
            CompareOp::Lt => ord == Ordering::Less,
            CompareOp::Le => ord != Ordering::Greater,
            CompareOp::Gt => ord == Ordering::Greater,
            CompareOp::Ge => ord != Ordering::Less,
        }
    }
}

/// One condition on a machine's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataCondition {
    /// fleet's `key=value` items: every `=` item of one key is an alternative, so the machine's
    /// value must be one of `values`.
    OneOf { key: String, values: Vec<String> },
    /// flotte's `key!=v`, `key<v`, `key<=v`, `key>v`, `key>=v`: each must hold on its own.
    /// Numeric when both sides are numbers, else byte-wise string order. A machine without the
    /// key satisfies `!=` and fails every ordering.
    Compare {
        key: String,
        op: CompareOp,
        value: String,
    },
}

impl MetadataCondition {
    pub fn key(&self) -> &str {
        match self {
            MetadataCondition::OneOf { key, .. } | MetadataCondition::Compare { key, .. } => key,
        }
    }

    pub fn matches(&self, metadata: &Metadata) -> bool {
        let actual = metadata.get(self.key());
        match self {
            MetadataCondition::OneOf { values, .. } => {
                actual.is_some_and(|a| values.iter().any(|v| v == a))
            }
            MetadataCondition::Compare { op, value, .. } => match actual {
                None => *op == CompareOp::Ne,
                Some(actual) => op.holds(compare_values(actual, value)),
            },
        }
    }
}

fn compare_values(actual: &str, wanted: &str) -> Ordering {
    let number = |s: &str| s.parse::<f64>().ok().filter(|n| n.is_finite());
    match (number(actual), number(wanted)) {
        (Some(a), Some(w)) => a.total_cmp(&w),
        _ => actual.cmp(wanted),
    }
}

impl fmt::Display for MetadataCondition {
    /// `region=eu`, `region=eu|us` for alternatives, `ram>=2048`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataCondition::OneOf { key, values } => write!(f, "{key}={}", values.join("|")),
            MetadataCondition::Compare { key, op, value } => {
                write!(f, "{key}{}{value}", op.as_str())
            }
        }
    }
}

/// A `Conflicts=` glob pattern (`*`, `?`, `[...]`), matched against whole unit names.
#[derive(Debug, Clone)]
pub struct ConflictPattern {
    raw: String,
    pattern: glob::Pattern,
}

impl ConflictPattern {
    pub fn new(raw: &str) -> Result<Self, glob::PatternError> {
        Ok(Self {
            raw: raw.to_owned(),
            pattern: glob::Pattern::new(raw)?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn matches(&self, name: &UnitName) -> bool {
        self.pattern.matches(name.as_str())
    }
}

impl PartialEq for ConflictPattern {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for ConflictPattern {}

/// Everything `[X-Fleet]` says about where a unit may run, with specifiers already expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requirements {
    #[serde(rename = "machineID", serialize_with = "display_opt")]
    pub machine_id: Option<MachineIdPattern>,
    pub machine_of: Vec<UnitName>,
    #[serde(rename = "machineMetadata", serialize_with = "display_all")]
    pub metadata: Vec<MetadataCondition>,
    #[serde(serialize_with = "patterns")]
    pub conflicts: Vec<ConflictPattern>,
    pub global: bool,
    pub replaces: Vec<UnitName>,
    /// `Memory=` and `CPU=`: what the unit needs on its machine, counted against the
    /// machine's capacity by the scheduler (systemd is not asked to enforce it). Zero in a
    /// dimension: nothing asked.
    #[serde(skip_serializing_if = "Resources::is_zero")]
    pub requests: Resources,
}

impl Requirements {
    /// True when `MachineID=` and every metadata condition allow this machine.
    pub fn allows_machine(&self, id: &MachineId, metadata: &Metadata) -> bool {
        self.machine_id.as_ref().is_none_or(|p| p.matches(id))
            && self.metadata.iter().all(|c| c.matches(metadata))
    }

    /// True when one of this unit's `Conflicts=` patterns matches `other`. Conflicts are
    /// symmetric: callers check both directions (see `conflict_between`).
    pub fn conflicts_with(&self, other: &UnitName) -> bool {
        self.conflicts.iter().any(|p| p.matches(other))
    }
}

/// Two units may not share a machine when either one's `Conflicts=` matches the other.
pub fn conflict_between(a: (&UnitName, &Requirements), b: (&UnitName, &Requirements)) -> bool {
    a.0 != b.0 && (a.1.conflicts_with(b.0) || b.1.conflicts_with(a.0))
}

fn display_opt<S: Serializer, T: fmt::Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn display_all<S: Serializer, T: fmt::Display>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

fn patterns<S: Serializer>(v: &[ConflictPattern], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ConflictPattern::as_str))
}

/// Requirements read from a unit file, with what was odd but not wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub requirements: Requirements,
    pub warnings: Vec<RequirementWarning>,
}

/// Why a unit's `[X-Fleet]` section cannot be used: every error, and the warnings found
/// along the way (so a linter can show both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub errors: Vec<RequirementError>,
    pub warnings: Vec<RequirementWarning>,
}

/// An `[X-Fleet]` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequirementError {
    /// Index into the unit's options list (`ParsedUnit::lines` gives its line). Every error
    /// `from_unit` reports today comes from an option; `None` is for callers that check
    /// requirements without a file behind them.
    pub option: Option<usize>,
    pub message: String,
}

/// An `[X-Fleet]` option that is ignored or means less than it seems to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementWarning {
    pub option: usize,
    pub message: String,
}

impl fmt::Display for RequirementWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
