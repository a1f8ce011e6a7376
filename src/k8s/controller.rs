//! The watch: `Analyzer` resources become the live routing table.
//!
//! Every event of the watch is applied to the fleet at once: a new Analyzer
//! joins the rotation, a weight or `spec.health` change reshapes it, a
//! changed endpoint or simulation replaces the analyzer (its queued packets
//! are re-routed), a deleted Analyzer leaves (same). After each (re)list the
//! fleet is made to match the list exactly. While the API server cannot be
//! reached, routing goes on with the last known table and the watch
//! reconnects with backoff.

use super::crd::{Analyzer as AnalyzerResource, AnalyzerSpec, DeclaredHealth};
use super::KubeState;
use crate::config::{AnalyzerConfig, AnalyzerHealthCheck, Settings, SimulatedConfig};
use crate::dispatch::fleet::{Analyzer, LaneReceiver};
use crate::dispatch::health::HealthMode;
use crate::dispatch::Dispatcher;
use futures_util::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the controller built for one Analyzer, to tell a change of weight
/// or health (applied in place) from a change of transport (rebuilt).
struct Built {
    transport: AnalyzerConfig,
}

pub struct Watch {
    pub dispatcher: Arc<Dispatcher>,
    pub settings: Arc<Settings>,
    pub state: Arc<KubeState>,
    /// Prefix ids with the namespace (when watching all namespaces).
    pub qualify_ids: bool,
}

impl Watch {
    /// The fleet id of an Analyzer.
    pub fn id_of(&self, resource: &AnalyzerResource) -> String {
        let name = resource.name_any();
        match (self.qualify_ids, resource.namespace()) {
            (true, Some(namespace)) => format!("{namespace}/{name}"),
            _ => name,
        }
    }

    /// Follows the Analyzers of `api` until the task is dropped.
    pub async fn run(self: Arc<Self>, api: Api<AnalyzerResource>) {
        let mut built: BTreeMap<String, Built> = BTreeMap::new();
        let mut listing: Option<Vec<AnalyzerResource>> = None;
        // The server ends each watch after WATCH_TIMEOUT, so a silent API
        // server is noticed by the client's read timeout (see `k8s::start`).
        let config = watcher::Config::default().timeout(super::WATCH_TIMEOUT_SECONDS);
        let stream = watcher::watcher(api, config).default_backoff();
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => listing = Some(Vec::new()),
                Ok(Event::InitApply(resource)) => listing.get_or_insert_with(Vec::new).push(resource),
                Ok(Event::InitDone) => {
                    let resources = listing.take().unwrap_or_default();
                    self.sync_all(&mut built, &resources);
                    self.state.connected.store(true, Ordering::Release);
                    self.state.synced.store(true, Ordering::Release);
                }
                Ok(Event::Apply(resource)) => {
                    match self.apply(&mut built, &resource) {
                        Applied::Unchanged => {}
                        Applied::Reshaped => self.dispatcher.rotation_changed(),
                        Applied::New(analyzer, lane) => self.dispatcher.add_analyzer(analyzer, lane),
                    }
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
        }
    }

    /// Makes the fleet match `resources` exactly, as one change of the
    /// routing table: new analyzers join together (see
    /// `Dispatcher::add_analyzers`).
    fn sync_all(&self, built: &mut BTreeMap<String, Built>, resources: &[AnalyzerResource]) {
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
            match self.apply(built, resource) {
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
    fn apply(&self, built: &mut BTreeMap<String, Built>, resource: &AnalyzerResource) -> Applied {
        let id = self.id_of(resource);
        self.state.remember(&id, resource);
        let config = analyzer_config(&id, resource);
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
                    tracing::info!(analyzer = %id, weight, "Analyzer applied");
                    Applied::New(analyzer, lane)
                }
                Err(e) => {
                    tracing::error!(analyzer = %id, error = %e, "cannot build the analyzer of this Analyzer");
                    Applied::Unchanged
                }
            },
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

/// The configuration of an Analyzer resource, as the YAML file would say it.
fn analyzer_config(id: &str, resource: &AnalyzerResource) -> AnalyzerConfig {
    let spec: &AnalyzerSpec = &resource.spec;
    let check = spec.health_check.clone().unwrap_or_default();
    AnalyzerConfig {
        id: id.to_string(),
        name: Some(spec.display_name.clone().unwrap_or_else(|| resource.name_any())),
        weight: i64::from(spec.weight),
        simulated: spec.simulated.as_ref().map(|s| SimulatedConfig {
            processing_time_ms: u64::try_from(s.processing_time_ms).unwrap_or(0),
            failure_rate: s.failure_rate,
            health_failure_rate: s.health_failure_rate,
        }),
        endpoint: spec.endpoint.clone(),
        tls: None,
        auth: None,
        headers: Default::default(),
        format: spec.format.unwrap_or_default(),
        concurrency: None,
        health_path: check.path.clone().unwrap_or_else(|| "/health".into()),
        health_check: Some(AnalyzerHealthCheck {
            interval: check.interval_seconds.map(seconds),
            timeout: check.timeout_seconds.map(seconds),
            unhealthy_threshold: check.unhealthy_threshold.and_then(|n| u32::try_from(n).ok()),
            healthy_threshold: check.healthy_threshold.and_then(|n| u32::try_from(n).ok()),
            ..AnalyzerHealthCheck::default()
        }),
    }
}

/// Whole seconds from the schema (which keeps them positive).
fn seconds(n: i32) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(1))
}

/// The parts of a configuration that need a new analyzer when they change
/// (weight and declared health are changed in place).
fn transport_part(config: &AnalyzerConfig) -> AnalyzerConfig {
    AnalyzerConfig {
        weight: 0,
        ..config.clone()
    }
}
