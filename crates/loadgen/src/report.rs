//! The outcome of a run: [`Report`], printed as a table or as JSON.

use crate::args::LoadgenArgs;
use crate::stats::{LatencyMillis, LoadStats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Outcome of a load run.
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub target: String,
    pub model: LoadModel,
    pub concurrency: u32,
    /// Requested rate of the open loop, in requests per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    pub duration_secs: f64,
    pub requests: u64,
    pub requests_per_sec: f64,
    pub packets_sent: u64,
    pub packets_accepted: u64,
    /// Accepted packets per second.
    pub packets_per_sec: f64,
    /// Accepted messages per second.
    pub messages_per_sec: f64,
    /// Answers per HTTP status code, plus "error" for requests without an answer.
    pub status_codes: BTreeMap<String, u64>,
    pub latency_ms: LatencyMillis,
    pub dropped_by_client: u64,
    pub connection_errors: u64,
    pub timeouts: u64,
    pub invalid_response_bodies: u64,
    /// The first connection or protocol error met, to tell why requests failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Whether requests wait for answers (closed) or follow a fixed schedule (open).
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoadModel {
    Closed,
    Open,
}

pub(crate) fn print_report(report: &Report, as_json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if as_json {
        serde_json::to_writer_pretty(&mut stdout, report)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{report}")?;
    }
    stdout.flush()?;
    Ok(())
}

pub(crate) fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl Report {
    pub(crate) fn new(args: &LoadgenArgs, totals: &LoadStats, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        let messages_accepted = totals.packets_accepted * u64::from(args.messages_per_packet);
        Self {
            target: args.target.to_string(),
            model: if args.rate.is_some() {
                LoadModel::Open
            } else {
                LoadModel::Closed
            },
            concurrency: args.concurrency,
            target_rate: args.rate,
            duration_secs: seconds,
            requests: totals.requests,
            requests_per_sec: per_second(totals.requests, seconds),
            packets_sent: totals.packets_sent,
            packets_accepted: totals.packets_accepted,
            packets_per_sec: per_second(totals.packets_accepted, seconds),
            messages_per_sec: per_second(messages_accepted, seconds),
            status_codes: totals.status_code_map(),
            latency_ms: totals.latency_millis(),
            dropped_by_client: totals.dropped_by_client,
            connection_errors: totals.connection_errors,
            timeouts: totals.timeouts,
            invalid_response_bodies: totals.invalid_response_bodies,
            first_error: totals.first_error.clone(),
        }
    }
}

impl fmt::Display for LoadModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed loop",
            Self::Open => "open loop",
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = self
            .target_rate
            .map(|rate| format!(" at {rate} req/s"))
            .unwrap_or_default();
        writeln!(
            f,
            "loadgen: {}{rate}, {} connections, {}",
            self.model, self.concurrency, self.target
        )?;
        let statuses: Vec<String> = self
            .status_codes
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        let latency = self.latency_ms;
        let rows = [
            ("duration", format!("{:.2} s", self.duration_secs)),
            (
                "requests",
                format!("{} ({:.1}/s)", self.requests, self.requests_per_sec),
            ),
            ("packets sent", self.packets_sent.to_string()),
            (
                "packets accepted",
                format!("{} ({:.1}/s)", self.packets_accepted, self.packets_per_sec),
            ),
            ("messages accepted/s", format!("{:.1}", self.messages_per_sec)),
            ("status codes", statuses.join(", ")),
            (
                "latency ms",
                format!(
                    "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
                    latency.p50, latency.p90, latency.p99, latency.max
                ),
            ),
            ("dropped by client", self.dropped_by_client.to_string()),
            ("connection errors", self.connection_errors.to_string()),
            ("timeouts", self.timeouts.to_string()),
            ("invalid bodies", self.invalid_response_bodies.to_string()),
        ];
        for (name, value) in rows {
            writeln!(f, "  {name:<20} {value}")?;
        }
        if let Some(error) = &self.first_error {
            writeln!(f, "  {:<20} {error}", "first error")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::tests::parse;

    #[test]
    fn report_derives_rates_and_percentiles() {
        let args = parse(&["--rate", "100", "--messages-per-packet", "2"]);
        let mut totals = LoadStats::new();
        totals.requests = 40;
        totals.packets_sent = 400;
        totals.packets_accepted = 300;
        totals.unanswered = 2;
        totals.dropped_by_client = 5;
        for latency_ms in 1..=100 {
            totals.record_latency(Duration::from_millis(latency_ms));
        }
        totals.count_status(202);
        totals.count_status(503);
        let report = Report::new(&args, &totals, Duration::from_secs(4));
        assert_eq!(report.model, LoadModel::Open);
        assert_eq!(report.requests_per_sec, 10.0);
        assert_eq!(report.packets_per_sec, 75.0);
        assert_eq!(report.messages_per_sec, 150.0);
        assert_eq!(report.dropped_by_client, 5);
        let expected_codes =
            [("202", 1), ("503", 1), ("error", 2)].map(|(code, count)| (code.to_owned(), count));
        assert_eq!(report.status_codes, BTreeMap::from(expected_codes));
        let latency = report.latency_ms;
        assert!((latency.p50 - 50.0).abs() < 0.1, "p50 {}", latency.p50);
        assert!((latency.p90 - 90.0).abs() < 0.1, "p90 {}", latency.p90);
        assert!((latency.p99 - 99.0).abs() < 0.1, "p99 {}", latency.p99);
        assert!((latency.max - 100.0).abs() < 0.1, "max {}", latency.max);
        let json = serde_json::to_value(&report).expect("the report serializes");
        assert_eq!(json["latency_ms"]["p50"], latency.p50);
        assert_eq!(json["status_codes"]["error"], 2);
    }

    #[test]
    fn zero_elapsed_time_gives_zero_rates() {
        let report = Report::new(&parse(&[]), &LoadStats::new(), Duration::ZERO);
        assert_eq!(report.requests_per_sec, 0.0);
        assert_eq!(report.latency_ms.max, 0.0);
    }

    #[test]
    fn table_lists_every_figure() {
        let report = Report::new(&parse(&[]), &LoadStats::new(), Duration::from_secs(1));
        let table = report.to_string();
        for label in [
            "duration",
            "requests",
            "packets accepted",
            "latency ms",
            "dropped by client",
        ] {
            assert!(table.contains(label), "missing {label} in\n{table}");
        }
    }
}
