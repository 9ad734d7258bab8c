//! What `systemctl status` shows of one unit: its Unit interface's states, description,
//! file and state timestamps, and for a service its Service interface's main PID, result,
//! memory, tasks and CPU time. Read on request (`flottectl status`), never cached.

use zbus_systemd::systemd1::{ServiceProxy, UnitProxy};
use zbus_systemd::zbus;
use zbus_systemd::zbus::proxy::CacheProperties;

use super::{ActiveState, LoadState, Systemd, SystemdError};
use crate::unit::{UnitName, UnitType};

/// One unit's properties, as systemd has them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitProperties {
    pub description: String,
    pub load: LoadState,
    pub active: ActiveState,
    pub sub: String,
    /// The unit file systemd loaded it from; empty when there is none.
    pub fragment_path: String,
    pub timestamps: Timestamps,
    /// A service's own properties; `None` for other unit types.
    pub service: Option<ServiceProperties>,
}

/// When the unit last entered and left its active and inactive states, in microseconds since
/// the Unix epoch (systemd's `usec_t`); 0 when it never did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamps {
    pub active_enter: u64,
    pub active_exit: u64,
    pub inactive_enter: u64,
    pub inactive_exit: u64,
}

impl Timestamps {
    /// Since when the unit is in `active`, chosen as `systemctl status` does: active units
    /// since they became active, stopped ones since they stopped, starting ones since they
    /// left inactive, stopping ones since they left active. 0 when unknown.
    pub fn since(&self, active: &ActiveState) -> u64 {
        match active {
            ActiveState::Active | ActiveState::Reloading | ActiveState::Refreshing => {
                self.active_enter
            }
            ActiveState::Inactive | ActiveState::Failed => self.inactive_enter,
            ActiveState::Activating => self.inactive_exit,
            ActiveState::Deactivating | ActiveState::Maintenance | ActiveState::Other(_) => {
                self.active_exit
            }
        }
    }
}

/// A service's properties; each `None` when systemd does not know it (accounting off, or no
/// process group yet: systemd says `UINT64_MAX`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceProperties {
    /// 0 when it has no main process.
    pub main_pid: u32,
    /// systemd's `Result`: `success`, `exit-code`, `signal`, `timeout`, ...
    pub result: String,
    pub memory_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub tasks_max: Option<u64>,
    pub cpu_nsec: Option<u64>,
}

/// systemd's "not known" and "no limit" for 64-bit counters.
fn known(value: u64) -> Option<u64> {
    (value != u64::MAX).then_some(value)
}

impl Systemd {
    /// The properties `systemctl status` shows. A unit systemd does not know comes back as
    /// `not-found`/`inactive`/`dead`, as systemd reports it.
    pub async fn unit_properties(&self, name: &UnitName) -> Result<UnitProperties, SystemdError> {
        let _timer = crate::metrics::systemd_call("UnitProperties");
        let call = |e: zbus::Error| SystemdError::call(format!("properties of {name}"), e);
        let path = self
            .manager
            .load_unit(name.to_string())
            .await
            .map_err(call)?;
        // One-shot reads: no property cache, so no match rules and no initial GetAll.
        let unit = UnitProxy::builder(&self.connection)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(call)?;
        // The calls go out together on the one connection, and are answered in order.
        let (description, load, active, sub, fragment_path) = tokio::try_join!(
            unit.description(),
            unit.load_state(),
            unit.active_state(),
            unit.sub_state(),
            unit.fragment_path(),
        )
        .map_err(call)?;
        let (active_enter, active_exit, inactive_enter, inactive_exit) = tokio::try_join!(
            unit.active_enter_timestamp(),
            unit.active_exit_timestamp(),
            unit.inactive_enter_timestamp(),
            unit.inactive_exit_timestamp(),
        )
        .map_err(call)?;
        let service = if name.unit_type() == UnitType::Service {
            let service = ServiceProxy::builder(&self.connection)
                .path(path)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(call)?;
            let (main_pid, result, memory, tasks, tasks_max, cpu) = tokio::try_join!(
                service.main_pid(),
                service.result(),
                service.memory_current(),
                service.tasks_current(),
                service.tasks_max(),
                service.cpu_usage_n_sec(),
            )
            .map_err(call)?;
            Some(ServiceProperties {
                main_pid,
                result,
                memory_bytes: known(memory),
                tasks: known(tasks),
                tasks_max: known(tasks_max),
                cpu_nsec: known(cpu),
            })
        } else {
            None
        };
        Ok(UnitProperties {
            description,
            load: LoadState::from(load),
            active: ActiveState::from(active),
            sub,
            fragment_path,
            timestamps: Timestamps {
                active_enter,
                active_exit,
                inactive_enter,
                inactive_exit,
            },
            service,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_the_timestamp_systemctl_shows_for_each_state() {
        let t = Timestamps {
            active_enter: 1,
            active_exit: 2,
            inactive_enter: 3,
            inactive_exit: 4,
        };
        for (state, since) in [
            ("active", 1),
            ("reloading", 1),
            ("refreshing", 1),
            ("inactive", 3),
            ("failed", 3),
            ("activating", 4),
            ("deactivating", 2),
            ("maintenance", 2),
            ("new", 2),
        ] {
            assert_eq!(t.since(&ActiveState::from(state)), since, "{state}");
        }
    }

    #[test]
    fn uint64_max_means_unknown() {
        assert_eq!(known(u64::MAX), None);
        assert_eq!(known(0), Some(0));
        assert_eq!(known(4096), Some(4096));
    }
}
