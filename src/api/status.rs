//! `GET /flotte/v1/units/NAME/status[?machine=ID]`: what `systemctl status` shows of a unit,
//! on every machine it is placed on (or the one asked), each answered by that machine's own
//! flotted from its systemd and journal. This API answers for its own machine and forwards the
//! request to the others' (`backend::Peers`), in parallel; a machine that cannot be asked gets
//! an entry saying why, with its agent's last report from etcd.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use futures_util::future::join_all;

use crate::journal;
use crate::machine::MachineId;
use crate::registry::{MachineRecord, PlacementRecord, UnitStateRecord};
use crate::unit::{Requirements, UnitName};
use crate::wire::{self, param};

use super::ApiError;
use super::backend::{LocalMachine, peer_error};
use super::request::Params;
use super::routes::Api;

/// The `{name}` segment of a unit's flotte route, a valid unit name.
pub struct UnitInPath(pub UnitName);

impl<S: Send + Sync> FromRequestParts<S> for UnitInPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::NoRoute(format!("{}: {}", parts.uri.path(), e.body_text())))?;
        Ok(UnitInPath(UnitName::new(&raw)?))
    }
}

/// The `machine` query parameter, a full machine ID, at most once.
pub fn machine_param(params: &Params) -> Result<Option<MachineId>, ApiError> {
    params
        .only(param::MACHINE)?
        .map(|m| {
            MachineId::new(m).map_err(|e| ApiError::BadParameter {
                name: param::MACHINE,
                value: m.to_owned(),
                why: e.to_string(),
            })
        })
        .transpose()
}

/// Whether the request was forwarded by another flotted, which must then name this machine.
pub fn check_forwarded(
    headers: &HeaderMap,
    asked: Option<&MachineId>,
    local: Option<&LocalMachine>,
) -> Result<bool, ApiError> {
    if !headers.contains_key(wire::FORWARDED_HEADER) {
        return Ok(false);
    }
    match (asked, local) {
        (Some(asked), Some(here)) if asked == &here.id => Ok(true),
        (Some(asked), Some(here)) => Err(ApiError::Misdirected {
            asked: asked.clone(),
            here: here.id.clone(),
        }),
        // Forwarded to an API without a machine, or without naming one: nobody to answer.
        (asked, _) => Err(ApiError::BadParameter {
            name: param::MACHINE,
            value: asked.map(ToString::to_string).unwrap_or_default(),
            why: "a forwarded request names the machine that answers it".into(),
        }),
    }
}

/// The machines a status shows: the one asked, or every machine the unit is placed on, in ID
/// order.
pub fn machines_to_ask(
    placement: Option<&PlacementRecord>,
    asked: Option<&MachineId>,
) -> Vec<MachineId> {
    match asked {
        Some(m) => vec![m.clone()],
        None => {
            let mut ids = placement.map(|p| p.machines.clone()).unwrap_or_default();
            ids.sort();
            ids.dedup();
            ids
        }
    }
}

pub async fn get(
    State(api): State<Api>,
    UnitInPath(name): UnitInPath,
    headers: HeaderMap,
    params: Params,
) -> Result<Json<wire::UnitStatus>, ApiError> {
    let asked = machine_param(&params)?;
    check_forwarded(&headers, asked.as_ref(), api.local.as_ref())?;
    let Some((record, _)) = api.registry.unit(&name).await? else {
        return Err(ApiError::UnitNotFound(name));
    };
    let (file, placement, reason, machines, states) = tokio::try_join!(
        api.registry.content(&record.hash),
        api.registry.placement(&name),
        api.registry.reason(&name),
        api.registry.machines(),
        api.registry.states_of(&name),
    )?;
    let machines: BTreeMap<MachineId, MachineRecord> =
        machines.into_iter().map(|m| (m.id.clone(), m)).collect();
    let states: BTreeMap<MachineId, UnitStateRecord> =
        states.into_iter().map(|((_, m), s)| (m, s)).collect();
    let global = file.as_ref().is_some_and(|f| {
        Requirements::from_unit(&name, f).is_ok_and(|checked| checked.requirements.global)
    });
    let ask = machines_to_ask(placement.as_ref(), asked.as_ref());
    let entries = join_all(
        ask.iter()
            .map(|id| machine_status(&api, &name, id, machines.get(id), states.get(id))),
    )
    .await;
    Ok(Json(wire::UnitStatus {
        name: name.to_string(),
        description: file
            .as_ref()
            .and_then(|f| f.description())
            .unwrap_or_default()
            .to_owned(),
        desired_state: record.desired.to_string(),
        global,
        reason: reason.map(|r| r.reason).unwrap_or_default(),
        machines: entries,
    }))
}

/// One machine's entry: from this machine's systemd, or from the machine's own flotted.
async fn machine_status(
    api: &Api,
    name: &UnitName,
    id: &MachineId,
    record: Option<&MachineRecord>,
    state: Option<&UnitStateRecord>,
) -> wire::MachineStatus {
    if let Some(local) = api.local.as_ref().filter(|l| &l.id == id) {
        return local_status(local, name).await;
    }
    let reported = reported(id, record, state);
    let Some(record) = record else {
        return wire::MachineStatus {
            unreachable: format!("machine {id} is not registered in the cluster"),
            ..reported
        };
    };
    let asked = async {
        let client = api.peers.client(record)?;
        let status = client
            .unit_status(name, Some(id.as_str()))
            .await
            .map_err(|e| peer_error(record, e))?;
        status
            .machines
            .into_iter()
            .find(|m| m.machine_id == id.as_str())
            .ok_or_else(|| ApiError::Peer {
                machine: id.clone(),
                hostname: record.hostname.clone(),
                why: "its answer has no entry for it".into(),
            })
    };
    match asked.await {
        Ok(entry) => entry,
        Err(e) => wire::MachineStatus {
            unreachable: e.to_string(),
            ..reported
        },
    }
}

/// What etcd knows of the unit on `id`: its agent's last report.
fn reported(
    id: &MachineId,
    record: Option<&MachineRecord>,
    state: Option<&UnitStateRecord>,
) -> wire::MachineStatus {
    wire::MachineStatus {
        machine_id: id.to_string(),
        hostname: record.map(|r| r.hostname.clone()).unwrap_or_default(),
        load_state: state.map(|s| s.load.to_string()).unwrap_or_default(),
        active_state: state.map(|s| s.active.to_string()).unwrap_or_default(),
        sub_state: state.map(|s| s.sub.clone()).unwrap_or_default(),
        ..wire::MachineStatus::default()
    }
}

/// The unit on this machine: systemd's properties and the journal's last lines, read at once.
async fn local_status(local: &LocalMachine, name: &UnitName) -> wire::MachineStatus {
    let (properties, journal) = tokio::join!(
        local.systemd.unit_properties(name),
        journal::tail(local.journal, name, wire::JOURNAL_STATUS_LINES),
    );
    let mut entry = wire::MachineStatus {
        machine_id: local.id.to_string(),
        hostname: local.hostname.clone(),
        ..wire::MachineStatus::default()
    };
    match journal {
        Ok(lines) => entry.journal = lines,
        Err(e) => entry.journal_error = e.to_string(),
    }
    let p = match properties {
        Ok(p) => p,
        Err(e) => {
            entry.unreachable = format!("cannot ask systemd: {e}");
            return entry;
        }
    };
    entry.load_state = p.load.to_string();
    entry.active_state = p.active.to_string();
    entry.sub_state = p.sub.clone();
    entry.description = p.description.clone();
    entry.fragment_path = p.fragment_path.clone();
    entry.since = p.timestamps.since(&p.active);
    entry.active_enter_timestamp = p.timestamps.active_enter;
    entry.active_exit_timestamp = p.timestamps.active_exit;
    entry.inactive_enter_timestamp = p.timestamps.inactive_enter;
    entry.inactive_exit_timestamp = p.timestamps.inactive_exit;
    if let Some(s) = p.service {
        entry.result = s.result;
        entry.main_pid = s.main_pid;
        entry.main_process = process_name(s.main_pid);
        entry.memory_bytes = s.memory_bytes;
        entry.tasks = s.tasks;
        entry.tasks_max = s.tasks_max;
        entry.cpu_nsec = s.cpu_nsec;
    }
    entry
}

/// A process's command name, as `systemctl status` shows beside the main PID; empty when it
/// is gone or there is none.
fn process_name(pid: u32) -> String {
    if pid == 0 {
        return String::new();
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> MachineId {
        MachineId::new(&c.to_string().repeat(32)).unwrap()
    }

    #[test]
    fn a_status_asks_the_machine_named_or_every_machine_the_unit_is_placed_on() {
        let placed = PlacementRecord {
            machines: vec![id('c'), id('a'), id('b')],
        };
        for (placement, asked, expected) in [
            (Some(&placed), None, vec![id('a'), id('b'), id('c')]),
            (Some(&placed), Some(id('b')), vec![id('b')]),
            // Asked of a machine it is not placed on: that machine says what it knows.
            (Some(&placed), Some(id('d')), vec![id('d')]),
            (None, None, vec![]),
            (None, Some(id('a')), vec![id('a')]),
        ] {
            assert_eq!(
                machines_to_ask(placement, asked.as_ref()),
                expected,
                "{asked:?}"
            );
        }
    }

    #[test]
    fn an_entry_without_an_answer_shows_the_agents_last_report() {
        let state = UnitStateRecord {
            hash: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
            current: crate::unit::Target::Launched,
            load: "loaded".into(),
            active: "active".into(),
            sub: "running".into(),
            message: None,
            started: 0,
        };
        let entry = reported(&id('a'), None, Some(&state));
        assert_eq!(
            (
                entry.machine_id.as_str(),
                entry.load_state.as_str(),
                entry.active_state.as_str(),
                entry.sub_state.as_str()
            ),
            (id('a').as_str(), "loaded", "active", "running")
        );
        assert!(entry.journal.is_empty());
    }
}
