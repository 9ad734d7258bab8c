//! flotted: one process per host running the agent, an engine candidate and the API.

pub mod logging;
pub mod notify;

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentConfig};
use crate::api::{self, ApiSettings, Listeners};
use crate::backoff::Backoff;
use crate::config::{self, Config, ConfigError, Key, Source};
use crate::engine::{self, EngineConfig};
use crate::registry::{EtcdSettings, Registry};
use crate::systemd::{Bus, Systemd};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// flotted's command line: `--config FILE`, `--log-format`, and one flag per setting but the
/// secrets (`--agent-ttl 10s`), each described from the settings table.
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("flotted")
        .version(VERSION)
        .about("flotte's per-host daemon: agent, engine candidate and API")
        .long_about(
            "flotte's per-host daemon. Every host of a flotte cluster runs one flotted: an agent \
             that runs the units placed on this machine through systemd, a candidate for the \
             cluster's engine (elected through etcd; it places units on machines), and the HTTP \
             API that flottectl talks to, on a unix socket and optional TCP addresses. etcd is \
             its only store. flotted's units are systemd units of their own: they keep running \
             while flotted restarts.",
        )
        .after_help(format!(
            "Every setting can also be given in the configuration file as key=value and in the \
             environment as FLOTTE_<KEY> (e.g. FLOTTE_AGENT_TTL=10s); flags win over the \
             environment, which wins over the file. Secrets have no flag: {} is read from the \
             file or the environment only. See flotted.conf(5).",
            Key::ALL
                .iter()
                .filter(|k| k.is_secret())
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .arg(
            clap::Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help(format!(
                    "configuration file [default: {} if present] (env FLOTTE_CONFIG)",
                    config::DEFAULT_CONFIG_FILE
                )),
        )
        .arg(
            clap::Arg::new("log-format")
                .long("log-format")
                .value_name("FORMAT")
                .value_parser(clap::value_parser!(logging::LogFormat))
                .default_value("text")
                .help(
                    "text: lines for a terminal, or for the journal when run by systemd (no \
                     timestamps, syslog priorities); json: one JSON object per line. RUST_LOG \
                     filters (default info)",
                ),
        );
    for &key in Key::ALL.iter().filter(|k| !k.is_secret()) {
        let default = key.default_value();
        let help = if default.is_empty() {
            key.help().to_owned()
        } else {
            format!("{} [default: {default}]", key.help())
        };
        cmd = cmd.arg(
            clap::Arg::new(key.name())
                .long(key.flag())
                .value_name("VALUE")
                .help(help),
        );
    }
    cmd
}

/// The `--log-format` of parsed arguments.
pub fn log_format(matches: &clap::ArgMatches) -> logging::LogFormat {
    matches
        .get_one::<logging::LogFormat>("log-format")
        .copied()
        .unwrap_or(logging::LogFormat::Text)
}

/// Resolves the configuration from file, environment and flags.
pub fn load_config(matches: &clap::ArgMatches) -> Result<Config, ConfigError> {
    let file = matches.get_one::<String>("config").map(PathBuf::from);
    let mut raw = config::read_host_layers(file, |warning| {
        tracing::warn!("{warning}");
        Ok::<_, ConfigError>(())
    })?;
    for &key in Key::ALL.iter().filter(|k| !k.is_secret()) {
        if let Some(value) = matches.get_one::<String>(key.name()) {
            raw.set(key, value, Source::Flag(key.flag()));
        }
    }
    Config::resolve(&raw, Path::new(config::MACHINE_ID_FILE))
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    #[error(transparent)]
    Api(#[from] api::ServeError),
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
}

/// Runs flotted until `shutdown`. Start-up waits (with backoff, saying so) for systemd and
/// etcd to be reachable rather than failing. The API's listeners are bound first, so that a
/// bad address or TLS file stops flotted at once; it answers 503 until the agent registered.
/// Under systemd, `READY=1` follows the agent's first registration (`notify`).
pub async fn serve(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let listeners = Listeners::bind(&ApiSettings {
        socket: config.listen.clone(),
        tcp: config.listen_tcp.clone(),
        tls: config.api_tls.clone(),
    })
    .await?;
    let dns = crate::dns::Listeners::bind(&config.dns_listen).await?;
    // What the machine record publishes: the bound address, with the port picked for port 0.
    let api_addr = listeners.tcp_addrs().first().map(|a| a.to_string());
    // The API answers (503) from now on, while systemd and etcd are being reached.
    let (registered, ready) = tokio::sync::watch::channel(false);
    // Held here for flotted's lifetime, also without an engine, so that the status task
    // never sees the channel closed.
    let (leading, leading_rx) = tokio::sync::watch::channel(false);
    let leading = Arc::new(leading);
    let (running, running_rx) = tokio::sync::watch::channel(0);
    let running = Arc::new(running);
    // The agent's contact with etcd: the API answers 503 while its renewals fail, and tells
    // the other machines' agents (`GET /flotte/v1/etcd-contact`).
    let (contact, contact_rx) = tokio::sync::watch::channel(crate::registry::Contact::now());
    let contact = Arc::new(contact);
    let notifier = tokio::spawn(notify::run(
        config.machine_id.clone(),
        ready.clone(),
        leading_rx,
        running_rx,
        shutdown.clone(),
    ));
    let (give_registry, registry_for_api) = tokio::sync::oneshot::channel();
    let api = tokio::spawn(api::serve(
        listeners,
        async { registry_for_api.await.ok() },
        api::Gate {
            registered: ready.clone(),
            contact: Some(contact_rx),
        },
        shutdown.clone(),
    ));
    let connected = async {
        let systemd = retry("systemd", &shutdown, || {
            Systemd::connect(&config.systemd_bus)
        })
        .await?;
        let registry = retry("etcd", &shutdown, || Registry::connect(&config.etcd)).await?;
        Some((systemd, registry))
    };
    let Some((systemd, registry)) = connected.await else {
        // Shut down before getting anywhere: the API still removes its socket.
        let _ = api.await;
        let _ = notifier.await;
        return Ok(());
    };
    let public_ip = config.public_ip.unwrap_or_else(|| route_ip(&config.etcd));
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = give_registry.send(api::Backend {
        registry: registry.clone(),
        local: Some(api::LocalMachine {
            id: config.machine_id.clone(),
            hostname: hostname.clone(),
            systemd: systemd.clone(),
            journal: crate::journal::Scope::of(&config.systemd_bus),
            strategy: config.placement_strategy,
        }),
    });
    tracing::info!(machine = %config.machine_id, ip = %public_ip, %hostname, bus = %bus_name(&config.systemd_bus), "flotted starting");

    let dns = (!dns.is_empty()).then(|| {
        tokio::spawn(crate::dns::serve(
            dns,
            registry.clone(),
            config.dns_ttl,
            shutdown.clone(),
        ))
    });
    let engine = (!config.disable_engine).then(|| {
        let engine_config = EngineConfig {
            machine_id: config.machine_id.clone(),
            lease_ttl: config.engine_lease_ttl,
            debounce: Duration::from_millis(20),
            resync: config.resync_interval,
            leading: leading.clone(),
            strategy: config.placement_strategy,
            agent_ttl: config.agent_ttl,
        };
        tokio::spawn(engine::run(
            registry.clone(),
            engine_config,
            shutdown.clone(),
        ))
    });
    let agent_config = AgentConfig {
        machine_id: config.machine_id.clone(),
        public_ip: public_ip.to_string(),
        metadata: config.metadata.clone(),
        hostname,
        version: VERSION.to_owned(),
        api: api_addr,
        ttl: config.agent_ttl,
        units_directory: config.units_directory.clone(),
        etcd_endpoints: config.etcd.endpoints.clone(),
        resync: config.resync_interval,
        running: running.clone(),
        fence_policy: config.fence_policy,
        contact: contact.clone(),
        capacity: config.capacity(),
    };
    let result = agent::run(
        registry,
        systemd,
        agent_config,
        registered,
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    if let Some(engine) = engine {
        let _ = engine.await;
    }
    if let Some(dns) = dns {
        let _ = dns.await;
    }
    let _ = api.await;
    let _ = notifier.await;
    result.map_err(DaemonError::from)
}

fn bus_name(bus: &Bus) -> String {
    bus.to_string()
}

/// Tries `connect` until it succeeds or shutdown, logging each failure with its delay.
async fn retry<T, E, F, Fut>(what: &str, shutdown: &CancellationToken, mut connect: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
    loop {
        match connect().await {
            Ok(v) => return Some(v),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!("{e}; retrying in {:.1} s", delay.as_secs_f64());
                tracing::debug!(what, "waiting before reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return None,
                }
            }
        }
    }
}

/// The local address the kernel would use to reach the first etcd server: without a
/// configured `public_ip`, the address other machines most likely reach this one at.
fn route_ip(etcd: &EtcdSettings) -> IpAddr {
    let target = etcd
        .endpoints
        .first()
        .and_then(|e| {
            e.split_once("://")
                .map(|(_, rest)| rest.trim_end_matches('/').to_owned())
        })
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect(target.as_str()).map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_describes_every_setting_and_offers_no_secret_as_a_flag() {
        let help = command().render_long_help().to_string();
        for &key in Key::ALL {
            let flag = format!("--{}", key.flag());
            if key.is_secret() {
                assert!(!help.contains(&flag), "{flag} offered");
                assert!(help.contains(key.name()), "{key}: where to set it instead");
                assert!(
                    command()
                        .try_get_matches_from(["flotted", flag.as_str(), "x"])
                        .is_err(),
                    "{flag} accepted"
                );
            } else {
                let arg = command()
                    .get_arguments()
                    .find(|a| a.get_long() == Some(key.flag().as_str()))
                    .unwrap_or_else(|| panic!("no {flag}"))
                    .clone();
                let text = arg.get_help().expect("a description").to_string();
                assert!(text.starts_with(key.help()), "{flag}: {text}");
            }
        }
    }

    #[test]
    fn log_formats_parse_and_default_to_text() {
        for (args, format) in [
            (&["flotted"][..], logging::LogFormat::Text),
            (
                &["flotted", "--log-format", "json"],
                logging::LogFormat::Json,
            ),
            (
                &["flotted", "--log-format", "text"],
                logging::LogFormat::Text,
            ),
        ] {
            let matches = command().try_get_matches_from(args).unwrap();
            assert_eq!(log_format(&matches), format, "{args:?}");
        }
        assert!(
            command()
                .try_get_matches_from(["flotted", "--log-format", "xml"])
                .is_err()
        );
    }
}
