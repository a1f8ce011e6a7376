//! The dispatcher's pieces on their own: admission's limits, the exact
//! split by weight, a lane's batching and a retry's return to its lane,
//! over in-process simulated analyzers, a real write-ahead log and a real
//! dead letter in a temporary directory.

use super::fleet::Analyzer;
use super::retry::Backoff;
use super::{AdmitError, Dispatcher, Settings};
use crate::config::{self, AnalyzerConfig, SimulatedConfig};
use crate::metrics::Metrics;
use crate::model::{EncodedPacket, Level, LogMessage, LogPacket};
use crate::storage::wal::{FsyncMode, Wal, WalOptions};
use crate::storage::DeadLetter;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// One simulated analyzer: id, weight, failure rate, time per packet.
struct Simulated(&'static str, i64, f64, u64);

struct Harness {
    dispatcher: Arc<Dispatcher>,
    _dir: TempDir,
}

impl Harness {
    /// A resumed dispatcher (nothing recovered) over `analyzers`, with
    /// `configure` applied to the settings first. Retries are quick and
    /// without jitter; no analyzer is ejected for failing.
    fn start(analyzers: &[Simulated], configure: impl FnOnce(&mut config::Settings)) -> Harness {
        let harness = Harness::unresumed(analyzers, configure);
        harness.dispatcher.resume(BTreeMap::new(), 0);
        harness
    }

    fn unresumed(analyzers: &[Simulated], configure: impl FnOnce(&mut config::Settings)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = config::Settings::default();
        settings.retry.base_delay = Duration::from_millis(5);
        settings.retry.max_delay = Duration::from_millis(20);
        settings.retry.jitter = false;
        settings.health.ejection_threshold = 1_000_000;
        let template = settings.analyzers[0].clone();
        settings.analyzers = analyzers
            .iter()
            .map(
                |&Simulated(id, weight, failure_rate, processing_time_ms)| AnalyzerConfig {
                    id: id.into(),
                    name: Some(id.into()),
                    weight,
                    simulated: Some(SimulatedConfig {
                        processing_time_ms,
                        failure_rate,
                        health_failure_rate: 0.0,
                    }),
                    ..template.clone()
                },
            )
            .collect();
        configure(&mut settings);
        let metrics = Metrics::new();
        let analyzers = settings
            .analyzers
            .iter()
            .map(|config| Analyzer::from_config(config, &settings, &metrics).unwrap())
            .collect();
        let wal = Wal::open(
            &dir.path().join("wal"),
            0,
            WalOptions {
                fsync: FsyncMode::Never,
                segment_bytes: 1 << 20,
                commit_delay: Duration::ZERO,
                fsync_duration: None,
            },
        )
        .unwrap();
        let dead_letter = Arc::new(DeadLetter::open(&dir.path().join("failed_packets.json")).unwrap());
        let dispatcher = Dispatcher::start(
            analyzers,
            Settings {
                max_in_flight: settings.queue.max_in_flight,
                max_in_flight_bytes: settings.queue.max_in_flight_bytes,
                backoff: Backoff::try_new(&settings.retry).unwrap(),
                budget: None,
                batch: settings.batch.clone(),
                slow_start: Duration::ZERO,
                full_wait: settings.full_wait(),
            },
            metrics,
            dead_letter,
            wal,
        );
        Harness {
            dispatcher,
            _dir: dir,
        }
    }

    fn analyzer(&self, id: &str) -> Arc<Analyzer> {
        self.dispatcher
            .fleet()
            .get(id)
            .expect("the analyzer is in the fleet")
    }

    async fn drained(&self) {
        assert!(
            self.dispatcher.drain(Duration::from_secs(10)).await,
            "everything admitted ends within 10 s"
        );
    }
}

/// `count` packets of one message each.
fn packets(count: usize) -> Vec<EncodedPacket> {
    (0..count).map(|n| packet(n, "x")).collect()
}

fn packet(n: usize, text: &str) -> EncodedPacket {
    EncodedPacket::new(&LogPacket {
        id: format!("p-{n}"),
        messages: vec![LogMessage {
            level: Level::Info,
            message: text.into(),
            source: "unit".into(),
            timestamp: chrono::DateTime::UNIX_EPOCH,
            metadata: None,
        }],
        retry_count: 0,
    })
}

/// Analyzers that hold every delivery for a minute: what is admitted stays.
const STUCK: &[Simulated] = &[Simulated("stuck", 1, 0.0, 60_000)];

#[tokio::test]
async fn admission_takes_all_of_a_request_or_none_of_it() {
    let h = Harness::start(STUCK, |s| {
        s.queue.max_in_flight = 10;
        s.queue.full_wait = Some(Duration::ZERO);
    });
    let d = &h.dispatcher;
    assert_eq!(d.admit(packets(6)).await.unwrap().len(), 6);
    let refused = d.admit(packets(5)).await.unwrap_err();
    assert!(matches!(refused, AdmitError::Full { .. }), "{refused:?}");
    assert_eq!(
        d.pipeline().in_flight,
        6,
        "nothing of the refused request is kept"
    );
    assert!(d.wait_for_room(5, 0).await.is_err());
    assert!(d.wait_for_room(4, 0).await.is_ok());
    assert_eq!(d.admit(packets(4)).await.unwrap().len(), 4);
    assert_eq!(d.pipeline().in_flight, 10);
}

#[tokio::test]
async fn a_request_larger_than_the_whole_queue_is_refused_for_good_and_one_within_it_waits() {
    let h = Harness::start(STUCK, |s| {
        s.queue.max_in_flight_bytes = 1000;
        s.queue.full_wait = Some(Duration::ZERO);
    });
    let d = &h.dispatcher;
    let refused = d.admit(vec![packet(0, &"x".repeat(2000))]).await.unwrap_err();
    assert!(matches!(refused, AdmitError::LargerThanQueue(_)), "{refused:?}");
    assert_eq!(d.pipeline().in_flight, 0, "not even an empty queue takes it");
    assert_eq!(d.admit(vec![packet(1, &"x".repeat(600))]).await.unwrap().len(), 1);
    let refused = d.admit(vec![packet(2, &"x".repeat(600))]).await.unwrap_err();
    assert!(matches!(refused, AdmitError::Full { ref capacity } if capacity.contains("bytes")));
    assert_eq!(d.pipeline().in_flight, 1);
}

#[tokio::test]
async fn a_full_queue_holds_an_admission_until_there_is_room() {
    // Deliveries take 300 ms: the second request fits once the first is delivered.
    let h = Harness::start(&[Simulated("slow", 1, 0.0, 300)], |s| {
        s.queue.max_in_flight = 4;
        s.queue.full_wait = Some(Duration::from_secs(5));
    });
    let d = &h.dispatcher;
    let first = std::time::Instant::now();
    assert_eq!(d.admit(packets(4)).await.unwrap().len(), 4);
    assert_eq!(d.pipeline().in_flight, 4);
    assert_eq!(
        d.admit(packets(3)).await.unwrap().len(),
        3,
        "admitted once there was room"
    );
    assert!(
        first.elapsed() >= Duration::from_millis(250),
        "it waited for the deliveries: {:?}",
        first.elapsed()
    );
    assert!(d.pipeline().in_flight <= 4);
}

#[tokio::test]
async fn a_queue_still_full_at_the_deadline_refuses_and_keeps_nothing() {
    let h = Harness::start(STUCK, |s| {
        s.queue.max_in_flight = 4;
        s.queue.full_wait = Some(Duration::from_millis(200));
    });
    let d = &h.dispatcher;
    assert_eq!(d.admit(packets(4)).await.unwrap().len(), 4);
    let started = std::time::Instant::now();
    let refused = d.admit(packets(1)).await.unwrap_err();
    assert!(matches!(refused, AdmitError::Full { .. }), "{refused:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    assert!(matches!(
        d.wait_for_room(1, 0).await,
        Err(AdmitError::Full { .. })
    ));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        d.pipeline().in_flight,
        4,
        "nothing of the refused request is kept"
    );
}

#[tokio::test]
async fn shutting_down_ends_the_wait_for_room_at_once() {
    let h = Harness::start(STUCK, |s| {
        s.queue.max_in_flight = 4;
        s.queue.full_wait = Some(Duration::from_secs(20));
    });
    let d = Arc::clone(&h.dispatcher);
    assert_eq!(d.admit(packets(4)).await.unwrap().len(), 4);
    let waiting = tokio::spawn({
        let d = Arc::clone(&d);
        async move { d.admit(packets(1)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the admission waits for room");
    let started = std::time::Instant::now();
    d.stop_accepting();
    let answer = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("stopping wakes the waiting admission")
        .unwrap();
    assert_eq!(answer.unwrap_err(), AdmitError::ShuttingDown);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(d.pipeline().in_flight, 4);
}

#[tokio::test]
async fn nothing_is_admitted_before_recovery_has_resumed_or_once_stopping() {
    let h = Harness::unresumed(STUCK, |_| {});
    let d = &h.dispatcher;
    assert_eq!(d.admit(packets(1)).await.unwrap_err(), AdmitError::Recovering);
    d.resume(BTreeMap::new(), 0);
    assert_eq!(d.admit(packets(1)).await.unwrap().len(), 1);
    d.stop_accepting();
    assert_eq!(d.admit(packets(1)).await.unwrap_err(), AdmitError::ShuttingDown);
    assert_eq!(d.pipeline().in_flight, 1);
}

#[tokio::test]
async fn packets_are_split_exactly_by_weight() {
    let h = Harness::start(
        &[
            Simulated("a", 40, 0.0, 0),
            Simulated("b", 30, 0.0, 0),
            Simulated("c", 20, 0.0, 0),
            Simulated("d", 10, 0.0, 0),
        ],
        |_| {},
    );
    for _ in 0..5 {
        h.dispatcher.admit(packets(100)).await.unwrap();
    }
    h.drained().await;
    for (id, share) in [("a", 200), ("b", 150), ("c", 100), ("d", 50)] {
        let metrics = &h.analyzer(id).metrics;
        assert_eq!(metrics.routed.get(), share, "{id} routed");
        assert_eq!(metrics.delivered.get(), share, "{id} delivered");
    }
}

#[tokio::test]
async fn a_lane_batches_what_queued_behind_its_delivery() {
    // One delivery at a time, 4 packets at most, whether `batch.max_packets`
    // or the analyzer's own `max_batch_packets` is the lower: however the
    // first delivery is cut, 9 packets take exactly 3 deliveries.
    for (batch_max_packets, own_max_packets) in [(256, 4), (4, 256)] {
        let h = Harness::start(&[Simulated("only", 1, 0.0, 20)], |s| {
            s.queue.analyzer_concurrency = 1;
            s.batch.max_packets = batch_max_packets;
            s.analyzers[0].max_batch_packets = Some(own_max_packets);
        });
        h.dispatcher.admit(packets(1)).await.unwrap();
        h.dispatcher.admit(packets(8)).await.unwrap();
        h.drained().await;
        let metrics = &h.analyzer("only").metrics;
        assert_eq!(metrics.delivered.get(), 9);
        assert_eq!(
            metrics.delivery_duration.get_sample_count(),
            3,
            "deliveries with batch.max_packets {batch_max_packets}, max_batch_packets {own_max_packets}"
        );
    }
}

#[tokio::test]
async fn one_request_larger_than_a_batch_is_cut_into_batches_by_bytes() {
    // A packet goes in while the batch is under `max_bytes`: with room
    // for just over two packets, each batch takes three.
    let size = packets(1)[0].json_bytes();
    let h = Harness::start(&[Simulated("only", 1, 0.0, 0)], |s| {
        s.queue.analyzer_concurrency = 1;
        s.batch.max_packets = 256;
        s.batch.max_bytes = 2 * size + 1;
        s.analyzers[0].max_batch_packets = Some(256);
    });
    h.dispatcher.admit(packets(10)).await.unwrap();
    h.drained().await;
    let metrics = &h.analyzer("only").metrics;
    assert_eq!(metrics.delivered.get(), 10);
    assert_eq!(metrics.delivery_duration.get_sample_count(), 4);
}

#[tokio::test]
async fn a_simulated_analyzer_takes_one_packet_per_delivery_unless_its_own_cap_says_more() {
    // With batching on, as by default; a simulated analyzer's sleep is per
    // packet, so it keeps to one packet per delivery.
    let h = Harness::start(&[Simulated("only", 1, 0.0, 1)], |s| {
        s.queue.analyzer_concurrency = 1;
        s.batch.max_packets = 256;
        s.batch.linger = Duration::from_millis(2);
    });
    h.dispatcher.admit(packets(9)).await.unwrap();
    h.drained().await;
    let metrics = &h.analyzer("only").metrics;
    assert_eq!(metrics.delivered.get(), 9);
    assert_eq!(metrics.delivery_duration.get_sample_count(), 9);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_on_its_own_analyzer_then_dead_lettered() {
    let h = Harness::start(
        &[Simulated("failing", 1, 1.0, 0), Simulated("working", 1, 0.0, 0)],
        |s| s.retry.max_retries = 2,
    );
    h.dispatcher.admit(packets(10)).await.unwrap();
    h.drained().await;
    let failing = &h.analyzer("failing").metrics;
    let working = &h.analyzer("working").metrics;
    // A retry takes no routing turn: each analyzer was picked for 5 packets,
    // and the failing one saw each of its 5 three times (1 + 2 retries).
    assert_eq!(failing.routed.get(), 5);
    assert_eq!(working.routed.get(), 5);
    assert_eq!(failing.errors.get(), 15);
    assert_eq!(working.delivered.get(), 5);
    assert_eq!(working.errors.get(), 0);
    assert_eq!(h.dispatcher.dead_letter().len(), 5);
}
