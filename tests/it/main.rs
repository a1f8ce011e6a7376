//! The integration tests: one binary, one module per subject, and the
//! helpers they share in `support`.
//!
//! `cargo test --test it` runs them all; `cargo test --test it crash::`
//! one module. The modules that need a control plane or root are built in
//! only with the cargo features `test-control-plane` and `test-root`
//! (`make test` turns both on); `gates` says so when they are left out.

mod support;

mod api;
mod checkpoints;
mod crash;
mod delivery;
#[cfg(feature = "test-root")]
mod disk_faults;
#[cfg(not(all(feature = "test-control-plane", feature = "test-root")))]
mod gates;
mod hostile;
mod http_analyzers;
#[cfg(feature = "test-control-plane")]
mod kubernetes;
mod lifecycle;
mod ndjson_delivery;
mod openapi;
mod packaging;
mod records_ingest;
mod request_size;
mod retries;
mod routing;
mod security;
mod wal_damage;
