//! The `ndjson` delivery format against a real HTTP server on loopback that
//! records every body: one line per message as a flat record (the mirror
//! of what `/api/v1/records` takes), each with its packet's id, the same
//! lines again with `retry_count` 1 after a failed delivery, metadata keys
//! at the top level unless they are named like a field of the line.

use crate::support::config::{remote, Config};
use crate::support::in_process::Server;
use crate::support::recorder::Recorder;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ndjson_analyzer_receives_every_message_as_one_line_with_its_packet_id_across_a_retry() {
    let (recorder, endpoint) = Recorder::start(vec![StatusCode::SERVICE_UNAVAILABLE]).await;
    let config = Config::new(vec![
        remote("lines", 1, &endpoint).with("format: ndjson, max_batch_packets: 1")
    ])
    .section("records", "{max_messages_per_packet: 4}");
    let server = Server::start(&config).await;
    let records: Vec<Value> = (0..10)
        .map(|i| {
            json!({"message": format!("record {i}"), "timestamp": format!("2024-12-05T09:13:2{i}Z"),
                   "level": if i % 2 == 0 { "warn" } else { "error" }, "host": format!("web-{i}"),
                   "user": {"id": i}, "source_type": "file"})
        })
        .collect();
    let reply = server
        .post_raw(
            "/api/v1/records",
            &[("content-type", "application/json")],
            serde_json::to_vec(&records).unwrap(),
        )
        .await;
    reply.expect(200);
    let ids: Vec<String> = reply.json["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "10 records in packets of 4");
    let stats = server.drained().await;
    assert_eq!(stats["total_retries"], 1, "{stats}");

    let deliveries = recorder.deliveries();
    assert_eq!(deliveries.len(), 4, "three packets, one of them twice");
    let mut taken: BTreeMap<String, Value> = BTreeMap::new();
    let failed = &deliveries[0];
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    for delivery in &deliveries {
        assert_eq!(delivery.headers["content-type"], "application/x-ndjson");
        assert!(delivery.body.ends_with(b"\n"), "every line ends with a newline");
        let lines = delivery.lines();
        let packet_id = lines[0]["packet_id"].as_str().unwrap();
        assert!(
            lines.iter().all(|line| line["packet_id"] == packet_id),
            "one packet per delivery (max_batch_packets: 1)"
        );
        let retry = if delivery.headers["idempotency-key"] == failed.headers["idempotency-key"]
            && delivery.status == StatusCode::OK
        {
            1
        } else {
            0
        };
        for line in lines {
            assert_eq!(line["retry_count"], retry, "{line}");
            if delivery.status == StatusCode::OK {
                let text = line["message"].as_str().unwrap().to_string();
                assert!(taken.insert(text, line).is_none(), "each message is taken once");
            }
        }
    }
    // The failed delivery's lines came again, with the same packet id.
    let retried = failed.lines();
    assert!(retried.iter().all(|line| {
        let again = &taken[line["message"].as_str().unwrap()];
        again["packet_id"] == line["packet_id"] && again["retry_count"] == 1
    }));
    // Every record, as a flat line: its fields, its packet's id.
    assert_eq!(taken.len(), 10);
    let packet_of = |i: usize| ids[i / 4].clone();
    for (i, record) in records.iter().enumerate() {
        let line = &taken[&format!("record {i}")];
        let level = if i % 2 == 0 { "WARNING" } else { "ERROR" };
        let mut expected = json!({"message": record["message"], "timestamp": record["timestamp"],
            "level": level, "source": record["host"], "packet_id": packet_of(i),
            "user": record["user"], "source_type": "file"});
        expected["retry_count"] = line["retry_count"].clone();
        assert_eq!(line, &expected);
    }
    let packet_ids: BTreeSet<_> = taken
        .values()
        .map(|line| line["packet_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(packet_ids, ids.into_iter().collect());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_named_like_a_field_of_the_line_stays_under_metadata() {
    let (recorder, endpoint) = Recorder::start(vec![]).await;
    let config = Config::new(vec![remote("lines", 1, &endpoint).with("format: ndjson")]);
    let server = Server::start(&config).await;
    let packet = json!([{"id": "p-1", "messages": [{"level": "info", "message": "m", "source": "api",
        "timestamp": "2024-12-05T09:13:20Z",
        "metadata": {"packet_id": "the client's", "retry_count": "many", "metadata": {"x": 1}, "zone": "eu"}}]}]);
    server.post_logs(&packet).await.expect(202);
    server.drained().await;
    let lines = recorder.deliveries()[0].lines();
    assert_eq!(
        lines,
        [
            json!({"message": "m", "timestamp": "2024-12-05T09:13:20Z", "level": "INFO", "source": "api",
                "packet_id": "p-1", "retry_count": 0, "zone": "eu",
                "metadata": {"metadata": {"x": 1}, "packet_id": "the client's", "retry_count": "many"}})
        ]
    );
    server.shutdown().await;
}
