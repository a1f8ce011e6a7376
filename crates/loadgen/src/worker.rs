//! The workers: one thread per core, each with its own single-threaded
//! runtime driving its share of the connections; a worker sends one request
//! at a time on its connection and counts what came back.

use crate::args::LoadgenArgs;
use crate::body::{BodyFormat, BodyWriter};
use crate::plan::Shared;
use crate::record::RecordBuffer;
use crate::schedule::Job;
use crate::stats::LoadStats;
use crate::target::connect;
use anyhow::Context;
use http1::{Answer, Connection};
use serde::Deserialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{JoinSet, LocalSet};
use tokio::time::{sleep, Instant};

/// Pause after a failed connection attempt, so a dead target is not hammered in a busy loop.
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(50);

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
pub(crate) async fn run_workers(
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
            // OTLP/HTTP: 200 takes every record (a partial success is counted as a success).
            200 if self.shared.otlp => self.stats.borrow_mut().packets_accepted += packets,
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
