//! A lane's way: each analyzer's lane is drained by one task that runs up
//! to its `concurrency` deliveries at once, batches what queued behind a
//! packet, delivers through the analyzer's transport, splits refused
//! batches, schedules retries back to the same lane, and buries what is
//! out of retries in the dead letter. Every packet ends in `finish`.

use super::fleet::{Analyzer, LaneReceiver};
use super::job::{Job, LaneItem};
use super::retry::{Packets, RetryAction};
use super::Dispatcher;
use crate::model::LogPacket;
use crate::storage::wal::Record;
use crate::transport::FailureClass;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a failed dead-letter write waits before it is tried again.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// Packets waiting in the retry timer to go again to the analyzer whose
/// delivery of them failed.
pub(super) struct PendingRetry {
    analyzer: String,
    jobs: Vec<Job>,
}

impl Packets for PendingRetry {
    fn packets(&self) -> usize {
        self.jobs.len()
    }
}

/// A batch being filled: its packets and their JSON bytes, against the
/// limits of one delivery.
struct BatchUnderWay {
    jobs: Vec<Job>,
    bytes: usize,
    max_packets: usize,
    max_bytes: usize,
}

impl BatchUnderWay {
    /// Full: no packet more goes in (the last one in may have passed the
    /// byte limit; a single packet larger than it still goes alone).
    fn is_full(&self) -> bool {
        self.is_full_with(0)
    }

    /// Takes `jobs` in order while the batch is not full; answers those
    /// left over.
    fn take(&mut self, mut jobs: Vec<Job>) -> Option<Vec<Job>> {
        let mut fit = 0;
        while fit < jobs.len() && !self.is_full_with(fit) {
            self.bytes += jobs[fit].packet.json_bytes();
            fit += 1;
        }
        let rest = jobs.split_off(fit);
        if self.jobs.is_empty() {
            self.jobs = jobs;
        } else {
            self.jobs.append(&mut jobs);
        }
        (!rest.is_empty()).then_some(rest)
    }

    /// [`BatchUnderWay::is_full`] once `more` packets (already counted in
    /// `bytes`) join it.
    fn is_full_with(&self, more: usize) -> bool {
        self.jobs.len() + more >= self.max_packets || self.bytes >= self.max_bytes
    }
}

impl Dispatcher {
    /// A retry whose wait is over: sent back if the budget allows it,
    /// otherwise it waits one more backoff step (its retry counts unchanged).
    pub(super) fn retry_due(&self, mut retry: PendingRetry) {
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
        self.route(jobs);
    }

    pub(super) async fn drain_lane(self: Arc<Self>, analyzer: Arc<Analyzer>, mut lane: LaneReceiver) {
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
                self.route(item.into_jobs());
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
                self.route(item.into_jobs());
                continue;
            }
            let batch = match item {
                LaneItem::Routed(first) => {
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
    /// to the batch limits and the analyzer's own cap, waiting at most
    /// `batch.linger` for more. What does not fit is answered, to start
    /// the next batch; so is a retry met on the way, which ends the batch
    /// (it goes as it is).
    async fn fill_batch(
        &self,
        analyzer: &Analyzer,
        lane: &mut LaneReceiver,
        first: Vec<Job>,
    ) -> (Vec<Job>, Option<LaneItem>) {
        let limits = &self.settings.batch;
        let mut batch = BatchUnderWay {
            jobs: Vec::new(),
            bytes: 0,
            max_packets: analyzer.max_batch_packets(limits.max_packets).max(1),
            max_bytes: limits.max_bytes,
        };
        if let Some(rest) = batch.take(first) {
            return (batch.jobs, Some(LaneItem::Routed(rest)));
        }
        if batch.is_full() {
            return (batch.jobs, None);
        }
        let deadline = tokio::time::Instant::now() + limits.linger;
        if lane.is_empty() {
            // Admissions finish in groups (one per log commit): let the rest
            // of the group route their packets before this batch closes.
            tokio::task::yield_now().await;
        }
        while !batch.is_full() {
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
            let jobs = match item {
                LaneItem::Routed(jobs) => jobs,
                retry @ LaneItem::Retry(_) => return (batch.jobs, Some(retry)),
            };
            if !analyzer.in_rotation() {
                self.route(jobs);
                continue;
            }
            if let Some(rest) = batch.take(jobs) {
                return (batch.jobs, Some(LaneItem::Routed(rest)));
            }
        }
        (batch.jobs, None)
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
            if well {
                tracing::info!(analyzer = %analyzer.id, "passive analyzer back in rotation: a delivery succeeded");
            } else if let Some((_, failure)) = failed.last() {
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
    fn retry_later(&self, analyzer: &Analyzer, mut retrying: Vec<(Job, u32)>, after: Duration) {
        {
            // A packet no longer in the registry was handed to a peer
            // meanwhile: it is not this replica's to retry.
            let mut registry = self.lock_registry();
            retrying.retain(|(job, retry)| match registry.get_mut(&job.seq) {
                Some(entry) => {
                    entry.retries = *retry;
                    true
                }
                None => false,
            });
        }
        if retrying.is_empty() {
            return;
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
    async fn bury(&self, mut dead: Vec<(Job, String)>) {
        // A packet handed to a peer meanwhile is the peer's now.
        {
            let registry = self.lock_registry();
            dead.retain(|(job, _)| registry.contains_key(&job.seq));
        }
        if dead.is_empty() {
            return;
        }
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

    /// Ends packets for good (delivered or dead-lettered): out of the
    /// registry first, then the End records (see `storage::wal`).
    fn finish(&self, seqs: &[u64]) {
        self.take_out(seqs);
        let ends: Vec<Record> = seqs.iter().map(|&seq| Record::End { seq }).collect();
        self.wal.append(&ends);
    }

    /// Takes packets out of the registry and gives their room back. A seq
    /// already out (handed to a peer while its delivery ran) counts nothing.
    pub(super) fn take_out(&self, seqs: &[u64]) {
        let (mut packets, mut bytes) = (0, 0);
        {
            let mut registry = self.lock_registry();
            for seq in seqs {
                if let Some(entry) = registry.remove(seq) {
                    packets += 1;
                    bytes += entry.bytes;
                }
            }
        }
        if packets == 0 {
            return;
        }
        self.in_flight_bytes.fetch_sub(bytes, Ordering::AcqRel);
        if self.in_flight.fetch_sub(packets, Ordering::AcqRel) == packets {
            self.drained.notify_waiters();
        }
        self.room_freed.notify_waiters();
    }
}
