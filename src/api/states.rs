//! `/state`: each unit's state on each machine, as the machines' agents report them.

use axum::Json;
use axum::extract::State;

use crate::machine::MachineId;
use crate::registry::UnitStateRecord;
use crate::unit::UnitName;
use crate::wire::{self, param};

use super::ApiError;
use super::pagination;
use super::request::{ItemName, Params};
use super::routes::Api;

/// States sorted by unit, then machine, filtered as fleet does: by exact `machineID` and
/// `unitName` (the first of each given).
pub async fn list(
    State(api): State<Api>,
    params: Params,
) -> Result<Json<wire::UnitStatePage>, ApiError> {
    let token = pagination::requested(&params)?;
    let machine = params.first(param::MACHINE_ID).filter(|m| !m.is_empty());
    let unit = params.first(param::UNIT_NAME).filter(|u| !u.is_empty());
    let build = async {
        let (mut states, revision) = api.registry.states_at().await?;
        states.retain(|((u, m), _)| {
            machine.is_none_or(|want| m.as_str() == want)
                && unit.is_none_or(|want| u.as_str() == want)
        });
        states.sort_by(|a, b| a.0.cmp(&b.0));
        Ok::<_, ApiError>((revision, states.into_iter().map(to_wire).collect()))
    };
    let revision = async { Ok(api.registry.revision().await?) };
    // The filters are part of what a list is (Debug quotes them: no two pairs read alike).
    let key = format!("{:?}", (machine, unit));
    let (states, next_page_token) = api.state_list.page(key, token, revision, build).await?;
    Ok(Json(wire::UnitStatePage {
        states,
        next_page_token,
    }))
}

/// A unit's state: on the first machine (by ID) that reports one, for a global unit has many.
pub async fn get(
    State(api): State<Api>,
    ItemName(path): ItemName,
) -> Result<Json<wire::UnitState>, ApiError> {
    let name = UnitName::new(&path)?;
    let mut states = api.registry.states_of(&name).await?;
    states.sort_by(|a, b| a.0.cmp(&b.0));
    match states.into_iter().next() {
        Some(state) => Ok(Json(to_wire(state))),
        None => Err(ApiError::StateNotFound(name)),
    }
}

fn to_wire(((unit, machine), s): ((UnitName, MachineId), UnitStateRecord)) -> wire::UnitState {
    wire::UnitState {
        name: unit.to_string(),
        hash: s.hash.to_string(),
        machine_id: machine.to_string(),
        systemd_load_state: s.load.to_string(),
        systemd_active_state: s.active.to_string(),
        systemd_sub_state: s.sub,
        message: s.message.unwrap_or_default(),
        start_request: s.started,
    }
}
