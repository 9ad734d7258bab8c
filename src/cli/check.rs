//! `flottectl check FILE...`: lints unit files and their `[X-Fleet]` requirements offline, as
//! users do in CI before submitting units.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{OutputFormat, exit};
use crate::unit::{MAX_FILE_SIZE, Requirements, UnitFile, UnitHash, UnitName, UnitOption};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Unit files to check; each file's base name is its unit name (`web@.service`)
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one line per problem (text) or a JSON array with one object per file (json)
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What `check` found in one file; the JSON output is a list of these.
#[derive(Debug, Serialize)]
struct Report {
    file: String,
    /// The file's base name, when it is text.
    name: Option<String>,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<UnitHash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<Vec<UnitOption>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requirements: Option<Requirements>,
    warnings: Vec<Finding>,
    errors: Vec<Finding>,
}

#[derive(Debug, Serialize)]
struct Finding {
    /// 1-based; absent when the problem is not on a line (the file name, its size).
    line: Option<usize>,
    message: String,
}

impl Finding {
    fn new(line: Option<usize>, message: impl ToString) -> Self {
        Self {
            line,
            message: message.to_string(),
        }
    }
}

pub(super) fn run(args: &CheckArgs, out: &mut dyn Write) -> io::Result<ExitCode> {
    let reports: Vec<Report> = args.files.iter().map(|f| check_file(f)).collect();
    match args.output {
        OutputFormat::Text => {
            for (path, report) in args.files.iter().zip(&reports) {
                write_text(out, path, report)?;
            }
        }
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &reports)?;
            writeln!(out)?;
        }
    }
    Ok(if reports.iter().all(|r| r.valid) {
        exit::SUCCESS
    } else {
        exit::FAILURE
    })
}

fn write_text(out: &mut dyn Write, path: &Path, report: &Report) -> io::Result<()> {
    let file = path.display();
    let place = |line: Option<usize>| match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    };
    for error in &report.errors {
        writeln!(out, "{}: {}", place(error.line), error.message)?;
    }
    for warning in &report.warnings {
        writeln!(out, "{}: warning: {}", place(warning.line), warning.message)?;
    }
    if report.valid {
        writeln!(out, "ok {}", report.name.as_deref().unwrap_or_default())?;
    }
    Ok(())
}

fn check_file(path: &Path) -> Report {
    let base = path.file_name().map(|n| n.to_str());
    let mut report = Report {
        file: path.to_string_lossy().into_owned(),
        name: base.flatten().map(str::to_owned),
        valid: false,
        hash: None,
        options: None,
        requirements: None,
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    let name = match base {
        None => Err("the path has no file name to use as the unit name".to_owned()),
        Some(None) => Err("the file name is not valid UTF-8, so it is no unit name".to_owned()),
        Some(Some(base)) => UnitName::new(base).map_err(|e| e.to_string()),
    };
    let name = name
        .map_err(|message| report.errors.push(Finding::new(None, message)))
        .ok();
    let parsed = match read_limited(path) {
        Err(e) => {
            report
                .errors
                .push(Finding::new(None, format!("cannot read the file: {e}")));
            None
        }
        Ok(bytes) => match UnitFile::parse(&bytes) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                let line = (e.line != 0).then_some(e.line);
                report.errors.push(Finding::new(line, e.problem));
                None
            }
        },
    };
    if let Some(parsed) = &parsed {
        report.hash = Some(parsed.file.hash());
        report.options = Some(parsed.file.options().to_vec());
    }
    if let (Some(name), Some(parsed)) = (name, parsed) {
        let line = |option: usize| parsed.lines.get(option).copied();
        match Requirements::from_unit(&name, &parsed.file) {
            Ok(checked) => {
                report.warnings = (checked.warnings.into_iter())
                    .map(|w| Finding::new(line(w.option), w.message))
                    .collect();
                report.requirements = Some(checked.requirements);
            }
            Err(errors) => report.errors.extend(
                errors
                    .into_iter()
                    .map(|e| Finding::new(e.option.and_then(line), e.message)),
            ),
        }
    }
    report.valid = report.errors.is_empty();
    report
}

/// Reads at most one byte more than a unit file may have: enough for the parser to refuse an
/// oversized file without flottectl reading all of it.
fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}
