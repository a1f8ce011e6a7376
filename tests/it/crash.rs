//! Crash safety, the acceptance test of the write-ahead log: the real binary
//! is `kill -9`ed at random moments while clients keep posting, restarted on
//! the same data directory and port, and in the end every packet it ever
//! answered 202 is found in an analyzer's record file or in the dead letter.
//! Zero lost is the only pass; duplicates (at-least-once) are counted and
//! reported, not failed.
//!
//! Kills land in three kinds of runs: steady load (checkpoints every
//! 300 ms, 64 KiB log segments so that rotation happens), a checkpoint storm
//! (every 50 ms), and runs with a fifth analyzer answering 400 (its packets
//! go straight to the dead letter). Each run is killed after a random delay
//! of 200 to 1500 ms; in the storm runs two kills are then aimed at the next
//! checkpoint write (the moment a `state.json.gz.tmp-*` file appears), and in the
//! dead-letter runs two at the next dead-letter append (the moment
//! `failed_packets.json` grows: its write is done, its fsync and the
//! packet's End record in the log are still to come). Two more kills land during start-up, a
//! few milliseconds after the process is spawned. After every kill,
//! `state.json.gz` must be whole gzip JSON and `failed_packets.json` must
//! parse as a JSON array, or be one whose last line a kill cut mid-write
//! (SIGKILL can stop a write between two pages, as power loss can): then
//! the lines before it, closed again, must parse, which is what the next
//! start does.
//!
//! The random delays come from a seed printed at the start; set
//! `CRASH_SEED` to replay a run's schedule, and `CRASH_ROUNDS=N` to go
//! through the eleven kills N times (a longer soak; the default is one).
//!
//! Duplicates (at-least-once) are bounded, not only counted: a packet can
//! reach an analyzer twice only when a kill caught it between its delivery
//! and its End record, so the next start recovers it as in flight. After
//! every kill the test marks how far each analyzer's record file (once it
//! stops growing) and the dead letter had grown; the copies written after a mark whose id was
//! already written before (or earlier in the same window) are that start's
//! redeliveries, and they must not outnumber the in-flight packets that
//! start recovered (its `recovered; resuming in-flight packets` line).
//!
//! Run with `cargo test --test crash -- --nocapture` to see the report.

use crate::support::analyzers::AnalyzerProcess as Analyzer;
use crate::support::distributor::Distributor;
use crate::support::files::{dead_letter_ids, read_dead_letter_file};
use crate::support::http::post;
use crate::support::packets::sized_packets;
use crate::support::ports::free_port;
use crate::support::processes::tail;
use crate::support::serial::alone;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Client tasks posting at once.
const WORKERS: usize = 6;
/// Packets per request.
const PER_REQUEST: usize = 10;
/// Rough size of each packet's message: with 64 KiB segments, the log
/// rotates every couple of hundred packets.
const PACKET_BYTES: usize = 200;
/// Longest the last run may take to deliver what is in flight.
const DRAIN: Duration = Duration::from_secs(60);
/// Longest an aimed kill waits for its moment (then it kills anyway).
const AIM_WITHIN: Duration = Duration::from_secs(3);

/// What a run of the distributor is configured for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// Four analyzers 40/30/20/10, a checkpoint every 300 ms.
    Steady,
    /// The same with a checkpoint every 50 ms: kills overlap checkpoint writes.
    CheckpointStorm,
    /// A fifth analyzer (weight 10) answering 400: its packets go straight to
    /// the dead letter, so kills overlap dead-letter appends.
    DeadLetter,
}

/// When a run is killed, after its random delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// At once.
    Now,
    /// As soon as a checkpoint write has begun (a `state.json.gz.tmp-*` file exists).
    InCheckpointWrite,
    /// As soon as a dead-letter append has written (`failed_packets.json`
    /// grew), while its fsync and the packet's End record are still to come.
    InDeadLetterAppend,
}

/// One run between two kills.
struct Step {
    phase: Phase,
    kill: Kill,
    /// After this run's kill, spawn once more and kill again within a few
    /// milliseconds, during start-up (recovery, compaction).
    startup_kill_after: bool,
}

/// What the clients were told, by id.
#[derive(Default)]
struct Ledger {
    /// Ids answered 202 (body read, all ids listed), with the run that took them.
    accepted: Mutex<Vec<(String, u32)>>,
    /// Ids answered 503: nothing from those requests may be kept.
    refused: Mutex<Vec<String>>,
    /// Requests without an answer: connection refused or cut by a kill.
    failed_requests: AtomicU64,
    /// Answers the test did not expect (anything but 202 and 503).
    unexpected: Mutex<Vec<String>>,
}

/// What each kill left on disk.
#[derive(Default)]
struct Evidence {
    kills: u32,
    startup_kills: u32,
    /// Kills that left a `state.json.gz.tmp-*` file behind: they landed inside a checkpoint write.
    kills_inside_checkpoint_write: u32,
    /// Aimed kills whose moment came (the file appeared or grew), by aim.
    aimed: HashMap<String, (u32, u32)>,
    /// Whole dead-letter entries on disk at each kill.
    dead_letter_at_kill: Vec<usize>,
    /// Kills that cut a dead-letter append mid-write.
    dead_letter_torn_at_kill: u32,
    /// Log segments on disk at each kill, and the largest seen (past
    /// `segment_bytes`: rotated by size, not only by checkpoints).
    segments_at_kill: Vec<usize>,
    largest_segment: u64,
    /// At each kill: how many records each analyzer had written, and how
    /// many whole entries the dead letter held. Start `n` ran between mark
    /// `n - 1` and mark `n`.
    marks: Vec<Mark>,
}

/// How far the places a packet can end had grown at a kill.
#[derive(Clone, Default)]
struct Mark {
    records: Vec<usize>,
    dead_letter: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The distributor's configuration for a phase.
fn config(phase: Phase, analyzers: &[Analyzer], rejecting: &Analyzer) -> String {
    let mut text = String::from("analyzers:\n");
    let weights = [40, 30, 20, 10];
    for (analyzer, weight) in analyzers.iter().zip(weights) {
        text.push_str(&format!(
            "  - {{id: {}, weight: {weight}, endpoint: \"{}\"}}\n",
            analyzer.name,
            analyzer.endpoint()
        ));
    }
    if phase == Phase::DeadLetter {
        text.push_str(&format!(
            "  - {{id: {}, weight: 10, endpoint: \"{}\"}}\n",
            rejecting.name,
            rejecting.endpoint()
        ));
    }
    let checkpoint = if phase == Phase::CheckpointStorm {
        "50ms"
    } else {
        "300ms"
    };
    text.push_str(&format!("checkpoint: {{interval: {checkpoint}}}\n"));
    text.push_str("wal: {segment_bytes: 65536}\n");
    // Never eject: the rejecting analyzer must keep its share.
    text.push_str("health: {interval: 1h, ejection_threshold: 0}\n");
    text.push_str("retry: {base_delay: 20ms, factor: 2, max_retries: 5, max_delay: 500ms}\n");
    text.push_str("http: {timeout: 2s}\n");
    text.push_str("queue: {analyzer_concurrency: 16}\n");
    text.push_str("shutdown: {drain_timeout: 1s}\n");
    text
}

/// The dead letter's entries but its last line, which a kill cut: the
/// lines before it must be whole entries, and closed again, an array.
fn without_torn_last_line(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let before_last_line = text.rfind('\n').map_or("", |end| &text[..end]);
    let closed = format!("{}\n]", before_last_line.trim_end_matches(','));
    serde_json::from_str::<Vec<Value>>(&closed)
        .map_err(|e| format!("and it is not an array torn only in its last line either: {e}"))
}

/// One client: posts batches of fresh ids until told to stop, and writes
/// down what each answer said.
async fn client(worker: usize, url: String, ledger: Arc<Ledger>, run: Arc<AtomicU32>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("HTTP client");
    let mut next = 0usize;
    while !stop.load(Ordering::Acquire) {
        let ids: Vec<String> = (0..PER_REQUEST)
            .map(|_| {
                next += 1;
                format!("w{worker}-{next:07}")
            })
            .collect();
        let epoch = run.load(Ordering::Acquire);
        match post(&http, &url, &sized_packets(&ids, PACKET_BYTES)).await {
            Ok(reply) if reply.status == StatusCode::ACCEPTED => {
                if reply.json["processed_packets"] == serde_json::json!(ids) {
                    lock(&ledger.accepted).extend(ids.into_iter().map(|id| (id, epoch)));
                } else {
                    lock(&ledger.unexpected).push(format!("202 listing other ids: {}", reply.text));
                }
            }
            Ok(reply) if reply.status == StatusCode::SERVICE_UNAVAILABLE => {
                lock(&ledger.refused).extend(ids);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(reply) => {
                lock(&ledger.unexpected).push(format!("{}: {}", reply.status, reply.text));
            }
            Err(_) => {
                ledger.failed_requests.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Checks what a kill left: the dead letter is a JSON array, torn at most
/// in its last line; the checkpoint (if any) is whole gzip JSON. Notes a
/// checkpoint temp file written by the run spawned at `spawned_at`.
fn inspect_after_kill(
    data_dir: &Path,
    spawned_at: std::time::SystemTime,
    analyzers: &[&Analyzer],
    evidence: &mut Evidence,
) {
    let kill = evidence.kills + evidence.startup_kills;
    let path = data_dir.join("failed_packets.json");
    let entries = match read_dead_letter_file(&path) {
        Ok(entries) => entries,
        Err(strict) => {
            evidence.dead_letter_torn_at_kill += 1;
            without_torn_last_line(&path).unwrap_or_else(|e| panic!("after kill #{kill}: {strict}; {e}"))
        }
    };
    evidence.dead_letter_at_kill.push(entries.len());
    evidence.marks.push(Mark {
        records: settled_lines(analyzers),
        dead_letter: entries.len(),
    });
    let checkpoint = data_dir.join("state.json.gz");
    if checkpoint.exists() {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&checkpoint).expect("open state.json.gz"))
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("after kill #{kill}: state.json.gz is not whole gzip: {e}"));
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|e| panic!("after kill #{kill}: state.json.gz does not hold JSON: {e}"));
    }
    let segments: Vec<u64> = std::fs::read_dir(data_dir.join("wal"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .collect()
        })
        .unwrap_or_default();
    evidence.segments_at_kill.push(segments.len());
    evidence.largest_segment = segments.into_iter().fold(evidence.largest_segment, u64::max);
    // A temp file written by the run just killed (not one left by an earlier kill).
    let temp =
        checkpoint_temp(data_dir).and_then(|temp| std::fs::metadata(temp).and_then(|m| m.modified()).ok());
    if temp.is_some_and(|written| written >= spawned_at) {
        evidence.kills_inside_checkpoint_write += 1;
    }
}

/// Whole lines in each analyzer's record file once the files stop
/// growing: a delivery the killed run sent just before the kill is still
/// recorded after it (the analyzers sleep before they record), and it
/// belongs to the run that sent it, not to the next one.
fn settled_lines(analyzers: &[&Analyzer]) -> Vec<usize> {
    let count = || {
        analyzers
            .iter()
            .map(|a| whole_lines(&a.record))
            .collect::<Vec<_>>()
    };
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = count();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = count();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    })
}

/// Whole lines in a record file (none if it does not exist yet). Counted,
/// not parsed: an analyzer may be writing its last line right now.
fn whole_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |bytes| bytes.iter().filter(|b| **b == b'\n').count())
}

/// For each start, the copies written while it ran (between the mark
/// before it and the mark after it) of ids already written: its
/// redeliveries. `records` are the analyzers' record files in the order of
/// the marks; `dead_letter` the dead letter's ids in file order.
fn redeliveries_per_start(marks: &[Mark], records: &[Vec<String>], dead_letter: &[String]) -> Vec<usize> {
    let end = Mark {
        records: records.iter().map(Vec::len).collect(),
        dead_letter: dead_letter.len(),
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut from = Mark {
        records: vec![0; records.len()],
        dead_letter: 0,
    };
    let mut per_start = Vec::new();
    for to in marks.iter().chain([&end]) {
        let written = records
            .iter()
            .enumerate()
            .flat_map(|(i, ids)| &ids[from.records[i]..to.records[i]])
            .chain(&dead_letter[from.dead_letter..to.dead_letter]);
        per_start.push(written.filter(|id| !seen.insert(id.as_str())).count());
        from = to.clone();
    }
    per_start
}

/// For each start, the packets it recovered in flight, from its
/// `recovered; resuming in-flight packets` log line (0 when it was killed
/// before it got that far: then it resumed nothing).
fn recovered_in_flight(logs: &[String]) -> Vec<usize> {
    logs.iter()
        .map(|log| {
            log.lines()
                .find(|line| line.contains("recovered; resuming in-flight packets"))
                .and_then(|line| {
                    line.split_whitespace()
                        .find_map(|field| field.strip_prefix("in_flight="))
                })
                .map_or(0, |n| n.parse().expect("in_flight=N"))
        })
        .collect()
}

/// A checkpoint temp file in `data_dir` (`state.json.gz.tmp-<pid>-<n>`), if any.
fn checkpoint_temp(data_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(data_dir)
        .ok()?
        .filter_map(|entry| entry.ok())
        .find(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("state.json.gz.tmp-")
        })
        .map(|entry| entry.path())
}

/// Polls `condition` as fast as it can, for at most `within`; answers
/// whether it became true. Blocks its worker thread, so that the kill that
/// follows lands microseconds after the moment.
fn wait_for(within: Duration, condition: impl Fn() -> bool) -> bool {
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if condition() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    })
}

/// How often each id occurs in `ids`.
fn occurrences(ids: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_packet() {
    let _alone = alone().await;
    let started = Instant::now();
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("crash test: seed {seed} (set CRASH_SEED={seed} to replay the schedule)");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::Builder::new()
        .prefix("crash-")
        .tempdir()
        .expect("temp dir");
    let records = dir.path().join("records");
    std::fs::create_dir_all(&records).expect("records dir");
    let data_dir = dir.path().join("data");
    let mut analyzers = Vec::new();
    for name in ["a1", "a2", "a3", "a4"] {
        analyzers.push(Analyzer::start(&records, name, &["--latency-ms", "2"]).await);
    }
    let rejecting = Analyzer::start(
        &records,
        "a5-rejects",
        &["--latency-ms", "2", "--respond-status", "400"],
    )
    .await;
    let configs: HashMap<Phase, PathBuf> = [Phase::Steady, Phase::CheckpointStorm, Phase::DeadLetter]
        .into_iter()
        .map(|phase| {
            let path = dir.path().join(format!("{phase:?}.yaml"));
            std::fs::write(&path, config(phase, &analyzers, &rejecting)).expect("write config");
            (phase, path)
        })
        .collect();
    let every_analyzer: Vec<&Analyzer> = analyzers.iter().chain([&rejecting]).collect();
    let fsync = ["--fsync", "always"];

    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let round = [
        (Phase::Steady, Kill::Now, false),
        (Phase::Steady, Kill::Now, false),
        (Phase::Steady, Kill::Now, false),
        (Phase::CheckpointStorm, Kill::Now, false),
        (Phase::CheckpointStorm, Kill::InCheckpointWrite, true),
        (Phase::CheckpointStorm, Kill::InCheckpointWrite, false),
        (Phase::DeadLetter, Kill::Now, false),
        (Phase::DeadLetter, Kill::InDeadLetterAppend, true),
        (Phase::DeadLetter, Kill::InDeadLetterAppend, false),
    ];
    let plan: Vec<Step> = (0..rounds)
        .flat_map(|_| round)
        .map(|(phase, kill, startup_kill_after)| Step {
            phase,
            kill,
            startup_kill_after,
        })
        .collect();

    let mut distributor = Distributor::stopped(free_port(), &dir.path().join("logs"));
    distributor
        .launch(&configs[&plan[0].phase], &data_dir, &fsync)
        .await;

    let ledger = Arc::new(Ledger::default());
    let run = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let url = distributor.url("/api/v1/logs");
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| tokio::spawn(client(w, url.clone(), ledger.clone(), run.clone(), stop.clone())))
        .collect();

    let mut evidence = Evidence::default();
    let mut runs: Vec<(Phase, Kill, u64)> = Vec::new();
    for (i, step) in plan.iter().enumerate() {
        let delay = rng.random_range(200..=1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        assert!(
            distributor.is_running(),
            "run {i} ({:?}) died on its own; its stderr:\n{}",
            step.phase,
            tail(&distributor.stderr(), 40)
        );
        let came = match step.kill {
            Kill::Now => None,
            Kill::InCheckpointWrite => Some(wait_for(AIM_WITHIN, || checkpoint_temp(&data_dir).is_some())),
            Kill::InDeadLetterAppend => {
                let file = data_dir.join("failed_packets.json");
                let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                let before = size();
                Some(wait_for(AIM_WITHIN, || size() != before))
            }
        };
        distributor.kill9();
        evidence.kills += 1;
        if let Some(came) = came {
            let aim = evidence.aimed.entry(format!("{:?}", step.kill)).or_default();
            aim.0 += 1;
            aim.1 += u32::from(came);
        }
        runs.push((step.phase, step.kill, delay));
        inspect_after_kill(&data_dir, distributor.spawned_at, &every_analyzer, &mut evidence);
        let next = plan.get(i + 1).map_or(Phase::Steady, |s| s.phase);
        if step.startup_kill_after {
            distributor.spawn(&configs[&next], &data_dir, &fsync);
            let delay = rng.random_range(5..=60);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            distributor.kill9();
            evidence.startup_kills += 1;
            inspect_after_kill(&data_dir, distributor.spawned_at, &every_analyzer, &mut evidence);
        }
        run.store(i as u32 + 1, Ordering::Release);
        distributor.launch(&configs[&next], &data_dir, &fsync).await;
    }

    // The last run: a little more load, then stop and let it deliver.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.expect("client task");
    }
    let load_ended = started.elapsed();
    let stats = distributor.drained_within(DRAIN).await;
    assert!(
        distributor.is_running(),
        "the last run died: {}",
        tail(&distributor.stderr(), 40)
    );

    // Where every packet ended.
    let record_files: Vec<Vec<String>> = every_analyzer.iter().map(|a| a.records()).collect();
    let delivered_occurrences: Vec<String> = record_files.concat();
    let dead_file = read_dead_letter_file(&data_dir.join("failed_packets.json"))
        .unwrap_or_else(|e| panic!("at the end: {e}"));
    let dead_occurrences = dead_letter_ids(&dead_file);
    let dead_api = dead_letter_ids(&distributor.dead_letter().await);
    assert_eq!(
        occurrences(dead_api.clone()),
        occurrences(dead_occurrences.clone()),
        "GET /api/v1/dead-letter and failed_packets.json disagree"
    );

    let accepted = lock(&ledger.accepted).clone();
    let refused: HashSet<String> = lock(&ledger.refused).iter().cloned().collect();
    let accepted_ids: HashMap<&str, u32> = accepted.iter().map(|(id, run)| (id.as_str(), *run)).collect();
    assert_eq!(accepted_ids.len(), accepted.len(), "an id was answered 202 twice");
    let delivered = occurrences(delivered_occurrences.iter().cloned());
    let dead = occurrences(dead_occurrences.iter().cloned());
    let everywhere = occurrences(delivered_occurrences.iter().chain(&dead_occurrences).cloned());

    let mut lost: Vec<(&str, u32)> = accepted_ids
        .iter()
        .filter(|(id, _)| !everywhere.contains_key(**id))
        .map(|(id, run)| (*id, *run))
        .collect();
    lost.sort();
    let mut lost_by_run: HashMap<u32, usize> = HashMap::new();
    for (_, run) in &lost {
        *lost_by_run.entry(*run).or_default() += 1;
    }
    let kept_though_refused: Vec<&String> =
        refused.iter().filter(|id| everywhere.contains_key(*id)).collect();
    let duplicates: usize = everywhere.values().map(|n| n - 1).sum();
    let duplicated_ids = everywhere.values().filter(|n| **n > 1).count();
    let in_both = dead.keys().filter(|id| delivered.contains_key(*id)).count();
    let accepted_delivered = accepted_ids
        .keys()
        .filter(|id| delivered.contains_key(**id))
        .count();
    let accepted_dead = accepted_ids.keys().filter(|id| dead.contains_key(**id)).count();
    let unacknowledged = everywhere
        .keys()
        .filter(|id| !accepted_ids.contains_key(id.as_str()) && !refused.contains(*id))
        .count();
    let mut accepted_per_run = vec![0usize; plan.len() + 1];
    for (_, run) in &accepted {
        accepted_per_run[*run as usize] += 1;
    }
    let logs = distributor.all_stderr();
    let redelivered = redeliveries_per_start(&evidence.marks, &record_files, &dead_occurrences);
    let recovered = recovered_in_flight(&logs);
    assert_eq!(redelivered.len(), recovered.len(), "one window per start");
    let over_bound: Vec<(usize, usize, usize)> = redelivered
        .iter()
        .zip(&recovered)
        .enumerate()
        .filter(|(_, (copies, in_flight))| copies > in_flight)
        .map(|(start, (copies, in_flight))| (start, *copies, *in_flight))
        .collect();
    let torn_wal = logs
        .iter()
        .filter(|l| l.contains("write-ahead log had a torn tail"))
        .count();
    let torn_dead_letter = logs
        .iter()
        .filter(|l| l.contains("dead letter had a torn tail"))
        .count();
    let unexpected = lock(&ledger.unexpected).clone();

    eprintln!("---------------- crash report (seed {seed}) ----------------");
    eprintln!(
        "kills:            {} under load + {} during start-up = {}",
        evidence.kills,
        evidence.startup_kills,
        evidence.kills + evidence.startup_kills
    );
    eprintln!("runs (phase, kill, ms before it): {runs:?}");
    eprintln!("aimed kills (tried, moment came): {:?}", evidence.aimed);
    eprintln!("accepted per run: {accepted_per_run:?}");
    eprintln!("accepted (202):   {}", accepted_ids.len());
    eprintln!("  delivered:      {accepted_delivered} (found in an analyzer's record)");
    eprintln!("  dead-lettered:  {accepted_dead} (found in failed_packets.json)");
    eprintln!("  lost:           {}", lost.len());
    eprintln!(
        "dead letter:      {} entries ({} ids), {} ids both delivered and dead-lettered",
        dead_occurrences.len(),
        dead.len(),
        in_both
    );
    eprintln!("duplicates:       {duplicates} extra copies of {duplicated_ids} ids (records + dead letter)");
    eprintln!("per start, redelivered / recovered in flight at its start (what the kill before it caught):");
    eprintln!(
        "                  {}",
        redelivered
            .iter()
            .zip(&recovered)
            .map(|(copies, in_flight)| format!("{copies}/{in_flight}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("delivered without a 202 (request cut by a kill): {unacknowledged}");
    eprintln!(
        "refused (503):    {} ids, {} of them kept anyway",
        refused.len(),
        kept_though_refused.len()
    );
    eprintln!(
        "requests without an answer: {}",
        ledger.failed_requests.load(Ordering::Relaxed)
    );
    eprintln!(
        "kills inside a checkpoint write (a state.json.gz.tmp-* file left): {}",
        evidence.kills_inside_checkpoint_write
    );
    eprintln!(
        "dead-letter entries on disk at each kill: {:?}; kills that cut an append mid-write: {}",
        evidence.dead_letter_at_kill, evidence.dead_letter_torn_at_kill
    );
    eprintln!(
        "log segments on disk at each kill: {:?}; largest seen: {} bytes",
        evidence.segments_at_kill, evidence.largest_segment
    );
    eprintln!("restarts that cut a torn log tail: {torn_wal}; a torn dead-letter tail: {torn_dead_letter}");
    eprintln!(
        "final stats: received {} routed {} dead-lettered {}",
        stats["total_packets_received"], stats["total_packets_routed"], stats["total_dead_lettered"]
    );
    eprintln!(
        "time: load {:.1}s, total {:.1}s",
        load_ended.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("-------------------------------------------------------------");

    assert!(
        unexpected.is_empty(),
        "unexpected answers: {:?}",
        &unexpected[..unexpected.len().min(5)]
    );
    assert!(
        lost.is_empty(),
        "{} packets answered 202 are nowhere (lost per run: {lost_by_run:?}); first ones: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        over_bound.is_empty(),
        "starts that redelivered more packets than they recovered in flight \
         (start, redelivered, recovered): {over_bound:?}"
    );
    assert_eq!(
        redelivered.iter().sum::<usize>(),
        duplicates,
        "every duplicate is some start's redelivery"
    );
    assert!(
        kept_though_refused.is_empty(),
        "{} ids answered 503 were delivered anyway, e.g. {:?}",
        kept_though_refused.len(),
        &kept_though_refused[..kept_though_refused.len().min(10)]
    );
    assert!(
        accepted_ids.len() >= 1000,
        "too little load to mean anything: {} accepted",
        accepted_ids.len()
    );
    assert!(accepted_dead > 0, "the dead-letter runs dead-lettered nothing");
}

/// A kill in the middle of a large write leaves part of a commit group at
/// the end of the newest log segment. Start-up opens the log (creating the next, empty
/// segment) *before* recovery cuts that torn tail; a second kill in between
/// leaves the torn group in a segment that is no longer the newest. The
/// next start must still treat it as the torn tail it is (nothing after it
/// was ever written) and recover every acknowledged packet, not refuse to
/// start as if the log were corrupt.
///
/// The on-disk state of both kills is built directly (part of a group
/// appended, the empty next segment created), since the second window is
/// too narrow to hit on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_survives_a_second_kill_during_start_up() {
    let dir = tempfile::Builder::new()
        .prefix("crash-torn-")
        .tempdir()
        .expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut analyzer = Analyzer::start(dir.path(), "only", &[]).await;
    let config = dir.path().join("distributor.yaml");
    std::fs::write(
        &config,
        format!(
            "analyzers:\n  - {{id: only, weight: 1, endpoint: \"{}\"}}\n\
             checkpoint: {{interval: 1h}}\n\
             health: {{interval: 1h, ejection_threshold: 0}}\n\
             retry: {{base_delay: 100ms, factor: 1, max_retries: 1000, max_delay: 100ms}}\n\
             http: {{timeout: 1s}}\n",
            analyzer.endpoint()
        ),
    )
    .expect("write config");
    let fsync = ["--fsync", "always"];
    let mut distributor = Distributor::stopped(free_port(), &dir.path().join("logs"));
    distributor.launch(&config, &data_dir, &fsync).await;

    // The analyzer is down: the packets stay in flight, in the log only.
    analyzer.kill();
    let ids: Vec<String> = (0..20).map(|i| format!("torn-{i:02}")).collect();
    let reply = post(
        &distributor.http,
        &distributor.url("/api/v1/logs"),
        &sized_packets(&ids, 100),
    )
    .await
    .expect("POST");
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    distributor.kill9();

    // Kill one: part of a commit group at the end of the newest segment.
    let wal_dir = data_dir.join("wal");
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let number = path.file_stem()?.to_str()?.parse().ok()?;
            (path.extension()? == "wal").then_some((number, path))
        })
        .collect();
    segments.sort();
    let (newest, newest_path) = segments.last().cloned().expect("a log segment");
    let mut torn = Vec::new();
    torn.extend_from_slice(&400u32.to_le_bytes());
    torn.extend_from_slice(&0u32.to_le_bytes());
    torn.push(1);
    torn.extend_from_slice(&[0x5a; 100]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest_path)
        .expect("open the newest segment");
    std::io::Write::write_all(&mut file, &torn).expect("append part of a group");
    drop(file);
    // Kill two, during the next start-up: the log was opened (the next
    // segment created, empty) but recovery had not cut the tail yet.
    std::fs::File::create(wal_dir.join(format!("{:020}.wal", newest + 1))).expect("create the next segment");

    analyzer.restart().await;
    distributor.launch(&config, &data_dir, &fsync).await;
    distributor.drained_within(Duration::from_secs(20)).await;
    let received: HashSet<String> = analyzer.records().into_iter().collect();
    let lost: Vec<&String> = ids.iter().filter(|id| !received.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged packets lost: {lost:?}");
}
