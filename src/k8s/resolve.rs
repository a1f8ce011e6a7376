//! An Analyzer resource as the configuration an analyzer is built from, as
//! the YAML file would say it, with the Secrets and ConfigMaps its
//! `spec.tls` and `spec.auth` name read in (held in memory, as inline
//! material: never written to disk, never printed).

use super::crd::{Analyzer as AnalyzerResource, AnalyzerSpec, ProbeMethodSpec};
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
