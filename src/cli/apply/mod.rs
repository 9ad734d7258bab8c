//! `flottectl plan DIR...` and `flottectl apply DIR...`: infrastructure as code. The
//! directories are read into a desired set (`dir`), the API's dry run (`POST
//! /flotte/v1/plan`) answers with the units as stored and where the engine's own scheduler
//! would place each, `diff` says what changes, `rollout` in which order; `apply` then makes
//! the changes step by step, waiting for each (`wait`), and records in the set
//! (`/flotte/v1/sets/NAME`) the units it created, so that `--prune` destroys only those.
//!
//! Exit status of `plan`: 0 in sync, 2 changes pending, 1 error (`apply`: 0 done, 1 error or a
//! rollout stopped).

mod diff;
mod dir;
mod render;
mod rollout;
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::{CliError, Console, OutputFormat};
use crate::registry::SetName;
use crate::unit::{DesiredState, UnitFile, UnitName, UnitOption};
use crate::wire;

use diff::{Change, Stored, UnitChange};
pub use dir::DesiredUnit;
use rollout::Step;

/// `plan`'s exit status when changes are pending.
pub const CHANGES_PENDING: u8 = 2;

#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The set whose units `--prune` may destroy [default: the directory's base name]
    #[arg(long = "set", value_name = "NAME")]
    pub name: Option<SetName>,
    /// Destroy the units an earlier apply of the set created that the directories no longer have
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Directories of unit files (an instance is a symlink to its template: web@1.service -> web@.service)
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub set: SetArgs,
    /// Save the plan to FILE, for `flottectl apply --plan FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Text for people, or JSON for scripts
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Replace running units N at a time (shown in the plan's rollout)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// Directories of unit files (an instance is a symlink to its template: web@1.service -> web@.service)
    #[arg(
        value_name = "DIR",
        required_unless_present = "plan",
        conflicts_with = "plan"
    )]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub set: SetArgs,
    /// Apply exactly the plan saved in FILE by `plan --out`; refused if the cluster changed since
    #[arg(long, value_name = "FILE", conflicts_with_all = ["name", "prune"])]
    pub plan: Option<PathBuf>,
    /// Replace running units N at a time: a rolling update, each batch waited for
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_parallel: u32,
    /// How long a replaced unit must keep running (and passing its check) before the next
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = parse_duration)]
    pub healthy_for: Duration,
    /// How long one step may take to be done before the apply stops
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = parse_duration)]
    pub step_timeout: Duration,
    /// Text for people, or JSON for scripts (progress still goes to stderr)
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{text}` is not a number of seconds from 0 to a day"))
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Dir(#[from] dir::DirError),
    #[error(
        "cannot tell the set's name from {} directories: give --set NAME",
        .0
    )]
    NoSetName(usize),
    #[error("the directory name `{dir}` is no valid set name: give --set NAME ({why})")]
    BadSetName { dir: String, why: String },
    #[error("cannot read the plan {}: {why}", .path.display())]
    PlanFile { path: PathBuf, why: String },
    #[error("cannot write the plan {}: {why}", .path.display())]
    WritePlan { path: PathBuf, why: String },
    #[error(
        "the cluster changed since the plan was made at revision {revision}; make a new plan:\n{}",
        .changes.join("\n")
    )]
    Stale { revision: i64, changes: Vec<String> },
    #[error("the server's answer holds a unit flottectl cannot read: {0}")]
    Answer(String),
    #[error("{0}")]
    Stopped(String),
}

/// What a plan file holds: enough to apply exactly this plan later and to tell whether the
/// cluster changed since.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanFile {
    version: u32,
    dirs: Vec<PathBuf>,
    set: SetName,
    prune: bool,
    max_parallel: u32,
    request: wire::PlanRequest,
    answer: wire::PlanAnswer,
}

const PLAN_FILE_VERSION: u32 = 1;

/// A plan made: the desired set, the server's answer and what follows from them.
struct Planned {
    file: PlanFile,
    desired: Vec<DesiredUnit>,
    changes: Vec<UnitChange>,
    steps: Vec<Step>,
}

pub(super) async fn plan(
    client: &Client,
    console: &mut Console<'_>,
    args: &PlanArgs,
) -> Result<ExitCode, CliError> {
    let set = set_name(&args.dirs, &args.set)?;
    let desired = read_dirs(console, &args.dirs)?;
    let planned = make(
        client,
        &args.dirs,
        set,
        args.set.prune,
        args.max_parallel,
        desired,
    )
    .await?;
    let hosts = hostnames(client).await;
    match args.output {
        OutputFormat::Text => console
            .out
            .write_all(render::plan_text(&planned, &hosts).as_bytes())?,
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *console.out, &render::plan_json(&planned))
                .map_err(|e| CliError::Output(e.into()))?;
            writeln!(console.out)?;
        }
    }
    if let Some(path) = &args.out {
        let text = serde_json::to_string_pretty(&planned.file).expect("a plan serializes");
        std::fs::write(path, text + "\n").map_err(|e| ApplyError::WritePlan {
            path: path.clone(),
            why: e.to_string(),
        })?;
        if args.output == OutputFormat::Text {
            writeln!(
                console.out,
                "Saved to {}: apply it with `flottectl apply --plan {}`.",
                path.display(),
                path.display()
            )?;
        }
    }
    console.out.flush()?;
    let pending = planned.changes.iter().any(|c| c.change.is_change());
    Ok(if pending {
        ExitCode::from(CHANGES_PENDING)
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) async fn apply(
    client: &Client,
    console: &mut Console<'_>,
    args: &ApplyArgs,
) -> Result<ExitCode, CliError> {
    let planned = match &args.plan {
        Some(path) => saved(client, path).await?,
        None => {
            let set = set_name(&args.dirs, &args.set)?;
            let desired = read_dirs(console, &args.dirs)?;
            make(
                client,
                &args.dirs,
                set,
                args.set.prune,
                args.max_parallel,
                desired,
            )
            .await?
        }
    };
    let hosts = hostnames(client).await;
    let json = args.output == OutputFormat::Json;
    if !json {
        console
            .out
            .write_all(render::plan_text(&planned, &hosts).as_bytes())?;
        console.out.flush()?;
    }
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signals)?;
    let interrupted = CancellationToken::new();
    let on_interrupt = {
        let interrupted = interrupted.clone();
        async move {
            interrupt.recv().await;
            interrupted.cancel();
            std::future::pending::<()>().await;
        }
    };
    let settings = wait::Settings {
        healthy_for: args.healthy_for,
        step_timeout: args.step_timeout,
    };
    let resume = render::resume_command(&planned.file);
    let outcome = {
        let progress: &mut dyn std::io::Write = if json {
            &mut *console.err
        } else {
            &mut *console.out
        };
        tokio::select! {
            outcome = run_steps(client, progress, &planned, &settings, &hosts, &interrupted) => outcome,
            _ = on_interrupt => unreachable!("the interrupt handler never ends"),
        }
    };
    let report = render::Outcome {
        set: planned.file.set.to_string(),
        revision: planned.file.answer.revision,
        steps: planned.steps.clone(),
        done: outcome.done,
        failure: outcome.failure.clone(),
        resume: resume.clone(),
    };
    if json {
        serde_json::to_writer_pretty(&mut *console.out, &report)
            .map_err(|e| CliError::Output(e.into()))?;
        writeln!(console.out)?;
    } else {
        console
            .out
            .write_all(render::outcome_text(&report).as_bytes())?;
    }
    console.out.flush()?;
    match outcome.failure {
        None => Ok(ExitCode::SUCCESS),
        Some(f) => {
            Err(
                ApplyError::Stopped(format!("apply stopped at step {}: {}", f.step + 1, f.why))
                    .into(),
            )
        }
    }
}

/// How far the steps went.
struct RunOutcome {
    /// Steps done, from the first.
    done: usize,
    failure: Option<render::Failure>,
}

async fn run_steps(
    client: &Client,
    out: &mut dyn std::io::Write,
    planned: &Planned,
    settings: &wait::Settings,
    hosts: &BTreeMap<String, String>,
    interrupted: &CancellationToken,
) -> RunOutcome {
    let failed = |step: usize, written: bool, why: String| RunOutcome {
        done: step,
        failure: Some(render::Failure { step, written, why }),
    };
    let desired: BTreeMap<&UnitName, &DesiredUnit> =
        planned.desired.iter().map(|d| (&d.name, d)).collect();
    let set_answer = planned.file.answer.set.clone().unwrap_or_default();
    let mut set_units: BTreeSet<UnitName> = (set_answer.units.iter())
        .filter_map(|u| UnitName::new(u).ok())
        .collect();
    let mut set_revision = set_answer.mod_revision;
    // The units about to be created are recorded first: an apply cut short leaves none that
    // a later --prune would not know of.
    let created: Vec<&UnitName> = (planned.changes.iter())
        .filter(|c| matches!(c.change, Change::Submit { .. }))
        .map(|c| &c.name)
        .collect();
    if !created.is_empty() {
        set_units.extend(created.into_iter().cloned());
        match record_set(client, &planned.file.set, &set_units, set_revision).await {
            Ok(r) => set_revision = r,
            Err(e) => {
                return failed(
                    0,
                    false,
                    format!("cannot record set {}: {e}", planned.file.set),
                );
            }
        }
    }
    let revisions: BTreeMap<String, i64> = (planned.file.answer.units.iter())
        .map(|u| (u.name.clone(), u.mod_revision))
        .collect();
    let total = planned.steps.len();
    for (i, step) in planned.steps.iter().enumerate() {
        let names: Vec<String> = step.units().iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "[{}/{total}] {} {}",
            i + 1,
            step.verb(),
            names.join(", ")
        );
        let _ = out.flush();
        // A step's writes are never cut short: Ctrl-C stops before the next step, or the wait.
        if interrupted.is_cancelled() {
            return failed(i, false, "interrupted (Ctrl-C)".into());
        }
        let before = match step {
            Step::Replace(units) => wait::entered_active(client, units).await,
            _ => BTreeMap::new(),
        };
        if let Err((made, e)) = write_step(client, step, &desired, &revisions).await {
            return failed(i, made > 0, e.to_string());
        }
        if let Step::Destroy(units) = step {
            for u in units {
                set_units.remove(u);
            }
            match record_set(client, &planned.file.set, &set_units, set_revision).await {
                Ok(r) => set_revision = r,
                Err(e) => {
                    return failed(
                        i,
                        true,
                        format!("cannot record set {}: {e}", planned.file.set),
                    );
                }
            }
            continue;
        }
        let waited = tokio::select! {
            r = wait::step_done(client, out, step, &desired, &before, settings, hosts) => r,
            _ = interrupted.cancelled() => return failed(i, true, "interrupted (Ctrl-C)".into()),
        };
        if let Err(why) = waited {
            return failed(i, true, why);
        }
    }
    RunOutcome {
        done: total,
        failure: None,
    }
}

/// The writes of one step, each unit's in turn, each refused by the API if the unit is no
/// longer at the revision the plan saw (`revisions`): a change made meanwhile is never
/// overwritten (a destroy is not checked). On failure, how many units were written.
async fn write_step(
    client: &Client,
    step: &Step,
    desired: &BTreeMap<&UnitName, &DesiredUnit>,
    revisions: &BTreeMap<String, i64>,
) -> Result<(), (usize, CliError)> {
    for (made, name) in step.units().iter().enumerate() {
        let at = Some(revisions.get(name.as_str()).copied().unwrap_or(0));
        let failed = |e: super::client::ClientError| (made, CliError::from(e));
        match step {
            Step::Submit(_) | Step::Replace(_) => {
                let d = desired
                    .get(name)
                    .expect("submitted and replaced units are desired ones");
                client.put_unit_at(&to_wire(d), at).await.map_err(failed)?;
            }
            Step::State(_) => {
                let d = desired
                    .get(name)
                    .expect("units changing state are desired ones");
                let unit = wire::Unit {
                    name: name.to_string(),
                    desired_state: d.state.to_string(),
                    ..wire::Unit::default()
                };
                client.put_unit_at(&unit, at).await.map_err(failed)?;
            }
            Step::Destroy(_) => {
                client.delete_unit(name).await.map_err(failed)?;
            }
        }
    }
    Ok(())
}

async fn record_set(
    client: &Client,
    set: &SetName,
    units: &BTreeSet<UnitName>,
    revision: i64,
) -> Result<i64, CliError> {
    let answer = client
        .put_set(
            set.as_str(),
            &wire::SetWrite {
                units: units.iter().map(ToString::to_string).collect(),
                mod_revision: revision,
            },
        )
        .await?;
    Ok(answer.mod_revision)
}

/// `--set`, or the base name of the only directory.
fn set_name(dirs: &[PathBuf], args: &SetArgs) -> Result<SetName, ApplyError> {
    if let Some(name) = &args.name {
        return Ok(name.clone());
    }
    let [dir] = dirs else {
        return Err(ApplyError::NoSetName(dirs.len()));
    };
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    SetName::new(&base).map_err(|e| ApplyError::BadSetName {
        dir: base,
        why: e.to_string(),
    })
}

fn read_dirs(console: &mut Console<'_>, dirs: &[PathBuf]) -> Result<Vec<DesiredUnit>, CliError> {
    let set = dir::read(dirs).map_err(ApplyError::from)?;
    for path in &set.ignored {
        writeln!(console.err, "ignoring {}: not a unit file", path.display())?;
    }
    Ok(set.units)
}

fn to_wire(d: &DesiredUnit) -> wire::Unit {
    wire::Unit {
        name: d.name.to_string(),
        options: d.file.options().iter().cloned().map(Into::into).collect(),
        desired_state: d.state.to_string(),
        ..wire::Unit::default()
    }
}

fn from_wire_options(options: &[wire::UnitOption]) -> Result<UnitFile, String> {
    let options: Vec<UnitOption> = options.iter().cloned().map(Into::into).collect();
    UnitFile::from_options(options).map_err(|e| e.to_string())
}

/// Asks the server for the dry run of `desired` and works out the changes.
async fn make(
    client: &Client,
    dirs: &[PathBuf],
    set: SetName,
    prune: bool,
    max_parallel: u32,
    desired: Vec<DesiredUnit>,
) -> Result<Planned, CliError> {
    let request = wire::PlanRequest {
        units: desired.iter().map(to_wire).collect(),
        set: set.to_string(),
        prune,
    };
    let answer = client.plan(&request).await?;
    finish(
        PlanFile {
            version: PLAN_FILE_VERSION,
            dirs: dirs.to_vec(),
            set,
            prune,
            max_parallel,
            request,
            answer,
        },
        desired,
    )
}

/// A plan saved by `plan --out`, checked against the cluster as it is now.
async fn saved(client: &Client, path: &PathBuf) -> Result<Planned, CliError> {
    let bad = |why: String| ApplyError::PlanFile {
        path: path.clone(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let file: PlanFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if file.version != PLAN_FILE_VERSION {
        return Err(bad(format!(
            "version {} is not {PLAN_FILE_VERSION}, the one this flottectl writes",
            file.version
        ))
        .into());
    }
    let desired = (file.request.units.iter())
        .map(|u| {
            let name = UnitName::new(&u.name).map_err(|e| bad(e.to_string()))?;
            let file = from_wire_options(&u.options).map_err(|e| bad(format!("{name}: {e}")))?;
            let state = u
                .desired_state
                .parse::<DesiredState>()
                .map_err(|e| bad(format!("{name}: {e}")))?;
            Ok(DesiredUnit {
                path: PathBuf::from(name.as_str()),
                name,
                file,
                state,
            })
        })
        .collect::<Result<Vec<_>, ApplyError>>()?;
    let now = client.plan(&file.request).await?;
    let changes = stale(&file.answer, &now);
    if !changes.is_empty() {
        return Err(ApplyError::Stale {
            revision: file.answer.revision,
            changes,
        }
        .into());
    }
    // What is applied is the saved plan: unchanged, as just checked.
    finish(file, desired)
}

/// What changed between the plan saved and the cluster now: each unit of the plan whose
/// stored record is not the one the plan saw, and the set (Nomad's `-check-index`, per unit).
fn stale(saved: &wire::PlanAnswer, now: &wire::PlanAnswer) -> Vec<String> {
    let now_units: BTreeMap<&str, &wire::PlannedUnit> =
        now.units.iter().map(|u| (u.name.as_str(), u)).collect();
    let mut changes = Vec::new();
    for unit in &saved.units {
        let was = unit.mod_revision;
        let is = now_units
            .get(unit.name.as_str())
            .map_or(0, |u| u.mod_revision);
        match (was, is) {
            (a, b) if a == b => {}
            (0, b) => changes.push(format!("unit {} was created (revision {b})", unit.name)),
            (_, 0) => changes.push(format!("unit {} was destroyed", unit.name)),
            (_, b) => changes.push(format!("unit {} changed (revision {b})", unit.name)),
        }
    }
    let set_rev = |a: &wire::PlanAnswer| a.set.as_ref().map_or(0, |s| s.mod_revision);
    if set_rev(saved) != set_rev(now) {
        let name = saved.set.as_ref().map_or("", |s| s.name.as_str());
        changes.push(format!(
            "set {name} changed (revision {}): another apply of it ran",
            set_rev(now)
        ));
    }
    changes
}

fn finish(file: PlanFile, desired: Vec<DesiredUnit>) -> Result<Planned, CliError> {
    let mut stored: BTreeMap<UnitName, Stored> = BTreeMap::new();
    for unit in &file.answer.units {
        let Some(s) = &unit.stored else { continue };
        let name = UnitName::new(&unit.name).map_err(|e| ApplyError::Answer(e.to_string()))?;
        let file = from_wire_options(&s.options)
            .map_err(|e| ApplyError::Answer(format!("{name}: {e}")))?;
        let desired = (s.desired_state.parse::<DesiredState>())
            .map_err(|e| ApplyError::Answer(format!("{name}: {e}")))?;
        stored.insert(name, Stored { file, desired });
    }
    let set: BTreeSet<UnitName> = (file.answer.set.iter())
        .flat_map(|s| s.units.iter())
        .filter_map(|u| UnitName::new(u).ok())
        .collect();
    let changes = diff::diff(&desired, &stored, &set, file.prune);
    let steps = rollout::steps(&changes, file.max_parallel as usize);
    Ok(Planned {
        file,
        desired,
        changes,
        steps,
    })
}

/// Machine IDs to hostnames, for the output; empty when the machines cannot be listed.
async fn hostnames(client: &Client) -> BTreeMap<String, String> {
    client
        .machines()
        .await
        .map(|ms| ms.into_iter().map(|m| (m.id, m.hostname)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(units: &[(&str, i64)], set: i64) -> wire::PlanAnswer {
        wire::PlanAnswer {
            revision: 100,
            units: units
                .iter()
                .map(|(n, r)| wire::PlannedUnit {
                    name: n.to_string(),
                    mod_revision: *r,
                    ..Default::default()
                })
                .collect(),
            set: Some(wire::SetAnswer {
                name: "web".into(),
                units: vec![],
                mod_revision: set,
            }),
        }
    }

    #[test]
    fn a_saved_plan_is_stale_when_one_of_its_units_or_its_set_changed() {
        let saved = planned(
            &[("a.service", 90), ("b.service", 0), ("c.service", 50)],
            40,
        );
        let cases: &[(wire::PlanAnswer, &[&str])] = &[
            (saved.clone(), &[]),
            (
                planned(
                    &[("a.service", 101), ("b.service", 0), ("c.service", 50)],
                    40,
                ),
                &["unit a.service changed (revision 101)"],
            ),
            (
                planned(
                    &[("a.service", 90), ("b.service", 102), ("c.service", 0)],
                    40,
                ),
                &[
                    "unit b.service was created (revision 102)",
                    "unit c.service was destroyed",
                ],
            ),
            (
                planned(
                    &[("a.service", 90), ("b.service", 0), ("c.service", 50)],
                    103,
                ),
                &["set web changed (revision 103): another apply of it ran"],
            ),
        ];
        for (now, expected) in cases {
            assert_eq!(stale(&saved, now), *expected);
        }
    }

    #[test]
    fn the_set_defaults_to_the_only_directorys_base_name() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web");
        std::fs::create_dir(&web).unwrap();
        let none = SetArgs {
            name: None,
            prune: false,
        };
        assert_eq!(
            set_name(std::slice::from_ref(&web), &none)
                .unwrap()
                .as_str(),
            "web"
        );
        assert!(matches!(
            set_name(&[web.clone(), web.clone()], &none),
            Err(ApplyError::NoSetName(2))
        ));
        let named = SetArgs {
            name: Some(SetName::new("prod").unwrap()),
            prune: true,
        };
        assert_eq!(
            set_name(&[web.clone(), web], &named).unwrap().as_str(),
            "prod"
        );
    }
}
