//! The command line of a load run: [`LoadgenArgs`], its defaults and the
//! checks of its values.

use http::Uri;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_TARGET: &str = "http://127.0.0.1:8080/api/v1/logs";

pub(crate) const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Send batches of log packets to the ingestion endpoint and report throughput and latency.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// URL to POST log batches to (plain http://).
    #[arg(long, value_name = "URL", default_value = DEFAULT_TARGET)]
    pub target: Uri,

    /// Number of connections, one worker each. Closed loop: each worker sends a request,
    /// waits for the answer and sends the next. Open loop: the most requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,

    /// Open loop: send R requests per second on a fixed schedule, whatever the answers.
    /// Requests that would exceed --concurrency outstanding are counted as dropped_by_client.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// How long to send for, e.g. 10s or 1m30s. Default 10s, or no limit when --packets is
    /// given; with both, the run stops at whichever comes first.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,

    /// Stop after sending N packets in total.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub packets: Option<u64>,

    /// Packets in each request body.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub packets_per_request: u32,

    /// Log messages in each packet.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub messages_per_packet: u32,

    /// Length in bytes of each message's "message" text.
    #[arg(long, value_name = "BYTES", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub message_bytes: u32,

    /// Longest wait for one request (connecting, sending, reading the whole answer); a
    /// request that takes longer counts as an "error" and its connection is reopened.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Write one JSON line {"id": ..., "status": ...} to FILE for every packet the server
    /// lists in processed_packets.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Show no progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    pub quiet: bool,

    /// Compress request bodies with gzip (Content-Encoding: gzip). Costs client CPU.
    #[arg(long)]
    pub gzip: bool,

    /// Send application/x-ndjson bodies (one packet per line) instead of a JSON array.
    #[arg(long)]
    pub ndjson: bool,

    /// Send OTLP/HTTP logs (application/x-protobuf ExportLogsServiceRequests, for a /v1/logs
    /// target): each packet is one resource of --messages-per-packet records; 200 is success.
    #[arg(long, conflicts_with_all = ["ndjson", "record"])]
    pub otlp: bool,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "expected a positive number of requests per second, got {text:?}"
        )),
    }
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("the duration must be longer than zero".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    /// `LoadgenArgs` from these flags, for the tests of every module.
    pub(crate) fn parse(flags: &[&str]) -> LoadgenArgs {
        let argv = std::iter::once("loadgen").chain(flags.iter().copied());
        Cli::try_parse_from(argv).expect("flags are valid").args
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let args = parse(&[]);
        assert_eq!(args.target.to_string(), DEFAULT_TARGET);
        assert_eq!(args.concurrency, 64);
        assert_eq!(args.rate, None);
        assert_eq!(args.duration, None);
        assert_eq!(args.packets, None);
        assert_eq!(args.packets_per_request, 1);
        assert_eq!(args.messages_per_packet, 3);
        assert_eq!(args.message_bytes, 200);
        assert_eq!(args.timeout, Duration::from_secs(5));
        assert!(args.record.is_none());
        assert!(!args.json && !args.quiet && !args.gzip && !args.ndjson && !args.otlp);
    }

    #[test]
    fn flags_parse_into_their_types() {
        let args = parse(&[
            "--rate",
            "2500.5",
            "--duration",
            "1m30s",
            "--packets",
            "7",
            "--record",
            "out.jsonl",
        ]);
        assert_eq!(args.rate, Some(2500.5));
        assert_eq!(args.duration, Some(Duration::from_secs(90)));
        assert_eq!(args.packets, Some(7));
        assert_eq!(args.record, Some(PathBuf::from("out.jsonl")));
    }

    #[test]
    fn nonsensical_values_are_rejected() {
        for flags in [
            &["--concurrency", "0"][..],
            &["--rate", "0"],
            &["--rate", "-5"],
            &["--duration", "0s"],
            &["--packets", "0"],
            &["--packets-per-request", "0"],
            &["--otlp", "--ndjson"],
            &["--otlp", "--record", "ids.jsonl"],
        ] {
            let argv = std::iter::once("loadgen").chain(flags.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{flags:?} should be rejected");
        }
    }
}
