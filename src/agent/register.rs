//! Registration: the machine's record under a lease that a restarted flotted finds again (its ID
//! is kept beside the units directory), so that a restart within the TTL changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AgentConfig, AgentError};
use crate::backoff::Backoff;
use crate::registry::{
    KeepAlive, KeepAliveOptions, Lease, LossPolicy, MachineRecord, Registry, RegistryError,
};

/// Finds the lease of a previous run (still alive if it restarted within the TTL) or grants a
/// new one, remembers it on disk, registers the machine under it and keeps it alive. Retries
/// until it succeeds; `None` when shut down first.
pub(super) async fn register(
    registry: &Registry,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> Result<Option<(Lease, KeepAlive)>, AgentError> {
    let lease_file = lease_file(config);
    let previous = std::fs::read_to_string(&lease_file)
        .ok()
        .and_then(|s| i64::from_str_radix(s.trim(), 16).ok());
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = async {
            let lease = match previous {
                Some(id) => registry.existing_lease(id, config.ttl).await?,
                None => None,
            };
            let lease = match lease {
                Some(lease) => {
                    tracing::info!(
                        lease = format_args!("{:x}", lease.id()),
                        "kept the lease of the previous run"
                    );
                    lease
                }
                None => registry.grant_lease(config.ttl).await?,
            };
            // Only etcd's word ends the lease; the fence judges silences (`fence`).
            let keep = registry.keep_alive_with(
                &lease,
                KeepAliveOptions {
                    policy: LossPolicy::WhenGone,
                    interval: super::renew_interval(lease.ttl()),
                    contact: config.contact.clone(),
                },
            );
            registry
                .register_machine(&machine_record(config), &lease)
                .await?;
            Ok::<_, RegistryError>((lease, keep))
        };
        match attempt.await {
            Ok((lease, keep)) => {
                std::fs::write(&lease_file, format!("{:x}\n", lease.id())).map_err(|source| {
                    AgentError::LeaseFile {
                        path: lease_file.clone(),
                        source,
                    }
                })?;
                tracing::info!(machine = %config.machine_id, "machine registered");
                return Ok(Some((lease, keep)));
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cannot register the machine");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Next to the units directory, so that it lives exactly as long as the unit files.
fn lease_file(config: &AgentConfig) -> PathBuf {
    let mut name = config
        .units_directory
        .file_name()
        .unwrap_or_default()
        .to_owned();
    name.push(".lease");
    config.units_directory.with_file_name(name)
}

fn machine_record(config: &AgentConfig) -> MachineRecord {
    MachineRecord {
        id: config.machine_id.clone(),
        ip: config.public_ip.clone(),
        metadata: config.metadata.clone(),
        version: config.version.clone(),
        api: config.api.clone(),
        hostname: config.hostname.clone(),
        capacity: Some(config.capacity),
    }
}
