//! End-to-end tests: real etcd, real isolated systemd hosts, one real flotted per host.
//! One binary for all of them, so that they build and link once.

mod api;
mod apply;
mod churn;
mod cli_check;
mod discovery;
mod dns;
mod drain;
mod events;
mod faults;
mod metrics;
mod quickstart;
mod registry;
mod resources;
mod runtime;
mod services;
mod start_again;
mod status;
mod support;
mod system_containers;
mod systemd_adapter;
mod ui;
