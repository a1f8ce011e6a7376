//! What the test modules share, one job per module.

pub mod analyzers;
#[cfg(feature = "test-otel-collector")]
pub mod collector;
pub mod config;
pub mod distributor;
pub mod files;
pub mod fixtures;
pub mod handoff;
pub mod http;
pub mod in_process;
#[cfg(feature = "test-control-plane")]
pub mod kube;
pub mod otlp;
pub mod packets;
pub mod pki;
pub mod poll;
pub mod ports;
pub mod processes;
pub mod receiver;
pub mod recorder;
pub mod serial;
