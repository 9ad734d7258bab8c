//! `announce KEY VALUE`: a sidekick's `ExecStart`. Puts the key under a lease of its own while
//! the process runs (`discovery::announce`), tells systemd it is ready once the key is written
//! (`Type=notify`), and revokes the lease on SIGTERM or SIGINT, so the key goes the moment the
//! unit stops; if the process or its host dies, the key expires with the TTL.
//!
//! `announce --service NAME --port N` does the same for a declared service's instance
//! (`discovery::announce_instance`): the sidekick's unit on this machine serves `NAME` at the
//! machine's published address and port `N`, healthy while announced, listed by the catalog
//! and DNS beside the instances agents register.

use std::time::Duration;

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::etcd::{EtcdArgs, host_settings};
use super::{CliError, Console};
use crate::discovery::{self, Announcement};
use crate::registry::{AnnouncerRecord, Health, InstanceRecord, Registry, ServiceKey};
use crate::unit::ServiceName;

#[derive(Debug, Clone, Args)]
pub struct AnnounceArgs {
    /// The key, such as /services/website/apache
    #[arg(required_unless_present = "service", conflicts_with = "service")]
    pub key: Option<String>,
    /// Its value, such as '{"host": "%H", "port": 80}'
    #[arg(required_unless_present = "service")]
    pub value: Option<String>,
    /// Announce an instance of this declared service instead of a key: this unit on this
    /// machine serves it at the machine's address (its DNS name NAME.service.flotte)
    #[arg(long, value_name = "NAME", requires = "port")]
    pub service: Option<String>,
    /// The port the service's instance is reached at (with --service)
    #[arg(long, value_name = "N", requires = "service",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// A tag of the instance (with --service; repeat for more): TAG.NAME.service.flotte
    #[arg(long = "tag", value_name = "TAG", requires = "service")]
    pub tags: Vec<String>,
    /// How long the key outlives this process when it dies without withdrawing it: its
    /// lease's TTL, kept alive every third of it
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub ttl: u64,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// What is announced, resolved from the arguments and the host.
enum Subject {
    Key(Announcement),
    Instance(InstanceRecord),
}

pub(super) async fn run(console: &mut Console<'_>, args: &AnnounceArgs) -> Result<(), CliError> {
    // Before anything else: a stop request that came in while connecting must still revoke,
    // never kill the process with the key left behind.
    let mut term = signal(SignalKind::terminate()).map_err(CliError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(CliError::Signals)?;
    let host = host_settings(&args.etcd, console.err)?;
    let unit = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|cgroup| discovery::unit_from_cgroup(&cgroup));
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ttl = Duration::from_secs(args.ttl);
    // Checked before etcd is reached: a bad name is a usage error.
    let service = match &args.service {
        Some(name) => {
            let tags = args
                .tags
                .iter()
                .map(|t| ServiceName::new(t))
                .collect::<Result<Vec<_>, _>>()?;
            Some((ServiceName::new(name)?, tags))
        }
        None => None,
    };
    let key = match (&service, &args.key) {
        (None, Some(key_text)) => Some(ServiceKey::new(key_text, &host.keys)?),
        _ => None,
    };
    let registry = Registry::connect(&host.etcd).await?;
    let subject = match (service, key, &args.value) {
        (Some((name, tags)), _, _) => {
            let refuse = |why: String| CliError::AnnounceService {
                service: name.to_string(),
                why,
            };
            let machine_id = host.machine_id.clone().ok_or_else(|| {
                refuse("this machine has no ID (machine_id, /etc/machine-id)".into())
            })?;
            let machine = registry.machine(&machine_id).await?.ok_or_else(|| {
                refuse(format!(
                    "machine {machine_id} is not registered: is flotted running here?"
                ))
            })?;
            let unit = unit.ok_or_else(|| {
                refuse(
                    "no unit runs this process (read from /proc/self/cgroup): run it as a \
                     unit's ExecStart"
                        .into(),
                )
            })?;
            Subject::Instance(InstanceRecord {
                service: name,
                machine: machine.id,
                hostname: machine.hostname,
                address: machine.ip,
                port: args.port.unwrap_or_default(),
                tags,
                unit,
                health: Health::Passing,
            })
        }
        (None, Some(key), Some(value)) => {
            let key_text = key.as_str().to_owned();
            Subject::Key(Announcement {
                key,
                value: value.clone(),
                ttl,
                announcer: AnnouncerRecord {
                    key: key_text,
                    machine: host.machine_id,
                    unit,
                    hostname,
                },
            })
        }
        // clap requires KEY and VALUE without --service.
        (None, _, _) => unreachable!("clap requires KEY and VALUE without --service"),
    };
    let what = match &subject {
        Subject::Key(a) => a.key.as_str().to_owned(),
        Subject::Instance(i) => format!("service {} ({}:{})", i.service, i.address, i.port),
    };
    let shutdown = CancellationToken::new();
    let (out, err) = (&mut *console.out, &mut *console.err);
    let mut announcements = 0u64;
    let announced = || {
        announcements += 1;
        let status = if announcements == 1 {
            format!("Announced {what} with a TTL of {} s", args.ttl)
        } else {
            format!("Announced {what} again after losing its lease")
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
    };
    let work = async {
        match &subject {
            Subject::Key(a) => discovery::announce(&registry, a, announced, shutdown.clone()).await,
            Subject::Instance(i) => {
                discovery::announce_instance(&registry, i, ttl, announced, shutdown.clone()).await
            }
        }
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
    writeln!(console.out, "Stopped announcing {what}")?;
    Ok(())
}
