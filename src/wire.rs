//! What the API server and flottectl's client must agree on: the JSON of fleet's v1 HTTP API
//! (and flotte's additions to it), fleet's page token, and the API's paths and query
//! parameters. Field names and omission rules follow fleet's `schema/v1-gen.go`: empty
//! strings, lists and maps are left out, never sent as null. flotte's extra fields are ones a
//! fleet client ignores.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::machine::MachineId;
use crate::systemd::{ActiveState, LoadState};
use crate::unit::{DesiredState, UnitName};

fn is_empty(s: &str) -> bool {
    s.is_empty()
}

fn is_false(b: &bool) -> bool {
    !b
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(
        rename = "primaryIP",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub primary_ip: String,
    /// flotte: the flotted version that registered the machine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// flotte: the machine's hostname.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// flotte: drained (`PUT /flotte/v1/drains/ID`): no normal unit is placed on it. Left out
    /// when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drained: bool,
    /// flotte: what units' requests may add up to there; left out when the machine reports
    /// none (a flotted before capacities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::resources::Resources>,
    /// flotte: the requests (`Memory=`, `CPU=`) of the units placed there, together.
    #[serde(default, skip_serializing_if = "crate::resources::Resources::is_zero")]
    pub requested: crate::resources::Resources,
    /// flotte: capacity minus requested (none where overcommitted); left out with capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<crate::resources::Resources>,
    /// flotte: how many units are placed there (each global unit counts).
    #[serde(default, skip_serializing_if = "is_zero_count")]
    pub units: u64,
}

fn is_zero_count(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachinePage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<Machine>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitOption {
    #[serde(default, skip_serializing_if = "is_empty")]
    pub section: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<UnitOption>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desired_state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub current_state: String,
    #[serde(
        rename = "machineID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub machine_id: String,
    /// flotte: why the unit is placed nowhere.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// flotte: every machine the unit is placed on, many for a global unit (`machineID`
    /// holds the first).
    #[serde(rename = "machineIDs", default, skip_serializing_if = "Vec::is_empty")]
    pub machine_ids: Vec<String>,
    /// flotte: the unit runs on every machine (`Global=true` in its `[X-Fleet]` section).
    #[serde(default, skip_serializing_if = "is_false")]
    pub global: bool,
    /// flotte: how many times a start was asked of it while launched and stopped on a machine
    /// (its agents start it again for each); left out while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_request: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitPage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitState {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    #[serde(
        rename = "machineID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub systemd_load_state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub systemd_active_state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub systemd_sub_state: String,
    /// flotte: systemd's message when it refused the unit or an action on it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// flotte: the unit's start request (`Unit::start_request`) its machine last acted on;
    /// left out while 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_request: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatePage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<UnitState>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

impl From<crate::unit::UnitOption> for UnitOption {
    fn from(o: crate::unit::UnitOption) -> Self {
        UnitOption {
            section: o.section,
            name: o.name,
            value: o.value,
        }
    }
}

impl From<UnitOption> for crate::unit::UnitOption {
    fn from(o: UnitOption) -> Self {
        crate::unit::UnitOption {
            section: o.section,
            name: o.name,
            value: o.value,
        }
    }
}

/// flotte: the answer of `GET /flotte/v1/changes?since=REV&timeout=SECS`, the etcd revision
/// of the latest change to units, placements, reasons or unit states. It is greater than
/// `since` unless the wait timed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub revision: i64,
}

/// The longest `GET /flotte/v1/changes` holds its answer back: longer would outlive proxies' and
/// clients' idle timeouts. The server caps a longer `timeout` to it; clients ask for no more.
pub const CHANGES_MAX_WAIT: Duration = Duration::from_secs(60);

/// flotte: one line of `GET /flotte/v1/events` (newline-delimited JSON): `revision` is the
/// etcd revision of the change, and `type` with its fields says what changed. A stream's first
/// line is `started` (the revision events follow), its last, when the server ends it, `ended`.
/// Every event of one revision is sent before the stream ends, but for `ended` with reason
/// `lagged`: resuming from its revision may repeat events of the revision that was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub revision: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event says; `type` in its JSON, the names below in snake case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The stream follows every change after `revision` (the `since` asked for, or etcd's
    /// revision when the stream began).
    Started,
    /// A unit was submitted, or its content replaced (`replaced`).
    Submitted {
        unit: UnitName,
        desired: DesiredState,
        #[serde(default, skip_serializing_if = "is_false")]
        replaced: bool,
    },
    DesiredStateChanged {
        unit: UnitName,
        from: DesiredState,
        to: DesiredState,
    },
    /// `start` was asked of a launched unit that was not running: its machine starts it
    /// again. `request` counts such requests for the unit.
    StartRequested {
        unit: UnitName,
        request: u64,
    },
    /// The engine placed a unit (on every machine, for a global unit), or moved it.
    Placed {
        unit: UnitName,
        machines: Vec<MachineId>,
    },
    /// The unit is placed nowhere any more (no longer wanted, destroyed, or unplaceable).
    Unplaced {
        unit: UnitName,
    },
    /// The engine found nowhere to run a unit that should run, and says why.
    Unplaceable {
        unit: UnitName,
        reason: String,
    },
    /// A machine's agent reported a new systemd state of a unit.
    StateChanged {
        unit: UnitName,
        machine: MachineId,
        load: LoadState,
        active: ActiveState,
        sub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A machine no longer reports a state of the unit (it left the machine, or the machine
    /// is gone).
    StateRemoved {
        unit: UnitName,
        machine: MachineId,
    },
    Destroyed {
        unit: UnitName,
    },
    MachineJoined {
        machine: MachineId,
        ip: String,
        hostname: String,
    },
    /// A machine's address, hostname or metadata (configured or overridden) changed, or it
    /// was drained or undrained.
    MachineChanged {
        machine: MachineId,
    },
    /// A machine's registration ended: its lease expired (or was revoked at shutdown).
    MachineLost {
        machine: MachineId,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        hostname: String,
    },
    /// The engine's leader changed; `leader` is left out while no engine leads.
    LeaderChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<MachineId>,
    },
    /// The server ended the stream; resume with `since` = this line's revision.
    Ended {
        reason: EndReason,
        message: String,
    },
    /// A type this version of flotte does not know (from a newer server).
    #[serde(other)]
    Unknown,
}

/// Why the server ended an event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The client read too slowly: the server buffers only so many events per client.
    Lagged,
    /// etcd compacted the history the stream had still to send.
    Compacted,
    /// flotted is shutting down.
    Shutdown,
    /// etcd failed in a way the stream cannot go on from.
    Failed,
}

/// flotte: what `GET /flotte/v1/units/NAME/status[?machine=ID]` answers: the unit as the
/// cluster has it, and one entry per machine it is placed on (only `machine` when given), in
/// machine ID order. A unit placed nowhere has no entries, and `reason` says why when the
/// engine found nowhere to run it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatus {
    pub name: String,
    /// The unit file's `Description=`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desired_state: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub global: bool,
    /// Why the unit is placed nowhere (the engine's reason); empty while it is placed, or
    /// while nothing asks it to run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<MachineStatus>,
}

/// One machine's view of a unit, from its own systemd and journal. When the machine could
/// not be asked, `unreachable` says why and the states are its agent's last report (from
/// etcd), the other fields left out. Timestamps are microseconds since the Unix epoch, left
/// out when 0 (never); counters are left out when systemd does not know them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    #[serde(rename = "machineID")]
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub load_state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub active_state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sub_state: String,
    /// systemd's `Description` (the unit's name when its file has none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The unit file systemd loaded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fragment_path: String,
    /// Since when the unit is in its active state, as `systemctl status` shows it (one of
    /// the four timestamps below, chosen by the state).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub active_enter_timestamp: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub active_exit_timestamp: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_enter_timestamp: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inactive_exit_timestamp: u64,
    /// A service's `Result` (`success`, `exit-code`, `signal`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result: String,
    #[serde(rename = "mainPID", default, skip_serializing_if = "is_zero_u32")]
    pub main_pid: u32,
    /// The main process's command name (`/proc/PID/comm`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub main_process: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_nsec: Option<u64>,
    /// The unit's last journal lines (`JOURNAL_STATUS_LINES`, `short` output), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<String>,
    /// Why `journal` is missing: the machine has no journal, or it could not be read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub journal_error: String,
    /// Why the machine could not be asked (its flotted is unreachable, say).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unreachable: String,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// How many journal lines a status shows, as `systemctl status` does.
pub const JOURNAL_STATUS_LINES: u32 = 10;
/// `lines` of a journal request when it gives none.
pub const JOURNAL_DEFAULT_LINES: u32 = 10;
/// The most `lines` a journal request may ask for.
pub const JOURNAL_MAX_LINES: u32 = 1_000_000;

/// journalctl's output formats the journal route offers (`output=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalOutput {
    /// A syslog-style line per entry: date, host, process, message.
    #[default]
    Short,
    /// The messages alone.
    Cat,
    /// One JSON object per entry (journalctl's fields), one a line.
    Json,
}

impl JournalOutput {
    pub const ALL: [JournalOutput; 3] = [
        JournalOutput::Short,
        JournalOutput::Cat,
        JournalOutput::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JournalOutput::Short => "short",
            JournalOutput::Cat => "cat",
            JournalOutput::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<JournalOutput> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The body's content type: text lines, or newline-delimited JSON.
    pub fn content_type(self) -> &'static str {
        match self {
            JournalOutput::Short | JournalOutput::Cat => "text/plain; charset=utf-8",
            JournalOutput::Json => "application/x-ndjson",
        }
    }
}

/// What `GET /flotte/v1/units/NAME/journal` is asked: which machine's journal (the unit's only
/// machine when `None`), how many past lines, whether to follow new ones, in which format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalQuery {
    pub machine: Option<String>,
    pub lines: u32,
    pub follow: bool,
    pub output: JournalOutput,
}

impl Default for JournalQuery {
    fn default() -> Self {
        JournalQuery {
            machine: None,
            lines: JOURNAL_DEFAULT_LINES,
            follow: false,
            output: JournalOutput::Short,
        }
    }
}

/// A line the API adds to a journal's body, beside journalctl's own: a note (what journalctl
/// said on its standard error, such as that there are no journal files), or, last, why a
/// followed journal ended (its machine went away, flotted shut down). In `short` and `cat`
/// output it is the text line `-- MESSAGE --`, as journalctl writes its own notes
/// (`-- No entries --`); in `json` output the object `{"flotte":"note"|"ended","message":...}`,
/// which no journal entry has (their fields are upper case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalNote {
    pub flotte: NoteKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    Note,
    Ended,
}

impl JournalNote {
    /// The note as a line of `output`, newline included.
    pub fn line(&self, output: JournalOutput) -> String {
        match output {
            JournalOutput::Short | JournalOutput::Cat => format!("-- {} --\n", self.message),
            JournalOutput::Json => {
                let mut json = serde_json::to_string(self).expect("notes always serialize");
                json.push('\n');
                json
            }
        }
    }
}

/// `{"error":{"code":N,"message":"..."}}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: u16,
    pub message: String,
}

/// fleet's page size.
pub const PAGE_SIZE: u16 = 100;

/// fleet's `nextPageToken`: URL-safe base64 of 4 bytes, the page size then the page number
/// (from 1), each a little-endian u16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    pub limit: u16,
    pub page: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value of nextPageToken query parameter")]
pub struct BadToken;

impl PageToken {
    pub const FIRST: PageToken = PageToken {
        limit: PAGE_SIZE,
        page: 1,
    };

    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 4];
        bytes[..2].copy_from_slice(&self.limit.to_le_bytes());
        bytes[2..].copy_from_slice(&self.page.to_le_bytes());
        base64::engine::general_purpose::URL_SAFE.encode(bytes)
    }

    pub fn decode(token: &str) -> Result<PageToken, BadToken> {
        let bytes = base64::engine::general_purpose::URL_SAFE
            .decode(token)
            .map_err(|_| BadToken)?;
        let bytes: [u8; 4] = bytes.try_into().map_err(|_| BadToken)?;
        let token = PageToken {
            limit: u16::from_le_bytes([bytes[0], bytes[1]]),
            page: u16::from_le_bytes([bytes[2], bytes[3]]),
        };
        if token.limit == 0 || token.page == 0 {
            return Err(BadToken);
        }
        Ok(token)
    }

    pub fn next(&self) -> PageToken {
        PageToken {
            limit: self.limit,
            page: self.page.saturating_add(1),
        }
    }

    /// Which items of a sorted list this page holds: `offset..offset + limit`.
    pub fn range(&self) -> std::ops::Range<usize> {
        let start = (self.page as usize - 1) * self.limit as usize;
        start..start + self.limit as usize
    }
}

/// Where fleet's v1 API is served: `/fleet/v1`, and its old alias `/v1-alpha` (fleet mounted
/// it under both; its clients use either).
pub const FLEET_PREFIXES: [&str; 2] = [FLEET_V1, "/v1-alpha"];
/// The prefix flottectl calls.
pub const FLEET_V1: &str = "/fleet/v1";

/// The resources of fleet's v1 API, each under every one of `FLEET_PREFIXES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Machines,
    Units,
    State,
    Discovery,
}

impl Resource {
    fn segment(self) -> &'static str {
        match self {
            Resource::Machines => "machines",
            Resource::Units => "units",
            Resource::State => "state",
            Resource::Discovery => "discovery",
        }
    }

    /// The collection's path: `/fleet/v1/units`.
    pub fn path(self, prefix: &str) -> String {
        format!("{prefix}/{}", self.segment())
    }

    /// One item's path, its name percent-encoded: `/fleet/v1/units/web@1.service`.
    pub fn item(self, prefix: &str, name: &str) -> String {
        format!("{prefix}/{}/{}", self.segment(), encode(name, PATH_SAFE))
    }

    /// The server's route of an item path: the name is captured as `{name}`.
    pub fn item_route(self, prefix: &str) -> String {
        format!("{prefix}/{}/{{name}}", self.segment())
    }
}

/// flotte's change long poll (see `Changes`), outside fleet's prefixes.
pub const CHANGES: &str = "/flotte/v1/changes";
/// flotte's event stream (see `Event`).
pub const EVENTS: &str = "/flotte/v1/events";
/// flotted's Prometheus metrics, on every API listener.
pub const METRICS: &str = "/metrics";
/// Whether this flotted reaches etcd (`EtcdContact`), asked by the other machines' agents
/// before they fence themselves (`agent::fence`); answered without the registration gate.
pub const ETCD_CONTACT: &str = "/flotte/v1/etcd-contact";

/// The answer of `GET /flotte/v1/etcd-contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdContact {
    /// Its agent's latest lease renewal was answered.
    pub reaches_etcd: bool,
    /// Milliseconds since the last answered renewal was sent.
    pub silent_ms: u64,
}

/// flotte: which machine's engine leads (`GET /flotte/v1/leader`).
pub const LEADER: &str = "/flotte/v1/leader";
/// flotte: the service keys announced under a prefix (`GET /flotte/v1/services[?prefix=]`).
pub const SERVICES: &str = "/flotte/v1/services";
/// The prefix `SERVICES` lists without `prefix`, as `flottectl services` does.
pub const DEFAULT_SERVICE_PREFIX: &str = "/services/";
/// flotte's web page of the cluster (`src/api/ui/`), on every API listener.
pub const UI: &str = "/ui";

/// The answer of `GET /flotte/v1/leader`: `leader` is left out while no engine leads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<MachineId>,
}

/// The answer of `GET /flotte/v1/services`, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePage {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
}

/// One announced key and who announced it (`flottectl announce`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub key: String,
    pub value: String,
    /// Seconds left of its lease; left out for a key under no lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<UnitName>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
}

/// flotte: the declared services (`[X-Flotte-Service]`) with their instance counts
/// (`GET /flotte/v1/catalog`), and one service's instances with their health
/// (`GET /flotte/v1/catalog/NAME`); both take `?index=REVISION&wait=30s`, a blocking query.
/// Apart from `SERVICES`, whose answer is the announced keys (`flottectl announce`).
pub const CATALOG: &str = "/flotte/v1/catalog";
/// The longest a blocking query on the catalog waits.
pub const CATALOG_MAX_WAIT: Duration = Duration::from_secs(300);

/// One service's path in the catalog: `/flotte/v1/catalog/NAME`.
pub fn catalog_path(name: &str) -> String {
    format!("{CATALOG}/{}", encode(name, PATH_SAFE))
}

/// The server's route of one service: the name is captured as `{name}`.
pub fn catalog_route() -> String {
    format!("{CATALOG}/{{name}}")
}

/// A blocking query's parameters: answer once the index moved past `index`, waiting at
/// most `wait` (Consul's `?index=&wait=`).
pub fn blocking_query(path: &str, index: i64, wait: Duration) -> String {
    with_query(
        path,
        &[
            (param::INDEX, index.to_string()),
            (param::WAIT, format!("{}ms", wait.as_millis())),
        ],
    )
}

/// The answer of `GET /flotte/v1/catalog`, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// The etcd revision this answer is up to date with: the next blocking query's `index`.
    pub index: i64,
    pub services: Vec<CatalogService>,
}

/// A declared service and how many instances it has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogService {
    pub name: String,
    pub instances: usize,
    pub healthy: usize,
}

/// The answer of `GET /flotte/v1/catalog/NAME`: every instance, healthy or not (an unknown
/// name has none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstances {
    pub name: String,
    /// The revision this service's instances last changed at: the next blocking query's
    /// `index`.
    pub index: i64,
    pub instances: Vec<Instance>,
}

/// One running instance of a declared service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub machine: MachineId,
    pub hostname: String,
    pub address: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub unit: UnitName,
    /// `passing`, `unknown` (not checked yet) or `critical` (failed its check twice in a row).
    pub health: String,
}

/// flotte's dry run of an apply: `POST` a `PlanRequest`, answered with a `PlanAnswer`.
pub const PLAN: &str = "/flotte/v1/plan";

/// A proposed change for `POST /flotte/v1/plan`: the whole desired set of units (name,
/// options, desired state), and the set whose record to answer with. The server runs the
/// engine's reconcile over the cluster as it is, with these units in place of (or beside) the
/// stored ones, and with the set's units that `units` lacks taken out when `prune` is true.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRequest {
    pub units: Vec<Unit>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
}

/// The answer of `POST /flotte/v1/plan`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanAnswer {
    /// The etcd revision the stored units were read at: every `modRevision` below is at most
    /// this, and a unit changed since shows a later one (the plan's check index).
    pub revision: i64,
    /// Each proposed unit, then each unit of the set that was not proposed, sorted by name.
    pub units: Vec<PlannedUnit>,
    /// The set's record (`PlanRequest::set`); left out when none was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<SetAnswer>,
}

/// One unit of a plan: as stored now, and where the scheduler would have it after the change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedUnit {
    pub name: String,
    /// The stored unit (its options and desired state); left out when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Unit>,
    /// The revision the stored unit last changed at; 0 when there is none.
    #[serde(default, skip_serializing_if = "is_zero_revision")]
    pub mod_revision: i64,
    /// The machines it would be placed on (sorted; many for a global unit).
    #[serde(rename = "machineIDs", default, skip_serializing_if = "Vec::is_empty")]
    pub machine_ids: Vec<String>,
    /// Why it would be placed nowhere, when it should run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn is_zero_revision(n: &i64) -> bool {
    *n == 0
}

/// A set's record: the units that applies of it created, and the revision it last changed at
/// (0: there is no such set yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetAnswer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero_revision")]
    pub mod_revision: i64,
}

/// flotte's sets: `PUT` a `SetWrite` to a set's item to record its units.
pub const SETS: &str = "/flotte/v1/sets";

/// One set: `/flotte/v1/sets/NAME`.
pub fn set_path(name: &str) -> String {
    format!("{SETS}/{}", encode(name, PATH_SAFE))
}

/// The server's route of a set: the name is captured as `{name}`.
pub fn set_route() -> String {
    format!("{SETS}/{{name}}")
}

/// The body of `PUT /flotte/v1/sets/NAME`: the set's units, written only if the set is still
/// at `modRevision` (0: only if there is none), else a 409.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetWrite {
    #[serde(default)]
    pub units: Vec<String>,
    #[serde(default)]
    pub mod_revision: i64,
}

/// flotte's drains: `PUT` a machine's item to drain it, `DELETE` it to undrain.
pub const DRAINS: &str = "/flotte/v1/drains";

/// One machine's drain: `/flotte/v1/drains/ID`.
pub fn drain_path(machine: &str) -> String {
    format!("{DRAINS}/{}", encode(machine, PATH_SAFE))
}

/// The server's route of a drain: the machine ID is captured as `{machine}`.
pub fn drain_route() -> String {
    format!("{DRAINS}/{{machine}}")
}

/// flotte's per-unit routes: `/flotte/v1/units/NAME/status` and `/flotte/v1/units/NAME/journal`.
pub const FLOTTE_UNITS: &str = "/flotte/v1/units";

/// `GET /flotte/v1/units/NAME/status[?machine=ID]`.
pub fn unit_status_path(name: &str, machine: Option<&str>) -> String {
    let path = format!("{FLOTTE_UNITS}/{}/status", encode(name, PATH_SAFE));
    let params: Vec<(&str, String)> = machine
        .map(|m| (param::MACHINE, m.to_owned()))
        .into_iter()
        .collect();
    with_query(&path, &params)
}

/// The server's route of a unit's status: the name is captured as `{name}`.
pub fn unit_status_route() -> String {
    format!("{FLOTTE_UNITS}/{{name}}/status")
}

/// `GET /flotte/v1/units/NAME/journal?machine=ID&lines=N&follow=true&output=FORMAT`
/// (`machine` and `follow` only when given).
pub fn unit_journal_path(name: &str, query: &JournalQuery) -> String {
    let path = format!("{FLOTTE_UNITS}/{}/journal", encode(name, PATH_SAFE));
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(m) = &query.machine {
        params.push((param::MACHINE, m.clone()));
    }
    params.push((param::LINES, query.lines.to_string()));
    if query.follow {
        params.push((param::FOLLOW, "true".into()));
    }
    params.push((param::OUTPUT, query.output.as_str().into()));
    with_query(&path, &params)
}

/// The server's route of a unit's journal: the name is captured as `{name}`.
pub fn unit_journal_route() -> String {
    format!("{FLOTTE_UNITS}/{{name}}/journal")
}

/// The header a flotted sets on a status or journal request it forwards to the machine the
/// unit runs on; the receiver answers from its own systemd and journal, or refuses (421),
/// never forwarding again.
pub const FORWARDED_HEADER: &str = "x-flotte-forwarded";

/// The query parameters the API reads.
pub mod param {
    /// fleet's page token (`PageToken::encode`), on every list.
    pub const NEXT_PAGE_TOKEN: &str = "nextPageToken";
    /// fleet's filters of `/state`.
    pub const MACHINE_ID: &str = "machineID";
    pub const UNIT_NAME: &str = "unitName";
    /// `/flotte/v1/changes`: the revision to wait past, and how many seconds to wait at most;
    /// `/flotte/v1/events`: the revision to resume after.
    pub const SINCE: &str = "since";
    pub const TIMEOUT: &str = "timeout";
    /// `/flotte/v1/services`: the key prefix to list.
    pub const PREFIX: &str = "prefix";
    /// A unit's status and journal: the machine to ask (a full machine ID).
    pub const MACHINE: &str = "machine";
    /// A unit's journal: how many past lines, whether to follow (`true`/`false`), and the
    /// format (`JournalOutput`).
    pub const LINES: &str = "lines";
    pub const FOLLOW: &str = "follow";
    pub const OUTPUT: &str = "output";
    /// `/flotte/v1/catalog[/NAME]`: a blocking query's index (an etcd revision) and longest
    /// wait (`30s`, `500ms`, `5m`).
    pub const INDEX: &str = "index";
    pub const WAIT: &str = "wait";
    /// flotte: a unit PUT only if the unit is still at this etcd revision (`0`: only if
    /// there is none), else a 409; `flottectl apply` sends the revision its plan saw.
    pub const MOD_REVISION: &str = "modRevision";
}

/// `GET /flotte/v1/changes?since=REV&timeout=SECS`.
pub fn changes_path(since: i64, timeout: Duration) -> String {
    with_query(
        CHANGES,
        &[
            (param::SINCE, since.to_string()),
            (param::TIMEOUT, timeout.as_secs().to_string()),
        ],
    )
}

/// `GET /flotte/v1/events[?since=REV]`.
pub fn events_path(since: Option<i64>) -> String {
    let params: Vec<(&str, String)> = since
        .map(|r| (param::SINCE, r.to_string()))
        .into_iter()
        .collect();
    with_query(EVENTS, &params)
}

/// `path?name=value&...`, each value percent-encoded; `path` alone without parameters.
pub fn with_query(path: &str, params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v, QUERY_SAFE)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Characters left as they are in a path segment: RFC 3986's unreserved ones, plus `@` and `:`
/// which unit names use and paths allow.
const PATH_SAFE: &[u8] = b"@:";
const QUERY_SAFE: &[u8] = b"";

/// Percent-encodes everything but unreserved characters and `keep`.
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_flat_json_object_each_and_unknown_types_still_read() {
        let unit = UnitName::new("web.service").unwrap();
        let machine = MachineId::new(&"a".repeat(32)).unwrap();
        for (event, json) in [
            (
                Event {
                    revision: 7,
                    kind: EventKind::Submitted {
                        unit: unit.clone(),
                        desired: DesiredState::Launched,
                        replaced: false,
                    },
                },
                r#"{"revision":7,"type":"submitted","unit":"web.service","desired":"launched"}"#
                    .to_owned(),
            ),
            (
                Event {
                    revision: 8,
                    kind: EventKind::StateChanged {
                        unit: unit.clone(),
                        machine: machine.clone(),
                        load: LoadState::Loaded,
                        active: ActiveState::Active,
                        sub: "running".into(),
                        message: None,
                    },
                },
                format!(
                    r#"{{"revision":8,"type":"state_changed","unit":"web.service","machine":"{machine}","load":"loaded","active":"active","sub":"running"}}"#
                ),
            ),
            (
                Event {
                    revision: 9,
                    kind: EventKind::LeaderChanged { leader: None },
                },
                r#"{"revision":9,"type":"leader_changed"}"#.to_owned(),
            ),
            (
                Event {
                    revision: 9,
                    kind: EventKind::Ended {
                        reason: EndReason::Lagged,
                        message: "slow".into(),
                    },
                },
                r#"{"revision":9,"type":"ended","reason":"lagged","message":"slow"}"#.to_owned(),
            ),
        ] {
            assert_eq!(serde_json::to_string(&event).unwrap(), json);
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        }
        let newer: Event =
            serde_json::from_str(r#"{"revision":3,"type":"from_the_future","x":1}"#).unwrap();
        assert_eq!(
            newer,
            Event {
                revision: 3,
                kind: EventKind::Unknown
            }
        );
    }

    #[test]
    fn page_tokens_are_fleets_bytes() {
        // limit 100 = 0x64 0x00, page 2 = 0x02 0x00
        let t = PageToken {
            limit: 100,
            page: 2,
        };
        assert_eq!(
            t.encode(),
            base64::engine::general_purpose::URL_SAFE.encode([0x64, 0x00, 0x02, 0x00])
        );
        assert_eq!(t.encode(), "ZAACAA==");
        assert_eq!(PageToken::decode("ZAACAA=="), Ok(t));
        assert_eq!(
            PageToken::FIRST.next(),
            PageToken {
                limit: 100,
                page: 2
            }
        );
        assert_eq!(t.range(), 100..200);
        for bad in ["", "!!!!", "ZAAC", "ZAACAAAA", "AAABAA==", "ZAAAAA=="] {
            assert_eq!(PageToken::decode(bad), Err(BadToken), "{bad}");
        }
    }

    #[test]
    fn unit_names_are_escaped_in_paths_and_queries() {
        let name = r"web@a\x2db.service";
        assert_eq!(
            Resource::Units.item(FLEET_V1, name),
            "/fleet/v1/units/web@a%5Cx2db.service"
        );
        assert_eq!(
            with_query(
                &Resource::State.path(FLEET_V1),
                &[
                    (param::UNIT_NAME, name.to_owned()),
                    (param::NEXT_PAGE_TOKEN, "ZAACAA==".into())
                ]
            ),
            "/fleet/v1/state?unitName=web%40a%5Cx2db.service&nextPageToken=ZAACAA%3D%3D"
        );
        assert_eq!(
            changes_path(42, Duration::from_secs(5)),
            "/flotte/v1/changes?since=42&timeout=5"
        );
        assert_eq!(
            Resource::Units.item_route("/v1-alpha"),
            "/v1-alpha/units/{name}"
        );
    }

    #[test]
    fn status_and_journal_paths_carry_their_parameters() {
        assert_eq!(
            unit_status_path("web@a b.service", None),
            "/flotte/v1/units/web@a%20b.service/status"
        );
        assert_eq!(
            unit_status_path("web.service", Some("ab")),
            "/flotte/v1/units/web.service/status?machine=ab"
        );
        assert_eq!(
            unit_journal_path("web.service", &JournalQuery::default()),
            "/flotte/v1/units/web.service/journal?lines=10&output=short"
        );
        let query = JournalQuery {
            machine: Some("ab".into()),
            lines: 0,
            follow: true,
            output: JournalOutput::Json,
        };
        assert_eq!(
            unit_journal_path("web.service", &query),
            "/flotte/v1/units/web.service/journal?machine=ab&lines=0&follow=true&output=json"
        );
        assert_eq!(unit_status_route(), "/flotte/v1/units/{name}/status");
        assert_eq!(unit_journal_route(), "/flotte/v1/units/{name}/journal");
        for o in JournalOutput::ALL {
            assert_eq!(JournalOutput::parse(o.as_str()), Some(o));
        }
        assert_eq!(JournalOutput::parse("verbose"), None);
    }

    #[test]
    fn journal_notes_are_journalctl_style_lines_or_json_objects() {
        let note = JournalNote {
            flotte: NoteKind::Ended,
            message: "host-3 left the cluster".into(),
        };
        assert_eq!(
            note.line(JournalOutput::Short),
            "-- host-3 left the cluster --\n"
        );
        assert_eq!(
            note.line(JournalOutput::Cat),
            note.line(JournalOutput::Short)
        );
        assert_eq!(
            note.line(JournalOutput::Json),
            "{\"flotte\":\"ended\",\"message\":\"host-3 left the cluster\"}\n"
        );
    }

    #[test]
    fn a_status_leaves_out_what_systemd_does_not_know() {
        let status = MachineStatus {
            machine_id: "ab".into(),
            active_state: "active".into(),
            main_pid: 7,
            memory_bytes: Some(0),
            ..MachineStatus::default()
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"machineID":"ab","activeState":"active","mainPID":7,"memoryBytes":0}"#
        );
    }

    #[test]
    fn empty_fields_are_left_out_as_fleet_does() {
        let unit = Unit {
            name: "a.service".into(),
            options: vec![UnitOption {
                section: "Service".into(),
                name: "ExecStart".into(),
                value: String::new(),
            }],
            desired_state: "launched".into(),
            ..Unit::default()
        };
        assert_eq!(
            serde_json::to_string(&unit).unwrap(),
            r#"{"name":"a.service","options":[{"section":"Service","name":"ExecStart"}],"desiredState":"launched"}"#
        );
        assert_eq!(serde_json::to_string(&UnitPage::default()).unwrap(), "{}");
        let back: UnitOption =
            serde_json::from_str(r#"{"section":"Service","name":"ExecStart"}"#).unwrap();
        assert_eq!(back.value, "");
    }
}
