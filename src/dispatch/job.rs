//! The item every part of delivery passes around: one packet on its way,
//! and what an analyzer's lane carries. A leaf: it knows packets, nothing
//! of the dispatcher, the fleet or the transports that use it.

use crate::model::EncodedPacket;
use std::sync::Arc;

/// One packet on its way: its place in the registry, the packet, and the
/// retries spent so far.
#[derive(Debug, Clone)]
pub struct Job {
    pub seq: u64,
    pub packet: Arc<EncodedPacket>,
    pub retries: u32,
    /// Whether this attempt holds a place in the retry budget.
    pub(super) holds_budget: bool,
}

impl Job {
    /// A packet entering delivery: no place in the retry budget yet.
    pub fn new(seq: u64, packet: Arc<EncodedPacket>, retries: u32) -> Job {
        Job {
            seq,
            packet,
            retries,
            holds_budget: false,
        }
    }
}

/// What an analyzer's lane carries.
#[derive(Debug)]
pub enum LaneItem {
    /// Packets routed to the analyzer together (a request's share): the
    /// lane batches them with the packets queued behind them, and cuts
    /// them where a batch is full.
    Routed(Vec<Job>),
    /// Packets whose delivery to the analyzer failed together, going again
    /// together: the same packets in the same order (so the same
    /// `Idempotency-Key`).
    Retry(Vec<Job>),
}

impl LaneItem {
    pub fn packets(&self) -> usize {
        match self {
            LaneItem::Routed(jobs) | LaneItem::Retry(jobs) => jobs.len(),
        }
    }

    pub(super) fn into_jobs(self) -> Vec<Job> {
        match self {
            LaneItem::Routed(jobs) | LaneItem::Retry(jobs) => jobs,
        }
    }
}
