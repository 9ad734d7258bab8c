//! Unit files on the local disk, as `check` and the submitting commands read them: parsed,
//! their `[X-Fleet]` section checked under the unit's name, every problem reported with its
//! file and line.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::unit::{MAX_FILE_SIZE, Requirements, ServiceDeclaration, UnitFile, UnitName};

/// A problem or a warning, and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// 1-based; absent when the problem is not on a line (the file name, its size).
    pub line: Option<usize>,
    pub message: String,
}

impl Finding {
    pub fn new(line: Option<usize>, message: impl ToString) -> Self {
        Self {
            line,
            message: message.to_string(),
        }
    }

    /// `FILE:LINE: message`, or `FILE: message` when the problem has no line.
    pub fn located(&self, path: &Path) -> String {
        match self.line {
            Some(line) => format!("{}:{line}: {}", path.display(), self.message),
            None => format!("{}: {}", path.display(), self.message),
        }
    }
}

/// What reading one file found.
#[derive(Debug, Clone, Default)]
pub struct Examined {
    pub file: Option<UnitFile>,
    /// Present when the file parsed and a unit name was given to check it under.
    pub requirements: Option<Requirements>,
    /// The `[X-Flotte-Service]` section, when the file has a valid one.
    pub service: Option<ServiceDeclaration>,
    pub warnings: Vec<Finding>,
    pub errors: Vec<Finding>,
}

/// Reads, parses and (given the unit's name, which `%n`, `%i`... expand to) checks a file.
pub fn examine(path: &Path, name: Option<&UnitName>) -> Examined {
    let mut examined = Examined::default();
    let parsed = match read_limited(path) {
        Err(e) => {
            examined
                .errors
                .push(Finding::new(None, format!("cannot read the file: {e}")));
            return examined;
        }
        Ok(bytes) => match UnitFile::parse(&bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                let line = (e.line != 0).then_some(e.line);
                examined.errors.push(Finding::new(line, e.problem));
                return examined;
            }
        },
    };
    if let Some(name) = name {
        let line = |option: usize| parsed.lines.get(option).copied();
        match Requirements::from_unit(name, &parsed.file) {
            Ok(checked) => {
                examined.warnings = (checked.warnings.into_iter())
                    .map(|w| Finding::new(line(w.option), w.message))
                    .collect();
                examined.requirements = Some(checked.requirements);
            }
            Err(rejected) => {
                examined.warnings = (rejected.warnings.into_iter())
                    .map(|w| Finding::new(line(w.option), w.message))
                    .collect();
                examined.errors.extend(
                    (rejected.errors.into_iter())
                        .map(|e| Finding::new(e.option.and_then(line), e.message)),
                );
            }
        }
        match ServiceDeclaration::from_unit(name, &parsed.file) {
            Ok(service) => examined.service = service,
            Err(errors) => examined.errors.extend(
                (errors.into_iter()).map(|e| Finding::new(e.option.and_then(line), e.message)),
            ),
        }
    }
    examined.file = Some(parsed.file);
    examined
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

/// A unit file that cannot be submitted, with every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    pub path: PathBuf,
    pub problems: Vec<Finding>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| p.located(&self.path))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

/// A valid unit file read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUnit {
    pub path: PathBuf,
    pub file: UnitFile,
    pub warnings: Vec<Finding>,
}

/// The unit file at `path`, checked as unit `name`; `Ok(None)` when there is no file there.
pub fn load(path: &Path, name: &UnitName) -> Result<Option<LocalUnit>, FileError> {
    let error = |message: String| FileError {
        path: path.to_owned(),
        problems: vec![Finding::new(None, message)],
    };
    match path.try_exists() {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(e) => return Err(error(format!("cannot look for the file: {e}"))),
    }
    let examined = examine(path, Some(name));
    match examined.file {
        Some(file) if examined.errors.is_empty() => Ok(Some(LocalUnit {
            path: path.to_owned(),
            file,
            warnings: examined.warnings,
        })),
        _ => Err(FileError {
            path: path.to_owned(),
            problems: examined.errors,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> UnitName {
        UnitName::new(n).unwrap()
    }

    #[test]
    fn a_missing_file_is_no_error_and_no_unit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.service");
        assert_eq!(load(&path, &name("a.service")), Ok(None));
    }

    #[test]
    fn every_problem_of_a_file_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.service");
        std::fs::write(
            &path,
            "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=disk\nMachineOf=../x\n",
        )
        .unwrap();
        let e = load(&path, &name("a.service")).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(
            lines[0].starts_with(&format!("{}:4: MachineMetadata:", path.display())),
            "{e}"
        );
        assert!(
            lines[1].starts_with(&format!("{}:5: ", path.display())),
            "{e}"
        );
    }

    #[test]
    fn a_bad_service_section_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web@.service");
        std::fs::write(
            &path,
            "[Service]\nExecStart=/bin/true\n[X-Flotte-Service]\nName=web\nPort=99999\n",
        )
        .unwrap();
        let e = load(&path, &name("web@.service")).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:5: Port: `99999` is not a port number (1 to 65535)",
                path.display()
            )
        );
        std::fs::write(
            &path,
            "[Service]\nExecStart=/bin/true\n[X-Flotte-Service]\nName=web\nPort=80%i\n",
        )
        .unwrap();
        let examined = examine(&path, Some(&name("web@3.service")));
        assert_eq!(examined.service.map(|s| s.port), Some(803));
    }

    #[test]
    fn a_parse_error_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.service");
        std::fs::write(&path, "[Service]\nExecStart /bin/true\n").unwrap();
        let e = load(&path, &name("a.service")).unwrap_err();
        assert_eq!(e.problems.len(), 1);
        assert_eq!(e.problems[0].line, Some(2));
    }
}
