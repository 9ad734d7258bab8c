//! A simulated unit manager for the scale benchmark: a thousand real agents (real etcd
//! traffic, leases and watches) in one process, each with one of these in place of systemd.
//! It keeps each unit's link and activity in memory and signals every change the way systemd
//! does (the agent reads states back after a signal); it runs no process. Never used by
//! flotted, nor by any test of flotte's behaviour on systemd: those use real managers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::systemd::{ActiveState, LoadState, SystemdError, UnitChanges, UnitManager, UnitStatus};
use crate::unit::UnitName;

#[derive(Debug, Default, Clone, Copy)]
struct Unit {
    linked: bool,
    active: bool,
}

#[derive(Default)]
struct State {
    units: BTreeMap<UnitName, Unit>,
    subscribers: Vec<mpsc::UnboundedSender<UnitName>>,
}

impl State {
    fn signal(&mut self, name: &UnitName) {
        self.subscribers.retain(|s| s.send(name.clone()).is_ok());
    }

    fn status(&self, name: &UnitName) -> UnitStatus {
        match self.units.get(name) {
            Some(u) if u.active => UnitStatus {
                load: LoadState::Loaded,
                active: ActiveState::Active,
                sub: "running".into(),
            },
            Some(u) if u.linked => UnitStatus {
                load: LoadState::Loaded,
                active: ActiveState::Inactive,
                sub: "dead".into(),
            },
            _ => UnitStatus {
                load: LoadState::NotFound,
                active: ActiveState::Inactive,
                sub: "dead".into(),
            },
        }
    }
}

/// How many calls the simulated managers received, all of them together.
#[derive(Debug, Default)]
pub struct SimulatedCalls {
    pub link: AtomicU64,
    pub unlink: AtomicU64,
    pub reload: AtomicU64,
    pub start: AtomicU64,
    pub stop: AtomicU64,
    pub list: AtomicU64,
}

impl SimulatedCalls {
    pub fn total(&self) -> u64 {
        [
            &self.link,
            &self.unlink,
            &self.reload,
            &self.start,
            &self.stop,
            &self.list,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// One simulated machine's manager. Clones share the machine.
#[derive(Clone)]
pub struct SimulatedSystemd {
    state: Arc<Mutex<State>>,
    calls: Arc<SimulatedCalls>,
}

impl SimulatedSystemd {
    /// A machine with no units, counting its calls into `calls`.
    pub fn new(calls: Arc<SimulatedCalls>) -> SimulatedSystemd {
        SimulatedSystemd {
            state: Arc::default(),
            calls,
        }
    }

    /// The units active on this machine.
    pub fn active(&self) -> Vec<UnitName> {
        let state = self.state.lock().unwrap();
        let active = state.units.iter().filter(|(_, u)| u.active);
        active.map(|(n, _)| n.clone()).collect()
    }

    fn not_found(call: &str, name: &UnitName) -> SystemdError {
        SystemdError::Call {
            call: format!("{call}({name})"),
            message: format!(
                "Unit {name} not found. (org.freedesktop.systemd1.NoSuchUnit, simulated)"
            ),
        }
    }

    fn activate(&self, call: &str, name: &UnitName) -> Result<(), SystemdError> {
        self.calls.start.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap();
        match state.units.get_mut(name) {
            Some(u) if u.linked || u.active => u.active = true,
            _ => return Err(Self::not_found(call, name)),
        }
        state.signal(name);
        Ok(())
    }
}

impl UnitManager for SimulatedSystemd {
    async fn link_runtime(&self, files: &[PathBuf]) -> Result<(), SystemdError> {
        self.calls.link.fetch_add(1, Ordering::Relaxed);
        let mut names = Vec::new();
        for file in files {
            // As systemd does: the file must exist and be named as a unit.
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| UnitName::new(n).ok())
                .filter(|_| file.is_file())
                .ok_or_else(|| SystemdError::Call {
                    call: format!("LinkUnitFiles({})", file.display()),
                    message: "no such unit file (simulated)".into(),
                })?;
            names.push(name);
        }
        let mut state = self.state.lock().unwrap();
        for name in names {
            state.units.entry(name).or_default().linked = true;
        }
        Ok(())
    }

    async fn unlink_runtime(&self, names: &[UnitName]) -> Result<(), SystemdError> {
        self.calls.unlink.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap();
        for name in names {
            if let Some(u) = state.units.get_mut(name) {
                u.linked = false;
                if !u.active {
                    state.units.remove(name);
                    state.signal(name);
                }
            }
        }
        Ok(())
    }

    async fn reload(&self) -> Result<(), SystemdError> {
        self.calls.reload.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn start(&self, name: &UnitName) -> Result<(), SystemdError> {
        self.activate("StartUnit", name)
    }

    async fn restart(&self, name: &UnitName) -> Result<(), SystemdError> {
        self.activate("RestartUnit", name)
    }

    async fn stop(&self, name: &UnitName) -> Result<(), SystemdError> {
        self.calls.stop.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap();
        let Some(u) = state.units.get_mut(name) else {
            return Ok(());
        };
        u.active = false;
        if !u.linked {
            state.units.remove(name);
        }
        state.signal(name);
        Ok(())
    }

    async fn reset_failed(&self, _name: &UnitName) -> Result<(), SystemdError> {
        Ok(())
    }

    async fn list_by_names(
        &self,
        names: &[UnitName],
    ) -> Result<Vec<(UnitName, UnitStatus)>, SystemdError> {
        self.calls.list.fetch_add(1, Ordering::Relaxed);
        let state = self.state.lock().unwrap();
        Ok(names.iter().map(|n| (n.clone(), state.status(n))).collect())
    }

    async fn changes(&self) -> Result<UnitChanges, SystemdError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.state.lock().unwrap().subscribers.push(tx);
        Ok(UnitChanges::new(rx, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_unit_starts_once_linked_signals_and_goes_when_stopped_and_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.service");
        std::fs::write(&file, "[Service]\nExecStart=/bin/true\n").unwrap();
        let name = UnitName::new("a.service").unwrap();
        let calls = Arc::new(SimulatedCalls::default());
        let m = SimulatedSystemd::new(calls.clone());
        let mut changes = m.changes().await.unwrap();
        assert!(
            m.start(&name).await.is_err(),
            "started before it was linked"
        );
        let missing = dir.path().join("b.service");
        assert!(m.link_runtime(&[missing]).await.is_err());
        m.link_runtime(std::slice::from_ref(&file)).await.unwrap();
        let status = |m: SimulatedSystemd| {
            let name = name.clone();
            async move { m.list_by_names(&[name]).await.unwrap()[0].1.clone() }
        };
        assert_eq!(status(m.clone()).await.load, LoadState::Loaded);
        m.start(&name).await.unwrap();
        assert_eq!(changes.next().await, Some(name.clone()));
        assert_eq!(status(m.clone()).await.active, ActiveState::Active);
        assert_eq!(m.active(), vec![name.clone()]);
        m.unlink_runtime(std::slice::from_ref(&name)).await.unwrap();
        // Still running: unlinking does not stop it.
        assert_eq!(status(m.clone()).await.active, ActiveState::Active);
        m.stop(&name).await.unwrap();
        assert_eq!(changes.next().await, Some(name.clone()));
        assert_eq!(status(m.clone()).await.load, LoadState::NotFound);
        assert_eq!(calls.start.load(Ordering::Relaxed), 2);
    }
}
