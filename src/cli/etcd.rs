//! How `announce` and `services` reach etcd, the two commands that talk to it directly instead
//! of to flotted's API: with this host's flotted settings, read as flotted reads them (its
//! configuration file, then `FLOTTE_*` variables), so that a sidekick unit needs no etcd address
//! or credentials of its own.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use super::CliError;
use crate::config;
use crate::machine::MachineId;
use crate::registry::{EtcdSettings, Keys, RegistryError};

#[derive(Debug, Clone, Args)]
pub struct EtcdArgs {
    /// flotted's configuration file, for its etcd settings [default: $FLOTTE_CONFIG, else
    /// /etc/flotte/flotted.conf if present; FLOTTE_ETCD_* variables override it]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What these commands take from flotted's settings.
pub struct HostSettings {
    pub etcd: EtcdSettings,
    pub keys: Keys,
    /// This machine, when the settings or `/etc/machine-id` name it.
    pub machine_id: Option<MachineId>,
}

/// Reads flotted's settings from the file and the process environment; stray `FLOTTE_*`
/// variables are warned about on `err`, as flotted does.
pub fn host_settings(args: &EtcdArgs, err: &mut dyn Write) -> Result<HostSettings, CliError> {
    let raw = config::read_host_layers(args.config.clone(), |warning| {
        writeln!(err, "flottectl: warning: {warning}").map_err(CliError::from)
    })?;
    let etcd = config::resolve_etcd(&raw)?;
    let keys = Keys::new(&etcd.prefix).map_err(RegistryError::from)?;
    // Who announced a key is extra information: a machine without an ID still announces.
    let machine_id = config::resolve_machine_id(&raw, Path::new(config::MACHINE_ID_FILE)).ok();
    Ok(HostSettings {
        etcd,
        keys,
        machine_id,
    })
}
