//! systemd's unit-file syntax (systemd.syntax(7)) read into the options list: sections,
//! comments, continuations, a byte order mark; strict where systemd only warns.

use std::fmt;

use super::{
    MAX_FILE_SIZE, OptionProblem, UnitFile, UnitOption, check_option, check_section, check_size,
    ends_in_escape, is_blank, shown, trim_blank,
};

/// A parsed unit file and where each option starts, for error messages about its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUnit {
    pub file: UnitFile,
    /// `lines[i]` is the 1-based line on which option `i` starts.
    pub lines: Vec<usize>,
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

/// systemd's comment characters, recognised at the start of a line after whitespace.
fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_blank).starts_with(['#', ';'])
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
}
