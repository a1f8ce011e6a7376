//! Admission: packets enter the in-flight registry within the limits
//! (`queue.max_in_flight` packets and `queue.max_in_flight_bytes`), get
//! their seqs, and are routed once their Accept records are durable in the
//! write-ahead log; a restart's recovered packets come back in here too.

use super::job::Job;
use super::{Dispatcher, InFlight};
use crate::model::{EncodedPacket, LargerThanQueue, QueueBounds};
use crate::storage::dead_letter::Room;
use crate::storage::wal::{DurableAppend, Record, WalError};
use crate::storage::Unfinished;
use crate::sync::LockUnpoisoned;
use std::collections::{hash_map, BTreeMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::OwnedRwLockReadGuard;
use tokio::time::Instant;

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
    /// More than the queue holds even when empty: it can never be taken.
    #[error("the request is larger than the whole queue: {0}; send it in smaller requests")]
    LargerThanQueue(#[from] LargerThanQueue),
}

impl AdmitError {
    /// The limit of `max` packets or bytes in flight is reached.
    fn full(max: usize, unit: &str) -> AdmitError {
        AdmitError::Full {
            capacity: format!("{max} {unit} in flight"),
        }
    }
}

/// The packets an admission took, in the order they were given: the
/// answer lists their ids (serialized as an array of them) without a copy
/// of each.
#[derive(Debug, Default)]
pub struct Admitted(Vec<Arc<EncodedPacket>>);

impl Admitted {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|packet| packet.id())
    }
}

impl serde::Serialize for Admitted {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.ids())
    }
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
    async fn wait(mut self) -> Result<Admitted, AdmitError> {
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

impl Dispatcher {
    /// Takes packets in (with retry count 0), all or none, durably: when
    /// this answers them (in order), every packet is in the
    /// write-ahead log. While the queue is full it waits for room, up to
    /// `queue.full_wait`.
    ///
    /// Dropping the future (the client went away) once the records are
    /// handed to the log does not stop the admission: they may reach the
    /// disk, so a task waits for them and routes the packets (or takes them
    /// back out if the write failed), as if the answer had been awaited.
    pub async fn admit(self: &Arc<Self>, packets: Vec<EncodedPacket>) -> Result<Admitted, AdmitError> {
        self.admit_until(packets, self.room_deadline()).await
    }

    /// [`Dispatcher::admit`], waiting for room no later than `deadline`
    /// (the one [`Dispatcher::wait_for_room`] answered, so that a request
    /// waits `queue.full_wait` at most in all).
    pub async fn admit_until(
        self: &Arc<Self>,
        packets: Vec<EncodedPacket>,
        deadline: Instant,
    ) -> Result<Admitted, AdmitError> {
        let packets = packets.into_iter().map(|packet| (packet, 0)).collect();
        self.admit_with_retries(packets, deadline).await
    }

    /// [`Dispatcher::admit_until`] of packets that have spent retries
    /// already (handed over by a peer).
    pub(crate) async fn admit_with_retries(
        self: &Arc<Self>,
        packets: Vec<(EncodedPacket, u32)>,
        deadline: Instant,
    ) -> Result<Admitted, AdmitError> {
        self.check_open()?;
        let sizes = AdmittedSizes {
            packets: packets.len(),
            bytes: packets.iter().map(|(p, _)| p.json_bytes()).sum(),
            messages: packets.iter().map(|(p, _)| p.message_count()).sum(),
        };
        self.queue_bounds().check(sizes.packets, sizes.bytes)?;
        // The admission lock is not held while waiting: a checkpoint must
        // not wait for room.
        let admitting = loop {
            let admitting = Arc::clone(&self.admission).read_owned().await;
            match self.reserve(sizes.packets, sizes.bytes) {
                Ok(()) => break admitting,
                Err(AdmitError::Full { .. }) => {
                    drop(admitting);
                    self.room_until(sizes.packets, sizes.bytes, deadline).await?;
                }
                Err(refused) => return Err(refused),
            }
        };
        // One atomic step for the request's seqs, not one per packet.
        let first_seq = self.next_seq.fetch_add(sizes.packets as u64, Ordering::Relaxed);
        let entered = self.enter(
            (first_seq..)
                .zip(packets)
                .map(|(seq, (packet, retries))| (seq, Arc::new(packet), retries)),
        );
        let records: Vec<Record> = entered
            .iter()
            .map(|job| Record::Accept {
                seq: job.seq,
                packet: job.packet.clone(),
                retries: job.retries,
            })
            .collect();
        let append = match self.wal.send_durable(records) {
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
    ) -> Result<Admitted, AdmitError> {
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
            self.room_freed.notify_waiters();
            *self.storage_error.lock_unpoisoned() = Some(e.to_string());
            self.storage_failing.store(true, Ordering::Release);
            return Err(AdmitError::StorageUnavailable(e.to_string()));
        }
        if self.storage_failing.swap(false, Ordering::AcqRel) {
            self.storage_error.lock_unpoisoned().take();
            tracing::info!("write-ahead log writes work again");
        }
        self.metrics.packets_received.inc_by(sizes.packets as u64);
        self.metrics.messages_received.inc_by(sizes.messages as u64);
        let admitted = Admitted(entered.iter().map(|job| Arc::clone(&job.packet)).collect());
        self.route(entered);
        Ok(admitted)
    }

    /// Waits until `packets` packets of about `bytes` bytes would fit, up
    /// to `queue.full_wait`, and answers the deadline it waited against
    /// (for [`Dispatcher::admit_until`]). A cheap look before a request is
    /// validated, so that a request that cannot fit is refused before its
    /// packets are parsed; the admission makes the exact reservation. A
    /// request larger than the whole queue is refused at once, for good
    /// (`LargerThanQueue`); any other fits once enough in flight has
    /// finished, and is refused `Full` if that takes longer than the wait.
    pub async fn wait_for_room(&self, packets: usize, bytes: usize) -> Result<Instant, AdmitError> {
        let deadline = self.room_deadline();
        self.check_open()?;
        self.queue_bounds().check(packets, bytes)?;
        self.room_until(packets, bytes, deadline).await?;
        Ok(deadline)
    }

    /// When a request arriving now stops waiting for room.
    pub(crate) fn room_deadline(&self) -> Instant {
        Instant::now() + self.settings.full_wait
    }

    /// Waits until `packets` packets of `bytes` would fit, or `deadline`
    /// (then `Full`), or the distributor stops accepting.
    async fn room_until(&self, packets: usize, bytes: usize, deadline: Instant) -> Result<(), AdmitError> {
        loop {
            // Registered before looking, so that room freed in between
            // is not missed.
            let freed = self.room_freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            self.check_open()?;
            if self.has_room(packets, bytes).is_ok() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.check_open()?;
                return self.has_room(packets, bytes);
            }
        }
    }

    /// Whether `packets` packets of about `bytes` bytes fit now: a look,
    /// for a caller about to [`Dispatcher::wait_for_room`] that holds less
    /// while it waits.
    pub fn fits_now(&self, packets: usize, bytes: usize) -> bool {
        self.has_room(packets, bytes).is_ok()
    }

    /// Whether `packets` packets of `bytes` fit now; `Full` names the limit.
    fn has_room(&self, packets: usize, bytes: usize) -> Result<(), AdmitError> {
        let room = self.room();
        if packets > room.packets {
            return Err(AdmitError::full(self.settings.max_in_flight, "packets"));
        }
        if bytes > room.bytes {
            return Err(AdmitError::full(self.settings.max_in_flight_bytes, "bytes"));
        }
        Ok(())
    }

    /// Refuses while shutting down or before the restart's recovery is in.
    fn check_open(&self) -> Result<(), AdmitError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(AdmitError::ShuttingDown);
        }
        if !self.resumed.load(Ordering::Acquire) {
            return Err(AdmitError::Recovering);
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
                (now + bytes <= max_bytes).then_some(now + bytes)
            });
        if room.is_err() {
            self.in_flight.fetch_sub(count, Ordering::AcqRel);
            return Err(AdmitError::full(max_bytes, "bytes"));
        }
        Ok(())
    }

    /// How much more may be admitted now.
    pub(super) fn room(&self) -> Room {
        Room {
            packets: self
                .settings
                .max_in_flight
                .saturating_sub(self.in_flight.load(Ordering::Acquire)),
            bytes: self
                .settings
                .max_in_flight_bytes
                .saturating_sub(self.in_flight_bytes.load(Ordering::Acquire)),
        }
    }

    /// The most one request may hold: what the queue holds when empty.
    pub fn queue_bounds(&self) -> QueueBounds {
        QueueBounds {
            max_packets: self.settings.max_in_flight,
            max_bytes: self.settings.max_in_flight_bytes,
        }
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
        let entered = self.enter(recovered.into_iter().map(|(seq, u)| (seq, u.packet, u.retries)));
        self.route(entered);
    }

    /// Puts packets in the registry under their seqs and answers their
    /// jobs, not yet routed.
    ///
    /// A seq names one packet for ever: entering one that is in flight
    /// would overwrite that packet and lose it, so it stops the process's
    /// task here, loudly, rather than go on.
    fn enter(&self, packets: impl Iterator<Item = (u64, Arc<EncodedPacket>, u32)>) -> Vec<Job> {
        let mut registry = self.lock_registry();
        packets
            .map(|(seq, packet, retries)| {
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
                Job::new(seq, packet, retries)
            })
            .collect()
    }
}
