//! The integration tests: one binary, one module per subject, and the
//! helpers they share in `support`.
//!
//! `cargo test --test it` runs them all; `cargo test --test it crash::`
//! one module. The modules that need a control plane, root, the
//! OpenTelemetry Python SDK or an OpenTelemetry Collector are built in only
//! with the cargo features `test-control-plane`, `test-root`,
//! `test-otel-sdk` and `test-otel-collector` (`make test` turns them all on);
//! `gates` says so when they are left out.

mod support;

mod analyzer_tls;
mod api;
mod checkpoints;
mod crash;
mod delivery;
#[cfg(feature = "test-root")]
mod disk_faults;
#[cfg(not(all(
    feature = "test-control-plane",
    feature = "test-root",
    feature = "test-otel-sdk",
    feature = "test-otel-collector"
)))]
mod gates;
mod handoff;
mod hostile;
mod http_analyzers;
#[cfg(feature = "test-control-plane")]
mod kubernetes;
#[cfg(feature = "test-control-plane")]
mod kubernetes_counts;
#[cfg(feature = "test-control-plane")]
mod kubernetes_handoff;
#[cfg(feature = "test-control-plane")]
mod kubernetes_lease;
#[cfg(feature = "test-control-plane")]
mod kubernetes_releases;
#[cfg(feature = "test-control-plane")]
mod kubernetes_secrets;
#[cfg(feature = "test-control-plane")]
mod kubernetes_service;
#[cfg(feature = "test-control-plane")]
mod kubernetes_status;
mod lifecycle;
mod ndjson_delivery;
mod openapi;
#[cfg(feature = "test-otel-collector")]
mod otel_collector;
mod otlp_delivery;
mod otlp_ingest;
#[cfg(feature = "test-otel-sdk")]
mod otlp_sdk;
mod packaging;
mod records_ingest;
mod request_size;
mod retries;
mod routing;
mod security;
mod wal_damage;
