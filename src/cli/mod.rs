//! flottectl: the command-line interface. clap parses the arguments into `Cli`; each command
//! lives in its own module, talks to flotted's API through `client` (but `announce` and
//! `services`, which read and write service keys in etcd, see `etcd`), and writes to the
//! console it is given, so `src/bin/flottectl.rs` only wires up stdout and stderr and turns
//! errors into exit codes.

mod announce;
mod apply;
mod cat;
mod check;
// `pub(crate)`: the quick start uses these.
pub(crate) mod client;
mod destroy;
mod drain;
pub(crate) mod endpoint;
mod etcd;
mod events;
pub(crate) mod fields;
mod journal;
mod list;
mod many;
pub(crate) mod resolve;
mod services;
mod status;
mod submit;
// Also the quick start's status table.
pub(crate) mod table;
pub(crate) mod tls;
mod transition;
mod unit_files;
pub(crate) mod view;
mod wait;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use announce::AnnounceArgs;
pub use apply::{ApplyArgs, PlanArgs};
pub use check::CheckArgs;
use client::{Client, ClientError, ClientSettings};
use endpoint::Endpoint;
pub use events::EventsArgs;
use fields::{Detail, Fields, Legend, MachineField, UnitField, UnitFileField};
pub use journal::JournalArgs;
use resolve::{ResolveError, UnitArg};
pub use services::ServicesArgs;
pub use status::StatusArgs;
use tls::TlsFiles;
use wait::{Budget, WaitError};

use crate::config::ConfigError;
use crate::registry::{RegistryError, ServiceKeyError};
use crate::unit::UnitName;

const EXIT_STATUS: &str = "\
Exit status:
  0  success (for `plan`: the cluster is in sync with the directories)
  1  an error, or a wait that timed out (for `check`: an invalid file; for `apply`: a rollout
     stopped)
  2  a usage error: unknown command, flag or field, an invalid unit name or service key (for
     `plan`: also changes pending)";

#[derive(Debug, Parser)]
#[command(
    name = "flottectl",
    version,
    about = "Control a flotte cluster of systemd units",
    after_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach flotted's API; accepted before or after the command, as fleetctl does.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// flotted's API: unix:///PATH, http://HOST:PORT or https://HOST:PORT
    #[arg(long, global = true, env = "FLOTTECTL_ENDPOINT", default_value = endpoint::DEFAULT)]
    pub endpoint: Endpoint,
    /// Seconds a single request may take before it fails
    #[arg(
        long,
        global = true,
        env = "FLOTTECTL_REQUEST_TIMEOUT",
        value_name = "SECONDS",
        default_value = "3",
        value_parser = parse_seconds
    )]
    pub request_timeout: Duration,
    /// CA certificates (PEM) to trust for an https endpoint [default: the system's]
    #[arg(long, global = true, env = "FLOTTECTL_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) to present to an https endpoint
    #[arg(long, global = true, env = "FLOTTECTL_CERT_FILE", value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of the client certificate
    #[arg(long, global = true, env = "FLOTTECTL_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{text}` is not a number of seconds above 0 (at most a day)"))
}

impl GlobalArgs {
    pub fn client_settings(&self) -> ClientSettings {
        ClientSettings {
            endpoint: self.endpoint.clone(),
            request_timeout: self.request_timeout,
            tls: TlsFiles {
                ca: self.ca_file.clone(),
                cert: self.cert_file.clone(),
                key: self.key_file.clone(),
            },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit units to the cluster without scheduling them
    Submit(SubmitArgs),
    /// Schedule units on machines and load them into systemd, submitting them if needed
    Load(ScheduleArgs),
    /// Start units in the cluster, submitting and loading them if needed
    Start(ScheduleArgs),
    /// Stop units; they stay loaded and can be started again
    Stop(UnitsArgs),
    /// Stop units and take them off their machines; they stay submitted
    Unload(UnitsArgs),
    /// Stop units, take them off their machines and remove them from the cluster
    Destroy(UnitsArgs),
    /// Restart units one after the other: stop, wait until stopped, start
    Restart(UnitsArgs),
    /// Print the unit file of a submitted unit
    Cat(CatArgs),
    /// List the state of units on their machines
    ListUnits(ListUnitsArgs),
    /// List the submitted units and where they are scheduled
    ListUnitFiles(ListUnitFilesArgs),
    /// List the machines of the cluster
    ListMachines(ListMachinesArgs),
    /// Show units as `systemctl status` does, from the machines they run on
    Status(StatusArgs),
    /// Show a unit's journal on the machine it runs on, or follow it
    Journal(JournalArgs),
    /// Follow the cluster's events (units submitted, placed, started..., machines, leader)
    Events(EventsArgs),
    /// Move every non-global unit off a machine and keep new ones away until `undrain`
    Drain(MachineArgs),
    /// Let units be placed on a drained machine again
    Undrain(MachineArgs),
    /// Show what `apply` would change in the cluster to match directories of unit files
    Plan(PlanArgs),
    /// Make the cluster match directories of unit files, replacing running units one by one
    Apply(ApplyArgs),
    /// Print flottectl's version
    Version,
    /// Check unit files and their [X-Fleet] requirements, without a cluster
    Check(CheckArgs),
    /// Keep KEY=VALUE in etcd while this runs (a sidekick's ExecStart); withdraw it on SIGTERM
    Announce(AnnounceArgs),
    /// List the services announced in etcd, or follow their changes
    Services(ServicesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// Unit files, or names of units (`.service` implied); an instance is made from its template
    #[arg(required = true, value_name = "UNIT")]
    pub units: Vec<UnitArg>,
    /// Replace submitted units whose local file changed (only inactive ones)
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// Unit files, or names of units (`.service` implied); an instance is made from its template
    #[arg(required = true, value_name = "UNIT")]
    pub units: Vec<UnitArg>,
    /// Replace submitted units whose local file changed
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub block: BlockArgs,
}

#[derive(Debug, Clone, Args)]
pub struct UnitsArgs {
    /// Names of units (`.service` implied), or paths whose file names are unit names
    #[arg(required = true, value_name = "UNIT")]
    pub units: Vec<UnitArg>,
    #[command(flatten)]
    pub block: BlockArgs,
}

/// fleetctl's `--no-block` and `--block-attempts`.
#[derive(Debug, Clone, Args)]
pub struct BlockArgs {
    /// Do not wait until the units reached their state (`restart` still waits for the stop)
    #[arg(long, conflicts_with = "block_attempts")]
    pub no_block: bool,
    /// Give up waiting after N of fleetctl's half-second attempts; 0 waits without limit
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub block_attempts: u32,
}

/// Whether a command waits for the cluster, and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocking {
    No,
    Wait(Budget),
}

impl BlockArgs {
    fn blocking(&self) -> Blocking {
        if self.no_block {
            Blocking::No
        } else {
            Blocking::Wait(Budget::from_attempts(self.block_attempts))
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct MachineArgs {
    /// The machine: its ID, a unique prefix of it (as list-machines shows) or its hostname
    #[arg(value_name = "MACHINE")]
    pub machine: String,
    /// `drain` waits until the engine moved the machine's units (`undrain` never waits)
    #[command(flatten)]
    pub block: BlockArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CatArgs {
    /// The unit's name (`.service` implied)
    #[arg(value_name = "UNIT")]
    pub unit: UnitArg,
}

/// The flags every list command has.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Do not shorten machine IDs and hashes
    #[arg(short = 'l', long)]
    pub full: bool,
    /// Do not print the header line
    #[arg(long)]
    pub no_legend: bool,
    /// A table (text) or a JSON array of objects keyed by field name (json)
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

impl ListArgs {
    fn detail(&self) -> Detail {
        if self.full {
            Detail::Full
        } else {
            Detail::Short
        }
    }

    fn legend(&self) -> Legend {
        if self.no_legend {
            Legend::Hide
        } else {
            Legend::Show
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ListUnitsArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Print the list again whenever it changes, until interrupted
    #[arg(long)]
    pub watch: bool,
    /// Columns to print: unit, machine, active, sub, load, hash
    #[arg(long, default_value = fields::DEFAULT_UNIT_FIELDS, value_parser = fields::parse_fields::<UnitField>)]
    pub fields: Fields<UnitField>,
}

#[derive(Debug, Clone, Args)]
pub struct ListUnitFilesArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Print the list again whenever it changes, until interrupted
    #[arg(long)]
    pub watch: bool,
    /// Columns to print: unit, hash, dstate, state, target, desc, global, reason
    #[arg(long, default_value = fields::DEFAULT_UNIT_FILE_FIELDS, value_parser = fields::parse_fields::<UnitFileField>)]
    pub fields: Fields<UnitFileField>,
}

#[derive(Debug, Clone, Args)]
pub struct ListMachinesArgs {
    #[command(flatten)]
    pub list: ListArgs,
    /// Print the list again whenever it changes, until interrupted
    #[arg(long)]
    pub watch: bool,
    /// Columns to print: machine, ip, metadata, drained, hostname, version
    #[arg(long, default_value = fields::DEFAULT_MACHINE_FIELDS, value_parser = fields::parse_fields::<MachineField>)]
    pub fields: Fields<MachineField>,
}

/// How a command prints its results: for people, or for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// flottectl's exit codes are part of its interface: scripts and CI act on them. Usage errors
/// exit with 2, as clap does for those it finds (all of them: fields, endpoints and unit names
/// are parsed by clap).
pub mod exit {
    use std::process::ExitCode;

    /// Everything asked for was done, and every file checked is valid.
    pub const SUCCESS: ExitCode = ExitCode::SUCCESS;
    /// An error, a wait that timed out, or (for `check`) an invalid file.
    pub const FAILURE: ExitCode = ExitCode::FAILURE;
    /// A usage error clap cannot see: a service key is checked against flotte's key prefix,
    /// which comes from the configuration.
    pub fn usage() -> ExitCode {
        ExitCode::from(2)
    }
}

/// Where a command writes: results and fleetctl's progress messages to `out`, warnings to `err`.
pub struct Console<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    Wait(#[from] WaitError),
    #[error("unit {0} not found")]
    NotFound(UnitName),
    #[error("no machine `{0}` in the cluster (give its ID, an ID prefix or its hostname)")]
    MachineNotFound(String),
    #[error("machine `{arg}` is ambiguous: it names {}", .ids.join(", "))]
    AmbiguousMachine { arg: String, ids: Vec<String> },
    #[error("machine {0} is not drained")]
    NotDrained(String),
    #[error(
        "timed out waiting for machine {machine} to be drained: still on it: {}",
        .units.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    DrainTimedOut {
        machine: String,
        units: Vec<UnitName>,
    },
    #[error("cannot {action} unit {unit} in state {state}")]
    State {
        action: &'static str,
        unit: UnitName,
        state: String,
    },
    #[error("{unit} is a template: {action} its instances instead, such as {example}")]
    Template {
        unit: UnitName,
        action: &'static str,
        example: String,
    },
    #[error("the event stream of {endpoint} ended at revision {revision}: {message}")]
    EventsEnded {
        endpoint: String,
        revision: i64,
        message: String,
    },
    #[error("the event stream of {0} broke off without an end line (flotted went away?)")]
    EventsCut(String),
    #[error("{unit} runs on {} machines: give one as MACHINE:{unit}, MACHINE one of {}", .machines.len(), .machines.join(", "))]
    NeedsMachine {
        unit: UnitName,
        machines: Vec<String>,
    },
    #[error("the journal from {endpoint} broke off: {why}")]
    JournalCut { endpoint: String, why: String },
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    #[error("cannot start flottectl's async runtime: {0}")]
    Runtime(io::Error),
    #[error("cannot handle signals: {0}")]
    Signals(io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    ServiceKey(#[from] ServiceKeyError),
    #[error(transparent)]
    ServiceName(#[from] crate::unit::ServiceNameError),
    #[error("cannot announce service {service}: {why}")]
    AnnounceService { service: String, why: String },
}

impl CliError {
    /// The exit status this error ends flottectl with.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::ServiceKey(_) | CliError::ServiceName(_) => exit::usage(),
            _ => exit::FAILURE,
        }
    }

    /// True when the error is the reader closing the output (`flottectl ... | head`): the
    /// reader's choice, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        let io = match self {
            CliError::Output(e) | CliError::Wait(WaitError::Output(e)) => e,
            _ => return false,
        };
        io.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Runs a parsed command line on a runtime of its own.
pub fn run(cli: Cli, console: &mut Console) -> Result<ExitCode, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(run_async(cli, console))
}

/// Runs a parsed command line on the caller's runtime.
pub async fn run_async(cli: Cli, console: &mut Console<'_>) -> Result<ExitCode, CliError> {
    let client = || Client::new(&cli.global.client_settings());
    match &cli.command {
        Command::Check(args) => return Ok(check::run(args, console.out)?),
        Command::Version => {
            writeln!(
                console.out,
                "flottectl version {}",
                env!("CARGO_PKG_VERSION")
            )?;
        }
        Command::Plan(args) => return apply::plan(&client()?, console, args).await,
        Command::Apply(args) => return apply::apply(&client()?, console, args).await,
        Command::Submit(args) => submit::run(&client()?, console, args).await?,
        Command::Load(args) => transition::load(&client()?, console, args).await?,
        Command::Start(args) => transition::start(&client()?, console, args).await?,
        Command::Stop(args) => transition::stop(&client()?, console, args).await?,
        Command::Unload(args) => transition::unload(&client()?, console, args).await?,
        Command::Restart(args) => transition::restart(&client()?, console, args).await?,
        Command::Destroy(args) => destroy::run(&client()?, console, args).await?,
        Command::Cat(args) => cat::run(&client()?, console, args).await?,
        Command::Drain(args) => drain::drain(&client()?, console, args).await?,
        Command::Undrain(args) => drain::undrain(&client()?, console, args).await?,
        Command::ListUnits(args) => list::units(&client()?, console, args).await?,
        Command::ListUnitFiles(args) => list::unit_files(&client()?, console, args).await?,
        Command::ListMachines(args) => list::machines(&client()?, console, args).await?,
        Command::Events(args) => events::run(&client()?, console, args).await?,
        Command::Status(args) => status::run(&client()?, console, args).await?,
        Command::Journal(args) => journal::run(&client()?, console, args).await?,
        Command::Announce(args) => announce::run(console, args).await?,
        Command::Services(args) => services::run(console, args).await?,
    }
    console.out.flush()?;
    Ok(exit::SUCCESS)
}

/// The unit names of arguments, each once, in the order first given.
fn names(args: &[UnitArg]) -> Vec<UnitName> {
    let mut names: Vec<UnitName> = Vec::new();
    for arg in args {
        if !names.contains(&arg.name) {
            names.push(arg.name.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("flottectl").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        for args in [
            &["--endpoint", "http://10.0.0.2:8080", "list-units"][..],
            &["list-units", "--endpoint", "http://10.0.0.2:8080"],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.global.endpoint, "http://10.0.0.2:8080".parse().unwrap());
        }
    }

    #[test]
    fn usage_errors_are_clap_errors_with_exit_status_2() {
        for args in [
            &["list-units", "--fields", "unit,bogus"][..],
            &["start", "bad name"],
            &["start"],
            &["stop", "--no-block", "--block-attempts", "3", "a"],
            &["--endpoint", "unix://relative", "list-units"],
            &["--request-timeout", "0", "list-units"],
            &["cat", "a", "b"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn full_has_its_short_form() {
        let cli = parse(&["list-machines", "-l", "--no-legend"]).unwrap();
        let Command::ListMachines(args) = cli.command else {
            panic!("list-machines parses as list-machines");
        };
        assert_eq!(args.list.detail(), Detail::Full);
        assert_eq!(args.list.legend(), Legend::Hide);
    }

    #[test]
    fn request_timeouts_are_seconds_with_fractions() {
        assert_eq!(parse_seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
    }

    #[test]
    fn repeated_arguments_name_a_unit_once() {
        let args: Vec<UnitArg> = ["a", "units/a.service", "b"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let names: Vec<String> = names(&args).iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["a.service", "b.service"]);
    }
}
