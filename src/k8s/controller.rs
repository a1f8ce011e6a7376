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
//! The Secrets an Analyzer references are read and watched by
//! [`Store`]; a change of one applies the Analyzers that reference it again
//! (a rotated token or certificate rebuilds the analyzer). An Analyzer
//! whose Secret (or key) is missing or unreadable is not built, or leaves
//! the rotation if it was; one that does not build from its spec and
//! Secrets (a bad certificate) keeps its running version if it has one.
//! Either way the reason is logged and kept for its status (`Ready` False).

use super::crd::{Analyzer as AnalyzerResource, DeclaredHealth};
use super::resolve::{analyzer_config, references, Unbuilt};
use super::secrets::{ObjectRef, Store};
use super::KubeState;
use crate::config::{AnalyzerConfig, Settings};
use crate::dispatch::fleet::{Analyzer, LaneReceiver};
use crate::dispatch::health::HealthMode;
use crate::dispatch::Dispatcher;
use futures_util::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the controller built for one Analyzer, to tell a change of weight
/// or health (applied in place) from a change of transport (rebuilt).
struct Built {
    transport: AnalyzerConfig,
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
        let mut built: BTreeMap<String, Built> = BTreeMap::new();
        let (mut store, mut changed_objects) = Store::new(self.client.clone());
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
                    self.object_changed(&mut built, &mut store, &object).await;
                    continue;
                }
            };
            match event {
                Ok(Event::Init) => listing = Some(Vec::new()),
                Ok(Event::InitApply(resource)) => listing.get_or_insert_with(Vec::new).push(resource),
                Ok(Event::InitDone) => {
                    let resources = listing.take().unwrap_or_default();
                    self.sync_all(&mut built, &mut store, &resources).await;
                    self.state.connected.store(true, Ordering::Release);
                    self.state.synced.store(true, Ordering::Release);
                }
                Ok(Event::Apply(resource)) => {
                    let applied = self.apply(&mut built, &mut store, &resource).await;
                    self.place(applied);
                    self.state.connected.store(true, Ordering::Release);
                }
                Ok(Event::Delete(resource)) => {
                    let id = self.id_of(&resource);
                    self.state.forget(&id);
                    if built.remove(&id).is_some() && self.dispatcher.remove_analyzer(&id) {
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
            self.forget_unreferenced(&mut store);
        }
    }

    /// Puts what applying one Analyzer gave into the fleet.
    fn place(&self, applied: Applied) {
        match applied {
            Applied::Unchanged => {}
            Applied::Reshaped => self.dispatcher.rotation_changed(),
            Applied::New(analyzer, lane) => self.dispatcher.add_analyzer(analyzer, lane),
        }
    }

    /// A referenced Secret or ConfigMap changed: applies again every
    /// Analyzer that references it.
    async fn object_changed(
        &self,
        built: &mut BTreeMap<String, Built>,
        store: &mut Store,
        object: &ObjectRef,
    ) {
        for (_, resource) in self.state.resources() {
            if references(&resource).contains(object) {
                tracing::info!(%object, analyzer = %resource.name_any(), "a referenced object changed; applying the Analyzer again");
                let applied = self.apply(built, store, &resource).await;
                self.place(applied);
            }
        }
    }

    /// Stops watching the objects no Analyzer references any more.
    fn forget_unreferenced(&self, store: &mut Store) {
        let referenced: BTreeSet<ObjectRef> = self
            .state
            .resources()
            .iter()
            .flat_map(|(_, resource)| references(resource))
            .collect();
        store.retain(&referenced);
    }

    /// Makes the fleet match `resources` exactly, as one change of the
    /// routing table: new analyzers join together (see
    /// `Dispatcher::add_analyzers`).
    async fn sync_all(
        &self,
        built: &mut BTreeMap<String, Built>,
        store: &mut Store,
        resources: &[AnalyzerResource],
    ) {
        let listed: Vec<String> = resources.iter().map(|r| self.id_of(r)).collect();
        let gone: Vec<String> = built.keys().filter(|id| !listed.contains(id)).cloned().collect();
        for id in gone {
            built.remove(&id);
            self.state.forget(&id);
            self.dispatcher.remove_analyzer(&id);
            tracing::info!(analyzer = %id, "Analyzer gone after relist: out of the rotation");
        }
        let mut added = Vec::new();
        let mut reshaped = false;
        for resource in resources {
            match self.apply(built, store, resource).await {
                Applied::Unchanged => {}
                Applied::Reshaped => reshaped = true,
                Applied::New(analyzer, lane) => added.push((analyzer, lane)),
            }
        }
        if added.is_empty() {
            if reshaped {
                self.dispatcher.rotation_changed();
            }
        } else {
            self.dispatcher.add_analyzers(added);
        }
    }

    /// Applies one Analyzer to what the controller built; the caller puts a
    /// new analyzer in the fleet or rebuilds the rotation.
    async fn apply(
        &self,
        built: &mut BTreeMap<String, Built>,
        store: &mut Store,
        resource: &AnalyzerResource,
    ) -> Applied {
        let id = self.id_of(resource);
        self.state.remember(&id, resource);
        let config = match analyzer_config(&id, resource, store).await {
            Ok(config) => config,
            Err(unbuilt) => {
                self.unbuilt(&id, unbuilt);
                if built.remove(&id).is_some() && self.dispatcher.remove_analyzer(&id) {
                    tracing::warn!(analyzer = %id, "out of the rotation until its Secrets can be read");
                }
                return Applied::Unchanged;
            }
        };
        let mode = match resource.spec.health {
            DeclaredHealth::Auto => HealthMode::Auto,
            DeclaredHealth::ForceHealthy => HealthMode::ForceHealthy,
            DeclaredHealth::ForceUnhealthy => HealthMode::ForceUnhealthy,
        };
        let weight = u32::try_from(resource.spec.weight).unwrap_or(0);
        let same_transport = built
            .get(&id)
            .is_some_and(|b| b.transport == transport_part(&config));
        match self.dispatcher.fleet().get(&id).filter(|_| same_transport) {
            Some(analyzer) => {
                // Status writes and label edits come back as events too: only
                // a real change restarts the rotation's cycle.
                let reweighted = analyzer.weight() != weight;
                analyzer.set_weight(weight);
                let remoded = analyzer.health.set_mode(mode);
                self.state.set_applied(&id, resource.metadata.generation);
                if reweighted || remoded {
                    Applied::Reshaped
                } else {
                    Applied::Unchanged
                }
            }
            None => match Analyzer::from_config(&config, &self.settings, self.dispatcher.metrics()) {
                Ok((analyzer, lane)) => {
                    analyzer.health.set_mode(mode);
                    built.insert(
                        id.clone(),
                        Built {
                            transport: transport_part(&config),
                        },
                    );
                    self.state.set_applied(&id, resource.metadata.generation);
                    tracing::info!(analyzer = %id, weight, "Analyzer applied");
                    Applied::New(analyzer, lane)
                }
                Err(e) => {
                    let unbuilt = Unbuilt {
                        reason: "InvalidConfiguration",
                        message: format!("{e:#}"),
                    };
                    self.unbuilt(&id, unbuilt);
                    Applied::Unchanged
                }
            },
        }
    }

    /// Records why `id` cannot be built, logging it when it is new.
    fn unbuilt(&self, id: &str, unbuilt: Unbuilt) {
        let (reason, message) = (unbuilt.reason, unbuilt.message.clone());
        if self.state.set_unbuilt(id, unbuilt) {
            tracing::error!(analyzer = %id, reason, error = %message, "cannot build the analyzer of this Analyzer");
        }
    }
}

/// What applying one Analyzer changed.
enum Applied {
    Unchanged,
    /// Its weight or declared health: the rotation needs a rebuild.
    Reshaped,
    /// A new analyzer (or one with a new transport), not in the fleet yet.
    New(Arc<Analyzer>, LaneReceiver),
}

/// The parts of a configuration that need a new analyzer when they change
/// (weight and declared health are changed in place).
fn transport_part(config: &AnalyzerConfig) -> AnalyzerConfig {
    AnalyzerConfig {
        weight: 0,
        ..config.clone()
    }
}
