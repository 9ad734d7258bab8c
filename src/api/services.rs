//! `GET /flotte/v1/services[?prefix=/services/]`: the service keys announced under a prefix,
//! with their leases' remaining seconds and announcers, as `flottectl services` shows them
//! (`discovery::services`).

use axum::Json;
use axum::extract::State;

use crate::discovery;
use crate::wire::{self, DEFAULT_SERVICE_PREFIX, param};

use super::ApiError;
use super::request::Params;
use super::routes::Api;

pub async fn list(
    State(api): State<Api>,
    params: Params,
) -> Result<Json<wire::ServicePage>, ApiError> {
    let prefix = prefix(params.only(param::PREFIX)?)?;
    let services = discovery::services(&api.registry, prefix).await?;
    Ok(Json(wire::ServicePage {
        services: services.into_iter().map(to_wire).collect(),
    }))
}

/// The prefix asked for: an absolute key prefix, `/services/` when none is given.
fn prefix(given: Option<&str>) -> Result<&str, ApiError> {
    match given {
        None => Ok(DEFAULT_SERVICE_PREFIX),
        Some(p) if p.starts_with('/') => Ok(p),
        Some(p) => Err(ApiError::BadParameter {
            name: param::PREFIX,
            value: p.to_owned(),
            why: "a service key prefix starts with `/`".into(),
        }),
    }
}

fn to_wire(s: discovery::Service) -> wire::Service {
    let (machine, unit, hostname) = match s.announcer {
        Some(a) => (a.machine, a.unit, a.hostname),
        None => (None, None, String::new()),
    };
    wire::Service {
        key: s.key,
        value: s.value,
        ttl: s.ttl.map(|t| t.as_secs()),
        machine,
        unit,
        hostname,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_absolute_and_defaults_to_services() {
        assert_eq!(prefix(None).unwrap(), "/services/");
        assert_eq!(prefix(Some("/")).unwrap(), "/");
        assert_eq!(prefix(Some("/web/")).unwrap(), "/web/");
        for bad in ["", "services/", "web"] {
            let e = prefix(Some(bad)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "invalid value `{bad}` of query parameter `prefix`: a service key prefix starts with `/`"
                )
            );
        }
    }
}
