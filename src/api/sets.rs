//! `PUT /flotte/v1/sets/NAME`: records which units applies of a set created
//! (`flottectl apply --set NAME`), written only if the set is still at the revision the client
//! read it at (in the plan's answer), so that two applies of one set never lose each other's
//! units. Reading a set is part of `POST /flotte/v1/plan`.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::registry::{SetName, SetRecord};
use crate::unit::UnitName;
use crate::wire;

use super::ApiError;
use super::request::read_body;
use super::routes::Api;

/// The `{name}` segment of a set's path, a valid set name.
pub struct SetPath(SetName);

impl<S: Send + Sync> FromRequestParts<S> for SetPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::NoRoute(format!("{}: {}", parts.uri.path(), e.body_text())))?;
        Ok(SetPath(
            SetName::new(&raw).map_err(ApiError::InvalidSetName)?,
        ))
    }
}

/// The record a set write stores: valid unit names, sorted, each once.
pub fn parse(body: wire::SetWrite) -> Result<(SetRecord, i64), ApiError> {
    let mut units = (body.units.iter())
        .map(|u| UnitName::new(u))
        .collect::<Result<Vec<_>, _>>()?;
    units.sort();
    units.dedup();
    if body.mod_revision < 0 {
        return Err(ApiError::BadBody(format!(
            "modRevision {} is below 0",
            body.mod_revision
        )));
    }
    Ok((SetRecord { units }, body.mod_revision))
}

/// 200 with the set as written (`wire::SetAnswer`, its new `modRevision`); 409 when the set
/// changed since `modRevision`.
pub async fn put(
    State(api): State<Api>,
    SetPath(name): SetPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<wire::SetAnswer>, ApiError> {
    let (record, revision) = super::decode::set_put(&headers, &read_body(body).await?)?;
    let mod_revision = api.registry.put_set_at(&name, &record, revision).await?;
    Ok(Json(wire::SetAnswer {
        name: name.to_string(),
        units: record.units.iter().map(ToString::to_string).collect(),
        mod_revision,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_write_holds_valid_names_sorted_once() {
        let (record, rev) = parse(wire::SetWrite {
            units: vec!["b.service".into(), "a.service".into(), "b.service".into()],
            mod_revision: 7,
        })
        .unwrap();
        let names: Vec<&str> = record.units.iter().map(|u| u.as_str()).collect();
        assert_eq!((names, rev), (vec!["a.service", "b.service"], 7));
        let e = parse(wire::SetWrite {
            units: vec!["../x".into()],
            mod_revision: 0,
        })
        .unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{e}");
    }
}
