//! flotte: a cluster scheduler for systemd units. See ARCHITECTURE.md for the codemap.

pub mod agent;
pub mod api;
pub mod backoff;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod dns;
pub mod engine;
#[cfg(feature = "isolated")]
pub mod isolated;
pub mod journal;
pub mod machine;
pub mod metrics;
#[cfg(feature = "isolated")]
pub mod quickstart;
pub mod registry;
pub mod resources;
pub mod schedule;
pub mod systemd;
pub mod unit;
pub mod wire;
