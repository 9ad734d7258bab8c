//! From a unit argument to what to send, with fleetctl's rules: an argument is a file path or
//! a unit name (`.service` implied); a unit already in the registry is kept unless its content
//! changed; an instance missing everywhere is made from its template, in the registry or beside
//! the path. Facts are gathered first; `decide` is a pure function of them.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::unit_files::{self, FileError, LocalUnit};
use super::view;
use crate::unit::{DesiredState, NameError, UnitFile, UnitHash, UnitName};

/// A unit argument: where its file would be, and the unit's name (the file's base name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitArg {
    /// The argument with `.service` added when it had no unit type, as fleetctl does:
    /// `units/hello` is `units/hello.service`.
    pub path: PathBuf,
    pub name: UnitName,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("`{0}` names no unit: give a unit name or the path of a unit file")]
    NoName(String),
    #[error(transparent)]
    Name(#[from] NameError),
}

impl FromStr for UnitArg {
    type Err = ArgError;

    fn from_str(arg: &str) -> Result<Self, Self::Err> {
        let path = Path::new(arg);
        let base = path
            .file_name()
            .and_then(|b| b.to_str())
            .filter(|_| !arg.ends_with('/'))
            .ok_or_else(|| ArgError::NoName(arg.to_owned()))?;
        let name = UnitName::from_argument(base)?;
        Ok(UnitArg {
            path: path.with_file_name(name.as_str()),
            name,
        })
    }
}

/// What is known about an argument before deciding: the registry's side and the disk's.
#[derive(Debug, Clone)]
pub struct Facts {
    pub arg: UnitArg,
    /// The unit of that name in the registry.
    pub registered: Option<view::Unit>,
    /// The file at the argument's path: absent, valid, or with problems.
    pub local: Result<Option<LocalUnit>, FileError>,
    /// For an instance: its template in the registry.
    pub template_registered: Option<view::Unit>,
    /// For an instance: the template file beside the argument's path.
    pub template_local: Result<Option<LocalUnit>, FileError>,
}

/// What to do for one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The registry has the unit with this content (or nothing local to compare it with).
    Keep(view::Unit),
    /// Submit the unit, new, as `inactive`.
    Create { file: UnitFile },
    /// Submit new content for a unit the registry has, keeping its desired state.
    Replace {
        file: UnitFile,
        desired: DesiredState,
    },
}

/// Whether `--replace` was given, and for which command: fleetctl lets `submit` replace only
/// inactive units, `load` inactive or loaded ones, `start` any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    No,
    Yes {
        command: &'static str,
        allowed: &'static [DesiredState],
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Invalid(#[from] FileError),
    #[error(
        "unit {unit} in the registry differs from the local {what} {}: add --replace to replace it",
        path.display()
    )]
    Differs {
        unit: UnitName,
        what: &'static str,
        path: PathBuf,
    },
    #[error(
        "cannot replace unit {unit} in state {desired} with {command}: use the command for that state, or destroy it first"
    )]
    CannotReplace {
        unit: UnitName,
        desired: DesiredState,
        command: &'static str,
    },
    #[error("unit {unit} is neither in the registry nor a file at {}", path.display())]
    NotFound { unit: UnitName, path: PathBuf },
    #[error(
        "cannot create instance {unit}: its template {template} is neither in the registry nor a file at {}",
        path.display()
    )]
    NoTemplate {
        unit: UnitName,
        template: UnitName,
        path: PathBuf,
    },
    #[error("unit {unit} in the registry is unusable: {why}")]
    BadRegistered { unit: UnitName, why: String },
}

/// Where the template of an instance argument would be on disk: beside the argument.
pub fn template_path(arg: &UnitArg) -> Option<(UnitName, PathBuf)> {
    let template = arg.name.template()?;
    let path = arg.path.with_file_name(template.as_str());
    Some((template, path))
}

/// A registered unit's content, checked as the registry should have.
pub fn registered_file(unit: &view::Unit) -> Result<UnitFile, ResolveError> {
    UnitFile::from_options(unit.options.iter().cloned().map(Into::into).collect()).map_err(|e| {
        ResolveError::BadRegistered {
            unit: unit.name.clone(),
            why: e.to_string(),
        }
    })
}

fn hash(unit: &view::Unit) -> Result<UnitHash, ResolveError> {
    registered_file(unit).map(|f| f.hash())
}

/// Decides what to send for one argument (and what to warn about on the way).
pub fn decide(facts: Facts, replace: Replace) -> Result<(Plan, Vec<String>), ResolveError> {
    let local = facts.local?;
    let mut warnings = Vec::new();
    match facts.registered {
        Some(registered) => {
            // Compare with the file the user named, or else with the template beside it; a
            // broken template nobody asked for is not worth failing over.
            let candidate = match local {
                Some(unit) => Some((unit, "unit file")),
                None => facts
                    .template_local
                    .ok()
                    .flatten()
                    .map(|t| (t, "template unit file")),
            };
            let Some((candidate, what)) = candidate else {
                return Ok((Plan::Keep(registered), warnings));
            };
            if candidate.file.hash() == hash(&registered)? {
                return Ok((Plan::Keep(registered), warnings));
            }
            let unit = facts.arg.name;
            let desired = registered.desired;
            match replace {
                Replace::No => Err(ResolveError::Differs {
                    unit,
                    what,
                    path: candidate.path,
                }),
                Replace::Yes { command, allowed } if !allowed.contains(&desired) => {
                    Err(ResolveError::CannotReplace {
                        unit,
                        desired,
                        command,
                    })
                }
                Replace::Yes { .. } => {
                    warnings.extend(located_warnings(&candidate));
                    Ok((
                        Plan::Replace {
                            file: candidate.file,
                            desired,
                        },
                        warnings,
                    ))
                }
            }
        }
        None => {
            if let Some(unit) = local {
                warnings.extend(located_warnings(&unit));
                return Ok((Plan::Create { file: unit.file }, warnings));
            }
            let Some((template, path)) = template_path(&facts.arg) else {
                return Err(ResolveError::NotFound {
                    unit: facts.arg.name,
                    path: facts.arg.path,
                });
            };
            if let Some(registered) = facts.template_registered {
                let file = registered_file(&registered)?;
                if let Ok(Some(beside)) = &facts.template_local
                    && beside.file.hash() != file.hash()
                {
                    warnings.push(format!(
                        "warning: template {template} in the registry differs from {}; {} is made from the registry's",
                        beside.path.display(),
                        facts.arg.name
                    ));
                }
                return Ok((Plan::Create { file }, warnings));
            }
            match facts.template_local? {
                Some(unit) => {
                    warnings.extend(located_warnings(&unit));
                    Ok((Plan::Create { file: unit.file }, warnings))
                }
                None => Err(ResolveError::NoTemplate {
                    unit: facts.arg.name,
                    template,
                    path,
                }),
            }
        }
    }
}

fn located_warnings(unit: &LocalUnit) -> impl Iterator<Item = String> + '_ {
    unit.warnings.iter().map(|w| {
        unit_files::Finding::new(w.line, format!("warning: {}", w.message)).located(&unit.path)
    })
}

#[cfg(test)]
mod tests;
