//! Checkpoints that overlap: several `checkpoint_to` at once while packets
//! keep coming in (in process, real sockets and files), and a SIGTERM that
//! lands while the periodic checkpoint is being written (the real binary).
//! Whatever the overlap, the checkpoint left on disk is the newest one, the
//! log segments it needs are still there, and the final checkpoint of a
//! shutdown is the one a restart reads.

use crate::support::config::{analyzer, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::files::read_checkpoint;
use crate::support::in_process::Server;
use crate::support::poll::DEADLINE;
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// The ids of the packets in flight in `state.json.gz`.
fn checkpointed_ids(checkpoint: &Value) -> BTreeSet<String> {
    checkpoint["in_flight"]
        .as_array()
        .expect("in_flight is a list")
        .iter()
        .map(|p| p["id"].as_str().expect("a saved packet has an id").to_string())
        .collect()
}

/// `count` packets `{prefix}-N`, each with a message of about `bytes`
/// bytes that gzip cannot shrink much, so that a checkpoint of many of
/// them takes a while to write.
fn bulky_packets(prefix: &str, count: usize, bytes: usize) -> (Value, Vec<String>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ prefix.len() as u64;
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let packets = ids
        .iter()
        .map(|id| {
            let text: String = (0..bytes)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    char::from(b'a' + ((state >> 59) as u8 % 26))
                })
                .collect();
            json!({"id": id, "messages": [{"level": "INFO", "message": text, "source": "checkpoints"}]})
        })
        .collect();
    (Value::Array(packets), ids)
}

/// Eight checkpoints at once, ten times over, with packets accepted between
/// the rounds and none delivered (the analyzer takes ten minutes each):
/// every checkpoint succeeds, and the one on disk at the end lists every
/// packet accepted, not an older snapshot renamed over a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkpoints_all_succeed_and_the_newest_stays() {
    let server = Server::start(&Config::new(vec![analyzer("slow", 1).processing(600_000)])).await;
    let path = server.data_dir().join("state.json.gz");
    let dispatcher = server.running().dispatcher().clone();
    let mut accepted = BTreeSet::new();
    for round in 0..10 {
        let (packets, ids) = bulky_packets(&format!("round{round}"), 100, 500);
        server.post_logs(&packets).await.expect(202);
        accepted.extend(ids);
        let checkpoints = (0..8).map(|_| {
            let dispatcher = dispatcher.clone();
            let path = path.clone();
            tokio::spawn(async move { dispatcher.checkpoint_to(&path).await })
        });
        for (n, checkpoint) in futures_util::future::join_all(checkpoints)
            .await
            .into_iter()
            .enumerate()
        {
            let saved = checkpoint.expect("checkpoint task");
            assert!(
                saved.is_ok(),
                "round {round}: checkpoint {n} of 8 failed: {:#}",
                saved.unwrap_err()
            );
        }
        let on_disk = checkpointed_ids(&read_checkpoint(server.data_dir()));
        let missing: Vec<&String> = accepted.difference(&on_disk).collect();
        assert!(
            missing.is_empty(),
            "round {round}: the checkpoint on disk misses {} accepted packets, e.g. {:?}",
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>()
        );
    }
    server.shutdown().await;
}

/// The periodic checkpoint runs back to back (every millisecond, each one
/// taking a while: thousands of packets in flight) when SIGTERM comes. The
/// drain delivers everything, so the final checkpoint lists nothing in
/// flight; a periodic one still being written must not land after it with
/// its older list. Three rounds on one data directory: each exit is clean,
/// each checkpoint left says nothing is in flight and counts every packet
/// delivered, and a restart has nothing to redo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_periodic_checkpoint_leaves_the_final_one() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let per_round = 6000;
    // One request, delivered in one wave: everything stays in flight until
    // the drain's last moment, so the periodic checkpoint still being
    // written then holds all of it, and the final one nothing.
    let mut config = Config::four(300)
        .shutdown("{drain_timeout: 60s}")
        .queue(&format!("{{analyzer_concurrency: {per_round}}}"))
        .limits(&format!(
            "{{max_packets_per_request: {per_round}, max_body_bytes: 33554432}}"
        ));
    config.checkpoint = "{interval: 1ms}".into();
    let path = write_config(dir.path(), "busy.yaml", &config);
    for round in 0..3u64 {
        let mut process = Distributor::start(&path, &data, dir.path()).await;
        let (packets, _) = bulky_packets(&format!("round{round}"), per_round, 1000);
        process.post_logs(&packets).await.expect(202);
        process.sigterm();
        let status = process.wait_exit(Duration::from_secs(60)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: stderr:\n{}",
            process.stderr()
        );
        let checkpoint = read_checkpoint(&data);
        let left = checkpointed_ids(&checkpoint);
        assert!(
            left.is_empty(),
            "round {round}: everything was delivered, yet the checkpoint on disk lists {} packets in flight \
             (an older periodic checkpoint landed after the final one)",
            left.len()
        );
        let delivered: u64 = checkpoint["counters"]["analyzers"]
            .as_object()
            .expect("analyzer counters")
            .values()
            .map(|a| a["delivered"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(
            delivered,
            (round + 1) * per_round as u64,
            "round {round}: delivered count"
        );
    }
    let mut process = Distributor::start(&path, &data, dir.path()).await;
    let stats = process.stats().await;
    assert_eq!(stats["in_flight"], 0, "{stats}");
    process.sigterm();
    assert_eq!(process.wait_exit(DEADLINE).await.code(), Some(0));
}
