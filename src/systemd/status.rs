//! systemd's unit states as reported by the manager: LOAD, ACTIVE and SUB.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! systemd_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($variant,)+
            /// A value this version of flotte does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($text => $name::$variant,)+
                    _ => $name::Other(s),
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

systemd_enum! {
    /// systemd's LoadState of a unit.
    LoadState {
        Loaded => "loaded",
        NotFound => "not-found",
        BadSetting => "bad-setting",
        Error => "error",
        Masked => "masked",
        Stub => "stub",
        Merged => "merged",
    }
}

systemd_enum! {
    /// systemd's ActiveState of a unit.
    ActiveState {
        Active => "active",
        Reloading => "reloading",
        Inactive => "inactive",
        Failed => "failed",
        Activating => "activating",
        Deactivating => "deactivating",
        Maintenance => "maintenance",
        Refreshing => "refreshing",
    }
}

impl ActiveState {
    /// Whether the unit runs, or may still: started, starting, reloading, refreshing, or
    /// stopping (its processes are not gone yet). `failed`, `inactive`, `maintenance` and
    /// unknown states do not run. flottectl waits for a stop until this is false; an agent that
    /// finds a unit running after a restart adopts it as launched.
    pub fn is_running(&self) -> bool {
        match self {
            ActiveState::Active
            | ActiveState::Activating
            | ActiveState::Deactivating
            | ActiveState::Reloading
            | ActiveState::Refreshing => true,
            ActiveState::Inactive
            | ActiveState::Failed
            | ActiveState::Maintenance
            | ActiveState::Other(_) => false,
        }
    }
}

impl ActiveState {
    /// The state to report of a unit systemd calls `active` while a job of `job_type` is
    /// queued or running for it (`ListUnitsByNames`' job type, empty when none): a restart or
    /// start job means the process now running is about to be replaced, so it is
    /// `activating`; a stop job, `deactivating`. An `inactive` or `failed` unit with a start,
    /// restart or reload-or-start job is `activating` too (it is about to run). Any other
    /// state is reported as it is. An agent that queued a restart and read the unit back at
    /// once would otherwise report the old process as the new content active, or the unit
    /// between the restart's stop and start as stopped.
    pub fn with_job(self, job_type: &str) -> ActiveState {
        match (self, job_type) {
            (
                ActiveState::Active,
                "start" | "restart" | "try-restart" | "reload-or-start" | "verify-active",
            ) => ActiveState::Activating,
            (ActiveState::Active, "stop") => ActiveState::Deactivating,
            // Between a restart's stop and its start (systemd turns the job into a start),
            // or before a queued start begins: about to run, not stopped. Reported inactive,
            // a two-phase move would take it for stopped and start it elsewhere too.
            (
                ActiveState::Inactive | ActiveState::Failed,
                "start" | "restart" | "reload-or-start",
            ) => ActiveState::Activating,
            (state, _) => state,
        }
    }
}

/// One unit as the manager reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    pub load: LoadState,
    pub active: ActiveState,
    pub sub: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_with_a_job_is_reported_in_transition() {
        use ActiveState::*;
        for (state, job, expected) in [
            (Active, "", Active),
            (Active, "restart", Activating),
            (Active, "start", Activating),
            (Active, "try-restart", Activating),
            (Active, "stop", Deactivating),
            (Active, "reload", Active),
            (Inactive, "start", Activating),
            (Inactive, "restart", Activating),
            (Failed, "restart", Activating),
            (Failed, "reload-or-start", Activating),
            (Inactive, "try-restart", Inactive),
            (Inactive, "stop", Inactive),
            (Inactive, "", Inactive),
            (Activating, "start", Activating),
            (Deactivating, "restart", Deactivating),
        ] {
            assert_eq!(
                state.clone().with_job(job),
                expected,
                "{state:?} with {job:?}"
            );
        }
    }

    #[test]
    fn states_round_trip_through_strings_and_keep_unknown_values() {
        for s in [
            "loaded",
            "not-found",
            "bad-setting",
            "error",
            "masked",
            "stub",
            "merged",
            "weird",
        ] {
            assert_eq!(LoadState::from(s).as_str(), s);
        }
        for s in [
            "active",
            "reloading",
            "inactive",
            "failed",
            "activating",
            "deactivating",
            "maintenance",
            "refreshing",
            "new",
        ] {
            assert_eq!(ActiveState::from(s).as_str(), s);
        }
        assert_eq!(ActiveState::from("failed"), ActiveState::Failed);
        assert_eq!(ActiveState::from("new"), ActiveState::Other("new".into()));
        let json = serde_json::to_string(&UnitStatus {
            load: LoadState::Loaded,
            active: ActiveState::Active,
            sub: "running".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"load":"loaded","active":"active","sub":"running"}"#
        );
    }

    #[test]
    fn a_unit_runs_until_its_processes_are_gone() {
        for (state, running) in [
            ("active", true),
            ("activating", true),
            ("deactivating", true),
            ("reloading", true),
            ("refreshing", true),
            ("inactive", false),
            ("failed", false),
            ("maintenance", false),
            ("", false),
            ("new", false),
        ] {
            assert_eq!(ActiveState::from(state).is_running(), running, "{state}");
        }
    }
}
