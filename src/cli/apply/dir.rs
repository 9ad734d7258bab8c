//! Reading directories of unit files into the desired set `plan` and `apply` compare with the
//! cluster. Every entry whose name ends in a unit type's suffix (`.service`, `.timer`, ...) is
//! a unit; others (a README) are listed as ignored, and names starting with `.` are skipped.
//! A template instance is declared as systemd does: a symlink `web@1.service -> web@.service`
//! (the link is followed, so any file it points to works). The desired state of a unit is
//! `launched` unless its file says otherwise in an `[X-Flotte]` section, `State=inactive`,
//! `loaded` or `launched`; an instance takes its template file's. The section is flottectl's
//! and is stripped before the unit is submitted, so changing the state changes no content. A
//! template itself is submitted as a template (`inactive`), as `flottectl submit` would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::unit::{DesiredState, UnitFile, UnitName, UnitOption, UnitType};

use super::super::unit_files::{self, FileError, Finding};

/// flottectl's own section of a unit file in a directory applied: never submitted.
pub const SECTION: &str = "X-Flotte";

/// One unit of the desired set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUnit {
    pub name: UnitName,
    /// The content to submit: the file without its `[X-Flotte]` section.
    pub file: UnitFile,
    pub state: DesiredState,
    pub path: PathBuf,
}

/// What reading the directories found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredSet {
    /// Sorted by name, each once.
    pub units: Vec<DesiredUnit>,
    /// Entries that are no units (no unit type suffix).
    pub ignored: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot read directory {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Files(Vec<FileError>),
}

/// Reads every directory; any invalid file fails the whole read, with each problem of each
/// file and its line.
pub fn read(dirs: &[PathBuf]) -> Result<DesiredSet, DirError> {
    let mut set = DesiredSet::default();
    let mut errors: Vec<FileError> = Vec::new();
    let mut seen: BTreeMap<UnitName, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .and_then(|rd| rd.map(|e| e.map(|e| e.path())).collect())
            .map_err(|source| DirError::Read {
                path: dir.clone(),
                source,
            })?;
        entries.sort();
        for path in entries {
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                set.ignored.push(path);
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            if !has_unit_suffix(file_name) {
                set.ignored.push(path);
                continue;
            }
            let problem = |message: String| FileError {
                path: path.clone(),
                problems: vec![Finding::new(None, message)],
            };
            let name = match UnitName::new(file_name) {
                Ok(n) => n,
                Err(e) => {
                    errors.push(problem(e.to_string()));
                    continue;
                }
            };
            if let Some(first) = seen.get(&name) {
                errors.push(problem(format!(
                    "unit {name} is also in {}; a unit may be in one directory only",
                    first.display()
                )));
                continue;
            }
            seen.insert(name.clone(), path.clone());
            match read_unit(&path, &name) {
                Ok(unit) => set.units.push(unit),
                Err(e) => errors.push(e),
            }
        }
    }
    if !errors.is_empty() {
        return Err(DirError::Files(errors));
    }
    set.units.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(set)
}

/// Whether a directory entry's name is a unit's: it ends in a unit type's suffix.
fn has_unit_suffix(file_name: &str) -> bool {
    UnitType::ALL
        .iter()
        .any(|t| file_name.ends_with(&format!(".{}", t.suffix())))
}

fn read_unit(path: &Path, name: &UnitName) -> Result<DesiredUnit, FileError> {
    let examined = unit_files::examine(path, Some(name));
    let fail = |problems| FileError {
        path: path.to_owned(),
        problems,
    };
    if !examined.errors.is_empty() {
        return Err(fail(examined.errors));
    }
    // Parsed again for the lines of its options: `examine` checked it parses.
    let bytes = std::fs::read(path).map_err(|e| {
        fail(vec![Finding::new(
            None,
            format!("cannot read the file: {e}"),
        )])
    })?;
    let parsed =
        UnitFile::parse(&bytes).map_err(|e| fail(vec![Finding::new(Some(e.line), e.problem)]))?;
    let (file, state) = split_state(name, parsed.file.options(), &parsed.lines).map_err(fail)?;
    Ok(DesiredUnit {
        name: name.clone(),
        file,
        state,
        path: path.to_owned(),
    })
}

/// The content to submit and the desired state, from a file's options (`lines[i]`: option
/// `i`'s line): the `[X-Flotte]` section's `State=` taken out.
pub fn split_state(
    name: &UnitName,
    options: &[UnitOption],
    lines: &[usize],
) -> Result<(UnitFile, DesiredState), Vec<Finding>> {
    let mut problems = Vec::new();
    let mut state: Option<DesiredState> = None;
    let mut kept = Vec::new();
    for (i, option) in options.iter().enumerate() {
        let line = lines.get(i).copied();
        if option.section != SECTION {
            kept.push(option.clone());
            continue;
        }
        match option.name.as_str() {
            "State" => match option.value.parse::<DesiredState>() {
                Ok(s) if state.is_some() => {
                    let _ = s;
                    problems.push(Finding::new(line, "State: given more than once"));
                }
                Ok(s) => state = Some(s),
                Err(_) => problems.push(Finding::new(
                    line,
                    format!(
                        "State: `{}` is not inactive, loaded or launched",
                        option.value
                    ),
                )),
            },
            other => problems.push(Finding::new(
                line,
                format!("[{SECTION}] has no option `{other}` (only State=)"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let file = UnitFile::from_options(kept).map_err(|e| vec![Finding::new(None, e)])?;
    // A template is only ever submitted as one; its State= is its instances'.
    let state = if name.is_template() {
        DesiredState::Inactive
    } else {
        state.unwrap_or(DesiredState::Launched)
    };
    Ok((file, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, text: &str) -> Result<(String, DesiredState), Vec<String>> {
        let parsed = UnitFile::parse(text.as_bytes()).unwrap();
        split_state(
            &UnitName::new(name).unwrap(),
            parsed.file.options(),
            &parsed.lines,
        )
        .map(|(f, s)| (f.serialize(), s))
        .map_err(|ps| {
            ps.iter()
                .map(|p| format!("{}: {}", p.line.unwrap_or(0), p.message))
                .collect()
        })
    }

    #[test]
    fn the_desired_state_comes_from_the_x_flotte_section_which_is_not_submitted() {
        let exec = "[Service]\nExecStart=/bin/true\n";
        type Expected = Result<DesiredState, &'static [&'static str]>;
        let cases: &[(&str, &str, Expected)] = &[
            ("a.service", "", Ok(DesiredState::Launched)),
            (
                "a.service",
                "[X-Flotte]\nState=loaded\n",
                Ok(DesiredState::Loaded),
            ),
            (
                "a.service",
                "[X-Flotte]\nState=inactive\n",
                Ok(DesiredState::Inactive),
            ),
            // A template is submitted as a template; its State= is for its instances.
            (
                "a@.service",
                "[X-Flotte]\nState=loaded\n",
                Ok(DesiredState::Inactive),
            ),
            (
                "a@1.service",
                "[X-Flotte]\nState=loaded\n",
                Ok(DesiredState::Loaded),
            ),
            (
                "a.service",
                "[X-Flotte]\nState=running\n",
                Err(&["4: State: `running` is not inactive, loaded or launched"]),
            ),
            (
                "a.service",
                "[X-Flotte]\nState=loaded\nState=launched\n",
                Err(&["5: State: given more than once"]),
            ),
            (
                "a.service",
                "[X-Flotte]\nReplicas=3\n",
                Err(&["4: [X-Flotte] has no option `Replicas` (only State=)"]),
            ),
        ];
        for (name, extra, expected) in cases {
            let got = check(name, &format!("{exec}{extra}"));
            match expected {
                Ok(state) => {
                    let (text, s) = got.unwrap_or_else(|e| panic!("{name} {extra:?}: {e:?}"));
                    assert_eq!(s, *state, "{name} {extra:?}");
                    assert_eq!(text, exec, "{name} {extra:?}: the section is stripped");
                }
                Err(messages) => assert_eq!(got.unwrap_err(), *messages, "{name} {extra:?}"),
            }
        }
    }

    #[test]
    fn a_directory_reads_templates_instances_as_symlinks_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("web@.service"),
            "[Service]\nExecStart=/bin/sleep 1000\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("web@.service", d.join("web@1.service")).unwrap();
        std::os::unix::fs::symlink("web@.service", d.join("web@2.service")).unwrap();
        std::fs::write(
            d.join("db.service"),
            "[Service]\nExecStart=/bin/true\n[X-Flotte]\nState=loaded\n",
        )
        .unwrap();
        std::fs::write(d.join("README.md"), "not a unit").unwrap();
        std::fs::write(d.join(".web@3.service.swp"), "editor litter").unwrap();
        let set = read(&[d.to_owned()]).unwrap();
        let got: Vec<(&str, DesiredState)> = set
            .units
            .iter()
            .map(|u| (u.name.as_str(), u.state))
            .collect();
        assert_eq!(
            got,
            [
                ("db.service", DesiredState::Loaded),
                ("web@.service", DesiredState::Inactive),
                ("web@1.service", DesiredState::Launched),
                ("web@2.service", DesiredState::Launched),
            ]
        );
        assert_eq!(set.units[1].file, set.units[2].file);
        assert_eq!(set.ignored, [d.join("README.md")]);
    }

    #[test]
    fn every_bad_file_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.service"), "[Service]\nExecStart /bin/true\n").unwrap();
        std::fs::write(
            d.join("b.service"),
            "[Service]\nExecStart=/bin/true\n[X-Flotte]\nState=up\n",
        )
        .unwrap();
        std::fs::write(d.join("c.service"), "[Service]\nExecStart=/bin/true\n").unwrap();
        let e = read(&[d.to_owned()]).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(
            lines[0].starts_with(&format!("{}:2: ", d.join("a.service").display())),
            "{e}"
        );
        assert!(
            lines[1].starts_with(&format!("{}:4: State: `up`", d.join("b.service").display())),
            "{e}"
        );
    }

    #[test]
    fn a_unit_in_two_directories_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [a.path(), b.path()] {
            std::fs::write(d.join("x.service"), "[Service]\nExecStart=/bin/true\n").unwrap();
        }
        let e = read(&[a.path().to_owned(), b.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is also in"), "{e}");
    }
}
