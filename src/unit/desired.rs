//! What a unit should be: its desired state, as fleet names them, and the target an agent is
//! given for it on its machine.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the user asked for a unit: stored only, loaded into systemd, or started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Inactive,
    Loaded,
    Launched,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state `{0}` is not one of inactive, loaded, launched")]
pub struct StateError(pub String);

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Inactive => "inactive",
            DesiredState::Loaded => "loaded",
            DesiredState::Launched => "launched",
        }
    }
}

impl std::str::FromStr for DesiredState {
    type Err = StateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inactive" => Ok(DesiredState::Inactive),
            "loaded" => Ok(DesiredState::Loaded),
            "launched" => Ok(DesiredState::Launched),
            _ => Err(StateError(s.to_owned())),
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent is told to do with a unit placed on its machine, and what it reports having
/// done: fleet's `loaded` and `launched` (a unit that is neither is not on the machine at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Loaded,
    Launched,
}

impl Target {
    /// The target for a desired state; `None` for `inactive`, which is never placed.
    pub fn for_desired(desired: DesiredState) -> Option<Target> {
        match desired {
            DesiredState::Inactive => None,
            DesiredState::Loaded => Some(Target::Loaded),
            DesiredState::Launched => Some(Target::Launched),
        }
    }

    pub fn as_desired(self) -> DesiredState {
        match self {
            Target::Loaded => DesiredState::Loaded,
            Target::Launched => DesiredState::Launched,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_desired().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_states_parse_and_map_to_targets() {
        for (text, desired, target) in [
            ("inactive", DesiredState::Inactive, None),
            ("loaded", DesiredState::Loaded, Some(Target::Loaded)),
            ("launched", DesiredState::Launched, Some(Target::Launched)),
        ] {
            assert_eq!(text.parse::<DesiredState>().unwrap(), desired);
            assert_eq!(desired.to_string(), text);
            assert_eq!(Target::for_desired(desired), target);
        }
        assert_eq!(
            "started".parse::<DesiredState>().unwrap_err().to_string(),
            "state `started` is not one of inactive, loaded, launched"
        );
    }
}
