//! `/flotte/v1/drains/ID`: drain a machine (`PUT`), so that the engine moves its normal units
//! elsewhere and places none there, or undrain it (`DELETE`). The mark is stored apart from
//! the machine's record, under no lease, so it outlives the machine's agent restarting.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::machine::MachineId;
use crate::registry::DrainRecord;

use super::ApiError;
use super::routes::Api;

/// The `{machine}` segment of a drain's path, a valid machine ID.
pub struct DrainedId(MachineId);

impl<S: Send + Sync> FromRequestParts<S> for DrainedId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::NoRoute(format!("{}: {}", parts.uri.path(), e.body_text())))?;
        Ok(DrainedId(
            MachineId::new(&raw).map_err(ApiError::BadMachine)?,
        ))
    }
}

/// 201 when the machine is drained now, 204 when it already was; 404 for a machine that is not
/// registered (a mistyped ID would otherwise drain nothing, silently).
pub async fn put(State(api): State<Api>, DrainedId(id): DrainedId) -> Result<StatusCode, ApiError> {
    if api.registry.machine(&id).await?.is_none() {
        return Err(ApiError::MachineNotFound(id));
    }
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if api.registry.drain(&id, &DrainRecord { since }).await? {
        Ok(StatusCode::CREATED)
    } else {
        Ok(StatusCode::NO_CONTENT)
    }
}

/// 204 when the drain is lifted; 404 when the machine was not drained. A machine that left
/// the cluster may be undrained too.
pub async fn delete(
    State(api): State<Api>,
    DrainedId(id): DrainedId,
) -> Result<StatusCode, ApiError> {
    if api.registry.undrain(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotDrained(id))
    }
}
