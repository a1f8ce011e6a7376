//! The analyzers the distributor knows, and the routing table over the
//! ones in rotation.
//!
//! An [`Analyzer`] bundles what one analyzer is (id, name, weight), how it
//! is reached (its transport), how it is doing (health, counters) and its
//! lane: the queue of packets routed to it and of its retries, drained by
//! the dispatcher.
//!
//! [`Fleet`] keeps the analyzers and an immutable [`RoutingTable`] over
//! those that are healthy and weighted; [`Fleet::rebuild`] swaps in a new
//! table whenever health, weight or membership changes. Readers never lock.
//! The analyzers of one group (the endpoints of a Service-backed Analyzer,
//! each carrying the Analyzer's weight) share that weight evenly among
//! those of them in rotation.
//!
//! Slow start (off unless `slow_start` is set): an analyzer that comes back
//! into rotation starts at a tenth of its weight and ramps up linearly over
//! the window; the owner calls `rebuild` periodically while
//! [`Fleet::is_ramping`] says so.

use crate::config::{AnalyzerConfig, Settings, SimulatedConfig};
use crate::dispatch::health::{Health, HealthPolicy};
use crate::dispatch::job::LaneItem;
use crate::dispatch::routing::RoutingTable;
use crate::metrics::AnalyzerMetrics;
use crate::metrics::Metrics;
use crate::sync::LockUnpoisoned;
use crate::transport::otlp::answer::PartialSuccessTally;
use crate::transport::{DeliveryFormat, Http, HttpOptions, ProbeOptions, Simulated, Transport};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// The smallest share of its weight a rejoining analyzer starts with.
const SLOW_START_FLOOR: f64 = 0.1;

/// What an analyzer is, as configured.
#[derive(Debug, Clone)]
pub struct AnalyzerSpec {
    pub id: String,
    pub name: String,
    pub weight: u32,
    /// The group it belongs to (see [`Analyzer::group`]); none: its own.
    pub group: Option<String>,
    /// Deliveries to it that may run at once.
    pub concurrency: usize,
    /// Most packets one delivery to it takes, within `batch.max_packets`;
    /// `None`: `batch.max_packets`.
    pub max_batch_packets: Option<usize>,
    /// Time between health probes, and the most one may take.
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
}

/// A change of an analyzer's health verdict, for whoever reports it
/// (logs, Kubernetes status and events).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthEvent {
    pub analyzer: String,
    /// Its group, when it is one endpoint of several (see [`Analyzer::group`]).
    pub group: Option<String>,
    pub healthy: bool,
    pub reason: crate::dispatch::health::HealthReason,
    pub detail: Option<String>,
}

/// One analyzer and its lane.
#[derive(Debug)]
pub struct Analyzer {
    pub id: String,
    pub name: String,
    /// The Service-backed Analyzer this analyzer is one endpoint of: the
    /// group's weight is split evenly among its members in rotation.
    group: Option<String>,
    weight: AtomicU32,
    pub transport: Transport,
    pub health: Health,
    pub metrics: AnalyzerMetrics,
    /// Whether the current routing table holds this analyzer; the lane
    /// re-routes what it holds once this turns false.
    in_rotation: AtomicBool,
    /// Taken out (closing the lane) when the analyzer is removed.
    lane: Mutex<Option<mpsc::UnboundedSender<LaneItem>>>,
    /// Packets waiting in the lane.
    pub queued: AtomicUsize,
    /// Packets being delivered right now.
    pub delivering: AtomicUsize,
    /// Delivery slots: at most `concurrency` deliveries at once.
    pub slots: Arc<Semaphore>,
    /// Its own cap on the packets of one delivery, within `batch.max_packets`.
    max_batch_packets: Option<usize>,
    /// When it last came back into rotation, for slow start.
    rejoined_at: Mutex<Option<Instant>>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// When the next probe is due.
    next_probe: Mutex<Instant>,
    /// The verdict last announced as a [`HealthEvent`].
    announced_healthy: AtomicBool,
}

/// An analyzer picked for some items, and those items in their order.
pub(crate) type Share<I> = (Arc<Analyzer>, Vec<I>);

/// The receiving end of an analyzer's lane, for the dispatcher to drain.
pub(crate) type LaneReceiver = mpsc::UnboundedReceiver<LaneItem>;

impl Analyzer {
    pub fn new(
        spec: AnalyzerSpec,
        transport: Transport,
        policy: HealthPolicy,
        metrics: AnalyzerMetrics,
    ) -> (Arc<Analyzer>, LaneReceiver) {
        let (lane, receiver) = mpsc::unbounded_channel();
        metrics.weight.set(i64::from(spec.weight));
        metrics.healthy.set(1);
        let analyzer = Analyzer {
            id: spec.id,
            name: spec.name,
            group: spec.group,
            weight: AtomicU32::new(spec.weight),
            transport,
            health: Health::new(policy),
            metrics,
            in_rotation: AtomicBool::new(false),
            lane: Mutex::new(Some(lane)),
            queued: AtomicUsize::new(0),
            delivering: AtomicUsize::new(0),
            slots: Arc::new(Semaphore::new(spec.concurrency.max(1))),
            max_batch_packets: spec.max_batch_packets,
            rejoined_at: Mutex::new(None),
            probe_interval: spec.probe_interval,
            probe_timeout: spec.probe_timeout,
            next_probe: Mutex::new(Instant::now()),
            announced_healthy: AtomicBool::new(true),
        };
        (Arc::new(analyzer), receiver)
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// The group it routes in: the Analyzer it is an endpoint of, or its
    /// own id.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.id)
    }

    /// The most packets one delivery to it takes, `batch_max_packets`
    /// (`batch.max_packets`) or its own cap when lower.
    pub fn max_batch_packets(&self, batch_max_packets: usize) -> usize {
        self.max_batch_packets
            .map_or(batch_max_packets, |own| own.min(batch_max_packets))
    }

    pub fn in_rotation(&self) -> bool {
        self.in_rotation.load(Ordering::Acquire)
    }

    /// Queues `item` on this analyzer's lane; gives it back if the lane is closed.
    pub fn enqueue(&self, item: LaneItem) -> Result<(), LaneItem> {
        let lane = self.lane.lock_unpoisoned();
        let Some(lane) = lane.as_ref() else {
            return Err(item);
        };
        let packets = item.packets();
        self.queued.fetch_add(packets, Ordering::Relaxed);
        lane.send(item).map_err(|mpsc::error::SendError(item)| {
            self.queued.fetch_sub(packets, Ordering::Relaxed);
            item
        })
    }

    /// Closes the lane: what it holds still drains (and is re-routed, the
    /// analyzer being out of rotation), then its task ends.
    pub fn close_lane(&self) {
        self.lane.lock_unpoisoned().take();
    }

    /// Builds an analyzer from its configuration; the `health`, `http` and
    /// `queue` sections give what the analyzer does not say itself.
    pub fn from_config(
        config: &AnalyzerConfig,
        settings: &Settings,
        metrics: &Metrics,
    ) -> anyhow::Result<(Arc<Analyzer>, LaneReceiver)> {
        Self::from_config_in_group(config, None, settings, metrics)
    }

    /// [`Analyzer::from_config`] for one endpoint of the Analyzer `group`.
    pub fn from_config_in_group(
        config: &AnalyzerConfig,
        group: Option<&str>,
        settings: &Settings,
        metrics: &Metrics,
    ) -> anyhow::Result<(Arc<Analyzer>, LaneReceiver)> {
        let own = config.health_check.clone().unwrap_or_default();
        let transport = match (&config.simulated, &config.endpoint) {
            (Some(simulated), _) => Transport::Simulated(simulated_transport(simulated)),
            (None, Some(endpoint)) => {
                let expected = own.expected_statuses.clone().unwrap_or_default();
                let mut http = Http::new(HttpOptions {
                    id: &config.id,
                    endpoint,
                    format: config.format,
                    timeout: settings.http.timeout,
                    tls: config.tls.as_ref(),
                    auth: config.auth.as_ref(),
                    headers: &config.headers,
                    probe: ProbeOptions {
                        path: &config.health_path,
                        url: own.url.as_deref(),
                        method: own.method.unwrap_or_default(),
                        expected: &expected,
                    },
                })
                .map_err(|e| anyhow::anyhow!("analyzer {}: {e}", config.id))?;
                if config.format == DeliveryFormat::Otlp {
                    let rejected = metrics
                        .otlp_rejected_records
                        .with_label_values(&[config.id.as_str()]);
                    http.count_partial_success(PartialSuccessTally::new(&config.id, rejected));
                }
                Transport::Http(Box::new(http))
            }
            (None, None) => anyhow::bail!(
                "analyzer {} has neither endpoint nor simulated settings",
                config.id
            ),
        };
        let defaults = &settings.health;
        if own.passive && defaults.ejection_threshold == 0 {
            anyhow::bail!(
                "analyzer {}: a passive analyzer leaves the rotation only on failed deliveries: health.ejection_threshold must be above 0",
                config.id
            );
        }
        let probe_interval = own.interval.unwrap_or(defaults.interval);
        let policy = HealthPolicy {
            unhealthy_threshold: own
                .unhealthy_threshold
                .unwrap_or(defaults.unhealthy_threshold)
                .max(1),
            healthy_threshold: own.healthy_threshold.unwrap_or(defaults.healthy_threshold).max(1),
            ejection_threshold: defaults.ejection_threshold,
            passive_cooldown: own.passive.then_some(probe_interval),
        };
        let spec = AnalyzerSpec {
            id: config.id.clone(),
            name: config.name.clone().unwrap_or_else(|| config.id.clone()),
            weight: u32::try_from(config.weight).unwrap_or(0),
            group: group.map(str::to_string),
            concurrency: config.concurrency.unwrap_or(settings.queue.analyzer_concurrency),
            // A simulated analyzer sleeps per packet, as the original's did:
            // a batch would sleep for all of its packets at once, so it takes
            // one packet per delivery unless its configuration says otherwise.
            max_batch_packets: config
                .max_batch_packets
                .or(config.simulated.is_some().then_some(1)),
            probe_interval,
            probe_timeout: own.timeout.unwrap_or(defaults.timeout),
        };
        Ok(Analyzer::new(
            spec,
            transport,
            policy,
            metrics.analyzer(&config.id),
        ))
    }

    /// When the next probe is due.
    pub fn next_probe(&self) -> Instant {
        *self.next_probe.lock_unpoisoned()
    }

    /// Plans the next probe one interval after `now`.
    pub fn probed(&self, now: Instant) {
        *self.next_probe.lock_unpoisoned() = now + self.probe_interval;
    }

    /// Changes the weight; takes effect at the next rebuild.
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }
}

/// Every analyzer, and the table that routes among the healthy ones.
pub struct Fleet {
    analyzers: ArcSwap<Vec<Arc<Analyzer>>>,
    table: ArcSwap<RoutingTable<Arc<Analyzer>>>,
    /// Serialises rebuilds so that flags and table always agree.
    rebuilding: Mutex<()>,
    /// Ramp-up window for analyzers coming back; zero: off.
    slow_start: Duration,
    events: tokio::sync::broadcast::Sender<HealthEvent>,
}

impl Fleet {
    pub fn new(analyzers: Vec<Arc<Analyzer>>, slow_start: Duration) -> Fleet {
        let fleet = Fleet {
            analyzers: ArcSwap::from_pointee(analyzers),
            table: ArcSwap::from_pointee(RoutingTable::empty()),
            rebuilding: Mutex::new(()),
            slow_start,
            events: tokio::sync::broadcast::channel(1024).0,
        };
        // Analyzers present at start-up take their full weight at once.
        fleet.rebuild();
        fleet
    }

    /// Health changes from now on.
    pub fn health_events(&self) -> tokio::sync::broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    /// Whether some analyzer is still ramping up after rejoining.
    pub fn is_ramping(&self) -> bool {
        !self.slow_start.is_zero()
            && self.analyzers.load().iter().any(|a| {
                let rejoined = *a.rejoined_at.lock_unpoisoned();
                rejoined.is_some_and(|at| at.elapsed() < self.slow_start)
            })
    }

    /// The weight `a` routes with now: its weight, cut during slow start.
    fn effective_weight(&self, a: &Analyzer, now: Instant) -> u32 {
        let weight = a.weight();
        if self.slow_start.is_zero() || weight == 0 {
            return weight;
        }
        let rejoined = *a.rejoined_at.lock_unpoisoned();
        match rejoined {
            Some(at) if now.duration_since(at) < self.slow_start => {
                let progress = now.duration_since(at).as_secs_f64() / self.slow_start.as_secs_f64();
                let share = progress.max(SLOW_START_FLOOR);
                ((f64::from(weight) * share).ceil() as u32).clamp(1, weight)
            }
            _ => weight,
        }
    }

    /// The healthy analyzers by group, each group with its weight: the
    /// highest weight its members route with (they all carry the
    /// Analyzer's; one that joins a group already in rotation takes its
    /// even share at once, while a group that comes back whole ramps up
    /// under slow start).
    fn groups_in_rotation(
        &self,
        analyzers: &[Arc<Analyzer>],
        now: Instant,
    ) -> Vec<(Vec<Arc<Analyzer>>, u32)> {
        let mut groups: Vec<(Vec<Arc<Analyzer>>, u32)> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for a in analyzers.iter().filter(|a| a.health.is_healthy()) {
            let weight = self.effective_weight(a, now);
            match index.get(a.group()) {
                Some(&i) => {
                    groups[i].0.push(a.clone());
                    groups[i].1 = groups[i].1.max(weight);
                }
                None => {
                    index.insert(a.group(), groups.len());
                    groups.push((vec![a.clone()], weight));
                }
            }
        }
        groups
    }

    /// Shares `items` out among the analyzers in rotation, one pick each,
    /// in the order single picks would make them: for each analyzer
    /// picked, its items in their order. `items` come back whole when
    /// nothing is in rotation.
    pub fn share<I>(&self, items: Vec<I>) -> Result<Vec<Share<I>>, Vec<I>> {
        let table = self.table.load();
        if table.is_empty() {
            return Err(items);
        }
        let mut shares: Vec<Vec<I>> = table.members().iter().map(|_| Vec::new()).collect();
        let picks = table.pick_many(items.len());
        for (item, member) in items.into_iter().zip(picks) {
            shares[member].push(item);
        }
        Ok(table
            .members()
            .iter()
            .zip(shares)
            .filter(|(_, share)| !share.is_empty())
            .map(|(analyzer, share)| (analyzer.clone(), share))
            .collect())
    }

    /// Whether any analyzer is in rotation.
    pub fn any_in_rotation(&self) -> bool {
        !self.table.load().is_empty()
    }

    pub fn all(&self) -> Arc<Vec<Arc<Analyzer>>> {
        self.analyzers.load_full()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Analyzer>> {
        self.analyzers.load().iter().find(|a| a.id == id).cloned()
    }

    /// The analyzers of `group` (see [`Analyzer::group`]).
    pub fn group(&self, group: &str) -> Vec<Arc<Analyzer>> {
        self.analyzers
            .load()
            .iter()
            .filter(|a| a.group() == group)
            .cloned()
            .collect()
    }

    /// Adds `analyzer`, or replaces the one with the same id (answering it).
    pub fn upsert(&self, analyzer: Arc<Analyzer>) -> Option<Arc<Analyzer>> {
        let _serial = self.rebuilding.lock_unpoisoned();
        let mut list = (**self.analyzers.load()).clone();
        let old = match list.iter().position(|a| a.id == analyzer.id) {
            Some(i) => Some(std::mem::replace(&mut list[i], analyzer)),
            None => {
                list.push(analyzer);
                None
            }
        };
        self.analyzers.store(Arc::new(list));
        if let Some(old) = &old {
            old.in_rotation.store(false, Ordering::Release);
        }
        old
    }

    /// Takes the analyzer with `id` out of the fleet (answering it).
    pub fn remove(&self, id: &str) -> Option<Arc<Analyzer>> {
        let _serial = self.rebuilding.lock_unpoisoned();
        let mut list = (**self.analyzers.load()).clone();
        let position = list.iter().position(|a| a.id == id)?;
        let removed = list.remove(position);
        self.analyzers.store(Arc::new(list));
        removed.in_rotation.store(false, Ordering::Release);
        Some(removed)
    }

    /// Builds a fresh routing table from current health and weights.
    pub fn rebuild(&self) {
        let _serial = self.rebuilding.lock_unpoisoned();
        let analyzers = self.analyzers.load();
        let now = Instant::now();
        let first_build = self.table.load().is_empty() && analyzers.iter().all(|a| !a.in_rotation());
        if !first_build && !self.slow_start.is_zero() {
            for a in analyzers.iter() {
                if a.health.is_healthy() && !a.in_rotation() && a.weight() > 0 {
                    *a.rejoined_at.lock_unpoisoned() = Some(now);
                }
            }
        }
        let table = RoutingTable::grouped(self.groups_in_rotation(&analyzers, now));
        for a in analyzers.iter() {
            let member = table.members().iter().any(|m| Arc::ptr_eq(m, a));
            a.in_rotation.store(member, Ordering::Release);
            a.metrics.healthy.set(i64::from(a.health.is_healthy()));
            a.metrics.weight.set(i64::from(a.weight()));
        }
        self.table.store(Arc::new(table));
        for a in analyzers.iter() {
            let healthy = a.health.is_healthy();
            if a.announced_healthy.swap(healthy, Ordering::AcqRel) != healthy {
                let now = a.health.snapshot();
                // Nobody listening is fine: the event is for reporters.
                let _ = self.events.send(HealthEvent {
                    analyzer: a.id.clone(),
                    group: a.group.clone(),
                    healthy,
                    reason: now.reason,
                    detail: now.detail,
                });
            }
        }
    }
}

/// The in-process analyzer `simulated` settings describe.
fn simulated_transport(simulated: &SimulatedConfig) -> Simulated {
    Simulated::new(
        Duration::from_millis(simulated.processing_time_ms),
        simulated.failure_rate,
        simulated.health_failure_rate,
    )
}

#[cfg(test)]
mod tests;
