//! What a stopping replica learns from the API server for a handoff
//! (`crate::handoff`): whether it stops for good, and where its peers are.
//!
//! - **For good** is read from the StatefulSet (`get`, that one object by
//!   name): a pod whose ordinal (the `-<n>` ending its name) is at or past
//!   `spec.replicas` is being scaled in and will not come back; one below
//!   it is restarting (a rolling update, an eviction, a node drain) and
//!   will read its volume again. A StatefulSet that no longer exists (it
//!   was deleted) counts as for good.
//! - **Peers** are the ready endpoints of the StatefulSet's headless
//!   Service (`spec.serviceName`), read from its EndpointSlices (label
//!   `kubernetes.io/service-name`), this pod left out, each at the port
//!   named `http` (or the slice's only port), by address.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};

/// A peer replica to hand to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    /// Its pod's name (or its URL when it has none).
    pub name: String,
    /// Its base URL, `http://10.0.0.7:8080`.
    pub url: String,
}

/// This pod's place in its StatefulSet, as the API server has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// `spec.replicas` and the headless Service (`spec.serviceName`).
    Member {
        ordinal: u32,
        replicas: i32,
        service: String,
    },
    /// The StatefulSet no longer exists.
    Deleted,
}

impl Place {
    /// Whether the pod stops for good: its ordinal is no longer counted.
    pub(crate) fn scaled_in(&self) -> bool {
        match self {
            Place::Member {
                ordinal, replicas, ..
            } => i64::from(*ordinal) >= i64::from(*replicas),
            Place::Deleted => true,
        }
    }
}

/// The errors of asking.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    #[error("the identity {0:?} does not end in -<ordinal> (a StatefulSet pod's name)")]
    NoOrdinal(String),
    #[error("cannot read StatefulSet {name}: {source}")]
    StatefulSet { name: String, source: kube::Error },
    #[error("cannot list the EndpointSlices of Service {service}: {source}")]
    EndpointSlices { service: String, source: kube::Error },
}

/// The StatefulSet and Service of one pod.
#[derive(Clone)]
pub(crate) struct Membership {
    client: Client,
    namespace: String,
    /// The pod's name.
    identity: String,
    statefulset: String,
}

/// `name-<n>`: the StatefulSet's name and the ordinal.
pub(crate) fn split_ordinal(identity: &str) -> Option<(&str, u32)> {
    let (base, ordinal) = identity.rsplit_once('-')?;
    if base.is_empty() || ordinal.is_empty() || (ordinal.len() > 1 && ordinal.starts_with('0')) {
        return None;
    }
    Some((base, ordinal.parse().ok()?))
}

impl Membership {
    /// With a client of its own (kubeconfig or in-cluster credentials).
    pub(crate) async fn connect(
        namespace: Option<String>,
        identity: String,
        statefulset: &str,
    ) -> anyhow::Result<Membership> {
        let mut config = kube::Config::infer().await.map_err(|e| {
            anyhow::anyhow!("cannot find Kubernetes credentials (kubeconfig or in-cluster): {e}")
        })?;
        config.read_timeout = Some(super::READ_TIMEOUT);
        let client =
            Client::try_from(config).map_err(|e| anyhow::anyhow!("cannot build a Kubernetes client: {e}"))?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
        Ok(Membership::new(client, namespace, identity, statefulset)?)
    }

    /// The pod `identity` of StatefulSet `statefulset` (empty: the
    /// identity without its ordinal) in `namespace`.
    pub(crate) fn new(
        client: Client,
        namespace: String,
        identity: String,
        statefulset: &str,
    ) -> Result<Membership, AskError> {
        let (base, _) = split_ordinal(&identity).ok_or_else(|| AskError::NoOrdinal(identity.clone()))?;
        let statefulset = if statefulset.is_empty() {
            base.to_string()
        } else {
            statefulset.to_string()
        };
        Ok(Membership {
            client,
            namespace,
            identity,
            statefulset,
        })
    }

    /// The StatefulSet's name.
    pub(crate) fn statefulset(&self) -> &str {
        &self.statefulset
    }

    /// The pod's place in the StatefulSet as it is now.
    pub(crate) async fn place(&self) -> Result<Place, AskError> {
        let (_, ordinal) =
            split_ordinal(&self.identity).ok_or_else(|| AskError::NoOrdinal(self.identity.clone()))?;
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(&self.statefulset)
            .await
            .map_err(|source| AskError::StatefulSet {
                name: self.statefulset.clone(),
                source,
            })?;
        let Some(set) = found else {
            return Ok(Place::Deleted);
        };
        let spec = set.spec.unwrap_or_default();
        Ok(Place::Member {
            ordinal,
            replicas: spec.replicas.unwrap_or(1),
            service: spec.service_name.unwrap_or_default(),
        })
    }

    /// A Warning Event about this pod: packets it had to keep on its volume.
    pub(crate) async fn warn_kept(&self, note: String) {
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: super::CONTROLLER_NAME.into(),
                instance: Some(self.identity.clone()),
            },
        );
        let pod = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(self.identity.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "HandoffIncomplete".into(),
            note: Some(note),
            action: "HandOff".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &pod).await {
            tracing::warn!(error = %e, "cannot publish the HandoffIncomplete Event");
        }
    }

    /// The ready endpoints of `service` but this pod, as `scheme` URLs.
    pub(crate) async fn ready_peers(&self, service: &str, scheme: &str) -> Result<Vec<Peer>, AskError> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let slices = api
            .list(&params)
            .await
            .map_err(|source| AskError::EndpointSlices {
                service: service.to_string(),
                source,
            })?;
        let mut peers = Vec::new();
        for slice in slices {
            peers.extend(ready_endpoints(&slice, &self.identity, scheme));
        }
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        peers.dedup();
        Ok(peers)
    }
}

/// The ready endpoints of one slice that are not the pod `identity`.
fn ready_endpoints(slice: &EndpointSlice, identity: &str, scheme: &str) -> Vec<Peer> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .or_else(|| (ports.len() == 1).then(|| &ports[0]))
        .and_then(|p| p.port);
    let Some(port) = port else {
        return Vec::new();
    };
    let ipv6 = slice.address_type == "IPv6";
    let mut peers = Vec::new();
    for endpoint in slice.endpoints.iter().flatten() {
        let conditions = endpoint.conditions.clone().unwrap_or_default();
        // Ready, and not terminating (a peer that stops too would only
        // have to hand the packets on again).
        if conditions.ready == Some(false) || conditions.terminating == Some(true) {
            continue;
        }
        let pod = endpoint
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref().is_none_or(|kind| kind == "Pod"))
            .and_then(|r| r.name.clone());
        if pod.as_deref() == Some(identity) || endpoint.hostname.as_deref() == Some(identity) {
            continue;
        }
        let Some(address) = endpoint.addresses.first() else {
            continue;
        };
        let url = if ipv6 {
            format!("{scheme}://[{address}]:{port}")
        } else {
            format!("{scheme}://{address}:{port}")
        };
        peers.push(Peer {
            name: pod.unwrap_or_else(|| url.clone()),
            url,
        });
    }
    peers
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_ordinal_ends_a_statefulset_pods_name() {
        assert_eq!(split_ordinal("logs-distributor-2"), Some(("logs-distributor", 2)));
        assert_eq!(split_ordinal("ld-0"), Some(("ld", 0)));
        assert_eq!(split_ordinal("ld-x"), None);
        assert_eq!(split_ordinal("ld-01"), None);
        assert_eq!(split_ordinal("ld"), None);
        assert_eq!(split_ordinal("-3"), None);
    }

    #[test]
    fn peers_are_the_ready_endpoints_but_this_pod() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "ld-0"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "ld-1"}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": true, "terminating": true}, "targetRef": {"kind": "Pod", "name": "ld-3"}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "ld-2"}},
                {"addresses": ["10.0.0.5"], "targetRef": {"kind": "Pod", "name": "ld-4"}},
            ]
        }))
        .unwrap();
        let peers = ready_endpoints(&slice, "ld-2", "http");
        let urls: Vec<&str> = peers.iter().map(|p| p.url.as_str()).collect();
        assert_eq!(urls, ["http://10.0.0.1:8080", "http://10.0.0.5:8080"]);
        assert_eq!(peers[0].name, "ld-0");
    }

    #[test]
    fn ipv6_addresses_are_bracketed_and_a_lone_port_is_taken_whatever_its_name() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "addressType": "IPv6",
            "ports": [{"name": "api", "port": 8080}],
            "endpoints": [{"addresses": ["fd00::1"], "conditions": {"ready": true}}]
        }))
        .unwrap();
        let peers = ready_endpoints(&slice, "ld-2", "https");
        assert_eq!(peers[0].url, "https://[fd00::1]:8080");
    }
}
