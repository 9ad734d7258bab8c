//! Why one unit's action failed, and how long to wait before trying it again: the retry policy is
//! a pure function of the error, as kube-runtime's error policy is.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::systemd::SystemdError;
use crate::unit::UnitHash;

/// The failure of one action on one unit. Its message is what the unit's state reports.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// systemd refused the call or did not answer (a bad unit, a stuck manager).
    #[error(transparent)]
    Systemd(#[from] SystemdError),
    /// The units directory could not be written or cleaned.
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The schedule names a content the registry does not have (yet, or any more).
    #[error("content {0} is missing from the registry")]
    MissingContent(UnitHash),
    /// The content could not be read from etcd (the cause as text: one failed read is charged
    /// to every unit of that content).
    #[error("reading content {hash}: {cause}")]
    ContentUnreadable { hash: UnitHash, cause: String },
    /// A daemon reload failed, so no start of this pass could use the new files.
    #[error("daemon reload failed: {0}")]
    Reload(String),
}

/// The retry schedule for a unit whose action failed with `error`: etcd and the registry's
/// contents are usually back within moments; systemd refusing a unit stays refused until its
/// file changes, so it is retried slowly; a full or read-only disk needs an operator.
pub fn retry_policy(error: &ActionError) -> Backoff {
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    match error {
        ActionError::ContentUnreadable { .. } => Backoff::new(ms(200), s(10)),
        ActionError::MissingContent(_) => Backoff::new(ms(200), s(30)),
        ActionError::Systemd(_) | ActionError::Reload(_) => Backoff::new(ms(500), s(60)),
        ActionError::File { .. } => Backoff::new(s(1), s(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryError;

    /// The undisturbed delays of a backoff: its first, then its cap.
    fn bounds(mut backoff: Backoff) -> (Duration, Duration) {
        let first = backoff.next_delay();
        let last = (0..20).map(|_| backoff.next_delay()).last().unwrap();
        (first, last)
    }

    #[test]
    fn each_kind_of_failure_gets_its_own_retry_schedule() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let cases: Vec<(ActionError, Duration, Duration)> = vec![
            (
                ActionError::ContentUnreadable {
                    hash: "b".repeat(40).parse().unwrap(),
                    cause: RegistryError::Timeout(s(5), "get content".into()).to_string(),
                },
                ms(200),
                s(10),
            ),
            (
                ActionError::MissingContent("a".repeat(40).parse().unwrap()),
                ms(200),
                s(30),
            ),
            (
                ActionError::Systemd(SystemdError::Call {
                    call: "StartUnit(a.service)".into(),
                    message: "Unit a.service has a bad unit file setting.".into(),
                }),
                ms(500),
                s(60),
            ),
            (ActionError::Reload("timeout".into()), ms(500), s(60)),
            (
                ActionError::File {
                    what: "writing",
                    path: "/run/flotte/units/a.service".into(),
                    source: std::io::Error::other("no space left on device"),
                },
                s(1),
                s(60),
            ),
        ];
        for (error, first, cap) in cases {
            let (got_first, got_cap) = bounds(retry_policy(&error));
            // Jitter takes up to 20 % off each delay.
            assert!(
                got_first <= first && got_first >= first.mul_f64(0.8),
                "{error}: first retry after {got_first:?}, expected about {first:?}"
            );
            assert!(
                got_cap <= cap && got_cap >= cap.mul_f64(0.8),
                "{error}: retries capped at {got_cap:?}, expected about {cap:?}"
            );
        }
    }
}
