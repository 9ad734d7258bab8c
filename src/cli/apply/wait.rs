//! Waiting for a step of an apply to be done: each of its units read from the API and judged
//! by `rollout::progress`, then the API's change long poll (and, for units with a service
//! check, the catalog's blocking query) awaited before reading again: no polling. A unit
//! counts as done once it stayed so for `healthy_for`; one that fails, or a step that takes
//! longer than `step_timeout`, stops the apply.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::select_all;
use tokio::time::Instant;

use super::super::client::Client;
use super::dir::DesiredUnit;
use super::rollout::{self, Observed, Progress, Report, Step};
use crate::unit::{ServiceDeclaration, UnitName};
use crate::wire;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub healthy_for: Duration,
    pub step_timeout: Duration,
}

/// One unit of the step and what is known of it.
struct Watched<'a> {
    unit: &'a DesiredUnit,
    hash: String,
    /// Its declared service, when it has a check.
    service: Option<String>,
    shown: String,
}

type Wake<'a> = Pin<Box<dyn Future<Output = Option<(String, wire::ServiceInstances)>> + 'a>>;

/// When systemd last entered `active` for each of `names` on each machine where it is active
/// now (microseconds of that machine's clock), read before they are replaced. A unit whose
/// status cannot be read has no entry: its restart is then judged by its state alone.
pub async fn entered_active(
    client: &Client,
    names: &[UnitName],
) -> BTreeMap<(UnitName, String), u64> {
    let mut since = BTreeMap::new();
    for name in names {
        let Ok(status) = client.unit_status(name, None).await else {
            continue;
        };
        for m in status.machines {
            if m.active_state == "active" && m.active_enter_timestamp != 0 {
                since.insert((name.clone(), m.machine_id), m.active_enter_timestamp);
            }
        }
    }
    since
}

/// Whether each machine in `before` of `name` entered `active` again since.
async fn restarted(
    client: &Client,
    name: &UnitName,
    before: &BTreeMap<(UnitName, String), u64>,
) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let status = client.unit_status(name, None).await.ok();
    for ((unit, machine), at) in before {
        if unit != name {
            continue;
        }
        let now = (status.iter())
            .flat_map(|s| s.machines.iter())
            .find(|m| m.machine_id == *machine)
            .map_or(0, |m| m.active_enter_timestamp);
        out.insert(machine.clone(), now > *at);
    }
    out
}

pub async fn step_done(
    client: &Client,
    out: &mut dyn Write,
    step: &Step,
    desired: &BTreeMap<&UnitName, &DesiredUnit>,
    before: &BTreeMap<(UnitName, String), u64>,
    settings: &Settings,
    hosts: &BTreeMap<String, String>,
) -> Result<(), String> {
    if matches!(step, Step::Destroy(_)) {
        return Ok(());
    }
    let mut watched: Vec<Watched> = (step.units().iter())
        .filter_map(|n| desired.get(n))
        .map(|unit| Watched {
            unit,
            hash: unit.file.hash().to_string(),
            service: ServiceDeclaration::from_unit(&unit.name, &unit.file)
                .ok()
                .flatten()
                .filter(|s| s.check.is_some())
                .map(|s| s.name.to_string()),
            shown: String::new(),
        })
        .collect();
    let deadline = Instant::now() + settings.step_timeout;
    let failure = |e: super::super::client::ClientError| e.to_string();
    let mut since = client
        .changes(0, Duration::from_secs(1))
        .await
        .map_err(failure)?;
    let mut catalog: BTreeMap<String, wire::ServiceInstances> = BTreeMap::new();
    for service in watched.iter().filter_map(|w| w.service.clone()) {
        let instances = client
            .service_instances(&service, 0, Duration::from_secs(1))
            .await
            .map_err(failure)?;
        catalog.insert(service, instances);
    }
    let mut ready_since: Option<Instant> = None;
    loop {
        let mut all_done = true;
        for w in watched.iter_mut() {
            let name = &w.unit.name;
            let (placed, reason) = match client.unit(name).await.map_err(failure)? {
                Some(u) => (u.machine_ids, u.reason),
                None => return Err(format!("{name} was destroyed meanwhile")),
            };
            let states = client.unit_states(Some(name)).await.map_err(failure)?;
            let instances = w.service.as_ref().and_then(|s| catalog.get(s));
            let mut reports: Vec<Report> = states
                .iter()
                .map(|s| Report {
                    machine: s.machine_id.clone(),
                    hash: s.hash.clone(),
                    active: s.active.clone(),
                    message: s.message.clone(),
                    health: instances.and_then(|i| {
                        (i.instances.iter())
                            .find(|i| i.unit == *name && i.machine.as_str() == s.machine_id)
                            .map(|i| i.health.clone())
                    }),
                    restarted: true,
                })
                .collect();
            let observed = |reports: &[Report]| {
                rollout::progress(&Observed {
                    desired: w.unit.state,
                    hash: &w.hash,
                    placed: &placed,
                    reason: &reason,
                    reports,
                    checked: w.service.is_some(),
                })
            };
            let mut progress = observed(&reports);
            // Done by its reports: whether systemd really restarted it is asked only now.
            if progress == Progress::Done && before.keys().any(|(u, _)| u == name) {
                let again = restarted(client, name, before).await;
                for r in reports.iter_mut() {
                    r.restarted = again.get(&r.machine).copied().unwrap_or(true);
                }
                progress = observed(&reports);
            }
            let text = match &progress {
                Progress::Done if w.unit.state == crate::unit::DesiredState::Inactive => {
                    "submitted, inactive".to_owned()
                }
                Progress::Done => format!("{} on {}", done_text(w), machines(&placed, hosts)),
                Progress::Waiting(what) => what.clone(),
                Progress::Failed(why) => why.clone(),
            };
            let text = labelled(text, hosts);
            if text != w.shown {
                let _ = writeln!(out, "      {name}: {text}");
                let _ = out.flush();
                w.shown = text;
            }
            match progress {
                Progress::Done => {}
                Progress::Waiting(_) => all_done = false,
                Progress::Failed(why) => return Err(labelled(format!("{name} {why}"), hosts)),
            }
        }
        let now = Instant::now();
        if all_done {
            let since_ready = *ready_since.get_or_insert(now);
            if now >= since_ready + settings.healthy_for {
                return Ok(());
            }
        } else {
            // A unit that was ready and is not any more (restarted under its new file after
            // a first report, say) starts its time over.
            ready_since = None;
        }
        if now >= deadline {
            let waiting: Vec<String> = (watched.iter())
                .map(|w| format!("{}: {}", w.unit.name, w.shown))
                .collect();
            return Err(format!(
                "not done after {:?} (--step-timeout): {}",
                settings.step_timeout,
                waiting.join("; ")
            ));
        }
        let until = match ready_since {
            Some(t) => (t + settings.healthy_for).min(deadline),
            None => deadline,
        };
        let wait = until.saturating_duration_since(now);
        let mut wakes: Vec<Wake> = Vec::new();
        wakes.push(Box::pin(async move {
            tokio::time::sleep(wait).await;
            None
        }));
        let changes = client.changes(since, wait);
        wakes.push(Box::pin(async {
            match changes.await {
                Ok(r) => Some((
                    String::new(),
                    wire::ServiceInstances {
                        index: r,
                        ..Default::default()
                    },
                )),
                // Read again, which reports the error if it persists.
                Err(_) => None,
            }
        }));
        for (service, instances) in &catalog {
            let (service, index) = (service.clone(), instances.index);
            wakes.push(Box::pin(async move {
                client
                    .service_instances(&service, index, wait)
                    .await
                    .ok()
                    .map(|i| (service, i))
            }));
        }
        let (woke, _, _) = select_all(wakes).await;
        match woke {
            Some((service, instances)) if service.is_empty() => since = instances.index,
            Some((service, instances)) => {
                catalog.insert(service, instances);
            }
            None => {}
        }
    }
}

fn done_text(w: &Watched) -> &'static str {
    match (w.unit.state, w.service.is_some()) {
        (crate::unit::DesiredState::Launched, true) => "running and healthy",
        (crate::unit::DesiredState::Launched, false) => "running",
        (crate::unit::DesiredState::Loaded, _) => "loaded",
        (crate::unit::DesiredState::Inactive, _) => "inactive",
    }
}

/// `text` with each machine ID written as its short form and hostname.
fn labelled(mut text: String, hosts: &BTreeMap<String, String>) -> String {
    for id in hosts.keys() {
        if text.contains(id.as_str()) {
            text = text.replace(id.as_str(), &machines(std::slice::from_ref(id), hosts));
        }
    }
    text
}

fn machines(ids: &[String], hosts: &BTreeMap<String, String>) -> String {
    if ids.is_empty() {
        return "no machine".into();
    }
    ids.iter()
        .map(|m| {
            let short: String = m.chars().take(8).collect();
            match hosts.get(m) {
                Some(h) if !h.is_empty() => format!("{short} ({h})"),
                _ => short,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
