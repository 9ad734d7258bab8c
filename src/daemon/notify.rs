//! flotted's side of systemd's service protocol (`Type=notify`, sd_notify(3)): `READY=1` once
//! the API socket is bound and the machine registered, a `STATUS=` line whenever registration,
//! leadership or the number of units running changes, and `WATCHDOG=1` keep-alives when the unit sets `WatchdogSec=`. Outside
//! such a service (no `NOTIFY_SOCKET`) every message is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::machine::MachineId;

/// What the status line tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The machine is registered under a live lease (the API answers).
    pub registered: bool,
    /// This flotted's engine is the cluster's leader.
    pub leading: bool,
    /// Units running on this machine.
    pub running: usize,
}

/// The `STATUS=` text for `status`: what `systemctl status flotted` shows.
pub fn status_line(status: Status, machine: &MachineId) -> String {
    let role = if status.leading { "leader" } else { "follower" };
    let units = match status.running {
        1 => "1 unit running".to_owned(),
        n => format!("{n} units running"),
    };
    if status.registered {
        format!("registered as {machine}, engine {role}, {units}")
    } else {
        format!("registering {machine} with etcd, engine {role}, {units}")
    }
}

/// Whether `next` makes flotted ready: the first time it is registered, and only then
/// (systemd ignores a second `READY=1`, but a re-registration after a lost lease is no
/// start-up).
pub fn becomes_ready(already_ready: bool, next: Status) -> bool {
    !already_ready && next.registered
}

/// The watchdog's keep-alive period for systemd's `WatchdogSec=` (`timeout`): half of it, as
/// sd_watchdog_enabled(3) advises, so that one late tick does not kill flotted.
pub fn watchdog_period(timeout: Duration) -> Duration {
    (timeout / 2).max(Duration::from_millis(1))
}

/// Tells systemd about flotted's state until `shutdown`: `registered` and `running` (the
/// agent's) and `leading` (the engine's) drive `READY=1` and `STATUS=`. Call it once the
/// API's listeners are bound.
pub async fn run(
    machine: MachineId,
    mut registered: watch::Receiver<bool>,
    mut leading: watch::Receiver<bool>,
    mut running: watch::Receiver<usize>,
    shutdown: CancellationToken,
) {
    let watchdog = sd_notify::watchdog_enabled().map(watchdog_period);
    if let Some(period) = watchdog {
        tracing::info!(period = ?period, "systemd watchdog enabled");
    }
    let mut ticks = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut ready = false;
    let mut last = None;
    loop {
        let status = Status {
            registered: *registered.borrow_and_update(),
            leading: *leading.borrow_and_update(),
            running: *running.borrow_and_update(),
        };
        if last != Some(status) {
            let line = status_line(status, &machine);
            let mut states = vec![NotifyState::Status(&line)];
            if becomes_ready(ready, status) {
                ready = true;
                states.push(NotifyState::Ready);
                tracing::info!("ready: {line}");
            }
            send(&states);
            last = Some(status);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = registered.changed() => if changed.is_err() { break },
            changed = leading.changed() => if changed.is_err() { break },
            changed = running.changed() => if changed.is_err() { break },
            _ = ticks.tick(), if watchdog.is_some() => send(&[NotifyState::Watchdog]),
        }
    }
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_status_line_says_registration_role_and_units_running() {
        let id = MachineId::new(ID).unwrap();
        for (registered, leading, running, line) in [
            (
                false,
                false,
                0,
                "registering ID with etcd, engine follower, 0 units running",
            ),
            (
                true,
                false,
                1,
                "registered as ID, engine follower, 1 unit running",
            ),
            (
                true,
                true,
                12,
                "registered as ID, engine leader, 12 units running",
            ),
            (
                false,
                true,
                3,
                "registering ID with etcd, engine leader, 3 units running",
            ),
        ] {
            let status = Status {
                registered,
                leading,
                running,
            };
            assert_eq!(status_line(status, &id), line.replace("ID", ID));
        }
    }

    #[test]
    fn flotted_becomes_ready_once_at_its_first_registration() {
        let registered = Status {
            registered: true,
            leading: false,
            running: 2,
        };
        let unregistered = Status {
            registered: false,
            leading: true,
            running: 0,
        };
        for (already_ready, next, ready) in [
            (false, unregistered, false),
            (false, registered, true),
            (true, registered, false),
            (true, unregistered, false),
        ] {
            assert_eq!(
                becomes_ready(already_ready, next),
                ready,
                "{already_ready} {next:?}"
            );
        }
    }

    #[test]
    fn the_watchdog_ticks_at_half_its_timeout() {
        assert_eq!(
            watchdog_period(Duration::from_secs(20)),
            Duration::from_secs(10)
        );
        assert_eq!(
            watchdog_period(Duration::from_micros(1)),
            Duration::from_millis(1)
        );
    }
}
