//! The example units of `units/`: which to submit and start, started through flottectl, then
//! a moment for systemd to run them.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::flottectl::Flottectl;
use super::{HOSTS, QuickstartError, io_error};
use crate::cli::client::{Client, ClientError};
use crate::cli::{CliError, Console};
use crate::isolated::wait_for;
use crate::systemd::ActiveState;
use crate::unit::UnitName;

/// The instances started of each template in `units/`.
const INSTANCES: &[&str] = &["1", "2", "3"];

/// How long `up` waits for the example units: fleetctl's half-second attempts, so 2 minutes.
const START_ATTEMPTS: u32 = 240;

/// How long `up` lets systemd take to run the started examples before listing them.
const SETTLE: Duration = Duration::from_secs(30);

/// The example that fits on no host of the local cluster (`Memory=` over every capacity in
/// `HOSTS`): `up` asks for it without waiting, so that `list-unit-files` shows its reason.
pub const FITS_NOWHERE: &str = "batch.service";

/// What `up` does with the files of the units directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Examples {
    /// Every unit file, templates too.
    pub submit: Vec<String>,
    /// Started and waited for: every unit but templates and `FITS_NOWHERE`, and instances 1
    /// to 3 of each template.
    pub start: Vec<String>,
    /// Started without waiting (`--no-block`): `FITS_NOWHERE`, if there.
    pub start_no_block: Vec<String>,
}

/// What `up` submits and starts, from the file names of the units directory.
pub fn examples(file_names: &[String]) -> Examples {
    let mut units: Vec<&String> = file_names
        .iter()
        .filter(|n| UnitName::new(n).is_ok())
        .collect();
    units.sort();
    let mut start = Vec::new();
    let mut start_no_block = Vec::new();
    for name in &units {
        match UnitName::new(name) {
            Ok(unit) if unit.is_template() => start.extend(
                INSTANCES
                    .iter()
                    .filter_map(|i| unit.instantiate(i).ok())
                    .map(|u| u.to_string()),
            ),
            _ if name.as_str() == FITS_NOWHERE => start_no_block.push(name.to_string()),
            _ => start.push(name.to_string()),
        }
    }
    Examples {
        submit: units.into_iter().cloned().collect(),
        start,
        start_no_block,
    }
}

/// `flottectl submit` of every example and `flottectl start` of the units to run, once the
/// API lists every machine; then waits for systemd to run them.
pub(super) async fn start(
    flottectl: &Flottectl,
    units: &Path,
    console: &mut Console<'_>,
) -> Result<(), QuickstartError> {
    let client = flottectl.client()?;
    wait_for_api(&client).await?;
    let names: Vec<String> = fs::read_dir(units)
        .map_err(io_error(format!("reading {}", units.display())))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let Examples {
        submit,
        start,
        start_no_block,
    } = examples(&names);
    // Paths as typed on a command line, which the transcript shows.
    let paths = |names: &[String]| {
        names
            .iter()
            .map(|n| units.join(n).to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    let submit = [vec!["submit".to_owned()], paths(&submit)].concat();
    flottectl.run(&submit, console).await?;
    let start = [
        vec![
            "start".to_owned(),
            "--block-attempts".to_owned(),
            START_ATTEMPTS.to_string(),
        ],
        paths(&start),
    ]
    .concat();
    flottectl.run(&start, console).await?;
    if !start_no_block.is_empty() {
        let start = [
            vec!["start".to_owned(), "--no-block".to_owned()],
            paths(&start_no_block),
        ]
        .concat();
        flottectl.run(&start, console).await?;
    }
    settle(&client, SETTLE).await.map_err(CliError::from)?;
    Ok(())
}

/// Waits, at most `deadline`, until systemd runs every unit placed: flottectl's "launched" is
/// fleet's, the agent started the unit, and systemd may take a moment more to run it. The
/// examples are long-running services, and what `up` lists after should show them running; if
/// one does not, it shows as it is.
async fn settle(client: &Client, deadline: Duration) -> Result<(), ClientError> {
    let end = tokio::time::Instant::now() + deadline;
    let mut revision = client.changes(0, Duration::ZERO).await?;
    loop {
        let states = client.unit_states(None).await?;
        if states.iter().all(|s| s.active == ActiveState::Active) {
            return Ok(());
        }
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        revision = client.changes(revision, left).await?;
    }
}

/// Waits until host-1's API answers with every machine: flotted answers 503 until its agent
/// registered, and the others may register a moment later.
async fn wait_for_api(client: &Client) -> Result<(), QuickstartError> {
    let endpoint = client.endpoint().to_owned();
    wait_for(
        Duration::from_secs(30),
        || {
            format!(
                "flotted's API at {endpoint} did not list all {} machines",
                HOSTS.len()
            )
        },
        || async {
            let machines = client.machines().await.ok()?;
            (machines.len() == HOSTS.len()).then_some(())
        },
    )
    .await?;
    Ok(())
}
