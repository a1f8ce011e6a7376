//! The `Analyzer` custom resource (`logs-distributor.dev/v1alpha1`): types
//! only. `logs-distributor crd` prints the CRD generated from them; the
//! committed `crds/analyzer.yaml` is that output.
//!
//! Validation lives in the schema so that the API server refuses a bad
//! Analyzer at `kubectl apply`: weight bounds, rates between 0 and 1,
//! positive intervals, and CEL rules: exactly one of `endpoint`, `service`
//! and `simulated`, an `http://` or `https://` endpoint, `tls` only with
//! `https://` (an endpoint's, or a Service's scheme), a Service port that is
//! a number or a port name, a path that starts with `/`, one source per CA bundle and one kind of credentials,
//! header names that are legal and not the distributor's own, expected
//! statuses that are HTTP statuses or ranges of them.
//!
//! Secrets (`spec.tls`, `spec.auth`) are referenced by name in the
//! Analyzer's namespace; the controller reads them (see `k8s::secrets`).

// kube's `KubeSchema` derive copies each struct that has `x_kube` rules into
// a private scope with the original visibility; every item here is public.
#![allow(unreachable_pub)]

use crate::transport::DeliveryFormat;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod status;
pub use status::{AnalyzerStatus, EndpointStatus, ReplicaCounts, RetiredCounts};

/// The API group of every resource of ours.
pub const GROUP: &str = "logs-distributor.dev";

/// An analyzer that the distributor hands log packets to, and its share of
/// the traffic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
// Several printer columns of one type repeat `type_ = "integer"`: clippy
// reads them as one attribute given twice.
#[allow(clippy::duplicated_attributes)]
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
    printcolumn(
        name = "Processed",
        type_ = "integer",
        json_path = ".status.processedCount",
        description = "Packets delivered to it, by every replica"
    ),
    printcolumn(
        name = "Errors",
        type_ = "integer",
        json_path = ".status.errorCount",
        description = "Failed deliveries to it, by every replica"
    ),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service.name"),
    printcolumn(
        name = "Endpoints",
        type_ = "string",
        json_path = ".status.readyEndpoints",
        description = "A Service-backed Analyzer's endpoints in rotation / endpoints its Service lists"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("(has(self.endpoint) ? 1 : 0) + (has(self.service) ? 1 : 0) + (has(self.simulated) ? 1 : 0) == 1").message("set exactly one of spec.endpoint, spec.service and spec.simulated"))]
#[x_kube(validation = Rule::new("!has(self.tls) || (has(self.endpoint) && self.endpoint.startsWith('https://')) || (has(self.service) && has(self.service.scheme) && self.service.scheme == 'https')").message("spec.tls needs an https:// endpoint or a Service with scheme https"))]
#[x_kube(validation = Rule::new("!has(self.auth) && !has(self.headers) || has(self.endpoint) || has(self.service)").message("spec.auth and spec.headers need an endpoint or a Service"))]
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
    /// URL that packets are POSTed to, e.g. http://analyzer-a.logs:9000/ or
    /// https://otel-collector.observability:4318/v1/logs. Set exactly one of endpoint,
    /// service and simulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// A Service of the Analyzer's namespace instead of an endpoint: each of its ready
    /// endpoints (from its EndpointSlices) takes deliveries, the weight split evenly among
    /// those in rotation, each probed on its own. Set exactly one of endpoint, service and
    /// simulated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// TLS to an https:// endpoint (or Service): a CA bundle trusted besides the system's roots, a client
    /// certificate (mTLS), the server name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// Credentials sent with every delivery: a bearer token or basic credentials, from a
    /// Secret of the Analyzer's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Static extra headers of every delivery, e.g. X-Scope-OrgID: tenant-a. Not Host,
    /// Content-Length, Content-Type, Authorization (use auth) or the hop-by-hop headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = Rule::new("self.all(name, name.matches('^[A-Za-z0-9!#$%&*+.^_|~`\\x27-]+$'))").message("a header name must be an HTTP token"))]
    #[x_kube(validation = Rule::new("self.all(name, !(name.lowerAscii() in ['host', 'content-length', 'content-type', 'content-encoding', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'expect', 'idempotency-key', 'authorization']))").message("Host, Content-Length, Content-Type, Authorization (use spec.auth), Idempotency-Key and the hop-by-hop headers are set by the distributor"))]
    #[x_kube(validation = Rule::new("self.all(name, self[name].matches('^[ -~]*$') && self[name] == self[name].trim())").message("a header value must be visible ASCII and spaces, without leading or trailing spaces"))]
    pub headers: Option<std::collections::BTreeMap<String, HeaderValue>>,
    /// The body format deliveries take: packets (a JSON array of packets, the default),
    /// ndjson (one message per line as a flat JSON object, with its packet_id) or otlp
    /// (OTLP/HTTP protobuf, for an OpenTelemetry receiver's /v1/logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DeliveryFormat>,
    /// Most packets one delivery to this analyzer takes, within the distributor's
    /// batch.max_packets; 1 sends one packet per request. Default: batch.max_packets, and 1
    /// for a simulated analyzer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_batch_packets: Option<i32>,
    /// Run this analyzer inside the distributor as a simulation (demos and tests). Set exactly
    /// one of endpoint, service and simulated.
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

/// A Service whose ready endpoints take an Analyzer's deliveries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("type(self.port) == int ? self.port >= 1 && self.port <= 65535 : self.port.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("port is a number (1 to 65535) or the name of a port of the Service"))]
pub struct ServiceSpec {
    /// The Service's name, in the Analyzer's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The port: the name of one of the Service's ports, or the number the endpoints listen
    /// on (the port of its EndpointSlices, the Service's targetPort).
    pub port: ServicePort,
    /// http (the default) or https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<ServiceScheme>,
    /// The path deliveries are POSTed to on each endpoint [default: /].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("path must start with /"))]
    pub path: Option<String>,
}

/// A Service port: a number or a port name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct ServicePort(pub IntOrString);

impl JsonSchema for ServicePort {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ServicePort".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A port number (9000) or the name of a port of the Service (\"http\").",
            "x-kubernetes-int-or-string": true,
            "maxLength": 15,
        })
    }
}

/// The scheme deliveries to a Service's endpoints take.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceScheme {
    #[default]
    Http,
    Https,
}

impl ServiceScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceScheme::Http => "http",
            ServiceScheme::Https => "https",
        }
    }
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

/// A header value: at most 4096 characters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(transparent)]
pub struct HeaderValue(#[schemars(length(max = 4096))] pub String);

/// A key of a Secret or ConfigMap of the Analyzer's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyReference {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// TLS to an https:// endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A PEM bundle of CA certificates trusted besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaBundleSpec>,
    /// The client certificate presented when the analyzer asks for one (mTLS): a Secret of
    /// type kubernetes.io/tls (keys tls.crt and tls.key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretNameSpec>,
    /// The name the analyzer's certificate must carry, and the SNI sent; default: the
    /// endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
}

/// Where a CA bundle is: a key of a Secret or of a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)").message("set exactly one of secretKeyRef and configMapKeyRef"))]
pub struct CaBundleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyReference>,
}

/// A Secret of the Analyzer's namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretNameSpec {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Credentials: exactly one of a bearer token and basic credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.bearerToken) != has(self.basic)").message("set exactly one of bearerToken and basic"))]
pub struct AuthSpec {
    /// Authorization: Bearer with the token in a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<BearerTokenSpec>,
    /// Authorization: Basic with a Secret's username and password (a Secret of type
    /// kubernetes.io/basic-auth has these keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuthSpec>,
}

/// A bearer token in a Secret key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BearerTokenSpec {
    pub secret_key_ref: KeyReference,
}

/// Basic credentials in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuthSpec {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The key of the username [default: username].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_key: Option<String>,
    /// The key of the password [default: password].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

/// One expected status of a probe: a number (204) or a status or range as text ("204",
/// "200-299").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct ExpectedStatus(pub IntOrString);

/// Either an integer or a string of at most 7 characters (`"200-299"`): the
/// bound keeps the CEL rule over the list within the API server's budget.
impl JsonSchema for ExpectedStatus {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExpectedStatus".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A status (204) or a status or range as text (\"204\", \"200-299\").",
            "x-kubernetes-int-or-string": true,
            "maxLength": 7,
        })
    }
}

/// The method of a health probe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProbeMethodSpec {
    Get,
    Head,
}

/// Health probing, with Kubernetes probe semantics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.passive) && self.passive) || !has(self.path) && !has(self.url) && !has(self.method) && !has(self.expectedStatuses)").message("a passive analyzer is not probed: leave out path, url, method and expectedStatuses"))]
#[x_kube(validation = Rule::new("!has(self.path) || !has(self.url)").message("set path or url, not both"))]
pub struct HealthCheckSpec {
    /// Path probed, resolved against the endpoint [default: /health].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The probe's URL instead of path: absolute (another port or host, e.g. an OpenTelemetry
    /// Collector's health_check extension on :13133) or relative to the endpoint. The
    /// endpoint's headers and credentials go only to the endpoint's own scheme, host and
    /// port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.contains('://') || self.startsWith('http://') || self.startsWith('https://')").message("url must be http:// or https://, or a path"))]
    pub url: Option<String>,
    /// GET (the default) or HEAD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ProbeMethodSpec>,
    /// Statuses that pass: codes and ranges, e.g. [200, "200-299"]; default any 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(s, type(s) == int ? s >= 100 && s <= 599 : s.matches('^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$'))").message("each expected status is a status (100 to 599) or a range such as \"200-299\""))]
    pub expected_statuses: Option<Vec<ExpectedStatus>>,
    /// No probes: failed deliveries in a row (the distributor's health.ejection_threshold)
    /// take the analyzer out; a delivery that succeeds, or intervalSeconds out (a cool-down),
    /// brings it back, on probation: its next failed delivery takes it out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<bool>,
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
        assert_eq!(
            columns,
            [
                "Weight",
                "Healthy",
                "Share",
                "Processed",
                "Errors",
                "Endpoint",
                "Service",
                "Endpoints",
                "Age"
            ]
        );
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["weight"]["minimum"], 0.0);
        assert_eq!(spec["properties"]["weight"]["maximum"], 1000.0);
        assert!(spec["x-kubernetes-validations"]
            .to_string()
            .contains("(has(self.service) ? 1 : 0)"));
        assert!(spec["properties"]["weight"]["description"]
            .as_str()
            .unwrap()
            .contains("0 to 1000"));
        let rules = spec["x-kubernetes-validations"].to_string();
        assert!(
            rules.contains("self.endpoint.startsWith('https://')"),
            "tls only with https: {rules}"
        );
        let endpoint = spec["properties"]["endpoint"]["x-kubernetes-validations"].to_string();
        assert!(endpoint.contains("self.startsWith('https://')"), "{endpoint}");
        let properties = &spec["properties"];
        for (path, rule) in [
            (&properties["auth"], "has(self.bearerToken) != has(self.basic)"),
            (
                &properties["tls"]["properties"]["ca"],
                "has(self.secretKeyRef) != has(self.configMapKeyRef)",
            ),
            (&properties["headers"], "name.lowerAscii() in ['host'"),
            (&properties["healthCheck"], "!has(self.path) || !has(self.url)"),
            (&properties["service"], "type(self.port) == int"),
            (
                &properties["service"]["properties"]["path"],
                "self.startsWith('/')",
            ),
            (
                &properties["healthCheck"]["properties"]["expectedStatuses"],
                "type(s) == int",
            ),
        ] {
            let rules = path["x-kubernetes-validations"].to_string();
            assert!(rules.contains(rule), "{rule} not in {rules}");
        }
        let statuses = &properties["healthCheck"]["properties"]["expectedStatuses"];
        assert_eq!(statuses["items"]["x-kubernetes-int-or-string"], true);
        assert_eq!(statuses["maxItems"], 32, "bounded, for the CEL cost budget");
        assert_eq!(properties["headers"]["maxProperties"], 32);
        let conditions =
            &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{conditions}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        let replicas =
            &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["replicas"];
        assert_eq!(replicas["x-kubernetes-list-type"], "map", "{replicas}");
        assert_eq!(
            replicas["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
        assert_eq!(replicas["items"]["required"][0], "errorCount", "{replicas}");
        let endpoints =
            &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["endpoints"];
        assert_eq!(
            endpoints["x-kubernetes-list-map-keys"],
            serde_json::json!(["address"])
        );
        let port = &properties["service"]["properties"]["port"];
        assert_eq!(port["x-kubernetes-int-or-string"], true, "{port}");
    }

    #[test]
    fn an_analyzer_with_tls_auth_headers_and_a_health_url_reads_from_yaml() {
        let analyzer: Analyzer = serde_saphyr::from_str(
            "apiVersion: logs-distributor.dev/v1alpha1\nkind: Analyzer\nmetadata: {name: otel}\nspec:\n  weight: 1\n  endpoint: https://otel:4318/v1/logs\n  tls:\n    ca: {configMapKeyRef: {name: otel-ca, key: ca.crt}}\n    clientCertificate: {secretName: ld-client}\n    serverName: otel.internal\n  auth: {bearerToken: {secretKeyRef: {name: otel-token, key: token}}}\n  headers: {X-Scope-OrgID: tenant-a}\n  healthCheck: {url: 'http://otel:13133/', method: HEAD, expectedStatuses: [200, '202-204']}\n",
        )
        .unwrap();
        let spec = analyzer.spec;
        assert_eq!(
            spec.tls.unwrap().client_certificate.unwrap().secret_name,
            "ld-client"
        );
        assert_eq!(
            spec.auth.unwrap().bearer_token.unwrap().secret_key_ref.key,
            "token"
        );
        assert_eq!(spec.headers.unwrap()["X-Scope-OrgID"].0, "tenant-a");
        let check = spec.health_check.unwrap();
        assert_eq!(check.method, Some(ProbeMethodSpec::Head));
        assert_eq!(check.expected_statuses.unwrap().len(), 2);
    }

    #[test]
    fn an_analyzer_may_take_every_delivery_format() {
        let crd = serde_json::to_value(Analyzer::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let formats = spec["properties"]["format"]["enum"].as_array().unwrap();
        assert_eq!(
            formats,
            &["packets", "ndjson", "otlp"].map(serde_json::Value::from)
        );
        for (name, format) in [
            ("packets", DeliveryFormat::Packets),
            ("ndjson", DeliveryFormat::Ndjson),
            ("otlp", DeliveryFormat::Otlp),
        ] {
            let spec: AnalyzerSpec = serde_json::from_value(
                serde_json::json!({"weight": 1, "endpoint": "http://c:4318/v1/logs", "format": name}),
            )
            .unwrap();
            assert_eq!(spec.format, Some(format));
        }
    }
}
