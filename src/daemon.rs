//! flotted: one process per host running the agent, an engine candidate and the API.

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
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

/// flotted's command line: `--config FILE` and one flag per setting (`--agent-ttl 10s`).
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("flotted")
        .version(VERSION)
        .about("flotte's per-host daemon: agent, engine candidate and API")
        .after_help(
            "Every setting can also be given in the configuration file as key=value and in the \
             environment as FLOTTE_<KEY> (e.g. FLOTTE_AGENT_TTL=10s); flags win over the \
             environment, which wins over the file.",
        )
        .arg(
            clap::Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help(format!(
                    "configuration file [default: {} if present] (env FLOTTE_CONFIG)",
                    config::DEFAULT_CONFIG_FILE
                )),
        );
    for &key in Key::ALL {
        let mut arg = clap::Arg::new(key.name())
            .long(key.flag())
            .value_name("VALUE");
        let default = key.default_value();
        if !default.is_empty() {
            arg = arg.help(format!("[default: {default}]"));
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// Resolves the configuration from file, environment and flags.
pub fn load_config(matches: &clap::ArgMatches) -> Result<Config, ConfigError> {
    let file = matches.get_one::<String>("config").map(PathBuf::from);
    let mut raw = config::read_host_layers(file, |warning| {
        tracing::warn!("{warning}");
        Ok::<_, ConfigError>(())
    })?;
    for &key in Key::ALL {
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
}

/// Runs flotted until `shutdown`. Start-up waits (with backoff, saying so) for systemd and
/// etcd to be reachable rather than failing. The API's listeners are bound first, so that a
/// bad address or TLS file stops flotted at once; it answers 503 until the agent registered.
pub async fn serve(config: Config, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let listeners = Listeners::bind(&ApiSettings {
        socket: config.listen.clone(),
        tcp: config.listen_tcp.clone(),
        tls: config.api_tls.clone(),
    })
    .await?;
    // What the machine record publishes: the bound address, with the port picked for port 0.
    let api_addr = listeners.tcp_addrs().first().map(|a| a.to_string());
    // The API answers (503) from now on, while systemd and etcd are being reached.
    let (registered, ready) = tokio::sync::watch::channel(false);
    let (give_registry, registry_for_api) = tokio::sync::oneshot::channel();
    let api = tokio::spawn(api::serve(
        listeners,
        async { registry_for_api.await.ok() },
        ready,
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
        return Ok(());
    };
    let _ = give_registry.send(registry.clone());
    let public_ip = config.public_ip.unwrap_or_else(|| route_ip(&config.etcd));
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    tracing::info!(machine = %config.machine_id, ip = %public_ip, %hostname, bus = %bus_name(&config.systemd_bus), "flotted starting");

    let engine = (!config.disable_engine).then(|| {
        let engine_config = EngineConfig {
            machine_id: config.machine_id.clone(),
            lease_ttl: config.engine_lease_ttl,
            debounce: Duration::from_millis(20),
            resync: config.resync_interval,
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
    let _ = api.await;
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
