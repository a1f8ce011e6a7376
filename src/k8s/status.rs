//! The leader's report: Analyzer status (the status subresource, merge
//! patch) at once on every health change and every `every` otherwise, and
//! a Kubernetes Event on every health transition (Normal `Recovered`,
//! Warning `Unhealthy`). An Analyzer that cannot be built (a Secret
//! missing, a spec or certificate that does not build) gets `Ready` False
//! with the reason and message, and a Warning Event once per failure.
//! `status.observedGeneration` is the generation that runs (applied); the
//! condition's own `observedGeneration` is the one it describes.

use super::crd::{Analyzer as AnalyzerResource, AnalyzerStatus};
use super::KubeState;
use crate::dispatch::fleet::HealthEvent;
use crate::dispatch::Dispatcher;
use crate::traffic::Traffic;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct StatusWriter {
    pub client: Client,
    pub dispatcher: Arc<Dispatcher>,
    pub traffic: Arc<Traffic>,
    pub state: Arc<KubeState>,
    pub recorder: Recorder,
    pub every: Duration,
    /// The build failure last announced by an Event, by fleet id: reason,
    /// message and the generation it concerns.
    pub announced: HashMap<String, (String, String, Option<i64>)>,
}

impl StatusWriter {
    /// Writes status while this replica leads, until the task is dropped.
    pub(crate) async fn run(mut self) {
        let mut events = self.dispatcher.fleet().health_events();
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                event = events.recv() => {
                    if let Ok(event) = event {
                        if self.state.leader.load(Ordering::Acquire) {
                            self.publish(&event).await;
                        }
                    }
                }
            }
            if self.state.leader.load(Ordering::Acquire) {
                self.write_all().await;
            }
        }
    }

    async fn write_all(&mut self) {
        let shares = self.traffic.recent_shares();
        for (id, resource) in self.state.resources() {
            let running = self.dispatcher.fleet().get(&id);
            let unbuilt = self.state.unbuilt(&id);
            let applied = self.state.applied_generation(&id);
            let mut status = match &running {
                Some(analyzer) => {
                    let health = analyzer.health.snapshot();
                    AnalyzerStatus {
                        healthy: Some(health.healthy),
                        conditions: vec![ready(
                            &resource,
                            health.healthy,
                            format!("{:?}", health.reason),
                            health
                                .detail
                                .clone()
                                .unwrap_or_else(|| describe(health.healthy, analyzer.in_rotation())),
                        )],
                        last_probe_time: health.last_check.map(|t| t.to_rfc3339()),
                        processed_count: i64::try_from(analyzer.metrics.delivered.get()).ok(),
                        error_count: i64::try_from(analyzer.metrics.errors.get()).ok(),
                        traffic_share: Some(shares.get(&id).copied().unwrap_or(0.0)),
                        ..AnalyzerStatus::default()
                    }
                }
                None if unbuilt.is_some() => AnalyzerStatus {
                    healthy: Some(false),
                    traffic_share: Some(0.0),
                    ..AnalyzerStatus::default()
                },
                None => continue,
            };
            if let Some(unbuilt) = &unbuilt {
                let message = match (&running, applied) {
                    (Some(_), Some(generation)) => {
                        format!("{}; generation {generation} goes on running", unbuilt.message)
                    }
                    _ => unbuilt.message.clone(),
                };
                status.conditions = vec![ready(&resource, false, unbuilt.reason.into(), message)];
            }
            status.observed_generation = applied;
            if self.patch(&id, &resource, &status).await && unbuilt.is_some() {
                self.announce_unbuilt(&id, &resource, &status.conditions[0]).await;
            }
        }
    }

    /// A Warning Event for an Analyzer that cannot be built, once per
    /// reason, message and generation (also across leaders: a condition
    /// already in the status was announced by whoever wrote it).
    async fn announce_unbuilt(&mut self, id: &str, resource: &AnalyzerResource, condition: &Condition) {
        let key = (
            condition.reason.clone(),
            condition.message.clone(),
            condition.observed_generation,
        );
        let written = ready_condition(resource).map(|c| (c.reason, c.message, c.observed_generation));
        if self.announced.get(id) == Some(&key) || written.as_ref() == Some(&key) {
            self.announced.insert(id.to_string(), key);
            return;
        }
        let record = Event {
            type_: EventType::Warning,
            reason: condition.reason.clone(),
            note: Some(condition.message.clone()),
            action: "BuildAnalyzer".into(),
            secondary: None,
        };
        match self.recorder.publish(&record, &resource.object_ref(&())).await {
            Ok(()) => {
                self.announced.insert(id.to_string(), key);
            }
            Err(e) => tracing::warn!(analyzer = %id, error = %e, "cannot publish an Event"),
        }
    }

    /// Writes `status`; true when the API server took it.
    async fn patch(&self, id: &str, resource: &AnalyzerResource, status: &AnalyzerStatus) -> bool {
        let api: Api<AnalyzerResource> =
            Api::namespaced(self.client.clone(), &resource.namespace().unwrap_or_default());
        let patch = Patch::Merge(json!({ "status": status }));
        match api
            .patch_status(&resource.name_any(), &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(analyzer = %id, error = %e, "cannot write Analyzer status");
                false
            }
        }
    }

    async fn publish(&self, event: &HealthEvent) {
        let Some(resource) = self.state.resource(&event.analyzer) else {
            return;
        };
        let (type_, reason) = if event.healthy {
            (EventType::Normal, "Recovered")
        } else {
            (EventType::Warning, "Unhealthy")
        };
        let note = match &event.detail {
            Some(detail) => format!("{:?}: {detail}", event.reason),
            None => format!("{:?}", event.reason),
        };
        let record = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "HealthCheck".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&record, &resource.object_ref(&())).await {
            tracing::warn!(analyzer = %event.analyzer, error = %e, "cannot publish an Event");
        }
    }
}

/// The Ready condition of `resource`'s current generation; its transition
/// time stays while its status does.
fn ready(resource: &AnalyzerResource, status: bool, reason: String, message: String) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = match ready_condition(resource) {
        Some(c) if c.status == status => c.last_transition_time,
        _ => Time(Timestamp::now()),
    };
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason,
        message,
        last_transition_time: since,
        observed_generation: resource.metadata.generation,
    }
}

/// The Ready condition `resource` carries now.
fn ready_condition(resource: &AnalyzerResource) -> Option<Condition> {
    resource
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned())
}

fn describe(healthy: bool, in_rotation: bool) -> String {
    match (healthy, in_rotation) {
        (true, true) => "in rotation".into(),
        (true, false) => "healthy, out of rotation (weight 0)".into(),
        (false, _) => "out of rotation".into(),
    }
}
