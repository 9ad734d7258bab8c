//! Reading `[X-Fleet]` from a unit file: fleet's keys and their old aliases, specifiers
//! expanded, every problem reported as an error or a warning naming its option.

use super::{
    Checked, CompareOp, ConflictPattern, MachineIdPattern, MetadataCondition, Rejected,
    RequirementError, RequirementWarning, Requirements,
};
use crate::machine::{MachineId, validate_key};
use crate::resources::{parse_cpu, parse_memory};
use crate::unit::specifier;
use crate::unit::{UnitFile, UnitName, UnitOption};

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
    Memory,
    Cpu,
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
            "Memory" => Self::Memory,
            "CPU" => Self::Cpu,
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
    seen_memory: bool,
    seen_cpu: bool,
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
            seen_memory: false,
            seen_cpu: false,
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
                    "unknown [X-Fleet] option `{written}` is ignored (known: MachineID, MachineOf, MachineMetadata, Conflicts, Global, Replaces, Memory, CPU)"
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
                FleetKey::MachineId | FleetKey::Global | FleetKey::Memory | FleetKey::Cpu => {
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
            FleetKey::Memory => self.memory(index, written, value),
            FleetKey::Cpu => self.cpu(index, written, value),
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

    /// `Memory=512M`: systemd's sizes (`MemoryMax=`), in bytes.
    fn memory(&mut self, index: usize, written: &str, value: &str) {
        if std::mem::replace(&mut self.seen_memory, true) {
            self.warn(
                index,
                format!("{written}: given more than once; the last value counts"),
            );
        }
        match parse_memory(value) {
            Ok(bytes) => self.requirements.requests.memory = bytes,
            Err(message) => self.error(index, format!("{written}: {message}")),
        }
    }

    /// `CPU=0.5`: a number of CPUs, to a thousandth.
    fn cpu(&mut self, index: usize, written: &str, value: &str) {
        if std::mem::replace(&mut self.seen_cpu, true) {
            self.warn(
                index,
                format!("{written}: given more than once; the last value counts"),
            );
        }
        match parse_cpu(value) {
            Ok(millicpus) => self.requirements.requests.millicpus = millicpus,
            Err(message) => self.error(index, format!("{written}: {message}")),
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
