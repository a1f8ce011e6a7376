//! The leader's report: Analyzer status (the status subresource, merge
//! patch) at once on every health change and every `every` otherwise, and
//! a Kubernetes Event on every health transition (Normal `Recovered`,
//! Warning `Unhealthy`). An Analyzer that cannot be built (a Secret
//! missing) gets `Ready` False with the reason.

use super::crd::{Analyzer as AnalyzerResource, AnalyzerStatus};
use super::resolve::Unbuilt;
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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub struct StatusWriter {
    pub client: Client,
    pub dispatcher: Arc<Dispatcher>,
    pub traffic: Arc<Traffic>,
    pub state: Arc<KubeState>,
    pub recorder: Recorder,
    pub every: Duration,
}

impl StatusWriter {
    /// Writes status while this replica leads, until the task is dropped.
    pub async fn run(self) {
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

    async fn write_all(&self) {
        let shares = self.traffic.recent_shares();
        for (id, resource) in self.state.resources() {
            let Some(analyzer) = self.dispatcher.fleet().get(&id) else {
                if let Some(unbuilt) = self.state.unbuilt(&id) {
                    self.write_unbuilt(&id, &resource, unbuilt).await;
                }
                continue;
            };
            let health = analyzer.health.snapshot();
            let healthy = if health.healthy { "True" } else { "False" };
            let previous = resource
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
            let since = match previous {
                Some(c) if c.status == healthy => c.last_transition_time,
                _ => Time(Timestamp::now()),
            };
            let ready = Condition {
                type_: "Ready".into(),
                status: healthy.into(),
                reason: format!("{:?}", health.reason),
                message: health
                    .detail
                    .clone()
                    .unwrap_or_else(|| describe(health.healthy, analyzer.in_rotation())),
                last_transition_time: since,
                observed_generation: resource.metadata.generation,
            };
            let status = AnalyzerStatus {
                healthy: Some(health.healthy),
                conditions: vec![ready],
                observed_generation: resource.metadata.generation,
                last_probe_time: health.last_check.map(|t| t.to_rfc3339()),
                processed_count: i64::try_from(analyzer.metrics.delivered.get()).ok(),
                error_count: i64::try_from(analyzer.metrics.errors.get()).ok(),
                traffic_share: Some(shares.get(&id).copied().unwrap_or(0.0)),
            };
            self.patch(&id, &resource, status).await;
        }
    }

    /// The status of an Analyzer that cannot be built: `Ready` False with
    /// the reason (`SecretNotFound`...).
    async fn write_unbuilt(&self, id: &str, resource: &AnalyzerResource, unbuilt: Unbuilt) {
        let previous = resource
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        let since = match previous {
            Some(c) if c.status == "False" => c.last_transition_time,
            _ => Time(Timestamp::now()),
        };
        let status = AnalyzerStatus {
            healthy: Some(false),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: unbuilt.reason.into(),
                message: unbuilt.message,
                last_transition_time: since,
                observed_generation: resource.metadata.generation,
            }],
            observed_generation: resource.metadata.generation,
            traffic_share: Some(0.0),
            ..AnalyzerStatus::default()
        };
        self.patch(id, resource, status).await;
    }

    async fn patch(&self, id: &str, resource: &AnalyzerResource, status: AnalyzerStatus) {
        let api: Api<AnalyzerResource> =
            Api::namespaced(self.client.clone(), &resource.namespace().unwrap_or_default());
        let patch = Patch::Merge(json!({ "status": status }));
        if let Err(e) = api
            .patch_status(&resource.name_any(), &PatchParams::default(), &patch)
            .await
        {
            tracing::warn!(analyzer = %id, error = %e, "cannot write Analyzer status");
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

fn describe(healthy: bool, in_rotation: bool) -> String {
    match (healthy, in_rotation) {
        (true, true) => "in rotation".into(),
        (true, false) => "healthy, out of rotation (weight 0)".into(),
        (false, _) => "out of rotation".into(),
    }
}
