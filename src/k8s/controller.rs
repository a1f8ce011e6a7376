//! The watch: `Analyzer` resources become the live routing table.
//!
//! Every event of the watch is applied to the fleet at once: a new Analyzer
//! joins the rotation, a weight or `spec.health` change reshapes it, a
//! changed endpoint, simulation, TLS or credentials replace the analyzer
//! (its queued packets are re-routed), a deleted Analyzer leaves (same).
//! After each (re)list the fleet is made to match the list exactly. While
//! the API server cannot be reached, routing goes on with the last known
//! table and the watch reconnects with backoff.
//!
//! A Service-backed Analyzer (`spec.service`) is one analyzer per ready
//! endpoint of its Service (fleet id `<analyzer>/<address>`), all in one
//! routing group that shares the Analyzer's weight evenly
//! ([`super::endpoints`] watches the EndpointSlices). A change of the
//! slices applies the Analyzers of that Service again: an endpoint that is
//! no longer ready, terminates or is gone leaves the fleet at once (what
//! its lane holds is re-routed, as for a deleted Analyzer), a new ready one
//! joins.
//!
//! The Secrets an Analyzer references are read and watched by
//! [`Store`]; a change of one applies the Analyzers that reference it again
//! (a rotated token or certificate rebuilds the analyzer). An Analyzer
//! whose Secret (or key) is missing or unreadable is not built, or leaves
//! the rotation if it was; one that does not build from its spec and
//! Secrets (a bad certificate) keeps its running version if it has one.
//! Either way the reason is logged and kept for its status (`Ready` False).

use super::crd::{Analyzer as AnalyzerResource, DeclaredHealth};
use super::endpoints::{ServiceRef, SliceWatch, Slices};
use super::resolve::{analyzer_config, endpoint_config, references, Unbuilt};
use super::secrets::{ObjectRef, Store};
use super::KubeState;
use crate::config::{AnalyzerConfig, Settings};
use crate::dispatch::fleet::{Analyzer, LaneReceiver};
use crate::dispatch::health::HealthMode;
use crate::dispatch::Dispatcher;
use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the controller built for one Analyzer, to tell a change of weight
/// or health (applied in place) from a change of transport (rebuilt).
struct Built {
    /// Its configuration without the weight (a Service-backed one's
    /// without an endpoint).
    transport: AnalyzerConfig,
    /// The fleet ids of its analyzers: its own, or one per endpoint.
    members: BTreeSet<String>,
}

/// What the controller knows besides the Analyzers themselves.
struct Known {
    built: BTreeMap<String, Built>,
    /// The Secrets and ConfigMaps the Analyzers reference.
    store: Store,
    /// The EndpointSlices of the Services they name.
    slices: Slices,
}

pub(crate) struct Watch {
    pub client: Client,
    pub dispatcher: Arc<Dispatcher>,
    pub settings: Arc<Settings>,
    pub state: Arc<KubeState>,
    /// Prefix ids with the namespace (when watching all namespaces).
    pub qualify_ids: bool,
    /// The label selector of the Analyzers to follow (empty: all).
    pub selector: String,
    /// The EndpointSlices of the namespace (of all, with `qualify_ids`).
    pub endpoint_slices: Api<EndpointSlice>,
}

impl Watch {
    /// The fleet id of an Analyzer.
    pub(crate) fn id_of(&self, resource: &AnalyzerResource) -> String {
        let name = resource.name_any();
        match (self.qualify_ids, resource.namespace()) {
            (true, Some(namespace)) => format!("{namespace}/{name}"),
            _ => name,
        }
    }

    /// Follows the Analyzers of `api` until the task is dropped.
    pub(crate) async fn run(self: Arc<Self>, api: Api<AnalyzerResource>) {
        let (store, mut changed_objects) = Store::new(self.client.clone());
        let mut known = Known {
            built: BTreeMap::new(),
            store,
            slices: Slices::default(),
        };
        let mut slice_watch = SliceWatch::new(self.endpoint_slices.clone());
        let mut listing: Option<Vec<AnalyzerResource>> = None;
        // The server ends each watch after WATCH_TIMEOUT, so a silent API
        // server is noticed by the client's read timeout (see `k8s::start`).
        let mut config = watcher::Config::default().timeout(super::WATCH_TIMEOUT_SECONDS);
        if !self.selector.is_empty() {
            // An Analyzer relabelled out of the selector is a deletion here.
            config = config.labels(&self.selector);
        }
        let stream = watcher::watcher(api, config).default_backoff();
        futures_util::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                event = stream.next() => match event {
                    Some(event) => event,
                    None => return,
                },
                Some(object) = changed_objects.recv() => {
                    self.object_changed(&mut known, &object).await;
                    continue;
                }
                event = slice_watch.next() => {
                    self.slices_changed(&mut known, event).await;
                    continue;
                }
            };
            match event {
                Ok(Event::Init) => listing = Some(Vec::new()),
                Ok(Event::InitApply(resource)) => listing.get_or_insert_with(Vec::new).push(resource),
                Ok(Event::InitDone) => {
                    let resources = listing.take().unwrap_or_default();
                    self.sync_all(&mut known, &resources).await;
                    self.state.connected.store(true, Ordering::Release);
                    self.state.synced.store(true, Ordering::Release);
                }
                Ok(Event::Apply(resource)) => {
                    let changes = self.apply(&mut known, &resource).await;
                    self.place(changes);
                    self.state.connected.store(true, Ordering::Release);
                }
                Ok(Event::Delete(resource)) => {
                    let id = self.id_of(&resource);
                    self.state.forget(&id);
                    if self.remove_all(&mut known, &id) {
                        tracing::info!(analyzer = %id, "Analyzer deleted: out of the rotation");
                    }
                }
                Err(e) => {
                    if self.state.connected.swap(false, Ordering::AcqRel) {
                        tracing::warn!(error = %e, "lost the Analyzer watch; routing on the last known table while reconnecting");
                    }
                    self.state.watch_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.forget_unreferenced(&mut known);
            let services = self.named_services();
            if slice_watch.follow(services.iter().map(|(_, name)| name.clone()).collect()) {
                known.slices.retain(&services);
            }
        }
    }

    /// Puts what applying Analyzers gave into the fleet.
    fn place(&self, changes: Changes) {
        if !changes.added.is_empty() {
            self.dispatcher.add_analyzers(changes.added);
        } else if changes.reshaped {
            self.dispatcher.rotation_changed();
        }
    }

    /// Takes every analyzer of the Analyzer `id` out of the fleet; true
    /// when it had been built.
    fn remove_all(&self, known: &mut Known, id: &str) -> bool {
        let Some(built) = known.built.remove(id) else {
            return false;
        };
        for member in &built.members {
            self.dispatcher.remove_analyzer(member);
        }
        true
    }

    /// A referenced Secret or ConfigMap changed: applies again every
    /// Analyzer that references it.
    async fn object_changed(&self, known: &mut Known, object: &ObjectRef) {
        for (_, resource) in self.state.resources() {
            if references(&resource).contains(object) {
                tracing::info!(%object, analyzer = %resource.name_any(), "a referenced object changed; applying the Analyzer again");
                let changes = self.apply(known, &resource).await;
                self.place(changes);
            }
        }
    }

    /// An event of the EndpointSlice watch: applies again every Analyzer
    /// whose Service it may have changed.
    async fn slices_changed(&self, known: &mut Known, event: Result<Event<EndpointSlice>, watcher::Error>) {
        let services = match event {
            Ok(event) => known.slices.apply(event),
            Err(e) => {
                tracing::warn!(error = %e, "the EndpointSlice watch failed; retrying");
                self.state.watch_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut changes = Changes::default();
        for (_, resource) in self.state.resources() {
            if service_of(&resource).is_some_and(|service| services.contains(&service)) {
                changes.merge(self.apply(known, &resource).await);
            }
        }
        self.place(changes);
    }

    /// The Services the followed Analyzers name.
    fn named_services(&self) -> BTreeSet<ServiceRef> {
        self.state
            .resources()
            .iter()
            .filter_map(|(_, resource)| service_of(resource))
            .collect()
    }

    /// Stops watching the objects no Analyzer references any more.
    fn forget_unreferenced(&self, known: &mut Known) {
        let referenced: BTreeSet<ObjectRef> = self
            .state
            .resources()
            .iter()
            .flat_map(|(_, resource)| references(resource))
            .collect();
        known.store.retain(&referenced);
    }

    /// Makes the fleet match `resources` exactly, as one change of the
    /// routing table: new analyzers join together (see
    /// `Dispatcher::add_analyzers`).
    async fn sync_all(&self, known: &mut Known, resources: &[AnalyzerResource]) {
        let listed: Vec<String> = resources.iter().map(|r| self.id_of(r)).collect();
        let gone: Vec<String> = known
            .built
            .keys()
            .filter(|id| !listed.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.remove_all(known, &id);
            self.state.forget(&id);
            tracing::info!(analyzer = %id, "Analyzer gone after relist: out of the rotation");
        }
        let mut changes = Changes::default();
        for resource in resources {
            changes.merge(self.apply(known, resource).await);
        }
        self.place(changes);
    }

    /// Applies one Analyzer to what the controller built; the caller puts
    /// new analyzers in the fleet or rebuilds the rotation. Analyzers that
    /// are no longer wanted (endpoints that left) leave the fleet here.
    async fn apply(&self, known: &mut Known, resource: &AnalyzerResource) -> Changes {
        let id = self.id_of(resource);
        self.state.remember(&id, resource);
        let config = match analyzer_config(&id, resource, &mut known.store).await {
            Ok(config) => config,
            Err(unbuilt) => {
                self.unbuilt(&id, unbuilt);
                if self.remove_all(known, &id) {
                    tracing::warn!(analyzer = %id, "out of the rotation until it can be built");
                }
                return Changes::default();
            }
        };
        let wanted = self.wanted(known, &id, resource, &config);
        let mode = match resource.spec.health {
            DeclaredHealth::Auto => HealthMode::Auto,
            DeclaredHealth::ForceHealthy => HealthMode::ForceHealthy,
            DeclaredHealth::ForceUnhealthy => HealthMode::ForceUnhealthy,
        };
        let weight = u32::try_from(resource.spec.weight).unwrap_or(0);
        let group = resource.spec.service.is_some().then_some(id.as_str());
        let transport = transport_part(&config);
        let previous = known.built.remove(&id);
        let same_transport = previous.as_ref().is_some_and(|b| b.transport == transport);
        let mut changes = Changes::default();
        let mut failed = None;
        for (member, member_config) in &wanted {
            let running = previous
                .as_ref()
                .filter(|b| same_transport && b.members.contains(member))
                .and_then(|_| self.dispatcher.fleet().get(member));
            match running {
                Some(analyzer) => {
                    // Status writes and label edits come back as events too:
                    // only a real change restarts the rotation's cycle.
                    let reweighted = analyzer.weight() != weight;
                    analyzer.set_weight(weight);
                    let remoded = analyzer.health.set_mode(mode);
                    changes.reshaped |= reweighted || remoded;
                }
                None => match Analyzer::from_config_in_group(
                    member_config,
                    group,
                    &self.settings,
                    self.dispatcher.metrics(),
                ) {
                    Ok((analyzer, lane)) => {
                        analyzer.health.set_mode(mode);
                        tracing::info!(analyzer = %member, weight, "Analyzer applied");
                        changes.added.push((analyzer, lane));
                    }
                    Err(e) => {
                        failed = Some(format!("{e:#}"));
                        break;
                    }
                },
            }
        }
        let wanted_ids: BTreeSet<String> = wanted.into_keys().collect();
        let members = match failed {
            None => {
                self.state.set_applied(&id, resource.metadata.generation);
                known.built.insert(
                    id.clone(),
                    Built {
                        transport,
                        members: wanted_ids.clone(),
                    },
                );
                wanted_ids
            }
            Some(message) => {
                // The running version, if any, goes on; nothing new joins.
                changes.added.clear();
                self.unbuilt(
                    &id,
                    Unbuilt {
                        reason: "InvalidConfiguration",
                        message,
                    },
                );
                let Some(mut previous) = previous else {
                    return changes;
                };
                previous.members.retain(|m| wanted_ids.contains(m));
                let kept = previous.members.clone();
                known.built.insert(id.clone(), previous);
                kept
            }
        };
        // Endpoints that left (and an analyzer whose target changed kind).
        let running_before = self.dispatcher.fleet().group(&id);
        for analyzer in running_before {
            if !members.contains(&analyzer.id) && self.dispatcher.remove_analyzer(&analyzer.id) {
                tracing::info!(analyzer = %analyzer.id, "endpoint out of the rotation");
            }
        }
        changes
    }

    /// The analyzers an Analyzer is, by fleet id: itself, or one per ready
    /// endpoint of its Service (whose endpoints are recorded for status).
    fn wanted(
        &self,
        known: &Known,
        id: &str,
        resource: &AnalyzerResource,
        config: &AnalyzerConfig,
    ) -> BTreeMap<String, AnalyzerConfig> {
        let (Some(spec), Some(service)) = (&resource.spec.service, service_of(resource)) else {
            self.state.set_endpoints(id, None);
            return BTreeMap::from([(id.to_string(), config.clone())]);
        };
        let listed = known.slices.endpoints(&service, &spec.port);
        let wanted = listed
            .iter()
            .filter(|endpoint| endpoint.ready)
            .map(|endpoint| {
                let member = endpoint_config(config, spec, &endpoint.address);
                (member.id.clone(), member)
            })
            .collect();
        self.state.set_endpoints(id, Some(listed));
        wanted
    }

    /// Records why `id` cannot be built, logging it when it is new.
    fn unbuilt(&self, id: &str, unbuilt: Unbuilt) {
        let (reason, message) = (unbuilt.reason, unbuilt.message.clone());
        if self.state.set_unbuilt(id, unbuilt) {
            tracing::error!(analyzer = %id, reason, error = %message, "cannot build the analyzer of this Analyzer");
        }
    }
}

/// What applying Analyzers changed.
#[derive(Default)]
struct Changes {
    /// New analyzers (or ones with a new transport), not in the fleet yet.
    added: Vec<(Arc<Analyzer>, LaneReceiver)>,
    /// A weight or declared health changed: the rotation needs a rebuild.
    reshaped: bool,
}

impl Changes {
    fn merge(&mut self, other: Changes) {
        self.added.extend(other.added);
        self.reshaped |= other.reshaped;
    }
}

/// The Service an Analyzer names, in its namespace.
fn service_of(resource: &AnalyzerResource) -> Option<ServiceRef> {
    let service = resource.spec.service.as_ref()?;
    Some((resource.namespace().unwrap_or_default(), service.name.clone()))
}

/// The parts of a configuration that need a new analyzer when they change
/// (weight and declared health are changed in place).
fn transport_part(config: &AnalyzerConfig) -> AnalyzerConfig {
    AnalyzerConfig {
        weight: 0,
        ..config.clone()
    }
}
