//! `POST /flotte/v1/plan`: a dry run of `flottectl apply`. The proposed units are put in
//! place of the stored ones in a copy of the engine's view of the cluster (read as the engine
//! reads it, `engine::read_own_output` and `engine::read_requirements`), and the engine's own
//! pure `reconcile` says where each would be placed, or why not. Nothing is written. The
//! answer carries each unit as stored with the revision it last changed at, and the revision
//! the units were read at, which `apply --plan` compares against (its check index).

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;

use crate::engine::{self, View};
use crate::registry::{SetName, SetRecord, UnitRecord};
use crate::unit::{DesiredState, UnitFile, UnitName};
use crate::wire;

use super::ApiError;
use super::request::read_body;
use super::routes::Api;
use super::units::parse_put;

/// A plan request, checked on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// Each unit once, with its content and desired state.
    pub units: Vec<(UnitName, UnitFile, DesiredState)>,
    pub set: Option<SetName>,
    pub prune: bool,
}

/// Checks every proposed unit as a PUT of it would be checked (name, desired state, options,
/// `[X-Fleet]` and `[X-Flotte-Service]` under its own name); each must carry options.
pub fn parse(body: wire::PlanRequest) -> Result<Proposal, ApiError> {
    let mut units: Vec<(UnitName, UnitFile, DesiredState)> = Vec::new();
    for unit in body.units {
        let raw = unit.name.clone();
        let put = parse_put(&raw, unit)?;
        let Some(file) = put.file else {
            return Err(ApiError::NoOptions(put.name));
        };
        if units.iter().any(|(n, _, _)| *n == put.name) {
            return Err(ApiError::BadBody(format!(
                "unit `{}` is proposed more than once",
                put.name
            )));
        }
        let desired = put.desired.unwrap_or(DesiredState::Inactive);
        units.push((put.name, file, desired));
    }
    let set = match body.set.as_str() {
        "" => None,
        name => Some(SetName::new(name).map_err(ApiError::InvalidSetName)?),
    };
    if body.prune && set.is_none() {
        return Err(ApiError::BadBody("`prune` needs a `set`".into()));
    }
    Ok(Proposal {
        units,
        set,
        prune: body.prune,
    })
}

pub async fn post(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<wire::PlanAnswer>, ApiError> {
    let proposal = super::decode::plan(&headers, &read_body(body).await?)?;
    Ok(Json(dry_run(&api, proposal).await?))
}

async fn dry_run(api: &Api, proposal: Proposal) -> Result<wire::PlanAnswer, ApiError> {
    let registry = &api.registry;
    let (stored, revision) = registry.units_with_revisions().await?;
    let set = match &proposal.set {
        Some(name) => Some((name.clone(), registry.set(name).await?)),
        None => None,
    };
    let mut view = View {
        strategy: api.local.as_ref().map(|l| l.strategy).unwrap_or_default(),
        ..View::default()
    };
    view.machines = (registry.machines().await?.into_iter())
        .map(|m| (m.id.clone(), m))
        .collect();
    view.overrides = registry.metadata_overrides().await?.into_iter().collect();
    view.drained = registry.drains().await?.into_iter().collect();
    view.units = (stored.iter())
        .map(|(n, s)| (n.clone(), s.record.clone()))
        .collect();
    engine::read_own_output(registry, &mut view).await?;

    let proposed: BTreeSet<UnitName> = proposal.units.iter().map(|(n, _, _)| n.clone()).collect();
    let set_units: Vec<UnitName> = set
        .as_ref()
        .and_then(|(_, s)| s.as_ref())
        .map(|(record, _)| record.units.clone())
        .unwrap_or_default();
    let mut contents: HashMap<_, UnitFile> = HashMap::new();
    for (name, file, desired) in &proposal.units {
        let hash = file.hash();
        contents.insert(hash, file.clone());
        let start = view.units.get(name).map_or(0, |r| r.start);
        view.units.insert(
            name.clone(),
            UnitRecord {
                hash,
                desired: *desired,
                start,
            },
        );
    }
    if proposal.prune {
        for name in set_units.iter().filter(|n| !proposed.contains(*n)) {
            view.units.remove(name);
        }
    }
    engine::read_requirements(registry, &mut view, &mut contents).await;
    let writes = engine::reconcile(&view);
    view.apply(&writes);

    // The stored units the answer shows: the proposed ones and the set's.
    let shown: BTreeSet<UnitName> = proposed
        .iter()
        .cloned()
        .chain(set_units.iter().cloned())
        .collect();
    let hashes: Vec<_> = (shown.iter())
        .filter_map(|n| stored.get(n).map(|s| s.record.hash))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut files = HashMap::new();
    for (hash, file) in registry.contents(&hashes).await {
        match file? {
            Some(f) => {
                files.insert(hash, f);
            }
            None => {
                tracing::warn!(%hash, "a unit's content is missing");
            }
        }
    }
    let units = (shown.iter())
        .map(|name| {
            let s = stored.get(name);
            wire::PlannedUnit {
                name: name.to_string(),
                stored: s.map(|s| wire::Unit {
                    name: name.to_string(),
                    options: (files.get(&s.record.hash).cloned())
                        .map(UnitFile::into_options)
                        .unwrap_or_default()
                        .into_iter()
                        .map(wire::UnitOption::from)
                        .collect(),
                    desired_state: s.record.desired.to_string(),
                    ..wire::Unit::default()
                }),
                mod_revision: s.map_or(0, |s| s.revision),
                machine_ids: (view.units.contains_key(name))
                    .then(|| view.placements.get(name))
                    .flatten()
                    .map(|ms| ms.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                // Only a unit that should run has a reason to show (a template has one too).
                reason: (view.units.get(name))
                    .filter(|r| r.desired != DesiredState::Inactive)
                    .and_then(|_| view.reasons.get(name).cloned())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(wire::PlanAnswer {
        revision,
        units,
        set: set.map(|(name, record)| {
            let (record, mod_revision) = record.unwrap_or((SetRecord::default(), 0));
            wire::SetAnswer {
                name: name.to_string(),
                units: record.units.iter().map(ToString::to_string).collect(),
                mod_revision,
            }
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, desired: &str, exec: &str) -> wire::Unit {
        wire::Unit {
            name: name.into(),
            desired_state: desired.into(),
            options: if exec.is_empty() {
                vec![]
            } else {
                vec![wire::UnitOption {
                    section: "Service".into(),
                    name: "ExecStart".into(),
                    value: exec.into(),
                }]
            },
            ..wire::Unit::default()
        }
    }

    #[test]
    fn a_proposal_is_checked_unit_by_unit_as_puts_are() {
        let ok = parse(wire::PlanRequest {
            units: vec![
                unit("a.service", "launched", "/bin/true"),
                unit("t@.service", "inactive", "/bin/true"),
            ],
            set: "web".into(),
            prune: true,
        })
        .unwrap();
        assert_eq!(ok.units.len(), 2);
        assert_eq!(ok.units[0].2, DesiredState::Launched);
        assert_eq!(ok.set, Some(SetName::new("web").unwrap()));

        let cases: &[(wire::PlanRequest, &str)] = &[
            (
                wire::PlanRequest {
                    units: vec![unit("a.service", "launched", "")],
                    ..Default::default()
                },
                "no options",
            ),
            (
                wire::PlanRequest {
                    units: vec![
                        unit("a.service", "launched", "/bin/true"),
                        unit("a.service", "loaded", "/bin/true"),
                    ],
                    ..Default::default()
                },
                "more than once",
            ),
            (
                wire::PlanRequest {
                    units: vec![unit("t@.service", "launched", "/bin/true")],
                    ..Default::default()
                },
                "template",
            ),
            (
                wire::PlanRequest {
                    units: vec![],
                    set: "a/b".into(),
                    prune: false,
                },
                "set name `a/b`",
            ),
            (
                wire::PlanRequest {
                    units: vec![],
                    set: String::new(),
                    prune: true,
                },
                "needs a `set`",
            ),
        ];
        for (request, expected) in cases {
            let e = parse(request.clone()).unwrap_err();
            assert!(e.to_string().contains(expected), "{request:?}: {e}");
            assert!(e.status().is_client_error(), "{e}: {}", e.status());
        }
    }
}
