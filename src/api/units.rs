//! `/units`: list, get, create or update (PUT) and destroy units. What a PUT does is decided by
//! two pure functions, `parse_put` (the request alone) and `plan_put` (against the stored
//! unit); the handlers read the registry before and write after them.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::future::join_all;

use crate::machine::MachineId;
use crate::registry::{PlacementRecord, UnitRecord, UnitStateRecord};
use crate::unit::{
    DesiredState, Requirements, ServiceDeclaration, Target, UnitFile, UnitHash, UnitName,
    UnitOption,
};
use crate::wire;

use super::ApiError;
use super::decode;
use super::pagination;
use super::request::{ItemName, Params, read_body};
use super::routes::Api;

/// A PUT's body, checked on its own: everything that can be wrong without looking at etcd.
#[derive(Debug, Clone, PartialEq)]
pub struct PutRequest {
    pub name: UnitName,
    pub desired: Option<DesiredState>,
    pub file: Option<UnitFile>,
}

/// What a valid PUT does to the stored unit.
#[derive(Debug, Clone, PartialEq)]
pub enum PutPlan {
    Create {
        file: UnitFile,
        desired: DesiredState,
    },
    /// New options for an existing unit, still at `revision`: it is stored anew (and
    /// rescheduled).
    Replace {
        file: UnitFile,
        desired: DesiredState,
        revision: i64,
    },
    /// `record` replaces the stored unit, still at `revision`.
    SetDesired { record: UnitRecord, revision: i64 },
    /// The unit already is as asked.
    Keep,
}

impl PutPlan {
    /// fleet's answers: 201 when a unit was created from options, 204 for an update.
    pub fn status(&self) -> StatusCode {
        match self {
            PutPlan::Create { .. } | PutPlan::Replace { .. } => StatusCode::CREATED,
            PutPlan::SetDesired { .. } | PutPlan::Keep => StatusCode::NO_CONTENT,
        }
    }
}

/// Checks a PUT in fleet's order: the body's name against the path's, the name, then the
/// desired state and the options (which must be a unit file whose `[X-Fleet]` requirements
/// read under this very name, so that an instance's `%i` is its own).
pub fn parse_put(path: &str, body: wire::Unit) -> Result<PutRequest, ApiError> {
    let raw = if body.name.is_empty() {
        path
    } else {
        body.name.as_str()
    };
    if raw != path {
        return Err(ApiError::NameMismatch {
            path: path.to_owned(),
            body: raw.to_owned(),
        });
    }
    let name = UnitName::new(raw)?;
    let desired = match body.desired_state.as_str() {
        "" => None,
        text => Some(text.parse::<DesiredState>()?),
    };
    if let Some(desired) = desired
        && name.is_template()
        && desired != DesiredState::Inactive
    {
        return Err(ApiError::TemplateState { name, desired });
    }
    let file = if body.options.is_empty() {
        None
    } else {
        let options = body
            .options
            .into_iter()
            .map(|o| UnitOption::new(&o.section, &o.name, &o.value))
            .collect();
        let file = UnitFile::from_options(options).map_err(|error| ApiError::InvalidOptions {
            name: name.clone(),
            error,
        })?;
        Requirements::from_unit(&name, &file).map_err(|errors| ApiError::InvalidRequirements {
            name: name.clone(),
            messages: errors.errors.into_iter().map(|e| e.message).collect(),
        })?;
        ServiceDeclaration::from_unit(&name, &file).map_err(|errors| ApiError::InvalidService {
            name: name.clone(),
            messages: errors.into_iter().map(|e| e.message).collect(),
        })?;
        Some(file)
    };
    Ok(PutRequest {
        name,
        desired,
        file,
    })
}

/// Whether a stored unit runs where it is placed, as its machines report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    /// Running on every machine it is placed on that reports it (or no machine asked).
    AsPlaced,
    /// A machine it is placed on reports it not running: it exited, failed, or went down
    /// with a unit it is bound to.
    Stopped,
}

/// What `request` does to `existing`, the unit as stored (if any) and its revision. A start
/// (`launched`) of a unit already launched that `running` says stopped somewhere is a start
/// request: its agents start it again (fleet kept it as it was, so that `start` did not start).
pub fn plan_put(
    request: PutRequest,
    existing: Option<(UnitRecord, i64)>,
    running: Running,
) -> Result<PutPlan, ApiError> {
    let PutRequest {
        name,
        desired,
        file,
    } = request;
    match (existing, file) {
        (None, None) => Err(ApiError::NoOptions(name)),
        (None, Some(file)) => Ok(PutPlan::Create {
            file,
            // fleet stores a unit created without a desired state as inactive.
            desired: desired.unwrap_or(DesiredState::Inactive),
        }),
        (Some((record, revision)), Some(file)) if file.hash() != record.hash => {
            Ok(PutPlan::Replace {
                file,
                // New content keeps what the user wanted of the unit unless told otherwise.
                desired: desired.unwrap_or(record.desired),
                revision,
            })
        }
        (Some((record, revision)), _) => match desired {
            None => Err(ApiError::NoDesiredState(name)),
            Some(DesiredState::Launched)
                if record.desired == DesiredState::Launched && running == Running::Stopped =>
            {
                Ok(PutPlan::SetDesired {
                    record: UnitRecord {
                        start: record.start + 1,
                        ..record
                    },
                    revision,
                })
            }
            Some(d) if d == record.desired => Ok(PutPlan::Keep),
            Some(desired) => Ok(PutPlan::SetDesired {
                record: UnitRecord { desired, ..record },
                revision,
            }),
        },
    }
}

/// A PUT with `modRevision=N` applies only to the unit as it was at revision N (0: none):
/// anything else is a concurrent change, refused before anything is written.
pub fn check_revision(
    name: &UnitName,
    existing: Option<i64>,
    expected: Option<i64>,
) -> Result<(), ApiError> {
    match expected {
        Some(n) if existing.unwrap_or(0) != n => Err(ApiError::Concurrent(format!(
            "unit {name} (at revision {}, not {n})",
            existing.unwrap_or(0)
        ))),
        _ => Ok(()),
    }
}

pub async fn put(
    State(api): State<Api>,
    ItemName(path): ItemName,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let request = decode::unit_put(&path, &headers, &read_body(body).await?)?;
    let expected = params.revision(wire::param::MOD_REVISION)?;
    let name = request.name.clone();
    // Most PUTs with options create their unit: that is tried in one request, which reads
    // the unit in the same transaction when there is one.
    let create_at_once = expected.is_none_or(|n| n == 0);
    let existing = match plan_put(request.clone(), None, Running::AsPlaced) {
        Ok(PutPlan::Create { file, desired }) if create_at_once => {
            match api.registry.create_unit(&name, &file, desired).await? {
                None => return Ok(StatusCode::CREATED),
                existing => existing,
            }
        }
        _ => api.registry.unit(&name).await?,
    };
    // The writes below compare the revision read here, so the check holds until they land.
    check_revision(&name, existing.as_ref().map(|(_, r)| *r), expected)?;
    let running = match (&request.desired, &existing) {
        (Some(DesiredState::Launched), Some((record, _)))
            if record.desired == DesiredState::Launched =>
        {
            running(&api, &name).await?
        }
        _ => Running::AsPlaced,
    };
    let plan = plan_put(request, existing, running)?;
    let status = plan.status();
    match plan {
        PutPlan::Create { file, desired } => {
            api.registry
                .put_unit_at(&name, &file, desired, None)
                .await?;
        }
        PutPlan::Replace {
            file,
            desired,
            revision,
        } => {
            api.registry
                .put_unit_at(&name, &file, desired, Some(revision))
                .await?;
        }
        PutPlan::SetDesired { record, revision } => {
            api.registry.set_desired(&name, &record, revision).await?;
        }
        PutPlan::Keep => {}
    }
    Ok(status)
}

/// Whether `name` runs on the machines it is placed on, as they report it.
async fn running(api: &Api, name: &UnitName) -> Result<Running, ApiError> {
    let placed = api.registry.placement(name).await?.map(|p| p.machines);
    let states = api.registry.states_of(name).await?;
    let stopped = states.iter().any(|((_, machine), state)| {
        placed.as_ref().is_some_and(|p| p.contains(machine)) && !state.active.is_running()
    });
    Ok(if stopped {
        Running::Stopped
    } else {
        Running::AsPlaced
    })
}

pub async fn get(
    State(api): State<Api>,
    ItemName(path): ItemName,
) -> Result<Json<wire::Unit>, ApiError> {
    let name = UnitName::new(&path)?;
    let Some((record, _)) = api.registry.unit(&name).await? else {
        return Err(ApiError::UnitNotFound(name));
    };
    let Some(file) = api.registry.content(&record.hash).await? else {
        return Err(ApiError::CorruptUnit {
            why: format!("its content {} is missing", record.hash),
            name,
        });
    };
    let placement = api.registry.placement(&name).await?;
    let reason = api.registry.reason(&name).await?.map(|r| r.reason);
    let states: BTreeMap<(UnitName, MachineId), UnitStateRecord> =
        api.registry.states_of(&name).await?.into_iter().collect();
    Ok(Json(to_wire(
        &name,
        &record,
        Some(file),
        Facts {
            placement: placement.as_ref(),
            reason,
            states: &states,
        },
    )))
}

pub async fn list(
    State(api): State<Api>,
    params: Params,
) -> Result<Json<wire::UnitPage>, ApiError> {
    let token = pagination::requested(&params)?;
    let revision = async { Ok(api.registry.revision().await?) };
    let (units, next_page_token) = api
        .unit_list
        .page(String::new(), token, revision, all_units(&api))
        .await?;
    Ok(Json(wire::UnitPage {
        units,
        next_page_token,
    }))
}

/// Every unit as the API shows it, sorted by name, and the revision its units were read at
/// (what is read after them is as new or newer).
async fn all_units(api: &Api) -> Result<(i64, Vec<wire::Unit>), ApiError> {
    let (mut units, revision) = api.registry.units().await?;
    units.sort_by(|a, b| a.0.cmp(&b.0));
    let placements: BTreeMap<UnitName, PlacementRecord> =
        api.registry.placements().await?.into_iter().collect();
    let mut reasons: BTreeMap<UnitName, String> = api
        .registry
        .reasons()
        .await?
        .into_iter()
        .map(|(u, r)| (u, r.reason))
        .collect();
    let states: BTreeMap<(UnitName, MachineId), UnitStateRecord> =
        api.registry.states().await?.into_iter().collect();
    let files = contents(api, units.iter().map(|(_, r)| r.hash).collect()).await;
    let units = units
        .iter()
        .map(|(name, record)| {
            to_wire(
                name,
                record,
                files.get(&record.hash).cloned(),
                Facts {
                    placement: placements.get(name),
                    reason: reasons.remove(name),
                    states: &states,
                },
            )
        })
        .collect();
    Ok((revision, units))
}

/// Each content in `hashes`, read concurrently. A content that cannot be read is logged and
/// left out: its unit is listed without options rather than failing the list.
async fn contents(api: &Api, hashes: BTreeSet<UnitHash>) -> BTreeMap<UnitHash, UnitFile> {
    let reads = hashes.into_iter().map(|hash| async move {
        match api.registry.content(&hash).await {
            Ok(Some(file)) => Some((hash, file)),
            Ok(None) => {
                tracing::warn!(%hash, "a unit's content is missing");
                None
            }
            Err(e) => {
                tracing::warn!(%hash, error = %e, "a unit's content cannot be read");
                None
            }
        }
    });
    join_all(reads).await.into_iter().flatten().collect()
}

pub async fn delete(
    State(api): State<Api>,
    ItemName(path): ItemName,
) -> Result<StatusCode, ApiError> {
    let name = UnitName::new(&path)?;
    if api.registry.delete_unit(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::UnitNotFound(name))
    }
}

/// What else is known of a unit: where it is placed, why not, and the agents' reports.
struct Facts<'a> {
    placement: Option<&'a PlacementRecord>,
    reason: Option<String>,
    /// May hold other units' states too.
    states: &'a BTreeMap<(UnitName, MachineId), UnitStateRecord>,
}

/// A unit as fleet shows it, from its content (`None`: unreadable, shown without options).
/// `machineID` is the machine it is placed on (the first of a global unit's); `currentState`
/// is what that machine's agent reports having done with it, `inactive` when nothing; flotte's
/// `global` is its `[X-Fleet]` section's, which passed this check when it was submitted.
fn to_wire(
    name: &UnitName,
    record: &UnitRecord,
    file: Option<UnitFile>,
    facts: Facts<'_>,
) -> wire::Unit {
    let global = file.as_ref().is_some_and(|file| {
        Requirements::from_unit(name, file).is_ok_and(|checked| checked.requirements.global)
    });
    let options = file.map(UnitFile::into_options).unwrap_or_default();
    let machines: &[MachineId] = facts.placement.map_or(&[], |p| &p.machines);
    let current = machines
        .first()
        .and_then(|m| facts.states.get(&(name.clone(), m.clone())))
        .map_or(DesiredState::Inactive, |s| Target::as_desired(s.current));
    wire::Unit {
        name: name.to_string(),
        options: options
            .into_iter()
            .map(|o| wire::UnitOption {
                section: o.section,
                name: o.name,
                value: o.value,
            })
            .collect(),
        desired_state: record.desired.to_string(),
        current_state: current.to_string(),
        machine_id: machines
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        reason: facts.reason.unwrap_or_default(),
        machine_ids: machines.iter().map(ToString::to_string).collect(),
        global,
        start_request: record.start,
    }
}

#[cfg(test)]
mod tests;
