//! Recent traffic: what the last minute looked like, for the stats API, the
//! status page and each replica's input to the Analyzer status's
//! `trafficShare`.
//!
//! A sampler task reads the lifetime counters once a second into a ring of
//! [`Sample`]s (five minutes' worth). Rates and shares are differences
//! between two samples, so they are exact over the window and cost nothing
//! on the hot path.

use crate::dispatch::Dispatcher;
use crate::sync::LockUnpoisoned;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far back the ring reaches.
const HISTORY: Duration = Duration::from_secs(300);
/// The window of "recent" shares.
pub(crate) const SHARE_WINDOW: Duration = Duration::from_secs(60);
/// Time between samples.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The lifetime counters at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    received: u64,
    messages: u64,
    routed: BTreeMap<String, u64>,
}

/// One point of the rate history.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RatePoint {
    /// Seconds before now (0 is the newest).
    pub seconds_ago: f64,
    pub packets_per_sec: f64,
    pub messages_per_sec: f64,
}

#[derive(Debug, Default)]
pub struct Traffic {
    samples: Mutex<VecDeque<Sample>>,
}

impl Traffic {
    pub fn new() -> Arc<Traffic> {
        Arc::new(Traffic::default())
    }

    /// Samples the dispatcher's counters every second, until dropped.
    pub async fn run_sampler(self: Arc<Self>, dispatcher: Arc<Dispatcher>) {
        let mut ticker = tokio::time::interval(SAMPLE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.record(&dispatcher, Instant::now());
        }
    }

    fn record(&self, dispatcher: &Dispatcher, at: Instant) {
        let metrics = dispatcher.metrics();
        let sample = Sample {
            at,
            received: metrics.packets_received.get(),
            messages: metrics.messages_received.get(),
            routed: dispatcher
                .fleet()
                .all()
                .iter()
                .map(|a| (a.id.clone(), a.metrics.routed.get()))
                .collect(),
        };
        let mut samples = self.lock();
        samples.push_back(sample);
        while samples.front().is_some_and(|s| at.duration_since(s.at) > HISTORY) {
            samples.pop_front();
        }
    }

    /// Each analyzer's percent of the packets routed over the last minute
    /// (or since the first sample, when younger); all 0 until traffic flows.
    pub fn recent_shares(&self) -> BTreeMap<String, f64> {
        let routed = self.recent_routed();
        let total: u64 = routed.values().sum();
        routed
            .into_iter()
            .map(|(id, count)| (id, percent(count, total)))
            .collect()
    }

    /// The packets routed to each analyzer over the last minute (or since
    /// the first sample, when younger).
    pub fn recent_routed(&self) -> BTreeMap<String, u64> {
        let samples = self.lock();
        let (Some(newest), Some(oldest)) = (samples.back(), window_start(&samples, SHARE_WINDOW)) else {
            return BTreeMap::new();
        };
        // An analyzer deleted and created again within the window counts
        // from 0 again: what it has now was all routed since.
        newest
            .routed
            .iter()
            .map(|(id, &now)| {
                let then = oldest.routed.get(id).copied().unwrap_or(0);
                (id.clone(), if now >= then { now - then } else { now })
            })
            .collect()
    }

    /// Packets and messages per second, one point per sample, newest last.
    pub fn history(&self) -> Vec<RatePoint> {
        let samples = self.lock();
        let Some(newest) = samples.back() else {
            return Vec::new();
        };
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(before, after)| {
                let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
                RatePoint {
                    seconds_ago: newest.at.duration_since(after.at).as_secs_f64(),
                    packets_per_sec: (after.received - before.received) as f64 / seconds,
                    messages_per_sec: (after.messages - before.messages) as f64 / seconds,
                }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.samples.lock_unpoisoned()
    }
}

/// `part` as a percent of `total`, to two decimals (0 when `total` is 0).
pub(crate) fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (part as f64 * 10_000.0 / total as f64).round() / 100.0
    }
}

/// The oldest sample within `window` of the newest.
fn window_start(samples: &VecDeque<Sample>, window: Duration) -> Option<&Sample> {
    let newest = samples.back()?;
    samples.iter().find(|s| newest.at.duration_since(s.at) <= window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, received: u64, routed: &[(&str, u64)]) -> Sample {
        Sample {
            at,
            received,
            messages: received * 3,
            routed: routed.iter().map(|(id, n)| (id.to_string(), *n)).collect(),
        }
    }

    #[test]
    fn shares_and_rates_are_differences_over_the_window() {
        let traffic = Traffic::default();
        let start = Instant::now();
        {
            let mut samples = traffic.lock();
            // Long ago: a burst all to "a", outside the 60 s window.
            samples.push_back(sample(start, 0, &[("a", 0), ("b", 0)]));
            samples.push_back(sample(
                start + Duration::from_secs(10),
                1000,
                &[("a", 1000), ("b", 0)],
            ));
            // The last minute: 300 to "a", 100 to "b".
            samples.push_back(sample(
                start + Duration::from_secs(70),
                1400,
                &[("a", 1300), ("b", 100)],
            ));
        }
        let shares = traffic.recent_shares();
        assert_eq!(shares["a"], 75.0);
        assert_eq!(shares["b"], 25.0);
        let history = traffic.history();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].packets_per_sec, 100.0);
        assert_eq!(history[1].packets_per_sec, 400.0 / 60.0);
        assert_eq!(history[1].messages_per_sec, 1200.0 / 60.0);
        assert_eq!(history[1].seconds_ago, 0.0);
    }

    #[test]
    fn an_analyzer_created_again_within_the_window_counts_from_zero() {
        let traffic = Traffic::default();
        let start = Instant::now();
        {
            let mut samples = traffic.lock();
            samples.push_back(sample(start, 0, &[("a", 500), ("b", 500)]));
            // "a" deleted and created again: its counter starts over.
            samples.push_back(sample(
                start + Duration::from_secs(20),
                600,
                &[("a", 100), ("b", 800)],
            ));
        }
        let shares = traffic.recent_shares();
        assert_eq!(shares["a"], 25.0);
        assert_eq!(shares["b"], 75.0);
    }

    #[test]
    fn nothing_is_claimed_before_two_samples() {
        let traffic = Traffic::default();
        assert!(traffic.recent_shares().values().all(|s| *s == 0.0));
        assert!(traffic.history().is_empty());
    }
}
