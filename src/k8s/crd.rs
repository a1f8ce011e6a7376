//! The `Analyzer` custom resource (`logs-distributor.dev/v1alpha1`): types
//! only. `logs-distributor crd` prints the CRD generated from them; the
//! committed `crds/analyzer.yaml` is that output.
//!
//! Validation lives in the schema so that the API server refuses a bad
//! Analyzer at `kubectl apply`: weight bounds, rates between 0 and 1,
//! positive intervals, and a CEL rule that exactly one of `endpoint` and
//! `simulated` is set.

use crate::transport::DeliveryFormat;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every resource of ours.
pub const GROUP: &str = "logs-distributor.dev";

/// An analyzer that the distributor hands log packets to, and its share of
/// the traffic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "logs-distributor.dev",
    version = "v1alpha1",
    kind = "Analyzer",
    namespaced,
    shortname = "az",
    status = "AnalyzerStatus",
    doc = "An analyzer that the logs distributor hands log packets to, with its share of traffic.",
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.weight"),
    printcolumn(name = "Healthy", type_ = "boolean", json_path = ".status.healthy"),
    printcolumn(
        name = "Share",
        type_ = "number",
        json_path = ".status.trafficShare",
        description = "Percent of the packets routed over the last minute"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.endpoint) != has(self.simulated)").message("set exactly one of spec.endpoint and spec.simulated"))]
#[serde(rename_all = "camelCase")]
pub struct AnalyzerSpec {
    /// Name shown by the distributor's API and status page; the resource's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub display_name: Option<String>,
    /// Share of traffic relative to the other analyzers, 0 to 1000 (40/30/20/10 splits
    /// packets 4:3:2:1). 0 takes the analyzer out of rotation without deleting it.
    #[schemars(range(min = 0, max = 1000))]
    pub weight: i32,
    /// URL that packets are POSTed to, e.g. http://analyzer-a.logs:9000/. Set exactly one of
    /// endpoint and simulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://')").message("endpoint must be an http:// URL"))]
    pub endpoint: Option<String>,
    /// The body format deliveries take: packets (a JSON array of packets, the default) or
    /// ndjson (one message per line as a flat JSON object, with its packet_id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DeliveryFormat>,
    /// Run this analyzer inside the distributor as a simulation (demos and tests). Set exactly
    /// one of endpoint and simulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulated: Option<SimulatedSpec>,
    /// How the distributor probes this analyzer's health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// The declared health: Auto lets probes and delivery results decide; ForceHealthy and
    /// ForceUnhealthy override them.
    #[serde(default)]
    pub health: DeclaredHealth,
}

/// An in-process simulated analyzer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimulatedSpec {
    /// Time taken per packet, in milliseconds.
    #[serde(default)]
    #[schemars(range(min = 0, max = 600000))]
    pub processing_time_ms: i32,
    /// Chance (0 to 1) that processing a packet fails.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub failure_rate: f64,
    /// Chance (0 to 1) that a health probe fails.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub health_failure_rate: f64,
}

/// Health probing, with Kubernetes probe semantics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSpec {
    /// Path probed with GET, resolved against the endpoint; 2xx is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: Option<i32>,
    /// Seconds a probe may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: Option<i32>,
    /// Failed probes in a row that take the analyzer out of rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: Option<i32>,
    /// Passed probes in a row that bring it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: Option<i32>,
}

/// Who decides an analyzer's health.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeclaredHealth {
    /// Probes and delivery results decide.
    #[default]
    Auto,
    /// In rotation whatever the probes say.
    ForceHealthy,
    /// Out of rotation whatever the probes say.
    ForceUnhealthy,
}

/// What the distributor observes; written by the leader replica.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzerStatus {
    /// Whether the analyzer is healthy (in rotation when its weight is above 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// The Ready condition, with reasons ProbeSucceeded, ProbeFailed, Ejected, ForcedHealthy,
    /// ForcedUnhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the analyzer was last probed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    /// Packets delivered to it since the distributor started counting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_count: Option<i64>,
    /// Failed deliveries to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_count: Option<i64>,
    /// Percent of the packets routed over the last minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_share: Option<f64>,
}

/// The CRD as YAML, as `logs-distributor crd` prints it.
pub fn crd_yaml() -> String {
    let crd = Analyzer::crd();
    let body = serde_saphyr::to_string(&crd).unwrap_or_else(|e| format!("# cannot render the CRD: {e}\n"));
    format!("# Generated by `logs-distributor crd`; do not edit.\n---\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_crd_is_the_generated_one() {
        let committed = include_str!("../../crds/analyzer.yaml");
        assert!(
            committed == crd_yaml(),
            "crds/analyzer.yaml is stale: run `cargo run -- crd > crds/analyzer.yaml`"
        );
    }

    #[test]
    fn the_crd_carries_its_names_columns_and_rules() {
        let crd = serde_json::to_value(Analyzer::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "analyzers.logs-distributor.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "az");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(version["subresources"]["status"].is_object());
        let columns: Vec<_> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(columns, ["Weight", "Healthy", "Share", "Endpoint", "Age"]);
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["weight"]["minimum"], 0.0);
        assert_eq!(spec["properties"]["weight"]["maximum"], 1000.0);
        assert!(spec["x-kubernetes-validations"]
            .to_string()
            .contains("has(self.endpoint) != has(self.simulated)"));
        assert!(spec["properties"]["weight"]["description"]
            .as_str()
            .unwrap()
            .contains("0 to 1000"));
    }
}
