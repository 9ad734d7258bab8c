//! Unit files: the options list as the model, systemd's syntax as the parser, a canonical
//! serialization and the content hash that identifies a unit's content.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

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

/// A parsed unit file and where each option starts, for error messages about its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUnit {
    pub file: UnitFile,
    /// `lines[i]` is the 1-based line on which option `i` starts.
    pub lines: Vec<usize>,
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

/// A unit file that could not be parsed, and the line where that became clear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based; 0 when the problem is the file as a whole (its size).
    pub line: usize,
    pub problem: ParseProblem,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.problem),
            line => write!(f, "line {line}: {}", self.problem),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseProblem {
    #[error("the file is larger than the {} KiB limit", MAX_FILE_SIZE / 1024)]
    TooLarge,
    #[error("invalid UTF-8 (byte {byte:#04x})")]
    InvalidUtf8 { byte: u8 },
    #[error("a NUL byte, which a unit file cannot contain")]
    Nul,
    #[error("`{}` is outside any section: put a section header such as `[Unit]` before it", shown(.name))]
    OutsideSection { name: String },
    #[error("`{}` has no `=`", shown(.line))]
    NoEquals { line: String },
    #[error("`{}` has no name before `=`", shown(.line))]
    EmptyName { line: String },
    #[error("section header `{}` has no closing `]`", shown(.line))]
    UnterminatedSection { line: String },
    #[error("section header `[]` has no name")]
    EmptySection,
    #[error(transparent)]
    Invalid(#[from] OptionProblem),
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

/// systemd's comment characters, recognised at the start of a line after whitespace.
fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_blank).starts_with(['#', ';'])
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

/// The bytes as text, or the line of the first NUL or invalid UTF-8 byte, whichever comes first.
fn decode(bytes: &[u8]) -> Result<&str, ParseError> {
    let line_at = |pos: usize| bytes[..pos].iter().filter(|&&b| b == b'\n').count() + 1;
    let nul = bytes.iter().position(|&b| b == 0);
    let nul_error = |pos| ParseError {
        line: line_at(pos),
        problem: ParseProblem::Nul,
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => match nul {
            Some(pos) => Err(nul_error(pos)),
            None => Ok(text),
        },
        Err(e) => {
            let bad = e.valid_up_to();
            match nul {
                Some(pos) if pos < bad => Err(nul_error(pos)),
                _ => Err(ParseError {
                    line: line_at(bad),
                    problem: ParseProblem::InvalidUtf8 { byte: bytes[bad] },
                }),
            }
        }
    }
}

/// Turns logical lines (continuations joined) into options.
#[derive(Default)]
struct Builder {
    section: Option<String>,
    options: Vec<UnitOption>,
    lines: Vec<usize>,
}

impl Builder {
    fn line(&mut self, number: usize, text: &str) -> Result<(), ParseError> {
        let err = |problem| ParseError {
            line: number,
            problem,
        };
        let text = trim_blank(text);
        if text.is_empty() {
            return Ok(());
        }
        if text.starts_with('[') {
            let name = text.strip_suffix(']').map(|t| &t[1..]).ok_or_else(|| {
                err(ParseProblem::UnterminatedSection {
                    line: text.to_owned(),
                })
            })?;
            if name.is_empty() {
                return Err(err(ParseProblem::EmptySection));
            }
            check_section(name).map_err(|p| err(p.into()))?;
            self.section = Some(name.to_owned());
            return Ok(());
        }
        let (name, value) = text.split_once('=').ok_or_else(|| {
            err(ParseProblem::NoEquals {
                line: text.to_owned(),
            })
        })?;
        let (name, value) = (trim_blank(name), trim_blank(value));
        if name.is_empty() {
            return Err(err(ParseProblem::EmptyName {
                line: text.to_owned(),
            }));
        }
        let section = self.section.as_deref().ok_or_else(|| {
            err(ParseProblem::OutsideSection {
                name: name.to_owned(),
            })
        })?;
        let option = UnitOption::new(section, name, value);
        check_option(&option).map_err(|p| err(p.into()))?;
        self.options.push(option);
        self.lines.push(number);
        Ok(())
    }
}

impl UnitFile {
    /// Parses a unit file as systemd's configuration parser reads it (systemd.syntax(7)), but
    /// strict where systemd only warns: every line is either understood or an error.
    pub fn parse(bytes: &[u8]) -> Result<ParsedUnit, ParseError> {
        if bytes.len() > MAX_FILE_SIZE {
            return Err(ParseError {
                line: 0,
                problem: ParseProblem::TooLarge,
            });
        }
        let text = decode(bytes)?;
        // systemd skips a byte order mark at the start of the file.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut builder = Builder::default();
        // A continued line: where it started, and its text so far.
        let mut pending: Option<(usize, String)> = None;
        for (index, raw) in text.split('\n').enumerate() {
            let number = index + 1;
            let physical = raw.strip_suffix('\r').unwrap_or(raw);
            // Even inside a continuation: systemd drops comment lines before joining.
            if is_comment(physical) {
                continue;
            }
            let (start, mut logical) = match pending.take() {
                Some((start, mut joined)) => {
                    joined.push_str(physical);
                    (start, joined)
                }
                None => (number, physical.to_owned()),
            };
            if ends_in_escape(&logical) {
                logical.pop();
                logical.push(' ');
                pending = Some((start, logical));
                continue;
            }
            builder.line(start, &logical)?;
        }
        // systemd accepts a continuation that runs into the end of the file.
        if let Some((start, logical)) = pending {
            builder.line(start, &logical)?;
        }
        check_size(&builder.options).map_err(|(index, problem)| ParseError {
            line: builder.lines[index],
            problem: problem.into(),
        })?;
        Ok(ParsedUnit {
            file: UnitFile {
                options: builder.options,
            },
            lines: builder.lines,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opt(section: &str, name: &str, value: &str) -> UnitOption {
        UnitOption::new(section, name, value)
    }

    /// Parses `input` and compares with `expected`: the options with their start lines, or the
    /// error's line and message.
    fn check(input: &str, expected: Result<&[(usize, UnitOption)], (usize, &str)>) {
        check_bytes(input.as_bytes(), expected);
    }

    fn check_bytes(input: &[u8], expected: Result<&[(usize, UnitOption)], (usize, &str)>) {
        let got = UnitFile::parse(input)
            .map(|p| {
                p.lines
                    .into_iter()
                    .zip(p.file.into_options())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| (e.line, e.problem.to_string()));
        let expected = expected
            .map(<[_]>::to_vec)
            .map_err(|(line, message)| (line, message.to_owned()));
        assert_eq!(got, expected, "input: {:?}", String::from_utf8_lossy(input));
    }

    #[test]
    fn the_parser_follows_systemd_syntax() {
        let cases: &[(&str, &[(usize, UnitOption)])] = &[
            ("", &[]),
            ("\n\n  \n", &[]),
            (
                "[Unit]\nDescription=Web\n",
                &[(2, opt("Unit", "Description", "Web"))],
            ),
            // whitespace around `=` and at both ends is trimmed, inner whitespace kept
            (
                "  [Service]  \n\t ExecStart  =  /bin/sh -c  'x'  \t\n",
                &[(2, opt("Service", "ExecStart", "/bin/sh -c  'x'"))],
            ),
            // comments with `#` and `;`, after leading whitespace too
            (
                "# top\n[Unit]\n; semi\n   # indented\nA=1 # not a comment\n",
                &[(5, opt("Unit", "A", "1 # not a comment"))],
            ),
            // repeated keys keep every value in order; empty values are kept
            (
                "[Service]\nExecStart=\nExecStart=/a\nExecStart=/b\n",
                &[
                    (2, opt("Service", "ExecStart", "")),
                    (3, opt("Service", "ExecStart", "/a")),
                    (4, opt("Service", "ExecStart", "/b")),
                ],
            ),
            // keys are case-sensitive, quotes are preserved
            (
                "[Unit]\na=1\nA=\"x y\" 'z'\n",
                &[
                    (2, opt("Unit", "a", "1")),
                    (3, opt("Unit", "A", "\"x y\" 'z'")),
                ],
            ),
            // a continuation: the backslash becomes a space, the option starts on its first line
            (
                "[Service]\nExecStart=/bin/echo \\\n  hello \\\n world\nB=2\n",
                &[
                    (2, opt("Service", "ExecStart", "/bin/echo    hello   world")),
                    (5, opt("Service", "B", "2")),
                ],
            ),
            // comment lines inside a continuation are skipped
            (
                "[Service]\nA=one\\\n# note\n; note\ntwo\n",
                &[(2, opt("Service", "A", "one two"))],
            ),
            // an even number of trailing backslashes is an escaped backslash, not a continuation
            (
                "[S]\nA=x\\\\\nB=y\n",
                &[(2, opt("S", "A", "x\\\\")), (3, opt("S", "B", "y"))],
            ),
            ("[S]\nA=x\\\\\\\ny\n", &[(2, opt("S", "A", "x\\\\ y"))]),
            // a blank line ends a continuation
            (
                "[S]\nA=x\\\n\nB=y\n",
                &[(2, opt("S", "A", "x")), (4, opt("S", "B", "y"))],
            ),
            // a continuation may run into the end of the file
            ("[S]\nA=x\\", &[(2, opt("S", "A", "x"))]),
            ("[S]\nA=x\\\ny\\\n", &[(2, opt("S", "A", "x y"))]),
            // CRLF line endings
            (
                "[Unit]\r\nA=1\r\nB = 2 \r\n\r\n",
                &[(2, opt("Unit", "A", "1")), (3, opt("Unit", "B", "2"))],
            ),
            ("[S]\r\nA=x\\\r\ny\r\n", &[(2, opt("S", "A", "x y"))]),
            // sections may repeat; the list order is the model
            (
                "[A]\nx=1\n[B]\ny=2\n[A]\nz=3\n",
                &[
                    (2, opt("A", "x", "1")),
                    (4, opt("B", "y", "2")),
                    (6, opt("A", "z", "3")),
                ],
            ),
            // an empty section is allowed and leaves no trace
            ("[A]\n[B]\ny=2\n", &[(3, opt("B", "y", "2"))]),
            // systemd keeps whitespace inside the brackets
            ("[ X ]\na=b\n", &[(2, opt(" X ", "a", "b"))]),
            // the first `=` splits; later ones belong to the value
            (
                "[Service]\nEnvironment=A=1 B=2\n",
                &[(2, opt("Service", "Environment", "A=1 B=2"))],
            ),
            // a byte order mark at the start is skipped
            ("\u{feff}[Unit]\nA=1\n", &[(2, opt("Unit", "A", "1"))]),
            // tabs and non-ASCII text are part of a value
            (
                "[S]\nA=a\tb é\u{a0}\n",
                &[(2, opt("S", "A", "a\tb é\u{a0}"))],
            ),
        ];
        for (input, expected) in cases {
            check(input, Ok(expected));
        }
    }

    #[test]
    fn parse_errors_name_the_line_and_the_problem() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "Description=x\n",
                1,
                "`Description` is outside any section: put a section header such as `[Unit]` before it",
            ),
            ("[Unit]\nA=1\nFoo\n", 3, "`Foo` has no `=`"),
            ("[Unit]\n  = x\n", 2, "`= x` has no name before `=`"),
            (
                "[Unit\nA=1\n",
                1,
                "section header `[Unit` has no closing `]`",
            ),
            ("[\n", 1, "section header `[` has no closing `]`"),
            (
                "[Unit] # c\n",
                1,
                "section header `[Unit] # c` has no closing `]`",
            ),
            ("[A]\n[]\n", 2, "section header `[]` has no name"),
            ("[A[B]\n", 1, "section name `A[B` contains `[`"),
            ("[A]B]\n", 1, "section name `A]B` contains `]`"),
            (
                "[A\u{1}]\n",
                1,
                "section name `A\\u{1}` contains the control character U+0001",
            ),
            ("[S]\nA B=1\n", 2, "option name `A B` contains whitespace"),
            ("[S]\nA[0]=1\n", 2, "option name `A[0]` contains `[`"),
            (
                "[S]\nA=x\ry\n",
                2,
                "value `x\\ry` of `A` contains the control character U+000D",
            ),
            (
                "[S]\nA=x\u{7f}\n",
                2,
                "value `x\\u{7f}` of `A` contains the control character U+007F",
            ),
            // an error inside a continued line is reported where the line starts
            ("[S]\nA=1\n\\\n#c\nfoo\n", 3, "`foo` has no `=`"),
        ];
        for (input, line, message) in cases {
            check(input, Err((*line, message)));
        }
    }

    #[test]
    fn encoding_errors_name_the_line_of_the_first_bad_byte() {
        check_bytes(
            b"[S]\nA=1\nB=\xff\n\0",
            Err((3, "invalid UTF-8 (byte 0xff)")),
        );
        check_bytes(
            b"[S]\nA=\0\nB=\xff\n",
            Err((2, "a NUL byte, which a unit file cannot contain")),
        );
        check_bytes(
            b"\0",
            Err((1, "a NUL byte, which a unit file cannot contain")),
        );
        // a truncated multi-byte character at the very end
        check_bytes(b"[S]\nA=\xc3", Err((2, "invalid UTF-8 (byte 0xc3)")));
    }

    #[test]
    fn files_over_the_size_limit_are_refused_with_the_limit_stated() {
        let mut big = b"[Service]\nA=".to_vec();
        big.resize(MAX_FILE_SIZE - 1, b'x');
        big.push(b'\n');
        let parsed = UnitFile::parse(&big).expect("exactly the limit is fine");
        assert_eq!(parsed.file.serialize().len(), MAX_FILE_SIZE);
        big.push(b'\n');
        let err = UnitFile::parse(&big).unwrap_err();
        assert_eq!(err.line, 0);
        assert_eq!(err.to_string(), "the file is larger than the 512 KiB limit");
    }

    #[test]
    fn a_file_whose_canonical_form_passes_the_limit_is_refused() {
        // Each section change gains a blank line when serialized: 14 bytes become 16.
        let block = "[A]\nk=\n[B]\nk=\n";
        let input = block.repeat(MAX_FILE_SIZE / block.len());
        assert!(input.len() <= MAX_FILE_SIZE);
        let err = UnitFile::parse(input.as_bytes()).unwrap_err();
        assert_eq!(
            err.problem.to_string(),
            "value `` of `k` takes the unit past the 512 KiB limit"
        );
        // the option that crosses the limit is on this line
        let options: Vec<_> = (0..MAX_FILE_SIZE / block.len() * 2)
            .map(|i| opt(if i % 2 == 0 { "A" } else { "B" }, "k", ""))
            .collect();
        let index = UnitFile::from_options(options).unwrap_err().index;
        assert_eq!(err.line, index * 2 + 2);
    }

    #[test]
    fn from_options_refuses_lists_past_the_size_limit() {
        let half = "x".repeat(MAX_FILE_SIZE / 2);
        let options = vec![
            opt("Service", "A", &half),
            opt("Service", "B", &half),
            opt("Service", "C", "1"),
        ];
        let err = UnitFile::from_options(options).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.problem.flaw, Flaw::PastSizeLimit);
        assert!(
            err.to_string()
                .ends_with("of `B` takes the unit past the 512 KiB limit"),
            "{err}"
        );
    }

    #[test]
    fn error_messages_carry_the_line_and_shorten_long_text() {
        let err = UnitFile::parse(b"[Unit]\nA=1\nFoo\n").unwrap_err();
        assert_eq!(err.to_string(), "line 3: `Foo` has no `=`");
        let long = format!("[Unit]\n{}\n", "x".repeat(200));
        let err = UnitFile::parse(long.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("line 2: `{}…` has no `=`", "x".repeat(80))
        );
    }

    #[test]
    fn serialization_is_canonical() {
        let parsed = UnitFile::parse(
            b"# c\n[Unit]\nDescription = Web \n\n\n[Service]\nExecStart=\nExecStart=/a \\\n b\n[Unit]\nAfter=x\n",
        )
        .unwrap();
        assert_eq!(
            parsed.file.serialize(),
            "[Unit]\nDescription=Web\n\n[Service]\nExecStart=\nExecStart=/a   b\n\n[Unit]\nAfter=x\n"
        );
        assert_eq!(UnitFile::default().serialize(), "");
    }

    #[test]
    fn the_hash_is_sha1_of_the_canonical_form() {
        let a = UnitFile::parse(b"[Unit]\nDescription=x\n").unwrap().file;
        let b = UnitFile::parse(b"# other comments\r\n[Unit]\r\n Description = x\r\n")
            .unwrap()
            .file;
        assert_eq!(a.hash(), b.hash());
        // sha1sum of "[Unit]\nDescription=x\n"
        assert_eq!(
            a.hash().to_string(),
            "9fcce57bebda098e6fb9d87b2543194856511ef2"
        );
        assert_eq!(a.hash().short(), "9fcce57");
        let c = UnitFile::parse(b"[Unit]\nDescription=y\n").unwrap().file;
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn hashes_parse_and_serialize_as_lowercase_hex() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let h: UnitHash = hex.parse().unwrap();
        assert_eq!(h.to_string(), hex);
        assert_eq!(format!("{h:?}"), hex);
        assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{hex}\""));
        assert_eq!(
            serde_json::from_str::<UnitHash>(&format!("\"{hex}\"")).unwrap(),
            h
        );
        for bad in [
            "",
            "0123",
            "0123456789ABCDEF0123456789abcdef01234567",
            "0123456789abcdef0123456789abcdef0123456g",
            "0123456789abcdef0123456789abcdef012345678",
            "é123456789abcdef0123456789abcdef0123456",
        ] {
            assert_eq!(
                bad.parse::<UnitHash>(),
                Err(HashError(bad.to_owned())),
                "{bad}"
            );
        }
        assert!(serde_json::from_str::<UnitHash>("\"xyz\"").is_err());
    }

    #[test]
    fn from_options_rejects_exactly_what_cannot_be_written() {
        use Flaw::*;
        use OptionField::*;
        let cases: &[(UnitOption, Option<(OptionField, Flaw)>)] = &[
            (opt("Unit", "Description", "x"), None),
            (opt("Service", "ExecStart", ""), None),
            (opt(" X ", "a", "b"), None),
            (opt("S", "A", "x\\\\"), None),
            (opt("S", "A", "a\tb"), None),
            (opt("S", "A", "#x ;y [z] a=b"), None),
            (opt("S", "x#", "1"), None),
            (opt("", "A", "1"), Some((Section, Empty))),
            (opt("A]", "A", "1"), Some((Section, Contains(']')))),
            (opt("[A", "A", "1"), Some((Section, Contains('[')))),
            (opt("A\nB", "A", "1"), Some((Section, Control('\n')))),
            (opt("A\tB", "A", "1"), Some((Section, Control('\t')))),
            (opt("S", "", "1"), Some((Name, Empty))),
            (opt("S", "A B", "1"), Some((Name, Whitespace))),
            (opt("S", " A", "1"), Some((Name, Whitespace))),
            (opt("S", "A\u{a0}", "1"), Some((Name, Whitespace))),
            (opt("S", "A\tB", "1"), Some((Name, Control('\t')))),
            (opt("S", "A=B", "1"), Some((Name, Contains('=')))),
            (opt("S", "[A", "1"), Some((Name, Contains('[')))),
            (opt("S", "A[0]", "1"), Some((Name, Contains('[')))),
            (opt("S", "#A", "1"), Some((Name, StartsWith('#')))),
            (opt("S", ";A", "1"), Some((Name, StartsWith(';')))),
            (opt("S", "A", " x"), Some((Value, OuterWhitespace))),
            (opt("S", "A", "x\t"), Some((Value, OuterWhitespace))),
            (opt("S", "A", "x\ny"), Some((Value, Control('\n')))),
            (opt("S", "A", "x\r"), Some((Value, Control('\r')))),
            (opt("S", "A", "x\0"), Some((Value, Control('\0')))),
            (opt("S", "A", "x\\"), Some((Value, TrailingBackslash))),
            (opt("S", "A", "x\\\\\\"), Some((Value, TrailingBackslash))),
        ];
        for (option, expected) in cases {
            let got = UnitFile::from_options(vec![opt("Unit", "A", "1"), option.clone()])
                .map(|_| ())
                .map_err(|e| (e.index, e.problem.field, e.problem.flaw));
            assert_eq!(
                got,
                expected.map_or(Ok(()), |(field, flaw)| Err((1, field, flaw))),
                "{option:?}"
            );
            if expected.is_none() {
                let file = UnitFile::from_options(vec![option.clone()]).unwrap();
                assert_eq!(
                    UnitFile::parse(file.serialize().as_bytes()).unwrap().file,
                    file
                );
            }
        }
    }

    #[test]
    fn option_errors_name_the_index_field_and_value() {
        let err = UnitFile::from_options(vec![opt("Unit", "A", "1"), opt("Service", "B", "x\\")])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "option 1: value `x\\` of `B` ends in an unescaped backslash"
        );
        let err = UnitFile::from_options(vec![opt("Unit", "A b", "1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "option 0: option name `A b` contains whitespace"
        );
        let err = UnitFile::from_options(vec![opt("U]", "A", "1")]).unwrap_err();
        assert_eq!(err.to_string(), "option 0: section name `U]` contains `]`");
    }

    #[test]
    fn values_and_description_read_the_options() {
        let file = UnitFile::parse(
            b"[Unit]\nDescription=first\nDescription=last\n[Service]\nExecStart=/a\nExecStart=/b\n[X]\nExecStart=/c\n",
        )
        .unwrap()
        .file;
        assert_eq!(
            file.values("Service", "ExecStart").collect::<Vec<_>>(),
            ["/a", "/b"]
        );
        assert_eq!(file.values("Service", "execstart").count(), 0);
        assert_eq!(file.description(), Some("last"));
        let emptied = UnitFile::parse(b"[Unit]\nDescription=x\nDescription=\n")
            .unwrap()
            .file;
        assert_eq!(emptied.description(), None);
        assert_eq!(UnitFile::default().description(), None);
    }

    #[test]
    fn unit_options_serialize_in_fleets_shape() {
        let json = serde_json::to_value(opt("Unit", "Description", "x")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"section": "Unit", "name": "Description", "value": "x"})
        );
    }

    /// Section names, option names and values that can be written and read back, biased towards
    /// the characters the syntax cares about.
    fn section() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 #;=\\\\\"'%é\u{a0}-]{1,10}"
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_%é\"'\\\\-][a-zA-Z0-9_#;%é\"'\\]\\\\-]{0,10}"
    }

    fn value() -> impl Strategy<Value = String> {
        "[a-z =\\\\\t\"'#;\\[\\]%é\u{a0}]{0,16}".prop_map(|v| {
            let mut v = trim_blank(&v).to_owned();
            if ends_in_escape(&v) {
                v.push('\\');
            }
            v
        })
    }

    fn options() -> impl Strategy<Value = Vec<UnitOption>> {
        let option = (section(), name(), value()).prop_map(|(section, name, value)| UnitOption {
            section,
            name,
            value,
        });
        proptest::collection::vec(option, 0..12)
    }

    /// Bytes that look like unit files often enough to parse, and break the rules often enough
    /// not to.
    fn unit_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"[Unit]".to_vec()),
            Just(b"[X-Fleet]".to_vec()),
            Just(b"[".to_vec()),
            Just(b"]".to_vec()),
            Just(b"Key".to_vec()),
            Just(b"=".to_vec()),
            Just(b"value".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\\".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"#".to_vec()),
            Just(b";".to_vec()),
            Just(b"\"".to_vec()),
            Just("\u{feff}".as_bytes().to_vec()),
            Just("é".as_bytes().to_vec()),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    /// Whatever parses can be handed to the API and written back unchanged.
    fn assert_round_trip(bytes: &[u8]) {
        if let Ok(parsed) = UnitFile::parse(bytes) {
            assert_eq!(parsed.lines.len(), parsed.file.options().len());
            let again = UnitFile::parse(parsed.file.serialize().as_bytes())
                .expect("a serialized unit parses");
            assert_eq!(again.file, parsed.file);
            let accepted = UnitFile::from_options(parsed.file.options().to_vec())
                .expect("parsed options are representable");
            assert_eq!(accepted, parsed.file);
        }
    }

    proptest! {
        #[test]
        fn representable_options_round_trip(options in options()) {
            let file = UnitFile::from_options(options.clone()).expect("generated options are representable");
            let serialized = file.serialize();
            let parsed = UnitFile::parse(serialized.as_bytes()).expect("a serialized unit parses");
            prop_assert_eq!(parsed.file.options(), options.as_slice());
            prop_assert_eq!(parsed.file.hash(), file.hash());
            prop_assert_eq!(serialized_lengths(&options).last().unwrap_or(0), serialized.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            assert_round_trip(&bytes);
        }

        #[test]
        fn whatever_parses_round_trips(bytes in unit_like_bytes()) {
            assert_round_trip(&bytes);
        }
    }
}
