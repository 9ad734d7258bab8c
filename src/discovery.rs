//! Service discovery for sidekick units: `announce` keeps a key alive under a lease of its own
//! while the sidekick runs (revoked at once when it stops, expired after the TTL when its
//! process or host dies) and announces again after an etcd outage; `services` lists what is
//! announced, with what is left of each TTL and who announced it.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::registry::{
    AnnouncerRecord, InstanceRecord, LossPolicy, Registry, RegistryError, ServiceKey,
};
use crate::unit::UnitName;

/// What to announce.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub key: ServiceKey,
    pub value: String,
    pub ttl: Duration,
    pub announcer: AnnouncerRecord,
}

/// Announces until `shutdown`, then revokes the lease so the key disappears at once. The first
/// announcement must succeed (an error then is returned, so the caller exits non-zero and
/// systemd's `Restart=` can act); `announced` is called after it and after every later one.
/// When the lease is lost (etcd unreachable for a whole TTL, or etcd lost it) the key is
/// announced again, with backoff, as soon as etcd answers.
pub async fn announce(
    registry: &Registry,
    what: &Announcement,
    announced: impl FnMut(),
    shutdown: CancellationToken,
) -> Result<(), RegistryError> {
    keep_announced(
        registry,
        what.key.as_str(),
        || put(registry, what),
        announced,
        shutdown,
    )
    .await
}

/// Like `announce`, for a declared service's instance (`flottectl announce --service`): the
/// instance is written under a lease of its own with the TTL, in the key shape the agent
/// uses (`Registry::write_instances`), so the catalog and DNS list it like the agent's while
/// it is announced; revoked at `shutdown`, expired after the TTL if the announcer dies.
pub async fn announce_instance(
    registry: &Registry,
    instance: &InstanceRecord,
    ttl: Duration,
    announced: impl FnMut(),
    shutdown: CancellationToken,
) -> Result<(), RegistryError> {
    let put = || async {
        let lease = registry.grant_lease(ttl).await?;
        registry
            .write_instances(&[(instance.id(), Some(instance.clone()))], &lease)
            .await?;
        Ok(lease)
    };
    keep_announced(
        registry,
        instance.service.as_str(),
        put,
        announced,
        shutdown,
    )
    .await
}

/// The loop of `announce` and `announce_instance`: `put` writes under a new lease, kept alive
/// until `shutdown` (then revoked), written again whenever the lease is lost.
async fn keep_announced<F, Fut>(
    registry: &Registry,
    what: &str,
    mut put: F,
    mut announced: impl FnMut(),
    shutdown: CancellationToken,
) -> Result<(), RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<crate::registry::Lease, RegistryError>>,
{
    let mut lease = put().await?;
    announced();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let keep = registry.keep_alive(&lease, LossPolicy::AfterTtl);
        tokio::select! {
            _ = shutdown.cancelled() => {
                drop(keep);
                // Best effort: if etcd cannot be reached now, the key expires with its TTL.
                let _ = tokio::time::timeout(Duration::from_secs(2), registry.revoke_lease(&lease)).await;
                return Ok(());
            }
            _ = keep.lost() => {
                tracing::warn!(what, "lease lost; announcing again");
            }
        }
        lease = loop {
            match put().await {
                Ok(lease) => {
                    backoff.reset();
                    break lease;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot announce");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        };
        announced();
    }
}

async fn put(
    registry: &Registry,
    what: &Announcement,
) -> Result<crate::registry::Lease, RegistryError> {
    let lease = registry.grant_lease(what.ttl).await?;
    registry
        .announce(&what.key, &what.value, &what.announcer, &lease)
        .await?;
    Ok(lease)
}

/// The unit a process runs in, from its `/proc/self/cgroup` text: the innermost cgroup named
/// like a service (`.../app.slice/apache-sidekick.service`).
pub fn unit_from_cgroup(cgroup: &str) -> Option<UnitName> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.rsplit('/'))
        .find_map(|segment| {
            UnitName::new(segment)
                .ok()
                .filter(|u| u.as_str().ends_with(".service"))
        })
}

/// One announced key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub key: String,
    pub value: String,
    /// What is left of its lease; `None` for a key with no lease.
    pub ttl: Option<Duration>,
    pub announcer: Option<AnnouncerRecord>,
}

/// Everything announced under `prefix`.
pub async fn services(registry: &Registry, prefix: &str) -> Result<Vec<Service>, RegistryError> {
    let entries = registry.services(prefix).await?;
    let mut leases: HashMap<i64, (Option<Duration>, Option<AnnouncerRecord>)> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let (ttl, announcer) = if entry.lease == 0 {
            (None, None)
        } else if let Some(known) = leases.get(&entry.lease) {
            known.clone()
        } else {
            let ttl = registry.lease_remaining(entry.lease).await?;
            let announcer = registry.announcer(entry.lease).await?;
            leases.insert(entry.lease, (ttl, announcer.clone()));
            (ttl, announcer)
        };
        out.push(Service {
            key: entry.key,
            value: entry.value,
            ttl,
            announcer,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_read_from_the_innermost_service_cgroup() {
        let cases = [
            (
                "0::/app.slice/apache-sidekick.service\n",
                Some("apache-sidekick.service"),
            ),
            (
                "1:name=systemd:/user.slice/user-0.slice/user@0.service/app.slice/web@3.service\n0::/user.slice/user-0.slice/user@0.service/app.slice/web@3.service\n",
                Some("web@3.service"),
            ),
            (
                "0::/system.slice/sidekick.service/extra\n",
                Some("sidekick.service"),
            ),
            ("0::/user.slice/session-1.scope\n", None),
            ("0::/\n", None),
            ("", None),
        ];
        for (text, unit) in cases {
            assert_eq!(
                unit_from_cgroup(text).as_ref().map(UnitName::as_str),
                unit,
                "{text:?}"
            );
        }
    }
}
