//! A bridge left by merging `api` before it met main: main moved the integration tests'
//! helpers to `tests/e2e/support.rs`, and `tests/api.rs` still declares `mod support;`. Drop
//! this file once `tests/api.rs` uses the new place.

// Only `cluster` is used from here; the rest serves the e2e binary.
#[allow(dead_code, unused_imports)]
#[path = "../e2e/support.rs"]
mod e2e;

pub use e2e::cluster;
