//! flottectl's typed view of the API's answers: `client` turns `wire`'s strings into these once,
//! so that the commands compare names and states as values. systemd's states keep a value this
//! version does not know verbatim; a unit name or desired state that is not one is an answer
//! fleet's API would not send.

use crate::systemd::{ActiveState, LoadState};
use crate::unit::{DesiredState, NameError, StateError, UnitName};
use crate::wire;

/// A submitted unit, as `GET /fleet/v1/units` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: UnitName,
    /// Its file, option by option; `cli::resolve::registered_file` reads them.
    pub options: Vec<wire::UnitOption>,
    pub desired: DesiredState,
    /// What the agent of the machine it is placed on reports having done with it: fleet's
    /// `currentState`, `inactive` when the server sends none (as for a global unit).
    pub current: DesiredState,
    /// The machine it is placed on, the first of a global unit's; empty when placed nowhere.
    pub machine_id: String,
    /// Every machine it is placed on.
    pub machine_ids: Vec<String>,
    /// Why it is placed nowhere; empty when it is placed or need not be.
    pub reason: String,
    /// It runs on every machine, and has no current state of its own.
    pub global: bool,
    /// Its start requests (`wire::Unit::start_request`).
    pub start_request: u64,
}

/// A unit's state on one machine, as that machine's agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    pub name: UnitName,
    /// The content the agent wrote; empty when it reported none.
    pub hash: String,
    pub machine_id: String,
    pub load: LoadState,
    pub active: ActiveState,
    pub sub: String,
    /// systemd's message when it refused the unit or an action on it; empty when none.
    pub message: String,
    /// The unit's start request its machine last acted on.
    pub start_request: u64,
}

/// Why an answer is not one fleet's API sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("unit {unit}: {field}: {error}")]
    State {
        unit: UnitName,
        field: &'static str,
        error: StateError,
    },
}

impl TryFrom<wire::Unit> for Unit {
    type Error = ViewError;

    fn try_from(unit: wire::Unit) -> Result<Unit, ViewError> {
        let name = UnitName::new(&unit.name)?;
        let state = |field, text: &str| {
            text.parse::<DesiredState>()
                .map_err(|error| ViewError::State {
                    unit: name.clone(),
                    field,
                    error,
                })
        };
        let desired = state("desiredState", &unit.desired_state)?;
        let current = match unit.current_state.as_str() {
            "" => DesiredState::Inactive,
            text => state("currentState", text)?,
        };
        Ok(Unit {
            name,
            options: unit.options,
            desired,
            current,
            machine_id: unit.machine_id,
            machine_ids: unit.machine_ids,
            reason: unit.reason,
            global: unit.global,
            start_request: unit.start_request,
        })
    }
}

impl TryFrom<wire::UnitState> for UnitState {
    type Error = ViewError;

    fn try_from(state: wire::UnitState) -> Result<UnitState, ViewError> {
        Ok(UnitState {
            name: UnitName::new(&state.name)?,
            hash: state.hash,
            machine_id: state.machine_id,
            load: LoadState::from(state.systemd_load_state),
            active: ActiveState::from(state.systemd_active_state),
            sub: state.systemd_sub_state,
            message: state.message,
            start_request: state.start_request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_become_values_and_unknown_systemd_states_are_kept() {
        let state = UnitState::try_from(wire::UnitState {
            name: "a.service".into(),
            systemd_load_state: "loaded".into(),
            systemd_active_state: "hibernating".into(),
            ..wire::UnitState::default()
        })
        .unwrap();
        assert_eq!(state.load, LoadState::Loaded);
        assert_eq!(state.active, ActiveState::Other("hibernating".into()));
        let unit = |desired: &str, current: &str| {
            Unit::try_from(wire::Unit {
                name: "a.service".into(),
                desired_state: desired.into(),
                current_state: current.into(),
                ..wire::Unit::default()
            })
            .map(|u| (u.desired, u.current))
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            unit("launched", ""),
            Ok((DesiredState::Launched, DesiredState::Inactive))
        );
        assert_eq!(
            unit("loaded", "launched"),
            Ok((DesiredState::Loaded, DesiredState::Launched))
        );
        assert_eq!(
            unit("started", "loaded"),
            Err(
                "unit a.service: desiredState: state `started` is not one of inactive, loaded, launched"
                    .into()
            )
        );
        assert!(
            Unit::try_from(wire::Unit {
                name: "../x".into(),
                desired_state: "loaded".into(),
                ..wire::Unit::default()
            })
            .is_err()
        );
    }
}
