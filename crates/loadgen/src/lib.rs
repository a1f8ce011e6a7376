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
//!   every packet of its request as accepted); `packets_per_sec` and
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

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use hdrhistogram::Histogram;
use http::Uri;
use http1::{Answer, Connection};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet, LocalSet};
use tokio::time::{sleep, sleep_until, Instant};

const DEFAULT_TARGET: &str = "http://127.0.0.1:8080/api/v1/logs";
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Granularity of tokio timers: an open-loop slot due sooner than this is sent at once.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);
/// An open-loop slot still untaken this long after it came due is dropped.
const DROP_GRACE: Duration = Duration::from_millis(1);
/// Pause after a failed connection attempt, so a dead target is not hammered in a busy loop.
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(50);
/// A worker hands its recorded ids to the file writer in chunks of about this size.
const RECORD_CHUNK_BYTES: usize = 64 * 1024;
const PROGRESS_REFRESH: Duration = Duration::from_millis(250);
const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];
/// Vocabulary of the synthetic message texts.
const WORDS: &str = "request served upstream cache miss latency user session token refreshed queue \
    depth shard replica timeout retry payload accepted disk usage checkpoint written connection reset \
    handler completed";
/// Gzip member header: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

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

/// Latency percentiles in milliseconds.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct LatencyMillis {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

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

fn show_progress(args: &LoadgenArgs) -> bool {
    !args.quiet && std::io::stderr().is_terminal()
}

/// What one worker starts with: its socket (or why it has none), its body
/// writer and its share of the id recording.
struct Seat {
    socket: anyhow::Result<std::net::TcpStream>,
    body: BodyWriter,
    recorder: Option<RecordBuffer>,
}

/// Runs the workers on one thread per core, each thread with its own
/// single-threaded runtime and its share of the connections (wrk's design):
/// a request's wake-ups stay on its thread. On one shared multi-threaded
/// runtime they crossed threads, and the load generator's rate varied by a
/// third from run to run against the same server.
async fn run_workers(
    args: &LoadgenArgs,
    shared: &Arc<Shared>,
    sockets: Vec<anyhow::Result<std::net::TcpStream>>,
    record_sink: Option<mpsc::Sender<Vec<u8>>>,
) -> anyhow::Result<LoadStats> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let id_prefix = format!("lg-{}-", &run_id[..8]);
    let format = BodyFormat::from_args(args);
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, sockets.len().max(1));
    let mut seats: Vec<Vec<Seat>> = (0..threads).map(|_| Vec::new()).collect();
    for (worker_id, socket) in sockets.into_iter().enumerate() {
        seats[worker_id % threads].push(Seat {
            socket,
            body: BodyWriter::new(&id_prefix, worker_id, args, format),
            recorder: record_sink.clone().map(RecordBuffer::new),
        });
    }
    drop(record_sink);
    let mut running = Vec::new();
    for (n, seats) in seats.into_iter().enumerate() {
        let shared = Arc::clone(shared);
        let thread = std::thread::Builder::new()
            .name(format!("loadgen-{n}"))
            .spawn(move || run_thread(shared, seats))
            .context("cannot start a load thread")?;
        running.push(thread);
    }
    tokio::task::spawn_blocking(move || {
        let mut totals = LoadStats::new();
        for thread in running {
            let stats = thread
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
            totals.merge(stats)?;
        }
        Ok(totals)
    })
    .await?
}

/// One load thread: its workers until the run is over, then their totals.
fn run_thread(shared: Arc<Shared>, seats: Vec<Seat>) -> anyhow::Result<LoadStats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stats = Rc::new(RefCell::new(LoadStats::new()));
    LocalSet::new().block_on(&runtime, async {
        let mut workers = JoinSet::new();
        for seat in seats {
            // Registered with this thread's runtime, which drives it from now on.
            let connection = seat
                .socket
                .and_then(|socket| Ok(Connection::new(TcpStream::from_std(socket)?)));
            let worker = Worker::new(
                Arc::clone(&shared),
                seat.body,
                connection,
                seat.recorder,
                Rc::clone(&stats),
            );
            workers.spawn_local(worker.run());
        }
        while let Some(done) = workers.join_next().await {
            done.context("a load worker panicked")?;
        }
        anyhow::Ok(())
    })?;
    Ok(stats.replace(LoadStats::new()))
}

/// Opens the workers' connections up front, so connecting is not timed as
/// latency. They are handed over as plain sockets: each is registered with
/// the runtime of the thread that drives it.
async fn open_connections(
    addr: SocketAddr,
    count: u32,
    timeout: Duration,
) -> Vec<anyhow::Result<std::net::TcpStream>> {
    let mut opening = JoinSet::new();
    for _ in 0..count {
        opening.spawn(async move {
            let stream = tokio::time::timeout(timeout, connect(addr))
                .await
                .with_context(|| format!("connecting to {addr} took longer than --timeout"))??;
            Ok(stream.into_std()?)
        });
    }
    let mut connections = Vec::new();
    while let Some(opened) = opening.join_next().await {
        connections.push(opened.unwrap_or_else(|panic| Err(anyhow::anyhow!(panic))));
    }
    connections
}

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn print_report(report: &Report, as_json: bool) -> anyhow::Result<()> {
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

/// Where requests go: the resolved socket address plus what goes in each request line.
struct Target {
    addr: SocketAddr,
    /// The `Host` header: the URL's authority.
    host: String,
    path: Uri,
}

impl Target {
    async fn resolve(url: &Uri) -> anyhow::Result<Self> {
        if url.scheme_str() != Some("http") {
            bail!("--target must be a plain http:// URL, got {url}");
        }
        let authority = url.authority().context("--target has no host")?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        let path = url.path_and_query().map_or("/", |path| path.as_str());
        Ok(Self {
            addr,
            host: authority.as_str().to_owned(),
            path: path.parse()?,
        })
    }
}

/// State all workers share: what to send and how the run is paced and bounded.
struct Shared {
    target: Target,
    /// Request line and headers but `Content-Length`, the same for every request.
    request_head: Vec<u8>,
    timeout: Duration,
    budget: PacketBudget,
    next_request: AtomicU64,
    /// Closed loop: no request starts after this instant.
    deadline: Option<Instant>,
    /// Open loop: when requests are due.
    schedule: Option<Schedule>,
}

impl Shared {
    fn new(args: &LoadgenArgs, target: Target, started: Instant) -> Self {
        let duration = match (args.duration, args.packets) {
            (None, None) => Some(DEFAULT_DURATION),
            (duration, _) => duration,
        };
        let request_head = request_head(&target, args);
        Self {
            target,
            request_head,
            timeout: args.timeout,
            budget: PacketBudget {
                total_packets: args.packets,
                packets_per_request: u64::from(args.packets_per_request),
            },
            next_request: AtomicU64::new(0),
            deadline: duration.map(|duration| started + duration),
            schedule: args.rate.map(|rate| Schedule::new(started, rate, duration)),
        }
    }

    /// Waits until the next request should go out, or returns `None` when the run is over.
    async fn next_job(&self, stats: &RefCell<LoadStats>) -> Option<Job> {
        match &self.schedule {
            None => self.next_closed_loop_job(),
            Some(schedule) => self.next_open_loop_job(schedule, stats).await,
        }
    }

    fn next_closed_loop_job(&self) -> Option<Job> {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        let (first_packet, packets) = self.claim_request()?;
        Some(Job {
            first_packet,
            packets,
            overdue_since: None,
        })
    }

    async fn next_open_loop_job(&self, schedule: &Schedule, stats: &RefCell<LoadStats>) -> Option<Job> {
        let claimed_at = Instant::now();
        let slot = schedule.claim(claimed_at, &mut stats.borrow_mut().dropped_by_client)?;
        let (first_packet, packets) = self.claim_request()?;
        let due = schedule.due(slot);
        if due > claimed_at + TIMER_RESOLUTION {
            sleep_until(due).await;
        }
        // A slot that came due while every worker was busy counts its wait as latency.
        let overdue_since = (due <= claimed_at).then_some(due);
        Some(Job {
            first_packet,
            packets,
            overdue_since,
        })
    }

    fn claim_request(&self) -> Option<(u64, u64)> {
        let index = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.budget.packets_of_request(index)
    }

    /// Requests handed out so far, for the progress bar.
    fn requests_started(&self) -> u64 {
        let claimed = self.next_request.load(Ordering::Relaxed);
        self.budget
            .total_requests()
            .map_or(claimed, |total| claimed.min(total))
    }
}

/// `POST <path> HTTP/1.1` and the headers every request carries.
fn request_head(target: &Target, args: &LoadgenArgs) -> Vec<u8> {
    let content_type = BodyFormat::from_args(args).content_type();
    let mut head = http1::request_head("POST", &target.path.to_string(), &target.host);
    head.push_str(&format!("Content-Type: {content_type}\r\n"));
    if args.gzip {
        head.push_str("Content-Encoding: gzip\r\n");
    }
    head.into_bytes()
}

/// How many packets the run may send, split into requests.
#[derive(Debug, Clone, Copy)]
struct PacketBudget {
    total_packets: Option<u64>,
    packets_per_request: u64,
}

impl PacketBudget {
    /// The first packet number and packet count of request `index`, if it is within budget.
    fn packets_of_request(&self, index: u64) -> Option<(u64, u64)> {
        let first_packet = index.checked_mul(self.packets_per_request)?;
        match self.total_packets {
            None => Some((first_packet, self.packets_per_request)),
            Some(total) if first_packet < total => {
                Some((first_packet, self.packets_per_request.min(total - first_packet)))
            }
            Some(_) => None,
        }
    }

    fn total_requests(&self) -> Option<u64> {
        self.total_packets
            .map(|total| total.div_ceil(self.packets_per_request))
    }
}

/// Open-loop timetable: slot `n` is due at `start + n / rate`.
#[derive(Debug)]
struct Schedule {
    start: Instant,
    rate: f64,
    /// Slots at or past this one are beyond `--duration`.
    end_slot: Option<u64>,
    next_slot: AtomicU64,
}

impl Schedule {
    fn new(start: Instant, rate: f64, duration: Option<Duration>) -> Self {
        let end_slot = duration.map(|duration| (duration.as_secs_f64() * rate).ceil() as u64);
        Self {
            start,
            rate,
            end_slot,
            next_slot: AtomicU64::new(0),
        }
    }

    fn due(&self, slot: u64) -> Instant {
        self.start + Duration::from_secs_f64(slot as f64 / self.rate)
    }

    fn first_slot_due_at_or_after(&self, instant: Instant) -> u64 {
        (instant.saturating_duration_since(self.start).as_secs_f64() * self.rate).ceil() as u64
    }

    /// Takes the next slot a worker that is free at `now` can still serve, adding the
    /// slots skipped for being more than [`DROP_GRACE`] overdue to `dropped`.
    /// Returns `None` once the schedule is over.
    fn claim(&self, now: Instant, dropped: &mut u64) -> Option<u64> {
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
struct Job {
    first_packet: u64,
    packets: u64,
    /// Open loop: when the request came due, if that was before a worker was free.
    overdue_since: Option<Instant>,
}

/// Why a request got no answer.
enum Failure {
    Connect(anyhow::Error),
    Http(http1::Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "{error:#}"),
            Self::Http(error) => write!(f, "{error}"),
        }
    }
}

/// The fields of a 202/207/400 answer body that the generator uses.
#[derive(Deserialize)]
struct BatchSummary<'a> {
    successful: u64,
    #[serde(default, borrow)]
    processed_packets: Vec<Cow<'a, str>>,
}

/// A load worker: owns one connection and sends one request at a time on it.
struct Worker {
    shared: Arc<Shared>,
    body: BodyWriter,
    connection: Option<Connection>,
    recorder: Option<RecordBuffer>,
    /// Its thread's figures, shared by the thread's workers: one latency
    /// histogram per thread stays in cache where one per worker did not.
    stats: Rc<RefCell<LoadStats>>,
}

impl Worker {
    fn new(
        shared: Arc<Shared>,
        body: BodyWriter,
        connection: anyhow::Result<Connection>,
        recorder: Option<RecordBuffer>,
        stats: Rc<RefCell<LoadStats>>,
    ) -> Self {
        let connection = match connection {
            Ok(connection) => Some(connection),
            Err(error) => {
                stats.borrow_mut().count_connection_error(|| format!("{error:#}"));
                None
            }
        };
        Self {
            shared,
            body,
            connection,
            recorder,
            stats,
        }
    }

    async fn run(mut self) {
        while let Some(job) = self.shared.next_job(&self.stats).await {
            self.execute(job).await;
        }
        if let Some(recorder) = &mut self.recorder {
            recorder.flush().await;
        }
    }

    async fn execute(&mut self, job: Job) {
        let body = self.body.render(job.first_packet, job.packets);
        let sent_at = Instant::now();
        let outcome = tokio::time::timeout(self.shared.timeout, self.exchange(&body)).await;
        let latency = job.overdue_since.unwrap_or(sent_at).elapsed();
        {
            let mut stats = self.stats.borrow_mut();
            stats.requests += 1;
            stats.packets_sent += job.packets;
        }
        match outcome {
            Ok(Ok(answer)) => {
                self.stats.borrow_mut().record_latency(latency);
                self.account(answer, job.packets).await;
            }
            Ok(Err(failure)) => self.fail(failure).await,
            Err(_elapsed) => self.time_out(),
        }
    }

    async fn exchange(&mut self, body: &[u8]) -> Result<Answer, Failure> {
        if self.connection.as_mut().is_some_and(Connection::has_ended) {
            self.connection = None;
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let opened = connect(self.shared.target.addr).await.map_err(Failure::Connect)?;
                self.connection.insert(Connection::new(opened))
            }
        };
        let (answer, ended) = connection.exchange(&self.shared.request_head, body).await;
        if ended {
            self.connection = None;
        }
        answer.map_err(Failure::Http)
    }

    async fn account(&mut self, answer: Answer, packets: u64) {
        self.stats.borrow_mut().count_status(answer.status);
        match answer.status {
            // 202 means every packet was accepted: read the body only to record ids.
            202 if self.recorder.is_none() => self.stats.borrow_mut().packets_accepted += packets,
            202 | 207 | 400 => self.account_summary(&answer, packets).await,
            _ => {}
        }
    }

    async fn account_summary(&mut self, answer: &Answer, packets: u64) {
        match serde_json::from_slice::<BatchSummary>(&answer.body) {
            Ok(summary) => {
                self.stats.borrow_mut().packets_accepted += summary.successful;
                if let Some(recorder) = &mut self.recorder {
                    recorder.record(&summary.processed_packets, answer.status).await;
                }
            }
            Err(_) => {
                self.stats.borrow_mut().invalid_response_bodies += 1;
                if answer.status == 202 {
                    self.stats.borrow_mut().packets_accepted += packets;
                }
            }
        }
    }

    async fn fail(&mut self, failure: Failure) {
        self.connection = None;
        {
            let mut stats = self.stats.borrow_mut();
            stats.count_unanswered();
            stats.count_connection_error(|| failure.to_string());
        }
        if matches!(failure, Failure::Connect(_)) {
            sleep(CONNECT_RETRY_DELAY).await;
        }
    }

    fn time_out(&mut self) {
        // The answer may still arrive on this connection, so it cannot be reused.
        self.connection = None;
        let mut stats = self.stats.borrow_mut();
        stats.count_unanswered();
        stats.timeouts += 1;
    }
}

/// Counters and latencies of one load thread's workers, merged into the totals at the end.
#[derive(Debug)]
struct LoadStats {
    latency_micros: Histogram<u64>,
    status_counts: BTreeMap<u16, u64>,
    unanswered: u64,
    requests: u64,
    packets_sent: u64,
    packets_accepted: u64,
    dropped_by_client: u64,
    connection_errors: u64,
    timeouts: u64,
    invalid_response_bodies: u64,
    first_error: Option<String>,
}

impl LoadStats {
    fn new() -> Self {
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

    fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // The histogram grows as needed; only absurd values (beyond i64::MAX / 2) get clamped.
        if self.latency_micros.record(micros).is_err() {
            self.latency_micros.saturating_record(micros);
        }
    }

    fn count_status(&mut self, status: u16) {
        *self.status_counts.entry(status).or_insert(0) += 1;
    }

    fn count_unanswered(&mut self) {
        self.unanswered += 1;
    }

    /// Counts a connection error; `describe` is called only for the first one.
    fn count_connection_error(&mut self, describe: impl FnOnce() -> String) {
        self.connection_errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(describe());
        }
    }

    fn merge(&mut self, other: LoadStats) -> anyhow::Result<()> {
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

    fn status_code_map(&self) -> BTreeMap<String, u64> {
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

    fn latency_millis(&self) -> LatencyMillis {
        let at = |quantile| micros_to_millis(self.latency_micros.value_at_quantile(quantile));
        LatencyMillis {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: micros_to_millis(self.latency_micros.max()),
        }
    }
}

fn micros_to_millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl Report {
    fn new(args: &LoadgenArgs, totals: &LoadStats, elapsed: Duration) -> Self {
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

/// Request body layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    JsonArray,
    Ndjson,
}

impl BodyFormat {
    fn from_args(args: &LoadgenArgs) -> Self {
        if args.ndjson {
            Self::Ndjson
        } else {
            Self::JsonArray
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::JsonArray => "application/json",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    /// Bytes before the first packet, between packets, and after the last one.
    fn delimiters(self) -> (&'static [u8], &'static [u8], &'static [u8]) {
        match self {
            Self::JsonArray => (b"[", b",", b"]"),
            Self::Ndjson => (b"", b"\n", b"\n"),
        }
    }
}

#[derive(Serialize)]
struct MessageTemplate<'a> {
    level: &'a str,
    message: String,
    source: &'a str,
    metadata: MessageMetadata,
}

#[derive(Serialize)]
struct MessageMetadata {
    worker: usize,
}

/// Builds request bodies from pre-rendered packet templates; only the ids are written
/// per request, into a reused buffer.
struct BodyWriter {
    /// `{"id":"lg-<run>-`: the packet number follows.
    id_opening: Vec<u8>,
    /// `","messages":[...]}`: the rest of a packet, in a few variants of levels and texts.
    packet_tails: Vec<Vec<u8>>,
    format: BodyFormat,
    buffer: BytesMut,
    gzip: Option<GzipEncoder>,
}

impl BodyWriter {
    fn new(id_prefix: &str, worker_id: usize, args: &LoadgenArgs, format: BodyFormat) -> Self {
        let mut rng = rand::rng();
        let words: Vec<&str> = WORDS.split_whitespace().collect();
        let packet_tails = (0..LEVELS.len())
            .map(|variant| {
                let messages: Vec<MessageTemplate> = (0..args.messages_per_packet as usize)
                    .map(|index| MessageTemplate {
                        level: LEVELS[(variant + index) % LEVELS.len()],
                        message: message_text(args.message_bytes as usize, &words, &mut rng),
                        source: "loadgen",
                        metadata: MessageMetadata { worker: worker_id },
                    })
                    .collect();
                let messages = serde_json::to_string(&messages).expect("message templates serialize to JSON");
                format!("\",\"messages\":{messages}}}").into_bytes()
            })
            .collect();
        Self {
            id_opening: format!("{{\"id\":\"{id_prefix}").into_bytes(),
            packet_tails,
            format,
            buffer: BytesMut::new(),
            gzip: args.gzip.then(GzipEncoder::new),
        }
    }

    /// The body carrying packets `first_packet..first_packet + count`.
    fn render(&mut self, first_packet: u64, count: u64) -> Bytes {
        let (opening, separator, closing) = self.format.delimiters();
        let longest_tail = self.packet_tails.iter().map(Vec::len).max().unwrap_or(0);
        let packet_bound = self.id_opening.len() + 20 + longest_tail + separator.len();
        self.buffer.clear();
        self.buffer
            .reserve(opening.len() + packet_bound * count as usize + closing.len());
        self.buffer.put_slice(opening);
        for packet in first_packet..first_packet + count {
            if packet != first_packet {
                self.buffer.put_slice(separator);
            }
            self.buffer.put_slice(&self.id_opening);
            put_decimal(&mut self.buffer, packet);
            let variant = (packet % self.packet_tails.len() as u64) as usize;
            self.buffer.put_slice(&self.packet_tails[variant]);
        }
        self.buffer.put_slice(closing);
        match &mut self.gzip {
            Some(gzip) => gzip.encode(&self.buffer),
            None => self.buffer.split().freeze(),
        }
    }
}

fn put_decimal(buffer: &mut BytesMut, mut number: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    buffer.put_slice(&digits[start..]);
}

/// Random words, cut to exactly `length` bytes; plain ASCII, so it needs no JSON escaping.
fn message_text(length: usize, words: &[&str], rng: &mut impl rand::Rng) -> String {
    let mut text = String::with_capacity(length + 16);
    while text.len() < length {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(words.choose(rng).expect("the vocabulary is not empty"));
    }
    text.truncate(length);
    text
}

/// Gzip with a reused deflate state (allocating one per request would dominate the cost).
struct GzipEncoder {
    deflate: Compress,
}

impl GzipEncoder {
    fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::fast(), false),
        }
    }

    fn encode(&mut self, raw: &[u8]) -> Bytes {
        self.deflate.reset();
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + raw.len() + 64);
        out.extend_from_slice(&GZIP_HEADER);
        loop {
            let consumed = usize::try_from(self.deflate.total_in()).expect("consumed input fits in memory");
            let status = self
                .deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Finish)
                .expect("deflating an in-memory buffer cannot fail");
            if status == Status::StreamEnd {
                break;
            }
            out.reserve(4096);
        }
        let mut crc = Crc::new();
        crc.update(raw);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // The gzip trailer stores the input length modulo 2^32.
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        Bytes::from(out)
    }
}

/// A worker's pending `--record` lines, handed to the file writer in chunks.
struct RecordBuffer {
    lines: Vec<u8>,
    sink: mpsc::Sender<Vec<u8>>,
}

#[derive(Serialize)]
struct RecordLine<'a> {
    id: &'a str,
    status: u16,
}

impl RecordBuffer {
    fn new(sink: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            lines: Vec::new(),
            sink,
        }
    }

    async fn record(&mut self, ids: &[Cow<'_, str>], status: u16) {
        for id in ids {
            let line = RecordLine { id, status };
            serde_json::to_writer(&mut self.lines, &line).expect("serializing into a Vec cannot fail");
            self.lines.push(b'\n');
        }
        if self.lines.len() >= RECORD_CHUNK_BYTES {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.lines);
        // Fails only when the writer has stopped on an error, which `run` reports.
        let _ = self.sink.send(chunk).await;
    }
}

/// Creates the record file and starts the task that writes chunks into it until every
/// worker's sender is gone.
async fn start_record_writer(
    path: &Path,
) -> anyhow::Result<(mpsc::Sender<Vec<u8>>, JoinHandle<anyhow::Result<()>>)> {
    let file = File::create(path)
        .await
        .with_context(|| format!("cannot create record file {}", path.display()))?;
    let (sink, chunks) = mpsc::channel(64);
    let path = path.to_owned();
    let writer = tokio::spawn(async move {
        write_record_chunks(BufWriter::new(file), chunks)
            .await
            .with_context(|| format!("cannot write record file {}", path.display()))
    });
    Ok((sink, writer))
}

async fn write_record_chunks(
    mut out: BufWriter<File>,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    while let Some(chunk) = chunks.recv().await {
        out.write_all(&chunk).await?;
    }
    out.flush().await
}

/// Progress bar on stderr, refreshed from the shared request counter.
struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    fn start(shared: Arc<Shared>, args: &LoadgenArgs) -> Self {
        let by_requests = shared.budget.total_requests();
        let length =
            by_requests.unwrap_or_else(|| duration_millis(args.duration.unwrap_or(DEFAULT_DURATION)));
        let bar = ProgressBar::new(length).with_style(
            ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {percent:>3}% {msg}")
                .expect("the progress template is valid"),
        );
        let ticker = tokio::spawn(refresh_progress(bar.clone(), shared, by_requests.is_some()));
        Self { bar, ticker }
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

async fn refresh_progress(bar: ProgressBar, shared: Arc<Shared>, by_requests: bool) {
    let started = Instant::now();
    loop {
        let requests = shared.requests_started();
        let elapsed = started.elapsed();
        bar.set_position(if by_requests {
            requests
        } else {
            duration_millis(elapsed)
        });
        bar.set_message(format!(
            "{requests} requests, {:.0}/s",
            per_second(requests, elapsed.as_secs_f64())
        ));
        sleep(PROGRESS_REFRESH).await;
    }
}

fn duration_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::Value;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadgenArgs,
    }

    fn parse(flags: &[&str]) -> LoadgenArgs {
        let argv = std::iter::once("loadgen").chain(flags.iter().copied());
        Cli::try_parse_from(argv).expect("flags are valid").args
    }

    fn body_json(args: &LoadgenArgs, first_packet: u64, count: u64) -> Vec<Value> {
        let mut writer = BodyWriter::new("lg-test-", 3, args, BodyFormat::from_args(args));
        let body = writer.render(first_packet, count);
        serde_json::from_slice(&body).expect("the body is a JSON array")
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
        assert!(!args.json && !args.quiet && !args.gzip && !args.ndjson);
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
        ] {
            let argv = std::iter::once("loadgen").chain(flags.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{flags:?} should be rejected");
        }
    }

    #[test]
    fn json_body_has_the_requested_shape() {
        let args = parse(&["--messages-per-packet", "4", "--message-bytes", "50"]);
        let packets = body_json(&args, 10, 5);
        assert_eq!(packets.len(), 5);
        for (offset, packet) in packets.iter().enumerate() {
            assert_eq!(packet["id"], format!("lg-test-{}", 10 + offset));
            let messages = packet["messages"].as_array().expect("messages is an array");
            assert_eq!(messages.len(), 4);
            for message in messages {
                assert!(LEVELS.contains(&message["level"].as_str().expect("level is a string")));
                assert_eq!(
                    message["message"].as_str().expect("message is a string").len(),
                    50
                );
                assert_eq!(message["source"], "loadgen");
                assert_eq!(message["metadata"]["worker"], 3);
            }
        }
    }

    #[test]
    fn packets_vary_their_levels() {
        let packets = body_json(&parse(&[]), 0, 4);
        let first_levels: std::collections::HashSet<&str> = packets
            .iter()
            .map(|packet| packet["messages"][0]["level"].as_str().expect("a level"))
            .collect();
        assert_eq!(first_levels.len(), LEVELS.len());
    }

    #[test]
    fn ids_are_unique_across_requests() {
        let args = parse(&[]);
        let mut writer = BodyWriter::new("lg-test-", 0, &args, BodyFormat::JsonArray);
        let budget = PacketBudget {
            total_packets: Some(25),
            packets_per_request: 10,
        };
        let mut ids = std::collections::HashSet::new();
        for index in 0.. {
            let Some((first, count)) = budget.packets_of_request(index) else {
                break;
            };
            let packets: Vec<Value> =
                serde_json::from_slice(&writer.render(first, count)).expect("valid JSON");
            for packet in packets {
                assert!(
                    ids.insert(packet["id"].as_str().expect("an id").to_owned()),
                    "duplicate id"
                );
            }
        }
        assert_eq!(ids.len(), 25);
    }

    #[test]
    fn ndjson_body_has_one_packet_per_line() {
        let args = parse(&["--ndjson"]);
        let mut writer = BodyWriter::new("lg-test-", 0, &args, BodyFormat::from_args(&args));
        let body = writer.render(0, 3);
        let text = std::str::from_utf8(&body).expect("the body is UTF-8");
        assert!(text.ends_with('\n'));
        let ids: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("each line is JSON")["id"].to_string())
            .collect();
        assert_eq!(ids, ["\"lg-test-0\"", "\"lg-test-1\"", "\"lg-test-2\""]);
    }

    #[test]
    fn gzip_body_decompresses_to_the_plain_body() {
        use std::io::Read;
        let plain_args = parse(&[]);
        let gzip_args = parse(&["--gzip"]);
        let mut plain = BodyWriter::new("lg-test-", 0, &plain_args, BodyFormat::JsonArray);
        let mut gzip = BodyWriter::new("lg-test-", 0, &gzip_args, BodyFormat::JsonArray);
        for _ in 0..2 {
            let compressed = gzip.render(0, 20);
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut inflated)
                .expect("a valid gzip stream");
            let packets: Vec<Value> = serde_json::from_slice(&inflated).expect("valid JSON");
            let expected: Vec<Value> = serde_json::from_slice(&plain.render(0, 20)).expect("valid JSON");
            assert_eq!(packets.len(), expected.len());
            assert_eq!(packets[19]["id"], expected[19]["id"]);
        }
    }

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
