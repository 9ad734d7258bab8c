//! The systemd adapter: the only code that speaks D-Bus. Links, loads, starts, stops and unloads
//! units through the manager's `org.freedesktop.systemd1` interface, reads their states with
//! `ListUnitsByNames`, and turns the manager's signals into a stream of changed unit names.
//!
//! The agent drives a manager through the `UnitManager` trait, implemented here by `Systemd`
//! (D-Bus) and, for the scale benchmark only, by `isolated::SimulatedSystemd`.

mod label;
mod properties;
mod status;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use std::collections::BTreeSet;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus_systemd::systemd1::ManagerProxy;
use zbus_systemd::zbus;

use crate::unit::UnitName;
pub use properties::{ServiceProperties, Timestamps, UnitProperties};
pub use status::{ActiveState, LoadState, UnitStatus};

/// Which systemd manager to drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The system manager on the system bus (production).
    System,
    /// The user manager of the calling user on its session bus (`$XDG_RUNTIME_DIR/bus`).
    User,
    /// Any D-Bus address, e.g. `unix:path=/tmp/hosts/a/bus` for an isolated test host.
    Address(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "systemd bus `{0}` is not `system`, `user` or a D-Bus address such as `unix:path=/run/bus`"
)]
pub struct BusError(String);

impl FromStr for Bus {
    type Err = BusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Bus::System),
            "user" => Ok(Bus::User),
            a if a.contains(':')
                && a.split_once(':')
                    .is_some_and(|(t, rest)| !t.is_empty() && !rest.is_empty()) =>
            {
                Ok(Bus::Address(a.to_owned()))
            }
            _ => Err(BusError(s.to_owned())),
        }
    }
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bus::System => f.write_str("system"),
            Bus::User => f.write_str("user"),
            Bus::Address(a) => f.write_str(a),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to systemd on bus `{bus}`: {source}")]
    Connect { bus: Bus, source: zbus::Error },
    #[error("systemd {call} failed: {message}")]
    Call { call: String, message: String },
}

impl SystemdError {
    fn call(call: impl Into<String>, err: zbus::Error) -> Self {
        SystemdError::Call {
            call: call.into(),
            message: error_message(&err),
        }
    }
}

/// systemd's own message for a failed method call ("Unit foo.service not found."), or zbus's
/// description of a transport failure.
fn error_message(err: &zbus::Error) -> String {
    match err {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{msg} ({})", name.as_str()),
        zbus::Error::MethodError(name, None, _) => name.as_str().to_owned(),
        other => other.to_string(),
    }
}

fn is_no_such_unit(err: &zbus::Error) -> bool {
    matches!(err, zbus::Error::MethodError(name, _, _)
        if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit")
}

/// Longest wait for any manager call; systemd answers in milliseconds unless it is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent needs of a unit manager: the calls of `Systemd` it makes, so that the scale
/// benchmark can run a thousand real agents against simulated managers in one process. Every
/// method means what the `Systemd` method of the same name documents.
pub trait UnitManager: Clone + Send + Sync + 'static {
    fn link_runtime(
        &self,
        files: &[PathBuf],
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;
    fn unlink_runtime(
        &self,
        names: &[UnitName],
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;
    fn reload(&self) -> impl Future<Output = Result<(), SystemdError>> + Send;
    fn start(&self, name: &UnitName) -> impl Future<Output = Result<(), SystemdError>> + Send;
    fn restart(&self, name: &UnitName) -> impl Future<Output = Result<(), SystemdError>> + Send;
    fn stop(&self, name: &UnitName) -> impl Future<Output = Result<(), SystemdError>> + Send;
    fn reset_failed(
        &self,
        name: &UnitName,
    ) -> impl Future<Output = Result<(), SystemdError>> + Send;
    fn list_by_names(
        &self,
        names: &[UnitName],
    ) -> impl Future<Output = Result<Vec<(UnitName, UnitStatus)>, SystemdError>> + Send;
    fn changes(&self) -> impl Future<Output = Result<UnitChanges, SystemdError>> + Send;
}

impl UnitManager for Systemd {
    async fn link_runtime(&self, files: &[PathBuf]) -> Result<(), SystemdError> {
        Systemd::link_runtime(self, files).await
    }
    async fn unlink_runtime(&self, names: &[UnitName]) -> Result<(), SystemdError> {
        Systemd::unlink_runtime(self, names).await
    }
    async fn reload(&self) -> Result<(), SystemdError> {
        Systemd::reload(self).await
    }
    async fn start(&self, name: &UnitName) -> Result<(), SystemdError> {
        Systemd::start(self, name).await
    }
    async fn restart(&self, name: &UnitName) -> Result<(), SystemdError> {
        Systemd::restart(self, name).await
    }
    async fn stop(&self, name: &UnitName) -> Result<(), SystemdError> {
        Systemd::stop(self, name).await
    }
    async fn reset_failed(&self, name: &UnitName) -> Result<(), SystemdError> {
        Systemd::reset_failed(self, name).await
    }
    async fn list_by_names(
        &self,
        names: &[UnitName],
    ) -> Result<Vec<(UnitName, UnitStatus)>, SystemdError> {
        Systemd::list_by_names(self, names).await
    }
    async fn changes(&self) -> Result<UnitChanges, SystemdError> {
        Systemd::changes(self).await
    }
}

/// A connection to one systemd manager.
#[derive(Clone)]
pub struct Systemd {
    connection: zbus::Connection,
    manager: ManagerProxy<'static>,
}

impl Systemd {
    pub async fn connect(bus: &Bus) -> Result<Systemd, SystemdError> {
        let connect = async {
            let builder = match bus {
                Bus::System => zbus::connection::Builder::system(),
                Bus::User => zbus::connection::Builder::session(),
                Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
            };
            // A manager that stops answering must not hang the agent forever.
            let connection = builder.method_timeout(CALL_TIMEOUT).build().await?;
            let manager = ManagerProxy::new(&connection).await?;
            Ok::<_, zbus::Error>(Systemd {
                connection,
                manager,
            })
        };
        connect.await.map_err(|source| SystemdError::Connect {
            bus: bus.clone(),
            source,
        })
    }

    /// The manager's version string; also a cheap liveness check.
    pub async fn version(&self) -> Result<String, SystemdError> {
        let _timer = crate::metrics::systemd_call("Version");
        self.manager
            .version()
            .await
            .map_err(|e| SystemdError::call("Version", e))
    }

    /// Links unit files into the runtime unit directory (gone at reboot, like fleet's units).
    /// The manager must be reloaded before it sees them.
    pub async fn link_runtime(&self, files: &[PathBuf]) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("LinkUnitFiles");
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        self.manager
            .link_unit_files(files.clone(), true, true)
            .await
            .map(drop)
            .map_err(|e| SystemdError::call(format!("LinkUnitFiles({})", files.join(", ")), e))
    }

    /// Removes runtime links; a unit that has none is fine.
    pub async fn unlink_runtime(&self, names: &[UnitName]) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("DisableUnitFiles");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        match self.manager.disable_unit_files(names.clone(), true).await {
            Ok(_) => Ok(()),
            Err(e) if is_no_such_unit(&e) => Ok(()),
            Err(e) => Err(SystemdError::call(
                format!("DisableUnitFiles({})", names.join(", ")),
                e,
            )),
        }
    }

    /// `daemon-reload`: one per batch of file changes.
    pub async fn reload(&self) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("Reload");
        self.manager
            .reload()
            .await
            .map_err(|e| SystemdError::call("Reload", e))
    }

    /// Queues a start job; the outcome arrives later as state changes.
    pub async fn start(&self, name: &UnitName) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("StartUnit");
        self.manager
            .start_unit(name.to_string(), "replace".into())
            .await
            .map(drop)
            .map_err(|e| SystemdError::call(format!("StartUnit({name})"), e))
    }

    /// Queues a restart job (stop then start: a new main process).
    pub async fn restart(&self, name: &UnitName) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("RestartUnit");
        self.manager
            .restart_unit(name.to_string(), "replace".into())
            .await
            .map(drop)
            .map_err(|e| SystemdError::call(format!("RestartUnit({name})"), e))
    }

    /// Queues a stop job; a unit systemd no longer knows is already stopped.
    pub async fn stop(&self, name: &UnitName) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("StopUnit");
        match self
            .manager
            .stop_unit(name.to_string(), "replace".into())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_no_such_unit(&e) => Ok(()),
            Err(e) => Err(SystemdError::call(format!("StopUnit({name})"), e)),
        }
    }

    /// Forgets a failed state so that an unloaded unit does not linger as `failed`.
    pub async fn reset_failed(&self, name: &UnitName) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("ResetFailedUnit");
        match self.manager.reset_failed_unit(name.to_string()).await {
            Ok(()) => Ok(()),
            Err(e) if is_no_such_unit(&e) => Ok(()),
            Err(e) => Err(SystemdError::call(format!("ResetFailedUnit({name})"), e)),
        }
    }

    /// The states of the named units in one call. Units systemd does not know come back as
    /// `not-found`/`inactive`/`dead`, as systemd itself reports them.
    pub async fn list_by_names(
        &self,
        names: &[UnitName],
    ) -> Result<Vec<(UnitName, UnitStatus)>, SystemdError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let _timer = crate::metrics::systemd_call("ListUnitsByNames");
        let rows = self
            .manager
            .list_units_by_names(names.iter().map(|n| n.to_string()).collect())
            .await
            .map_err(|e| SystemdError::call("ListUnitsByNames", e))?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(name, _desc, load, active, sub, _following, _path, _job, job_type, _)| {
                    let name = UnitName::new(&name).ok()?;
                    let status = UnitStatus {
                        load: LoadState::from(load),
                        active: ActiveState::from(active).with_job(&job_type),
                        sub,
                    };
                    Some((name, status))
                },
            )
            .collect())
    }

    /// The main PID of a service (0 when it has none).
    pub async fn main_pid(&self, name: &UnitName) -> Result<u32, SystemdError> {
        let _timer = crate::metrics::systemd_call("MainPID");
        let call = |e| SystemdError::call(format!("MainPID({name})"), e);
        let path = self
            .manager
            .load_unit(name.to_string())
            .await
            .map_err(call)?;
        let service = zbus_systemd::systemd1::ServiceProxy::builder(&self.connection)
            .path(path)
            .build()
            .await
            .map_err(call)?;
        service.main_pid().await.map_err(call)
    }

    /// Sets variables in the manager's environment, inherited by units started afterwards.
    pub async fn set_environment(&self, assignments: &[String]) -> Result<(), SystemdError> {
        let _timer = crate::metrics::systemd_call("SetEnvironment");
        self.manager
            .set_environment(assignments.to_vec())
            .await
            .map_err(|e| SystemdError::call("SetEnvironment", e))
    }

    /// Subscribes to the manager's signals: the result yields the name of every unit whose
    /// state may have changed (property changes, finished jobs, units going away). Names flotte
    /// cannot represent are skipped.
    pub async fn changes(&self) -> Result<UnitChanges, SystemdError> {
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace("/org/freedesktop/systemd1/unit")
            .build()
            .map_err(|e| SystemdError::call("AddMatch(PropertiesChanged)", e))?;
        let properties = zbus::MessageStream::for_match_rule(rule, &self.connection, None)
            .await
            .map_err(|e| SystemdError::call("AddMatch(PropertiesChanged)", e))?;
        let jobs = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|e| SystemdError::call("AddMatch(JobRemoved)", e))?;
        let removed = self
            .manager
            .receive_unit_removed()
            .await
            .map_err(|e| SystemdError::call("AddMatch(UnitRemoved)", e))?;
        // Only after the match rules exist, so no signal between the two is lost.
        self.manager
            .subscribe()
            .await
            .map_err(|e| SystemdError::call("Subscribe", e))?;

        let properties = properties.filter_map(|msg| async move {
            let msg = msg.ok()?;
            label::unit_name_from_path(msg.header().path()?.as_str())
        });
        let jobs =
            jobs.filter_map(|signal| async move { UnitName::new(&signal.args().ok()?.unit).ok() });
        let removed =
            removed.filter_map(|signal| async move { UnitName::new(&signal.args().ok()?.id).ok() });
        let mut merged = Box::pin(futures_util::stream::select(
            properties,
            futures_util::stream::select(jobs, removed),
        ));

        // zbus stops reading the socket while a signal queue is full, which would also hold
        // back the replies to our own calls; so a task of its own drains the signals at once,
        // whatever the consumer is doing.
        let (tx, rx) = mpsc::unbounded_channel();
        let forward = tokio::spawn(async move {
            while let Some(name) = merged.next().await {
                if tx.send(name).is_err() {
                    break;
                }
            }
        });
        Ok(UnitChanges::new(rx, Some(forward)))
    }
}

/// Names of units whose state may have changed, in signal order (see `Systemd::changes`).
pub struct UnitChanges {
    rx: mpsc::UnboundedReceiver<UnitName>,
    /// The task feeding `rx`, stopped with it.
    forward: Option<tokio::task::JoinHandle<()>>,
    /// The batch `next_batch` is gathering, and when its window ends.
    gathering: BTreeSet<UnitName>,
    window_end: Option<tokio::time::Instant>,
}

impl UnitChanges {
    /// Changes as sent on `rx` (by `forward`, when a task of its own feeds it).
    pub fn new(
        rx: mpsc::UnboundedReceiver<UnitName>,
        forward: Option<tokio::task::JoinHandle<()>>,
    ) -> UnitChanges {
        UnitChanges {
            rx,
            forward,
            gathering: BTreeSet::new(),
            window_end: None,
        }
    }

    /// The next changed unit; `None` once the connection to systemd is gone.
    pub async fn next(&mut self) -> Option<UnitName> {
        self.rx.recv().await
    }

    /// Waits for at least one change, then gathers changes for `window` more: a burst of
    /// signals (hundreds of units starting) becomes one batch, read back and published once,
    /// instead of a round of calls per signal. The window bounds the delay added to one
    /// unit's change. Cancel-safe (the agent waits on it in a `select!`): names already
    /// taken from the channel stay in the batch being gathered, and the next call goes on
    /// with it.
    pub async fn next_batch(&mut self, window: Duration) -> Option<BTreeSet<UnitName>> {
        if self.gathering.is_empty() {
            let first = self.rx.recv().await?;
            self.gathering.insert(first);
            self.window_end = Some(tokio::time::Instant::now() + window);
        }
        let end = *self
            .window_end
            .get_or_insert_with(|| tokio::time::Instant::now() + window);
        loop {
            while let Ok(name) = self.rx.try_recv() {
                self.gathering.insert(name);
            }
            match tokio::time::timeout_at(end, self.rx.recv()).await {
                Ok(Some(name)) => {
                    self.gathering.insert(name);
                }
                // The window is over, or the connection is gone (the next call says so).
                Ok(None) | Err(_) => break,
            }
        }
        self.window_end = None;
        Some(std::mem::take(&mut self.gathering))
    }
}

impl Drop for UnitChanges {
    fn drop(&mut self) {
        if let Some(forward) = &self.forward {
            forward.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes_from(rx: mpsc::UnboundedReceiver<UnitName>) -> UnitChanges {
        UnitChanges::new(rx, None)
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_cancelled_while_gathering_loses_no_change() {
        let name = |n: &str| UnitName::new(n).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut changes = changes_from(rx);
        let window = Duration::from_millis(10);
        tx.send(name("a.service")).unwrap();
        // Cancelled inside the window, after it took `a` from the channel.
        let cancelled =
            tokio::time::timeout(Duration::from_millis(1), changes.next_batch(window)).await;
        assert!(cancelled.is_err(), "the batch was still gathering");
        tx.send(name("b.service")).unwrap();
        let batch = changes.next_batch(window).await.unwrap();
        assert_eq!(
            batch,
            BTreeSet::from([name("a.service"), name("b.service")])
        );
        // The next batch starts afresh, with a window of its own.
        tx.send(name("c.service")).unwrap();
        let started = tokio::time::Instant::now();
        let batch = changes.next_batch(window).await.unwrap();
        assert_eq!(batch, BTreeSet::from([name("c.service")]));
        assert_eq!(started.elapsed(), window);
        drop(tx);
        assert_eq!(changes.next_batch(window).await, None);
    }

    #[test]
    fn bus_settings_parse() {
        assert_eq!("system".parse::<Bus>().unwrap(), Bus::System);
        assert_eq!("user".parse::<Bus>().unwrap(), Bus::User);
        assert_eq!(
            "unix:path=/tmp/h/bus".parse::<Bus>().unwrap(),
            Bus::Address("unix:path=/tmp/h/bus".into())
        );
        for bad in ["", "sys", ":path", "unix:"] {
            let err = bad.parse::<Bus>().unwrap_err();
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
    }
}
