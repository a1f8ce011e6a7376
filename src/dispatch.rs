//! The [`Dispatcher`]: takes accepted packets to analyzers and sees each
//! one to exactly one end, delivered or dead-lettered.
//!
//! ```text
//! admit ─► route ─► analyzer lane ─► deliver ─┬─ ok ──────────────► finish
//!  (limit)   │ SWRR pick                      └─ fail ─► decide ─┬─ retry timer ─► route
//!            └─ nothing in rotation: parked until one is         └─ dead letter ─► finish
//! ```
//!
//! Every accepted packet sits in the in-flight registry from `admit` to
//! `finish`; the registry is what a checkpoint saves. Admission is bounded
//! by `queue.max_in_flight`, which bounds memory: lanes, the retry timer
//! and the parking lot hold only admitted packets.
//!
//! Each analyzer has a lane drained by one task that runs up to its
//! `concurrency` deliveries at once, each of up to `batch.max_packets`
//! packets, so a slow analyzer queues its own packets without holding up
//! the others. A lane whose analyzer leaves the rotation hands what it holds
//! back to `route`. A retry that is due goes through the retry budget, when
//! one is set, before it is routed again.

use crate::config::BatchConfig;
use crate::fleet::{Analyzer, Fleet, LaneReceiver};
use crate::metrics::Metrics;
use crate::model::LogPacket;
use crate::retry::{Backoff, RetryAction, RetryBudget, RetryTimer};
use crate::storage::{AnalyzerCounters, Checkpoint, Counters, DeadLetter};
use chrono::Utc;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// How long a failed dead-letter write waits before it is tried again.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// One packet on its way: its place in the registry, the packet, and the
/// retries spent so far.
#[derive(Debug, Clone)]
pub struct Job {
    pub seq: u64,
    pub packet: Arc<LogPacket>,
    pub retries: u32,
    /// Whether this attempt holds a place in the retry budget.
    holds_budget: bool,
}

/// Why packets were not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("the distributor is at capacity ({capacity} packets in flight); retry shortly")]
    Full { capacity: usize },
    #[error("the distributor is shutting down")]
    ShuttingDown,
}

/// Where the in-flight packets are, for stats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pipeline {
    pub capacity: usize,
    pub in_flight: usize,
    pub queued: usize,
    pub delivering: usize,
    pub retry_wait: usize,
    pub no_analyzer: usize,
}

pub struct Settings {
    pub max_in_flight: usize,
    pub backoff: Backoff,
    pub budget: Option<RetryBudget>,
    pub batch: BatchConfig,
    pub slow_start: Duration,
}

pub struct Dispatcher {
    fleet: Fleet,
    settings: Settings,
    metrics: Metrics,
    dead_letter: Arc<DeadLetter>,
    retry_timer: RetryTimer<Job>,
    /// Every admitted packet not yet finished, with its retry count: what a
    /// checkpoint saves. Touched once per admit, retry and finish.
    registry: Mutex<HashMap<u64, (Arc<LogPacket>, u32)>>,
    in_flight: AtomicUsize,
    next_seq: AtomicU64,
    /// Packets waiting for any analyzer to come back into rotation.
    parked: Mutex<VecDeque<Job>>,
    parked_count: AtomicUsize,
    accepting: AtomicBool,
    drained: Notify,
}

impl Dispatcher {
    /// Starts the dispatcher with its analyzers and their lanes.
    pub fn start(
        analyzers: Vec<(Arc<Analyzer>, LaneReceiver)>,
        settings: Settings,
        metrics: Metrics,
        dead_letter: Arc<DeadLetter>,
    ) -> Arc<Dispatcher> {
        let (analyzers, lanes): (Vec<_>, Vec<_>) = analyzers.into_iter().unzip();
        metrics.queue_capacity.set(settings.max_in_flight as i64);
        let dispatcher = Arc::new_cyclic(|me: &Weak<Dispatcher>| {
            let me = me.clone();
            Dispatcher {
                fleet: Fleet::new(analyzers, settings.slow_start),
                settings,
                metrics,
                dead_letter,
                retry_timer: RetryTimer::spawn(move |job| {
                    if let Some(dispatcher) = me.upgrade() {
                        dispatcher.retry_due(job);
                    }
                }),
                registry: Mutex::new(HashMap::new()),
                in_flight: AtomicUsize::new(0),
                next_seq: AtomicU64::new(0),
                parked: Mutex::new(VecDeque::new()),
                parked_count: AtomicUsize::new(0),
                accepting: AtomicBool::new(true),
                drained: Notify::new(),
            }
        });
        for (analyzer, lane) in dispatcher.fleet.all().iter().zip(lanes) {
            tokio::spawn(dispatcher.clone().drain_lane(analyzer.clone(), lane));
        }
        dispatcher
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn dead_letter(&self) -> &Arc<DeadLetter> {
        &self.dead_letter
    }

    /// Takes packets in, all or none; answers their ids in order.
    pub fn admit(&self, packets: Vec<LogPacket>) -> Result<Vec<String>, AdmitError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(AdmitError::ShuttingDown);
        }
        let count = packets.len();
        let capacity = self.settings.max_in_flight;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + count <= capacity).then_some(now + count)
            })
            .map_err(|_| AdmitError::Full { capacity })?;
        let messages: usize = packets.iter().map(|p| p.messages.len()).sum();
        self.metrics.packets_received.inc_by(count as u64);
        self.metrics.messages_received.inc_by(messages as u64);
        Ok(self.enter(packets))
    }

    /// Takes back packets that were already accepted before a restart,
    /// whatever the limit, keeping their retry counts.
    pub fn resume(&self, packets: Vec<LogPacket>) {
        self.in_flight.fetch_add(packets.len(), Ordering::AcqRel);
        self.enter(packets);
    }

    fn enter(&self, packets: Vec<LogPacket>) -> Vec<String> {
        let mut ids = Vec::with_capacity(packets.len());
        let mut jobs = Vec::with_capacity(packets.len());
        {
            let mut registry = self.lock_registry();
            for mut packet in packets {
                let retries = std::mem::take(&mut packet.retry_count);
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                ids.push(packet.id.clone());
                let packet = Arc::new(packet);
                registry.insert(seq, (packet.clone(), retries));
                jobs.push(Job {
                    seq,
                    packet,
                    retries,
                    holds_budget: false,
                });
            }
        }
        for job in jobs {
            self.route(job);
        }
        ids
    }

    /// Hands `job` to the next analyzer in rotation, or parks it.
    fn route(&self, mut job: Job) {
        loop {
            if let Some(analyzer) = self.fleet.pick() {
                analyzer.metrics.routed.inc();
                analyzer
                    .metrics
                    .messages_routed
                    .inc_by(job.packet.messages.len() as u64);
                match analyzer.enqueue(job) {
                    Ok(()) => return,
                    Err(returned) => {
                        job = returned;
                        continue;
                    }
                }
            }
            let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the lock that `rotation_changed` drains with, so
            // a job parked here is always seen by the next drain.
            if self.fleet.any_in_rotation() {
                continue;
            }
            parked.push_back(job);
            self.parked_count.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }

    /// Rebuilds the routing table and releases parked packets if it can.
    pub fn rotation_changed(&self) {
        self.fleet.rebuild();
        if !self.fleet.any_in_rotation() {
            return;
        }
        let released: Vec<Job> = {
            let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            self.parked_count.fetch_sub(parked.len(), Ordering::Relaxed);
            parked.drain(..).collect()
        };
        if !released.is_empty() {
            tracing::info!(
                packets = released.len(),
                "analyzers back in rotation; releasing parked packets"
            );
        }
        for job in released {
            self.route(job);
        }
    }

    /// A retry whose wait is over: routed again if the budget allows it,
    /// otherwise it waits one more backoff step (its retry count unchanged).
    fn retry_due(&self, mut job: Job) {
        if let Some(budget) = &self.settings.budget {
            let pipeline = self.pipeline();
            if !budget.try_acquire(pipeline.queued + pipeline.delivering) {
                self.metrics.retries_deferred.inc();
                let wait = self.settings.backoff.delay(job.retries.max(1));
                self.retry_timer.schedule(job, wait);
                return;
            }
            job.holds_budget = true;
        }
        self.route(job);
    }

    async fn drain_lane(self: Arc<Self>, analyzer: Arc<Analyzer>, mut lane: LaneReceiver) {
        while let Some(first) = lane.recv().await {
            analyzer.queued.fetch_sub(1, Ordering::Relaxed);
            if !analyzer.in_rotation() {
                self.route(first);
                continue;
            }
            let batch = self.fill_batch(&analyzer, &mut lane, first).await;
            let Ok(slot) = analyzer.slots.clone().acquire_owned().await else {
                break;
            };
            let dispatcher = self.clone();
            let analyzer = analyzer.clone();
            tokio::spawn(async move {
                dispatcher.deliver(&analyzer, batch).await;
                drop(slot);
            });
        }
    }

    /// Adds to `first` what else the lane holds for the same analyzer, up
    /// to the batch limits, waiting at most `batch.linger` for more.
    async fn fill_batch(&self, analyzer: &Analyzer, lane: &mut LaneReceiver, first: Job) -> Vec<Job> {
        let limits = &self.settings.batch;
        let mut bytes = first.packet.approx_wire_bytes();
        let mut batch = vec![first];
        if limits.max_packets <= 1 {
            return batch;
        }
        let deadline = tokio::time::Instant::now() + limits.linger;
        while batch.len() < limits.max_packets && bytes < limits.max_bytes {
            let next = match lane.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if !limits.linger.is_zero() => {
                    tokio::time::timeout_at(deadline, lane.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else { break };
            analyzer.queued.fetch_sub(1, Ordering::Relaxed);
            if !analyzer.in_rotation() {
                self.route(job);
                continue;
            }
            bytes += job.packet.approx_wire_bytes();
            batch.push(job);
        }
        batch
    }

    async fn deliver(&self, analyzer: &Analyzer, mut batch: Vec<Job>) {
        let size = batch.len();
        analyzer.delivering.fetch_add(size, Ordering::Relaxed);
        let started = Instant::now();
        let result = analyzer.transport.deliver(&batch).await;
        analyzer
            .metrics
            .delivery_duration
            .observe(started.elapsed().as_secs_f64());
        analyzer.delivering.fetch_sub(size, Ordering::Relaxed);
        if let Some(budget) = &self.settings.budget {
            for job in batch.iter_mut().filter(|job| job.holds_budget) {
                job.holds_budget = false;
                budget.release();
            }
        }
        match result {
            Ok(()) => {
                analyzer.metrics.delivered.inc_by(size as u64);
                if analyzer.health.record_delivery(true) {
                    self.rotation_changed();
                }
                for job in &batch {
                    self.finish(job.seq);
                }
            }
            Err(failure) => {
                analyzer.metrics.errors.inc_by(size as u64);
                if analyzer.health.record_delivery(false) {
                    tracing::warn!(analyzer = %analyzer.id, error = %failure.message, "analyzer ejected after consecutive delivery failures");
                    self.rotation_changed();
                }
                let mut dead = Vec::new();
                for job in batch {
                    match self.settings.backoff.decide(job.retries, &failure) {
                        RetryAction::Retry { after, retry } => self.retry_later(job, retry, after),
                        RetryAction::DeadLetter { final_error } => dead.push((job, final_error)),
                    }
                }
                if !dead.is_empty() {
                    self.bury(dead).await;
                }
            }
        }
    }

    fn retry_later(&self, mut job: Job, retry: u32, after: Duration) {
        if let Some(entry) = self.lock_registry().get_mut(&job.seq) {
            entry.1 = retry;
        }
        job.retries = retry;
        self.metrics.packets_retried.inc();
        self.retry_timer.schedule(job, after);
    }

    /// Writes packets to the dead letter, trying until the write succeeds:
    /// they stay in flight (and in checkpoints) until it does.
    async fn bury(&self, dead: Vec<(Job, String)>) {
        let failed: Vec<(LogPacket, String)> = dead
            .iter()
            .map(|(job, final_error)| {
                let packet = LogPacket {
                    retry_count: job.retries,
                    ..(*job.packet).clone()
                };
                (packet, final_error.clone())
            })
            .collect();
        loop {
            let file = self.dead_letter.clone();
            let batch = failed.clone();
            match tokio::task::spawn_blocking(move || file.append(batch)).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, packets = failed.len(), "cannot write the dead letter; trying again")
                }
                Err(e) => tracing::error!(error = %e, "dead-letter writer failed; trying again"),
            }
            tokio::time::sleep(DEAD_LETTER_RETRY).await;
        }
        self.metrics.packets_dead_lettered.inc_by(dead.len() as u64);
        for (job, _) in &dead {
            tracing::debug!(packet = %job.packet.id, "packet dead-lettered");
            self.finish(job.seq);
        }
    }

    fn finish(&self, seq: u64) {
        self.lock_registry().remove(&seq);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Rebuilds the rotation every `step` while an analyzer ramps up after
    /// rejoining (slow start); runs until the task is dropped.
    pub async fn ramp_slow_starters(self: Arc<Self>, step: Duration) {
        let mut ticker = tokio::time::interval(step);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.fleet.is_ramping() {
                self.rotation_changed();
            }
        }
    }

    /// Refuses new packets from now on (503 to clients).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight or `timeout` passes; true if drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.drained.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight.load(Ordering::Acquire) == 0;
            }
        }
    }

    pub fn pipeline(&self) -> Pipeline {
        let analyzers = self.fleet.all();
        Pipeline {
            capacity: self.settings.max_in_flight,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: analyzers.iter().map(|a| a.queued.load(Ordering::Relaxed)).sum(),
            delivering: analyzers
                .iter()
                .map(|a| a.delivering.load(Ordering::Relaxed))
                .sum(),
            retry_wait: self.retry_timer.waiting(),
            no_analyzer: self.parked_count.load(Ordering::Relaxed),
        }
    }

    /// The state a restart needs: in-flight packets and lifetime counters.
    pub fn checkpoint(&self) -> Checkpoint {
        let in_flight = self
            .lock_registry()
            .values()
            .map(|(packet, retries)| LogPacket {
                retry_count: *retries,
                ..(**packet).clone()
            })
            .collect();
        let m = &self.metrics;
        let analyzers = self
            .fleet
            .all()
            .iter()
            .map(|a| {
                let counters = AnalyzerCounters {
                    routed: a.metrics.routed.get(),
                    messages_routed: a.metrics.messages_routed.get(),
                    delivered: a.metrics.delivered.get(),
                    errors: a.metrics.errors.get(),
                };
                (a.id.clone(), counters)
            })
            .collect();
        Checkpoint {
            version: crate::storage::checkpoint::VERSION,
            saved_at: Utc::now(),
            counters: Counters {
                packets_received: m.packets_received.get(),
                messages_received: m.messages_received.get(),
                packets_retried: m.packets_retried.get(),
                packets_dead_lettered: m.packets_dead_lettered.get(),
                analyzers,
            },
            in_flight,
        }
    }

    /// Carries counters over from a checkpoint (before any traffic).
    pub fn restore_counters(&self, counters: &Counters) {
        let m = &self.metrics;
        m.packets_received.inc_by(counters.packets_received);
        m.messages_received.inc_by(counters.messages_received);
        m.packets_retried.inc_by(counters.packets_retried);
        m.packets_dead_lettered.inc_by(counters.packets_dead_lettered);
        for (id, saved) in &counters.analyzers {
            if let Some(a) = self.fleet.get(id) {
                a.metrics.routed.inc_by(saved.routed);
                a.metrics.messages_routed.inc_by(saved.messages_routed);
                a.metrics.delivered.inc_by(saved.delivered);
                a.metrics.errors.inc_by(saved.errors);
            }
        }
    }

    fn lock_registry(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Arc<LogPacket>, u32)>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}
