//! flotted's settings: a `key=value` file, each key overridable by `FLOTTE_<KEY>` in the
//! environment and by a command-line flag, in that order of precedence. Raw values are
//! gathered first, then resolved and validated; an error names the key, the value and where
//! it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::FencePolicy;
use crate::api::TlsFiles;
use crate::machine::{MachineId, Metadata};
use crate::registry::{EtcdSettings, Keys};
use crate::resources::{self, Resources};
use crate::schedule::Strategy;
use crate::systemd::Bus;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/flotte/flotted.conf";

/// Where the machine ID comes from when `machine_id` is not set.
pub const MACHINE_ID_FILE: &str = "/etc/machine-id";

/// Declares `Key` from one table of variant, name, default and description, so that names,
/// defaults and their documentation (`flotted --help`, flotted.conf(5), the packaged
/// flotted.conf) cannot drift apart and code names a setting by its variant: a typo does not
/// compile.
macro_rules! settings {
    ($($key:ident = $name:literal, $default:literal, $help:literal;)*) => {
        /// A setting flotted understands.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Key {
            $($key,)*
        }

        impl Key {
            /// Every key, in the order `flotted --help` lists them.
            pub const ALL: &[Key] = &[$(Key::$key,)*];

            /// The name in the file; `FLOTTE_<NAME>` in the environment.
            pub fn name(self) -> &'static str {
                match self {
                    $(Key::$key => $name,)*
                }
            }

            /// The documented default; empty for none.
            pub fn default_value(self) -> &'static str {
                match self {
                    $(Key::$key => $default,)*
                }
            }

            /// What the setting means, in a sentence or two.
            pub fn help(self) -> &'static str {
                match self {
                    $(Key::$key => $help,)*
                }
            }
        }
    };
}

settings! {
    EtcdServers = "etcd_servers", "http://127.0.0.1:2379",
        "etcd's client URLs, comma-separated (http:// or https://); give every member of the cluster";
    EtcdKeyPrefix = "etcd_key_prefix", "/flotte/",
        "the etcd key prefix under which flotte keeps all of its state; clusters sharing an etcd need different prefixes";
    EtcdCafile = "etcd_cafile", "",
        "CA certificates (PEM) that etcd's server certificates must chain to; needed for https:// servers with a private CA";
    EtcdCertfile = "etcd_certfile", "",
        "client certificate (PEM) presented to etcd; requires etcd_keyfile";
    EtcdKeyfile = "etcd_keyfile", "",
        "private key (PEM) of etcd_certfile; keep it readable by root only";
    EtcdUsername = "etcd_username", "",
        "user name for etcd's authentication; requires etcd_password";
    EtcdPassword = "etcd_password", "",
        "password for etcd_username; a secret: set it in the configuration file (mode 0640) or FLOTTE_ETCD_PASSWORD, never on the command line, where every user can read it";
    PublicIp = "public_ip", "",
        "the address other machines and users reach this one at, published with the machine and in machine.env [default: the local address of the route to the first etcd server]";
    Metadata = "metadata", "",
        "this machine's metadata for MachineMetadata= requirements: comma-separated key=value pairs such as region=eu,disk=ssd";
    MachineId = "machine_id", "",
        "this machine's ID, 32 lowercase hex digits [default: the first line of /etc/machine-id]";
    AgentTtl = "agent_ttl", "10s",
        "how long this machine stays registered after flotted stops renewing its lease; a dead machine's units move elsewhere after this, a flotted restarted within it changes nothing; an engine back from a silence of etcd of half of it or more waits up to this for vanished machines to register again (at least 2s)";
    FencePolicy = "fence_policy", "peers",
        "what an agent that cannot reach etcd does with its non-global units before its lease can expire (agent_ttl): peers (stop them, unless every other machine's flotted answers that it cannot reach etcd either, so that an etcd outage stops nothing; a lease that etcd expires meanwhile, as a single etcd frozen and thawed does, is replaced under the same machine ID and the units keep running), always (stop them) or never (keep them running, even while the engine may start them elsewhere)";
    EngineLeaseTtl = "engine_lease_ttl", "5s",
        "lease TTL of the elected engine: how long a dead leader blocks its successor (at least 2s)";
    UnitsDirectory = "units_directory", "/run/flotte/units",
        "where flotted writes the unit files placed on this machine before linking them into systemd's runtime units (an absolute path; gone at reboot)";
    DisableEngine = "disable_engine", "false",
        "true: never stand for election as the cluster's engine (this machine only runs units and serves the API)";
    SystemdBus = "systemd_bus", "system",
        "the systemd manager to drive: system (PID 1 on the system bus), user (the calling user's manager) or a D-Bus address such as unix:path=/run/bus";
    Listen = "listen", "/run/flotte/flotte.sock",
        "the API's unix socket (mode 0660; the packaged service makes the group flotte, whose members may use flottectl)";
    ListenTcp = "listen_tcp", "",
        "TCP addresses to serve the API on as well, comma-separated (e.g. 10.0.0.5:8080); without api_certfile it is plain HTTP that anyone who can connect may use";
    ApiCertfile = "api_certfile", "",
        "server certificate (PEM) for TLS on the listen_tcp addresses; requires api_keyfile";
    ApiKeyfile = "api_keyfile", "",
        "private key (PEM) of api_certfile; keep it readable by root only";
    ApiClientCafile = "api_client_cafile", "",
        "CA certificates (PEM): when set, TCP clients must present a certificate signed by one of them";
    DnsListen = "dns_listen", "",
        "addresses to answer DNS on, over UDP and TCP, comma-separated (e.g. 10.0.0.5:53), for the zone flotte.: NAME.service.flotte (healthy instances), _NAME._tcp.service.flotte (SRV), HOSTNAME.node.flotte (machines); off when empty";
    DnsTtl = "dns_ttl", "5s",
        "the TTL of DNS answers, and of their absence (the SOA's minimum): how long a resolver may keep an instance that is gone (whole seconds, at most 1h)";
    ResyncInterval = "resync_interval", "5m",
        "how often the engine and agent compare everything with etcd and systemd, a safety net beside their watches (at least 1s)";
    Capacity = "capacity", "",
        "the memory and CPUs units' Memory= and CPU= requests may add up to on this machine, such as memory=8G,cpu=4; a dimension left out is detected [default: /proc/meminfo's total and the CPU count, lowered by the cgroup limits of flotted's own cgroup]";
    Reserved = "reserved", "",
        "memory and CPUs kept back for the system, taken off the capacity, such as memory=512M,cpu=0.5";
    PlacementStrategy = "placement_strategy", "spread",
        "where the engine puts units with Memory= or CPU= requests among the machines they fit on: spread (least requested share) or pack (most requested share that still fits); the elected engine's setting counts, so give all machines the same";
}

impl Key {
    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// The command-line flag, without the leading `--`: `agent-ttl`.
    pub fn flag(self) -> String {
        self.name().replace('_', "-")
    }

    /// A secret has no flag: a command line is visible to every user of the host (`ps`).
    pub fn is_secret(self) -> bool {
        self == Key::EtcdPassword
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag --{flag}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: `{text}` is not of the form key=value")]
    Syntax {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("{origin}: unknown setting `{key}`")]
    UnknownKey { key: String, origin: Source },
    #[error("{origin}: invalid {key} `{value}`: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        origin: Source,
        why: String,
    },
}

/// Raw values by key, each with its source; later layers replace earlier ones.
#[derive(Debug, Clone)]
pub struct Raw {
    values: BTreeMap<Key, (String, Source)>,
}

impl Raw {
    pub fn defaults() -> Raw {
        let values = Key::ALL
            .iter()
            .map(|&k| (k, (k.default_value().to_owned(), Source::Default)))
            .collect();
        Raw { values }
    }

    pub fn set(&mut self, key: Key, value: &str, source: Source) {
        self.values.insert(key, (value.to_owned(), source));
    }

    /// Sets the key called `name`, which a file or the environment wrote.
    fn set_named(&mut self, name: &str, value: &str, source: Source) -> Result<(), ConfigError> {
        let key = Key::from_name(name).ok_or_else(|| ConfigError::UnknownKey {
            key: name.to_owned(),
            origin: source.clone(),
        })?;
        self.set(key, value, source);
        Ok(())
    }

    /// Reads a configuration file: `key=value` lines, `#` comments, optional double quotes
    /// around a value.
    pub fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.parse_file(path, &text)
    }

    fn parse_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (key, value) = trimmed.split_once('=').ok_or_else(|| ConfigError::Syntax {
                path: path.to_owned(),
                line: line_no,
                text: trimmed.to_owned(),
            })?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            self.set_named(
                key.trim(),
                value,
                Source::File {
                    path: path.to_owned(),
                    line: line_no,
                },
            )?;
        }
        Ok(())
    }

    /// Applies `FLOTTE_<KEY>` variables from `env` (the process environment in flotted) and
    /// returns the names of `FLOTTE_*` variables that are no setting, for the caller to warn
    /// about: the environment is shared with other programs, so a stray variable must not stop
    /// flotted. `FLOTTE_CONFIG` (the file) and the `FLOTTE_HOST_*` variables of `machine.env`
    /// are known and skipped.
    pub fn read_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<String>, ConfigError> {
        let mut unknown = Vec::new();
        for (var, value) in env {
            let Some(key) = var.strip_prefix("FLOTTE_") else {
                continue;
            };
            let name = key.to_ascii_lowercase();
            if name == "config" || name.starts_with("host_") {
                continue;
            }
            match Key::from_name(&name) {
                Some(key) => self.set(key, &value, Source::Env(var)),
                None => unknown.push(var),
            }
        }
        Ok(unknown)
    }

    fn get(&self, key: Key) -> (&str, &Source) {
        let (v, s) = self.values.get(&key).expect("every key has a default");
        (v, s)
    }

    fn text(&self, key: Key) -> String {
        self.get(key).0.trim().to_owned()
    }

    fn optional(&self, key: Key) -> Option<String> {
        Some(self.text(key)).filter(|v| !v.is_empty())
    }

    /// The error for `key`'s current value, naming where it came from.
    fn invalid(&self, key: Key, why: String) -> ConfigError {
        let (value, source) = self.get(key);
        // A password never goes into a log or a terminal.
        let value = if key.is_secret() {
            "(hidden)".to_owned()
        } else {
            value.to_owned()
        };
        ConfigError::Invalid {
            key: key.name(),
            value,
            origin: source.clone(),
            why,
        }
    }
}

/// flotted's configuration file and environment, read as every program of flotte reads them
/// (flotted, and `flottectl announce`/`services` on a host): the file named by `file` (a
/// `--config` flag), else by `FLOTTE_CONFIG`, else `default_file` when it exists; then the
/// `FLOTTE_<KEY>` variables of `env`. Flags, if any, are the caller's to apply on top.
pub fn read_layers(
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    default_file: &Path,
) -> Result<Layers, ConfigError> {
    let mut raw = Raw::defaults();
    let file = file.or_else(|| {
        env.iter()
            .find(|(var, _)| var == "FLOTTE_CONFIG")
            .map(|(_, path)| PathBuf::from(path))
    });
    match file {
        Some(path) => raw.read_file(&path)?,
        None if default_file.exists() => raw.read_file(default_file)?,
        None => {}
    }
    let stray_env = raw.read_env(env)?;
    Ok(Layers { raw, stray_env })
}

/// What `read_layers` found.
#[derive(Debug, Clone)]
pub struct Layers {
    pub raw: Raw,
    /// `FLOTTE_*` variables that are no setting, for the caller to warn about.
    pub stray_env: Vec<String>,
}

/// `read_layers` for this process: its environment, and `DEFAULT_CONFIG_FILE` when `file` is
/// `None` and `FLOTTE_CONFIG` is not set. Each stray `FLOTTE_*` variable is a message for
/// `warn` (flotted logs it, flottectl prints it), which may fail with the caller's error.
pub fn read_host_layers<E: From<ConfigError>>(
    file: Option<PathBuf>,
    mut warn: impl FnMut(&str) -> Result<(), E>,
) -> Result<Raw, E> {
    let layers = read_layers(
        file,
        std::env::vars().collect(),
        Path::new(DEFAULT_CONFIG_FILE),
    )?;
    for var in &layers.stray_env {
        warn(&format!(
            "ignoring environment variable {var}: no flotted setting is called so"
        ))?;
    }
    Ok(layers.raw)
}

/// The packaged `/etc/flotte/flotted.conf`: every setting described, with its default, and
/// commented out, so that the file as shipped changes nothing and an operator uncomments what
/// they set.
pub fn documented_file() -> String {
    let mut text = String::from(
        "# flotted's configuration (flotted.conf(5)): key=value lines, # comments.\n\
         # Each setting can also be given as FLOTTE_<KEY> in flotted's environment\n\
         # and as a flag (flotted --help), which win over this file; secrets have\n\
         # no flag. This file may hold etcd's password: keep it mode 0640, owner\n\
         # root, group flotte. After an edit: systemctl restart flotted (the units\n\
         # it runs keep running).\n",
    );
    for &key in Key::ALL {
        text.push('\n');
        for line in wrap(key.help(), 78) {
            text.push_str(&format!("# {line}\n"));
        }
        text.push_str(&format!("#{}={}\n", key.name(), key.default_value()));
    }
    text
}

/// `text`'s words in lines of at most `width` characters (longer words stand alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// flotted's defaults, from the key table: its etcd servers and prefix, no TLS and no
/// credentials.
impl Default for EtcdSettings {
    fn default() -> Self {
        resolve_etcd(&Raw::defaults()).expect("the default etcd settings are valid")
    }
}

/// How to reach etcd, from the `etcd_*` settings.
pub fn resolve_etcd(raw: &Raw) -> Result<EtcdSettings, ConfigError> {
    let endpoints: Vec<String> = raw
        .text(Key::EtcdServers)
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err(raw.invalid(
            Key::EtcdServers,
            "give at least one URL such as http://127.0.0.1:2379".into(),
        ));
    }
    for e in &endpoints {
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() <= "https://".len() {
            return Err(raw.invalid(
                Key::EtcdServers,
                format!("`{e}` is not an http:// or https:// URL"),
            ));
        }
    }
    let prefix = raw.text(Key::EtcdKeyPrefix);
    Keys::new(&prefix).map_err(|e| raw.invalid(Key::EtcdKeyPrefix, e.to_string()))?;
    let etcd = EtcdSettings {
        endpoints,
        prefix,
        ca_file: raw.optional(Key::EtcdCafile).map(PathBuf::from),
        cert_file: raw.optional(Key::EtcdCertfile).map(PathBuf::from),
        key_file: raw.optional(Key::EtcdKeyfile).map(PathBuf::from),
        username: raw.optional(Key::EtcdUsername),
        password: raw.optional(Key::EtcdPassword),
    };
    // Report a lone half of a pair at the half that is set.
    for (set, missing, is_set, is_missing) in [
        (
            Key::EtcdCertfile,
            Key::EtcdKeyfile,
            etcd.cert_file.is_some(),
            etcd.key_file.is_none(),
        ),
        (
            Key::EtcdKeyfile,
            Key::EtcdCertfile,
            etcd.key_file.is_some(),
            etcd.cert_file.is_none(),
        ),
        (
            Key::EtcdUsername,
            Key::EtcdPassword,
            etcd.username.is_some(),
            etcd.password.is_none(),
        ),
        (
            Key::EtcdPassword,
            Key::EtcdUsername,
            etcd.password.is_some(),
            etcd.username.is_none(),
        ),
    ] {
        if is_set && is_missing {
            return Err(raw.invalid(set, format!("{missing} must be set as well")));
        }
    }
    Ok(etcd)
}

/// This machine's ID: the `machine_id` setting, else the first line of `machine_id_file`.
pub fn resolve_machine_id(raw: &Raw, machine_id_file: &Path) -> Result<MachineId, ConfigError> {
    match raw.optional(Key::MachineId) {
        Some(id) => MachineId::new(&id).map_err(|e| raw.invalid(Key::MachineId, e.to_string())),
        None => {
            let id = std::fs::read_to_string(machine_id_file).map_err(|e| {
                raw.invalid(
                    Key::MachineId,
                    format!(
                        "it is not set and {} cannot be read: {e}",
                        machine_id_file.display()
                    ),
                )
            })?;
            MachineId::new(id.trim()).map_err(|e| {
                raw.invalid(
                    Key::MachineId,
                    format!("{} holds no machine ID: {e}", machine_id_file.display()),
                )
            })
        }
    }
}

/// flotted's resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd: EtcdSettings,
    pub public_ip: Option<IpAddr>,
    pub metadata: Metadata,
    pub machine_id: MachineId,
    pub agent_ttl: Duration,
    pub fence_policy: FencePolicy,
    pub engine_lease_ttl: Duration,
    pub units_directory: PathBuf,
    pub disable_engine: bool,
    pub systemd_bus: Bus,
    pub listen: PathBuf,
    pub listen_tcp: Vec<SocketAddr>,
    /// TLS on the TCP listeners.
    pub api_tls: Option<TlsFiles>,
    pub resync_interval: Duration,
    /// Where DNS is answered; empty: nowhere.
    pub dns_listen: Vec<SocketAddr>,
    /// The TTL of DNS answers, in seconds.
    pub dns_ttl: u32,
    /// `capacity`: memory and CPUs as configured, each `None` to detect.
    pub capacity_setting: (Option<u64>, Option<u64>),
    /// `reserved`, taken off the capacity.
    pub reserved: Resources,
    pub placement_strategy: Strategy,
}

impl Config {
    /// Resolves raw values. `machine_id_file` is read when `machine_id` is not set.
    pub fn resolve(raw: &Raw, machine_id_file: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: Key, why: String| raw.invalid(key, why);
        let text = |key| raw.text(key);
        let optional = |key| raw.optional(key);

        let etcd = resolve_etcd(raw)?;
        let public_ip = match optional(Key::PublicIp) {
            None => None,
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| invalid(Key::PublicIp, "not an IP address".into()))?,
            ),
        };
        let metadata = Metadata::parse_list(&text(Key::Metadata))
            .map_err(|e| invalid(Key::Metadata, e.to_string()))?;
        let machine_id = resolve_machine_id(raw, machine_id_file)?;
        let ttl = |key: Key| {
            let d = parse_duration(&text(key)).map_err(|why| invalid(key, why))?;
            if d < Duration::from_secs(2) {
                return Err(invalid(
                    key,
                    "must be at least 2s (etcd's shortest lease)".into(),
                ));
            }
            Ok(Duration::from_secs(d.as_secs_f64().ceil() as u64))
        };
        let agent_ttl = ttl(Key::AgentTtl)?;
        let engine_lease_ttl = ttl(Key::EngineLeaseTtl)?;
        let fence_policy = text(Key::FencePolicy)
            .parse::<FencePolicy>()
            .map_err(|why| invalid(Key::FencePolicy, why))?;
        let resync_interval = parse_duration(&text(Key::ResyncInterval))
            .map_err(|why| invalid(Key::ResyncInterval, why))?;
        if resync_interval < Duration::from_secs(1) {
            return Err(invalid(Key::ResyncInterval, "must be at least 1s".into()));
        }
        let capacity_setting = resources::parse_amounts(&text(Key::Capacity))
            .map_err(|why| invalid(Key::Capacity, why))?;
        let (memory, cpu) = resources::parse_amounts(&text(Key::Reserved))
            .map_err(|why| invalid(Key::Reserved, why))?;
        let reserved = Resources {
            memory: memory.unwrap_or(0),
            millicpus: cpu.unwrap_or(0),
        };
        let placement_strategy = text(Key::PlacementStrategy)
            .parse::<Strategy>()
            .map_err(|why| invalid(Key::PlacementStrategy, why))?;
        let units_directory = PathBuf::from(text(Key::UnitsDirectory));
        if !units_directory.is_absolute() {
            return Err(invalid(
                Key::UnitsDirectory,
                "must be an absolute path".into(),
            ));
        }
        let disable_engine = parse_bool(&text(Key::DisableEngine))
            .ok_or_else(|| invalid(Key::DisableEngine, "not a boolean (true/false)".into()))?;
        let systemd_bus = text(Key::SystemdBus)
            .parse::<Bus>()
            .map_err(|e| invalid(Key::SystemdBus, e.to_string()))?;
        let listen = PathBuf::from(text(Key::Listen));
        if !listen.is_absolute() {
            return Err(invalid(
                Key::Listen,
                "must be an absolute path to a unix socket".into(),
            ));
        }
        // A comma-separated list of socket addresses, each refused with an example.
        let addresses = |key: Key, example: &str| {
            text(key)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|a| {
                    a.parse::<SocketAddr>().map_err(|_| {
                        invalid(key, format!("`{a}` is not an address such as {example}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let listen_tcp = addresses(Key::ListenTcp, "127.0.0.1:8080")?;
        let dns_listen = addresses(Key::DnsListen, "10.0.0.5:53")?;
        let dns_ttl =
            parse_duration(&text(Key::DnsTtl)).map_err(|why| invalid(Key::DnsTtl, why))?;
        if dns_ttl.subsec_nanos() != 0 {
            return Err(invalid(Key::DnsTtl, "must be whole seconds".into()));
        }
        if dns_ttl > Duration::from_secs(3600) {
            return Err(invalid(Key::DnsTtl, "must be at most 1h".into()));
        }
        let dns_ttl = dns_ttl.as_secs() as u32;
        let api_tls = match (
            optional(Key::ApiCertfile),
            optional(Key::ApiKeyfile),
            optional(Key::ApiClientCafile),
        ) {
            (None, None, None) => None,
            (Some(_), None, _) => {
                return Err(invalid(
                    Key::ApiCertfile,
                    format!("{} must be set as well", Key::ApiKeyfile),
                ));
            }
            (None, Some(_), _) => {
                return Err(invalid(
                    Key::ApiKeyfile,
                    format!("{} must be set as well", Key::ApiCertfile),
                ));
            }
            (None, None, Some(_)) => {
                return Err(invalid(
                    Key::ApiClientCafile,
                    format!(
                        "{} and {} must be set as well",
                        Key::ApiCertfile,
                        Key::ApiKeyfile
                    ),
                ));
            }
            (Some(cert), Some(key), ca) => Some(TlsFiles {
                cert_file: PathBuf::from(cert),
                key_file: PathBuf::from(key),
                client_ca_file: ca.map(PathBuf::from),
            }),
        };
        if api_tls.is_some() && listen_tcp.is_empty() {
            // TLS is for TCP listeners only: without one, the setting would silently do nothing.
            return Err(invalid(
                Key::ApiCertfile,
                format!("{} must be set as well", Key::ListenTcp),
            ));
        }
        Ok(Config {
            etcd,
            public_ip,
            metadata,
            machine_id,
            agent_ttl,
            fence_policy,
            engine_lease_ttl,
            units_directory,
            disable_engine,
            systemd_bus,
            listen,
            listen_tcp,
            api_tls,
            resync_interval,
            dns_listen,
            dns_ttl,
            capacity_setting,
            reserved,
            placement_strategy,
        })
    }

    /// The capacity this machine publishes: `capacity` where set, what is detected for the
    /// rest (`resources::detect`), minus `reserved`.
    pub fn capacity(&self) -> Resources {
        let (memory, cpu) = self.capacity_setting;
        let detected = if memory.is_none() || cpu.is_none() {
            resources::detect()
        } else {
            Resources::ZERO
        };
        capacity_of(self.capacity_setting, detected, self.reserved)
    }
}

/// The configured dimensions, else the detected ones, minus what is reserved.
pub fn capacity_of(
    (memory, cpu): (Option<u64>, Option<u64>),
    detected: Resources,
    reserved: Resources,
) -> Resources {
    Resources {
        memory: memory.unwrap_or(detected.memory),
        millicpus: cpu.unwrap_or(detected.millicpus),
    }
    .saturating_sub(reserved)
}

/// `500ms`, `10s`, `5m`, `1h`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| "not a duration such as 10s, 500ms or 5m".to_string())?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| "out of range".to_string())
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn resolve(lines: &str) -> Result<Config, ConfigError> {
        let mut raw = Raw::defaults();
        raw.parse_file(Path::new("/etc/flotte/flotted.conf"), lines)?;
        raw.set(Key::MachineId, ID, Source::Default);
        Config::resolve(&raw, Path::new("/nonexistent"))
    }

    #[test]
    fn defaults_resolve() {
        let c = resolve("").unwrap();
        assert_eq!(c.etcd.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(c.etcd.prefix, "/flotte/");
        assert_eq!(c.agent_ttl, Duration::from_secs(10));
        assert_eq!(c.units_directory, PathBuf::from("/run/flotte/units"));
        assert_eq!(c.systemd_bus, Bus::System);
        assert!(!c.disable_engine);
        assert_eq!(c.fence_policy, FencePolicy::Peers);
        assert!(c.listen_tcp.is_empty());
        assert_eq!(c.api_tls, None);
        assert!(c.dns_listen.is_empty(), "DNS is off unless set");
        assert_eq!(c.dns_ttl, 5);
    }

    #[test]
    fn dns_is_answered_where_dns_listen_says_with_the_ttl_of_dns_ttl() {
        let c = resolve("dns_listen=127.0.1.1:53, [::1]:5353\ndns_ttl=0\n").unwrap();
        assert_eq!(
            c.dns_listen,
            [
                "127.0.1.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert_eq!(c.dns_ttl, 0);
        assert_eq!(resolve("dns_ttl=1m").unwrap().dns_ttl, 60);
    }

    #[test]
    fn capacity_is_configured_or_detected_minus_what_is_reserved() {
        let c =
            resolve("capacity=memory=8G,cpu=4\nreserved=memory=512M\nplacement_strategy=pack\n")
                .unwrap();
        assert_eq!(c.placement_strategy, Strategy::Pack);
        assert_eq!(
            c.capacity(),
            Resources {
                memory: (8 << 30) - (512 << 20),
                millicpus: 4000
            }
        );
        assert_eq!(resolve("").unwrap().placement_strategy, Strategy::Spread);
        let detected = Resources {
            memory: 16 << 30,
            millicpus: 8000,
        };
        let cases = [
            ((None, None), Resources::ZERO, detected),
            (
                (None, Some(2000)),
                Resources::ZERO,
                Resources {
                    memory: 16 << 30,
                    millicpus: 2000,
                },
            ),
            (
                (Some(1 << 30), None),
                Resources {
                    memory: 0,
                    millicpus: 500,
                },
                Resources {
                    memory: 1 << 30,
                    millicpus: 7500,
                },
            ),
            // reserving more than there is leaves nothing, not an underflow
            (
                (Some(1 << 20), None),
                Resources {
                    memory: 1 << 30,
                    millicpus: 0,
                },
                Resources {
                    memory: 0,
                    millicpus: 8000,
                },
            ),
        ];
        for (setting, reserved, expected) in cases {
            assert_eq!(
                capacity_of(setting, detected, reserved),
                expected,
                "{setting:?} - {reserved:?}"
            );
        }
    }

    #[test]
    fn api_tls_takes_a_certificate_a_key_and_optionally_a_client_ca() {
        let c = resolve(
            "listen_tcp=0.0.0.0:8443\napi_certfile=/etc/flotte/api.pem\napi_keyfile=/etc/flotte/api.key\n",
        )
        .unwrap();
        assert_eq!(
            c.api_tls,
            Some(TlsFiles {
                cert_file: "/etc/flotte/api.pem".into(),
                key_file: "/etc/flotte/api.key".into(),
                client_ca_file: None,
            })
        );
        let c = resolve(
            "listen_tcp=0.0.0.0:8443\napi_certfile=/c.pem\napi_keyfile=/k.pem\napi_client_cafile=/ca.pem\n",
        )
        .unwrap();
        assert_eq!(
            c.api_tls.and_then(|t| t.client_ca_file),
            Some(PathBuf::from("/ca.pem"))
        );
    }

    #[test]
    fn a_file_sets_values_with_comments_and_quotes() {
        let c = resolve("# flotte\n\netcd_servers = http://10.0.0.1:2379,http://10.0.0.2:2379\nmetadata=\"region=eu,disk=ssd\"\nagent_ttl=30s\ndisable_engine=true\nsystemd_bus=unix:path=/tmp/h/bus\nlisten_tcp=127.0.0.1:8080\n").unwrap();
        assert_eq!(c.etcd.endpoints.len(), 2);
        assert_eq!(c.metadata.to_string(), "disk=ssd,region=eu");
        assert_eq!(c.agent_ttl, Duration::from_secs(30));
        assert!(c.disable_engine);
        assert_eq!(c.fence_policy, FencePolicy::Peers);
        assert_eq!(c.systemd_bus, Bus::Address("unix:path=/tmp/h/bus".into()));
        assert_eq!(
            c.listen_tcp,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_both() {
        let mut raw = Raw::defaults();
        raw.parse_file(Path::new("f.conf"), "agent_ttl=30s\nmetadata=region=eu\n")
            .unwrap();
        raw.read_env([
            ("FLOTTE_AGENT_TTL".to_string(), "20s".to_string()),
            ("HOME".into(), "/root".into()),
        ])
        .unwrap();
        raw.set(Key::Metadata, "region=us", Source::Flag("metadata".into()));
        raw.set(Key::MachineId, ID, Source::Default);
        let c = Config::resolve(&raw, Path::new("/nonexistent")).unwrap();
        assert_eq!(c.agent_ttl, Duration::from_secs(20));
        assert_eq!(c.metadata.get("region"), Some("us"));
    }

    #[test]
    fn bad_values_name_the_key_the_value_and_the_source() {
        let cases = [
            (
                "agent_ttl=soon",
                "/etc/flotte/flotted.conf:1: invalid agent_ttl `soon`: not a duration such as 10s, 500ms or 5m",
            ),
            (
                "agent_ttl=1s",
                "/etc/flotte/flotted.conf:1: invalid agent_ttl `1s`: must be at least 2s (etcd's shortest lease)",
            ),
            (
                "etcd_servers=10.0.0.1:2379",
                "/etc/flotte/flotted.conf:1: invalid etcd_servers `10.0.0.1:2379`: `10.0.0.1:2379` is not an http:// or https:// URL",
            ),
            (
                "etcd_key_prefix=flotte",
                "/etc/flotte/flotted.conf:1: invalid etcd_key_prefix `flotte`: etcd key prefix `flotte` must start and end with `/`",
            ),
            (
                "public_ip=10.0.0",
                "/etc/flotte/flotted.conf:1: invalid public_ip `10.0.0`: not an IP address",
            ),
            (
                "\n\nmetadata=region",
                "/etc/flotte/flotted.conf:3: invalid metadata `region`: metadata item `region` is not of the form key=value",
            ),
            (
                "fence_policy=sometimes",
                "/etc/flotte/flotted.conf:1: invalid fence_policy `sometimes`: not one of peers, always, never",
            ),
            (
                "disable_engine=maybe",
                "/etc/flotte/flotted.conf:1: invalid disable_engine `maybe`: not a boolean (true/false)",
            ),
            (
                "systemd_bus=dbus",
                "/etc/flotte/flotted.conf:1: invalid systemd_bus `dbus`: systemd bus `dbus` is not `system`, `user` or a D-Bus address such as `unix:path=/run/bus`",
            ),
            (
                "units_directory=units",
                "/etc/flotte/flotted.conf:1: invalid units_directory `units`: must be an absolute path",
            ),
            (
                "capacity=memory=8GB",
                "/etc/flotte/flotted.conf:1: invalid capacity `memory=8GB`: `8GB` is not a memory size: write bytes, or a number with K, M, G or T (powers of 1024), such as 512M or 1.5G",
            ),
            (
                "reserved=cpus=1",
                "/etc/flotte/flotted.conf:1: invalid reserved `cpus=1`: unknown key `cpus` in `cpus=1`: only memory and cpu are known",
            ),
            (
                "placement_strategy=binpack",
                "/etc/flotte/flotted.conf:1: invalid placement_strategy `binpack`: `binpack` is not a placement strategy (spread or pack)",
            ),
            (
                "listen_tcp=localhost",
                "/etc/flotte/flotted.conf:1: invalid listen_tcp `localhost`: `localhost` is not an address such as 127.0.0.1:8080",
            ),
            (
                "dns_listen=10.0.0.5",
                "/etc/flotte/flotted.conf:1: invalid dns_listen `10.0.0.5`: `10.0.0.5` is not an address such as 10.0.0.5:53",
            ),
            (
                "dns_ttl=1.5s",
                "/etc/flotte/flotted.conf:1: invalid dns_ttl `1.5s`: must be whole seconds",
            ),
            (
                "dns_ttl=2h",
                "/etc/flotte/flotted.conf:1: invalid dns_ttl `2h`: must be at most 1h",
            ),
            (
                "etcd_certfile=/c.pem",
                "/etc/flotte/flotted.conf:1: invalid etcd_certfile `/c.pem`: etcd_keyfile must be set as well",
            ),
            (
                "etcd_password=x",
                "/etc/flotte/flotted.conf:1: invalid etcd_password `(hidden)`: etcd_username must be set as well",
            ),
            (
                "listen_tcp=127.0.0.1:8443\napi_certfile=/c.pem",
                "/etc/flotte/flotted.conf:2: invalid api_certfile `/c.pem`: api_keyfile must be set as well",
            ),
            (
                "listen_tcp=127.0.0.1:8443\napi_keyfile=/k.pem",
                "/etc/flotte/flotted.conf:2: invalid api_keyfile `/k.pem`: api_certfile must be set as well",
            ),
            (
                "api_client_cafile=/ca.pem",
                "/etc/flotte/flotted.conf:1: invalid api_client_cafile `/ca.pem`: api_certfile and api_keyfile must be set as well",
            ),
            (
                "api_certfile=/c.pem\napi_keyfile=/k.pem",
                "/etc/flotte/flotted.conf:1: invalid api_certfile `/c.pem`: listen_tcp must be set as well",
            ),
            (
                "frobnicate=1",
                "/etc/flotte/flotted.conf:1: unknown setting `frobnicate`",
            ),
            (
                "just words",
                "/etc/flotte/flotted.conf:1: `just words` is not of the form key=value",
            ),
        ];
        for (file, message) in cases {
            assert_eq!(resolve(file).unwrap_err().to_string(), message, "{file}");
        }
        let mut raw = Raw::defaults();
        let unknown = raw
            .read_env([
                ("FLOTTE_NOPE".to_string(), "1".to_string()),
                ("FLOTTE_HOST_IP".to_string(), "10.0.0.1".to_string()),
                ("FLOTTE_CONFIG".to_string(), "/x.conf".to_string()),
            ])
            .unwrap();
        assert_eq!(
            unknown,
            ["FLOTTE_NOPE"],
            "stray variables are reported, not fatal"
        );
        let err = raw
            .read_env([("FLOTTE_AGENT_TTL".to_string(), "soon".to_string())])
            .map(|_| ());
        assert!(err.is_ok(), "values are checked when resolved");
        let mut raw = Raw::defaults();
        raw.read_env([("FLOTTE_AGENT_TTL".to_string(), "soon".to_string())])
            .unwrap();
        raw.set(Key::MachineId, ID, Source::Default);
        assert_eq!(
            Config::resolve(&raw, Path::new("/nonexistent"))
                .unwrap_err()
                .to_string(),
            "environment variable FLOTTE_AGENT_TTL: invalid agent_ttl `soon`: not a duration such as 10s, 500ms or 5m"
        );
    }

    #[test]
    fn the_machine_id_comes_from_the_machine_id_file_when_not_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("machine-id");
        std::fs::write(&file, format!("{ID}\n")).unwrap();
        let c = Config::resolve(&Raw::defaults(), &file).unwrap();
        assert_eq!(c.machine_id.as_str(), ID);
        std::fs::write(&file, "garbage\n").unwrap();
        let err = Config::resolve(&Raw::defaults(), &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no machine ID"), "{err}");
    }

    #[test]
    fn layers_come_from_the_flag_file_else_flotte_config_else_the_default_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, ttl: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("agent_ttl={ttl}\n")).unwrap();
            path
        };
        let (flag, env_file, default) = (
            write("flag.conf", "11s"),
            write("env.conf", "12s"),
            write("default.conf", "13s"),
        );
        let ttl = |layers: Layers| {
            let mut raw = layers.raw;
            raw.set(Key::MachineId, ID, Source::Default);
            Config::resolve(&raw, Path::new("/nonexistent"))
                .unwrap()
                .agent_ttl
                .as_secs()
        };
        let config_var = || vec![("FLOTTE_CONFIG".to_string(), env_file.display().to_string())];
        let layers = read_layers(Some(flag.clone()), config_var(), &default).unwrap();
        assert_eq!(ttl(layers), 11);
        assert_eq!(ttl(read_layers(None, config_var(), &default).unwrap()), 12);
        assert_eq!(ttl(read_layers(None, Vec::new(), &default).unwrap()), 13);
        let absent = dir.path().join("absent.conf");
        assert_eq!(ttl(read_layers(None, Vec::new(), &absent).unwrap()), 10);
        let mut env = config_var();
        env.push(("FLOTTE_AGENT_TTL".into(), "14s".into()));
        env.push(("FLOTTE_BOGUS".into(), "1".into()));
        let layers = read_layers(None, env, &default).unwrap();
        assert_eq!(layers.stray_env, ["FLOTTE_BOGUS"]);
        assert_eq!(ttl(layers), 14);
        // A named file must exist; only the default may be absent.
        let err = read_layers(Some(absent.clone()), Vec::new(), &default).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}", absent.display()))
        );
    }

    #[test]
    fn etcd_settings_resolve_without_the_rest_of_the_configuration() {
        let mut raw = Raw::defaults();
        raw.parse_file(
            Path::new("f.conf"),
            "etcd_servers=http://10.0.0.1:2379\nlisten=relative\n",
        )
        .unwrap();
        assert_eq!(
            resolve_etcd(&raw).unwrap().endpoints,
            ["http://10.0.0.1:2379"]
        );
        assert!(
            Config::resolve(&raw, Path::new("/nonexistent")).is_err(),
            "the whole configuration is invalid"
        );
        raw.set(Key::MachineId, ID, Source::Default);
        assert_eq!(
            resolve_machine_id(&raw, Path::new("/nonexistent"))
                .unwrap()
                .as_str(),
            ID
        );
    }

    #[test]
    fn every_key_has_one_name_found_again_by_it() {
        for &key in Key::ALL {
            assert_eq!(Key::from_name(key.name()), Some(key));
        }
        let mut names: Vec<_> = Key::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Key::ALL.len());
        assert_eq!(Key::AgentTtl.flag(), "agent-ttl");
    }

    #[test]
    fn the_documented_file_names_every_key_and_sets_none() {
        let text = documented_file();
        let mut raw = Raw::defaults();
        raw.parse_file(Path::new("flotted.conf"), &text).unwrap();
        for &key in Key::ALL {
            assert_eq!(raw.get(key), (key.default_value(), &Source::Default));
            let line = format!("\n#{}={}\n", key.name(), key.default_value());
            assert!(text.contains(&line), "{line:?} missing");
            assert!(!key.help().is_empty(), "{key} has no description");
        }
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        // Uncommenting a line gives a file that resolves.
        let uncommented = text.replace("\n#agent_ttl=10s", "\nagent_ttl=10s");
        raw.parse_file(Path::new("flotted.conf"), &uncommented)
            .unwrap();
        assert_eq!(raw.get(Key::AgentTtl).0, "10s");
    }

    #[test]
    fn the_readmes_table_of_settings_is_the_key_table() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        for &key in Key::ALL {
            let default = match key.default_value() {
                "" => "none".to_owned(),
                d => format!("`{d}`"),
            };
            let row = format!("| `{}` | {default} | {} |", key.name(), key.help());
            assert!(readme.contains(&row), "README lacks the row\n{row}");
        }
    }

    #[test]
    fn words_wrap_within_the_width() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("toolongword x", 4), ["toolongword", "x"]);
        assert_eq!(wrap("", 4), Vec::<String>::new());
    }

    #[test]
    fn etcd_settings_default_to_flotteds_defaults() {
        assert_eq!(
            EtcdSettings::default(),
            EtcdSettings {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                prefix: "/flotte/".into(),
                ca_file: None,
                cert_file: None,
                key_file: None,
                username: None,
                password: None,
            }
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
