//! Every way an API request can fail, and the one place that gives each its HTTP status.

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::machine::{MachineError, MachineId};
use crate::registry::RegistryError;
use crate::unit::{DesiredState, NameError, OptionError, StateError, UnitName};
use crate::wire::{ErrorBody, ErrorDetail};

/// A failed request. Messages are lowercase and name the offending value; `status` maps each
/// variant to its HTTP status in one exhaustive `match`, so a new variant forces a decision.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("this machine has not registered in the cluster yet; retry in a moment")]
    NotRegistered,
    #[error(
        "this machine cannot reach etcd (no lease renewal answered for {:.1} s): etcd is down, without quorum or cut off from here; retry in a moment or through another machine's API",
        .0.as_secs_f64()
    )]
    EtcdUnreachable(std::time::Duration),
    #[error("no resource at `{0}`")]
    NoRoute(String),
    #[error("method {method} is not allowed on `{path}`: {allowed}")]
    MethodNotAllowed {
        method: Method,
        path: String,
        allowed: &'static str,
    },
    #[error("{0} (RFC 7230 §5.4)")]
    BadHost(String),
    #[error("content type {} is not accepted: send application/json", shown_types(.0))]
    UnsupportedMediaType(Vec<String>),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("unable to decode body: {0}")]
    BadBody(String),
    #[error("unable to decode the query string `{query}`: {why}")]
    BadQuery { query: String, why: String },
    #[error("query parameter `{0}` is given more than once")]
    RepeatedParameter(String),
    #[error("invalid value `{value}` of query parameter `{name}`: {why}")]
    BadParameter {
        name: &'static str,
        value: String,
        why: String,
    },
    #[error("unit name `{path}` in the URL differs from name `{body}` in the request body")]
    NameMismatch { path: String, body: String },
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("invalid desiredState: {0}")]
    InvalidState(#[from] StateError),
    #[error("unit `{name}` is a template: its desiredState can only be inactive, not {desired}")]
    TemplateState {
        name: UnitName,
        desired: DesiredState,
    },
    #[error("invalid options of unit `{name}`: {error}")]
    InvalidOptions { name: UnitName, error: OptionError },
    #[error("invalid [X-Fleet] options of unit `{name}`: {}", .messages.join("; "))]
    InvalidRequirements {
        name: UnitName,
        messages: Vec<String>,
    },
    #[error("invalid [X-Flotte-Service] options of unit `{name}`: {}", .messages.join("; "))]
    InvalidService {
        name: UnitName,
        messages: Vec<String>,
    },
    #[error(transparent)]
    InvalidSetName(crate::registry::SetNameError),
    #[error("invalid service name in the path: {0}")]
    BadServiceName(crate::unit::ServiceNameError),
    #[error("this machine has not listed the service catalog from etcd yet; retry in a moment")]
    CatalogNotListed,
    #[error("metadata operation {index}: {problem}")]
    InvalidPatch { index: usize, problem: PatchProblem },
    #[error("unit `{0}` does not exist")]
    UnitNotFound(UnitName),
    #[error("invalid machine in the path: {0}")]
    BadMachine(MachineError),
    #[error("machine {0} is not registered in the cluster")]
    MachineNotFound(MachineId),
    #[error("machine {0} is not drained")]
    NotDrained(MachineId),
    #[error("unit `{0}` has no state on any machine")]
    StateNotFound(UnitName),
    #[error("unit `{0}` does not exist and the request has no options to create it from")]
    NoOptions(UnitName),
    #[error(
        "unit `{0}` exists: give a desiredState to update it, or different options to replace it"
    )]
    NoDesiredState(UnitName),
    #[error("{0} changed concurrently; retry the request")]
    Concurrent(String),
    #[error("unit `{name}` cannot be read: {why}")]
    CorruptUnit { name: UnitName, why: String },
    /// `since` names history etcd compacted away.
    #[error(
        "revision {0} is compacted: etcd no longer has the events after it; resume from a later revision, or leave out `since` to follow from now"
    )]
    Compacted(i64),
    #[error("revision {0} is ahead of etcd's current revision")]
    FutureRevision(i64),
    /// etcd refused the write as too large (it runs with a lower `--max-request-bytes` than
    /// its default, which every valid unit fits in).
    #[error(transparent)]
    TooLarge(RegistryError),
    #[error(transparent)]
    Registry(RegistryError),
    #[error("unit `{unit}` is placed on no machine{}: give machine=ID to read a machine's journal of it", reason_shown(.reason))]
    NotPlaced { unit: UnitName, reason: String },
    #[error("unit `{unit}` runs on {} machines: give machine=ID, one of {}", .machines.len(), ids_shown(.machines))]
    AmbiguousMachine {
        unit: UnitName,
        machines: Vec<MachineId>,
    },
    #[error(
        "machine {machine} ({hostname}) publishes no API address to forward to: set listen_tcp in its flotted.conf"
    )]
    NoPeerAddress {
        machine: MachineId,
        hostname: String,
    },
    #[error("cannot reach flotted on machine {machine} ({hostname}): {why}")]
    Peer {
        machine: MachineId,
        hostname: String,
        why: String,
    },
    /// The peer's own refusal, passed on with its status.
    #[error("{hostname}: {message}")]
    PeerRefused {
        hostname: String,
        status: StatusCode,
        message: String,
    },
    #[error(
        "this is machine {here}, not {asked}: a forwarded request is answered by the machine it names (do two machines publish the same API address?)"
    )]
    Misdirected { asked: MachineId, here: MachineId },
    #[error("{hostname} has no journal to read: {why}")]
    NoJournal { hostname: String, why: String },
}

fn reason_shown(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

fn ids_shown(ids: &[MachineId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with one operation of a machines PATCH.
#[derive(Debug, thiserror::Error)]
pub enum PatchProblem {
    #[error("op `{0}` is not add, remove or replace")]
    UnknownOp(String),
    #[error("path `{0}` is not of the form /<machine ID>/metadata/<key>")]
    BadPath(String),
    #[error("path `{path}`: {error}")]
    BadMachine { path: String, error: MachineError },
    #[error("{op} of `{path}` needs a non-empty value")]
    MissingValue { op: String, path: String },
    #[error("value of `{path}` must be a string or {{\"value\": string}}")]
    BadValueShape { path: String },
    #[error("{0}")]
    BadValue(MachineError),
}

fn shown_types(types: &[String]) -> String {
    if types.is_empty() {
        "none".to_owned()
    } else {
        types
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(" and ")
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            // A compare-and-swap lost: the client may simply try again.
            RegistryError::Conflict(what) => ApiError::Concurrent(what),
            RegistryError::Compacted { revision } => ApiError::Compacted(revision),
            RegistryError::FutureRevision { revision } => ApiError::FutureRevision(revision),
            too_large @ RegistryError::TooLarge { .. } => ApiError::TooLarge(too_large),
            other => ApiError::Registry(other),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotRegistered | ApiError::EtcdUnreachable(_) | ApiError::CatalogNotListed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::NoRoute(_)
            | ApiError::UnitNotFound(_)
            | ApiError::StateNotFound(_)
            | ApiError::MachineNotFound(_)
            | ApiError::NotDrained(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadHost(_)
            | ApiError::BadBody(_)
            | ApiError::BadQuery { .. }
            | ApiError::RepeatedParameter(_)
            | ApiError::BadParameter { .. }
            | ApiError::NameMismatch { .. }
            | ApiError::InvalidName(_)
            | ApiError::InvalidState(_)
            | ApiError::TemplateState { .. }
            | ApiError::InvalidOptions { .. }
            | ApiError::InvalidRequirements { .. }
            | ApiError::InvalidService { .. }
            | ApiError::BadServiceName(_)
            | ApiError::InvalidSetName(_)
            | ApiError::InvalidPatch { .. }
            | ApiError::FutureRevision(_)
            | ApiError::BadMachine(_) => StatusCode::BAD_REQUEST,
            ApiError::Compacted(_) => StatusCode::GONE,
            ApiError::NoOptions(_) | ApiError::NoDesiredState(_) | ApiError::Concurrent(_) => {
                StatusCode::CONFLICT
            }
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::CorruptUnit { .. } | ApiError::Registry(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::NotPlaced { .. } => StatusCode::CONFLICT,
            ApiError::AmbiguousMachine { .. } => StatusCode::BAD_REQUEST,
            ApiError::NoPeerAddress { .. } | ApiError::Peer { .. } => StatusCode::BAD_GATEWAY,
            ApiError::PeerRefused { status, .. } => *status,
            ApiError::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            ApiError::NoJournal { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "API request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "API request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: status.as_u16(),
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_compare_and_swap_is_a_conflict_and_other_registry_errors_are_internal() {
        let e = ApiError::from(RegistryError::Conflict("unit a.service".into()));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(
            e.to_string(),
            "unit a.service changed concurrently; retry the request"
        );
        let e = ApiError::from(RegistryError::TooLarge {
            what: "storing unit a.service".into(),
            cause: "etcdserver: request is too large".into(),
        });
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e = ApiError::from(RegistryError::Watch("broken".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn content_type_messages_name_what_was_sent() {
        assert_eq!(
            ApiError::UnsupportedMediaType(vec![]).to_string(),
            "content type none is not accepted: send application/json"
        );
        assert_eq!(
            ApiError::UnsupportedMediaType(vec!["text/plain".into()]).to_string(),
            "content type `text/plain` is not accepted: send application/json"
        );
    }
}
