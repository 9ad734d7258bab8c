//! `GET /flotte/v1/catalog` (the declared services with their instance counts) and
//! `GET /flotte/v1/catalog/NAME` (one service's instances with their health), answered from
//! this flotted's watched copy of the instances (`catalog::View`). With `?index=REVISION`
//! either is a blocking query, as Consul's: it answers once the index moved past `REVISION`
//! (at once if it has), else when `wait` (default 30 s, at most `wire::CATALOG_MAX_WAIT`)
//! is over, with the unchanged index.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};

use crate::catalog::View;
use crate::unit::ServiceName;
use crate::wire::{self, CATALOG_MAX_WAIT, param};

use super::ApiError;
use super::request::Params;
use super::routes::Api;

/// How long a blocking query waits when it does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// How long a request waits for this flotted's first listing of the instances.
const LISTING_WAIT: Duration = Duration::from_secs(5);

/// A blocking query: the index to wait past and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Blocking {
    pub index: i64,
    pub wait: Duration,
}

/// `index` and `wait` from the query; `None` without `index` (answer at once).
pub(super) fn parse(params: &Params) -> Result<Option<Blocking>, ApiError> {
    let index = params.revision(param::INDEX)?;
    let wait = match params.only(param::WAIT)? {
        None => DEFAULT_WAIT,
        Some(v) => crate::config::parse_duration(v)
            .map(|d| d.min(CATALOG_MAX_WAIT))
            .map_err(|why| ApiError::BadParameter {
                name: param::WAIT,
                value: v.to_owned(),
                why,
            })?,
    };
    Ok(index.map(|index| Blocking { index, wait }))
}

pub async fn list(State(api): State<Api>, params: Params) -> Result<Json<wire::Catalog>, ApiError> {
    let blocking = parse(&params)?;
    let view = answer(&api, blocking, |v| v.revision).await?;
    Ok(Json(wire::Catalog {
        index: view.revision,
        services: view
            .services()
            .into_iter()
            .map(|(name, (instances, healthy))| wire::CatalogService {
                name: name.to_string(),
                instances,
                healthy,
            })
            .collect(),
    }))
}

pub async fn get(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<wire::ServiceInstances>, ApiError> {
    let name = ServiceName::new(&name).map_err(ApiError::BadServiceName)?;
    let blocking = parse(&params)?;
    let view = answer(&api, blocking, |v| v.index_of(&name)).await?;
    Ok(Json(instances(&view, &name)))
}

/// One service's answer from a view.
pub(super) fn instances(view: &View, name: &ServiceName) -> wire::ServiceInstances {
    wire::ServiceInstances {
        name: name.to_string(),
        index: view.index_of(name),
        instances: view
            .instances_of(name)
            .map(|r| wire::Instance {
                machine: r.machine.clone(),
                hostname: r.hostname.clone(),
                address: r.address.clone(),
                port: r.port,
                tags: r.tags.iter().map(ToString::to_string).collect(),
                unit: r.unit.clone(),
                health: r.health.as_str().to_owned(),
            })
            .collect(),
    }
}

/// The view to answer from: once listed, and for a blocking query once `index_of` moved past
/// its index or its wait is over (or flotted shuts down: a waiting client does not hold it up).
async fn answer(
    api: &Api,
    blocking: Option<Blocking>,
    index_of: impl Fn(&View) -> i64,
) -> Result<Arc<View>, ApiError> {
    let mut catalog = api.catalog.clone();
    let listed = tokio::time::timeout(LISTING_WAIT, catalog.wait_for(|v| v.revision > 0));
    if !matches!(listed.await, Ok(Ok(_))) {
        return Err(ApiError::CatalogNotListed);
    }
    if let Some(Blocking { index, wait }) = blocking {
        tokio::select! {
            _ = tokio::time::timeout(wait, catalog.wait_for(|v| index_of(v) > index)) => {}
            _ = api.shutdown.cancelled() => {}
        }
    }
    let view = catalog.borrow().clone();
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params::from_uri(&format!("/?{query}").parse().unwrap()).unwrap()
    }

    #[test]
    fn a_blocking_query_needs_an_index_and_its_wait_has_a_default_and_a_ceiling() {
        let cases = [
            ("", None),
            ("wait=5s", None),
            (
                "index=42",
                Some(Blocking {
                    index: 42,
                    wait: DEFAULT_WAIT,
                }),
            ),
            (
                "index=7&wait=500ms",
                Some(Blocking {
                    index: 7,
                    wait: Duration::from_millis(500),
                }),
            ),
            (
                "index=7&wait=1h",
                Some(Blocking {
                    index: 7,
                    wait: CATALOG_MAX_WAIT,
                }),
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(parse(&params(query)).unwrap(), expected, "{query}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_them() {
        for (query, message) in [
            (
                "index=-1",
                "invalid value `-1` of query parameter `index`: not an etcd revision (a whole number, 0 or more)",
            ),
            (
                "index=1&wait=soon",
                "invalid value `soon` of query parameter `wait`: not a duration such as 10s, 500ms or 5m",
            ),
            (
                "index=1&index=2",
                "query parameter `index` is given more than once",
            ),
        ] {
            assert_eq!(parse(&params(query)).unwrap_err().to_string(), message);
        }
    }
}
