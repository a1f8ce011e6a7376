//! `logs-distributor-loadgen`: an HTTP load generator for the log ingestion endpoint.
//!
//! It POSTs batches of synthetic log packets to `--target` over plain HTTP/1.1
//! keep-alive connections (one connection per worker, `TCP_NODELAY`, reopened
//! after any error) and reports throughput and latency. Its HTTP client is
//! the workspace's own [`http1`]: one write per request and a parsed
//! answer head, so that it takes little of the CPU it shares with the server
//! under test.
//!
//! # Closed loop and open loop
//!
//! * **Closed loop** (default): `--concurrency` workers each send a request, wait
//!   for the whole answer and send the next one. The offered load adapts to the
//!   server: a slow server gets fewer requests.
//! * **Open loop** (`--rate R`): requests are due on a fixed schedule, one every
//!   `1/R` seconds, whatever the server does. A free worker takes the next due
//!   slot, so at most `--concurrency` requests are outstanding. A slot that is
//!   still untaken more than 1 ms after it came due (every worker was busy) is not
//!   sent and counts as `dropped_by_client`. To avoid coordinated omission, the
//!   latency of a request that had to wait for a free worker is measured from the
//!   time it was due, not from the time it went out. A request whose worker was
//!   idle is timed from when it went out, so the 1 ms granularity of the timer
//!   (requests due within 1 ms are sent at once) does not show up as latency.
//!
//! The run stops after `--duration`, or after `--packets` packets have been sent,
//! whichever comes first; without either it lasts 10 s. Requests in flight at the
//! end are awaited and counted, so `duration_secs` can exceed `--duration` slightly.
//!
//! # Report
//!
//! Printed to stdout as a table, or as JSON with `--json`:
//! * `requests`: requests sent, answered or not; `packets_sent` likewise.
//! * `packets_accepted`: the sum of `successful` over the answers (a 202 counts
//!   every packet of its request as accepted; with `--otlp`, a 200 does); `packets_per_sec` and
//!   `messages_per_sec` are accepted packets and messages per second.
//! * `status_codes`: answers per HTTP status, plus `error` for requests that got
//!   no answer (connection failure or `--timeout`).
//! * `latency_ms`: percentiles over the requests that got an answer, from an
//!   HdrHistogram with three significant digits, until the whole answer was read.
//! * `dropped_by_client`: open-loop slots not sent because no worker was free.
//! * `connection_errors`: failed connection attempts and connections that broke
//!   during a request; `timeouts`: requests that exceeded `--timeout`.
//! * `invalid_response_bodies`: 202/207/400 answers whose body was not the
//!   expected JSON summary.
//!
//! The generator does not honour `Retry-After`: a 503 is counted and the worker
//! carries on, since the point is to measure the server under pressure.
//!
//! With `--record FILE`, every packet id the server lists in
//! `processed_packets` is written to FILE as one JSON line,
//! `{"id":"lg-…","status":202}`, for end-to-end delivery checks.
//!
//! # Modules
//!
//! `args` (the command line), `target` (resolving and connecting), `plan`
//! and `schedule` (what each request carries and when it goes), `body` and
//! `gzip` (request bodies; `otlp` for `--otlp`), `worker` (the load threads and their workers),
//! `stats` (counts and latencies), `report` (the outcome), `record`
//! (`--record`) and `progress` (the progress bar).

mod args;
mod body;
mod gzip;
mod otlp;
mod plan;
mod progress;
mod record;
mod report;
mod schedule;
mod stats;
mod target;
mod worker;

pub use args::LoadgenArgs;
pub use report::{LoadModel, Report};
pub use stats::LatencyMillis;

use anyhow::Context;
use plan::Shared;
use progress::{show_progress, Progress};
use record::start_record_writer;
use report::print_report;
use std::sync::Arc;
use target::{open_connections, Target};
use tokio::time::Instant;
use worker::run_workers;

/// Runs the load described by `args`, prints the report to stdout and returns it.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    let target = Target::resolve(&args.target).await?;
    let (record_sink, record_writer) = match &args.record {
        Some(path) => {
            let (sink, writer) = start_record_writer(path).await?;
            (Some(sink), Some(writer))
        }
        None => (None, None),
    };
    let connections = open_connections(target.addr, args.concurrency, args.timeout).await;
    let started = Instant::now();
    let shared = Arc::new(Shared::new(&args, target, started));
    let progress = show_progress(&args).then(|| Progress::start(Arc::clone(&shared), &args));
    let totals = run_workers(&args, &shared, connections, record_sink).await?;
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.finish();
    }
    if let Some(writer) = record_writer {
        writer.await.context("the record writer panicked")??;
    }
    let report = Report::new(&args, &totals, elapsed);
    print_report(&report, args.json)?;
    Ok(report)
}
