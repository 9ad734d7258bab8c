//! `/flotte/v1/changes`: a long poll that answers when units, placements, reasons or unit
//! states changed after a given etcd revision, so that waiting clients need not poll.

use std::time::Duration;

use axum::Json;
use axum::extract::State;

use crate::wire::{self, CHANGES_MAX_WAIT, param};

use super::ApiError;
use super::request::Params;
use super::routes::Api;

/// How long a request waits when it does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `since` and `timeout` from the query: a revision (default 0) and whole seconds (default
/// `DEFAULT_TIMEOUT`, at most `wire::CHANGES_MAX_WAIT`).
pub(super) fn parse(params: &Params) -> Result<(i64, Duration), ApiError> {
    let since = params.revision(param::SINCE)?.unwrap_or(0);
    let timeout = match params.only(param::TIMEOUT)? {
        None => DEFAULT_TIMEOUT,
        Some(v) => v
            .parse::<u64>()
            .map(|s| Duration::from_secs(s).min(CHANGES_MAX_WAIT))
            .map_err(|_| ApiError::BadParameter {
                name: param::TIMEOUT,
                value: v.to_owned(),
                why: "not a number of seconds".into(),
            })?,
    };
    Ok((since, timeout))
}

pub async fn wait(State(api): State<Api>, params: Params) -> Result<Json<wire::Changes>, ApiError> {
    let (since, timeout) = parse(&params)?;
    let mut changes = api.changes.clone();
    tokio::select! {
        // The sender lives as long as any receiver, such as the one `api` holds.
        _ = tokio::time::timeout(timeout, changes.wait_for(|r| *r > since)) => {}
        // A waiting client must not hold up flotted's shutdown.
        _ = api.shutdown.cancelled() => {}
    }
    let revision = *changes.borrow();
    Ok(Json(wire::Changes { revision }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> Params {
        Params::from_uri(&format!("/?{query}").parse().unwrap()).unwrap()
    }

    #[test]
    fn since_and_timeout_have_defaults_and_the_timeout_a_ceiling() {
        assert_eq!(parse(&params("")).unwrap(), (0, DEFAULT_TIMEOUT));
        assert_eq!(
            parse(&params("since=42&timeout=5")).unwrap(),
            (42, Duration::from_secs(5))
        );
        assert_eq!(parse(&params("timeout=3600")).unwrap().1, CHANGES_MAX_WAIT);
    }

    #[test]
    fn bad_values_are_refused_naming_them() {
        for (query, message) in [
            (
                "since=-1",
                "invalid value `-1` of query parameter `since`: not an etcd revision (a whole number, 0 or more)",
            ),
            (
                "since=abc",
                "invalid value `abc` of query parameter `since`: not an etcd revision (a whole number, 0 or more)",
            ),
            (
                "timeout=1.5",
                "invalid value `1.5` of query parameter `timeout`: not a number of seconds",
            ),
            (
                "since=1&since=2",
                "query parameter `since` is given more than once",
            ),
        ] {
            assert_eq!(parse(&params(query)).unwrap_err().to_string(), message);
        }
    }
}
