//! The integration tests: one binary, one module per subject, and the
//! helpers they share in `support`.

mod support;

mod api;
mod checkpoints;
mod crash;
mod delivery;
mod disk_faults;
mod hostile;
mod http_analyzers;
mod kubernetes;
mod lifecycle;
mod openapi;
mod packaging;
mod retries;
mod routing;
mod security;
mod wal_damage;
