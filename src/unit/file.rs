//! Unit files: the options list as the model, a canonical serialization, the content hash that
//! identifies a unit's content, and the rules every option keeps so that it can be written as
//! a unit file and read back. `parse.rs` reads systemd's syntax into this model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

mod parse;
#[cfg(test)]
mod tests;

pub use parse::{ParseError, ParseProblem, ParsedUnit};

/// The largest unit file flotte accepts. systemd reads far larger files, but a unit file is
/// stored in etcd and copied to every machine it runs on; a bigger one is a mistake.
pub const MAX_FILE_SIZE: usize = 512 * 1024;

/// One `Name=Value` line of a section, as fleet's API carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnitOption {
    pub section: String,
    pub name: String,
    pub value: String,
}

impl UnitOption {
    pub fn new(section: &str, name: &str, value: &str) -> Self {
        Self {
            section: section.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// A unit file as its options list, in file order. Every list held here can be written as a unit
/// file and read back unchanged: `parse(serialize(x)) == x`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitFile {
    options: Vec<UnitOption>,
}

/// SHA-1 of a unit's canonical serialization: identical content, identical hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitHash([u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("content hash `{0}` is not 40 lowercase hexadecimal characters")]
pub struct HashError(pub String);

impl UnitHash {
    /// The first 7 hexadecimal characters, as fleetctl's HASH column shows them.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(7);
        s
    }
}

impl fmt::Display for UnitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for UnitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for UnitHash {
    type Err = HashError;

    /// Only the lowercase form: the hash is an etcd key segment, and one content must have one key.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || HashError(s.to_owned());
        if s.len() != 40 {
            return Err(err());
        }
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 20];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            *byte = digit(pair[0]).ok_or_else(err)? << 4 | digit(pair[1]).ok_or_else(err)?;
        }
        Ok(Self(bytes))
    }
}

impl TryFrom<String> for UnitHash {
    type Error = HashError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UnitHash> for String {
    fn from(h: UnitHash) -> String {
        h.to_string()
    }
}

/// An option from the API that cannot be written as a unit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option {index}: {problem}")]
pub struct OptionError {
    /// Index into the options list.
    pub index: usize,
    pub problem: OptionProblem,
}

/// Which part of an option a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionField {
    Section,
    Name,
    Value,
}

/// Why a section name, option name or value cannot be written as a unit file and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    Empty,
    Whitespace,
    /// Leading or trailing whitespace, which the parser trims.
    OuterWhitespace,
    Contains(char),
    StartsWith(char),
    Control(char),
    /// An odd number of trailing backslashes, which the parser reads as a line continuation.
    TrailingBackslash,
    /// The option's line takes the canonical form over `MAX_FILE_SIZE`, which parse would refuse.
    PastSizeLimit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OptionProblem {
    pub field: OptionField,
    /// The option's name, to say whose value is wrong.
    pub name: String,
    pub text: String,
    pub flaw: Flaw,
}

impl fmt::Display for OptionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = shown(&self.text);
        match self.field {
            OptionField::Section => write!(f, "section name `{text}`")?,
            OptionField::Name => write!(f, "option name `{text}`")?,
            OptionField::Value => write!(f, "value `{text}` of `{}`", shown(&self.name))?,
        }
        match self.flaw {
            Flaw::Empty => f.write_str(" is empty"),
            Flaw::Whitespace => f.write_str(" contains whitespace"),
            Flaw::OuterWhitespace => f.write_str(" has leading or trailing whitespace"),
            Flaw::Contains(c) => write!(f, " contains `{c}`"),
            Flaw::StartsWith(c) => write!(f, " starts with `{c}`"),
            Flaw::Control(c) => write!(f, " contains the control character U+{:04X}", c as u32),
            Flaw::TrailingBackslash => f.write_str(" ends in an unescaped backslash"),
            Flaw::PastSizeLimit => write!(
                f,
                " takes the unit past the {} KiB limit",
                MAX_FILE_SIZE / 1024
            ),
        }
    }
}

/// systemd's `WHITESPACE`: what it trims around keys, values and lines. Wider Unicode spaces
/// are part of a value for systemd, so they are for flotte too.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn trim_blank(s: &str) -> &str {
    s.trim_matches(is_blank)
}

/// True when `s` ends in an odd number of backslashes: the last one escapes the newline.
fn ends_in_escape(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// For messages: control characters made visible, long lines shortened.
fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn problem(field: OptionField, name: &str, text: &str, flaw: Flaw) -> OptionProblem {
    OptionProblem {
        field,
        name: name.to_owned(),
        text: text.to_owned(),
        flaw,
    }
}

fn check_section(section: &str) -> Result<(), OptionProblem> {
    let flaw = if section.is_empty() {
        Some(Flaw::Empty)
    } else if let Some(c) = section.chars().find(|c| c.is_control()) {
        Some(Flaw::Control(c))
    } else {
        section
            .chars()
            .find(|c| matches!(c, '[' | ']'))
            .map(Flaw::Contains)
    };
    match flaw {
        None => Ok(()),
        Some(flaw) => Err(problem(OptionField::Section, "", section, flaw)),
    }
}

fn check_name(name: &str) -> Result<(), OptionProblem> {
    let flaw = if name.is_empty() {
        Some(Flaw::Empty)
    } else if let Some(c) = name.chars().find(|c| c.is_control()) {
        Some(Flaw::Control(c))
    } else if name.contains(char::is_whitespace) {
        Some(Flaw::Whitespace)
    } else if let Some(c) = name.chars().find(|c| matches!(c, '=' | '[')) {
        Some(Flaw::Contains(c))
    } else {
        name.chars()
            .next()
            .filter(|c| matches!(c, '#' | ';'))
            .map(Flaw::StartsWith)
    };
    match flaw {
        None => Ok(()),
        Some(flaw) => Err(problem(OptionField::Name, name, name, flaw)),
    }
}

/// Tabs inside a value are plain text to systemd; every other control character either ends
/// the line (`\n`, `\r`) or has no place in a unit file.
fn check_value(name: &str, value: &str) -> Result<(), OptionProblem> {
    let flaw = if let Some(c) = value.chars().find(|&c| c.is_control() && c != '\t') {
        Some(Flaw::Control(c))
    } else if trim_blank(value) != value {
        Some(Flaw::OuterWhitespace)
    } else if ends_in_escape(value) {
        Some(Flaw::TrailingBackslash)
    } else {
        None
    };
    match flaw {
        None => Ok(()),
        Some(flaw) => Err(problem(OptionField::Value, name, value, flaw)),
    }
}

fn check_option(option: &UnitOption) -> Result<(), OptionProblem> {
    check_section(&option.section)?;
    check_name(&option.name)?;
    check_value(&option.name, &option.value)
}

/// The length of the canonical form after each option, as `serialize` writes it.
fn serialized_lengths(options: &[UnitOption]) -> impl Iterator<Item = usize> {
    let mut total = 0;
    let mut section: Option<&str> = None;
    options.iter().map(move |option| {
        if section != Some(option.section.as_str()) {
            let blank_line = usize::from(section.is_some());
            total += blank_line + option.section.len() + "[]\n".len();
            section = Some(&option.section);
        }
        total += option.name.len() + option.value.len() + "=\n".len();
        total
    })
}

/// The canonical form can be longer than the file it came from (a blank line is added between
/// sections), so the size limit is checked on it too: a unit that parse would refuse must not
/// get in through the API, nor through a file just under the limit.
fn check_size(options: &[UnitOption]) -> Result<(), (usize, OptionProblem)> {
    match serialized_lengths(options).position(|len| len > MAX_FILE_SIZE) {
        None => Ok(()),
        Some(index) => {
            let option = &options[index];
            let flaw = Flaw::PastSizeLimit;
            Err((
                index,
                problem(OptionField::Value, &option.name, &option.value, flaw),
            ))
        }
    }
}

impl UnitFile {
    /// Validates options coming from the API: every option must be representable so that
    /// `parse(serialize(x)) == x`; otherwise an error naming the option index, field and value.
    pub fn from_options(options: Vec<UnitOption>) -> Result<UnitFile, OptionError> {
        for (index, option) in options.iter().enumerate() {
            check_option(option).map_err(|problem| OptionError { index, problem })?;
        }
        check_size(&options).map_err(|(index, problem)| OptionError { index, problem })?;
        Ok(UnitFile { options })
    }

    pub fn options(&self) -> &[UnitOption] {
        &self.options
    }

    pub fn into_options(self) -> Vec<UnitOption> {
        self.options
    }

    /// The canonical form: a header whenever the section changes, a blank line between section
    /// blocks, one `Name=Value` line per option, a trailing newline.
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        let mut section: Option<&str> = None;
        for option in &self.options {
            if section != Some(option.section.as_str()) {
                if section.is_some() {
                    out.push('\n');
                }
                out.push('[');
                out.push_str(&option.section);
                out.push_str("]\n");
                section = Some(&option.section);
            }
            out.push_str(&option.name);
            out.push('=');
            out.push_str(&option.value);
            out.push('\n');
        }
        out
    }

    pub fn hash(&self) -> UnitHash {
        UnitHash(Sha1::digest(self.serialize().as_bytes()).into())
    }

    /// Every value of `name` in `section`, in file order.
    pub fn values<'a>(&'a self, section: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.options
            .iter()
            .filter(move |o| o.section == section && o.name == name)
            .map(|o| o.value.as_str())
    }

    /// The last `[Unit]` `Description=`; `None` when absent or emptied, as systemd reads it.
    pub fn description(&self) -> Option<&str> {
        self.values("Unit", "Description")
            .last()
            .filter(|d| !d.is_empty())
    }
}
