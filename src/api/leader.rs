//! `GET /flotte/v1/leader`: the machine whose engine leads, for pages and scripts that show it
//! (the event stream's `leader_changed` says when it changes).

use axum::Json;
use axum::extract::State;

use crate::wire;

use super::ApiError;
use super::routes::Api;

pub async fn get(State(api): State<Api>) -> Result<Json<wire::Leader>, ApiError> {
    Ok(Json(wire::Leader {
        leader: api.registry.leader().await?,
    }))
}
