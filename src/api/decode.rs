//! The API's request decoding as pure functions of a request's head and body bytes: all that
//! is checked before etcd is read. The handlers call them after reading the body, and the fuzz
//! target `api_request` (in `fuzz/`) drives them with arbitrary input: each either decodes or
//! refuses with a 4xx `ApiError`, never panics.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, Uri, Version};
use serde::de::DeserializeOwned;

use crate::machine::MachineId;
use crate::registry::MetadataOverride;
use crate::wire::PageToken;

use super::ApiError;
use super::machines::{PatchOp, plan_patch};
use super::request::{self, Params};
use super::units::parse_put;

pub use super::plan::Proposal;
pub use super::units::PutRequest;

/// What a machines PATCH sets or removes: each (machine, key) once, the last operation's.
pub type MetadataChanges = BTreeMap<(MachineId, String), MetadataOverride>;

/// RFC 7230 §5.4's `Host` rules, checked on every request.
pub fn host(version: Version, headers: &HeaderMap) -> Result<(), ApiError> {
    request::check_host(version, headers)
}

/// `PUT /units/NAME` with `name` as decoded from the path.
pub fn unit_put(name: &str, headers: &HeaderMap, body: &[u8]) -> Result<PutRequest, ApiError> {
    request::require_json(headers)?;
    parse_put(name, json(body)?)
}

/// `PATCH /machines`: every operation valid, or nothing.
pub fn machines_patch(headers: &HeaderMap, body: &[u8]) -> Result<MetadataChanges, ApiError> {
    request::require_json(headers)?;
    let ops: Vec<PatchOp> = json(body)?;
    plan_patch(&ops)
}

/// `POST /flotte/v1/plan`: every proposed unit checked as its PUT would be.
pub fn plan(headers: &HeaderMap, body: &[u8]) -> Result<Proposal, ApiError> {
    request::require_json(headers)?;
    super::plan::parse(json(body)?)
}

/// `PUT /flotte/v1/sets/NAME`'s body: the set's record and the revision it must still be at.
pub fn set_put(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(crate::registry::SetRecord, i64), ApiError> {
    request::require_json(headers)?;
    super::sets::parse(json(body)?)
}

/// The page a listing's query asks for.
pub fn page(uri: &Uri) -> Result<PageToken, ApiError> {
    super::pagination::requested(&Params::from_uri(uri)?)
}

/// `GET /flotte/v1/changes`: the revision to wait past and how long to wait at most.
pub fn changes(uri: &Uri) -> Result<(i64, Duration), ApiError> {
    super::changes::parse(&Params::from_uri(uri)?)
}

/// A JSON body, at most `request::MAX_BODY` bytes as read.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadBody(e.to_string()))
}
