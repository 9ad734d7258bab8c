//! `[X-Fleet]` requirements: where a unit may run. This file holds the model and its matching
//! rules; parsing from a unit file is `Requirements::from_unit`.

use std::cmp::Ordering;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::machine::{MachineId, Metadata};
use crate::unit::UnitName;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn md(list: &str) -> Metadata {
        Metadata::parse_list(list).unwrap()
    }

    fn one_of(key: &str, values: &[&str]) -> MetadataCondition {
        MetadataCondition::OneOf {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn cmp(key: &str, op: CompareOp, value: &str) -> MetadataCondition {
        MetadataCondition::Compare {
            key: key.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn metadata_conditions_match_as_documented() {
        use CompareOp::*;
        let cases = [
            (one_of("region", &["eu"]), "region=eu", true),
            (one_of("region", &["eu", "us"]), "region=us", true),
            (one_of("region", &["eu"]), "region=asia", false),
            (one_of("region", &["eu"]), "", false),
            (cmp("region", Ne, "asia"), "region=eu", true),
            (cmp("region", Ne, "asia"), "region=asia", false),
            (cmp("region", Ne, "asia"), "", true),
            (cmp("ram", Ge, "2048"), "ram=4096", true),
            (cmp("ram", Ge, "2048"), "ram=2048", true),
            (cmp("ram", Ge, "2048"), "ram=512", false),
            // numeric, not string, order: "512" > "2048" as strings
            (cmp("ram", Gt, "2048"), "ram=512", false),
            (cmp("ram", Lt, "2048"), "ram=512", true),
            (cmp("ram", Le, "2048.0"), "ram=2048", true),
            (cmp("ram", Ne, "2048.0"), "ram=2048", false),
            (cmp("ram", Ge, "2048"), "", false),
            (cmp("ram", Lt, "2048"), "", false),
            // strings when one side is not a number
            (cmp("zone", Gt, "b"), "zone=c", true),
            (cmp("zone", Gt, "b"), "zone=a", false),
            (cmp("ram", Gt, "10"), "ram=lots", true),
        ];
        for (cond, machine, expected) in cases {
            assert_eq!(
                cond.matches(&md(machine)),
                expected,
                "{cond} on `{machine}`"
            );
        }
    }

    #[test]
    fn conditions_display_as_written() {
        assert_eq!(one_of("region", &["eu"]).to_string(), "region=eu");
        assert_eq!(one_of("region", &["eu", "us"]).to_string(), "region=eu|us");
        assert_eq!(cmp("ram", CompareOp::Ge, "2048").to_string(), "ram>=2048");
    }

    #[test]
    fn machine_id_patterns_match_full_ids_and_prefixes() {
        let id = MachineId::new("0123456789abcdef0123456789abcdef").unwrap();
        let other = MachineId::new("fedcba9876543210fedcba9876543210").unwrap();
        let full = MachineIdPattern::Full(id.clone());
        let prefix = MachineIdPattern::Prefix("01234567".into());
        assert!(full.matches(&id) && !full.matches(&other));
        assert!(prefix.matches(&id) && !prefix.matches(&other));
    }

    #[test]
    fn conflicts_are_symmetric() {
        let a = UnitName::new("web@1.service").unwrap();
        let b = UnitName::new("web@2.service").unwrap();
        let c = UnitName::new("db.service").unwrap();
        let web = Requirements {
            conflicts: vec![ConflictPattern::new("web@*.service").unwrap()],
            ..Requirements::default()
        };
        let none = Requirements::default();
        assert!(conflict_between((&a, &web), (&b, &none)));
        assert!(conflict_between((&b, &none), (&a, &web)));
        assert!(!conflict_between((&a, &web), (&c, &none)));
        assert!(
            !conflict_between((&a, &web), (&a, &web)),
            "a unit never conflicts with itself"
        );
    }
}
