//! etcd leases: granting, finding one again after a restart, and keeping one alive with a
//! clear signal the moment it must be considered lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::kv::{LEASE_REQUEST_TIMEOUT, timed_within};
use super::{Registry, RegistryError};

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    id: i64,
    ttl: Duration,
}

impl Lease {
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// When a lease kept alive counts as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossPolicy {
    /// At the first renewal that fails: the engine stops acting before anything else happens.
    FirstFailure,
    /// Once no renewal succeeded for a whole TTL: by then etcd has expired the lease, so the
    /// agent's machine and unit states are gone and the engine may have moved its units.
    AfterTtl,
    /// Only once etcd answers that the lease is gone: whoever keeps it decides by other means
    /// (the agent's fence, from `Contact`) what a silence means.
    WhenGone,
}

/// What a keep-alive knows of its contact with etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// When the last renewal that etcd answered was sent. etcd extended the lease when it
    /// received it, after this instant, so the lease lives at least until `renewed` + TTL
    /// (measured on this machine's clock; see the agent's fence for the margin).
    pub renewed: Instant,
    /// The latest attempt failed: etcd is unreachable from here, or has no quorum.
    pub failing: bool,
}

impl Contact {
    pub fn now() -> Contact {
        Contact {
            renewed: Instant::now(),
            failing: false,
        }
    }

    /// Records an answered renewal sent at `sent` (never moving `renewed` backwards).
    pub fn renewed_at(&mut self, sent: Instant) {
        self.renewed = self.renewed.max(sent);
        self.failing = false;
    }
}

/// How a lease is kept alive.
#[derive(Debug, Clone)]
pub struct KeepAliveOptions {
    pub policy: LossPolicy,
    /// How often a renewal is sent (also how long an answer is waited for).
    pub interval: Duration,
    /// Where each renewal's outcome is reported.
    pub contact: Arc<watch::Sender<Contact>>,
}

/// A task renewing a lease every third of its TTL. Dropping it stops the renewals.
pub struct KeepAlive {
    lost: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    /// Resolves when the lease is lost (see `LossPolicy`).
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    /// The token cancelled when the lease is lost, to await apart from this value.
    pub fn lost_token(&self) -> CancellationToken {
        self.lost.clone()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registry {
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease, RegistryError> {
        let seconds = ttl.as_secs().max(1) as i64;
        let resp = timed_within(
            LEASE_REQUEST_TIMEOUT,
            "lease_grant",
            "granting a lease".into(),
            self.client().lease_grant(seconds, None),
        )
        .await?
        .map_err(|e| RegistryError::etcd("granting a lease", e))?;
        Ok(Lease {
            id: resp.id(),
            ttl: Duration::from_secs(resp.ttl().max(1) as u64),
        })
    }

    /// The lease with this ID if it still exists (an agent restarted within its TTL).
    pub async fn existing_lease(
        &self,
        id: i64,
        ttl: Duration,
    ) -> Result<Option<Lease>, RegistryError> {
        let resp = timed_within(
            LEASE_REQUEST_TIMEOUT,
            "lease_time_to_live",
            "reading a lease".into(),
            self.client().lease_time_to_live(id, None),
        )
        .await?
        .map_err(|e| RegistryError::etcd(format!("reading lease {id:x}"), e))?;
        Ok((resp.ttl() > 0).then_some(Lease { id, ttl }))
    }

    /// Ends a lease now: every key under it is deleted.
    pub async fn revoke_lease(&self, lease: &Lease) -> Result<(), RegistryError> {
        match timed_within(
            LEASE_REQUEST_TIMEOUT,
            "lease_revoke",
            "revoking a lease".into(),
            self.client().lease_revoke(lease.id),
        )
        .await?
        {
            Ok(_) => Ok(()),
            // Already expired: the keys are gone either way. etcd-client does not re-export
            // gRPC status codes, so etcd's message ("requested lease not found") identifies it.
            Err(e) if e.to_string().contains("lease not found") => Ok(()),
            Err(e) => Err(RegistryError::etcd(
                format!("revoking lease {:x}", lease.id),
                e,
            )),
        }
    }

    /// Keeps `lease` alive, renewing every third of its TTL.
    pub fn keep_alive(&self, lease: &Lease, policy: LossPolicy) -> KeepAlive {
        let (contact, _) = watch::channel(Contact::now());
        self.keep_alive_with(
            lease,
            KeepAliveOptions {
                policy,
                interval: (lease.ttl / 3).max(Duration::from_millis(300)),
                contact: Arc::new(contact),
            },
        )
    }

    pub fn keep_alive_with(&self, lease: &Lease, options: KeepAliveOptions) -> KeepAlive {
        let lost = CancellationToken::new();
        options
            .contact
            .send_modify(|c| c.renewed_at(Instant::now()));
        let task = tokio::spawn(renew(self.client(), *lease, options, lost.clone()));
        KeepAlive { lost, task }
    }

    /// One renewal of `lease`, answered within `deadline`: the instant it was sent, or why
    /// not (`LeaseGone` when etcd no longer has it).
    pub async fn renew_once(
        &self,
        lease: &Lease,
        deadline: Duration,
    ) -> Result<Instant, RegistryError> {
        let sent = Instant::now();
        let mut client = self.client();
        match tokio::time::timeout(deadline, client.lease_keep_alive(lease.id)).await {
            Err(_) => Err(RegistryError::Timeout(deadline, "renewing a lease".into())),
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) if e.contains("not found") => {
                Err(RegistryError::LeaseGone(lease.id))
            }
            Ok(Err(e)) => Err(RegistryError::etcd("renewing a lease", e)),
            Ok(Ok(_)) => Ok(sent),
        }
    }
}

async fn renew(
    client: etcd_client::Client,
    lease: Lease,
    options: KeepAliveOptions,
    lost: CancellationToken,
) {
    let KeepAliveOptions {
        policy,
        interval,
        contact,
    } = options;
    loop {
        let outcome = renew_on_one_stream(client.clone(), lease, interval, &contact).await;
        match (outcome, policy) {
            (Renewals::LeaseGone, _) => {
                tracing::warn!(lease = format_args!("{:x}", lease.id), "lease expired");
                break;
            }
            (Renewals::Failed(e), LossPolicy::FirstFailure) => {
                tracing::warn!(lease = format_args!("{:x}", lease.id), error = %e, "lease renewal failed");
                break;
            }
            (Renewals::Failed(e), policy) => {
                contact.send_modify(|c| c.failing = true);
                let renewed = contact.borrow().renewed;
                if policy == LossPolicy::AfterTtl && renewed.elapsed() >= lease.ttl {
                    tracing::warn!(lease = format_args!("{:x}", lease.id), error = %e, "no lease renewal for a whole TTL");
                    break;
                }
                tracing::info!(lease = format_args!("{:x}", lease.id), error = %e, "lease renewal failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    lost.cancel();
}

enum Renewals {
    LeaseGone,
    Failed(String),
}

/// Renews over one keep-alive stream until it fails.
async fn renew_on_one_stream(
    mut client: etcd_client::Client,
    lease: Lease,
    interval: Duration,
    contact: &watch::Sender<Contact>,
) -> Renewals {
    let sent = Instant::now();
    let opened = tokio::time::timeout(interval, client.lease_keep_alive(lease.id)).await;
    let (mut keeper, mut stream) = match opened {
        Err(_) => return Renewals::Failed("opening the keep-alive stream timed out".into()),
        Ok(Err(etcd_client::Error::LeaseKeepAliveError(e))) if e.contains("not found") => {
            return Renewals::LeaseGone;
        }
        Ok(Err(e)) => return Renewals::Failed(e.to_string()),
        Ok(Ok(pair)) => pair,
    };
    // Opening the stream renewed the lease once.
    contact.send_modify(|c| c.renewed_at(sent));
    loop {
        tokio::time::sleep(interval).await;
        let sent = Instant::now();
        if let Err(e) = keeper.keep_alive().await {
            return Renewals::Failed(e.to_string());
        }
        match tokio::time::timeout(interval, stream.message()).await {
            Err(_) => return Renewals::Failed("no keep-alive answer in time".into()),
            Ok(Err(e)) => return Renewals::Failed(e.to_string()),
            Ok(Ok(None)) => return Renewals::Failed("keep-alive stream closed".into()),
            Ok(Ok(Some(resp))) if resp.ttl() <= 0 => return Renewals::LeaseGone,
            Ok(Ok(Some(_))) => contact.send_modify(|c| c.renewed_at(sent)),
        }
    }
}
