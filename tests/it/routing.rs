//! Exact weighted distribution over HTTP, and how forcing analyzers out of
//! (and back into) rotation reshapes it.

use crate::support::config::Config;
use crate::support::http::{processed, Api};
use crate::support::in_process::Server;
use crate::support::packets::packets;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const IDS: [&str; 4] = ["analyzer-a1", "analyzer-a2", "analyzer-a3", "analyzer-a4"];

/// Posts `total` packets in requests of 100, one request at a time.
async fn post_in_hundreds(api: &Api, prefix: &str, total: usize) {
    for batch in 0..total / 100 {
        let reply = api.post_logs(&packets(&format!("{prefix}-{batch}"), 100)).await;
        reply.expect(202);
        assert_eq!(reply.json["successful"], 100);
    }
}

/// How many packets each analyzer processed between two stats snapshots.
fn gained(before: &Value, after: &Value) -> [u64; 4] {
    let (before, after) = (processed(before), processed(after));
    IDS.map(|id| after[id] - before[id])
}

async fn health(api: &Api) -> (u16, Value) {
    let reply = api.get("/api/v1/health").await;
    (reply.status.as_u16(), reply.json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_splits_exactly_by_weight_and_follows_forced_health() {
    let server = Server::start(&Config::four(0)).await;

    // 1000 packets: exactly 400/300/200/100.
    post_in_hundreds(&server, "first", 1000).await;
    let start = server.drained().await;
    let expected: BTreeMap<String, u64> = IDS
        .iter()
        .map(|id| id.to_string())
        .zip([400, 300, 200, 100])
        .collect();
    assert_eq!(processed(&start), expected);
    assert_eq!(start["total_packets_received"], 1000);
    assert_eq!(start["total_packets_routed"], 1000);
    for (id, share) in IDS.iter().zip([40.0, 30.0, 20.0, 10.0]) {
        assert_eq!(
            start["analyzers"][id]["share_percent"].as_f64(),
            Some(share),
            "{id}"
        );
        assert_eq!(start["analyzers"][id]["routed_count"], expected[*id], "{id}");
    }

    // A1 forced out: B, C, D share 600 more exactly 3:2:1, A1 gets none.
    let reply = server.set_health("analyzer-a1", json!({"healthy": false})).await;
    reply.expect(200);
    assert_eq!(reply.json["analyzer"]["in_rotation"], false);
    let (code, body) = health(&server).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("degraded")));
    assert_eq!(
        (
            body["active_analyzers"].as_u64(),
            body["total_analyzers"].as_u64()
        ),
        (Some(3), Some(4))
    );
    let stats = server.stats().await;
    assert_eq!(stats["active_analyzers"], 3);
    assert_eq!(stats["analyzers"]["analyzer-a1"]["is_healthy"], false);

    post_in_hundreds(&server, "second", 600).await;
    let out = server.drained().await;
    assert_eq!(gained(&start, &out), [0, 300, 200, 100]);

    // Back to auto: A1 rejoins and takes its 4 in 10 again.
    server
        .set_health("analyzer-a1", json!({"mode": "auto"}))
        .await
        .expect(200);
    let list = server.get("/api/v1/analyzers").await;
    let a1 = &list.json["analyzers"]["analyzer-a1"];
    assert_eq!(a1["in_rotation"], true, "{}", list.text);
    assert_eq!(a1["is_healthy"], true);
    assert_eq!(a1["health_mode"], "auto");
    assert_eq!(list.json["active_count"], 4);
    let (code, body) = health(&server).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("healthy")));

    server.post_logs(&packets("third", 10)).await.expect(202);
    let back = server.drained().await;
    assert_eq!(gained(&out, &back), [4, 3, 2, 1]);
    assert_eq!(back["total_packets_received"], 1610);
    assert_eq!(processed(&back).values().sum::<u64>(), 1610);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_analyzer_out_packets_wait_and_are_delivered_when_one_returns() {
    let server = Server::start(&Config::four(0)).await;
    for (i, id) in IDS.iter().enumerate() {
        server.set_health(id, json!({"healthy": false})).await.expect(200);
        let (code, body) = health(&server).await;
        let expected = if i < 3 {
            (200, "degraded")
        } else {
            (503, "unhealthy")
        };
        assert_eq!(
            (code, body["status"].as_str().unwrap()),
            expected,
            "after forcing {id} out"
        );
        assert_eq!(body["active_analyzers"], 3 - i);
    }

    // Accepted, and waiting: nobody can take them.
    let reply = server.post_logs(&packets("waiting", 20)).await;
    reply.expect(202);
    assert_eq!(reply.json["successful"], 20);
    let stats = server.stats().await;
    assert_eq!(stats["active_analyzers"], 0);
    assert_eq!(stats["in_flight"], 20);
    assert_eq!(stats["waiting_for_analyzer"], 20);
    assert_eq!(processed(&stats).values().sum::<u64>(), 0);
    let metrics = server.get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("logs_distributor_queue_depth{stage=\"no_analyzer\"} 20"),
        "{}",
        metrics.text
    );

    // One comes back: it takes every waiting packet; nothing was dropped.
    server
        .set_health("analyzer-a3", json!({"mode": "auto"}))
        .await
        .expect(200);
    let stats = server.drained().await;
    assert_eq!(stats["waiting_for_analyzer"], 0);
    let counts = processed(&stats);
    assert_eq!(IDS.map(|id| counts[id]), [0, 0, 20, 0]);
    assert_eq!(stats["total_dead_lettered"], 0);
    let (code, body) = health(&server).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("degraded")));
    assert_eq!(body["active_analyzers"], 1);

    // Forced healthy also brings an analyzer back.
    server
        .set_health("analyzer-a4", json!({"healthy": true}))
        .await
        .expect(200);
    let (_, body) = health(&server).await;
    assert_eq!(body["active_analyzers"], 2);
    server.shutdown().await;
}
