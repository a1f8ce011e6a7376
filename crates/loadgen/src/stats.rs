//! What the workers count: answers per status, failures, and an
//! HdrHistogram of latencies; one [`LoadStats`] per load thread, merged at
//! the end.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latency percentiles in milliseconds.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct LatencyMillis {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Counters and latencies of one load thread's workers, merged into the totals at the end.
#[derive(Debug)]
pub(crate) struct LoadStats {
    latency_micros: Histogram<u64>,
    status_counts: BTreeMap<u16, u64>,
    pub(crate) unanswered: u64,
    pub(crate) requests: u64,
    pub(crate) packets_sent: u64,
    pub(crate) packets_accepted: u64,
    pub(crate) dropped_by_client: u64,
    pub(crate) connection_errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) invalid_response_bodies: u64,
    pub(crate) first_error: Option<String>,
}

impl LoadStats {
    pub(crate) fn new() -> Self {
        Self {
            latency_micros: Histogram::new(3).expect("3 significant digits is a valid precision"),
            status_counts: BTreeMap::new(),
            unanswered: 0,
            requests: 0,
            packets_sent: 0,
            packets_accepted: 0,
            dropped_by_client: 0,
            connection_errors: 0,
            timeouts: 0,
            invalid_response_bodies: 0,
            first_error: None,
        }
    }

    pub(crate) fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // The histogram grows as needed; only absurd values (beyond i64::MAX / 2) get clamped.
        if self.latency_micros.record(micros).is_err() {
            self.latency_micros.saturating_record(micros);
        }
    }

    pub(crate) fn count_status(&mut self, status: u16) {
        *self.status_counts.entry(status).or_insert(0) += 1;
    }

    pub(crate) fn count_unanswered(&mut self) {
        self.unanswered += 1;
    }

    /// Counts a connection error; `describe` is called only for the first one.
    pub(crate) fn count_connection_error(&mut self, describe: impl FnOnce() -> String) {
        self.connection_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(describe());
        }
    }

    pub(crate) fn merge(&mut self, other: LoadStats) -> anyhow::Result<()> {
        self.latency_micros.add(&other.latency_micros)?;
        for (status, count) in other.status_counts {
            *self.status_counts.entry(status).or_insert(0) += count;
        }
        self.unanswered += other.unanswered;
        self.requests += other.requests;
        self.packets_sent += other.packets_sent;
        self.packets_accepted += other.packets_accepted;
        self.dropped_by_client += other.dropped_by_client;
        self.connection_errors += other.connection_errors;
        self.timeouts += other.timeouts;
        self.invalid_response_bodies += other.invalid_response_bodies;
        self.first_error = self.first_error.take().or(other.first_error);
        Ok(())
    }

    pub(crate) fn status_code_map(&self) -> BTreeMap<String, u64> {
        let mut codes: BTreeMap<String, u64> = self
            .status_counts
            .iter()
            .map(|(status, count)| (status.to_string(), *count))
            .collect();
        if self.unanswered > 0 {
            codes.insert("error".to_owned(), self.unanswered);
        }
        codes
    }

    pub(crate) fn latency_millis(&self) -> LatencyMillis {
        let at = |quantile| micros_to_millis(self.latency_micros.value_at_quantile(quantile));
        LatencyMillis {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: micros_to_millis(self.latency_micros.max()),
        }
    }
}

pub(crate) fn micros_to_millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_latencies() {
        let mut first = LoadStats::new();
        first.requests = 3;
        first.count_status(202);
        first.record_latency(Duration::from_millis(1));
        let mut second = LoadStats::new();
        second.requests = 4;
        second.count_status(202);
        second.record_latency(Duration::from_millis(9));
        second.count_connection_error(|| "refused".to_owned());
        first.merge(second).expect("histograms merge");
        assert_eq!(first.requests, 7);
        assert_eq!(first.status_counts[&202], 2);
        assert_eq!(first.latency_micros.len(), 2);
        assert_eq!(first.first_error.as_deref(), Some("refused"));
    }
}
