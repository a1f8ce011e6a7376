//! Each replica's own counts in the status of every Analyzer it follows:
//! one entry of `status.replicas` (keyed by the replica's identity),
//! written with server-side apply on the status subresource under a field
//! manager of its own (`logs-distributor-replica/<identity>`), so replicas
//! never overwrite each other, nor the leader's fields
//! ([`super::status`] derives the totals from the entries, [`super::totals`]).
//!
//! - **Monotonic.** An entry only grows: it is the entry found when this
//!   process first writes it, plus what this process delivered since. The
//!   process's counters start at 0, and go back to 0 when an analyzer
//!   leaves the fleet and rejoins it (a missing Secret): the sample every
//!   second notices and carries the final counts of the one that left
//!   over. A Service-backed Analyzer's entry is the sum over its
//!   endpoints' analyzers, and an endpoint that leaves has its final
//!   counts carried over the same way.
//! - **Bounded writes.** An entry is written when its counts changed, at
//!   most once per `kubernetes.status_interval`; refreshed when unchanged
//!   every third of `kubernetes.stale_replica_after` (so the leader does
//!   not retire it) and, while its last-minute count is not 0, every half
//!   minute (so it goes on counting in `trafficShare`); and a replica makes
//!   at most [`WRITES_PER_SECOND`] writes, the longest-unwritten first.
//! - **Retired entries.** The leader retires an entry unchanged for
//!   `stale_replica_after` into `status.retired`. A write more than half
//!   that since the replica's last one (and its first) reads the entry
//!   first and is conditional on that read (`resourceVersion`): an entry
//!   found retired starts again from what was last written, so no count
//!   is added twice.
//!   (A write decided sooner but held up longer than that, a process
//!   frozen between deciding and sending, would add the retired counts
//!   again.)
//! - **At shutdown**, once the drain is over, every changed entry is
//!   written, so a stopped replica's last deliveries are counted. A replica
//!   killed without stopping loses the deliveries since its last write.

use super::crd::{Analyzer as AnalyzerResource, ReplicaCounts, GROUP};
use super::totals::key_of;
use super::KubeState;
use crate::dispatch::fleet::Analyzer;
use crate::dispatch::Dispatcher;
use crate::traffic::{Traffic, SHARE_WINDOW};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The most entry writes one replica makes in a second.
const WRITES_PER_SECOND: usize = 5;
/// Longest time the writes at shutdown may take.
const FINAL_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// A processed and an error count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    processed: i64,
    errors: i64,
}

impl Counts {
    fn plus(self, other: Counts) -> Counts {
        Counts {
            processed: self.processed + other.processed,
            errors: self.errors + other.errors,
        }
    }

    fn minus(self, other: Counts) -> Counts {
        Counts {
            processed: self.processed - other.processed,
            errors: self.errors - other.errors,
        }
    }

    /// The counts, none below 0.
    fn at_least_zero(self) -> Counts {
        Counts {
            processed: self.processed.max(0),
            errors: self.errors.max(0),
        }
    }
}

/// What one entry holds, without its time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Values {
    counts: Counts,
    routed_last_minute: i64,
}

/// One Analyzer's entry, as this process keeps it.
#[derive(Debug)]
struct Tracked {
    /// The Analyzer's uid: a new one (deleted and created again) starts over.
    uid: String,
    /// Added to this process's counters: the entry's counts before this
    /// process, and the final counts of analyzers that left the fleet;
    /// less what was retired (then it may be below 0).
    base: Counts,
    /// The analyzers counted (the Analyzer's own, or one per endpoint of
    /// its Service), each with its counters at the last sample.
    instances: Vec<(Arc<Analyzer>, Counts)>,
    /// What was last written, and when.
    written: Option<(Values, Instant)>,
}

impl Tracked {
    /// Reads the counters of `current`, the fleet's analyzers of this
    /// Analyzer. One rebuilt in place (same id: a new transport) goes on
    /// with the same counters. One that left the fleet (an endpoint gone,
    /// an analyzer out until its Secret is back) had its counters
    /// forgotten, and one that comes back with its id starts at 0 (seen as
    /// counters lower than sampled): what the one that left counted, to its
    /// last delivery, goes into the base.
    fn sample(&mut self, current: Vec<Arc<Analyzer>>) {
        let now: Vec<(Arc<Analyzer>, Counts)> = current
            .into_iter()
            .map(|analyzer| {
                let counts = counts_of(&analyzer);
                (analyzer, counts)
            })
            .collect();
        for (before, sampled) in &self.instances {
            let carried_on = now.iter().any(|(analyzer, counts)| {
                Arc::ptr_eq(analyzer, before)
                    || (analyzer.id == before.id
                        && counts.processed >= sampled.processed
                        && counts.errors >= sampled.errors)
            });
            if !carried_on {
                self.base = self.base.plus(counts_of(before));
            }
        }
        self.instances = now;
    }

    /// The counters of the analyzers counted now, at the last sample.
    fn sampled(&self) -> Counts {
        self.instances
            .iter()
            .fold(Counts::default(), |sum, (_, counts)| sum.plus(*counts))
    }

    fn values(&self, routed_last_minute: i64) -> Values {
        Values {
            counts: self.base.plus(self.sampled()).at_least_zero(),
            routed_last_minute,
        }
    }
}

/// The timings of a [`CountReporter`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Shortest time between two writes of a changed entry.
    pub min_interval: Duration,
    /// The leader retires an entry unchanged this long.
    pub stale_after: Duration,
    /// How long the drain may take at shutdown.
    pub drain_timeout: Duration,
}

pub(crate) struct CountReporter {
    client: Client,
    dispatcher: Arc<Dispatcher>,
    traffic: Arc<Traffic>,
    state: Arc<KubeState>,
    identity: String,
    timing: Timing,
    tracked: HashMap<String, Tracked>,
}

/// An entry due to be written.
struct Due {
    id: String,
    resource: AnalyzerResource,
    values: Values,
    /// Read the entry first (first write, or a long silence).
    checked: bool,
}

impl CountReporter {
    pub(crate) fn new(
        client: Client,
        dispatcher: Arc<Dispatcher>,
        traffic: Arc<Traffic>,
        state: Arc<KubeState>,
        identity: String,
        timing: Timing,
    ) -> CountReporter {
        CountReporter {
            client,
            dispatcher,
            traffic,
            state,
            identity,
            timing,
            tracked: HashMap::new(),
        }
    }

    /// Samples and writes until `stop` is cancelled; then, once the drain
    /// is over, writes every entry that changed.
    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.timing.min_interval.min(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut budget = WRITES_PER_SECOND as f64;
        let mut last_tick = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => break,
            }
            let now = Instant::now();
            let refill = now.duration_since(last_tick).as_secs_f64() * WRITES_PER_SECOND as f64;
            budget = (budget + refill).min(WRITES_PER_SECOND as f64);
            last_tick = now;
            let mut due = self.sample(now, false);
            due.sort_by_key(|d| self.tracked.get(&d.id).and_then(|t| t.written.map(|(_, at)| at)));
            for entry in due.into_iter().take(budget.floor() as usize) {
                budget -= 1.0;
                self.write(entry).await;
            }
        }
        self.dispatcher.drain(self.timing.drain_timeout).await;
        let last = async {
            let due = self.sample(Instant::now(), true);
            let entries = due.len();
            for entry in due {
                self.write(entry).await;
            }
            entries
        };
        match tokio::time::timeout(FINAL_WRITES_TIMEOUT, last).await {
            Ok(entries) => tracing::info!(entries, "wrote this replica's last counts"),
            Err(_) => tracing::warn!("writing this replica's last counts timed out"),
        }
    }

    /// Samples the counters; answers the entries due (`finally`: every
    /// changed one, at once).
    fn sample(&mut self, now: Instant, finally: bool) -> Vec<Due> {
        let routed = self.traffic.recent_routed();
        let resources = self.state.resources();
        self.tracked
            .retain(|id, _| resources.iter().any(|(r, _)| r == id));
        let mut due = Vec::new();
        for (id, resource) in resources {
            let uid = key_of(&resource);
            let tracked = self
                .tracked
                .entry(id.clone())
                .and_modify(|t| {
                    if t.uid != uid {
                        *t = fresh(&uid);
                    }
                })
                .or_insert_with(|| fresh(&uid));
            tracked.sample(self.dispatcher.fleet().group(&id));
            let routed = tracked
                .instances
                .iter()
                .filter_map(|(analyzer, _)| routed.get(&analyzer.id))
                .fold(0i64, |sum, &n| {
                    sum.saturating_add(i64::try_from(n).unwrap_or(i64::MAX))
                });
            let values = tracked.values(routed);
            let listed = own_entry(&resource, &self.identity).is_some();
            let (is_due, checked) = match tracked.written {
                None => (values != Values::default() || listed, true),
                Some((written, at)) => {
                    let since = now.duration_since(at);
                    let changed = written != values;
                    let due = if finally {
                        changed
                    } else {
                        (changed && since >= self.timing.min_interval)
                            || since >= self.timing.stale_after / 3
                            || (written.routed_last_minute > 0 && since >= SHARE_WINDOW / 2)
                    };
                    (due, since >= self.timing.stale_after / 2)
                }
            };
            if is_due {
                due.push(Due {
                    id,
                    resource,
                    values,
                    checked,
                });
            }
        }
        due
    }

    /// Writes one entry; on success, records it.
    async fn write(&mut self, mut due: Due) {
        let api: Api<AnalyzerResource> =
            Api::namespaced(self.client.clone(), &due.resource.namespace().unwrap_or_default());
        let name = due.resource.name_any();
        let Some(tracked) = self.tracked.get(&due.id) else {
            return;
        };
        let mut base = tracked.base;
        let mut precondition = None;
        if due.checked {
            let current = match api.get_status(&name).await {
                Ok(current) => current,
                Err(e) => {
                    tracing::warn!(analyzer = %due.id, error = %e, "cannot read the Analyzer to write this replica's counts");
                    return;
                }
            };
            if key_of(&current) != tracked.uid {
                return;
            }
            match (tracked.written, own_entry(&current, &self.identity)) {
                // Counts of this replica's earlier processes: carried on.
                (None, Some(entry)) => {
                    base = base.plus(Counts {
                        processed: entry.processed_count,
                        errors: entry.error_count,
                    })
                }
                // Retired by the leader: start again from what it keeps.
                (Some((written, _)), None) => base = base.minus(written.counts),
                _ => {}
            }
            due.values.counts = base.plus(tracked.sampled()).at_least_zero();
            precondition = current.resource_version();
        }
        let entry = ReplicaCounts {
            name: self.identity.clone(),
            processed_count: due.values.counts.processed,
            error_count: due.values.counts.errors,
            routed_last_minute: due.values.routed_last_minute,
            last_update_time: Some(Timestamp::now().to_string()),
        };
        let mut metadata = json!({ "name": name });
        if let Some(version) = precondition {
            metadata["resourceVersion"] = json!(version);
        }
        let patch = json!({
            "apiVersion": format!("{GROUP}/v1alpha1"),
            "kind": "Analyzer",
            "metadata": metadata,
            "status": { "replicas": [entry] },
        });
        let params = PatchParams::apply(&field_manager(&self.identity)).force();
        match api.patch_status(&name, &params, &Patch::Apply(&patch)).await {
            Ok(_) => {
                if let Some(tracked) = self.tracked.get_mut(&due.id) {
                    tracked.base = base;
                    tracked.written = Some((due.values, Instant::now()));
                }
            }
            // Changed since the read: read again at the next round.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => tracing::warn!(analyzer = %due.id, error = %e, "cannot write this replica's counts"),
        }
    }
}

/// An analyzer's lifetime counters in this process.
fn counts_of(analyzer: &Analyzer) -> Counts {
    Counts {
        processed: i64::try_from(analyzer.metrics.delivered.get()).unwrap_or(i64::MAX),
        errors: i64::try_from(analyzer.metrics.errors.get()).unwrap_or(i64::MAX),
    }
}

fn fresh(uid: &str) -> Tracked {
    Tracked {
        uid: uid.to_string(),
        base: Counts::default(),
        instances: Vec::new(),
        written: None,
    }
}

/// This replica's entry in `resource`'s status.
fn own_entry<'a>(resource: &'a AnalyzerResource, identity: &str) -> Option<&'a ReplicaCounts> {
    resource
        .status
        .as_ref()
        .and_then(|s| s.replicas.iter().find(|e| e.name == identity))
}

/// The field manager of a replica's entries (at most 128 characters).
pub(crate) fn field_manager(identity: &str) -> String {
    format!("logs-distributor-replica/{identity}")
        .chars()
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_below_zero_leaves_what_came_since() {
        let written = Counts {
            processed: 10,
            errors: 1,
        };
        let base = Counts::default().minus(written);
        let now = Counts {
            processed: 14,
            errors: 1,
        };
        assert_eq!(
            base.plus(now).at_least_zero(),
            Counts {
                processed: 4,
                errors: 0
            }
        );
        assert_eq!(base.at_least_zero(), Counts::default());
    }

    /// An endpoint's analyzer of Analyzer `svc` that delivered `delivered`
    /// packets and failed `errors` times.
    fn endpoint(metrics: &crate::metrics::Metrics, id: &str, delivered: u64, errors: u64) -> Arc<Analyzer> {
        use crate::dispatch::fleet::AnalyzerSpec;
        use crate::dispatch::health::HealthPolicy;
        use crate::transport::{Simulated, Transport};
        let spec = AnalyzerSpec {
            id: id.into(),
            name: id.into(),
            weight: 1,
            group: Some("svc".into()),
            concurrency: 1,
            max_batch_packets: None,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
        };
        let policy = HealthPolicy {
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            ejection_threshold: 0,
            passive_cooldown: None,
        };
        let transport = Transport::Simulated(Simulated::new(Duration::ZERO, 0.0, 0.0));
        let (analyzer, _lane) = Analyzer::new(spec, transport, policy, metrics.analyzer(id));
        analyzer.metrics.delivered.inc_by(delivered);
        analyzer.metrics.errors.inc_by(errors);
        analyzer
    }

    #[test]
    fn an_entry_sums_the_endpoints_and_keeps_the_final_counts_of_one_that_left() {
        let metrics = crate::metrics::Metrics::new();
        let one = endpoint(&metrics, "svc/10.0.0.1:9000", 10, 1);
        let two = endpoint(&metrics, "svc/10.0.0.2:9000", 20, 0);
        let mut tracked = fresh("uid");
        tracked.sample(vec![one.clone(), two.clone()]);
        assert_eq!(
            tracked.values(0).counts,
            Counts {
                processed: 30,
                errors: 1
            }
        );
        // two delivers 5 more, then leaves before the next sample.
        two.metrics.delivered.inc_by(5);
        tracked.sample(vec![one.clone()]);
        assert_eq!(
            tracked.values(0).counts,
            Counts {
                processed: 35,
                errors: 1
            }
        );
        // It comes back as a new analyzer (its series forgotten when it
        // left: counting from 0) beside a third.
        metrics.forget_analyzer("svc/10.0.0.2:9000");
        let back = endpoint(&metrics, "svc/10.0.0.2:9000", 2, 0);
        let three = endpoint(&metrics, "svc/10.0.0.3:9000", 4, 0);
        tracked.sample(vec![one.clone(), back, three]);
        assert_eq!(
            tracked.values(0).counts,
            Counts {
                processed: 41,
                errors: 1
            }
        );
        // The one that came back leaves again, and the third is rebuilt in
        // place (a rotated Secret: same series, 4 + 1, counted once).
        let rebuilt = endpoint(&metrics, "svc/10.0.0.3:9000", 1, 0);
        tracked.sample(vec![one, rebuilt]);
        assert_eq!(
            tracked.values(0).counts,
            Counts {
                processed: 10 + 25 + 2 + 5,
                errors: 1
            }
        );
    }

    #[test]
    fn the_field_manager_fits_the_api_servers_limit() {
        assert_eq!(field_manager("one"), "logs-distributor-replica/one");
        assert_eq!(field_manager(&"x".repeat(300)).len(), 128);
    }
}
