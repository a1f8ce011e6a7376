//! Wiring: builds the distributor from [`Settings`], serves the API and runs
//! the background tasks, and shuts it all down in order.
//!
//! Start-up: data directory (leftover temp files removed) → dead letter →
//! checkpoint → write-ahead log → analyzers and dispatcher → listen (not
//! ready: 503) → replay the log on top of the checkpoint and resume what was
//! in flight → compact (a fresh checkpoint, old segments deleted) → ready.
//! Shutdown (SIGTERM, or [`Running::shutdown`]): refuse new packets with
//! 503 → wait up to `shutdown.drain_timeout` for in-flight packets → stop
//! the periodic checkpoints (one being written finishes) → write a final
//! checkpoint of what is left → stop the server: stop accepting, and close
//! the connections still open once `shutdown.drain_timeout` has passed
//! since the signal. With `--source kubernetes` the leader hands its Lease
//! back as soon as the stop is told, so a peer takes over status at once.
//! A replica stopped for good (a scale-in, `handoff.on_stop`) hands what
//! the drain left to a peer before the final checkpoint (`crate::handoff`).

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::config::{Source, WalRecover};
use crate::dispatch::fleet::Analyzer;
use crate::dispatch::prober;
use crate::dispatch::retry::{Backoff, RetryBudget};
use crate::dispatch::{self, Dispatcher};
use crate::handoff::leave::OnStop;
use crate::k8s::{self, KubeState};
use crate::metrics::Metrics;
use crate::storage::wal::{self, RecoverMode, Wal, WalOptions};
use crate::storage::{
    atomic_file, checkpoint, Checkpoint, DeadLetter, CHECKPOINT_FILE, DEAD_LETTER_FILE, WAL_DIR,
};
use crate::traffic::Traffic;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The finest step of a slow-start ramp.
const SLOW_START_STEP_MIN: std::time::Duration = std::time::Duration::from_millis(100);

/// A started distributor.
pub struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    finished: JoinHandle<anyhow::Result<()>>,
    dispatcher: Arc<Dispatcher>,
}

impl Running {
    /// The address the API listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Starts the orderly shutdown and waits for it to finish.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until the service has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.finished.await.context("service task panicked")?
    }

    /// A handle that starts the shutdown when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Builds everything and starts serving.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    // Token and certificate files first: a missing one stops the start before anything runs.
    let auth = Arc::new(api::auth::Auth::from_config(&settings.auth)?);
    let handoff_token = auth.ingest_token();
    let tls = crate::server::TlsFiles::from_config(&settings.tls)?;
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create data directory {}", settings.data_dir.display()))?;
    let wal_dir = settings.data_dir.join(WAL_DIR);
    for dir in [&settings.data_dir, &wal_dir] {
        if dir.is_dir() {
            atomic_file::remove_leftovers(dir)
                .with_context(|| format!("cannot remove leftover temp files in {}", dir.display()))?;
        }
    }
    let dead_letter_path = settings.data_dir.join(DEAD_LETTER_FILE);
    let dead_letter = Arc::new(
        DeadLetter::open(&dead_letter_path)
            .with_context(|| format!("cannot open dead letter {}", dead_letter_path.display()))?,
    );
    let checkpoint_path = settings.data_dir.join(CHECKPOINT_FILE);
    let checkpoint = Checkpoint::load(&checkpoint_path)?;
    let tail = wal::newest_segment(&wal_dir)
        .with_context(|| format!("cannot read write-ahead log directory {}", wal_dir.display()))?;
    let metrics = Metrics::new();
    let wal = Wal::open(
        &wal_dir,
        tail,
        WalOptions {
            fsync: settings.wal.fsync,
            segment_bytes: settings.wal.segment_bytes,
            commit_delay: settings.wal.commit_delay,
            fsync_duration: Some(metrics.wal_fsync_duration.clone()),
        },
    )
    .with_context(|| format!("cannot open write-ahead log in {}", wal_dir.display()))?;

    // From Kubernetes, analyzers arrive through the watch once it runs.
    let configured: &[crate::config::AnalyzerConfig] = match settings.source {
        Source::Config => &settings.analyzers,
        Source::Kubernetes => &[],
    };
    let analyzers = configured
        .iter()
        .map(|config| Analyzer::from_config(config, &settings, &metrics))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let backoff = Backoff::try_new(&settings.retry).map_err(anyhow::Error::msg)?;
    let dispatcher = Dispatcher::start(
        analyzers,
        dispatch::Settings {
            max_in_flight: settings.queue.max_in_flight,
            max_in_flight_bytes: settings.queue.max_in_flight_bytes,
            backoff,
            budget: settings
                .retry
                .budget_percent
                .map(|percent| RetryBudget::new(percent, settings.retry.budget_min_concurrent)),
            batch: settings.batch.clone(),
            slow_start: settings.health.slow_start,
            full_wait: settings.full_wait(),
        },
        metrics,
        dead_letter,
        wal,
    );

    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let ready = Arc::new(AtomicBool::new(false));
    let traffic = Traffic::new();
    let kube = (settings.source == Source::Kubernetes).then(|| Arc::new(KubeState::default()));
    let state = AppState::new(api::Shared {
        dispatcher: dispatcher.clone(),
        limits: settings.limits.clone(),
        records: settings.records.clone(),
        started: Instant::now(),
        ready: ready.clone(),
        traffic: traffic.clone(),
        kube: kube.clone(),
        auth,
        body_budget: api::BodyBudget::new(settings.max_body_memory()),
        handoffs: Default::default(),
    });
    let stop = CancellationToken::new();
    let server_stop = ServerStop {
        graceful: CancellationToken::new(),
        close: CancellationToken::new(),
    };
    let server = {
        let app = api::app(state);
        tokio::spawn(crate::server::serve(
            listener,
            app,
            settings.server.clone(),
            tls.clone(),
            server_stop.graceful.clone(),
            server_stop.close.clone(),
        ))
    };

    recover(&dispatcher, checkpoint, &wal_dir, tail, &settings).await?;
    dispatcher
        .checkpoint_to(&checkpoint_path)
        .await
        .context("cannot write the checkpoint after recovery")?;
    let (mut kube_tasks, finishing) = match &kube {
        Some(state) => {
            let tasks = k8s::start(
                Arc::new(settings.clone()),
                dispatcher.clone(),
                traffic.clone(),
                state.clone(),
                stop.clone(),
            )
            .await?;
            (tasks.background, Some(tasks.finishing))
        }
        None => (Vec::new(), None),
    };
    let handoff = OnStop::prepare(&settings, handoff_token).await;
    ready.store(true, Ordering::Release);
    tracing::info!(%addr, tls = tls.is_some(), data_dir = %settings.data_dir.display(), source = ?settings.source, "logs-distributor ready");

    let ramp_step = (settings.health.slow_start / 20).max(SLOW_START_STEP_MIN);
    let mut background = vec![
        tokio::spawn(dispatcher.clone().ramp_slow_starters(ramp_step)),
        tokio::spawn(traffic.run_sampler(dispatcher.clone())),
        tokio::spawn(prober::run_prober(dispatcher.clone())),
    ];
    background.append(&mut kube_tasks);
    let checkpointer_stop = CancellationToken::new();
    let checkpointer = tokio::spawn(run_checkpointer(
        dispatcher.clone(),
        checkpoint_path.clone(),
        settings.checkpoint.interval,
        checkpointer_stop.clone(),
    ));
    let finished = tokio::spawn(shut_down_when_told(
        stop.clone(),
        dispatcher.clone(),
        settings.shutdown.drain_timeout,
        Checkpointer {
            path: checkpoint_path,
            stop: checkpointer_stop,
            task: checkpointer,
        },
        Background {
            tasks: background,
            finishing,
            handoff,
        },
        server_stop,
        server,
    ));
    Ok(Running {
        addr,
        stop,
        finished,
        dispatcher,
    })
}

/// Replays the write-ahead log on top of the checkpoint and puts what was
/// in flight back on its way.
async fn recover(
    dispatcher: &Dispatcher,
    checkpoint: Option<Checkpoint>,
    wal_dir: &std::path::Path,
    tail: u64,
    settings: &Settings,
) -> anyhow::Result<()> {
    if let Some(saved) = &checkpoint {
        dispatcher.restore_counters(&saved.counters);
    }
    let (from, state, next_seq) = checkpoint::recovery_start(checkpoint);
    let mode = match settings.wal.recover {
        WalRecover::Strict => RecoverMode::Strict,
        WalRecover::SkipCorrupt => RecoverMode::SkipCorrupt,
    };
    let dir = wal_dir.to_path_buf();
    let recovered =
        tokio::task::spawn_blocking(move || wal::recover(&dir, from, tail, state, next_seq, mode))
            .await
            .context("write-ahead log recovery panicked")??;
    tracing::info!(
        records = recovered.records,
        in_flight = recovered.in_flight.len(),
        torn_tail_bytes = recovered.torn_tail_bytes,
        corrupt_parts_skipped = recovered.skipped.len(),
        "recovered; resuming in-flight packets"
    );
    dispatcher.resume(recovered.in_flight, recovered.next_seq);
    Ok(())
}

/// Writes a checkpoint every `every` until `stop` is cancelled. A
/// checkpoint already begun is finished, never cut off: the task ends
/// between two of them.
async fn run_checkpointer(
    dispatcher: Arc<Dispatcher>,
    path: PathBuf,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(e) = dispatcher.checkpoint_to(&path).await {
            dispatcher.metrics().checkpoint_failures.inc();
            tracing::error!(error = %e, "cannot write checkpoint; will try again");
        }
    }
}

/// The periodic checkpoint task, and what the final checkpoint needs.
struct Checkpointer {
    path: PathBuf,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The two steps of the server's shutdown.
struct ServerStop {
    /// Stop accepting, close idle connections, let requests in progress finish.
    graceful: CancellationToken,
    /// Close every connection still open.
    close: CancellationToken,
}

/// The tasks that run beside the server until shutdown.
struct Background {
    /// Aborted once the drain is over.
    tasks: Vec<JoinHandle<()>>,
    /// The leader election and the replica's counts, which end by
    /// themselves on the stop after releasing the Lease and writing the
    /// last counts: awaited.
    finishing: Option<JoinHandle<()>>,
    /// What the stop does with what the drain leaves, when it hands off.
    handoff: Option<OnStop>,
}

async fn shut_down_when_told(
    stop: CancellationToken,
    dispatcher: Arc<Dispatcher>,
    drain_timeout: std::time::Duration,
    checkpointer: Checkpointer,
    background: Background,
    server_stop: ServerStop,
    mut server: JoinHandle<std::io::Result<()>>,
) -> anyhow::Result<()> {
    stop.cancelled().await;
    let drain_end = tokio::time::Instant::now() + drain_timeout;
    dispatcher.stop_accepting();
    let in_flight = dispatcher.pipeline().in_flight;
    tracing::info!(in_flight, timeout = %humantime::format_duration(drain_timeout), "shutting down: draining in-flight packets");
    let drained = dispatcher.drain(drain_timeout).await;
    // A replica stopped for good hands what is left to a peer (while the
    // lanes go on trying to deliver it).
    if let (false, Some(handoff)) = (drained, &background.handoff) {
        handoff.run(&dispatcher).await;
    }
    for task in &background.tasks {
        task.abort();
    }
    // The election hands the Lease back as soon as the stop is told (while
    // the drain runs); its release is bounded by a third of the Lease. The
    // replica's last counts are written once the drain is over.
    if let Some(finishing) = background.finishing {
        if let Err(e) = finishing.await {
            tracing::error!(error = %e, "the leader election or count task failed");
        }
    }
    // A periodic checkpoint being written finishes first: the final one is
    // then the last written.
    checkpointer.stop.cancel();
    if let Err(e) = checkpointer.task.await {
        tracing::error!(error = %e, "the checkpoint task failed");
    }
    let saved = dispatcher.checkpoint_to(&checkpointer.path).await;
    // Connections get what is left of the drain timeout to finish; then
    // those still open (a client that does not read its answer, a body
    // still arriving) are closed.
    server_stop.graceful.cancel();
    let served = tokio::select! {
        served = &mut server => served,
        () = tokio::time::sleep_until(drain_end) => {
            server_stop.close.cancel();
            server.await
        }
    };
    match &saved {
        Ok(left) if drained => tracing::info!(left, "drained; checkpoint written"),
        Ok(left) => tracing::warn!(
            left,
            "drain timed out; the rest is in the checkpoint and resumes at the next start"
        ),
        Err(e) => tracing::error!(error = %e, "final checkpoint failed"),
    }
    saved.context("final checkpoint failed")?;
    served
        .context("HTTP server task panicked")?
        .context("HTTP server failed")?;
    Ok(())
}
