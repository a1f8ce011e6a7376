//! The [`Dispatcher`]: takes accepted packets to analyzers and sees each
//! one to exactly one end, delivered or dead-lettered.
//!
//! ```text
//! admit ─► route ─► analyzer lane ─► deliver ─┬─ ok ──────────────► finish
//!  (limit)   │ SWRR pick      ▲               ├─ too large, bad packet: split in halves, deliver each
//!            │                │               └─ fail ─► decide ─┬─ retry timer ─┐
//!            │                └── the same batch, while the analyzer is in rotation ┘ (else route)
//!            └─ nothing in rotation: parked until one is         └─ dead letter ─► finish
//! ```
//!
//! Every accepted packet sits in the in-flight registry from `admit` to
//! `finish`, and in the write-ahead log from before its 202 to its End
//! record; the registry is what a checkpoint saves, the log what a crash
//! replays (see `storage::wal` for the ordering that makes the two agree).
//! Admission is bounded by `queue.max_in_flight` packets and
//! `queue.max_in_flight_bytes`, which bound memory: lanes, the retry timer
//! and the parking lot hold only admitted packets.
//!
//! Each analyzer has a lane drained by one task that runs up to its
//! `concurrency` deliveries at once, each of up to `batch.max_packets`
//! packets (fewer when the analyzer's `max_batch_packets` says so; one for
//! a simulated analyzer unless its own says more), so a slow analyzer
//! queues its own packets without holding up the others. A lane whose
//! analyzer leaves the rotation hands what it holds back to `route`.
//!
//! A delivery the analyzer refuses as too large (413, 431) or for a bad
//! packet (400) is split in halves, each delivered on its own, down to
//! single packets: only the packets refused alone are dead-lettered. The
//! packets of a failed delivery that are to be retried wait together and
//! go again together, in the same order, to the same analyzer's lane while
//! that analyzer is in rotation (a retry is no routing decision: it takes
//! no turn in the SWRR cycle); only when it has left the rotation, or the
//! fleet, are they routed afresh. A retry that is due goes through the
//! retry budget, when one is set, first.

mod admission;
pub(crate) mod fleet;
pub(crate) mod health;
pub(crate) mod job;
mod lane;
pub(crate) mod prober;
mod replay;
pub(crate) mod retry;
pub mod routing;
mod snapshot;
#[cfg(test)]
mod tests;
mod transfer;

pub use admission::{AdmitError, Admitted};
pub use replay::{ReplayError, Replayed};

use crate::config::BatchConfig;
use crate::metrics::Metrics;
use crate::model::EncodedPacket;
use crate::storage::wal::Wal;
use crate::storage::DeadLetter;
use crate::sync::LockUnpoisoned;
use fleet::{Analyzer, Fleet, LaneReceiver, Share};
use job::{Job, LaneItem};
use lane::PendingRetry;
use retry::{Backoff, RetryBudget, RetryTimer};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Every packet in flight by seq. Seqs are the distributor's own, not a
/// client's, so a fast hash (no DoS-resistant SipHash) is safe here.
type Registry = HashMap<u64, InFlight, foldhash::fast::RandomState>;

/// One packet in the registry.
struct InFlight {
    packet: Arc<EncodedPacket>,
    retries: u32,
    /// Its share of `queue.max_in_flight_bytes`.
    bytes: usize,
}

/// Where the in-flight packets are, for stats and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pipeline {
    pub capacity: usize,
    pub in_flight: usize,
    pub capacity_bytes: usize,
    /// Bytes of JSON of the packets in flight.
    pub in_flight_bytes: usize,
    pub queued: usize,
    pub delivering: usize,
    pub retry_wait: usize,
    pub no_analyzer: usize,
}

pub struct Settings {
    pub max_in_flight: usize,
    pub max_in_flight_bytes: usize,
    pub backoff: Backoff,
    pub budget: Option<RetryBudget>,
    pub batch: BatchConfig,
    pub slow_start: Duration,
    /// How long an admission waits for room in a full queue.
    pub full_wait: Duration,
}

pub struct Dispatcher {
    fleet: Fleet,
    settings: Settings,
    metrics: Metrics,
    dead_letter: Arc<DeadLetter>,
    retry_timer: RetryTimer<PendingRetry>,
    wal: Wal,
    /// Admissions hold it shared from entering the registry until their
    /// Accept records are durable (or have failed); a checkpoint holds it
    /// alone while it rotates the log and snapshots the registry, so a
    /// snapshot never holds a packet whose admission may still fail.
    admission: Arc<tokio::sync::RwLock<()>>,
    /// Held by one checkpoint at a time, from its snapshot to the deletion
    /// of the segments it covers.
    checkpoint_turn: Arc<tokio::sync::Mutex<()>>,
    /// Replays run one at a time, each from choosing entries to taking
    /// them out of the file.
    replays: tokio::sync::Mutex<()>,
    /// False until `resume` has put back what a restart recovered: no
    /// admission before it (its seqs could collide with recovered ones).
    resumed: AtomicBool,
    /// The last write-ahead log failure, until an append succeeds again.
    storage_error: Mutex<Option<String>>,
    storage_failing: AtomicBool,
    /// Every admitted packet not yet finished, with its retry count: what a
    /// checkpoint saves. Touched once per admit, retry and finish.
    registry: Mutex<Registry>,
    in_flight: AtomicUsize,
    in_flight_bytes: AtomicUsize,
    next_seq: AtomicU64,
    /// Packets waiting for any analyzer to come back into rotation.
    parked: Mutex<VecDeque<Job>>,
    parked_count: AtomicUsize,
    accepting: AtomicBool,
    drained: Notify,
    /// Told whenever packets leave the queue (or admitting stops), for
    /// admissions waiting for room.
    room_freed: Notify,
}

impl Dispatcher {
    /// Starts the dispatcher with its analyzers and their lanes.
    pub fn start(
        analyzers: Vec<(Arc<Analyzer>, LaneReceiver)>,
        settings: Settings,
        metrics: Metrics,
        dead_letter: Arc<DeadLetter>,
        wal: Wal,
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
                retry_timer: RetryTimer::spawn(move |retry| {
                    if let Some(dispatcher) = me.upgrade() {
                        dispatcher.retry_due(retry);
                    }
                }),
                wal,
                admission: Arc::new(tokio::sync::RwLock::new(())),
                checkpoint_turn: Arc::new(tokio::sync::Mutex::new(())),
                replays: tokio::sync::Mutex::new(()),
                resumed: AtomicBool::new(false),
                storage_error: Mutex::new(None),
                storage_failing: AtomicBool::new(false),
                registry: Mutex::new(Registry::default()),
                in_flight: AtomicUsize::new(0),
                in_flight_bytes: AtomicUsize::new(0),
                next_seq: AtomicU64::new(0),
                parked: Mutex::new(VecDeque::new()),
                parked_count: AtomicUsize::new(0),
                accepting: AtomicBool::new(true),
                drained: Notify::new(),
                room_freed: Notify::new(),
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

    /// Bytes in all write-ahead log segments now (reads the directory).
    pub fn wal_bytes(&self) -> u64 {
        self.wal.size_bytes()
    }

    pub fn dead_letter(&self) -> &Arc<DeadLetter> {
        &self.dead_letter
    }

    /// Hands each job to the next analyzer in rotation (one lane send per
    /// analyzer picked), or parks them.
    fn route(&self, mut jobs: Vec<Job>) {
        while !jobs.is_empty() {
            jobs = match self.fleet.share(jobs) {
                Ok(shares) => self.enqueue_shares(shares),
                Err(unrouted) => self.park(unrouted),
            };
        }
    }

    /// Queues each analyzer's share on its lane; answers the jobs of lanes
    /// closed since the pick, to be routed again.
    fn enqueue_shares(&self, shares: Vec<Share<Job>>) -> Vec<Job> {
        let mut returned = Vec::new();
        for (analyzer, jobs) in shares {
            analyzer.metrics.routed.inc_by(jobs.len() as u64);
            let messages: usize = jobs.iter().map(|job| job.packet.message_count()).sum();
            analyzer.metrics.messages_routed.inc_by(messages as u64);
            if let Err(item) = analyzer.enqueue(LaneItem::Routed(jobs)) {
                returned.extend(item.into_jobs());
            }
        }
        returned
    }

    /// Parks jobs while nothing is in rotation; gives them back to be
    /// routed if something came back meanwhile.
    fn park(&self, jobs: Vec<Job>) -> Vec<Job> {
        let mut parked = self.parked.lock_unpoisoned();
        // Checked under the lock that `rotation_changed` drains with, so
        // a job parked here is always seen by the next drain.
        if self.fleet.any_in_rotation() {
            return jobs;
        }
        self.parked_count.fetch_add(jobs.len(), Ordering::Relaxed);
        parked.extend(jobs);
        Vec::new()
    }

    /// Adds an analyzer (or replaces the one with its id) and starts its lane.
    pub fn add_analyzer(self: &Arc<Self>, analyzer: Arc<Analyzer>, lane: LaneReceiver) {
        self.add_analyzers(vec![(analyzer, lane)]);
    }

    /// Adds analyzers (or replaces those with their ids), starts their
    /// lanes, and rebuilds the rotation once, with all of them: parked
    /// packets are then split among them all, and when the rotation was
    /// empty none of them counts as rejoining (no slow start).
    pub fn add_analyzers(self: &Arc<Self>, added: Vec<(Arc<Analyzer>, LaneReceiver)>) {
        if added.is_empty() {
            return;
        }
        for (analyzer, lane) in added {
            if let Some(old) = self.fleet.upsert(analyzer.clone()) {
                old.close_lane();
            }
            tokio::spawn(self.clone().drain_lane(analyzer, lane));
        }
        self.rotation_changed();
    }

    /// Removes an analyzer: it leaves the rotation, and what its lane holds
    /// is routed elsewhere. False when there is none with that id.
    pub fn remove_analyzer(&self, id: &str) -> bool {
        let Some(old) = self.fleet.remove(id) else {
            return false;
        };
        self.rotation_changed();
        old.close_lane();
        self.metrics.forget_analyzer(id);
        true
    }

    /// Rebuilds the routing table and releases parked packets if it can.
    pub fn rotation_changed(&self) {
        self.fleet.rebuild();
        if !self.fleet.any_in_rotation() {
            return;
        }
        let released: Vec<Job> = {
            let mut parked = self.parked.lock_unpoisoned();
            self.parked_count.fetch_sub(parked.len(), Ordering::Relaxed);
            parked.drain(..).collect()
        };
        if !released.is_empty() {
            tracing::info!(
                packets = released.len(),
                "analyzers back in rotation; releasing parked packets"
            );
            self.route(released);
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

    /// The last write-ahead log failure, while appends keep failing.
    pub fn storage_error(&self) -> Option<String> {
        if !self.storage_failing.load(Ordering::Acquire) {
            return None;
        }
        self.storage_error.lock_unpoisoned().clone()
    }

    /// Refuses new packets from now on (503 to clients).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
        self.room_freed.notify_waiters();
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
            capacity_bytes: self.settings.max_in_flight_bytes,
            in_flight_bytes: self.in_flight_bytes.load(Ordering::Relaxed),
            queued: analyzers.iter().map(|a| a.queued.load(Ordering::Relaxed)).sum(),
            delivering: analyzers
                .iter()
                .map(|a| a.delivering.load(Ordering::Relaxed))
                .sum(),
            retry_wait: self.retry_timer.waiting(),
            no_analyzer: self.parked_count.load(Ordering::Relaxed),
        }
    }

    fn lock_registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock_unpoisoned()
    }
}
