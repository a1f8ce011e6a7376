//! An Analyzer resource as the configuration an analyzer is built from, as
//! the YAML file would say it, with the Secrets and ConfigMaps its
//! `spec.tls` and `spec.auth` name read in (held in memory, as inline
//! material: never written to disk, never printed). A Service-backed
//! Analyzer (`spec.service`) gives one configuration per endpoint
//! ([`endpoint_config`]), all alike but for the endpoint.

use super::crd::{Analyzer as AnalyzerResource, AnalyzerSpec, ProbeMethodSpec, ServiceScheme, ServiceSpec};
use super::secrets::{ObjectRef, Store, Unresolved};
use crate::config::{
    AnalyzerConfig, AnalyzerHealthCheck, AuthOptions, ExpectedStatuses, ExtraHeaders, ProbeMethod,
    SimulatedConfig, TlsOptions,
};
use crate::transport::material::Material;
use crate::transport::probe::StatusItem;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeSet;
use std::time::Duration;

/// Why an Analyzer cannot be built: the reason and message of its Ready
/// condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbuilt {
    pub reason: &'static str,
    pub message: String,
}

impl From<Unresolved> for Unbuilt {
    fn from(unresolved: Unresolved) -> Unbuilt {
        Unbuilt {
            reason: unresolved.reason(),
            message: unresolved.to_string(),
        }
    }
}

/// The configuration of an Analyzer resource, its Secrets read.
pub(crate) async fn analyzer_config(
    id: &str,
    resource: &AnalyzerResource,
    store: &mut Store,
) -> Result<AnalyzerConfig, Unbuilt> {
    let spec: &AnalyzerSpec = &resource.spec;
    check_target(spec)?;
    let namespace = resource.namespace().unwrap_or_default();
    let check = spec.health_check.clone().unwrap_or_default();
    let expected_statuses = match &check.expected_statuses {
        Some(items) => Some(
            ExpectedStatuses::parse(items.iter().map(|item| match &item.0 {
                IntOrString::Int(code) => StatusItem::Code(i64::from(*code)),
                IntOrString::String(text) => StatusItem::Text(text),
            }))
            .map_err(|e| Unbuilt {
                reason: "InvalidConfiguration",
                message: format!("spec.healthCheck.expectedStatuses: {e}"),
            })?,
        ),
        None => None,
    };
    Ok(AnalyzerConfig {
        id: id.to_string(),
        name: Some(spec.display_name.clone().unwrap_or_else(|| resource.name_any())),
        weight: i64::from(spec.weight),
        simulated: spec.simulated.as_ref().map(|s| SimulatedConfig {
            processing_time_ms: u64::try_from(s.processing_time_ms).unwrap_or(0),
            failure_rate: s.failure_rate,
            health_failure_rate: s.health_failure_rate,
        }),
        endpoint: spec.endpoint.clone(),
        tls: tls(spec, &namespace, store).await?,
        auth: auth(spec, &namespace, store).await?,
        headers: ExtraHeaders(
            spec.headers
                .iter()
                .flatten()
                .map(|(name, value)| (name.clone(), value.0.clone()))
                .collect(),
        ),
        format: spec.format.unwrap_or_default(),
        concurrency: None,
        max_batch_packets: spec.max_batch_packets.and_then(|n| usize::try_from(n).ok()),
        health_path: check.path.clone().unwrap_or_else(|| "/health".into()),
        health_check: Some(AnalyzerHealthCheck {
            interval: check.interval_seconds.map(seconds),
            timeout: check.timeout_seconds.map(seconds),
            unhealthy_threshold: check.unhealthy_threshold.and_then(|n| u32::try_from(n).ok()),
            healthy_threshold: check.healthy_threshold.and_then(|n| u32::try_from(n).ok()),
            url: check.url.clone(),
            method: check.method.map(|method| match method {
                ProbeMethodSpec::Get => ProbeMethod::Get,
                ProbeMethodSpec::Head => ProbeMethod::Head,
            }),
            expected_statuses,
            passive: check.passive.unwrap_or(false),
        }),
    })
}

/// What the API server's rules say of the target, for an Analyzer that
/// was stored under a CRD without them: exactly one of `endpoint`,
/// `service` and `simulated`; a Service's port, path and scheme.
fn check_target(spec: &AnalyzerSpec) -> Result<(), Unbuilt> {
    let invalid = |message: &str| Unbuilt {
        reason: "InvalidConfiguration",
        message: message.into(),
    };
    let targets = [
        spec.endpoint.is_some(),
        spec.service.is_some(),
        spec.simulated.is_some(),
    ];
    if targets.iter().filter(|set| **set).count() != 1 {
        return Err(invalid(
            "set exactly one of spec.endpoint, spec.service and spec.simulated",
        ));
    }
    let Some(service) = &spec.service else {
        return Ok(());
    };
    if let IntOrString::Int(port) = service.port.0 {
        if !(1..=65535).contains(&port) {
            return Err(invalid("spec.service.port: a port number is 1 to 65535"));
        }
    }
    if service.path.as_deref().is_some_and(|path| !path.starts_with('/')) {
        return Err(invalid("spec.service.path must start with /"));
    }
    if spec.tls.is_some() && service.scheme.unwrap_or_default() != ServiceScheme::Https {
        return Err(invalid("spec.tls needs a Service with scheme https"));
    }
    Ok(())
}

/// The fleet id of the analyzer of endpoint `address` of the Analyzer `id`.
pub(crate) fn endpoint_id(id: &str, address: &str) -> String {
    format!("{id}/{address}")
}

/// The address of the endpoint of the Analyzer `id` whose fleet id is `endpoint`.
pub(crate) fn endpoint_address<'a>(id: &str, endpoint: &'a str) -> &'a str {
    endpoint
        .strip_prefix(id)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(endpoint)
}

/// The configuration of the analyzer of endpoint `address` (`10.0.0.5:9000`)
/// of a Service-backed Analyzer, from the Analyzer's own (`template`).
pub(crate) fn endpoint_config(
    template: &AnalyzerConfig,
    service: &ServiceSpec,
    address: &str,
) -> AnalyzerConfig {
    let scheme = service.scheme.unwrap_or_default().as_str();
    let path = service.path.as_deref().unwrap_or("/");
    AnalyzerConfig {
        id: endpoint_id(&template.id, address),
        name: template.name.as_ref().map(|name| format!("{name} {address}")),
        endpoint: Some(format!("{scheme}://{address}{path}")),
        ..template.clone()
    }
}

/// The Secrets and ConfigMaps an Analyzer references.
pub(crate) fn references(resource: &AnalyzerResource) -> BTreeSet<ObjectRef> {
    let namespace = resource.namespace().unwrap_or_default();
    let spec = &resource.spec;
    let mut objects = BTreeSet::new();
    if let Some(tls) = &spec.tls {
        if let Some(ca) = &tls.ca {
            if let Some(secret) = &ca.secret_key_ref {
                objects.insert(ObjectRef::secret(&namespace, &secret.name));
            }
            if let Some(map) = &ca.config_map_key_ref {
                objects.insert(ObjectRef::config_map(&namespace, &map.name));
            }
        }
        if let Some(client) = &tls.client_certificate {
            objects.insert(ObjectRef::secret(&namespace, &client.secret_name));
        }
    }
    if let Some(auth) = &spec.auth {
        if let Some(bearer) = &auth.bearer_token {
            objects.insert(ObjectRef::secret(&namespace, &bearer.secret_key_ref.name));
        }
        if let Some(basic) = &auth.basic {
            objects.insert(ObjectRef::secret(&namespace, &basic.secret_name));
        }
    }
    objects
}

/// `key` of `object`, as inline material named after where it was read.
async fn material(store: &mut Store, object: ObjectRef, key: &str) -> Result<Material, Unresolved> {
    let bytes = store.value(&object, key).await?;
    Ok(Material::inline(format!("{object}, key {key}"), bytes))
}

async fn tls(
    spec: &AnalyzerSpec,
    namespace: &str,
    store: &mut Store,
) -> Result<Option<TlsOptions>, Unresolved> {
    let Some(tls) = &spec.tls else {
        return Ok(None);
    };
    let ca_file = match tls.ca.as_ref() {
        Some(ca) => match (&ca.secret_key_ref, &ca.config_map_key_ref) {
            (Some(secret), _) => {
                Some(material(store, ObjectRef::secret(namespace, &secret.name), &secret.key).await?)
            }
            (None, Some(map)) => {
                Some(material(store, ObjectRef::config_map(namespace, &map.name), &map.key).await?)
            }
            (None, None) => None,
        },
        None => None,
    };
    let (cert_file, key_file) = match &tls.client_certificate {
        Some(client) => {
            let secret = ObjectRef::secret(namespace, &client.secret_name);
            let cert = material(store, secret.clone(), "tls.crt").await?;
            let key = material(store, secret, "tls.key").await?;
            (Some(cert), Some(key))
        }
        None => (None, None),
    };
    Ok(Some(TlsOptions {
        ca_file,
        cert_file,
        key_file,
        server_name: tls.server_name.clone(),
    }))
}

async fn auth(
    spec: &AnalyzerSpec,
    namespace: &str,
    store: &mut Store,
) -> Result<Option<AuthOptions>, Unresolved> {
    let Some(auth) = &spec.auth else {
        return Ok(None);
    };
    let mut options = AuthOptions::default();
    if let Some(bearer) = &auth.bearer_token {
        let reference = &bearer.secret_key_ref;
        let secret = ObjectRef::secret(namespace, &reference.name);
        options.token_file = Some(material(store, secret, &reference.key).await?);
    }
    if let Some(basic) = &auth.basic {
        let secret = ObjectRef::secret(namespace, &basic.secret_name);
        let username_key = basic.username_key.as_deref().unwrap_or("username");
        let password_key = basic.password_key.as_deref().unwrap_or("password");
        options.username_file = Some(material(store, secret.clone(), username_key).await?);
        options.password_file = Some(material(store, secret, password_key).await?);
    }
    Ok(Some(options))
}

/// Whole seconds from the schema (which keeps them positive).
fn seconds(n: i32) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> AnalyzerSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_service_backed_analyzer_gives_one_configuration_per_endpoint() {
        let service: ServiceSpec = serde_json::from_value(
            serde_json::json!({"name": "otel", "port": "otlp", "scheme": "https", "path": "/v1/logs"}),
        )
        .unwrap();
        let template = AnalyzerConfig {
            id: "otel".into(),
            name: Some("OTel".into()),
            weight: 30,
            simulated: None,
            endpoint: None,
            tls: None,
            auth: None,
            headers: ExtraHeaders::default(),
            format: Default::default(),
            concurrency: None,
            max_batch_packets: None,
            health_path: "/health".into(),
            health_check: None,
        };
        let one = endpoint_config(&template, &service, "[fd00::5]:4318");
        assert_eq!(one.id, "otel/[fd00::5]:4318");
        assert_eq!(one.endpoint.as_deref(), Some("https://[fd00::5]:4318/v1/logs"));
        assert_eq!(one.name.as_deref(), Some("OTel [fd00::5]:4318"));
        assert_eq!((one.weight, one.health_path.as_str()), (30, "/health"));
    }

    #[test]
    fn a_target_the_rules_refuse_is_invalid_configuration() {
        let service = serde_json::json!({"name": "a", "port": 9000});
        for (bad, says) in [
            (
                serde_json::json!({"weight": 1, "endpoint": "http://a:1/", "service": service}),
                "exactly one of",
            ),
            (serde_json::json!({"weight": 1}), "exactly one of"),
            (
                serde_json::json!({"weight": 1, "service": {"name": "a", "port": 70000}}),
                "1 to 65535",
            ),
            (
                serde_json::json!({"weight": 1, "service": {"name": "a", "port": 1, "path": "v1"}}),
                "start with /",
            ),
            (
                serde_json::json!({"weight": 1, "service": service, "tls": {"serverName": "a"}}),
                "scheme https",
            ),
        ] {
            let unbuilt = check_target(&spec(bad)).unwrap_err();
            assert_eq!(unbuilt.reason, "InvalidConfiguration");
            assert!(unbuilt.message.contains(says), "{}", unbuilt.message);
        }
        check_target(&spec(serde_json::json!({"weight": 1, "service": service}))).unwrap();
    }

    #[test]
    fn the_secrets_and_config_maps_an_analyzer_names_in_its_namespace() {
        let analyzer: AnalyzerResource = serde_json::from_value(serde_json::json!({
            "apiVersion": "logs-distributor.dev/v1alpha1",
            "kind": "Analyzer",
            "metadata": {"name": "otel", "namespace": "logs"},
            "spec": {
                "weight": 1,
                "endpoint": "https://otel:4318/v1/logs",
                "tls": {
                    "ca": {"configMapKeyRef": {"name": "otel-ca", "key": "ca.crt"}},
                    "clientCertificate": {"secretName": "ld-client"},
                },
                "auth": {"basic": {"secretName": "otel-basic"}},
            }
        }))
        .unwrap();
        let names: Vec<String> = references(&analyzer).iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "Secret logs/ld-client",
                "Secret logs/otel-basic",
                "ConfigMap logs/otel-ca"
            ]
        );
    }
}
