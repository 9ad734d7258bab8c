//! `status`: what runs, as a table of etcd and each host's systemd and flotted, then what
//! flottectl lists.

use std::path::Path;

use super::flottectl::{self, Flottectl};
use super::{Health, QuickstartError, State, health};
use crate::cli::fields::{self, Detail};
use crate::cli::{Console, table};

/// What runs, as a table: etcd and each host with their PIDs, and what is gone.
pub fn describe(state: &State, dead: &[String]) -> String {
    let cluster = &state.cluster;
    let mut rows = vec![
        vec!["PART".to_owned(), "PID".to_owned(), "ADDRESS".to_owned()],
        vec![
            "etcd".to_owned(),
            cluster.etcd.pid.to_string(),
            cluster.etcd.client_url.clone(),
        ],
    ];
    for m in &cluster.members {
        rows.push(vec![
            format!("{} systemd", m.host.name),
            m.host.pid.to_string(),
            fields::machine_id(m.host.machine_id.as_str(), Detail::Short),
        ]);
        rows.push(vec![
            format!("{} flotted", m.host.name),
            m.flotted_pid.map_or("-".to_owned(), |p| p.to_string()),
            format!("unix://{}", m.socket.display()),
        ]);
    }
    let mut text = table::render(&rows);
    for part in dead {
        text.push_str(&format!("gone: {part}\n"));
    }
    text
}

/// Prints what runs; returns the health so the caller can set its exit status.
pub async fn status(
    state_dir: &Path,
    console: &mut Console<'_>,
) -> Result<Health, QuickstartError> {
    let health = health(state_dir)?;
    match &health {
        Health::Down => writeln!(
            console.out,
            "No local cluster runs (no state in {}).",
            state_dir.display()
        )?,
        Health::Up(state) => {
            writeln!(
                console.out,
                "The local cluster in {} is up.",
                state_dir.display()
            )?;
            console.out.write_all(describe(state, &[]).as_bytes())?;
            flottectl::show(&Flottectl::new(&state.cluster), console).await?;
        }
        Health::Stale(state, dead) => {
            writeln!(
                console.out,
                "The local cluster in {} is only partly up: `packaging/local-cluster down` cleans up, `up` starts it anew.",
                state_dir.display()
            )?;
            console.out.write_all(describe(state, dead).as_bytes())?;
        }
    }
    Ok(health)
}
