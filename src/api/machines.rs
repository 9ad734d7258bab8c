//! `/machines`: list the registered machines with their effective metadata, and change
//! metadata with fleet's JSON-patch-like operations.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::machine::{MachineId, Metadata, validate_key};
use crate::registry::{MetadataOverride, effective_metadata};
use crate::resources::Resources;
use crate::unit::{Requirements, UnitHash, UnitName};
use crate::wire;

use super::decode;
use super::pagination;
use super::request::{Params, read_body};
use super::routes::Api;
use super::{ApiError, PatchProblem};

pub async fn list(
    State(api): State<Api>,
    params: Params,
) -> Result<Json<wire::MachinePage>, ApiError> {
    let token = pagination::requested(&params)?;
    let mut machines = api.registry.machines().await?;
    machines.sort_by(|a, b| a.id.cmp(&b.id));
    let (machines, next_page_token) = pagination::page(&machines, token);
    let overrides: BTreeMap<_, _> = api
        .registry
        .metadata_overrides()
        .await?
        .into_iter()
        .collect();
    let drains: BTreeMap<_, _> = api.registry.drains().await?.into_iter().collect();
    let load = placed_load(&api).await?;
    let machines = machines
        .into_iter()
        .map(|m| {
            let (units, requested) = load.get(&m.id).copied().unwrap_or_default();
            wire::Machine {
                capacity: m.capacity,
                free: m.capacity.map(|c| c.saturating_sub(requested)),
                requested,
                units,
                metadata: effective_metadata(&m, &overrides).as_map().clone(),
                drained: drains.contains_key(&m.id),
                id: m.id.to_string(),
                primary_ip: m.ip,
                version: m.version,
                hostname: m.hostname,
            }
        })
        .collect();
    Ok(Json(wire::MachinePage {
        machines,
        next_page_token,
    }))
}

/// Per machine, how many units are placed there and what they request together: the
/// placements, and the requirements of each placed unit's current content (read the way the
/// engine reads them; a unit whose requirements cannot be read requests nothing).
async fn placed_load(api: &Api) -> Result<BTreeMap<MachineId, (u64, Resources)>, ApiError> {
    let placements = api.registry.placements().await?;
    let (units, _) = api.registry.units().await?;
    let hashes: BTreeMap<UnitName, UnitHash> =
        units.into_iter().map(|(n, r)| (n, r.hash)).collect();
    let mut wanted: Vec<UnitHash> = placements
        .iter()
        .filter_map(|(n, _)| hashes.get(n).cloned())
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut files = BTreeMap::new();
    for (hash, file) in api.registry.contents(&wanted).await {
        if let Some(file) = file? {
            files.insert(hash, file);
        }
    }
    let mut load: BTreeMap<MachineId, (u64, Resources)> = BTreeMap::new();
    for (name, placement) in placements {
        let requests = hashes
            .get(&name)
            .and_then(|h| files.get(h))
            .and_then(|file| Requirements::from_unit(&name, file).ok())
            .map(|c| c.requirements.requests)
            .unwrap_or_default();
        for machine in placement.machines {
            let entry = load.entry(machine).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(requests);
        }
    }
    Ok(load)
}

/// One operation as fleet takes it: `{"op":"add","path":"/<id>/metadata/<key>","value":"ssd"}`.
#[derive(Debug, Deserialize)]
pub struct PatchOp {
    pub op: String,
    pub path: String,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// Validates every operation, then folds them in order into the override each key ends
/// with: nothing is written unless all are valid.
pub fn plan_patch(
    ops: &[PatchOp],
) -> Result<BTreeMap<(MachineId, String), MetadataOverride>, ApiError> {
    let mut overrides = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        let (key, value) =
            check(op).map_err(|problem| ApiError::InvalidPatch { index, problem })?;
        overrides.insert(key, value);
    }
    Ok(overrides)
}

fn check(op: &PatchOp) -> Result<((MachineId, String), MetadataOverride), PatchProblem> {
    let remove = match op.op.as_str() {
        "add" | "replace" => false,
        "remove" => true,
        other => return Err(PatchProblem::UnknownOp(other.to_owned())),
    };
    let bad_path = || PatchProblem::BadPath(op.path.clone());
    let rest = op.path.strip_prefix('/').ok_or_else(bad_path)?;
    let [id, "metadata", key] = rest.split('/').collect::<Vec<_>>()[..] else {
        return Err(bad_path());
    };
    let machine_error = |error| PatchProblem::BadMachine {
        path: op.path.clone(),
        error,
    };
    let id = MachineId::new(id).map_err(machine_error)?;
    validate_key(key).map_err(machine_error)?;
    if remove {
        return Ok(((id, key.to_owned()), MetadataOverride::Removed));
    }
    // fleet documents a plain string; its examples also wrap it as {"value": "..."}.
    let value = match &op.value {
        None | Some(serde_json::Value::Null) => "",
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(serde_json::Value::Object(o)) => match o.get("value") {
            Some(serde_json::Value::String(s)) if o.len() == 1 => s.as_str(),
            _ => {
                return Err(PatchProblem::BadValueShape {
                    path: op.path.clone(),
                });
            }
        },
        Some(_) => {
            return Err(PatchProblem::BadValueShape {
                path: op.path.clone(),
            });
        }
    };
    if value.is_empty() {
        return Err(PatchProblem::MissingValue {
            op: op.op.clone(),
            path: op.path.clone(),
        });
    }
    Metadata::default()
        .insert(key, value)
        .map_err(PatchProblem::BadValue)?;
    Ok((
        (id, key.to_owned()),
        MetadataOverride::Set(value.to_owned()),
    ))
}

pub async fn patch(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let overrides = decode::machines_patch(&headers, &read_body(body).await?)?;
    api.registry.set_metadata_overrides(&overrides).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn ops(json: &str) -> Vec<PatchOp> {
        serde_json::from_str(json).unwrap()
    }

    fn id() -> MachineId {
        MachineId::new(ID).unwrap()
    }

    #[test]
    fn both_value_shapes_set_and_later_operations_win() {
        let plan = plan_patch(&ops(&format!(
            r#"[{{"op":"add","path":"/{ID}/metadata/disk","value":"hdd"}},
                {{"op":"replace","path":"/{ID}/metadata/disk","value":{{"value":"ssd"}}}},
                {{"op":"add","path":"/{ID}/metadata/region","value":"eu"}},
                {{"op":"remove","path":"/{ID}/metadata/rack"}}]"#
        )))
        .unwrap();
        assert_eq!(
            plan,
            BTreeMap::from([
                ((id(), "disk".into()), MetadataOverride::Set("ssd".into())),
                ((id(), "rack".into()), MetadataOverride::Removed),
                ((id(), "region".into()), MetadataOverride::Set("eu".into())),
            ])
        );
        assert!(plan_patch(&[]).unwrap().is_empty());
    }

    #[test]
    fn each_bad_operation_is_refused_naming_its_index_and_value() {
        let cases = [
            (
                r#"{"op":"move","path":"/MID/metadata/disk","value":"x"}"#,
                "metadata operation 1: op `move` is not add, remove or replace",
            ),
            (
                r#"{"op":"add","path":"MID/metadata/disk","value":"x"}"#,
                "metadata operation 1: path `MID/metadata/disk` is not of the form /<machine ID>/metadata/<key>",
            ),
            (
                r#"{"op":"add","path":"/MID/labels/disk","value":"x"}"#,
                "metadata operation 1: path `/MID/labels/disk` is not of the form /<machine ID>/metadata/<key>",
            ),
            (
                r#"{"op":"add","path":"/MID/metadata/disk/x","value":"x"}"#,
                "metadata operation 1: path `/MID/metadata/disk/x` is not of the form /<machine ID>/metadata/<key>",
            ),
            (
                r#"{"op":"add","path":"/m1/metadata/disk","value":"x"}"#,
                "metadata operation 1: path `/m1/metadata/disk`: machine ID `m1` is not 32 lowercase hexadecimal characters",
            ),
            (
                r#"{"op":"add","path":"/MID/metadata/di sk","value":"x"}"#,
                "metadata operation 1: path `/MID/metadata/di sk`: metadata key `di sk` is invalid: use letters, digits, `_`, `.` and `-`",
            ),
            (
                r#"{"op":"add","path":"/MID/metadata/..","value":"x"}"#,
                "metadata operation 1: path `/MID/metadata/..`: metadata key `..` is invalid: a key of dots only reads as a path segment (`.`, `..`); include a letter, digit, `_` or `-`",
            ),
            (
                r#"{"op":"remove","path":"/MID/metadata/."}"#,
                "metadata operation 1: path `/MID/metadata/.`: metadata key `.` is invalid: a key of dots only reads as a path segment (`.`, `..`); include a letter, digit, `_` or `-`",
            ),
            (
                r#"{"op":"add","path":"/MID/metadata/disk"}"#,
                "metadata operation 1: add of `/MID/metadata/disk` needs a non-empty value",
            ),
            (
                r#"{"op":"replace","path":"/MID/metadata/disk","value":{"value":""}}"#,
                "metadata operation 1: replace of `/MID/metadata/disk` needs a non-empty value",
            ),
            (
                r#"{"op":"add","path":"/MID/metadata/disk","value":3}"#,
                "metadata operation 1: value of `/MID/metadata/disk` must be a string or {\"value\": string}",
            ),
            (
                r#"{"op":"add","path":"/MID/metadata/disk","value":{"v":"ssd"}}"#,
                "metadata operation 1: value of `/MID/metadata/disk` must be a string or {\"value\": string}",
            ),
            (
                r#"{"op":"add","path":"/MID/metadata/disk","value":"a,b"}"#,
                "metadata operation 1: metadata value `a,b` of key `disk` is invalid: contains `,`",
            ),
        ];
        for (op, message) in cases {
            let op = op.replace("MID", ID);
            let good = format!(r#"{{"op":"remove","path":"/{ID}/metadata/x"}}"#);
            let err = plan_patch(&ops(&format!("[{good},{op}]"))).unwrap_err();
            assert_eq!(err.to_string(), message.replace("MID", ID), "{op}");
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        }
    }
}
