//! `[X-Fleet]` requirements: where a unit may run. This file holds the model and its matching
//! rules, then `Requirements::from_unit`, which reads them from a unit file.

use std::cmp::Ordering;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::machine::{MachineId, Metadata, validate_key};
use crate::unit::specifier;
use crate::unit::{UnitFile, UnitName, UnitOption};

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

const SECTION: &str = "X-Fleet";

/// The `[X-Fleet]` keys flotte understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FleetKey {
    MachineId,
    MachineOf,
    MachineMetadata,
    Conflicts,
    Global,
    Replaces,
}

impl FleetKey {
    /// fleet's names, with the `X-Condition*` and `X-Conflicts` spellings of its early versions.
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "MachineID" | "X-ConditionMachineID" | "X-ConditionMachineBootID" => Self::MachineId,
            "MachineOf" | "X-ConditionMachineOf" => Self::MachineOf,
            "MachineMetadata" | "X-ConditionMachineMetadata" => Self::MachineMetadata,
            "Conflicts" | "X-Conflicts" => Self::Conflicts,
            "Global" => Self::Global,
            "Replaces" => Self::Replaces,
            _ => return None,
        })
    }
}

/// fleet's invalid combinations: each pair asks for placements that contradict each other.
const EXCLUSIVE: [(FleetKey, FleetKey); 7] = [
    (FleetKey::MachineId, FleetKey::MachineOf),
    (FleetKey::MachineId, FleetKey::Conflicts),
    (FleetKey::MachineId, FleetKey::Global),
    (FleetKey::MachineId, FleetKey::Replaces),
    (FleetKey::Global, FleetKey::MachineOf),
    (FleetKey::Global, FleetKey::Replaces),
    (FleetKey::Conflicts, FleetKey::Replaces),
];

impl Requirements {
    /// Reads `[X-Fleet]` of `file` as unit `name`; other sections are not looked at. For an
    /// instance, pass the instance name with the template's file: `from_unit(web@3.service,
    /// web@.service's file)` expands `%i` to `3`, which is all that makes an instance's
    /// requirements differ from its template's. Every problem is reported, not just the first.
    pub fn from_unit(name: &UnitName, file: &UnitFile) -> Result<Checked, Rejected> {
        let mut reader = Reader::new(name);
        for (index, option) in file.options().iter().enumerate() {
            if option.section == SECTION {
                reader.option(index, option);
            }
        }
        reader.finish()
    }
}

/// Collects requirements, errors and warnings while going through the options once.
struct Reader<'a> {
    unit: &'a UnitName,
    requirements: Requirements,
    /// Each MachineOf target with the option that named it, for the checks that need all options.
    machine_of: Vec<(UnitName, usize)>,
    /// The first option that gave each key a value, and the key as written there.
    given: Vec<(FleetKey, usize, String)>,
    seen_machine_id: bool,
    seen_global: bool,
    errors: Vec<RequirementError>,
    warnings: Vec<RequirementWarning>,
}

impl<'a> Reader<'a> {
    fn new(unit: &'a UnitName) -> Self {
        Self {
            unit,
            requirements: Requirements::default(),
            machine_of: Vec::new(),
            given: Vec::new(),
            seen_machine_id: false,
            seen_global: false,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn error(&mut self, index: usize, message: String) {
        self.errors.push(RequirementError {
            option: Some(index),
            message,
        });
    }

    fn warn(&mut self, index: usize, message: String) {
        self.warnings.push(RequirementWarning {
            option: index,
            message,
        });
    }

    fn gave(&mut self, key: FleetKey, index: usize, written: &str) {
        if !self.given.iter().any(|(k, ..)| *k == key) {
            self.given.push((key, index, written.to_owned()));
        }
    }

    fn option(&mut self, index: usize, option: &UnitOption) {
        let written = option.name.as_str();
        let Some(key) = FleetKey::from_name(written) else {
            self.warn(
                index,
                format!(
                    "unknown [X-Fleet] option `{written}` is ignored (known: MachineID, MachineOf, MachineMetadata, Conflicts, Global, Replaces)"
                ),
            );
            return;
        };
        let expanded = match specifier::expand(&option.value, self.unit) {
            Ok(expanded) => expanded,
            Err(e) => return self.error(index, format!("{written}: {e}")),
        };
        // A specifier that expands to nothing can leave whitespace at an end.
        let value = expanded.trim();
        if value.is_empty() {
            match key {
                FleetKey::MachineId | FleetKey::Global => {
                    self.error(index, format!("{written}: the value is empty"))
                }
                FleetKey::MachineOf
                | FleetKey::MachineMetadata
                | FleetKey::Conflicts
                | FleetKey::Replaces => self.warn(
                    index,
                    format!("{written}: the value is empty, so this option has no effect"),
                ),
            }
            return;
        }
        match key {
            FleetKey::MachineId => self.machine_id(index, written, value),
            FleetKey::MachineOf => self.machine_of(index, written, value),
            FleetKey::MachineMetadata => self.metadata(index, written, value),
            FleetKey::Conflicts => self.conflicts(index, written, value),
            FleetKey::Global => self.global(index, written, value),
            FleetKey::Replaces => self.replaces(index, written, value),
        }
    }

    fn machine_id(&mut self, index: usize, written: &str, value: &str) {
        if std::mem::replace(&mut self.seen_machine_id, true) {
            return self.error(
                index,
                format!("{written}: given more than once; a unit can name only one machine"),
            );
        }
        let is_prefix = value.len() == 8
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let pattern = if is_prefix {
            MachineIdPattern::Prefix(value.to_owned())
        } else if let Ok(id) = MachineId::new(value) {
            MachineIdPattern::Full(id)
        } else {
            return self.error(
                index,
                format!(
                    "{written}: `{value}` is neither a machine ID (32 lowercase hexadecimal characters) nor its 8-character prefix"
                ),
            );
        };
        self.requirements.machine_id = Some(pattern);
        self.gave(FleetKey::MachineId, index, written);
    }

    /// A whitespace-separated list of unit names other than this unit's own.
    fn unit_names(&mut self, index: usize, written: &str, value: &str) -> Vec<UnitName> {
        let mut names = Vec::new();
        for word in value.split_whitespace() {
            match UnitName::new(word) {
                Ok(name) if name == *self.unit => {
                    self.error(index, format!("{written}: `{name}` is this unit itself"))
                }
                Ok(name) => names.push(name),
                Err(e) => self.error(index, format!("{written}: {e}")),
            }
        }
        names
    }

    fn machine_of(&mut self, index: usize, written: &str, value: &str) {
        for name in self.unit_names(index, written, value) {
            // A template is never placed; in a template's own file `%i` is empty, so
            // `db@%i.service` reads as a template there and means an instance later.
            if name.is_template() && !self.unit.is_template() {
                self.warn(
                    index,
                    format!("{written}: `{name}` is a template, which is never placed, so this unit never will be"),
                );
            }
            if !self.requirements.machine_of.contains(&name) {
                self.requirements.machine_of.push(name.clone());
                self.machine_of.push((name, index));
            }
            self.gave(FleetKey::MachineOf, index, written);
        }
    }

    fn replaces(&mut self, index: usize, written: &str, value: &str) {
        for name in self.unit_names(index, written, value) {
            if !self.requirements.replaces.contains(&name) {
                self.requirements.replaces.push(name);
            }
            self.gave(FleetKey::Replaces, index, written);
        }
    }

    fn conflicts(&mut self, index: usize, written: &str, value: &str) {
        for word in value.split_whitespace() {
            match ConflictPattern::new(word) {
                Ok(pattern) => {
                    if !self.requirements.conflicts.contains(&pattern) {
                        self.requirements.conflicts.push(pattern);
                    }
                    self.gave(FleetKey::Conflicts, index, written);
                }
                Err(e) => self.error(
                    index,
                    format!("{written}: `{word}` is not a valid glob pattern: {}", e.msg),
                ),
            }
        }
    }

    fn global(&mut self, index: usize, written: &str, value: &str) {
        if std::mem::replace(&mut self.seen_global, true) {
            self.warn(
                index,
                format!("{written}: given more than once; the last value counts"),
            );
        }
        match parse_boolean(value) {
            Some(global) => {
                self.requirements.global = global;
                if global {
                    self.gave(FleetKey::Global, index, written);
                }
            }
            None => self.error(
                index,
                format!(
                    "{written}: `{value}` is not a boolean (use yes/no, true/false, on/off or 1/0)"
                ),
            ),
        }
    }

    fn metadata(&mut self, index: usize, written: &str, value: &str) {
        let items = if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
            match split_quoted(value) {
                Ok(items) => items,
                Err(message) => return self.error(index, format!("{written}: {message}")),
            }
        } else {
            vec![value.to_owned()]
        };
        for item in items {
            match parse_item(&item) {
                Ok(Item::Equals { key, value }) => self.one_of(key, value),
                Ok(Item::Compare { key, op, value }) => self
                    .requirements
                    .metadata
                    .push(MetadataCondition::Compare { key, op, value }),
                Err(message) => {
                    self.error(index, format!("{written}: {message}"));
                    continue;
                }
            }
            self.gave(FleetKey::MachineMetadata, index, written);
        }
    }

    /// fleet's rule: every `key=value` of one key, on any line, is one alternative.
    fn one_of(&mut self, key: String, value: String) {
        let existing = self.requirements.metadata.iter_mut().find_map(|c| match c {
            MetadataCondition::OneOf { key: k, values } if *k == key => Some(values),
            _ => None,
        });
        match existing {
            Some(values) if values.contains(&value) => {}
            Some(values) => values.push(value),
            None => self.requirements.metadata.push(MetadataCondition::OneOf {
                key,
                values: vec![value],
            }),
        }
    }

    fn finish(mut self) -> Result<Checked, Rejected> {
        for (first, second) in EXCLUSIVE {
            let find = |key| self.given.iter().find(|(k, ..)| *k == key);
            if let (Some((_, a, a_name)), Some((_, b, b_name))) = (find(first), find(second)) {
                let (a, b) = (*a, *b);
                let message = format!("{a_name} cannot be combined with {b_name}");
                self.error(a.max(b), message);
            }
        }
        for (target, index) in std::mem::take(&mut self.machine_of) {
            if let Some(pattern) = self
                .requirements
                .conflicts
                .iter()
                .find(|p| p.matches(&target))
            {
                let message = format!(
                    "MachineOf target `{target}` matches this unit's Conflicts pattern `{}`, so they can never share a machine",
                    pattern.as_str()
                );
                self.error(index, message);
            }
            if self.requirements.replaces.contains(&target) {
                let message =
                    format!("MachineOf target `{target}` is also replaced by this unit (Replaces)");
                self.error(index, message);
            }
        }
        if self.errors.is_empty() {
            Ok(Checked {
                requirements: self.requirements,
                warnings: self.warnings,
            })
        } else {
            Err(Rejected {
                errors: self.errors,
                warnings: self.warnings,
            })
        }
    }
}

/// systemd's booleans (`parse_boolean`), without the empty string.
fn parse_boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// fleet's multi-item form, `"region=us-east-1" "diskType=SSD"`: items are separated by
/// whitespace outside quotes, and the quotes themselves are dropped.
fn split_quoted(value: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut quoted = false;
    let mut inside = false;
    for c in value.chars() {
        match c {
            '"' => {
                inside = !inside;
                quoted = true;
            }
            c if c.is_whitespace() && !inside => {
                if quoted || !item.is_empty() {
                    items.push(std::mem::take(&mut item));
                }
                quoted = false;
            }
            c => item.push(c),
        }
    }
    if inside {
        return Err(format!("`{value}` has a quote that is never closed"));
    }
    if quoted || !item.is_empty() {
        items.push(item);
    }
    Ok(items)
}

enum Item {
    Equals {
        key: String,
        value: String,
    },
    Compare {
        key: String,
        op: CompareOp,
        value: String,
    },
}

fn parse_item(item: &str) -> Result<Item, String> {
    let Some(at) = item.find(['=', '!', '<', '>']) else {
        return Err(format!(
            "item `{item}` has no operator: write key=value, or compare with !=, <, <=, >, >="
        ));
    };
    let (key, rest) = item.split_at(at);
    let (op, value) = if let Some(v) = rest.strip_prefix("!=") {
        (Some(CompareOp::Ne), v)
    } else if let Some(v) = rest.strip_prefix("<=") {
        (Some(CompareOp::Le), v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Some(CompareOp::Ge), v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Some(CompareOp::Lt), v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Some(CompareOp::Gt), v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (None, v)
    } else {
        return Err(format!("item `{item}` has `!` without `=`"));
    };
    let (key, value) = (key.trim(), value.trim());
    validate_key(key).map_err(|e| format!("item `{item}`: {e}"))?;
    // `ram=>2048` is a typo for `ram>=2048`, not a wish for the value `>2048`.
    if value.starts_with(['=', '!', '<', '>']) {
        return Err(format!("item `{item}` has more than one operator"));
    }
    let (key, value) = (key.to_owned(), value.to_owned());
    match op {
        None => Ok(Item::Equals { key, value }),
        Some(CompareOp::Ne) => Ok(Item::Compare {
            key,
            op: CompareOp::Ne,
            value,
        }),
        Some(op) if value.is_empty() => Err(format!(
            "item `{item}` compares with `{}` but has no value",
            op.as_str()
        )),
        Some(op) => Ok(Item::Compare { key, op, value }),
    }
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

    #[test]
    fn warnings_are_kept_when_the_section_is_rejected() {
        let text = "[X-Fleet]\nFrobnicate=1\nGlobal=maybe\n";
        let file = UnitFile::parse(text.as_bytes()).unwrap().file;
        let rejected =
            Requirements::from_unit(&UnitName::new("a.service").unwrap(), &file).unwrap_err();
        assert_eq!(rejected.errors.len(), 1, "{rejected:?}");
        assert_eq!(rejected.warnings.len(), 1, "{rejected:?}");
        assert_eq!(rejected.warnings[0].option, 0);
    }

    /// Reads `[X-Fleet]` from `body` (the lines after the section header) as unit `name`.
    fn from_fleet(name: &str, body: &str) -> Result<Checked, Vec<RequirementError>> {
        let text = format!("[Unit]\nDescription=test\n\n[X-Fleet]\n{body}");
        let file = UnitFile::parse(text.as_bytes()).unwrap().file;
        Requirements::from_unit(&UnitName::new(name).unwrap(), &file).map_err(|r| r.errors)
    }

    /// The requirements as JSON, with only the fields a case sets.
    fn json_of(requirements: &Requirements) -> serde_json::Value {
        let mut json = serde_json::to_value(requirements).unwrap();
        let defaults = serde_json::to_value(Requirements::default()).unwrap();
        if let (Some(json), Some(defaults)) = (json.as_object_mut(), defaults.as_object()) {
            json.retain(|k, v| defaults.get(k) != Some(v));
        }
        json
    }

    /// Option indices count from 0 at `Description=`, so the first `[X-Fleet]` line is option 1.
    fn check(name: &str, body: &str, expected: serde_json::Value) {
        match from_fleet(name, body) {
            Ok(checked) => {
                assert_eq!(json_of(&checked.requirements), expected, "{name}: {body}");
                assert_eq!(checked.warnings, [], "{name}: {body}");
            }
            Err(errors) => panic!("{name}: {body}: {errors:?}"),
        }
    }

    fn check_errors(name: &str, body: &str, expected: &[(usize, &str)]) {
        let errors = from_fleet(name, body).expect_err(body);
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.option, e.message.as_str()))
            .collect();
        let expected: Vec<_> = expected.iter().map(|&(i, m)| (Some(i), m)).collect();
        assert_eq!(got, expected, "{name}: {body}");
    }

    fn check_warnings(name: &str, body: &str, expected: &[(usize, &str)]) {
        let checked = from_fleet(name, body).unwrap();
        let got: Vec<_> = checked
            .warnings
            .iter()
            .map(|w| (w.option, w.message.as_str()))
            .collect();
        assert_eq!(got, expected, "{name}: {body}");
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn x_fleet_options_become_requirements() {
        use serde_json::json;
        let cases = [
            ("", json!({})),
            (
                &format!("MachineID={ID}\n") as &str,
                json!({"machineID": ID}),
            ),
            ("MachineID=01234567\n", json!({"machineID": "01234567"})),
            (
                &format!("X-ConditionMachineID={ID}\n"),
                json!({"machineID": ID}),
            ),
            (
                "X-ConditionMachineBootID=01234567\n",
                json!({"machineID": "01234567"}),
            ),
            (
                "MachineOf=db.service  cache.service\nX-ConditionMachineOf=db.service log@1.service\n",
                json!({"machineOf": ["db.service", "cache.service", "log@1.service"]}),
            ),
            (
                "MachineMetadata=region=eu\n",
                json!({"machineMetadata": ["region=eu"]}),
            ),
            // values of one key are alternatives wherever they appear; different keys are ANDed
            (
                "MachineMetadata=region=eu\nMachineMetadata=disk=ssd\nX-ConditionMachineMetadata=region=us\nMachineMetadata=region=eu\n",
                json!({"machineMetadata": ["region=eu|us", "disk=ssd"]}),
            ),
            // fleet's quoted form holds several items
            (
                "MachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n",
                json!({"machineMetadata": ["region=us-east-1", "diskType=SSD"]}),
            ),
            (
                "MachineMetadata=\"region=us-east-1\"  \"region=us-west-1\" \"name=a b\"\n",
                json!({"machineMetadata": ["region=us-east-1|us-west-1", "name=a b"]}),
            ),
            // flotte's comparisons, each on its own
            (
                "MachineMetadata=ram>=2048\nMachineMetadata=\"ram<65536\" \"region!=asia\" \"cpus>2\" \"disk<=9\"\n",
                json!({"machineMetadata": ["ram>=2048", "ram<65536", "region!=asia", "cpus>2", "disk<=9"]}),
            ),
            (
                "MachineMetadata=region != asia\n",
                json!({"machineMetadata": ["region!=asia"]}),
            ),
            (
                "MachineMetadata=region=\n",
                json!({"machineMetadata": ["region="]}),
            ),
            (
                "MachineMetadata=region=\"eu\"\n",
                json!({"machineMetadata": ["region=\"eu\""]}),
            ),
            (
                "Conflicts=web@*.service  db?.service\nX-Conflicts=[ab].service\n",
                json!({"conflicts": ["web@*.service", "db?.service", "[ab].service"]}),
            ),
            ("Global=true\n", json!({"global": true})),
            ("Global=false\n", json!({})),
            (
                "Replaces=old.service older.service\n",
                json!({"replaces": ["old.service", "older.service"]}),
            ),
            // MachineID and metadata may be combined, and so may Global and Conflicts
            (
                &format!("MachineID={ID}\nMachineMetadata=region=eu\n"),
                json!({"machineID": ID, "machineMetadata": ["region=eu"]}),
            ),
            (
                "Global=yes\nConflicts=other.service\nMachineMetadata=role=edge\n",
                json!({"global": true, "conflicts": ["other.service"], "machineMetadata": ["role=edge"]}),
            ),
        ];
        for (body, expected) in cases {
            check("web.service", body, expected);
        }
    }

    #[test]
    fn global_takes_systemd_booleans() {
        for yes in ["1", "yes", "YES", "true", "True", "on", "y", "t"] {
            check(
                "web.service",
                &format!("Global={yes}\n"),
                serde_json::json!({"global": true}),
            );
        }
        for no in ["0", "no", "false", "OFF", "n", "f"] {
            check(
                "web.service",
                &format!("Global={no}\n"),
                serde_json::json!({}),
            );
        }
        check_errors(
            "web.service",
            "Global=maybe\n",
            &[(
                1,
                "Global: `maybe` is not a boolean (use yes/no, true/false, on/off or 1/0)",
            )],
        );
    }

    #[test]
    fn only_the_x_fleet_section_is_read() {
        let file = UnitFile::parse(
            b"[Unit]\nMachineOf=%bad\nConflicts=x\n[x-fleet]\nGlobal=maybe\n[Service]\nGlobal=true\n",
        )
        .unwrap()
        .file;
        let name = UnitName::new("web.service").unwrap();
        let checked = Requirements::from_unit(&name, &file).unwrap();
        assert_eq!(checked.requirements, Requirements::default());
        assert_eq!(checked.warnings, []);
    }

    #[test]
    fn specifiers_expand_in_x_fleet_values() {
        use serde_json::json;
        check(
            "web@3.service",
            "MachineOf=db@%i.service\nConflicts=%p@*.service\nMachineMetadata=shard=%i\n",
            json!({
                "machineOf": ["db@3.service"],
                "conflicts": ["web@*.service"],
                "machineMetadata": ["shard=3"],
            }),
        );
        check(
            "web.service",
            "MachineMetadata=pct<100%%\nMachineOf=%n-db.service\nReplaces=%N-old.service\n",
            json!({
                "machineMetadata": ["pct<100%"],
                "machineOf": ["web.service-db.service"],
                "replaces": ["web-old.service"],
            }),
        );
        check_errors(
            "web.service",
            "MachineOf=%H.service\n",
            &[(
                1,
                "MachineOf: unknown specifier `%H` in `%H.service`: use %n, %N, %p, %i or %%",
            )],
        );
    }

    #[test]
    fn an_instance_reads_its_templates_file_with_its_own_instance() {
        let template = UnitFile::parse(
            b"[Service]\nExecStart=/bin/web %i\n\n[X-Fleet]\nMachineOf=db@%i.service\nConflicts=web@*.service\n",
        )
        .unwrap()
        .file;
        let instance = UnitName::new("web@3.service").unwrap();
        let checked = Requirements::from_unit(&instance, &template).unwrap();
        assert_eq!(
            checked.requirements.machine_of,
            [UnitName::new("db@3.service").unwrap()]
        );
        assert_eq!(checked.requirements.conflicts[0].as_str(), "web@*.service");
        assert_eq!(checked.warnings, []);
        // other sections stay as written: systemd expands them on the host
        assert_eq!(
            template.values("Service", "ExecStart").collect::<Vec<_>>(),
            ["/bin/web %i"]
        );
        // the template itself checks with an empty `%i`, and its own Conflicts do not hit
        // the MachineOf target
        let name = UnitName::new("web@.service").unwrap();
        let checked = Requirements::from_unit(&name, &template).unwrap();
        assert_eq!(
            checked.requirements.machine_of,
            [UnitName::new("db@.service").unwrap()]
        );
        assert_eq!(checked.warnings, []);
    }

    #[test]
    fn bad_values_are_errors_naming_them() {
        let cases: &[(&str, &[(usize, &str)])] = &[
            (
                "MachineID=xyz\n",
                &[(
                    1,
                    "MachineID: `xyz` is neither a machine ID (32 lowercase hexadecimal characters) nor its 8-character prefix",
                )],
            ),
            (
                "MachineID=0123456\n",
                &[(
                    1,
                    "MachineID: `0123456` is neither a machine ID (32 lowercase hexadecimal characters) nor its 8-character prefix",
                )],
            ),
            (
                "MachineID=0123456789ABCDEF0123456789abcdef\n",
                &[(
                    1,
                    "MachineID: `0123456789ABCDEF0123456789abcdef` is neither a machine ID (32 lowercase hexadecimal characters) nor its 8-character prefix",
                )],
            ),
            ("MachineID=\n", &[(1, "MachineID: the value is empty")]),
            (
                "MachineID=01234567\nX-ConditionMachineID=01234567\n",
                &[(
                    2,
                    "X-ConditionMachineID: given more than once; a unit can name only one machine",
                )],
            ),
            (
                "MachineOf=db\n",
                &[(
                    1,
                    "MachineOf: unit name `db` is not a valid systemd unit name: it has no type suffix such as `.service`",
                )],
            ),
            (
                "MachineOf=db.service web.service\n",
                &[(1, "MachineOf: `web.service` is this unit itself")],
            ),
            (
                "Replaces=../x.service\n",
                &[(
                    1,
                    "Replaces: unit name `../x.service` is not a valid systemd unit name: it contains a character outside A-Z a-z 0-9 : _ . - @ \\",
                )],
            ),
            (
                "Replaces=%n\n",
                &[(1, "Replaces: `web.service` is this unit itself")],
            ),
            (
                "Conflicts=a.service [x.service\n",
                &[(
                    1,
                    "Conflicts: `[x.service` is not a valid glob pattern: invalid range pattern",
                )],
            ),
            ("Global=\n", &[(1, "Global: the value is empty")]),
            (
                "MachineMetadata=region\n",
                &[(
                    1,
                    "MachineMetadata: item `region` has no operator: write key=value, or compare with !=, <, <=, >, >=",
                )],
            ),
            (
                "MachineMetadata==eu\n",
                &[(
                    1,
                    "MachineMetadata: item `=eu`: metadata key `` is invalid: use letters, digits, `_`, `.` and `-`",
                )],
            ),
            (
                "MachineMetadata=re/gion=eu\n",
                &[(
                    1,
                    "MachineMetadata: item `re/gion=eu`: metadata key `re/gion` is invalid: use letters, digits, `_`, `.` and `-`",
                )],
            ),
            (
                "MachineMetadata=ram>=\n",
                &[(
                    1,
                    "MachineMetadata: item `ram>=` compares with `>=` but has no value",
                )],
            ),
            (
                "MachineMetadata=ram<\n",
                &[(
                    1,
                    "MachineMetadata: item `ram<` compares with `<` but has no value",
                )],
            ),
            (
                "MachineMetadata=ram!2\n",
                &[(1, "MachineMetadata: item `ram!2` has `!` without `=`")],
            ),
            (
                "MachineMetadata=ram=>2048\n",
                &[(
                    1,
                    "MachineMetadata: item `ram=>2048` has more than one operator",
                )],
            ),
            (
                "MachineMetadata=a==b\n",
                &[(1, "MachineMetadata: item `a==b` has more than one operator")],
            ),
            // in the quoted form every item counts: a bad one is reported, not skipped
            (
                "MachineMetadata=\"region=eu\" \"disk\" \"ram>\"\n",
                &[
                    (
                        1,
                        "MachineMetadata: item `disk` has no operator: write key=value, or compare with !=, <, <=, >, >=",
                    ),
                    (
                        1,
                        "MachineMetadata: item `ram>` compares with `>` but has no value",
                    ),
                ],
            ),
            (
                "MachineMetadata=\"region=eu\" \"\"\n",
                &[(
                    1,
                    "MachineMetadata: item `` has no operator: write key=value, or compare with !=, <, <=, >, >=",
                )],
            ),
            (
                "MachineMetadata=\"region=eu\" \"a=b\" \"\n",
                &[(
                    1,
                    "MachineMetadata: `\"region=eu\" \"a=b\" \"` has a quote that is never closed",
                )],
            ),
            (
                "MachineMetadata=\"\"\n",
                &[(
                    1,
                    "MachineMetadata: item `` has no operator: write key=value, or compare with !=, <, <=, >, >=",
                )],
            ),
        ];
        for (body, expected) in cases {
            check_errors("web.service", body, expected);
        }
    }

    #[test]
    fn fleets_invalid_combinations_are_rejected() {
        let cases: &[(&str, &[(usize, &str)])] = &[
            (
                "MachineID=01234567\nMachineOf=db.service\n",
                &[(2, "MachineID cannot be combined with MachineOf")],
            ),
            (
                "Conflicts=db.service\nMachineID=01234567\n",
                &[(2, "MachineID cannot be combined with Conflicts")],
            ),
            (
                "MachineID=01234567\nGlobal=true\n",
                &[(2, "MachineID cannot be combined with Global")],
            ),
            (
                "MachineID=01234567\nReplaces=old.service\n",
                &[(2, "MachineID cannot be combined with Replaces")],
            ),
            (
                "Global=on\nX-ConditionMachineOf=db.service\n",
                &[(2, "Global cannot be combined with X-ConditionMachineOf")],
            ),
            (
                "Global=1\nReplaces=old.service\n",
                &[(2, "Global cannot be combined with Replaces")],
            ),
            (
                "X-Conflicts=x.service\nReplaces=old.service\n",
                &[(2, "X-Conflicts cannot be combined with Replaces")],
            ),
            (
                "MachineOf=db.service\nConflicts=d*.service\n",
                &[(
                    1,
                    "MachineOf target `db.service` matches this unit's Conflicts pattern `d*.service`, so they can never share a machine",
                )],
            ),
            (
                "MachineOf=db.service\nReplaces=db.service\n",
                &[(
                    1,
                    "MachineOf target `db.service` is also replaced by this unit (Replaces)",
                )],
            ),
            // several problems are all reported
            (
                "MachineID=01234567\nGlobal=yes\nMachineOf=db.service\nMachineMetadata=bad\n",
                &[
                    (
                        4,
                        "MachineMetadata: item `bad` has no operator: write key=value, or compare with !=, <, <=, >, >=",
                    ),
                    (3, "MachineID cannot be combined with MachineOf"),
                    (2, "MachineID cannot be combined with Global"),
                    (3, "Global cannot be combined with MachineOf"),
                ],
            ),
        ];
        for (body, expected) in cases {
            check_errors("web.service", body, expected);
        }
        // Global=false asks for nothing, so it combines with anything
        check(
            "web.service",
            "Global=false\nMachineOf=db.service\n",
            serde_json::json!({"machineOf": ["db.service"]}),
        );
    }

    #[test]
    fn odd_but_harmless_options_give_warnings() {
        check_warnings(
            "web.service",
            "Foo=bar\nMachineOf=\nConflicts=%i\n",
            &[
                (
                    1,
                    "unknown [X-Fleet] option `Foo` is ignored (known: MachineID, MachineOf, MachineMetadata, Conflicts, Global, Replaces)",
                ),
                (
                    2,
                    "MachineOf: the value is empty, so this option has no effect",
                ),
                (
                    3,
                    "Conflicts: the value is empty, so this option has no effect",
                ),
            ],
        );
        check_warnings(
            "web.service",
            "Global=true\nGlobal=false\n",
            &[(2, "Global: given more than once; the last value counts")],
        );
        check_warnings(
            "web.service",
            "MachineOf=db@.service\n",
            &[(
                1,
                "MachineOf: `db@.service` is a template, which is never placed, so this unit never will be",
            )],
        );
    }
}
