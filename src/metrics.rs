//! The Prometheus registry and every metric name, in one place.
//!
//! Counters here are the single source of truth: `/api/v1/stats` reads the
//! same counters that `/metrics` exports, so the two never disagree.
//! Per-analyzer handles ([`AnalyzerMetrics`]) are resolved once, when the
//! analyzer is added, so the hot path never hashes a label.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub(crate) const PREFIX: &str = "logs_distributor";
pub(crate) const ANALYZER_LABEL: &str = "analyzer";

/// Latency buckets in seconds, from 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub packets_received: IntCounter,
    pub messages_received: IntCounter,
    pub packets_rejected: IntCounterVec,
    pub otlp_log_records: IntCounterVec,
    pub packets_routed: IntCounterVec,
    pub messages_routed: IntCounterVec,
    pub packets_delivered: IntCounterVec,
    pub delivery_failures: IntCounterVec,
    pub otlp_rejected_records: IntCounterVec,
    pub packets_retried: IntCounter,
    pub retries_deferred: IntCounter,
    pub packets_dead_lettered: IntCounter,
    pub records_invalid: IntCounterVec,
    pub analyzer_healthy: IntGaugeVec,
    pub analyzer_weight: IntGaugeVec,
    pub queue_depth: IntGaugeVec,
    pub queue_capacity: IntGauge,
    pub in_flight: IntGauge,
    pub checkpoint_failures: IntCounter,
    pub kubernetes_connected: IntGauge,
    pub kubernetes_leader: IntGauge,
    pub ingest_duration: Histogram,
    pub delivery_duration: HistogramVec,
    pub wal_bytes: IntGauge,
    pub wal_fsync_duration: Histogram,
    /// Packets moved between replicas by outcome: sent, adopted, duplicate, kept.
    pub handoff_packets: IntCounterVec,
}

/// The handles of one analyzer's series.
#[derive(Clone, Debug)]
pub struct AnalyzerMetrics {
    pub routed: IntCounter,
    pub messages_routed: IntCounter,
    pub delivered: IntCounter,
    pub errors: IntCounter,
    pub healthy: IntGauge,
    pub weight: IntGauge,
    pub delivery_duration: Histogram,
}

fn name(short: &str) -> String {
    format!("{PREFIX}_{short}")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |short: &str, help: &str| {
            let c = IntCounter::new(name(short), help).expect("metric names are valid constants");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        let counter_vec = |short: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name(short), help), &[label])
                .expect("metric names are valid constants");
            registry
                .register(Box::new(c.clone()))
                .expect("each metric is registered once");
            c
        };
        let gauge_vec = |short: &str, help: &str, label: &str| {
            let g = IntGaugeVec::new(Opts::new(name(short), help), &[label])
                .expect("metric names are valid constants");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric is registered once");
            g
        };
        let gauge = |short: &str, help: &str| {
            let g = IntGauge::new(name(short), help).expect("metric names are valid constants");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric is registered once");
            g
        };
        let ingest_duration = Histogram::with_opts(
            HistogramOpts::new(
                name("ingest_duration_seconds"),
                "Time to answer an ingest request (POST /api/v1/logs, POST /api/v1/records, POST /v1/logs).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("metric names are valid constants");
        registry
            .register(Box::new(ingest_duration.clone()))
            .expect("each metric is registered once");
        let delivery_duration = HistogramVec::new(
            HistogramOpts::new(
                name("delivery_duration_seconds"),
                "Time an analyzer took to take a batch, success or failure.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &[ANALYZER_LABEL],
        )
        .expect("metric names are valid constants");
        registry
            .register(Box::new(delivery_duration.clone()))
            .expect("each metric is registered once");
        let wal_fsync_duration = Histogram::with_opts(
            HistogramOpts::new(
                name("wal_fsync_duration_seconds"),
                "Time one fdatasync of the write-ahead log took.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("metric names are valid constants");
        registry
            .register(Box::new(wal_fsync_duration.clone()))
            .expect("each metric is registered once");

        Metrics {
            packets_received: counter(
                "packets_received_total",
                "Packets accepted, by POST /api/v1/logs or a dead-letter replay, or handed over by a peer replica.",
            ),
            messages_received: counter("messages_received_total", "Messages in the accepted packets."),
            packets_rejected: counter_vec(
                "packets_rejected_total",
                "Packets refused at ingest, by reason (invalid, overloaded, shutting_down, recovering, storage_unavailable, too_large).",
                "reason",
            ),
            otlp_log_records: counter_vec(
                "otlp_log_records_total",
                "OTLP log records of the requests answered 200 at POST /v1/logs, by outcome \
                 (accepted, rejected: left out for a limit, reported in partial_success).",
                "outcome",
            ),
            packets_routed: counter_vec(
                "packets_routed_total",
                "Packets handed to an analyzer (each retry counts again).",
                ANALYZER_LABEL,
            ),
            messages_routed: counter_vec(
                "messages_routed_total",
                "Messages handed to an analyzer.",
                ANALYZER_LABEL,
            ),
            packets_delivered: counter_vec(
                "packets_delivered_total",
                "Packets an analyzer took.",
                ANALYZER_LABEL,
            ),
            delivery_failures: counter_vec(
                "delivery_failures_total",
                "Failed attempts to hand a packet to an analyzer.",
                ANALYZER_LABEL,
            ),
            otlp_rejected_records: counter_vec(
                "otlp_rejected_records_total",
                "Log records an OTLP analyzer (format otlp) rejected in a partial success: the rest of each delivery was taken.",
                ANALYZER_LABEL,
            ),
            packets_retried: counter("packets_retried_total", "Packets scheduled for another attempt."),
            retries_deferred: counter(
                "retries_deferred_total",
                "Retries that waited another backoff step because the retry budget was spent.",
            ),
            packets_dead_lettered: counter(
                "packets_dead_lettered_total",
                "Packets written to failed_packets.json.",
            ),
            records_invalid: counter_vec(
                "records_invalid_total",
                "Records of POST /api/v1/records that could not be mapped, by outcome (dead_lettered, refused).",
                "outcome",
            ),
            analyzer_healthy: gauge_vec(
                "analyzer_healthy",
                "1 when the analyzer is in rotation.",
                ANALYZER_LABEL,
            ),
            analyzer_weight: gauge_vec(
                "analyzer_weight",
                "The analyzer's configured weight.",
                ANALYZER_LABEL,
            ),
            queue_depth: gauge_vec(
                "queue_depth",
                "Packets in flight by stage: queued, delivering, retry_wait, no_analyzer.",
                "stage",
            ),
            queue_capacity: gauge("queue_capacity", "Most packets that may be in flight at once."),
            in_flight: gauge(
                "in_flight_packets",
                "Packets accepted and not yet delivered or dead-lettered.",
            ),
            kubernetes_connected: gauge(
                "kubernetes_connected",
                "1 while the Analyzer watch is connected to the API server (source kubernetes).",
            ),
            kubernetes_leader: gauge(
                "kubernetes_leader",
                "1 while this replica holds the Lease and writes Analyzer status.",
            ),
            checkpoint_failures: counter(
                "checkpoint_failures_total",
                "Checkpoints that could not be written.",
            ),
            wal_bytes: gauge(
                "wal_bytes",
                "Bytes in all write-ahead log segments (read at scrape time).",
            ),
            handoff_packets: counter_vec(
                "handoff_packets_total",
                "Packets moved between replicas, by outcome: sent (a peer made them durable; ended here), \
                 adopted (taken in from a peer or an orphaned volume), duplicate (sent again, not taken twice), \
                 kept (no peer took them before handoff.timeout: still on this volume).",
                "outcome",
            ),
            ingest_duration,
            delivery_duration,
            wal_fsync_duration,
            registry,
        }
    }

    /// Resolves (and so creates) the series of one analyzer.
    pub fn analyzer(&self, id: &str) -> AnalyzerMetrics {
        AnalyzerMetrics {
            routed: self.packets_routed.with_label_values(&[id]),
            messages_routed: self.messages_routed.with_label_values(&[id]),
            delivered: self.packets_delivered.with_label_values(&[id]),
            errors: self.delivery_failures.with_label_values(&[id]),
            healthy: self.analyzer_healthy.with_label_values(&[id]),
            weight: self.analyzer_weight.with_label_values(&[id]),
            delivery_duration: self.delivery_duration.with_label_values(&[id]),
        }
    }

    /// Drops the series of an analyzer that no longer exists.
    pub fn forget_analyzer(&self, id: &str) {
        let _ = self.packets_routed.remove_label_values(&[id]);
        let _ = self.messages_routed.remove_label_values(&[id]);
        let _ = self.packets_delivered.remove_label_values(&[id]);
        let _ = self.delivery_failures.remove_label_values(&[id]);
        let _ = self.otlp_rejected_records.remove_label_values(&[id]);
        let _ = self.analyzer_healthy.remove_label_values(&[id]);
        let _ = self.analyzer_weight.remove_label_values(&[id]);
        let _ = self.delivery_duration.remove_label_values(&[id]);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_follow_prometheus_naming() {
        let m = Metrics::new();
        let a = m.analyzer("analyzer-a1");
        a.routed.inc();
        a.delivered.inc_by(2);
        m.packets_received.inc();
        m.ingest_duration.observe(0.002);
        let text = m.render();
        assert!(text.contains("logs_distributor_packets_routed_total{analyzer=\"analyzer-a1\"} 1"));
        m.otlp_log_records.with_label_values(&["rejected"]).inc_by(3);
        assert!(m
            .render()
            .contains("logs_distributor_otlp_log_records_total{outcome=\"rejected\"} 3"));
        assert!(text.contains("logs_distributor_packets_delivered_total{analyzer=\"analyzer-a1\"} 2"));
        assert!(text.contains("logs_distributor_packets_received_total 1"));
        assert!(text.contains("logs_distributor_ingest_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("logs_distributor_wal_bytes 0"));
        assert!(text.contains("logs_distributor_wal_fsync_duration_seconds_count 0"));
        m.forget_analyzer("analyzer-a1");
        assert!(!m.render().contains("analyzer-a1"));
    }
}
