//! `flottectl check FILE...`: lints unit files and their `[X-Fleet]` requirements offline, as
//! users do in CI before submitting units.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use super::unit_files::{Finding, examine};
use super::{OutputFormat, exit};
use crate::unit::{Requirements, ServiceDeclaration, UnitFile, UnitHash, UnitName, UnitOption};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<ServiceDeclaration>,
    warnings: Vec<Finding>,
    errors: Vec<Finding>,
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
        let name = report.name.as_deref().unwrap_or_default();
        match report.requirements.as_ref().map(|r| r.requests) {
            Some(requests) if !requests.is_zero() => {
                writeln!(out, "ok {name} (requests {requests})")?
            }
            _ => writeln!(out, "ok {name}")?,
        }
    }
    Ok(())
}

fn check_file(path: &Path) -> Report {
    let base = path.file_name().map(|n| n.to_str());
    let name = match base {
        None => Err("the path has no file name to use as the unit name".to_owned()),
        Some(None) => Err("the file name is not valid UTF-8, so it is no unit name".to_owned()),
        Some(Some(base)) => UnitName::new(base).map_err(|e| e.to_string()),
    };
    let examined = examine(path, name.as_ref().ok());
    let mut errors: Vec<Finding> = name
        .err()
        .map(|m| Finding::new(None, m))
        .into_iter()
        .collect();
    errors.extend(examined.errors);
    Report {
        file: path.to_string_lossy().into_owned(),
        name: base.flatten().map(str::to_owned),
        valid: errors.is_empty(),
        hash: examined.file.as_ref().map(UnitFile::hash),
        options: examined.file.map(UnitFile::into_options),
        requirements: examined.requirements,
        service: examined.service,
        warnings: examined.warnings,
        errors,
    }
}
