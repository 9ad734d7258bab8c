//! End-to-end tests: real etcd, real isolated systemd hosts, one real flotted per host.
//! One binary for all of them, so that they build and link once.

mod api;
mod apply;
mod cli_check;
mod discovery;
mod drain;
mod events;
mod faults;
mod metrics;
mod quickstart;
mod registry;
mod runtime;
mod services;
mod start_again;
mod status;
mod support;
mod system_containers;
mod systemd_adapter;
mod ui;
