//! Pacing: which packets each request carries ([`PacketBudget`]) and, in
//! the open loop, when each request is due ([`Schedule`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// An open-loop slot still untaken this long after it came due is dropped.
const DROP_GRACE: Duration = Duration::from_millis(1);

/// How many packets the run may send, split into requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketBudget {
    pub(crate) total_packets: Option<u64>,
    pub(crate) packets_per_request: u64,
}

impl PacketBudget {
    /// The first packet number and packet count of request `index`, if it is within budget.
    pub(crate) fn packets_of_request(&self, index: u64) -> Option<(u64, u64)> {
        let first_packet = index.checked_mul(self.packets_per_request)?;
        match self.total_packets {
            None => Some((first_packet, self.packets_per_request)),
            Some(total) if first_packet < total => {
                Some((first_packet, self.packets_per_request.min(total - first_packet)))
            }
            Some(_) => None,
        }
    }

    pub(crate) fn total_requests(&self) -> Option<u64> {
        self.total_packets
            .map(|total| total.div_ceil(self.packets_per_request))
    }
}

/// Open-loop timetable: slot `n` is due at `start + n / rate`.
#[derive(Debug)]
pub(crate) struct Schedule {
    start: Instant,
    rate: f64,
    /// Slots at or past this one are beyond `--duration`.
    end_slot: Option<u64>,
    next_slot: AtomicU64,
}

impl Schedule {
    pub(crate) fn new(start: Instant, rate: f64, duration: Option<Duration>) -> Self {
        let end_slot = duration.map(|duration| (duration.as_secs_f64() * rate).ceil() as u64);
        Self {
            start,
            rate,
            end_slot,
            next_slot: AtomicU64::new(0),
        }
    }

    pub(crate) fn due(&self, slot: u64) -> Instant {
        self.start + Duration::from_secs_f64(slot as f64 / self.rate)
    }

    fn first_slot_due_at_or_after(&self, instant: Instant) -> u64 {
        (instant.saturating_duration_since(self.start).as_secs_f64() * self.rate).ceil() as u64
    }

    /// Takes the next slot a worker that is free at `now` can still serve, adding the
    /// slots skipped for being more than [`DROP_GRACE`] overdue to `dropped`.
    /// Returns `None` once the schedule is over.
    pub(crate) fn claim(&self, now: Instant, dropped: &mut u64) -> Option<u64> {
        let oldest_acceptable_due = now.checked_sub(DROP_GRACE).unwrap_or(self.start);
        let first_on_time = self.first_slot_due_at_or_after(oldest_acceptable_due);
        let mut next = self.next_slot.load(Ordering::Relaxed);
        loop {
            let slot = next.max(first_on_time);
            match self
                .next_slot
                .compare_exchange_weak(next, slot + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    let skipped_until = self.end_slot.map_or(slot, |end| slot.min(end));
                    *dropped += skipped_until.saturating_sub(next);
                    return self.end_slot.is_none_or(|end| slot < end).then_some(slot);
                }
                Err(current) => next = current,
            }
        }
    }
}

/// One request to send: packets `first_packet..first_packet + packets`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job {
    pub(crate) first_packet: u64,
    pub(crate) packets: u64,
    /// Open loop: when the request came due, if that was before a worker was free.
    pub(crate) overdue_since: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_splits_packets_into_requests() {
        let budget = PacketBudget {
            total_packets: Some(25),
            packets_per_request: 10,
        };
        assert_eq!(budget.packets_of_request(0), Some((0, 10)));
        assert_eq!(budget.packets_of_request(2), Some((20, 5)));
        assert_eq!(budget.packets_of_request(3), None);
        assert_eq!(budget.total_requests(), Some(3));
        let unlimited = PacketBudget {
            total_packets: None,
            packets_per_request: 2,
        };
        assert_eq!(unlimited.packets_of_request(1_000), Some((2_000, 2)));
    }

    #[test]
    fn schedule_hands_out_slots_in_order() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0, Some(Duration::from_millis(3)));
        let mut dropped = 0;
        let slots: Vec<_> = (0..4).map(|_| schedule.claim(start, &mut dropped)).collect();
        assert_eq!(slots, [Some(0), Some(1), Some(2), None]);
        assert_eq!(dropped, 0);
        assert_eq!(schedule.due(2), start + Duration::from_millis(2));
    }

    #[test]
    fn schedule_drops_slots_no_worker_was_free_for() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0, Some(Duration::from_millis(20)));
        let mut dropped = 0;
        // Free only 10 ms in: slots 0..=8 are more than 1 ms overdue, slot 9 is within grace.
        assert_eq!(
            schedule.claim(start + Duration::from_millis(10), &mut dropped),
            Some(9)
        );
        assert_eq!(dropped, 9);
        // Past the end: the rest of the schedule is dropped, and only once.
        assert_eq!(
            schedule.claim(start + Duration::from_millis(50), &mut dropped),
            None
        );
        assert_eq!(dropped, 9 + 10);
        assert_eq!(
            schedule.claim(start + Duration::from_millis(60), &mut dropped),
            None
        );
        assert_eq!(dropped, 19);
    }
}
