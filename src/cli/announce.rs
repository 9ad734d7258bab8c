//! `announce KEY VALUE`: a sidekick's `ExecStart`. Puts the key under a lease of its own while
//! the process runs (`discovery::announce`), tells systemd it is ready once the key is written
//! (`Type=notify`), and revokes the lease on SIGTERM or SIGINT, so the key goes the moment the
//! unit stops; if the process or its host dies, the key expires with the TTL.

use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::etcd::{EtcdArgs, host_settings};
use super::{CliError, Console};
use crate::discovery::{self, Announcement};
use crate::registry::{AnnouncerRecord, Registry, ServiceKey};

#[derive(Debug, Clone, Args)]
pub struct AnnounceArgs {
    /// The key, such as /services/website/apache
    pub key: String,
    /// Its value, such as '{"host": "%H", "port": 80}'
    pub value: String,
    /// How long the key outlives this process when it dies without withdrawing it: its
    /// lease's TTL, kept alive every third of it
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub ttl: u64,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

pub(super) async fn run(console: &mut Console<'_>, args: &AnnounceArgs) -> Result<(), CliError> {
    // Before anything else: a stop request that came in while connecting must still revoke,
    // never kill the process with the key left behind.
    let mut term = signal(SignalKind::terminate()).map_err(CliError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signals)?;
    let host = host_settings(&args.etcd, console.err)?;
    let key = ServiceKey::new(&args.key, &host.keys)?;
    let announcement = Announcement {
        key: key.clone(),
        value: args.value.clone(),
        ttl: Duration::from_secs(args.ttl),
        announcer: AnnouncerRecord {
            key: args.key.clone(),
            machine: host.machine_id,
            unit: std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|cgroup| discovery::unit_from_cgroup(&cgroup)),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
    };
    let shutdown = CancellationToken::new();
    let (out, err) = (&mut *console.out, &mut *console.err);
    let mut announcements = 0u64;
    let work = async {
        let registry = Registry::connect(&host.etcd).await?;
        discovery::announce(
            &registry,
            &announcement,
            || {
                announcements += 1;
                let status = if announcements == 1 {
                    format!("Announced {} with a TTL of {} s", key.as_str(), args.ttl)
                } else {
                    format!("Announced {} again after losing its lease", key.as_str())
                };
                // Output is for the journal; an announcer must not stop over it.
                let _ = writeln!(out, "{status}").and_then(|()| out.flush());
                let notified = sd_notify::notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status),
                ]);
                if let Err(e) = notified {
                    let _ = writeln!(err, "flottectl: warning: cannot notify systemd: {e}");
                }
            },
            shutdown.clone(),
        )
        .await
        .map_err(CliError::from)
    };
    {
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => result,
            _ = term.recv() => { shutdown.cancel(); work.await }
            _ = interrupt.recv() => { shutdown.cancel(); work.await }
        }?;
    }
    writeln!(console.out, "Stopped announcing {}", key.as_str())?;
    Ok(())
}
