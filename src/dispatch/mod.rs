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
//! packets, so a slow analyzer queues its own packets without holding up
//! the others. A lane whose analyzer leaves the rotation hands what it holds
//! back to `route`.
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

pub mod fleet;
pub mod health;
pub mod retry;
pub mod routing;

use crate::config::BatchConfig;
use crate::dispatch::fleet::{Analyzer, Fleet, LaneReceiver};
use crate::dispatch::retry::{Backoff, Packets, RetryAction, RetryBudget, RetryTimer};
use crate::metrics::Metrics;
use crate::model::{EncodedPacket, LogPacket};
use crate::storage::checkpoint::SavedPacket;
use crate::storage::dead_letter::{EntryKey, Room, Selection};
use crate::storage::wal::{DurableAppend, Record, Wal, WalError};
use crate::storage::{AnalyzerCounters, Checkpoint, Counters, DeadLetter, Unfinished};
use crate::transport::FailureClass;
use chrono::Utc;
use std::collections::{hash_map, BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, OwnedRwLockReadGuard};

/// How long a failed dead-letter write waits before it is tried again.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// One packet on its way: its place in the registry, the packet, and the
/// retries spent so far.
#[derive(Debug, Clone)]
pub struct Job {
    pub seq: u64,
    pub packet: Arc<EncodedPacket>,
    pub retries: u32,
    /// Whether this attempt holds a place in the retry budget.
    holds_budget: bool,
}

/// What an analyzer's lane carries.
#[derive(Debug)]
pub enum LaneItem {
    /// A packet routed to the analyzer: the lane batches it with the
    /// packets queued behind it.
    Packet(Job),
    /// Packets whose delivery to the analyzer failed together, going again
    /// together: the same packets in the same order (so the same
    /// `Idempotency-Key`).
    Retry(Vec<Job>),
}

impl LaneItem {
    pub fn packets(&self) -> usize {
        match self {
            LaneItem::Packet(_) => 1,
            LaneItem::Retry(jobs) => jobs.len(),
        }
    }

    fn into_jobs(self) -> Vec<Job> {
        match self {
            LaneItem::Packet(job) => vec![job],
            LaneItem::Retry(jobs) => jobs,
        }
    }
}

/// Packets waiting in the retry timer to go again to the analyzer whose
/// delivery of them failed.
struct PendingRetry {
    analyzer: String,
    jobs: Vec<Job>,
}

impl Packets for PendingRetry {
    fn packets(&self) -> usize {
        self.jobs.len()
    }
}

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

/// Why packets were not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error("the distributor is at capacity ({capacity}); retry shortly")]
    Full { capacity: String },
    #[error("the distributor is shutting down")]
    ShuttingDown,
    #[error("the distributor is recovering its write-ahead log; retry shortly")]
    Recovering,
    #[error("storage unavailable: {0}")]
    StorageUnavailable(String),
}

/// Why a replay of dead letters took nothing back, or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Refused(#[from] AdmitError),
    #[error(
        "cannot take {matched} or more packets back now (room for {room} more in flight); \
         replay fewer ids or retry shortly"
    )]
    NoRoom { matched: usize, room: usize },
    #[error("cannot read the dead letter: {0}")]
    Read(String),
    /// The packets are in flight again, and still in the file.
    #[error("replayed, but cannot remove them from the dead letter: {0}")]
    Remove(String),
}

/// What a replay took back: the packets' ids, in the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub ids: Vec<String>,
}

impl AdmitError {
    /// The limit of `max` packets or bytes in flight is reached.
    fn full(max: usize, unit: &str) -> AdmitError {
        AdmitError::Full {
            capacity: format!("{max} {unit} in flight"),
        }
    }
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
}

/// What an admission takes in: packets, their JSON bytes, their messages.
#[derive(Debug, Clone, Copy)]
struct AdmittedSizes {
    packets: usize,
    bytes: usize,
    messages: usize,
}

/// An admission whose Accept records are on their way to the log. If it
/// is dropped before they are durable, a task sees it through.
struct Admission {
    dispatcher: Arc<Dispatcher>,
    entered: Vec<Job>,
    sizes: AdmittedSizes,
    append: Option<DurableAppend>,
    /// Held until the admission is concluded (see `Dispatcher::admission`).
    admitting: Option<OwnedRwLockReadGuard<()>>,
}

impl Admission {
    async fn wait(mut self) -> Result<Vec<String>, AdmitError> {
        let written = self.append.as_mut().expect("an admission is awaited once").await;
        self.append = None;
        let entered = std::mem::take(&mut self.entered);
        self.dispatcher.conclude_admission(entered, self.sizes, written)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let Some(append) = self.append.take() else {
            return;
        };
        // Without a runtime the process is stopping: the log replays
        // these packets at the next start.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let rest = Admission {
            dispatcher: Arc::clone(&self.dispatcher),
            entered: std::mem::take(&mut self.entered),
            sizes: self.sizes,
            append: Some(append),
            admitting: self.admitting.take(),
        };
        runtime.spawn(rest.wait());
    }
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

    /// Takes packets in (with retry count 0), all or none, durably: when
    /// this answers their ids (in order), every packet is in the
    /// write-ahead log.
    ///
    /// Dropping the future (the client went away) once the records are
    /// handed to the log does not stop the admission: they may reach the
    /// disk, so a task waits for them and routes the packets (or takes them
    /// back out if the write failed), as if the answer had been awaited.
    pub async fn admit(self: &Arc<Self>, packets: Vec<EncodedPacket>) -> Result<Vec<String>, AdmitError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(AdmitError::ShuttingDown);
        }
        if !self.resumed.load(Ordering::Acquire) {
            return Err(AdmitError::Recovering);
        }
        let sizes = AdmittedSizes {
            packets: packets.len(),
            bytes: packets.iter().map(EncodedPacket::json_bytes).sum(),
            messages: packets.iter().map(EncodedPacket::message_count).sum(),
        };
        let admitting = Arc::clone(&self.admission).read_owned().await;
        self.reserve(sizes.packets, sizes.bytes)?;
        let entered = self.enter(packets.into_iter().map(|p| (None, Arc::new(p), 0)));
        let records: Vec<Record> = entered
            .iter()
            .map(|job| Record::Accept {
                seq: job.seq,
                packet: job.packet.clone(),
                retries: job.retries,
            })
            .collect();
        let append = match self.wal.send_durable(&records) {
            Ok(append) => append,
            Err(e) => return self.conclude_admission(entered, sizes, Err(e)),
        };
        Admission {
            dispatcher: Arc::clone(self),
            entered,
            sizes,
            append: Some(append),
            admitting: Some(admitting),
        }
        .wait()
        .await
    }

    /// Routes an admission's packets once their Accept records are durable,
    /// or takes them back out when the write failed; answers their ids.
    fn conclude_admission(
        &self,
        entered: Vec<Job>,
        sizes: AdmittedSizes,
        written: Result<(), WalError>,
    ) -> Result<Vec<String>, AdmitError> {
        if let Err(e) = written {
            // Nothing half-accepted: out of the registry, the room given back.
            {
                let mut registry = self.lock_registry();
                for job in &entered {
                    registry.remove(&job.seq);
                }
            }
            self.in_flight.fetch_sub(sizes.packets, Ordering::AcqRel);
            self.in_flight_bytes.fetch_sub(sizes.bytes, Ordering::AcqRel);
            *self.storage_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            self.storage_failing.store(true, Ordering::Release);
            return Err(AdmitError::StorageUnavailable(e.to_string()));
        }
        if self.storage_failing.swap(false, Ordering::AcqRel) {
            self.storage_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            tracing::info!("write-ahead log writes work again");
        }
        self.metrics.packets_received.inc_by(sizes.packets as u64);
        self.metrics.messages_received.inc_by(sizes.messages as u64);
        let ids = entered.iter().map(|job| job.packet.id().to_string()).collect();
        for job in entered {
            self.route(job);
        }
        Ok(ids)
    }

    /// Whether `packets` packets of about `bytes` bytes would fit now: a
    /// cheap check before a request is validated, so that a request that
    /// cannot fit is refused before its packets are parsed. (`admit` makes
    /// the exact reservation; this one only looks.)
    pub fn check_room(&self, packets: usize, bytes: usize) -> Result<(), AdmitError> {
        let (max_packets, max_bytes) = (self.settings.max_in_flight, self.settings.max_in_flight_bytes);
        if self.in_flight.load(Ordering::Acquire) + packets > max_packets {
            return Err(AdmitError::full(max_packets, "packets"));
        }
        let bytes_now = self.in_flight_bytes.load(Ordering::Acquire);
        if bytes_now != 0 && bytes_now + bytes > max_bytes {
            return Err(AdmitError::full(max_bytes, "bytes"));
        }
        Ok(())
    }

    /// Counts `count` packets of `bytes` in, if both limits allow.
    fn reserve(&self, count: usize, bytes: usize) -> Result<(), AdmitError> {
        let (max_packets, max_bytes) = (self.settings.max_in_flight, self.settings.max_in_flight_bytes);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now + count <= max_packets).then_some(now + count)
            })
            .map_err(|_| AdmitError::full(max_packets, "packets"))?;
        let room = self
            .in_flight_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                // One request may always go through when nothing is in flight,
                // however large: the body limit already bounds it.
                (now == 0 || now + bytes <= max_bytes).then_some(now + bytes)
            });
        if room.is_err() {
            self.in_flight.fetch_sub(count, Ordering::AcqRel);
            return Err(AdmitError::full(max_bytes, "bytes"));
        }
        Ok(())
    }

    /// Takes back the packets a restart recovered (checkpoint plus log),
    /// whatever the limits, with their seqs and retry counts; new packets
    /// get seqs from `next_seq` on.
    pub fn resume(&self, recovered: BTreeMap<u64, Unfinished>, next_seq: u64) {
        assert!(
            !self.resumed.swap(true, Ordering::AcqRel),
            "the dispatcher resumes once"
        );
        let past_recovered = recovered.keys().next_back().map_or(0, |seq| seq + 1);
        self.next_seq
            .fetch_max(next_seq.max(past_recovered), Ordering::AcqRel);
        let bytes: usize = recovered.values().map(|u| u.packet.json_bytes()).sum();
        self.in_flight.fetch_add(recovered.len(), Ordering::AcqRel);
        self.in_flight_bytes.fetch_add(bytes, Ordering::AcqRel);
        let entered = self.enter(
            recovered
                .into_iter()
                .map(|(seq, u)| (Some(seq), u.packet, u.retries)),
        );
        for job in entered {
            self.route(job);
        }
    }

    /// Puts packets in the registry (new seqs where none is given) and
    /// answers their jobs, not yet routed.
    ///
    /// A seq names one packet for ever: entering one that is in flight
    /// would overwrite that packet and lose it, so it stops the process's
    /// task here, loudly, rather than go on.
    fn enter(&self, packets: impl Iterator<Item = (Option<u64>, Arc<EncodedPacket>, u32)>) -> Vec<Job> {
        let mut registry = self.lock_registry();
        packets
            .map(|(seq, packet, retries)| {
                let seq = seq.unwrap_or_else(|| self.next_seq.fetch_add(1, Ordering::Relaxed));
                match registry.entry(seq) {
                    hash_map::Entry::Vacant(place) => {
                        place.insert(InFlight {
                            bytes: packet.json_bytes(),
                            packet: packet.clone(),
                            retries,
                        });
                    }
                    hash_map::Entry::Occupied(live) => panic!(
                        "seq {seq} entered twice: packet {:?} would overwrite {:?}, which is in flight",
                        packet.id(),
                        live.get().packet.id()
                    ),
                }
                Job {
                    seq,
                    packet,
                    retries,
                    holds_budget: false,
                }
            })
            .collect()
    }

    /// Hands `job` to the next analyzer in rotation, or parks it.
    fn route(&self, mut job: Job) {
        loop {
            if let Some(analyzer) = self.fleet.pick() {
                analyzer.metrics.routed.inc();
                analyzer
                    .metrics
                    .messages_routed
                    .inc_by(job.packet.message_count() as u64);
                match analyzer.enqueue(LaneItem::Packet(job)) {
                    Ok(()) => return,
                    Err(returned) => {
                        job = returned
                            .into_jobs()
                            .pop()
                            .expect("a packet comes back as it went");
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

    /// A retry whose wait is over: sent back if the budget allows it,
    /// otherwise it waits one more backoff step (its retry counts unchanged).
    fn retry_due(&self, mut retry: PendingRetry) {
        if let Some(budget) = &self.settings.budget {
            let pipeline = self.pipeline();
            if !budget.try_acquire(retry.jobs.len(), pipeline.queued + pipeline.delivering) {
                self.metrics.retries_deferred.inc_by(retry.jobs.len() as u64);
                let most = retry.jobs.iter().map(|job| job.retries).max().unwrap_or(0);
                let wait = self.settings.backoff.delay(most.max(1));
                self.retry_timer.schedule(retry, wait);
                return;
            }
            for job in &mut retry.jobs {
                job.holds_budget = true;
            }
        }
        self.send_back(retry);
    }

    /// Hands a retry to the lane of the analyzer that failed to take its
    /// packets, while that analyzer is in rotation; otherwise its packets
    /// are routed afresh.
    fn send_back(&self, retry: PendingRetry) {
        let jobs = match self.fleet.get(&retry.analyzer) {
            Some(analyzer) if analyzer.in_rotation() => match analyzer.enqueue(LaneItem::Retry(retry.jobs)) {
                Ok(()) => return,
                Err(returned) => returned.into_jobs(),
            },
            _ => retry.jobs,
        };
        for job in jobs {
            self.route(job);
        }
    }

    /// Routes what a lane took out for an analyzer no longer in rotation.
    fn reroute(&self, item: LaneItem) {
        for job in item.into_jobs() {
            self.route(job);
        }
    }

    async fn drain_lane(self: Arc<Self>, analyzer: Arc<Analyzer>, mut lane: LaneReceiver) {
        // A retry that ended the previous batch, already taken out of the lane.
        let mut held: Option<LaneItem> = None;
        loop {
            let item = match held.take() {
                Some(item) => item,
                None => match lane.recv().await {
                    Some(item) => {
                        analyzer.queued.fetch_sub(item.packets(), Ordering::Relaxed);
                        item
                    }
                    None => break,
                },
            };
            if !analyzer.in_rotation() {
                self.reroute(item);
                continue;
            }
            // The slot first, the batch second: while every slot is busy the
            // lane fills up, and the next free slot takes what queued there
            // in one delivery (batches grow with the backlog, not with time).
            let Ok(slot) = analyzer.slots.clone().acquire_owned().await else {
                break;
            };
            // It may have left the rotation while the packets waited for a slot.
            if !analyzer.in_rotation() {
                self.reroute(item);
                continue;
            }
            let batch = match item {
                LaneItem::Packet(first) => {
                    let (batch, next) = self.fill_batch(&analyzer, &mut lane, first).await;
                    held = next;
                    batch
                }
                LaneItem::Retry(jobs) => jobs,
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
    /// to the batch limits, waiting at most `batch.linger` for more. A retry
    /// met on the way ends the batch (it goes as it is) and is answered too.
    async fn fill_batch(
        &self,
        analyzer: &Analyzer,
        lane: &mut LaneReceiver,
        first: Job,
    ) -> (Vec<Job>, Option<LaneItem>) {
        let limits = &self.settings.batch;
        let mut bytes = first.packet.json_bytes();
        let mut batch = vec![first];
        if limits.max_packets <= 1 {
            return (batch, None);
        }
        let deadline = tokio::time::Instant::now() + limits.linger;
        if lane.is_empty() {
            // Admissions finish in groups (one per log commit): let the rest
            // of the group route their packets before this batch closes.
            tokio::task::yield_now().await;
        }
        while batch.len() < limits.max_packets && bytes < limits.max_bytes {
            let next = match lane.try_recv() {
                Ok(item) => Some(item),
                Err(mpsc::error::TryRecvError::Empty) if !limits.linger.is_zero() => {
                    tokio::time::timeout_at(deadline, lane.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(item) = next else { break };
            analyzer.queued.fetch_sub(item.packets(), Ordering::Relaxed);
            let job = match item {
                LaneItem::Packet(job) => job,
                retry @ LaneItem::Retry(_) => return (batch, Some(retry)),
            };
            if !analyzer.in_rotation() {
                self.route(job);
                continue;
            }
            bytes += job.packet.json_bytes();
            batch.push(job);
        }
        (batch, None)
    }

    /// Delivers `batch` to `analyzer`. A part refused as too large or for a
    /// bad packet is split in halves, each delivered in turn, down to single
    /// packets; what fails in the end is retried or dead-lettered per packet.
    async fn deliver(&self, analyzer: &Analyzer, batch: Vec<Job>) {
        analyzer.delivering.fetch_add(batch.len(), Ordering::Relaxed);
        let mut parts = vec![batch];
        let mut failed = Vec::new();
        let mut delivered_any = false;
        while let Some(mut part) = parts.pop() {
            let started = Instant::now();
            let result = analyzer.transport.deliver(&part).await;
            analyzer
                .metrics
                .delivery_duration
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    delivered_any = true;
                    self.attempt_over(analyzer, &mut part);
                    analyzer.metrics.delivered.inc_by(part.len() as u64);
                    let seqs: Vec<u64> = part.iter().map(|job| job.seq).collect();
                    self.finish(&seqs);
                }
                Err(failure) if failure.class.splits_a_batch() && part.len() > 1 => {
                    let second = part.split_off(part.len() / 2);
                    parts.push(second);
                    parts.push(part);
                }
                Err(failure) => failed.push((part, failure)),
            }
        }
        // A refused packet says nothing about the analyzer's health; a
        // delivery that took nothing, or that met a retryable failure, does.
        let well = delivered_any && failed.iter().all(|(_, f)| f.class != FailureClass::Retryable);
        if analyzer.health.record_delivery(well) {
            if let Some((_, failure)) = failed.last() {
                tracing::warn!(analyzer = %analyzer.id, error = ?failure.message, "analyzer ejected after consecutive delivery failures");
            }
            self.rotation_changed();
        }
        let mut dead = Vec::new();
        for (mut part, failure) in failed {
            self.attempt_over(analyzer, &mut part);
            analyzer.metrics.errors.inc_by(part.len() as u64);
            let mut retrying = Vec::new();
            let mut wait = Duration::ZERO;
            let mut most_retries = 0;
            for job in part {
                match self.settings.backoff.decide(job.retries, &failure) {
                    RetryAction::Retry { after, retry } => {
                        // The packets go again together, after the wait of
                        // the most retried one.
                        if retry > most_retries {
                            (most_retries, wait) = (retry, after);
                        }
                        retrying.push((job, retry));
                    }
                    RetryAction::DeadLetter { final_error } => dead.push((job, final_error)),
                }
            }
            if !retrying.is_empty() {
                self.retry_later(analyzer, retrying, wait);
            }
        }
        if !dead.is_empty() {
            self.bury(dead).await;
        }
    }

    /// Ends the attempt of `jobs`: no longer being delivered, their places
    /// in the retry budget given back.
    fn attempt_over(&self, analyzer: &Analyzer, jobs: &mut [Job]) {
        analyzer.delivering.fetch_sub(jobs.len(), Ordering::Relaxed);
        if let Some(budget) = &self.settings.budget {
            for job in jobs.iter_mut().filter(|job| job.holds_budget) {
                job.holds_budget = false;
                budget.release();
            }
        }
    }

    /// Schedules packets (each with its new retry count) to go again
    /// together to `analyzer` after `after`.
    fn retry_later(&self, analyzer: &Analyzer, retrying: Vec<(Job, u32)>, after: Duration) {
        {
            let mut registry = self.lock_registry();
            for (job, retry) in &retrying {
                if let Some(entry) = registry.get_mut(&job.seq) {
                    entry.retries = *retry;
                }
            }
        }
        let records: Vec<Record> = retrying
            .iter()
            .map(|(job, retry)| Record::Retry {
                seq: job.seq,
                retries: *retry,
            })
            .collect();
        self.wal.append(&records);
        self.metrics.packets_retried.inc_by(retrying.len() as u64);
        let jobs = retrying
            .into_iter()
            .map(|(mut job, retry)| {
                job.retries = retry;
                job
            })
            .collect();
        self.retry_timer.schedule(
            PendingRetry {
                analyzer: analyzer.id.clone(),
                jobs,
            },
            after,
        );
    }

    /// Writes packets to the dead letter, trying until the write succeeds:
    /// they stay in flight (and in checkpoints) until it does.
    async fn bury(&self, dead: Vec<(Job, String)>) {
        let failed: Vec<(LogPacket, String)> = dead
            .iter()
            .map(|(job, final_error)| (job.packet.decode(job.retries), final_error.clone()))
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
        let seqs: Vec<u64> = dead.iter().map(|(job, _)| job.seq).collect();
        self.finish(&seqs);
    }

    /// Takes dead letters back for delivery: those of the packets named by
    /// `ids`, or all of them. One step that outlives its caller: it runs on
    /// its own task, one replay at a time, and takes the entries out of the
    /// file only once their packets are durable in the log again (a crash
    /// between the two delivers them and leaves them in the file: at least
    /// once, never lost).
    pub async fn replay(self: &Arc<Self>, ids: Option<HashSet<String>>) -> Result<Replayed, ReplayError> {
        let dispatcher = Arc::clone(self);
        tokio::spawn(async move { dispatcher.replay_alone(ids).await })
            .await
            .unwrap_or_else(|e| Err(ReplayError::Read(format!("the replay task failed: {e}"))))
    }

    async fn replay_alone(self: Arc<Self>, ids: Option<HashSet<String>>) -> Result<Replayed, ReplayError> {
        let _alone = self.replays.lock().await;
        let room = self.room();
        let file = self.dead_letter.clone();
        let selection = tokio::task::spawn_blocking(move || file.select(ids.as_ref(), room))
            .await
            .map_err(|e| ReplayError::Read(e.to_string()))?
            .map_err(|e| ReplayError::Read(e.to_string()))?;
        let entries = match selection {
            Selection::Chosen(entries) => entries,
            Selection::NoRoom { matched } => {
                return Err(ReplayError::NoRoom {
                    matched,
                    room: room.packets,
                })
            }
        };
        if entries.is_empty() {
            return Ok(Replayed::default());
        }
        let keys: HashSet<EntryKey> = entries.iter().map(|entry| entry.key()).collect();
        let packets = entries
            .iter()
            .map(|entry| EncodedPacket::new(&entry.packet))
            .collect();
        let ids = self.admit(packets).await?;
        let file = self.dead_letter.clone();
        tokio::task::spawn_blocking(move || file.remove(&keys))
            .await
            .map_err(|e| ReplayError::Remove(e.to_string()))?
            .map_err(|e| ReplayError::Remove(e.to_string()))?;
        Ok(Replayed { ids })
    }

    /// How much more may be admitted now.
    fn room(&self) -> Room {
        let bytes_now = self.in_flight_bytes.load(Ordering::Acquire);
        Room {
            packets: self
                .settings
                .max_in_flight
                .saturating_sub(self.in_flight.load(Ordering::Acquire)),
            // As in `reserve`: with nothing in flight, any size goes.
            bytes: if bytes_now == 0 {
                usize::MAX
            } else {
                self.settings.max_in_flight_bytes.saturating_sub(bytes_now)
            },
        }
    }

    /// Ends packets for good (delivered or dead-lettered): out of the
    /// registry first, then the End records (see `storage::wal`).
    fn finish(&self, seqs: &[u64]) {
        let mut bytes = 0;
        {
            let mut registry = self.lock_registry();
            for seq in seqs {
                if let Some(entry) = registry.remove(seq) {
                    bytes += entry.bytes;
                }
            }
        }
        let ends: Vec<Record> = seqs.iter().map(|&seq| Record::End { seq }).collect();
        self.wal.append(&ends);
        self.in_flight_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if self.in_flight.fetch_sub(seqs.len(), Ordering::AcqRel) == seqs.len() {
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

    /// The last write-ahead log failure, while appends keep failing.
    pub fn storage_error(&self) -> Option<String> {
        if !self.storage_failing.load(Ordering::Acquire) {
            return None;
        }
        self.storage_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

    /// Writes a checkpoint to `path` and deletes the log segments it
    /// covers; answers how many packets were in flight.
    ///
    /// Checkpoints happen one at a time, each from its snapshot to its
    /// deletions: one taken later can neither be overwritten by an older
    /// one nor lose the segments the older one still needs. The turn is
    /// held by the blocking save itself, so a caller that stops waiting
    /// (its task aborted) does not let the next checkpoint start early.
    pub async fn checkpoint_to(&self, path: &std::path::Path) -> anyhow::Result<usize> {
        let turn = self.checkpoint_turn.clone().lock_owned().await;
        // Rotate first: every record in the older segments is then already
        // reflected in the registry snapshot taken below.
        let (segment, checkpoint) = {
            let _alone = self.admission.write().await;
            let segment = self.wal.rotate().await?;
            (segment, self.snapshot(segment))
        };
        let packets = checkpoint.in_flight.len();
        let path = path.to_path_buf();
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            checkpoint.save(&path)?;
            wal.delete_before(segment)
        })
        .await??;
        Ok(packets)
    }

    /// The state a restart needs: in-flight packets and lifetime counters,
    /// and the first log segment to replay on top of them.
    fn snapshot(&self, wal_segment: u64) -> Checkpoint {
        let in_flight = self
            .lock_registry()
            .iter()
            .map(|(seq, entry)| SavedPacket {
                seq: *seq,
                packet: entry.packet.clone(),
                retries: entry.retries,
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
            next_seq: self.next_seq.load(Ordering::Acquire),
            wal_segment,
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

    fn lock_registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}
