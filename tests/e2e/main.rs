//! End-to-end tests: real etcd, real isolated systemd hosts, one real flotted per host.
//! One binary for all of them, so that they build and link once.

mod quickstart;
mod runtime;
mod support;
