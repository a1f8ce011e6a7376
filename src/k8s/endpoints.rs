//! The endpoints of the Services that Analyzers name (`spec.service`),
//! from their EndpointSlices (`discovery.k8s.io/v1`, label
//! `kubernetes.io/service-name`).
//!
//! [`SliceWatch`] watches the EndpointSlices of exactly the Services some
//! Analyzer names (a label selector `kubernetes.io/service-name in (...)`,
//! started again when that set changes; no watch at all while no Analyzer
//! names one, so a distributor without Service-backed Analyzers needs no
//! right on EndpointSlices). [`Slices`] keeps them in memory, by Service.
//!
//! An endpoint takes new packets when its slice says it is ready
//! (`conditions.ready` not false) and not terminating: an endpoint that is
//! serving but terminating takes none. Its port is the slice's port of the
//! Analyzer's port name, or the number given when the slice lists it (or
//! lists no ports). An address listed by several slices (while they are
//! being rewritten) is ready only when all of them say so.

use crate::k8s::crd::ServicePort;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::{EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};

/// The label that ties an EndpointSlice to its Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service, by namespace and name.
pub(crate) type ServiceRef = (String, String);

/// One endpoint of a Service, at the Analyzer's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedEndpoint {
    /// `10.0.0.5:9000`, `[fd00::5]:9000`.
    pub address: String,
    /// The Pod behind it, when the slice names one.
    pub pod: Option<String>,
    /// Ready and not terminating: it may take new packets.
    pub ready: bool,
}

/// The EndpointSlices of the watched Services, by Service and slice name.
#[derive(Default)]
pub(crate) struct Slices {
    by_service: BTreeMap<ServiceRef, BTreeMap<String, EndpointSlice>>,
    /// A (re)list in progress: it replaces everything once done.
    listing: Option<BTreeMap<ServiceRef, BTreeMap<String, EndpointSlice>>>,
}

impl Slices {
    /// Applies one event of the watch; answers the Services whose slices
    /// may have changed.
    pub(crate) fn apply(&mut self, event: Event<EndpointSlice>) -> BTreeSet<ServiceRef> {
        match event {
            Event::Init => {
                self.listing = Some(BTreeMap::new());
                BTreeSet::new()
            }
            Event::InitApply(slice) => {
                if let Some(service) = service_of(&slice) {
                    let listing = self.listing.get_or_insert_with(BTreeMap::new);
                    listing
                        .entry(service)
                        .or_default()
                        .insert(slice.name_any(), slice);
                }
                BTreeSet::new()
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let before = std::mem::replace(&mut self.by_service, listed);
                before
                    .into_keys()
                    .chain(self.by_service.keys().cloned())
                    .collect()
            }
            Event::Apply(slice) => {
                let Some(service) = service_of(&slice) else {
                    return BTreeSet::new();
                };
                self.by_service
                    .entry(service.clone())
                    .or_default()
                    .insert(slice.name_any(), slice);
                BTreeSet::from([service])
            }
            Event::Delete(slice) => {
                let Some(service) = service_of(&slice) else {
                    return BTreeSet::new();
                };
                if let Some(slices) = self.by_service.get_mut(&service) {
                    slices.remove(&slice.name_any());
                    if slices.is_empty() {
                        self.by_service.remove(&service);
                    }
                }
                BTreeSet::from([service])
            }
        }
    }

    /// Forgets the slices of the Services not in `services`.
    pub(crate) fn retain(&mut self, services: &BTreeSet<ServiceRef>) {
        self.by_service.retain(|service, _| services.contains(service));
    }

    /// The endpoints of `service` at `port`, by address.
    pub(crate) fn endpoints(&self, service: &ServiceRef, port: &ServicePort) -> Vec<ListedEndpoint> {
        let mut found: BTreeMap<String, ListedEndpoint> = BTreeMap::new();
        for slice in self
            .by_service
            .get(service)
            .into_iter()
            .flat_map(BTreeMap::values)
        {
            let Some(number) = port_in(slice.ports.as_deref(), &port.0) else {
                continue;
            };
            for endpoint in slice.endpoints.iter().flatten() {
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                let ready = conditions.ready != Some(false) && conditions.terminating != Some(true);
                let pod = endpoint
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name.clone());
                // Consumers use the first address only (the API's rule).
                let Some(address) = endpoint.addresses.first() else {
                    continue;
                };
                let address = socket_address(address, number);
                found
                    .entry(address.clone())
                    .and_modify(|seen| seen.ready &= ready)
                    .or_insert(ListedEndpoint { address, pod, ready });
            }
        }
        found.into_values().collect()
    }
}

/// The Service an EndpointSlice belongs to.
fn service_of(slice: &EndpointSlice) -> Option<ServiceRef> {
    let name = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
    Some((slice.namespace().unwrap_or_default(), name))
}

/// The port number of `port` in a slice listing `ports`.
fn port_in(ports: Option<&[EndpointPort]>, port: &IntOrString) -> Option<i32> {
    let ports = ports.unwrap_or_default();
    match port {
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or_default() == name)
            .and_then(|p| p.port),
        // A slice without ports stands for every port (a headless Service).
        IntOrString::Int(number) if ports.is_empty() => Some(*number),
        IntOrString::Int(number) => ports.iter().any(|p| p.port == Some(*number)).then_some(*number),
    }
}

/// `host:port`, an IPv6 address in brackets.
fn socket_address(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The watch of the EndpointSlices of the Services some Analyzer names.
pub(crate) struct SliceWatch {
    api: Api<EndpointSlice>,
    /// The Service names watched now (of any namespace the API covers).
    watched: BTreeSet<String>,
    stream: Option<BoxStream<'static, Result<Event<EndpointSlice>, watcher::Error>>>,
}

impl SliceWatch {
    pub(crate) fn new(api: Api<EndpointSlice>) -> SliceWatch {
        SliceWatch {
            api,
            watched: BTreeSet::new(),
            stream: None,
        }
    }

    /// Watches the slices of the Services named `names` from now on (a
    /// new watch, whose first list replaces what [`Slices`] holds); true
    /// when that is a change.
    pub(crate) fn follow(&mut self, names: BTreeSet<String>) -> bool {
        if names == self.watched {
            return false;
        }
        self.stream = (!names.is_empty()).then(|| {
            let list = names.iter().cloned().collect::<Vec<_>>().join(",");
            let config = watcher::Config::default()
                .timeout(super::WATCH_TIMEOUT_SECONDS)
                .labels(&format!("{SERVICE_NAME_LABEL} in ({list})"));
            watcher::watcher(self.api.clone(), config)
                .default_backoff()
                .boxed()
        });
        self.watched = names;
        true
    }

    /// The next event of the watch; never, while nothing is watched.
    pub(crate) async fn next(&mut self) -> Result<Event<EndpointSlice>, watcher::Error> {
        match self.stream.as_mut() {
            Some(stream) => match stream.next().await {
                Some(event) => event,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, endpoints: serde_json::Value, ports: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "logs", "labels": {SERVICE_NAME_LABEL: "analyzer"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }))
        .unwrap()
    }

    fn service() -> ServiceRef {
        ("logs".into(), "analyzer".into())
    }

    fn port(value: serde_json::Value) -> ServicePort {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn ready_endpoints_take_packets_and_terminating_ones_do_not() {
        let mut slices = Slices::default();
        let changed = slices.apply(Event::Apply(slice(
            "analyzer-a",
            json!([
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "p1"}},
                {"addresses": ["10.0.0.2"], "conditions": {}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.5"], "conditions": {"ready": false}},
            ]),
            json!([{"name": "http", "port": 9000}]),
        )));
        assert_eq!(changed, BTreeSet::from([service()]));
        let endpoints = slices.endpoints(&service(), &port(json!("http")));
        let ready: Vec<(&str, bool)> = endpoints.iter().map(|e| (e.address.as_str(), e.ready)).collect();
        assert_eq!(
            ready,
            [
                ("10.0.0.1:9000", true),
                ("10.0.0.2:9000", true),
                ("10.0.0.3:9000", false),
                ("10.0.0.4:9000", false),
                ("10.0.0.5:9000", false)
            ]
        );
        assert_eq!(endpoints[0].pod.as_deref(), Some("p1"));
    }

    #[test]
    fn the_port_is_found_by_name_or_number() {
        let mut slices = Slices::default();
        let ipv6 = slice(
            "analyzer-b",
            json!([{"addresses": ["fd00::5"]}]),
            json!([{"name": "http", "port": 9000}, {"name": "metrics", "port": 9090}]),
        );
        slices.apply(Event::Apply(ipv6));
        let addresses = |slices: &Slices, p| -> Vec<String> {
            slices
                .endpoints(&service(), &port(p))
                .into_iter()
                .map(|e| e.address)
                .collect()
        };
        assert_eq!(addresses(&slices, json!("metrics")), ["[fd00::5]:9090"]);
        assert_eq!(addresses(&slices, json!(9000)), ["[fd00::5]:9000"]);
        assert!(addresses(&slices, json!("grpc")).is_empty(), "no such port name");
        assert!(addresses(&slices, json!(8080)).is_empty(), "no such port number");
        slices.apply(Event::Apply(slice(
            "analyzer-b",
            json!([{"addresses": ["10.0.0.9"]}]),
            json!([]),
        )));
        assert_eq!(
            addresses(&slices, json!(8080)),
            ["10.0.0.9:8080"],
            "no ports: every port"
        );
    }

    #[test]
    fn an_address_in_two_slices_is_ready_only_when_both_say_so_and_a_relist_replaces_all() {
        let mut slices = Slices::default();
        let one = |name: &str, ready: bool| {
            slice(
                name,
                json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": ready}}]),
                json!([{"name": "http", "port": 9000}]),
            )
        };
        slices.apply(Event::Apply(one("a", true)));
        slices.apply(Event::Apply(one("b", false)));
        let http = port(json!("http"));
        assert!(!slices.endpoints(&service(), &http)[0].ready);
        slices.apply(Event::Delete(one("b", false)));
        assert!(slices.endpoints(&service(), &http)[0].ready);
        slices.apply(Event::Init);
        slices.apply(Event::InitApply(one("c", true)));
        assert_eq!(
            slices.endpoints(&service(), &http).len(),
            1,
            "until the relist is done"
        );
        let changed = slices.apply(Event::InitDone);
        assert_eq!(changed, BTreeSet::from([service()]));
        assert_eq!(slices.endpoints(&service(), &http).len(), 1);
        slices.apply(Event::Delete(one("c", true)));
        assert!(slices.endpoints(&service(), &http).is_empty());
    }
}
