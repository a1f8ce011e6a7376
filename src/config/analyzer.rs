//! One analyzer's settings (an entry of `analyzers:`): who it is, its
//! share of traffic, and how it is reached, simulated in-process or over
//! HTTP(S) with its delivery format, credentials, headers and probes.

use crate::transport::credentials::AuthOptions;
use crate::transport::headers::ExtraHeaders;
use crate::transport::probe::{ExpectedStatuses, ProbeMethod};
use crate::transport::tls::TlsOptions;
use crate::transport::DeliveryFormat;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One analyzer: who it is, its share of traffic, and how it is reached.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalyzerConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Share of traffic, 0 to 1000; 0 takes the analyzer out of rotation.
    pub weight: i64,
    /// An in-process simulated analyzer...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<SimulatedConfig>,
    /// ...or a real one: `http://` or `https://host:port/path` takes deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// HTTPS: CA bundle, client certificate, server name (an `https://` endpoint only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    /// A bearer token or basic credentials, from files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthOptions>,
    /// Static extra headers of every delivery.
    #[serde(default, skip_serializing_if = "ExtraHeaders::is_empty")]
    pub headers: ExtraHeaders,
    /// The body format deliveries take: `packets` (the default), `ndjson` or `otlp`.
    #[serde(default, skip_serializing_if = "is_default_format")]
    pub format: DeliveryFormat,
    /// Deliveries to this analyzer at once [default: queue.analyzer_concurrency].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Most packets one delivery to this analyzer takes, within `batch.max_packets`
    /// (1: one packet per request) [default: batch.max_packets; 1 for a simulated one].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_packets: Option<usize>,
    /// Health probe path, resolved against `endpoint`.
    #[serde(
        default = "default_health_path",
        skip_serializing_if = "is_default_health_path"
    )]
    pub health_path: String,
    /// This analyzer's own probe settings, over the `health` section's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<AnalyzerHealthCheck>,
}

/// Probe settings of one analyzer; each unset key takes the `health` section's.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzerHealthCheck {
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// The probe's URL, absolute (another port or host) or relative to the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// GET (the default) or HEAD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<ProbeMethod>,
    /// Statuses that pass, codes and ranges: `[200, "200-299"]`; default any 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_statuses: Option<ExpectedStatuses>,
    /// No probes: failed deliveries eject; a success, or `interval` out, brings it back.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
}

fn is_default_format(format: &DeliveryFormat) -> bool {
    *format == DeliveryFormat::default()
}

fn default_health_path() -> String {
    "/health".into()
}

fn is_default_health_path(path: &str) -> bool {
    path == "/health"
}

/// An in-process analyzer that sleeps and fails at random, as the original did.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedConfig {
    pub processing_time_ms: u64,
    /// Chance (0 to 1) that processing a packet fails.
    pub failure_rate: f64,
    /// Chance (0 to 1) that a health probe fails.
    pub health_failure_rate: f64,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            processing_time_ms: 100,
            failure_rate: 0.05,
            health_failure_rate: 0.05,
        }
    }
}

impl AnalyzerConfig {
    /// One of the default analyzers: simulated, as the original's four.
    pub(super) fn default_simulated(
        id: &str,
        name: &str,
        weight: i64,
        processing_time_ms: u64,
    ) -> AnalyzerConfig {
        AnalyzerConfig {
            id: id.into(),
            name: Some(name.into()),
            weight,
            simulated: Some(SimulatedConfig {
                processing_time_ms,
                ..SimulatedConfig::default()
            }),
            endpoint: None,
            tls: None,
            auth: None,
            headers: ExtraHeaders::default(),
            format: DeliveryFormat::default(),
            concurrency: None,
            max_batch_packets: None,
            health_path: default_health_path(),
            health_check: None,
        }
    }
}
