//! The leader's report: Analyzer status (the status subresource, merge
//! patch) at once on every health change and every `every` otherwise, only
//! when it changes something (a newer `lastProbeTime` alone once a
//! minute), and a Kubernetes Event on every health transition (Normal
//! `Recovered`, Warning `Unhealthy`). An Analyzer that cannot be built (a Secret
//! missing, a spec or certificate that does not build) gets `Ready` False
//! with the reason and message, and a Warning Event once per failure.
//! `status.observedGeneration` is the generation that runs (applied); the
//! condition's own `observedGeneration` is the one it describes. A
//! Service-backed Analyzer is healthy while one of its endpoints is in
//! rotation; its status lists the endpoints (`endpoints`, `readyEndpoints`)
//! and the Events of its endpoints' health name the endpoint
//! (`EndpointUnhealthy`, `EndpointRecovered`).
//!
//! The counts (`processedCount`, `errorCount`, `trafficShare`) are the
//! totals of every replica's entry ([`super::totals`]). A write carries the
//! `resourceVersion` it was derived from: when a replica wrote its entry
//! meanwhile (409), the leader reads the Analyzer again and derives anew.
//! The merge patch never names `status.replicas`, except to remove retired
//! entries, so the replicas' server-side applied entries stay theirs.

use super::crd::{Analyzer as AnalyzerResource, AnalyzerStatus, EndpointStatus};
use super::endpoints::ListedEndpoint;
use super::resolve::{endpoint_address, endpoint_id};
use super::totals::{totals, Observations};
use super::KubeState;
use crate::dispatch::fleet::{Analyzer, HealthEvent};
use crate::dispatch::Dispatcher;
use crate::traffic::percent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes of one Analyzer's status in one round (each after a conflict).
const ATTEMPTS: usize = 3;
/// A newer `lastProbeTime` alone is written once the written one is this old.
const PROBE_TIME_REFRESH: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// What came of one status write.
enum Written {
    Taken,
    /// The Analyzer changed since it was read (409).
    Conflict,
    Failed,
}

pub(crate) struct StatusWriter {
    pub client: Client,
    pub dispatcher: Arc<Dispatcher>,
    pub state: Arc<KubeState>,
    pub recorder: Recorder,
    pub every: Duration,
    /// A replica entry unchanged this long is retired.
    pub stale_after: Duration,
    /// When each replica entry was last seen changing (by every replica,
    /// so that a new leader knows).
    pub observations: Observations,
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
            let resources = self.state.resources();
            self.observations
                .observe(resources.iter().map(|(_, r)| r), Instant::now());
            if self.state.leader.load(Ordering::Acquire) {
                self.write_all(resources).await;
            }
        }
    }

    async fn write_all(&mut self, resources: Vec<(String, AnalyzerResource)>) {
        let now = Instant::now();
        let routed_by_all: i64 = resources
            .iter()
            .map(|(_, r)| totals(r, &self.observations, now, self.stale_after).routed_last_minute)
            .sum();
        for (id, mut resource) in resources {
            for _ in 0..ATTEMPTS {
                let Some((status, patch)) = self.desired(&id, &resource, now, routed_by_all) else {
                    break;
                };
                match self.patch(&id, &resource, &patch).await {
                    Written::Taken => {
                        if self.state.unbuilt(&id).is_some() {
                            self.announce_unbuilt(&id, &resource, &status.conditions[0]).await;
                        }
                        break;
                    }
                    Written::Failed => break,
                    Written::Conflict => match self.reread(&resource).await {
                        Some(fresh) => resource = fresh,
                        None => break,
                    },
                }
            }
        }
    }

    /// The status `resource` should have and the merge patch that gives it;
    /// `None` when there is nothing to write (not known here, or unchanged).
    fn desired(
        &self,
        id: &str,
        resource: &AnalyzerResource,
        now: Instant,
        routed_by_all: i64,
    ) -> Option<(AnalyzerStatus, Value)> {
        let unbuilt = self.state.unbuilt(id);
        let applied = self.state.applied_generation(id);
        let (mut status, running) = match self.state.endpoints(id) {
            Some(endpoints) if applied.is_some() || unbuilt.is_some() => {
                (self.service_status(id, resource, &endpoints), applied.is_some())
            }
            _ => match self.dispatcher.fleet().get(id) {
                Some(analyzer) => (analyzer_status(resource, &analyzer), true),
                None if unbuilt.is_some() => (
                    AnalyzerStatus {
                        healthy: Some(false),
                        ..AnalyzerStatus::default()
                    },
                    false,
                ),
                None => return None,
            },
        };
        if let Some(unbuilt) = &unbuilt {
            let message = match (running, applied) {
                (true, Some(generation)) => {
                    format!("{}; generation {generation} goes on running", unbuilt.message)
                }
                _ => unbuilt.message.clone(),
            };
            status.conditions = vec![ready(resource, false, unbuilt.reason.into(), message)];
        }
        status.observed_generation = applied;
        let totals = totals(resource, &self.observations, now, self.stale_after);
        status.processed_count = Some(totals.processed);
        status.error_count = Some(totals.errors);
        status.traffic_share = Some(percent(
            u64::try_from(totals.routed_last_minute).unwrap_or(0),
            u64::try_from(routed_by_all).unwrap_or(0),
        ));
        status.retired = Some(totals.retired);
        let mut fields = serde_json::to_value(&status).unwrap_or_else(|_| json!({}));
        if resource.spec.service.is_none() {
            // Left from a spec.service that is gone: removed.
            fields["endpoints"] = Value::Null;
            fields["readyEndpoints"] = Value::Null;
        }
        if let Some(kept) = totals.kept {
            fields["replicas"] = if kept.is_empty() { Value::Null } else { json!(kept) };
        }
        let current =
            serde_json::to_value(resource.status.clone().unwrap_or_default()).unwrap_or_else(|_| json!({}));
        let changes = fields.as_object().is_some_and(|f| {
            f.iter().any(|(key, value)| {
                let was = current.get(key).unwrap_or(&Value::Null);
                was != value && !(key == "lastProbeTime" && within_a_refresh(was, value))
            })
        });
        if !changes {
            return None;
        }
        let patch = json!({
            "metadata": {"resourceVersion": resource.resource_version()},
            "status": fields,
        });
        Some((status, patch))
    }

    /// The status of a Service-backed Analyzer whose endpoints are
    /// `endpoints`: healthy while one of them is in rotation.
    fn service_status(
        &self,
        id: &str,
        resource: &AnalyzerResource,
        endpoints: &[ListedEndpoint],
    ) -> AnalyzerStatus {
        let members = self.dispatcher.fleet().group(id);
        let listed: Vec<EndpointStatus> = endpoints
            .iter()
            .map(|endpoint| {
                let analyzer = members
                    .iter()
                    .find(|a| a.id == endpoint_id(id, &endpoint.address));
                EndpointStatus {
                    address: endpoint.address.clone(),
                    pod: endpoint.pod.clone(),
                    ready: endpoint.ready,
                    healthy: analyzer.map(|a| a.health.is_healthy()),
                    in_rotation: analyzer.is_some_and(|a| a.in_rotation()),
                }
            })
            .collect();
        let in_rotation = listed.iter().filter(|e| e.in_rotation).count();
        let service = resource
            .spec
            .service
            .as_ref()
            .map(|s| s.name.as_str())
            .unwrap_or_default();
        let (reason, message) = match (in_rotation, listed.len()) {
            (0, 0) => (
                "NoEndpoints",
                format!("Service {service} lists no endpoint at its port"),
            ),
            (0, listed) => (
                "NoEndpointInRotation",
                format!("none of the {listed} endpoints of Service {service} is in rotation"),
            ),
            (n, listed) => (
                "EndpointsInRotation",
                format!("{n} of the {listed} endpoints of Service {service} in rotation"),
            ),
        };
        AnalyzerStatus {
            healthy: Some(in_rotation > 0),
            conditions: vec![ready(resource, in_rotation > 0, reason.into(), message)],
            last_probe_time: members
                .iter()
                .filter_map(|a| a.health.snapshot().last_check)
                .max()
                .map(|t| t.to_rfc3339()),
            ready_endpoints: Some(format!("{in_rotation}/{}", listed.len())),
            endpoints: Some(listed),
            ..AnalyzerStatus::default()
        }
    }

    /// The Analyzer as the API server has it now.
    async fn reread(&self, resource: &AnalyzerResource) -> Option<AnalyzerResource> {
        let api: Api<AnalyzerResource> =
            Api::namespaced(self.client.clone(), &resource.namespace().unwrap_or_default());
        match api.get_status(&resource.name_any()).await {
            Ok(fresh) => Some(fresh),
            Err(e) => {
                tracing::warn!(analyzer = %resource.name_any(), error = %e, "cannot read Analyzer status");
                None
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

    /// Writes the merge patch `patch` to the status.
    async fn patch(&self, id: &str, resource: &AnalyzerResource, patch: &Value) -> Written {
        let api: Api<AnalyzerResource> =
            Api::namespaced(self.client.clone(), &resource.namespace().unwrap_or_default());
        match api
            .patch_status(
                &resource.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Written::Taken,
            Err(kube::Error::Api(status)) if status.code == 409 => Written::Conflict,
            Err(e) => {
                tracing::warn!(analyzer = %id, error = %e, "cannot write Analyzer status");
                Written::Failed
            }
        }
    }

    async fn publish(&self, event: &HealthEvent) {
        let analyzer = event.group.as_deref().unwrap_or(&event.analyzer);
        let Some(resource) = self.state.resource(analyzer) else {
            return;
        };
        let (type_, reason) = match (event.healthy, event.group.is_some()) {
            (true, false) => (EventType::Normal, "Recovered"),
            (false, false) => (EventType::Warning, "Unhealthy"),
            (true, true) => (EventType::Normal, "EndpointRecovered"),
            (false, true) => (EventType::Warning, "EndpointUnhealthy"),
        };
        let mut note = match &event.detail {
            Some(detail) => format!("{:?}: {detail}", event.reason),
            None => format!("{:?}", event.reason),
        };
        if event.group.is_some() {
            note = format!("endpoint {}: {note}", endpoint_address(analyzer, &event.analyzer));
        }
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

/// The status of an Analyzer that runs as the one analyzer `analyzer`.
fn analyzer_status(resource: &AnalyzerResource, analyzer: &Analyzer) -> AnalyzerStatus {
    let health = analyzer.health.snapshot();
    AnalyzerStatus {
        healthy: Some(health.healthy),
        conditions: vec![ready(
            resource,
            health.healthy,
            format!("{:?}", health.reason),
            health
                .detail
                .clone()
                .unwrap_or_else(|| describe(health.healthy, analyzer.in_rotation())),
        )],
        last_probe_time: health.last_check.map(|t| t.to_rfc3339()),
        ..AnalyzerStatus::default()
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

/// Whether the probe time `now` is less than [`PROBE_TIME_REFRESH`] after
/// the written one `was` (both RFC 3339).
fn within_a_refresh(was: &Value, now: &Value) -> bool {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match (parse(was), parse(now)) {
        (Some(was), Some(now)) => now - was < PROBE_TIME_REFRESH,
        _ => false,
    }
}

fn describe(healthy: bool, in_rotation: bool) -> String {
    match (healthy, in_rotation) {
        (true, true) => "in rotation".into(),
        (true, false) => "healthy, out of rotation (weight 0)".into(),
        (false, _) => "out of rotation".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_probe_time_alone_waits_for_a_minute() {
        let at = |t: &str| json!(t);
        assert!(within_a_refresh(
            &at("2026-12-06T10:00:00Z"),
            &at("2026-12-06T10:00:59.5+00:00")
        ));
        assert!(!within_a_refresh(
            &at("2026-12-06T10:00:00Z"),
            &at("2026-12-06T10:01:00+00:00")
        ));
        assert!(!within_a_refresh(&Value::Null, &at("2026-12-06T10:00:00Z")));
    }
}
