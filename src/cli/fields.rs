//! The columns of `list-units`, `list-unit-files`, `list-machines` and `services`, as pure
//! functions over the API's answers (`view`'s units and states, `wire`'s machines) and
//! `discovery::Service`: which fields exist, what each shows, and the table or JSON they make.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;
use serde::ser::SerializeMap;

use super::table;
use super::view;
use crate::discovery::Service;
use crate::resources::{Memory, Resources, cpus};
use crate::unit::{UnitFile, UnitHash};
use crate::wire;

/// A column a list command can show, named as in `--fields`.
pub trait Field: Copy + Eq + fmt::Debug + Send + Sync + 'static {
    /// Every field, in the order `--help` lists them.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// The parsed `--fields` value: at least one field, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields<F>(pub Vec<F>);

/// Parses `unit,machine,...`; an unknown or missing field is a usage error naming the valid ones.
pub fn parse_fields<F: Field>(text: &str) -> Result<Fields<F>, String> {
    let valid = || {
        F::ALL
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(",")
    };
    if text.trim().is_empty() {
        return Err(format!("no fields given: choose from {}", valid()));
    }
    text.split(',')
        .map(|name| {
            let name = name.trim();
            F::ALL
                .iter()
                .copied()
                .find(|f| f.name() == name)
                .ok_or_else(|| format!("unknown field `{name}`: valid fields are {}", valid()))
        })
        .collect::<Result<Vec<F>, String>>()
        .map(Fields)
}

macro_rules! fields {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $ty { $($variant),+ }

        impl Field for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
    };
}

fields!(
    /// `list-units`: one row per unit and machine, from the units' states.
    UnitField {
        Unit => "unit",
        Machine => "machine",
        Active => "active",
        Sub => "sub",
        Load => "load",
        Hash => "hash",
    }
);

fields!(
    /// `list-unit-files`: one row per submitted unit.
    UnitFileField {
        Unit => "unit",
        Hash => "hash",
        Dstate => "dstate",
        State => "state",
        Target => "target",
        Desc => "desc",
        Global => "global",
        Reason => "reason",
    }
);

fields!(
    /// `list-machines`: one row per machine.
    MachineField {
        Machine => "machine",
        Ip => "ip",
        Metadata => "metadata",
        Drained => "drained",
        Hostname => "hostname",
        Version => "version",
        Cpu => "cpu",
        Memory => "memory",
        Units => "units",
    }
);

fields!(
    /// `services`: one row per announced key.
    ServiceField {
        Key => "key",
        Value => "value",
        Ttl => "ttl",
        Machine => "machine",
        Unit => "unit",
        Hostname => "hostname",
    }
);

pub const DEFAULT_SERVICE_FIELDS: &str = "key,value,ttl,machine,unit";
pub const DEFAULT_UNIT_FIELDS: &str = "unit,machine,active,sub";
pub const DEFAULT_UNIT_FILE_FIELDS: &str = "unit,hash,dstate,state,target";
/// fleetctl's columns, then whether the machine is drained (`flottectl drain`).
pub const DEFAULT_MACHINE_FIELDS: &str = "machine,ip,metadata,drained";

/// `--full`: whole machine IDs and hashes instead of fleetctl's abbreviations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Short,
    Full,
}

/// `--no-legend`: whether the header row is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    Show,
    Hide,
}

/// One value of a table: text, `-` when there is none, or something that JSON shows typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Missing,
    Flag(bool),
    Map(BTreeMap<String, String>),
    /// A duration: `58s` in a table, `58` in JSON.
    Seconds(u64),
}

impl Cell {
    fn text_or_missing(s: &str) -> Cell {
        if s.is_empty() {
            Cell::Missing
        } else {
            Cell::Text(s.to_owned())
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            Cell::Text(s) => one_line(s),
            Cell::Missing => "-".to_owned(),
            Cell::Flag(b) => b.to_string(),
            Cell::Map(m) if m.is_empty() => "-".to_owned(),
            Cell::Map(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            Cell::Seconds(n) => format!("{n}s"),
        }
    }
}

/// `text` with its control characters escaped (`\n`, `\t`, `\u{1b}`): a value that anyone can
/// write into etcd must not break a table's rows and columns, nor a line-per-change stream.
pub fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Text(t) => s.serialize_str(t),
            Cell::Missing => s.serialize_none(),
            Cell::Flag(b) => s.serialize_bool(*b),
            Cell::Map(m) => m.serialize(s),
            Cell::Seconds(n) => s.serialize_u64(*n),
        }
    }
}

/// What a list command shows: named columns and their rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

/// A row as a JSON object whose keys keep the columns' order.
struct Row<'a> {
    columns: &'a [&'static str],
    cells: &'a [Cell],
}

impl Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.cells.len()))?;
        for (column, cell) in self.columns.iter().zip(self.cells) {
            map.serialize_entry(column, cell)?;
        }
        map.end()
    }
}

impl Listing {
    fn new<F: Field, T>(fields: &Fields<F>, items: &[T], cell: impl Fn(F, &T) -> Cell) -> Listing {
        Listing {
            columns: fields.0.iter().map(|f| f.name()).collect(),
            rows: items
                .iter()
                .map(|item| fields.0.iter().map(|f| cell(*f, item)).collect())
                .collect(),
        }
    }

    /// fleetctl's table: upper-cased field names as the legend, tab-aligned columns.
    pub fn to_text(&self, legend: Legend) -> String {
        let header = (legend == Legend::Show)
            .then(|| self.columns.iter().map(|c| c.to_uppercase()).collect());
        let rows: Vec<Vec<String>> = header
            .into_iter()
            .chain(
                self.rows
                    .iter()
                    .map(|r| r.iter().map(Cell::to_text).collect()),
            )
            .collect();
        table::render(&rows)
    }

    /// A JSON array with one object per row, keyed by field name; missing values are null.
    pub fn to_json(&self) -> String {
        let rows: Vec<Row> = self
            .rows
            .iter()
            .map(|cells| Row {
                columns: &self.columns,
                cells,
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&rows).expect("cells always serialize");
        text.push('\n');
        text
    }
}

/// The machines of the cluster by ID, for the `MACHINE` and `TARGET` columns.
pub struct Machines<'a> {
    by_id: HashMap<&'a str, &'a wire::Machine>,
}

impl<'a> Machines<'a> {
    pub fn new(machines: &'a [wire::Machine]) -> Self {
        Machines {
            by_id: machines.iter().map(|m| (m.id.as_str(), m)).collect(),
        }
    }

    /// fleetctl's machine legend with the IP: `1a2b3c4d.../10.0.0.2`; the ID alone for a
    /// machine that is gone from the list.
    pub fn legend(&self, id: &str, detail: Detail) -> String {
        let short = machine_id(id, detail);
        match self.by_id.get(id).filter(|m| !m.primary_ip.is_empty()) {
            Some(m) => format!("{short}/{}", m.primary_ip),
            None => short,
        }
    }
}

/// `1a2b3c4d...` (fleetctl's first 8 characters), or the whole ID with `--full`.
pub fn machine_id(id: &str, detail: Detail) -> String {
    match detail {
        Detail::Full => id.to_owned(),
        Detail::Short => match id.get(..8) {
            Some(prefix) if id.len() > 8 => format!("{prefix}..."),
            _ => id.to_owned(),
        },
    }
}

fn hash_text(hash: &str, detail: Detail) -> Cell {
    match (detail, hash.get(..7)) {
        (_, None) if hash.is_empty() => Cell::Missing,
        (Detail::Short, Some(short)) => Cell::Text(short.to_owned()),
        _ => Cell::Text(hash.to_owned()),
    }
}

/// What a submitted unit's file says about it (fleet's API sends no hash), computed once per
/// row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct FileFacts {
    hash: Option<UnitHash>,
    description: Option<String>,
}

impl FileFacts {
    /// Options the server should never have accepted leave the facts unknown rather than
    /// failing the whole listing.
    fn of(unit: &view::Unit) -> FileFacts {
        let options = unit.options.iter().cloned().map(Into::into).collect();
        let Ok(file) = UnitFile::from_options(options) else {
            return FileFacts::default();
        };
        FileFacts {
            hash: Some(file.hash()),
            description: file.description().map(str::to_owned),
        }
    }
}

/// `list-units`: a row per state.
pub fn unit_states(
    fields: &Fields<UnitField>,
    states: &[view::UnitState],
    machines: &Machines,
    detail: Detail,
) -> Listing {
    Listing::new(fields, states, |field, s| match field {
        UnitField::Unit => Cell::Text(s.name.to_string()),
        UnitField::Machine if s.machine_id.is_empty() => Cell::Missing,
        UnitField::Machine => Cell::Text(machines.legend(&s.machine_id, detail)),
        UnitField::Active => Cell::text_or_missing(s.active.as_str()),
        UnitField::Sub => Cell::text_or_missing(&s.sub),
        UnitField::Load => Cell::text_or_missing(s.load.as_str()),
        UnitField::Hash => hash_text(&s.hash, detail),
    })
}

/// `list-unit-files`: a row per submitted unit.
pub fn unit_files(
    fields: &Fields<UnitFileField>,
    units: &[view::Unit],
    machines: &Machines,
    detail: Detail,
) -> Listing {
    let rows: Vec<(&view::Unit, FileFacts)> = units.iter().map(|u| (u, FileFacts::of(u))).collect();
    Listing::new(fields, &rows, |field, (u, facts)| match field {
        UnitFileField::Unit => Cell::Text(u.name.to_string()),
        UnitFileField::Hash => match &facts.hash {
            Some(h) => hash_text(&h.to_string(), detail),
            None => Cell::Missing,
        },
        UnitFileField::Dstate => Cell::Text(u.desired.to_string()),
        // fleet shows no state for a global unit: it has one per machine.
        UnitFileField::State if u.global => Cell::Missing,
        UnitFileField::State => Cell::Text(u.current.to_string()),
        UnitFileField::Target if u.global => Cell::Text("global".to_owned()),
        UnitFileField::Target if u.machine_id.is_empty() => Cell::Missing,
        UnitFileField::Target => Cell::Text(machines.legend(&u.machine_id, detail)),
        UnitFileField::Desc => facts.description.clone().map_or(Cell::Missing, Cell::Text),
        UnitFileField::Global => Cell::Flag(u.global),
        UnitFileField::Reason => Cell::text_or_missing(&u.reason),
    })
}

/// `list-machines`: a row per machine.
pub fn machines(
    fields: &Fields<MachineField>,
    machines: &[wire::Machine],
    detail: Detail,
) -> Listing {
    Listing::new(fields, machines, |field, m| match field {
        MachineField::Machine => Cell::Text(machine_id(&m.id, detail)),
        MachineField::Ip => Cell::text_or_missing(&m.primary_ip),
        MachineField::Metadata => Cell::Map(m.metadata.clone()),
        MachineField::Hostname => Cell::text_or_missing(&m.hostname),
        MachineField::Version => Cell::text_or_missing(&m.version),
        MachineField::Drained => Cell::Flag(m.drained),
        MachineField::Cpu => amounts(m, |r| r.millicpus, cpus),
        MachineField::Memory => amounts(m, |r| r.memory, |n| Memory(n).to_string()),
        MachineField::Units => Cell::Text(m.units.to_string()),
    })
}

/// `requested/capacity (free)` in one dimension, such as `1.5/4 (2.5 free)` CPUs or
/// `512 MiB/8 GiB (7.5 GiB free)`; `-` for a
/// machine that reports no capacity.
fn amounts(m: &wire::Machine, get: fn(&Resources) -> u64, show: fn(u64) -> String) -> Cell {
    let Some(capacity) = &m.capacity else {
        return Cell::Missing;
    };
    let free = m.free.as_ref().map_or(0, get);
    Cell::Text(format!(
        "{}/{} ({} free)",
        show(get(&m.requested)),
        show(get(capacity)),
        show(free)
    ))
}

/// `services`: a row per announced key. Who announced it is known only for keys that
/// `flottectl announce` wrote; the others show `-`.
pub fn services(fields: &Fields<ServiceField>, services: &[Service], detail: Detail) -> Listing {
    Listing::new(fields, services, |field, s| {
        let announcer = s.announcer.as_ref();
        match field {
            ServiceField::Key => Cell::Text(s.key.clone()),
            ServiceField::Value => Cell::text_or_missing(&s.value),
            ServiceField::Ttl => s.ttl.map_or(Cell::Missing, |t| Cell::Seconds(t.as_secs())),
            ServiceField::Machine => announcer
                .and_then(|a| a.machine.as_ref())
                .map_or(Cell::Missing, |m| {
                    Cell::Text(machine_id(m.as_str(), detail))
                }),
            ServiceField::Unit => announcer
                .and_then(|a| a.unit.as_ref())
                .map_or(Cell::Missing, |u| Cell::Text(u.to_string())),
            ServiceField::Hostname => {
                announcer.map_or(Cell::Missing, |a| Cell::text_or_missing(&a.hostname))
            }
        }
    })
}

#[cfg(test)]
mod tests;
