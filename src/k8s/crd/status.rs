//! The `Analyzer`'s status: what the distributor observes and writes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the distributor observes: written by the leader replica, except `replicas`, where
/// each replica writes its own entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyzerStatus {
    /// Whether the analyzer is healthy (in rotation when its weight is above 0); a
    /// Service-backed one: whether one of its endpoints is in rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// The Ready condition, with reasons Starting, ProbeSucceeded, ProbeFailed, Ejected,
    /// ForcedHealthy, ForcedUnhealthy, Passive, CooledDown, DeliverySucceeded (a
    /// Service-backed Analyzer: EndpointsInRotation, NoEndpointInRotation, NoEndpoints); False with
    /// SecretNotFound, ConfigMapNotFound, SecretForbidden, SecretUnreadable or
    /// InvalidConfiguration when the analyzer cannot be built from its spec and Secrets.
    /// A list keyed by type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec that runs: it moves only when a generation has been
    /// applied (a spec that cannot be built leaves it; its Ready condition names the
    /// generation it describes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the analyzer was last probed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    /// Packets delivered to it by every replica: retired plus the sum of replicas (written
    /// by the leader; it never goes back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_count: Option<i64>,
    /// Failed deliveries to it by every replica: retired plus the sum of replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_count: Option<i64>,
    /// Its percent of the packets every replica routed over the last minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_share: Option<f64>,
    /// Each replica's own counts, one entry per replica, written by that replica
    /// (server-side apply, field manager logs-distributor-replica/NAME). A list keyed by
    /// name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub replicas: Vec<ReplicaCounts>,
    /// The counts of replica entries removed after they stopped changing
    /// (kubernetes.stale_replica_after): kept in the totals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<RetiredCounts>,
    /// A Service-backed Analyzer's endpoints in rotation and endpoints its Service lists,
    /// e.g. 2/3 (absent without spec.service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_endpoints: Option<String>,
    /// A Service-backed Analyzer's endpoints, as the leader sees them (absent without
    /// spec.service). A list keyed by address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["address"]))]
    pub endpoints: Option<Vec<EndpointStatus>>,
}

/// One endpoint of a Service-backed Analyzer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// Address and port, e.g. 10.0.0.5:9000 or [fd00::5]:9000.
    #[schemars(length(min = 1, max = 300))]
    pub address: String,
    /// The Pod behind it, when its EndpointSlice names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Ready and not terminating in its EndpointSlice: it may take new packets.
    pub ready: bool,
    /// Whether its health checks pass (absent when it is not ready: not probed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Whether it takes packets now (ready, healthy, weight above 0).
    pub in_rotation: bool,
}

/// One replica's counts for one Analyzer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    /// The replica (its identity, the pod name).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Packets this replica delivered to the analyzer.
    #[schemars(range(min = 0))]
    pub processed_count: i64,
    /// Failed deliveries of this replica to the analyzer.
    #[schemars(range(min = 0))]
    pub error_count: i64,
    /// Packets this replica routed to the analyzer over the last minute (for trafficShare).
    #[schemars(range(min = 0))]
    pub routed_last_minute: i64,
    /// When the replica wrote this entry (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
}

/// Counts of replica entries no longer listed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiredCounts {
    #[schemars(range(min = 0))]
    pub processed_count: i64,
    #[schemars(range(min = 0))]
    pub error_count: i64,
    /// How many entries were retired.
    #[schemars(range(min = 0))]
    pub replicas: i64,
}
