//! What the test modules share, one job per module.

pub(crate) mod analyzers;
#[cfg(feature = "test-otel-collector")]
pub(crate) mod collector;
pub(crate) mod config;
pub(crate) mod distributor;
pub(crate) mod files;
pub(crate) mod fixtures;
pub(crate) mod handoff;
pub(crate) mod http;
pub(crate) mod in_process;
#[cfg(feature = "test-control-plane")]
pub(crate) mod kube;
pub(crate) mod otlp;
pub(crate) mod packets;
pub(crate) mod pki;
pub(crate) mod poll;
pub(crate) mod ports;
pub(crate) mod processes;
pub(crate) mod receiver;
pub(crate) mod recorder;
pub(crate) mod serial;
