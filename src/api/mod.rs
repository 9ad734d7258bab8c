//! The HTTP API every flotted serves: fleet's v1 API, exactly, plus flotte's additions. Only
//! this module serves HTTP and reads requests; its paths, query parameters and JSON shapes
//! come from `wire`, which flottectl's client builds its requests with. Its handlers are thin
//! and call `registry`.
//!
//! # Layout
//! - `server`: the listeners (unix socket, TCP, optional TLS) and the connection loop.
//! - `routes`: the path table and the gate that answers 503 until the agent registered.
//! - `machines`, `units`, `states`, `discovery_doc`: fleet v1's resources, one file each.
//! - `catalog`: the declared services and their instances (blocking queries);
//! - `changes`: flotte's change notification; `events`: its event stream; `leader`,
//!   `services`, `drains`: the engine's leader, announced services, drained machines.
//! - `plan`, `sets`: the dry run of `flottectl apply` and the sets it records.
//! - `ui`: the web page, its assets under `ui/`.
//! - `status`, `journal`: a unit's status and journal, from this machine or forwarded to the
//!   unit's (`backend`: what the API answers from, and how it reaches the other machines).
//! - `request`, `pagination`, `error`: what every handler shares; `decode`: everything checked
//!   before etcd is read, as pure functions of a request's head and body (fuzzed in `fuzz/`).
//!
//! # fleet v1 (under `/fleet/v1` and its old alias `/v1-alpha`)
//! `GET|PATCH /machines`, `GET /units`, `GET|PUT|DELETE /units/NAME`,
//! `GET /state[?machineID=&unitName=]`, `GET /state/NAME`, `GET /discovery`. Errors are
//! `{"error":{"code":N,"message":"..."}}`. fleet clients send `?alt=json`; unknown query
//! parameters are ignored, as fleet does.
//!
//! # flotte's additions
//! Extra fields that fleet clients ignore: a unit's `reason` (why it is placed nowhere),
//! `machineIDs` (every machine it is placed on) and `global` (true for a global unit, left out
//! otherwise); a machine's `version` (of its flotted), `hostname` and `drained` (left out
//! when false); a state's `message` (systemd's complaint). Every response carries
//! `Server: flotted/VERSION`.
//!
//! A unit `PUT` with `?modRevision=N` (a flotte parameter) applies only if the unit is still
//! at etcd revision N (0: only if there is none), else 409: `flottectl apply` writes so, with
//! the revisions its plan saw.
//!
//! A `PUT` of `desiredState: launched` to a unit launched already that a machine it is placed
//! on reports not running is a start request: the unit's `startRequest` (a flotte field,
//! left out while 0) goes up by one, and its agents start it again; a state's `startRequest`
//! is the one its machine last acted on. fleet answered 204 and changed nothing.
//!
//! `PUT /flotte/v1/drains/ID` drains a registered machine (201; 204 if it already was): the
//! engine moves its normal units elsewhere, or leaves them placed nowhere with a reason, and
//! places none there; its global units stay. `DELETE` undrains it (204; 404 if it was not
//! drained). `GET /machines` shows a drained machine with `"drained": true`.
//!
//! `GET /flotte/v1/changes?since=REV&timeout=SECS` answers `{"revision":N}`: at once when a
//! unit, placement, reason or unit state changed after etcd revision `REV` (always so for
//! `since=0`), else as soon as one changes, or after `timeout` seconds (default 30, at most 60)
//! with the unchanged revision. A client waiting for units to reach a state reads the units
//! or states, then asks for changes since the revision it last got, and reads again when
//! this returns: no blind polling. Revisions are etcd's, so they compare across flotted.
//!
//! `GET /flotte/v1/events[?since=REV]` streams the cluster's events as newline-delimited JSON
//! (`wire::Event`), one etcd watch per client: `started` (the revision the events follow),
//! then `submitted`, `desired_state_changed`, `start_requested`, `placed`, `unplaced`, `unplaceable` (with the
//! engine's reason), `state_changed` (a unit's systemd state on a machine), `state_removed`,
//! `destroyed`, `machine_joined`, `machine_changed`, `machine_lost` and `leader_changed`, each
//! with the etcd revision of its change. Without `since` it follows from now; with it, every
//! event after that revision comes first. A compacted `since` is a 410, one ahead of etcd a 400,
//! answered before the stream starts. The server ends a stream with an `ended` line (`reason`
//! `lagged`, `shutdown`, `compacted` or `failed`, and the revision to resume from); a client
//! that leaves 1024 events unread for 5 s is `lagged`, so no client makes the server buffer
//! more.
//!
//! `GET /flotte/v1/leader` answers `{"leader":"ID"}`, the machine whose engine leads (`{}`
//! while none does). `GET /flotte/v1/services[?prefix=/services/]` lists the service keys
//! announced under a prefix (`flottectl announce`): `{"services":[{"key","value","ttl"
//! (seconds left of its lease),"machine","unit","hostname" (who announced it)}]}`.
//!
//! The declared services (`[X-Flotte-Service]`, registered by the agents) have a path of their
//! own, so that `/flotte/v1/services` keeps its answer: `GET /flotte/v1/catalog` answers
//! `{"index":REV,"services":[{"name","instances","healthy"}]}` and `GET
//! /flotte/v1/catalog/NAME` `{"name","index","instances":[{"machine","hostname","address",
//! "port","tags","unit","health"}]}` (`health`: `passing`, `unknown` before the first check,
//! `critical` after two failed checks in a row; an unknown name has no instances). Both are
//! answered from one watch of the instances per flotted (`catalog`), and both are blocking
//! queries with `?index=REV[&wait=30s]`, as Consul's: the answer comes once the index (the
//! revision the catalog, or that one service, last changed at) moved past `REV`, else after
//! `wait` (default 30 s, at most 5 min) with the unchanged index.
//!
//! `GET /ui/` (and `/ui/machines`, `/ui/units`, `/ui/units/NAME`, `/ui/services`,
//! `/ui/events`) is the web page of the live cluster (`ui`): assets compiled into flotted,
//! behind the same gate and listeners as the API.
//!
//! `GET /flotte/v1/units/NAME/status[?machine=ID]` answers `wire::UnitStatus`: the unit, and
//! per machine it is placed on (or the one named) what `systemctl status` shows, from that
//! machine's systemd and journal; a machine that cannot be asked has an entry saying why.
//! `GET /flotte/v1/units/NAME/journal?machine=ID&lines=N&follow=true&output=short|cat|json`
//! streams the unit's journal on one machine (its only one when `machine` is left out: a
//! global unit's needs it, 400; an unplaced unit's is a 409 with the reason) as text lines or
//! NDJSON, with `wire::JournalNote` lines for journalctl's complaints and for why a followed
//! journal ended; a machine without a journal is a 503 saying so. The API answers for its own
//! machine and forwards to the others' flotted (`backend`), marking the request with
//! `x-flotte-forwarded`; a forwarded request naming another machine is a 421.
//!
//! `GET /metrics` serves flotted's Prometheus metrics (`crate::metrics`; OpenMetrics when the
//! `Accept` header asks for it, Prometheus's text format otherwise), before the agent
//! registered too. Every other answer is counted in `flotte_api_requests_total` by its declared
//! route, method and status.
//!
//! `POST /flotte/v1/plan` is a dry run of `flottectl apply` (`wire::PlanRequest`: the desired
//! units with options and desired states, a set name, `prune`): the engine's `reconcile` over
//! the cluster as stored with these units in place, writing nothing. It answers
//! `wire::PlanAnswer`: the revision the units were read at and, for each proposed unit and each
//! unit of the set, the unit as stored (`stored`, `modRevision`) and the machines it would be
//! placed on or the reason it would not. `PUT /flotte/v1/sets/NAME` (`wire::SetWrite`:
//! `units`, `modRevision`) records the units applies of a set created, only if the set is
//! still at `modRevision` (0: new), answering the set with its new `modRevision`, else 409.
//!
//! `GET /flotte/v1/etcd-contact` says whether this flotted's agent reaches etcd
//! (`wire::EtcdContact`), also while it does not: the other machines' agents ask it before they
//! fence themselves (`agent::fence`). While the agent's renewals fail, every gated request is a
//! 503 saying that etcd is unreachable from here.

mod backend;
mod catalog;
mod changes;
pub mod decode;
mod discovery_doc;
mod drains;
mod error;
mod events;
mod journal;
mod leader;
mod machines;
mod pagination;
mod plan;
mod request;
mod routes;
mod server;
mod services;
mod sets;
mod states;
mod status;
mod tls;
mod ui;
mod units;

pub use backend::{Backend, LocalMachine};
pub use error::{ApiError, PatchProblem};
pub use routes::Gate;
pub use server::{ApiSettings, Listeners, ServeError, serve};
pub use tls::TlsFiles;
